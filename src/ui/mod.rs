//! The read-only web view under `/ui/`: server-rendered HTML pages of projects, agents,
//! threads, messages and search, for the people who watch the agents.
//!
//! It reads the same state the tools do, through read-only shard requests (`data`), changes
//! nothing, and cannot slow `/mcp` beyond a small share of each shard's time (`gate`). Every
//! page carries a strict Content-Security-Policy (its one script and stylesheet are files of
//! this server), and all agent text is escaped (`html`).

mod auth;
mod chart;
mod data;
mod gate;
mod html;
mod pages;

use crate::http::{Method, Request, ResponseHead, Status};
use crate::mcp::transport::{bearer_matches, check_site, TransportPolicy};
use crate::tools::{valid_agent_name, Toolbox};
pub use auth::MAX_LOGIN_BODY_BYTES;
use data::DataError;
use html::{decode_url_part, query_value, Html};
use std::rc::Rc;
use uuid::Uuid;

const HTML: &str = "text/html; charset=utf-8";
const CSS: &[u8] = include_bytes!("assets/app.css");
const JS: &[u8] = include_bytes!("assets/app.js");
const ICON: &[u8] = include_bytes!("assets/icon.svg");

/// On every response of the view: no script or style but this server's files, no framing,
/// no sniffing, no referrer, no caching of pages that show mail.
const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
];
/// The stylesheet, script and icon: the same protections, cached for five minutes (they change
/// only with the binary).
const ASSET_HEADERS: &[(&str, &str)] = &[
    (
        "Content-Security-Policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "max-age=300"),
];
const TO_LOGIN: &[(&str, &str)] = &[("Location", "/ui/login")];
const TO_HOME: &[(&str, &str)] = &[("Location", "/ui/")];
const RETRY_SOON: &[(&str, &str)] = &[("Retry-After", "1")];
const ALLOW_GET: &[(&str, &str)] = &[("Allow", "GET, HEAD")];
const ALLOW_POST: &[(&str, &str)] = &[("Allow", "POST")];
/// The view's pause after a wrong token: slows guessing to two tries a second per shard.
const FAILED_LOGIN_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// One shard's web view.
pub struct Ui {
    enabled: bool,
    policy: Rc<TransportPolicy>,
    /// With `--token`: the login cookie's value, and the headers that set and clear it.
    cookie: Option<Cookie>,
    gate: gate::Gate,
}

struct Cookie {
    value: String,
    set: &'static [(&'static str, &'static str)],
    clear: &'static [(&'static str, &'static str)],
}

impl Ui {
    pub fn new(enabled: bool, policy: Rc<TransportPolicy>) -> Self {
        let cookie = policy.token.as_deref().map(|token| {
            let value = auth::cookie_value(token);
            let attributes = "Path=/ui; HttpOnly; SameSite=Strict";
            // Leaked once per shard at start: response heads take static header lists.
            let set: &'static str =
                Box::leak(format!("{}={value}; {attributes}", auth::COOKIE_NAME).into_boxed_str());
            let clear: &'static str = Box::leak(
                format!("{}=; Max-Age=0; {attributes}", auth::COOKIE_NAME).into_boxed_str(),
            );
            Cookie {
                value,
                set: Box::leak(Box::new([("Set-Cookie", set), TO_HOME[0]])),
                clear: Box::leak(Box::new([("Set-Cookie", clear), TO_LOGIN[0]])),
            }
        });
        Ui {
            enabled,
            policy,
            cookie,
            gate: gate::Gate::default(),
        }
    }

    /// Whether `path` belongs to the view.
    pub fn owns(path: &str) -> bool {
        path == "/ui" || path.starts_with("/ui/")
    }

    /// Answers a request for a path under `/ui`.
    pub async fn handle(
        &self,
        tools: &Toolbox,
        request: &Request<'_>,
        body: &mut Vec<u8>,
    ) -> ResponseHead {
        if !self.enabled {
            body.extend_from_slice(b"not found: the web view is off (--ui off)\n");
            return ResponseHead::text(Status::NotFound);
        }
        if let Err(refusal) = check_site(&request.headers, &self.policy) {
            return notice(body, Status::Forbidden, "Forbidden", &refusal.message);
        }
        let get = matches!(request.method, Method::Get | Method::Head);
        match request.path {
            "/ui/static/app.css" | "/ui/static/app.js" | "/ui/static/icon.svg" if get => {
                let (bytes, kind) = match request.path {
                    "/ui/static/app.css" => (CSS, "text/css; charset=utf-8"),
                    "/ui/static/app.js" => (JS, "text/javascript; charset=utf-8"),
                    _ => (ICON, "image/svg+xml"),
                };
                body.extend_from_slice(bytes);
                ResponseHead::new(Status::Ok)
                    .with_content_type(kind)
                    .with_headers(ASSET_HEADERS)
            }
            "/ui/login" if get => match &self.cookie {
                None => redirect(TO_HOME),
                Some(_) => {
                    pages::login(&mut Html::new(body), false);
                    page(Status::Ok)
                }
            },
            "/ui/login" if request.method == Method::Post => self.login(request, body).await,
            "/ui/logout" if request.method == Method::Post => match &self.cookie {
                Some(cookie) => redirect(cookie.clear),
                None => redirect(TO_HOME),
            },
            "/ui/login" | "/ui/logout" => {
                body.extend_from_slice(b"use the form\n");
                ResponseHead::text(Status::MethodNotAllowed).with_headers(ALLOW_POST)
            }
            _ if !get => {
                body.extend_from_slice(b"the web view is read-only: use GET\n");
                ResponseHead::text(Status::MethodNotAllowed).with_headers(ALLOW_GET)
            }
            _ if !self.signed_in(request) => redirect(TO_LOGIN),
            _ => {
                let Ok(pass) = self.gate.enter().await else {
                    return busy(body);
                };
                let status = pass.run(self.page(tools, request, body)).await;
                let work_us = u64::try_from(pass.busy().as_micros()).unwrap_or(u64::MAX);
                page(status).with_work_us(work_us)
            }
        }
    }

    fn signed_in(&self, request: &Request<'_>) -> bool {
        let Some(cookie) = &self.cookie else {
            return true;
        };
        let token = self.policy.token.as_deref().unwrap_or_default();
        auth::has_cookie(&request.headers, &cookie.value)
            || bearer_matches(request.headers.get("authorization"), token)
    }

    async fn login(&self, request: &Request<'_>, body: &mut Vec<u8>) -> ResponseHead {
        let Some(cookie) = &self.cookie else {
            return redirect(TO_HOME);
        };
        // Paced like a page, and a wrong token pauses the view for half a second: guessing
        // gets two tries a second per shard at most.
        let Ok(pass) = self.gate.enter().await else {
            return busy(body);
        };
        let form = std::str::from_utf8(request.body).unwrap_or_default();
        let presented = query_value(form, "token").unwrap_or_default();
        let token = self.policy.token.as_deref().unwrap_or_default();
        if auth::same(presented.as_bytes(), token.as_bytes()) {
            return redirect(cookie.set);
        }
        pass.pause_at_least(FAILED_LOGIN_PAUSE);
        pages::login(&mut Html::new(body), true);
        page(Status::Unauthorized)
    }

    /// Writes the page `request` asks for; returns its status.
    async fn page(&self, tools: &Toolbox, request: &Request<'_>, body: &mut Vec<u8>) -> Status {
        let now_ms = crate::clock::now_ms();
        let query = request.query;
        let rest = request.path.strip_prefix("/ui").unwrap_or_default();
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let decoded: Option<Vec<String>> =
            segments.iter().map(|s| decode_url_part(s, false)).collect();
        let Some(decoded) = decoded else {
            return missing(body, "That address is not valid.");
        };
        let parts: Vec<&str> = decoded.iter().map(String::as_str).collect();
        let result = match parts.as_slice() {
            [] => overview_page(tools, query, now_ms, body).await,
            ["p", project] => roster_page(tools, project, query, now_ms, body).await,
            ["p", project, "a", name] => agent_page(tools, project, name, query, body).await,
            ["p", project, "t", thread_id] => {
                thread_page(tools, project, thread_id, now_ms, body).await
            }
            ["m", id] => message_page(tools, id, query, now_ms, body).await,
            ["search"] => search_page(tools, query, body).await,
            _ => Ok(missing(body, "There is no such page.")),
        };
        match result {
            Ok(status) => status,
            Err(error) => {
                body.clear();
                let detail = match &error {
                    DataError::Shard(error) => error.to_string(),
                    DataError::Search(error) => error.to_string(),
                };
                tracing::warn!(%detail, path = request.path, "web view page failed");
                pages::notice(&mut Html::new(body), "Unavailable", &detail);
                Status::ServiceUnavailable
            }
        }
    }
}

