//! `get_thread(agent_name, thread_id; after, limit, include_bodies)` ->
//! `{thread_id, messages, participants, has_more, next_after}`
//!
//! A thread as this agent took part in it: the messages it sent or received (and still
//! retains), oldest first, with everyone who appears on them. Answered by the agent's owner
//! alone, from the agent's delivery log and sent list.

use super::args::{object, optional_bool, optional_integer, optional_parsed, optional_str};
use super::mail::{entry_schema, write_bool, write_entry, Clock, Entry};
use super::send_message::{thread_id_arg, MAX_TOKEN_BYTES};
use super::{
    unreachable_reply, OutputBudget, ToolError, ToolOutput, Toolbox, MAX_AGENT_NAME_BYTES,
};
use crate::json::{present, write_array, write_str, write_uuid};
use serde::Deserialize;
use serde_json::value::RawValue;
use shards::{Reply, Request, ThreadPage, ThreadQuery};
use std::borrow::Cow;
use uuid::Uuid;

pub const MAX_THREAD_LIMIT: u64 = 500;
pub const DEFAULT_THREAD_LIMIT: u64 = 50;
/// What a result costs besides its messages (ids, flags, participants are counted apart).
const PAGE_FRAME_BYTES: usize = 512;

#[derive(Debug, Default, Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    agent_name: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    thread_id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    after: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    limit: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    include_bodies: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    agent_token: Option<&'a RawValue>,
}

#[derive(Debug)]
pub struct Args<'a> {
    agent_name: Cow<'a, str>,
    thread_id: Cow<'a, str>,
    after: Option<Uuid>,
    limit: usize,
    include_bodies: bool,
    agent_token: Option<Cow<'a, str>>,
}

pub fn parse(arguments: Option<&RawValue>) -> Result<Args<'_>, ToolError> {
    let fields: Fields<'_> = object(arguments)?;
    let agent_name =
        super::args::required_str("agent_name", fields.agent_name, MAX_AGENT_NAME_BYTES)?;
    let thread_id =
        thread_id_arg(fields.thread_id)?.ok_or(ToolError::MissingArgument("thread_id"))?;
    Ok(Args {
        agent_name,
        thread_id,
        after: optional_parsed("after", fields.after, "a message id (a UUID)")?,
        limit: optional_integer("limit", fields.limit, 1, MAX_THREAD_LIMIT)?
            .unwrap_or(DEFAULT_THREAD_LIMIT) as usize,
        include_bodies: optional_bool("include_bodies", fields.include_bodies)?.unwrap_or(true),
        agent_token: optional_str("agent_token", fields.agent_token, MAX_TOKEN_BYTES)?,
    })
}

pub async fn run(
    tools: &Toolbox,
    args: Args<'_>,
    budget: OutputBudget,
) -> Result<ToolOutput, ToolError> {
    let owner = tools.shard().owner_of(&args.agent_name);
    let request = Request::Thread {
        actor: tools.actor(&args.agent_name, args.agent_token.as_deref()),
        query: ThreadQuery {
            thread_id: (*args.thread_id).into(),
            after: args.after,
            limit: args.limit,
            max_weight: budget.bytes.saturating_sub(PAGE_FRAME_BYTES),
            at_least_one: budget.at_least_one,
        },
    };
    match tools.shard().call(owner, request).await? {
        Reply::Thread(Some(page)) if page.messages.is_empty() && page.has_more => {
            Err(ToolError::ListDoesNotFit)
        }
        Reply::Thread(Some(page)) => Ok(ToolOutput::Thread {
            thread_id: (*args.thread_id).into(),
            page,
            include_bodies: args.include_bodies,
        }),
        Reply::Thread(None) => Err(ToolError::UnknownThread {
            agent: args.agent_name.into_owned(),
            thread_id: args.thread_id.into_owned(),
        }),
        Reply::NoAgent => Err(tools.no_agent(&args.agent_name)),
        other => unreachable_reply("Thread", &other),
    }
}

pub fn write_json(out: &mut Vec<u8>, thread_id: &str, page: &ThreadPage, include_bodies: bool) {
    let mut clock = Clock::new();
    out.extend_from_slice(b"{\"thread_id\":");
    write_str(out, thread_id);
    out.extend_from_slice(b",\"messages\":");
    write_array(out, &page.messages, |out, item| {
        let entry = Entry {
            envelope: &item.envelope,
            delivery: item.delivery.as_ref(),
            include_body: include_bodies,
        };
        write_entry(out, &entry, &mut clock);
    });
    out.extend_from_slice(b",\"participants\":");
    write_array(out, &page.participants, |out, name| write_str(out, name));
    out.extend_from_slice(b",\"has_more\":");
    write_bool(out, page.has_more);
    out.extend_from_slice(b",\"next_after\":");
    match page.messages.last() {
        Some(last) if page.has_more => write_uuid(out, &last.envelope.id),
        _ => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

pub fn definition() -> serde_json::Value {
    serde_json::json!({
        "name": "get_thread",
        "title": "Read a thread",
        "description": "The messages of a thread that the agent sent or received, oldest first, with the participants' names.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "agent_name": {"type": "string"},
                "thread_id": {"type": "string"},
                "after": {"type": "string", "format": "uuid", "description": "next_after of the previous page."},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_THREAD_LIMIT, "default": DEFAULT_THREAD_LIMIT},
                "include_bodies": {"type": "boolean", "default": true},
                "agent_token": {"type": "string", "description": "Only with --agent-auth."}
            },
            "required": ["agent_name", "thread_id"]
        },
        "outputSchema": {
            "type": "object",
            "properties": {
                "thread_id": {"type": "string"},
                "messages": {"type": "array", "items": entry_schema()},
                "participants": {"type": "array", "items": {"type": "string"}},
                "has_more": {"type": "boolean"},
                "next_after": {"type": ["string", "null"]}
            },
            "required": ["thread_id", "messages", "participants", "has_more", "next_after"]
        }
    })
}
