//! Cross-shard calls: request/reply over two bounded glommio channel meshes.
//!
//! Every pair of shards is joined at start-up by one SPSC channel per direction in each of two
//! meshes: one carries requests, the other replies. Replies get their own mesh so that a shard
//! answering a request never waits behind requests queued the other way; the reply side is
//! drained by a task that does nothing else, so a cross-shard call cannot deadlock.
//!
//! A call to the current shard takes the local fast path: [`ShardState::handle`] runs inline,
//! with no channel, no allocation and no await.
//!
//! Bound: at most `channel_capacity` requests wait in each direction between two shards.
//! A caller that finds the channel full waits (in [`Shard::submit`]) until the owner catches
//! up; on a connection that means the next pipelined request is not read yet, so pressure
//! flows back to the client through TCP instead of into memory.
//!
//! Beside the calls: `waits` (long polls), `flusher` (group commit), `compactor` (snapshots).

mod compactor;
mod flusher;
pub mod send;
mod waits;

use crate::cooperate::Turn;
use crate::log::journal::{Durability, Journal, WaitDurable};
use crate::protocol::{Reply, Request};
use crate::state::outbox::Emitted;
use crate::state::{InboxLimits, ShardState};
use crate::waiters::{WaiterLimits, Waiters};
use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::ConnectedReceiver;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use waits::WaitStart;

type RequestFrame = (u32, Request);
type ReplyFrame = (u32, Reply);

/// Why a cross-shard call failed. Only happens at start-up or during shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Joining the channel mesh at start-up failed.
    MeshJoin(String),
    /// The owner shard has closed its channels (the server is stopping).
    PeerClosed { owner: usize },
    /// A shard index outside `0..shard_count`; a routing bug.
    NoSuchShard { owner: usize },
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::MeshJoin(reason) => write!(f, "could not join the shard mesh: {reason}"),
            CallError::PeerClosed { owner } => write!(f, "shard {owner} is shutting down"),
            CallError::NoSuchShard { owner } => write!(f, "no shard {owner}"),
        }
    }
}

impl std::error::Error for CallError {}

/// The two meshes, built once in `main` and cloned into every shard's executor.
#[derive(Clone)]
pub struct MeshPair {
    requests: MeshBuilder<RequestFrame, Full>,
    replies: MeshBuilder<ReplyFrame, Full>,
    capacity: usize,
}

impl MeshPair {
    /// `channel_capacity` is the bound on queued requests (and replies) per direction
    /// between two shards.
    pub fn new(shard_count: usize, channel_capacity: usize) -> Self {
        assert!(shard_count > 0 && channel_capacity > 0);
        MeshPair {
            requests: MeshBuilder::full(shard_count, channel_capacity),
            replies: MeshBuilder::full(shard_count, channel_capacity),
            capacity: channel_capacity,
        }
    }

    pub fn shard_count(&self) -> usize {
        self.requests.nr_peers()
    }
}

/// Counters a shard keeps about its calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub agents: usize,
    pub queued_messages: usize,
    pub retained_messages: usize,
    /// Long polls parked here.
    pub waiters: usize,
    /// Cross-shard calls sent by this shard and not yet answered.
    pub in_flight: usize,
}

/// Where a shard's emissions go once durable (the search and git feeds).
pub type Sink = Box<dyn Fn(Emitted)>;

/// One shard: the state it owns plus its ends of the meshes. Lives on one executor (`Rc`).
pub struct Shard {
    id: usize,
    count: usize,
    state: RefCell<ShardState>,
    requests: Senders<RequestFrame>,
    replies: Senders<ReplyFrame>,
    pending: RefCell<Pending>,
    /// `None` in `none` durability: replies go out at once.
    journal: Option<Rc<Journal>>,
    sink: RefCell<Option<Sink>>,
    /// Reused by every release of emissions.
    released: RefCell<Vec<Emitted>>,
    /// Long polls parked here (see [`Shard::wait_for_mail`]).
    waiters: RefCell<Waiters>,
    /// New mail for agents someone waits on, with the log position that must be durable
    /// before their waiters wake.
    new_mail: RefCell<Vec<(u64, Box<str>)>>,
    /// Names this shard's remote waits, for cancelling them.
    next_wait_id: Cell<u64>,
}

