//! What the records of a shard's log mean, and their byte format: a record is the payload of
//! one log frame ([`crate::log::frame`]), `kind: u8 | body`, little-endian.

use crate::envelope::{Envelope, Idempotency, Importance, Message, SharedEnvelope};
use crate::leases::{Lease, ReserveKey};
use crate::log::frame::{self, Frame, FrameError};
use crate::protocol::AgentProfile;
use std::sync::Arc;
use uuid::Uuid;

const KIND_AGENT_V1: u8 = 1;
const KIND_ENQUEUED_V1: u8 = 2;
const KIND_PREPARED_V1: u8 = 3;
const KIND_VISIBLE: u8 = 4;
const KIND_ABORTED: u8 = 5;
const KIND_DRAINED_V1: u8 = 6;
const KIND_ENQUEUED: u8 = 7;
const KIND_PREPARED: u8 = 8;
const KIND_DELIVERY: u8 = 9;
const KIND_SENT: u8 = 10;
const KIND_MARKED: u8 = 11;
const KIND_ACTIVITY: u8 = 12;
const KIND_AGENT: u8 = 13;
const KIND_DRAINED: u8 = 14;
const KIND_LEASE: u8 = 15;
const KIND_LEASE_IDS: u8 = 16;
const KIND_LEASE_KEY: u8 = 17;

/// One state change of a shard. Kinds 1, 2, 3 and 6 are the first format's (before
/// threads and delivery logs): still read, never written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An agent registered or updated: its whole profile, with its version.
    Agent(AgentProfile),
    /// A message made visible at once for every party this shard owns (a send with one owner
    /// shard): its recipients get a delivery, its sender a sent copy.
    Enqueued { envelope: SharedEnvelope },
    /// Step one of a send to `owners` shards: held here but invisible until
    /// [`Record::Visible`].
    Prepared {
        envelope: SharedEnvelope,
        owners: u16,
    },
    /// A prepared message made visible (every owner granted).
    Visible { id: Uuid },
    /// A prepared message dropped (another owner refused).
    Aborted { id: Uuid },
    /// The oldest `count` undrained deliveries of `name` were drained at `at_ms` (absent in
    /// the first format); the last of them was `last_id`.
    Drained {
        name: Box<str>,
        count: u32,
        last_id: Uuid,
        at_ms: Option<i64>,
    },
    /// `name` read (or, with `ack`, acknowledged) these messages at `at_ms`.
    Marked {
        name: Box<str>,
        ack: bool,
        at_ms: i64,
        ids: Vec<Uuid>,
    },
    /// `name` was active at `last_active_ms`; its next delivery number is at least `next_seq`.
    Activity {
        name: Box<str>,
        last_active_ms: i64,
        next_seq: u64,
    },
    /// A snapshot's copy of one retained delivery.
    Delivery {
        name: Box<str>,
        state: DeliveryState,
        envelope: SharedEnvelope,
    },
    /// A snapshot's copy of one retained sent message.
    Sent {
        name: Box<str>,
        envelope: SharedEnvelope,
    },
    /// A file reservation's whole state (new, extended, renewed or released) in `project`.
    Lease { project: Uuid, lease: Lease },
    /// A snapshot's note of the next lease id of `project` (ids are never reused).
    LeaseIds { project: Uuid, next_id: u64 },
    /// A keyed reservation request's answer in `project`, for its repeats.
    LeaseKey { project: Uuid, key: ReserveKey },
}

/// What a recipient did with one delivery. `None` times: not yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryState {
    pub seq: u64,
    pub read_at: Option<i64>,
    pub acked_at: Option<i64>,
    pub drained: bool,
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
        Record::Enqueued { envelope } => encode_message(out, envelope, None),
        Record::Prepared { envelope, owners } => encode_message(out, envelope, Some(*owners)),
        Record::Visible { id } => encode_visible(out, id),
        Record::Aborted { id } => encode_aborted(out, id),
        Record::Drained {
            name,
            count,
            last_id,
            at_ms,
        } => encode_drained(out, name, *count, last_id, at_ms.unwrap_or(0)),
        Record::Marked {
            name,
            ack,
            at_ms,
            ids,
        } => encode_marked(out, name, *ack, *at_ms, ids),
        Record::Activity {
            name,
            last_active_ms,
            next_seq,
        } => encode_activity(out, name, *last_active_ms, *next_seq),
        Record::Delivery {
            name,
            state,
            envelope,
        } => encode_delivery(out, name, state, envelope),
        Record::Sent { name, envelope } => encode_sent(out, name, envelope),
        Record::Lease { project, lease } => encode_lease(out, project, lease),
        Record::LeaseIds { project, next_id } => encode_lease_ids(out, project, *next_id),
        Record::LeaseKey { project, key } => encode_lease_key(out, project, key),
    }
}

