//! `reply_message(from_agent, message_id, body; subject, to, cc, importance, ack_required)`
//! -> `{id, status, thread_id}`
//!
//! A reply keeps the parent's thread and sets `reply_to`. Only a participant of the parent
//! (its sender or a recipient) may reply: the parent is looked up among the replier's own
//! retained messages, on the replier's owner shard.

use super::args::{
    object, optional_bool, optional_names, optional_parsed, optional_str, required_str,
};
use super::send_message::{
    dedup_recipients, idempotency_key_arg, idempotency_key_schema, importance_arg, send,
    sent_schema, Outgoing, MAX_TOKEN_BYTES, UNBOUNDED_TEXT,
};
use super::{
    unreachable_reply, ToolError, ToolOutput, Toolbox, MAX_AGENT_NAME_BYTES, MAX_RECIPIENTS,
};
use crate::json::present;
use serde::Deserialize;
use serde_json::value::RawValue;
use shards::{Envelope, Importance, Reply, Request};
use std::borrow::Cow;
use uuid::Uuid;

#[derive(Debug, Default, Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    from_agent: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    message_id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    body: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    subject: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    to: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    cc: Option<&'a RawValue>,
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
    message_id: Uuid,
    body: Cow<'a, str>,
    subject: Option<Cow<'a, str>>,
    to: Vec<Cow<'a, str>>,
    cc: Vec<Cow<'a, str>>,
    importance: Option<Importance>,
    ack_required: Option<bool>,
    agent_token: Option<Cow<'a, str>>,
    idempotency_key: Option<Cow<'a, str>>,
}

pub fn parse(arguments: Option<&RawValue>) -> Result<Args<'_>, ToolError> {
    let fields: Fields<'_> = object(arguments)?;
    let message_id = optional_parsed("message_id", fields.message_id, "a message id (a UUID)")?
        .ok_or(ToolError::MissingArgument("message_id"))?;
    let body = optional_str("body", fields.body, UNBOUNDED_TEXT)?
        .ok_or(ToolError::MissingArgument("body"))?;
    Ok(Args {
        from_agent: required_str("from_agent", fields.from_agent, MAX_AGENT_NAME_BYTES)?,
        message_id,
        body,
        subject: optional_str("subject", fields.subject, UNBOUNDED_TEXT)?,
        to: optional_names("to", fields.to, MAX_RECIPIENTS)?,
        cc: optional_names("cc", fields.cc, MAX_RECIPIENTS)?,
        importance: importance_arg(fields.importance)?,
        ack_required: optional_bool("ack_required", fields.ack_required)?,
        agent_token: optional_str("agent_token", fields.agent_token, MAX_TOKEN_BYTES)?,
        idempotency_key: idempotency_key_arg(fields.idempotency_key)?,
    })
}

/// `Re: ` + the parent's subject, unless it already starts with a `Re:` of any case.
pub fn reply_subject(parent: &str) -> Cow<'_, str> {
    let already = parent
        .get(..3)
        .is_some_and(|head| head.eq_ignore_ascii_case("re:"));
    if already {
        Cow::Borrowed(parent)
    } else {
        Cow::Owned(format!("Re: {parent}"))
    }
}

/// Who a reply goes to by default: the parent's sender, or, when the replier sent the
/// parent, the parent's `to` (its cc stays cc).
fn default_recipients(parent: &Envelope, replier_sent_it: bool) -> (Vec<Box<str>>, Vec<Box<str>>) {
    if replier_sent_it {
        (
            parent.to().map(Box::from).collect(),
            parent.cc().map(Box::from).collect(),
        )
    } else {
        (vec![parent.from().into()], Vec::new())
    }
}

