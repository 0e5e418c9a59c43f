//! `get_inbox(agent_name)` -> `[{id, from, subject, body, timestamp}]`, oldest first.
//! Destructive: the owner shard hands over the whole inbox in one step, so each message is
//! returned exactly once even when several clients drain the same inbox at once.

use super::args::{object, required_str};
use super::create_agent::unreachable_reply;
use super::{ToolError, ToolOutput, Toolbox, MAX_AGENT_NAME_BYTES};
use crate::clock::write_rfc3339_ms;
use crate::mcp::json::{present, write_str, write_uuid};
use serde::Deserialize;
use serde_json::value::RawValue;
use shards::{Reply, Request, SharedEnvelope};
use std::borrow::Cow;

/// Text bytes one `get_inbox` returns at most (always at least one message): bounds the
/// response (which carries the messages twice) no matter how much mail waits. The rest stays
/// queued, oldest first, for the next call.
pub const MAX_DRAIN_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Default, Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    agent_name: Option<&'a RawValue>,
}

#[derive(Debug)]
pub struct Args<'a> {
    agent_name: Cow<'a, str>,
}

pub fn parse(arguments: Option<&RawValue>) -> Result<Args<'_>, ToolError> {
    let fields: Fields<'_> = object(arguments)?;
    Ok(Args {
        agent_name: required_str("agent_name", fields.agent_name, MAX_AGENT_NAME_BYTES)?,
    })
}

pub async fn run(tools: &Toolbox, args: Args<'_>) -> Result<ToolOutput, ToolError> {
    let owner = tools.shard().owner_of(&args.agent_name);
    let request = Request::Drain {
        name: (*args.agent_name).into(),
        max_bytes: MAX_DRAIN_BYTES,
    };
    match tools.shard().call(owner, request).await? {
        Reply::Drained(Some(messages)) => Ok(ToolOutput::Inbox(messages)),
        Reply::Drained(None) => Err(ToolError::UnknownAgent(args.agent_name.into_owned())),
        other => unreachable_reply("Drain", &other),
    }
}

pub fn write_json(out: &mut Vec<u8>, messages: &[SharedEnvelope]) {
    let mut timestamp = String::with_capacity(24);
    out.push(b'[');
    for (index, message) in messages.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        write_uuid(out, &message.id);
        out.extend_from_slice(b",\"from\":");
        write_str(out, message.from());
        out.extend_from_slice(b",\"subject\":");
        write_str(out, message.subject());
        out.extend_from_slice(b",\"body\":");
        write_str(out, message.body());
        out.extend_from_slice(b",\"timestamp\":\"");
        timestamp.clear();
        write_rfc3339_ms(&mut timestamp, message.timestamp_ms);
        out.extend_from_slice(timestamp.as_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.push(b']');
}

pub fn definition() -> serde_json::Value {
    serde_json::json!({
        "name": "get_inbox",
        "title": "Drain an inbox",
        "description": "Return and remove the messages waiting for an agent, oldest first; each message is returned exactly once. One call returns at most 8 MiB of text; if more waits, call again.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "agent_name": {"type": "string", "description": "The agent whose inbox to drain."}
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
                            "timestamp": {"type": "string", "format": "date-time"}
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
    use shards::Envelope;
    use std::sync::Arc;
    use uuid::Uuid;

    #[test]
    fn inbox_json_shape() {
        let message = Arc::new(Envelope::new(
            Uuid::from_u128(1),
            Uuid::nil(),
            1_795_608_371_123,
            "A\"b",
            "s",
            "line\nnext",
        ));
        let mut out = Vec::new();
        write_json(&mut out, &[message]);
        let value: serde_json::Value = serde_json::from_slice(&out).expect("valid json");
        assert_eq!(
            value,
            serde_json::json!([{
                "id": "00000000-0000-0000-0000-000000000001",
                "from": "A\"b",
                "subject": "s",
                "body": "line\nnext",
                "timestamp": "2026-11-25T12:06:11.123Z"
            }])
        );
    }
}
