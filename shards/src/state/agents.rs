//! Agents and their deliveries: what one agent holds (its delivery log, sent messages and
//! totals), registration, eviction past the retention limits, and the agent list.

use super::outbox::Emitted;
use super::record;
use super::{InboxLimits, ShardState, UNSET};
use crate::envelope::{Importance, SharedEnvelope};
use crate::protocol::{
    AgentProfile, AgentSummary, Counts, DeliveryView, Kind, RegisterMode, Registration, Reply,
};
use std::collections::{HashMap, VecDeque};
use uuid::Uuid;

#[derive(Debug)]
pub(super) struct Delivery {
    pub(super) envelope: SharedEnvelope,
    pub(super) read_at: i64,
    pub(super) acked_at: i64,
    pub(super) drained: bool,
}

impl Delivery {
    pub(super) fn unread(&self) -> bool {
        self.read_at == UNSET
    }

    pub(super) fn urgent(&self) -> bool {
        self.envelope.importance == Importance::Urgent
    }

    pub(super) fn ack_pending(&self) -> bool {
        self.envelope.ack_required && self.acked_at == UNSET
    }
}

pub(super) fn time(value: i64) -> Option<i64> {
    (value != UNSET).then_some(value)
}

#[derive(Debug)]
pub(super) struct Agent {
    pub(super) profile: AgentProfile,
    pub(super) last_active_ms: i64,
    /// The `last_active` the log holds.
    pub(super) logged_active_ms: i64,
    pub(super) deliveries: VecDeque<Delivery>,
    /// The `seq` of `deliveries[0]` (or of the next delivery when there is none).
    pub(super) first_seq: u64,
    /// Deliveries at the front that are drained.
    pub(super) drained: usize,
    pub(super) sent: VecDeque<SharedEnvelope>,
    /// Text bytes of the undrained deliveries.
    pub(super) queued_bytes: usize,
    /// Weights of the undrained deliveries (see `Envelope::weight`): a drain that allows this
    /// much takes the whole inbox at once.
    pub(super) queued_weight: usize,
    /// Text bytes of every retained delivery and sent message.
    pub(super) retained_bytes: usize,
    pub(super) counts: Counts,
    /// Places (and their bytes) held by prepared messages not yet visible; they count
    /// against the caps.
    pub(super) reserved: usize,
    pub(super) reserved_bytes: usize,
    /// The idempotency keys of the messages this agent sent that are still retained (in
    /// `sent`) or being delivered: a key is remembered exactly as long as its message is kept
    /// in the sender's history, so the table is bounded by retention.
    pub(super) keys: HashMap<Box<str>, SentKey>,
}

/// A message sent with an idempotency key.
#[derive(Debug)]
pub(super) struct SentKey {
    pub(super) envelope: SharedEnvelope,
    /// Visible; false while a multi-owner send is prepared and not yet committed.
    pub(super) settled: bool,
}

