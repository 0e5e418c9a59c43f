//! What each page shows, gathered from the shards and the search index through the same
//! typed requests the tools use. Every request is a read ([`View`], a lease listing, a query):
//! nothing here drains, marks or counts as an agent's activity. A page makes a fixed number of
//! rounds of requests (one per shard each; receipts in chunks of 64 names), and each answer is
//! bounded (see `shards::state::views`).

use crate::search::QueryError;
use crate::tools::Toolbox;
use serde::Deserialize;
use shards::leases::{owner_of_project, Lease};
use shards::{
    AgentPage, AgentRow, CallError, LeaseOp, LeaseRequest, ProjectSummary, Receipt, Reply, Request,
    SharedEnvelope, View, ViewReply, TRAFFIC_MINUTES,
};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Items (messages, hits) read or written between two turns of the executor: a long thread
/// or a page of hits goes in steps of this many, so requests waiting on the shard get in
/// between (each step is well under 100 µs in a release build).
pub const LINES_PER_TURN: usize = 16;

/// Rows per page of the overview, the roster and an agent's log.
pub const PAGE_ROWS: usize = 50;
/// Recent messages shown for a project.
pub const RECENT_SHOWN: usize = 12;
/// Reservations shown for a project.
pub const LEASES_SHOWN: usize = 100;
/// Messages of a thread shown (search returns them; a longer thread is cut).
pub const THREAD_MESSAGES: usize = 200;
/// Recipients whose receipts one request reads: each costs a search of that recipient's
/// history, and a request stays within its step budget (`MAX_VIEW_STEPS`) for any of them.
const RECEIPTS_PER_REQUEST: usize = 64;
/// Hits shown for a search.
pub const SEARCH_HITS: usize = 50;
/// Bytes of search results one page reads at most: documents carry whole bodies.
pub const SEARCH_RESULT_BYTES: usize = 1024 * 1024;

#[derive(Debug)]
pub enum DataError {
    Shard(CallError),
    Search(QueryError),
}

impl From<CallError> for DataError {
    fn from(error: CallError) -> Self {
        DataError::Shard(error)
    }
}

/// Messages in a traffic chart's hour.
pub fn sent_last_hour(traffic: &[u32; TRAFFIC_MINUTES]) -> u64 {
    traffic.iter().map(|n| u64::from(*n)).sum()
}

/// Adds one shard's per-minute counts to the total.
fn add_traffic(total: &mut [u32; TRAFFIC_MINUTES], part: &[u32; TRAFFIC_MINUTES]) {
    for (total, n) in total.iter_mut().zip(part) {
        *total = total.saturating_add(*n);
    }
}

pub struct Page<T> {
    pub rows: Vec<T>,
    /// The cursor of the next page, if there is one.
    pub next: Option<String>,
}

/// Sends one request to every shard (all in flight at once) and collects the replies.
async fn ask_all(
    tools: &Toolbox,
    request: impl Fn() -> Request,
) -> Result<Vec<ViewReply>, CallError> {
    let shard = tools.shard();
    let mut tickets = Vec::with_capacity(shard.count());
    for owner in 0..shard.count() {
        tickets.push(shard.submit(owner, request()).await?);
    }
    let mut replies = Vec::with_capacity(tickets.len());
    for ticket in tickets {
        replies.push(view_reply(ticket.await));
    }
    Ok(replies)
}

async fn ask(tools: &Toolbox, owner: usize, view: View) -> Result<ViewReply, CallError> {
    Ok(view_reply(
        tools.shard().call(owner, Request::View(view)).await?,
    ))
}

fn view_reply(reply: Reply) -> ViewReply {
    match reply {
        Reply::View(reply) => reply,
        other => panic!("shard answered a view with {other:?}"),
    }
}

/// Merges pages that each shard cut at `limit` in key order: only keys up to the smallest
/// last key of a cut page are complete on every shard; the next page starts after it.
fn complete_up_to<'a>(lasts: impl Iterator<Item = (Option<&'a str>, bool)>) -> Option<String> {
    lasts
        .filter(|(_, has_more)| *has_more)
        .filter_map(|(last, _)| last)
        .min()
        .map(str::to_string)
}

