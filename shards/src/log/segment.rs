//! Log segment and snapshot files: the header that names what a file holds, and reading its
//! frames back as records (through the caller's `decode`), each with its sequence number.
//!
//! A file starts with a [`HEADER_BYTES`] header (magic, format version, shard index, shard
//! count, the sequence number of its first record, the block size its writer aligned to),
//! then framed records ([`super::frame`]). A segment's records are numbered from its base on;
//! padding takes no number. What a record means is the caller's `decode`.
//!
//! Format version 2 puts each group commit of a segment behind a [`BatchHeader`]: its first
//! position, its length, a checksum over all of it, and how far the log was synced when it
//! was written. Page-cache blocks reach the disk in any order, so after a power cut in batch
//! mode a batch can be missing while a later one is there; version 1 read that hole as padding
//! and numbered the later records as if nothing were missing. Version 2 sees the hole, cuts
//! the log there (a torn tail: nothing after it was synced) or, when a later batch says the
//! missing records had been synced, refuses to start. Version 1 files are still read.

use super::frame::{self, Frame};
use std::fmt;

/// The header takes one whole block of any device (≤ 4 KiB logical blocks), so the first
/// record starts aligned.
pub const HEADER_BYTES: usize = 4096;
const SEGMENT_MAGIC: &[u8; 8] = b"ALLMANLG";
const SNAPSHOT_MAGIC: &[u8; 8] = b"ALLMANSN";
/// The version this build writes.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest version this build reads: segments of plain frames, no batch headers.
const FIRST_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Segment,
    Snapshot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: FileKind,
    /// The format the file was written in: 1 (frames only) or 2 (segments in batches).
    pub version: u32,
    pub shard: u32,
    pub shard_count: u32,
    /// Segment: the sequence number of its first record. Snapshot: the log position it
    /// stands for (every record below it is in the snapshot).
    pub base_seq: u64,
    /// Group commits start on a multiple of this many bytes.
    pub block_bytes: u32,
    /// A version 2 segment's random number, which seeds every batch checksum in it: bytes a
    /// client put in a message can never pass for one of its batch headers. 0 otherwise.
    pub salt: u64,
}

/// Snapshots are written whole and renamed into place, never torn, so the smallest block
/// serves: it only rounds the padding nothing writes.
const SNAPSHOT_BLOCK_BYTES: u32 = 512;

impl Header {
    /// The header of shard `shard`'s snapshot at log position `position`.
    pub fn snapshot(shard: u32, shard_count: u32, position: u64) -> Header {
        Header {
            kind: FileKind::Snapshot,
            version: FORMAT_VERSION,
            shard,
            shard_count,
            base_seq: position,
            block_bytes: SNAPSHOT_BLOCK_BYTES,
            salt: 0,
        }
    }

    /// The header of shard `shard`'s segment whose first record is `base_seq`, its group
    /// commits aligned to `block_bytes`, its batch checksums seeded with `salt` (random).
    pub fn segment(
        shard: u32,
        shard_count: u32,
        base_seq: u64,
        block_bytes: u32,
        salt: u64,
    ) -> Header {
        Header {
            kind: FileKind::Segment,
            version: FORMAT_VERSION,
            shard,
            shard_count,
            base_seq,
            block_bytes,
            salt,
        }
    }

