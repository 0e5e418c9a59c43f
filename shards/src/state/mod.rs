//! The state one shard owns: its agents, each with a delivery log (what it received, with
//! read/ack/drained state) and its sent messages. Plain synchronous code, so it is tested
//! directly (including a model-based property test) without any executor.
//!
//! Every change is appended to the shard's [`LogBuffer`] in the same step that makes it, and
//! [`ShardState::replay`] applies a logged record again: replaying a shard's log gives back
//! its state. The state does no I/O; the flusher (see [`crate::log::journal`]) writes the log.
//! A live change and its replay make the same calls: a delivery or sent copy enters, is
//! drained from or is evicted from an agent's logs only through `push_delivery`,
//! `push_sent`, `drain_front` and `evict` (in `agents`), the one place the totals change.
//!
//! A delivery log is a deque ordered by `seq`, which is contiguous (evictions only take the
//! front). Drains take the oldest undrained deliveries, so the drained ones are always a
//! prefix: the undrained inbox is the suffix from `drained` on.
//!
//! Here: the state, its totals and the dispatch of requests. One room per concept beside it:
//! - `agents`: an agent and its deliveries, registration, eviction, the agent list;
//! - `send`: a send's participant side (room, prepare, commit, abort, making mail visible);
//! - `reads`: drain, fetch, marks, threads, finding a message;
//! - `leases`: the file reservations of the projects this shard owns;
//! - `replay`: a logged record applied again;
//! - `images`: the whole state at one position (snapshots, resharding) and its records;
//! - `record`: what a logged record means, and its bytes (the log frames them);
//! - `outbox`: what is handed to the helper threads once its record is durable;
//! - `views`: the web view's bounded reads.

mod agents;
mod images;
mod leases;
pub mod outbox;
mod reads;
pub mod record;
mod replay;
mod send;
#[cfg(test)]
mod tests;
mod views;

pub use images::{
    agent_records, image_records, AgentImage, ImageEncoder, ProjectImage, StateImage,
};
pub use replay::ReplayError;
pub use send::PendingSend;

use crate::directory::Directory;
use crate::leases::ProjectLeases;
use crate::log::LogBuffer;
use crate::protocol::{Actor, Reply, Request};
use crate::routing::owner_of;
use agents::Agent;
use outbox::Outbox;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// `last_active` is logged at most this often per agent: a read then rarely costs a log
/// record, and a restart loses at most this much of it.
pub const ACTIVITY_LOG_INTERVAL_MS: i64 = 1_000;
/// `i64::MIN` stands for a time not set, so a delivery stays 40 bytes.
const UNSET: i64 = i64::MIN;

/// How much one agent holds: its undrained inbox (refusing more), and what it keeps once read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxLimits {
    pub messages: usize,
    /// Text bytes (from + subject + body) of the undrained messages.
    pub bytes: usize,
    /// Drained deliveries plus sent messages kept per agent (its history, beside the undrained
    /// inbox); past it the oldest of them are evicted.
    pub retained_messages: usize,
    /// Text bytes of those.
    pub retained_bytes: usize,
}

impl InboxLimits {
    /// Inbox caps with the default retention (10,000 messages, 4 MiB).
    pub fn inbox(messages: usize, bytes: usize) -> Self {
        InboxLimits {
            messages,
            bytes,
            retained_messages: 10_000,
            retained_bytes: 4 << 20,
        }
    }
}

#[derive(Debug)]
pub struct ShardState {
    shard_id: usize,
    shard_count: usize,
    agents: HashMap<Box<str>, Agent>,
    /// Undrained deliveries, and their text bytes, over all agents.
    queued_messages: usize,
    queued_bytes: usize,
    /// Text bytes retained over all agents (deliveries and sent messages).
    retained_bytes: usize,
    retained_messages: usize,
    limits: InboxLimits,
    pending: HashMap<Uuid, PendingSend>,
    recent_visible: Vec<Uuid>,
    /// With agent tokens on, acting as an agent takes its token.
    agent_auth: bool,
    /// Agents someone waits on (see `wait_for_mail`): new mail for them is noted in
    /// `new_mail` with the log position after it, so waiters wake once it is durable.
    watched: HashSet<Box<str>>,
    new_mail: Vec<(u64, Box<str>)>,
    /// File reservations, per project this shard owns (see `leases`), and the order the
    /// periodic sweep visits them in.
    projects: HashMap<Uuid, ProjectLeases>,
    project_order: Vec<Uuid>,
    sweep_cursor: usize,
    /// The projects of this shard's agents, for the web view.
    directory: Directory,
    log: LogBuffer,
    outbox: Outbox,
}