/// One page of the overview, projects in key order after `after`.
pub async fn projects(
    tools: &Toolbox,
    after: Option<&str>,
    now_ms: i64,
) -> Result<Page<ProjectSummary>, DataError> {
    let replies = ask_all(tools, || {
        Request::View(View::Projects {
            after: after.map(Box::from),
            limit: PAGE_ROWS,
            now_ms,
        })
    })
    .await?;
    let parts: Vec<(Vec<ProjectSummary>, bool)> = replies
        .into_iter()
        .map(|reply| match reply {
            ViewReply::Projects { projects, has_more } => (projects, has_more),
            other => panic!("projects view answered with {other:?}"),
        })
        .collect();
    let next = complete_up_to(
        parts
            .iter()
            .map(|(rows, more)| (rows.last().map(|p| &*p.key), *more)),
    );
    // Every shard's part of a project, added up.
    let mut merged: BTreeMap<&str, ProjectSummary> = BTreeMap::new();
    for part in parts.iter().flat_map(|(rows, _)| rows) {
        if next.as_deref().is_some_and(|cut| &*part.key > cut) {
            continue;
        }
        match merged.get_mut(&*part.key) {
            Some(total) => {
                total.agents += part.agents;
                total.queued += part.queued;
                add_traffic(&mut total.traffic, &part.traffic);
            }
            None => {
                merged.insert(&part.key, part.clone());
            }
        }
    }
    let mut rows: Vec<ProjectSummary> = merged.into_values().collect();
    let next = cut_page(&mut rows, next, |p| p.key.to_string());
    Ok(Page { rows, next })
}

/// Cuts merged rows (in cursor order) to [`PAGE_ROWS`]; the next page then starts after the
/// last row kept.
fn cut_page<T>(
    rows: &mut Vec<T>,
    next: Option<String>,
    cursor: impl Fn(&T) -> String,
) -> Option<String> {
    if rows.len() <= PAGE_ROWS {
        return next;
    }
    rows.truncate(PAGE_ROWS);
    rows.last().map(cursor)
}

/// A project's roster page.
pub struct Roster {
    pub key: Box<str>,
    pub agent_count: usize,
    pub queued: usize,
    pub traffic: [u32; TRAFFIC_MINUTES],
    pub agents: Page<AgentRow>,
    /// Newest first.
    pub recent: Vec<SharedEnvelope>,
    pub leases: Vec<Lease>,
}

/// `None`: no agent of the project exists.
pub async fn roster(
    tools: &Toolbox,
    project_id: Uuid,
    after: Option<&str>,
    now_ms: i64,
) -> Result<Option<Roster>, DataError> {
    let replies = ask_all(tools, || {
        Request::View(View::Roster {
            project_id,
            after: after.map(Box::from),
            limit: PAGE_ROWS,
            now_ms,
        })
    })
    .await?;
    let parts: Vec<Box<shards::RosterPart>> = replies
        .into_iter()
        .map(|reply| match reply {
            ViewReply::Roster(part) => part,
            other => panic!("roster view answered with {other:?}"),
        })
        .collect();
    let Some(key) = parts.iter().find_map(|p| p.key.clone()) else {
        return Ok(None);
    };
    let next = complete_up_to(parts.iter().map(|p| {
        let last = p.agents.last().map(|a| &*a.profile.name);
        (last, p.has_more)
    }));
    let mut roster = Roster {
        key,
        agent_count: 0,
        queued: 0,
        traffic: [0; TRAFFIC_MINUTES],
        agents: Page {
            rows: Vec::new(),
            next: None,
        },
        recent: Vec::new(),
        leases: Vec::new(),
    };
    for part in parts {
        roster.agent_count += part.agent_count;
        roster.queued += part.queued;
        add_traffic(&mut roster.traffic, &part.traffic);
        roster.recent.extend(part.recent);
        let complete = |row: &AgentRow| next.as_deref().is_none_or(|cut| &*row.profile.name <= cut);
        roster
            .agents
            .rows
            .extend(part.agents.into_iter().filter(complete));
    }
    roster
        .agents
        .rows
        .sort_by(|a, b| a.profile.name.cmp(&b.profile.name));
    roster.agents.next = cut_page(&mut roster.agents.rows, next, |a| {
        a.profile.name.to_string()
    });
    roster
        .recent
        .sort_by_key(|e| std::cmp::Reverse((e.timestamp_ms, e.id)));
    roster.recent.truncate(RECENT_SHOWN);
    roster.leases = leases(tools, project_id, now_ms).await?;
    Ok(Some(roster))
}

