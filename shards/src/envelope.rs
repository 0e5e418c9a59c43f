//! One message as it sits in delivery logs.
//!
//! A message sent to k recipients is stored once and shared by k delivery logs (and the
//! sender's sent list) through an `Arc` (they live on different shard threads). Its text and
//! its recipients' names share one heap allocation.

use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

/// A message in its own thread is named by its id: a hyphenated UUID this long.
pub const OWN_THREAD_ID_BYTES: usize = 36;

/// The length of the thread id a message composed with `thread_id` carries (an absent or empty
/// one is the message's own id); what [`Envelope::thread_len`] reports once it is composed.
pub fn thread_id_len(thread_id: Option<&str>) -> usize {
    thread_id
        .filter(|t| !t.is_empty())
        .map_or(OWN_THREAD_ID_BYTES, str::len)
}

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

/// A sender's idempotency key on a message, and a hash of the request it came with: a repeat
/// of the request with the key gets the first answer; another request with it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: Box<str>,
    /// [`Message::request_hash`] of the first request.
    pub request_hash: u64,
}

/// The longest idempotency key (bytes): room for a UUID or a client's own request id.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;

impl Message<'_> {
    /// A hash of everything the sender asked for (not the id or time the server gives the
    /// message), stable across processes and builds: two requests with one idempotency key
    /// are the same request when their hashes are equal.
    pub fn request_hash(&self) -> u64 {
        let flags = [self.importance.code(), u8::from(self.ack_required)];
        let reply_to = self.reply_to.map(|id| *id.as_bytes()).unwrap_or_default();
        let fixed: [&[u8]; 7] = [
            self.project_id.as_bytes(),
            self.from.as_bytes(),
            self.subject.as_bytes(),
            self.body.as_bytes(),
            self.thread_id.unwrap_or("").as_bytes(),
            &reply_to,
            &flags,
        ];
        let names = (self.to.iter().map(|n| n.as_bytes()))
            .chain([&b"cc"[..]])
            .chain(self.cc.iter().map(|n| n.as_bytes()));
        crate::hash::stable_hash_of_parts(fixed.into_iter().chain(names))
    }
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
    /// 0: the message started its own thread (its id), which is then not stored as text.
    thread_len: u32,
    /// How many of the names are `to` (the rest are `cc`), and how many there are.
    to_count: u32,
    name_count: u32,
    /// What this message costs in a page of results, in the unit the layer that encodes pages
    /// uses (bytes of response). Defaults to its text length. 32 bits, like the lengths: a
    /// message is bounded by the HTTP body limit.
    weight: u32,
    /// `from`, `subject`, `body`, the thread id, then each recipient as one character holding
    /// its length (names are at most 64 bytes, so it is ASCII) and the name: one allocation
    /// for everything, so a message costs its text plus a fixed ~130 bytes.
    text: Box<str>,
    /// Set only when the sender gave a key: one pointer otherwise.
    idempotency: Option<Box<Idempotency>>,
}

pub type SharedEnvelope = Arc<Envelope>;

/// A text field longer than 4 GiB cannot reach an envelope: the HTTP body limit is far below.
fn len32(text: &str) -> u32 {
    u32::try_from(text.len()).unwrap_or(u32::MAX)
}

/// The longest name an envelope stores: its length must fit in one ASCII character.
pub const MAX_NAME_BYTES: usize = 127;

/// Recipient names, in order, read from an envelope's packed text.
#[derive(Debug, Clone)]
pub struct Names<'a> {
    rest: &'a str,
    left: usize,
}

impl<'a> Iterator for Names<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.left == 0 {
            return None;
        }
        let len = usize::from(*self.rest.as_bytes().first()?);
        let name = self.rest.get(1..1 + len)?;
        self.rest = &self.rest[1 + len..];
        self.left -= 1;
        Some(name)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Names<'_> {}