    /// Whether the file's group commits carry batch headers (a version 2 segment).
    pub fn has_batches(&self) -> bool {
        self.kind == FileKind::Segment && self.version >= 2
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES);
        out.extend_from_slice(match self.kind {
            FileKind::Segment => SEGMENT_MAGIC,
            FileKind::Snapshot => SNAPSHOT_MAGIC,
        });
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.shard.to_le_bytes());
        out.extend_from_slice(&self.shard_count.to_le_bytes());
        out.extend_from_slice(&self.base_seq.to_le_bytes());
        out.extend_from_slice(&self.block_bytes.to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        // Version 2 appends the salt after version 1's checksum, with a checksum of its own:
        // an older build then finds its checksum whole and names the version it cannot read.
        if self.version >= 2 {
            out.extend_from_slice(&self.salt.to_le_bytes());
            let crc = crc32fast::hash(&out);
            out.extend_from_slice(&crc.to_le_bytes());
        }
        out.resize(HEADER_BYTES, 0);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Header, String> {
        // Version 1: fields to the block size, then their checksum. Version 2 goes on with
        // the salt and a checksum over everything before it.
        const USED_V1: usize = 8 + 4 + 4 + 4 + 8 + 4;
        const USED_V2: usize = USED_V1 + 4 + 8;
        if bytes.len() < HEADER_BYTES {
            return Err(format!("shorter than its {HEADER_BYTES}-byte header"));
        }
        let kind = match &bytes[..8] {
            m if m == SEGMENT_MAGIC => FileKind::Segment,
            m if m == SNAPSHOT_MAGIC => FileKind::Snapshot,
            _ => return Err("not an allman log file (bad magic)".into()),
        };
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let u64_at = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(word)
        };
        if crc32fast::hash(&bytes[..USED_V1]) != u32_at(USED_V1) {
            return Err("header checksum mismatch".into());
        }
        let version = u32_at(8);
        if !(FIRST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(format!(
                "format version {version}; this build reads versions {FIRST_FORMAT_VERSION} to {FORMAT_VERSION}"
            ));
        }
        if version >= 2 && crc32fast::hash(&bytes[..USED_V2]) != u32_at(USED_V2) {
            return Err("header checksum mismatch".into());
        }
        let header = Header {
            kind,
            version,
            shard: u32_at(12),
            shard_count: u32_at(16),
            base_seq: u64_at(20),
            block_bytes: u32_at(28),
            salt: if version >= 2 { u64_at(USED_V1 + 4) } else { 0 },
        };
        if header.shard_count == 0
            || header.shard >= header.shard_count
            || !header.block_bytes.is_power_of_two()
            || header.block_bytes as usize > HEADER_BYTES
        {
            return Err(format!("implausible header {header:?}"));
        }
        Ok(header)
    }
}

/// Bytes before a group commit's records in a version 2 segment.
pub const BATCH_HEADER_BYTES: usize = 32;
const BATCH_MAGIC: &[u8; 4] = b"ALGB";

/// What a version 2 segment says before each group commit:
/// `magic | records_bytes: u32 | first_seq: u64 | synced_before: u64 | records_crc: u32 |
/// header_crc: u32`, little-endian. `records_crc` is the CRC-32 of the records;
/// `header_crc` covers the segment's salt and the 28 bytes before it, so a header is known
/// genuine in constant time whatever length it claims. The batch is then padded to whole
/// blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// The position of the batch's first record.
    pub first_seq: u64,
    /// The framed records' bytes after the header (padding not counted).
    pub records_bytes: u32,
    /// Every record below this was synced (`fdatasync` returned) before this batch was
    /// written: a missing record below it is corruption, not a power cut's torn tail.
    pub synced_before: u64,
}

impl BatchHeader {
    /// Appends the header for `records` (the batch's framed records, which follow it) in a
    /// segment whose salt is `salt`.
    pub fn encode(&self, out: &mut Vec<u8>, records: &[u8], salt: u64) {
        let start = out.len();
        out.extend_from_slice(BATCH_MAGIC);
        out.extend_from_slice(&self.records_bytes.to_le_bytes());
        out.extend_from_slice(&self.first_seq.to_le_bytes());
        out.extend_from_slice(&self.synced_before.to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(records).to_le_bytes());
        let crc = header_checksum(salt, &out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    /// The header at the start of `bytes`, if one of this segment's (salted with `salt`)
    /// stands there whole, and its records' checksum. Reads 32 bytes, whatever it claims.
    fn read_header(bytes: &[u8], salt: u64) -> Option<(BatchHeader, u32)> {
        let head = bytes.get(..BATCH_HEADER_BYTES)?;
        let u32_at =
            |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
        if &head[..4] != BATCH_MAGIC
            || header_checksum(salt, &head[..BATCH_HEADER_BYTES - 4]) != u32_at(28)
        {
            return None;
        }
        let u64_at = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&head[at..at + 8]);
            u64::from_le_bytes(word)
        };
        let header = BatchHeader {
            records_bytes: u32_at(4),
            first_seq: u64_at(8),
            synced_before: u64_at(16),
        };
        Some((header, u32_at(24)))
    }