pub fn encode_lease_key(out: &mut Vec<u8>, project: &Uuid, key: &ReserveKey) {
    frame(out, KIND_LEASE_KEY, |out| {
        put_uuid(out, project);
        put_str(out, &key.agent);
        put_str(out, &key.key);
        out.extend_from_slice(&key.request_hash.to_le_bytes());
        out.extend_from_slice(&key.at_ms.to_le_bytes());
        out.extend_from_slice(&(key.granted.len() as u32).to_le_bytes());
        for id in &key.granted {
            out.extend_from_slice(&id.to_le_bytes());
        }
        out.extend_from_slice(&(key.conflicts.len() as u32).to_le_bytes());
        for path in &key.conflicts {
            put_str(out, path);
        }
    });
}

pub fn encode_lease_ids(out: &mut Vec<u8>, project: &Uuid, next_id: u64) {
    frame(out, KIND_LEASE_IDS, |out| {
        put_uuid(out, project);
        out.extend_from_slice(&next_id.to_le_bytes());
    });
}

pub fn encode_lease(out: &mut Vec<u8>, project: &Uuid, lease: &Lease) {
    frame(out, KIND_LEASE, |out| {
        put_uuid(out, project);
        out.extend_from_slice(&lease.id.to_le_bytes());
        put_str(out, &lease.agent);
        put_str(out, &lease.path);
        out.push(u8::from(lease.exclusive));
        put_str(out, &lease.reason);
        out.extend_from_slice(&lease.created_ms.to_le_bytes());
        out.extend_from_slice(&lease.expires_ms.to_le_bytes());
        put_optional_i64(out, lease.released_ms);
    });
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
        put_str(out, &p.task_description);
        put_optional_uuid(out, p.token_hash.as_ref());
    });
}

/// An `Enqueued` (no `owners`) or `Prepared` record, written from borrowed parts so the hot
/// path builds no [`Record`].
pub fn encode_message(out: &mut Vec<u8>, envelope: &Envelope, owners: Option<u16>) {
    let kind = if owners.is_some() {
        KIND_PREPARED
    } else {
        KIND_ENQUEUED
    };
    frame(out, kind, |out| {
        put_envelope(out, envelope);
        if let Some(owners) = owners {
            out.extend_from_slice(&owners.to_le_bytes());
        }
    });
}

pub fn encode_visible(out: &mut Vec<u8>, id: &Uuid) {
    frame(out, KIND_VISIBLE, |out| put_uuid(out, id));
}

pub fn encode_aborted(out: &mut Vec<u8>, id: &Uuid) {
    frame(out, KIND_ABORTED, |out| put_uuid(out, id));
}

pub fn encode_drained(out: &mut Vec<u8>, name: &str, count: u32, last_id: &Uuid, at_ms: i64) {
    frame(out, KIND_DRAINED, |out| {
        put_str(out, name);
        out.extend_from_slice(&count.to_le_bytes());
        put_uuid(out, last_id);
        out.extend_from_slice(&at_ms.to_le_bytes());
    });
}

pub fn encode_marked(out: &mut Vec<u8>, name: &str, ack: bool, at_ms: i64, ids: &[Uuid]) {
    frame(out, KIND_MARKED, |out| {
        put_str(out, name);
        out.push(u8::from(ack));
        out.extend_from_slice(&at_ms.to_le_bytes());
        out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
        for id in ids {
            put_uuid(out, id);
        }
    });
}

pub fn encode_activity(out: &mut Vec<u8>, name: &str, last_active_ms: i64, next_seq: u64) {
    frame(out, KIND_ACTIVITY, |out| {
        put_str(out, name);
        out.extend_from_slice(&last_active_ms.to_le_bytes());
        out.extend_from_slice(&next_seq.to_le_bytes());
    });
}

