//! Handing work from the shards to a helper thread (the search indexer, the git audit writer)
//! without ever blocking a shard, without losing anything, and within a bound in items and in
//! bytes.
//!
//! The channel is crossbeam's `unbounded` with our own in-flight counter as the bound:
//! crossbeam's `bounded(n).try_send` can spin for milliseconds when the receiving thread is
//! descheduled, which would stall a shard's executor. At the item bound a shard holds items
//! back, in order, and a timer task retries until the helper has caught up.
//!
//! Bytes are bounded across all shards: a producer takes a [`Charge`] for its item's bytes
//! before it does the work that produces the item ([`Feed::reserve`]), waiting while the feed
//! is full, and the bytes are given back when the helper receives the item. Checking and
//! charging are one atomic step, so concurrent producers on several shards cannot overshoot.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a feed holds, kept by the feed itself (its byte budget is `pending_bytes`); `/metrics`
/// only reads them.
#[derive(Debug, Clone, Default)]
pub struct FeedGauges {
    /// Items sent by the shards and not yet received by the helper.
    pub in_flight: Arc<AtomicUsize>,
    /// Bytes of those items, and of items held back or about to be produced, across shards.
    pub pending_bytes: Arc<AtomicUsize>,
}

/// How often held-back items are retried while the helper thread is behind, and how often a
/// producer waiting for room looks again.
const RETRY_INTERVAL_MS: u64 = 2;
/// Items one shard holds back before the requests that produce them wait for room: nothing
/// is dropped, and memory stays bounded (the byte bound applies to these too).
pub const MAX_HELD_ITEMS: usize = 100_000;

/// What a helper thread receives.
pub enum Work<T> {
    Item(T),
    /// Finish what is pending and exit.
    Shutdown,
}

/// What travels on the channel: an item with the bytes charged for it.
enum Message<T> {
    Item { item: T, bytes: usize },
    Shutdown,
}

/// How much a feed holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedLimits {
    /// Items sent to the helper and not yet received by it.
    pub depth: usize,
    /// Bytes held by shards or in flight, across all shards. An item larger than this on its
    /// own is let through once nothing else is pending (waiters are not served in order, so
    /// under a steady stream of small items it can wait long).
    pub max_bytes: usize,
}

/// The helper thread behind a feed has stopped: nothing will ever drain it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelperStopped {
    pub actor: &'static str,
}

impl fmt::Display for HelperStopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the {} thread has stopped", self.actor)
    }
}

/// The sending end, shared by all shards. Cheap to clone; `Send`.
pub struct Producer<T> {
    tx: Sender<Message<T>>,
    counters: FeedGauges,
    limits: FeedLimits,
    /// Cleared when the helper's [`Consumer`] is dropped (it exited or panicked).
    alive: Arc<AtomicBool>,
    /// Which helper this feeds, for the logs.
    actor: &'static str,
}

impl<T> Clone for Producer<T> {
    fn clone(&self) -> Self {
        Producer {
            tx: self.tx.clone(),
            counters: self.counters.clone(),
            limits: self.limits,
            alive: Arc::clone(&self.alive),
            actor: self.actor,
        }
    }
}

/// The helper thread's end. Dropping it (the helper returned or panicked) marks the feed
/// stopped, so producers get an error instead of waiting for room that never comes.
pub struct Consumer<T> {
    rx: Receiver<Message<T>>,
    counters: FeedGauges,
    alive: Arc<AtomicBool>,
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Release);
    }
}

/// A channel to a helper thread within `limits`; `counters` are shared with the metrics.
pub fn channel<T>(
    limits: FeedLimits,
    actor: &'static str,
    counters: FeedGauges,
) -> (Producer<T>, Consumer<T>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let alive = Arc::new(AtomicBool::new(true));
    let limits = FeedLimits {
        depth: limits.depth.max(1),
        max_bytes: limits.max_bytes,
    };
    let producer = Producer {
        tx,
        counters: counters.clone(),
        limits,
        alive: Arc::clone(&alive),
        actor,
    };
    (
        producer,
        Consumer {
            rx,
            counters,
            alive,
        },
    )
}

/// Bytes of a feed's budget taken by a producer for one item. Given back when dropped,
/// unless the item was submitted (then the helper gives them back on receipt).
#[must_use = "a charge is given back when dropped"]
pub struct Charge {
    bytes: usize,
    pending_bytes: Arc<AtomicUsize>,
}