pub async fn run(tools: &Toolbox, args: Args<'_>) -> Result<ToolOutput, ToolError> {
    let owner = tools.shard().owner_of(&args.from_agent);
    let request = Request::Find {
        actor: tools.actor(&args.from_agent, args.agent_token.as_deref()),
        id: args.message_id,
    };
    let (parent, replier_sent_it) = match tools.shard().call(owner, request).await? {
        Reply::Found(Some(found)) => found,
        Reply::Found(None) => {
            return Err(ToolError::UnknownMessage {
                agent: args.from_agent.into_owned(),
                id: args.message_id,
            })
        }
        Reply::NoAgent => return Err(tools.no_agent(&args.from_agent)),
        other => unreachable_reply("Find", &other),
    };
    let (mut to, mut cc) = if args.to.is_empty() {
        let (to, cc) = default_recipients(&parent, replier_sent_it);
        let keep_cc = if args.cc.is_empty() { cc } else { Vec::new() };
        (
            to.iter().map(|n| Cow::Owned(n.to_string())).collect(),
            keep_cc.iter().map(|n| Cow::Owned(n.to_string())).collect(),
        )
    } else {
        (args.to.clone(), Vec::new())
    };
    cc.extend(args.cc.iter().cloned());
    dedup_recipients(&mut to, &mut cc);
    if to.len() + cc.len() > MAX_RECIPIENTS {
        return Err(ToolError::InvalidArgument {
            name: "cc",
            problem: format!("to and cc together name more than {MAX_RECIPIENTS} agents"),
        });
    }
    if to.is_empty() {
        return Err(ToolError::InvalidArgument {
            name: "to",
            problem: "the parent message has no recipient to reply to; name one".into(),
        });
    }
    let subject = match &args.subject {
        Some(subject) => Cow::Borrowed(&**subject),
        None => reply_subject(parent.subject()),
    };
    let outgoing = Outgoing {
        from_agent: &args.from_agent,
        agent_token: args.agent_token.as_deref(),
        to: to.iter().map(|n| (**n).into()).collect(),
        cc: cc.iter().map(|n| (**n).into()).collect(),
        subject: &subject,
        body: &args.body,
        project_id: Some(parent.project_id),
        thread_id: Some(&parent.thread_id()),
        reply_to: Some(parent.id),
        importance: args.importance.unwrap_or(parent.importance),
        ack_required: args.ack_required.unwrap_or(parent.ack_required),
        idempotency_key: args.idempotency_key.as_deref(),
    };
    send(tools, outgoing).await
}

pub fn definition() -> serde_json::Value {
    serde_json::json!({
        "name": "reply_message",
        "title": "Reply to a message",
        "description": "Reply in the message's thread. Defaults: subject 'Re: ...', to the sender (or, replying to your own message, its recipients), importance and ack_required inherited.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "from_agent": {"type": "string"},
                "message_id": {"type": "string", "format": "uuid"},
                "body": {"type": "string"},
                "subject": {"type": "string"},
                "to": {"type": "array", "items": {"type": "string"}},
                "cc": {"type": "array", "items": {"type": "string"}},
                "importance": {"type": "string", "enum": ["low", "normal", "high", "urgent"]},
                "ack_required": {"type": "boolean"},
                "agent_token": {"type": "string", "description": "Only with --agent-auth."},
                "idempotency_key": idempotency_key_schema()
            },
            "required": ["from_agent", "message_id", "body"]
        },
        "outputSchema": sent_schema()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_never_doubled() {
        assert_eq!(reply_subject("plan"), "Re: plan");
        assert_eq!(reply_subject("Re: plan"), "Re: plan");
        assert_eq!(reply_subject("RE:plan"), "RE:plan");
        assert_eq!(reply_subject(""), "Re: ");
        assert_eq!(reply_subject("é"), "Re: é");
    }

    #[test]
    fn message_id_and_body_are_required() {
        let parse_text = |text: &str| {
            let raw = RawValue::from_string(text.to_string()).expect("json");
            parse(Some(&raw)).map(|_| ())
        };
        let id = "00000000-0000-0000-0000-000000000001";
        assert_eq!(
            parse_text(r#"{"from_agent":"a","body":"b"}"#),
            Err(ToolError::MissingArgument("message_id"))
        );
        assert_eq!(
            parse_text(&format!(r#"{{"from_agent":"a","message_id":"{id}"}}"#)),
            Err(ToolError::MissingArgument("body"))
        );
        assert!(parse_text(r#"{"from_agent":"a","message_id":"x","body":""}"#).is_err());
        assert_eq!(
            parse_text(&format!(
                r#"{{"from_agent":"a","message_id":"{id}","body":""}}"#
            )),
            Ok(())
        );
    }
}