    /// The whole batch at the start of `bytes`, and its records; `None` unless every byte of
    /// it is there as written.
    fn read(bytes: &[u8], salt: u64) -> Option<(BatchHeader, &[u8])> {
        let (header, records_crc) = Self::read_header(bytes, salt)?;
        let end = BATCH_HEADER_BYTES.checked_add(header.records_bytes as usize)?;
        let records = bytes.get(BATCH_HEADER_BYTES..end)?;
        (crc32fast::hash(records) == records_crc).then_some((header, records))
    }
}

fn header_checksum(salt: u64, head: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&salt.to_le_bytes());
    hasher.update(head);
    hasher.finalize()
}

/// The bytes a group commit of `records_bytes` takes in a version 2 segment: header and
/// records, padded to whole blocks (the next batch starts on a fresh block).
pub fn batch_span(records_bytes: usize, block_bytes: usize) -> usize {
    (BATCH_HEADER_BYTES + records_bytes).div_ceil(block_bytes) * block_bytes
}

/// Corruption that is not a torn tail: refuse to start rather than drop mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt {
    pub offset: usize,
    pub reason: String,
}

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "corrupt record at byte offset {}: {}",
            self.offset, self.reason
        )
    }
}

/// A file's records in order, each with its sequence number.
#[derive(Debug)]
pub struct Scanned<R> {
    pub records: Vec<(u64, R)>,
    /// Where valid data ends (the file can be cut here), and the sequence number after the
    /// last record.
    pub valid_bytes: usize,
    pub next_seq: u64,
    /// Bytes after `valid_bytes` that held a torn write (cut, never replayed).
    pub torn_bytes: usize,
}

impl<R> Scanned<R> {
    /// Before the first record of the file whose header is `header`.
    fn nothing_yet(header: &Header) -> Scanned<R> {
        Scanned {
            records: Vec::new(),
            next_seq: header.base_seq,
            valid_bytes: HEADER_BYTES,
            torn_bytes: 0,
        }
    }
}

/// Reads every record of a file whose header is `header`, each frame's payload turned into a
/// record by `decode`. A bad frame followed by nothing valid is a torn tail (the last write
/// was cut short); a bad frame with a valid record after it, at any later block, is
/// corruption; a whole frame `decode` refuses is corruption anywhere.
pub fn scan<R>(
    bytes: &[u8],
    header: &Header,
    decode: impl Fn(&[u8]) -> Result<R, &'static str>,
) -> Result<Scanned<R>, Corrupt> {
    scan_at(bytes, header, |payload, _| decode(payload))
}

/// The byte offset of a file's `index`-th record (from 0): where a record that reads back but
/// does not replay lies, for the error that names it.
pub fn record_offset(bytes: &[u8], header: &Header, index: usize) -> Option<usize> {
    let scanned = scan_at(bytes, header, |_, offset| Ok(offset)).ok()?;
    scanned.records.get(index).map(|(_, offset)| *offset)
}

/// [`scan`], with `decode` told each frame's byte offset too.
fn scan_at<R>(
    bytes: &[u8],
    header: &Header,
    decode: impl Fn(&[u8], usize) -> Result<R, &'static str>,
) -> Result<Scanned<R>, Corrupt> {
    if header.has_batches() {
        scan_batches(bytes, header, decode)
    } else {
        scan_frames(bytes, header, decode)
    }
}