/// A reply waiting for its log position to be durable before it goes back to the peer.
type HeldReply = (u32, Reply, u64);

impl Shard {
    /// Joins both meshes (every shard must call this) with a fresh, unlogged state.
    pub async fn join(mesh: MeshPair, limits: InboxLimits) -> Result<Rc<Shard>, CallError> {
        let count = mesh.shard_count();
        let start = |id| Ok((ShardState::new(id, count, limits), None));
        Self::join_with(mesh, WaiterLimits::default(), start).await
    }

    /// Joins both meshes (every shard must call this) and starts the tasks that answer peers'
    /// requests and collect their replies. The shard id is the mesh's peer id; `start` gives
    /// the state this shard starts with (recovered from its log, or empty, with every policy
    /// such as agent tokens already set: peers are served from here on) and, with a log, its
    /// journal: then every reply waits until its log position is durable.
    pub async fn join_with(
        mesh: MeshPair,
        waiter_limits: WaiterLimits,
        start: impl FnOnce(usize) -> Result<(ShardState, Option<Rc<Journal>>), String>,
    ) -> Result<Rc<Shard>, CallError> {
        let count = mesh.shard_count();
        let (requests, mut request_rx) = mesh
            .requests
            .join()
            .await
            .map_err(|e| CallError::MeshJoin(e.to_string()))?;
        let (replies, mut reply_rx) = mesh
            .replies
            .join()
            .await
            .map_err(|e| CallError::MeshJoin(e.to_string()))?;
        let id = requests.peer_id();
        if replies.peer_id() != id {
            return Err(CallError::MeshJoin(format!(
                "request mesh placed this shard at {id}, reply mesh at {}",
                replies.peer_id()
            )));
        }
        let (state, journal) = start(id).map_err(CallError::MeshJoin)?;
        if state.shard_id() != id || state.shard_count() != count {
            return Err(CallError::MeshJoin(format!(
                "shard {id} of {count} was given the state of shard {} of {}",
                state.shard_id(),
                state.shard_count()
            )));
        }
        let capacity = mesh.capacity;
        let shard = Rc::new(Shard {
            id,
            count,
            state: RefCell::new(state),
            requests,
            replies,
            pending: RefCell::new(Pending::default()),
            journal,
            sink: RefCell::new(None),
            released: RefCell::new(Vec::new()),
            waiters: RefCell::new(Waiters::new(waiter_limits)),
            new_mail: RefCell::new(Vec::new()),
            next_wait_id: Cell::new(0),
        });
        for (peer, rx) in request_rx.streams() {
            let (held_tx, held_rx) = local_channel::new_bounded(capacity);
            glommio::spawn_local(release_replies(Rc::clone(&shard), peer, held_rx)).detach();
            glommio::spawn_local(serve_peer(Rc::clone(&shard), peer, rx, Rc::new(held_tx)))
                .detach();
        }
        for (_, rx) in reply_rx.streams() {
            glommio::spawn_local(collect_replies(Rc::clone(&shard), rx)).detach();
        }
        Ok(shard)
    }

    pub fn id(&self) -> usize {
        self.id
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// How much each inbox of this shard (and of every other: they share one setting) holds.
    pub fn inbox_limits(&self) -> InboxLimits {
        self.state.borrow().limits()
    }

    /// The shard that owns `name`.
    pub fn owner_of(&self, name: &str) -> usize {
        crate::routing::owner_of(name, self.count)
    }

    /// Where emissions go once their records are durable. Until it is set they wait.
    pub fn set_sink(&self, sink: Sink) {
        *self.sink.borrow_mut() = Some(sink);
        let durable = self.journal.as_ref().map_or(0, |j| j.durable());
        self.release_events(durable);
    }

    pub fn journal(&self) -> Option<&Rc<Journal>> {
        self.journal.as_ref()
    }

    /// Runs `f` on the state (for snapshots and gauges); never across an await.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut ShardState) -> R) -> R {
        f(&mut self.state.borrow_mut())
    }

