//! A shard's write-ahead log, as bytes it never interprets: how a record's bytes are framed
//! ([`frame`]), how files hold frames ([`segment`]), the shard's in-memory buffer of records
//! not yet written ([`LogBuffer`]), the flusher that writes them with group commit
//! ([`journal`]), snapshots and deleting what they replace ([`compaction`]), the files and
//! generations read at start-up ([`files`], reporting its [`progress`]), what the helper
//! threads have seen ([`watermarks`]), and a disk whose power the tests can cut
//! ([`simulated`]). What a record means is [`crate::state::record`].

pub mod compaction;
pub mod files;
pub mod frame;
pub mod journal;
pub mod progress;
pub mod segment;
pub mod simulated;
pub mod watermarks;

/// Records appended by [`crate::ShardState`] in the same step that changes the state, waiting
/// for the flusher.
#[derive(Debug)]
pub struct LogBuffer {
    /// Off in `none` durability: nothing is encoded, every position is 0.
    enabled: bool,
    bytes: Vec<u8>,
    /// The sequence number the next record gets.
    next_seq: u64,
    /// While replaying, records are neither written again nor emitted.
    replaying: bool,
}

impl LogBuffer {
    pub fn new(enabled: bool, next_seq: u64) -> Self {
        LogBuffer {
            enabled,
            bytes: Vec::new(),
            next_seq,
            replaying: false,
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

    pub(crate) fn set_replaying(&mut self, replaying: bool) {
        self.replaying = replaying;
    }

    pub(crate) fn replaying(&self) -> bool {
        self.replaying
    }

    /// Everything written since the last call, and the position after it. `spare` (emptied)
    /// becomes the next buffer, so the flusher and the shard trade two buffers back and forth.
    pub fn take_batch(&mut self, spare: Vec<u8>) -> (Vec<u8>, u64) {
        debug_assert!(spare.is_empty());
        (std::mem::replace(&mut self.bytes, spare), self.next_seq)
    }
}
