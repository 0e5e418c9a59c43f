//! Long polls (`wait_for_mail`): parking a waiter on the agent's owner, waking it once new
//! mail is durable, cancelling it when the caller goes away, and closing them all at a stop.

use super::{CallError, Shard};
use crate::protocol::{Actor, FetchQuery, Reply, Request};
use crate::waiters::{Waiters, Wake};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

impl Shard {
    /// Wakes the waiters of agents whose new mail is durable up to `durable`.
    pub(super) fn wake_for_mail(&self, durable: u64) {
        let mut mail = self.new_mail.borrow_mut();
        if mail.is_empty() {
            return;
        }
        let mut waiters = self.waiters.borrow_mut();
        // Positions only grow, so the durable ones are a prefix.
        let ready = mail.partition_point(|(after, _)| *after <= durable);
        for (_, name) in mail.drain(..ready) {
            waiters.wake_agent(&name);
        }
    }

    /// The server is stopping: every long poll parked here answers at once, and new ones do
    /// not wait.
    pub fn close_waiters(&self) {
        self.waiters.borrow_mut().close();
    }

    /// Whether [`Shard::close_waiters`] was called (the server is stopping).
    pub fn waiters_closed(&self) -> bool {
        self.waiters.borrow().is_closing()
    }

    /// A long poll for `actor`'s mail past `query.after`: answers (a `Fetched` reply, or
    /// `NoAgent`, `TooManyWaiters`) as soon as such mail is durable, or with an empty page
    /// after `timeout_ms`, or at once when the server stops. Waits on the agent's owner;
    /// dropping the future frees the waiter there (a remote one through `CancelWait`).
    pub async fn wait_for_mail(
        self: &Rc<Self>,
        actor: Actor,
        query: FetchQuery,
        timeout_ms: u64,
    ) -> Result<Reply, CallError> {
        let owner = self.owner_of(&actor.name);
        if owner == self.id {
            let (reply, end) = match self.start_wait(actor, query, timeout_ms, None) {
                WaitStart::Ready(reply, end) => (reply, end),
                WaitStart::Parked(parked) => parked.finish().await,
            };
            if let Some(journal) = &self.journal {
                journal.wait_durable(end).await;
            }
            return Ok(reply);
        }
        let wait_id = self.next_wait_id.get() + 1;
        self.next_wait_id.set(wait_id);
        let mut guard = CancelWait {
            shard: self,
            owner,
            wait_id,
            armed: true,
        };
        let request = Request::Wait {
            actor,
            query,
            timeout_ms,
            wait_id,
        };
        let reply = self.call(owner, request).await;
        guard.armed = false;
        reply
    }

    /// The owner's side of a long poll, its synchronous part: answers at once (with the reply
    /// and the log position it waits for) or registers a waiter, before anything else the
    /// shard handles, so a `CancelWait` behind it always finds it.
    pub(super) fn start_wait(
        self: &Rc<Self>,
        actor: Actor,
        query: FetchQuery,
        timeout_ms: u64,
        remote: Option<(usize, u64)>,
    ) -> WaitStart {
        let (first, end) = self.handle(Request::Fetch {
            actor: actor.clone(),
            query: query.clone(),
        });
        let nothing_yet = nothing_new(&first);
        if !nothing_yet || timeout_ms == 0 || self.waiters.borrow().is_closing() {
            return WaitStart::Ready(first, end);
        }
        let registered = self.waiters.borrow_mut().register(&actor.name, remote);
        let (id, first_waiter) = match registered {
            Ok(registered) => registered,
            Err((per_agent, max)) => {
                return WaitStart::Ready(Reply::TooManyWaiters { per_agent, max }, 0)
            }
        };
        if first_waiter {
            self.state.borrow_mut().watch(&actor.name, true);
        }
        WaitStart::Parked(Parked {
            shard: Rc::clone(self),
            actor,
            query,
            timeout: Duration::from_millis(timeout_ms),
            id,
            remote,
        })
    }
}

/// Whether a long poll's fetch found nothing to answer with yet: an empty page with nothing
/// more past it (an empty page *with* more is a message too large for the page's budget,
/// which waiting would not change).
fn nothing_new(reply: &Reply) -> bool {
    matches!(reply, Reply::Fetched(Ok(page)) if page.messages.is_empty() && !page.has_more)
}

/// What [`Shard::start_wait`] decided.
pub(super) enum WaitStart {
    Ready(Reply, u64),
    Parked(Parked),
}

/// A registered waiter; its entry is removed when it answers or is dropped (the client went
/// away).
pub(super) struct Parked {
    shard: Rc<Shard>,
    actor: Actor,
    query: FetchQuery,
    timeout: Duration,
    id: u64,
    remote: Option<(usize, u64)>,
}

impl Parked {
    /// Waits for a wake or the timeout; answers with the agent's page then (and the log
    /// position it waits for).
    pub(super) async fn finish(self) -> (Reply, u64) {
        let mut timeout = Box::pin(glommio::timer::sleep(self.timeout));
        loop {
            let woken = WaitForWake {
                waiters: &self.shard.waiters,
                name: &self.actor.name,
                id: self.id,
                timeout: timeout.as_mut(),
            }
            .await;
            let latest = self.shard.handle(Request::Fetch {
                actor: self.actor.clone(),
                query: self.query.clone(),
            });
            let found = !nothing_new(&latest.0);
            if found || woken != Some(Wake::Mail) {
                return latest;
            }
        }
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        let name = &self.actor.name;
        let last = self
            .shard
            .waiters
            .borrow_mut()
            .unregister(name, self.id, self.remote);
        if last {
            self.shard.state.borrow_mut().watch(name, false);
        }
    }
}

/// Ready when the waiter is woken, or (`None`) when its timeout passes.
struct WaitForWake<'a, T> {
    waiters: &'a RefCell<Waiters>,
    name: &'a str,
    id: u64,
    timeout: Pin<&'a mut T>,
}

impl<T: Future<Output = ()>> Future for WaitForWake<'_, T> {
    type Output = Option<Wake>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Wake>> {
        let this = self.get_mut();
        if let Some(wake) = this
            .waiters
            .borrow_mut()
            .poll(this.name, this.id, cx.waker())
        {
            return Poll::Ready(Some(wake));
        }
        this.timeout.as_mut().poll(cx).map(|()| None)
    }
}

/// Tells the owner of a remote long poll that its caller went away, unless disarmed. Sent
/// without waiting (a drop cannot await) and with its reply slot abandoned at once; if the
/// channel is full the cancel is skipped and the waiter lives until its timeout (bounded).
struct CancelWait<'a> {
    shard: &'a Shard,
    owner: usize,
    wait_id: u64,
    armed: bool,
}

impl Drop for CancelWait<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let request = Request::CancelWait {
            wait_id: self.wait_id,
        };
        let slot = self.shard.pending.borrow_mut().reserve();
        match self.shard.requests.try_send_to(self.owner, (slot, request)) {
            Ok(()) => {
                let mut pending = self.shard.pending.borrow_mut();
                pending.mark_sent(slot);
                pending.abandon(slot);
            }
            Err(_) => self.shard.pending.borrow_mut().release(slot),
        }
    }
}
