//! The typed messages a shard answers. One enum per direction: matching on [`Request`] is the
//! shard's whole dispatch, and every [`Request`] gets exactly one [`Reply`].
//!
//! Requests are handled synchronously by the owner and never make a cross-shard call of their
//! own, so cross-shard calls can never wait on a cycle. (A long poll is the one request the
//! runtime answers later; see [`crate::runtime`].)

use crate::directory::{ProjectSummary, TRAFFIC_MINUTES};
use crate::envelope::SharedEnvelope;
use crate::leases::{Lease, LeaseError, PathConflicts};
use uuid::Uuid;

#[derive(Debug)]
pub enum Request {
    /// Register `name` or, in [`RegisterMode::Upsert`], update its program/model/task.
    Register(Registration),
    /// The project of an agent, if it exists (and, with agent tokens on, `token` is its).
    Lookup { name: Box<str>, token: Option<Uuid> },
    /// Step one of a send to several owners: hold `envelope` for every party this shard owns
    /// (recipients in `to` and `cc`, and the sender), invisible until `Commit`. All or nothing:
    /// if any recipient here is unknown or full, nothing is held. Logged; answered once
    /// durable. `owners` says how many owner shards there are, so recovery can tell whether
    /// every owner prepared.
    Prepare {
        envelope: SharedEnvelope,
        owners: u16,
    },
    /// Step two: every owner prepared `id`; make it visible.
    Commit { id: Uuid },
    /// Another owner refused `id`: drop what `Prepare` held.
    Abort { id: Uuid },
    /// Deliver `envelope` to every party, all owned by this shard, visible at once (a send
    /// with one owner): all or nothing.
    Deliver { envelope: SharedEnvelope },
    /// Mark the oldest undrained deliveries of the actor drained (and read) and return them,
    /// while their weights (see [`crate::Envelope::weight`]) add up to at most `max_weight`;
    /// the rest stays for the next drain. With `at_least_one`, the oldest is taken even if it
    /// alone weighs more (so an inbox can always be emptied).
    Drain {
        actor: Actor,
        max_weight: usize,
        at_least_one: bool,
    },
    /// Read the actor's delivery log past a cursor, changing nothing but `last_active`.
    Fetch { actor: Actor, query: FetchQuery },
    /// Set `read_at` (and with `ack`, `acked_at`) on the actor's deliveries of `ids`.
    Mark {
        actor: Actor,
        ids: Vec<Uuid>,
        ack: bool,
    },
    /// The messages of a thread the actor sent or received.
    Thread { actor: Actor, query: ThreadQuery },
    /// A message the actor sent or received, for a reply.
    Find { actor: Actor, id: Uuid },
    /// A long poll (see `wait_for_mail`): answered by the runtime with a `Fetched` reply as
    /// soon as a delivery past the cursor is durable, or at the timeout. `wait_id` (unique
    /// per calling shard) names it for `CancelWait`. The state alone answers it as a `Fetch`.
    Wait {
        actor: Actor,
        query: FetchQuery,
        timeout_ms: u64,
        wait_id: u64,
    },
    /// The caller of wait `wait_id` went away: answer it now. Answered `Settled`.
    CancelWait { wait_id: u64 },
    /// The actor's project, checking its token and recording its activity (for tools that
    /// act as an agent on state another shard owns, such as file reservations).
    Whois { actor: Actor },
    /// When `name` last acted, if it exists.
    LastActive { name: Box<str> },
    /// File reservations of one project, on the project's owner (see `leases`).
    Leases(LeaseRequest),
    /// Agents of a project on this shard, most recently active first.
    ListAgents {
        project_id: Uuid,
        active_since_ms: Option<i64>,
        limit: usize,
    },
    /// A read for the web view: changes nothing (no drain, no read mark, no `last_active`).
    View(View),
}

/// What the read-only web view asks a shard. Each does bounded work: `limit` items of an
/// ordered range, or a search of one agent's history by time (see `ShardState::find_sent`).
#[derive(Debug, Clone)]
pub enum View {
    /// This shard's part of every project, in key order, after `after`.
    Projects {
        after: Option<Box<str>>,
        limit: usize,
        now_ms: i64,
    },
    /// This shard's part of one project: its agents here in name order after `after`, its
    /// counts and the newest messages its agents here sent.
    Roster {
        project_id: Uuid,
        after: Option<Box<str>>,
        limit: usize,
        now_ms: i64,
    },
    /// One agent: its deliveries newest first, before `before` (a `seq`), and its threads.
    Agent {
        name: Box<str>,
        before: Option<u64>,
        limit: usize,
    },
    /// Message `id`, from the sent copies of `from`, or else of the agents here of
    /// `project_id` (neither: not searched).
    Message {
        id: Uuid,
        from: Option<Box<str>>,
        project_id: Option<Uuid>,
    },
    /// How each of `names` (owned here) holds message `id` sent at `timestamp_ms`; `None`
    /// for a name not registered, a delivery left retention, or past the step budget.
    Receipts {
        id: Uuid,
        timestamp_ms: i64,
        names: Vec<Box<str>>,
    },
}

