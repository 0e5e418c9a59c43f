//! The typed messages a shard answers. One enum per direction: matching on [`Request`] is the
//! shard's whole dispatch, and every [`Request`] gets exactly one [`Reply`].
//!
//! Requests are handled synchronously by the owner and never make a cross-shard call of their
//! own, so cross-shard calls can never wait on a cycle.

use crate::envelope::SharedEnvelope;
use uuid::Uuid;

#[derive(Debug)]
pub enum Request {
    /// Register `name` or, in [`RegisterMode::Upsert`], update its program/model.
    Register(Registration),
    /// The project of an agent, if it exists.
    Lookup { name: Box<str> },
    /// Step one of a send to several owners: queue `envelope` for every recipient in
    /// `recipients` this shard owns, invisible to drains until `Commit`. All or nothing: if
    /// any of them is unknown or full, nothing is queued. Logged; answered once durable.
    /// `recipients` lists every recipient on every owner, and `owners` how many owner shards
    /// there are, so recovery can tell whether every owner prepared.
    Prepare {
        envelope: SharedEnvelope,
        recipients: Vec<Box<str>>,
        owners: u16,
    },
    /// Step two: every owner prepared `id`; make it visible.
    Commit { id: Uuid },
    /// Another owner refused `id`: drop what `Prepare` queued.
    Abort { id: Uuid },
    /// Enqueue `envelope` for every agent in `names`, all owned by this shard, visible at
    /// once (a send with one owner): all or nothing.
    Deliver {
        names: Vec<Box<str>>,
        envelope: SharedEnvelope,
    },
    /// Remove and return the queued messages of `name`, oldest first, while their weights
    /// (see [`crate::Envelope::weight`]) add up to at most `max_weight`; the rest stays queued
    /// for the next drain. With `at_least_one`, the oldest message is taken even if it alone
    /// weighs more (so an inbox can always be emptied).
    Drain {
        name: Box<str>,
        max_weight: usize,
        at_least_one: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterMode {
    /// Create the agent, or update program/model if the name already exists in the same
    /// project.
    Upsert,
    /// Create the agent only if the name is free (used for server-invented names).
    CreateOnly,
}

#[derive(Debug)]
pub struct Registration {
    pub name: Box<str>,
    pub mode: RegisterMode,
    /// Used only if the agent is new.
    pub new_id: Uuid,
    pub project_id: Uuid,
    pub project_key: Box<str>,
    /// `None` keeps the current value on an update (and means "" on creation).
    pub program: Option<Box<str>>,
    pub model: Option<Box<str>>,
    pub now_ms: i64,
}

/// A snapshot of an agent's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentProfile {
    pub id: Uuid,
    pub name: Box<str>,
    pub project_id: Uuid,
    pub project_key: Box<str>,
    pub program: Box<str>,
    pub model: Box<str>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// 1 at registration, +1 at each update: orders snapshots of one agent taken on its owner,
    /// however they travel afterwards.
    pub version: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Registered {
        profile: AgentProfile,
        created: bool,
    },
    /// The name exists already: in another project (Upsert) or at all (CreateOnly).
    NameTaken {
        project_id: Uuid,
    },
    Agent(Option<Uuid>),
    /// The answer to `Prepare`: queued (invisibly) for this many names, or why for none.
    Prepared(Result<usize, Undeliverable>),
    /// The answer to `Commit` and `Abort`.
    Settled,
    /// The answer to `Deliver`: enqueued once for each of this many distinct names, or why
    /// nothing was.
    Delivered(Result<usize, Undeliverable>),
    /// `None`: no such agent.
    Drained(Option<DrainedPage>),
}

/// The messages one drain took, and how many stayed queued.
#[derive(Debug, PartialEq, Eq)]
pub struct DrainedPage {
    pub messages: Vec<SharedEnvelope>,
    pub left: usize,
}

/// Why a message cannot go to these recipients: nothing was reserved or enqueued for any.
#[derive(Debug, PartialEq, Eq)]
pub enum Undeliverable {
    /// These names are not registered.
    UnknownRecipients(Vec<Box<str>>),
    /// These inboxes are at their cap.
    InboxFull(Vec<Box<str>>),
}