impl ShardState {
    /// A state whose changes are not logged (`none` durability, and tests).
    pub fn new(shard_id: usize, shard_count: usize, limits: InboxLimits) -> Self {
        Self::with_log(shard_id, shard_count, limits, LogBuffer::new(false, 0))
    }

    pub fn with_log(
        shard_id: usize,
        shard_count: usize,
        limits: InboxLimits,
        log: LogBuffer,
    ) -> Self {
        assert!(shard_id < shard_count, "shard id out of range");
        assert!(limits.messages > 0, "an inbox holds at least one message");
        ShardState {
            shard_id,
            shard_count,
            agents: HashMap::new(),
            queued_messages: 0,
            queued_bytes: 0,
            retained_bytes: 0,
            retained_messages: 0,
            limits,
            pending: HashMap::new(),
            recent_visible: Vec::new(),
            agent_auth: false,
            watched: HashSet::new(),
            new_mail: Vec::new(),
            projects: HashMap::new(),
            project_order: Vec::new(),
            sweep_cursor: 0,
            directory: Directory::default(),
            log,
            outbox: Outbox::default(),
        }
    }

    /// Turns agent tokens on (see `--agent-auth`).
    pub fn set_agent_auth(&mut self, on: bool) {
        self.agent_auth = on;
    }

    pub fn shard_id(&self) -> usize {
        self.shard_id
    }

    pub fn shard_count(&self) -> usize {
        self.shard_count
    }

    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    pub fn limits(&self) -> InboxLimits {
        self.limits
    }

    /// Undrained deliveries in all inboxes of this shard.
    pub fn queued_messages(&self) -> usize {
        self.queued_messages
    }

    /// Retained deliveries and sent messages (drained or not) of all agents of this shard.
    pub fn retained_messages(&self) -> usize {
        self.retained_messages
    }

    /// Text bytes of everything retained and prepared plus a fixed cost per agent and
    /// message: about what a snapshot of this state takes on disk.
    pub fn live_bytes(&self) -> usize {
        const AGENT_BYTES: usize = 200;
        const MESSAGE_BYTES: usize = 150;
        let pending_bytes: usize = self
            .pending
            .values()
            .map(|p| p.envelope.payload_len())
            .sum();
        self.retained_bytes
            + pending_bytes
            + self.agents.len() * AGENT_BYTES
            + (self.retained_messages + self.pending.len()) * MESSAGE_BYTES
    }

    pub fn log(&self) -> &LogBuffer {
        &self.log
    }

