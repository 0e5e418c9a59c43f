//! MCP over JSON-RPC 2.0: one POSTed body in, one JSON body (or nothing, or an event stream)
//! out. Two eras on one endpoint, told apart by each request itself ([`stateless::claims`]):
//! the 2025 revisions' lifecycle (`initialize`, `ping`, notifications, `tools/list`,
//! `tools/call`, batches) here, and 2026-07-28's stateless requests in [`stateless`].

pub mod events;
pub mod jsonrpc;
pub mod listen;
pub mod resources;
pub mod sessions;
pub mod stateless;
pub mod transport;

use crate::http::Headers;
use crate::json::{as_str, parse_object, present, write_str};
use crate::tools::{self, OutputBudget, ParseFailure, ToolError, ToolOutput, Toolbox};
use jsonrpc::{
    classify, close_result, open_result, open_result_len, write_error, Message, RpcError,
    INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::cell::RefCell;

/// The protocol versions of the `initialize` lifecycle, newest first.
pub const SESSION_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];
/// The newest version `initialize` negotiates.
pub const LATEST_SESSION_VERSION: &str = SESSION_VERSIONS[0];
/// The stateless revision: no handshake, every request carries its own `_meta`.
pub const STATELESS_VERSION: &str = "2026-07-28";
/// Every version allman speaks, newest first (`server/discover`'s `supportedVersions`).
pub const ALL_VERSIONS: [&str; 4] = [
    STATELESS_VERSION,
    SESSION_VERSIONS[0],
    SESSION_VERSIONS[1],
    SESSION_VERSIONS[2],
];

/// What the server tells an agent about using it, in `initialize` and `server/discover`: the
/// whole mail in a few lines (a test keeps every tool group named here).
pub const INSTRUCTIONS: &str = "Agent mail between coding agents. Register once per project \
with create_agent (project_key; the name it returns is yours), then act as that agent by \
name. Send with send_message (to is a list of agent names; cc, importance, ack_required \
optional) and answer in the same thread with reply_message. Read without draining with \
fetch_inbox, or drain with get_inbox (each message is returned once). Instead of polling, \
wait_for_mail blocks until mail arrives or the timeout passes. Acknowledge messages that ask \
for it with acknowledge_message, mark_message_read what you have read, and follow a \
conversation with get_thread. search_messages searches all mail (Tantivy query syntax); \
list_agents shows who is in a project. Before editing files, reserve them with \
file_reservation_paths, check others' reservations with check_file_reservation_conflicts or \
list_file_reservations, renew or release yours when done (renew_file_reservations, \
release_file_reservations); a stale holder's reservation can be taken with \
force_release_file_reservation.";

/// A 2025-era `resources/read` of a resource that does not exist (2026-07-28 uses -32602).
pub const RESOURCE_NOT_FOUND: i32 = -32002;

/// Messages per batch. A larger batch is refused whole, so one HTTP request cannot occupy a
/// shard for long.
pub const MAX_BATCH_LEN: usize = 256;
/// A batch's response stays within this size: each request gets what is left (keeping room
/// for a short error answer to each later one), and once too little is left the remaining
/// requests are answered with an error instead of being run.
pub const MAX_BATCH_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// One response (one page of an inbox, one set of search hits) stays within this size, as
/// sent: the one exception is a single message larger than this on its own, which is sent
/// alone so that an inbox can always be emptied.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Room a batch keeps for each request not yet run: enough for a short error answer (ids
/// are echoed besides, and they are bounded by the request's own size).
const BATCH_ANSWER_RESERVE_BYTES: usize = 256;
/// A batch request is run only if at least this much room is left for its answer (the
/// largest fixed answer, `tools/list`, is a few KiB).
const MIN_BATCH_ANSWER_BYTES: usize = 16 * 1024;
/// Longest method name echoed in a "method not found" error.
const MAX_ECHOED_METHOD_BYTES: usize = 128;
/// The bytes of a tool result besides its JSON (counted by the tool): the content wrapper,
/// the `structuredContent` key and object, `isError`.
const TOOL_RESULT_FRAME_BYTES: usize = 96;

