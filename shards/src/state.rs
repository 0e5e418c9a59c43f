//! The state one shard owns: its agents, each with a delivery log (what it received, with
//! read/ack/drained state) and its sent messages. Plain synchronous code, so it is tested
//! directly (including a model-based property test) without any executor.
//!
//! Every change is appended to the shard's [`LogBuffer`] in the same step that makes it, and
//! [`ShardState::replay`] applies a logged record again: replaying a shard's log gives back
//! its state. The state does no I/O; the flusher (see [`crate::log::journal`]) writes the log.
//!
//! A delivery log is a deque ordered by `seq`, which is contiguous (evictions only take the
//! front). Drains take the oldest undrained deliveries, so the drained ones are always a
//! prefix: the undrained inbox is the suffix from `drained` on.

mod views;

use crate::directory::Directory;
use crate::envelope::{Importance, SharedEnvelope};
use crate::glob;
use crate::leases::{owner_of_project, Lease, LeaseError, ProjectLeases};
use crate::log::record::{self, DeliveryState, Record};
use crate::log::{Emitted, LogBuffer};
use crate::protocol::{
    Actor, AgentProfile, AgentSummary, Counts, DeliveryView, DrainedPage, FetchPage, FetchQuery,
    Kind, LeaseOp, LeaseRequest, Marked, RegisterMode, Registration, Reply, Request, ThreadItem,
    ThreadPage, ThreadQuery, Undeliverable, UnknownCursor,
};
use crate::routing::owner_of;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use uuid::Uuid;

/// `last_active` is logged at most this often per agent: a read then rarely costs a log
/// record, and a restart loses at most this much of it.
pub const ACTIVITY_LOG_INTERVAL_MS: i64 = 1_000;
/// `i64::MIN` stands for a time not set, so a delivery stays 40 bytes.
const UNSET: i64 = i64::MIN;

#[derive(Debug)]
struct Delivery {
    envelope: SharedEnvelope,
    read_at: i64,
    acked_at: i64,
    drained: bool,
}

impl Delivery {
    fn unread(&self) -> bool {
        self.read_at == UNSET
    }

    fn urgent(&self) -> bool {
        self.envelope.importance == Importance::Urgent
    }

    fn ack_pending(&self) -> bool {
        self.envelope.ack_required && self.acked_at == UNSET
    }
}

fn time(value: i64) -> Option<i64> {
    (value != UNSET).then_some(value)
}

#[derive(Debug)]
struct Agent {
    profile: AgentProfile,
    last_active_ms: i64,
    /// The `last_active` the log holds.
    logged_active_ms: i64,
    deliveries: VecDeque<Delivery>,
    /// The `seq` of `deliveries[0]` (or of the next delivery when there is none).
    first_seq: u64,
    /// Deliveries at the front that are drained.
    drained: usize,
    sent: VecDeque<SharedEnvelope>,
    /// Text bytes of the undrained deliveries.
    queued_bytes: usize,
    /// Weights of the undrained deliveries (see `Envelope::weight`): a drain that allows this
    /// much takes the whole inbox at once.
    queued_weight: usize,
    /// Text bytes of every retained delivery and sent message.
    retained_bytes: usize,
    counts: Counts,
    /// Places (and their bytes) held by prepared messages not yet visible; they count
    /// against the caps.
    reserved: usize,
    reserved_bytes: usize,
}

impl Agent {
    fn new(profile: AgentProfile) -> Self {
        let created = profile.created_ms;
        Agent {
            profile,
            last_active_ms: created,
            logged_active_ms: created,
            deliveries: VecDeque::new(),
            first_seq: 1,
            drained: 0,
            sent: VecDeque::new(),
            queued_bytes: 0,
            queued_weight: 0,
            retained_bytes: 0,
            counts: Counts::default(),
            reserved: 0,
            reserved_bytes: 0,
        }
    }

    fn undrained(&self) -> usize {
        self.deliveries.len() - self.drained
    }

    fn next_seq(&self) -> u64 {
        self.first_seq + self.deliveries.len() as u64
    }

    fn has_room(&self, limits: &InboxLimits, incoming_bytes: usize) -> bool {
        self.undrained() + self.reserved < limits.messages
            && self.queued_bytes + self.reserved_bytes + incoming_bytes <= limits.bytes
    }

    fn count(&mut self, delivery: &Delivery, add: bool) {
        let step = |n: &mut usize| {
            if add {
                *n += 1
            } else {
                *n -= 1
            }
        };
        if delivery.unread() {
            step(&mut self.counts.unread);
            if delivery.urgent() {
                step(&mut self.counts.urgent_unread);
            }
        }
        if delivery.ack_pending() {
            step(&mut self.counts.ack_pending);
        }
    }

    /// Appends a delivery with the next `seq`; returns the bytes it adds to the inbox.
    fn push(&mut self, delivery: Delivery) -> usize {
        let bytes = delivery.envelope.payload_len();
        if !delivery.drained {
            self.queued_bytes += bytes;
            self.queued_weight = self
                .queued_weight
                .saturating_add(delivery.envelope.weight());
        } else {
            assert_eq!(
                self.drained,
                self.deliveries.len(),
                "drained deliveries are a prefix"
            );
            self.drained += 1;
        }
        self.retained_bytes += bytes;
        self.count(&delivery, true);
        self.deliveries.push_back(delivery);
        bytes
    }

    fn kind_of(&self, envelope: &SharedEnvelope) -> Kind {
        if envelope.cc().any(|n| n == &*self.profile.name) {
            Kind::Cc
        } else {
            Kind::To
        }
    }

    fn view(&self, index: usize) -> DeliveryView {
        let d = &self.deliveries[index];
        DeliveryView {
            seq: self.first_seq + index as u64,
            envelope: SharedEnvelope::clone(&d.envelope),
            kind: self.kind_of(&d.envelope),
            read_at: time(d.read_at),
            acked_at: time(d.acked_at),
            drained: d.drained,
        }
    }

    /// Marks the `count` oldest undrained deliveries drained (and read at `at_ms` if unread).
    fn mark_drained(&mut self, count: usize, at_ms: i64) -> (usize, usize) {
        let (mut bytes, mut weight) = (0usize, 0usize);
        for index in self.drained..self.drained + count {
            let unread = self.deliveries[index].unread();
            let urgent = self.deliveries[index].urgent();
            let d = &mut self.deliveries[index];
            d.drained = true;
            bytes += d.envelope.payload_len();
            weight = weight.saturating_add(d.envelope.weight());
            if unread {
                d.read_at = at_ms;
                self.counts.unread -= 1;
                if urgent {
                    self.counts.urgent_unread -= 1;
                }
            }
        }
        self.drained += count;
        self.queued_bytes -= bytes;
        self.queued_weight = self.queued_weight.saturating_sub(weight);
        (count, bytes)
    }

    /// Evicts the oldest drained deliveries and sent messages (oldest first) while retention
    /// is exceeded. Undrained deliveries are never evicted.
    fn evict(&mut self, limits: &InboxLimits) {
        // The bounds hold the history (drained deliveries and sent messages); the undrained
        // inbox has its own caps.
        while self.drained + self.sent.len() > limits.retained_messages
            || self.retained_bytes - self.queued_bytes > limits.retained_bytes
        {
            let delivery_time =
                (self.drained > 0).then(|| self.deliveries[0].envelope.timestamp_ms);
            let sent_time = self.sent.front().map(|e| e.timestamp_ms);
            let take_delivery = match (delivery_time, sent_time) {
                (Some(d), Some(s)) => d <= s,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_delivery {
                if let Some(delivery) = self.deliveries.pop_front() {
                    self.count(&delivery, false);
                    self.retained_bytes -= delivery.envelope.payload_len();
                    self.drained -= 1;
                    self.first_seq += 1;
                }
            } else if let Some(envelope) = self.sent.pop_front() {
                self.retained_bytes -= envelope.payload_len();
            }
        }
    }

    /// Index of the delivery of message `id`, if retained.
    fn delivery_index(&self, id: &Uuid) -> Option<usize> {
        self.deliveries.iter().position(|d| d.envelope.id == *id)
    }
}

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

/// A message prepared on this shard (step one of a multi-owner send), invisible.
#[derive(Debug, Clone)]
pub struct PendingSend {
    pub envelope: SharedEnvelope,
    pub owners: u16,
    /// The recipients this shard owns.
    local: Vec<Box<str>>,
}

/// A logged record that does not fit the state it is replayed onto: the log is damaged or
/// from another layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayError(pub String);

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An agent's whole state, as a snapshot holds it or a reshard moves it.
#[derive(Debug, Clone)]
pub struct AgentImage {
    pub profile: AgentProfile,
    pub last_active_ms: i64,
    pub next_seq: u64,
    pub deliveries: Vec<(DeliveryState, SharedEnvelope)>,
    pub sent: Vec<SharedEnvelope>,
}

/// Pointers to a shard's whole state at one log position, copied in one synchronous step so a
/// snapshot can be written in the background while requests go on.
#[derive(Debug)]
pub struct StateImage {
    /// Every record below this position is reflected here.
    pub position: u64,
    pub agents: Vec<AgentImage>,
    pub pending: Vec<PendingSend>,
    /// Multi-owner messages made visible here since the previous image: kept as markers, so
    /// another owner whose `Visible` record was not yet durable still learns the send went
    /// through (see recovery).
    pub recent_visible: Vec<Uuid>,
    /// The file reservations of the projects this shard owns.
    pub projects: Vec<ProjectImage>,
}

/// One project's reservations, as a snapshot holds them or a reshard moves them.
#[derive(Debug, Clone)]
pub struct ProjectImage {
    pub project_id: Uuid,
    pub next_id: u64,
    pub leases: Vec<Lease>,
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

