//! Routes: which path and method reach which handler. The [`Service`] each shard plugs into
//! the HTTP layer.

use crate::http::{Method, Request, ResponseHead, Service, Status};
use crate::mcp::{self, Outcome};
use crate::tools::Toolbox;

pub struct App {
    tools: Toolbox,
}

impl App {
    pub fn new(tools: Toolbox) -> Self {
        App { tools }
    }
}

const ALLOW_HEALTH: &[(&str, &str)] = &[("Allow", "GET, HEAD")];
const ALLOW_MCP: &[(&str, &str)] = &[("Allow", "POST")];

impl Service for App {
    async fn handle(&self, request: &Request<'_>, body: &mut Vec<u8>) -> ResponseHead {
        match (request.path, request.method) {
            ("/health", Method::Get | Method::Head) => {
                body.extend_from_slice(b"OK");
                ResponseHead::text(Status::Ok)
            }
            ("/health", _) => {
                body.extend_from_slice(b"use GET /health\n");
                ResponseHead::text(Status::MethodNotAllowed).with_headers(ALLOW_HEALTH)
            }
            ("/mcp", Method::Post) => match mcp::handle_body(request.body, &self.tools, body).await
            {
                Outcome::Reply => ResponseHead::json(Status::Ok),
                Outcome::Refused => ResponseHead::json(Status::BadRequest),
                Outcome::Accepted => ResponseHead::new(Status::Accepted),
            },
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
