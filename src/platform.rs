//! What the kernel must allow before any shard starts: io_uring. Checked once at start-up, so
//! that a refusal (a container runtime's seccomp profile, the `kernel.io_uring_disabled`
//! sysctl, an old kernel) is explained in words instead of as an executor error.

use std::fmt;

/// Why io_uring cannot be used here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoUringRefused {
    /// `EPERM` (with `kernel.io_uring_disabled` 0) or `ENOSYS` under a seccomp filter
    /// (`Seccomp: 2` in /proc/self/status), as container runtimes install by default: Docker's
    /// answers EPERM, Podman's and CRI-O's ENOSYS.
    Filtered,
    /// `EPERM` with `kernel.io_uring_disabled` set to this value.
    Disabled(String),
    /// `ENOSYS` with no seccomp filter: the kernel has no io_uring (before 5.1, or built
    /// without it).
    Missing,
    /// Anything else, with its `errno`.
    Failed(i32),
}

impl fmt::Display for IoUringRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoUringRefused::Filtered => write!(
                f,
                "io_uring_setup failed with EPERM or ENOSYS under a seccomp filter: it blocks \
                 io_uring, as container runtimes do by default. Allow io_uring_setup, \
                 io_uring_enter and io_uring_register in the seccomp profile (Docker/Podman: \
                 --security-opt seccomp=<profile.json>; Kubernetes: \
                 securityContext.seccompProfile), and raise the locked-memory limit \
                 (--ulimit memlock=-1); see docs/OPERATIONS.md, \"Containers\""
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
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    Err(explain(
        errno,
        disabled.as_deref(),
        seccomp_filtered(&status),
    ))
}

/// Whether /proc/self/status says a seccomp filter is on (`Seccomp: 2`).
fn seccomp_filtered(status: &str) -> bool {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Seccomp:"))
        .is_some_and(|mode| mode.trim() == "2")
}

/// The refusal that `errno` from io_uring_setup means, given the sysctl's text and whether a
/// seccomp filter is on.
fn explain(errno: i32, io_uring_disabled: Option<&str>, filtered: bool) -> IoUringRefused {
    let disabled = io_uring_disabled
        .map(str::trim)
        .filter(|value| *value != "0");
    match (errno, disabled) {
        (libc::EPERM, Some(value)) => IoUringRefused::Disabled(value.to_string()),
        (libc::EPERM, None) => IoUringRefused::Filtered,
        (libc::ENOSYS, _) if filtered => IoUringRefused::Filtered,
        (libc::ENOSYS, _) => IoUringRefused::Missing,
        (other, _) => IoUringRefused::Failed(other),
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
        let filtered = explain(libc::EPERM, Some("0\n"), true).to_string();
        for needle in [
            "EPERM",
            "seccomp",
            "io_uring_setup, io_uring_enter and io_uring_register",
        ] {
            assert!(filtered.contains(needle), "{filtered}");
        }
        assert_eq!(explain(libc::EPERM, None, false), IoUringRefused::Filtered);
        assert_eq!(
            explain(libc::EPERM, Some("2\n"), false),
            IoUringRefused::Disabled("2".into())
        );
        assert!(explain(libc::EPERM, Some("2"), false)
            .to_string()
            .contains("io_uring_disabled is 2"));
        // Podman's and CRI-O's default profiles answer ENOSYS.
        assert_eq!(
            explain(libc::ENOSYS, Some("0"), true),
            IoUringRefused::Filtered
        );
        assert_eq!(
            explain(libc::ENOSYS, Some("0"), false),
            IoUringRefused::Missing
        );
        assert_eq!(
            explain(libc::ENOMEM, None, false),
            IoUringRefused::Failed(libc::ENOMEM)
        );
        assert!(seccomp_filtered(
            "Name:\tallman\nSeccomp:\t2\nSeccomp_filters:\t1\n"
        ));
        assert!(!seccomp_filtered("Seccomp:\t0\n"));
        assert!(!seccomp_filtered(""));
    }
}