    fn register(&mut self, r: Registration) -> Reply {
        self.assert_owned(&r.name);
        let auth = self.agent_auth;
        let mut token_issued = false;
        let (profile, created) = if let Some(agent) = self.agents.get_mut(&r.name) {
            let profile = &mut agent.profile;
            if r.mode == RegisterMode::CreateOnly || profile.project_id != r.project_id {
                return Reply::NameTaken {
                    project_id: profile.project_id,
                };
            }
            if auth && profile.token_hash.is_some() && profile.token_hash != r.token {
                return Reply::NoAgent;
            }
            if let Some(program) = r.program {
                profile.program = program;
            }
            if let Some(model) = r.model {
                profile.model = model;
            }
            if let Some(task) = r.task_description {
                profile.task_description = task;
            }
            if auth && profile.token_hash.is_none() && r.new_token_hash.is_some() {
                profile.token_hash = r.new_token_hash;
                token_issued = true;
            }
            profile.updated_ms = r.now_ms;
            profile.version += 1;
            (profile.clone(), false)
        } else {
            token_issued = auth && r.new_token_hash.is_some();
            let profile = AgentProfile {
                id: r.new_id,
                name: r.name.clone(),
                project_id: r.project_id,
                project_key: r.project_key,
                program: r.program.unwrap_or_default(),
                model: r.model.unwrap_or_default(),
                created_ms: r.now_ms,
                updated_ms: r.now_ms,
                version: 1,
                task_description: r.task_description.unwrap_or_default(),
                token_hash: if auth { r.new_token_hash } else { None },
            };
            self.directory
                .add_agent(profile.project_id, &profile.project_key, &profile.name);
            self.agents
                .insert(r.name.clone(), Agent::new(profile.clone()));
            (profile, true)
        };
        let seq = self.log.append(|out| record::encode_agent(out, &profile));
        self.touch(&r.name, r.now_ms);
        let event = profile.clone();
        self.log.emit(
            |seq| Emitted::Profile {
                profile: event,
                created,
                seq,
            },
            seq,
        );
        Reply::Registered {
            profile,
            created,
            token_issued,
        }
    }

    /// The recipients of `envelope` this shard owns.
    fn local_recipients(&self, envelope: &SharedEnvelope) -> Vec<Box<str>> {
        envelope
            .recipients()
            .filter(|name| self.owns(name))
            .map(Box::from)
            .collect()
    }

    /// Why `names` cannot all take one more message of `bytes` now, if they cannot. Collected
    /// only when something is wrong, so the common path allocates nothing.
    fn refusal(&self, names: &[Box<str>], bytes: usize) -> Option<Undeliverable> {
        let unknown: Vec<Box<str>> = names
            .iter()
            .filter(|name| !self.agents.contains_key(&***name))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Some(Undeliverable::UnknownRecipients(unknown));
        }
        let full: Vec<Box<str>> = names
            .iter()
            .filter(|name| {
                self.agents
                    .get(&***name)
                    .is_some_and(|a| !a.has_room(&self.limits, bytes))
            })
            .cloned()
            .collect();
        (!full.is_empty()).then_some(Undeliverable::InboxFull(full))
    }

    fn prepare(&mut self, envelope: SharedEnvelope, owners: u16) -> Result<usize, Undeliverable> {
        let local = self.local_recipients(&envelope);
        if let Some(refusal) = self.refusal(&local, envelope.payload_len()) {
            return Err(refusal);
        }
        self.log
            .append(|out| record::encode_message(out, &envelope, Some(owners)));
        Ok(self.hold(PendingSend {
            envelope,
            owners,
            local,
        }))
    }

    /// Holds a place in each local recipient's inbox for a prepared message.
    fn hold(&mut self, send: PendingSend) -> usize {
        let bytes = send.envelope.payload_len();
        for name in &send.local {
            if let Some(agent) = self.agents.get_mut(name) {
                agent.reserved += 1;
                agent.reserved_bytes += bytes;
            }
        }
        let count = send.local.len();
        self.pending.insert(send.envelope.id, send);
        count
    }

    /// Gives back the places a prepared message held.
    fn unhold(&mut self, send: &PendingSend) {
        let bytes = send.envelope.payload_len();
        for name in &send.local {
            if let Some(agent) = self.agents.get_mut(name) {
                assert!(
                    agent.reserved > 0 && agent.reserved_bytes >= bytes,
                    "{name} holds no place for a prepared message"
                );
                agent.reserved -= 1;
                agent.reserved_bytes -= bytes;
            }
        }
    }

    /// Makes a prepared message visible. Unknown ids are ignored: a commit only follows a
    /// granted prepare, so there is none in a correct run.
    pub fn commit(&mut self, id: Uuid) {
        let Some(send) = self.pending.remove(&id) else {
            debug_assert!(false, "commit of {id} without a prepare");
            return;
        };
        self.unhold(&send);
        let seq = self.log.append(|out| record::encode_visible(out, &id));
        self.make_visible(&send.local, &send.envelope);
        // Kept for the next snapshot only; without a log there is none (and no bound).
        if self.log.enabled() {
            self.recent_visible.push(id);
        }
        if self.emits(&send.envelope) {
            self.log.emit(
                |seq| Emitted::Message {
                    envelope: send.envelope,
                    seq,
                },
                seq,
            );
        }
    }

    /// Drops a prepared message.
    pub fn abort(&mut self, id: Uuid) {
        let Some(send) = self.pending.remove(&id) else {
            return;
        };
        self.unhold(&send);
        self.log.append(|out| record::encode_aborted(out, &id));
    }

    /// Whether this shard indexes `envelope`: the lowest owner of its parties (sender and
    /// recipients) does, so a message is indexed once however many owners it has.
    pub fn emits(&self, envelope: &SharedEnvelope) -> bool {
        let sender = envelope.sender_took_part.then_some(envelope.from());
        envelope
            .recipients()
            .chain(sender)
            .map(|name| owner_of(name, self.shard_count))
            .min()
            == Some(self.shard_id)
    }

    /// Delivers `envelope` to `local` recipients and gives the sender (if it is here) its
    /// sent copy.
    fn make_visible(&mut self, local: &[Box<str>], envelope: &SharedEnvelope) {
        let position = self.log.end();
        let limits = self.limits;
        for name in local {
            let Some(agent) = self.agents.get_mut(name) else {
                continue;
            };
            let before = (
                agent.deliveries.len() + agent.sent.len(),
                agent.retained_bytes,
            );
            let bytes = agent.push(Delivery {
                envelope: SharedEnvelope::clone(envelope),
                read_at: UNSET,
                acked_at: UNSET,
                drained: false,
            });
            agent.evict(&limits);
            self.directory.queued(&agent.profile.project_id, 1, 0);
            self.queued_messages += 1;
            self.queued_bytes += bytes;
            self.account(before, name);
            if self.watched.contains(name) {
                self.new_mail.push((position, name.clone()));
            }
        }
        let from = envelope.from();
        if self.owns(from) {
            // A first-format snapshot lists a message once per local recipient: one copy.
            let copied = |agent: &Agent| {
                !envelope.sender_took_part && agent.sent.iter().any(|e| e.id == envelope.id)
            };
            if let Some(agent) = self.agents.get_mut(from).filter(|a| !copied(a)) {
                let before = (
                    agent.deliveries.len() + agent.sent.len(),
                    agent.retained_bytes,
                );
                agent.sent.push_back(SharedEnvelope::clone(envelope));
                agent.retained_bytes += envelope.payload_len();
                agent.last_active_ms = agent.last_active_ms.max(envelope.timestamp_ms);
                agent.logged_active_ms = agent.logged_active_ms.max(envelope.timestamp_ms);
                agent.evict(&limits);
                let project_id = agent.profile.project_id;
                self.account(before, from);
                self.directory.sent(&project_id, envelope);
            }
        }
    }

    /// Carries one agent's change of retained messages and bytes into the shard's totals.
    fn account(&mut self, before: (usize, usize), name: &str) {
        if let Some(agent) = self.agents.get(name) {
            let after = (
                agent.deliveries.len() + agent.sent.len(),
                agent.retained_bytes,
            );
            self.retained_messages = self.retained_messages + after.0 - before.0;
            self.retained_bytes = self.retained_bytes + after.1 - before.1;
        }
    }

