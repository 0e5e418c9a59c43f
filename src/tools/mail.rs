//! What the mail tools share: the JSON of a delivery (as `fetch_inbox`, `wait_for_mail` and
//! `get_thread` list it), of a drained message (`get_inbox`), and what one costs in a page.
//!
//! A page is bounded by the bytes it takes in the response, not by the text it carries: JSON
//! escaping can multiply text several times over. Each message's cost ([`entry_weight`]) is
//! computed once, when it is sent, as an upper bound over every form it is listed in, and the
//! owner shard sums those costs while it fills a page.

use crate::clock::write_rfc3339_ms;
use crate::json::{both_quoted_len, quoted_len, write_array, write_str, write_uuid};
use shards::{DeliveryView, Envelope, Importance, Kind, Message};
use std::sync::OnceLock;
use uuid::Uuid;

/// Reused per page: a timestamp's text.
pub struct Clock(String);

impl Clock {
    pub fn new() -> Self {
        Clock(String::with_capacity(24))
    }

    pub fn write(&mut self, out: &mut Vec<u8>, unix_ms: i64) {
        self.0.clear();
        write_rfc3339_ms(&mut self.0, unix_ms);
        out.push(b'"');
        out.extend_from_slice(self.0.as_bytes());
        out.push(b'"');
    }

    pub fn write_optional(&mut self, out: &mut Vec<u8>, unix_ms: Option<i64>) {
        match unix_ms {
            Some(ms) => self.write(out, ms),
            None => out.extend_from_slice(b"null"),
        }
    }
}

fn write_names<'a>(out: &mut Vec<u8>, names: impl Iterator<Item = &'a str>) {
    write_array(out, names, write_str);
}

/// `,"importance":"…","ack_required":…`
fn write_importance(out: &mut Vec<u8>, message: &Envelope) {
    out.extend_from_slice(b",\"importance\":\"");
    out.extend_from_slice(message.importance.as_str().as_bytes());
    out.extend_from_slice(b"\",\"ack_required\":");
    write_bool(out, message.ack_required);
}

pub fn write_bool(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

pub use crate::json::write_u64;

/// The thread id, without allocating for a message in its own thread.
fn write_thread(out: &mut Vec<u8>, message: &Envelope) {
    match message.named_thread() {
        Some(thread) => write_str(out, thread),
        None => write_uuid(out, &message.id),
    }
}

fn write_optional_uuid(out: &mut Vec<u8>, id: Option<&Uuid>) {
    match id {
        Some(id) => write_uuid(out, id),
        None => out.extend_from_slice(b"null"),
    }
}

/// How a message appears to one reader: with its delivery state, or (a message the reader
/// sent) without.
pub struct Entry<'a> {
    pub envelope: &'a Envelope,
    pub delivery: Option<&'a DeliveryView>,
    pub include_body: bool,
}

