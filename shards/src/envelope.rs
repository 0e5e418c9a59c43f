//! One message as it sits in delivery logs.
//!
//! A message sent to k recipients is stored once and shared by k delivery logs (and the
//! sender's sent list) through an `Arc` (they live on different shard threads). `from`,
//! `subject`, `body` and `thread_id` share one heap allocation, the recipients another, so a
//! message costs its payload plus a fixed ~150 bytes.

use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

/// How urgent a message is; `normal` unless the sender says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub enum Importance {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

impl Importance {
    pub const ALL: [Importance; 4] = [
        Importance::Low,
        Importance::Normal,
        Importance::High,
        Importance::Urgent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Importance::Low => "low",
            Importance::Normal => "normal",
            Importance::High => "high",
            Importance::Urgent => "urgent",
        }
    }

    pub fn parse(text: &str) -> Option<Importance> {
        Importance::ALL.into_iter().find(|i| i.as_str() == text)
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Importance> {
        Importance::ALL.get(usize::from(code)).copied()
    }
}

impl fmt::Display for Importance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a sender says about a message, borrowed, for [`Envelope::compose`].
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub id: Uuid,
    pub project_id: Uuid,
    pub timestamp_ms: i64,
    pub from: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    /// `None`: the message starts its own thread (its id).
    pub thread_id: Option<&'a str>,
    pub reply_to: Option<Uuid>,
    pub importance: Importance,
    pub ack_required: bool,
    pub to: Vec<Box<str>>,
    pub cc: Vec<Box<str>>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Envelope {
    pub id: Uuid,
    pub project_id: Uuid,
    /// Milliseconds since the Unix epoch (UTC) when the server accepted the message.
    pub timestamp_ms: i64,
    pub reply_to: Option<Uuid>,
    pub importance: Importance,
    pub ack_required: bool,
    /// False for a message read from the first log format, whose sender's owner took no part
    /// in the send (see `ShardState::emits`).
    pub sender_took_part: bool,
    from_len: u32,
    subject_len: u32,
    body_len: u32,
    /// How many of `recipients` are `to` (the rest are `cc`).
    to_count: u32,
    /// What this message costs in a page of results, in the unit the layer that encodes pages
    /// uses (bytes of response). Defaults to its text length.
    weight: usize,
    /// `from`, `subject`, `body`, then `thread_id`, back to back.
    text: Box<str>,
    /// `to`, then `cc`.
    recipients: Box<[Box<str>]>,
}

pub type SharedEnvelope = Arc<Envelope>;

/// A text field longer than 4 GiB cannot reach an envelope: the HTTP body limit is far below.
fn len32(text: &str) -> u32 {
    u32::try_from(text.len()).unwrap_or(u32::MAX)
}

impl Envelope {
    /// A message with no recipients listed, in its own thread (tests and old log records).
    pub fn new(
        id: Uuid,
        project_id: Uuid,
        timestamp_ms: i64,
        from: &str,
        subject: &str,
        body: &str,
    ) -> Self {
        Envelope::compose(Message {
            id,
            project_id,
            timestamp_ms,
            from,
            subject,
            body,
            thread_id: None,
            reply_to: None,
            importance: Importance::Normal,
            ack_required: false,
            to: Vec::new(),
            cc: Vec::new(),
        })
    }

    pub fn compose(message: Message<'_>) -> Self {
        let own_thread;
        let thread = match message.thread_id {
            Some(thread) => thread,
            None => {
                own_thread = message.id.hyphenated().to_string();
                &own_thread
            }
        };
        let fields = [message.from, message.subject, message.body, thread];
        let mut text = String::with_capacity(fields.iter().map(|f| f.len()).sum());
        for field in fields {
            text.push_str(field);
        }
        let to_count = len32_count(message.to.len());
        let mut recipients = message.to;
        recipients.extend(message.cc);
        let payload = message.from.len() + message.subject.len() + message.body.len();
        Envelope {
            id: message.id,
            project_id: message.project_id,
            timestamp_ms: message.timestamp_ms,
            reply_to: message.reply_to,
            importance: message.importance,
            ack_required: message.ack_required,
            sender_took_part: true,
            from_len: len32(message.from),
            subject_len: len32(message.subject),
            body_len: len32(message.body),
            to_count,
            weight: payload,
            text: text.into_boxed_str(),
            recipients: recipients.into_boxed_slice(),
        }
    }

