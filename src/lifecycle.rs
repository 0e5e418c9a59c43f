//! What the shard and helper threads tell the main thread, and how a helper's end is noticed.

use std::sync::mpsc::Sender;

/// What shard threads tell the main thread.
#[derive(Debug)]
pub enum Event {
    Ready {
        shard: usize,
    },
    /// `executor_started` is false when glommio could not create the executor at all (its
    /// error is then read by joining the thread in `slot`).
    Failed {
        slot: usize,
        core: usize,
        reason: String,
        executor_started: bool,
    },
    Drained {
        shard: usize,
    },
    Exited {
        slot: usize,
        core: usize,
    },
    Signal(i32),
    /// A helper thread (search indexer, query thread, git writer) ended while the server was
    /// serving: a panic (with its message) or an unexpected return.
    HelperStopped {
        helper: &'static str,
        cause: String,
    },
}

/// Runs a helper thread's body and tells the main thread if it ends, normally or by a panic.
/// A helper only returns when asked to at shutdown, and by then the main thread no longer
/// listens, so any report it reads means the helper died under a running server.
pub fn supervise(helper: &'static str, events: &Sender<Event>, body: impl FnOnce()) {
    let cause = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(()) => "it returned".to_string(),
        Err(payload) => match payload.downcast::<String>() {
            Ok(message) => format!("panicked: {message}"),
            Err(payload) => match payload.downcast::<&'static str>() {
                Ok(message) => format!("panicked: {message}"),
                Err(_) => "panicked".to_string(),
            },
        },
    };
    // The main thread outlives the helpers; a send error means it is already exiting.
    let _ = events.send(Event::HelperStopped { helper, cause });
}
