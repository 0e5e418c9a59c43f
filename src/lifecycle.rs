//! Start-up and shutdown signalling between the main thread and the shard threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// A one-shot flag that a plain thread raises and one executor task awaits. The waiting task
/// is woken through its `Waker`, which is safe to call from any thread.
#[derive(Clone, Default)]
pub struct Notify {
    inner: Arc<NotifyInner>,
}

#[derive(Default)]
struct NotifyInner {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Notify {
    pub fn fire(&self) {
        self.inner.fired.store(true, Ordering::SeqCst);
        let waker = self.waker_slot().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// A panic while holding this lock cannot leave the slot half-written.
    fn waker_slot(&self) -> std::sync::MutexGuard<'_, Option<Waker>> {
        self.inner
            .waker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn is_fired(&self) -> bool {
        self.inner.fired.load(Ordering::SeqCst)
    }

    /// Resolves once `fire` has been called. Meant for a single waiting task.
    pub async fn wait(&self) {
        std::future::poll_fn(|cx| self.poll_fired(cx)).await
    }

    fn poll_fired(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_fired() {
            return Poll::Ready(());
        }
        *self.waker_slot() = Some(cx.waker().clone());
        // Checked again after storing the waker so a fire in between is not missed.
        if self.is_fired() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

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
