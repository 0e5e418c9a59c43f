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
    /// Hold one inbox place for each of `names` (step one of a send to several owners). All
    /// or nothing: if any name is unknown or its inbox is full, nothing is held.
    /// `bytes` is the text size of the message the places are for.
    Reserve { names: Vec<Box<str>>, bytes: usize },
    /// Give back places held by a `Reserve` whose send was abandoned.
    Release { names: Vec<Box<str>>, bytes: usize },
    /// Enqueue `envelope` for every agent in `names`, all owned by this shard. With
    /// `reserved`, each consumes a place held by an earlier `Reserve` and cannot fail;
    /// without, the names are checked here: all or nothing.
    Deliver {
        names: Vec<Box<str>>,
        envelope: SharedEnvelope,
        reserved: bool,
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
    /// The answer to `Reserve`: a place held for each of this many names, or why none was.
    Reserved(Result<usize, Undeliverable>),
    /// The answer to `Deliver`: enqueued once for each of this many distinct names, or why
    /// nothing was.
    Delivered(Result<usize, Undeliverable>),
    Released,
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
