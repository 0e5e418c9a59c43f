//! The participant's side of a send: checking room, preparing a multi-owner message
//! invisibly, committing or aborting it, and making mail visible (and noting it for waiters).

use super::agents::{Agent, Delivery};
use super::outbox::Emitted;
use super::record;
use super::{ShardState, UNSET};
use crate::envelope::SharedEnvelope;
use crate::protocol::{KeyUse, Undeliverable};
use crate::routing::owner_of;
use uuid::Uuid;

/// A message prepared on this shard (step one of a multi-owner send), invisible.
#[derive(Debug, Clone)]
pub struct PendingSend {
    pub envelope: SharedEnvelope,
    pub owners: u16,
    /// The recipients this shard owns.
    pub(super) local: Vec<Box<str>>,
}

impl ShardState {
    /// The recipients of `envelope` this shard owns.
    pub(super) fn local_recipients(&self, envelope: &SharedEnvelope) -> Vec<Box<str>> {
        envelope
            .recipients()
            .filter(|name| self.owns(name))
            .map(Box::from)
            .collect()
    }

    /// Why `names` cannot all take one more message of `bytes` now, if they cannot. Collected
    /// only when something is wrong, so the common path allocates nothing.
    pub(super) fn refusal(&self, names: &[Box<str>], bytes: usize) -> Option<Undeliverable> {
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

    /// What the sender's idempotency key was used for already, on the sender's owner (the
    /// only shard that holds the sender); `None` for a message without a key or a new key.
    fn key_use(&self, envelope: &SharedEnvelope) -> Option<KeyUse> {
        let keyed = envelope.idempotency()?;
        let earlier = self.agents.get(envelope.from())?.keys.get(&keyed.key)?;
        let first = earlier.envelope.idempotency().map(|k| k.request_hash);
        Some(if first != Some(keyed.request_hash) {
            KeyUse::OtherRequest
        } else if !earlier.settled {
            KeyUse::InFlight
        } else {
            KeyUse::Sent(SharedEnvelope::clone(&earlier.envelope))
        })
    }

    pub(super) fn prepare(
        &mut self,
        envelope: SharedEnvelope,
        owners: u16,
    ) -> Result<usize, Undeliverable> {
        if let Some(used) = self.key_use(&envelope) {
            return Err(Undeliverable::KeyUsed(used));
        }
        let local = self.local_recipients(&envelope);
        if let Some(refusal) = self.refusal(&local, envelope.payload_len()) {
            return Err(refusal);
        }
        self.log
            .append(|out| record::encode_message(out, &envelope, Some(owners)));
        // A repeat while this send is under way is told so, not delivered twice.
        if let Some(sender) = self.agents.get_mut(envelope.from()) {
            sender.note_key(&envelope, false);
        }
        Ok(self.hold(PendingSend {
            envelope,
            owners,
            local,
        }))
    }

    /// Holds a place in each local recipient's inbox for a prepared message.
    pub(super) fn hold(&mut self, send: PendingSend) -> usize {
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
    pub(super) fn unhold(&mut self, send: &PendingSend) {
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
            self.outbox.emit(
                &self.log,
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
        if let Some(sender) = self.agents.get_mut(send.envelope.from()) {
            sender.forget_key(&send.envelope);
        }
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
    pub(super) fn make_visible(&mut self, local: &[Box<str>], envelope: &SharedEnvelope) {
        let position = self.log.end();
        for name in local {
            let delivery = Delivery {
                envelope: SharedEnvelope::clone(envelope),
                read_at: UNSET,
                acked_at: UNSET,
                drained: false,
            };
            if self.push_delivery(name, delivery, true).is_some() && self.watched.contains(name) {
                self.new_mail.push((position, name.clone()));
            }
        }
        let from = envelope.from();
        if !self.owns(from) {
            return;
        }
        // A first-format snapshot lists a message once per local recipient: one copy.
        let copied = |agent: &Agent| {
            !envelope.sender_took_part && agent.sent.iter().any(|e| e.id == envelope.id)
        };
        let Some(agent) = self.agents.get_mut(from).filter(|a| !copied(a)) else {
            return;
        };
        agent.last_active_ms = agent.last_active_ms.max(envelope.timestamp_ms);
        agent.logged_active_ms = agent.logged_active_ms.max(envelope.timestamp_ms);
        self.push_sent(from, SharedEnvelope::clone(envelope), true);
    }

    pub(super) fn deliver(&mut self, envelope: SharedEnvelope) -> Result<usize, Undeliverable> {
        if let Some(used) = self.key_use(&envelope) {
            return Err(Undeliverable::KeyUsed(used));
        }
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
        self.outbox
            .emit(&self.log, |seq| Emitted::Message { envelope, seq }, seq);
        Ok(local.len())
    }
}
