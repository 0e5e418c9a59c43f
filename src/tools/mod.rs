//! The MCP tools: arguments in, shard requests out, result shape back. One file per tool; this
//! file holds what they share (the call enum, errors, outputs and the per-shard toolbox).

mod args;
mod create_agent;
mod fetch_inbox;
mod file_reservations;
mod get_inbox;
mod get_thread;
pub mod inbox;
mod list_agents;
mod mail;
mod marks;
mod reply_message;
mod search_messages;
mod send_message;
mod wait_for_mail;

use crate::audit::ProfileEvent;
use crate::feed::{Feed, HelperStopped};
use crate::ids::IdGenerator;
use crate::metrics::{Metrics, ShardMetrics};
use crate::search::{SearchDoc, SearchHandle};
use serde_json::value::RawValue;
use shards::{
    Actor, AgentProfile, AgentSummary, CallError, DeliveryView, FetchPage, Marked, Reply, Shard,
    ThreadPage,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::OnceLock;
use uuid::Uuid;

/// Longest agent name. Names appear in git paths and search queries, so they are short tokens.
pub const MAX_AGENT_NAME_BYTES: usize = 64;
/// Recipients per message: bounds the fan-out (and the work) one request can cause.
pub const MAX_RECIPIENTS: usize = 1024;
/// Longest project key (typically a path or a repository URL).
pub const MAX_PROJECT_KEY_BYTES: usize = 4096;
/// Longest `program` / `model` label.
pub const MAX_LABEL_BYTES: usize = 256;
/// Names tried before `create_agent` without `name_hint` gives up.
const MAX_NAME_ATTEMPTS: u32 = 16;
/// Entries in each shard's name -> project cache before it is cleared (about 6 MiB).
const MAX_KNOWN_AGENTS: usize = 65_536;

/// Agent names: 1-64 ASCII letters, digits, `_` or `-`.
pub fn valid_agent_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_AGENT_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One `tools/call`, with its arguments parsed and checked.
#[derive(Debug)]
pub enum ToolCall<'a> {
    CreateAgent(create_agent::Args<'a>),
    SendMessage(send_message::Args<'a>),
    GetInbox(get_inbox::Args<'a>),
    SearchMessages(search_messages::Args<'a>),
    FetchInbox(fetch_inbox::Args<'a>),
    WaitForMail(wait_for_mail::Args<'a>),
    ReplyMessage(reply_message::Args<'a>),
    Mark(marks::Args<'a>),
    GetThread(get_thread::Args<'a>),
    ListAgents(list_agents::Args),
    Reservations(file_reservations::Args<'a>),
}

#[derive(Debug)]
pub enum ParseFailure {
    UnknownTool,
    Arguments(ToolError),
}

/// Parses a tool call by name. `arguments` absent means `{}`.
pub fn parse<'a>(
    name: &str,
    arguments: Option<&'a RawValue>,
) -> Result<ToolCall<'a>, ParseFailure> {
    let parsed = match name {
        "create_agent" => create_agent::parse(arguments).map(ToolCall::CreateAgent),
        "send_message" => send_message::parse(arguments).map(ToolCall::SendMessage),
        "get_inbox" => get_inbox::parse(arguments).map(ToolCall::GetInbox),
        "search_messages" => search_messages::parse(arguments).map(ToolCall::SearchMessages),
        "fetch_inbox" => fetch_inbox::parse(arguments).map(ToolCall::FetchInbox),
        "wait_for_mail" => wait_for_mail::parse(arguments).map(ToolCall::WaitForMail),
        "reply_message" => reply_message::parse(arguments).map(ToolCall::ReplyMessage),
        "acknowledge_message" => marks::parse(arguments, true).map(ToolCall::Mark),
        "mark_message_read" => marks::parse(arguments, false).map(ToolCall::Mark),
        "get_thread" => get_thread::parse(arguments).map(ToolCall::GetThread),
        "list_agents" => list_agents::parse(arguments).map(ToolCall::ListAgents),
        "file_reservation_paths" => {
            file_reservations::parse_reserve(arguments).map(ToolCall::Reservations)
        }
        "release_file_reservations" => {
            file_reservations::parse_release(arguments).map(ToolCall::Reservations)
        }
        "renew_file_reservations" => {
            file_reservations::parse_renew(arguments).map(ToolCall::Reservations)
        }
        "check_file_reservation_conflicts" => {
            file_reservations::parse_check(arguments).map(ToolCall::Reservations)
        }
        "list_file_reservations" => {
            file_reservations::parse_list(arguments).map(ToolCall::Reservations)
        }
        "force_release_file_reservation" => {
            file_reservations::parse_force(arguments).map(ToolCall::Reservations)
        }
        _ => return Err(ParseFailure::UnknownTool),
    };
    parsed.map_err(ParseFailure::Arguments)
}

/// A tool that ran and failed, or was called with bad arguments. Reported to the client as a
/// result with `isError: true` so that a model can read the message and correct itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolError {
    MissingArgument(&'static str),
    InvalidArgument {
        name: &'static str,
        problem: String,
    },
    UnknownAgent(String),
    UnknownRecipients(Vec<Box<str>>),
    InboxFull(Vec<Box<str>>),
    NameTaken {
        name: String,
        project_id: Uuid,
    },
    NamesExhausted,
    SearchUnavailable(String),
    Unavailable(CallError),
    HelperStopped(HelperStopped),
    /// A message with more text than an inbox can ever hold (`--max-inbox-bytes`).
    MessageTooLarge {
        bytes: usize,
        max_inbox_bytes: usize,
    },
    /// The next message of a drain does not fit in what is left of a batch's response.
    PageDoesNotFit {
        left: usize,
    },
    /// The next message of a listing does not fit in what is left of a batch's response.
    ListDoesNotFit,
    /// With agent tokens on: the agent does not exist or the token is not its (not told
    /// apart, so a caller cannot probe for names).
    AgentAuth(String),
    UnknownCursor {
        after: u64,
        newest: u64,
    },
    TooManyWaiters {
        per_agent: bool,
        max: usize,
    },
    UnknownMessage {
        agent: String,
        id: Uuid,
    },
    UnknownThread {
        agent: String,
        thread_id: String,
    },
    /// None of the ids given is a delivery to the agent.
    NoneFound {
        agent: String,
        count: usize,
    },
    TooManyLeases {
        per_agent: bool,
        max: usize,
    },
    LeaseHeldByOther {
        id: u64,
        path: String,
        holder: String,
    },
    LeaseNotFound(String),
    /// The sender used this idempotency key for another message.
    KeyReused(String),
    /// A send with this idempotency key is still being delivered.
    KeyInFlight(String),
    /// A force release of a lease whose holder acted too recently.
    HolderActive {
        holder: String,
        idle_minutes: i64,
        required_minutes: i64,
    },
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::MissingArgument(name) => write!(f, "missing required argument '{name}'"),
            ToolError::InvalidArgument { name, problem } => {
                write!(f, "invalid argument '{name}': {problem}")
            }
            ToolError::UnknownAgent(name) => {
                write!(
                    f,
                    "unknown agent '{name}': register it first with create_agent"
                )
            }
            ToolError::UnknownRecipients(names) => write!(
                f,
                "unknown recipient(s): {}; nothing was delivered",
                NameList(names)
            ),
            ToolError::InboxFull(names) => write!(
                f,
                "inbox full: {} (an inbox holds at most the server's --max-inbox-messages \
                 messages and --max-inbox-bytes of text until drained with get_inbox); \
                 nothing was delivered",
                NameList(names)
            ),
            ToolError::NameTaken { name, project_id } => write!(
                f,
                "agent name '{name}' is already registered in another project ({project_id}); \
                 choose another name_hint"
            ),
            ToolError::NamesExhausted => {
                write!(f, "could not invent a free agent name; pass a name_hint")
            }
            ToolError::SearchUnavailable(reason) => write!(f, "{reason}"),
            ToolError::Unavailable(error) => write!(f, "server unavailable: {error}"),
            ToolError::HelperStopped(error) => write!(f, "server unavailable: {error}"),
            ToolError::MessageTooLarge { .. }
            | ToolError::PageDoesNotFit { .. }
            | ToolError::ListDoesNotFit
            | ToolError::UnknownCursor { .. }
            | ToolError::TooManyWaiters { .. }
            | ToolError::UnknownMessage { .. }
            | ToolError::UnknownThread { .. }
            | ToolError::NoneFound { .. }
            | ToolError::KeyReused(_)
            | ToolError::KeyInFlight(_) => self.fmt_mail(f),
            ToolError::TooManyLeases { .. }
            | ToolError::LeaseHeldByOther { .. }
            | ToolError::LeaseNotFound(_)
            | ToolError::HolderActive { .. } => self.fmt_lease(f),
            ToolError::AgentAuth(name) => write!(
                f,
                "agent '{name}' is unknown or its agent_token is missing or wrong (this server \
                 runs with --agent-auth: pass the agent_token create_agent returned)"
            ),
        }
    }
}

impl ToolError {
    /// The errors of reading and sending mail.
    fn fmt_mail(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::MessageTooLarge {
                bytes,
                max_inbox_bytes,
            } => write!(
                f,
                "message too large: from_agent, subject and body add up to {bytes} bytes, and \
                 an inbox holds at most {max_inbox_bytes} (the server's --max-inbox-bytes); \
                 nothing was delivered"
            ),
            ToolError::PageDoesNotFit { left } => write!(
                f,
                "not drained: the next message does not fit in what is left of this batch's \
                 response ({left} messages wait); call get_inbox in a request of its own"
            ),
            ToolError::ListDoesNotFit => write!(
                f,
                "not listed: the next message does not fit in what is left of this batch's \
                 response; call again in a request of its own"
            ),
            ToolError::UnknownCursor { after, newest } => write!(
                f,
                "invalid argument 'after': {after} was never issued by this server (the \
                 newest delivery is {newest}); use 0 or a next_after from fetch_inbox"
            ),
            ToolError::TooManyWaiters { per_agent, max } => {
                let scope = if *per_agent {
                    "on this agent"
                } else {
                    "on this server shard"
                };
                write!(
                    f,
                    "too many wait_for_mail calls waiting {scope} (at most {max}); retry later \
                     or use fetch_inbox"
                )
            }
            ToolError::UnknownMessage { agent, id } => write!(
                f,
                "message {id} is not one that '{agent}' sent or received (or it is no longer \
                 retained); only a participant may reply"
            ),
            ToolError::UnknownThread { agent, thread_id } => write!(
                f,
                "unknown thread '{thread_id}': '{agent}' has sent or received no message in it"
            ),
            ToolError::NoneFound { agent, count } => write!(
                f,
                "none of the {count} message id(s) is a message delivered to '{agent}' (still \
                 retained)"
            ),
            ToolError::KeyReused(key) => write!(
                f,
                "invalid argument 'idempotency_key': {key:?} was already used by this agent for \
                 a different request (another message, or other paths); nothing was done (use a \
                 new key for a new request)"
            ),
            ToolError::KeyInFlight(key) => write!(
                f,
                "a send with idempotency_key {key:?} is still being delivered; retry shortly \
                 for its answer (nothing was delivered twice)"
            ),
            other => write!(f, "{other:?}"),
        }
    }

    /// The errors of file reservations.
    fn fmt_lease(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::TooManyLeases { per_agent, max } => {
                let scope = if *per_agent {
                    "this agent holds"
                } else {
                    "this project holds"
                };
                write!(
                    f,
                    "too many reservations: {scope} at most {max} active ones; release some \
                     (release_file_reservations) and retry; nothing was granted"
                )
            }
            ToolError::LeaseHeldByOther { id, path, holder } => write!(
                f,
                "reservation {id} on {path:?} is held by '{holder}', not by you; only its \
                 holder may release or renew it (see force_release_file_reservation)"
            ),
            ToolError::LeaseNotFound(what) => write!(f, "{what}"),
            ToolError::HolderActive {
                holder,
                idle_minutes,
                required_minutes,
            } => write!(
                f,
                "'{holder}' was active {idle_minutes} minute(s) ago; a reservation can be \
                 force-released only after {required_minutes} minutes of inactivity \
                 (--stale-lease-minutes); ask '{holder}' with send_message"
            ),
            other => write!(f, "{other:?}"),
        }
    }
}

impl std::error::Error for ToolError {}

/// Names listed in an error: at most `MAX_NAMES_LISTED`, then how many more, so that an
/// error answer stays small whatever the request held (it is not counted in any page).
struct NameList<'a>(&'a [Box<str>]);

/// Names an error lists before it counts the rest.
const MAX_NAMES_LISTED: usize = 16;

impl fmt::Display for NameList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, name) in self.0.iter().take(MAX_NAMES_LISTED).enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            f.write_str(name)?;
        }
        if self.0.len() > MAX_NAMES_LISTED {
            write!(f, " and {} more", self.0.len() - MAX_NAMES_LISTED)?;
        }
        Ok(())
    }
}

