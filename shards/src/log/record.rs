//! The records of a shard's log and their byte format.
//!
//! A record on disk is `len: u32 | crc: u32 | kind: u8 | body`, little-endian, where `len`
//! counts `kind` and `body`, and `crc` is CRC-32 over `len`, `kind` and `body` (so a garbled
//! length is caught too). A zero `len` with a zero `crc` is padding up to the next block: a
//! group commit starts on a fresh block, and a preallocated segment reads as zeros past its
//! last write.

use crate::envelope::{Envelope, SharedEnvelope};
use crate::protocol::AgentProfile;
use std::sync::Arc;
use uuid::Uuid;

/// Bytes before a record's kind: length and checksum.
pub const FRAME_BYTES: usize = 8;
/// The largest record accepted when reading: a bound on what a garbled length can make the
/// reader believe. A message is bounded far below this by the HTTP body limit.
pub const MAX_RECORD_BYTES: usize = 1 << 30;

const KIND_AGENT: u8 = 1;
const KIND_ENQUEUED: u8 = 2;
const KIND_PREPARED: u8 = 3;
const KIND_VISIBLE: u8 = 4;
const KIND_ABORTED: u8 = 5;
const KIND_DRAINED: u8 = 6;

/// One state change of a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An agent registered or updated: its whole profile, with its version.
    Agent(AgentProfile),
    /// A message queued, visible at once, for every recipient this shard owns (a send with
    /// one owner shard). `recipients` lists all of them.
    Enqueued {
        envelope: SharedEnvelope,
        recipients: Vec<Box<str>>,
    },
    /// Step one of a send to `owners` shards: queued here but invisible to drains until
    /// [`Record::Visible`]. `recipients` lists every recipient on every owner.
    Prepared {
        envelope: SharedEnvelope,
        recipients: Vec<Box<str>>,
        owners: u16,
    },
    /// A prepared message made visible (every owner granted).
    Visible { id: Uuid },
    /// A prepared message dropped (another owner refused).
    Aborted { id: Uuid },
    /// The oldest `count` messages of `name` were drained; the last of them was `last_id`.
    Drained {
        name: Box<str>,
        count: u32,
        last_id: Uuid,
    },
}

/// Why bytes do not decode to a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the frame announces.
    Truncated,
    /// The checksum does not match.
    Checksum,
    /// The checksum matches but the body does not parse: a format this build cannot read.
    Malformed(&'static str),
}

/// What [`decode`] found at a position.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A record that took this many bytes, frame included.
    Record(Record, usize),
    /// Padding: skip to the next block.
    Padding,
}

/// Appends `record`, framed, to `out`.
pub fn encode(out: &mut Vec<u8>, record: &Record) {
    match record {
        Record::Agent(profile) => encode_agent(out, profile),
        Record::Enqueued {
            envelope,
            recipients,
        } => encode_message(out, KIND_ENQUEUED, envelope, recipients, None),
        Record::Prepared {
            envelope,
            recipients,
            owners,
        } => encode_message(out, KIND_PREPARED, envelope, recipients, Some(*owners)),
        Record::Visible { id } => frame(out, KIND_VISIBLE, |out| put_uuid(out, id)),
        Record::Aborted { id } => frame(out, KIND_ABORTED, |out| put_uuid(out, id)),
        Record::Drained {
            name,
            count,
            last_id,
        } => encode_drained(out, name, *count, last_id),
    }
}

pub fn encode_agent(out: &mut Vec<u8>, p: &AgentProfile) {
    frame(out, KIND_AGENT, |out| {
        put_uuid(out, &p.id);
        put_str(out, &p.name);
        put_uuid(out, &p.project_id);
        put_str(out, &p.project_key);
        put_str(out, &p.program);
        put_str(out, &p.model);
        out.extend_from_slice(&p.created_ms.to_le_bytes());
        out.extend_from_slice(&p.updated_ms.to_le_bytes());
        out.extend_from_slice(&p.version.to_le_bytes());
    });
}

