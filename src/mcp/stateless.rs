//! MCP 2026-07-28: stateless requests. No handshake and no session: every request carries
//! its own `_meta` (protocol version, client capabilities, optionally client info), the
//! `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers must agree with the body,
//! `server/discover` replaces `initialize`, and `subscriptions/listen` is the one stream.
//!
//! Which era a request belongs to is decided from the request itself ([`claims`]); the 2025
//! lifecycle in `mcp/mod.rs` serves everything else, unchanged.

use super::events::EventStream;
use super::jsonrpc::{
    classify, close_result, open_result, write_error_omitting_unknown_id, Message, RpcError,
    INVALID_PARAMS, INVALID_REQUEST,
};
use super::resources::{self, inbox_agent, ResourceParams};
use super::sessions::{Subscription, MAX_SUBSCRIPTIONS};
use super::transport::TRANSPORT_ERROR;
use super::{
    call_tool, method_not_found, Context, Outcome, ResponseLimit, ALL_VERSIONS, INSTRUCTIONS,
    MAX_RESPONSE_BYTES, SESSION_VERSIONS, STATELESS_VERSION,
};
use crate::http::Headers;
use crate::json::{as_str, parse_object, present, write_array, write_str};
use crate::tools;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::OnceLock;

/// A header disagrees with the body, or a required one is missing.
pub const HEADER_MISMATCH: i32 = -32020;
/// The request needs a client capability its `_meta` did not declare. No tool of allman's
/// needs one (none asks the client for sampling, elicitation or roots), so it is never sent.
pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i32 = -32021;
/// The request's protocol version is not one this server speaks.
pub const UNSUPPORTED_PROTOCOL_VERSION: i32 = -32022;

const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// What every result carries besides its own members: how complete it is and who answered.
const RESULT_TAIL: &str = concat!(
    ",\"resultType\":\"complete\",\"_meta\":{\"io.modelcontextprotocol/serverInfo\":",
    "{\"name\":\"allman\",\"version\":\"",
    env!("CARGO_PKG_VERSION"),
    "\"}}"
);
/// Lists (and discovery) may be cached: they change only with the server's version, and are
/// the same for every client. Five minutes keeps an upgrade visible soon.
const CACHE_TTL_MS: u64 = 300_000;
/// A listen request names a few inboxes; this bound fits the read buffer every connection has
/// anyway, so opening a stream draws nothing from the shard's read budget (and once the
/// stream runs, the connection gives that buffer back).
const MAX_LISTEN_REQUEST_BYTES: usize = 4 * 1024;
/// `Mcp-Name` values that are not plain ASCII travel as `=?base64?…?=` (SEP-2243).
const BASE64_NAME_PREFIX: &[u8] = b"=?base64?";
const BASE64_NAME_SUFFIX: &[u8] = b"?=";

/// Whether `text` is a 2026-07-28 request. A 2025 `MCP-Protocol-Version` means the 2025
/// lifecycle; `2026-07-28` means stateless; any other value is stateless only if the body's
/// `_meta` names a version too (else it is a 2025-style request with a bad header, refused as
/// before). Without the header, a `_meta` protocol version or a method only this era has
/// (`server/discover`, `subscriptions/listen`) makes it stateless.
pub fn claims(headers: &Headers<'_>, text: &str) -> bool {
    match headers.get("mcp-protocol-version") {
        Some(version) if SESSION_VERSIONS.iter().any(|v| v.as_bytes() == version) => false,
        Some(version) if version == STATELESS_VERSION.as_bytes() => true,
        Some(_) => text.contains(META_PROTOCOL_VERSION) && is_stateless_request(text, false),
        // The substring tests keep the common header-less 2025 request from a second parse.
        None => {
            let may = text.contains(META_PROTOCOL_VERSION)
                || text.contains("server/discover")
                || text.contains("subscriptions/listen");
            may && is_stateless_request(text, true)
        }
    }
}

