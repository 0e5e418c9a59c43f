//! One connection: read, decode every complete request, answer them in order with one write,
//! repeat. Buffers are per connection and reused across requests.
//!
//! Memory is earned, not announced: the read buffer grows with the bytes that arrive
//! (doubling, capped at the request's announced size), a request's head is checked
//! ([`Service::admit`]) before any of its body is buffered, and growth past the first
//! [`INITIAL_READ_BYTES`] is charged to the shard's [`ReadBudget`].

use super::request::{decode_head, Limits, Method, Request};
use super::response::{write_continue, write_head, write_response, Connection, ResponseHead};
use super::{Service, Status, StreamStep, TakeTurns};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::cell::Cell;
use std::io;
use std::net::Shutdown;
use std::time::{Duration, Instant};

/// Read buffer a connection starts with: fits typical MCP requests, and 10,000 idle
/// connections then hold ~80 MiB at most. Growth beyond it is charged to the [`ReadBudget`].
pub const INITIAL_READ_BYTES: usize = 8 * 1024;
/// Response buffers that grew past this for one large response are given back once the
/// connection is idle again, so a burst of big answers does not pin memory on every connection.
const RETAINED_BUFFER_BYTES: usize = 64 * 1024;
/// What a stream's body buffer keeps between steps: an event is a few hundred bytes.
const STREAM_STEP_BYTES: usize = 512;
/// Pipelined responses are flushed once this much is waiting, bounding output per connection.
const MAX_PENDING_OUTPUT_BYTES: usize = 256 * 1024;
/// A response body at least this large is written from its own buffer instead of being
/// copied behind the others (a drained inbox page can be megabytes).
const DIRECT_WRITE_BYTES: usize = 64 * 1024;
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

/// Bytes of request data one shard buffers beyond each connection's first
/// [`INITIAL_READ_BYTES`], across all its connections. Without it, 10,000 connections that each
/// send most of a 1 MiB body would hold ~10 GiB; past it a request gets 503 instead.
#[derive(Debug)]
pub struct ReadBudget {
    limit_bytes: usize,
    used_bytes: Cell<usize>,
}

impl ReadBudget {
    pub fn new(limit_bytes: usize) -> Self {
        ReadBudget {
            limit_bytes,
            used_bytes: Cell::new(0),
        }
    }

    /// Bytes charged now, across the shard's connections.
    pub fn used_bytes(&self) -> usize {
        self.used_bytes.get()
    }

    fn try_take(&self, bytes: usize) -> bool {
        let used = self.used_bytes.get();
        if used + bytes > self.limit_bytes {
            return false;
        }
        self.used_bytes.set(used + bytes);
        true
    }

    fn give_back(&self, bytes: usize) {
        let used = self.used_bytes.get();
        assert!(bytes <= used, "read budget returned more than it lent");
        self.used_bytes.set(used - bytes);
    }
}

/// A connection's read buffer: `bytes[start..end]` is received and not yet consumed.
struct ReadBuffer<'a> {
    bytes: Vec<u8>,
    start: usize,
    end: usize,
    budget: &'a ReadBudget,
    /// What this buffer holds of the budget: its length beyond `INITIAL_READ_BYTES`.
    charged: usize,
}

/// The buffer could not grow: the shard's read budget is spent.
struct BudgetSpent;

impl<'a> ReadBuffer<'a> {
    fn new(budget: &'a ReadBudget) -> Self {
        ReadBuffer {
            bytes: vec![0u8; INITIAL_READ_BYTES],
            start: 0,
            end: 0,
            budget,
            charged: 0,
        }
    }