/// A project's key, for a page's heading (`None` if it has no agents, or a shard is away).
pub async fn project_key(tools: &Toolbox, project_id: Uuid, now_ms: i64) -> Option<Box<str>> {
    let view = || {
        Request::View(View::Roster {
            project_id,
            after: None,
            limit: 0,
            now_ms,
        })
    };
    let replies = ask_all(tools, view).await.ok()?;
    replies.into_iter().find_map(|reply| match reply {
        ViewReply::Roster(part) => part.key,
        _ => None,
    })
}

/// The project's active reservations, as `list_file_reservations` lists them.
async fn leases(tools: &Toolbox, project_id: Uuid, now_ms: i64) -> Result<Vec<Lease>, DataError> {
    let shard = tools.shard();
    let request = Request::Leases(LeaseRequest {
        project_id,
        agent: "".into(),
        now_ms,
        op: LeaseOp::List {
            only_agent: false,
            include_inactive: false,
            limit: LEASES_SHOWN,
        },
    });
    match shard
        .call(owner_of_project(&project_id, shard.count()), request)
        .await?
    {
        Reply::Leases(Ok(leases)) => Ok(leases),
        Reply::Leases(Err(_)) => Ok(Vec::new()),
        other => panic!("lease listing answered with {other:?}"),
    }
}

/// An agent's page; `None` if it does not exist.
pub async fn agent(
    tools: &Toolbox,
    name: &str,
    before: Option<u64>,
) -> Result<Option<Box<AgentPage>>, DataError> {
    let owner = tools.shard().owner_of(name);
    let view = View::Agent {
        name: name.into(),
        before,
        limit: PAGE_ROWS,
    };
    match ask(tools, owner, view).await? {
        ViewReply::Agent(page) => Ok(page),
        other => panic!("agent view answered with {other:?}"),
    }
}

/// A message and how each recipient holds it.
pub struct MessageView {
    pub envelope: SharedEnvelope,
    /// Per recipient, in the message's order (`to`, then `cc`).
    pub receipts: Vec<(Box<str>, Option<Receipt>)>,
}

/// Where to look for a message: its sender's history, or the histories of a project's agents.
#[derive(Debug, Clone, Copy)]
pub enum Clue<'a> {
    Sender(&'a str),
    Project(Uuid),
}

/// Message `id`, found through its sender or its project; `None` if not found.
pub async fn message(
    tools: &Toolbox,
    id: Uuid,
    clue: Clue<'_>,
) -> Result<Option<MessageView>, DataError> {
    let Some(envelope) = find_message(tools, id, clue).await? else {
        return Ok(None);
    };
    let shard = tools.shard();
    let mut by_owner: Vec<Vec<Box<str>>> = vec![Vec::new(); shard.count()];
    for name in envelope.recipients() {
        by_owner[shard.owner_of(name)].push(name.into());
    }
    let mut tickets = Vec::new();
    for (owner, names) in by_owner.into_iter().enumerate() {
        for chunk in names.chunks(RECEIPTS_PER_REQUEST) {
            let view = View::Receipts {
                id,
                timestamp_ms: envelope.timestamp_ms,
                names: chunk.to_vec(),
            };
            tickets.push(shard.submit(owner, Request::View(view)).await?);
        }
    }
    let mut found: BTreeMap<Box<str>, Option<Receipt>> = BTreeMap::new();
    for ticket in tickets {
        match view_reply(ticket.await) {
            ViewReply::Receipts(receipts) => found.extend(receipts),
            other => panic!("receipts view answered with {other:?}"),
        }
    }
    let receipts = envelope
        .recipients()
        .map(|name| (Box::from(name), found.get(name).copied().flatten()))
        .collect();
    Ok(Some(MessageView { envelope, receipts }))
}

