//! Decoding requests from a connection's read buffer with `httparse`, enforcing the limits.
//! Decoding borrows from the buffer: no allocation per request.

/// Header lines accepted per request; more gets 431. Generous for browsers and SDKs (which
/// send about 10-20) while keeping the parse array on the stack.
pub const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest header section (request line + headers) in bytes.
    pub max_header_bytes: usize,
    /// Largest body in bytes (by Content-Length).
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Other,
}

impl Method {
    fn parse(text: &str) -> Method {
        match text {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }
}

/// A request's header fields as received, looked up by name without case; values come
/// trimmed of surrounding whitespace. Borrows the request's bytes: nothing is copied, and
/// HTTP knows nothing of which fields a service reads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Headers<'b> {
    /// The header lines that follow the request line (`Name: value`, CRLF or LF ended).
    section: &'b [u8],
}

impl<'b> Headers<'b> {
    /// Headers over `section`: the lines after the request line, as the decoder validated them.
    pub fn from_section(section: &'b [u8]) -> Self {
        Headers { section }
    }

    /// The value of the first field named `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&'b [u8]> {
        let [value] = self.get_each([name]);
        value
    }

    /// The value of the first field of each of `names`, in one pass over the section (the
    /// transport checks read five on every request).
    pub fn get_each<const N: usize>(&self, names: [&str; N]) -> [Option<&'b [u8]>; N] {
        let mut values = [None; N];
        let mut missing = N;
        for line in self.section.split(|b| *b == b'\n') {
            if missing == 0 {
                break;
            }
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            let field = &line[..colon];
            for (value, name) in values.iter_mut().zip(names) {
                if value.is_none() && field.eq_ignore_ascii_case(name.as_bytes()) {
                    *value = Some(trim_ows(&line[colon + 1..]));
                    missing -= 1;
                    break;
                }
            }
        }
        values
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'b> {
    pub method: Method,
    /// The path without the query string.
    pub path: &'b str,
    /// What follows `?` in the request target ("" without one), still percent-encoded.
    pub query: &'b str,
    /// Whether the connection stays open after the response (HTTP/1.1 default, HTTP/1.0 with
    /// `Connection: keep-alive`).
    pub keep_alive: bool,
    /// An HTTP/1.0 request (keep-alive must then be announced in the response).
    pub http10: bool,
    pub headers: Headers<'b>,
    pub body: &'b [u8],
}

/// A request whose header section is complete; its body may still be arriving. Everything
/// the server decides before reading a body (routing, authentication) is decided from this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head<'b> {
    pub method: Method,
    /// The path without the query string.
    pub path: &'b str,
    /// What follows `?` in the request target ("" without one), still percent-encoded.
    pub query: &'b str,
    pub keep_alive: bool,
    pub http10: bool,
    pub headers: Headers<'b>,
    /// The client waits for `100 Continue` before sending its body (HTTP/1.1 only).
    pub expect_continue: bool,
    /// Bytes of the request line and headers, including the blank line.
    pub header_len: usize,
    /// Bytes of the body, from Content-Length (0 without one).
    pub body_len: usize,
}

impl<'b> Head<'b> {
    /// The whole request's size in bytes.
    pub fn total_len(&self) -> usize {
        self.header_len + self.body_len
    }

