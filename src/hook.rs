//! `allman hook`: a client hook (Claude Code's and Codex's `SessionStart` / `UserPromptSubmit`)
//! that tells an agent about mail it has not been told about. It prints nothing when there is
//! nothing new, never reports a message twice (a cursor per agent in a state file), and exits 0
//! quietly when the server cannot be reached, so a hook never blocks or nags a session.
//!
//! Both clients read the same answer on stdout: `{"hookSpecificOutput": {"hookEventName": E,
//! "additionalContext": TEXT}}` (code.claude.com/docs/en/hooks; Codex's
//! `codex-rs/hooks/src/events/user_prompt_submit.rs`). This is a plain blocking client: the
//! server's own threads never run it.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A hook runs before the user's prompt reaches the model: answer fast or not at all.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Messages named in one report; the rest are counted.
const NAMED: u64 = 5;
/// The longest answer read from the server (a page of five headers is a few KiB).
const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

pub const USAGE: &str = "usage: allman hook --agent NAME [--url URL] [--state-dir DIR]

Reports mail the agent has not been told about, for a client hook (Claude Code or Codex:
SessionStart, UserPromptSubmit). Prints nothing when there is nothing new; exits 0 when the
server is unreachable. The agent token, with --agent-auth, is read from ALLMAN_AGENT_TOKEN;
a bearer token (--auth-token) from ALLMAN_TOKEN.

  --agent NAME      the agent whose inbox is reported (or ALLMAN_AGENT)
  --url URL         the server's MCP endpoint (or ALLMAN_URL; default http://127.0.0.1:8000/mcp)
  --state-dir DIR   where the last reported position is kept (default
                    $XDG_STATE_HOME/allman, else ~/.local/state/allman)
";

#[derive(Debug, PartialEq, Eq)]
pub struct HookArgs {
    pub agent: String,
    pub url: String,
    pub state_dir: Option<PathBuf>,
}

/// The arguments after `hook`, with the environment's defaults.
pub fn parse_args(
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<HookArgs, String> {
    let mut agent = env("ALLMAN_AGENT");
    let mut url = env("ALLMAN_URL");
    let mut state_dir = None;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let mut value = || {
            rest.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--agent" => agent = Some(value()?),
            "--url" => url = Some(value()?),
            "--state-dir" => state_dir = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let agent = agent.ok_or("--agent (or ALLMAN_AGENT) is required")?;
    Ok(HookArgs {
        agent,
        url: url.unwrap_or_else(|| "http://127.0.0.1:8000/mcp".to_string()),
        state_dir,
    })
}

/// Runs the hook: `stdin` is what the client sent (its event), the report goes to `stdout`.
pub fn run(args: &HookArgs, stdin: &str, stdout: &mut impl Write) -> std::io::Result<()> {
    let event = serde_json::from_str::<Value>(stdin)
        .ok()
        .and_then(|v| v["hook_event_name"].as_str().map(str::to_string))
        .unwrap_or_else(|| "UserPromptSubmit".to_string());
    let state = state_file(args);
    let after = state
        .as_deref()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let token = std::env::var("ALLMAN_AGENT_TOKEN").ok();
    let mut arguments = json!({"agent_name": args.agent, "after": after, "unread_only": true,
        "limit": NAMED, "include_bodies": false});
    if let Some(token) = token {
        arguments["agent_token"] = json!(token);
    }
    let request = json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
        "params":{"name":"fetch_inbox","arguments":arguments}});
    // Unreachable, refused or not an allman: say nothing, the session goes on.
    let Some(page) = post(&args.url, &request.to_string())
        .and_then(|v| v["result"]["structuredContent"].as_object().cloned())
    else {
        return Ok(());
    };
    let Some(text) = report(&args.agent, &Value::Object(page.clone())) else {
        return Ok(());
    };
    if let (Some(path), Some(next)) = (&state, page.get("next_after").and_then(Value::as_u64)) {
        save_cursor(path, next);
    }
    let answer = json!({"hookSpecificOutput": {"hookEventName": event, "additionalContext": text}});
    writeln!(stdout, "{answer}")
}