/// Whether `text` is a request whose `params._meta` names a protocol version, or (with
/// `by_method`) whose method only this revision has. One parse; a batch is never one.
fn is_stateless_request(text: &str, by_method: bool) -> bool {
    let Ok(Message::Request { method, params, .. }) = classify(text) else {
        return false;
    };
    if by_method && (method == "server/discover" || method == "subscriptions/listen") {
        return true;
    }
    params
        .and_then(parse_object::<Params<'_>>)
        .and_then(|p| p.meta)
        .and_then(parse_object::<RequestMeta<'_>>)
        .is_some_and(|m| m.protocol_version.is_some())
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(rename = "_meta", default, borrow, deserialize_with = "present")]
    meta: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    name: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    uri: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    arguments: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    notifications: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Filter<'a> {
    #[serde(
        rename = "resourceSubscriptions",
        default,
        borrow,
        deserialize_with = "present"
    )]
    resource_subscriptions: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RequestMeta<'a> {
    #[serde(
        rename = "io.modelcontextprotocol/protocolVersion",
        default,
        borrow,
        deserialize_with = "present"
    )]
    protocol_version: Option<&'a RawValue>,
    #[serde(
        rename = "io.modelcontextprotocol/clientCapabilities",
        default,
        borrow,
        deserialize_with = "present"
    )]
    client_capabilities: Option<&'a RawValue>,
}

/// Objects only: serde would also read these structs from arrays, by position.
/// A refusal and the status it is sent with.
struct Refusal {
    error: RpcError,
    outcome: Outcome,
}

/// A method's params are wrong (an unknown tool, prompt or resource; no tool name): -32602
/// with HTTP 200, as in the 2025 era. Only the envelope's own faults are 400s.
fn invalid_params(message: impl Into<Cow<'static, str>>) -> Refusal {
    Refusal {
        error: RpcError::new(INVALID_PARAMS, message),
        outcome: Outcome::Reply,
    }
}

impl Refusal {
    fn bad_request(code: i32, message: impl Into<Cow<'static, str>>) -> Self {
        Refusal {
            error: RpcError::new(code, message),
            outcome: Outcome::Refused,
        }
    }
}

/// Answers one 2026-07-28 body.
pub async fn handle(
    text: &str,
    is_batch: bool,
    context: &Context<'_>,
    stream: &mut Option<EventStream>,
    out: &mut Vec<u8>,
) -> Outcome {
    let tools = context.tools;
    // Only a `MCP-Protocol-Version: 2026-07-28` header claims a batch (`claims` reads no
    // `_meta` or method out of an array).
    if is_batch {
        let error = RpcError::new(
            INVALID_REQUEST,
            "invalid request: MCP 2026-07-28 has no batches; send one request per POST",
        );
        write_error_omitting_unknown_id(out, None, &error);
        return Outcome::Refused;
    }
    let (id, method, params) = match classify(text) {
        Err(refusal) => {
            write_error_omitting_unknown_id(out, refusal.id, &refusal.error);
            return Outcome::Refused;
        }
        // Notifications (`notifications/cancelled`, say) need no answer; responses are ours
        // to ignore (allman sends no requests).
        Ok(Message::Notification { method }) => {
            tracing::debug!(method = %method, "notification");
            tools.shard_metrics().rpc_method("notification");
            return Outcome::Accepted;
        }
        Ok(Message::Response) => return Outcome::Accepted,
        Ok(Message::Request { id, method, params }) => (id, method, params),
    };
    tracing::debug!(method = %method, "stateless request");
    tools.shard_metrics().rpc_method(&method);
    let request = Request {
        id,
        method: &method,
        params,
        len: text.len(),
    };
    match answer(request, context, stream, out).await {
        Ok(outcome) => outcome,
        Err(refusal) => {
            write_error_omitting_unknown_id(out, Some(id), &refusal.error);
            refusal.outcome
        }
    }
}

/// One 2026-07-28 request, as classified.
struct Request<'a> {
    id: &'a RawValue,
    method: &'a str,
    params: Option<&'a RawValue>,
    /// Its body's length in bytes.
    len: usize,
}

