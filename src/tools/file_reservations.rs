//! File reservations: advisory leases on paths, globs and virtual resources (`port:3000`).
//!
//! - `file_reservation_paths(agent_name, paths[]; ttl_seconds, exclusive, reason)`
//! - `release_file_reservations(agent_name; paths, ids)`
//! - `renew_file_reservations(agent_name; extend_seconds, paths, ids)`
//! - `check_file_reservation_conflicts(agent_name, paths[])`
//! - `list_file_reservations(project_key or project_id; agent_name, include_inactive, limit)`
//! - `force_release_file_reservation(agent_name, id; note)`
//!
//! The acting agent is checked on its own owner (`Whois`, which also gives its project); the
//! project's leases live on the project's owner shard, which answers every lease request in
//! one synchronous step (see `shards::leases`). Patterns and overlap: `shards::glob`.

use super::args::{
    object, optional_bool, optional_integer, optional_str, required_str, string_array,
};
use super::create_agent::project_arg;
use super::mail::{write_bool, write_u64, Clock};
use super::send_message::idempotency_key_arg;
use super::send_message::{send, Outgoing, MAX_TOKEN_BYTES};
use super::{
    unreachable_reply, OutputBudget, ToolError, ToolOutput, Toolbox, MAX_AGENT_NAME_BYTES,
};
use crate::clock::now_ms;
use crate::json::{both_quoted_len, is_null, present, write_array, write_str, write_uuid};
use serde::Deserialize;
use serde_json::value::RawValue;
use shards::envelope::{Idempotency, MAX_IDEMPOTENCY_KEY_BYTES};
use shards::glob::normalize;
use shards::leases::{owner_of_project, Lease, LeaseError, PathConflicts};
use shards::{Importance, LeaseOp, LeaseRequest, Reply, Request};
use std::borrow::Cow;
use uuid::Uuid;

/// A stable hash of a reservation request, for its idempotency key: two requests are the
/// same when their paths (as normalised), TTL, mode and reason are.
fn reserve_hash(paths: &[Box<str>], ttl_ms: i64, exclusive: bool, reason: &str) -> u64 {
    let ttl = ttl_ms.to_le_bytes();
    let mode = [u8::from(exclusive)];
    let fixed: [&[u8]; 3] = [&ttl, &mode, reason.as_bytes()];
    let paths = paths.iter().map(|p| p.as_bytes());
    shards::hash::stable_hash_of_parts(fixed.into_iter().chain(paths))
}

/// Paths one reservation names: a model's edit plan, not a tree walk.
pub const MAX_RESERVE_PATHS: usize = 100;
/// Paths one check names (a pre-commit hook's staged files).
pub const MAX_CHECK_PATHS: usize = 200;
/// Longest path or pattern.
pub const MAX_PATH_BYTES: usize = 1024;
pub const MAX_REASON_BYTES: usize = 256;
pub const MAX_NOTE_BYTES: usize = 1024;
const MIN_SECONDS: u64 = 60;
const MAX_SECONDS: u64 = 86_400;
pub const MAX_LIST_LIMIT: u64 = 1000;
/// Ids one release or renewal names.
const MAX_IDS: usize = 1000;

#[derive(Debug, Default, Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    agent_name: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    agent_token: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    paths: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    ids: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    ttl_seconds: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    extend_seconds: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    exclusive: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    reason: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    note: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    project_key: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    project_id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    include_inactive: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    limit: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    idempotency_key: Option<&'a RawValue>,
}

/// Which reservation tool, with its checked arguments.
#[derive(Debug)]
pub enum Args<'a> {
    Reserve {
        actor: ActorArgs<'a>,
        paths: Vec<Box<str>>,
        ttl_ms: i64,
        exclusive: bool,
        reason: Cow<'a, str>,
        idempotency_key: Option<Cow<'a, str>>,
    },
    Release {
        actor: ActorArgs<'a>,
        paths: Option<Vec<Box<str>>>,
        ids: Option<Vec<u64>>,
    },
    Renew {
        actor: ActorArgs<'a>,
        paths: Option<Vec<Box<str>>>,
        ids: Option<Vec<u64>>,
        extend_ms: i64,
    },
    Check {
        actor: ActorArgs<'a>,
        paths: Vec<Box<str>>,
    },
    List {
        project_id: Uuid,
        agent: Option<Cow<'a, str>>,
        include_inactive: bool,
        limit: usize,
    },
    ForceRelease {
        actor: ActorArgs<'a>,
        id: u64,
        note: Option<Cow<'a, str>>,
    },
}

