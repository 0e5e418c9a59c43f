//! `acknowledge_message(agent_name, message_ids)` and `mark_message_read(agent_name,
//! message_ids)` -> `{messages: [{id, read_at, acked_at}], changed, not_found}`
//!
//! Set `acked_at` (and `read_at`) or `read_at` on the agent's own deliveries. Idempotent: the
//! first time is kept. An error only when none of the ids is a delivery to the agent.

use super::args::{object, optional_str, required_str, uuid_array};
use super::mail::{write_u64, Clock};
use super::send_message::MAX_TOKEN_BYTES;
use super::{unreachable_reply, ToolError, ToolOutput, Toolbox, MAX_AGENT_NAME_BYTES};
use crate::json::{present, write_array, write_uuid};
use serde::Deserialize;
use serde_json::value::RawValue;
use shards::{Marked, Reply, Request};
use std::borrow::Cow;
use uuid::Uuid;

/// Ids one call may mark: bounds the work and the log record of one request.
pub const MAX_MARK_IDS: usize = 1000;

#[derive(Debug, Default, Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    agent_name: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    message_ids: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    agent_token: Option<&'a RawValue>,
}

#[derive(Debug)]
pub struct Args<'a> {
    agent_name: Cow<'a, str>,
    message_ids: Vec<Uuid>,
    agent_token: Option<Cow<'a, str>>,
    /// `acknowledge_message` (else `mark_message_read`).
    ack: bool,
}

pub fn parse(arguments: Option<&RawValue>, ack: bool) -> Result<Args<'_>, ToolError> {
    let fields: Fields<'_> = object(arguments)?;
    let mut message_ids = uuid_array("message_ids", fields.message_ids, MAX_MARK_IDS)?;
    let mut seen = std::collections::HashSet::with_capacity(message_ids.len());
    message_ids.retain(|id| seen.insert(*id));
    Ok(Args {
        agent_name: required_str("agent_name", fields.agent_name, MAX_AGENT_NAME_BYTES)?,
        message_ids,
        agent_token: optional_str("agent_token", fields.agent_token, MAX_TOKEN_BYTES)?,
        ack,
    })
}

pub async fn run(tools: &Toolbox, args: Args<'_>) -> Result<ToolOutput, ToolError> {
    let owner = tools.shard().owner_of(&args.agent_name);
    let request = Request::Mark {
        actor: tools.actor(&args.agent_name, args.agent_token.as_deref()),
        ids: args.message_ids,
        ack: args.ack,
    };
    match tools.shard().call(owner, request).await? {
        Reply::Marked(marked) if marked.found.is_empty() => Err(ToolError::NoneFound {
            agent: args.agent_name.into_owned(),
            count: marked.not_found.len(),
        }),
        Reply::Marked(marked) => Ok(ToolOutput::Marked(marked)),
        Reply::NoAgent => Err(tools.no_agent(&args.agent_name)),
        other => unreachable_reply("Mark", &other),
    }
}

pub fn write_json(out: &mut Vec<u8>, marked: &Marked) {
    let mut clock = Clock::new();
    out.extend_from_slice(b"{\"messages\":");
    write_array(out, &marked.found, |out, (id, read_at, acked_at)| {
        out.extend_from_slice(b"{\"id\":");
        write_uuid(out, id);
        out.extend_from_slice(b",\"read_at\":");
        clock.write_optional(out, *read_at);
        out.extend_from_slice(b",\"acked_at\":");
        clock.write_optional(out, *acked_at);
        out.push(b'}');
    });
    out.extend_from_slice(b",\"changed\":");
    write_u64(out, marked.changed as u64);
    out.extend_from_slice(b",\"not_found\":");
    write_array(out, &marked.not_found, write_uuid);
    out.push(b'}');
}

fn definition(name: &str, title: &str, description: &str) -> serde_json::Value {
    let time = serde_json::json!({"type": ["string", "null"], "format": "date-time"});
    serde_json::json!({
        "name": name,
        "title": title,
        "description": description,
        "inputSchema": {
            "type": "object",
            "properties": {
                "agent_name": {"type": "string"},
                "message_ids": {"type": "array", "items": {"type": "string", "format": "uuid"}, "minItems": 1, "maxItems": MAX_MARK_IDS},
                "agent_token": {"type": "string", "description": "Only with --agent-auth."}
            },
            "required": ["agent_name", "message_ids"]
        },
        "outputSchema": {
            "type": "object",
            "properties": {
                "messages": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}, "read_at": time, "acked_at": time}}},
                "changed": {"type": "integer"},
                "not_found": {"type": "array", "items": {"type": "string"}}
            },
            "required": ["messages", "changed", "not_found"]
        }
    })
}

pub fn acknowledge_definition() -> serde_json::Value {
    definition(
        "acknowledge_message",
        "Acknowledge messages",
        "Acknowledge (and mark read) messages delivered to the agent. Idempotent.",
    )
}

pub fn mark_read_definition() -> serde_json::Value {
    definition(
        "mark_message_read",
        "Mark messages read",
        "Mark messages delivered to the agent as read. Idempotent.",
    )
}