/// Where the response being written may end (`out.len()` at most `end`), and whether the
/// request's first item may pass it (see [`OutputBudget::at_least_one`]).
#[derive(Debug, Clone, Copy)]
struct ResponseLimit {
    end: usize,
    at_least_one: bool,
}

/// What a body is answered with besides itself: this shard's tools and streams, the server's
/// sessions, and the request's headers.
pub struct Context<'a> {
    pub tools: &'a Toolbox,
    pub listeners: &'a listen::Listeners,
    pub sessions: &'a sessions::Sessions,
    pub headers: &'a Headers<'a>,
}

/// What the HTTP layer should answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `out` holds a JSON-RPC response (or batch of them): 200.
    Reply,
    /// `out` holds a JSON-RPC error for a body that was not a valid message at all: 400.
    Refused,
    /// Only notifications or responses were received: 202 with no body.
    Accepted,
    /// `out` holds a JSON-RPC error for a method this server does not have (2026-07-28): 404.
    NotFound,
    /// `out` holds a JSON-RPC error: the server cannot take this now (a bound is full, or it
    /// is stopping): 503.
    Busy,
    /// `out` holds the first events of a `subscriptions/listen` stream; the rest follow
    /// from the [`events::EventStream`] left in the handler's `stream`.
    Stream,
    /// `out` holds the answer to `initialize`, which opened this session: 200 with
    /// `Mcp-Session-Id`.
    Opened(sessions::SessionId),
}

/// Handles one POSTed body, writing the response JSON into `out`. The headers were admitted
/// by [`transport::admit`]; the protocol-version rule, which needs the body, runs here.
pub async fn handle_body(
    body: &[u8],
    context: &Context<'_>,
    stream: &mut Option<events::EventStream>,
    out: &mut Vec<u8>,
) -> Outcome {
    let headers = context.headers;
    let Ok(text) = std::str::from_utf8(body) else {
        write_error(
            out,
            None,
            &RpcError::new(PARSE_ERROR, "parse error: body is not UTF-8"),
        );
        return Outcome::Refused;
    };
    let is_batch = text.trim_start().starts_with('[');
    if stateless::claims(headers, text) {
        return stateless::handle(text, is_batch, context, stream, out).await;
    }
    if let Some(refusal) = transport::refuse_version(headers, text, is_batch) {
        write_error(out, refusal.id, &refusal.error);
        return Outcome::Refused;
    }
    if !is_batch {
        let limit = ResponseLimit {
            end: out.len() + MAX_RESPONSE_BYTES,
            at_least_one: true,
        };
        return match handle_message(text, context, out, limit).await {
            Written::Opened(session) => Outcome::Opened(session),
            Written::Response => Outcome::Reply,
            Written::Refusal => Outcome::Refused,
            Written::Nothing => Outcome::Accepted,
        };
    }
    let items = match batch_items(text) {
        Ok(items) => items,
        Err(error) => {
            write_error(out, None, &error);
            return Outcome::Refused;
        }
    };
    handle_batch(items, context, out).await
}

/// The messages of a batch, or why the batch is refused whole.
fn batch_items(text: &str) -> Result<Vec<&RawValue>, RpcError> {
    let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|error| {
        let code = if error.is_data() {
            INVALID_REQUEST
        } else {
            PARSE_ERROR
        };
        RpcError::new(code, format!("parse error: {error}"))
    })?;
    if items.is_empty() || items.len() > MAX_BATCH_LEN {
        let message = format!("invalid request: a batch holds 1 to {MAX_BATCH_LEN} messages");
        return Err(RpcError::new(INVALID_REQUEST, message));
    }
    Ok(items)
}