/// Checks the envelope in the order the revision gives (`_meta`, then the headers against it,
/// then the version), then runs the method.
async fn answer(
    request: Request<'_>,
    context: &Context<'_>,
    stream: &mut Option<EventStream>,
    out: &mut Vec<u8>,
) -> Result<Outcome, Refusal> {
    let Request {
        id, method, params, ..
    } = request;
    let tools = context.tools;
    let raw_params = params;
    let params = checked_params(method, params, context.headers)?;
    match method {
        "server/discover" => {
            open_result(out, id);
            out.extend_from_slice(discover_result().as_bytes());
            close_result(out);
        }
        "tools/list" => {
            open_result(out, id);
            out.extend_from_slice(tools_list_result().as_bytes());
            close_result(out);
        }
        "tools/call" => {
            let name = params
                .name
                .and_then(as_str)
                .ok_or_else(|| invalid_params("tools/call needs a tool name (params.name)"))?;
            let limit = ResponseLimit {
                end: out.len() + MAX_RESPONSE_BYTES,
                at_least_one: true,
            };
            let tail = RESULT_TAIL.as_bytes();
            call_tool(id, &name, params.arguments, tools, out, limit, tail).await;
        }
        // allman has no prompts: the list is honestly empty.
        "prompts/list" => write_empty_list(out, id, "prompts"),
        "prompts/get" => {
            // SEP-2164: an unknown prompt or resource is an invalid parameter.
            let name = params.name.and_then(as_str).unwrap_or_default();
            return Err(invalid_params(format!("unknown prompt: {name}")));
        }
        "resources/list" | "resources/templates/list" | "resources/read" => {
            answer_resources(method, id, raw_params, context, out).await?;
        }
        "subscriptions/listen" => {
            let listen = Listen {
                id,
                filter: params.notifications,
                request_len: request.len,
            };
            return open_listen(listen, context, stream, out).await;
        }
        // `initialize`, `ping`, `logging/setLevel`, `resources/subscribe` and
        // `resources/unsubscribe` are gone from this revision, like any unknown method.
        other => {
            return Err(Refusal {
                error: method_not_found(other),
                outcome: Outcome::NotFound,
            })
        }
    }
    Ok(Outcome::Reply)
}