#[derive(Debug)]
pub struct ActorArgs<'a> {
    name: Cow<'a, str>,
    token: Option<Cow<'a, str>>,
}

fn actor_args<'a>(fields: &Fields<'a>) -> Result<ActorArgs<'a>, ToolError> {
    Ok(ActorArgs {
        name: required_str("agent_name", fields.agent_name, MAX_AGENT_NAME_BYTES)?,
        token: optional_str("agent_token", fields.agent_token, MAX_TOKEN_BYTES)?,
    })
}

/// Normalised paths without duplicates; an entry that escapes the project or does not parse
/// is an error naming it.
fn path_list(raw: Option<&RawValue>, max: usize) -> Result<Vec<Box<str>>, ToolError> {
    let texts = string_array("paths", raw, max, MAX_PATH_BYTES).map_err(|error| match error {
        ToolError::InvalidArgument { name, problem } => ToolError::InvalidArgument {
            name,
            problem: problem.replace("agent names, e.g. [\"BlueLake\"]", "paths, e.g. [\"src/\"]"),
        },
        other => other,
    })?;
    let mut out: Vec<Box<str>> = Vec::with_capacity(texts.len());
    for (index, text) in texts.iter().enumerate() {
        let path = normalize(text).map_err(|problem| ToolError::InvalidArgument {
            name: "paths",
            problem: format!("entry {index} ({text:?}) {problem}"),
        })?;
        if !out.iter().any(|p| **p == *path) {
            out.push(path.into());
        }
    }
    Ok(out)
}

fn optional_paths(raw: Option<&RawValue>) -> Result<Option<Vec<Box<str>>>, ToolError> {
    match raw.filter(|r| !is_null(r)) {
        None => Ok(None),
        Some(raw) => path_list(Some(raw), MAX_CHECK_PATHS).map(Some),
    }
}

fn optional_ids(raw: Option<&RawValue>) -> Result<Option<Vec<u64>>, ToolError> {
    let Some(raw) = raw.filter(|r| !is_null(r)) else {
        return Ok(None);
    };
    let bad = || ToolError::InvalidArgument {
        name: "ids",
        problem: format!("must be an array of 1 to {MAX_IDS} reservation ids (integers)"),
    };
    let ids: Vec<u64> = serde_json::from_str(raw.get()).map_err(|_| bad())?;
    if ids.is_empty() || ids.len() > MAX_IDS {
        return Err(bad());
    }
    Ok(Some(ids))
}

fn seconds(name: &'static str, raw: Option<&RawValue>, default: u64) -> Result<i64, ToolError> {
    let seconds = optional_integer(name, raw, MIN_SECONDS, MAX_SECONDS)?.unwrap_or(default);
    Ok(seconds as i64 * 1000)
}

pub fn parse_reserve(arguments: Option<&RawValue>) -> Result<Args<'_>, ToolError> {
    let fields: Fields<'_> = object(arguments)?;
    Ok(Args::Reserve {
        actor: actor_args(&fields)?,
        paths: path_list(fields.paths, MAX_RESERVE_PATHS)?,
        ttl_ms: seconds("ttl_seconds", fields.ttl_seconds, 3600)?,
        exclusive: optional_bool("exclusive", fields.exclusive)?.unwrap_or(true),
        reason: optional_str("reason", fields.reason, MAX_REASON_BYTES)?.unwrap_or_default(),
        idempotency_key: idempotency_key_arg(fields.idempotency_key)?,
    })
}

pub fn parse_release(arguments: Option<&RawValue>) -> Result<Args<'_>, ToolError> {
    let fields: Fields<'_> = object(arguments)?;
    Ok(Args::Release {
        actor: actor_args(&fields)?,
        paths: optional_paths(fields.paths)?,
        ids: optional_ids(fields.ids)?,
    })
}

pub fn parse_renew(arguments: Option<&RawValue>) -> Result<Args<'_>, ToolError> {
    let fields: Fields<'_> = object(arguments)?;
    Ok(Args::Renew {
        actor: actor_args(&fields)?,
        paths: optional_paths(fields.paths)?,
        ids: optional_ids(fields.ids)?,
        extend_ms: seconds("extend_seconds", fields.extend_seconds, 1800)?,
    })
}