    /// Handles `request` here and returns the reply with the log position it must wait for.
    fn handle(&self, request: Request) -> (Reply, u64) {
        // A commit or abort need not wait for its own record: the prepares before it are
        // durable, and recovery decides from them (see `crate::recovery`).
        let settles = matches!(request, Request::Commit { .. } | Request::Abort { .. });
        let mut state = self.state.borrow_mut();
        let reply = state.handle(request);
        if state.has_new_mail() {
            state.take_new_mail(&mut self.new_mail.borrow_mut());
        }
        let log = state.log();
        let (end, unwritten) = (log.end(), log.pending_bytes() > 0);
        let events = state.outbox().has_events();
        drop(state);
        match &self.journal {
            Some(journal) if unwritten => journal.kick(),
            Some(_) => {}
            None => {
                if events {
                    self.release_events(0);
                }
                self.wake_for_mail(0);
            }
        }
        (reply, if settles { 0 } else { end })
    }

    pub fn stats(&self) -> ShardStats {
        let state = self.state.borrow();
        ShardStats {
            agents: state.agent_count(),
            queued_messages: state.queued_messages(),
            retained_messages: state.retained_messages(),
            waiters: self.waiters.borrow().len(),
            in_flight: self.pending.borrow().in_flight,
        }
    }

    /// Sends `request` to `owner` and returns a ticket for the reply. Sending several requests
    /// before awaiting their tickets runs them on their owners in parallel.
    pub async fn submit(&self, owner: usize, request: Request) -> Result<Ticket<'_>, CallError> {
        if owner == self.id {
            let (reply, end) = self.handle(request);
            let wait = self.journal.as_ref().map(|j| reply_wait(j, &reply, end));
            return Ok(match wait {
                Some(wait) if !wait.is_done() => Ticket::Durable {
                    wait,
                    reply: Some(reply),
                },
                _ => Ticket::Ready(Some(reply)),
            });
        }
        if owner >= self.count {
            return Err(CallError::NoSuchShard { owner });
        }
        let slot = self.pending.borrow_mut().reserve();
        // Built before the send so that dropping this future mid-send frees the slot.
        let ticket = Ticket::Remote { shard: self, slot };
        match self.requests.send_to(owner, (slot, request)).await {
            Ok(()) => {
                self.pending.borrow_mut().mark_sent(slot);
                Ok(ticket)
            }
            Err(_) => Err(CallError::PeerClosed { owner }),
        }
    }

    /// Submits `request` to `owner` and waits for the reply.
    pub async fn call(&self, owner: usize, request: Request) -> Result<Reply, CallError> {
        Ok(self.submit(owner, request).await?.await)
    }

    /// Closes this shard's sending ends. Peers' serving tasks then finish; call it only once
    /// every shard has stopped issuing calls.
    pub fn close(&self) {
        self.requests.close();
        self.replies.close();
    }
}

// Both loops below take turns (see `cooperate`): a channel with items waiting (and room to
// reply) completes every `recv`/`send_to` at once, so a busy peer would otherwise keep this
// shard from its own connections.

/// Handles each request from `peer` at once and hands its reply to [`release_replies`], which
/// sends it once durable. The two are joined by a local channel as deep as the mesh's, so a
/// slow disk holds back this peer's requests rather than growing a queue. A long poll runs
/// as a task of its own and hands its reply over the same way when it answers.
async fn serve_peer(
    shard: Rc<Shard>,
    peer: usize,
    rx: ConnectedReceiver<RequestFrame>,
    held: Rc<LocalSender<HeldReply>>,
) {
    let mut turn = Turn::new();
    while let Some((slot, request)) = turn.wait(rx.recv()).await {
        let (reply, end) = match request {
            Request::Wait {
                actor,
                query,
                timeout_ms,
                wait_id,
            } => match shard.start_wait(actor, query, timeout_ms, Some((peer, wait_id))) {
                WaitStart::Ready(reply, end) => (reply, end),
                WaitStart::Parked(parked) => {
                    let held = Rc::clone(&held);
                    glommio::spawn_local(async move {
                        let (reply, end) = parked.finish().await;
                        // Fails only once the server is stopping; the caller is gone then too.
                        let _ = held.send((slot, reply, end)).await;
                    })
                    .detach();
                    turn.done().await;
                    continue;
                }
            },
            Request::CancelWait { wait_id } => {
                shard.waiters.borrow_mut().cancel(peer, wait_id);
                (Reply::Settled, 0)
            }
            request => shard.handle(request),
        };
        if turn.wait(held.send((slot, reply, end))).await.is_err() {
            break;
        }
        turn.done().await;
    }
}

