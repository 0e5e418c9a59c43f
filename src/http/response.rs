//! Writing responses into a connection's output buffer.

use crate::clock::with_http_date;
use crate::json::write_u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Continue,
    Ok,
    Accepted,
    SeeOther,
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    NotAcceptable,
    RequestTimeout,
    LengthRequired,
    PayloadTooLarge,
    UnsupportedMediaType,
    HeaderFieldsTooLarge,
    ServiceUnavailable,
}

impl Status {
    /// Every status, for tables that list them.
    pub const ALL: [Status; 16] = [
        Status::Continue,
        Status::Ok,
        Status::Accepted,
        Status::SeeOther,
        Status::BadRequest,
        Status::Unauthorized,
        Status::Forbidden,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::NotAcceptable,
        Status::RequestTimeout,
        Status::LengthRequired,
        Status::PayloadTooLarge,
        Status::UnsupportedMediaType,
        Status::HeaderFieldsTooLarge,
        Status::ServiceUnavailable,
    ];

    pub fn code(self) -> u16 {
        match self {
            Status::Continue => 100,
            Status::Ok => 200,
            Status::Accepted => 202,
            Status::SeeOther => 303,
            Status::BadRequest => 400,
            Status::Unauthorized => 401,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::NotAcceptable => 406,
            Status::RequestTimeout => 408,
            Status::LengthRequired => 411,
            Status::PayloadTooLarge => 413,
            Status::UnsupportedMediaType => 415,
            Status::HeaderFieldsTooLarge => 431,
            Status::ServiceUnavailable => 503,
        }
    }

    fn status_line(self) -> &'static [u8] {
        match self {
            Status::Continue => b"HTTP/1.1 100 Continue\r\n",
            Status::Ok => b"HTTP/1.1 200 OK\r\n",
            Status::Accepted => b"HTTP/1.1 202 Accepted\r\n",
            Status::SeeOther => b"HTTP/1.1 303 See Other\r\n",
            Status::BadRequest => b"HTTP/1.1 400 Bad Request\r\n",
            Status::Unauthorized => b"HTTP/1.1 401 Unauthorized\r\n",
            Status::Forbidden => b"HTTP/1.1 403 Forbidden\r\n",
            Status::NotFound => b"HTTP/1.1 404 Not Found\r\n",
            Status::MethodNotAllowed => b"HTTP/1.1 405 Method Not Allowed\r\n",
            Status::NotAcceptable => b"HTTP/1.1 406 Not Acceptable\r\n",
            Status::RequestTimeout => b"HTTP/1.1 408 Request Timeout\r\n",
            Status::LengthRequired => b"HTTP/1.1 411 Length Required\r\n",
            Status::PayloadTooLarge => b"HTTP/1.1 413 Payload Too Large\r\n",
            Status::UnsupportedMediaType => b"HTTP/1.1 415 Unsupported Media Type\r\n",
            Status::HeaderFieldsTooLarge => b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            Status::ServiceUnavailable => b"HTTP/1.1 503 Service Unavailable\r\n",
        }
    }
}

/// Everything about a response but its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: Status,
    pub content_type: Option<&'static str>,
    /// Extra header lines, e.g. `("Allow", "POST")`.
    pub headers: &'static [(&'static str, &'static str)],
    /// More header lines, for responses that need two sets (the web view's security headers
    /// and a cookie, say).
    pub more_headers: &'static [(&'static str, &'static str)],
    /// How long the server worked on the response, sent as `Server-Timing` (microseconds).
    pub work_us: Option<u64>,
    /// One header whose value is made per response (a session id), not a constant.
    pub value_header: Option<(&'static str, ShortValue)>,
    /// The body is an event stream: what `handle` wrote goes out at once, then the
    /// [`Service::stream_next`](super::Service::stream_next) steps follow until the end,
    /// which closes the connection (the body has no length: it ends with the connection).
    pub streamed: bool,
}

impl ResponseHead {
    pub const fn new(status: Status) -> Self {
        ResponseHead {
            status,
            content_type: None,
            headers: &[],
            more_headers: &[],
            work_us: None,
            value_header: None,
            streamed: false,
        }
    }

    pub const fn json(status: Status) -> Self {
        ResponseHead {
            status,
            content_type: Some("application/json"),
            headers: &[],
            more_headers: &[],
            work_us: None,
            value_header: None,
            streamed: false,
        }
    }

    pub const fn text(status: Status) -> Self {
        ResponseHead {
            status,
            content_type: Some("text/plain; charset=utf-8"),
            headers: &[],
            more_headers: &[],
            work_us: None,
            value_header: None,
            streamed: false,
        }
    }

    pub const fn with_content_type(mut self, content_type: &'static str) -> Self {
        self.content_type = Some(content_type);
        self
    }

    pub const fn with_headers(mut self, headers: &'static [(&'static str, &'static str)]) -> Self {
        self.headers = headers;
        self
    }

    pub const fn with_more_headers(
        mut self,
        headers: &'static [(&'static str, &'static str)],
    ) -> Self {
        self.more_headers = headers;
        self
    }

    /// Adds `name: value`; a value longer than [`ShortValue::MAX_BYTES`] is a bug and is not
    /// sent.
    pub fn with_value_header(mut self, name: &'static str, value: &str) -> Self {
        debug_assert!(
            value.len() <= ShortValue::MAX_BYTES,
            "{name} value too long"
        );
        self.value_header = ShortValue::new(value).map(|value| (name, value));
        self
    }