pub fn parse_check(arguments: Option<&RawValue>) -> Result<Args<'_>, ToolError> {
    let fields: Fields<'_> = object(arguments)?;
    Ok(Args::Check {
        actor: actor_args(&fields)?,
        paths: path_list(fields.paths, MAX_CHECK_PATHS)?,
    })
}

pub fn parse_list(arguments: Option<&RawValue>) -> Result<Args<'_>, ToolError> {
    let fields: Fields<'_> = object(arguments)?;
    let project_id = project_arg(fields.project_key, fields.project_id)?;
    Ok(Args::List {
        project_id,
        agent: optional_str("agent_name", fields.agent_name, MAX_AGENT_NAME_BYTES)?,
        include_inactive: optional_bool("include_inactive", fields.include_inactive)?
            .unwrap_or(false),
        limit: optional_integer("limit", fields.limit, 1, MAX_LIST_LIMIT)?.unwrap_or(200) as usize,
    })
}

pub fn parse_force(arguments: Option<&RawValue>) -> Result<Args<'_>, ToolError> {
    let fields: Fields<'_> = object(arguments)?;
    Ok(Args::ForceRelease {
        actor: actor_args(&fields)?,
        id: optional_integer("id", fields.id, 1, u64::MAX)?
            .ok_or(ToolError::MissingArgument("id"))?,
        note: optional_str("note", fields.note, MAX_NOTE_BYTES)?,
    })
}

/// A successful result.
#[derive(Debug)]
pub enum Output {
    Reserved {
        granted: Vec<Lease>,
        conflicts: Vec<PathConflicts>,
    },
    Released(Vec<Lease>),
    Renewed(Vec<Lease>),
    Checked(Vec<PathConflicts>),
    Listed {
        project_id: Uuid,
        leases: Vec<Lease>,
        now_ms: i64,
    },
    Forced {
        lease: Lease,
        message: Option<Uuid>,
    },
}

/// The acting agent's project, from its owner (which checks the token and records the act).
async fn project_of(tools: &Toolbox, actor: &ActorArgs<'_>) -> Result<Uuid, ToolError> {
    let owner = tools.shard().owner_of(&actor.name);
    let request = Request::Whois {
        actor: tools.actor(&actor.name, actor.token.as_deref()),
    };
    match tools.shard().call(owner, request).await? {
        Reply::Agent(Some(project)) => Ok(project),
        Reply::Agent(None) => Err(tools.no_agent(&actor.name)),
        other => unreachable_reply("Whois", &other),
    }
}

async fn lease_call(
    tools: &Toolbox,
    project_id: Uuid,
    agent: &str,
    op: LeaseOp,
) -> Result<Reply, ToolError> {
    let owner = owner_of_project(&project_id, tools.shard().count());
    let request = Request::Leases(LeaseRequest {
        project_id,
        agent: agent.into(),
        now_ms: now_ms(),
        op,
    });
    Ok(tools.shard().call(owner, request).await?)
}

fn lease_error(error: LeaseError) -> ToolError {
    match error {
        LeaseError::TooMany { per_agent, max } => ToolError::TooManyLeases { per_agent, max },
        LeaseError::HeldByOther { id, path, holder } => ToolError::LeaseHeldByOther {
            id,
            path: path.into(),
            holder: holder.into(),
        },
        LeaseError::NotFound { what } => ToolError::LeaseNotFound(what),
        LeaseError::KeyReused { key } => ToolError::KeyReused(key.into()),
    }
}

fn leases_of(reply: Reply, request: &str) -> Result<Vec<Lease>, ToolError> {
    match reply {
        Reply::Leases(outcome) => outcome.map_err(lease_error),
        other => unreachable_reply(request, &other),
    }
}

