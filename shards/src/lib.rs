//! The shard runtime of allman.
//!
//! Each shard owns a slice of the agents (chosen by [`routing::owner_of`]) together with
//! their inboxes. Nothing else reads or writes that state: other shards ask the owner over
//! bounded glommio channels (see [`runtime`]) and the owner answers. This crate knows
//! nothing of HTTP or JSON; it speaks [`Request`] and [`Reply`].

pub mod cooperate;
pub mod directory;
pub mod envelope;
pub mod glob;
pub mod hash;
pub mod leases;
pub mod log;
pub mod protocol;
pub mod recovery;
pub mod routing;
pub mod runtime;
pub mod state;
pub mod waiters;

pub use cooperate::Turn;
pub use directory::{ProjectSummary, TRAFFIC_MINUTES};
pub use envelope::{Envelope, SharedEnvelope};
pub use envelope::{Importance, Message};
pub use protocol::{
    Actor, AgentPage, AgentProfile, AgentRow, AgentSummary, Counts, DeliveryView, DrainedPage,
    FetchPage, FetchQuery, KeyUse, Kind, LeaseOp, LeaseRequest, Marked, Receipt, RegisterMode,
    Registration, Reply, Request, RosterPart, ThreadItem, ThreadPage, ThreadQuery, ThreadRef,
    Undeliverable, UnknownCursor, View, ViewReply,
};
pub use routing::owner_of;
pub use runtime::{CallError, MeshPair, Shard, ShardStats, Ticket};
pub use state::{
    AgentImage, InboxLimits, PendingSend, ProjectImage, ReplayError, ShardState, StateImage,
};
pub use waiters::WaiterLimits;