impl<'a> Message<'a> {
    /// A message from `from` with no text and no recipients, in its own thread, at time 0 in
    /// the nil project: the base a caller fills in (`Message { to, ..Message::plain(id, from) }`).
    pub fn plain(id: Uuid, from: &'a str) -> Self {
        Message {
            id,
            project_id: Uuid::nil(),
            timestamp_ms: 0,
            from,
            subject: "",
            body: "",
            thread_id: None,
            reply_to: None,
            importance: Importance::Normal,
            ack_required: false,
            to: Vec::new(),
            cc: Vec::new(),
        }
    }
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
            project_id,
            timestamp_ms,
            subject,
            body,
            ..Message::plain(id, from)
        })
    }

    /// Builds an envelope. A thread id equal to the message's own id is stored as "its own".
    /// Names longer than [`MAX_NAME_BYTES`] are cut (the tools allow 64).
    pub fn compose(message: Message<'_>) -> Self {
        let mut own = Uuid::encode_buffer();
        let own = message.id.hyphenated().encode_lower(&mut own);
        let thread = message
            .thread_id
            .filter(|t| *t != own && !t.is_empty())
            .unwrap_or("");
        let names_len: usize = message
            .to
            .iter()
            .chain(&message.cc)
            .map(|n| 1 + n.len().min(MAX_NAME_BYTES))
            .sum();
        let fields = [message.from, message.subject, message.body, thread];
        let mut text =
            String::with_capacity(fields.iter().map(|f| f.len()).sum::<usize>() + names_len);
        for field in fields {
            text.push_str(field);
        }
        for name in message.to.iter().chain(&message.cc) {
            let name = prefix_at_char(name, MAX_NAME_BYTES);
            // A length of at most 127 is one ASCII character.
            text.push(char::from(name.len() as u8));
            text.push_str(name);
        }
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
            thread_len: len32(thread),
            to_count: len32_count(message.to.len()),
            name_count: len32_count(message.to.len() + message.cc.len()),
            weight: u32::try_from(payload).unwrap_or(u32::MAX),
            text: text.into_boxed_str(),
            idempotency: None,
        }
    }

    /// Gives the message the sender's idempotency key (see [`Idempotency`]).
    pub fn with_idempotency(mut self, idempotency: Option<Idempotency>) -> Self {
        self.idempotency = idempotency.map(Box::new);
        self
    }

    pub fn idempotency(&self) -> Option<&Idempotency> {
        self.idempotency.as_deref()
    }

    /// Marks a message read from the first log format (see `sender_took_part`).
    pub fn from_first_format(mut self) -> Self {
        self.sender_took_part = false;
        self
    }

    /// Sets what the message costs in a page of results (see [`Envelope::weight`]).
    pub fn with_weight(mut self, weight: usize) -> Self {
        self.weight = u32::try_from(weight).unwrap_or(u32::MAX);
        self
    }

    pub fn weight(&self) -> usize {
        self.weight as usize
    }

    fn field(&self, index: usize) -> &str {
        let lens = [
            self.from_len,
            self.subject_len,
            self.body_len,
            self.thread_len,
        ];
        let start: usize = lens[..index].iter().map(|l| *l as usize).sum();
        &self.text[start..start + lens[index] as usize]
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

    /// Whether the message started its own thread (its thread id is its id).
    pub fn own_thread(&self) -> bool {
        self.thread_len == 0
    }

    /// The thread id a sender named, `None` for a message in its own thread.
    pub fn named_thread(&self) -> Option<&str> {
        (!self.own_thread()).then(|| self.field(3))
    }

    /// The thread id (allocates for a message in its own thread: prefer [`Envelope::in_thread`]
    /// and [`Envelope::named_thread`] on hot paths).
    pub fn thread_id(&self) -> std::borrow::Cow<'_, str> {
        match self.named_thread() {
            Some(thread) => std::borrow::Cow::Borrowed(thread),
            None => std::borrow::Cow::Owned(self.id.hyphenated().to_string()),
        }
    }

    /// Whether the message belongs to thread `thread`, without allocating.
    pub fn in_thread(&self, thread: &str) -> bool {
        match self.named_thread() {
            Some(named) => named == thread,
            None => {
                let mut buffer = Uuid::encode_buffer();
                self.id.hyphenated().encode_lower(&mut buffer) == thread
            }
        }
    }

    /// Bytes of the thread id's text (36 for a message in its own thread).
    pub fn thread_len(&self) -> usize {
        if self.own_thread() {
            OWN_THREAD_ID_BYTES
        } else {
            self.thread_len as usize
        }
    }

    fn names(&self) -> Names<'_> {
        let start = (self.from_len + self.subject_len + self.body_len + self.thread_len) as usize;
        Names {
            rest: &self.text[start..],
            left: self.name_count as usize,
        }
    }

    pub fn to(&self) -> Names<'_> {
        let mut names = self.names();
        names.left = self.to_count as usize;
        names
    }

    pub fn cc(&self) -> Names<'_> {
        let mut names = self.names();
        for _ in 0..self.to_count {
            names.next();
        }
        names
    }

    /// `to`, then `cc` (a name is in at most one of them).
    pub fn recipients(&self) -> Names<'_> {
        self.names()
    }

    /// Bytes of text this message carries (from + subject + body): what inbox caps count.
    pub fn payload_len(&self) -> usize {
        (self.from_len + self.subject_len + self.body_len) as usize
    }
}

