//! Log segment and snapshot files: the header that names what a file holds, and reading its
//! frames back as records (through the caller's `decode`), each with its sequence number.
//!
//! A file starts with a [`HEADER_BYTES`] header (magic, format version, shard index, shard
//! count, the sequence number of its first record, the block size its writer aligned to),
//! then framed records ([`super::frame`]). A segment's records are numbered from its base on;
//! padding takes no number. What a record means is the caller's `decode`.

use super::frame::{self, Frame};
use std::fmt;

/// The header takes one whole block of any device (≤ 4 KiB logical blocks), so the first
/// record starts aligned.
pub const HEADER_BYTES: usize = 4096;
const SEGMENT_MAGIC: &[u8; 8] = b"ALLMANLG";
const SNAPSHOT_MAGIC: &[u8; 8] = b"ALLMANSN";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Segment,
    Snapshot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: FileKind,
    pub shard: u32,
    pub shard_count: u32,
    /// Segment: the sequence number of its first record. Snapshot: the log position it
    /// stands for (every record below it is in the snapshot).
    pub base_seq: u64,
    /// Group commits start on a multiple of this many bytes.
    pub block_bytes: u32,
}

/// Snapshots are written whole and renamed into place, never torn, so the smallest block
/// serves: it only rounds the padding nothing writes.
const SNAPSHOT_BLOCK_BYTES: u32 = 512;

impl Header {
    /// The header of shard `shard`'s snapshot at log position `position`.
    pub fn snapshot(shard: u32, shard_count: u32, position: u64) -> Header {
        Header {
            kind: FileKind::Snapshot,
            shard,
            shard_count,
            base_seq: position,
            block_bytes: SNAPSHOT_BLOCK_BYTES,
        }
    }

    /// The header of shard `shard`'s segment whose first record is `base_seq`, its group
    /// commits aligned to `block_bytes`.
    pub fn segment(shard: u32, shard_count: u32, base_seq: u64, block_bytes: u32) -> Header {
        Header {
            kind: FileKind::Segment,
            shard,
            shard_count,
            base_seq,
            block_bytes,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES);
        out.extend_from_slice(match self.kind {
            FileKind::Segment => SEGMENT_MAGIC,
            FileKind::Snapshot => SNAPSHOT_MAGIC,
        });
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.shard.to_le_bytes());
        out.extend_from_slice(&self.shard_count.to_le_bytes());
        out.extend_from_slice(&self.base_seq.to_le_bytes());
        out.extend_from_slice(&self.block_bytes.to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.resize(HEADER_BYTES, 0);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Header, String> {
        const USED: usize = 8 + 4 + 4 + 4 + 8 + 4;
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
        let crc = u32_at(USED);
        if crc32fast::hash(&bytes[..USED]) != crc {
            return Err("header checksum mismatch".into());
        }
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(format!(
                "format version {version}; this build reads version {FORMAT_VERSION}"
            ));
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&bytes[20..28]);
        let header = Header {
            kind,
            shard: u32_at(12),
            shard_count: u32_at(16),
            base_seq: u64::from_le_bytes(seq),
            block_bytes: u32_at(28),
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
    let block = header.block_bytes as usize;
    let mut scanned = Scanned {
        records: Vec::new(),
        next_seq: header.base_seq,
        valid_bytes: HEADER_BYTES,
        torn_bytes: 0,
    };
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

    fn header() -> Header {
        Header {
            kind: FileKind::Segment,
            shard: 1,
            shard_count: 2,
            base_seq: 10,
            block_bytes: 512,
        }
    }

    /// A segment with two group commits of `per_batch` records each, padded as the writer
    /// pads them.
    fn segment(per_batch: u128) -> Vec<u8> {
        let mut file = header().encode();
        for batch in 0..2 {
            let start = file.len();
            for n in 0..per_batch {
                encode(&mut file, batch * 100 + n);
            }
            let padded = crate::log::journal::padded_len((file.len() - start) as u64, 512);
            file.resize(start + padded as usize, 0);
        }
        file.resize(file.len() + 2048, 0);
        file
    }

    #[test]
    fn padding_shorter_than_a_frame_never_hides_the_next_batch() {
        // A record takes 25 bytes: 20 of them leave 12 bytes of padding; 225 leave 7
        // and 266 leave 6, which the writer extends by a block.
        for per_batch in [1, 20, 61, 225, 266] {
            let scanned = scan(&segment(per_batch), &header(), decode).expect("clean");
            assert_eq!(
                scanned.records.len() as u128,
                2 * per_batch,
                "{per_batch} a batch"
            );
            assert_eq!(scanned.torn_bytes, 0);
        }
        assert_eq!(crate::log::journal::padded_len(509, 512), 1024);
        assert_eq!(crate::log::journal::padded_len(504, 512), 512);
        assert_eq!(crate::log::journal::padded_len(512, 512), 512);
    }

    #[test]
    fn header_round_trips_and_rejects_garbage() {
        let bytes = header().encode();
        assert_eq!(bytes.len(), HEADER_BYTES);
        assert_eq!(Header::decode(&bytes), Ok(header()));
        let mut bad = bytes.clone();
        bad[13] ^= 1;
        assert!(Header::decode(&bad).is_err());
        assert!(Header::decode(&[0; 100]).is_err());
    }

    #[test]
    fn records_get_sequence_numbers_across_padding() {
        let scanned = scan(&segment(3), &header(), decode).expect("clean");
        let seqs: Vec<u64> = scanned.records.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, vec![10, 11, 12, 13, 14, 15]);
        assert_eq!(scanned.records[3].1, 100);
        assert_eq!(scanned.next_seq, 16);
        assert_eq!(scanned.torn_bytes, 0);
    }

    #[test]
    fn a_torn_last_write_is_cut() {
        let mut file = segment(3);
        let scanned = scan(&file, &header(), decode).expect("clean");
        // Garble the last record of the last batch: nothing valid follows it.
        let last = scanned.valid_bytes - 4;
        file[last] ^= 0xff;
        let torn = scan(&file, &header(), decode).expect("a torn tail is not corruption");
        assert_eq!(torn.records.len(), 5);
        assert!(torn.torn_bytes > 0);
        assert_eq!(torn.next_seq, 15);
    }

    #[test]
    fn a_whole_record_this_build_cannot_read_is_corruption_even_at_the_end() {
        let mut file = header().encode();
        // A record of an unknown kind with a correct checksum: written whole, not torn.
        let body = [99u8, 1, 2, 3];
        let len = (body.len() as u32).to_le_bytes();
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&len);
        hasher.update(&body);
        file.extend_from_slice(&len);
        file.extend_from_slice(&hasher.finalize().to_le_bytes());
        file.extend_from_slice(&body);
        file.resize(HEADER_BYTES + 512, 0);
        let error = scan(&file, &header(), decode).expect_err("never cut silently");
        assert_eq!(error.offset, HEADER_BYTES);
        assert!(
            error.reason.contains("unknown record kind"),
            "{}",
            error.reason
        );
    }

    #[test]
    fn a_garbled_record_before_valid_ones_is_corruption() {
        let mut file = segment(3);
        file[HEADER_BYTES + 10] ^= 0xff;
        let error = scan(&file, &header(), decode).expect_err("corruption in the middle");
        assert_eq!(error.offset, HEADER_BYTES);
    }
}
