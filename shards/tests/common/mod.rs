//! What the shards' property tests share. Each test crate uses part of it.
#![allow(dead_code)]

use shards::{
    owner_of, Actor, Envelope, InboxLimits, Message, RegisterMode, Registration, Reply, Request,
    ShardState,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use uuid::Uuid;

/// The agents of the crash and power-cut histories.
pub const NAMES: [&str; 6] = ["ann", "bob", "cyd", "dee", "eve", "fay"];
/// Four messages an inbox, so sends are refused now and then and drains take part of one.
pub const LIMITS: InboxLimits = InboxLimits {
    retained_messages: 10_000,
    retained_bytes: usize::MAX,
    messages: 4,
    bytes: usize::MAX,
};

/// Registers `name` (or updates it) in project `project_id`, key "k", at `now_ms`.
pub fn upsert(name: &str, new_id: Uuid, project_id: Uuid, now_ms: i64) -> Registration {
    Registration {
        name: name.into(),
        mode: RegisterMode::Upsert,
        new_id,
        project_id,
        project_key: "k".into(),
        program: None,
        model: None,
        task_description: None,
        now_ms,
        new_token_hash: None,
        token: None,
    }
}

/// The shards a send from "x" to `recipients` involves, in order: the server makes the
/// sender's owner take part too (it keeps the sent copy).
pub fn send_owners(recipients: &BTreeSet<&str>, count: usize) -> Vec<usize> {
    let mut owners: Vec<usize> = recipients
        .iter()
        .chain(std::iter::once(&"x"))
        .map(|n| owner_of(n, count))
        .collect();
    owners.sort();
    owners.dedup();
    owners
}

/// Message `id`: one byte of text ("x", who need not be registered), so it weighs 1 and a
/// partial drain counts messages, in its own thread, to `to`.
pub fn message_to(id: Uuid, to: Vec<Box<str>>) -> Arc<Envelope> {
    Arc::new(Envelope::compose(Message {
        to,
        ..Message::plain(id, "x")
    }))
}

/// Prepares `envelope` on each of `owners` through `call` (one request to one owner: its reply,
/// and that owner's log end after it). All or nothing: if one refuses, the send is aborted where
/// it was granted and `None` comes back; otherwise each owner's log end after its prepare.
pub fn prepare_on_all(
    envelope: &Arc<Envelope>,
    owners: &[usize],
    mut call: impl FnMut(usize, Request) -> (Reply, u64),
) -> Option<Vec<(usize, u64)>> {
    let mut needs = Vec::with_capacity(owners.len());
    for &owner in owners {
        let (reply, end) = call(
            owner,
            Request::Prepare {
                envelope: Arc::clone(envelope),
                owners: owners.len() as u16,
            },
        );
        if matches!(reply, Reply::Prepared(Ok(_))) {
            needs.push((owner, end));
        }
    }
    if needs.len() < owners.len() {
        for &(owner, _) in &needs {
            call(owner, Request::Abort { id: envelope.id });
        }
        return None;
    }
    Some(needs)
}

/// Drains every inbox of [`NAMES`] on the states that own them (a cluster of `states.len()`
/// shards): which recipients each message was still queued for.
pub fn drain_every_inbox(states: &mut [ShardState]) -> HashMap<Uuid, BTreeSet<String>> {
    let count = states.len();
    let mut queued: HashMap<Uuid, BTreeSet<String>> = HashMap::new();
    for state in states.iter_mut() {
        for name in NAMES {
            if owner_of(name, count) != state.shard_id() {
                continue;
            }
            if let Reply::Drained(page) = state.handle(Request::Drain {
                actor: actor(name),
                max_weight: usize::MAX,
                at_least_one: true,
            }) {
                for message in page.messages {
                    queued
                        .entry(message.envelope.id)
                        .or_default()
                        .insert(name.into());
                }
            }
        }
    }
    queued
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