    /// The request, once `buf` (the same buffer the head was decoded from) holds all of it.
    pub fn with_body(&self, buf: &'b [u8]) -> Option<Request<'b>> {
        let body = buf.get(self.header_len..self.total_len())?;
        Some(Request {
            method: self.method,
            path: self.path,
            query: self.query,
            keep_alive: self.keep_alive,
            http10: self.http10,
            headers: self.headers,
            body,
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'b> {
    Complete {
        request: Request<'b>,
        consumed: usize,
    },
    /// More bytes are needed. `total_len` is the whole request's size once the headers are
    /// known, and `expect_continue` asks for a `100 Continue` before the client sends its body.
    Partial {
        total_len: Option<usize>,
        expect_continue: bool,
    },
}

/// A request the server refuses at the HTTP level. Each answers with its status and then
/// the connection is closed, since the rest of the byte stream can no longer be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    Malformed(&'static str),
    HeadersTooLarge,
    TooManyHeaders,
    LengthRequired,
    ChunkedNotSupported,
    PayloadTooLarge { max_body_bytes: usize },
}

impl HttpError {
    pub fn status(&self) -> crate::http::Status {
        use crate::http::Status;
        match self {
            HttpError::Malformed(_) => Status::BadRequest,
            HttpError::HeadersTooLarge | HttpError::TooManyHeaders => Status::HeaderFieldsTooLarge,
            HttpError::LengthRequired | HttpError::ChunkedNotSupported => Status::LengthRequired,
            HttpError::PayloadTooLarge { .. } => Status::PayloadTooLarge,
        }
    }

    pub fn message(&self) -> String {
        match self {
            HttpError::Malformed(what) => format!("malformed request: {what}"),
            HttpError::HeadersTooLarge => "request header section too large".to_string(),
            HttpError::TooManyHeaders => format!("more than {MAX_HEADERS} header fields"),
            HttpError::LengthRequired => "Content-Length required".to_string(),
            HttpError::ChunkedNotSupported => {
                "chunked request bodies are not supported: send Content-Length".to_string()
            }
            HttpError::PayloadTooLarge { max_body_bytes } => {
                format!("request body larger than {max_body_bytes} bytes")
            }
        }
    }
}

/// Decodes the first request in `buf`, if it is complete.
pub fn decode<'b>(buf: &'b [u8], limits: &Limits) -> Result<Decoded<'b>, HttpError> {
    let Some(head) = decode_head(buf, limits)? else {
        return Ok(Decoded::Partial {
            total_len: None,
            expect_continue: false,
        });
    };
    Ok(match head.with_body(buf) {
        Some(request) => Decoded::Complete {
            request,
            consumed: head.total_len(),
        },
        None => Decoded::Partial {
            total_len: Some(head.total_len()),
            expect_continue: head.expect_continue,
        },
    })
}

/// Decodes the header section at the start of `buf`: `None` until it is complete. The body
/// need not have arrived; the limits are checked against what the headers announce.
pub fn decode_head<'b>(buf: &'b [u8], limits: &Limits) -> Result<Option<Head<'b>>, HttpError> {
    let mut header_slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut header_slots);
    let header_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_header_bytes {
                return Err(HttpError::HeadersTooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(httparse::Error::Version) => {
            return Err(HttpError::Malformed("unsupported HTTP version"))
        }
        Err(_) => return Err(HttpError::Malformed("invalid request line or header")),
    };
    if header_len > limits.max_header_bytes {
        return Err(HttpError::HeadersTooLarge);
    }
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(HttpError::Malformed("incomplete request line"));
    };
    let method = Method::parse(method);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let http10 = minor == 0;

    // The lines after the request line (httparse accepted them, so each is `Name: value`).
    let after_request_line = buf[..header_len]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(header_len, |newline| newline + 1);
    let headers = Headers::from_section(&buf[after_request_line..header_len]);
    let framing = Framing::read(parsed.headers, http10)?;
    let body_len = framing.body_len(method, limits)?;
    Ok(Some(Head {
        method,
        path,
        query,
        // `close` in any Connection header wins over `keep-alive` in the same or another one.
        keep_alive: !framing.asked_close && (!http10 || framing.asked_keep_alive),
        http10,
        headers,
        expect_continue: framing.expect_continue,
        header_len,
        body_len,
    }))
}

/// What the header fields say about the body's framing and the connection: the fields HTTP
/// itself acts on.
#[derive(Debug, Default)]
struct Framing {
    content_length: Option<usize>,
    chunked: bool,
    asked_close: bool,
    asked_keep_alive: bool,
    expect_continue: bool,
}