/// A request's params once its `_meta` names this revision and the `MCP-Protocol-Version`,
/// `Mcp-Method` and `Mcp-Name` headers agree with the body.
fn checked_params<'a>(
    method: &str,
    params: Option<&'a RawValue>,
    headers: &Headers<'_>,
) -> Result<Params<'a>, Refusal> {
    let missing_meta = || {
        Refusal::bad_request(
            INVALID_PARAMS,
            "MCP 2026-07-28 requests carry params._meta with \
             io.modelcontextprotocol/protocolVersion (a string) and \
             io.modelcontextprotocol/clientCapabilities (an object)",
        )
    };
    let params = params
        .and_then(parse_object::<Params<'_>>)
        .ok_or_else(missing_meta)?;
    let meta = params
        .meta
        .and_then(parse_object::<RequestMeta<'_>>)
        .ok_or_else(missing_meta)?;
    let version = meta
        .protocol_version
        .and_then(as_str)
        .ok_or_else(missing_meta)?;
    if !meta
        .client_capabilities
        .is_some_and(|c| c.get().starts_with('{'))
    {
        return Err(missing_meta());
    }
    let [header_version, header_method, header_name] =
        headers.get_each(["mcp-protocol-version", "mcp-method", "mcp-name"]);
    if header_version != Some(version.as_bytes()) {
        return Err(Refusal::bad_request(
            HEADER_MISMATCH,
            format!(
                "the MCP-Protocol-Version header ({}) must equal params._meta's protocol version ({version:?})",
                shown(header_version)
            ),
        ));
    }
    if version != STATELESS_VERSION {
        return Err(Refusal {
            error: unsupported_version(&version),
            outcome: Outcome::Refused,
        });
    }
    if header_method != Some(method.as_bytes()) {
        return Err(Refusal::bad_request(
            HEADER_MISMATCH,
            format!(
                "the Mcp-Method header ({}) must equal the request's method {method:?}",
                shown(header_method)
            ),
        ));
    }
    check_routed_name(method, &params, header_name)?;
    Ok(params)
}

/// The name a method is routed by (a tool's, a resource's URI) travels in Mcp-Name too.
fn check_routed_name(
    method: &str,
    params: &Params<'_>,
    header_name: Option<&[u8]>,
) -> Result<(), Refusal> {
    let routed_name = match method {
        "tools/call" | "prompts/get" => params.name,
        "resources/read" => params.uri,
        _ => None,
    };
    let Some(raw) = routed_name else {
        return Ok(());
    };
    let name =
        as_str(raw).ok_or_else(|| invalid_params("params.name (or uri) must be a string"))?;
    if name_header_matches(header_name, &name) {
        return Ok(());
    }
    Err(Refusal::bad_request(
        HEADER_MISMATCH,
        format!(
            "the Mcp-Name header ({}) must equal {name:?}",
            shown(header_name)
        ),
    ))
}

/// `resources/read`, `resources/list` and `resources/templates/list`.
async fn answer_resources(
    method: &str,
    id: &RawValue,
    raw_params: Option<&RawValue>,
    context: &Context<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Refusal> {
    let (tools, headers) = (context.tools, context.headers);
    let params = ResourceParams::parse(raw_params);
    let start = out.len();
    open_result(out, id);
    let written = match method {
        "resources/read" => match params.inbox() {
            Ok(agent) => {
                let token = tools.token_hash(params.token(headers).as_deref());
                resources::write_read(tools, &agent, token, out).await
            }
            Err(error) => Err(error),
        },
        "resources/list" => params.check_no_cursor().map(|()| {
            let bound = resources::bound_agent(headers);
            resources::write_list(out, bound.as_slice());
        }),
        _ => params
            .check_no_cursor()
            .map(|()| resources::write_templates(out)),
    };
    if let Err(error) = written {
        out.truncate(start);
        return Err(Refusal {
            error,
            outcome: Outcome::Reply,
        });
    }
    // A summary changes with every message: never cached. The lists are fixed.
    if method == "resources/read" {
        out.extend_from_slice(RESULT_TAIL.as_bytes());
    } else {
        out.extend_from_slice(list_tail().as_bytes());
    }
    out.push(b'}');
    close_result(out);
    Ok(())
}

/// `[...]`: every version allman speaks, as a JSON array.
fn write_versions(out: &mut Vec<u8>) {
    write_array(out, ALL_VERSIONS, write_str);
}

fn unsupported_version(requested: &str) -> RpcError {
    let mut data = Vec::with_capacity(128);
    data.extend_from_slice(b"{\"supported\":");
    write_versions(&mut data);
    data.extend_from_slice(b",\"requested\":");
    write_str(&mut data, requested);
    data.push(b'}');
    RpcError::new(
        UNSUPPORTED_PROTOCOL_VERSION,
        format!(
            "unsupported protocol version {requested:?}; this server speaks {} (the 2025 \
             versions through initialize)",
            ALL_VERSIONS.join(", ")
        ),
    )
    // Written by us from strings: valid JSON.
    .with_data(String::from_utf8(data).unwrap_or_default())
}

/// A header value for an error message.
fn shown(value: Option<&[u8]>) -> String {
    match value {
        Some(value) => format!("{:?}", String::from_utf8_lossy(value)),
        None => "missing".to_string(),
    }
}

/// `Mcp-Name` as sent (the decoder already trimmed surrounding whitespace), or its
/// `=?base64?…?=` form, equals `name` exactly.
fn name_header_matches(header: Option<&[u8]>, name: &str) -> bool {
    let Some(header) = header else {
        return false;
    };
    match header
        .strip_prefix(BASE64_NAME_PREFIX)
        .and_then(|rest| rest.strip_suffix(BASE64_NAME_SUFFIX))
    {
        Some(encoded) => decode_base64(encoded).is_some_and(|decoded| decoded == name.as_bytes()),
        None => header == name.as_bytes(),
    }
}

/// Standard base64 (RFC 4648, padding optional); `None` for anything else.
fn decode_base64(encoded: &[u8]) -> Option<Vec<u8>> {
    let value = |byte: u8| -> Option<u32> {
        Some(match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let trimmed = encoded
        .strip_suffix(b"==")
        .or_else(|| encoded.strip_suffix(b"="))
        .unwrap_or(encoded);
    if trimmed.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    for chunk in trimmed.chunks(4) {
        let mut bits = 0u32;
        for (index, byte) in chunk.iter().enumerate() {
            bits |= value(*byte)? << (18 - 6 * index);
        }
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// The members every list result and discovery carry besides their own.
fn list_tail() -> &'static str {
    static TAIL: OnceLock<String> = OnceLock::new();
    TAIL.get_or_init(|| format!(",\"ttlMs\":{CACHE_TTL_MS},\"cacheScope\":\"public\"{RESULT_TAIL}"))
}

fn discover_result() -> &'static str {
    static RESULT: OnceLock<String> = OnceLock::new();
    RESULT.get_or_init(|| {
        let mut out = Vec::with_capacity(2048);
        out.extend_from_slice(b"{\"supportedVersions\":");
        write_versions(&mut out);
        // What the handlers below honour: tools; prompts (none); inbox resources, which a
        // listen stream can watch. No list ever changes, so no listChanged flags.
        out.extend_from_slice(
            b",\"capabilities\":{\"tools\":{},\"prompts\":{},\"resources\":{\"subscribe\":true}},\"instructions\":",
        );
        write_str(&mut out, INSTRUCTIONS);
        out.extend_from_slice(list_tail().as_bytes());
        out.push(b'}');
        String::from_utf8(out).unwrap_or_default()
    })
}

fn tools_list_result() -> &'static str {
    static RESULT: OnceLock<String> = OnceLock::new();
    RESULT.get_or_init(|| {
        let list = tools::list_json();
        let open = list.strip_suffix('}').unwrap_or(list);
        format!("{open}{}}}", list_tail())
    })
}

fn write_empty_list(out: &mut Vec<u8>, id: &RawValue, key: &str) {
    open_result(out, id);
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":[]");
    out.extend_from_slice(list_tail().as_bytes());
    out.extend_from_slice(b"}}");
}

/// A `subscriptions/listen` request.
struct Listen<'a> {
    id: &'a RawValue,
    filter: Option<&'a RawValue>,
    request_len: usize,
}

/// `subscriptions/listen`: checks the filter (every inbox named must exist and, with agent
/// tokens on, take the token given), takes a stream slot and writes the acknowledgement, the
/// stream's first event, naming what the server agreed to send: updates of the inbox
/// resources named, nothing else (list changes never happen here; and the revision forbids
/// sending what was not asked for, so no Claude Code channel messages: Claude Code takes
/// those only from a 2025 session's stream). The events follow from the [`EventStream`]
/// left in `stream`.
async fn open_listen(
    listen: Listen<'_>,
    context: &Context<'_>,
    stream: &mut Option<EventStream>,
    out: &mut Vec<u8>,
) -> Result<Outcome, Refusal> {
    if listen.request_len > MAX_LISTEN_REQUEST_BYTES {
        return Err(Refusal::bad_request(
            INVALID_PARAMS,
            format!("a subscriptions/listen request is at most {MAX_LISTEN_REQUEST_BYTES} bytes"),
        ));
    }
    let filter: Filter<'_> = listen.filter.and_then(parse_object).ok_or_else(|| {
        Refusal::bad_request(
            INVALID_PARAMS,
            "subscriptions/listen needs params.notifications (an object naming what to send)",
        )
    })?;
    let uris: Vec<Cow<'_, str>> = match filter.resource_subscriptions {
        None => Vec::new(),
        Some(raw) => serde_json::from_str(raw.get()).map_err(|_| {
            invalid_params("notifications.resourceSubscriptions must be an array of URIs")
        })?,
    };
    if uris.len() > MAX_SUBSCRIPTIONS {
        return Err(invalid_params(format!(
            "a listen stream watches at most {MAX_SUBSCRIPTIONS} inboxes"
        )));
    }
    let (tools, headers) = (context.tools, context.headers);
    let token = tools.token_hash(ResourceParams::default().token(headers).as_deref());
    let mut watched = Vec::with_capacity(uris.len());
    for uri in &uris {
        let agent = inbox_agent(uri).ok_or_else(|| {
            invalid_params(format!(
                "unknown resource: {}; allman's resources are {}",
                crate::json::prefix_at_char(uri, 200),
                resources::INBOX_URI_TEMPLATE
            ))
        })?;
        watched.push(watch(tools, agent, token).await?);
    }
    if let Err(refused) = context.listeners.open() {
        return Err(Refusal {
            error: RpcError::new(TRANSPORT_ERROR, refused.to_string()),
            outcome: Outcome::Busy,
        });
    }
    out.extend_from_slice(
        b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/subscriptions/acknowledged\",\
          \"params\":{\"notifications\":{",
    );
    if !watched.is_empty() {
        out.extend_from_slice(b"\"resourceSubscriptions\":");
        write_array(out, &watched, |out, inbox| {
            resources::write_inbox_uri(out, &inbox.agent)
        });
    }
    out.extend_from_slice(b"},\"_meta\":{\"io.modelcontextprotocol/subscriptionId\":");
    out.extend_from_slice(listen.id.get().as_bytes());
    out.extend_from_slice(b"}}}\n\n");
    *stream = Some(EventStream::listen(listen.id.get(), watched));
    Ok(Outcome::Stream)
}