/// A message as `fetch_inbox`, `wait_for_mail` and `get_thread` list it.
pub fn write_entry(out: &mut Vec<u8>, entry: &Entry<'_>, clock: &mut Clock) {
    let message = entry.envelope;
    out.push(b'{');
    if let Some(delivery) = entry.delivery {
        out.extend_from_slice(b"\"seq\":");
        write_u64(out, delivery.seq);
        out.push(b',');
    }
    out.extend_from_slice(b"\"id\":");
    write_uuid(out, &message.id);
    out.extend_from_slice(b",\"thread_id\":");
    write_thread(out, message);
    out.extend_from_slice(b",\"reply_to\":");
    write_optional_uuid(out, message.reply_to.as_ref());
    out.extend_from_slice(b",\"from\":");
    write_str(out, message.from());
    out.extend_from_slice(b",\"to\":");
    write_names(out, message.to());
    out.extend_from_slice(b",\"cc\":");
    write_names(out, message.cc());
    if let Some(delivery) = entry.delivery {
        out.extend_from_slice(b",\"kind\":\"");
        out.extend_from_slice(delivery.kind.as_str().as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b",\"subject\":");
    write_str(out, message.subject());
    if entry.include_body {
        out.extend_from_slice(b",\"body\":");
        write_str(out, message.body());
    }
    write_importance(out, message);
    out.extend_from_slice(b",\"timestamp\":");
    clock.write(out, message.timestamp_ms);
    if let Some(delivery) = entry.delivery {
        out.extend_from_slice(b",\"read_at\":");
        clock.write_optional(out, delivery.read_at);
        out.extend_from_slice(b",\"acked_at\":");
        clock.write_optional(out, delivery.acked_at);
        out.extend_from_slice(b",\"drained\":");
        write_bool(out, delivery.drained);
    }
    out.push(b'}');
}

/// A drained message as `get_inbox` lists it: the seed's five fields first, then the rest.
pub fn write_inbox_entry(out: &mut Vec<u8>, delivery: &DeliveryView, clock: &mut Clock) {
    let message = &delivery.envelope;
    out.extend_from_slice(b"{\"id\":");
    write_uuid(out, &message.id);
    out.extend_from_slice(b",\"from\":");
    write_str(out, message.from());
    out.extend_from_slice(b",\"subject\":");
    write_str(out, message.subject());
    out.extend_from_slice(b",\"body\":");
    write_str(out, message.body());
    out.extend_from_slice(b",\"timestamp\":");
    clock.write(out, message.timestamp_ms);
    out.extend_from_slice(b",\"seq\":");
    write_u64(out, delivery.seq);
    out.extend_from_slice(b",\"thread_id\":");
    write_thread(out, message);
    out.extend_from_slice(b",\"reply_to\":");
    write_optional_uuid(out, message.reply_to.as_ref());
    write_importance(out, message);
    out.extend_from_slice(b",\"cc\":");
    write_names(out, message.cc());
    out.push(b'}');
}

/// What `envelope` costs in any page that lists it: its largest entry (a delivery with every
/// field), raw (`structuredContent`) and escaped (inside the `text` string), with a comma in
/// each. An upper bound: `get_inbox` entries and entries without a body are smaller.
pub fn entry_weight(envelope: &Envelope) -> usize {
    let (frame_raw, frame_escaped) = entry_frame_bytes();
    // Each text field once quoted, and inside the text string, beyond the empty string the
    // frame already counts.
    let field = |text: &str| both_quoted_len(text) - 8;
    let names: usize = envelope.recipients().map(both_quoted_len).sum();
    frame_raw
        + frame_escaped
        + 2
        + field(envelope.from())
        + field(envelope.subject())
        + field(envelope.body())
        + field(envelope.named_thread().unwrap_or(OWN_THREAD_TEXT))
        + names
}

/// What a thread id that is the message's own id costs: a UUID's text.
const OWN_THREAD_TEXT: &str = "00000000-0000-0000-0000-000000000000";

/// The bytes of the largest entry besides its text fields and names, raw and escaped:
/// measured once by writing one whose fields are empty and whose numbers and times are
/// longest, so it follows `write_entry` whatever it writes.
fn entry_frame_bytes() -> (usize, usize) {
    static FRAME: OnceLock<(usize, usize)> = OnceLock::new();
    *FRAME.get_or_init(|| {
        let empty = Envelope::compose(Message {
            id: Uuid::nil(),
            project_id: Uuid::nil(),
            timestamp_ms: 0,
            from: "",
            subject: "",
            body: "",
            // One byte (an empty thread id means "its own"): counted twice over, harmlessly.
            thread_id: Some("x"),
            reply_to: Some(Uuid::nil()),
            importance: Importance::Urgent,
            ack_required: false,
            to: Vec::new(),
            cc: Vec::new(),
        });
        let empty = std::sync::Arc::new(empty);
        let delivery = DeliveryView {
            seq: u64::MAX,
            envelope: std::sync::Arc::clone(&empty),
            kind: Kind::To,
            read_at: Some(0),
            acked_at: Some(0),
            drained: false,
        };
        let mut entry = Vec::new();
        let item = Entry {
            envelope: &empty,
            delivery: Some(&delivery),
            include_body: true,
        };
        write_entry(&mut entry, &item, &mut Clock::new());
        let entry = String::from_utf8(entry).unwrap_or_default();
        (entry.len(), quoted_len(&entry) - 2)
    })
}

/// The counters of a fetch, as JSON.
pub fn write_counts(out: &mut Vec<u8>, counts: &shards::Counts) {
    out.extend_from_slice(b"{\"unread\":");
    write_u64(out, counts.unread as u64);
    out.extend_from_slice(b",\"urgent_unread\":");
    write_u64(out, counts.urgent_unread as u64);
    out.extend_from_slice(b",\"ack_pending\":");
    write_u64(out, counts.ack_pending as u64);
    out.push(b'}');
}

/// The JSON schema of one listed message (for `outputSchema`): its fields named once in a
/// description, not typed one by one, to keep `tools/list` small (it sits in every model's
/// context).
pub fn entry_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "description": "seq, id, thread_id, reply_to, from, to[], cc[], kind (to|cc), subject, body, importance, ack_required, timestamp, read_at, acked_at, drained (times RFC 3339 or null; seq and kind only on mail received)"
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn envelope(from: &str, subject: &str, body: &str, cc: &[&str]) -> Arc<Envelope> {
        Arc::new(Envelope::compose(Message {
            id: Uuid::from_u128(9),
            project_id: Uuid::nil(),
            timestamp_ms: 1_795_608_371_123,
            from,
            subject,
            body,
            thread_id: Some("t\"1"),
            reply_to: None,
            importance: Importance::High,
            ack_required: true,
            to: vec!["Bob".into(), "Cy".into()],
            cc: cc.iter().map(|n| (*n).into()).collect(),
        }))
    }

    fn delivery(envelope: &Arc<Envelope>, seq: u64) -> DeliveryView {
        DeliveryView {
            seq,
            envelope: Arc::clone(envelope),
            kind: Kind::Cc,
            read_at: None,
            acked_at: Some(1_795_608_371_000),
            drained: true,
        }
    }

    /// Bytes an item takes in a result: raw plus escaped inside the `text` string.
    fn sent(json: &[u8]) -> usize {
        let text = std::str::from_utf8(json).expect("utf8");
        text.len() + quoted_len(text) - 2
    }

    #[test]
    fn the_weight_bounds_every_form_of_an_entry() {
        let texts = [
            ("Blue", "", "", vec![]),
            ("A\"b", "s\\", "line\nnext\t\u{1}é→", vec!["Dee"]),
            (
                "x",
                &*"\"".repeat(100),
                &*"\u{2}".repeat(50),
                vec!["E", "F"],
            ),
        ];
        for (from, subject, body, cc) in texts {
            let message = envelope(from, subject, body, &cc);
            let weight = entry_weight(&message);
            let view = delivery(&message, u64::MAX);
            let mut clock = Clock::new();
            let mut full = Vec::new();
            let item = Entry {
                envelope: &message,
                delivery: Some(&view),
                include_body: true,
            };
            write_entry(&mut full, &item, &mut clock);
            let mut inbox = Vec::new();
            write_inbox_entry(&mut inbox, &view, &mut clock);
            let full_sent = sent(&full) + 2;
            assert!(weight >= full_sent, "{weight} < {full_sent}");
            // The slack is the frame's longest forms: a reply_to id and both times set where
            // these entries have nulls (about 130 bytes).
            assert!(weight <= full_sent + 160, "tight: {weight} vs {full_sent}");
            assert!(weight >= sent(&inbox) + 2);
        }
    }

    #[test]
    fn an_entry_has_every_field() {
        let message = envelope("A", "s", "b", &["Dee"]);
        let view = delivery(&message, 3);
        let mut out = Vec::new();
        let item = Entry {
            envelope: &message,
            delivery: Some(&view),
            include_body: false,
        };
        write_entry(&mut out, &item, &mut Clock::new());
        let value: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            value,
            serde_json::json!({
                "seq": 3,
                "id": "00000000-0000-0000-0000-000000000009",
                "thread_id": "t\"1",
                "reply_to": null,
                "from": "A",
                "to": ["Bob", "Cy"],
                "cc": ["Dee"],
                "kind": "cc",
                "subject": "s",
                "importance": "high",
                "ack_required": true,
                "timestamp": "2026-11-25T12:06:11.123Z",
                "read_at": null,
                "acked_at": "2026-11-25T12:06:11.000Z",
                "drained": true
            })
        );
    }
}