pub async fn run(
    tools: &Toolbox,
    args: Args<'_>,
    budget: OutputBudget,
) -> Result<ToolOutput, ToolError> {
    let output = match args {
        Args::Reserve {
            actor,
            paths,
            ttl_ms,
            exclusive,
            reason,
            idempotency_key,
        } => {
            let idempotency = idempotency_key.map(|key| Idempotency {
                key: (*key).into(),
                request_hash: reserve_hash(&paths, ttl_ms, exclusive, &reason),
            });
            let op = LeaseOp::Reserve {
                paths,
                ttl_ms,
                exclusive,
                reason: (*reason).into(),
                idempotency,
            };
            reserve(tools, &actor, op).await?
        }
        Args::Release { actor, paths, ids } => {
            let project = project_of(tools, &actor).await?;
            let reply =
                lease_call(tools, project, &actor.name, LeaseOp::Release { paths, ids }).await?;
            Output::Released(leases_of(reply, "Release")?)
        }
        Args::Renew {
            actor,
            paths,
            ids,
            extend_ms,
        } => {
            let project = project_of(tools, &actor).await?;
            let op = LeaseOp::Renew {
                paths,
                ids,
                extend_ms,
            };
            Output::Renewed(leases_of(
                lease_call(tools, project, &actor.name, op).await?,
                "Renew",
            )?)
        }
        Args::Check { actor, paths } => {
            let project = project_of(tools, &actor).await?;
            match lease_call(tools, project, &actor.name, LeaseOp::Check { paths }).await? {
                Reply::Checked(checks) => Output::Checked(checks),
                other => unreachable_reply("Check", &other),
            }
        }
        Args::List {
            project_id,
            agent,
            include_inactive,
            limit,
        } => list(tools, project_id, agent.as_deref(), include_inactive, limit).await?,
        Args::ForceRelease { actor, id, note } => force_release(tools, actor, id, note).await?,
    };
    fit(output, budget)
}

async fn reserve(tools: &Toolbox, actor: &ActorArgs<'_>, op: LeaseOp) -> Result<Output, ToolError> {
    let project = project_of(tools, actor).await?;
    match lease_call(tools, project, &actor.name, op).await? {
        Reply::Reserved(Ok((granted, conflicts))) => Ok(Output::Reserved { granted, conflicts }),
        Reply::Reserved(Err(error)) => Err(lease_error(error)),
        other => unreachable_reply("Reserve", &other),
    }
}

/// A project's reservations, or one agent's of them.
async fn list(
    tools: &Toolbox,
    project_id: Uuid,
    agent: Option<&str>,
    include_inactive: bool,
    limit: usize,
) -> Result<Output, ToolError> {
    let op = LeaseOp::List {
        only_agent: agent.is_some(),
        include_inactive,
        limit,
    };
    let reply = lease_call(tools, project_id, agent.unwrap_or(""), op).await?;
    Ok(Output::Listed {
        project_id,
        leases: leases_of(reply, "List")?,
        now_ms: now_ms(),
    })
}

/// What one listed lease costs in a result at most, besides its text: raw and escaped.
const LEASE_FRAME_BYTES: usize = 400;

/// What a lease costs in a result: its texts, raw and escaped inside the `text` string.
fn lease_bytes(lease: &Lease) -> usize {
    LEASE_FRAME_BYTES
        + both_quoted_len(&lease.agent)
        + both_quoted_len(&lease.path)
        + both_quoted_len(&lease.reason)
}

/// Keeps a result within the response's budget: a listing is cut (newest first stay);
/// any other answer that does not fit is an error, before anything is sent.
fn fit(output: Output, budget: OutputBudget) -> Result<ToolOutput, ToolError> {
    let mut used = 0usize;
    let mut output = output;
    if let Output::Listed { leases, .. } = &mut output {
        let keep = leases
            .iter()
            .position(|lease| {
                used += lease_bytes(lease);
                used > budget.bytes
            })
            .unwrap_or(leases.len());
        leases.truncate(keep.max(usize::from(budget.at_least_one)));
        return Ok(ToolOutput::Reservations(output));
    }
    let conflicts = |checks: &[PathConflicts]| -> usize {
        checks
            .iter()
            .map(|c| {
                LEASE_FRAME_BYTES
                    + both_quoted_len(&c.path)
                    + c.holders.iter().map(lease_bytes).sum::<usize>()
            })
            .sum()
    };
    used = match &output {
        Output::Reserved {
            granted,
            conflicts: c,
        } => granted.iter().map(lease_bytes).sum::<usize>() + conflicts(c),
        Output::Released(leases) | Output::Renewed(leases) => leases.iter().map(lease_bytes).sum(),
        Output::Checked(checks) => conflicts(checks),
        Output::Forced { lease, .. } => lease_bytes(lease),
        Output::Listed { .. } => 0,
    };
    if used > budget.bytes {
        return Err(ToolError::ListDoesNotFit);
    }
    Ok(ToolOutput::Reservations(output))
}