/// An `Enqueued` (no `owners`) or `Prepared` record, written from borrowed parts so the hot
/// path builds no [`Record`].
pub fn encode_message(
    out: &mut Vec<u8>,
    kind: u8,
    envelope: &Envelope,
    recipients: &[Box<str>],
    owners: Option<u16>,
) {
    frame(out, kind, |out| {
        put_uuid(out, &envelope.id);
        put_uuid(out, &envelope.project_id);
        out.extend_from_slice(&envelope.timestamp_ms.to_le_bytes());
        out.extend_from_slice(&(envelope.weight() as u64).to_le_bytes());
        let (from_len, subject_len) = envelope.split_lengths();
        out.extend_from_slice(&(from_len as u32).to_le_bytes());
        out.extend_from_slice(&(subject_len as u32).to_le_bytes());
        put_str32(out, envelope.text());
        out.extend_from_slice(&(recipients.len() as u32).to_le_bytes());
        for name in recipients {
            put_str(out, name);
        }
        if let Some(owners) = owners {
            out.extend_from_slice(&owners.to_le_bytes());
        }
    });
}

pub const ENQUEUED: u8 = KIND_ENQUEUED;
pub const PREPARED: u8 = KIND_PREPARED;

pub fn encode_visible(out: &mut Vec<u8>, id: &Uuid) {
    frame(out, KIND_VISIBLE, |out| put_uuid(out, id));
}

pub fn encode_aborted(out: &mut Vec<u8>, id: &Uuid) {
    frame(out, KIND_ABORTED, |out| put_uuid(out, id));
}

pub fn encode_drained(out: &mut Vec<u8>, name: &str, count: u32, last_id: &Uuid) {
    frame(out, KIND_DRAINED, |out| {
        put_str(out, name);
        out.extend_from_slice(&count.to_le_bytes());
        put_uuid(out, last_id);
    });
}