    fn deliver(&mut self, envelope: SharedEnvelope) -> Result<usize, Undeliverable> {
        let local = self.local_recipients(&envelope);
        debug_assert!(
            local
                .iter()
                .enumerate()
                .all(|(i, n)| !local[..i].contains(n)),
            "callers list each recipient once"
        );
        if let Some(refusal) = self.refusal(&local, envelope.payload_len()) {
            return Err(refusal);
        }
        let seq = self
            .log
            .append(|out| record::encode_message(out, &envelope, None));
        self.make_visible(&local, &envelope);
        self.log.emit(|seq| Emitted::Message { envelope, seq }, seq);
        Ok(local.len())
    }

    /// The oldest undrained deliveries of the actor while their weights add up to at most
    /// `max_weight` (with `at_least_one`, the oldest one whatever its weight), drained.
    fn drain(&mut self, actor: &Actor, max_weight: usize, at_least_one: bool) -> DrainedPage {
        let Some(agent) = self.agents.get_mut(&actor.name) else {
            return DrainedPage {
                messages: Vec::new(),
                left: 0,
            };
        };
        let count = if agent.queued_weight <= max_weight {
            agent.undrained()
        } else {
            let mut weight = 0usize;
            let mut count = 0;
            for delivery in agent.deliveries.range(agent.drained..) {
                let may_exceed = at_least_one && count == 0;
                if !may_exceed && weight.saturating_add(delivery.envelope.weight()) > max_weight {
                    break;
                }
                weight = weight.saturating_add(delivery.envelope.weight());
                count += 1;
            }
            count
        };
        let start = agent.drained;
        let agent_project = agent.profile.project_id;
        let last_id = (count > 0).then(|| agent.deliveries[start + count - 1].envelope.id);
        agent.mark_drained(count, actor.now_ms);
        let messages: Vec<DeliveryView> = (start..start + count).map(|i| agent.view(i)).collect();
        let left = agent.undrained();
        if let Some(last_id) = last_id {
            let bytes: usize = messages.iter().map(|m| m.envelope.payload_len()).sum();
            assert!(
                count <= self.queued_messages,
                "queued-message count out of step with the inboxes"
            );
            self.queued_messages -= count;
            self.queued_bytes -= bytes;
            self.directory.queued(&agent_project, 0, count);
            let count32 = u32::try_from(count).unwrap_or(u32::MAX);
            self.log.append(|out| {
                record::encode_drained(out, &actor.name, count32, &last_id, actor.now_ms)
            });
            self.evict(&actor.name);
        }
        DrainedPage { messages, left }
    }

    fn evict(&mut self, name: &str) {
        let limits = self.limits;
        if let Some(agent) = self.agents.get_mut(name) {
            let before = (
                agent.deliveries.len() + agent.sent.len(),
                agent.retained_bytes,
            );
            agent.evict(&limits);
            self.account(before, name);
        }
    }

    fn fetch(&self, name: &str, query: &FetchQuery) -> Result<FetchPage, UnknownCursor> {
        let Some(agent) = self.agents.get(name) else {
            return Err(UnknownCursor { newest: 0 });
        };
        let newest = agent.next_seq() - 1;
        if query.after > newest {
            return Err(UnknownCursor { newest });
        }
        let skipped = (agent.first_seq - 1).saturating_sub(query.after);
        let mut page = FetchPage {
            messages: Vec::new(),
            next_after: query.after.max(agent.first_seq - 1),
            has_more: false,
            skipped,
            counts: agent.counts,
        };
        if query.limit == 0 {
            page.next_after = newest;
            return Ok(page);
        }
        let start = (query.after + 1).saturating_sub(agent.first_seq) as usize;
        let mut weight = 0usize;
        for index in start..agent.deliveries.len() {
            let d = &agent.deliveries[index];
            if (query.unread_only && !d.unread())
                || (query.urgent_only && !d.urgent())
                || query
                    .thread_id
                    .as_deref()
                    .is_some_and(|t| !d.envelope.in_thread(t))
            {
                continue;
            }
            let full = page.messages.len() >= query.limit;
            let first = page.messages.is_empty() && query.at_least_one;
            if full || (!first && weight.saturating_add(d.envelope.weight()) > query.max_weight) {
                page.has_more = true;
                break;
            }
            weight = weight.saturating_add(d.envelope.weight());
            page.messages.push(agent.view(index));
            page.next_after = agent.first_seq + index as u64;
        }
        Ok(page)
    }

    fn mark(&mut self, actor: &Actor, ids: &[Uuid], ack: bool) -> Marked {
        let mut result = Marked {
            found: Vec::with_capacity(ids.len()),
            changed: 0,
            not_found: Vec::new(),
        };
        let Some(agent) = self.agents.get_mut(&actor.name) else {
            result.not_found = ids.to_vec();
            return result;
        };
        // A map only for long lists: short ones scan the deque.
        let index: Option<HashMap<Uuid, usize>> = (ids.len() > 8).then(|| {
            agent
                .deliveries
                .iter()
                .enumerate()
                .map(|(i, d)| (d.envelope.id, i))
                .collect()
        });
        let mut changed_ids = Vec::new();
        for id in ids {
            let at = match &index {
                Some(map) => map.get(id).copied(),
                None => agent.delivery_index(id),
            };
            let Some(at) = at else {
                result.not_found.push(*id);
                continue;
            };
            if set_marks(agent, at, ack, actor.now_ms) {
                changed_ids.push(*id);
            }
            let d = &agent.deliveries[at];
            result.found.push((*id, time(d.read_at), time(d.acked_at)));
        }
        result.changed = changed_ids.len();
        if !changed_ids.is_empty() {
            self.log.append(|out| {
                record::encode_marked(out, &actor.name, ack, actor.now_ms, &changed_ids)
            });
        }
        result
    }

    fn thread(&self, name: &str, query: &ThreadQuery) -> Option<ThreadPage> {
        let agent = self.agents.get(name)?;
        let mut items: Vec<ThreadItem> = Vec::new();
        for (index, d) in agent.deliveries.iter().enumerate() {
            if d.envelope.in_thread(&query.thread_id) {
                items.push(ThreadItem {
                    envelope: SharedEnvelope::clone(&d.envelope),
                    delivery: Some(agent.view(index)),
                });
            }
        }
        for envelope in &agent.sent {
            if envelope.in_thread(&query.thread_id)
                && !items.iter().any(|i| i.envelope.id == envelope.id)
            {
                items.push(ThreadItem {
                    envelope: SharedEnvelope::clone(envelope),
                    delivery: None,
                });
            }
        }
        if items.is_empty() {
            return None;
        }
        items.sort_by_key(|i| (i.envelope.timestamp_ms, i.envelope.id));
        let mut participants: Vec<Box<str>> = items
            .iter()
            .flat_map(|i| std::iter::once(i.envelope.from()).chain(i.envelope.recipients()))
            .map(Box::from)
            .collect();
        participants.sort();
        participants.dedup();
        let start = match query.after {
            None => 0,
            Some(after) => items
                .iter()
                .position(|i| i.envelope.id == after)
                .map_or(items.len(), |at| at + 1),
        };
        let mut page = ThreadPage {
            messages: Vec::new(),
            participants,
            has_more: false,
        };
        let mut weight = 0usize;
        for item in items.into_iter().skip(start) {
            let first = page.messages.is_empty() && query.at_least_one;
            if page.messages.len() >= query.limit
                || (!first && weight.saturating_add(item.envelope.weight()) > query.max_weight)
            {
                page.has_more = true;
                break;
            }
            weight = weight.saturating_add(item.envelope.weight());
            page.messages.push(item);
        }
        Some(page)
    }

    fn find(&self, name: &str, id: &Uuid) -> Option<(SharedEnvelope, bool)> {
        let agent = self.agents.get(name)?;
        if let Some(envelope) = agent.sent.iter().find(|e| e.id == *id) {
            return Some((SharedEnvelope::clone(envelope), true));
        }
        let at = agent.delivery_index(id)?;
        Some((SharedEnvelope::clone(&agent.deliveries[at].envelope), false))
    }