/// Releases another agent's lease once its holder has been inactive long enough, then tells
/// the holder who released it and why.
async fn force_release(
    tools: &Toolbox,
    actor: ActorArgs<'_>,
    id: u64,
    note: Option<Cow<'_, str>>,
) -> Result<Output, ToolError> {
    let project = project_of(tools, &actor).await?;
    let holder = leases_of(
        lease_call(tools, project, &actor.name, LeaseOp::Holder { id }).await?,
        "Holder",
    )?;
    let Some(lease) = holder.into_iter().next() else {
        return Err(ToolError::LeaseNotFound(format!(
            "no active reservation with id {id}"
        )));
    };
    let idle_ms = idle_ms_of(tools, &lease.agent).await?;
    if idle_ms < tools.settings.stale_lease_ms {
        return Err(ToolError::HolderActive {
            holder: lease.agent.to_string(),
            idle_minutes: idle_ms / 60_000,
            required_minutes: tools.settings.stale_lease_ms / 60_000,
        });
    }
    let op = LeaseOp::ForceRelease {
        id,
        holder: lease.agent.clone(),
        expires_ms: lease.expires_ms,
    };
    let released = leases_of(
        lease_call(tools, project, &actor.name, op).await?,
        "ForceRelease",
    )?;
    let Some(lease) = released.into_iter().next() else {
        return Err(ToolError::LeaseNotFound(format!(
            "reservation {id} was released or renewed meanwhile"
        )));
    };
    let message = tell_holder(tools, &actor, project, &lease, idle_ms, note.as_deref()).await;
    Ok(Output::Forced { lease, message })
}

/// How long `holder` has been inactive; a holder that no longer exists anywhere is as stale
/// as can be.
async fn idle_ms_of(tools: &Toolbox, holder: &str) -> Result<i64, ToolError> {
    let owner = tools.shard().owner_of(holder);
    let request = Request::LastActive {
        name: holder.into(),
    };
    let last_active = match tools.shard().call(owner, request).await? {
        Reply::LastActive(last) => last.unwrap_or(0),
        other => unreachable_reply("LastActive", &other),
    };
    Ok(now_ms().saturating_sub(last_active).max(0))
}

/// Tells a lease's holder who released it and why; the id of the message, if it went out
/// (the release stands even if the holder's inbox is full: the result says so).
async fn tell_holder(
    tools: &Toolbox,
    actor: &ActorArgs<'_>,
    project: Uuid,
    lease: &Lease,
    idle_ms: i64,
    note: Option<&str>,
) -> Option<Uuid> {
    let body = format!(
        "{} released your reservation {} on {:?} (you were inactive for {} minutes).{}",
        actor.name,
        lease.id,
        lease.path,
        idle_ms / 60_000,
        note.map(|n| format!(" Note: {n}")).unwrap_or_default()
    );
    let subject = format!("File reservation released: {}", lease.path);
    let message = Outgoing {
        from_agent: &actor.name,
        agent_token: actor.token.as_deref(),
        to: vec![lease.agent.clone()],
        cc: Vec::new(),
        subject: &subject,
        body: &body,
        project_id: Some(project),
        thread_id: None,
        reply_to: None,
        importance: Importance::High,
        ack_required: false,
        idempotency_key: None,
    };
    match send(tools, message).await {
        Ok(ToolOutput::Sent { id, .. }) => Some(id),
        _ => None,
    }
}

fn write_lease(out: &mut Vec<u8>, lease: &Lease, clock: &mut Clock, with_agent: bool) {
    write_lease_head(out, lease, with_agent);
    out.extend_from_slice(b",\"expires_at\":");
    clock.write(out, lease.expires_ms);
    out.push(b'}');
}

/// `{"id", "agent" (optional), "path", "exclusive", "reason"`: what every lease answer starts
/// with (the caller adds its times and closes the object).
fn write_lease_head(out: &mut Vec<u8>, lease: &Lease, with_agent: bool) {
    out.extend_from_slice(b"{\"id\":");
    write_u64(out, lease.id);
    if with_agent {
        out.extend_from_slice(b",\"agent\":");
        write_str(out, &lease.agent);
    }
    out.extend_from_slice(b",\"path\":");
    write_str(out, &lease.path);
    out.extend_from_slice(b",\"exclusive\":");
    write_bool(out, lease.exclusive);
    out.extend_from_slice(b",\"reason\":");
    write_str(out, &lease.reason);
}

