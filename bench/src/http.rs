//! A minimal blocking HTTP/1.1 client on one keep-alive connection (plain TCP: the targets are
//! allman and local OpenAI-compatible servers).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Responses larger than this are refused rather than buffered.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    /// Path including any query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses `http://host[:port][/path]`. HTTPS is not supported (no TLS here).
    pub fn parse(text: &str) -> Result<Url, String> {
        let rest = text
            .strip_prefix("http://")
            .ok_or_else(|| format!("{text}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                (host, port.parse().map_err(|_| format!("{text}: bad port"))?)
            }
            _ => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("{text}: no host"));
        }
        Ok(Url {
            host: host.trim_matches(['[', ']']).to_string(),
            port,
            path: path.to_string(),
        })
    }

    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The same server, another path.
    pub fn with_path(&self, path: &str) -> Url {
        Url {
            path: path.to_string(),
            ..self.clone()
        }
    }
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

pub struct Connection {
    url: Url,
    stream: Option<TcpStream>,
    buffer: Vec<u8>,
    /// The request being sent, kept to reuse its allocation.
    request: Vec<u8>,
    /// Whether any byte of the current response has arrived.
    response_started: bool,
}

impl Connection {
    pub fn new(url: &Url) -> Connection {
        Connection {
            url: url.clone(),
            stream: None,
            buffer: Vec::with_capacity(16 * 1024),
            request: Vec::with_capacity(1024),
            response_started: false,
        }
    }

    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.url.authority())?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            stream.set_write_timeout(Some(IO_TIMEOUT))?;
            self.stream = Some(stream);
            self.buffer.clear();
        }
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::other("no stream"))
    }

    /// POSTs `body` to `path`. Retries once, on a new connection, only if a kept-alive
    /// connection turned out to be closed before any byte of the answer came back: a request
    /// that may have run (tools are not idempotent) is never sent twice.
    pub fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let reused = self.stream.is_some();
        match self.post_once(path, headers, body) {
            Ok(response) => Ok(response),
            Err(error) if reused && !self.response_started && is_stale_connection(&error) => {
                self.stream = None;
                self.post_once(path, headers, body)
            }
            Err(error) => {
                self.stream = None;
                Err(error)
            }
        }
    }

    /// GETs `path` on a connection of its own (closed after the answer).
    pub fn get(url: &Url, path: &str) -> io::Result<Response> {
        let mut connection = Connection::new(url);
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            url.host
        );
        connection.stream()?.write_all(request.as_bytes())?;
        connection.read_response()
    }

    fn post_once(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        use std::io::Write as _;
        let mut request = std::mem::take(&mut self.request);
        request.clear();
        let _ = write!(
            request,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n",
            self.url.host,
            body.len()
        );
        for (name, value) in headers {
            let _ = write!(request, "{name}: {value}\r\n");
        }
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(body);
        let written = self.stream().and_then(|stream| stream.write_all(&request));
        self.request = request;
        written?;
        self.read_response()
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let read = self.stream()?.read(&mut chunk)?;
        if read == 0 {
            self.stream = None;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        self.response_started = true;
        Ok(())
    }

    fn read_response(&mut self) -> io::Result<Response> {
        loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buffer[..end])
                    .map_err(|_| io::Error::other("response head is not UTF-8"))?;
                let status: u16 = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| io::Error::other(format!("bad status line in {head:?}")))?;
                let mut length = 0usize;
                let mut close = false;
                for line in head.split("\r\n").skip(1) {
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().map_err(io::Error::other)?;
                        } else if name.eq_ignore_ascii_case("connection") {
                            close = value.trim().eq_ignore_ascii_case("close");
                        }
                    }
                }
                if status == 100 {
                    self.buffer.drain(..end + 4);
                    continue;
                }
                if length > MAX_RESPONSE_BYTES {
                    return Err(io::Error::other("response too large"));
                }
                let total = end + 4 + length;
                while self.buffer.len() < total {
                    self.fill()?;
                }
                let body = self.buffer[end + 4..total].to_vec();
                self.buffer.drain(..total);
                if close {
                    self.stream = None;
                }
                return Ok(Response { status, body });
            }
            self.fill()?;
        }
    }
}

/// A kept-alive connection the server had already closed.
fn is_stale_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let url = Url::parse("http://127.0.0.1:8000").expect("valid");
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("127.0.0.1", 8000, "/")
        );
        let url = Url::parse("http://localhost/v1/chat").expect("valid");
        assert_eq!((url.port, url.path.as_str()), (80, "/v1/chat"));
        assert!(Url::parse("https://x").is_err());
        assert!(Url::parse("http://:80").is_err());
    }
}