fn len32_count(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// At most `max` bytes of `text`, cut at a character boundary.
pub fn prefix_at_char(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
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
    fn a_thread_ids_length_is_known_before_the_message_is_composed() {
        for thread_id in [None, Some(""), Some("t-1"), Some("a longer thread → id")] {
            let composed = Envelope::compose(Message {
                thread_id,
                ..Message::plain(Uuid::from_u128(9), "a")
            });
            assert_eq!(
                thread_id_len(thread_id),
                composed.thread_len(),
                "{thread_id:?}"
            );
            assert_eq!(
                composed.thread_len(),
                composed.thread_id().len(),
                "{thread_id:?}"
            );
        }
    }

    #[test]
    fn parts_round_trip_including_multibyte_text() {
        let env = sample();
        assert_eq!(env.from(), "Blüe");
        assert_eq!(env.subject(), "");
        assert_eq!(env.body(), "héllo → wörld");
        assert_eq!(env.thread_id(), "t-1");
        assert!(env.in_thread("t-1") && !env.in_thread("t-2"));
        assert_eq!(env.to().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(env.cc().collect::<Vec<_>>(), vec!["c"]);
        assert_eq!(env.recipients().len(), 3);
        assert_eq!(env.payload_len(), "Blüe".len() + "héllo → wörld".len());
    }

    #[test]
    fn a_message_without_a_thread_starts_its_own() {
        let env = Envelope::new(Uuid::from_u128(1), Uuid::nil(), 0, "a", "b", "c");
        assert_eq!(env.thread_id(), "00000000-0000-0000-0000-000000000001");
        assert!(env.own_thread() && env.in_thread("00000000-0000-0000-0000-000000000001"));
        assert_eq!(env.named_thread(), None);
        assert_eq!(env.payload_len(), 3, "the thread id is not payload");
        let named_own = Envelope::compose(Message {
            thread_id: Some("00000000-0000-0000-0000-000000000001"),
            ..message_of(&env)
        });
        assert!(
            named_own.own_thread(),
            "naming its own id is its own thread"
        );
        assert_eq!(env.importance, Importance::Normal);
    }

    fn message_of(env: &Envelope) -> Message<'_> {
        Message {
            project_id: env.project_id,
            timestamp_ms: env.timestamp_ms,
            subject: env.subject(),
            body: env.body(),
            ..Message::plain(env.id, env.from())
        }
    }

    #[test]
    fn names_with_any_text_round_trip_in_one_allocation() {
        let long = "n".repeat(200);
        let env = Envelope::compose(Message {
            to: vec!["é→".into(), "".into()],
            cc: vec![long.as_str().into()],
            ..message_of(&Envelope::new(Uuid::nil(), Uuid::nil(), 0, "f", "", ""))
        });
        assert_eq!(env.to().collect::<Vec<_>>(), vec!["é→", ""]);
        assert_eq!(
            env.cc().map(str::len).collect::<Vec<_>>(),
            vec![MAX_NAME_BYTES]
        );
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
        // The "queued message <= 2x payload" budget depends on this staying near 130 bytes.
        assert!(std::mem::size_of::<Envelope>() <= 112);
        let env = Envelope::new(Uuid::nil(), Uuid::nil(), 0, "a", "bc", "def");
        assert_eq!(env.weight(), 6, "text length by default");
        assert_eq!(env.with_weight(40).weight(), 40);
    }
}
