//! Start-up where io_uring is filtered, as the default seccomp profile of common container
//! runtimes filters it: the server must say so, and what to change, instead of failing in an
//! executor.

#![cfg(target_arch = "x86_64")]

use std::os::unix::process::CommandExt;
use std::process::Command;

/// A classic-BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Instruction {
    code: u16,
    jump_true: u8,
    jump_false: u8,
    k: u32,
}

/// `struct sock_fprog`.
#[repr(C)]
struct Program {
    len: u16,
    filter: *const Instruction,
}

/// BPF_LD | BPF_W | BPF_ABS (the first two are 0).
const LOAD_WORD: u16 = 0x20;
const JUMP_IF_EQUAL: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const RETURN: u16 = 0x06; // BPF_RET | BPF_K
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const SYS_IO_URING_SETUP: u32 = 425;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

/// io_uring_setup fails with `errno` (the last instruction's `k` is set per test); every
/// other call is allowed.
const DENY_IO_URING_SETUP: [Instruction; 6] = [
    // The architecture (offset 4 of struct seccomp_data): anything but x86_64 is allowed.
    Instruction {
        code: LOAD_WORD,
        jump_true: 0,
        jump_false: 0,
        k: 4,
    },
    Instruction {
        code: JUMP_IF_EQUAL,
        jump_true: 1,
        jump_false: 0,
        k: AUDIT_ARCH_X86_64,
    },
    Instruction {
        code: RETURN,
        jump_true: 0,
        jump_false: 0,
        k: SECCOMP_RET_ALLOW,
    },
    // The system call number (offset 0).
    Instruction {
        code: LOAD_WORD,
        jump_true: 0,
        jump_false: 0,
        k: 0,
    },
    Instruction {
        code: JUMP_IF_EQUAL,
        jump_true: 0,
        jump_false: 1,
        k: SYS_IO_URING_SETUP,
    },
    Instruction {
        code: RETURN,
        jump_true: 0,
        jump_false: 0,
        k: SECCOMP_RET_ERRNO | 1,
    },
];
const ALLOW: Instruction = Instruction {
    code: RETURN,
    jump_true: 0,
    jump_false: 0,
    k: SECCOMP_RET_ALLOW,
};

/// Starts the server with io_uring_setup failing with `errno`; its stderr and exit code.
fn start_with_io_uring_failing(errno: u32) -> (Option<i32>, String, bool) {
    let mut filter = DENY_IO_URING_SETUP.to_vec();
    filter[5].k = SECCOMP_RET_ERRNO | errno;
    filter.push(ALLOW);
    let dir = std::env::temp_dir().join(format!("allman-seccomp-{}-{errno}", std::process::id()));
    let mut command = Command::new(env!("CARGO_BIN_EXE_allman"));
    command
        .args(["--port", "0", "--shards", "1", "--data-dir"])
        .arg(&dir);
    let program = Program {
        len: filter.len() as u16,
        filter: filter.as_ptr(),
    };
    let program_address = &program as *const Program as usize;
    // SAFETY: runs in the child between fork and exec and makes only two prctl calls (async-
    // signal-safe); the filter and program live in memory the child inherited.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, 2, program_address, 0, 0) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = command.output().expect("the server runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr, output.stdout.is_empty())
}

#[test]
fn a_seccomp_filter_on_io_uring_is_explained_at_start() {
    // Docker's default profile answers EPERM; Podman's and CRI-O's answer ENOSYS.
    for errno in [libc::EPERM as u32, libc::ENOSYS as u32] {
        let (code, stderr, silent) = start_with_io_uring_failing(errno);
        assert_eq!(code, Some(1), "{stderr}");
        for needle in [
            "io_uring_setup failed with EPERM or ENOSYS under a seccomp filter",
            "io_uring_setup, io_uring_enter and io_uring_register",
            "memlock",
        ] {
            assert!(
                stderr.contains(needle),
                "errno {errno}: {needle:?} missing from: {stderr}"
            );
        }
        assert!(silent, "it never says it is listening");
    }
}