fn write_conflicts(out: &mut Vec<u8>, checks: &[&PathConflicts], clock: &mut Clock) {
    write_array(out, checks, |out, check| {
        out.extend_from_slice(b"{\"path\":");
        write_str(out, &check.path);
        out.extend_from_slice(b",\"holders\":");
        write_array(out, &check.holders, |out, lease| {
            write_lease(out, lease, clock, true)
        });
        out.extend_from_slice(b",\"more_holders\":");
        write_u64(out, check.more_holders as u64);
        out.push(b'}');
    });
}

pub fn write_json(out: &mut Vec<u8>, output: &Output) {
    let mut clock = Clock::new();
    match output {
        Output::Reserved { granted, conflicts } => {
            out.extend_from_slice(b"{\"granted\":");
            write_array(out, granted, |out, lease| {
                write_lease(out, lease, &mut clock, false)
            });
            out.extend_from_slice(b",\"conflicts\":");
            let conflicts: Vec<&PathConflicts> = conflicts.iter().collect();
            write_conflicts(out, &conflicts, &mut clock);
            out.push(b'}');
        }
        Output::Released(leases) | Output::Renewed(leases) => {
            let key: &[u8] = if matches!(output, Output::Released(_)) {
                b"{\"released\":"
            } else {
                b"{\"renewed\":"
            };
            out.extend_from_slice(key);
            write_array(out, leases, |out, lease| {
                write_lease(out, lease, &mut clock, false)
            });
            out.push(b'}');
        }
        Output::Checked(checks) => write_checked(out, checks, &mut clock),
        Output::Listed {
            project_id,
            leases,
            now_ms,
        } => write_listed(out, project_id, leases, *now_ms, &mut clock),
        Output::Forced { lease, message } => {
            out.extend_from_slice(b"{\"released\":");
            write_lease(out, lease, &mut clock, true);
            out.extend_from_slice(b",\"notified\":");
            write_bool(out, message.is_some());
            out.extend_from_slice(b",\"message_id\":");
            match message {
                Some(id) => write_uuid(out, id),
                None => out.extend_from_slice(b"null"),
            }
            out.push(b'}');
        }
    }
}

/// `file_reservation_check`'s answer: paths others hold, paths only the caller holds, and
/// clear paths.
fn write_checked(out: &mut Vec<u8>, checks: &[PathConflicts], clock: &mut Clock) {
    let held: Vec<&PathConflicts> = checks.iter().filter(|c| !c.holders.is_empty()).collect();
    let own: Vec<&PathConflicts> = checks
        .iter()
        .filter(|c| c.holders.is_empty() && !c.own.is_empty())
        .collect();
    let clear: Vec<&PathConflicts> = checks
        .iter()
        .filter(|c| c.holders.is_empty() && c.own.is_empty())
        .collect();
    out.extend_from_slice(b"{\"conflicts\":");
    write_conflicts(out, &held, clock);
    out.extend_from_slice(b",\"own\":");
    write_array(out, &own, |out, check| {
        out.extend_from_slice(b"{\"path\":");
        write_str(out, &check.path);
        out.extend_from_slice(b",\"ids\":");
        write_array(out, &check.own, |out, id| write_u64(out, *id));
        out.push(b'}');
    });
    out.extend_from_slice(b",\"clear\":");
    write_array(out, &clear, |out, check| write_str(out, &check.path));
    out.push(b'}');
}

/// A project's reservations, each in full.
fn write_listed(
    out: &mut Vec<u8>,
    project_id: &Uuid,
    leases: &[Lease],
    now_ms: i64,
    clock: &mut Clock,
) {
    out.extend_from_slice(b"{\"project_id\":");
    write_uuid(out, project_id);
    out.extend_from_slice(b",\"reservations\":");
    write_array(out, leases, |out, lease| {
        write_lease_head(out, lease, true);
        out.extend_from_slice(b",\"created\":");
        clock.write(out, lease.created_ms);
        out.extend_from_slice(b",\"expires_at\":");
        clock.write(out, lease.expires_ms);
        out.extend_from_slice(b",\"released_at\":");
        clock.write_optional(out, lease.released_ms);
        out.extend_from_slice(b",\"active\":");
        write_bool(out, lease.active(now_ms));
        out.push(b'}');
    });
    out.push(b'}');
}

