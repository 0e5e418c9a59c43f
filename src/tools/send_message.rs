//! `send_message(from_agent, to[]; subject, body, project_id)` -> `{id, status}`
//!
//! All or nothing: the sender and every recipient must exist, and every recipient's inbox
//! must have room, before anything is enqueued. With one owner shard that is one atomic
//! (logged) step; with several, two: every owner *prepares* (checks, logs, holds the message
//! invisibly) and, once all have granted, every owner *commits* (makes it visible); a refusal
//! aborts the others. The reply is sent only after every owner has made the message visible,
//! so a `get_inbox` that follows it always sees it, and only once every owner's record is
//! durable, so a crash cannot lose it for some recipients (see docs/ARCHITECTURE.md).

use super::args::{object, optional_parsed, optional_str, required_str, string_array};
use super::get_inbox::page_weight;
use super::{
    unreachable_reply, ToolError, ToolOutput, Toolbox, MAX_AGENT_NAME_BYTES, MAX_RECIPIENTS,
};
use crate::clock::now_ms;
use crate::json::{present, write_uuid};
use serde::Deserialize;
use serde_json::value::RawValue;
use shards::{CallError, Envelope, Reply, Request, Shard, SharedEnvelope, Ticket, Undeliverable};
use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, Default, Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    from_agent: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    to: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    subject: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    body: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    project_id: Option<&'a RawValue>,
}

#[derive(Debug)]
pub struct Args<'a> {
    from_agent: Cow<'a, str>,
    to: Vec<Cow<'a, str>>,
    subject: Cow<'a, str>,
    body: Cow<'a, str>,
    project_id: Option<Uuid>,
}

/// Subject and body are bounded by the HTTP body limit; this only guards the type.
const UNBOUNDED_TEXT: usize = usize::MAX;

pub fn parse(arguments: Option<&RawValue>) -> Result<Args<'_>, ToolError> {
    let fields: Fields<'_> = object(arguments)?;
    let from_agent = required_str("from_agent", fields.from_agent, MAX_AGENT_NAME_BYTES)?;
    let mut to = string_array("to", fields.to, MAX_RECIPIENTS, MAX_AGENT_NAME_BYTES)?;
    // Duplicate recipients get one copy; the first occurrence keeps its place. A set keeps
    // this linear for the longest lists.
    let mut seen = std::collections::HashSet::with_capacity(to.len());
    to.retain(|name| seen.insert(name.clone()));
    Ok(Args {
        from_agent,
        to,
        subject: optional_str("subject", fields.subject, UNBOUNDED_TEXT)?.unwrap_or_default(),
        body: optional_str("body", fields.body, UNBOUNDED_TEXT)?.unwrap_or_default(),
        project_id: optional_parsed("project_id", fields.project_id, "a UUID")?,
    })
}

pub async fn run(tools: &Toolbox, args: Args<'_>) -> Result<ToolOutput, ToolError> {
    // The size the inbox byte caps count: the text the envelope will hold.
    let payload_bytes = args.from_agent.len() + args.subject.len() + args.body.len();
    let max_inbox_bytes = tools.shard().inbox_limits().bytes;
    if payload_bytes > max_inbox_bytes {
        return Err(ToolError::MessageTooLarge {
            bytes: payload_bytes,
            max_inbox_bytes,
        });
    }
    let recipients: Vec<Box<str>> = args.to.iter().map(|name| (**name).into()).collect();
    // Room in the search feed, taken before anything is delivered: a send waits here (and its
    // client with it) while the indexer is behind, instead of memory growing.
    let index_bytes = payload_bytes + recipients.iter().map(|name| name.len()).sum::<usize>();
    // Held until the reply: the owner charges the document again when it hands it over
    // (once durable), and this is given back after, so the bound holds with nothing owed.
    let _room = tools.search_docs.reserve(index_bytes).await?;
    let sender_project = sender_project(tools, &args.from_agent).await?;

    let now = now_ms();
    let id = tools.ids.borrow_mut().uuid_v7(now);
    let weight = page_weight(&args.from_agent, &args.subject, &args.body);
    let envelope = Envelope::new(
        id,
        args.project_id.unwrap_or(sender_project),
        now,
        &args.from_agent,
        &args.subject,
        &args.body,
    )
    .with_weight(weight);
    let plan = Plan {
        groups: group_by_owner(tools.shard(), &recipients),
        envelope: Arc::new(envelope),
        recipients,
    };
    let only_here = plan.groups.len() == 1 && plan.groups[0].0 == tools.shard().id();
    let delivery = deliver(Rc::clone(&tools.shard), plan);
    if only_here {
        // One synchronous step on this shard: nothing can interrupt it halfway.
        return delivery.await.map(|id| ToolOutput::Sent { id });
    }
    // Steps on other shards run to the end as a task of their own, even if this request is
    // dropped (its connection gone, the server stopping): a prepared message is then never
    // left pending.
    match glommio::spawn_local(delivery).detach().await {
        Some(outcome) => outcome.map(|id| ToolOutput::Sent { id }),
        None => Err(ToolError::Unavailable(CallError::PeerClosed {
            owner: tools.shard().id(),
        })),
    }
}