impl From<HelperStopped> for ToolError {
    fn from(error: HelperStopped) -> Self {
        ToolError::HelperStopped(error)
    }
}

impl From<CallError> for ToolError {
    fn from(error: CallError) -> Self {
        ToolError::Unavailable(error)
    }
}

/// How much of the response one tool result may fill, set by the MCP layer from the page and
/// batch bounds. The unit is bytes of the result's JSON counted in both forms it is sent in
/// (escaped inside the `text` content, and raw as `structuredContent`), so the bound holds for
/// the bytes actually sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputBudget {
    pub bytes: usize,
    /// The first item (message, hit) is sent even if it alone is larger: set when nothing
    /// else shares the response, so that an oversized message can still be drained.
    pub at_least_one: bool,
}

/// A successful tool result, serialised after the shards have answered.
#[derive(Debug)]
pub enum ToolOutput {
    /// A profile, and its agent token the one time it is issued.
    Agent(AgentProfile, Option<String>),
    Sent {
        id: Uuid,
        thread_id: Box<str>,
    },
    Inbox(Vec<DeliveryView>),
    /// Search hits, already a JSON array (built on the query thread).
    Search(String),
    Fetched {
        page: FetchPage,
        include_bodies: bool,
    },
    Marked(Marked),
    Thread {
        thread_id: Box<str>,
        page: ThreadPage,
        include_bodies: bool,
    },
    Agents {
        project_id: Uuid,
        agents: Vec<AgentSummary>,
        has_more: bool,
    },
    Reservations(file_reservations::Output),
}