fn token() -> serde_json::Value {
    serde_json::json!({"type": "string", "description": "Only with --agent-auth."})
}

fn paths_schema(max: usize) -> serde_json::Value {
    serde_json::json!({"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": max,
        "description": "Project-relative paths or gitignore-style globs (dir/ = everything under dir); scheme:name for a virtual resource."})
}

fn object_schema(properties: serde_json::Value, required: &[&str]) -> serde_json::Value {
    serde_json::json!({"type": "object", "properties": properties, "required": required})
}

pub fn reserve_definition() -> serde_json::Value {
    serde_json::json!({
        "name": "file_reservation_paths",
        "title": "Reserve files",
        "description": "Lease paths before editing them. Paths another agent holds (exclusive on either side) are not granted; the rest are. Re-reserving extends.",
        "inputSchema": object_schema(serde_json::json!({
            "agent_name": {"type": "string"},
            "paths": paths_schema(MAX_RESERVE_PATHS),
            "ttl_seconds": {"type": "integer", "minimum": MIN_SECONDS, "maximum": MAX_SECONDS, "default": 3600},
            "exclusive": {"type": "boolean", "default": true},
            "reason": {"type": "string", "maxLength": MAX_REASON_BYTES},
            "agent_token": token(),
            "idempotency_key": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_IDEMPOTENCY_KEY_BYTES,
                "description": "Retry safely: a repeat of this request by the same agent with the same key within 24 hours returns the first answer (the same leases, and who now holds the paths it refused) and changes nothing. The same key with other paths, TTL, mode or reason is an error."
            }
        }), &["agent_name", "paths"]),
        "outputSchema": object_schema(serde_json::json!({
            "granted": {"type": "array", "items": {"type": "object"}},
            "conflicts": {"type": "array", "items": {"type": "object", "description": "path, holders[{id, agent, path, exclusive, reason, expires_at}] (at most 4), more_holders"}}
        }), &["granted", "conflicts"])
    })
}

pub fn release_definition() -> serde_json::Value {
    serde_json::json!({
        "name": "release_file_reservations",
        "title": "Release reservations",
        "description": "Release the agent's active reservations: those on `paths` or with `ids`, or all of them.",
        "inputSchema": object_schema(serde_json::json!({
            "agent_name": {"type": "string"},
            "paths": {"type": "array", "items": {"type": "string"}},
            "ids": {"type": "array", "items": {"type": "integer"}},
            "agent_token": token()
        }), &["agent_name"]),
        "outputSchema": object_schema(serde_json::json!({"released": {"type": "array", "items": {"type": "object"}}}), &["released"])
    })
}

pub fn renew_definition() -> serde_json::Value {
    serde_json::json!({
        "name": "renew_file_reservations",
        "title": "Renew reservations",
        "description": "Extend the agent's active reservations (those on `paths` or with `ids`, or all) by extend_seconds.",
        "inputSchema": object_schema(serde_json::json!({
            "agent_name": {"type": "string"},
            "extend_seconds": {"type": "integer", "minimum": MIN_SECONDS, "maximum": MAX_SECONDS, "default": 1800},
            "paths": {"type": "array", "items": {"type": "string"}},
            "ids": {"type": "array", "items": {"type": "integer"}},
            "agent_token": token()
        }), &["agent_name"]),
        "outputSchema": object_schema(serde_json::json!({"renewed": {"type": "array", "items": {"type": "object"}}}), &["renewed"])
    })
}

pub fn check_definition() -> serde_json::Value {
    serde_json::json!({
        "name": "check_file_reservation_conflicts",
        "title": "Check paths before editing",
        "description": "Read-only: which of these paths another agent holds, which are the agent's own, which are clear. For pre-edit checks and pre-commit hooks.",
        "inputSchema": object_schema(serde_json::json!({
            "agent_name": {"type": "string"},
            "paths": paths_schema(MAX_CHECK_PATHS),
            "agent_token": token()
        }), &["agent_name", "paths"]),
        "outputSchema": object_schema(serde_json::json!({
            "conflicts": {"type": "array", "items": {"type": "object"}},
            "own": {"type": "array", "items": {"type": "object"}},
            "clear": {"type": "array", "items": {"type": "string"}}
        }), &["conflicts", "own", "clear"])
    })
}