/// Sends one reply to `peer` and takes its turn; false once the peer has closed.
async fn send_reply(shard: &Shard, turn: &mut Turn, peer: usize, slot: u32, reply: Reply) -> bool {
    if turn
        .wait(shard.replies.send_to(peer, (slot, reply)))
        .await
        .is_err()
    {
        return false;
    }
    turn.done().await;
    true
}

/// What a reply waits for before it goes out: its records durable, and in `batch` mode a
/// granted prepare also synced (see [`Journal::wait_synced`]).
fn reply_wait(journal: &Rc<Journal>, reply: &Reply, end: u64) -> WaitDurable {
    if waits_for_sync(journal.mode(), reply) {
        journal.wait_synced(end)
    } else {
        journal.wait_durable(end)
    }
}

/// Whether `reply` must wait for a sync, not only a write, in `mode`: a granted prepare in
/// `batch` mode (in `fsync` mode every write is synced anyway).
fn waits_for_sync(mode: Durability, reply: &Reply) -> bool {
    matches!(mode, Durability::Batch { .. }) && matches!(reply, Reply::Prepared(Ok(_)))
}

/// Sends replies to `peer` in the order they were produced, each once its position is durable.
async fn release_replies(shard: Rc<Shard>, peer: usize, held: LocalReceiver<HeldReply>) {
    let journal = shard.journal.clone();
    let mut turn = Turn::new();
    while let Some((slot, reply, end)) = turn.wait(held.recv()).await {
        if let Some(journal) = &journal {
            turn.wait(reply_wait(journal, &reply, end)).await;
        }
        if !send_reply(&shard, &mut turn, peer, slot, reply).await {
            break;
        }
    }
}

async fn collect_replies(shard: Rc<Shard>, rx: ConnectedReceiver<ReplyFrame>) {
    let mut turn = Turn::new();
    while let Some((slot, reply)) = turn.wait(rx.recv()).await {
        shard.pending.borrow_mut().complete(slot, reply);
        turn.done().await;
    }
}

/// The reply to a submitted request.
pub enum Ticket<'a> {
    /// Answered already (local fast path).
    Ready(Option<Reply>),
    /// Answered here, released once its log position is durable.
    Durable {
        wait: crate::log::journal::WaitDurable,
        reply: Option<Reply>,
    },
    /// Waiting for the owner shard.
    Remote { shard: &'a Shard, slot: u32 },
}

impl Future for Ticket<'_> {
    type Output = Reply;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        let this = self.get_mut();
        match this {
            Ticket::Ready(reply) => match reply.take() {
                Some(reply) => Poll::Ready(reply),
                None => panic!("ticket polled after completion"),
            },
            Ticket::Durable { wait, reply } => match Pin::new(wait).poll(cx) {
                Poll::Ready(()) => match reply.take() {
                    Some(reply) => Poll::Ready(reply),
                    None => panic!("ticket polled after completion"),
                },
                Poll::Pending => Poll::Pending,
            },
            Ticket::Remote { shard, slot } => {
                let polled = shard.pending.borrow_mut().poll(*slot, cx.waker());
                if polled.is_ready() {
                    *this = Ticket::Ready(None);
                }
                polled
            }
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Ticket::Remote { shard, slot } = self {
            shard.pending.borrow_mut().abandon(*slot);
        }
    }
}

