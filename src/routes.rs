//! Routes: which path and method reach which handler. The [`Service`] each shard plugs into
//! the HTTP layer.

use crate::http::{Head, Method, Request, ResponseHead, Service, Status, StreamStep, TakeTurns};
use crate::mcp::events::EventStream;
use crate::mcp::listen::Listeners;
use crate::mcp::resources::{bound_agent, watch_from_newest, ResourceParams};
use crate::mcp::sessions::{self, Sessions};
use crate::mcp::transport::{self, TransportPolicy};
use crate::mcp::{self, Context, Outcome};
use crate::metrics::Metrics;
use crate::tools::Toolbox;
use crate::ui::{self, Ui};
use shards::Turn;
use std::rc::Rc;
use std::sync::Arc;

pub struct Routes {
    tools: Toolbox,
    policy: Rc<TransportPolicy>,
    /// Every shard's counters, rendered by `GET /metrics`.
    metrics: Arc<Metrics>,
    ui: Ui,
    /// This shard's event streams (`subscriptions/listen` and a session's `GET /mcp`).
    listeners: Listeners,
    /// The server's MCP 2025 sessions (shared by every shard).
    sessions: Arc<Sessions>,
}

impl Routes {
    pub fn new(
        tools: Toolbox,
        policy: Rc<TransportPolicy>,
        metrics: Arc<Metrics>,
        ui_enabled: bool,
        max_listen_streams: usize,
        sessions: Arc<Sessions>,
    ) -> Self {
        let ui = Ui::new(ui_enabled, Rc::clone(&policy));
        Routes {
            tools,
            policy,
            metrics,
            ui,
            listeners: Listeners::new(max_listen_streams),
            sessions,
        }
    }