/// What a page handler gives back: its status (the body is written), or why the data behind
/// it could not be read.
type PageResult = Result<Status, DataError>;

async fn overview_page(
    tools: &Toolbox,
    query: &str,
    now_ms: i64,
    body: &mut Vec<u8>,
) -> PageResult {
    let after = query_value(query, "after");
    let page = data::projects(tools, after.as_deref(), now_ms).await?;
    pages::overview(&mut Html::new(body), &page, after.is_none());
    Ok(Status::Ok)
}

async fn roster_page(
    tools: &Toolbox,
    project: &str,
    query: &str,
    now_ms: i64,
    body: &mut Vec<u8>,
) -> PageResult {
    let Ok(project_id) = Uuid::try_parse(project) else {
        return Ok(missing(body, "No such project."));
    };
    let after = query_value(query, "after");
    match data::roster(tools, project_id, after.as_deref(), now_ms).await? {
        Some(roster) => {
            pages::roster(&mut Html::new(body), &project_id, &roster, now_ms);
            Ok(Status::Ok)
        }
        None => Ok(missing(body, "No such project.")),
    }
}

async fn agent_page(
    tools: &Toolbox,
    project: &str,
    name: &str,
    query: &str,
    body: &mut Vec<u8>,
) -> PageResult {
    let (Ok(_), true) = (Uuid::try_parse(project), valid_agent_name(name)) else {
        return Ok(missing(body, "No such agent."));
    };
    let before = query_value(query, "before").and_then(|b| b.parse::<u64>().ok());
    // A message's project may differ from its sender's (`send_message` takes a `project_id`),
    // so a link may name another project: the agent's own is shown.
    match data::agent(tools, name, before).await? {
        Some(page) => {
            let own = page.row.profile.project_id;
            pages::agent(&mut Html::new(body), &own, &page, before.is_none());
            Ok(Status::Ok)
        }
        None => Ok(missing(body, "No such agent.")),
    }
}