/// Answers a batch's messages in order, within the batch's response bound.
async fn handle_batch(items: Vec<&RawValue>, context: &Context<'_>, out: &mut Vec<u8>) -> Outcome {
    out.push(b'[');
    let mut wrote_any = false;
    let count = items.len();
    let mut turn = shards::Turn::new();
    for (index, item) in items.into_iter().enumerate() {
        let mark = out.len();
        if wrote_any {
            out.push(b',');
        }
        let kept_for_rest = (count - index - 1) * BATCH_ANSWER_RESERVE_BYTES;
        let end = (MAX_BATCH_RESPONSE_BYTES - 1)
            .saturating_sub(kept_for_rest)
            .min(out.len() + MAX_RESPONSE_BYTES);
        if end < out.len() + MIN_BATCH_ANSWER_BYTES {
            // Not run: answering it could grow the response past the bound.
            if let Ok(Message::Request { id, .. }) = classify(item.get()) {
                let message = format!(
                    "not run: the batch response is near {MAX_BATCH_RESPONSE_BYTES} bytes; send the rest in another request"
                );
                write_error(
                    out,
                    Some(id),
                    &RpcError::new(transport::TRANSPORT_ERROR, message),
                );
                wrote_any = true;
            } else {
                out.truncate(mark);
            }
            continue;
        }
        let limit = ResponseLimit {
            end,
            at_least_one: !wrote_any,
        };
        // A session opened inside a batch is not announced (no header per item): 2025-06-18
        // and later forbid `initialize` in a batch anyway.
        match handle_message(item.get(), context, out, limit).await {
            Written::Response | Written::Refusal | Written::Opened(_) => wrote_any = true,
            Written::Nothing => out.truncate(mark),
        }
        // Up to MAX_BATCH_LEN tool calls in one request: let the shard serve others between.
        turn.done().await;
    }
    if !wrote_any {
        out.clear();
        return Outcome::Accepted;
    }
    out.push(b']');
    Outcome::Reply
}

enum Written {
    /// The answer to an `initialize` that opened this session.
    Opened(sessions::SessionId),
    Response,
    Refusal,
    Nothing,
}

async fn handle_message(
    text: &str,
    context: &Context<'_>,
    out: &mut Vec<u8>,
    limit: ResponseLimit,
) -> Written {
    let tools = context.tools;
    match classify(text) {
        Err(refusal) => {
            write_error(out, refusal.id, &refusal.error);
            Written::Refusal
        }
        Ok(Message::Notification { method }) => {
            tracing::debug!(method = %method, "notification");
            tools.shard_metrics().rpc_method("notification");
            Written::Nothing
        }
        Ok(Message::Response) => Written::Nothing,
        Ok(Message::Request { id, method, params }) => {
            tracing::debug!(method = %method, "request");
            tools.shard_metrics().rpc_method(&method);
            handle_request(id, &method, params, context, out, limit).await
        }
    }
}

/// One JSON-RPC request of the 2025 era: its whole response goes into `out`.
async fn handle_request(
    id: &RawValue,
    method: &str,
    params: Option<&RawValue>,
    context: &Context<'_>,
    out: &mut Vec<u8>,
    limit: ResponseLimit,
) -> Written {
    let tools = context.tools;
    let result = match method {
        "initialize" => match initialize(params) {
            Ok(version) => {
                open_result(out, id);
                write_initialize_result(out, version);
                close_result(out);
                return match context.sessions.create() {
                    Some(session) => Written::Opened(session),
                    None => {
                        tracing::warn!("every session has an open stream: initialize without one");
                        Written::Response
                    }
                };
            }
            Err(error) => Err(error),
        },
        "ping" => {
            open_result(out, id);
            out.extend_from_slice(b"{}");
            Ok(())
        }
        "tools/list" => {
            open_result(out, id);
            out.extend_from_slice(tools::list_json().as_bytes());
            Ok(())
        }
        "resources/templates/list"
        | "resources/list"
        | "resources/read"
        | "resources/subscribe"
        | "resources/unsubscribe" => {
            let params = resources::ResourceParams::parse(params);
            let start = out.len();
            open_result(out, id);
            let answered = session_resources(method, &params, context, out).await;
            if answered.is_err() {
                // Nothing of the result stays: the error replaces it.
                out.truncate(start);
            }
            answered
        }
        "tools/call" => match parse_call(params) {
            Ok((name, arguments)) => {
                // Writes the whole response, error or result.
                call_tool(id, &name, arguments, tools, out, limit, b"").await;
                return Written::Response;
            }
            Err(error) => Err(error),
        },
        other => Err(method_not_found(other)),
    };
    match result {
        Ok(()) => close_result(out),
        Err(error) => write_error(out, Some(id), &error),
    }
    Written::Response
}