impl Charge {
    fn into_bytes(mut self) -> usize {
        std::mem::take(&mut self.bytes)
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.pending_bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

impl<T> Producer<T> {
    /// Asks the helper to finish and exit once everything sent before is done.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Message::Shutdown);
    }

    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Takes `bytes` of the budget if they fit, in one atomic step. An item alone larger than
    /// the whole budget passes when nothing else is pending.
    fn try_charge(&self, bytes: usize) -> Option<Charge> {
        let max = self.limits.max_bytes;
        self.counters
            .pending_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let after = used.saturating_add(bytes);
                (used == 0 || after <= max).then_some(after)
            })
            .ok()?;
        Some(Charge {
            bytes,
            pending_bytes: Arc::clone(&self.counters.pending_bytes),
        })
    }

    fn try_send(&self, item: T, bytes: usize) -> Result<(), (T, usize)> {
        let in_flight = &self.counters.in_flight;
        if in_flight.fetch_add(1, Ordering::AcqRel) >= self.limits.depth {
            in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err((item, bytes));
        }
        self.send_counted(item, bytes);
        Ok(())
    }

    /// Sends an item whose in-flight count and bytes are already taken.
    fn send_counted(&self, item: T, bytes: usize) {
        if self.tx.send(Message::Item { item, bytes }).is_err() {
            self.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.counters
                .pending_bytes
                .fetch_sub(bytes, Ordering::AcqRel);
            tracing::error!(
                actor = self.actor,
                "helper thread has stopped; an item was dropped"
            );
        }
    }
}

impl<T> Producer<T> {
    /// Sends `item` from outside any shard (start-up: what recovery hands over again), past
    /// the bounds: the helper starts on it before any request is served.
    pub fn send_unbounded(&self, item: T, bytes: usize) {
        self.counters.in_flight.fetch_add(1, Ordering::AcqRel);
        self.counters
            .pending_bytes
            .fetch_add(bytes, Ordering::AcqRel);
        self.send_counted(item, bytes);
    }
}

impl<T> Consumer<T> {
    /// Waits for the next item, until `deadline` if one is given. A disconnected channel
    /// (every sender gone) reads as `Shutdown`.
    pub fn recv(&self, deadline: Option<Instant>) -> Option<Work<T>> {
        let received = match deadline {
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(deadline) => self.rx.recv_deadline(deadline),
        };
        self.received(received)
    }

    /// The next item if one is waiting; `None` at once if not. Never registers as a waiter,
    /// so producers need not wake this thread.
    pub fn try_recv(&self) -> Option<Work<T>> {
        let received = self.rx.try_recv().map_err(|error| match error {
            crossbeam_channel::TryRecvError::Empty => RecvTimeoutError::Timeout,
            crossbeam_channel::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
        });
        self.received(received)
    }

    fn received(&self, received: Result<Message<T>, RecvTimeoutError>) -> Option<Work<T>> {
        match received {
            Ok(Message::Item { item, bytes }) => {
                self.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
                self.counters
                    .pending_bytes
                    .fetch_sub(bytes, Ordering::AcqRel);
                Some(Work::Item(item))
            }
            Ok(Message::Shutdown) | Err(RecvTimeoutError::Disconnected) => Some(Work::Shutdown),
            Err(RecvTimeoutError::Timeout) => None,
        }
    }
}

/// One shard's side of an [`Producer`]: never blocks, never drops.
pub struct Feed<T> {
    producer: Producer<T>,
    /// Items (with their charged bytes) waiting for the helper to catch up, in order.
    held: RefCell<VecDeque<(T, usize)>>,
    retrying: Cell<bool>,
    /// Items that ever had to wait, for the logs.
    held_total: Cell<u64>,
}

