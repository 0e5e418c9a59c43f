//! Routes: which path and method reach which handler. The [`Service`] each shard plugs into
//! the HTTP layer.

use crate::http::{Head, Method, Request, ResponseHead, Service, Status, StreamStep};
use crate::mcp::listen::Listeners;
use crate::mcp::transport::{self, TransportPolicy};
use crate::mcp::{self, Outcome};
use crate::metrics::Metrics;
use crate::tools::Toolbox;
use crate::ui::{self, Ui};
use std::rc::Rc;
use std::sync::Arc;

pub struct Routes {
    tools: Toolbox,
    policy: Rc<TransportPolicy>,
    /// Every shard's counters, rendered by `GET /metrics`.
    metrics: Arc<Metrics>,
    ui: Ui,
    /// This shard's `subscriptions/listen` streams.
    listeners: Listeners,
}

impl Routes {
    pub fn new(
        tools: Toolbox,
        policy: Rc<TransportPolicy>,
        metrics: Arc<Metrics>,
        ui_enabled: bool,
        max_listen_streams: usize,
    ) -> Self {
        let ui = Ui::new(ui_enabled, Rc::clone(&policy));
        Routes {
            tools,
            policy,
            metrics,
            ui,
            listeners: Listeners::new(max_listen_streams),
        }
    }

    /// The server is stopping: every listen stream sends its final result and ends.
    pub fn close_streams(&self) {
        self.listeners.close();
    }

    async fn post_mcp(&self, request: &Request<'_>, body: &mut Vec<u8>) -> ResponseHead {
        // The transport rules were checked on the head (`admit`) before the body was read.
        let listeners = &self.listeners;
        match mcp::handle_body(request.body, &request.headers, &self.tools, listeners, body).await {
            Outcome::Reply => ResponseHead::json(Status::Ok),
            Outcome::Refused => ResponseHead::json(Status::BadRequest),
            Outcome::Accepted => ResponseHead::new(Status::Accepted),
            Outcome::NotFound => ResponseHead::json(Status::NotFound),
            Outcome::Busy => ResponseHead::json(Status::ServiceUnavailable),
            Outcome::Stream => ResponseHead::event_stream(),
        }
    }
}

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const ALLOW_HEALTH: &[(&str, &str)] = &[("Allow", "GET, HEAD")];
const ALLOW_MCP: &[(&str, &str)] = &[("Allow", "POST")];

impl Service for Routes {
    fn admit(&self, head: &Head<'_>, body: &mut Vec<u8>) -> Option<ResponseHead> {
        let refusal = match (head.path, head.method) {
            ("/mcp", Method::Post) => transport::admit(&head.headers, &self.policy, body),
            // The login form: one short field.
            ("/ui/login", Method::Post) if head.body_len > ui::MAX_LOGIN_BODY_BYTES => {
                body.extend_from_slice(b"login form too large\n");
                Some(ResponseHead::text(Status::PayloadTooLarge))
            }
            ("/ui/login", Method::Post) => None,
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

    fn may_wait_long(&self, request: &Request<'_>) -> bool {
        request.path == "/mcp" && contains(request.body, LONG_POLL_TOOL)
    }

    /// Only `/mcp`'s `subscriptions/listen` streams.
    async fn stream_next(&self, request: &Request<'_>, body: &mut Vec<u8>) -> StreamStep {
        let text = std::str::from_utf8(request.body).unwrap_or_default();
        mcp::stateless::next_listen_event(text, &self.listeners, body).await
    }

    fn stream_ended(&self, _request: &Request<'_>) {
        self.listeners.ended();
    }

    fn stopping(&self) -> bool {
        self.tools.shard().waiters_closed()
    }
}

/// The tool whose calls may wait long; a body naming it is watched for a hang-up (a false
/// positive, the name inside a message, only costs a socket peek).
const LONG_POLL_TOOL: &[u8] = b"wait_for_mail";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    haystack
        .iter()
        .enumerate()
        .filter(|(_, byte)| **byte == first)
        .any(|(at, _)| haystack[at + 1..].starts_with(rest))
}

impl Routes {
    async fn route(&self, request: &Request<'_>, body: &mut Vec<u8>) -> ResponseHead {
        match (request.path, request.method) {
            ("/metrics", Method::Get | Method::Head) => {
                body.extend_from_slice(self.metrics.render().as_bytes());
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
            (path, _) if Ui::owns(path) => self.ui.handle(&self.tools, request, body).await,
            _ => {
                body.extend_from_slice(b"not found: try POST /mcp, GET /health or GET /ui/\n");
                ResponseHead::text(Status::NotFound)
            }
        }
    }
}