/// The 2025 era's resource methods: writes the result object into `out`.
async fn session_resources(
    method: &str,
    params: &resources::ResourceParams<'_>,
    context: &Context<'_>,
    out: &mut Vec<u8>,
) -> Result<(), RpcError> {
    let (tools, headers, sessions) = (context.tools, context.headers, context.sessions);
    let session = headers.get("mcp-session-id").and_then(sessions::parse_id);
    match method {
        "resources/templates/list" => {
            params.check_no_cursor()?;
            resources::write_templates(out);
        }
        "resources/list" => {
            params.check_no_cursor()?;
            let mut agents: Vec<Box<str>> = resources::bound_agent(headers)
                .map(Box::from)
                .into_iter()
                .collect();
            if let Some(session) = session {
                for agent in sessions.agents(session).unwrap_or_default() {
                    if !agents.contains(&agent) {
                        agents.push(agent);
                    }
                }
            }
            let names: Vec<&str> = agents.iter().map(|a| &**a).collect();
            resources::write_list(out, &names);
        }
        "resources/read" => {
            // 2025-11-25 names its own code for a resource that does not exist.
            let not_found = |mut error: RpcError| {
                if error.code == INVALID_PARAMS && error.message.starts_with("unknown resource") {
                    error.code = RESOURCE_NOT_FOUND;
                }
                error
            };
            let agent = params.inbox().map_err(not_found)?;
            let token = tools.token_hash(params.token(headers).as_deref());
            resources::write_read(tools, &agent, token, out)
                .await
                .map_err(not_found)?;
        }
        subscribe => {
            let session = session.ok_or_else(|| {
                RpcError::new(
                    INVALID_PARAMS,
                    format!("{subscribe} needs the Mcp-Session-Id header initialize gave"),
                )
            })?;
            let agent = params.inbox()?;
            let result = if subscribe == "resources/subscribe" {
                let token = tools.token_hash(params.token(headers).as_deref());
                let subscription = resources::watch_from_newest(tools, &agent, token)
                    .await
                    .map_err(|error| resources::inbox_error(&agent, error))?;
                sessions.subscribe(session, subscription)
            } else {
                sessions.unsubscribe(session, &agent).map(|_| ())
            };
            result.map_err(session_error)?;
            out.extend_from_slice(b"{}");
            return Ok(());
        }
    }
    out.push(b'}');
    Ok(())
}

fn session_error(error: sessions::SessionError) -> RpcError {
    match error {
        sessions::SessionError::Unknown => RpcError::new(
            transport::TRANSPORT_ERROR,
            "unknown session (ended, or the server restarted): initialize again",
        ),
        sessions::SessionError::TooManySubscriptions => RpcError::new(
            INVALID_PARAMS,
            format!(
                "a session subscribes to at most {} inboxes; unsubscribe one first",
                sessions::MAX_SUBSCRIPTIONS
            ),
        ),
    }
}

fn method_not_found(method: &str) -> RpcError {
    RpcError::new(
        METHOD_NOT_FOUND,
        format!(
            "method not found: {}",
            crate::json::prefix_at_char(method, MAX_ECHOED_METHOD_BYTES)
        ),
    )
}

#[derive(Deserialize)]
struct InitializeParams<'a> {
    #[serde(
        default,
        borrow,
        deserialize_with = "present",
        rename = "protocolVersion"
    )]
    protocol_version: Option<&'a RawValue>,
}

/// The version to answer with: the client's if we support it, else our latest.
fn initialize(params: Option<&RawValue>) -> Result<&'static str, RpcError> {
    let missing = || {
        RpcError::new(
            INVALID_PARAMS,
            "initialize needs params.protocolVersion (a string)",
        )
    };
    let params: InitializeParams<'_> = params.and_then(parse_object).ok_or_else(missing)?;
    let requested = params
        .protocol_version
        .and_then(as_str)
        .ok_or_else(missing)?;
    Ok(SESSION_VERSIONS
        .iter()
        .find(|v| **v == requested)
        .copied()
        .unwrap_or(LATEST_SESSION_VERSION))
}

