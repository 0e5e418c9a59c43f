//! `send_message(from_agent, to[]; cc[], subject, body, project_id, thread_id, importance,
//! ack_required)` -> `{id, status, thread_id}`
//!
//! All or nothing: the sender and every recipient (`to` and `cc`) must exist, and every
//! recipient's inbox must have room, before anything is delivered. The sender's owner takes
//! part too (it keeps the sender's copy). This file parses the arguments, checks the size,
//! reserves room in the search feed, composes the envelope and shapes the result; the
//! all-or-nothing delivery over the owner shards is `Shard::send` (`shards::runtime::send`).

use super::args::{
    object, optional_bool, optional_names, optional_parsed, optional_str, required_str,
    string_array,
};
use super::mail::entry_weight;
use super::{
    unreachable_reply, ToolError, ToolOutput, Toolbox, MAX_AGENT_NAME_BYTES, MAX_RECIPIENTS,
};
use crate::clock::now_ms;
use crate::json::{present, write_str, write_uuid};
use crate::search::doc_bytes_of;
use serde::Deserialize;
use serde_json::value::RawValue;
use shards::envelope::thread_id_len;
use shards::envelope::{Idempotency, MAX_IDEMPOTENCY_KEY_BYTES};
use shards::runtime::send::SendError;
use shards::{Envelope, Importance, KeyUse, Message, Reply, Request, Undeliverable};
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, Default, Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    from_agent: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    to: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    cc: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    subject: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    body: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    project_id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    thread_id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    importance: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    ack_required: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    agent_token: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    idempotency_key: Option<&'a RawValue>,
}

#[derive(Debug)]
pub struct Args<'a> {
    from_agent: Cow<'a, str>,
    to: Vec<Cow<'a, str>>,
    cc: Vec<Cow<'a, str>>,
    subject: Cow<'a, str>,
    body: Cow<'a, str>,
    project_id: Option<Uuid>,
    thread_id: Option<Cow<'a, str>>,
    importance: Option<Importance>,
    ack_required: Option<bool>,
    agent_token: Option<Cow<'a, str>>,
    idempotency_key: Option<Cow<'a, str>>,
}

/// Subject and body are bounded by the HTTP body limit; this only guards the type.
pub const UNBOUNDED_TEXT: usize = usize::MAX;
/// Longest thread id: a short token, so it stays a cheap exact-match search term.
pub const MAX_THREAD_ID_BYTES: usize = 128;
/// Longest `agent_token` accepted (the server issues 64 hex digits).
pub const MAX_TOKEN_BYTES: usize = 128;

/// Thread ids: 1-128 bytes of ASCII letters, digits, `.`, `_`, `:` or `-`.
pub fn valid_thread_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_THREAD_ID_BYTES
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// An optional `thread_id` argument, checked.
pub fn thread_id_arg<'a>(raw: Option<&'a RawValue>) -> Result<Option<Cow<'a, str>>, ToolError> {
    let thread = optional_str("thread_id", raw, MAX_THREAD_ID_BYTES)?;
    match thread {
        Some(thread) if !valid_thread_id(&thread) => Err(ToolError::InvalidArgument {
            name: "thread_id",
            problem: format!(
                "{:?} is not a thread id: use 1-{MAX_THREAD_ID_BYTES} bytes of A-Z, a-z, 0-9, '.', '_', ':' or '-'",
                thread
            ),
        }),
        other => Ok(other),
    }
}

/// An optional `idempotency_key` argument, checked: 1 to
/// [`MAX_IDEMPOTENCY_KEY_BYTES`] bytes.
pub fn idempotency_key_arg<'a>(
    raw: Option<&'a RawValue>,
) -> Result<Option<Cow<'a, str>>, ToolError> {
    let key = optional_str("idempotency_key", raw, MAX_IDEMPOTENCY_KEY_BYTES)?;
    if key.as_deref() == Some("") {
        return Err(ToolError::InvalidArgument {
            name: "idempotency_key",
            problem: "must not be empty".into(),
        });
    }
    Ok(key)
}