    fn data(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn consume(&mut self, len: usize) {
        assert!(len <= self.end - self.start, "consumed more than was read");
        self.start += len;
    }

    /// Moves unread bytes to the front. Between requests a grown buffer is given back, so
    /// the budget counts only requests in progress.
    fn compact(&mut self) {
        if self.is_empty() {
            self.start = 0;
            self.end = 0;
            if self.bytes.len() > INITIAL_READ_BYTES {
                self.bytes = vec![0u8; INITIAL_READ_BYTES];
                self.recharge();
            }
        } else if self.start > 0 {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Ensures room to read at least one more byte, doubling the buffer when it is full but
    /// never beyond `cap_len` (the most the request being read can need). Call after `compact`.
    fn make_room(&mut self, cap_len: usize) -> Result<(), BudgetSpent> {
        if self.end < self.bytes.len() {
            return Ok(());
        }
        debug_assert_eq!(self.start, 0, "compact before growing");
        assert!(
            cap_len > self.end,
            "grown only for a request that needs more"
        );
        let new_len = (self.bytes.len() * 2).min(cap_len);
        let extra = new_len.saturating_sub(INITIAL_READ_BYTES) - self.charged;
        if !self.budget.try_take(extra) {
            return Err(BudgetSpent);
        }
        self.charged += extra;
        // Zero-filling commits memory, but only up to twice what has actually arrived.
        self.bytes.resize(new_len, 0);
        Ok(())
    }

    fn recharge(&mut self) {
        let now = self.bytes.len().saturating_sub(INITIAL_READ_BYTES);
        self.budget.give_back(self.charged - now);
        self.charged = now;
    }

    /// Gives the buffer back for good: the connection reads no more requests.
    fn release(&mut self) {
        self.bytes = Vec::new();
        self.start = 0;
        self.end = 0;
        self.recharge();
    }

    fn spare(&mut self) -> &mut [u8] {
        &mut self.bytes[self.end..]
    }
}

impl Drop for ReadBuffer<'_> {
    fn drop(&mut self) {
        self.budget.give_back(self.charged);
    }
}

/// Everything a connection needs from its shard.
pub struct ConnectionContext<'a, S> {
    pub service: &'a S,
    pub limits: &'a Limits,
    pub timeouts: Timeouts,
    pub budget: &'a ReadBudget,
}

impl<S> Clone for ConnectionContext<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for ConnectionContext<'_, S> {}

/// What the read loop does after the requests in the buffer have been handled.
enum Next<T> {
    /// Read more bytes; `need` is the most the request being read may still take (its
    /// announced size once its head is known).
    Read { need: usize },
    /// The last response said `Connection: close`.
    Close,
    /// The request was refused; close carefully (lingering) so the client reads why.
    CloseAfterRefusal,
    /// The last answer is a stream (its head and first part are in `output`): its steps
    /// follow, and the connection reads no more requests.
    Stream(T),
}

/// Serves `stream` until the client closes it, asks to close, breaks the protocol, times out,
/// or the read side is shut down (server stopping). I/O errors end the connection only.
pub async fn serve_connection<S: Service>(
    stream: &mut TcpStream,
    context: &ConnectionContext<'_, S>,
) -> io::Result<()> {
    stream.set_write_timeout(Some(context.timeouts.idle))?;
    let mut session = Session::new(*context);
    loop {
        let next = session.answer_buffered(stream).await?;
        if !session.output.is_empty() {
            stream.write_all(&session.output).await?;
            session.output.clear();
        }
        let need = match next {
            Next::Read { need } => need,
            Next::Close => return Ok(()),
            Next::CloseAfterRefusal => {
                linger(stream, &mut session.turn).await;
                return Ok(());
            }
            Next::Stream(streamed) => return session.stream(stream, streamed).await,
        };
        session.make_ready_to_read();
        if session.input.make_room(need).is_err() {
            return session.refuse_over_budget(stream).await;
        }
        let Some(timeout) = session.read_timeout() else {
            return request_timed_out(stream, &mut session.output, &mut session.turn).await;
        };
        stream.set_read_timeout(Some(timeout))?;
        match session.turn.wait(stream.read(session.input.spare())).await {
            Ok(0) => return Ok(()),
            Ok(read) => {
                session.input.end += read;
                // A body pouring in fills the buffer read after read without waiting.
                session.turn.done().await;
            }
            Err(error) if error.kind() == io::ErrorKind::TimedOut && !session.input.is_empty() => {
                return request_timed_out(stream, &mut session.output, &mut session.turn).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// One connection's state between reads. Buffers are reused across requests.
struct Session<'a, S: Service> {
    context: ConnectionContext<'a, S>,
    input: ReadBuffer<'a>,
    /// Responses not written yet (pipelined answers go out in one write).
    output: Vec<u8>,
    /// The body of the response being built.
    body: Vec<u8>,
    /// The size of the request at the front of `input` once its head has been admitted: its
    /// body is still arriving, and the head is not parsed again until all of it is here.
    admitted_len: Option<usize>,
    continue_sent: bool,
    /// When the first byte of the request being read arrived (the request timeout's clock).
    request_started: Option<Instant>,
    turn: S::Turn,
}

impl<'a, S: Service> Session<'a, S> {
    fn new(context: ConnectionContext<'a, S>) -> Self {
        Session {
            context,
            input: ReadBuffer::new(context.budget),
            output: Vec::with_capacity(1024),
            body: Vec::with_capacity(1024),
            admitted_len: None,
            continue_sent: false,
            request_started: None,
            turn: S::Turn::default(),
        }
    }

    /// Decodes and answers every complete request in the buffer, in order, and says what to
    /// do next. Refusals are written to `output` here; answers too, unless they are large.
    async fn answer_buffered(
        &mut self,
        stream: &mut TcpStream,
    ) -> io::Result<Next<Streamed<'a, S>>> {
        let ConnectionContext {
            service, limits, ..
        } = self.context;
        while !self.input.is_empty() {
            if let Some(total) = self.admitted_len {
                if self.input.data().len() < total {
                    return Ok(Next::Read { need: total });
                }
            }
            service.head_parsed();
            let head = match decode_head(self.input.data(), limits) {
                Ok(Some(head)) => head,
                Ok(None) => break,
                Err(error) => {
                    let mut reason = error.message();
                    reason.push('\n');
                    let response = ResponseHead::text(error.status());
                    return Ok(self.refuse(&response, Some(reason.as_bytes())));
                }
            };
            let total = head.total_len();
            if self.admitted_len.is_none() {
                self.body.clear();
                if let Some(refusal) = service.admit(&head, &mut self.body) {
                    return Ok(self.refuse(&refusal, None));
                }
            }
            let Some(request) = head.with_body(self.input.data()) else {
                self.admitted_len = Some(total);
                if head.expect_continue && !self.continue_sent {
                    write_continue(&mut self.output);
                    self.continue_sent = true;
                }
                return Ok(Next::Read { need: total });
            };
            let answer = Answer {
                body: &mut self.body,
                output: &mut self.output,
                turn: &mut self.turn,
            };
            let sent = answer.send(stream, service, &request).await?;
            self.input.consume(total);
            self.admitted_len = None;
            self.continue_sent = false;
            // The clock restarts for the next request, whose bytes may already be here: time
            // spent answering this one is not charged to it.
            self.request_started = None;
            match sent {
                Sent::Reply { close: true } => return Ok(Next::Close),
                Sent::Reply { close: false } => {}
                Sent::Stream(streamed) => return Ok(Next::Stream(streamed)),
            }
            // Socket reads and writes complete without ever returning `Pending` while data or
            // buffer space is there, so a pipelining client would otherwise keep this shard.
            self.turn.done().await;
        }
        Ok(Next::Read {
            // Room for a header section over the limit, so the decoder can refuse it.
            need: limits.max_header_bytes + 1,
        })
    }

    /// Queues a refusal, with `reason` as its body or else what `body` holds, and closes.
    fn refuse(&mut self, response: &ResponseHead, reason: Option<&[u8]>) -> Next<Streamed<'a, S>> {
        let body = reason.unwrap_or(&self.body);
        write_response(&mut self.output, response, body, Connection::Close, false);
        tracing::debug!(status = response.status.code(), "refused a request");
        Next::CloseAfterRefusal
    }

    /// Compacts the input, and between requests gives back response buffers that grew.
    fn make_ready_to_read(&mut self) {
        self.input.compact();
        if self.input.is_empty() {
            if self.body.capacity() > RETAINED_BUFFER_BYTES {
                self.body = Vec::with_capacity(1024);
            }
            if self.output.capacity() > RETAINED_BUFFER_BYTES {
                self.output = Vec::with_capacity(1024);
            }
        }
    }

    /// How long the next read may wait: the idle timeout between requests, what is left of
    /// the request timeout within one. `None` once the request timeout has passed.
    fn read_timeout(&mut self) -> Option<Duration> {
        let timeouts = self.context.timeouts;
        if self.input.is_empty() {
            self.request_started = None;
            return Some(timeouts.idle);
        }
        let started = *self.request_started.get_or_insert_with(Instant::now);
        Some(timeouts.request.saturating_sub(started.elapsed())).filter(|left| !left.is_zero())
    }

    /// Sends a streamed answer's steps; the head and first part are already written. The
    /// connection reads no more requests, so its buffers shrink to what a step needs: an
    /// idle stream then costs little beyond its task (issue 27 asks at most 16 KiB).
    async fn stream(
        &mut self,
        stream: &mut TcpStream,
        streamed: Streamed<'a, S>,
    ) -> io::Result<()> {
        self.input.release();
        self.output = Vec::new();
        if self.body.capacity() > STREAM_STEP_BYTES {
            self.body = Vec::with_capacity(STREAM_STEP_BYTES);
        }
        streamed.send(stream, &mut self.body, &mut self.turn).await
    }

    /// The shard's read budget cannot hold this request: 503, then close.
    async fn refuse_over_budget(&mut self, stream: &mut TcpStream) -> io::Result<()> {
        tracing::debug!(
            used_bytes = self.context.budget.used_bytes(),
            "read budget spent; refusing a request"
        );
        let reason = b"the server is buffering too many request bodies; retry shortly\n";
        answer_and_close(
            stream,
            &mut self.output,
            Status::ServiceUnavailable,
            reason,
            &mut self.turn,
        )
        .await;
        Ok(())
    }
}

/// The buffers one answer is written with (borrowed apart from the request, which borrows
/// the input).
struct Answer<'s, T> {
    body: &'s mut Vec<u8>,
    output: &'s mut Vec<u8>,
    turn: &'s mut T,
}

/// How a request was answered.
enum Sent<T> {
    /// A whole response is queued or written; `close` when the connection ends after it.
    Reply { close: bool },
    /// A streamed response's head and first part are queued; its steps follow. Held in its
    /// guard from here on, so that the service hears of its end on every path.
    Stream(T),
}

impl<T: TakeTurns> Answer<'_, T> {
    /// Handles `request` and queues (or, when large, writes) its response.
    async fn send<'s, S: Service>(
        self,
        stream: &mut TcpStream,
        service: &'s S,
        request: &Request<'_>,
    ) -> io::Result<Sent<Streamed<'s, S>>> {
        self.body.clear();
        let long = service.may_wait_long(request);
        if long && !self.output.is_empty() {
            // Answers to earlier pipelined requests go out before the wait, not after it.
            stream.write_all(self.output).await?;
            self.output.clear();
        }
        let mut state = S::Stream::default();
        // The handling future (the largest part of a connection's task) is built inside each
        // branch and pinned where it is awaited: a future moved from a local into another
        // keeps a slot in both, so the task would hold it twice.
        let response = if long {
            let (body, state) = (&mut *self.body, &mut state);
            match futures_lite::future::or(
                async { Some(service.handle(request, body, state).await) },
                async {
                    hung_up(stream, || service.stopping()).await;
                    None
                },
            )
            .await
            {
                Some(response) => response,
                // The client is gone: dropping the request frees what it held (its waiter).
                None => return Err(io::ErrorKind::ConnectionAborted.into()),
            }
        } else {
            let handling = std::pin::pin!(service.handle(request, self.body, &mut state));
            self.turn.wait(handling).await
        };
        if response.streamed {
            // The body has no length, so the connection closes at its end: requests
            // pipelined behind a stream are dropped, never answered.
            write_head(self.output, &response, 0, Connection::Close);
            self.output.extend_from_slice(self.body);
            return Ok(Sent::Stream(Streamed { service, state }));
        }
        let close = !request.keep_alive;
        let connection = match (close, request.http10) {
            (true, _) => Connection::Close,
            (false, true) => Connection::KeepAlive,
            (false, false) => Connection::Persistent,
        };
        write_head(self.output, &response, self.body.len(), connection);
        if request.method == Method::Head {
            // The head announces the body's length; the body is not sent.
        } else if self.body.len() >= DIRECT_WRITE_BYTES {
            stream.write_all(self.output).await?;
            self.output.clear();
            stream.write_all(self.body).await?;
        } else {
            self.output.extend_from_slice(self.body);
        }
        if self.output.len() >= MAX_PENDING_OUTPUT_BYTES {
            stream.write_all(self.output).await?;
            self.output.clear();
        }
        Ok(Sent::Reply { close })
    }
}