    /// Marks a message read from the first log format (see `sender_took_part`).
    pub fn from_first_format(mut self) -> Self {
        self.sender_took_part = false;
        self
    }

    /// Sets what the message costs in a page of results (see [`Envelope::weight`]).
    pub fn with_weight(mut self, weight: usize) -> Self {
        self.weight = weight;
        self
    }

    pub fn weight(&self) -> usize {
        self.weight
    }

    fn field(&self, index: usize) -> &str {
        let lens = [self.from_len, self.subject_len, self.body_len];
        let start: usize = lens[..index].iter().map(|l| *l as usize).sum();
        match lens.get(index) {
            Some(len) => &self.text[start..start + *len as usize],
            None => &self.text[start..],
        }
    }

    pub fn from(&self) -> &str {
        self.field(0)
    }

    pub fn subject(&self) -> &str {
        self.field(1)
    }

    pub fn body(&self) -> &str {
        self.field(2)
    }

    pub fn thread_id(&self) -> &str {
        self.field(3)
    }

    pub fn to(&self) -> &[Box<str>] {
        &self.recipients[..self.to_count as usize]
    }

    pub fn cc(&self) -> &[Box<str>] {
        &self.recipients[self.to_count as usize..]
    }

    /// `to`, then `cc` (a name is in at most one of them).
    pub fn recipients(&self) -> &[Box<str>] {
        &self.recipients
    }

    /// Bytes of text this message carries (from + subject + body): what inbox caps count.
    pub fn payload_len(&self) -> usize {
        (self.from_len + self.subject_len + self.body_len) as usize
    }
}

fn len32_count(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope::compose(Message {
            id: Uuid::from_u128(7),
            project_id: Uuid::nil(),
            timestamp_ms: 7,
            from: "Blüe",
            subject: "",
            body: "héllo → wörld",
            thread_id: Some("t-1"),
            reply_to: Some(Uuid::from_u128(3)),
            importance: Importance::Urgent,
            ack_required: true,
            to: vec!["a".into(), "b".into()],
            cc: vec!["c".into()],
        })
    }

    #[test]
    fn parts_round_trip_including_multibyte_text() {
        let env = sample();
        assert_eq!(env.from(), "Blüe");
        assert_eq!(env.subject(), "");
        assert_eq!(env.body(), "héllo → wörld");
        assert_eq!(env.thread_id(), "t-1");
        assert_eq!(env.to(), &["a".into(), "b".into()] as &[Box<str>]);
        assert_eq!(env.cc(), &["c".into()] as &[Box<str>]);
        assert_eq!(env.payload_len(), "Blüe".len() + "héllo → wörld".len());
    }

    #[test]
    fn a_message_without_a_thread_starts_its_own() {
        let env = Envelope::new(Uuid::from_u128(1), Uuid::nil(), 0, "a", "b", "c");
        assert_eq!(env.thread_id(), "00000000-0000-0000-0000-000000000001");
        assert_eq!(env.payload_len(), 3, "the thread id is not payload");
        assert_eq!(env.importance, Importance::Normal);
    }

    #[test]
    fn importance_names_round_trip() {
        for importance in Importance::ALL {
            assert_eq!(Importance::parse(importance.as_str()), Some(importance));
            assert_eq!(Importance::from_code(importance.code()), Some(importance));
        }
        assert_eq!(Importance::parse("URGENT"), None);
        assert_eq!(Importance::from_code(4), None);
    }

    #[test]
    fn fixed_overhead_stays_small() {
        // The memory budget of a retained message depends on this staying near 150 bytes.
        assert!(std::mem::size_of::<Envelope>() <= 128);
        let env = Envelope::new(Uuid::nil(), Uuid::nil(), 0, "a", "bc", "def");
        assert_eq!(env.weight(), 6, "text length by default");
        assert_eq!(env.with_weight(40).weight(), 40);
    }
}