/// An optional `importance` argument, checked.
pub fn importance_arg(raw: Option<&RawValue>) -> Result<Option<Importance>, ToolError> {
    optional_str("importance", raw, 16)
        .map_err(|_| importance_error())?
        .map(|text| Importance::parse(&text).ok_or_else(importance_error))
        .transpose()
}

fn importance_error() -> ToolError {
    ToolError::InvalidArgument {
        name: "importance",
        problem: "must be one of \"low\", \"normal\", \"high\", \"urgent\"".into(),
    }
}

/// Recipients without duplicates: the first occurrence keeps its place, and a name in `to`
/// is dropped from `cc`. A set keeps this linear for the longest lists.
pub fn dedup_recipients(to: &mut Vec<Cow<'_, str>>, cc: &mut Vec<Cow<'_, str>>) {
    let mut seen = HashSet::with_capacity(to.len() + cc.len());
    to.retain(|name| seen.insert(name.clone()));
    cc.retain(|name| seen.insert(name.clone()));
}

pub fn parse(arguments: Option<&RawValue>) -> Result<Args<'_>, ToolError> {
    let fields: Fields<'_> = object(arguments)?;
    let from_agent = required_str("from_agent", fields.from_agent, MAX_AGENT_NAME_BYTES)?;
    let mut to = string_array("to", fields.to, MAX_RECIPIENTS, MAX_AGENT_NAME_BYTES)?;
    let mut cc = optional_names("cc", fields.cc, MAX_RECIPIENTS)?;
    dedup_recipients(&mut to, &mut cc);
    if to.len() + cc.len() > MAX_RECIPIENTS {
        return Err(ToolError::InvalidArgument {
            name: "cc",
            problem: format!("to and cc together name more than {MAX_RECIPIENTS} agents"),
        });
    }
    Ok(Args {
        from_agent,
        to,
        cc,
        subject: optional_str("subject", fields.subject, UNBOUNDED_TEXT)?.unwrap_or_default(),
        body: optional_str("body", fields.body, UNBOUNDED_TEXT)?.unwrap_or_default(),
        project_id: optional_parsed("project_id", fields.project_id, "a UUID")?,
        thread_id: thread_id_arg(fields.thread_id)?,
        importance: importance_arg(fields.importance)?,
        ack_required: optional_bool("ack_required", fields.ack_required)?,
        agent_token: optional_str("agent_token", fields.agent_token, MAX_TOKEN_BYTES)?,
        idempotency_key: idempotency_key_arg(fields.idempotency_key)?,
    })
}

pub async fn run(tools: &Toolbox, args: Args<'_>) -> Result<ToolOutput, ToolError> {
    let outgoing = Outgoing {
        from_agent: &args.from_agent,
        agent_token: args.agent_token.as_deref(),
        to: args.to.iter().map(|name| (**name).into()).collect(),
        cc: args.cc.iter().map(|name| (**name).into()).collect(),
        subject: &args.subject,
        body: &args.body,
        project_id: args.project_id,
        thread_id: args.thread_id.as_deref(),
        reply_to: None,
        importance: args.importance.unwrap_or_default(),
        ack_required: args.ack_required.unwrap_or(false),
        idempotency_key: args.idempotency_key.as_deref(),
    };
    send(tools, outgoing).await
}

/// A message to send, checked: `send_message` and `reply_message` both end here.
pub struct Outgoing<'a> {
    pub from_agent: &'a str,
    pub agent_token: Option<&'a str>,
    pub to: Vec<Box<str>>,
    pub cc: Vec<Box<str>>,
    pub subject: &'a str,
    pub body: &'a str,
    pub project_id: Option<Uuid>,
    pub thread_id: Option<&'a str>,
    pub reply_to: Option<Uuid>,
    pub importance: Importance,
    pub ack_required: bool,
    /// With a key, a repeat of this request by the same sender gets the first answer.
    pub idempotency_key: Option<&'a str>,
}

