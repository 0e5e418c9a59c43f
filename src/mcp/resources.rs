//! Inboxes as MCP resources, in both eras: one template, `allman://inbox/{agent_name}`, whose
//! read is a summary (counts and the newest headers) that drains and marks nothing.
//!
//! Agent names are unique across the server (a name belongs to one project), so the name
//! alone names an inbox. `resources/list` names only the inboxes this client is bound to
//! (the `Allman-Agent` header) or subscribed to: listing every agent's inbox would hand out
//! every name, which `--agent-auth` is there to keep to their projects (`list_agents` lists
//! a project's agents).

use super::jsonrpc::{RpcError, INVALID_PARAMS};
use super::sessions::Subscription;
use super::transport::TRANSPORT_ERROR;
use crate::http::Headers;
use crate::json::{as_str, parse_object, present, write_array, write_str};
use crate::tools::{valid_agent_name, ToolError, Toolbox};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use uuid::Uuid;

pub const INBOX_URI_PREFIX: &str = "allman://inbox/";
pub const INBOX_URI_TEMPLATE: &str = "allman://inbox/{agent_name}";
const INBOX_MIME_TYPE: &str = "application/json";
/// The agent a client acts as, for its inbox's resource and channel messages.
pub const AGENT_HEADER: &str = "allman-agent";
/// That agent's token, with `--agent-auth`.
pub const AGENT_TOKEN_HEADER: &str = "allman-agent-token";
/// The token can also travel in a request's `_meta` under this key.
const META_AGENT_TOKEN: &str = "allman/agentToken";
/// Longest token accepted (tokens are 64 hex digits).
const MAX_TOKEN_BYTES: usize = 256;

/// The agent whose inbox `uri` names, if it names one.
pub fn inbox_agent(uri: &str) -> Option<&str> {
    uri.strip_prefix(INBOX_URI_PREFIX)
        .filter(|name| valid_agent_name(name))
}

pub fn write_inbox_uri(out: &mut Vec<u8>, agent: &str) {
    out.push(b'"');
    out.extend_from_slice(INBOX_URI_PREFIX.as_bytes());
    // Agent names are ASCII letters, digits, '_' and '-': nothing to escape.
    out.extend_from_slice(agent.as_bytes());
    out.push(b'"');
}

/// The params every resource method reads.
#[derive(Deserialize, Default)]
pub struct ResourceParams<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    pub uri: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    pub cursor: Option<&'a RawValue>,
    #[serde(rename = "_meta", default, borrow, deserialize_with = "present")]
    pub meta: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct TokenMeta<'a> {
    #[serde(
        rename = "allman/agentToken",
        default,
        borrow,
        deserialize_with = "present"
    )]
    token: Option<&'a RawValue>,
}

impl<'a> ResourceParams<'a> {
    pub fn parse(params: Option<&'a RawValue>) -> Self {
        params.and_then(parse_object).unwrap_or_default()
    }

    /// The inbox `uri` names, or the -32602 that says why not.
    pub fn inbox(&self) -> Result<Cow<'a, str>, RpcError> {
        let uri = self
            .uri
            .and_then(as_str)
            .ok_or_else(|| RpcError::new(INVALID_PARAMS, "params.uri must be a string"))?;
        if inbox_agent(&uri).is_none() {
            return Err(RpcError::new(
                INVALID_PARAMS,
                format!(
                    "unknown resource: {}; allman's resources are {INBOX_URI_TEMPLATE}",
                    crate::json::prefix_at_char(&uri, 200)
                ),
            ));
        }
        Ok(match uri {
            Cow::Borrowed(uri) => Cow::Borrowed(&uri[INBOX_URI_PREFIX.len()..]),
            Cow::Owned(uri) => Cow::Owned(uri[INBOX_URI_PREFIX.len()..].to_string()),
        })
    }

    /// Lists have one page (they are short): a cursor is one this server never gave.
    pub fn check_no_cursor(&self) -> Result<(), RpcError> {
        match self.cursor {
            None => Ok(()),
            Some(_) => Err(RpcError::new(
                INVALID_PARAMS,
                "unknown cursor: this list has one page and gave no nextCursor",
            )),
        }
    }

    /// The agent token: `_meta["allman/agentToken"]`, else the `Allman-Agent-Token` header.
    pub fn token<'h>(&self, headers: &Headers<'h>) -> Option<Cow<'a, str>>
    where
        'h: 'a,
    {
        let from_meta = self
            .meta
            .filter(|m| m.get().contains(META_AGENT_TOKEN))
            .and_then(parse_object::<TokenMeta<'a>>)
            .and_then(|m| m.token)
            .and_then(as_str);
        from_meta
            .or_else(|| header_str(headers, AGENT_TOKEN_HEADER).map(Cow::Borrowed))
            .filter(|t| t.len() <= MAX_TOKEN_BYTES)
    }
}

/// A header's value as text, if it is UTF-8.
pub fn header_str<'h>(headers: &Headers<'h>, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|value| std::str::from_utf8(value).ok())
}

/// The agent the `Allman-Agent` header binds this client to, if it names a valid one.
pub fn bound_agent<'h>(headers: &Headers<'h>) -> Option<&'h str> {
    header_str(headers, AGENT_HEADER).filter(|name| valid_agent_name(name))
}