fn write_initialize_result(out: &mut Vec<u8>, version: &str) {
    out.extend_from_slice(b"{\"protocolVersion\":");
    write_str(out, version);
    out.extend_from_slice(
        b",\"capabilities\":{\"tools\":{},\"resources\":{\"subscribe\":true,\"listChanged\":false},\
          \"experimental\":{\"claude/channel\":{}}},\"serverInfo\":{\"name\":\"allman\",\"version\":",
    );
    write_str(out, env!("CARGO_PKG_VERSION"));
    out.extend_from_slice(b"},\"instructions\":");
    write_str(out, INSTRUCTIONS);
    out.push(b'}');
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    name: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    arguments: Option<&'a RawValue>,
}

/// Parses one `tools/call` message the way a request's body is parsed, up to the tool's typed
/// arguments, without running it. For `bench/`'s comparison of JSON parsers; `false` for any
/// message a request would refuse.
#[doc(hidden)]
pub fn parse_tool_call(text: &str) -> bool {
    let Ok(jsonrpc::Message::Request {
        method,
        params: Some(params),
        ..
    }) = jsonrpc::classify(text)
    else {
        return false;
    };
    if method != "tools/call" || !params.get().starts_with('{') {
        return false;
    }
    let Ok(params) = serde_json::from_str::<CallParams<'_>>(params.get()) else {
        return false;
    };
    match params.name.and_then(as_str) {
        Some(name) => tools::parse(&name, params.arguments).is_ok(),
        None => false,
    }
}