/// An agent as the web view lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    pub profile: AgentProfile,
    pub last_active_ms: i64,
    /// Undrained deliveries.
    pub queued: usize,
    pub counts: Counts,
    /// Sent messages kept.
    pub sent: usize,
}

/// One shard's part of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterPart {
    /// `None`: no agent of the project lives here.
    pub key: Option<Box<str>>,
    pub agent_count: usize,
    pub queued: usize,
    pub traffic: [u32; TRAFFIC_MINUTES],
    pub agents: Vec<AgentRow>,
    pub has_more: bool,
    /// The newest messages its agents here sent, newest first.
    pub recent: Vec<SharedEnvelope>,
}

/// A thread an agent takes part in, from the newest part of its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadRef {
    pub thread_id: Box<str>,
    pub latest: SharedEnvelope,
    /// Messages of it seen in the part of the history read.
    pub messages: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPage {
    pub row: AgentRow,
    /// Newest first.
    pub deliveries: Vec<DeliveryView>,
    /// The cursor for the next (older) page, if there is one.
    pub older: Option<u64>,
    /// The `seq` of the newest delivery (0: none yet).
    pub newest_seq: u64,
    /// Threads by latest message, newest first.
    pub threads: Vec<ThreadRef>,
}

/// How a recipient holds a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
    pub kind: Kind,
    pub read_at: Option<i64>,
    pub acked_at: Option<i64>,
    pub drained: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ViewReply {
    Projects {
        projects: Vec<ProjectSummary>,
        has_more: bool,
    },
    Roster(Box<RosterPart>),
    Agent(Option<Box<AgentPage>>),
    Message {
        found: Option<SharedEnvelope>,
        /// Not found, and the step budget ran out before every history was read.
        unfinished: bool,
    },
    /// Per name asked, in order; `None`: not registered, or the delivery left retention.
    Receipts(Vec<(Box<str>, Option<Receipt>)>),
}

/// A file-reservation request; `agent` has been checked by its own owner already.
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    pub project_id: Uuid,
    pub agent: Box<str>,
    pub now_ms: i64,
    pub op: LeaseOp,
}

#[derive(Debug, Clone)]
pub enum LeaseOp {
    /// Normalised paths (deduplicated).
    Reserve {
        paths: Vec<Box<str>>,
        ttl_ms: i64,
        exclusive: bool,
        reason: Box<str>,
        /// With a key, a repeat of this request by the same agent gets the first answer.
        idempotency: Option<crate::envelope::Idempotency>,
    },
    Release {
        paths: Option<Vec<Box<str>>>,
        ids: Option<Vec<u64>>,
    },
    Renew {
        paths: Option<Vec<Box<str>>>,
        ids: Option<Vec<u64>>,
        extend_ms: i64,
    },
    Check {
        paths: Vec<Box<str>>,
    },
    List {
        /// Only this agent's (else everyone's; `agent` is then unused).
        only_agent: bool,
        include_inactive: bool,
        limit: usize,
    },
    /// The active lease `id`, for a force release.
    Holder {
        id: u64,
    },
    /// Release lease `id` if `holder` still holds it.
    ForceRelease {
        id: u64,
        holder: Box<str>,
        /// As the caller saw it: a lease renewed since is not released.
        expires_ms: i64,
    },
}

/// The agent a request acts as, the token hash it presented (with agent tokens on), and the
/// time of the call (its `last_active`).
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: Box<str>,
    pub token: Option<Uuid>,
    pub now_ms: i64,
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
    pub task_description: Option<Box<str>>,
    pub now_ms: i64,
    /// With agent tokens on: the hash of a fresh token, set if the agent has none yet.
    pub new_token_hash: Option<Uuid>,
    /// With agent tokens on: the hash of the token presented to update an existing agent.
    pub token: Option<Uuid>,
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
    pub task_description: Box<str>,
    /// With agent tokens on: a hash of the agent's token (the token itself is never kept).
    pub token_hash: Option<Uuid>,
}

/// What a `fetch_inbox` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchQuery {
    /// Deliveries with a greater `seq`; 0 is before the first.
    pub after: u64,
    /// 0: only the counts and the newest cursor.
    pub limit: usize,
    pub unread_only: bool,
    pub urgent_only: bool,
    pub thread_id: Option<Box<str>>,
    pub max_weight: usize,
    pub at_least_one: bool,
}