    pub const fn with_work_us(mut self, work_us: u64) -> Self {
        self.work_us = Some(work_us);
        self
    }

    /// A `200` server-sent-event stream (`text/event-stream`).
    pub const fn event_stream() -> Self {
        ResponseHead {
            status: Status::Ok,
            content_type: Some("text/event-stream"),
            headers: &[("Cache-Control", "no-cache")],
            more_headers: &[],
            work_us: None,
            value_header: None,
            streamed: true,
        }
    }
}

/// A header value made per response, kept inline so a head stays `Copy` and allocation-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShortValue {
    bytes: [u8; ShortValue::MAX_BYTES],
    len: u8,
}

impl ShortValue {
    pub const MAX_BYTES: usize = 64;

    /// `None` if `value` is too long or holds a byte a header value cannot (controls).
    pub fn new(value: &str) -> Option<Self> {
        if value.len() > Self::MAX_BYTES || value.bytes().any(|b| b.is_ascii_control()) {
            return None;
        }
        let mut bytes = [0u8; Self::MAX_BYTES];
        bytes[..value.len()].copy_from_slice(value.as_bytes());
        Some(ShortValue {
            bytes,
            len: value.len() as u8,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// What the response says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// HTTP/1.1 default: stays open, nothing to say.
    Persistent,
    /// An HTTP/1.0 client that asked for keep-alive must be told it got it.
    KeepAlive,
    Close,
}

/// Appends one response to `out`. With `omit_body` (HEAD) the headers still announce the
/// body's length but the body is not sent.
pub fn write_response(
    out: &mut Vec<u8>,
    head: &ResponseHead,
    body: &[u8],
    connection: Connection,
    omit_body: bool,
) {
    write_head(out, head, body.len(), connection);
    if !omit_body {
        out.extend_from_slice(body);
    }
}

/// Appends the status line and headers of a response whose body is `body_len` bytes; the
/// caller sends the body (a large one straight from its own buffer, without copying it).
pub fn write_head(out: &mut Vec<u8>, head: &ResponseHead, body_len: usize, connection: Connection) {
    out.extend_from_slice(head.status.status_line());
    out.extend_from_slice(b"Server: allman\r\nDate: ");
    with_http_date(|date| out.extend_from_slice(date.as_bytes()));
    if !head.streamed {
        out.extend_from_slice(b"\r\nContent-Length: ");
        write_u64(out, body_len as u64);
    }
    out.extend_from_slice(b"\r\n");
    if let Some(content_type) = head.content_type {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(content_type.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in head.headers.iter().chain(head.more_headers) {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some((name, value)) = &head.value_header {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(work_us) = head.work_us {
        // Milliseconds with three decimals, as Server-Timing's `dur` expects.
        out.extend_from_slice(b"Server-Timing: page;dur=");
        write_u64(out, work_us / 1000);
        out.push(b'.');
        let fraction = (work_us % 1000) as usize;
        out.extend_from_slice(&[
            b'0' + (fraction / 100) as u8,
            b'0' + (fraction / 10 % 10) as u8,
            b'0' + (fraction % 10) as u8,
        ]);
        out.extend_from_slice(b"\r\n");
    }
    match connection {
        Connection::Persistent => {}
        Connection::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Connection::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// `HTTP/1.1 100 Continue`, sent when a client waits for it before sending its body.
pub fn write_continue(out: &mut Vec<u8>) {
    out.extend_from_slice(Status::Continue.status_line());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(head: ResponseHead, body: &[u8], connection: Connection, omit_body: bool) -> String {
        let mut out = Vec::new();
        write_response(&mut out, &head, body, connection, omit_body);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn response_has_length_type_and_date() {
        let text = render(
            ResponseHead::text(Status::Ok),
            b"OK",
            Connection::Persistent,
            false,
        );
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Length: 2\r\n"), "{text}");
        assert!(
            text.contains("\r\nContent-Type: text/plain; charset=utf-8\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nDate: ") && text.contains(" GMT\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\nOK"), "{text}");
        assert!(!text.contains("Connection:"));
        let text = render(
            ResponseHead::text(Status::Ok),
            b"OK",
            Connection::KeepAlive,
            false,
        );
        assert!(text.contains("\r\nConnection: keep-alive\r\n"), "{text}");
    }

    #[test]
    fn close_and_extra_headers_and_head_requests() {
        let head = ResponseHead::new(Status::MethodNotAllowed).with_headers(&[("Allow", "POST")]);
        let text = render(head, b"nope", Connection::Close, true);
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("\r\nAllow: POST\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.contains("\r\nContent-Length: 4\r\n"));
        assert!(text.ends_with("\r\n\r\n"), "HEAD sends no body: {text}");
    }

    #[test]
    fn every_status_is_counted_in_the_metrics() {
        let codes: Vec<u16> = Status::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes, crate::metrics::STATUS_CODES);
        // ALL lists every variant once: a new variant must be added there (and to the metrics).
        for status in Status::ALL {
            let listed = match status {
                Status::Continue
                | Status::Ok
                | Status::Accepted
                | Status::SeeOther
                | Status::BadRequest
                | Status::Unauthorized
                | Status::Forbidden
                | Status::NotFound
                | Status::MethodNotAllowed
                | Status::NotAcceptable
                | Status::RequestTimeout
                | Status::LengthRequired
                | Status::PayloadTooLarge
                | Status::UnsupportedMediaType
                | Status::HeaderFieldsTooLarge
                | Status::ServiceUnavailable => true,
            };
            assert!(listed);
        }
    }
}
