//! `subscriptions/listen` streams (MCP 2026-07-28) open on one shard: how many there are, and
//! waking them all when the server stops. A stream is a connection answering with server-sent
//! events; it holds a slot here from its acknowledgement until it ends, however it ends.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// The streams of one shard.
#[derive(Debug)]
pub struct Listeners {
    state: RefCell<State>,
}

#[derive(Debug)]
struct State {
    open: usize,
    /// Each open stream holds its connection and its request buffer (a few KiB) for as long
    /// as the client stays: the same bound as `wait_for_mail`'s waiters (`--max-waiters`).
    limit: usize,
    closing: bool,
    /// Wakers of the streams waiting for [`Listeners::closed`], by waiter id.
    parked: HashMap<u64, Waker>,
    next_id: u64,
}

/// Why a stream could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenRefused {
    /// The shard holds its limit of streams.
    Full { limit: usize },
    /// The server is stopping.
    Stopping,
}

impl std::fmt::Display for OpenRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenRefused::Full { limit } => write!(
                f,
                "this shard holds its limit of {limit} event streams (listen streams and GET \
                 /mcp streams, --max-waiters); close one or retry later"
            ),
            OpenRefused::Stopping => write!(f, "the server is stopping"),
        }
    }
}

impl Listeners {
    pub fn new(limit: usize) -> Self {
        Listeners {
            state: RefCell::new(State {
                open: 0,
                limit,
                closing: false,
                parked: HashMap::new(),
                next_id: 0,
            }),
        }
    }

    /// Takes a slot for a new stream; the caller gives it back with [`Listeners::ended`].
    pub fn open(&self) -> Result<(), OpenRefused> {
        let mut state = self.state.borrow_mut();
        if state.closing {
            return Err(OpenRefused::Stopping);
        }
        if state.open >= state.limit {
            return Err(OpenRefused::Full { limit: state.limit });
        }
        state.open += 1;
        Ok(())
    }

    /// A stream ended: its slot is free again.
    pub fn ended(&self) {
        let mut state = self.state.borrow_mut();
        debug_assert!(state.open > 0, "a stream ended that was never opened");
        state.open = state.open.saturating_sub(1);
    }

    pub fn open_count(&self) -> usize {
        self.state.borrow().open
    }

    /// The server is stopping: every stream finishes now, and no new one opens.
    pub fn close(&self) {
        let parked: Vec<Waker> = {
            let mut state = self.state.borrow_mut();
            state.closing = true;
            state.parked.drain().map(|(_, waker)| waker).collect()
        };
        for waker in parked {
            waker.wake();
        }
    }

    /// Completes once [`Listeners::close`] has been called.
    pub fn closed(&self) -> Closed<'_> {
        Closed {
            listeners: self,
            id: None,
        }
    }
}

/// The future of [`Listeners::closed`]; dropping it unparks it.
pub struct Closed<'a> {
    listeners: &'a Listeners,
    id: Option<u64>,
}

impl Future for Closed<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.listeners.state.borrow_mut();
        if state.closing {
            return Poll::Ready(());
        }
        let id = match self.id {
            Some(id) => id,
            None => {
                let id = state.next_id;
                state.next_id += 1;
                id
            }
        };
        state.parked.insert(id, cx.waker().clone());
        drop(state);
        self.id = Some(id);
        Poll::Pending
    }
}

impl Drop for Closed<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.listeners.state.borrow_mut().parked.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn slots_are_bounded_and_given_back() {
        let listeners = Listeners::new(2);
        assert_eq!(listeners.open(), Ok(()));
        assert_eq!(listeners.open(), Ok(()));
        assert_eq!(listeners.open(), Err(OpenRefused::Full { limit: 2 }));
        listeners.ended();
        assert_eq!(listeners.open_count(), 1);
        assert_eq!(listeners.open(), Ok(()));
        listeners.close();
        listeners.ended();
        assert_eq!(listeners.open(), Err(OpenRefused::Stopping));
    }

    #[test]
    fn close_wakes_every_parked_stream_and_dropped_ones_leave_nothing_behind() {
        let listeners = Listeners::new(8);
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(Arc::clone(&flag));
        let mut cx = Context::from_waker(&waker);
        let mut first = Box::pin(listeners.closed());
        assert_eq!(first.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(first.as_mut().poll(&mut cx), Poll::Pending, "polled again");
        {
            let mut dropped = Box::pin(listeners.closed());
            assert_eq!(dropped.as_mut().poll(&mut cx), Poll::Pending);
        }
        assert_eq!(listeners.state.borrow().parked.len(), 1, "one entry each");
        listeners.close();
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst), "woken");
        assert_eq!(first.as_mut().poll(&mut cx), Poll::Ready(()));
        assert_eq!(
            Box::pin(listeners.closed()).as_mut().poll(&mut cx),
            Poll::Ready(())
        );
    }
}
