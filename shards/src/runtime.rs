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

use crate::cooperate::Turn;
use crate::protocol::{Reply, Request};
use crate::state::{InboxLimits, ShardState};
use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};
use glommio::channels::shared_channel::ConnectedReceiver;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

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
}

impl MeshPair {
    /// `channel_capacity` is the bound on queued requests (and replies) per direction
    /// between two shards.
    pub fn new(shard_count: usize, channel_capacity: usize) -> Self {
        assert!(shard_count > 0 && channel_capacity > 0);
        MeshPair {
            requests: MeshBuilder::full(shard_count, channel_capacity),
            replies: MeshBuilder::full(shard_count, channel_capacity),
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
    /// Cross-shard calls sent by this shard and not yet answered.
    pub in_flight: usize,
}

/// One shard: the state it owns plus its ends of the meshes. Lives on one executor (`Rc`).
pub struct Shard {
    id: usize,
    count: usize,
    state: RefCell<ShardState>,
    requests: Senders<RequestFrame>,
    replies: Senders<ReplyFrame>,
    pending: RefCell<Pending>,
}

impl Shard {
    /// Joins both meshes (every shard must call this) and starts the tasks that answer peers'
    /// requests and collect their replies. The shard id is the mesh's peer id.
    pub async fn join(mesh: MeshPair, limits: InboxLimits) -> Result<Rc<Shard>, CallError> {
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
        let shard = Rc::new(Shard {
            id,
            count,
            state: RefCell::new(ShardState::new(id, count, limits)),
            requests,
            replies,
            pending: RefCell::new(Pending::default()),
        });
        for (peer, rx) in request_rx.streams() {
            glommio::spawn_local(serve_peer(Rc::clone(&shard), peer, rx)).detach();
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

    pub fn stats(&self) -> ShardStats {
        let state = self.state.borrow();
        ShardStats {
            agents: state.agent_count(),
            queued_messages: state.queued_messages(),
            in_flight: self.pending.borrow().in_flight,
        }
    }

    /// Sends `request` to `owner` and returns a ticket for the reply. Sending several requests
    /// before awaiting their tickets runs them on their owners in parallel.
    pub async fn submit(&self, owner: usize, request: Request) -> Result<Ticket<'_>, CallError> {
        if owner == self.id {
            let reply = self.state.borrow_mut().handle(request);
            return Ok(Ticket::Ready(Some(reply)));
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

async fn serve_peer(shard: Rc<Shard>, peer: usize, rx: ConnectedReceiver<RequestFrame>) {
    let mut turn = Turn::new();
    while let Some((slot, request)) = turn.wait(rx.recv()).await {
        let reply = shard.state.borrow_mut().handle(request);
        if turn
            .wait(shard.replies.send_to(peer, (slot, reply)))
            .await
            .is_err()
        {
            break;
        }
        turn.done().await;
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
