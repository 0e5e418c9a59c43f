//! What a shard hands to the helper threads (search index, git trail) once the record behind
//! it is durable, so neither can show mail or agents a crash then loses.

use crate::envelope::SharedEnvelope;
use crate::log::LogBuffer;
use crate::protocol::AgentProfile;
use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub enum Emitted {
    /// A message became visible; this shard indexes it (the lowest owner of a multi-owner
    /// send, so it is indexed once).
    Message {
        envelope: SharedEnvelope,
        /// The record's sequence number in this shard's log.
        seq: u64,
    },
    Profile {
        profile: AgentProfile,
        created: bool,
        seq: u64,
    },
}

/// Emissions waiting for their records to be durable, in log order.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Each with the position that must be durable first.
    events: VecDeque<(u64, Emitted)>,
    /// The position after the last record that emitted a message, and a profile: the
    /// helper threads have everything below a position once they have reached these.
    message_emitted_end: u64,
    profile_emitted_end: u64,
}

impl Outbox {
    /// Queues what the record at `seq` of `log` emits; nothing while replaying (recovery hands
    /// the helpers what they missed itself).
    pub(crate) fn emit(&mut self, log: &LogBuffer, event: impl FnOnce(u64) -> Emitted, seq: u64) {
        if log.replaying() {
            return;
        }
        // Durable once the position after the record is.
        let after = if log.enabled() { seq + 1 } else { 0 };
        let event = event(seq);
        match event {
            Emitted::Message { .. } => self.message_emitted_end = after,
            Emitted::Profile { .. } => self.profile_emitted_end = after,
        }
        self.events.push_back((after, event));
    }

    /// Start-up: records below these were handed to the helper threads again (see recovery).
    /// Never lowers an end: recovery's own send resolutions emitted past them already, and
    /// compaction must wait for the helpers to reach those too.
    pub fn raise_emitted_ends(&mut self, message_end: u64, profile_end: u64) {
        self.message_emitted_end = self.message_emitted_end.max(message_end);
        self.profile_emitted_end = self.profile_emitted_end.max(profile_end);
    }

    /// The positions after the last record that emitted a message, and a profile.
    pub fn emitted_ends(&self) -> (u64, u64) {
        (self.message_emitted_end, self.profile_emitted_end)
    }

    /// The emissions whose records are durable up to `durable`.
    pub fn take_events(&mut self, durable: u64, out: &mut Vec<Emitted>) {
        while self
            .events
            .front()
            .is_some_and(|(after, _)| *after <= durable)
        {
            if let Some((_, event)) = self.events.pop_front() {
                out.push(event);
            }
        }
    }

    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Envelope, Message};
    use std::sync::Arc;

    #[test]
    fn start_up_never_lowers_an_end_that_a_send_resolution_emitted_past() {
        let log = LogBuffer::new(true, 0);
        let mut outbox = Outbox::default();
        let envelope = Arc::new(Envelope::compose(Message {
            to: vec!["b".into()],
            ..Message::plain(uuid::Uuid::from_u128(1), "a")
        }));
        // Recovery resolved a multi-owner send: its Visible record is at position 9.
        outbox.emit(&log, |seq| Emitted::Message { envelope, seq }, 9);
        // What recovery handed over again ends lower.
        outbox.raise_emitted_ends(3, 2);
        assert_eq!(outbox.emitted_ends(), (10, 2));
        outbox.raise_emitted_ends(12, 5);
        assert_eq!(outbox.emitted_ends(), (12, 5));
    }
}