/// `{"resourceTemplates":[…]` (the caller closes the object).
pub fn write_templates(out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"resourceTemplates\":[{\"uriTemplate\":");
    write_str(out, INBOX_URI_TEMPLATE);
    out.extend_from_slice(b",\"name\":\"inbox\",\"title\":\"An agent's inbox\",\"description\":");
    write_str(
        out,
        "Unread and awaiting-acknowledgement counts and the newest message headers of one \
         agent's inbox. Reading drains and marks nothing. Subscribe to be told when mail \
         arrives; with --agent-auth, pass the agent's token (Allman-Agent-Token header or \
         _meta \"allman/agentToken\").",
    );
    out.extend_from_slice(b",\"mimeType\":");
    write_str(out, INBOX_MIME_TYPE);
    out.extend_from_slice(b"}]");
}

/// `{"resources":[…]` for these inboxes (the caller closes the object).
pub fn write_list(out: &mut Vec<u8>, agents: &[&str]) {
    out.extend_from_slice(b"{\"resources\":");
    write_array(out, agents, |out, agent| {
        out.extend_from_slice(b"{\"uri\":");
        write_inbox_uri(out, agent);
        out.extend_from_slice(b",\"name\":");
        write_str(out, agent);
        out.extend_from_slice(b",\"title\":");
        write_str(out, &format!("Inbox of {agent}"));
        out.extend_from_slice(b",\"mimeType\":");
        write_str(out, INBOX_MIME_TYPE);
        out.push(b'}');
    });
}

/// `{"contents":[{uri, mimeType, text: summary}]` (the caller closes the object).
pub async fn write_read(
    tools: &Toolbox,
    agent: &str,
    token: Option<Uuid>,
    out: &mut Vec<u8>,
) -> Result<(), RpcError> {
    let mut summary = Vec::with_capacity(1024);
    tools
        .write_inbox_summary(agent, token, &mut summary)
        .await
        .map_err(|error| inbox_error(agent, error))?;
    out.extend_from_slice(b"{\"contents\":[{\"uri\":");
    write_inbox_uri(out, agent);
    out.extend_from_slice(b",\"mimeType\":");
    write_str(out, INBOX_MIME_TYPE);
    out.extend_from_slice(b",\"text\":");
    // The summary is JSON we wrote: UTF-8.
    write_str(out, std::str::from_utf8(&summary).unwrap_or_default());
    out.extend_from_slice(b"}]");
    Ok(())
}

/// `agent`'s inbox to watch from its newest delivery on, once it is known to exist (and,
/// with agent tokens on, to take `token`): how every subscription starts, in either era.
pub async fn watch_from_newest(
    tools: &Toolbox,
    agent: &str,
    token: Option<Uuid>,
) -> Result<Subscription, ToolError> {
    let cursor = tools.inbox_cursor(agent, token).await?;
    Ok(Subscription {
        agent: agent.into(),
        token,
        cursor,
    })
}

/// A failed inbox lookup as a JSON-RPC error: an unknown agent (or, with `--agent-auth`, a
/// wrong token: not told apart) is an invalid parameter; the server stopping is not.
pub fn inbox_error(agent: &str, error: ToolError) -> RpcError {
    match error {
        ToolError::UnknownAgent(_) | ToolError::AgentAuth(_) | ToolError::UnknownCursor { .. } => {
            RpcError::new(
                INVALID_PARAMS,
                format!("unknown resource: {INBOX_URI_PREFIX}{agent} ({error})"),
            )
        }
        other => RpcError::new(TRANSPORT_ERROR, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_uris_name_valid_agents_only() {
        assert_eq!(inbox_agent("allman://inbox/BlueLake"), Some("BlueLake"));
        assert_eq!(inbox_agent("allman://inbox/"), None);
        assert_eq!(inbox_agent("allman://inbox/a/b"), None);
        assert_eq!(inbox_agent("allman://inbox/Blue Lake"), None);
        assert_eq!(inbox_agent("file:///etc/passwd"), None);
        let mut out = Vec::new();
        write_inbox_uri(&mut out, "BlueLake");
        assert_eq!(out, b"\"allman://inbox/BlueLake\"");
    }

    #[test]
    fn lists_are_json() {
        let mut out = Vec::new();
        write_templates(&mut out);
        out.push(b'}');
        let value: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            value["resourceTemplates"][0]["uriTemplate"],
            INBOX_URI_TEMPLATE
        );
        out.clear();
        write_list(&mut out, &["A", "B_2"]);
        out.push(b'}');
        let value: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(value["resources"][1]["uri"], "allman://inbox/B_2");
    }

    #[test]
    fn the_token_comes_from_meta_before_the_header() {
        let section = b"allman-agent-token: from-header\r\n".to_vec();
        let headers = Headers::from_section(&section);
        let raw = RawValue::from_string(
            r#"{"uri":"allman://inbox/A","_meta":{"allman/agentToken":"from-meta"}}"#.into(),
        )
        .expect("json");
        let params = ResourceParams::parse(Some(&raw));
        assert_eq!(params.token(&headers).as_deref(), Some("from-meta"));
        assert_eq!(params.inbox().as_deref(), Ok("A"));
        let bare = ResourceParams::parse(None);
        assert_eq!(bare.token(&headers).as_deref(), Some("from-header"));
        assert!(bare.inbox().is_err());
    }
}
