//! Waking an executor task from a plain thread: a one-value channel ([`channel`]) and a
//! one-shot flag ([`Notify`]), both a value or flag beside a guarded `Waker` slot. glommio's own
//! channels cannot be connected from a non-executor thread; a `Waker` can be called from
//! anywhere.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
    sender_gone: bool,
}

struct Shared<T> {
    slot: Mutex<Slot<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Slot<T>> {
        // A panic while holding this lock cannot leave the slot half-written.
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        slot: Mutex::new(Slot {
            value: None,
            waker: None,
            sender_gone: false,
        }),
    });
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    pub fn send(self, value: T) {
        let waker = {
            let mut slot = self.shared.lock();
            slot.value = Some(value);
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut slot = self.shared.lock();
            slot.sender_gone = true;
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    /// `None` if the sender was dropped without sending.
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut slot = self.shared.lock();
        if let Some(value) = slot.value.take() {
            return Poll::Ready(Some(value));
        }
        if slot.sender_gone {
            return Poll::Ready(None);
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_sent_from_another_thread_arrives() {
        let (tx, rx) = channel();
        let sender = std::thread::spawn(move || tx.send(42));
        let got = futures_lite::future::block_on(rx);
        sender.join().expect("sender thread");
        assert_eq!(got, Some(42));
    }

    #[test]
    fn dropped_sender_resolves_to_none() {
        let (tx, rx) = channel::<u8>();
        drop(tx);
        assert_eq!(futures_lite::future::block_on(rx), None);
    }
}