pub fn encode_delivery(out: &mut Vec<u8>, name: &str, state: &DeliveryState, env: &Envelope) {
    frame(out, KIND_DELIVERY, |out| {
        put_str(out, name);
        out.extend_from_slice(&state.seq.to_le_bytes());
        put_optional_i64(out, state.read_at);
        put_optional_i64(out, state.acked_at);
        out.push(u8::from(state.drained));
        put_envelope(out, env);
    });
}

pub fn encode_sent(out: &mut Vec<u8>, name: &str, envelope: &Envelope) {
    frame(out, KIND_SENT, |out| {
        put_str(out, name);
        put_envelope(out, envelope);
    });
}

fn put_envelope(out: &mut Vec<u8>, envelope: &Envelope) {
    put_uuid(out, &envelope.id);
    put_uuid(out, &envelope.project_id);
    out.extend_from_slice(&envelope.timestamp_ms.to_le_bytes());
    out.extend_from_slice(&(envelope.weight() as u64).to_le_bytes());
    put_str32(out, envelope.from());
    put_str32(out, envelope.subject());
    put_str32(out, envelope.body());
    // Empty for a message in its own thread.
    put_str(out, envelope.named_thread().unwrap_or(""));
    put_optional_uuid(out, envelope.reply_to.as_ref());
    out.push(envelope.importance.code());
    let keyed = envelope.idempotency();
    let flags = u8::from(envelope.ack_required) | if keyed.is_some() { FLAG_KEYED } else { 0 };
    out.push(flags);
    for list in [envelope.to(), envelope.cc()] {
        out.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for name in list {
            put_str(out, name);
        }
    }
    if let Some(keyed) = keyed {
        put_str(out, &keyed.key);
        out.extend_from_slice(&keyed.request_hash.to_le_bytes());
    }
}

/// An envelope's flags byte: bit 0 is `ack_required` (the byte was that bool before keys);
/// this bit says an idempotency key and its request hash follow the recipients.
const FLAG_KEYED: u8 = 2;
const KNOWN_FLAGS: u8 = 1 | FLAG_KEYED;

fn put_optional_uuid(out: &mut Vec<u8>, id: Option<&Uuid>) {
    match id {
        Some(id) => {
            out.push(1);
            put_uuid(out, id);
        }
        None => out.push(0),
    }
}

/// `i64::MIN` stands for "not set": no real time is that far back.
fn put_optional_i64(out: &mut Vec<u8>, value: Option<i64>) {
    out.extend_from_slice(&value.unwrap_or(i64::MIN).to_le_bytes());
}

/// Writes one framed record: its kind, then what `body` appends.
fn frame(out: &mut Vec<u8>, kind: u8, body: impl FnOnce(&mut Vec<u8>)) {
    frame::write(out, |out| {
        out.push(kind);
        body(out);
    });
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

/// Decodes the framed record at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    match frame::read(bytes) {
        Ok(Frame::Payload(payload, len)) => Ok(Decoded::Record(decode_payload(payload)?, len)),
        Ok(Frame::Padding) => Ok(Decoded::Padding),
        Err(FrameError::Truncated) => Err(DecodeError::Truncated),
        Err(FrameError::Checksum) => Err(DecodeError::Checksum),
    }
}

