//! HTTP/1.1: bytes on a socket <-> requests and responses. Knows nothing of MCP or shards;
//! the server plugs in a [`Service`] that turns each [`Request`] into a response.

pub mod conn;
pub mod request;
pub mod response;

pub use conn::{refuse_connection, serve_connection, ConnectionContext, ReadBudget, Timeouts};
pub use request::{Head, Headers, Limits, Method, Request};
pub use response::{ResponseHead, Status};

/// Whether a streamed response goes on after the part just written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStep {
    More,
    End,
}

/// How a connection takes turns with the rest of its executor. Socket reads and writes on
/// glommio complete without ever returning `Pending` while data or buffer space is there, so
/// a busy connection must step aside by itself; the server supplies the policy.
#[allow(async_fn_in_trait)]
pub trait TakeTurns: Default {
    /// Ends a step: steps aside if this turn has run long.
    async fn done(&mut self);
    /// Awaits `future`; if it really waited, others ran meanwhile and a new turn starts.
    async fn wait<F: std::future::Future>(&mut self, future: F) -> F::Output;
}

/// What the server runs for each decoded request.
#[allow(async_fn_in_trait)]
pub trait Service {
    /// How this service's connections take turns with the rest of the executor.
    type Turn: TakeTurns;

    /// Decides from the head alone, as soon as the header section is complete and before any
    /// of the body is buffered, whether the request is refused. `Some` is the refusal: its body
    /// goes into `body` (which arrives empty), it is sent, and the connection is closed without
    /// reading the request body. Authentication belongs here, so an unauthenticated client
    /// cannot make the server hold a body.
    fn admit(&self, head: &Head<'_>, body: &mut Vec<u8>) -> Option<ResponseHead>;

    /// What a streamed response keeps between its steps (`Default` until `handle` opens one).
    type Stream: Default;

    /// Handles `request`, writing the response body (if any) into `body`, which arrives empty.
    /// A streamed response (see [`ResponseHead::streamed`]) leaves everything its steps need
    /// in `stream`: the request is gone once they begin.
    async fn handle(
        &self,
        request: &Request<'_>,
        body: &mut Vec<u8>,
        stream: &mut Self::Stream,
    ) -> ResponseHead;

    /// Called each time a header section is parsed, for the metrics.
    fn head_parsed(&self) {}

    /// Whether answering `request` may take long (a long poll): the connection then watches
    /// for its client hanging up meanwhile, and drops the request if it does.
    fn may_wait_long(&self, _request: &Request<'_>) -> bool {
        false
    }

    /// The next part of a streamed response (see [`ResponseHead::streamed`]): waits for it,
    /// writes it into `body` (which arrives empty) and says whether more follow. Dropped if
    /// the client hangs up meanwhile.
    async fn stream_next(&self, _stream: &mut Self::Stream, _body: &mut Vec<u8>) -> StreamStep {
        StreamStep::End
    }

    /// A streamed response ended, however it ended (its last step, a hang-up, an I/O error):
    /// what it held can be given back.
    fn stream_ended(&self, _stream: &mut Self::Stream) {}

    /// Whether the server is stopping: reads then end (see `shutdown_reads`) without the
    /// client having hung up, and a long poll is being answered at once.
    fn stopping(&self) -> bool {
        false
    }
}
