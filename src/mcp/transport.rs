//! The Streamable HTTP transport rules, all in one place: who may talk to `/mcp` (Host,
//! Origin, bearer token) and in which media types, decided on the headers before the body is
//! read ([`admit`]); and which protocol versions are spoken ([`refuse_version`]), which needs
//! the body because `initialize` is exempt.

use super::jsonrpc::{classify, write_error, Message, RpcError};
use super::{ALL_VERSIONS, SESSION_VERSIONS};
use crate::http::request::trim_ows;
use crate::http::{Headers, ResponseHead, Status};
use serde_json::value::RawValue;

/// Refusals carry a JSON-RPC error body with this code (the implementation-defined server
/// error range), so that JSON clients can read the reason.
pub const TRANSPORT_ERROR: i32 = -32000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransportPolicy {
    /// Origins allowed besides the local ones, exactly as browsers send them
    /// (`https://app.example.com`), compared without case.
    pub allowed_origins: Vec<String>,
    /// Host names allowed besides the local ones (without port).
    pub allowed_hosts: Vec<String>,
    /// Refuse a `Host` that is not a local or allowed name. On when bound to loopback: the
    /// DNS-rebinding defence, since a browser page can only reach us through such a name.
    pub check_host: bool,
    /// When set, `/mcp` needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRefusal {
    pub status: Status,
    pub message: String,
}

fn refuse(status: Status, message: impl Into<String>) -> Result<(), HeaderRefusal> {
    Err(HeaderRefusal {
        status,
        message: message.into(),
    })
}

const BEARER_CHALLENGE: &[(&str, &str)] = &[("WWW-Authenticate", "Bearer realm=\"allman\"")];

/// The answer to a `POST /mcp` whose headers break a transport rule: its head, with a JSON-RPC
/// error (code [`TRANSPORT_ERROR`]) written into `body`. `None` admits the request.
pub fn admit(
    headers: &Headers<'_>,
    policy: &TransportPolicy,
    body: &mut Vec<u8>,
) -> Option<ResponseHead> {
    let refusal = check(headers, policy).err()?;
    write_error(body, None, &RpcError::new(TRANSPORT_ERROR, refusal.message));
    let head = ResponseHead::json(refusal.status);
    Some(match refusal.status {
        Status::Unauthorized => head.with_headers(BEARER_CHALLENGE),
        _ => head,
    })
}

/// The answer to a `GET /mcp` (a session's event stream) or `DELETE /mcp` (ending a session)
/// whose headers break a transport rule, as [`admit`] does for POST: the same Host, Origin
/// and bearer rules, and a stream must be acceptable to the client.
pub fn admit_session_request(
    headers: &Headers<'_>,
    policy: &TransportPolicy,
    stream: bool,
    body: &mut Vec<u8>,
) -> Option<ResponseHead> {
    let checked = check_site(headers, policy).and_then(|()| {
        if let Some(token) = &policy.token {
            if !bearer_matches(headers.get("authorization"), token) {
                return refuse(Status::Unauthorized, "missing or wrong bearer token");
            }
        }
        if stream && !headers.get("accept").is_some_and(accepts_event_stream) {
            return refuse(
                Status::NotAcceptable,
                "GET /mcp opens an event stream: Accept must allow text/event-stream",
            );
        }
        Ok(())
    });
    let refusal = checked.err()?;
    write_error(body, None, &RpcError::new(TRANSPORT_ERROR, refusal.message));
    let head = ResponseHead::json(refusal.status);
    Some(match refusal.status {
        Status::Unauthorized => head.with_headers(BEARER_CHALLENGE),
        _ => head,
    })
}

fn accepts_event_stream(accept: &[u8]) -> bool {
    accept.split(|b| *b == b',').any(|entry| {
        media_type_is(entry, b"text/event-stream")
            || media_type_is(entry, b"text/*")
            || media_type_is(entry, b"*/*")
    })
}

/// Checks everything about a `POST /mcp` that the headers decide.
pub fn check(headers: &Headers<'_>, policy: &TransportPolicy) -> Result<(), HeaderRefusal> {
    check_site(headers, policy)?;
    let [authorization, content_type, accept] =
        headers.get_each(["authorization", "content-type", "accept"]);
    if let Some(token) = &policy.token {
        if !bearer_matches(authorization, token) {
            return refuse(Status::Unauthorized, "missing or wrong bearer token");
        }
    }
    if let Some(content_type) = content_type {
        if !media_type_is(content_type, b"application/json") {
            return refuse(
                Status::UnsupportedMediaType,
                "Content-Type must be application/json",
            );
        }
    }
    if let Some(accept) = accept {
        if !accepts_json(accept) {
            return refuse(
                Status::NotAcceptable,
                "Accept must allow application/json (allman answers with JSON, not SSE)",
            );
        }
    }
    Ok(())
}