/// An inbox to watch from its newest delivery on, or the refusal (answered with 200).
async fn watch(
    tools: &tools::Toolbox,
    agent: &str,
    token: Option<uuid::Uuid>,
) -> Result<Subscription, Refusal> {
    resources::watch_from_newest(tools, agent, token)
        .await
        .map_err(|error| Refusal {
            error: resources::inbox_error(agent, error),
            outcome: Outcome::Reply,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut section = Vec::new();
        for (name, value) in pairs {
            section.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        section
    }

    const META: &str = r#"{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;

    #[test]
    fn the_era_is_decided_by_the_request_itself() {
        let stateless_body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"_meta":{META}}}}}"#
        );
        let legacy_body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let claims_with = |pairs: &[(&str, &str)], body: &str| {
            let section = headers(pairs);
            claims(&Headers::from_section(&section), body)
        };
        for version in SESSION_VERSIONS {
            assert!(!claims_with(
                &[("MCP-Protocol-Version", version)],
                &stateless_body
            ));
        }
        assert!(claims_with(
            &[("MCP-Protocol-Version", "2026-07-28")],
            legacy_body
        ));
        assert!(claims_with(
            &[("MCP-Protocol-Version", "v999")],
            &stateless_body
        ));
        assert!(!claims_with(
            &[("MCP-Protocol-Version", "v999")],
            legacy_body
        ));
        assert!(claims_with(&[], &stateless_body));
        assert!(!claims_with(&[], legacy_body));
        let discover = r#"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{}}"#;
        assert!(claims_with(&[], discover));
        // The key inside a message's text is not a `_meta`.
        let mention = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_message","arguments":{"body":"io.modelcontextprotocol/protocolVersion"}}}"#;
        assert!(!claims_with(&[], mention));
    }

    #[test]
    fn mcp_name_matches_plain_or_base64() {
        assert!(name_header_matches(Some(b"get_inbox"), "get_inbox"));
        assert!(!name_header_matches(Some(b"GET_INBOX"), "get_inbox"));
        assert!(!name_header_matches(None, "get_inbox"));
        // "héllo" in base64.
        assert!(name_header_matches(Some(b"=?base64?aMOpbGxv?="), "héllo"));
        assert!(name_header_matches(Some(b"=?base64?YQ==?="), "a"));
        assert!(!name_header_matches(Some(b"=?base64?!!!?="), "a"));
        assert_eq!(decode_base64(b"Zm9vYmFy").as_deref(), Some(&b"foobar"[..]));
        assert_eq!(decode_base64(b"Zm9vYg").as_deref(), Some(&b"foob"[..]));
        assert_eq!(decode_base64(b"Z"), None);
    }

    #[test]
    fn fixed_results_are_json_with_the_revision_s_members() {
        let discover: serde_json::Value =
            serde_json::from_str(discover_result()).expect("discover is JSON");
        assert_eq!(discover["supportedVersions"][0], STATELESS_VERSION);
        assert_eq!(discover["resultType"], "complete");
        assert_eq!(discover["cacheScope"], "public");
        assert_eq!(discover["ttlMs"], CACHE_TTL_MS);
        assert_eq!(
            discover["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
            "allman"
        );
        let list: serde_json::Value =
            serde_json::from_str(tools_list_result()).expect("tools/list is JSON");
        assert!(list["tools"].as_array().is_some_and(|t| t.len() == 17));
        assert_eq!(list["resultType"], "complete");
        let error = unsupported_version("v9");
        let data: serde_json::Value =
            serde_json::from_str(error.data.as_deref().expect("data")).expect("data is JSON");
        assert_eq!(data["requested"], "v9");
        assert_eq!(data["supported"][0], STATELESS_VERSION);
        let raw = RawValue::from_string("7".into()).expect("id");
        let mut out = Vec::new();
        write_empty_list(&mut out, &raw, "prompts");
        let value: serde_json::Value = serde_json::from_slice(&out).expect("list is JSON");
        assert_eq!(value["result"]["prompts"], serde_json::json!([]));
    }
}
