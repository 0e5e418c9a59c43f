//! `send_message(from_agent, to[]; subject, body, project_id)` -> `{id, status}`
//!
//! All or nothing: the sender and every recipient must exist, and every recipient's inbox
//! must have room, before anything is enqueued. With one owner shard that is one atomic step;
//! with several, places are reserved on every owner first and released if any refuses.
//! The reply is sent only after every owner shard has enqueued the message, so a
//! `get_inbox` that follows it always sees it.

use super::args::{object, optional_parsed, optional_str, required_str, string_array};
use super::get_inbox::page_weight;
use super::{
    unreachable_reply, ToolError, ToolOutput, Toolbox, MAX_AGENT_NAME_BYTES, MAX_RECIPIENTS,
};
use crate::clock::now_ms;
use crate::feed::{Charge, Feed};
use crate::json::{present, write_uuid};
use crate::search::SearchDoc;
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
    let charge = tools.search_docs.reserve(index_bytes).await?;
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
        charge,
    };
    let only_here = plan.groups.len() == 1 && plan.groups[0].0 == tools.shard().id();
    let delivery = deliver(Rc::clone(&tools.shard), Rc::clone(&tools.search_docs), plan);
    if only_here {
        // One synchronous step on this shard: nothing can interrupt it halfway.
        return delivery.await.map(|id| ToolOutput::Sent { id });
    }
    // Steps on other shards run to the end as a task of their own, even if this request is
    // dropped (its connection gone, the server stopping): a reservation is then never leaked
    // and a delivery never left half done.
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
    /// The search feed's room for this message.
    charge: Charge,
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
/// a place is reserved in every inbox first. Indexed only once delivered everywhere, so search
/// never shows mail that was refused.
async fn deliver(
    shard: Rc<Shard>,
    search_docs: Rc<Feed<SearchDoc>>,
    plan: Plan,
) -> Result<Uuid, ToolError> {
    let reserved = plan.groups.len() > 1;
    if reserved {
        reserve_all(&shard, &plan).await?;
    }
    let mut tickets: Vec<Ticket<'_>> = Vec::with_capacity(plan.groups.len());
    for (owner, names) in &plan.groups {
        let request = Request::Deliver {
            names: names.clone(),
            envelope: Arc::clone(&plan.envelope),
            reserved,
        };
        tickets.push(shard.submit(*owner, request).await?);
    }
    let mut delivered = 0;
    for ticket in tickets {
        match ticket.await {
            Reply::Delivered(Ok(count)) => delivered += count,
            // With one owner the delivery itself checks (all or nothing). With several, places
            // were reserved and agents are never deleted, so this cannot happen.
            Reply::Delivered(Err(refused)) => return Err(refused_error(&plan.recipients, refused)),
            other => unreachable_reply("Deliver", &other),
        }
    }
    debug_assert_eq!(
        delivered,
        plan.recipients.len(),
        "every distinct recipient gets one copy"
    );
    let id = plan.envelope.id;
    tracing::debug!(from = %plan.envelope.from(), recipients = delivered, "message delivered");
    let doc = SearchDoc {
        envelope: plan.envelope,
        to: plan.recipients,
    };
    search_docs.submit(doc, plan.charge);
    Ok(id)
}

/// Holds a place in every recipient's inbox on every owner, in parallel. If any owner refuses,
/// the places granted by the others are released and the error names every recipient at fault.
async fn reserve_all(shard: &Shard, plan: &Plan) -> Result<(), ToolError> {
    let bytes = plan.envelope.payload_len();
    let mut tickets: Vec<Ticket<'_>> = Vec::with_capacity(plan.groups.len());
    for (owner, names) in &plan.groups {
        let request = Request::Reserve {
            names: names.clone(),
            bytes,
        };
        tickets.push(shard.submit(*owner, request).await?);
    }
    let mut granted: Vec<usize> = Vec::with_capacity(plan.groups.len());
    let (mut unknown, mut full): (Vec<Box<str>>, Vec<Box<str>>) = (Vec::new(), Vec::new());
    for (ticket, (owner, _)) in tickets.into_iter().zip(&plan.groups) {
        match ticket.await {
            Reply::Reserved(Ok(_)) => granted.push(*owner),
            Reply::Reserved(Err(Undeliverable::UnknownRecipients(names))) => unknown.extend(names),
            Reply::Reserved(Err(Undeliverable::InboxFull(names))) => full.extend(names),
            other => unreachable_reply("Reserve", &other),
        }
    }
    let refusal = if !unknown.is_empty() {
        Undeliverable::UnknownRecipients(unknown)
    } else if !full.is_empty() {
        Undeliverable::InboxFull(full)
    } else {
        return Ok(());
    };
    let mut releases: Vec<Ticket<'_>> = Vec::with_capacity(granted.len());
    for (owner, names) in plan.groups.iter().filter(|(o, _)| granted.contains(o)) {
        let request = Request::Release {
            names: names.clone(),
            bytes,
        };
        releases.push(shard.submit(*owner, request).await?);
    }
    for ticket in releases {
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
