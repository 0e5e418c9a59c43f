//! The state one shard owns: its agents and their inboxes. Plain synchronous code, so it is
//! tested directly (including a model-based property test) without any executor.
//!
//! Every change is appended to the shard's [`LogBuffer`] in the same step that makes it, and
//! [`ShardState::replay`] applies a logged record again: replaying a shard's log gives back
//! its state. The state does no I/O; the flusher (see [`crate::log::journal`]) writes the log.

use crate::envelope::SharedEnvelope;
use crate::log::record::{self, Record};
use crate::log::{Emitted, LogBuffer};
use crate::protocol::{
    AgentProfile, DrainedPage, RegisterMode, Registration, Reply, Request, Undeliverable,
};
use crate::routing::owner_of;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use uuid::Uuid;

#[derive(Debug)]
struct Agent {
    profile: AgentProfile,
    inbox: VecDeque<SharedEnvelope>,
    /// Text bytes of the queued messages.
    queued_bytes: usize,
    /// Weights of the queued messages (see `Envelope::weight`): a drain that allows this much
    /// takes the whole inbox at once.
    queued_weight: usize,
    /// Places (and their bytes) held by prepared messages not yet visible; they count
    /// against the caps.
    reserved: usize,
    reserved_bytes: usize,
}

impl Agent {
    fn new(profile: AgentProfile) -> Self {
        Agent {
            profile,
            inbox: VecDeque::new(),
            queued_bytes: 0,
            queued_weight: 0,
            reserved: 0,
            reserved_bytes: 0,
        }
    }

    fn has_room(&self, limits: &InboxLimits, incoming_bytes: usize) -> bool {
        self.inbox.len() + self.reserved < limits.messages
            && self.queued_bytes + self.reserved_bytes + incoming_bytes <= limits.bytes
    }

    fn push(&mut self, envelope: &SharedEnvelope) {
        self.inbox.push_back(SharedEnvelope::clone(envelope));
        self.queued_bytes += envelope.payload_len();
        self.queued_weight = self.queued_weight.saturating_add(envelope.weight());
    }
}

/// How much one inbox may hold, counting reserved places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxLimits {
    pub messages: usize,
    /// Text bytes (from + subject + body) of the waiting messages.
    pub bytes: usize,
}

/// A message prepared on this shard (step one of a multi-owner send), invisible to drains.
#[derive(Debug, Clone)]
pub struct PendingSend {
    pub envelope: SharedEnvelope,
    /// Every recipient on every owner.
    pub recipients: Vec<Box<str>>,
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
    pub inbox: Vec<SharedEnvelope>,
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
}