async fn thread_page(
    tools: &Toolbox,
    project: &str,
    thread_id: &str,
    now_ms: i64,
    body: &mut Vec<u8>,
) -> PageResult {
    let Ok(project_id) = Uuid::try_parse(project) else {
        return Ok(missing(body, "No such project."));
    };
    let view = data::thread(tools, project_id, thread_id).await?;
    let key = data::project_key(tools, project_id, now_ms).await;
    let mut html = Html::new(body);
    pages::thread(&mut html, &project_id, key.as_deref(), thread_id, &view).await;
    Ok(Status::Ok)
}

async fn message_page(
    tools: &Toolbox,
    id: &str,
    query: &str,
    now_ms: i64,
    body: &mut Vec<u8>,
) -> PageResult {
    let Ok(id) = Uuid::try_parse(id) else {
        return Ok(missing(body, "No such message."));
    };
    // Links name the sender (`from`) or at least the project (`p`): without either there is
    // nowhere bounded to look.
    let from = query_value(query, "from");
    let project = query_value(query, "p").and_then(|p| Uuid::try_parse(&p).ok());
    let clue = match (&from, project) {
        (Some(name), _) => data::Clue::Sender(name),
        (None, Some(project_id)) => data::Clue::Project(project_id),
        (None, None) => return Ok(missing(
            body,
            "Open messages from a list: their links name the sender (?from=) or the project (?p=).",
        )),
    };
    match data::message(tools, id, clue).await? {
        Some(view) => {
            let key = data::project_key(tools, view.envelope.project_id, now_ms).await;
            pages::message(&mut Html::new(body), &view, key.as_deref());
            Ok(Status::Ok)
        }
        None => Ok(missing(
            body,
            "No such message is kept: it may have left retention, or the link lacks its sender.",
        )),
    }
}

async fn search_page(tools: &Toolbox, query: &str, body: &mut Vec<u8>) -> PageResult {
    let q = query_value(query, "q").unwrap_or_default();
    if q.trim().is_empty() {
        pages::search(&mut Html::new(body), &q, Ok(&[])).await;
        return Ok(Status::Ok);
    }
    match data::search(tools, &q).await {
        Ok(hits) => {
            pages::search(&mut Html::new(body), &q, Ok(&hits)).await;
            Ok(Status::Ok)
        }
        Err(DataError::Search(crate::search::QueryError::Syntax(reason))) => {
            pages::search(&mut Html::new(body), &q, Err(&reason)).await;
            Ok(Status::BadRequest)
        }
        Err(error) => Err(error),
    }
}

fn page(status: Status) -> ResponseHead {
    ResponseHead::new(status)
        .with_content_type(HTML)
        .with_headers(SECURITY_HEADERS)
}

fn redirect(headers: &'static [(&'static str, &'static str)]) -> ResponseHead {
    ResponseHead::new(Status::SeeOther)
        .with_headers(SECURITY_HEADERS)
        .with_more_headers(headers)
}

fn notice(body: &mut Vec<u8>, status: Status, title: &'static str, detail: &str) -> ResponseHead {
    body.clear();
    pages::notice(&mut Html::new(body), title, detail);
    page(status)
}

fn missing(body: &mut Vec<u8>, detail: &str) -> Status {
    body.clear();
    pages::notice(&mut Html::new(body), "Not found", detail);
    Status::NotFound
}

fn busy(body: &mut Vec<u8>) -> ResponseHead {
    notice(
        body,
        Status::ServiceUnavailable,
        "Busy",
        "Too many pages are being viewed on this server right now; retry in a moment.",
    )
    .with_more_headers(RETRY_SOON)
}