impl ToolOutput {
    /// The result JSON, exactly the shape the `text` content carries.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            ToolOutput::Agent(profile, token) => {
                create_agent::write_json(out, profile, token.as_deref())
            }
            ToolOutput::Sent { id, thread_id } => send_message::write_json(out, id, thread_id),
            ToolOutput::Inbox(messages) => get_inbox::write_json(out, messages),
            ToolOutput::Search(hits) => out.extend_from_slice(hits.as_bytes()),
            ToolOutput::Fetched {
                page,
                include_bodies,
            } => fetch_inbox::write_json(out, page, *include_bodies),
            ToolOutput::Marked(marked) => marks::write_json(out, marked),
            ToolOutput::Thread {
                thread_id,
                page,
                include_bodies,
            } => get_thread::write_json(out, thread_id, page, *include_bodies),
            ToolOutput::Agents {
                project_id,
                agents,
                has_more,
            } => list_agents::write_json(out, project_id, agents, *has_more),
            ToolOutput::Reservations(output) => file_reservations::write_json(out, output),
        }
    }

    /// `structuredContent` must be an object: array results are wrapped under this key.
    pub fn structured_key(&self) -> Option<&'static str> {
        match self {
            ToolOutput::Inbox(_) => Some("messages"),
            ToolOutput::Search(_) => Some("results"),
            _ => None,
        }
    }
}