/// The Host (DNS-rebinding) and Origin (cross-site) rules: the web view follows them too.
pub fn check_site(headers: &Headers<'_>, policy: &TransportPolicy) -> Result<(), HeaderRefusal> {
    let [host, origin] = headers.get_each(["host", "origin"]);
    if policy.check_host {
        if let Some(host) = host {
            if !host_allowed(host, policy) {
                return refuse(
                    Status::Forbidden,
                    format!("Host {:?} is not allowed", String::from_utf8_lossy(host)),
                );
            }
        }
    }
    if let Some(origin) = origin {
        if !origin_allowed(origin, policy) {
            return refuse(
                Status::Forbidden,
                format!(
                    "Origin {:?} is not allowed (see --allowed-origins)",
                    String::from_utf8_lossy(origin)
                ),
            );
        }
    }
    Ok(())
}

/// A message refused for its `MCP-Protocol-Version`, and the id to answer it with.
pub struct VersionRefusal<'a> {
    pub id: Option<&'a RawValue>,
    pub error: RpcError,
}

/// Methods this server implements; a request for any other gets -32601 whatever its version.
const IMPLEMENTED_METHODS: [&str; 4] = ["initialize", "ping", "tools/list", "tools/call"];

/// The refusal of a body sent under an `MCP-Protocol-Version` this server does not speak.
/// Missing means 2025-03-26. `initialize` is never refused (it is how a client learns our
/// versions), nor is a method we do not have: a newer client probing `server/discover` must
/// get a plain -32601 so it falls back. A batch is refused whole if any message in it would be.
pub fn refuse_version<'a>(
    headers: &Headers<'_>,
    text: &'a str,
    is_batch: bool,
) -> Option<VersionRefusal<'a>> {
    let version = headers
        .get("mcp-protocol-version")
        .filter(|v| !is_supported_version(v))?;
    let id = if is_batch {
        serde_json::from_str::<Vec<&RawValue>>(text)
            .ok()
            .and_then(|items| items.iter().find_map(|item| version_applies(item.get())))
            .map(|_| None)?
    } else {
        version_applies(text)?
    };
    let message = format!(
        "unsupported MCP-Protocol-Version {:?}; this server speaks {}",
        String::from_utf8_lossy(version),
        ALL_VERSIONS.join(", ")
    );
    Some(VersionRefusal {
        id,
        error: RpcError::new(TRANSPORT_ERROR, message),
    })
}

/// Compared as bytes: SDK clients send this header on every request, so no allocation here.
/// (The HTTP decoder has already trimmed surrounding whitespace.)
fn is_supported_version(header: &[u8]) -> bool {
    SESSION_VERSIONS.iter().any(|v| v.as_bytes() == header)
}

/// Whether a bad version header refuses this single message, and with which id.
fn version_applies(text: &str) -> Option<Option<&RawValue>> {
    match classify(text) {
        Ok(Message::Request { id, method, .. }) => {
            (method != "initialize" && IMPLEMENTED_METHODS.contains(&&*method)).then_some(Some(id))
        }
        Ok(Message::Notification { .. }) => Some(None),
        Ok(Message::Response) | Err(_) => None,
    }
}

/// `host[:port]` or `[v6]:port`, without the port.
fn host_name(authority: &[u8]) -> &[u8] {
    if authority.first() == Some(&b'[') {
        return match authority.iter().position(|b| *b == b']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match authority.iter().rposition(|b| *b == b':') {
        Some(colon) => &authority[..colon],
        None => authority,
    }
}

fn is_local_name(name: &[u8]) -> bool {
    [&b"localhost"[..], b"127.0.0.1", b"[::1]"]
        .iter()
        .any(|local| name.eq_ignore_ascii_case(local))
}

fn host_allowed(host: &[u8], policy: &TransportPolicy) -> bool {
    let name = host_name(host);
    is_local_name(name)
        || policy
            .allowed_hosts
            .iter()
            .any(|allowed| name.eq_ignore_ascii_case(allowed.as_bytes()))
}

/// Local origins (`http://localhost:3000`, `https://127.0.0.1`, `http://[::1]:8080`) and the
/// configured allow-list. `null` (sandboxed pages, file URLs) is foreign.
fn origin_allowed(origin: &[u8], policy: &TransportPolicy) -> bool {
    if policy
        .allowed_origins
        .iter()
        .any(|allowed| origin.eq_ignore_ascii_case(allowed.as_bytes()))
    {
        return true;
    }
    let authority = if let Some(rest) = strip_prefix_ignore_case(origin, b"http://") {
        rest
    } else if let Some(rest) = strip_prefix_ignore_case(origin, b"https://") {
        rest
    } else {
        return false;
    };
    !authority.contains(&b'/') && is_local_name(host_name(authority))
}

fn strip_prefix_ignore_case<'a>(text: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (text.len() >= prefix.len() && text[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &text[prefix.len()..])
}

/// Constant-time in the token's length, so the comparison leaks nothing through timing.
pub fn bearer_matches(authorization: Option<&[u8]>, token: &str) -> bool {
    let Some(value) = authorization else {
        return false;
    };
    let Some(presented) = strip_prefix_ignore_case(value, b"bearer ") else {
        return false;
    };
    let presented = trim_ows(presented);
    let expected = token.as_bytes();
    if presented.len() != expected.len() {
        return false;
    }
    presented
        .iter()
        .zip(expected)
        .fold(0u8, |diff, (a, b)| diff | (a ^ b))
        == 0
}

