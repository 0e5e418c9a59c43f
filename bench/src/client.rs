//! An MCP client for one connection, recording each call's latency per tool. In the 2025 era
//! it sends `initialize` first; in the 2026-07-28 era every request carries its own `_meta`
//! and the `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers (no handshake).

use crate::histogram::Histogram;
use crate::http::{Connection, Url};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Whether clients connected from now on speak MCP 2026-07-28 (else the 2025 lifecycle).
/// Process-wide: a load tool picks one era for the whole run (`--era`).
static STATELESS: AtomicBool = AtomicBool::new(false);

/// The protocol era of the clients this process connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// 2025-11-25: `initialize`, then requests.
    Session,
    /// 2026-07-28: stateless requests.
    Stateless,
}

impl Era {
    /// `--era 2025` (the default) or `--era 2026`.
    pub fn parse(text: &str) -> Option<Era> {
        match text {
            "2025" | "2025-11-25" => Some(Era::Session),
            "2026" | "2026-07-28" => Some(Era::Stateless),
            _ => None,
        }
    }
}

pub fn use_era(era: Era) {
    STATELESS.store(era == Era::Stateless, Ordering::Relaxed);
}

const SESSION_VERSION: &str = "2025-11-25";
const STATELESS_VERSION: &str = "2026-07-28";
/// The `_meta` every 2026-07-28 request carries.
const STATELESS_META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"allman-bench","version":"1"}}"#;

#[derive(Debug)]
pub enum CallError {
    Io(std::io::Error),
    Http {
        status: u16,
        body: String,
    },
    Json(String),
    /// The server answered with a JSON-RPC error object.
    Rpc(Value),
    /// The tool ran and reported `isError: true`.
    Tool(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Io(error) => write!(f, "I/O: {error}"),
            CallError::Http { status, body } => write!(f, "HTTP {status}: {body}"),
            CallError::Json(error) => write!(f, "bad JSON: {error}"),
            CallError::Rpc(error) => write!(f, "JSON-RPC error: {error}"),
            CallError::Tool(message) => write!(f, "tool error: {message}"),
        }
    }
}

/// Per-tool latency and error counts.
#[derive(Default, Clone)]
pub struct Stats {
    pub latency: BTreeMap<String, Histogram>,
    pub errors: BTreeMap<String, u64>,
}

impl Stats {
    pub fn merge(&mut self, other: &Stats) {
        for (tool, histogram) in &other.latency {
            self.latency
                .entry(tool.clone())
                .or_default()
                .merge(histogram);
        }
        for (tool, errors) in &other.errors {
            *self.errors.entry(tool.clone()).or_default() += errors;
        }
    }

    pub fn total_errors(&self) -> u64 {
        self.errors.values().sum()
    }
}

pub struct McpClient {
    connection: Connection,
    path: String,
    next_id: u64,
    stateless: bool,
    pub stats: Stats,
}