pub fn list_definition() -> serde_json::Value {
    serde_json::json!({
        "name": "list_file_reservations",
        "title": "List reservations",
        "description": "A project's active reservations (or recent ones too), newest first.",
        "inputSchema": object_schema(serde_json::json!({
            "project_key": {"type": "string"},
            "project_id": {"type": "string", "format": "uuid"},
            "agent_name": {"type": "string", "description": "Only this agent's."},
            "include_inactive": {"type": "boolean", "default": false},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT, "default": 200}
        }), &[]),
        "outputSchema": object_schema(serde_json::json!({
            "project_id": {"type": "string"},
            "reservations": {"type": "array", "items": {"type": "object", "description": "id, agent, path, exclusive, reason, created, expires_at, released_at, active"}}
        }), &["project_id", "reservations"])
    })
}

pub fn force_definition() -> serde_json::Value {
    serde_json::json!({
        "name": "force_release_file_reservation",
        "title": "Force-release a stale reservation",
        "description": "Release another agent's reservation when that agent has been inactive for --stale-lease-minutes (30); the holder is sent a message saying who and why.",
        "inputSchema": object_schema(serde_json::json!({
            "agent_name": {"type": "string"},
            "id": {"type": "integer", "minimum": 1},
            "note": {"type": "string", "maxLength": MAX_NOTE_BYTES},
            "agent_token": token()
        }), &["agent_name", "id"]),
        "outputSchema": object_schema(serde_json::json!({
            "released": {"type": "object"},
            "notified": {"type": "boolean"},
            "message_id": {"type": ["string", "null"]}
        }), &["released", "notified", "message_id"])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(
        text: &str,
        parse: fn(Option<&RawValue>) -> Result<Args<'_>, ToolError>,
    ) -> Result<(), ToolError> {
        let raw: &'static RawValue =
            Box::leak(RawValue::from_string(text.to_string()).expect("json"));
        parse(Some(raw)).map(|_| ())
    }

    #[test]
    fn bounds_and_path_errors_name_the_argument() {
        let ok = r#"{"agent_name":"a","paths":["src/"]}"#;
        assert_eq!(parsed(ok, parse_reserve), Ok(()));
        let many = format!(
            r#"{{"agent_name":"a","paths":[{}]}}"#,
            vec!["\"x\""; 101].join(",")
        );
        for (text, name) in [
            (r#"{"agent_name":"a","paths":[]}"#, "paths"),
            (many.as_str(), "paths"),
            (r#"{"agent_name":"a","paths":["../etc"]}"#, "paths"),
            (r#"{"agent_name":"a","paths":["src/[ab"]}"#, "paths"),
            (
                r#"{"agent_name":"a","paths":["x"],"ttl_seconds":59}"#,
                "ttl_seconds",
            ),
            (
                r#"{"agent_name":"a","paths":["x"],"ttl_seconds":86401}"#,
                "ttl_seconds",
            ),
            (
                r#"{"agent_name":"a","paths":["x"],"exclusive":"no"}"#,
                "exclusive",
            ),
        ] {
            match parsed(text, parse_reserve) {
                Err(ToolError::InvalidArgument { name: n, problem }) => {
                    assert_eq!(n, name, "{text}: {problem}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        let long_reason = format!(
            r#"{{"agent_name":"a","paths":["x"],"reason":"{}"}}"#,
            "r".repeat(257)
        );
        assert!(parsed(&long_reason, parse_reserve).is_err());
        let error = parsed(
            r#"{"agent_name":"a","paths":["ok","a/../../b"]}"#,
            parse_reserve,
        );
        assert!(
            matches!(error, Err(ToolError::InvalidArgument { problem, .. }) if problem.contains("entry 1"))
        );
        assert_eq!(
            parsed(r#"{"agent_name":"a","ids":[1,2]}"#, parse_release),
            Ok(())
        );
        assert!(parsed(r#"{"agent_name":"a","ids":["1"]}"#, parse_release).is_err());
        assert!(parsed(r#"{"agent_name":"a","id":0}"#, parse_force).is_err());
        assert_eq!(parsed(r#"{"project_key":"p"}"#, parse_list), Ok(()));
    }
}