    /// A file-reservation request on a project this shard owns; each change is logged as
    /// the lease's whole state.
    fn leases(&mut self, request: LeaseRequest) -> Reply {
        let LeaseRequest {
            project_id,
            agent,
            now_ms,
            op,
        } = request;
        debug_assert_eq!(
            owner_of_project(&project_id, self.shard_count),
            self.shard_id
        );
        // Only a reservation creates a project's entry: reads of unknown projects (anyone
        // may list any project key) must not grow the state.
        if !matches!(op, LeaseOp::Reserve { .. }) && !self.projects.contains_key(&project_id) {
            return match op {
                LeaseOp::Check { paths } => Reply::Checked(
                    paths
                        .into_iter()
                        .map(|path| crate::leases::PathConflicts {
                            path,
                            holders: Vec::new(),
                            more_holders: 0,
                            own: Vec::new(),
                        })
                        .collect(),
                ),
                LeaseOp::Release { paths, ids } | LeaseOp::Renew { paths, ids, .. }
                    if paths.is_some() || ids.is_some() =>
                {
                    Reply::Leases(Err(LeaseError::NotFound {
                        what: "no active reservation in this project".into(),
                    }))
                }
                _ => Reply::Leases(Ok(Vec::new())),
            };
        }
        let project = self.project(project_id);
        let changed: Result<Vec<Lease>, LeaseError>;
        let reply = match op {
            LeaseOp::Reserve {
                paths,
                ttl_ms,
                exclusive,
                reason,
            } => {
                let parsed: Vec<(Box<str>, glob::Pattern)> = paths
                    .into_iter()
                    .filter_map(|p| glob::parse(&p).ok().map(|pattern| (p, pattern)))
                    .collect();
                let expires = now_ms.saturating_add(ttl_ms);
                let outcome = project.reserve(&agent, &parsed, exclusive, &reason, now_ms, expires);
                changed = outcome
                    .as_ref()
                    .map(|(granted, _)| granted.clone())
                    .map_err(Clone::clone);
                Reply::Reserved(outcome)
            }
            LeaseOp::Release { paths, ids } => {
                let outcome = project.release(&agent, paths.as_deref(), ids.as_deref(), now_ms);
                changed = outcome.clone();
                Reply::Leases(outcome)
            }
            LeaseOp::Renew {
                paths,
                ids,
                extend_ms,
            } => {
                let outcome =
                    project.renew(&agent, paths.as_deref(), ids.as_deref(), extend_ms, now_ms);
                changed = outcome.clone();
                Reply::Leases(outcome)
            }
            LeaseOp::Check { paths } => {
                project.reap(now_ms);
                let checks = paths
                    .iter()
                    .filter_map(|p| glob::parse(p).ok().map(|pattern| (p, pattern)))
                    .map(|(p, pattern)| project.conflicts(&agent, p, &pattern, true))
                    .collect();
                return Reply::Checked(checks);
            }
            LeaseOp::List {
                only_agent,
                include_inactive,
                limit,
            } => {
                let who = only_agent.then_some(&*agent);
                return Reply::Leases(Ok(project.list(who, include_inactive, limit, now_ms)));
            }
            LeaseOp::Holder { id } => {
                return Reply::Leases(Ok(project.active_lease(id, now_ms).into_iter().collect()))
            }
            LeaseOp::ForceRelease {
                id,
                holder,
                expires_ms,
            } => {
                let released: Vec<Lease> = project
                    .force_release(id, &holder, expires_ms, now_ms)
                    .into_iter()
                    .collect();
                changed = Ok(released.clone());
                Reply::Leases(Ok(released))
            }
        };
        if let Ok(leases) = changed {
            for lease in &leases {
                self.log
                    .append(|out| record::encode_lease(out, &project_id, lease));
            }
        }
        reply
    }

    /// The leases of `project_id`, created empty on first use.
    fn project(&mut self, project_id: Uuid) -> &mut ProjectLeases {
        if !self.projects.contains_key(&project_id) {
            self.project_order.push(project_id);
        }
        self.projects.entry(project_id).or_default()
    }

    /// Moves expired leases out of the active lists of at most `max_projects` projects,
    /// resuming where the last sweep stopped (bounded work per call).
    pub fn sweep_leases(&mut self, now_ms: i64, max_projects: usize) {
        for _ in 0..max_projects.min(self.project_order.len()) {
            self.sweep_cursor %= self.project_order.len();
            let id = self.project_order[self.sweep_cursor];
            if let Some(project) = self.projects.get_mut(&id) {
                project.reap(now_ms);
            }
            self.sweep_cursor += 1;
        }
    }

    /// Whether this shard holds any project's reservations.
    pub fn has_projects(&self) -> bool {
        !self.projects.is_empty()
    }

    /// Takes every project's leases out (for moving them to other owners after a reshard).
    pub fn take_projects(&mut self) -> Vec<ProjectImage> {
        self.project_order.clear();
        self.projects
            .drain()
            .map(|(id, leases)| project_image(id, &leases))
            .collect()
    }

    /// Places a project's leases moved from another shard (not logged: the caller snapshots).
    pub fn restore_project(&mut self, image: ProjectImage) {
        let project = self.project(image.project_id);
        project.set_next_id(image.next_id);
        for lease in image.leases {
            project.upsert(lease);
        }
    }

    fn list_agents(
        &self,
        project_id: Uuid,
        active_since_ms: Option<i64>,
        limit: usize,
    ) -> Vec<AgentSummary> {
        let mut found: Vec<AgentSummary> = self
            .agents
            .values()
            .filter(|a| a.profile.project_id == project_id)
            .filter(|a| active_since_ms.is_none_or(|since| a.last_active_ms >= since))
            .map(|a| AgentSummary {
                profile: a.profile.clone(),
                last_active_ms: a.last_active_ms,
            })
            .collect();
        found.sort_by(|a, b| {
            b.last_active_ms
                .cmp(&a.last_active_ms)
                .then_with(|| a.profile.name.cmp(&b.profile.name))
        });
        found.truncate(limit);
        found
    }

    /// Applies a record read back from this shard's log (or snapshot), without logging it
    /// again and without emitting anything.
    pub fn replay(&mut self, record: Record) -> Result<(), ReplayError> {
        self.log.set_replaying(true);
        let result = self.apply(record);
        self.log.set_replaying(false);
        result
    }

    fn apply(&mut self, record: Record) -> Result<(), ReplayError> {
        match record {
            Record::Agent(profile) => {
                match self.agents.get_mut(&profile.name) {
                    Some(agent) => agent.profile = profile,
                    None => {
                        self.directory.add_agent(
                            profile.project_id,
                            &profile.project_key,
                            &profile.name,
                        );
                        self.agents
                            .insert(profile.name.clone(), Agent::new(profile));
                    }
                }
                Ok(())
            }
            Record::Enqueued { envelope } => {
                let local = self.local_recipients(&envelope);
                if let Some(name) = local.iter().find(|n| !self.agents.contains_key(&***n)) {
                    return Err(ReplayError(format!(
                        "message {} delivered to {name}, who is not registered",
                        envelope.id
                    )));
                }
                self.make_visible(&local, &envelope);
                Ok(())
            }
            Record::Prepared { envelope, owners } => {
                let local = self.local_recipients(&envelope);
                if let Some(name) = local.iter().find(|n| !self.agents.contains_key(&***n)) {
                    return Err(ReplayError(format!(
                        "message {} prepared for {name}, who is not registered",
                        envelope.id
                    )));
                }
                self.hold(PendingSend {
                    envelope,
                    owners,
                    local,
                });
                Ok(())
            }
            Record::Visible { id } => {
                // A marker without a prepare here (a snapshot's recent list) changes nothing.
                if self.pending.contains_key(&id) {
                    self.commit(id);
                } else {
                    self.recent_visible.push(id);
                }
                Ok(())
            }
            Record::Aborted { id } => {
                self.abort(id);
                Ok(())
            }
            Record::Drained {
                name,
                count,
                last_id,
                at_ms,
            } => {
                let agent = self.agents.get_mut(&name).ok_or_else(|| {
                    ReplayError(format!("drain of {name}, who is not registered"))
                })?;
                let count = count as usize;
                let end = agent.drained + count;
                if count == 0
                    || agent.undrained() < count
                    || agent.deliveries[end - 1].envelope.id != last_id
                {
                    return Err(ReplayError(format!(
                        "drain of {count} messages of {name} ending at {last_id} does not match its inbox"
                    )));
                }
                let at = at_ms.unwrap_or(agent.deliveries[end - 1].envelope.timestamp_ms);
                let (count, bytes) = agent.mark_drained(count, at);
                self.directory.queued(&agent.profile.project_id, 0, count);
                self.queued_messages -= count;
                self.queued_bytes -= bytes;
                self.evict(&name);
                Ok(())
            }
            Record::Marked {
                name,
                ack,
                at_ms,
                ids,
            } => {
                let agent = self.agents.get_mut(&name).ok_or_else(|| {
                    ReplayError(format!("marks of {name}, who is not registered"))
                })?;
                for id in ids {
                    // Evicted since: nothing to mark.
                    if let Some(at) = agent.delivery_index(&id) {
                        set_marks(agent, at, ack, at_ms);
                    }
                }
                Ok(())
            }
            Record::Activity {
                name,
                last_active_ms,
                next_seq,
            } => {
                let agent = self.agents.get_mut(&name).ok_or_else(|| {
                    ReplayError(format!("activity of {name}, who is not registered"))
                })?;
                agent.last_active_ms = agent.last_active_ms.max(last_active_ms);
                agent.logged_active_ms = agent.last_active_ms;
                if agent.deliveries.is_empty() && next_seq > agent.first_seq {
                    agent.first_seq = next_seq;
                }
                Ok(())
            }
            Record::Delivery {
                name,
                state,
                envelope,
            } => {
                let agent = self.agents.get_mut(&name).ok_or_else(|| {
                    ReplayError(format!("delivery to {name}, who is not registered"))
                })?;
                if agent.deliveries.is_empty() {
                    agent.first_seq = state.seq;
                }
                if state.seq != agent.next_seq() || (state.drained && agent.undrained() > 0) {
                    return Err(ReplayError(format!(
                        "delivery {} of {name} out of order",
                        state.seq
                    )));
                }
                let before = (
                    agent.deliveries.len() + agent.sent.len(),
                    agent.retained_bytes,
                );
                let bytes = agent.push(Delivery {
                    envelope,
                    read_at: state.read_at.unwrap_or(UNSET),
                    acked_at: state.acked_at.unwrap_or(UNSET),
                    drained: state.drained,
                });
                if !state.drained {
                    self.directory.queued(&agent.profile.project_id, 1, 0);
                    self.queued_messages += 1;
                    self.queued_bytes += bytes;
                }
                self.account(before, &name);
                Ok(())
            }
            Record::Lease { project, lease } => {
                self.project(project).upsert(lease);
                Ok(())
            }
            Record::LeaseIds { project, next_id } => {
                self.project(project).set_next_id(next_id);
                Ok(())
            }
            Record::Sent { name, envelope } => {
                let agent = self.agents.get_mut(&name).ok_or_else(|| {
                    ReplayError(format!("sent copy of {name}, who is not registered"))
                })?;
                let before = (
                    agent.deliveries.len() + agent.sent.len(),
                    agent.retained_bytes,
                );
                agent.retained_bytes += envelope.payload_len();
                self.directory.sent(&agent.profile.project_id, &envelope);
                agent.sent.push_back(envelope);
                self.account(before, &name);
                Ok(())
            }
        }
    }

