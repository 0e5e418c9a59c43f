//! Handing work from the shards to a helper thread (the search indexer, the git audit writer)
//! without ever blocking a shard, and without losing anything.
//!
//! The channel is crossbeam's `unbounded` with our own in-flight counter as the bound:
//! crossbeam's `bounded(n).try_send` can spin for milliseconds when the receiving thread is
//! descheduled, which would stall a shard's executor. At the bound a shard holds items back, in
//! order, and a timer task retries until the helper has caught up.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often held-back items are retried while the helper thread is behind.
const RETRY_INTERVAL_MS: u64 = 2;
/// Items one shard holds back before the requests that produce them wait for room: nothing
/// is dropped, and memory stays bounded (a message is at most the body limit).
pub const MAX_HELD_ITEMS: usize = 100_000;

/// What a helper thread receives.
pub enum Work<T> {
    Item(T),
    /// Finish what is pending and exit.
    Shutdown,
}

/// The sending end, shared by all shards. Cheap to clone; `Send`.
pub struct Outbox<T> {
    tx: Sender<Work<T>>,
    in_flight: Arc<AtomicUsize>,
    depth: usize,
    /// Which helper this feeds, for the logs.
    actor: &'static str,
}

impl<T> Clone for Outbox<T> {
    fn clone(&self) -> Self {
        Outbox {
            tx: self.tx.clone(),
            in_flight: Arc::clone(&self.in_flight),
            depth: self.depth,
            actor: self.actor,
        }
    }
}

/// The helper thread's end.
pub struct Inbox<T> {
    rx: Receiver<Work<T>>,
    in_flight: Arc<AtomicUsize>,
}

/// A channel to a helper thread that holds at most `depth` items in flight (at least one).
/// `in_flight` is the counter (shared with the metrics).
pub fn channel<T>(
    depth: usize,
    actor: &'static str,
    in_flight: Arc<AtomicUsize>,
) -> (Outbox<T>, Inbox<T>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let outbox = Outbox {
        tx,
        in_flight: Arc::clone(&in_flight),
        depth: depth.max(1),
        actor,
    };
    (outbox, Inbox { rx, in_flight })
}

impl<T> Outbox<T> {
    /// Asks the helper to finish and exit once everything sent before is done.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Work::Shutdown);
    }

    fn try_send(&self, item: T) -> Result<(), T> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.depth {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(item);
        }
        self.send_counted(item);
        Ok(())
    }

    /// Sends an item whose in-flight count is already taken.
    fn send_counted(&self, item: T) {
        if self.tx.send(Work::Item(item)).is_err() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            tracing::error!(
                actor = self.actor,
                "helper thread has stopped; an item was dropped"
            );
        }
    }
}

impl<T> Inbox<T> {
    /// Waits for the next item, until `deadline` if one is given. A disconnected channel
    /// (every sender gone) reads as `Shutdown`.
    pub fn recv(&self, deadline: Option<Instant>) -> Option<Work<T>> {
        let received = match deadline {
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(deadline) => self.rx.recv_deadline(deadline),
        };
        match received {
            Ok(Work::Item(item)) => {
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
                Some(Work::Item(item))
            }
            Ok(Work::Shutdown) | Err(RecvTimeoutError::Disconnected) => Some(Work::Shutdown),
            Err(RecvTimeoutError::Timeout) => None,
        }
    }
}

/// One shard's side of an [`Outbox`]: never blocks, never drops.
pub struct Feed<T> {
    outbox: Outbox<T>,
    held: RefCell<VecDeque<T>>,
    retrying: Cell<bool>,
    /// Items that ever had to wait, for the logs.
    held_total: Cell<u64>,
}

impl<T: 'static> Feed<T> {
    pub fn new(outbox: Outbox<T>) -> Rc<Self> {
        Rc::new(Feed {
            outbox,
            held: RefCell::new(VecDeque::new()),
            retrying: Cell::new(false),
            held_total: Cell::new(0),
        })
    }

    /// Waits while this shard holds `MAX_HELD_ITEMS` back: the request producing the next
    /// item (and, through TCP, its client) waits instead of memory growing.
    pub async fn wait_for_room(&self) {
        while self.held.borrow().len() >= MAX_HELD_ITEMS {
            glommio::timer::sleep(Duration::from_millis(RETRY_INTERVAL_MS)).await;
        }
    }

    pub fn submit(self: &Rc<Self>, item: T) {
        // Once anything is held, later items queue behind it to keep order.
        let item = if self.held.borrow().is_empty() {
            match self.outbox.try_send(item) {
                Ok(()) => return,
                Err(item) => item,
            }
        } else {
            item
        };
        self.held.borrow_mut().push_back(item);
        self.held_total.set(self.held_total.get() + 1);
        if !self.retrying.replace(true) {
            tracing::warn!(
                actor = self.outbox.actor,
                in_flight = self.outbox.in_flight.load(Ordering::Relaxed),
                "helper thread is behind; holding items on this shard"
            );
            glommio::spawn_local(Rc::clone(self).retry_held()).detach();
        }
    }

    async fn retry_held(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(Duration::from_millis(RETRY_INTERVAL_MS)).await;
            loop {
                let Some(item) = self.held.borrow_mut().pop_front() else {
                    break;
                };
                if let Err(item) = self.outbox.try_send(item) {
                    self.held.borrow_mut().push_front(item);
                    break;
                }
            }
            if self.held.borrow().is_empty() {
                tracing::info!(
                    actor = self.outbox.actor,
                    held_total = self.held_total.get(),
                    "helper thread caught up"
                );
                self.retrying.set(false);
                return;
            }
        }
    }

    /// At shutdown: hand everything held to the helper, whatever the bound.
    pub fn flush_all(&self) {
        let held: Vec<T> = self.held.borrow_mut().drain(..).collect();
        for item in held {
            self.outbox.in_flight.fetch_add(1, Ordering::AcqRel);
            self.outbox.send_counted(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_count_bounds_sends_and_receipt_frees_room() {
        let (outbox, inbox) = channel::<u32>(2, "test", Arc::default());
        assert!(outbox.try_send(1).is_ok());
        assert!(outbox.try_send(2).is_ok());
        assert_eq!(outbox.try_send(3), Err(3));
        assert!(matches!(inbox.recv(None), Some(Work::Item(1))));
        assert!(outbox.try_send(3).is_ok());
        assert!(matches!(inbox.recv(None), Some(Work::Item(2))));
        assert!(matches!(inbox.recv(None), Some(Work::Item(3))));
        let soon = Instant::now() + Duration::from_millis(1);
        assert!(inbox.recv(Some(soon)).is_none(), "timeout reads as None");
        outbox.shutdown();
        assert!(matches!(inbox.recv(None), Some(Work::Shutdown)));
        drop(outbox);
        assert!(
            matches!(inbox.recv(None), Some(Work::Shutdown)),
            "disconnect reads as Shutdown"
        );
    }
}
