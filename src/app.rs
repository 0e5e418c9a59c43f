//! Routes: which path and method reach which handler. The [`Service`] each shard plugs into
//! the HTTP layer.

use crate::http::{Method, Request, ResponseHead, Service, Status};
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
        if let Err(refusal) = transport::check(&request.headers, &self.policy) {
            write_error(body, None, &RpcError::new(TRANSPORT_ERROR, refusal.message));
            let head = ResponseHead::json(refusal.status);
            return match refusal.status {
                Status::Unauthorized => head.with_headers(BEARER_CHALLENGE),
                _ => head,
            };
        }
        let version = request.headers.mcp_protocol_version;
        match mcp::handle_body(request.body, version, &self.tools, body).await {
            Outcome::Reply => ResponseHead::json(Status::Ok),
            Outcome::Refused => ResponseHead::json(Status::BadRequest),
            Outcome::Accepted => ResponseHead::new(Status::Accepted),
        }
    }
}

const BEARER_CHALLENGE: &[(&str, &str)] = &[("WWW-Authenticate", "Bearer realm=\"allman\"")];

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const ALLOW_HEALTH: &[(&str, &str)] = &[("Allow", "GET, HEAD")];
const ALLOW_MCP: &[(&str, &str)] = &[("Allow", "POST")];

impl Service for App {
    async fn handle(&self, request: &Request<'_>, body: &mut Vec<u8>) -> ResponseHead {
        let head = self.route(request, body).await;
        self.tools.shard_metrics().http_response(head.status);
        head
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
