//! Routes: which path and method reach which handler. The [`Service`] each shard plugs into
//! the HTTP layer.

use crate::http::{Head, Method, Request, ResponseHead, Service, Status};
use crate::mcp::jsonrpc::{write_error, RpcError};
use crate::mcp::transport::{self, TransportPolicy, TRANSPORT_ERROR};
use crate::mcp::{self, Outcome};
use crate::metrics::Metrics;
use crate::tools::Toolbox;
use std::rc::Rc;

pub struct App {
    tools: Toolbox,
    policy: Rc<TransportPolicy>,
}

impl App {
    pub fn new(tools: Toolbox, policy: Rc<TransportPolicy>) -> Self {
        App { tools, policy }
    }

    pub fn metrics(&self) -> &Metrics {
        self.tools.metrics()
    }

    async fn post_mcp(&self, request: &Request<'_>, body: &mut Vec<u8>) -> ResponseHead {
        // The transport rules were checked on the head (`admit`) before the body was read.
        let version = request.headers.mcp_protocol_version;
        match mcp::handle_body(request.body, version, &self.tools, body).await {
            Outcome::Reply => ResponseHead::json(Status::Ok),
            Outcome::Refused => ResponseHead::json(Status::BadRequest),
            Outcome::Accepted => ResponseHead::new(Status::Accepted),
        }
    }

    /// The transport rules for `POST /mcp` (Host, Origin, token, media types): decided by the
    /// headers alone. The protocol-version rule waits for the body, because `initialize` is
    /// exempt from it.
    fn admit_mcp(&self, head: &Head<'_>, body: &mut Vec<u8>) -> Option<ResponseHead> {
        let refusal = transport::check(&head.headers, &self.policy).err()?;
        write_error(body, None, &RpcError::new(TRANSPORT_ERROR, refusal.message));
        let response = ResponseHead::json(refusal.status);
        Some(match refusal.status {
            Status::Unauthorized => response.with_headers(BEARER_CHALLENGE),
            _ => response,
        })
    }
}

const BEARER_CHALLENGE: &[(&str, &str)] = &[("WWW-Authenticate", "Bearer realm=\"allman\"")];

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const ALLOW_HEALTH: &[(&str, &str)] = &[("Allow", "GET, HEAD")];
const ALLOW_MCP: &[(&str, &str)] = &[("Allow", "POST")];

impl Service for App {
    fn admit(&self, head: &Head<'_>, body: &mut Vec<u8>) -> Option<ResponseHead> {
        let refusal = match (head.path, head.method) {
            ("/mcp", Method::Post) => self.admit_mcp(head, body),
            // No other route reads a body: refuse one instead of buffering it.
            _ if head.body_len > 0 => {
                body.extend_from_slice(b"this route takes no request body\n");
                Some(ResponseHead::text(Status::PayloadTooLarge))
            }
            _ => None,
        }?;
        self.tools
            .shard_metrics()
            .http_response(refusal.status.code());
        Some(refusal)
    }

    async fn handle(&self, request: &Request<'_>, body: &mut Vec<u8>) -> ResponseHead {
        let head = self.route(request, body).await;
        self.tools.shard_metrics().http_response(head.status.code());
        head
    }

    fn head_parsed(&self) {
        self.tools.shard_metrics().head_parsed();
    }
}

impl App {
    async fn route(&self, request: &Request<'_>, body: &mut Vec<u8>) -> ResponseHead {
        match (request.path, request.method) {
            ("/metrics", Method::Get | Method::Head) => {
                body.extend_from_slice(self.metrics().render().as_bytes());
                ResponseHead::text(Status::Ok).with_content_type(PROMETHEUS_TEXT)
            }
            ("/metrics", _) => {
                body.extend_from_slice(b"use GET /metrics\n");
                ResponseHead::text(Status::MethodNotAllowed).with_headers(ALLOW_HEALTH)
            }
            ("/health", Method::Get | Method::Head) => {
                body.extend_from_slice(b"OK");
                ResponseHead::text(Status::Ok)
            }
            ("/health", _) => {
                body.extend_from_slice(b"use GET /health\n");
                ResponseHead::text(Status::MethodNotAllowed).with_headers(ALLOW_HEALTH)
            }
            ("/mcp", Method::Post) => self.post_mcp(request, body).await,
            ("/mcp", _) => {
                body.extend_from_slice(b"use POST /mcp with a JSON-RPC body\n");
                ResponseHead::text(Status::MethodNotAllowed).with_headers(ALLOW_MCP)
            }
            _ => {
                body.extend_from_slice(b"not found: try POST /mcp or GET /health\n");
                ResponseHead::text(Status::NotFound)
            }
        }
    }
}