    fn context<'a>(&'a self, request: &'a Request<'a>) -> Context<'a> {
        Context {
            tools: &self.tools,
            listeners: &self.listeners,
            sessions: &self.sessions,
            headers: &request.headers,
        }
    }

    /// A stream took a slot, or gave one back: the gauge follows.
    fn count_streams(&self) {
        self.tools.shard_metrics().event_streams.store(
            self.listeners.open_count() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The server is stopping: every listen stream sends its final result and ends.
    pub fn close_streams(&self) {
        self.listeners.close();
    }

    async fn post_mcp(
        &self,
        request: &Request<'_>,
        stream: &mut Option<EventStream>,
        body: &mut Vec<u8>,
    ) -> ResponseHead {
        // The transport rules were checked on the head (`admit`) before the body was read.
        let context = self.context(request);
        match mcp::handle_body(request.body, &context, stream, body).await {
            Outcome::Reply => ResponseHead::json(Status::Ok),
            Outcome::Opened(session) => ResponseHead::json(Status::Ok)
                .with_value_header("Mcp-Session-Id", &sessions::format_id(session)),
            Outcome::Refused => ResponseHead::json(Status::BadRequest),
            Outcome::Accepted => ResponseHead::new(Status::Accepted),
            Outcome::NotFound => ResponseHead::json(Status::NotFound),
            Outcome::Busy => ResponseHead::json(Status::ServiceUnavailable),
            Outcome::Stream => {
                self.count_streams();
                ResponseHead::event_stream()
            }
        }
    }

    /// `GET /mcp`: a 2025 session's event stream. It carries the session's resource updates
    /// and, when the client binds itself to an agent (`Allman-Agent`), that agent's channel
    /// messages.
    async fn get_mcp(
        &self,
        request: &Request<'_>,
        stream: &mut Option<EventStream>,
        body: &mut Vec<u8>,
    ) -> ResponseHead {
        let headers = &request.headers;
        let Some(session) = headers.get("mcp-session-id") else {
            return json_error(
                body,
                Status::BadRequest,
                "GET /mcp needs the Mcp-Session-Id header initialize gave (MCP 2026-07-28 \
                 clients use subscriptions/listen instead)",
            );
        };
        let Some(session) = sessions::parse_id(session).filter(|id| self.sessions.contains(*id))
        else {
            return json_error(
                body,
                Status::NotFound,
                "unknown session (ended, or the server restarted): initialize again",
            );
        };
        let channel = match bound_agent(headers) {
            Some(agent) => {
                let token_text = ResourceParams::default().token(headers);
                let token = self.tools.token_hash(token_text.as_deref());
                match watch_from_newest(&self.tools, agent, token).await {
                    Ok(subscription) => Some(subscription),
                    Err(error) => {
                        let message = format!("Allman-Agent {agent}: {error}");
                        return json_error(body, Status::Forbidden, &message);
                    }
                }
            }
            None => None,
        };
        if let Err(refused) = self.listeners.open() {
            return json_error(body, Status::ServiceUnavailable, &refused.to_string());
        }
        let Ok(number) = self.sessions.attach(session) else {
            self.listeners.ended();
            return json_error(body, Status::NotFound, "the session ended");
        };
        *stream = Some(EventStream::session(session, number, channel));
        self.count_streams();
        // A first comment, so the client sees the stream open at once.
        body.extend_from_slice(b": allman event stream\n\n");
        ResponseHead::event_stream()
    }

    /// `DELETE /mcp`: the client ends its session (and its stream).
    fn delete_mcp(&self, request: &Request<'_>, body: &mut Vec<u8>) -> ResponseHead {
        let ended = request
            .headers
            .get("mcp-session-id")
            .and_then(sessions::parse_id)
            .is_some_and(|id| self.sessions.end(id));
        if !ended {
            return json_error(body, Status::NotFound, "unknown session");
        }
        body.extend_from_slice(b"session ended\n");
        ResponseHead::text(Status::Ok)
    }
}

/// A transport-level refusal with a JSON-RPC error body, like POST's.
fn json_error(body: &mut Vec<u8>, status: Status, message: &str) -> ResponseHead {
    let error = mcp::jsonrpc::RpcError::new(transport::TRANSPORT_ERROR, message.to_string());
    mcp::jsonrpc::write_error(body, None, &error);
    ResponseHead::json(status)
}

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const ALLOW_HEALTH: &[(&str, &str)] = &[("Allow", "GET, HEAD")];
const ALLOW_MCP: &[(&str, &str)] = &[("Allow", "GET, POST, DELETE")];

impl Service for Routes {
    type Turn = Turn;

    fn admit(&self, head: &Head<'_>, body: &mut Vec<u8>) -> Option<ResponseHead> {
        let refusal = match (head.path, head.method) {
            ("/mcp", Method::Post) => transport::admit(&head.headers, &self.policy, body),
            ("/mcp", Method::Get) if head.body_len == 0 => {
                transport::admit_session_request(&head.headers, &self.policy, true, body)
            }
            ("/mcp", Method::Delete) if head.body_len == 0 => {
                transport::admit_session_request(&head.headers, &self.policy, false, body)
            }
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

    type Stream = Option<EventStream>;

    async fn handle(
        &self,
        request: &Request<'_>,
        body: &mut Vec<u8>,
        stream: &mut Option<EventStream>,
    ) -> ResponseHead {
        let head = self.route(request, stream, body).await;
        self.tools.shard_metrics().http_response(head.status.code());
        head
    }

    fn head_parsed(&self) {
        self.tools.shard_metrics().head_parsed();
    }

    fn may_wait_long(&self, request: &Request<'_>) -> bool {
        request.path == "/mcp" && contains(request.body, LONG_POLL_TOOL)
    }

    /// `/mcp`'s event streams.
    async fn stream_next(
        &self,
        stream: &mut Option<EventStream>,
        body: &mut Vec<u8>,
    ) -> StreamStep {
        match stream {
            Some(events) => {
                let (tools, sessions) = (&self.tools, &*self.sessions);
                events.next(tools, &self.listeners, sessions, body).await
            }
            None => StreamStep::End,
        }
    }

    fn stream_ended(&self, stream: &mut Option<EventStream>) {
        let Some(events) = stream.take() else {
            return;
        };
        if let Some((session, number)) = events.session_stream() {
            self.sessions.detach(session, number);
        }
        self.listeners.ended();
        self.count_streams();
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
    async fn route(
        &self,
        request: &Request<'_>,
        stream: &mut Option<EventStream>,
        body: &mut Vec<u8>,
    ) -> ResponseHead {
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
            ("/mcp", Method::Post) => self.post_mcp(request, stream, body).await,
            ("/mcp", Method::Get) => self.get_mcp(request, stream, body).await,
            ("/mcp", Method::Delete) => self.delete_mcp(request, body),
            ("/mcp", _) => {
                body.extend_from_slice(b"use POST /mcp with a JSON-RPC body (GET opens a session's event stream, DELETE ends a session)\n");
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

/// Connections take turns the way every loop on a shard does.
impl TakeTurns for Turn {
    async fn done(&mut self) {
        Turn::done(self).await;
    }

    async fn wait<F: std::future::Future>(&mut self, future: F) -> F::Output {
        Turn::wait(self, future).await
    }
}
