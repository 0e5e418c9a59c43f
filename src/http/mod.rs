//! HTTP/1.1: bytes on a socket <-> requests and responses. Knows nothing of MCP or shards;
//! the server plugs in a [`Service`] that turns each [`Request`] into a response.

pub mod conn;
pub mod request;
pub mod response;

pub use conn::{refuse_connection, serve_connection, Timeouts};
pub use request::{Headers, Limits, Method, Request};
pub use response::{ResponseHead, Status};

/// What the server runs for each decoded request.
#[allow(async_fn_in_trait)]
pub trait Service {
    /// Handles `request`, writing the response body (if any) into `body`, which arrives empty.
    async fn handle(&self, request: &Request<'_>, body: &mut Vec<u8>) -> ResponseHead;
}