    pub fn log_mut(&mut self) -> &mut LogBuffer {
        &mut self.log
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn outbox_mut(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    /// The prepared message `id`, if it is pending here.
    pub fn pending_send(&self, id: &Uuid) -> Option<&PendingSend> {
        self.pending.get(id)
    }

    /// Multi-owner messages prepared here and neither committed nor aborted.
    pub fn pending(&self) -> impl Iterator<Item = &PendingSend> {
        self.pending.values()
    }

    /// Starts or stops noting new mail for `name` (someone waits on it).
    pub fn watch(&mut self, name: &str, on: bool) {
        if on {
            if !self.watched.contains(name) {
                self.watched.insert(name.into());
            }
        } else {
            self.watched.remove(name);
        }
    }

    /// New mail for watched agents since the last call, each with the log position that must
    /// be durable before a waiter may see it.
    pub fn take_new_mail(&mut self, out: &mut Vec<(u64, Box<str>)>) {
        out.append(&mut self.new_mail);
    }

    pub fn has_new_mail(&self) -> bool {
        !self.new_mail.is_empty()
    }

    /// Whether `name` exists and the actor's token (with agent tokens on) is its.
    pub fn knows(&self, actor: &Actor) -> bool {
        self.agents
            .get(&actor.name)
            .is_some_and(|agent| self.token_matches(agent, actor.token))
    }

    fn token_matches(&self, agent: &Agent, token: Option<Uuid>) -> bool {
        !self.agent_auth
            || (agent.profile.token_hash.is_some() && agent.profile.token_hash == token)
    }

    /// Answers one request. Never blocks and never calls another shard.
    pub fn handle(&mut self, request: Request) -> Reply {
        match request {
            Request::Register(registration) => self.register(registration),
            Request::Lookup { name, token } => {
                self.assert_owned(&name);
                Reply::Agent(
                    self.agents
                        .get(&name)
                        .filter(|agent| self.token_matches(agent, token))
                        .map(|a| a.profile.project_id),
                )
            }
            Request::Prepare { envelope, owners } => {
                Reply::Prepared(self.prepare(envelope, owners))
            }
            Request::Commit { id } => {
                self.commit(id);
                Reply::Settled
            }
            Request::Abort { id } => {
                self.abort(id);
                Reply::Settled
            }
            Request::Deliver { envelope } => Reply::Delivered(self.deliver(envelope)),
            Request::Drain {
                actor,
                max_weight,
                at_least_one,
            } => match self.act(&actor) {
                false => Reply::NoAgent,
                true => Reply::Drained(self.drain(&actor, max_weight, at_least_one)),
            },
            Request::Fetch { actor, query } => match self.act(&actor) {
                false => Reply::NoAgent,
                true => Reply::Fetched(self.fetch(&actor.name, &query)),
            },
            Request::Mark { actor, ids, ack } => match self.act(&actor) {
                false => Reply::NoAgent,
                true => Reply::Marked(self.mark(&actor, &ids, ack)),
            },
            Request::Thread { actor, query } => match self.act(&actor) {
                false => Reply::NoAgent,
                true => Reply::Thread(self.thread(&actor.name, &query)),
            },
            Request::Find { actor, id } => match self.act(&actor) {
                false => Reply::NoAgent,
                true => Reply::Found(self.find(&actor.name, &id)),
            },
            Request::Wait { actor, query, .. } => match self.act(&actor) {
                false => Reply::NoAgent,
                true => Reply::Fetched(self.fetch(&actor.name, &query)),
            },
            Request::CancelWait { .. } => Reply::Settled,
            Request::Whois { actor } => match self.act(&actor) {
                false => Reply::Agent(None),
                true => Reply::Agent(self.agents.get(&actor.name).map(|a| a.profile.project_id)),
            },
            Request::LastActive { name } => {
                Reply::LastActive(self.agents.get(&name).map(|a| a.last_active_ms))
            }
            Request::Leases(request) => self.leases(request),
            Request::ListAgents {
                project_id,
                active_since_ms,
                limit,
            } => Reply::Agents(self.list_agents(project_id, active_since_ms, limit)),
            Request::View(view) => Reply::View(self.view(view)),
        }
    }

    fn assert_owned(&self, name: &str) {
        debug_assert_eq!(
            owner_of(name, self.shard_count),
            self.shard_id,
            "agent {name} asked of a shard that does not own it"
        );
    }

    fn owns(&self, name: &str) -> bool {
        owner_of(name, self.shard_count) == self.shard_id
    }

    /// Checks the actor and records its activity; false if it does not exist here (or its
    /// token is wrong).
    fn act(&mut self, actor: &Actor) -> bool {
        self.assert_owned(&actor.name);
        if !self.knows(actor) {
            return false;
        }
        self.touch(&actor.name, actor.now_ms);
        true
    }

    /// Moves `last_active` forward, logging it at most every [`ACTIVITY_LOG_INTERVAL_MS`].
    fn touch(&mut self, name: &str, now_ms: i64) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        agent.last_active_ms = agent.last_active_ms.max(now_ms);
        if agent.last_active_ms - agent.logged_active_ms >= ACTIVITY_LOG_INTERVAL_MS {
            agent.logged_active_ms = agent.last_active_ms;
            let (at, next) = (agent.last_active_ms, agent.next_seq());
            self.log
                .append(|out| record::encode_activity(out, name, at, next));
        }
    }
}
