//! What the shards' property tests share.

use shards::{Actor, Envelope, Message};
use std::sync::Arc;
use uuid::Uuid;

/// Message `id`: one byte of text ("x", who need not be registered), so it weighs 1 and a
/// partial drain counts messages, in its own thread, to `to`.
pub fn message_to(id: Uuid, to: Vec<Box<str>>) -> Arc<Envelope> {
    Arc::new(Envelope::compose(Message {
        to,
        ..Message::plain(id, "x")
    }))
}

/// `name` acting at time 0, without a token.
pub fn actor(name: &str) -> Actor {
    Actor {
        name: name.into(),
        token: None,
        now_ms: 0,
    }
}

/// splitmix64: a tiny deterministic generator, so a failure names a reproducible seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