    /// Ids of multi-owner messages made visible here (markers kept for recovery).
    pub fn recent_visible(&self) -> &[Uuid] {
        &self.recent_visible
    }

    /// Copies pointers to the whole state, at the current log position, recent visible
    /// markers included (they are dropped only once a snapshot holding them is written:
    /// [`ShardState::forget_recent_visible`]).
    pub fn image(&mut self) -> StateImage {
        let agents = self.agents.values().map(agent_image).collect();
        StateImage {
            position: self.log.end(),
            agents,
            pending: self.pending.values().cloned().collect(),
            recent_visible: self.recent_visible.clone(),
            projects: self
                .projects
                .iter()
                .filter(|(_, leases)| !leases.is_empty())
                .map(|(id, leases)| project_image(*id, leases))
                .collect(),
        }
    }

    /// A snapshot holding the first `count` recent visible markers is durable: they go.
    pub fn forget_recent_visible(&mut self, count: usize) {
        self.recent_visible
            .drain(..count.min(self.recent_visible.len()));
    }

    /// Takes every agent out (for moving them to other owners after a reshard). Pending
    /// sends must have been settled first.
    pub fn into_agents(self) -> Vec<AgentImage> {
        assert!(
            self.pending.is_empty(),
            "settle pending sends before moving agents"
        );
        self.agents.values().map(agent_image).collect()
    }

    /// Places an agent moved from another shard (not logged: the caller snapshots the result).
    pub fn restore_agent(&mut self, image: AgentImage) -> Result<(), ReplayError> {
        self.assert_owned(&image.profile.name);
        let mut records = Vec::new();
        agent_records(&image, |record| records.push(record));
        for record in records {
            self.replay(record)?;
        }
        Ok(())
    }
}

/// Sets `read_at` (and with `ack`, `acked_at`) of delivery `at` where unset; true if either
/// changed.
fn set_marks(agent: &mut Agent, at: usize, ack: bool, now_ms: i64) -> bool {
    let (unread, urgent, pending) = {
        let d = &agent.deliveries[at];
        (d.unread(), d.urgent(), d.ack_pending())
    };
    let d = &mut agent.deliveries[at];
    let mut changed = false;
    if unread {
        d.read_at = now_ms;
        agent.counts.unread -= 1;
        if urgent {
            agent.counts.urgent_unread -= 1;
        }
        changed = true;
    }
    if ack && d.acked_at == UNSET {
        d.acked_at = now_ms;
        if pending {
            agent.counts.ack_pending -= 1;
        }
        changed = true;
    }
    changed
}

fn agent_image(agent: &Agent) -> AgentImage {
    AgentImage {
        profile: agent.profile.clone(),
        last_active_ms: agent.last_active_ms,
        next_seq: agent.next_seq(),
        deliveries: agent
            .deliveries
            .iter()
            .enumerate()
            .map(|(index, d)| {
                (
                    DeliveryState {
                        seq: agent.first_seq + index as u64,
                        read_at: time(d.read_at),
                        acked_at: time(d.acked_at),
                        drained: d.drained,
                    },
                    SharedEnvelope::clone(&d.envelope),
                )
            })
            .collect(),
        sent: agent.sent.iter().cloned().collect(),
    }
}

/// The records that rebuild one agent on replay: profile, activity, deliveries, sent.
pub fn agent_records(agent: &AgentImage, mut write: impl FnMut(Record)) {
    let name = &agent.profile.name;
    write(Record::Agent(agent.profile.clone()));
    write(Record::Activity {
        name: name.clone(),
        last_active_ms: agent.last_active_ms,
        next_seq: agent.next_seq,
    });
    for (state, envelope) in &agent.deliveries {
        write(Record::Delivery {
            name: name.clone(),
            state: *state,
            envelope: SharedEnvelope::clone(envelope),
        });
    }
    for envelope in &agent.sent {
        write(Record::Sent {
            name: name.clone(),
            envelope: SharedEnvelope::clone(envelope),
        });
    }
}

/// Writes the records that rebuild `image` on replay: each agent, pending sends, recent
/// visible markers. Messages shared by several local agents are written once per agent.
pub fn image_records(image: &StateImage, mut write: impl FnMut(Record)) {
    for agent in &image.agents {
        agent_records(agent, &mut write);
    }
    for send in &image.pending {
        write(Record::Prepared {
            envelope: SharedEnvelope::clone(&send.envelope),
            owners: send.owners,
        });
    }
    for id in &image.recent_visible {
        write(Record::Visible { id: *id });
    }
    for project in &image.projects {
        write(Record::LeaseIds {
            project: project.project_id,
            next_id: project.next_id,
        });
        for lease in &project.leases {
            write(Record::Lease {
                project: project.project_id,
                lease: lease.clone(),
            });
        }
    }
}