impl Framing {
    fn read(fields: &[httparse::Header<'_>], http10: bool) -> Result<Framing, HttpError> {
        let mut framing = Framing::default();
        let mut seen_host = false;
        for field in fields {
            let name = field.name;
            let value = trim_ows(field.value);
            if name.eq_ignore_ascii_case("content-length") {
                let length = parse_content_length(value)?;
                if framing.content_length.is_some_and(|seen| seen != length) {
                    return Err(HttpError::Malformed("conflicting Content-Length headers"));
                }
                framing.content_length = Some(length);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                framing.chunked = true;
            } else if name.eq_ignore_ascii_case("connection") {
                for token in value.split(|b| *b == b',').map(trim_ows) {
                    framing.asked_close |= token.eq_ignore_ascii_case(b"close");
                    framing.asked_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case("expect") {
                // HTTP/1.0 has no 100 Continue (RFC 9110 10.1.1): its clients send the body.
                framing.expect_continue = !http10 && value.eq_ignore_ascii_case(b"100-continue");
            } else if name.eq_ignore_ascii_case("host") {
                // Two Hosts would let a proxy and this server disagree on the target
                // (RFC 9112 3.2).
                if seen_host {
                    return Err(HttpError::Malformed("more than one Host header"));
                }
                seen_host = true;
            }
        }
        Ok(framing)
    }

    /// The body's length, within the limit.
    fn body_len(&self, method: Method, limits: &Limits) -> Result<usize, HttpError> {
        if self.chunked {
            // Both framings at once is a request-smuggling shape; chunked alone we do not
            // decode.
            return Err(if self.content_length.is_some() {
                HttpError::Malformed("both Transfer-Encoding and Content-Length")
            } else {
                HttpError::ChunkedNotSupported
            });
        }
        let body_len = match (self.content_length, method) {
            (Some(length), _) => length,
            (None, Method::Post | Method::Put | Method::Patch) => {
                return Err(HttpError::LengthRequired)
            }
            (None, _) => 0,
        };
        if body_len > limits.max_body_bytes {
            return Err(HttpError::PayloadTooLarge {
                max_body_bytes: limits.max_body_bytes,
            });
        }
        Ok(body_len)
    }
}

/// Strips optional whitespace (spaces and tabs, RFC 9110 OWS) from both ends.
pub fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

fn parse_content_length(value: &[u8]) -> Result<usize, HttpError> {
    const INVALID: HttpError = HttpError::Malformed("invalid Content-Length");
    if value.is_empty() || value.len() > 19 {
        return Err(INVALID);
    }
    let mut length: usize = 0;
    for byte in value {
        if !byte.is_ascii_digit() {
            return Err(INVALID);
        }
        length = length
            .checked_mul(10)
            .and_then(|l| l.checked_add(usize::from(byte - b'0')))
            .ok_or(INVALID)?;
    }
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_header_bytes: 1024,
        max_body_bytes: 64,
    };
    const LIMITS_LARGE: Limits = Limits {
        max_header_bytes: 1024,
        max_body_bytes: 4096,
    };

    fn complete(buf: &[u8]) -> (Request<'_>, usize) {
        match decode(buf, &LIMITS) {
            Ok(Decoded::Complete { request, consumed }) => (request, consumed),
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    #[test]
    fn simple_get_is_keep_alive_with_headers_captured() {
        let raw =
            b"GET /health?x=1 HTTP/1.1\r\nHost: localhost:8000\r\nOrigin: http://localhost\r\n\r\n";
        let (request, consumed) = complete(raw);
        assert_eq!(consumed, raw.len());
        assert_eq!(request.method, Method::Get);
        assert_eq!(request.path, "/health");
        assert!(request.keep_alive);
        assert_eq!(request.headers.get("host"), Some(&b"localhost:8000"[..]));
        assert_eq!(
            request.headers.get("ORIGIN"),
            Some(&b"http://localhost"[..])
        );
        assert_eq!(request.headers.get("accept"), None);
        let [origin, accept, host] = request.headers.get_each(["origin", "accept", "HOST"]);
        assert_eq!(origin, request.headers.get("origin"));
        assert_eq!(accept, None);
        assert_eq!(host, Some(&b"localhost:8000"[..]));
        assert!(request.body.is_empty());
    }

    #[test]
    fn post_body_is_sliced_by_content_length() {
        let raw = b"POST /mcp HTTP/1.1\r\nContent-Length: 5\r\nMCP-Protocol-Version: 2025-06-18\r\n\r\nhelloGET";
        let (request, consumed) = complete(raw);
        assert_eq!(request.body, b"hello");
        assert_eq!(consumed, raw.len() - 3);
        assert_eq!(
            request.headers.get("mcp-protocol-version"),
            Some(&b"2025-06-18"[..])
        );
    }

    #[test]
    fn every_split_point_is_partial_until_the_last_byte() {
        let raw = b"POST /mcp HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n{\"a\":\"bcd\"}";
        for split in 0..raw.len() {
            match decode(&raw[..split], &LIMITS) {
                Ok(Decoded::Partial { .. }) => {}
                other => panic!("split at {split}: {other:?}"),
            }
        }
        assert_eq!(complete(raw).1, raw.len());
    }

    #[test]
    fn partial_body_reports_total_length_and_expect_continue() {
        let raw = b"POST /mcp HTTP/1.1\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\nabc";
        let header_len = raw.len() - 3;
        assert_eq!(
            decode(raw, &LIMITS),
            Ok(Decoded::Partial {
                total_len: Some(header_len + 10),
                expect_continue: true
            })
        );
    }

    #[test]
    fn pipelined_requests_decode_one_after_another() {
        let raw = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\nConnection: close\r\n\r\n";
        let mut offset = 0;
        let mut paths = Vec::new();
        while offset < raw.len() {
            let (request, consumed) = complete(&raw[offset..]);
            paths.push((request.path.to_string(), request.keep_alive));
            offset += consumed;
        }
        assert_eq!(
            paths,
            vec![
                ("/a".into(), true),
                ("/b".into(), true),
                ("/c".into(), false)
            ]
        );
    }

    #[test]
    fn http10_closes_unless_keep_alive_is_asked() {
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").0.keep_alive);
        assert!(
            complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            !complete(b"GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n")
                .0
                .keep_alive
        );
    }

    #[test]
    fn close_wins_over_keep_alive_in_any_connection_header() {
        for raw in [
            &b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nConnection: close, keep-alive\r\n\r\n",
            b"GET / HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
        ] {
            assert!(
                !complete(raw).0.keep_alive,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn http10_expect_continue_is_ignored() {
        let raw = b"POST /mcp HTTP/1.0\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n";
        assert_eq!(
            decode(raw, &LIMITS),
            Ok(Decoded::Partial {
                total_len: Some(raw.len() + 10),
                expect_continue: false
            })
        );
    }

    #[test]
    fn two_host_headers_are_refused() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
        let error = decode(raw, &LIMITS).expect_err("two hosts");
        assert_eq!(error.status(), crate::http::Status::BadRequest);
        assert!(error.message().contains("Host"), "{}", error.message());
    }

    #[test]
    fn head_is_known_before_the_body_arrives() {
        let raw = b"POST /mcp HTTP/1.1\r\nAuthorization: Bearer x\r\nContent-Length: 1000\r\n\r\n{";
        let head = decode_head(raw, &LIMITS_LARGE)
            .expect("valid")
            .expect("complete head");
        assert_eq!(head.headers.get("authorization"), Some(&b"Bearer x"[..]));
        assert_eq!(head.body_len, 1000);
        assert_eq!(head.total_len(), raw.len() - 1 + 1000);
        assert!(head.with_body(raw).is_none(), "the body has not arrived");
    }

    #[test]
    fn limits_and_framing_errors_map_to_their_statuses() {
        use crate::http::Status;
        let long_header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(2000));
        let many_headers = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS + 1)
        );
        let cases: Vec<(Vec<u8>, Status)> = vec![
            (long_header.into_bytes(), Status::HeaderFieldsTooLarge),
            // An unterminated header section past the limit is refused without waiting.
            (
                format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(2000)).into_bytes(),
                Status::HeaderFieldsTooLarge,
            ),
            (many_headers.into_bytes(), Status::HeaderFieldsTooLarge),
            (
                b"POST /mcp HTTP/1.1\r\n\r\n".to_vec(),
                Status::LengthRequired,
            ),
            (
                b"POST /mcp HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
                Status::LengthRequired,
            ),
            (
                b"POST /mcp HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
                    .to_vec(),
                Status::BadRequest,
            ),
            (
                b"POST /mcp HTTP/1.1\r\nContent-Length: 65\r\n\r\n".to_vec(),
                Status::PayloadTooLarge,
            ),
            (
                b"POST /mcp HTTP/1.1\r\nContent-Length: -1\r\n\r\n".to_vec(),
                Status::BadRequest,
            ),
            (
                b"POST /mcp HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n".to_vec(),
                Status::BadRequest,
            ),
            (
                b"POST /mcp HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_vec(),
                Status::BadRequest,
            ),
            (b"GARBAGE\r\n\r\n".to_vec(), Status::BadRequest),
            (b"GET / HTTP/2.0\r\n\r\n".to_vec(), Status::BadRequest),
            (
                b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n".to_vec(),
                Status::BadRequest,
            ),
        ];
        for (raw, status) in cases {
            match decode(&raw, &LIMITS) {
                Err(error) => {
                    assert_eq!(error.status(), status, "{}", String::from_utf8_lossy(&raw))
                }
                Ok(other) => panic!("{} decoded as {other:?}", String::from_utf8_lossy(&raw)),
            }
        }
    }

    #[test]
    fn repeated_equal_content_length_is_accepted() {
        let raw = b"POST /mcp HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi";
        assert_eq!(complete(raw).0.body, b"hi");
    }
}