/// A streamed response being sent; dropping it (at its end, on a hang-up or an I/O error)
/// tells the service that it ended.
struct Streamed<'s, S: Service> {
    service: &'s S,
    state: S::Stream,
}

impl<S: Service> Streamed<'_, S> {
    /// Writes every step as it comes, until the last one (returns then) or a hang-up.
    async fn send(
        mut self,
        stream: &mut TcpStream,
        body: &mut Vec<u8>,
        turn: &mut S::Turn,
    ) -> io::Result<()> {
        // A stream may be quiet for long; only a hang-up (or the end) closes it.
        stream.set_read_timeout(None)?;
        let service = self.service;
        loop {
            body.clear();
            let state = &mut self.state;
            let next = futures_lite::future::or(
                async { Some(service.stream_next(state, body).await) },
                async {
                    hung_up_discarding(stream, || service.stopping(), turn).await;
                    None
                },
            )
            .await;
            let Some(step) = next else {
                return Err(io::ErrorKind::ConnectionAborted.into());
            };
            stream.write_all(body).await?;
            // A stream with mail ready at every step never waits: take turns with the shard.
            turn.done().await;
            if step == StreamStep::End {
                // Closed the careful way, so that bytes the client sent after its request do
                // not turn the close into a reset that destroys the last event in flight.
                linger(stream, turn).await;
                return Ok(());
            }
        }
    }
}

