//! `get_inbox(agent_name)` -> `[{id, from, subject, body, timestamp, seq, thread_id, reply_to,
//! importance, ack_required, cc}]`, oldest first.
//! Destructive: the owner shard marks a page of the inbox drained (and read) in one step, so
//! each message is returned exactly once even when several clients drain the same inbox at
//! once. Drained mail stays readable through `fetch_inbox` until retention evicts it.
//!
//! A page is bounded by the bytes it takes in the response (see [`super::mail`]).

use super::args::{object, optional_str, required_str};
use super::mail::{write_inbox_entry, Clock};
use super::send_message::MAX_TOKEN_BYTES;
use super::{
    unreachable_reply, OutputBudget, ToolError, ToolOutput, Toolbox, MAX_AGENT_NAME_BYTES,
};
use crate::json::{present, write_array};
use serde::Deserialize;
use serde_json::value::RawValue;
use shards::{DeliveryView, Reply, Request};
use std::borrow::Cow;

/// `[]`, raw and escaped with its quotes: what a page costs besides its messages.
const PAGE_FRAME_BYTES: usize = 2 + 4;

#[derive(Debug, Default, Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    agent_name: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    agent_token: Option<&'a RawValue>,
}

#[derive(Debug)]
pub struct Args<'a> {
    agent_name: Cow<'a, str>,
    agent_token: Option<Cow<'a, str>>,
}

pub fn parse(arguments: Option<&RawValue>) -> Result<Args<'_>, ToolError> {
    let fields: Fields<'_> = object(arguments)?;
    Ok(Args {
        agent_name: required_str("agent_name", fields.agent_name, MAX_AGENT_NAME_BYTES)?,
        agent_token: optional_str("agent_token", fields.agent_token, MAX_TOKEN_BYTES)?,
    })
}

pub async fn run(
    tools: &Toolbox,
    args: Args<'_>,
    budget: OutputBudget,
) -> Result<ToolOutput, ToolError> {
    let owner = tools.shard().owner_of(&args.agent_name);
    let request = Request::Drain {
        actor: tools.actor(&args.agent_name, args.agent_token.as_deref()),
        max_weight: budget.bytes.saturating_sub(PAGE_FRAME_BYTES),
        at_least_one: budget.at_least_one,
    };
    match tools.shard().call(owner, request).await? {
        Reply::Drained(page) if page.messages.is_empty() && page.left > 0 => {
            Err(ToolError::PageDoesNotFit { left: page.left })
        }
        Reply::Drained(page) => Ok(ToolOutput::Inbox(page.messages)),
        Reply::NoAgent => Err(tools.no_agent(&args.agent_name)),
        other => unreachable_reply("Drain", &other),
    }
}

pub fn write_json(out: &mut Vec<u8>, messages: &[DeliveryView]) {
    let mut clock = Clock::new();
    write_array(out, messages, |out, message| {
        write_inbox_entry(out, message, &mut clock)
    });
}

pub fn definition() -> serde_json::Value {
    serde_json::json!({
        "name": "get_inbox",
        "title": "Drain an inbox",
        "description": "Return the agent's undrained messages, oldest first, and mark them drained: each is returned exactly once (fetch_inbox reads without draining). At most 8 MiB per call; call again for more.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "agent_name": {"type": "string"},
                "agent_token": {"type": "string", "description": "Only with --agent-auth."}
            },
            "required": ["agent_name"]
        },
        "outputSchema": {
            "type": "object",
            "properties": {
                "messages": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string", "format": "uuid"},
                            "from": {"type": "string"},
                            "subject": {"type": "string"},
                            "body": {"type": "string"},
                            "timestamp": {"type": "string", "format": "date-time"},
                            "seq": {"type": "integer"},
                            "thread_id": {"type": "string"},
                            "reply_to": {"type": ["string", "null"]},
                            "importance": {"type": "string"},
                            "ack_required": {"type": "boolean"},
                            "cc": {"type": "array", "items": {"type": "string"}}
                        },
                        "required": ["id", "from", "subject", "body", "timestamp"]
                    }
                }
            },
            "required": ["messages"]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shards::{Envelope, Kind};
    use std::sync::Arc;
    use uuid::Uuid;

    #[test]
    fn inbox_json_keeps_the_seed_fields_and_adds_the_new_ones() {
        let message = Arc::new(Envelope::new(
            Uuid::from_u128(1),
            Uuid::nil(),
            1_795_608_371_123,
            "A\"b",
            "s",
            "line\nnext",
        ));
        let view = DeliveryView {
            seq: 4,
            envelope: message,
            kind: Kind::To,
            read_at: Some(0),
            acked_at: None,
            drained: true,
        };
        let mut out = Vec::new();
        write_json(&mut out, &[view]);
        let value: serde_json::Value = serde_json::from_slice(&out).expect("valid json");
        assert_eq!(
            value,
            serde_json::json!([{
                "id": "00000000-0000-0000-0000-000000000001",
                "from": "A\"b",
                "subject": "s",
                "body": "line\nnext",
                "timestamp": "2026-11-25T12:06:11.123Z",
                "seq": 4,
                "thread_id": "00000000-0000-0000-0000-000000000001",
                "reply_to": null,
                "importance": "normal",
                "ack_required": false,
                "cc": []
            }])
        );
    }
}