/// Writes the frame around what `body` appends: length and checksum are filled in after.
fn frame(out: &mut Vec<u8>, kind: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_BYTES]);
    out.push(kind);
    body(out);
    let len = u32::try_from(out.len() - start - FRAME_BYTES).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let crc = checksum(len, &out[start + FRAME_BYTES..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn checksum(len: u32, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len.to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

fn put_uuid(out: &mut Vec<u8>, id: &Uuid) {
    out.extend_from_slice(id.as_bytes());
}

/// Names, keys and labels: bounded far below 64 KiB by the tools; longer is cut at encode
/// time only by a bug, which the decoder then reports as malformed.
fn put_str(out: &mut Vec<u8>, text: &str) {
    let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&text.as_bytes()[..usize::from(len)]);
}

fn put_str32(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Decodes the record at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    if bytes.len() < FRAME_BYTES {
        return if bytes.iter().all(|b| *b == 0) {
            Ok(Decoded::Padding)
        } else {
            Err(DecodeError::Truncated)
        };
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if len == 0 && crc == 0 {
        return Ok(Decoded::Padding);
    }
    let len = len as usize;
    if len == 0 || len > MAX_RECORD_BYTES {
        return Err(DecodeError::Checksum);
    }
    let Some(body) = bytes.get(FRAME_BYTES..FRAME_BYTES + len) else {
        return Err(DecodeError::Truncated);
    };
    if checksum(len as u32, body) != crc {
        return Err(DecodeError::Checksum);
    }
    let mut reader = Reader { bytes: &body[1..] };
    let record = match body[0] {
        KIND_AGENT => Record::Agent(reader.agent()?),
        KIND_ENQUEUED => {
            let (envelope, recipients) = reader.message()?;
            Record::Enqueued {
                envelope,
                recipients,
            }
        }
        KIND_PREPARED => {
            let (envelope, recipients) = reader.message()?;
            Record::Prepared {
                envelope,
                recipients,
                owners: reader.u16()?,
            }
        }
        KIND_VISIBLE => Record::Visible { id: reader.uuid()? },
        KIND_ABORTED => Record::Aborted { id: reader.uuid()? },
        KIND_DRAINED => Record::Drained {
            name: reader.str16()?,
            count: reader.u32()?,
            last_id: reader.uuid()?,
        },
        _ => return Err(DecodeError::Malformed("unknown record kind")),
    };
    if !reader.bytes.is_empty() {
        return Err(DecodeError::Malformed("bytes left after the record"));
    }
    Ok(Decoded::Record(record, FRAME_BYTES + len))
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Malformed("record body too short"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn uuid(&mut self) -> Result<Uuid, DecodeError> {
        Ok(Uuid::from_bytes(self.array()?))
    }

    fn text(&mut self, len: usize) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::Malformed("text not UTF-8"))
    }

    fn str16(&mut self) -> Result<Box<str>, DecodeError> {
        let len = usize::from(self.u16()?);
        Ok(self.text(len)?.into())
    }

    fn agent(&mut self) -> Result<AgentProfile, DecodeError> {
        Ok(AgentProfile {
            id: self.uuid()?,
            name: self.str16()?,
            project_id: self.uuid()?,
            project_key: self.str16()?,
            program: self.str16()?,
            model: self.str16()?,
            created_ms: self.i64()?,
            updated_ms: self.i64()?,
            version: self.u64()?,
        })
    }

    fn message(&mut self) -> Result<(SharedEnvelope, Vec<Box<str>>), DecodeError> {
        let id = self.uuid()?;
        let project_id = self.uuid()?;
        let timestamp_ms = self.i64()?;
        let weight = self.u64()? as usize;
        let from_len = self.u32()? as usize;
        let subject_len = self.u32()? as usize;
        let text_len = self.u32()? as usize;
        let text = self.text(text_len)?;
        let envelope =
            Envelope::from_parts(id, project_id, timestamp_ms, text, from_len, subject_len)
                .ok_or(DecodeError::Malformed(
                    "message lengths do not fit its text",
                ))?
                .with_weight(weight);
        let count = self.u32()? as usize;
        // Each name takes at least its two length bytes: a bound a garbled count cannot pass.
        if count > self.bytes.len() / 2 {
            return Err(DecodeError::Malformed("recipient count beyond the record"));
        }
        let mut recipients = Vec::with_capacity(count);
        for _ in 0..count {
            recipients.push(self.str16()?);
        }
        Ok((Arc::new(envelope), recipients))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> AgentProfile {
        AgentProfile {
            id: Uuid::from_u128(7),
            name: "BlueLake".into(),
            project_id: Uuid::from_u128(8),
            project_key: "/repo/é".into(),
            program: "claude-code".into(),
            model: "".into(),
            created_ms: 1,
            updated_ms: -2,
            version: 3,
        }
    }

    fn envelope() -> SharedEnvelope {
        Arc::new(
            Envelope::new(
                Uuid::from_u128(1),
                Uuid::from_u128(2),
                99,
                "Blüe",
                "s",
                "body →",
            )
            .with_weight(123),
        )
    }

    fn every_kind() -> Vec<Record> {
        vec![
            Record::Agent(profile()),
            Record::Enqueued {
                envelope: envelope(),
                recipients: vec!["a".into(), "bé".into()],
            },
            Record::Prepared {
                envelope: envelope(),
                recipients: vec!["x".into()],
                owners: 3,
            },
            Record::Visible {
                id: Uuid::from_u128(5),
            },
            Record::Aborted {
                id: Uuid::from_u128(6),
            },
            Record::Drained {
                name: "a".into(),
                count: 4,
                last_id: Uuid::from_u128(9),
            },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for record in every_kind() {
            let mut out = Vec::new();
            encode(&mut out, &record);
            assert_eq!(
                decode(&out),
                Ok(Decoded::Record(record.clone(), out.len())),
                "{record:?}"
            );
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_is_caught() {
        let mut out = Vec::new();
        encode(&mut out, &every_kind()[1]);
        for at in 0..out.len() {
            let mut garbled = out.clone();
            garbled[at] ^= 0x10;
            assert!(
                !matches!(decode(&garbled), Ok(Decoded::Record(..))),
                "flip at byte {at} went unnoticed"
            );
        }
    }

    #[test]
    fn a_cut_record_is_truncated_and_zeros_are_padding() {
        let mut out = Vec::new();
        encode(&mut out, &every_kind()[0]);
        assert_eq!(decode(&out[..out.len() - 1]), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0; 16]), Ok(Decoded::Padding));
        assert_eq!(decode(&[0; 3]), Ok(Decoded::Padding));
        assert_eq!(decode(&[1, 0, 0]), Err(DecodeError::Truncated));
    }

    #[test]
    fn the_weight_and_text_split_survive() {
        let mut out = Vec::new();
        encode(&mut out, &every_kind()[1]);
        let Ok(Decoded::Record(Record::Enqueued { envelope, .. }, _)) = decode(&out) else {
            panic!("decode");
        };
        assert_eq!(
            (envelope.from(), envelope.subject(), envelope.body()),
            ("Blüe", "s", "body →")
        );
        assert_eq!(envelope.weight(), 123);
    }
}
