//! `wait_for_mail(agent_name; after, timeout_ms, urgent_only, limit)` -> the same result as
//! `fetch_inbox`.
//!
//! A long poll: answered as soon as the agent has a delivery past `after` (once it is
//! durable), or with no messages and the same cursor when the timeout passes. It never drains
//! or marks read. The waiting request holds no thread: it parks on the agent's owner shard
//! (see `shards::waiters`), which wakes it when mail arrives.

use super::args::{object, optional_bool, optional_integer, optional_str, required_str};
use super::fetch_inbox::{
    fetched, page_schema, DEFAULT_FETCH_LIMIT, MAX_FETCH_LIMIT, PAGE_FRAME_BYTES,
};
use super::send_message::MAX_TOKEN_BYTES;
use super::{OutputBudget, ToolError, ToolOutput, Toolbox, MAX_AGENT_NAME_BYTES};
use crate::json::present;
use serde::Deserialize;
use serde_json::value::RawValue;
use shards::FetchQuery;
use std::borrow::Cow;

/// The longest wait: under the 60 s many MCP clients allow a tool call.
pub const MAX_WAIT_MS: u64 = 50_000;
pub const DEFAULT_WAIT_MS: u64 = 25_000;

#[derive(Debug, Default, Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    agent_name: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    agent_token: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    after: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    timeout_ms: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    urgent_only: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    limit: Option<&'a RawValue>,
}

#[derive(Debug)]
pub struct Args<'a> {
    agent_name: Cow<'a, str>,
    agent_token: Option<Cow<'a, str>>,
    after: u64,
    timeout_ms: u64,
    urgent_only: bool,
    limit: usize,
}

pub fn parse(arguments: Option<&RawValue>) -> Result<Args<'_>, ToolError> {
    let fields: Fields<'_> = object(arguments)?;
    Ok(Args {
        agent_name: required_str("agent_name", fields.agent_name, MAX_AGENT_NAME_BYTES)?,
        agent_token: optional_str("agent_token", fields.agent_token, MAX_TOKEN_BYTES)?,
        after: optional_integer("after", fields.after, 0, u64::MAX)?.unwrap_or(0),
        timeout_ms: optional_integer("timeout_ms", fields.timeout_ms, 0, MAX_WAIT_MS)?
            .unwrap_or(DEFAULT_WAIT_MS),
        urgent_only: optional_bool("urgent_only", fields.urgent_only)?.unwrap_or(false),
        limit: optional_integer("limit", fields.limit, 1, MAX_FETCH_LIMIT)?
            .unwrap_or(DEFAULT_FETCH_LIMIT) as usize,
    })
}

pub async fn run(
    tools: &Toolbox,
    args: Args<'_>,
    budget: OutputBudget,
) -> Result<ToolOutput, ToolError> {
    let actor = tools.actor(&args.agent_name, args.agent_token.as_deref());
    let query = FetchQuery {
        after: args.after,
        limit: args.limit,
        unread_only: false,
        urgent_only: args.urgent_only,
        thread_id: None,
        max_weight: budget.bytes.saturating_sub(PAGE_FRAME_BYTES),
        at_least_one: budget.at_least_one,
    };
    let reply = tools
        .shard
        .wait_for_mail(actor, query, args.timeout_ms)
        .await;
    fetched(tools, &args.agent_name, args.after, true, reply?)
}

pub fn definition() -> serde_json::Value {
    serde_json::json!({
        "name": "wait_for_mail",
        "title": "Wait for mail",
        "description": "Wait until the agent has a message after cursor `after`, then list it like fetch_inbox (never drains). At most 50 s, under common client tool timeouts; on timeout returns no messages and the same cursor.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "agent_name": {"type": "string"},
                "after": {"type": "integer", "minimum": 0, "default": 0, "description": "next_after of the last fetch_inbox or wait_for_mail."},
                "timeout_ms": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_MS, "default": DEFAULT_WAIT_MS},
                "urgent_only": {"type": "boolean", "default": false},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_FETCH_LIMIT, "default": DEFAULT_FETCH_LIMIT},
                "agent_token": {"type": "string", "description": "Only with --agent-auth."}
            },
            "required": ["agent_name"]
        },
        "outputSchema": page_schema()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_is_bounded_and_defaults() {
        let parse_text = |text: &str| {
            let raw = RawValue::from_string(text.to_string()).expect("json");
            parse(Some(&raw)).map(|a| (a.timeout_ms, a.limit))
        };
        assert_eq!(parse_text(r#"{"agent_name":"a"}"#), Ok((25_000, 20)));
        assert_eq!(
            parse_text(r#"{"agent_name":"a","timeout_ms":0}"#),
            Ok((0, 20))
        );
        assert_eq!(
            parse_text(r#"{"agent_name":"a","timeout_ms":50000}"#),
            Ok((50_000, 20))
        );
        for bad in [r#""timeout_ms":50001"#, r#""limit":0"#, r#""limit":201"#] {
            assert!(
                parse_text(&format!(r#"{{"agent_name":"a",{bad}}}"#)).is_err(),
                "{bad}"
            );
        }
    }
}