/// The report for a `fetch_inbox` page of unread mail, `None` when it lists nothing.
pub fn report(agent: &str, page: &Value) -> Option<String> {
    let messages = page["messages"].as_array().filter(|m| !m.is_empty())?;
    let more = page["has_more"].as_bool().unwrap_or(false);
    let count = messages.len();
    let mut text = format!(
        "allman: {count}{} new unread message{} for {agent}",
        if more { "+" } else { "" },
        if count == 1 && !more { "" } else { "s" }
    );
    let pending = page["counts"]["ack_pending"].as_u64().unwrap_or(0);
    if pending > 0 {
        text.push_str(&format!(" ({pending} awaiting your acknowledgement)"));
    }
    text.push(':');
    for message in messages.iter().rev() {
        let subject: String = message["subject"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(120)
            .collect();
        text.push_str(&format!(
            "\n- from {} {subject:?} ({}{}, id {})",
            message["from"].as_str().unwrap_or("?"),
            message["importance"].as_str().unwrap_or("normal"),
            if message["ack_required"] == true {
                ", ack required"
            } else {
                ""
            },
            message["id"].as_str().unwrap_or("?"),
        ));
    }
    text.push_str("\nRead them with fetch_inbox; acknowledge with acknowledge_message.");
    Some(text)
}

fn state_file(args: &HookArgs) -> Option<PathBuf> {
    let dir = args.state_dir.clone().or_else(|| {
        std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/state")))
            .map(|base| base.join("allman"))
    })?;
    // The URL's authority keeps two servers' cursors apart.
    let server: String = args
        .url
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    Some(dir.join(format!("hook-{server}-{}.cursor", args.agent)))
}

/// Written whole then renamed: a hook killed half-way leaves the old cursor, never a torn one.
fn save_cursor(path: &Path, cursor: u64) {
    let Some(dir) = path.parent() else { return };
    let _ = std::fs::create_dir_all(dir);
    let temporary = path.with_extension("tmp");
    if std::fs::write(&temporary, cursor.to_string()).is_ok() {
        let _ = std::fs::rename(&temporary, path);
    }
}

/// POSTs `body` to an `http://host:port/path` URL; the JSON answer, or `None` for any failure.
fn post(url: &str, body: &str) -> Option<Value> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/mcp"),
    };
    let address = authority.to_socket_addrs().ok()?.next()?;
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT).ok()?;
    stream.set_read_timeout(Some(TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(TIMEOUT)).ok()?;
    let bearer = std::env::var("ALLMAN_TOKEN")
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n\
         {bearer}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    stream
        .take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut answer)
        .ok()?;
    let text = std::str::from_utf8(&answer).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    serde_json::from_str(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_and_defaults() {
        let env = |key: &str| (key == "ALLMAN_AGENT").then(|| "FromEnv".to_string());
        let parsed = parse_args(&[], env).expect("agent from the environment");
        assert_eq!(parsed.agent, "FromEnv");
        assert_eq!(parsed.url, "http://127.0.0.1:8000/mcp");
        let args: Vec<String> = ["--agent", "Blue", "--url", "http://h:1/mcp"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let parsed = parse_args(&args, |_| None).expect("flags");
        assert_eq!(
            (parsed.agent.as_str(), parsed.url.as_str()),
            ("Blue", "http://h:1/mcp")
        );
        assert!(parse_args(&[], |_| None).is_err());
        assert!(parse_args(&["--nope".to_string()], |_| None).is_err());
    }

    #[test]
    fn a_report_names_the_newest_first_and_counts_acknowledgements() {
        let page = json!({"messages": [
            {"from": "Green", "subject": "old", "importance": "normal", "ack_required": false, "id": "1"},
            {"from": "Red", "subject": "new", "importance": "urgent", "ack_required": true, "id": "2"}],
            "has_more": false, "counts": {"ack_pending": 1}});
        let text = report("Blue", &page).expect("a report");
        assert!(
            text.starts_with(
                "allman: 2 new unread messages for Blue (1 awaiting your acknowledgement):"
            ),
            "{text}"
        );
        let red = text.find("from Red").expect("Red");
        assert!(
            red < text.find("from Green").expect("Green"),
            "newest first: {text}"
        );
        assert!(text.contains("urgent, ack required, id 2"), "{text}");
        assert_eq!(report("Blue", &json!({"messages": []})), None);
    }
}
