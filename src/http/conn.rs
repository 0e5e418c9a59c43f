//! One connection: read, decode every complete request, answer them in order with one write,
//! repeat. Buffers are per connection and reused across requests.

use super::request::{decode, Decoded, Limits, Method};
use super::response::{write_continue, write_response, Connection, ResponseHead, Status};
use super::Service;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::io;
use std::net::Shutdown;
use std::time::{Duration, Instant};

/// Read buffer a connection starts with: fits typical MCP requests, and 10,000 idle
/// connections then hold ~80 MiB at most.
const INITIAL_READ_BYTES: usize = 8 * 1024;
/// Buffers that grew past this for one large request are given back once the connection is
/// idle again, so a burst of big requests does not pin memory on every connection.
const RETAINED_BUFFER_BYTES: usize = 64 * 1024;
/// Pipelined responses are flushed once this much is waiting, bounding output per connection.
const MAX_PENDING_OUTPUT_BYTES: usize = 256 * 1024;
/// After refusing a request we read and discard at most this much (for at most
/// `LINGER_MS`) before closing, so the client reads our error instead of a TCP reset.
const LINGER_BYTES: usize = 1024 * 1024;
const LINGER_MS: u64 = 500;

/// How long a connection may wait for its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Between requests (and for every write): an idle keep-alive connection is closed.
    pub idle: Duration,
    /// From the first byte of a request to its last: a client trickling headers or a body
    /// (slowloris) gets 408 and is closed, so it cannot hold a slot indefinitely.
    pub request: Duration,
}

/// Serves `stream` until the client closes it, asks to close, breaks the protocol, times out,
/// or the read side is shut down (server stopping). I/O errors end the connection only.
pub async fn serve_connection<S: Service>(
    stream: &mut TcpStream,
    service: &S,
    limits: &Limits,
    timeouts: Timeouts,
) -> io::Result<()> {
    stream.set_write_timeout(Some(timeouts.idle))?;
    let mut request_started: Option<Instant> = None;
    let max_buffer_bytes = limits.max_header_bytes + limits.max_body_bytes;
    let mut input = vec![0u8; INITIAL_READ_BYTES];
    let (mut start, mut end) = (0usize, 0usize);
    let mut output: Vec<u8> = Vec::with_capacity(1024);
    let mut body: Vec<u8> = Vec::with_capacity(1024);
    let mut continue_sent = false;

    loop {
        let mut close = false;
        let mut refused = false;
        let mut wanted: Option<usize> = None;
        while start < end {
            match decode(&input[start..end], limits) {
                Ok(Decoded::Complete { request, consumed }) => {
                    body.clear();
                    let head = service.handle(&request, &mut body).await;
                    close = !request.keep_alive;
                    let connection = match (close, request.http10) {
                        (true, _) => Connection::Close,
                        (false, true) => Connection::KeepAlive,
                        (false, false) => Connection::Persistent,
                    };
                    let omit_body = request.method == Method::Head;
                    write_response(&mut output, &head, &body, connection, omit_body);
                    start += consumed;
                    continue_sent = false;
                    // The clock restarts for the next request, whose bytes may already be
                    // here: time spent answering this one is not charged to it.
                    request_started = None;
                    if close {
                        break;
                    }
                    if output.len() >= MAX_PENDING_OUTPUT_BYTES {
                        stream.write_all(&output).await?;
                        output.clear();
                    }
                }
                Ok(Decoded::Partial {
                    total_len,
                    expect_continue,
                }) => {
                    wanted = total_len;
                    if expect_continue && !continue_sent {
                        write_continue(&mut output);
                        continue_sent = true;
                    }
                    break;
                }
                Err(error) => {
                    body.clear();
                    body.extend_from_slice(error.message().as_bytes());
                    body.push(b'\n');
                    let head = ResponseHead::text(error.status());
                    write_response(&mut output, &head, &body, Connection::Close, false);
                    tracing::debug!(status = error.status().code(), reason = %error.message(), "refused request");
                    close = true;
                    refused = true;
                    break;
                }
            }
        }
        if !output.is_empty() {
            stream.write_all(&output).await?;
            output.clear();
        }
        if close {
            if refused {
                linger(stream).await;
            }
            return Ok(());
        }

        // Make room for the next read.
        if start == end {
            start = 0;
            end = 0;
            if input.len() > RETAINED_BUFFER_BYTES {
                input = vec![0u8; INITIAL_READ_BYTES];
            }
            if body.capacity() > RETAINED_BUFFER_BYTES {
                body = Vec::with_capacity(1024);
            }
            if output.capacity() > RETAINED_BUFFER_BYTES {
                output = Vec::with_capacity(1024);
            }
        } else if start > 0 {
            input.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        let target_len = match wanted {
            // The whole request's size is known: read it in as few calls as possible.
            Some(total) => total,
            None if end == input.len() => (input.len() * 2).min(max_buffer_bytes),
            None => input.len(),
        };
        if target_len > input.len() {
            input.resize(target_len, 0);
        }
        // A partial request is on the clock; between requests the idle timeout applies.
        let timeout = if start < end {
            let started = *request_started.get_or_insert_with(Instant::now);
            timeouts.request.saturating_sub(started.elapsed())
        } else {
            request_started = None;
            timeouts.idle
        };
        if timeout.is_zero() {
            return request_timed_out(stream, &mut output).await;
        }
        stream.set_read_timeout(Some(timeout))?;
        debug_assert!(
            end < input.len(),
            "decode refuses requests larger than the buffer cap"
        );

        let read = match stream.read(&mut input[end..]).await {
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::TimedOut && start < end => {
                return request_timed_out(stream, &mut output).await;
            }
            Err(error) => return Err(error),
        };
        if read == 0 {
            return Ok(());
        }
        end += read;
    }
}

/// Answers a connection the server will not serve (over the connection limit) with a 503,
/// then closes it the same careful way as any refusal.
pub async fn refuse_connection(stream: &mut TcpStream, reason: &str) {
    let mut out = Vec::with_capacity(256);
    let head = ResponseHead::text(Status::ServiceUnavailable);
    write_response(&mut out, &head, reason.as_bytes(), Connection::Close, false);
    if stream.write_all(&out).await.is_ok() {
        linger(stream).await;
    }
}

/// The client took longer than the request timeout to send one request: 408, then close.
async fn request_timed_out(stream: &mut TcpStream, output: &mut Vec<u8>) -> io::Result<()> {
    output.clear();
    let head = ResponseHead::text(Status::RequestTimeout);
    write_response(
        output,
        &head,
        b"request not completed in time\n",
        Connection::Close,
        false,
    );
    tracing::debug!("request timed out");
    if stream.write_all(output).await.is_ok() {
        linger(stream).await;
    }
    Ok(())
}

/// Half-closes and drains what the client is still sending, bounded in bytes and time.
async fn linger(stream: &mut TcpStream) {
    if stream.shutdown(Shutdown::Write).await.is_err() {
        return;
    }
    // LINGER_MS bounds the whole linger, not each read: a trickling client cannot stretch it.
    let deadline = std::time::Instant::now() + Duration::from_millis(LINGER_MS);
    let mut scratch = [0u8; 4096];
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut scratch).await {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
        }
    }
}
