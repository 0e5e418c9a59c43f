//! `get_inbox(agent_name)` -> `[{id, from, subject, body, timestamp}]`, oldest first.
//! Destructive: the owner shard hands over a page of the inbox in one step, so each message is
//! returned exactly once even when several clients drain the same inbox at once.
//!
//! A page is bounded by the bytes it takes in the response, not by the text it carries: JSON
//! escaping can multiply text several times over. Each message's cost is computed once, when
//! it is sent ([`page_weight`]), and the owner shard sums those costs while it drains.

use super::args::{object, required_str};
use super::{
    unreachable_reply, OutputBudget, ToolError, ToolOutput, Toolbox, MAX_AGENT_NAME_BYTES,
};
use crate::clock::write_rfc3339_ms;
use crate::json::{both_quoted_len, present, quoted_len, twice_quoted_len, write_str, write_uuid};
use serde::Deserialize;
use serde_json::value::RawValue;
use shards::{Envelope, Reply, Request, SharedEnvelope};
use std::borrow::Cow;
use std::sync::OnceLock;
use uuid::Uuid;

/// `[]`, raw and escaped with its quotes: what a page costs besides its messages.
const PAGE_FRAME_BYTES: usize = 2 + 4;

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

pub async fn run(
    tools: &Toolbox,
    args: Args<'_>,
    budget: OutputBudget,
) -> Result<ToolOutput, ToolError> {
    let owner = tools.shard().owner_of(&args.agent_name);
    let request = Request::Drain {
        name: (*args.agent_name).into(),
        max_weight: budget.bytes.saturating_sub(PAGE_FRAME_BYTES),
        at_least_one: budget.at_least_one,
    };
    match tools.shard().call(owner, request).await? {
        Reply::Drained(Some(page)) if page.messages.is_empty() && page.left > 0 => {
            Err(ToolError::PageDoesNotFit { left: page.left })
        }
        Reply::Drained(Some(page)) => Ok(ToolOutput::Inbox(page.messages)),
        Reply::Drained(None) => Err(ToolError::UnknownAgent(args.agent_name.into_owned())),
        other => unreachable_reply("Drain", &other),
    }
}

/// What a message with these fields costs in a drained page: its entry in the result array,
/// raw (`structuredContent`) and escaped (inside the `text` string), with a comma in each.
pub fn page_weight(from: &str, subject: &str, body: &str) -> usize {
    let (frame_raw, frame_escaped) = entry_frame_bytes();
    // Each field once quoted, and inside the text string without that string's own quotes.
    let field = |text: &str| both_quoted_len(text) - 2;
    frame_raw + frame_escaped + 2 + field(from) + field(subject) + field(body)
}

/// The bytes of an entry besides its three text fields, raw and escaped; measured once by
/// writing an entry whose fields are empty, so it follows `write_entry` whatever it writes.
fn entry_frame_bytes() -> (usize, usize) {
    static FRAME: OnceLock<(usize, usize)> = OnceLock::new();
    *FRAME.get_or_init(|| {
        let empty = Envelope::new(Uuid::nil(), Uuid::nil(), 0, "", "", "");
        let mut entry = Vec::new();
        write_entry(&mut entry, &empty, &mut String::new());
        let entry = String::from_utf8(entry).unwrap_or_default();
        let fields_raw = 3 * quoted_len("");
        let fields_escaped = 3 * (twice_quoted_len("") - 2);
        (
            entry.len() - fields_raw,
            quoted_len(&entry) - 2 - fields_escaped,
        )
    })
}

pub fn write_json(out: &mut Vec<u8>, messages: &[SharedEnvelope]) {
    let mut timestamp = String::with_capacity(24);
    out.push(b'[');
    for (index, message) in messages.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_entry(out, message, &mut timestamp);
    }
    out.push(b']');
}

fn write_entry(out: &mut Vec<u8>, message: &Envelope, timestamp: &mut String) {
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
    write_rfc3339_ms(timestamp, message.timestamp_ms);
    out.extend_from_slice(timestamp.as_bytes());
    out.extend_from_slice(b"\"}");
}

pub fn definition() -> serde_json::Value {
    serde_json::json!({
        "name": "get_inbox",
        "title": "Drain an inbox",
        "description": "Return and remove the messages waiting for an agent, oldest first; each message is returned exactly once. One call returns at most 8 MiB; if more waits, call again.",
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
    fn page_weights_add_up_to_the_bytes_sent() {
        let texts = [
            ("Blue", "", ""),
            ("A\"b", "s\\", "line\nnext\t\u{1}é→"),
            ("x", &"\"".repeat(100), &"\u{2}".repeat(50)),
        ];
        let messages: Vec<SharedEnvelope> = texts
            .iter()
            .enumerate()
            .map(|(n, (from, subject, body))| {
                Arc::new(Envelope::new(
                    Uuid::from_u128(n as u128),
                    Uuid::nil(),
                    1_795_608_371_123,
                    from,
                    subject,
                    body,
                ))
            })
            .collect();
        let mut out = Vec::new();
        write_json(&mut out, &messages);
        let json = String::from_utf8(out).expect("utf8");
        let sent = json.len() + quoted_len(&json);
        let weighed: usize = PAGE_FRAME_BYTES
            + texts
                .iter()
                .map(|(from, subject, body)| page_weight(from, subject, body))
                .sum::<usize>();
        // Exact but for the first entry's comma, which is counted and not sent.
        assert_eq!(weighed, sent + 2, "{json}");
    }

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