/// Reply slots for this shard's outstanding cross-shard calls, indexed by the slot number
/// that travels with the request. Slots are reused, so the table grows only to the peak number
/// of calls outstanding at once. Each call belongs to a task serving one connection, so that
/// peak is bounded by the open connections (each waits for one call at a time, or one per
/// owner shard for a multi-owner send), not by the channel capacities alone.
#[derive(Default)]
struct Pending {
    slots: Vec<Slot>,
    free: Vec<u32>,
    in_flight: usize,
}

enum Slot {
    Free,
    /// Reserved for a request that is still being sent.
    Reserved,
    Waiting(Option<Waker>),
    Ready(Reply),
    /// The caller went away; free the slot when the reply arrives.
    Abandoned,
}

impl Pending {
    fn reserve(&mut self) -> u32 {
        self.in_flight += 1;
        if let Some(slot) = self.free.pop() {
            debug_assert!(matches!(self.slots[slot as usize], Slot::Free));
            self.slots[slot as usize] = Slot::Reserved;
            return slot;
        }
        let slot = u32::try_from(self.slots.len()).expect("fewer than 2^32 calls in flight");
        self.slots.push(Slot::Reserved);
        slot
    }

    fn release(&mut self, slot: u32) {
        self.slots[slot as usize] = Slot::Free;
        self.free.push(slot);
        self.in_flight -= 1;
    }

    fn mark_sent(&mut self, slot: u32) {
        let entry = &mut self.slots[slot as usize];
        assert!(matches!(entry, Slot::Reserved), "slot {slot} sent twice");
        *entry = Slot::Waiting(None);
    }

    fn complete(&mut self, slot: u32, reply: Reply) {
        let entry = &mut self.slots[slot as usize];
        match std::mem::replace(entry, Slot::Free) {
            Slot::Waiting(waker) => {
                *entry = Slot::Ready(reply);
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            Slot::Abandoned => self.release(slot),
            Slot::Free | Slot::Reserved | Slot::Ready(_) => {
                panic!("reply for slot {slot} that is not waiting: replies must match requests")
            }
        }
    }

    fn poll(&mut self, slot: u32, waker: &Waker) -> Poll<Reply> {
        let entry = &mut self.slots[slot as usize];
        match entry {
            Slot::Ready(_) => {
                let Slot::Ready(reply) = std::mem::replace(entry, Slot::Free) else {
                    unreachable!()
                };
                self.release(slot);
                Poll::Ready(reply)
            }
            Slot::Waiting(stored) => {
                if !stored.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    *stored = Some(waker.clone());
                }
                Poll::Pending
            }
            Slot::Free | Slot::Reserved | Slot::Abandoned => {
                panic!("ticket for slot {slot} polled in the wrong state")
            }
        }
    }

    fn abandon(&mut self, slot: u32) {
        let entry = &mut self.slots[slot as usize];
        match entry {
            Slot::Reserved | Slot::Ready(_) => self.release(slot),
            Slot::Waiting(_) => *entry = Slot::Abandoned,
            Slot::Free | Slot::Abandoned => {}
        }
    }
}

#[cfg(test)]
mod reply_wait_tests {
    use super::*;
    use crate::protocol::Undeliverable;
    use std::time::Duration;

    #[test]
    fn only_a_granted_prepare_in_batch_mode_waits_for_the_sync() {
        let batch = Durability::Batch {
            fsync_interval: Duration::from_millis(10),
        };
        assert!(waits_for_sync(batch, &Reply::Prepared(Ok(1))));
        let refused = Reply::Prepared(Err(Undeliverable::InboxFull(Vec::new())));
        assert!(!waits_for_sync(batch, &refused), "a refusal logs nothing");
        assert!(
            !waits_for_sync(batch, &Reply::Settled),
            "commits need only the write"
        );
        assert!(!waits_for_sync(batch, &Reply::Delivered(Ok(1))));
        assert!(!waits_for_sync(Durability::Fsync, &Reply::Prepared(Ok(1))));
    }
}