pub async fn send(tools: &Toolbox, message: Outgoing<'_>) -> Result<ToolOutput, ToolError> {
    // The size the inbox byte caps count: the text the envelope will hold.
    let payload_bytes = message.from_agent.len() + message.subject.len() + message.body.len();
    let max_inbox_bytes = tools.shard().inbox_limits().bytes;
    if payload_bytes > max_inbox_bytes {
        return Err(ToolError::MessageTooLarge {
            bytes: payload_bytes,
            max_inbox_bytes,
        });
    }
    // Room in the search feed, taken before anything is delivered (and before the message is
    // stamped): a send waits here (and its client with it) while the indexer is behind,
    // instead of memory growing. Held until the reply: the owner charges the document again
    // when it hands it over (once durable), and this is given back after, so the bound holds
    // with nothing owed.
    let names: usize = message.to.iter().chain(&message.cc).map(|n| n.len()).sum();
    let thread_bytes = thread_id_len(message.thread_id);
    let _room = tools
        .search_docs
        .reserve(doc_bytes_of(payload_bytes, thread_bytes, names))
        .await?;
    let sender_project = sender_project(tools, message.from_agent, message.agent_token).await?;

    let now = now_ms();
    let id = tools.ids.borrow_mut().uuid_v7(now);
    let key = message.idempotency_key;
    let message = Message {
        id,
        project_id: message.project_id.unwrap_or(sender_project),
        timestamp_ms: now,
        from: message.from_agent,
        subject: message.subject,
        body: message.body,
        thread_id: message.thread_id,
        reply_to: message.reply_to,
        importance: message.importance,
        ack_required: message.ack_required,
        to: message.to,
        cc: message.cc,
    };
    let idempotency = key.map(|key| Idempotency {
        key: key.into(),
        request_hash: message.request_hash(),
    });
    let envelope = Envelope::compose(message).with_idempotency(idempotency);
    let weight = entry_weight(&envelope);
    let envelope = Arc::new(envelope.with_weight(weight));
    let thread_id: Box<str> = envelope.thread_id().into();
    match tools.shard.send(envelope).await {
        Ok(()) => Ok(ToolOutput::Sent { id, thread_id }),
        // A repeat: the first answer, and nothing delivered again.
        Err(SendError::Refused(Undeliverable::KeyUsed(KeyUse::Sent(first)))) => {
            Ok(ToolOutput::Sent {
                id: first.id,
                thread_id: first.thread_id().into(),
            })
        }
        Err(SendError::Refused(refused)) => Err(refused_error(refused, key.unwrap_or(""))),
        Err(SendError::Unavailable(error)) => Err(ToolError::Unavailable(error)),
    }
}

/// The sender's project, from this shard's cache or from the sender's owner (always from the
/// owner with agent tokens on: it checks the token).
async fn sender_project(
    tools: &Toolbox,
    from_agent: &str,
    agent_token: Option<&str>,
) -> Result<Uuid, ToolError> {
    let token = tools.token_hash(agent_token);
    if !tools.settings.agent_auth {
        if let Some(project) = tools.known.borrow().project_of(from_agent) {
            return Ok(project);
        }
    }
    let owner = tools.shard().owner_of(from_agent);
    let request = Request::Lookup {
        name: from_agent.into(),
        token,
    };
    match tools.shard().call(owner, request).await? {
        Reply::Agent(Some(project)) => {
            tools.known.borrow_mut().remember(from_agent, project);
            Ok(project)
        }
        Reply::Agent(None) => Err(tools.no_agent(from_agent)),
        other => unreachable_reply("Lookup", &other),
    }
}