/// Decodes one frame's payload (its checksum already held).
pub fn decode_payload(body: &[u8]) -> Result<Record, DecodeError> {
    let Some((&kind, rest)) = body.split_first() else {
        return Err(DecodeError::Malformed("an empty record"));
    };
    let mut reader = Reader { bytes: rest };
    let record = match kind {
        KIND_AGENT_V1 => Record::Agent(reader.agent(false)?),
        KIND_AGENT => Record::Agent(reader.agent(true)?),
        KIND_ENQUEUED_V1 => Record::Enqueued {
            envelope: reader.message_v1()?,
        },
        KIND_PREPARED_V1 => Record::Prepared {
            envelope: reader.message_v1()?,
            owners: reader.u16()?,
        },
        KIND_ENQUEUED => Record::Enqueued {
            envelope: reader.envelope()?,
        },
        KIND_PREPARED => Record::Prepared {
            envelope: reader.envelope()?,
            owners: reader.u16()?,
        },
        KIND_VISIBLE => Record::Visible { id: reader.uuid()? },
        KIND_ABORTED => Record::Aborted { id: reader.uuid()? },
        KIND_DRAINED_V1 | KIND_DRAINED => Record::Drained {
            name: reader.str16()?,
            count: reader.u32()?,
            last_id: reader.uuid()?,
            at_ms: if kind == KIND_DRAINED {
                Some(reader.i64()?)
            } else {
                None
            },
        },
        KIND_MARKED => reader.marked()?,
        KIND_ACTIVITY => Record::Activity {
            name: reader.str16()?,
            last_active_ms: reader.i64()?,
            next_seq: reader.u64()?,
        },
        KIND_DELIVERY => Record::Delivery {
            name: reader.str16()?,
            state: reader.delivery_state()?,
            envelope: reader.envelope()?,
        },
        KIND_SENT => Record::Sent {
            name: reader.str16()?,
            envelope: reader.envelope()?,
        },
        KIND_LEASE_IDS => Record::LeaseIds {
            project: reader.uuid()?,
            next_id: reader.u64()?,
        },
        KIND_LEASE => Record::Lease {
            project: reader.uuid()?,
            lease: reader.lease()?,
        },
        KIND_LEASE_KEY => Record::LeaseKey {
            project: reader.uuid()?,
            key: reader.lease_key()?,
        },
        _ => return Err(DecodeError::Malformed("unknown record kind")),
    };
    if !reader.bytes.is_empty() {
        return Err(DecodeError::Malformed("bytes left after the record"));
    }
    Ok(record)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn marked(&mut self) -> Result<Record, DecodeError> {
        let name = self.str16()?;
        let ack = self.u8()? != 0;
        let at_ms = self.i64()?;
        let ids = self.list(16, "id count beyond the record", Self::uuid)?;
        Ok(Record::Marked {
            name,
            ack,
            at_ms,
            ids,
        })
    }

    fn delivery_state(&mut self) -> Result<DeliveryState, DecodeError> {
        Ok(DeliveryState {
            seq: self.u64()?,
            read_at: self.optional_i64()?,
            acked_at: self.optional_i64()?,
            drained: self.u8()? != 0,
        })
    }

    /// A u32 count, then that many items read by `item`. Each item takes at least
    /// `min_item_bytes`, so a count the rest of the record cannot hold is refused before
    /// anything is allocated for it.
    fn list<T>(
        &mut self,
        min_item_bytes: usize,
        too_many: &'static str,
        mut item: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.u32()? as usize;
        if count > self.bytes.len() / min_item_bytes {
            return Err(DecodeError::Malformed(too_many));
        }
        (0..count).map(|_| item(self)).collect()
    }

    fn lease_key(&mut self) -> Result<ReserveKey, DecodeError> {
        let agent = self.str16()?;
        let key = self.str16()?;
        let request_hash = self.u64()?;
        let at_ms = self.i64()?;
        let granted = self.list(8, "lease count beyond the record", Self::u64)?;
        let conflicts = self.list(2, "path count beyond the record", Self::str16)?;
        Ok(ReserveKey {
            agent,
            key,
            request_hash,
            at_ms,
            granted,
            conflicts,
        })
    }

    fn lease(&mut self) -> Result<Lease, DecodeError> {
        Ok(Lease {
            id: self.u64()?,
            agent: self.str16()?,
            path: self.str16()?,
            exclusive: self.u8()? != 0,
            reason: self.str16()?,
            created_ms: self.i64()?,
            expires_ms: self.i64()?,
            released_ms: self.optional_i64()?,
        })
    }

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

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn optional_i64(&mut self) -> Result<Option<i64>, DecodeError> {
        let value = self.i64()?;
        Ok((value != i64::MIN).then_some(value))
    }

    fn optional_uuid(&mut self) -> Result<Option<Uuid>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.uuid()?)),
            _ => Err(DecodeError::Malformed("bad optional flag")),
        }
    }

    fn str32(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.u32()? as usize;
        self.text(len)
    }

    fn names(&mut self) -> Result<Vec<Box<str>>, DecodeError> {
        let count = self.u32()? as usize;
        // Each name takes at least its two length bytes: a bound a garbled count cannot pass.
        if count > self.bytes.len() / 2 {
            return Err(DecodeError::Malformed("name count beyond the record"));
        }
        (0..count).map(|_| self.str16()).collect()
    }

    /// A profile; the first format had no task description and no token.
    fn agent(&mut self, current: bool) -> Result<AgentProfile, DecodeError> {
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
            task_description: if current { self.str16()? } else { "".into() },
            token_hash: if current { self.optional_uuid()? } else { None },
        })
    }

    fn envelope(&mut self) -> Result<SharedEnvelope, DecodeError> {
        let id = self.uuid()?;
        let project_id = self.uuid()?;
        let timestamp_ms = self.i64()?;
        let weight = self.u64()? as usize;
        let from = self.str32()?;
        let subject = self.str32()?;
        let body = self.str32()?;
        let thread_len = usize::from(self.u16()?);
        let thread_id = Some(self.text(thread_len)?).filter(|t| !t.is_empty());
        let reply_to = self.optional_uuid()?;
        let importance = Importance::from_code(self.u8()?)
            .ok_or(DecodeError::Malformed("unknown importance"))?;
        let flags = self.u8()?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(DecodeError::Malformed("unknown envelope flags"));
        }
        let ack_required = flags & 1 != 0;
        let to = self.names()?;
        let cc = self.names()?;
        let idempotency = if flags & FLAG_KEYED != 0 {
            let key = self.str16()?;
            let request_hash = self.u64()?;
            Some(Idempotency { key, request_hash })
        } else {
            None
        };
        let envelope = Envelope::compose(Message {
            id,
            project_id,
            timestamp_ms,
            from,
            subject,
            body,
            thread_id,
            reply_to,
            importance,
            ack_required,
            to,
            cc,
        });
        Ok(Arc::new(
            envelope.with_weight(weight).with_idempotency(idempotency),
        ))
    }

    /// The first format: text with split lengths, then the recipients (all `to`).
    fn message_v1(&mut self) -> Result<SharedEnvelope, DecodeError> {
        let id = self.uuid()?;
        let project_id = self.uuid()?;
        let timestamp_ms = self.i64()?;
        let weight = self.u64()? as usize;
        let from_len = self.u32()? as usize;
        let subject_len = self.u32()? as usize;
        let text = self.str32()?;
        let subject_end = from_len.saturating_add(subject_len);
        if subject_end > text.len()
            || !text.is_char_boundary(from_len)
            || !text.is_char_boundary(subject_end)
        {
            return Err(DecodeError::Malformed(
                "message lengths do not fit its text",
            ));
        }
        let to = self.names()?;
        // The first format had no threads, importance, acknowledgements or cc: the defaults.
        let envelope = Envelope::compose(Message {
            project_id,
            timestamp_ms,
            subject: &text[from_len..subject_end],
            body: &text[subject_end..],
            to,
            ..Message::plain(id, &text[..from_len])
        });
        // Its weight was measured for the first format's five-field entries; today's entries
        // add numbers, times, the thread and the recipients: a bound on what they add.
        let names: usize = envelope.recipients().map(|n| 2 * n.len() + 16).sum();
        let weight = weight + FIRST_FORMAT_ENTRY_GROWTH_BYTES + names;
        Ok(Arc::new(envelope.with_weight(weight).from_first_format()))
    }
}