/// Reads a version 2 segment batch by batch. Where no whole batch starts, the log ends: a
/// torn tail if nothing after it claims those records were synced, corruption if something
/// does. A whole batch is trusted as written: a frame in it that does not read is corruption.
fn scan_batches<R>(
    bytes: &[u8],
    header: &Header,
    decode: impl Fn(&[u8], usize) -> Result<R, &'static str>,
) -> Result<Scanned<R>, Corrupt> {
    let block = header.block_bytes as usize;
    let mut scanned = Scanned::nothing_yet(header);
    let mut offset = HEADER_BYTES;
    while offset < bytes.len() {
        let Some((batch, records)) = BatchHeader::read(&bytes[offset..], header.salt) else {
            break;
        };
        if batch.first_seq != scanned.next_seq {
            return Err(Corrupt {
                offset,
                reason: format!(
                    "a batch starting at record {}, where record {} was due",
                    batch.first_seq, scanned.next_seq
                ),
            });
        }
        let mut at = 0;
        while at < records.len() {
            let frame_offset = offset + BATCH_HEADER_BYTES + at;
            let unreadable = |reason: String| Corrupt {
                offset: frame_offset,
                reason: format!("unreadable record in a whole batch: {reason}"),
            };
            match frame::read(&records[at..]) {
                Ok(Frame::Payload(payload, len)) => {
                    let record = decode(payload, frame_offset).map_err(|r| unreadable(r.into()))?;
                    scanned.records.push((scanned.next_seq, record));
                    scanned.next_seq += 1;
                    at += len;
                }
                Ok(Frame::Padding) => return Err(unreadable("padding inside a batch".into())),
                Err(error) => return Err(unreadable(format!("{error:?}"))),
            }
        }
        offset += batch_span(records.len(), block);
        scanned.valid_bytes = offset.min(bytes.len());
    }
    // No whole batch at `offset`: the end of the log. Whatever lies after was not synced
    // when the last batch that reads was written, unless a later batch's header (genuine,
    // whether or not its records made it) says otherwise.
    let mut later = offset + block;
    while later < bytes.len() {
        if let Some((batch, _)) = BatchHeader::read_header(&bytes[later..], header.salt) {
            if batch.synced_before > scanned.next_seq {
                return Err(Corrupt {
                    offset,
                    reason: format!(
                        "no whole batch holds record {} here, yet the batch at offset {later} \
                         was written after every record below {} was synced",
                        scanned.next_seq, batch.synced_before
                    ),
                });
            }
        }
        later += block;
    }
    let rest = bytes.get(offset..).unwrap_or_default();
    scanned.torn_bytes = rest
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |last| last + 1);
    Ok(scanned)
}

/// Reads a file of frames (a snapshot, or a version 1 segment): a bad frame followed by
/// nothing valid is a torn tail; one with a valid record after it is corruption.
fn scan_frames<R>(
    bytes: &[u8],
    header: &Header,
    decode: impl Fn(&[u8], usize) -> Result<R, &'static str>,
) -> Result<Scanned<R>, Corrupt> {
    let block = header.block_bytes as usize;
    let mut scanned = Scanned::nothing_yet(header);
    let mut offset = HEADER_BYTES;
    while offset < bytes.len() {
        match frame::read(&bytes[offset..]) {
            Ok(Frame::Payload(payload, len)) => {
                // A frame whose checksum holds but whose payload does not parse was written
                // whole: a format this build cannot read, never a torn write.
                let record = decode(payload, offset).map_err(|reason| Corrupt {
                    offset,
                    reason: format!("unreadable record: {reason}"),
                })?;
                scanned.records.push((scanned.next_seq, record));
                scanned.next_seq += 1;
                offset += len;
                scanned.valid_bytes = offset;
            }
            Ok(Frame::Padding) => offset = (offset / block + 1) * block,
            Err(error) => {
                if let Some(later) = valid_record_after(bytes, offset, block, &decode) {
                    return Err(Corrupt {
                        offset,
                        reason: format!(
                            "{error:?}, with a valid record after it at offset {later}"
                        ),
                    });
                }
                if header.kind == FileKind::Snapshot {
                    return Err(Corrupt {
                        offset,
                        reason: format!("{error:?} in a snapshot (snapshots are never torn)"),
                    });
                }
                scanned.torn_bytes = bytes.len() - offset;
                break;
            }
        }
    }
    Ok(scanned)
}