thread_local! {
    /// Per-shard scratch for a tool result's JSON, which is written twice (as the `text` string
    /// and as `structuredContent`). Used only between awaits.
    static RESULT_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Above this a scratch buffer is released after use instead of kept for the next call.
const RETAINED_SCRATCH_BYTES: usize = 64 * 1024;

/// A `tools/call`'s tool name and arguments, or why its params are not usable.
fn parse_call(params: Option<&RawValue>) -> Result<(Cow<'_, str>, Option<&RawValue>), RpcError> {
    let invalid = |message: &'static str| RpcError::new(INVALID_PARAMS, message);
    let params: CallParams<'_> = params
        .and_then(parse_object)
        .ok_or_else(|| invalid("tools/call needs params {\"name\": ..., \"arguments\": {...}}"))?;
    let name = params
        .name
        .and_then(as_str)
        .ok_or_else(|| invalid("tools/call needs a tool name (params.name)"))?;
    Ok((name, params.arguments))
}

/// Runs the tool `name` and writes the whole response for `id`: its result (with `tail`, the
/// era's extra result members, before the closing brace), or a JSON-RPC error for a tool that
/// does not exist.
async fn call_tool(
    id: &RawValue,
    name: &str,
    arguments: Option<&RawValue>,
    tools: &Toolbox,
    out: &mut Vec<u8>,
    limit: ResponseLimit,
    tail: &[u8],
) {
    let started = std::time::Instant::now();
    let outcome = match tools::parse(name, arguments) {
        Err(ParseFailure::UnknownTool) => {
            let error = RpcError::new(INVALID_PARAMS, format!("unknown tool: {name}"));
            return write_error(out, Some(id), &error);
        }
        Err(ParseFailure::Arguments(error)) => Err(error),
        Ok(call) => {
            // What is left for the result's JSON once the JSON-RPC envelope around it (which
            // echoes the id) and the result's own frame are written.
            let envelope = open_result_len(id) + 1 + TOOL_RESULT_FRAME_BYTES + tail.len();
            let budget = OutputBudget {
                bytes: limit.end.saturating_sub(out.len() + envelope),
                at_least_one: limit.at_least_one,
            };
            tools.run(call, budget).await
        }
    };
    let micros = started.elapsed().as_micros() as u64;
    tools
        .shard_metrics()
        .tool_call(name, outcome.is_ok(), micros);
    tracing::debug!(tool = %name, ok = outcome.is_ok(), elapsed_us = micros, "tool call");
    if let Err(error) = &outcome {
        tracing::debug!(tool = %name, %error, "tool error");
    }
    open_result(out, id);
    write_tool_result(out, &outcome, tail);
    close_result(out);
}

fn write_tool_result(out: &mut Vec<u8>, outcome: &Result<ToolOutput, ToolError>, tail: &[u8]) {
    match outcome {
        Ok(output) => RESULT_SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            scratch.clear();
            output.write_json(&mut scratch);
            // The scratch holds JSON we just wrote, which is UTF-8.
            let text = std::str::from_utf8(&scratch).unwrap_or_default();
            out.extend_from_slice(b"{\"content\":[{\"type\":\"text\",\"text\":");
            write_str(out, text);
            out.extend_from_slice(b"}],\"structuredContent\":");
            match output.structured_key() {
                Some(key) => {
                    out.extend_from_slice(b"{\"");
                    out.extend_from_slice(key.as_bytes());
                    out.extend_from_slice(b"\":");
                    out.extend_from_slice(&scratch);
                    out.push(b'}');
                }
                None => out.extend_from_slice(&scratch),
            }
            out.extend_from_slice(b",\"isError\":false");
            out.extend_from_slice(tail);
            out.push(b'}');
            if scratch.capacity() > RETAINED_SCRATCH_BYTES {
                *scratch = Vec::new();
            }
        }),
        Err(error) => {
            out.extend_from_slice(b"{\"content\":[{\"type\":\"text\",\"text\":");
            write_str(out, &error.to_string());
            out.extend_from_slice(b"}],\"isError\":true");
            out.extend_from_slice(tail);
            out.push(b'}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_call_parses_as_a_request_would() {
        let call = |arguments: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"get_inbox","arguments":{arguments}}}}}"#
            )
        };
        assert!(parse_tool_call(&call(r#"{"agent_name":"BlueLake"}"#)));
        assert!(
            !parse_tool_call(&call(r#"{"agent_name":7}"#)),
            "bad arguments"
        );
        assert!(!parse_tool_call(&call("[]")), "arguments must be an object");
        assert!(!parse_tool_call(
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#
        ));
        assert!(!parse_tool_call("{"));
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).expect("valid json")
    }

    #[test]
    fn version_negotiation_echoes_supported_and_falls_back_to_latest() {
        for version in SESSION_VERSIONS {
            let params = raw(&format!("{{\"protocolVersion\":\"{version}\"}}"));
            assert_eq!(initialize(Some(&params)), Ok(version));
        }
        let unknown = raw(r#"{"protocolVersion":"1999-01-01"}"#);
        assert_eq!(initialize(Some(&unknown)), Ok(LATEST_SESSION_VERSION));
        let missing = raw(r#"{"capabilities":{}}"#);
        assert_eq!(
            initialize(Some(&missing)).map_err(|e| e.code),
            Err(INVALID_PARAMS)
        );
        assert_eq!(initialize(None).map_err(|e| e.code), Err(INVALID_PARAMS));
    }

    #[test]
    fn initialize_result_is_valid_json_with_server_info() {
        let mut out = Vec::new();
        write_initialize_result(&mut out, "2025-06-18");
        let value: serde_json::Value = serde_json::from_slice(&out).expect("valid json");
        assert_eq!(value["protocolVersion"], "2025-06-18");
        assert_eq!(
            value["capabilities"],
            serde_json::json!({"tools": {}, "resources": {"subscribe": true, "listChanged": false},
                "experimental": {"claude/channel": {}}})
        );
        assert_eq!(value["serverInfo"]["name"], "allman");
        assert_eq!(value["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn the_instructions_name_every_tool() {
        for (tool, ..) in tools::TOOL_HINTS {
            assert!(INSTRUCTIONS.contains(tool), "instructions name {tool}");
        }
    }

    #[test]
    fn the_result_frame_fits_its_reserve() {
        // The longest frame: an array result (wrapped under a key) with an empty JSON.
        let mut out = Vec::new();
        write_tool_result(&mut out, &Ok(ToolOutput::Search(String::new())), b"");
        assert!(out.len() <= TOOL_RESULT_FRAME_BYTES, "{}", out.len());
    }

    #[test]
    fn tool_error_results_carry_is_error_and_the_message() {
        let mut out = Vec::new();
        write_tool_result(&mut out, &Err(ToolError::UnknownAgent("Ghost".into())), b"");
        let value: serde_json::Value = serde_json::from_slice(&out).expect("valid json");
        assert_eq!(value["isError"], true);
        let text = value["content"][0]["text"].as_str().expect("text");
        assert!(text.contains("Ghost"), "{text}");
    }
}