fn project_image(project_id: Uuid, leases: &ProjectLeases) -> ProjectImage {
    ProjectImage {
        project_id,
        next_id: leases.next_id(),
        leases: leases.all().cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Envelope, Message};
    use std::sync::Arc;
    use uuid::Uuid;

    fn registration(name: &str, project: u128, mode: RegisterMode) -> Registration {
        Registration {
            name: name.into(),
            mode,
            new_id: Uuid::from_u128(1000 + project),
            project_id: Uuid::from_u128(project),
            project_key: format!("key-{project}").into(),
            program: Some("prog".into()),
            model: None,
            task_description: None,
            now_ms: 5,
            new_token_hash: None,
            token: None,
        }
    }

    const LIMITS: InboxLimits = InboxLimits {
        messages: 100,
        bytes: usize::MAX,
        retained_messages: 1000,
        retained_bytes: usize::MAX,
    };

    fn register(state: &mut ShardState, name: &str, project: u128, mode: RegisterMode) -> Reply {
        state.handle(Request::Register(registration(name, project, mode)))
    }

    fn names(list: &[&str]) -> Vec<Box<str>> {
        list.iter().map(|n| Box::<str>::from(*n)).collect()
    }

    /// Message `n` from `from` to `to` (6 bytes of text when `from` is "from").
    fn message(n: u128, from: &str, to: &[&str], cc: &[&str]) -> SharedEnvelope {
        Arc::new(Envelope::compose(Message {
            id: Uuid::from_u128(n),
            project_id: Uuid::nil(),
            timestamp_ms: n as i64,
            from,
            subject: "s",
            body: "b",
            thread_id: None,
            reply_to: None,
            importance: Importance::Normal,
            ack_required: false,
            to: names(to),
            cc: names(cc),
        }))
    }

    fn envelope(n: u128, to: &[&str]) -> SharedEnvelope {
        message(n, "from", to, &[])
    }

    fn deliver(state: &mut ShardState, envelope: SharedEnvelope) -> Reply {
        state.handle(Request::Deliver { envelope })
    }

    fn actor(name: &str) -> Actor {
        Actor {
            name: name.into(),
            token: None,
            now_ms: 50,
        }
    }

    fn drain(state: &mut ShardState, name: &str, max_weight: usize, at_least_one: bool) -> Reply {
        state.handle(Request::Drain {
            actor: actor(name),
            max_weight,
            at_least_one,
        })
    }

    fn drained_ids(reply: Reply) -> (Vec<u128>, usize) {
        match reply {
            Reply::Drained(page) => (
                page.messages
                    .iter()
                    .map(|m| m.envelope.id.as_u128())
                    .collect(),
                page.left,
            ),
            other => panic!("drain answered {other:?}"),
        }
    }

    fn drain_all(state: &mut ShardState, name: &str) -> (Vec<u128>, usize) {
        drained_ids(drain(state, name, usize::MAX, true))
    }

    fn fetch(state: &mut ShardState, name: &str, after: u64, limit: usize) -> FetchPage {
        let query = FetchQuery {
            after,
            limit,
            unread_only: false,
            urgent_only: false,
            thread_id: None,
            max_weight: usize::MAX,
            at_least_one: true,
        };
        match state.handle(Request::Fetch {
            actor: actor(name),
            query,
        }) {
            Reply::Fetched(Ok(page)) => page,
            other => panic!("fetch answered {other:?}"),
        }
    }

    fn seqs(page: &FetchPage) -> Vec<(u64, u128)> {
        page.messages
            .iter()
            .map(|m| (m.seq, m.envelope.id.as_u128()))
            .collect()
    }

    #[test]
    fn drains_page_by_weight_not_text_length() {
        let mut state = ShardState::new(0, 1, LIMITS);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        for (n, weight) in [(0u128, 50usize), (1, 10), (2, 10)] {
            let envelope = Envelope::new(Uuid::from_u128(n), Uuid::nil(), 0, "f", "", "");
            let mut envelope = Envelope::compose(Message {
                to: names(&["a"]),
                ..message_of(&envelope)
            });
            envelope = envelope.with_weight(weight);
            deliver(&mut state, Arc::new(envelope));
        }
        assert_eq!(
            drained_ids(drain(&mut state, "a", 60, true)),
            (vec![0, 1], 1)
        );
        assert_eq!(drain_all(&mut state, "a"), (vec![2], 0));
        assert_eq!(state.queued_messages(), 0);
    }

    fn message_of(envelope: &Envelope) -> Message<'_> {
        Message {
            id: envelope.id,
            project_id: envelope.project_id,
            timestamp_ms: envelope.timestamp_ms,
            from: envelope.from(),
            subject: envelope.subject(),
            body: envelope.body(),
            thread_id: None,
            reply_to: None,
            importance: Importance::Normal,
            ack_required: false,
            to: Vec::new(),
            cc: Vec::new(),
        }
    }

    #[test]
    fn reregister_same_project_keeps_id_and_updates_program_and_task() {
        let mut state = ShardState::new(0, 1, LIMITS);
        let first = register(&mut state, "a", 1, RegisterMode::Upsert);
        let mut again = registration("a", 1, RegisterMode::Upsert);
        again.new_id = Uuid::from_u128(99);
        again.program = Some("new".into());
        again.task_description = Some("build".into());
        again.now_ms = 9;
        let second = state.handle(Request::Register(again));
        let (
            Reply::Registered {
                profile: p1,
                created: true,
                ..
            },
            Reply::Registered {
                profile: p2,
                created: false,
                ..
            },
        ) = (first, second)
        else {
            panic!("expected a creation then an update");
        };
        assert_eq!(p1.id, p2.id);
        assert_eq!(&*p2.program, "new");
        assert_eq!(&*p2.task_description, "build");
        assert_eq!((p2.created_ms, p2.updated_ms), (5, 9));
        assert_eq!((p1.version, p2.version), (1, 2));
        assert_eq!(state.agent_count(), 1);
    }

    #[test]
    fn same_name_in_another_project_or_create_only_is_taken() {
        let mut state = ShardState::new(0, 1, LIMITS);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        let taken = Reply::NameTaken {
            project_id: Uuid::from_u128(1),
        };
        assert_eq!(register(&mut state, "a", 2, RegisterMode::Upsert), taken);
        assert_eq!(
            register(&mut state, "a", 1, RegisterMode::CreateOnly),
            taken
        );
    }

    #[test]
    fn unknown_recipient_delivers_nothing() {
        let mut state = ShardState::new(0, 1, LIMITS);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        assert_eq!(
            deliver(&mut state, envelope(1, &["a", "ghost"])),
            Reply::Delivered(Err(Undeliverable::UnknownRecipients(names(&["ghost"]))))
        );
        assert_eq!(state.queued_messages(), 0);
        assert_eq!(drain_all(&mut state, "a"), (vec![], 0));
        assert_eq!(fetch(&mut state, "a", 0, 10).messages, vec![]);
    }

    #[test]
    fn drain_returns_each_message_once_and_leaves_it_readable() {
        let mut state = ShardState::new(0, 1, LIMITS);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        for n in 1..=3 {
            deliver(&mut state, envelope(n, &["a"]));
        }
        assert_eq!(state.queued_messages(), 3);
        assert_eq!(drain_all(&mut state, "a"), (vec![1, 2, 3], 0));
        assert_eq!(drain_all(&mut state, "a"), (vec![], 0));
        assert_eq!(state.queued_messages(), 0);
        let page = fetch(&mut state, "a", 0, 10);
        assert_eq!(seqs(&page), vec![(1, 1), (2, 2), (3, 3)]);
        assert!(page
            .messages
            .iter()
            .all(|m| m.drained && m.read_at == Some(50) && m.acked_at.is_none()));
        assert_eq!(page.counts.unread, 0);
    }

    #[test]
    fn acting_as_an_unknown_agent_is_refused() {
        let mut state = ShardState::new(0, 1, LIMITS);
        assert_eq!(drain(&mut state, "nobody", 1, true), Reply::NoAgent);
        let query = FetchQuery {
            after: 0,
            limit: 1,
            unread_only: false,
            urgent_only: false,
            thread_id: None,
            max_weight: 10,
            at_least_one: true,
        };
        assert_eq!(
            state.handle(Request::Fetch {
                actor: actor("nobody"),
                query
            }),
            Reply::NoAgent
        );
    }

    #[test]
    fn a_full_inbox_refuses_and_reservations_count_against_the_cap() {
        let mut state = ShardState::new(
            0,
            1,
            InboxLimits {
                messages: 2,
                ..LIMITS
            },
        );
        register(&mut state, "a", 1, RegisterMode::Upsert);
        register(&mut state, "b", 1, RegisterMode::Upsert);
        let send = |state: &mut ShardState, n: u128| deliver(state, envelope(n, &["a", "b"]));
        assert_eq!(send(&mut state, 1), Reply::Delivered(Ok(2)));
        // One place left each; a prepared message takes b's.
        assert_eq!(prepare(&mut state, 10, &["b"]), Reply::Prepared(Ok(1)));
        assert_eq!(
            send(&mut state, 2),
            Reply::Delivered(Err(Undeliverable::InboxFull(names(&["b"])))),
            "all or nothing: a gets nothing either"
        );
        assert_eq!(state.queued_messages(), 2);
        state.handle(Request::Abort {
            id: Uuid::from_u128(10),
        });
        assert_eq!(send(&mut state, 3), Reply::Delivered(Ok(2)));
        assert_eq!(
            send(&mut state, 4),
            Reply::Delivered(Err(Undeliverable::InboxFull(names(&["a", "b"]))))
        );
        // Draining makes room again, though the drained mail is still retained.
        drain_all(&mut state, "a");
        drain_all(&mut state, "b");
        assert_eq!(send(&mut state, 5), Reply::Delivered(Ok(2)));
        assert_eq!(fetch(&mut state, "a", 0, 10).messages.len(), 3);
    }

    fn prepare(state: &mut ShardState, n: u128, recipients: &[&str]) -> Reply {
        state.handle(Request::Prepare {
            envelope: envelope(n, recipients),
            owners: 2,
        })
    }

    #[test]
    fn a_prepared_message_is_invisible_until_committed() {
        let mut state = ShardState::new(
            0,
            1,
            InboxLimits {
                messages: 1,
                ..LIMITS
            },
        );
        register(&mut state, "a", 1, RegisterMode::Upsert);
        assert_eq!(prepare(&mut state, 1, &["a"]), Reply::Prepared(Ok(1)));
        assert_eq!(drain_all(&mut state, "a"), (vec![], 0), "not visible yet");
        assert_eq!(fetch(&mut state, "a", 0, 5).messages, vec![]);
        assert_eq!(
            prepare(&mut state, 2, &["a"]),
            Reply::Prepared(Err(Undeliverable::InboxFull(names(&["a"])))),
            "the prepared message holds the only place"
        );
        state.handle(Request::Commit {
            id: Uuid::from_u128(1),
        });
        assert_eq!(drain_all(&mut state, "a"), (vec![1], 0));
    }

    #[test]
    fn sequence_numbers_never_repeat_and_cursors_are_checked() {
        let mut state = ShardState::new(
            0,
            1,
            InboxLimits {
                retained_messages: 3,
                ..LIMITS
            },
        );
        register(&mut state, "a", 1, RegisterMode::Upsert);
        for n in 1..=5 {
            deliver(&mut state, envelope(n, &["a"]));
            drain_all(&mut state, "a");
        }
        let page = fetch(&mut state, "a", 0, 10);
        assert_eq!(seqs(&page), vec![(3, 3), (4, 4), (5, 5)], "two evicted");
        assert_eq!(page.skipped, 2);
        assert_eq!((page.next_after, page.has_more), (5, false));
        let page = fetch(&mut state, "a", 3, 1);
        assert_eq!(seqs(&page), vec![(4, 4)]);
        assert_eq!((page.next_after, page.has_more, page.skipped), (4, true, 0));
        let peek = fetch(&mut state, "a", 0, 0);
        assert_eq!((peek.messages.len(), peek.next_after), (0, 5));
        let beyond = FetchQuery {
            after: 6,
            limit: 1,
            unread_only: false,
            urgent_only: false,
            thread_id: None,
            max_weight: 100,
            at_least_one: true,
        };
        assert_eq!(
            state.handle(Request::Fetch {
                actor: actor("a"),
                query: beyond
            }),
            Reply::Fetched(Err(UnknownCursor { newest: 5 }))
        );
    }

    #[test]
    fn retention_evicts_drained_mail_first_and_never_undrained_mail() {
        let mut state = ShardState::new(
            0,
            1,
            InboxLimits {
                retained_messages: 2,
                ..LIMITS
            },
        );
        register(&mut state, "a", 1, RegisterMode::Upsert);
        register(&mut state, "b", 1, RegisterMode::Upsert);
        for n in 1..=2 {
            deliver(&mut state, envelope(n, &["a"]));
        }
        drain_all(&mut state, "a");
        for n in 3..=6 {
            deliver(&mut state, envelope(n, &["a"]));
        }
        let page = fetch(&mut state, "a", 0, 10);
        assert_eq!(
            seqs(&page).len(),
            6,
            "the bound holds the history (2 drained); undrained mail is the inbox's"
        );
        deliver(&mut state, message(7, "a", &["b"], &[]));
        assert_eq!(
            seqs(&fetch(&mut state, "a", 0, 10)),
            vec![(2, 2), (3, 3), (4, 4), (5, 5), (6, 6)],
            "a sent copy joins the history: the oldest drained delivery goes"
        );
        assert_eq!(drain_all(&mut state, "a"), (vec![3, 4, 5, 6], 0));
        assert_eq!(
            seqs(&fetch(&mut state, "a", 0, 10)),
            vec![(6, 6)],
            "history: the sent copy (7) and the newest drained delivery"
        );
        assert_eq!(
            state.retained_messages(),
            3,
            "a's two, and b's undrained delivery"
        );
    }

    #[test]
    fn marks_are_idempotent_and_counted() {
        let mut state = ShardState::new(0, 1, LIMITS);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        let mut urgent = Envelope::compose(Message {
            importance: Importance::Urgent,
            ack_required: true,
            ..message_of(&envelope(1, &[]))
        });
        urgent = Envelope::compose(Message {
            to: names(&["a"]),
            importance: Importance::Urgent,
            ack_required: true,
            ..message_of(&urgent)
        });
        deliver(&mut state, Arc::new(urgent));
        deliver(&mut state, envelope(2, &["a"]));
        let counts = fetch(&mut state, "a", 0, 0).counts;
        assert_eq!(
            counts,
            Counts {
                unread: 2,
                urgent_unread: 1,
                ack_pending: 1
            }
        );
        let mark = |state: &mut ShardState, ids: &[u128], ack: bool, now_ms: i64| {
            let ids = ids.iter().map(|n| Uuid::from_u128(*n)).collect();
            let actor = Actor {
                now_ms,
                ..actor("a")
            };
            match state.handle(Request::Mark { actor, ids, ack }) {
                Reply::Marked(marked) => marked,
                other => panic!("{other:?}"),
            }
        };
        let first = mark(&mut state, &[1, 9], true, 60);
        assert_eq!(first.found, vec![(Uuid::from_u128(1), Some(60), Some(60))]);
        assert_eq!(first.not_found, vec![Uuid::from_u128(9)]);
        assert_eq!(first.changed, 1);
        let again = mark(&mut state, &[1], true, 70);
        assert_eq!(again.found, vec![(Uuid::from_u128(1), Some(60), Some(60))]);
        assert_eq!(again.changed, 0, "the first time is kept");
        mark(&mut state, &[2], false, 80);
        assert_eq!(fetch(&mut state, "a", 0, 0).counts, Counts::default());
    }

    #[test]
    fn the_sender_keeps_a_copy_and_a_thread_joins_both_sides() {
        let mut state = ShardState::new(0, 1, LIMITS);
        for name in ["a", "b", "c"] {
            register(&mut state, name, 1, RegisterMode::Upsert);
        }
        let opener = message(1, "a", &["b"], &["c"]);
        let thread = opener.thread_id().to_string();
        deliver(&mut state, Arc::clone(&opener));
        let reply = Arc::new(Envelope::compose(Message {
            thread_id: Some(&thread),
            reply_to: Some(opener.id),
            to: names(&["a"]),
            ..message_of(&message(2, "b", &[], &[]))
        }));
        deliver(&mut state, reply);
        let query = ThreadQuery {
            thread_id: thread.as_str().into(),
            after: None,
            limit: 10,
            max_weight: usize::MAX,
            at_least_one: true,
        };
        let Reply::Thread(Some(page)) = state.handle(Request::Thread {
            actor: actor("a"),
            query: query.clone(),
        }) else {
            panic!("thread");
        };
        let ids: Vec<(u128, bool)> = page
            .messages
            .iter()
            .map(|i| (i.envelope.id.as_u128(), i.delivery.is_some()))
            .collect();
        assert_eq!(ids, vec![(1, false), (2, true)], "sent, then received");
        assert_eq!(page.participants, names(&["a", "b", "c"]));
        let Reply::Thread(Some(cc_view)) = state.handle(Request::Thread {
            actor: actor("c"),
            query: query.clone(),
        }) else {
            panic!("thread");
        };
        assert_eq!(cc_view.messages.len(), 1);
        assert_eq!(
            cc_view.messages[0].delivery.as_ref().map(|d| d.kind),
            Some(Kind::Cc)
        );
        let unknown = ThreadQuery {
            thread_id: "nope".into(),
            ..query
        };
        assert_eq!(
            state.handle(Request::Thread {
                actor: actor("a"),
                query: unknown
            }),
            Reply::Thread(None)
        );
        let find = |state: &mut ShardState, who: &str, n: u128| match state.handle(Request::Find {
            actor: actor(who),
            id: Uuid::from_u128(n),
        }) {
            Reply::Found(found) => found.map(|(e, sent)| (e.id.as_u128(), sent)),
            other => panic!("{other:?}"),
        };
        assert_eq!(find(&mut state, "a", 1), Some((1, true)));
        assert_eq!(find(&mut state, "b", 1), Some((1, false)));
        assert_eq!(find(&mut state, "c", 2), None, "c never saw the reply");
    }

    #[test]
    fn agent_tokens_guard_every_act_and_do_not_say_who_exists() {
        let mut state = ShardState::new(0, 1, LIMITS);
        state.set_agent_auth(true);
        let mut r = registration("a", 1, RegisterMode::Upsert);
        r.new_token_hash = Some(Uuid::from_u128(77));
        let Reply::Registered { token_issued, .. } = state.handle(Request::Register(r)) else {
            panic!("register");
        };
        assert!(token_issued);
        let with = |token: Option<u128>| Actor {
            token: token.map(Uuid::from_u128),
            ..actor("a")
        };
        let drain_as = |state: &mut ShardState, actor: Actor| {
            state.handle(Request::Drain {
                actor,
                max_weight: 10,
                at_least_one: true,
            })
        };
        assert_eq!(drain_as(&mut state, with(None)), Reply::NoAgent);
        assert_eq!(drain_as(&mut state, with(Some(1))), Reply::NoAgent);
        assert!(matches!(
            drain_as(&mut state, with(Some(77))),
            Reply::Drained(_)
        ));
        let mut update = registration("a", 1, RegisterMode::Upsert);
        update.token = Some(Uuid::from_u128(1));
        assert_eq!(state.handle(Request::Register(update)), Reply::NoAgent);
        assert_eq!(
            state.handle(Request::Lookup {
                name: "a".into(),
                token: None
            }),
            Reply::Agent(None)
        );
    }

    #[test]
    fn new_mail_is_noted_only_for_watched_agents() {
        let mut state = ShardState::new(0, 1, LIMITS);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        register(&mut state, "b", 1, RegisterMode::Upsert);
        deliver(&mut state, envelope(1, &["a", "b"]));
        assert!(!state.has_new_mail());
        state.watch("b", true);
        deliver(&mut state, envelope(2, &["a", "b"]));
        let mut out = Vec::new();
        state.take_new_mail(&mut out);
        assert_eq!(out, vec![(0, "b".into())]);
        state.watch("b", false);
        deliver(&mut state, envelope(3, &["b"]));
        assert!(!state.has_new_mail());
    }

    #[test]
    fn agents_are_listed_most_recently_active_first() {
        let mut state = ShardState::new(0, 1, LIMITS);
        for name in ["a", "b", "c"] {
            register(&mut state, name, 1, RegisterMode::Upsert);
        }
        register(&mut state, "other", 2, RegisterMode::Upsert);
        let later = Actor {
            now_ms: 5_000,
            ..actor("b")
        };
        state.handle(Request::Drain {
            actor: later,
            max_weight: 1,
            at_least_one: false,
        });
        let Reply::Agents(list) = state.handle(Request::ListAgents {
            project_id: Uuid::from_u128(1),
            active_since_ms: None,
            limit: 2,
        }) else {
            panic!("list");
        };
        let got: Vec<(&str, i64)> = list
            .iter()
            .map(|a| (&*a.profile.name, a.last_active_ms))
            .collect();
        assert_eq!(got, vec![("b", 5_000), ("a", 5)]);
        let Reply::Agents(recent) = state.handle(Request::ListAgents {
            project_id: Uuid::from_u128(1),
            active_since_ms: Some(1_000),
            limit: 10,
        }) else {
            panic!("list");
        };
        assert_eq!(recent.len(), 1);
    }

    /// A state with its log on, and the records it wrote, read back.
    fn logged_state(limits: InboxLimits) -> ShardState {
        ShardState::with_log(0, 1, limits, LogBuffer::new(true, 0))
    }

    fn records_of(state: &mut ShardState) -> Vec<Record> {
        let (bytes, _) = state.log_mut().take_batch(Vec::new());
        let mut records = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            match crate::log::record::decode(&bytes[at..]) {
                Ok(crate::log::record::Decoded::Record(record, len)) => {
                    records.push(record);
                    at += len;
                }
                other => panic!("bad log at {at}: {other:?}"),
            }
        }
        records
    }

    /// Everything observable about every agent, sorted.
    fn dump(state: &ShardState) -> Vec<String> {
        let mut all: Vec<String> = state
            .agents
            .iter()
            .map(|(name, agent)| {
                let deliveries: Vec<String> = (0..agent.deliveries.len())
                    .map(|i| {
                        let v = agent.view(i);
                        format!(
                            "{}:{}:{:?}:{:?}:{:?}:{}",
                            v.seq,
                            v.envelope.id.as_u128(),
                            v.kind,
                            v.read_at,
                            v.acked_at,
                            v.drained
                        )
                    })
                    .collect();
                let sent: Vec<u128> = agent.sent.iter().map(|e| e.id.as_u128()).collect();
                format!(
                    "{name} v{} active={} next={} {:?} sent={:?} {:?} reserved={}",
                    agent.profile.version,
                    agent.last_active_ms / ACTIVITY_LOG_INTERVAL_MS,
                    agent.next_seq(),
                    deliveries,
                    sent,
                    agent.counts,
                    agent.reserved
                )
            })
            .collect();
        all.sort();
        all
    }

    /// The web view's directory: per project, (key, agents, queued, messages counted, recent).
    fn directory_dump(state: &ShardState) -> Vec<(String, usize, usize, u32, Vec<u128>)> {
        let (projects, _) = state.directory.list(None, usize::MAX, 0);
        projects
            .iter()
            .map(|p| {
                let entry = state.directory.project(&p.id).expect("listed");
                let recent = entry.recent.iter().map(|e| e.id.as_u128()).collect();
                let counted = entry.traffic.last_hour(60_000).iter().sum();
                (p.key.to_string(), p.agents, p.queued, counted, recent)
            })
            .collect()
    }

    fn busy_state(limits: InboxLimits) -> ShardState {
        let mut live = logged_state(limits);
        register(&mut live, "a", 1, RegisterMode::Upsert);
        register(&mut live, "b", 1, RegisterMode::Upsert);
        for n in 1..=4 {
            deliver(&mut live, message(n, "a", &["b"], &["a"]));
        }
        prepare(&mut live, 10, &["a"]);
        prepare(&mut live, 11, &["b"]);
        prepare(&mut live, 12, &["a", "b"]);
        live.handle(Request::Commit {
            id: Uuid::from_u128(10),
        });
        live.handle(Request::Abort {
            id: Uuid::from_u128(11),
        });
        drain(&mut live, "a", 12, true);
        drain(&mut live, "b", usize::MAX, true);
        live.handle(Request::Mark {
            actor: Actor {
                now_ms: 4_000,
                ..actor("b")
            },
            ids: vec![Uuid::from_u128(3), Uuid::from_u128(4)],
            ack: true,
        });
        live
    }

    #[test]
    fn replaying_the_log_gives_the_live_state() {
        let limits = InboxLimits {
            retained_messages: 4,
            ..LIMITS
        };
        let mut live = busy_state(limits);
        let records = records_of(&mut live);
        assert_eq!(live.log().end(), records.len() as u64);
        let mut replayed = ShardState::new(0, 1, limits);
        for record in records {
            replayed.replay(record).expect("replays");
        }
        assert_eq!(dump(&replayed), dump(&live));
        assert_eq!(directory_dump(&replayed), directory_dump(&live));
        let (key, agents, queued, counted, _) = &directory_dump(&live)[0];
        assert_eq!(
            (key.as_str(), *agents, *queued, *counted),
            ("key-1", 2, live.queued_messages(), 4)
        );
        assert_eq!(replayed.queued_messages(), live.queued_messages());
        assert_eq!(replayed.retained_messages(), live.retained_messages());
        assert_eq!(replayed.live_bytes(), live.live_bytes());
        let pending = |s: &ShardState| s.pending().map(|p| p.envelope.id).collect::<Vec<_>>();
        assert_eq!(pending(&replayed), pending(&live));
    }

    #[test]
    fn an_image_replays_to_the_same_state() {
        let limits = InboxLimits {
            retained_messages: 4,
            ..LIMITS
        };
        let mut live = busy_state(limits);
        let image = live.image();
        let mut restored = ShardState::new(0, 1, limits);
        image_records(&image, |record| restored.replay(record).expect("replays"));
        assert_eq!(dump(&restored), dump(&live));
        // An image keeps only retained sent copies: the traffic counted may be less.
        let counts = |s: &ShardState| -> Vec<(String, usize, usize)> {
            directory_dump(s)
                .into_iter()
                .map(|(key, agents, queued, _, _)| (key, agents, queued))
                .collect()
        };
        assert_eq!(counts(&restored), counts(&live));
        assert_eq!(restored.queued_messages(), live.queued_messages());
        // And moving agents one by one (a reshard) gives the same.
        let mut moved = ShardState::new(0, 1, limits);
        for agent in image.agents {
            moved.restore_agent(agent).expect("restores");
        }
        // Pending sends do not move (they are settled first): compare without their holds.
        let unheld = |dump: Vec<String>| -> Vec<String> {
            dump.into_iter()
                .map(|line| line.split(" reserved=").next().unwrap_or("").to_string())
                .collect()
        };
        assert_eq!(unheld(dump(&moved)), unheld(dump(&live)));
    }

    #[test]
    fn emissions_wait_for_their_records_to_be_durable() {
        let mut state = logged_state(LIMITS);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        deliver(&mut state, envelope(1, &["a"]));
        let mut out = Vec::new();
        state.log_mut().take_events(1, &mut out);
        assert!(
            matches!(
                &out[..],
                [Emitted::Profile {
                    created: true,
                    seq: 0,
                    ..
                }]
            ),
            "{out:?}"
        );
        out.clear();
        state.log_mut().take_events(1, &mut out);
        assert!(out.is_empty(), "the message's record is not durable yet");
        state.log_mut().take_events(2, &mut out);
        assert!(
            matches!(&out[..], [Emitted::Message { seq: 1, .. }]),
            "{out:?}"
        );
    }

    #[test]
    fn a_drain_that_does_not_match_the_inbox_is_refused() {
        let mut state = ShardState::new(0, 1, LIMITS);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        let wrong = Record::Drained {
            name: "a".into(),
            count: 1,
            last_id: Uuid::from_u128(5),
            at_ms: None,
        };
        assert!(state.replay(wrong).is_err());
    }

    #[test]
    fn the_byte_cap_refuses_and_a_drain_pages_by_bytes() {
        // Each test envelope carries 6 bytes of text.
        let mut state = ShardState::new(
            0,
            1,
            InboxLimits {
                bytes: 18,
                ..LIMITS
            },
        );
        register(&mut state, "a", 1, RegisterMode::Upsert);
        for n in 0..3 {
            assert_eq!(
                deliver(&mut state, envelope(n, &["a"])),
                Reply::Delivered(Ok(1))
            );
        }
        assert_eq!(
            deliver(&mut state, envelope(3, &["a"])),
            Reply::Delivered(Err(Undeliverable::InboxFull(names(&["a"]))))
        );
        assert_eq!(
            drained_ids(drain(&mut state, "a", 13, true)),
            (vec![0, 1], 1)
        );
        assert_eq!(drained_ids(drain(&mut state, "a", 1, false)), (vec![], 1));
        assert_eq!(drained_ids(drain(&mut state, "a", 1, true)), (vec![2], 0));
        assert_eq!(
            deliver(&mut state, envelope(4, &["a"])),
            Reply::Delivered(Ok(1))
        );
    }
}