/// What an entry of today's pages adds to a first-format message's entry, raw and escaped,
/// besides its recipients' names: well above the fixed fields it gains (about 600 bytes).
const FIRST_FORMAT_ENTRY_GROWTH_BYTES: usize = 1024;

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
            task_description: "fix the build →".into(),
            token_hash: Some(Uuid::from_u128(44)),
        }
    }

    fn envelope() -> SharedEnvelope {
        Arc::new(message())
    }

    fn message() -> Envelope {
        Envelope::compose(Message {
            id: Uuid::from_u128(1),
            project_id: Uuid::from_u128(2),
            timestamp_ms: 99,
            from: "Blüe",
            subject: "s",
            body: "body →",
            thread_id: Some("th:1"),
            reply_to: Some(Uuid::from_u128(3)),
            importance: Importance::High,
            ack_required: true,
            to: vec!["a".into(), "bé".into()],
            cc: vec!["c".into()],
        })
        .with_weight(123)
    }

    fn every_kind() -> Vec<Record> {
        vec![
            Record::Agent(profile()),
            Record::Enqueued {
                envelope: envelope(),
            },
            // A keyed message: its key sits between the recipients and `owners`.
            Record::Prepared {
                envelope: Arc::new(message().with_idempotency(Some(Idempotency {
                    key: "retry-7".into(),
                    request_hash: 0xfeed,
                }))),
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
                at_ms: Some(17),
            },
            Record::Marked {
                name: "a".into(),
                ack: true,
                at_ms: 12,
                ids: vec![Uuid::from_u128(1), Uuid::from_u128(2)],
            },
            Record::Activity {
                name: "a".into(),
                last_active_ms: 5,
                next_seq: 77,
            },
            Record::Delivery {
                name: "a".into(),
                state: DeliveryState {
                    seq: 4,
                    read_at: Some(8),
                    acked_at: None,
                    drained: true,
                },
                envelope: envelope(),
            },
            Record::Sent {
                name: "Blüe".into(),
                envelope: envelope(),
            },
            Record::Lease {
                project: Uuid::from_u128(8),
                lease: Lease {
                    id: 3,
                    agent: "a".into(),
                    path: "src/**/*.rs".into(),
                    exclusive: true,
                    reason: "refactor →".into(),
                    created_ms: 1,
                    expires_ms: 2,
                    released_ms: Some(3),
                },
            },
            Record::LeaseIds {
                project: Uuid::from_u128(8),
                next_id: 40,
            },
            Record::LeaseKey {
                project: Uuid::from_u128(8),
                key: ReserveKey {
                    agent: "a".into(),
                    key: "k-1".into(),
                    request_hash: 77,
                    at_ms: 12,
                    granted: vec![3, 4],
                    conflicts: vec!["src/é.rs".into()],
                },
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

    /// The first format's message record, as the previous release wrote it.
    fn first_format_enqueued() -> Vec<u8> {
        let mut out = Vec::new();
        frame(&mut out, KIND_ENQUEUED_V1, |out| {
            put_uuid(out, &Uuid::from_u128(1));
            put_uuid(out, &Uuid::from_u128(2));
            out.extend_from_slice(&99i64.to_le_bytes());
            out.extend_from_slice(&55u64.to_le_bytes());
            out.extend_from_slice(&4u32.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
            put_str32(out, "Blues→");
            out.extend_from_slice(&1u32.to_le_bytes());
            put_str(out, "a");
        });
        out
    }

    #[test]
    fn first_format_records_are_still_read() {
        let out = first_format_enqueued();
        let Ok(Decoded::Record(Record::Enqueued { envelope }, len)) = decode(&out) else {
            panic!("decode");
        };
        assert_eq!(len, out.len());
        assert_eq!(
            (envelope.from(), envelope.subject(), envelope.body()),
            ("Blue", "s", "→")
        );
        assert_eq!(envelope.to().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(envelope.thread_id(), Uuid::from_u128(1).to_string());
        assert!(
            envelope.weight() > 55 + 1024,
            "re-weighed for today's entries"
        );
        assert!(!envelope.sender_took_part);
        let mut drained = Vec::new();
        frame(&mut drained, KIND_DRAINED_V1, |out| {
            put_str(out, "a");
            out.extend_from_slice(&2u32.to_le_bytes());
            put_uuid(out, &Uuid::from_u128(9));
        });
        assert!(matches!(
            decode(&drained),
            Ok(Decoded::Record(
                Record::Drained {
                    at_ms: None,
                    count: 2,
                    ..
                },
                _
            ))
        ));
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
    fn the_weight_and_every_field_survive() {
        let mut out = Vec::new();
        encode(&mut out, &every_kind()[1]);
        let Ok(Decoded::Record(Record::Enqueued { envelope: got }, _)) = decode(&out) else {
            panic!("decode");
        };
        assert_eq!(got, envelope());
        assert_eq!(got.weight(), 123);
    }
}