/// Per-shard tool state: the shard handle, the helper threads' feeds, the id generator and
/// the name cache.
pub struct Toolbox {
    shard: Rc<Shard>,
    search: SearchHandle,
    search_docs: Rc<Feed<SearchDoc>>,
    audit: Rc<Feed<ProfileEvent>>,
    metrics: Arc<Metrics>,
    ids: RefCell<IdGenerator>,
    known: RefCell<KnownAgents>,
    settings: ToolSettings,
}

/// Policies the tools follow, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolSettings {
    /// `--agent-auth`.
    pub agent_auth: bool,
    /// `--stale-lease-minutes`: a holder inactive this long may have its lease force-released.
    pub stale_lease_ms: i64,
}

impl Default for ToolSettings {
    fn default() -> Self {
        ToolSettings {
            agent_auth: false,
            stale_lease_ms: 30 * 60_000,
        }
    }
}

impl Toolbox {
    pub fn new(
        shard: Rc<Shard>,
        search: SearchHandle,
        search_docs: Rc<Feed<SearchDoc>>,
        audit: Rc<Feed<ProfileEvent>>,
        metrics: Arc<Metrics>,
        settings: ToolSettings,
    ) -> Self {
        let ids = IdGenerator::new(shard.id());
        Toolbox {
            shard,
            search,
            search_docs,
            audit,
            metrics,
            ids: RefCell::new(ids),
            known: RefCell::new(KnownAgents::default()),
            settings,
        }
    }