impl McpClient {
    /// Connects (lazily) and, in the 2025 era, initializes.
    pub fn connect(base: &Url) -> Result<McpClient, CallError> {
        let mut client = McpClient {
            connection: Connection::new(base),
            path: "/mcp".into(),
            next_id: 1,
            stateless: STATELESS.load(Ordering::Relaxed),
            stats: Stats::default(),
        };
        if client.stateless {
            return Ok(client);
        }
        client.rpc(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "allman-bench", "version": env!("CARGO_PKG_VERSION")}}),
        )?;
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let response = client
            .connection
            .post(
                &client.path,
                &[("MCP-Protocol-Version", SESSION_VERSION)],
                note.to_string().as_bytes(),
            )
            .map_err(CallError::Io)?;
        if response.status != 202 {
            return Err(CallError::Http {
                status: response.status,
                body: String::from_utf8_lossy(&response.body).into(),
            });
        }
        Ok(client)
    }

    fn rpc(&mut self, method: &str, mut params: Value) -> Result<Value, CallError> {
        let id = self.next_id;
        self.next_id += 1;
        if self.stateless {
            let meta: Value = serde_json::from_str(&format!("{{{STATELESS_META}}}"))
                .map_err(|e| CallError::Json(e.to_string()))?;
            params["_meta"] = meta["_meta"].clone();
        }
        let name = params["name"].as_str().map(str::to_string);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self.post_ok(body.to_string().as_bytes(), method, name.as_deref())?;
        rpc_result(&response)
    }

    /// POSTs a JSON-RPC body to /mcp, with the era's headers; anything but 200 is an error.
    fn post_ok(
        &mut self,
        body: &[u8],
        method: &str,
        name: Option<&str>,
    ) -> Result<Vec<u8>, CallError> {
        let response = if self.stateless {
            let mut headers = vec![
                ("MCP-Protocol-Version", STATELESS_VERSION),
                ("Mcp-Method", method),
            ];
            headers.extend(name.map(|name| ("Mcp-Name", name)));
            self.connection.post(&self.path, &headers, body)
        } else {
            let headers = [("MCP-Protocol-Version", SESSION_VERSION)];
            self.connection.post(&self.path, &headers, body)
        }
        .map_err(CallError::Io)?;
        if response.status != 200 {
            return Err(CallError::Http {
                status: response.status,
                body: String::from_utf8_lossy(&response.body).into(),
            });
        }
        Ok(response.body)
    }

    /// Calls a tool and returns its result JSON (the parsed `text` content).
    pub fn call(&mut self, tool: &str, arguments: Value) -> Result<Value, CallError> {
        let started = Instant::now();
        let result = self.call_untimed(tool, arguments);
        self.record(tool, started, result.is_ok());
        result
    }

    fn record(&mut self, tool: &str, started: Instant, ok: bool) {
        let micros = started.elapsed().as_micros() as u64;
        match self.stats.latency.get_mut(tool) {
            Some(histogram) => histogram.record(micros),
            None => {
                let mut histogram = Histogram::default();
                histogram.record(micros);
                self.stats.latency.insert(tool.to_string(), histogram);
            }
        }
        if !ok {
            *self.stats.errors.entry(tool.to_string()).or_default() += 1;
        }
    }

    fn call_untimed(&mut self, tool: &str, arguments: Value) -> Result<Value, CallError> {
        let result = self.rpc("tools/call", json!({"name": tool, "arguments": arguments}))?;
        tool_text(&result)
    }

    pub fn create_agent(&mut self, project_key: &str, name: &str) -> Result<Value, CallError> {
        self.call("create_agent", json!({"project_key": project_key, "name_hint": name, "program": "allman-bench", "model": "none"}))
    }

    /// `send_message`; the new message's id. The load tools' hottest call, so its request
    /// is written directly and its reply parsed into a borrowing struct (no JSON trees).
    pub fn send(
        &mut self,
        from: &str,
        to: &[&str],
        subject: &str,
        body: &str,
    ) -> Result<String, CallError> {
        let started = Instant::now();
        let id = self.next_id;
        self.next_id += 1;
        let mut request = String::with_capacity(160 + from.len() + subject.len() + body.len());
        request.push_str(r#"{"jsonrpc":"2.0","id":"#);
        request.push_str(&id.to_string());
        request.push_str(
            r#","method":"tools/call","params":{"name":"send_message","arguments":{"from_agent":"#,
        );
        push_json_string(&mut request, from);
        request.push_str(r#","to":["#);
        for (index, recipient) in to.iter().enumerate() {
            if index > 0 {
                request.push(',');
            }
            push_json_string(&mut request, recipient);
        }
        request.push_str(r#"],"subject":"#);
        push_json_string(&mut request, subject);
        request.push_str(r#","body":"#);
        push_json_string(&mut request, body);
        request.push('}');
        if self.stateless {
            request.push(',');
            request.push_str(STATELESS_META);
        }
        request.push_str("}}");
        let result = self
            .post_ok(request.as_bytes(), "tools/call", Some("send_message"))
            .and_then(|reply| sent_id(&reply));
        self.record("send_message", started, result.is_ok());
        result
    }

    pub fn inbox(&mut self, agent: &str) -> Result<Vec<Value>, CallError> {
        match self.call("get_inbox", json!({"agent_name": agent}))? {
            Value::Array(messages) => Ok(messages),
            other => Err(CallError::Json(format!("inbox is not an array: {other}"))),
        }
    }

    /// `get_inbox`: the ids of the messages drained, in order.
    pub fn inbox_ids(&mut self, agent: &str) -> Result<Vec<String>, CallError> {
        Ok(self
            .inbox(agent)?
            .iter()
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .collect())
    }

    pub fn search(&mut self, query: &str, limit: usize) -> Result<Vec<Value>, CallError> {
        match self.call("search_messages", json!({"query": query, "limit": limit}))? {
            Value::Array(hits) => Ok(hits),
            other => Err(CallError::Json(format!("hits are not an array: {other}"))),
        }
    }
}

/// The `result` of a JSON-RPC response body, or its `error` as [`CallError::Rpc`].
fn rpc_result(body: &[u8]) -> Result<Value, CallError> {
    let mut value: Value =
        serde_json::from_slice(body).map_err(|e| CallError::Json(e.to_string()))?;
    if let Some(error) = value.get("error") {
        return Err(CallError::Rpc(error.clone()));
    }
    Ok(value["result"].take())
}

/// A tool result's text content, parsed, or [`CallError::Tool`] when `isError` is set.
fn tool_text(result: &Value) -> Result<Value, CallError> {
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    if result["isError"] == json!(true) {
        return Err(CallError::Tool(text.to_string()));
    }
    serde_json::from_str(text).map_err(|e| CallError::Json(e.to_string()))
}

#[derive(Deserialize)]
struct SendReply<'a> {
    #[serde(borrow)]
    result: Option<SendResult<'a>>,
}

#[derive(Deserialize)]
struct SendResult<'a> {
    #[serde(rename = "isError", default)]
    is_error: bool,
    #[serde(rename = "structuredContent", borrow)]
    structured: Option<SentMessage<'a>>,
}

#[derive(Deserialize)]
struct SentMessage<'a> {
    id: &'a str,
}

/// The id in a `send_message` reply. Anything else (an RPC error, `isError`, a reply without
/// structured content) is read the general way, for its error.
fn sent_id(body: &[u8]) -> Result<String, CallError> {
    if let Ok(SendReply {
        result:
            Some(SendResult {
                is_error: false,
                structured: Some(SentMessage { id }),
            }),
    }) = serde_json::from_slice(body)
    {
        return Ok(id.to_string());
    }
    let sent = tool_text(&rpc_result(body)?)?;
    Ok(sent["id"].as_str().unwrap_or_default().to_string())
}

/// Appends `text` as a JSON string literal.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_json() {
        let mut out = String::new();
        push_json_string(&mut out, "a\"b\\c\nd\u{1}é");
        let back: String = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn send_replies_give_the_id_or_the_error() {
        let ok = br#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"{\"id\":\"m1\",\"status\":\"sent\"}"}],"structuredContent":{"id":"m1","status":"sent"},"isError":false}}"#;
        assert_eq!(sent_id(ok).expect("ok"), "m1");
        let tool_error = br#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"unknown recipient"}],"isError":true}}"#;
        assert!(matches!(sent_id(tool_error), Err(CallError::Tool(m)) if m == "unknown recipient"));
        let rpc_error = br#"{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"bad"}}"#;
        assert!(matches!(sent_id(rpc_error), Err(CallError::Rpc(_))));
    }
}
