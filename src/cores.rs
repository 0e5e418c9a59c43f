//! CPU placement for threads that are not glommio executors.

/// The CPUs this process may run on (its affinity mask), in order.
pub fn usable_cores() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills a zeroed cpu_set_t of the size we pass.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            let count = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            return (0..count).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|cpu| libc::CPU_ISSET(*cpu, &set))
            .collect()
    }
}

/// Pins the calling thread to `core`. Threads it starts later inherit the pin. A failure is
/// logged, not fatal: the thread still works, only unpinned.
pub fn pin_current_thread(core: usize) {
    // SAFETY: builds a cpu_set_t on the stack and applies it to the calling thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        tracing::warn!(core, error = %std::io::Error::last_os_error(), "could not pin thread");
    }
}
