//! `fetch_inbox(agent_name; after, limit, unread_only, urgent_only, thread_id,
//! include_bodies)` -> `{messages, next_after, has_more, skipped, counts}`
//!
//! Non-destructive: lists the agent's deliveries past the cursor `after` (a `seq`), oldest
//! first, drained or not, and changes nothing but the agent's `last_active`. `limit: 0` is a
//! cheap peek: only the counts and the cursor of the newest delivery.

use super::args::{object, optional_bool, optional_integer, optional_str, required_str};
use super::mail::{entry_schema, write_bool, write_counts, write_entry, write_u64, Clock, Entry};
use super::send_message::{thread_id_arg, MAX_TOKEN_BYTES};
use super::{
    unreachable_reply, OutputBudget, ToolError, ToolOutput, Toolbox, MAX_AGENT_NAME_BYTES,
};
use crate::json::{present, write_array};
use serde::Deserialize;
use serde_json::value::RawValue;
use shards::{FetchPage, FetchQuery, Reply, Request};
use std::borrow::Cow;

/// Most deliveries one call lists: a page a model can read in one go.
pub const MAX_FETCH_LIMIT: u64 = 200;
pub const DEFAULT_FETCH_LIMIT: u64 = 20;
/// What a result costs besides its messages (cursor, flags, counts), raw and escaped.
pub const PAGE_FRAME_BYTES: usize = 512;

#[derive(Debug, Default, Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    agent_name: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    agent_token: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    after: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    limit: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    unread_only: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    urgent_only: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    thread_id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    include_bodies: Option<&'a RawValue>,
}

#[derive(Debug)]
pub struct Args<'a> {
    agent_name: Cow<'a, str>,
    agent_token: Option<Cow<'a, str>>,
    after: u64,
    limit: usize,
    unread_only: bool,
    urgent_only: bool,
    thread_id: Option<Cow<'a, str>>,
    include_bodies: bool,
}

pub fn parse(arguments: Option<&RawValue>) -> Result<Args<'_>, ToolError> {
    let fields: Fields<'_> = object(arguments)?;
    Ok(Args {
        agent_name: required_str("agent_name", fields.agent_name, MAX_AGENT_NAME_BYTES)?,
        agent_token: optional_str("agent_token", fields.agent_token, MAX_TOKEN_BYTES)?,
        after: optional_integer("after", fields.after, 0, u64::MAX)?.unwrap_or(0),
        limit: optional_integer("limit", fields.limit, 0, MAX_FETCH_LIMIT)?
            .unwrap_or(DEFAULT_FETCH_LIMIT) as usize,
        unread_only: optional_bool("unread_only", fields.unread_only)?.unwrap_or(false),
        urgent_only: optional_bool("urgent_only", fields.urgent_only)?.unwrap_or(false),
        thread_id: thread_id_arg(fields.thread_id)?,
        include_bodies: optional_bool("include_bodies", fields.include_bodies)?.unwrap_or(true),
    })
}

pub async fn run(
    tools: &Toolbox,
    args: Args<'_>,
    budget: OutputBudget,
) -> Result<ToolOutput, ToolError> {
    let owner = tools.shard().owner_of(&args.agent_name);
    let request = Request::Fetch {
        actor: tools.actor(&args.agent_name, args.agent_token.as_deref()),
        query: FetchQuery {
            after: args.after,
            limit: args.limit,
            unread_only: args.unread_only,
            urgent_only: args.urgent_only,
            thread_id: args.thread_id.as_deref().map(Into::into),
            max_weight: budget.bytes.saturating_sub(PAGE_FRAME_BYTES),
            at_least_one: budget.at_least_one,
        },
    };
    let reply = tools.shard().call(owner, request).await?;
    fetched(
        tools,
        &args.agent_name,
        args.after,
        args.include_bodies,
        reply,
    )
}

/// The tool result (or error) for a `Fetched` reply; shared with `wait_for_mail`.
pub fn fetched(
    tools: &Toolbox,
    agent_name: &str,
    after: u64,
    include_bodies: bool,
    reply: Reply,
) -> Result<ToolOutput, ToolError> {
    match reply {
        Reply::Fetched(Ok(page)) if page.messages.is_empty() && page.has_more => {
            Err(ToolError::ListDoesNotFit)
        }
        Reply::Fetched(Ok(page)) => Ok(ToolOutput::Fetched {
            page,
            include_bodies,
        }),
        Reply::Fetched(Err(unknown)) => Err(ToolError::UnknownCursor {
            after,
            newest: unknown.newest,
        }),
        Reply::NoAgent => Err(tools.no_agent(agent_name)),
        Reply::TooManyWaiters { per_agent, max } => {
            Err(ToolError::TooManyWaiters { per_agent, max })
        }
        other => unreachable_reply("Fetch", &other),
    }
}

