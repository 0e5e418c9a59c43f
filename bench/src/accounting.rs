//! Delivery accounting: every message sent must be received exactly once by each recipient.

use std::collections::{HashMap, HashSet};

#[derive(Default)]
pub struct Ledger {
    /// (recipient, message id) pairs that must each be received once.
    expected: HashSet<(String, String)>,
    /// How often each pair was received.
    received: HashMap<(String, String), u32>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Audit {
    pub expected: usize,
    pub received: usize,
    pub lost: usize,
    pub duplicated: usize,
    /// Received messages that were never sent to that recipient.
    pub unexpected: usize,
}

impl Audit {
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.unexpected == 0
    }
}

impl Ledger {
    pub fn sent(&mut self, id: &str, recipients: &[&str]) {
        for recipient in recipients {
            self.expected
                .insert((recipient.to_string(), id.to_string()));
        }
    }

    pub fn received(&mut self, recipient: &str, id: &str) {
        *self
            .received
            .entry((recipient.to_string(), id.to_string()))
            .or_default() += 1;
    }

    pub fn merge(&mut self, other: Ledger) {
        self.expected.extend(other.expected);
        for (key, count) in other.received {
            *self.received.entry(key).or_default() += count;
        }
    }

    pub fn audit(&self) -> Audit {
        let mut audit = Audit {
            expected: self.expected.len(),
            ..Audit::default()
        };
        for (key, count) in &self.received {
            audit.received += *count as usize;
            if !self.expected.contains(key) {
                audit.unexpected += *count as usize;
            } else if *count > 1 {
                audit.duplicated += (*count - 1) as usize;
            }
        }
        audit.lost = self
            .expected
            .iter()
            .filter(|key| !self.received.contains_key(*key))
            .count();
        audit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_run_is_clean() {
        let mut ledger = Ledger::default();
        ledger.sent("m1", &["a", "b"]);
        ledger.received("a", "m1");
        ledger.received("b", "m1");
        let audit = ledger.audit();
        assert!(audit.is_clean(), "{audit:?}");
        assert_eq!((audit.expected, audit.received), (2, 2));
    }

    #[test]
    fn a_lost_message_is_caught() {
        let mut ledger = Ledger::default();
        ledger.sent("m1", &["a", "b"]);
        ledger.received("a", "m1");
        let audit = ledger.audit();
        assert_eq!(audit.lost, 1);
        assert!(!audit.is_clean());
    }

    #[test]
    fn a_duplicated_message_is_caught() {
        let mut ledger = Ledger::default();
        ledger.sent("m1", &["a"]);
        ledger.received("a", "m1");
        ledger.received("a", "m1");
        let audit = ledger.audit();
        assert_eq!(audit.duplicated, 1);
        assert!(!audit.is_clean());
    }

    #[test]
    fn a_message_to_the_wrong_recipient_is_caught() {
        let mut ledger = Ledger::default();
        ledger.sent("m1", &["a"]);
        ledger.received("a", "m1");
        ledger.received("b", "m1");
        assert_eq!(ledger.audit().unexpected, 1);
    }
}