/// `application/json; charset=utf-8` is `application/json`.
fn media_type_is(value: &[u8], media_type: &[u8]) -> bool {
    let essence = value.split(|b| *b == b';').next().unwrap_or_default();
    trim_ows(essence).eq_ignore_ascii_case(media_type)
}

/// Whether an Accept header allows a JSON response: `application/json`, `application/*`
/// or `*/*` among its entries. (The spec asks clients to list `text/event-stream` too; we
/// never stream, so we do not insist on it.)
fn accepts_json(accept: &[u8]) -> bool {
    accept.split(|b| *b == b',').any(|entry| {
        media_type_is(entry, b"application/json")
            || media_type_is(entry, b"application/*")
            || media_type_is(entry, b"*/*")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(pairs: &[(&str, &[u8])], policy: &TransportPolicy) -> Option<u16> {
        let mut section = Vec::new();
        for (name, value) in pairs {
            section.extend_from_slice(name.as_bytes());
            section.extend_from_slice(b": ");
            section.extend_from_slice(value);
            section.extend_from_slice(b"\r\n");
        }
        check(&Headers::from_section(&section), policy)
            .err()
            .map(|r| r.status.code())
    }

    fn loopback() -> TransportPolicy {
        TransportPolicy {
            check_host: true,
            ..TransportPolicy::default()
        }
    }

    #[test]
    fn local_hosts_and_origins_pass_foreign_ones_get_403() {
        let policy = loopback();
        for host in [
            &b"localhost:8000"[..],
            b"127.0.0.1",
            b"[::1]:9",
            b"LOCALHOST",
        ] {
            assert_eq!(status(&[("host", host)], &policy), None, "{host:?}");
        }
        for host in [
            &b"evil.example:8000"[..],
            b"127.0.0.1.nip.io",
            b"localhost.evil.com",
        ] {
            assert_eq!(status(&[("host", host)], &policy), Some(403), "{host:?}");
        }
        for origin in [
            &b"http://localhost:3000"[..],
            b"https://127.0.0.1",
            b"http://[::1]:8080",
        ] {
            assert_eq!(status(&[("origin", origin)], &policy), None, "{origin:?}");
        }
        for origin in [
            &b"https://evil.example"[..],
            b"null",
            b"http://localhost.evil.com",
            b"file://x",
        ] {
            assert_eq!(
                status(&[("origin", origin)], &policy),
                Some(403),
                "{origin:?}"
            );
        }
    }

    #[test]
    fn allow_lists_extend_the_local_names() {
        let policy = TransportPolicy {
            allowed_origins: vec!["https://app.example.com".into()],
            allowed_hosts: vec!["mail.internal".into()],
            check_host: true,
            token: None,
        };
        assert_eq!(
            status(&[("origin", b"https://APP.example.com")], &policy),
            None
        );
        assert_eq!(status(&[("host", b"mail.internal:8000")], &policy), None);
        assert_eq!(
            status(&[("origin", b"https://other.example.com")], &policy),
            Some(403)
        );
    }

    #[test]
    fn host_is_not_checked_when_bound_wider() {
        assert_eq!(
            status(
                &[("host", b"mail.example.com")],
                &TransportPolicy::default()
            ),
            None
        );
    }

    #[test]
    fn bearer_token_is_required_when_configured() {
        let policy = TransportPolicy {
            token: Some("s3cret".into()),
            ..loopback()
        };
        assert_eq!(status(&[], &policy), Some(401));
        assert_eq!(
            status(&[("authorization", b"Bearer wrong!")], &policy),
            Some(401)
        );
        assert_eq!(
            status(&[("authorization", b"Basic s3cret")], &policy),
            Some(401)
        );
        assert_eq!(
            status(&[("authorization", b"Bearer s3cret")], &policy),
            None
        );
        assert_eq!(
            status(&[("authorization", b"bearer  s3cret ")], &policy),
            None
        );
    }

    #[test]
    fn media_types() {
        let policy = loopback();
        assert_eq!(
            status(
                &[("content-type", b"application/json; charset=utf-8")],
                &policy
            ),
            None
        );
        assert_eq!(
            status(&[("content-type", b"text/plain")], &policy),
            Some(415)
        );
        assert_eq!(
            status(
                &[("content-type", b"application/x-www-form-urlencoded")],
                &policy
            ),
            Some(415)
        );
        for accept in [
            &b"application/json, text/event-stream"[..],
            b"*/*",
            b"application/*;q=0.9",
        ] {
            assert_eq!(status(&[("accept", accept)], &policy), None, "{accept:?}");
        }
        assert_eq!(
            status(&[("accept", b"text/event-stream")], &policy),
            Some(406)
        );
        assert_eq!(status(&[("accept", b"text/html")], &policy), Some(406));
    }
}
