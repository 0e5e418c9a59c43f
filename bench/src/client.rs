//! An MCP client for one connection: `initialize`, then `tools/call`, recording each call's
//! latency per tool.

use crate::histogram::Histogram;
use crate::http::{Connection, Url};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

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
    pub stats: Stats,
}

impl McpClient {
    /// Connects (lazily) and initializes.
    pub fn connect(base: &Url) -> Result<McpClient, CallError> {
        let mut client = McpClient {
            connection: Connection::new(base),
            path: "/mcp".into(),
            next_id: 1,
            stats: Stats::default(),
        };
        client.rpc(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "allman-bench", "version": env!("CARGO_PKG_VERSION")}}),
        )?;
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let response = client
            .connection
            .post(
                &client.path,
                &[("MCP-Protocol-Version", "2025-11-25")],
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

    fn rpc(&mut self, method: &str, params: Value) -> Result<Value, CallError> {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self
            .connection
            .post(
                &self.path,
                &[("MCP-Protocol-Version", "2025-11-25")],
                body.to_string().as_bytes(),
            )
            .map_err(CallError::Io)?;
        if response.status != 200 {
            return Err(CallError::Http {
                status: response.status,
                body: String::from_utf8_lossy(&response.body).into(),
            });
        }
        let mut value: Value =
            serde_json::from_slice(&response.body).map_err(|e| CallError::Json(e.to_string()))?;
        if let Some(error) = value.get("error") {
            return Err(CallError::Rpc(error.clone()));
        }
        Ok(value["result"].take())
    }

    /// Calls a tool and returns its result JSON (the parsed `text` content).
    pub fn call(&mut self, tool: &str, arguments: Value) -> Result<Value, CallError> {
        let started = Instant::now();
        let result = self.call_untimed(tool, arguments);
        let micros = started.elapsed().as_micros() as u64;
        self.stats
            .latency
            .entry(tool.to_string())
            .or_default()
            .record(micros);
        if result.is_err() {
            *self.stats.errors.entry(tool.to_string()).or_default() += 1;
        }
        result
    }

    fn call_untimed(&mut self, tool: &str, arguments: Value) -> Result<Value, CallError> {
        let result = self.rpc("tools/call", json!({"name": tool, "arguments": arguments}))?;
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        if result["isError"] == json!(true) {
            return Err(CallError::Tool(text.to_string()));
        }
        serde_json::from_str(text).map_err(|e| CallError::Json(e.to_string()))
    }

    pub fn create_agent(&mut self, project_key: &str, name: &str) -> Result<Value, CallError> {
        self.call("create_agent", json!({"project_key": project_key, "name_hint": name, "program": "allman-bench", "model": "none"}))
    }

    pub fn send(
        &mut self,
        from: &str,
        to: &[&str],
        subject: &str,
        body: &str,
    ) -> Result<String, CallError> {
        let sent = self.call(
            "send_message",
            json!({"from_agent": from, "to": to, "subject": subject, "body": body}),
        )?;
        Ok(sent["id"].as_str().unwrap_or_default().to_string())
    }

    pub fn inbox(&mut self, agent: &str) -> Result<Vec<Value>, CallError> {
        match self.call("get_inbox", json!({"agent_name": agent}))? {
            Value::Array(messages) => Ok(messages),
            other => Err(CallError::Json(format!("inbox is not an array: {other}"))),
        }
    }

    pub fn search(&mut self, query: &str, limit: usize) -> Result<Vec<Value>, CallError> {
        match self.call("search_messages", json!({"query": query, "limit": limit}))? {
            Value::Array(hits) => Ok(hits),
            other => Err(CallError::Json(format!("hits are not an array: {other}"))),
        }
    }
}