    /// The agent a call acts as, with the hash of its token when tokens are on.
    pub fn actor(&self, name: &str, token: Option<&str>) -> Actor {
        Actor {
            name: name.into(),
            token: self.token_hash(token),
            now_ms: crate::clock::now_ms(),
        }
    }

    /// What the owner compares: a hash of the token (the token itself is never kept).
    /// `None` with tokens off.
    pub fn token_hash(&self, token: Option<&str>) -> Option<Uuid> {
        if !self.settings.agent_auth {
            return None;
        }
        token.map(|token| Uuid::new_v5(&TOKEN_NAMESPACE, token.as_bytes()))
    }

    /// The error for an agent that a call acts as and its owner refused.
    pub fn no_agent(&self, name: &str) -> ToolError {
        if self.settings.agent_auth {
            ToolError::AgentAuth(name.to_string())
        } else {
            ToolError::UnknownAgent(name.to_string())
        }
    }

    pub fn shard(&self) -> &Shard {
        &self.shard
    }

    /// The shard as long polls need it (they may outlive one call's borrow).
    pub fn shard_handle(&self) -> &Rc<Shard> {
        &self.shard
    }

    /// The search threads (the web view runs its searches through them too).
    pub fn search(&self) -> &SearchHandle {
        &self.search
    }

    /// This shard's counters.
    pub fn shard_metrics(&self) -> &ShardMetrics {
        &self.metrics.shards[self.shard.id()]
    }

    pub async fn run(
        &self,
        call: ToolCall<'_>,
        budget: OutputBudget,
    ) -> Result<ToolOutput, ToolError> {
        match call {
            ToolCall::CreateAgent(args) => create_agent::run(self, args).await,
            ToolCall::SendMessage(args) => send_message::run(self, args).await,
            ToolCall::GetInbox(args) => get_inbox::run(self, args, budget).await,
            ToolCall::SearchMessages(args) => search_messages::run(self, args, budget).await,
            ToolCall::FetchInbox(args) => fetch_inbox::run(self, args, budget).await,
            ToolCall::WaitForMail(args) => wait_for_mail::run(self, args, budget).await,
            ToolCall::ReplyMessage(args) => reply_message::run(self, args).await,
            ToolCall::Mark(args) => marks::run(self, args).await,
            ToolCall::GetThread(args) => get_thread::run(self, args, budget).await,
            ToolCall::ListAgents(args) => list_agents::run(self, args, budget).await,
            ToolCall::Reservations(args) => file_reservations::run(self, args, budget).await,
        }
    }
}

