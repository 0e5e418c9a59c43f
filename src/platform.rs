//! What the kernel must allow before any shard starts: io_uring. Checked once at start-up, so
//! that a refusal (a container runtime's seccomp profile, the `kernel.io_uring_disabled`
//! sysctl, an old kernel) is explained in words instead of as an executor error.

use std::fmt;

/// Why io_uring cannot be used here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoUringRefused {
    /// `EPERM` while `kernel.io_uring_disabled` is 0 (or unreadable): a seccomp filter, as
    /// container runtimes install by default.
    Filtered,
    /// `EPERM` with `kernel.io_uring_disabled` set to this value.
    Disabled(String),
    /// `ENOSYS`: the kernel has no io_uring (before 5.1, or built without it).
    Missing,
    /// Anything else, with its `errno`.
    Failed(i32),
}

impl fmt::Display for IoUringRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoUringRefused::Filtered => write!(
                f,
                "io_uring_setup failed with EPERM (operation not permitted) although \
                 kernel.io_uring_disabled is 0: a seccomp filter blocks io_uring, as container \
                 runtimes do by default. Allow io_uring_setup, io_uring_enter and \
                 io_uring_register in the seccomp profile (Docker/Podman: --security-opt \
                 seccomp=<profile.json>; Kubernetes: securityContext.seccompProfile), and raise \
                 the locked-memory limit (--ulimit memlock=-1); see docs/OPERATIONS.md, \
                 \"Containers\""
            ),
            IoUringRefused::Disabled(value) => write!(
                f,
                "io_uring_setup failed with EPERM: kernel.io_uring_disabled is {value}; set it \
                 to 0 (sysctl -w kernel.io_uring_disabled=0), or with 1 add this user to the \
                 group in kernel.io_uring_group"
            ),
            IoUringRefused::Missing => write!(
                f,
                "io_uring_setup is not implemented (ENOSYS): allman needs Linux 5.8 or newer \
                 with io_uring built in"
            ),
            IoUringRefused::Failed(errno) => write!(
                f,
                "io_uring_setup failed: {}",
                std::io::Error::from_raw_os_error(*errno)
            ),
        }
    }
}

/// Creates (and closes) a one-entry io_uring to see whether the kernel allows it.
pub fn check_io_uring() -> Result<(), IoUringRefused> {
    // struct io_uring_params is 120 bytes; zeroed asks for nothing special.
    let mut params = [0u64; 15];
    // SAFETY: io_uring_setup(2) reads and writes `params` (120 bytes, owned here) and
    // returns a file descriptor we close at once.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd >= 0 {
        // SAFETY: the descriptor was just returned to us and is closed once.
        unsafe { libc::close(fd as libc::c_int) };
        return Ok(());
    }
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok();
    Err(explain(errno, disabled.as_deref()))
}

/// The refusal that `errno` from io_uring_setup means, given the sysctl's text.
fn explain(errno: i32, io_uring_disabled: Option<&str>) -> IoUringRefused {
    match errno {
        libc::EPERM => match io_uring_disabled.map(str::trim) {
            Some(value) if value != "0" => IoUringRefused::Disabled(value.to_string()),
            _ => IoUringRefused::Filtered,
        },
        libc::ENOSYS => IoUringRefused::Missing,
        other => IoUringRefused::Failed(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_allows_io_uring() {
        assert_eq!(check_io_uring(), Ok(()));
    }

    #[test]
    fn each_refusal_says_what_to_change() {
        let filtered = explain(libc::EPERM, Some("0\n")).to_string();
        for needle in [
            "EPERM",
            "seccomp",
            "io_uring_setup, io_uring_enter and io_uring_register",
        ] {
            assert!(filtered.contains(needle), "{filtered}");
        }
        assert_eq!(explain(libc::EPERM, None), IoUringRefused::Filtered);
        assert_eq!(
            explain(libc::EPERM, Some("2\n")),
            IoUringRefused::Disabled("2".into())
        );
        assert!(explain(libc::EPERM, Some("2"))
            .to_string()
            .contains("io_uring_disabled is 2"));
        assert_eq!(explain(libc::ENOSYS, Some("0")), IoUringRefused::Missing);
        assert_eq!(
            explain(libc::ENOMEM, None),
            IoUringRefused::Failed(libc::ENOMEM)
        );
    }
}