/// What a `get_thread` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadQuery {
    pub thread_id: Box<str>,
    /// Messages that sort after this one (by time, then id).
    pub after: Option<Uuid>,
    pub limit: usize,
    pub max_weight: usize,
    pub at_least_one: bool,
}

/// Whether a recipient was in `to` or `cc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    To,
    Cc,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::To => "to",
            Kind::Cc => "cc",
        }
    }
}

/// One delivery as a recipient sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryView {
    pub seq: u64,
    pub envelope: SharedEnvelope,
    pub kind: Kind,
    pub read_at: Option<i64>,
    pub acked_at: Option<i64>,
    pub drained: bool,
}

/// The counters a `fetch_inbox` reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub unread: usize,
    pub urgent_unread: usize,
    pub ack_pending: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub struct FetchPage {
    pub messages: Vec<DeliveryView>,
    pub next_after: u64,
    pub has_more: bool,
    /// Deliveries past the cursor that retention evicted before this read.
    pub skipped: u64,
    pub counts: Counts,
}

/// A cursor past the newest delivery: this server never issued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownCursor {
    pub newest: u64,
}

/// One message of a thread: a delivery to the actor, or a message it sent (or both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadItem {
    pub envelope: SharedEnvelope,
    pub delivery: Option<DeliveryView>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ThreadPage {
    pub messages: Vec<ThreadItem>,
    /// Everyone who sent or received a message of the thread that the actor saw.
    pub participants: Vec<Box<str>>,
    pub has_more: bool,
}

/// What marking read or acknowledged did.
#[derive(Debug, PartialEq, Eq)]
pub struct Marked {
    /// Every id found, with its times after the call (the first time is kept).
    pub found: Vec<(Uuid, Option<i64>, Option<i64>)>,
    /// How many of `found` changed.
    pub changed: usize,
    pub not_found: Vec<Uuid>,
}

/// An agent as `list_agents` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSummary {
    pub profile: AgentProfile,
    pub last_active_ms: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Registered {
        profile: AgentProfile,
        created: bool,
        /// The registration's `new_token_hash` was set on the agent.
        token_issued: bool,
    },
    /// The name exists already: in another project (Upsert) or at all (CreateOnly).
    NameTaken {
        project_id: Uuid,
    },
    /// The agent acted as does not exist here, or (with agent tokens on) the token presented
    /// is not its: the two are not told apart.
    NoAgent,
    Agent(Option<Uuid>),
    /// The answer to `Prepare`: held for this many recipients, or why for none.
    Prepared(Result<usize, Undeliverable>),
    /// The answer to `Commit` and `Abort`.
    Settled,
    /// The answer to `Deliver`: delivered once to each of this many distinct recipients, or
    /// why to none.
    Delivered(Result<usize, Undeliverable>),
    Drained(DrainedPage),
    Fetched(Result<FetchPage, UnknownCursor>),
    Marked(Marked),
    Thread(Option<ThreadPage>),
    /// `None`: the actor neither sent nor received that message (or it left retention).
    Found(Option<(SharedEnvelope, bool)>),
    Agents(Vec<AgentSummary>),
    /// A long poll refused: this many wait already (per agent, or on the whole shard).
    TooManyWaiters {
        per_agent: bool,
        max: usize,
    },
    LastActive(Option<i64>),
    /// Granted (or extended) leases and the paths that conflict.
    Reserved(Result<(Vec<Lease>, Vec<PathConflicts>), LeaseError>),
    /// The leases a release, renew, list, holder lookup or force release concerns.
    Leases(Result<Vec<Lease>, LeaseError>),
    Checked(Vec<PathConflicts>),
    View(ViewReply),
}

/// The deliveries one drain took, and how many stayed undrained.
#[derive(Debug, PartialEq, Eq)]
pub struct DrainedPage {
    pub messages: Vec<DeliveryView>,
    pub left: usize,
}

/// Why a message cannot go to these recipients: nothing was reserved or enqueued for any.
#[derive(Debug, PartialEq, Eq)]
pub enum Undeliverable {
    /// These names are not registered.
    UnknownRecipients(Vec<Box<str>>),
    /// These inboxes are at their cap.
    InboxFull(Vec<Box<str>>),
    /// The sender used the message's idempotency key before (told by the sender's owner).
    KeyUsed(KeyUse),
}

/// What a sender's idempotency key was used for already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyUse {
    /// The same request, delivered: this is its message, the first answer.
    Sent(SharedEnvelope),
    /// The same request, still being delivered.
    InFlight,
    /// Another request (its message differs).
    OtherRequest,
}