/// The tool error for a refused delivery (names already in request order; `key` is the
/// request's idempotency key).
fn refused_error(refused: Undeliverable, key: &str) -> ToolError {
    match refused {
        Undeliverable::UnknownRecipients(names) => ToolError::UnknownRecipients(names),
        Undeliverable::InboxFull(names) => ToolError::InboxFull(names),
        Undeliverable::KeyUsed(KeyUse::OtherRequest) => ToolError::KeyReused(key.into()),
        Undeliverable::KeyUsed(KeyUse::InFlight) => ToolError::KeyInFlight(key.into()),
        // Answered as a success by `send`.
        Undeliverable::KeyUsed(KeyUse::Sent(first)) => {
            unreachable!("a repeat of {} is answered as sent", first.id)
        }
    }
}

pub fn write_json(out: &mut Vec<u8>, id: &Uuid, thread_id: &str) {
    out.extend_from_slice(b"{\"id\":");
    write_uuid(out, id);
    out.extend_from_slice(b",\"status\":\"sent\",\"thread_id\":");
    write_str(out, thread_id);
    out.push(b'}');
}

pub fn definition() -> serde_json::Value {
    serde_json::json!({
        "name": "send_message",
        "title": "Send a message",
        "description": "Send a message to registered agents (to, cc). All must exist or nothing is delivered. When the call returns, every recipient has it.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "from_agent": {"type": "string"},
                "to": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_RECIPIENTS, "description": "Agent names (always an array)."},
                "cc": {"type": "array", "items": {"type": "string"}},
                "subject": {"type": "string", "default": ""},
                "body": {"type": "string", "default": ""},
                "thread_id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$", "description": "Default: the message's own id."},
                "importance": {"type": "string", "enum": ["low", "normal", "high", "urgent"], "default": "normal"},
                "ack_required": {"type": "boolean", "default": false},
                "project_id": {"type": "string", "format": "uuid", "description": "Default: the sender's project."},
                "agent_token": {"type": "string", "description": "Only with --agent-auth."},
                "idempotency_key": idempotency_key_schema()
            },
            "required": ["from_agent", "to"]
        },
        "outputSchema": sent_schema()
    })
}

/// The `idempotency_key` argument of `send_message` and `reply_message`.
pub fn idempotency_key_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_IDEMPOTENCY_KEY_BYTES,
        "description": "Retry safely: a repeat of this request by the same sender with the same key returns the first answer and delivers nothing again, while the first message is in the sender's retained history. The same key with a different message is an error."
    })
}

/// The result schema of `send_message` and `reply_message`.
pub fn sent_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "status": {"type": "string", "enum": ["sent"]},
            "thread_id": {"type": "string"}
        },
        "required": ["id", "status", "thread_id"]
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
    fn cc_drops_names_already_in_to_and_bad_values_name_the_argument() {
        let args =
            parse_text(r#"{"from_agent":"a","to":["b"],"cc":["b","c","c"],"importance":"urgent","ack_required":true,"thread_id":"T-1.x:y"}"#)
                .expect("valid");
        assert_eq!(args.cc, vec!["c"]);
        assert_eq!(args.importance, Some(Importance::Urgent));
        assert_eq!(args.ack_required, Some(true));
        assert_eq!(args.thread_id.as_deref(), Some("T-1.x:y"));
        for (bad, name) in [
            (r#""importance":"URGENT""#, "importance"),
            (r#""importance":3"#, "importance"),
            (r#""ack_required":"yes""#, "ack_required"),
            (r#""thread_id":"has space""#, "thread_id"),
            (r#""thread_id":"""#, "thread_id"),
            (r#""cc":"c""#, "cc"),
            (r#""cc":[1]"#, "cc"),
        ] {
            let text = format!(r#"{{"from_agent":"a","to":["b"],{bad}}}"#);
            let error = parse_text(&text).expect_err(bad);
            assert!(
                matches!(error, ToolError::InvalidArgument { name: n, .. } if n == name),
                "{bad}: {error:?}"
            );
        }
        let long = "t".repeat(MAX_THREAD_ID_BYTES + 1);
        assert!(parse_text(&format!(
            r#"{{"from_agent":"a","to":["b"],"thread_id":"{long}"}}"#
        ))
        .is_err());
    }
}