impl Agent {
    pub(super) fn new(profile: AgentProfile) -> Self {
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
            keys: HashMap::new(),
        }
    }

    /// Notes `envelope`'s idempotency key, if it has one.
    pub(super) fn note_key(&mut self, envelope: &SharedEnvelope, settled: bool) {
        if let Some(keyed) = envelope.idempotency() {
            let entry = SentKey {
                envelope: SharedEnvelope::clone(envelope),
                settled,
            };
            self.keys.insert(keyed.key.clone(), entry);
        }
    }

    /// Forgets `envelope`'s key (its message left the history, or its send was aborted).
    pub(super) fn forget_key(&mut self, envelope: &SharedEnvelope) {
        if let Some(keyed) = envelope.idempotency() {
            if self
                .keys
                .get(&keyed.key)
                .is_some_and(|k| k.envelope.id == envelope.id)
            {
                self.keys.remove(&keyed.key);
            }
        }
    }

    pub(super) fn undrained(&self) -> usize {
        self.deliveries.len() - self.drained
    }

    pub(super) fn next_seq(&self) -> u64 {
        self.first_seq + self.deliveries.len() as u64
    }

    pub(super) fn has_room(&self, limits: &InboxLimits, incoming_bytes: usize) -> bool {
        self.undrained() + self.reserved < limits.messages
            && self.queued_bytes + self.reserved_bytes + incoming_bytes <= limits.bytes
    }

    pub(super) fn count(&mut self, delivery: &Delivery, add: bool) {
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
    pub(super) fn push(&mut self, delivery: Delivery) -> usize {
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

    pub(super) fn kind_of(&self, envelope: &SharedEnvelope) -> Kind {
        if envelope.cc().any(|n| n == &*self.profile.name) {
            Kind::Cc
        } else {
            Kind::To
        }
    }

    pub(super) fn view(&self, index: usize) -> DeliveryView {
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
    pub(super) fn mark_drained(&mut self, count: usize, at_ms: i64) -> (usize, usize) {
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
    pub(super) fn evict(&mut self, limits: &InboxLimits) {
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
                self.forget_key(&envelope);
            }
        }
    }

    /// Index of the delivery of message `id`, if retained.
    pub(super) fn delivery_index(&self, id: &Uuid) -> Option<usize> {
        self.deliveries.iter().position(|d| d.envelope.id == *id)
    }
}

/// Sets `read_at` (and with `ack`, `acked_at`) of delivery `at` where unset; true if either
/// changed.
pub(super) fn set_marks(agent: &mut Agent, at: usize, ack: bool, now_ms: i64) -> bool {
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

impl ShardState {
    pub(super) fn register(&mut self, r: Registration) -> Reply {
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
        self.outbox.emit(
            &self.log,
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

    // The only places a delivery or a sent copy enters or leaves an agent's logs, live or
    // replayed: each keeps the shard's totals (queued, retained, the directory) in step, so
    // the totals are written nowhere else. Each finds the agent once (they are on the send
    // and drain paths).

    /// Appends `delivery` to `name`'s delivery log, then (with `evict`) evicts what retention
    /// no longer keeps. Returns its text bytes; `None` when `name` is not here.
    pub(super) fn push_delivery(
        &mut self,
        name: &str,
        delivery: Delivery,
        evict: bool,
    ) -> Option<usize> {
        let agent = self.agents.get_mut(name)?;
        let before = retained(agent);
        let queued = !delivery.drained;
        let bytes = agent.push(delivery);
        if evict {
            agent.evict(&self.limits);
        }
        if queued {
            self.directory.queued(&agent.profile.project_id, 1, 0);
            self.queued_messages += 1;
            self.queued_bytes += bytes;
        }
        let after = retained(agent);
        self.account(before, after);
        Some(bytes)
    }

    /// Appends `envelope` to `name`'s sent messages, then (with `evict`) evicts.
    pub(super) fn push_sent(&mut self, name: &str, envelope: SharedEnvelope, evict: bool) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        let before = retained(agent);
        agent.retained_bytes += envelope.payload_len();
        self.directory.sent(&agent.profile.project_id, &envelope);
        agent.note_key(&envelope, true);
        agent.sent.push_back(envelope);
        if evict {
            agent.evict(&self.limits);
        }
        let after = retained(agent);
        self.account(before, after);
    }

    /// Marks the oldest `count` undrained deliveries of `name` drained at `at_ms` (read then,
    /// if unread), appends their views to `page` if asked (before eviction, which may take
    /// them), then evicts. Returns how many stay undrained.
    pub(super) fn drain_front(
        &mut self,
        name: &str,
        count: usize,
        at_ms: i64,
        page: Option<&mut Vec<DeliveryView>>,
    ) -> usize {
        let Some(agent) = self.agents.get_mut(name) else {
            return 0;
        };
        assert!(
            count <= agent.undrained() && count <= self.queued_messages,
            "a drain of more than {name}'s inbox holds"
        );
        let before = retained(agent);
        let start = agent.drained;
        let (count, bytes) = agent.mark_drained(count, at_ms);
        if let Some(page) = page {
            page.extend((start..start + count).map(|i| agent.view(i)));
        }
        agent.evict(&self.limits);
        self.directory.queued(&agent.profile.project_id, 0, count);
        self.queued_messages -= count;
        self.queued_bytes -= bytes;
        let left = agent.undrained();
        let after = retained(agent);
        self.account(before, after);
        left
    }

    /// Carries one agent's change of retained messages and bytes (before and after) into the
    /// shard's totals.
    fn account(&mut self, before: (usize, usize), after: (usize, usize)) {
        self.retained_messages = self.retained_messages + after.0 - before.0;
        self.retained_bytes = self.retained_bytes + after.1 - before.1;
    }

    pub(super) fn list_agents(
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
}

/// What an agent retains: (deliveries and sent messages, their text bytes).
fn retained(agent: &Agent) -> (usize, usize) {
    (
        agent.deliveries.len() + agent.sent.len(),
        agent.retained_bytes,
    )
}