impl<T: 'static> Feed<T> {
    pub fn new(producer: Producer<T>) -> Rc<Self> {
        Rc::new(Feed {
            producer,
            held: RefCell::new(VecDeque::new()),
            retrying: Cell::new(false),
            held_total: Cell::new(0),
        })
    }

    /// Takes `bytes` of the feed's budget for an item about to be produced, waiting while the
    /// feed is full (the bytes bound across shards, or `MAX_HELD_ITEMS` held here): the request
    /// producing the item (and, through TCP, its client) waits instead of memory growing.
    /// Fails only if the helper thread has stopped.
    pub async fn reserve(&self, bytes: usize) -> Result<Charge, HelperStopped> {
        loop {
            if !self.producer.is_alive() {
                return Err(HelperStopped {
                    actor: self.producer.actor,
                });
            }
            if self.held.borrow().len() < MAX_HELD_ITEMS {
                if let Some(charge) = self.producer.try_charge(bytes) {
                    return Ok(charge);
                }
            }
            glommio::timer::sleep(Duration::from_millis(RETRY_INTERVAL_MS)).await;
        }
    }

    /// Hands `item` to the helper now, charging its bytes without waiting: for items a shard
    /// produces for a request that holds a [`Charge`] of its own until its reply (the owner
    /// of a message hands its document over once the log record is durable). The item is
    /// counted twice only until that reply, so the bound holds once requests are answered.
    pub fn submit_owed(self: &Rc<Self>, item: T, bytes: usize) {
        self.producer
            .counters
            .pending_bytes
            .fetch_add(bytes, Ordering::AcqRel);
        let charge = Charge {
            bytes,
            pending_bytes: Arc::clone(&self.producer.counters.pending_bytes),
        };
        self.submit(item, charge);
    }

    /// Hands `item` to the helper, or holds it here (in order) while the helper is behind.
    /// Never waits: the room was taken by [`Feed::reserve`].
    pub fn submit(self: &Rc<Self>, item: T, charge: Charge) {
        let bytes = charge.into_bytes();
        // Once anything is held, later items queue behind it to keep order.
        let held = if self.held.borrow().is_empty() {
            match self.producer.try_send(item, bytes) {
                Ok(()) => return,
                Err(held) => held,
            }
        } else {
            (item, bytes)
        };
        self.held.borrow_mut().push_back(held);
        self.held_total.set(self.held_total.get() + 1);
        if !self.retrying.replace(true) {
            tracing::warn!(
                actor = self.producer.actor,
                in_flight = self.producer.counters.in_flight.load(Ordering::Relaxed),
                "helper thread is behind; holding items on this shard"
            );
            glommio::spawn_local(Rc::clone(self).retry_held()).detach();
        }
    }

    async fn retry_held(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(Duration::from_millis(RETRY_INTERVAL_MS)).await;
            // At most MAX_HELD_ITEMS sends, each a channel push: bounded work per wake-up.
            loop {
                let Some((item, bytes)) = self.held.borrow_mut().pop_front() else {
                    break;
                };
                if let Err(held) = self.producer.try_send(item, bytes) {
                    self.held.borrow_mut().push_front(held);
                    break;
                }
            }
            if self.held.borrow().is_empty() {
                tracing::info!(
                    actor = self.producer.actor,
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
        let held: Vec<(T, usize)> = self.held.borrow_mut().drain(..).collect();
        for (item, bytes) in held {
            self.producer
                .counters
                .in_flight
                .fetch_add(1, Ordering::AcqRel);
            self.producer.send_counted(item, bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_channel(depth: usize, max_bytes: usize) -> (Producer<u32>, Consumer<u32>, FeedGauges) {
        let counters = FeedGauges::default();
        let (producer, consumer) =
            channel(FeedLimits { depth, max_bytes }, "test", counters.clone());
        (producer, consumer, counters)
    }

    #[test]
    fn in_flight_count_bounds_sends_and_receipt_frees_room() {
        let (producer, consumer, _) = test_channel(2, usize::MAX);
        assert!(producer.try_send(1, 0).is_ok());
        assert!(producer.try_send(2, 0).is_ok());
        assert_eq!(producer.try_send(3, 0), Err((3, 0)));
        assert!(matches!(consumer.recv(None), Some(Work::Item(1))));
        assert!(producer.try_send(3, 0).is_ok());
        assert!(matches!(consumer.recv(None), Some(Work::Item(2))));
        assert!(matches!(consumer.recv(None), Some(Work::Item(3))));
        let soon = Instant::now() + Duration::from_millis(1);
        assert!(consumer.recv(Some(soon)).is_none(), "timeout reads as None");
        producer.shutdown();
        assert!(matches!(consumer.recv(None), Some(Work::Shutdown)));
        drop(producer);
        assert!(
            matches!(consumer.recv(None), Some(Work::Shutdown)),
            "disconnect reads as Shutdown"
        );
    }

    #[test]
    fn bytes_are_charged_up_to_the_bound_and_given_back_on_receipt_or_drop() {
        let (producer, consumer, counters) = test_channel(100, 10);
        let first = producer.try_charge(6).expect("fits");
        assert!(producer.try_charge(5).is_none(), "6 + 5 > 10");
        let second = producer.try_charge(4).expect("6 + 4 fits exactly");
        assert_eq!(counters.pending_bytes.load(Ordering::Relaxed), 10);
        drop(second);
        assert_eq!(counters.pending_bytes.load(Ordering::Relaxed), 6);
        producer
            .try_send(7, first.into_bytes())
            .unwrap_or_else(|_| panic!("room"));
        assert_eq!(
            counters.pending_bytes.load(Ordering::Relaxed),
            6,
            "in flight still counts"
        );
        assert!(matches!(consumer.recv(None), Some(Work::Item(7))));
        assert_eq!(counters.pending_bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_item_larger_than_the_budget_passes_only_alone() {
        let (producer, _inbox, counters) = test_channel(100, 10);
        let small = producer.try_charge(1).expect("fits");
        assert!(producer.try_charge(50).is_none());
        drop(small);
        let large = producer.try_charge(50).expect("alone");
        assert_eq!(counters.pending_bytes.load(Ordering::Relaxed), 50);
        assert!(producer.try_charge(1).is_none(), "nothing else meanwhile");
        drop(large);
    }

    #[test]
    fn concurrent_producers_never_overshoot_the_byte_bound() {
        let (producer, _inbox, counters) = test_channel(100, 1000);
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let producer = producer.clone();
                let peak = Arc::clone(&peak);
                let pending = Arc::clone(&counters.pending_bytes);
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        if let Some(charge) = producer.try_charge(7) {
                            peak.fetch_max(pending.load(Ordering::Relaxed), Ordering::Relaxed);
                            drop(charge);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("producer");
        }
        assert!(peak.load(Ordering::Relaxed) <= 1000);
        assert_eq!(counters.pending_bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_dropped_inbox_marks_the_feed_stopped() {
        let (producer, consumer, _) = test_channel(1, 10);
        assert!(producer.is_alive());
        drop(consumer);
        assert!(!producer.is_alive());
    }
}
