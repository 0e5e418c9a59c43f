//! A shard's side of the indexer channel. Never blocks: when the indexer is behind (the
//! in-flight count is at its bound) the shard holds documents back, in order, and a timer task
//! retries until they are all sent. Nothing delivered is ever dropped from search.

use super::indexer::{Command, SearchDoc};
use super::SearchHandle;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How often held-back documents are retried while the indexer is behind.
const RETRY_INTERVAL_MS: u64 = 2;

pub struct SearchFeed {
    handle: SearchHandle,
    held: RefCell<VecDeque<SearchDoc>>,
    retrying: Cell<bool>,
    /// Documents that ever had to wait, for the logs.
    held_total: Cell<u64>,
}

impl SearchFeed {
    pub fn new(handle: SearchHandle) -> Rc<Self> {
        Rc::new(SearchFeed {
            handle,
            held: RefCell::new(VecDeque::new()),
            retrying: Cell::new(false),
            held_total: Cell::new(0),
        })
    }

    pub fn handle(&self) -> &SearchHandle {
        &self.handle
    }

    pub fn submit(self: &Rc<Self>, doc: SearchDoc) {
        // Once anything is held, later documents queue behind it to keep order.
        let doc = if self.held.borrow().is_empty() {
            match self.try_send(doc) {
                Ok(()) => return,
                Err(doc) => doc,
            }
        } else {
            doc
        };
        self.held.borrow_mut().push_back(doc);
        self.held_total.set(self.held_total.get() + 1);
        if !self.retrying.replace(true) {
            tracing::warn!(
                in_flight = self.handle.docs_in_flight.load(Ordering::Relaxed),
                "search indexer is behind; holding documents on this shard"
            );
            glommio::spawn_local(Rc::clone(self).retry_held()).detach();
        }
    }

    fn try_send(&self, doc: SearchDoc) -> Result<(), SearchDoc> {
        let in_flight = &self.handle.docs_in_flight;
        if in_flight.fetch_add(1, Ordering::AcqRel) >= self.handle.queue_depth {
            in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(doc);
        }
        self.send_unbounded(doc);
        Ok(())
    }

    /// Sends ignoring the bound (the count still goes up, so the indexer stays in step).
    fn send_unbounded(&self, doc: SearchDoc) {
        if self.handle.docs.send(Command::Add(doc)).is_err() {
            self.handle.docs_in_flight.fetch_sub(1, Ordering::AcqRel);
            tracing::error!("the search indexer has stopped; a message was not indexed");
        }
    }

    async fn retry_held(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(Duration::from_millis(RETRY_INTERVAL_MS)).await;
            loop {
                let Some(doc) = self.held.borrow_mut().pop_front() else {
                    break;
                };
                if let Err(doc) = self.try_send(doc) {
                    self.held.borrow_mut().push_front(doc);
                    break;
                }
            }
            if self.held.borrow().is_empty() {
                tracing::info!(
                    held_total = self.held_total.get(),
                    "search indexer caught up"
                );
                self.retrying.set(false);
                return;
            }
        }
    }

    /// At shutdown: hand everything held to the indexer, whatever the bound.
    pub fn flush_all(&self) {
        let held: Vec<SearchDoc> = self.held.borrow_mut().drain(..).collect();
        for doc in held {
            self.handle.docs_in_flight.fetch_add(1, Ordering::AcqRel);
            self.send_unbounded(doc);
        }
    }
}