/// A message ready to deliver: everything the delivery needs, owned, so it can outlive the
/// request that made it.
struct Plan {
    /// Recipients grouped by owner shard, in first-seen order.
    groups: Vec<(usize, Vec<Box<str>>)>,
    envelope: SharedEnvelope,
    /// Every recipient in request order (duplicates removed).
    recipients: Vec<Box<str>>,
}

fn group_by_owner(shard: &Shard, recipients: &[Box<str>]) -> Vec<(usize, Vec<Box<str>>)> {
    let mut groups: Vec<(usize, Vec<Box<str>>)> =
        Vec::with_capacity(shard.count().min(recipients.len()));
    for name in recipients {
        let owner = shard.owner_of(name);
        match groups.iter_mut().find(|(o, _)| *o == owner) {
            Some((_, names)) => names.push(name.clone()),
            None => groups.push((owner, vec![name.clone()])),
        }
    }
    groups
}

/// All or nothing: with one owner, its delivery checks and enqueues in one step; with several,
/// prepare everywhere, then commit everywhere (or abort where granted). The owners index the
/// message once their records are durable, so search never shows mail that was refused or
/// that a crash lost.
async fn deliver(shard: Rc<Shard>, plan: Plan) -> Result<Uuid, ToolError> {
    let id = plan.envelope.id;
    if let [(owner, names)] = &plan.groups[..] {
        let request = Request::Deliver {
            names: names.clone(),
            envelope: Arc::clone(&plan.envelope),
        };
        return match shard.call(*owner, request).await? {
            Reply::Delivered(Ok(count)) => {
                debug_assert_eq!(count, plan.recipients.len(), "one copy per recipient");
                Ok(id)
            }
            Reply::Delivered(Err(refused)) => Err(refused_error(&plan.recipients, refused)),
            other => unreachable_reply("Deliver", &other),
        };
    }
    prepare_all(&shard, &plan).await?;
    let mut commits: Vec<Ticket<'_>> = Vec::with_capacity(plan.groups.len());
    for (owner, _) in &plan.groups {
        commits.push(shard.submit(*owner, Request::Commit { id }).await?);
    }
    for ticket in commits {
        match ticket.await {
            Reply::Settled => {}
            other => unreachable_reply("Commit", &other),
        }
    }
    tracing::debug!(from = %plan.envelope.from(), owners = plan.groups.len(), "message delivered");
    Ok(id)
}

/// Prepares the message on every owner, in parallel. If any owner refuses, the others abort
/// it and the error names every recipient at fault.
async fn prepare_all(shard: &Shard, plan: &Plan) -> Result<(), ToolError> {
    // Bounded by MAX_RECIPIENTS, far below u16::MAX.
    let owners = u16::try_from(plan.groups.len()).unwrap_or(u16::MAX);
    let mut tickets: Vec<Ticket<'_>> = Vec::with_capacity(plan.groups.len());
    for (owner, _) in &plan.groups {
        let request = Request::Prepare {
            envelope: Arc::clone(&plan.envelope),
            recipients: plan.recipients.clone(),
            owners,
        };
        tickets.push(shard.submit(*owner, request).await?);
    }
    let mut granted: Vec<usize> = Vec::with_capacity(plan.groups.len());
    let (mut unknown, mut full): (Vec<Box<str>>, Vec<Box<str>>) = (Vec::new(), Vec::new());
    for (ticket, (owner, _)) in tickets.into_iter().zip(&plan.groups) {
        match ticket.await {
            Reply::Prepared(Ok(_)) => granted.push(*owner),
            Reply::Prepared(Err(Undeliverable::UnknownRecipients(names))) => unknown.extend(names),
            Reply::Prepared(Err(Undeliverable::InboxFull(names))) => full.extend(names),
            other => unreachable_reply("Prepare", &other),
        }
    }
    let refusal = if !unknown.is_empty() {
        Undeliverable::UnknownRecipients(unknown)
    } else if !full.is_empty() {
        Undeliverable::InboxFull(full)
    } else {
        return Ok(());
    };
    let mut aborts: Vec<Ticket<'_>> = Vec::with_capacity(granted.len());
    for owner in granted {
        let request = Request::Abort {
            id: plan.envelope.id,
        };
        aborts.push(shard.submit(owner, request).await?);
    }
    for ticket in aborts {
        ticket.await;
    }
    Err(refused_error(&plan.recipients, refusal))
}