pub fn write_json(out: &mut Vec<u8>, page: &FetchPage, include_bodies: bool) {
    let mut clock = Clock::new();
    out.extend_from_slice(b"{\"messages\":");
    write_array(out, &page.messages, |out, delivery| {
        let entry = Entry {
            envelope: &delivery.envelope,
            delivery: Some(delivery),
            include_body: include_bodies,
        };
        write_entry(out, &entry, &mut clock);
    });
    out.extend_from_slice(b",\"next_after\":");
    write_u64(out, page.next_after);
    out.extend_from_slice(b",\"has_more\":");
    write_bool(out, page.has_more);
    out.extend_from_slice(b",\"skipped\":");
    write_u64(out, page.skipped);
    out.extend_from_slice(b",\"counts\":");
    write_counts(out, &page.counts);
    out.push(b'}');
}

/// The result schema of `fetch_inbox` and `wait_for_mail`.
pub fn page_schema() -> serde_json::Value {
    let count = serde_json::json!({"type": "integer"});
    serde_json::json!({
        "type": "object",
        "properties": {
            "messages": {"type": "array", "items": entry_schema()},
            "next_after": {"type": "integer", "description": "Pass as `after` next time."},
            "has_more": {"type": "boolean"},
            "skipped": {"type": "integer", "description": "Deliveries past `after` already evicted by retention."},
            "counts": {
                "type": "object",
                "properties": {"unread": count, "urgent_unread": count, "ack_pending": count},
                "required": ["unread", "urgent_unread", "ack_pending"]
            }
        },
        "required": ["messages", "next_after", "has_more", "skipped", "counts"]
    })
}

pub fn definition() -> serde_json::Value {
    serde_json::json!({
        "name": "fetch_inbox",
        "title": "Read an inbox",
        "description": "List the agent's messages after cursor `after` (a seq), oldest first, without draining them. limit 0 returns only counts and the newest cursor.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "agent_name": {"type": "string"},
                "after": {"type": "integer", "minimum": 0, "default": 0},
                "limit": {"type": "integer", "minimum": 0, "maximum": MAX_FETCH_LIMIT, "default": DEFAULT_FETCH_LIMIT},
                "unread_only": {"type": "boolean", "default": false},
                "urgent_only": {"type": "boolean", "default": false},
                "thread_id": {"type": "string"},
                "include_bodies": {"type": "boolean", "default": true},
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

    fn parse_text(text: &str) -> Result<Args<'_>, ToolError> {
        let raw: &'static RawValue =
            Box::leak(RawValue::from_string(text.to_string()).expect("json"));
        parse(Some(raw))
    }

    #[test]
    fn defaults_and_bounds() {
        let args = parse_text(r#"{"agent_name":"a"}"#).expect("valid");
        assert_eq!((args.after, args.limit), (0, 20));
        assert!(args.include_bodies && !args.unread_only && !args.urgent_only);
        assert_eq!(
            parse_text(r#"{"agent_name":"a","limit":0}"#)
                .map(|a| a.limit)
                .ok(),
            Some(0)
        );
        assert_eq!(
            parse_text(r#"{"agent_name":"a","limit":200}"#)
                .map(|a| a.limit)
                .ok(),
            Some(200)
        );
        for (bad, name) in [
            (r#""limit":201"#, "limit"),
            (r#""limit":-1"#, "limit"),
            (r#""after":-1"#, "after"),
            (r#""after":"3""#, "after"),
            (r#""unread_only":1"#, "unread_only"),
            (r#""thread_id":"a b""#, "thread_id"),
        ] {
            let text = format!(r#"{{"agent_name":"a",{bad}}}"#);
            let error = parse_text(&text).expect_err(bad);
            assert!(
                matches!(error, ToolError::InvalidArgument { name: n, .. } if n == name),
                "{bad}: {error:?}"
            );
        }
    }
}
