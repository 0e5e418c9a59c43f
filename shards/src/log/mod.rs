//! A shard's write-ahead log: what a record is ([`record`]), how files hold them
//! ([`segment`]), the shard's in-memory buffer of records not yet written ([`LogBuffer`]), the
//! flusher that writes them with group commit ([`journal`]), snapshots and deleting what
//! they replace ([`compaction`]), and the reading at start-up ([`recovery`], reporting its
//! [`progress`]; what the helper threads have seen is in [`watermarks`]).

pub mod compaction;
pub mod journal;
pub mod progress;
pub mod record;
pub mod recovery;
pub mod segment;
pub mod watermarks;

pub use record::Record;

use crate::envelope::SharedEnvelope;
use crate::protocol::AgentProfile;
use std::collections::VecDeque;

/// Something the owner hands to the helper threads once the record behind it is durable:
/// so neither search nor the git trail can show mail or agents a crash then loses.
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

/// Records appended by [`crate::ShardState`] in the same step that changes the state, waiting
/// for the flusher; and what to emit once they are durable.
#[derive(Debug)]
pub struct LogBuffer {
    /// Off in `none` durability: nothing is encoded, every position is 0.
    enabled: bool,
    bytes: Vec<u8>,
    /// The sequence number the next record gets.
    next_seq: u64,
    /// Emissions in log order, each with the position that must be durable first.
    events: VecDeque<(u64, Emitted)>,
    /// While replaying, records are neither written again nor emitted.
    replaying: bool,
    /// The position after the last record that emitted a message, and a profile: the
    /// helper threads have everything below a position once they have reached these.
    message_emitted_end: u64,
    profile_emitted_end: u64,
}

impl LogBuffer {
    pub fn new(enabled: bool, next_seq: u64) -> Self {
        LogBuffer {
            enabled,
            bytes: Vec::new(),
            next_seq,
            events: VecDeque::new(),
            replaying: false,
            message_emitted_end: 0,
            profile_emitted_end: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The position after the last record: a reply produced now waits until this is durable.
    pub fn end(&self) -> u64 {
        self.next_seq
    }

    /// Bytes waiting for the flusher.
    pub fn pending_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Appends one record written by `encode`; returns its sequence number.
    pub(crate) fn append(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> u64 {
        let seq = self.next_seq;
        if self.enabled && !self.replaying {
            encode(&mut self.bytes);
            self.next_seq += 1;
        }
        seq
    }

    pub(crate) fn emit(&mut self, event: impl FnOnce(u64) -> Emitted, seq: u64) {
        if !self.replaying {
            // Durable once the position after the record is.
            let after = if self.enabled { seq + 1 } else { 0 };
            let event = event(seq);
            match event {
                Emitted::Message { .. } => self.message_emitted_end = after,
                Emitted::Profile { .. } => self.profile_emitted_end = after,
            }
            self.events.push_back((after, event));
        }
    }

    /// Start-up: records below these were handed to the helper threads again (see recovery).
    pub fn set_emitted_ends(&mut self, message_end: u64, profile_end: u64) {
        self.message_emitted_end = message_end;
        self.profile_emitted_end = profile_end;
    }

    /// The positions after the last record that emitted a message, and a profile.
    pub fn emitted_ends(&self) -> (u64, u64) {
        (self.message_emitted_end, self.profile_emitted_end)
    }

    pub(crate) fn set_replaying(&mut self, replaying: bool) {
        self.replaying = replaying;
    }

    /// Everything written since the last call, and the position after it. `spare` (emptied)
    /// becomes the next buffer, so the flusher and the shard trade two buffers back and forth.
    pub fn take_batch(&mut self, spare: Vec<u8>) -> (Vec<u8>, u64) {
        debug_assert!(spare.is_empty());
        (std::mem::replace(&mut self.bytes, spare), self.next_seq)
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