#[derive(Debug)]
pub struct ShardState {
    shard_id: usize,
    shard_count: usize,
    agents: HashMap<Box<str>, Agent>,
    queued_messages: usize,
    queued_bytes: usize,
    limits: InboxLimits,
    pending: HashMap<Uuid, PendingSend>,
    recent_visible: Vec<Uuid>,
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
            limits,
            pending: HashMap::new(),
            recent_visible: Vec::new(),
            log,
        }
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

    /// Messages waiting in all inboxes of this shard.
    pub fn queued_messages(&self) -> usize {
        self.queued_messages
    }

    /// Text bytes of every queued and prepared message plus a fixed cost per agent and
    /// message: about what a snapshot of this state takes on disk.
    pub fn live_bytes(&self) -> usize {
        const AGENT_BYTES: usize = 160;
        const MESSAGE_BYTES: usize = 80;
        self.queued_bytes
            + self.agents.len() * AGENT_BYTES
            + (self.queued_messages + self.pending.len()) * MESSAGE_BYTES
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

    /// Answers one request. Never blocks and never calls another shard.
    pub fn handle(&mut self, request: Request) -> Reply {
        match request {
            Request::Register(registration) => self.register(registration),
            Request::Lookup { name } => {
                self.assert_owned(&name);
                Reply::Agent(self.agents.get(&name).map(|a| a.profile.project_id))
            }
            Request::Prepare {
                envelope,
                recipients,
                owners,
            } => Reply::Prepared(self.prepare(envelope, recipients, owners)),
            Request::Commit { id } => {
                self.commit(id);
                Reply::Settled
            }
            Request::Abort { id } => {
                self.abort(id);
                Reply::Settled
            }
            Request::Deliver { names, envelope } => Reply::Delivered(self.deliver(names, envelope)),
            Request::Drain {
                name,
                max_weight,
                at_least_one,
            } => Reply::Drained(self.drain(&name, max_weight, at_least_one)),
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

    fn register(&mut self, r: Registration) -> Reply {
        self.assert_owned(&r.name);
        let (profile, created) = if let Some(agent) = self.agents.get_mut(&r.name) {
            let profile = &mut agent.profile;
            if r.mode == RegisterMode::CreateOnly || profile.project_id != r.project_id {
                return Reply::NameTaken {
                    project_id: profile.project_id,
                };
            }
            if let Some(program) = r.program {
                profile.program = program;
            }
            if let Some(model) = r.model {
                profile.model = model;
            }
            profile.updated_ms = r.now_ms;
            profile.version += 1;
            (profile.clone(), false)
        } else {
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
            };
            self.agents.insert(r.name, Agent::new(profile.clone()));
            (profile, true)
        };
        let seq = self.log.append(|out| record::encode_agent(out, &profile));
        let event = profile.clone();
        self.log.emit(
            |seq| Emitted::Profile {
                profile: event,
                created,
                seq,
            },
            seq,
        );
        Reply::Registered { profile, created }
    }

    /// Why `names` cannot all take one more message of `bytes` now, if they cannot. Collected
    /// only when something is wrong, so the common path allocates nothing.
    fn refusal(&self, names: &[Box<str>], bytes: usize) -> Option<Undeliverable> {
        for name in names {
            self.assert_owned(name);
        }
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

    fn prepare(
        &mut self,
        envelope: SharedEnvelope,
        recipients: Vec<Box<str>>,
        owners: u16,
    ) -> Result<usize, Undeliverable> {
        let local: Vec<Box<str>> = recipients
            .iter()
            .filter(|name| self.owns(name))
            .cloned()
            .collect();
        if let Some(refusal) = self.refusal(&local, envelope.payload_len()) {
            return Err(refusal);
        }
        self.log.append(|out| {
            record::encode_message(out, record::PREPARED, &envelope, &recipients, Some(owners))
        });
        Ok(self.hold(PendingSend {
            envelope,
            recipients,
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
        self.enqueue(&send.local, &send.envelope);
        // Kept for the next snapshot only; without a log there is none (and no bound).
        if self.log.enabled() {
            self.recent_visible.push(id);
        }
        if self.emits(&send.recipients) {
            self.log.emit(
                |seq| Emitted::Message {
                    envelope: send.envelope,
                    to: send.recipients,
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

    /// Whether this shard indexes a message to `recipients`: the lowest owner does, so a
    /// message is indexed once however many owners it has.
    pub fn emits(&self, recipients: &[Box<str>]) -> bool {
        recipients
            .iter()
            .map(|name| owner_of(name, self.shard_count))
            .min()
            == Some(self.shard_id)
    }

    fn enqueue(&mut self, names: &[Box<str>], envelope: &SharedEnvelope) -> usize {
        let mut count = 0;
        for name in names {
            if let Some(agent) = self.agents.get_mut(name) {
                agent.push(envelope);
                count += 1;
            }
        }
        self.queued_messages += count;
        self.queued_bytes += count * envelope.payload_len();
        count
    }

    fn deliver(
        &mut self,
        names: Vec<Box<str>>,
        envelope: SharedEnvelope,
    ) -> Result<usize, Undeliverable> {
        debug_assert!(
            names
                .iter()
                .enumerate()
                .all(|(i, n)| !names[..i].contains(n)),
            "callers send each recipient once"
        );
        if let Some(refusal) = self.refusal(&names, envelope.payload_len()) {
            return Err(refusal);
        }
        let seq = self
            .log
            .append(|out| record::encode_message(out, record::ENQUEUED, &envelope, &names, None));
        let count = self.enqueue(&names, &envelope);
        self.log.emit(
            |seq| Emitted::Message {
                envelope,
                to: names,
                seq,
            },
            seq,
        );
        Ok(count)
    }

    /// The oldest messages of `name` while their weights add up to at most `max_weight`
    /// (with `at_least_one`, the oldest one whatever its weight), removed.
    fn drain(&mut self, name: &str, max_weight: usize, at_least_one: bool) -> Option<DrainedPage> {
        self.assert_owned(name);
        let agent = self.agents.get_mut(name)?;
        let messages: Vec<SharedEnvelope> = if agent.queued_weight <= max_weight {
            // Taking the deque hands back its memory too, so an idle agent holds no buffer.
            agent.queued_bytes = 0;
            agent.queued_weight = 0;
            std::mem::take(&mut agent.inbox).into()
        } else {
            let mut taken = Vec::new();
            let (mut weight, mut bytes) = (0usize, 0usize);
            while let Some(next) = agent.inbox.front() {
                let may_exceed = at_least_one && taken.is_empty();
                if !may_exceed && weight.saturating_add(next.weight()) > max_weight {
                    break;
                }
                weight = weight.saturating_add(next.weight());
                bytes += next.payload_len();
                taken.extend(agent.inbox.pop_front());
            }
            agent.queued_bytes -= bytes;
            agent.queued_weight = agent.queued_weight.saturating_sub(weight);
            taken
        };
        let left = agent.inbox.len();
        assert!(
            messages.len() <= self.queued_messages,
            "queued-message count out of step with the inboxes"
        );
        self.queued_messages -= messages.len();
        self.queued_bytes -= messages.iter().map(|m| m.payload_len()).sum::<usize>();
        if let Some(last) = messages.last() {
            let count = u32::try_from(messages.len()).unwrap_or(u32::MAX);
            self.log
                .append(|out| record::encode_drained(out, name, count, &last.id));
        }
        Some(DrainedPage { messages, left })
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
                        self.agents
                            .insert(profile.name.clone(), Agent::new(profile));
                    }
                }
                Ok(())
            }
            Record::Enqueued {
                envelope,
                recipients,
            } => {
                let local: Vec<Box<str>> = recipients
                    .into_iter()
                    .filter(|name| self.owns(name))
                    .collect();
                if let Some(name) = local.iter().find(|n| !self.agents.contains_key(&***n)) {
                    return Err(ReplayError(format!(
                        "message {} queued for {name}, who is not registered",
                        envelope.id
                    )));
                }
                self.enqueue(&local, &envelope);
                Ok(())
            }
            Record::Prepared {
                envelope,
                recipients,
                owners,
            } => {
                let local: Vec<Box<str>> = recipients
                    .iter()
                    .filter(|name| self.owns(name))
                    .cloned()
                    .collect();
                if let Some(name) = local.iter().find(|n| !self.agents.contains_key(&***n)) {
                    return Err(ReplayError(format!(
                        "message {} prepared for {name}, who is not registered",
                        envelope.id
                    )));
                }
                self.hold(PendingSend {
                    envelope,
                    recipients,
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
            } => {
                let agent = self.agents.get(&name).ok_or_else(|| {
                    ReplayError(format!("drain of {name}, who is not registered"))
                })?;
                let count = count as usize;
                if count == 0 || agent.inbox.len() < count || agent.inbox[count - 1].id != last_id {
                    return Err(ReplayError(format!(
                        "drain of {count} messages of {name} ending at {last_id} does not match its inbox"
                    )));
                }
                self.take_front(&name, count);
                Ok(())
            }
        }
    }

    /// Removes the oldest `count` messages of `name` (replaying a drain).
    fn take_front(&mut self, name: &str, count: usize) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        let mut bytes = 0;
        for envelope in agent.inbox.drain(..count) {
            bytes += envelope.payload_len();
            agent.queued_weight = agent.queued_weight.saturating_sub(envelope.weight());
        }
        agent.queued_bytes -= bytes;
        self.queued_messages -= count;
        self.queued_bytes -= bytes;
    }

    /// Ids of multi-owner messages made visible here (markers kept for recovery).
    pub fn recent_visible(&self) -> &[Uuid] {
        &self.recent_visible
    }

    /// Copies pointers to the whole state, at the current log position, recent visible
    /// markers included (they are dropped only once a snapshot holding them is written:
    /// [`ShardState::forget_recent_visible`]).
    pub fn image(&mut self) -> StateImage {
        let agents = self
            .agents
            .values()
            .map(|agent| AgentImage {
                profile: agent.profile.clone(),
                inbox: agent.inbox.iter().cloned().collect(),
            })
            .collect();
        StateImage {
            position: self.log.end(),
            agents,
            pending: self.pending.values().cloned().collect(),
            recent_visible: self.recent_visible.clone(),
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
        self.agents
            .into_values()
            .map(|agent| AgentImage {
                profile: agent.profile,
                inbox: agent.inbox.into(),
            })
            .collect()
    }

    /// Places an agent moved from another shard (not logged: the caller snapshots the result).
    pub fn restore_agent(&mut self, image: AgentImage) {
        self.assert_owned(&image.profile.name);
        let mut agent = Agent::new(image.profile);
        for envelope in &image.inbox {
            agent.push(envelope);
        }
        self.queued_messages += image.inbox.len();
        self.queued_bytes += agent.queued_bytes;
        self.agents.insert(agent.profile.name.clone(), agent);
    }
}

/// Writes the records that rebuild `image` on replay: profiles, each inbox in order, pending
/// sends, recent visible markers. Messages shared by several local inboxes are written once
/// per inbox.
pub fn image_records(image: &StateImage, mut write: impl FnMut(Record)) {
    for agent in &image.agents {
        write(Record::Agent(agent.profile.clone()));
        for envelope in &agent.inbox {
            write(Record::Enqueued {
                envelope: SharedEnvelope::clone(envelope),
                recipients: vec![agent.profile.name.clone()],
            });
        }
    }
    for send in &image.pending {
        write(Record::Prepared {
            envelope: SharedEnvelope::clone(&send.envelope),
            recipients: send.recipients.clone(),
            owners: send.owners,
        });
    }
    for id in &image.recent_visible {
        write(Record::Visible { id: *id });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;
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
            now_ms: 5,
        }
    }

    const LIMITS: InboxLimits = InboxLimits {
        messages: 100,
        bytes: usize::MAX,
    };

    fn register(state: &mut ShardState, name: &str, project: u128, mode: RegisterMode) -> Reply {
        state.handle(Request::Register(registration(name, project, mode)))
    }

    fn envelope(n: u128) -> SharedEnvelope {
        Arc::new(Envelope::new(
            Uuid::from_u128(n),
            Uuid::nil(),
            0,
            "from",
            "s",
            "b",
        ))
    }

    fn drain_all(state: &mut ShardState, name: &str) -> Reply {
        state.handle(Request::Drain {
            name: name.into(),
            max_weight: usize::MAX,
            at_least_one: true,
        })
    }

    #[test]
    fn drains_page_by_weight_not_text_length() {
        let mut state = ShardState::new(0, 1, LIMITS);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        for (n, weight) in [(0u128, 50usize), (1, 10), (2, 10)] {
            let envelope =
                Envelope::new(Uuid::from_u128(n), Uuid::nil(), 0, "f", "", "").with_weight(weight);
            state.handle(Request::Deliver {
                names: names(&["a"]),
                envelope: Arc::new(envelope),
            });
        }
        let Reply::Drained(Some(page)) = state.handle(Request::Drain {
            name: "a".into(),
            max_weight: 60,
            at_least_one: true,
        }) else {
            panic!("drain");
        };
        assert_eq!(
            page.messages.len(),
            2,
            "50 + 10 fit in 60, the third does not"
        );
        assert_eq!(page.left, 1);
        let Reply::Drained(Some(page)) = drain_all(&mut state, "a") else {
            panic!("drain");
        };
        assert_eq!(page.messages.len(), 1);
        assert_eq!(state.queued_messages(), 0);
    }

    fn names(list: &[&str]) -> Vec<Box<str>> {
        list.iter().map(|n| Box::<str>::from(*n)).collect()
    }

    #[test]
    fn reregister_same_project_keeps_id_and_updates_program() {
        let mut state = ShardState::new(0, 1, LIMITS);
        let first = register(&mut state, "a", 1, RegisterMode::Upsert);
        let mut again = registration("a", 1, RegisterMode::Upsert);
        again.new_id = Uuid::from_u128(99);
        again.program = Some("new".into());
        again.now_ms = 9;
        let second = state.handle(Request::Register(again));
        let (
            Reply::Registered {
                profile: p1,
                created: true,
            },
            Reply::Registered {
                profile: p2,
                created: false,
            },
        ) = (first, second)
        else {
            panic!("expected a creation then an update");
        };
        assert_eq!(p1.id, p2.id);
        assert_eq!(&*p2.program, "new");
        assert_eq!(p2.created_ms, 5);
        assert_eq!(p2.updated_ms, 9);
        assert_eq!(
            (p1.version, p2.version),
            (1, 2),
            "each update is a newer version"
        );
        assert_eq!(state.agent_count(), 1);
    }

    #[test]
    fn same_name_in_another_project_is_taken() {
        let mut state = ShardState::new(0, 1, LIMITS);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        let reply = register(&mut state, "a", 2, RegisterMode::Upsert);
        assert_eq!(
            reply,
            Reply::NameTaken {
                project_id: Uuid::from_u128(1)
            }
        );
    }

    #[test]
    fn create_only_refuses_an_existing_name_even_in_the_same_project() {
        let mut state = ShardState::new(0, 1, LIMITS);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        let reply = register(&mut state, "a", 1, RegisterMode::CreateOnly);
        assert_eq!(
            reply,
            Reply::NameTaken {
                project_id: Uuid::from_u128(1)
            }
        );
    }

    #[test]
    fn unknown_recipient_delivers_nothing() {
        let mut state = ShardState::new(0, 1, LIMITS);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        let reply = state.handle(Request::Deliver {
            names: names(&["a", "ghost"]),
            envelope: envelope(1),
        });
        assert_eq!(
            reply,
            Reply::Delivered(Err(Undeliverable::UnknownRecipients(names(&["ghost"]))))
        );
        assert_eq!(state.queued_messages(), 0);
        assert_eq!(
            drain_all(&mut state, "a"),
            Reply::Drained(Some(DrainedPage {
                messages: vec![],
                left: 0
            }))
        );
    }

    #[test]
    fn drain_returns_each_message_exactly_once_oldest_first() {
        let mut state = ShardState::new(0, 1, LIMITS);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        for n in 0..3 {
            state.handle(Request::Deliver {
                names: names(&["a"]),
                envelope: envelope(n),
            });
        }
        assert_eq!(state.queued_messages(), 3);
        let Reply::Drained(Some(first)) = drain_all(&mut state, "a") else {
            panic!("drain of a known agent");
        };
        let ids: Vec<u128> = first.messages.iter().map(|e| e.id.as_u128()).collect();
        assert_eq!(ids, vec![0, 1, 2]);
        assert_eq!(
            drain_all(&mut state, "a"),
            Reply::Drained(Some(DrainedPage {
                messages: vec![],
                left: 0
            }))
        );
        assert_eq!(state.queued_messages(), 0);
    }

    #[test]
    fn drain_of_unknown_agent_is_none() {
        let mut state = ShardState::new(0, 1, LIMITS);
        assert_eq!(drain_all(&mut state, "nobody"), Reply::Drained(None));
    }

    #[test]
    fn a_full_inbox_refuses_and_reservations_count_against_the_cap() {
        let mut state = ShardState::new(
            0,
            1,
            InboxLimits {
                messages: 2,
                bytes: usize::MAX,
            },
        );
        register(&mut state, "a", 1, RegisterMode::Upsert);
        register(&mut state, "b", 1, RegisterMode::Upsert);
        let deliver = |state: &mut ShardState, n: u128| {
            state.handle(Request::Deliver {
                names: names(&["a", "b"]),
                envelope: envelope(n),
            })
        };
        assert_eq!(deliver(&mut state, 1), Reply::Delivered(Ok(2)));
        // One place left each; a prepared message takes b's.
        assert_eq!(prepare(&mut state, 10, &["b"]), Reply::Prepared(Ok(1)));
        assert_eq!(
            deliver(&mut state, 2),
            Reply::Delivered(Err(Undeliverable::InboxFull(names(&["b"])))),
            "all or nothing: a gets nothing either"
        );
        assert_eq!(state.queued_messages(), 2);
        state.handle(Request::Abort {
            id: Uuid::from_u128(10),
        });
        assert_eq!(deliver(&mut state, 3), Reply::Delivered(Ok(2)));
        assert_eq!(
            deliver(&mut state, 4),
            Reply::Delivered(Err(Undeliverable::InboxFull(names(&["a", "b"]))))
        );
        // Draining makes room again.
        drain_all(&mut state, "a");
        drain_all(&mut state, "b");
        assert_eq!(deliver(&mut state, 5), Reply::Delivered(Ok(2)));
    }

    fn prepare(state: &mut ShardState, n: u128, recipients: &[&str]) -> Reply {
        state.handle(Request::Prepare {
            envelope: envelope(n),
            recipients: names(recipients),
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
                bytes: usize::MAX,
            },
        );
        register(&mut state, "a", 1, RegisterMode::Upsert);
        assert_eq!(prepare(&mut state, 1, &["a"]), Reply::Prepared(Ok(1)));
        assert_eq!(
            drain_all(&mut state, "a"),
            Reply::Drained(Some(DrainedPage {
                messages: vec![],
                left: 0
            })),
            "not visible before the commit"
        );
        assert_eq!(
            prepare(&mut state, 2, &["a"]),
            Reply::Prepared(Err(Undeliverable::InboxFull(names(&["a"])))),
            "the prepared message holds the only place"
        );
        state.handle(Request::Commit {
            id: Uuid::from_u128(1),
        });
        let Reply::Drained(Some(page)) = drain_all(&mut state, "a") else {
            panic!("drain");
        };
        assert_eq!(page.messages[0].id, Uuid::from_u128(1));
    }

    /// A state with its log on, and the records it wrote, read back.
    fn logged_state() -> ShardState {
        ShardState::with_log(0, 1, LIMITS, LogBuffer::new(true, 0))
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

    /// What a drain of everything returns, per agent, without changing `state`'s log.
    fn inboxes(state: &ShardState) -> Vec<(String, Vec<u128>, usize)> {
        let mut all: Vec<(String, Vec<u128>, usize)> = state
            .agents
            .iter()
            .map(|(name, agent)| {
                (
                    name.to_string(),
                    agent.inbox.iter().map(|m| m.id.as_u128()).collect(),
                    agent.reserved,
                )
            })
            .collect();
        all.sort();
        all
    }

    #[test]
    fn replaying_the_log_gives_the_live_state() {
        let mut live = logged_state();
        register(&mut live, "a", 1, RegisterMode::Upsert);
        register(&mut live, "b", 1, RegisterMode::Upsert);
        for n in 0..4 {
            live.handle(Request::Deliver {
                names: names(&["a", "b"]),
                envelope: envelope(n),
            });
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
        live.handle(Request::Drain {
            name: "a".into(),
            max_weight: 12,
            at_least_one: true,
        });
        let records = records_of(&mut live);
        assert_eq!(records.len(), 2 + 4 + 3 + 2 + 1, "one record per change");
        assert_eq!(live.log().end(), records.len() as u64);

        let mut replayed = ShardState::new(0, 1, LIMITS);
        for record in records {
            replayed.replay(record).expect("replays");
        }
        assert_eq!(inboxes(&replayed), inboxes(&live));
        assert_eq!(replayed.queued_messages(), live.queued_messages());
        assert_eq!(replayed.live_bytes(), live.live_bytes());
        let pending = |s: &ShardState| s.pending().map(|p| p.envelope.id).collect::<Vec<_>>();
        assert_eq!(pending(&replayed), pending(&live));
    }

    #[test]
    fn emissions_wait_for_their_records_to_be_durable() {
        let mut state = logged_state();
        register(&mut state, "a", 1, RegisterMode::Upsert);
        state.handle(Request::Deliver {
            names: names(&["a"]),
            envelope: envelope(1),
        });
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
        assert!(
            out.is_empty(),
            "the message's record (seq 1) is not durable yet"
        );
        state.log_mut().take_events(2, &mut out);
        assert!(
            matches!(&out[..], [Emitted::Message { seq: 1, .. }]),
            "{out:?}"
        );
    }

    #[test]
    fn an_image_replays_to_the_same_state() {
        let mut live = logged_state();
        register(&mut live, "a", 1, RegisterMode::Upsert);
        register(&mut live, "b", 1, RegisterMode::Upsert);
        live.handle(Request::Deliver {
            names: names(&["a", "b"]),
            envelope: envelope(1),
        });
        prepare(&mut live, 2, &["b"]);
        let image = live.image();
        assert_eq!(image.position, 4);
        let mut restored = ShardState::new(0, 1, LIMITS);
        image_records(&image, |record| restored.replay(record).expect("replays"));
        assert_eq!(inboxes(&restored), inboxes(&live));
    }

    #[test]
    fn a_drain_that_does_not_match_the_inbox_is_refused() {
        let mut state = ShardState::new(0, 1, LIMITS);
        register(&mut state, "a", 1, RegisterMode::Upsert);
        let wrong = Record::Drained {
            name: "a".into(),
            count: 1,
            last_id: Uuid::from_u128(5),
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
                messages: 100,
                bytes: 18,
            },
        );
        register(&mut state, "a", 1, RegisterMode::Upsert);
        let deliver = |state: &mut ShardState, n: u128| {
            state.handle(Request::Deliver {
                names: names(&["a"]),
                envelope: envelope(n),
            })
        };
        for n in 0..3 {
            assert_eq!(deliver(&mut state, n), Reply::Delivered(Ok(1)));
        }
        assert_eq!(
            deliver(&mut state, 3),
            Reply::Delivered(Err(Undeliverable::InboxFull(names(&["a"]))))
        );
        // Weighed by text length (the default), a page of at most 13 holds two messages; the
        // third stays queued, in order.
        let drain = |state: &mut ShardState, max_weight: usize, at_least_one: bool| match state
            .handle(Request::Drain {
                name: "a".into(),
                max_weight,
                at_least_one,
            }) {
            Reply::Drained(Some(page)) => (
                page.messages
                    .iter()
                    .map(|m| m.id.as_u128())
                    .collect::<Vec<_>>(),
                page.left,
            ),
            other => panic!("drain answered {other:?}"),
        };
        assert_eq!(drain(&mut state, 13, true), (vec![0, 1], 1));
        assert_eq!(state.queued_messages(), 1);
        // A page smaller than one message is empty unless at least one is asked for.
        assert_eq!(drain(&mut state, 1, false), (vec![], 1));
        assert_eq!(drain(&mut state, 1, true), (vec![2], 0));
        assert_eq!(deliver(&mut state, 4), Reply::Delivered(Ok(1)));
    }
}