/// Hashes agent tokens (UUID v5, SHA-1 based): a token is 256 random bits, so its hash cannot
/// be reversed, and comparing hashes needs no secret on the server.
const TOKEN_NAMESPACE: Uuid = Uuid::from_u128(0x6a1d_0c3e_5b7f_4e2a_9c41_3f0e_8d27_b915);

/// A fresh agent token: 32 random bytes from the kernel, as 64 hex digits.
pub fn new_agent_token() -> String {
    let mut bytes = [0u8; 32];
    random_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fills `bytes` from the kernel's randomness (for secrets: tokens, session ids).
pub fn random_bytes(bytes: &mut [u8]) {
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `bytes`.
        let got = unsafe {
            libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
        };
        if got > 0 {
            filled += got as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // No kernel randomness (never on Linux 3.17+): refuse to make a guessable secret.
            panic!("getrandom failed: {}", std::io::Error::last_os_error());
        }
    }
}

/// A shard answered a request with the wrong kind of reply: a bug in this server, never
/// something a client can cause.
pub(super) fn unreachable_reply(request: &str, reply: &Reply) -> ! {
    panic!("shard answered {request} with {reply:?}")
}

/// This shard's cache of agent name -> project id. Sound without invalidation because agents
/// are never deleted and a name never moves to another project. Saves the sender lookup (a
/// cross-shard round trip) on every repeated send.
#[derive(Default)]
struct KnownAgents {
    projects: HashMap<Box<str>, Uuid>,
}

impl KnownAgents {
    fn project_of(&self, name: &str) -> Option<Uuid> {
        self.projects.get(name).copied()
    }

    fn remember(&mut self, name: &str, project_id: Uuid) {
        if self.projects.contains_key(name) {
            return;
        }
        if self.projects.len() >= MAX_KNOWN_AGENTS {
            self.projects.clear();
        }
        self.projects.insert(name.into(), project_id);
    }
}

/// The `tools/list` result, built once.
/// What each tool does to the mail, as MCP tool annotations: clients gate on them (approval
/// for writes, plan modes that allow only reads). `(name, read_only, destructive, idempotent)`;
/// every tool acts on allman's own state only, so none is open-world.
pub const TOOL_HINTS: [(&str, bool, bool, bool); 17] = [
    // Registering again with the same name updates the same agent.
    ("create_agent", false, false, true),
    ("send_message", false, false, false),
    // Drains: a message is returned once, then gone from the inbox.
    ("get_inbox", false, true, false),
    ("search_messages", true, false, true),
    ("fetch_inbox", true, false, true),
    ("wait_for_mail", true, false, true),
    ("reply_message", false, false, false),
    ("acknowledge_message", false, false, true),
    ("mark_message_read", false, false, true),
    ("get_thread", true, false, true),
    ("list_agents", true, false, true),
    ("file_reservation_paths", false, false, false),
    // Removes the agent's own leases.
    ("release_file_reservations", false, true, true),
    ("renew_file_reservations", false, false, false),
    ("check_file_reservation_conflicts", true, false, true),
    ("list_file_reservations", true, false, true),
    // Removes another agent's stale lease.
    ("force_release_file_reservation", false, true, true),
];

/// Adds `annotations` to a tool definition, from [`TOOL_HINTS`] and its title.
fn annotated(mut definition: serde_json::Value) -> serde_json::Value {
    let name = definition["name"].as_str().unwrap_or_default().to_string();
    let title = definition["title"].clone();
    if let Some(&(_, read_only, destructive, idempotent)) =
        TOOL_HINTS.iter().find(|(tool, ..)| *tool == name)
    {
        definition["annotations"] = serde_json::json!({
            "title": title,
            "readOnlyHint": read_only,
            "destructiveHint": destructive,
            "idempotentHint": idempotent,
            "openWorldHint": false,
        });
    }
    definition
}

