//! One message as it sits in inboxes.
//!
//! A message sent to k recipients is stored once and shared by k inboxes through an `Arc`
//! (inboxes live on different shard threads). `from`, `subject` and `body` share one heap
//! allocation so a queued message costs its payload plus a fixed ~90 bytes.

use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, PartialEq, Eq)]
pub struct Envelope {
    pub id: Uuid,
    pub project_id: Uuid,
    /// Milliseconds since the Unix epoch (UTC) when the server accepted the message.
    pub timestamp_ms: i64,
    from_len: usize,
    subject_len: usize,
    /// What this message costs in a drained page, in the unit the layer that encodes pages
    /// uses (bytes of response). Defaults to its text length.
    weight: usize,
    /// `from`, then `subject`, then `body`, back to back.
    text: Box<str>,
}

pub type SharedEnvelope = Arc<Envelope>;

impl Envelope {
    pub fn new(
        id: Uuid,
        project_id: Uuid,
        timestamp_ms: i64,
        from: &str,
        subject: &str,
        body: &str,
    ) -> Self {
        let mut text = String::with_capacity(from.len() + subject.len() + body.len());
        text.push_str(from);
        text.push_str(subject);
        text.push_str(body);
        Envelope {
            id,
            project_id,
            timestamp_ms,
            from_len: from.len(),
            subject_len: subject.len(),
            weight: text.len(),
            text: text.into_boxed_str(),
        }
    }

    /// Rebuilds an envelope from its stored parts (see [`Envelope::text`]); `None` if the
    /// lengths do not split `text` on character boundaries.
    pub fn from_parts(
        id: Uuid,
        project_id: Uuid,
        timestamp_ms: i64,
        text: &str,
        from_len: usize,
        subject_len: usize,
    ) -> Option<Self> {
        let subject_end = from_len.checked_add(subject_len)?;
        if subject_end > text.len()
            || !text.is_char_boundary(from_len)
            || !text.is_char_boundary(subject_end)
        {
            return None;
        }
        Some(Envelope {
            id,
            project_id,
            timestamp_ms,
            from_len,
            subject_len,
            weight: text.len(),
            text: text.into(),
        })
    }

    /// `from`, `subject` and `body` back to back; split by [`Envelope::split_lengths`].
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The byte lengths of `from` and `subject` within [`Envelope::text`].
    pub fn split_lengths(&self) -> (usize, usize) {
        (self.from_len, self.subject_len)
    }

    /// Sets what the message costs in a drained page (see [`Envelope::weight`]).
    pub fn with_weight(mut self, weight: usize) -> Self {
        self.weight = weight;
        self
    }

    pub fn weight(&self) -> usize {
        self.weight
    }

    pub fn from(&self) -> &str {
        &self.text[..self.from_len]
    }

    pub fn subject(&self) -> &str {
        &self.text[self.from_len..self.from_len + self.subject_len]
    }

    pub fn body(&self) -> &str {
        &self.text[self.from_len + self.subject_len..]
    }

    /// Bytes of text this message carries (from + subject + body).
    pub fn payload_len(&self) -> usize {
        self.text.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_including_multibyte_text() {
        let env = Envelope::new(Uuid::nil(), Uuid::nil(), 7, "Blüe", "", "héllo → wörld");
        assert_eq!(env.from(), "Blüe");
        assert_eq!(env.subject(), "");
        assert_eq!(env.body(), "héllo → wörld");
        assert_eq!(env.timestamp_ms, 7);
        assert_eq!(env.payload_len(), "Blüe".len() + "héllo → wörld".len());
    }

    #[test]
    fn fixed_overhead_stays_small() {
        // The "queued message <= 2x payload" budget depends on this staying near 90 bytes.
        assert!(std::mem::size_of::<Envelope>() <= 96);
        let env = Envelope::new(Uuid::nil(), Uuid::nil(), 0, "a", "bc", "def");
        assert_eq!(env.weight(), 6, "text length by default");
        assert_eq!(env.with_weight(40).weight(), 40);
    }
}