/// The offset of a valid record starting at a block boundary after `offset`, if any.
fn valid_record_after<R>(
    bytes: &[u8],
    offset: usize,
    block: usize,
    decode: impl Fn(&[u8], usize) -> Result<R, &'static str>,
) -> Option<usize> {
    let mut at = (offset / block + 1) * block;
    while at < bytes.len() {
        if let Ok(Frame::Payload(payload, _)) = frame::read(&bytes[at..]) {
            if decode(payload, at).is_ok() {
                return Some(at);
            }
        }
        at += block;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests' records: a kind byte (4) and a 16-byte number, as long as a record that
    /// makes a message visible; any other kind is one this build cannot read.
    fn decode(payload: &[u8]) -> Result<u128, &'static str> {
        match payload {
            [4, rest @ ..] => Ok(u128::from_le_bytes(
                rest.try_into().map_err(|_| "a short record")?,
            )),
            _ => Err("unknown record kind"),
        }
    }

    fn encode(out: &mut Vec<u8>, n: u128) {
        frame::write(out, |out| {
            out.push(4);
            out.extend_from_slice(&n.to_le_bytes());
        });
    }

    const SALT: u64 = 0x5eed_5a17;

    fn header() -> Header {
        Header::segment(1, 2, 10, 512, SALT)
    }

    /// A version 1 header: segments of plain frames.
    fn header_v1() -> Header {
        Header {
            version: 1,
            salt: 0,
            ..header()
        }
    }

    /// How a version 1 writer padded a batch: whole blocks, and never fewer padding bytes
    /// than a frame header (or a reader could take them for a record).
    fn padded_v1(len: usize, block: usize) -> usize {
        let mut padded = len.div_ceil(block) * block;
        if padded > len && padded - len < frame::FRAME_BYTES {
            padded += block;
        }
        padded
    }

    /// A version 1 segment with two group commits of `per_batch` records each.
    fn segment_v1(per_batch: u128) -> Vec<u8> {
        let mut file = header_v1().encode();
        for batch in 0..2 {
            let start = file.len();
            for n in 0..per_batch {
                encode(&mut file, batch * 100 + n);
            }
            let padded = padded_v1(file.len() - start, 512);
            file.resize(start + padded, 0);
        }
        file.resize(file.len() + 2048, 0);
        file
    }

    /// Appends a version 2 group commit of records `numbers`, first at position `first_seq`,
    /// written when the log was synced below `synced_before`; returns where it starts.
    fn push_batch(
        file: &mut Vec<u8>,
        numbers: &[u128],
        first_seq: u64,
        synced_before: u64,
    ) -> usize {
        let mut records = Vec::new();
        for n in numbers {
            encode(&mut records, *n);
        }
        let start = file.len();
        let batch = BatchHeader {
            first_seq,
            records_bytes: records.len() as u32,
            synced_before,
        };
        batch.encode(file, &records, SALT);
        file.extend_from_slice(&records);
        file.resize(start + batch_span(records.len(), 512), 0);
        start
    }

    /// A version 2 segment: batches of 3, 20 and 1 records (positions 10..34), written in
    /// batch mode with no sync since the segment began, then the preallocated zeros.
    fn segment() -> (Vec<u8>, Vec<usize>) {
        let mut file = header().encode();
        let starts = vec![
            push_batch(&mut file, &[0, 1, 2], 10, 10),
            push_batch(&mut file, &(100..120).collect::<Vec<_>>(), 13, 10),
            push_batch(&mut file, &[200], 33, 10),
        ];
        file.resize(file.len() + 4096, 0);
        (file, starts)
    }

    fn numbers(scanned: &Scanned<u128>) -> Vec<u128> {
        scanned.records.iter().map(|(_, n)| *n).collect()
    }

    #[test]
    fn batches_read_back_in_order_with_their_positions() {
        let (file, starts) = segment();
        let scanned = scan(&file, &header(), decode).expect("clean");
        let seqs: Vec<u64> = scanned.records.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (10..34).collect::<Vec<u64>>());
        assert_eq!(numbers(&scanned)[3], 100);
        assert_eq!(scanned.next_seq, 34);
        assert_eq!(scanned.torn_bytes, 0);
        assert_eq!(scanned.valid_bytes, starts[2] + 512);
        // A batch that fills its blocks exactly leaves no padding at all.
        let exact = 512 - BATCH_HEADER_BYTES;
        assert_eq!(batch_span(exact, 512), 512);
        assert_eq!(batch_span(exact + 1, 512), 1024);
    }

    #[test]
    fn a_missing_batch_with_an_unsynced_one_after_it_is_a_torn_tail_cut_at_the_hole() {
        // A power cut in batch mode: the page cache wrote the third batch out, not the second.
        // Version 1 read the hole as padding and numbered the third batch's record 13.
        let (mut file, starts) = segment();
        file[starts[1]..starts[2]].fill(0);
        let mut last = file.clone();
        last[starts[2] + BATCH_HEADER_BYTES..starts[2] + 40].fill(0xaa);
        for file in [file, last] {
            let scanned = scan(&file, &header(), decode).expect("a torn tail, not corruption");
            assert_eq!(numbers(&scanned), vec![0, 1, 2]);
            assert_eq!(scanned.next_seq, 13);
            assert_eq!(scanned.valid_bytes, starts[1]);
            assert!(
                scanned.torn_bytes > starts[2] - starts[1],
                "the later batch is cut too"
            );
        }
    }

    #[test]
    fn a_missing_batch_that_a_later_one_says_was_synced_is_corruption() {
        let mut file = header().encode();
        push_batch(&mut file, &[0, 1, 2], 10, 10);
        let hole = push_batch(&mut file, &[3], 13, 13);
        let later = push_batch(&mut file, &[4], 14, 14);
        file.resize(file.len() + 1024, 0);
        file[hole..later].fill(0);
        let error = scan(&file, &header(), decode).expect_err("synced records went missing");
        assert_eq!(error.offset, hole);
        assert!(error.reason.contains("synced"), "{}", error.reason);
        // The later batch's header vouches even when its own records did not make it.
        file[later + BATCH_HEADER_BYTES + 2] ^= 1;
        let error = scan(&file, &header(), decode).expect_err("still vouched for");
        assert_eq!(error.offset, hole);

        // Batch mode, stopped cleanly: no batch vouched for the last ones but the seal does.
        let (mut file, starts) = segment();
        file.truncate(starts[2] + 512);
        push_batch(&mut file, &[], 34, 34);
        file.resize(file.len() + 512, 0);
        file[starts[1] + 40] ^= 1;
        let error = scan(&file, &header(), decode).expect_err("damaged after a clean stop");
        assert_eq!(error.offset, starts[1]);
    }

    #[test]
    fn a_batch_torn_anywhere_is_dropped_whole() {
        let (file, starts) = segment();
        for at in [
            starts[1] + 3,
            starts[1] + BATCH_HEADER_BYTES + 1,
            starts[2] - 1 - 512,
        ] {
            let mut torn = file.clone();
            torn[at] ^= 0x40;
            let scanned = scan(&torn, &header(), decode).expect("torn");
            assert_eq!(scanned.next_seq, 13, "flip at {at}");
            assert!(scanned.torn_bytes > 0);
        }
    }

    #[test]
    fn a_whole_batch_out_of_sequence_or_with_an_unreadable_record_is_corruption() {
        let mut file = header().encode();
        push_batch(&mut file, &[0], 10, 10);
        let skipped = push_batch(&mut file, &[1], 12, 11);
        file.resize(file.len() + 512, 0);
        let error = scan(&file, &header(), decode).expect_err("a gap in positions");
        assert_eq!(error.offset, skipped);

        let mut file = header().encode();
        let mut records = Vec::new();
        frame::write(&mut records, |out| out.extend_from_slice(&[99, 1, 2]));
        let batch = BatchHeader {
            first_seq: 10,
            records_bytes: records.len() as u32,
            synced_before: 10,
        };
        batch.encode(&mut file, &records, SALT);
        file.extend_from_slice(&records);
        file.resize(HEADER_BYTES + 1024, 0);
        let error = scan(&file, &header(), decode).expect_err("written whole, unreadable");
        assert_eq!(error.offset, HEADER_BYTES + BATCH_HEADER_BYTES);
        assert!(
            error.reason.contains("unknown record kind"),
            "{}",
            error.reason
        );
    }

    #[test]
    fn a_batch_header_inside_a_message_never_passes_for_one() {
        // A client's bytes shaped as a batch header claiming a far sync, in the torn tail at
        // a block boundary: without this segment's salt its checksum never holds.
        let (mut file, starts) = segment();
        file[starts[1]..starts[2]].fill(0);
        let mut fake = Vec::new();
        let body = [7u8; 16];
        let claim = BatchHeader {
            first_seq: 40,
            records_bytes: body.len() as u32,
            synced_before: 1_000,
        };
        claim.encode(&mut fake, &body, 0);
        fake.extend_from_slice(&body);
        let at = starts[2] + 512;
        file[at..at + fake.len()].copy_from_slice(&fake);
        let scanned = scan(&file, &header(), decode).expect("still a torn tail");
        assert_eq!(scanned.next_seq, 13);
    }

    #[test]
    fn version_1_segments_still_read_and_padding_never_hides_the_next_batch() {
        // A record takes 25 bytes: 20 of them leave 12 bytes of padding; 225 leave 7
        // and 266 leave 6, which the writer extended by a block.
        for per_batch in [1, 20, 61, 225, 266] {
            let scanned = scan(&segment_v1(per_batch), &header_v1(), decode).expect("clean");
            assert_eq!(
                scanned.records.len() as u128,
                2 * per_batch,
                "{per_batch} a batch"
            );
            assert_eq!(scanned.torn_bytes, 0);
        }
        let scanned = scan(&segment_v1(3), &header_v1(), decode).expect("clean");
        let seqs: Vec<u64> = scanned.records.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, vec![10, 11, 12, 13, 14, 15]);
        assert_eq!(scanned.records[3].1, 100);
    }

    #[test]
    fn headers_of_both_versions_round_trip_and_garbage_is_refused() {
        for header in [header(), header_v1(), Header::snapshot(0, 1, 7)] {
            let bytes = header.encode();
            assert_eq!(bytes.len(), HEADER_BYTES);
            assert_eq!(Header::decode(&bytes), Ok(header));
            let mut bad = bytes.clone();
            bad[13] ^= 1;
            assert!(Header::decode(&bad).is_err());
        }
        let mut salted = header().encode();
        salted[37] ^= 1;
        assert!(Header::decode(&salted).is_err(), "the salt is checked too");
        assert!(header().has_batches());
        assert!(!header_v1().has_batches());
        assert!(!Header::snapshot(0, 1, 7).has_batches());
        let newer = Header {
            version: 3,
            ..header()
        };
        let refused = Header::decode(&newer.encode()).expect_err("a newer format");
        assert!(refused.contains("format version 3"), "{refused}");
        assert!(Header::decode(&[0; 100]).is_err());
    }

    #[test]
    fn a_torn_last_write_of_a_version_1_segment_is_cut() {
        let mut file = segment_v1(3);
        let scanned = scan(&file, &header_v1(), decode).expect("clean");
        // Garble the last record of the last batch: nothing valid follows it.
        let last = scanned.valid_bytes - 4;
        file[last] ^= 0xff;
        let torn = scan(&file, &header_v1(), decode).expect("a torn tail is not corruption");
        assert_eq!(torn.records.len(), 5);
        assert!(torn.torn_bytes > 0);
        assert_eq!(torn.next_seq, 15);
    }

    #[test]
    fn a_whole_record_this_build_cannot_read_is_corruption_even_at_the_end() {
        let mut file = header_v1().encode();
        // A record of an unknown kind with a correct checksum: written whole, not torn.
        frame::write(&mut file, |out| out.extend_from_slice(&[99u8, 1, 2, 3]));
        file.resize(HEADER_BYTES + 512, 0);
        let error = scan(&file, &header_v1(), decode).expect_err("never cut silently");
        assert_eq!(error.offset, HEADER_BYTES);
        assert!(
            error.reason.contains("unknown record kind"),
            "{}",
            error.reason
        );
    }

    #[test]
    fn a_garbled_record_before_valid_ones_is_corruption() {
        let mut file = segment_v1(3);
        file[HEADER_BYTES + 10] ^= 0xff;
        let error = scan(&file, &header_v1(), decode).expect_err("corruption in the middle");
        assert_eq!(error.offset, HEADER_BYTES);
    }
}