/// The sender's project, from this shard's cache or from the sender's owner.
async fn sender_project(tools: &Toolbox, from_agent: &str) -> Result<Uuid, ToolError> {
    if let Some(project) = tools.known.borrow().project_of(from_agent) {
        return Ok(project);
    }
    let owner = tools.shard().owner_of(from_agent);
    match tools
        .shard()
        .call(
            owner,
            Request::Lookup {
                name: from_agent.into(),
            },
        )
        .await?
    {
        Reply::Agent(Some(project)) => {
            tools.known.borrow_mut().remember(from_agent, project);
            Ok(project)
        }
        Reply::Agent(None) => Err(ToolError::UnknownAgent(from_agent.to_string())),
        other => unreachable_reply("Lookup", &other),
    }
}

/// The tool error for a refused delivery or reservation.
fn refused_error(to: &[Box<str>], refused: Undeliverable) -> ToolError {
    match refused {
        Undeliverable::UnknownRecipients(names) => {
            ToolError::UnknownRecipients(in_request_order(to, names))
        }
        Undeliverable::InboxFull(names) => ToolError::InboxFull(in_request_order(to, names)),
    }
}

/// Unknown names in the order the client listed them, so error messages are deterministic.
fn in_request_order(to: &[Box<str>], unknown: Vec<Box<str>>) -> Vec<Box<str>> {
    to.iter()
        .filter(|name| unknown.contains(name))
        .cloned()
        .collect()
}

pub fn write_json(out: &mut Vec<u8>, id: &Uuid) {
    out.extend_from_slice(b"{\"id\":");
    write_uuid(out, id);
    out.extend_from_slice(b",\"status\":\"sent\"}");
}

pub fn definition() -> serde_json::Value {
    serde_json::json!({
        "name": "send_message",
        "title": "Send a message",
        "description": "Send a message from a registered agent to one or more registered agents (by name). All recipients must exist, or nothing is delivered. Duplicate recipients get one copy. When the call returns, the message is in every recipient's inbox.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "from_agent": {"type": "string", "description": "The sending agent's name."},
                "to": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_RECIPIENTS, "description": "Recipient agent names (always an array)."},
                "subject": {"type": "string", "default": ""},
                "body": {"type": "string", "default": ""},
                "project_id": {"type": "string", "format": "uuid", "description": "Project to file the message under; defaults to the sender's project."}
            },
            "required": ["from_agent", "to"]
        },
        "outputSchema": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "status": {"type": "string", "enum": ["sent"]}
            },
            "required": ["id", "status"]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Args<'_>, ToolError> {
        // Leak for the test's lifetime: RawValue must outlive the borrowed Args.
        let raw: &'static RawValue =
            Box::leak(RawValue::from_string(text.to_string()).expect("json"));
        parse(Some(raw))
    }

    #[test]
    fn duplicate_recipients_collapse_in_order() {
        let args = parse_text(r#"{"from_agent":"a","to":["b","c","b","a","c"]}"#).expect("valid");
        assert_eq!(args.to, vec!["b", "c", "a"]);
        assert_eq!(args.subject, "");
        assert_eq!(args.body, "");
        assert_eq!(args.project_id, None);
    }

    #[test]
    fn to_as_a_string_is_refused() {
        let error = parse_text(r#"{"from_agent":"a","to":"b"}"#).expect_err("string to");
        assert!(
            matches!(error, ToolError::InvalidArgument { name: "to", .. }),
            "{error:?}"
        );
    }

    #[test]
    fn project_id_must_be_a_uuid() {
        let error =
            parse_text(r#"{"from_agent":"a","to":["b"],"project_id":"p"}"#).expect_err("bad uuid");
        assert!(
            matches!(
                error,
                ToolError::InvalidArgument {
                    name: "project_id",
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn unknown_names_keep_request_order() {
        let to: Vec<Box<str>> = vec!["x".into(), "y".into(), "z".into()];
        let got = in_request_order(&to, vec!["z".into(), "x".into()]);
        assert_eq!(got, vec![Box::<str>::from("x"), "z".into()]);
    }
}
