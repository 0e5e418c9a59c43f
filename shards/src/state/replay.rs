//! Replay: a record read back from the log (or a snapshot) applied to the state.

use super::agents::{set_marks, Agent, Delivery};
use super::record::{DeliveryState, Record};
use super::send::PendingSend;
use super::{ShardState, UNSET};
use crate::envelope::SharedEnvelope;
use crate::protocol::AgentProfile;
use std::fmt;
use uuid::Uuid;

/// A logged record that does not fit the state it is replayed onto: the log is damaged or
/// from another layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayError(pub String);

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ShardState {
    /// Applies a record read back from this shard's log (or snapshot), without logging it
    /// again and without emitting anything.
    pub fn replay(&mut self, record: Record) -> Result<(), ReplayError> {
        self.log.set_replaying(true);
        let result = self.apply(record);
        self.log.set_replaying(false);
        result
    }

    pub(super) fn apply(&mut self, record: Record) -> Result<(), ReplayError> {
        match record {
            Record::Agent(profile) => self.apply_agent(profile),
            Record::Enqueued { envelope } => {
                let local = self.registered_recipients(&envelope, "delivered to")?;
                self.make_visible(&local, &envelope);
            }
            Record::Prepared { envelope, owners } => {
                let local = self.registered_recipients(&envelope, "prepared for")?;
                self.hold(PendingSend {
                    envelope,
                    owners,
                    local,
                });
            }
            Record::Visible { id } => {
                // A marker without a prepare here (a snapshot's recent list) changes nothing.
                if self.pending.contains_key(&id) {
                    self.commit(id);
                } else {
                    self.recent_visible.push(id);
                }
            }
            Record::Aborted { id } => self.abort(id),
            Record::Drained {
                name,
                count,
                last_id,
                at_ms,
            } => self.apply_drained(&name, count as usize, last_id, at_ms)?,
            Record::Marked {
                name,
                ack,
                at_ms,
                ids,
            } => {
                let agent = self.registered(&name, "marks of")?;
                for id in ids {
                    // Evicted since: nothing to mark.
                    if let Some(at) = agent.delivery_index(&id) {
                        set_marks(agent, at, ack, at_ms);
                    }
                }
            }
            Record::Activity {
                name,
                last_active_ms,
                next_seq,
            } => {
                let agent = self.registered(&name, "activity of")?;
                agent.last_active_ms = agent.last_active_ms.max(last_active_ms);
                agent.logged_active_ms = agent.last_active_ms;
                if agent.deliveries.is_empty() && next_seq > agent.first_seq {
                    agent.first_seq = next_seq;
                }
            }
            Record::Delivery {
                name,
                state,
                envelope,
            } => self.apply_delivery(&name, state, envelope)?,
            Record::Lease { project, lease } => self.project(project).upsert(lease),
            Record::LeaseIds { project, next_id } => self.project(project).set_next_id(next_id),
            Record::LeaseKey { project, key } => self.project(project).remember_key(key),
            Record::Sent { name, envelope } => {
                self.registered(&name, "sent copy of")?;
                self.push_sent(&name, envelope, false);
            }
        }
        Ok(())
    }

    /// The agent `name`, or the error that a record `what` it names no registered agent.
    fn registered(&mut self, name: &str, what: &str) -> Result<&mut Agent, ReplayError> {
        self.agents
            .get_mut(name)
            .ok_or_else(|| ReplayError(format!("{what} {name}, who is not registered")))
    }

    /// The local recipients of `envelope`, every one of them registered.
    fn registered_recipients(
        &self,
        envelope: &SharedEnvelope,
        what: &str,
    ) -> Result<Vec<Box<str>>, ReplayError> {
        let local = self.local_recipients(envelope);
        match local.iter().find(|n| !self.agents.contains_key(&***n)) {
            Some(name) => Err(ReplayError(format!(
                "message {} {what} {name}, who is not registered",
                envelope.id
            ))),
            None => Ok(local),
        }
    }

    fn apply_agent(&mut self, profile: AgentProfile) {
        match self.agents.get_mut(&profile.name) {
            Some(agent) => agent.profile = profile,
            None => {
                self.directory
                    .add_agent(profile.project_id, &profile.project_key, &profile.name);
                self.agents
                    .insert(profile.name.clone(), Agent::new(profile));
            }
        }
    }

    /// A drain must take exactly the messages it names, from the front of the inbox.
    fn apply_drained(
        &mut self,
        name: &str,
        count: usize,
        last_id: Uuid,
        at_ms: Option<i64>,
    ) -> Result<(), ReplayError> {
        let agent = self.registered(name, "drain of")?;
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
        self.drain_front(name, count, at, None);
        Ok(())
    }

    /// A snapshot's delivery, which must come in order of sequence (drained ones first).
    fn apply_delivery(
        &mut self,
        name: &str,
        state: DeliveryState,
        envelope: SharedEnvelope,
    ) -> Result<(), ReplayError> {
        let agent = self.registered(name, "delivery to")?;
        if agent.deliveries.is_empty() {
            agent.first_seq = state.seq;
        }
        if state.seq != agent.next_seq() || (state.drained && agent.undrained() > 0) {
            return Err(ReplayError(format!(
                "delivery {} of {name} out of order",
                state.seq
            )));
        }
        let delivery = Delivery {
            envelope,
            read_at: state.read_at.unwrap_or(UNSET),
            acked_at: state.acked_at.unwrap_or(UNSET),
            drained: state.drained,
        };
        self.push_delivery(name, delivery, false);
        Ok(())
    }
}
