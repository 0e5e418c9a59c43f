//! `list_agents(project_key or project_id; active_within_s, limit)` ->
//! `{project_id, agents: [{name, id, program, model, task_description, created, last_active}]}`
//!
//! Every shard is asked in parallel for its agents of the project (at most `limit` each,
//! most recently active first), and the answers are merged.

use super::args::{object, optional_integer};
use super::create_agent::project_arg;
use super::mail::{write_bool, Clock};
use super::{unreachable_reply, OutputBudget, ToolError, ToolOutput, Toolbox};
use crate::clock::now_ms;
use crate::json::{both_quoted_len, present, write_array, write_str, write_uuid};
use serde::Deserialize;
use serde_json::value::RawValue;
use shards::{AgentSummary, Reply, Request, Ticket};
use uuid::Uuid;

pub const MAX_LIST_LIMIT: u64 = 1000;
pub const DEFAULT_LIST_LIMIT: u64 = 100;
/// Ten years: any longer window is "ever".
const MAX_ACTIVE_WITHIN_S: u64 = 10 * 365 * 24 * 3600;
/// An entry's bytes besides its text, raw and escaped, with room to spare.
const ENTRY_FRAME_BYTES: usize = 400;

#[derive(Debug, Default, Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    project_key: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    project_id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    active_within_s: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    limit: Option<&'a RawValue>,
}

#[derive(Debug)]
pub struct Args {
    project_id: Uuid,
    active_within_s: Option<u64>,
    limit: usize,
}

pub fn parse(arguments: Option<&RawValue>) -> Result<Args, ToolError> {
    let fields: Fields<'_> = object(arguments)?;
    let project_id = project_arg(fields.project_key, fields.project_id)?;
    Ok(Args {
        project_id,
        active_within_s: optional_integer(
            "active_within_s",
            fields.active_within_s,
            1,
            MAX_ACTIVE_WITHIN_S,
        )?,
        limit: optional_integer("limit", fields.limit, 1, MAX_LIST_LIMIT)?
            .unwrap_or(DEFAULT_LIST_LIMIT) as usize,
    })
}

pub async fn run(
    tools: &Toolbox,
    args: Args,
    budget: OutputBudget,
) -> Result<ToolOutput, ToolError> {
    let active_since_ms = args
        .active_within_s
        .map(|s| now_ms().saturating_sub(s as i64 * 1000));
    let shard = tools.shard();
    let mut tickets: Vec<Ticket<'_>> = Vec::with_capacity(shard.count());
    for owner in 0..shard.count() {
        let request = Request::ListAgents {
            project_id: args.project_id,
            active_since_ms,
            limit: args.limit,
        };
        tickets.push(shard.submit(owner, request).await?);
    }
    let mut agents: Vec<AgentSummary> = Vec::new();
    for ticket in tickets {
        match ticket.await {
            Reply::Agents(found) => agents.extend(found),
            other => unreachable_reply("ListAgents", &other),
        }
    }
    agents.sort_by(|a, b| {
        b.last_active_ms
            .cmp(&a.last_active_ms)
            .then_with(|| a.profile.name.cmp(&b.profile.name))
    });
    agents.truncate(args.limit);
    // Cut to what fits in the response (the first always goes).
    let mut used = 0usize;
    let fits = agents
        .iter()
        .position(|a| {
            let p = &a.profile;
            used += ENTRY_FRAME_BYTES
                + [&p.name, &p.program, &p.model, &p.task_description]
                    .iter()
                    .map(|t| both_quoted_len(t))
                    .sum::<usize>();
            used > budget.bytes
        })
        .map_or(agents.len(), |at| at.max(usize::from(budget.at_least_one)));
    let has_more = fits < agents.len();
    agents.truncate(fits);
    Ok(ToolOutput::Agents {
        project_id: args.project_id,
        agents,
        has_more,
    })
}

pub fn write_json(out: &mut Vec<u8>, project_id: &Uuid, agents: &[AgentSummary], has_more: bool) {
    let mut clock = Clock::new();
    out.extend_from_slice(b"{\"project_id\":");
    write_uuid(out, project_id);
    out.extend_from_slice(b",\"agents\":");
    write_array(out, agents, |out, agent| {
        let p = &agent.profile;
        out.extend_from_slice(b"{\"name\":");
        write_str(out, &p.name);
        out.extend_from_slice(b",\"id\":");
        write_uuid(out, &p.id);
        out.extend_from_slice(b",\"program\":");
        write_str(out, &p.program);
        out.extend_from_slice(b",\"model\":");
        write_str(out, &p.model);
        out.extend_from_slice(b",\"task_description\":");
        write_str(out, &p.task_description);
        out.extend_from_slice(b",\"created\":");
        clock.write(out, p.created_ms);
        out.extend_from_slice(b",\"last_active\":");
        clock.write(out, agent.last_active_ms);
        out.push(b'}');
    });
    out.extend_from_slice(b",\"has_more\":");
    write_bool(out, has_more);
    out.push(b'}');
}

pub fn definition() -> serde_json::Value {
    let text = serde_json::json!({"type": "string"});
    serde_json::json!({
        "name": "list_agents",
        "title": "List a project's agents",
        "description": "The agents of a project, most recently active first.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "project_key": {"type": "string"},
                "project_id": {"type": "string", "format": "uuid", "description": "Instead of project_key."},
                "active_within_s": {"type": "integer", "minimum": 1, "description": "Only agents active in the last this many seconds."},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT, "default": DEFAULT_LIST_LIMIT}
            },
            "required": []
        },
        "outputSchema": {
            "type": "object",
            "properties": {
                "project_id": {"type": "string", "format": "uuid"},
                "agents": {"type": "array", "items": {"type": "object", "properties": {
                    "name": text, "id": text, "program": text, "model": text, "task_description": text,
                    "created": {"type": "string", "format": "date-time"},
                    "last_active": {"type": "string", "format": "date-time"}
                }}},
                "has_more": {"type": "boolean"}
            },
            "required": ["project_id", "agents", "has_more"]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::create_agent::project_id_of;

    #[test]
    fn a_project_is_named_by_key_or_id() {
        let parse_text = |text: &str| {
            let raw = RawValue::from_string(text.to_string()).expect("json");
            parse(Some(&raw)).map(|a| (a.project_id, a.limit))
        };
        let id = project_id_of("p");
        assert_eq!(parse_text(r#"{"project_key":"p"}"#), Ok((id, 100)));
        assert_eq!(
            parse_text(&format!(r#"{{"project_id":"{id}","limit":1000}}"#)),
            Ok((id, 1000))
        );
        assert_eq!(
            parse_text("{}"),
            Err(ToolError::MissingArgument("project_key"))
        );
        assert!(parse_text(&format!(r#"{{"project_key":"q","project_id":"{id}"}}"#)).is_err());
        assert!(parse_text(r#"{"project_key":"p","limit":0}"#).is_err());
        assert!(parse_text(r#"{"project_key":"p","active_within_s":0}"#).is_err());
    }
}