async fn find_message(
    tools: &Toolbox,
    id: Uuid,
    clue: Clue<'_>,
) -> Result<Option<SharedEnvelope>, DataError> {
    let replies = match clue {
        Clue::Sender(name) if crate::tools::valid_agent_name(name) => {
            let owner = tools.shard().owner_of(name);
            let view = View::Message {
                id,
                from: Some(name.into()),
                project_id: None,
            };
            vec![ask(tools, owner, view).await?]
        }
        Clue::Sender(_) => return Ok(None),
        Clue::Project(project_id) => {
            let view = || {
                Request::View(View::Message {
                    id,
                    from: None,
                    project_id: Some(project_id),
                })
            };
            ask_all(tools, view).await?
        }
    };
    Ok(replies.into_iter().find_map(|reply| match reply {
        ViewReply::Message { found, .. } => found,
        other => panic!("message view answered with {other:?}"),
    }))
}

/// A message as the search index returns it (every field an array; a missing one is empty).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Hit {
    pub id: Vec<String>,
    pub project_id: Vec<String>,
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub thread_id: Vec<String>,
    pub subject: Vec<String>,
    pub body: Vec<String>,
    pub timestamp: Vec<String>,
}

impl Hit {
    pub fn first(field: &[String]) -> &str {
        field.first().map_or("", String::as_str)
    }
}

/// Reads the hits' JSON a few at a time (see [`LINES_PER_TURN`]), stepping aside in
/// between: a long thread's hits are over 100 KB.
async fn hits(json: &str) -> Result<Vec<Hit>, DataError> {
    let unreadable = |e: serde_json::Error| {
        DataError::Search(QueryError::Unavailable(format!("unreadable hits: {e}")))
    };
    let raw: Vec<&serde_json::value::RawValue> = serde_json::from_str(json).map_err(unreadable)?;
    let mut hits = Vec::with_capacity(raw.len());
    for (count, item) in raw.iter().enumerate() {
        if count > 0 && count % LINES_PER_TURN == 0 {
            futures_lite::future::yield_now().await;
        }
        hits.push(serde_json::from_str(item.get()).map_err(unreadable)?);
    }
    Ok(hits)
}

/// Search over all mail, best match first.
pub async fn search(tools: &Toolbox, query: &str) -> Result<Vec<Hit>, DataError> {
    let json = tools
        .search()
        .query(query, SEARCH_HITS, SEARCH_RESULT_BYTES, true)
        .await
        .map_err(DataError::Search)?;
    hits(&json).await
}

/// A thread: the message that started it (when its id is a message id of the project) and
/// up to [`THREAD_MESSAGES`] messages of the project that name it, oldest first, from the
/// search index (which of a longer thread's messages are shown is the index's choice).
pub struct ThreadView {
    pub root: Option<SharedEnvelope>,
    pub messages: Vec<Hit>,
    /// Messages of the thread were left out (the count or byte bound).
    pub cut: bool,
}

pub async fn thread(
    tools: &Toolbox,
    project_id: Uuid,
    thread_id: &str,
) -> Result<ThreadView, DataError> {
    let root = match Uuid::try_parse(thread_id) {
        Ok(id) => find_message(tools, id, Clue::Project(project_id)).await?,
        Err(_) => None,
    };
    let project = project_id.hyphenated().to_string();
    let found = tools
        .search()
        .thread(&project, thread_id, THREAD_MESSAGES, SEARCH_RESULT_BYTES)
        .await
        .map_err(DataError::Search)?;
    let mut messages = hits(&found.json).await?;
    let cut = found.cut;
    if let Some(root) = &root {
        let root_id = root.id.hyphenated().to_string();
        messages.retain(|hit| Hit::first(&hit.id) != root_id);
    }
    // RFC 3339 times of one format sort as text.
    messages.sort_by(|a, b| Hit::first(&a.timestamp).cmp(Hit::first(&b.timestamp)));
    Ok(ThreadView {
        root,
        messages,
        cut,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_pages_stop_where_every_shard_is_complete() {
        // Shard 0 cut its page at "m", shard 1 at "f", shard 2 returned all it has.
        let lasts = [(Some("m"), true), (Some("f"), true), (Some("z"), false)];
        assert_eq!(complete_up_to(lasts.into_iter()).as_deref(), Some("f"));
        let done = [(Some("m"), false), (None, false)];
        assert_eq!(complete_up_to(done.into_iter()), None);
    }
}