pub fn list_json() -> &'static str {
    static LIST: OnceLock<String> = OnceLock::new();
    LIST.get_or_init(|| {
        let definitions = [
            create_agent::definition(),
            send_message::definition(),
            get_inbox::definition(),
            search_messages::definition(),
            fetch_inbox::definition(),
            wait_for_mail::definition(),
            reply_message::definition(),
            marks::acknowledge_definition(),
            marks::mark_read_definition(),
            get_thread::definition(),
            list_agents::definition(),
            file_reservations::reserve_definition(),
            file_reservations::release_definition(),
            file_reservations::renew_definition(),
            file_reservations::check_definition(),
            file_reservations::list_definition(),
            file_reservations::force_definition(),
        ];
        let tools: Vec<serde_json::Value> = definitions.into_iter().map(annotated).collect();
        serde_json::json!({ "tools": tools }).to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_tool_has_annotations_and_every_hint_a_tool() {
        let list: serde_json::Value = serde_json::from_str(list_json()).expect("JSON");
        let tools = list["tools"].as_array().expect("tools");
        assert_eq!(tools.len(), TOOL_HINTS.len());
        for (tool, (name, read_only, ..)) in tools.iter().zip(TOOL_HINTS) {
            assert_eq!(tool["name"], name, "TOOL_HINTS follows the list's order");
            assert_eq!(tool["annotations"]["readOnlyHint"], read_only, "{name}");
        }
    }

    #[test]
    fn agent_name_rules() {
        assert!(valid_agent_name("BlueLake"));
        assert!(valid_agent_name("agent_7-b"));
        assert!(!valid_agent_name(""));
        assert!(!valid_agent_name("../etc"));
        assert!(!valid_agent_name("a b"));
        assert!(!valid_agent_name("é"));
        assert!(!valid_agent_name(&"a".repeat(MAX_AGENT_NAME_BYTES + 1)));
        assert!(valid_agent_name(&"a".repeat(MAX_AGENT_NAME_BYTES)));
    }

    #[test]
    fn tools_list_has_every_tool_with_object_schemas() {
        let value: serde_json::Value = serde_json::from_str(list_json()).expect("valid json");
        let tools = value["tools"].as_array().expect("tools array");
        let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
        // Every tool listed has its row in the metrics, in the same order.
        assert_eq!(names, crate::metrics::TOOLS);
        assert_eq!(names.len(), 17);
        for tool in tools {
            assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
            assert_eq!(tool["outputSchema"]["type"], "object", "{tool}");
            assert!(tool["description"].as_str().is_some_and(|d| !d.is_empty()));
        }
    }

    #[test]
    fn unknown_tool_is_told_apart_from_bad_arguments() {
        assert!(matches!(
            parse("nope", None),
            Err(ParseFailure::UnknownTool)
        ));
        assert!(matches!(
            parse("get_inbox", None),
            Err(ParseFailure::Arguments(ToolError::MissingArgument(
                "agent_name"
            )))
        ));
    }

    #[test]
    fn invented_names_are_valid_agent_names() {
        let mut ids = IdGenerator::new(3);
        for attempt in 0..MAX_NAME_ATTEMPTS {
            let name = ids.agent_name(attempt);
            assert!(valid_agent_name(&name), "{name}");
        }
    }

    #[test]
    fn error_name_lists_are_capped() {
        let names: Vec<Box<str>> = (0..40).map(|i| format!("n{i}").into()).collect();
        let text = ToolError::UnknownRecipients(names).to_string();
        assert!(text.starts_with("unknown recipient(s): n0, n1,"), "{text}");
        assert!(text.contains("n15 and 24 more;"), "{text}");
        assert!(!text.contains("n16,"), "{text}");
    }

    #[test]
    fn known_agents_cache_is_bounded() {
        let mut known = KnownAgents::default();
        for i in 0..MAX_KNOWN_AGENTS + 10 {
            known.remember(&format!("a{i}"), Uuid::nil());
        }
        assert!(known.projects.len() <= MAX_KNOWN_AGENTS);
        assert_eq!(
            known.project_of(&format!("a{}", MAX_KNOWN_AGENTS + 9)),
            Some(Uuid::nil())
        );
    }
}