/// Completes when the client of a streamed answer hangs up (end of stream, or a reset).
/// Whatever it sends meanwhile is read and thrown away, so that a stray CRLF or a pipelined
/// request cannot hide a later hang-up; a client pouring bytes in takes turns with the rest
/// of the shard. While the server is `stopping` its own shutdown of reads is no hang-up.
async fn hung_up_discarding(
    stream: &mut TcpStream,
    stopping: impl Fn() -> bool,
    turn: &mut impl TakeTurns,
) {
    let mut scratch = [0u8; 1024];
    loop {
        match stream.read(&mut scratch).await {
            Ok(0) if stopping() => return std::future::pending().await,
            Ok(0) => return,
            Ok(_) => turn.done().await,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::TimedOut
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

impl<S: Service> Drop for Streamed<'_, S> {
    fn drop(&mut self) {
        self.service.stream_ended(&mut self.state);
    }
}

/// Completes when the client hangs up (end of stream, or a reset); stays pending while it is
/// connected. Bytes it sends meanwhile (a pipelined request) stay in the socket for the next
/// read; once any are there, a hang-up cannot be told from them, so it stops watching. While
/// the server is `stopping` its own shutdown of reads ends the stream: that is no hang-up.
async fn hung_up(stream: &TcpStream, stopping: impl Fn() -> bool) {
    let mut byte = [0u8; 1];
    loop {
        match stream.peek(&mut byte).await {
            Ok(0) if stopping() => return std::future::pending().await,
            Ok(0) => return,
            Ok(_) => return std::future::pending().await,
            Err(error) => {
                let kind = io::Error::from(error).kind();
                if !matches!(
                    kind,
                    io::ErrorKind::TimedOut
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                ) {
                    return;
                }
            }
        }
    }
}

/// Answers a connection the server will not serve (over the connection limit) with a 503,
/// then closes it the same careful way as any refusal.
pub async fn refuse_connection(stream: &mut TcpStream, reason: &str, turn: &mut impl TakeTurns) {
    let mut out = Vec::with_capacity(256);
    answer_and_close(
        stream,
        &mut out,
        Status::ServiceUnavailable,
        reason.as_bytes(),
        turn,
    )
    .await;
}

/// The client took longer than the request timeout to send one request: 408, then close.
async fn request_timed_out(
    stream: &mut TcpStream,
    output: &mut Vec<u8>,
    turn: &mut impl TakeTurns,
) -> io::Result<()> {
    tracing::debug!("request timed out");
    let reason = b"request not completed in time\n";
    answer_and_close(stream, output, Status::RequestTimeout, reason, turn).await;
    Ok(())
}

/// Appends a closing text response to `output` (behind any answers still in it), writes it,
/// and lingers: how every refusal that ends a connection goes out.
async fn answer_and_close(
    stream: &mut TcpStream,
    output: &mut Vec<u8>,
    status: Status,
    body: &[u8],
    turn: &mut impl TakeTurns,
) {
    let head = ResponseHead::text(status);
    write_response(output, &head, body, Connection::Close, false);
    if stream.write_all(output).await.is_ok() {
        linger(stream, turn).await;
    }
}

/// Half-closes and drains what the client is still sending, bounded in bytes and time.
async fn linger(stream: &mut TcpStream, turn: &mut impl TakeTurns) {
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
        match turn.wait(stream.read(&mut scratch)).await {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
        }
        // A client pouring bytes in must not keep the shard while we discard them.
        turn.done().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_grows_by_doubling_up_to_the_cap_and_charges_the_budget() {
        let budget = ReadBudget::new(100_000);
        let mut buffer = ReadBuffer::new(&budget);
        buffer.end = INITIAL_READ_BYTES;
        assert!(buffer.make_room(50_000).is_ok());
        assert_eq!(buffer.bytes.len(), 2 * INITIAL_READ_BYTES);
        assert_eq!(budget.used_bytes(), INITIAL_READ_BYTES);
        buffer.end = buffer.bytes.len();
        assert!(buffer.make_room(20_000).is_ok());
        assert_eq!(
            buffer.bytes.len(),
            20_000,
            "capped at what the request needs"
        );
        assert_eq!(budget.used_bytes(), 20_000 - INITIAL_READ_BYTES);
        drop(buffer);
        assert_eq!(
            budget.used_bytes(),
            0,
            "a closed connection gives it all back"
        );
    }

    #[test]
    fn growth_past_the_budget_is_refused_and_idle_buffers_shrink() {
        let budget = ReadBudget::new(INITIAL_READ_BYTES);
        let mut first = ReadBuffer::new(&budget);
        first.end = INITIAL_READ_BYTES;
        assert!(first.make_room(1 << 20).is_ok());
        let mut second = ReadBuffer::new(&budget);
        second.end = INITIAL_READ_BYTES;
        assert!(second.make_room(1 << 20).is_err(), "budget spent");
        assert_eq!(second.bytes.len(), INITIAL_READ_BYTES);
        first.end = first.bytes.len();
        first.start = first.end;
        first.compact();
        assert_eq!(first.bytes.len(), INITIAL_READ_BYTES);
        assert_eq!(budget.used_bytes(), 0);
    }

    #[test]
    fn a_released_buffer_holds_no_memory_and_no_budget() {
        let budget = ReadBudget::new(100_000);
        let mut buffer = ReadBuffer::new(&budget);
        buffer.end = INITIAL_READ_BYTES;
        assert!(buffer.make_room(30_000).is_ok());
        assert_eq!(budget.used_bytes(), INITIAL_READ_BYTES);
        buffer.release();
        assert_eq!(buffer.bytes.capacity(), 0);
        assert!(buffer.is_empty());
        assert_eq!(budget.used_bytes(), 0);
        drop(buffer);
        assert_eq!(budget.used_bytes(), 0, "nothing is given back twice");
    }
}
