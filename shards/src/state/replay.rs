//! Replay: a record read back from the log (or a snapshot) applied to the state.

use super::agents::{set_marks, Agent, Delivery};
use super::send::PendingSend;
use super::{ShardState, UNSET};
use crate::log::record::Record;
use std::fmt;

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
                self.drain_front(&name, count, at, None);
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
                let delivery = Delivery {
                    envelope,
                    read_at: state.read_at.unwrap_or(UNSET),
                    acked_at: state.acked_at.unwrap_or(UNSET),
                    drained: state.drained,
                };
                self.push_delivery(&name, delivery, false);
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
                if !self.agents.contains_key(&name) {
                    return Err(ReplayError(format!(
                        "sent copy of {name}, who is not registered"
                    )));
                }
                self.push_sent(&name, envelope, false);
                Ok(())
            }
        }
    }
}
