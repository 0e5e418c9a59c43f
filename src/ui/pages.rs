//! The pages: data in, HTML out. Agent-provided text only ever reaches the page through
//! [`Html::text`], [`Html::attr`] or [`Html::url_part`]; everything else is a literal here.
//! Each page is bounded by the rows its data holds (see `data`) and the clipping below.

use super::chart;
use super::data::{sent_last_hour, Hit, MessageView, Page, Roster, ThreadView, LINES_PER_TURN};
use super::html::Html;
use shards::leases::Lease;
use shards::{
    AgentPage, AgentRow, DeliveryView, Envelope, Importance, ProjectSummary, Receipt,
    SharedEnvelope,
};
use uuid::Uuid;

/// Characters of a subject or task shown in a table cell.
const CELL_CHARS: usize = 120;
/// Characters of a body shown in a list (the message page shows more).
const PREVIEW_CHARS: usize = 400;
/// Characters of a body shown on a thread page, per message.
const THREAD_BODY_CHARS: usize = 2_000;
/// Characters of a body shown on the message page (bodies may be up to 1 MiB): at most six
/// bytes each once escaped, so the page stays within [`MAX_PAGE_BYTES`].
const MESSAGE_BODY_CHARS: usize = 100_000;
/// Bytes a page that lists messages (a thread, search hits) grows to at most: past it the
/// rest of the list is left out, with a note. Other pages are bounded by their rows.
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;
/// Recipients named in a list row before "and N more".
const NAMES_IN_ROW: usize = 5;

/// Which pages refresh themselves when the reader turns auto-refresh on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Yes,
    No,
}

/// The page's head, header and the start of `main`. `crumbs` are (text, link) pairs after
/// the home link; the last one is the page itself.
pub fn start(html: &mut Html<'_>, title: &str, crumbs: &[(&str, Option<String>)], feed: Feed) {
    html.raw("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")
        .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
        .raw("<title>")
        .plain_clipped(title, 120)
        .raw(" · allman</title><link rel=\"stylesheet\" href=\"/ui/static/app.css\">")
        .raw("<link rel=\"icon\" href=\"/ui/static/icon.svg\" type=\"image/svg+xml\">")
        .raw("<script src=\"/ui/static/app.js\" defer></script></head>");
    html.raw(match feed {
        Feed::Yes => "<body data-feed=\"1\">",
        Feed::No => "<body>",
    });
    html.raw("<header><a class=\"brand\" href=\"/ui/\">allman</a><nav aria-label=\"breadcrumbs\">");
    for (text, link) in crumbs {
        html.raw("<span class=\"sep\">/</span>");
        match link {
            Some(href) => {
                html.raw("<a href=\"")
                    .attr(href)
                    .raw("\">")
                    .text_clipped(text, 60)
                    .raw("</a>");
            }
            None => {
                html.raw("<span>").text_clipped(text, 60).raw("</span>");
            }
        }
    }
    html.raw("</nav><form class=\"search\" action=\"/ui/search\" method=\"get\" role=\"search\">")
        .raw("<input type=\"search\" name=\"q\" placeholder=\"Search mail\" aria-label=\"Search mail\">")
        .raw("<button type=\"submit\">Search</button></form></header><main>");
}

pub fn end(html: &mut Html<'_>, feed: Feed) {
    html.raw("</main><footer><span>allman · read-only view</span>");
    if feed == Feed::Yes {
        html.raw("<label class=\"refresh\"><input type=\"checkbox\" id=\"auto-refresh\"> auto-refresh every 5 s</label>");
    }
    html.raw("</footer></body></html>\n");
}

/// `/ui/p/{project}` (written into `html` as an attribute-safe link).
fn project_href(html: &mut Html<'_>, project_id: &Uuid) {
    html.raw("/ui/p/")
        .url_part(&project_id.hyphenated().to_string());
}

fn agent_link(html: &mut Html<'_>, project_id: &Uuid, name: &str) {
    html.raw("<a href=\"");
    project_href(html, project_id);
    html.raw("/a/")
        .url_part(name)
        .raw("\">")
        .text(name)
        .raw("</a>");
}

fn message_href(html: &mut Html<'_>, id: &str, from: &str) {
    html.raw("/ui/m/").url_part(id).raw("?from=").url_part(from);
}

fn thread_link(html: &mut Html<'_>, project_id: &Uuid, thread_id: &str, label_chars: usize) {
    html.raw("<a href=\"");
    project_href(html, project_id);
    html.raw("/t/")
        .url_part(thread_id)
        .raw("\">")
        .text_clipped(thread_id, label_chars)
        .raw("</a>");
}

/// Up to [`NAMES_IN_ROW`] names, each linked, then how many more.
fn names<'n>(html: &mut Html<'_>, project_id: &Uuid, names: impl Iterator<Item = &'n str>) {
    let mut count = 0usize;
    for name in names {
        if count < NAMES_IN_ROW {
            if count > 0 {
                html.raw(", ");
            }
            agent_link(html, project_id, name);
        }
        count += 1;
    }
    if count > NAMES_IN_ROW {
        html.raw(" and ")
            .num((count - NAMES_IN_ROW) as u64)
            .raw(" more");
    }
}

fn next_link(
    html: &mut Html<'_>,
    base: &str,
    name: &str,
    cursor: Option<&str>,
    label: &'static str,
) {
    if let Some(cursor) = cursor {
        html.raw("<p class=\"pager\"><a rel=\"next\" href=\"")
            .attr(base)
            .raw("?")
            .raw(if name == "after" { "after=" } else { "before=" })
            .url_part(cursor)
            .raw("\">")
            .raw(label)
            .raw("</a></p>");
    }
}

pub fn overview(html: &mut Html<'_>, page: &Page<ProjectSummary>, first_page: bool) {
    start(html, "Projects", &[("Projects", None)], Feed::Yes);
    html.raw("<h1>Projects</h1>");
    if page.rows.is_empty() {
        html.raw(if first_page {
            "<p class=\"empty\">No projects yet: a project appears once <code>create_agent</code> registers an agent in it.</p>"
        } else {
            "<p class=\"empty\">No more projects.</p>"
        });
    } else {
        html.raw("<div class=\"scroll\"><table class=\"projects\"><thead><tr><th>Project</th><th class=\"n\">Agents</th>")
            .raw("<th class=\"n\">Queued</th><th class=\"n\">Sent (1 h)</th><th>Messages per minute, last hour</th></tr></thead><tbody>");
        for project in &page.rows {
            html.raw("<tr><td><a href=\"");
            project_href(html, &project.id);
            html.raw("\">")
                .text_clipped(&project.key, CELL_CHARS)
                .raw("</a></td><td class=\"n\">")
                .num(project.agents as u64)
                .raw("</td><td class=\"n\">")
                .num(project.queued as u64)
                .raw("</td><td class=\"n\">")
                .num(sent_last_hour(&project.traffic))
                .raw("</td><td>");
            chart::traffic(html, &project.traffic);
            html.raw("</td></tr>");
        }
        html.raw("</tbody></table></div>");
    }
    next_link(
        html,
        "/ui/",
        "after",
        page.next.as_deref(),
        "More projects →",
    );
    end(html, Feed::Yes);
}

fn importance_badge(html: &mut Html<'_>, importance: Importance) {
    match importance {
        Importance::Normal => {}
        Importance::Low => {
            html.raw(" <span class=\"badge low\">low</span>");
        }
        Importance::High => {
            html.raw(" <span class=\"badge high\">high</span>");
        }
        Importance::Urgent => {
            html.raw(" <span class=\"badge urgent\">urgent</span>");
        }
    }
}

fn subject_link(html: &mut Html<'_>, envelope: &SharedEnvelope) {
    html.raw("<a href=\"");
    message_href(html, &envelope.id.hyphenated().to_string(), envelope.from());
    html.raw("\">");
    if envelope.subject().is_empty() {
        html.raw("(no subject)");
    } else {
        html.text_clipped(envelope.subject(), CELL_CHARS);
    }
    html.raw("</a>");
    importance_badge(html, envelope.importance);
}

pub fn roster(html: &mut Html<'_>, project_id: &Uuid, roster: &Roster, now_ms: i64) {
    let title = roster.key.to_string();
    start(html, &title, &[(&title, None)], Feed::Yes);
    html.raw("<h1>").text_clipped(&roster.key, 200).raw("</h1>");
    html.raw("<p class=\"meta\">Project <code>")
        .text(&project_id.hyphenated().to_string())
        .raw("</code></p><div class=\"stats\"><div><b>")
        .num(roster.agent_count as u64)
        .raw("</b> agents</div><div><b>")
        .num(roster.queued as u64)
        .raw("</b> queued</div><div><b>")
        .num(sent_last_hour(&roster.traffic))
        .raw("</b> sent in the last hour</div><div class=\"wide\">");
    chart::traffic(html, &roster.traffic);
    html.raw("<div class=\"axis\"><span>an hour ago</span><span>messages per minute</span><span>now</span></div></div></div>");

    html.raw("<h2>Agents</h2>");
    if roster.agents.rows.is_empty() {
        html.raw("<p class=\"empty\">No more agents.</p>");
    } else {
        html.raw("<div class=\"scroll\"><table class=\"agents\"><thead><tr><th>Agent</th><th class=\"opt\">Program</th><th class=\"opt\">Model</th><th class=\"opt\">Task</th>")
            .raw("<th>Last active</th><th class=\"n\">Queued</th><th class=\"n\">Unread</th><th class=\"n\">Awaiting ack</th></tr></thead><tbody>");
        for row in &roster.agents.rows {
            agent_row(html, project_id, row);
        }
        html.raw("</tbody></table></div>");
    }
    let mut base = Vec::new();
    project_href(&mut Html::new(&mut base), project_id);
    let base = String::from_utf8(base).unwrap_or_default();
    next_link(
        html,
        &base,
        "after",
        roster.agents.next.as_deref(),
        "More agents →",
    );

    roster_recent(html, project_id, &roster.recent);
    roster_leases(html, project_id, &roster.leases, now_ms);
    end(html, Feed::Yes);
}

/// A project page's newest messages.
fn roster_recent(html: &mut Html<'_>, project_id: &Uuid, recent: &[SharedEnvelope]) {
    html.raw("<h2>Recent messages</h2>");
    if recent.is_empty() {
        html.raw("<p class=\"empty\">No messages yet.</p>");
    } else {
        html.raw("<div class=\"scroll\"><table class=\"mail\"><thead><tr><th>Sent</th><th>From</th><th class=\"opt\">To</th><th>Subject</th><th class=\"opt\">Thread</th></tr></thead><tbody>");
        for envelope in recent {
            html.raw("<tr><td>")
                .time(envelope.timestamp_ms)
                .raw("</td><td>");
            agent_link(html, project_id, envelope.from());
            html.raw("</td><td class=\"opt\">");
            names(html, project_id, envelope.recipients());
            html.raw("</td><td>");
            subject_link(html, envelope);
            html.raw("</td><td class=\"opt\">");
            thread_link(html, project_id, &envelope.thread_id(), 24);
            html.raw("</td></tr>");
        }
        html.raw("</tbody></table></div>");
    }
}

/// A project page's active file reservations.
fn roster_leases(html: &mut Html<'_>, project_id: &Uuid, leases: &[Lease], now_ms: i64) {
    html.raw("<h2>File reservations</h2>");
    let active: Vec<&Lease> = leases.iter().filter(|l| l.active(now_ms)).collect();
    if active.is_empty() {
        html.raw("<p class=\"empty\">No active reservations.</p>");
    } else {
        html.raw("<div class=\"scroll\"><table class=\"leases\"><thead><tr><th>Path</th><th>Holder</th><th class=\"opt\">Kind</th><th>Reason</th><th>Expires</th></tr></thead><tbody>");
        for lease in active {
            html.raw("<tr><td><code>")
                .text(&lease.path)
                .raw("</code></td><td>");
            agent_link(html, project_id, &lease.agent);
            html.raw("</td><td class=\"opt\">")
                .raw(if lease.exclusive {
                    "exclusive"
                } else {
                    "shared"
                })
                .raw("</td><td>")
                .text_clipped(&lease.reason, CELL_CHARS)
                .raw("</td><td>")
                .time(lease.expires_ms)
                .raw("</td></tr>");
        }
        html.raw("</tbody></table></div>");
    }
}

fn agent_row(html: &mut Html<'_>, project_id: &Uuid, row: &AgentRow) {
    let p = &row.profile;
    html.raw("<tr><td>");
    agent_link(html, project_id, &p.name);
    html.raw("</td><td class=\"opt\">")
        .text_clipped(&p.program, CELL_CHARS)
        .raw("</td><td class=\"opt\">")
        .text_clipped(&p.model, CELL_CHARS)
        .raw("</td><td class=\"opt\">")
        .text_clipped(&p.task_description, CELL_CHARS)
        .raw("</td><td>")
        .time(row.last_active_ms)
        .raw("</td><td class=\"n\">")
        .num(row.queued as u64)
        .raw("</td><td class=\"n\">")
        .num(row.counts.unread as u64)
        .raw("</td><td class=\"n\">")
        .num(row.counts.ack_pending as u64)
        .raw("</td></tr>");
}

fn delivery_state(html: &mut Html<'_>, d: &DeliveryView) {
    if d.drained {
        html.raw("<span class=\"badge drained\" title=\"taken by get_inbox\">drained</span> ");
    }
    match d.read_at {
        Some(at) => {
            html.raw("<span class=\"badge read\">read</span> ").time(at);
        }
        None => {
            html.raw("<span class=\"badge unread\">unread</span>");
        }
    }
    if d.envelope.ack_required {
        match d.acked_at {
            Some(at) => {
                html.raw(" <span class=\"badge acked\">acked</span> ")
                    .time(at);
            }
            None => {
                html.raw(" <span class=\"badge ack\">ack pending</span>");
            }
        }
    }
}

pub fn agent(html: &mut Html<'_>, project_id: &Uuid, page: &AgentPage, first_page: bool) {
    let p = &page.row.profile;
    let mut project_link = Vec::new();
    project_href(&mut Html::new(&mut project_link), project_id);
    let project_link = String::from_utf8(project_link).unwrap_or_default();
    start(
        html,
        &p.name,
        &[
            (&p.project_key, Some(project_link.clone())),
            (&p.name, None),
        ],
        Feed::Yes,
    );
    agent_profile(html, page);
    agent_deliveries(html, project_id, page, first_page);
    agent_threads(html, project_id, page);
    end(html, Feed::Yes);
}

/// An agent page's heading and profile.
fn agent_profile(html: &mut Html<'_>, page: &AgentPage) {
    let p = &page.row.profile;
    html.raw("<h1>")
        .text(&p.name)
        .raw("</h1><dl class=\"profile\">");
    let field = |html: &mut Html<'_>, name: &'static str, value: &str| {
        html.raw("<dt>")
            .raw(name)
            .raw("</dt><dd>")
            .text_clipped(value, 1024)
            .raw("</dd>");
    };
    field(html, "Program", &p.program);
    field(html, "Model", &p.model);
    field(html, "Task", &p.task_description);
    html.raw("<dt>Registered</dt><dd>")
        .time(p.created_ms)
        .raw("</dd>");
    html.raw("<dt>Last active</dt><dd>")
        .time(page.row.last_active_ms)
        .raw("</dd>");
    html.raw("<dt>Queued</dt><dd>")
        .num(page.row.queued as u64)
        .raw("</dd>");
    html.raw("<dt>Unread</dt><dd>")
        .num(page.row.counts.unread as u64)
        .raw(" (")
        .num(page.row.counts.urgent_unread as u64)
        .raw(" urgent)</dd><dt>Awaiting ack</dt><dd>")
        .num(page.row.counts.ack_pending as u64)
        .raw("</dd><dt>Sent, kept</dt><dd>")
        .num(page.row.sent as u64)
        .raw("</dd></dl>");
}

/// An agent page's delivery log, a page of it, with its pager.
fn agent_deliveries(html: &mut Html<'_>, project_id: &Uuid, page: &AgentPage, first_page: bool) {
    let p = &page.row.profile;
    html.raw("<h2>Delivery log</h2>");
    if page.deliveries.is_empty() {
        html.raw(if first_page && page.newest_seq == 0 {
            "<p class=\"empty\">Nothing delivered yet.</p>"
        } else {
            "<p class=\"empty\">No older deliveries kept.</p>"
        });
    } else {
        html.raw("<div class=\"scroll\"><table class=\"mail\"><thead><tr><th class=\"n\">#</th><th>Delivered</th><th>From</th><th>Subject</th><th class=\"opt\">As</th><th>State</th><th class=\"opt\">Thread</th></tr></thead><tbody>");
        for d in &page.deliveries {
            html.raw("<tr><td class=\"n\">")
                .num(d.seq)
                .raw("</td><td>")
                .time(d.envelope.timestamp_ms)
                .raw("</td><td>");
            agent_link(html, project_id, d.envelope.from());
            html.raw("</td><td>");
            subject_link(html, &d.envelope);
            html.raw("</td><td class=\"opt\">")
                .raw(d.kind.as_str())
                .raw("</td><td>");
            delivery_state(html, d);
            html.raw("</td><td class=\"opt\">");
            thread_link(html, project_id, &d.envelope.thread_id(), 24);
            html.raw("</td></tr>");
        }
        html.raw("</tbody></table></div>");
    }
    let mut base = Vec::new();
    {
        let mut link = Html::new(&mut base);
        project_href(&mut link, project_id);
        link.raw("/a/").url_part(&p.name);
    }
    let base = String::from_utf8(base).unwrap_or_default();
    html.raw("<p class=\"pager\">");
    if !first_page {
        html.raw("<a href=\"").attr(&base).raw("\">← Newest</a> ");
    }
    html.raw("</p>");
    let older = page.older.map(|seq| seq.to_string());
    next_link(html, &base, "before", older.as_deref(), "Older →");
}

/// An agent page's recent threads.
fn agent_threads(html: &mut Html<'_>, project_id: &Uuid, page: &AgentPage) {
    html.raw("<h2>Threads</h2>");
    if page.threads.is_empty() {
        html.raw("<p class=\"empty\">No conversations in its recent mail.</p>");
    } else {
        html.raw("<div class=\"scroll\"><table class=\"threads\"><thead><tr><th>Thread</th><th class=\"n\">Messages</th><th>Latest</th><th>Latest subject</th></tr></thead><tbody>");
        for thread in &page.threads {
            html.raw("<tr><td>");
            thread_link(html, project_id, &thread.thread_id, 60);
            html.raw("</td><td class=\"n\">")
                .num(thread.messages as u64)
                .raw("</td><td>")
                .time(thread.latest.timestamp_ms)
                .raw("</td><td>");
            subject_link(html, &thread.latest);
            html.raw("</td></tr>");
        }
        html.raw("</tbody></table></div>");
    }
}

/// One message of a thread page or a search result.
struct Line<'a> {
    id: &'a str,
    project_id: Option<Uuid>,
    from: &'a str,
    to: Vec<&'a str>,
    cc: Vec<&'a str>,
    subject: &'a str,
    body: &'a str,
    thread: std::borrow::Cow<'a, str>,
    sent: Sent<'a>,
}

enum Sent<'a> {
    Ms(i64),
    Rfc3339(&'a str),
}

impl<'a> Line<'a> {
    fn of_envelope(envelope: &'a SharedEnvelope, id: &'a str) -> Self {
        Line {
            id,
            project_id: Some(envelope.project_id),
            from: envelope.from(),
            to: envelope.to().collect(),
            cc: envelope.cc().collect(),
            subject: envelope.subject(),
            body: envelope.body(),
            thread: envelope.thread_id(),
            sent: Sent::Ms(envelope.timestamp_ms),
        }
    }

    fn of_hit(hit: &'a Hit) -> Self {
        Line {
            id: Hit::first(&hit.id),
            project_id: Uuid::try_parse(Hit::first(&hit.project_id)).ok(),
            from: Hit::first(&hit.from),
            to: hit.to.iter().map(String::as_str).collect(),
            cc: hit.cc.iter().map(String::as_str).collect(),
            subject: Hit::first(&hit.subject),
            body: Hit::first(&hit.body),
            // Own-thread messages carry no thread term: their thread is their id.
            thread: match Hit::first(&hit.thread_id) {
                "" => Hit::first(&hit.id).into(),
                named => named.into(),
            },
            sent: Sent::Rfc3339(Hit::first(&hit.timestamp)),
        }
    }

    fn write(&self, html: &mut Html<'_>, body_chars: usize) {
        html.raw("<article class=\"message\"><header><span class=\"when\">");
        match self.sent {
            Sent::Ms(ms) => {
                html.time(ms);
            }
            Sent::Rfc3339(text) => {
                html.raw("<time datetime=\"")
                    .attr(text)
                    .raw("\" title=\"")
                    .attr(text)
                    .raw("\">")
                    .text(text)
                    .raw("</time>");
            }
        }
        html.raw("</span> ");
        let project = self.project_id.unwrap_or_default();
        agent_link(html, &project, self.from);
        html.raw(" → ");
        names(html, &project, self.to.iter().copied());
        if !self.cc.is_empty() {
            html.raw(" <span class=\"cc\">cc</span> ");
            names(html, &project, self.cc.iter().copied());
        }
        html.raw(" <span class=\"thread\">thread ");
        thread_link(html, &project, &self.thread, 24);
        html.raw("</span></header><h3><a href=\"");
        message_href(html, self.id, self.from);
        html.raw("\">");
        if self.subject.is_empty() {
            html.raw("(no subject)");
        } else {
            html.text_clipped(self.subject, CELL_CHARS * 2);
        }
        html.raw("</a></h3><div class=\"body\">")
            .text_clipped(self.body, body_chars)
            .raw("</div></article>");
    }
}

pub async fn thread(
    html: &mut Html<'_>,
    project_id: &Uuid,
    project_key: Option<&str>,
    thread_id: &str,
    view: &ThreadView,
) {
    let mut project_link = Vec::new();
    project_href(&mut Html::new(&mut project_link), project_id);
    let project_link = String::from_utf8(project_link).unwrap_or_default();
    let project_label = project_key.unwrap_or("project");
    start(
        html,
        &format!("Thread {thread_id}"),
        &[(project_label, Some(project_link)), (thread_id, None)],
        Feed::Yes,
    );
    html.raw("<h1>Thread <code>")
        .text(thread_id)
        .raw("</code></h1>");
    let count = view.messages.len() + usize::from(view.root.is_some());
    if count == 0 {
        html.raw("<p class=\"empty\">No messages in this thread (yet: new mail is searchable within moments).</p>");
    }
    let root_id = view.root.as_ref().map(|r| r.id.hyphenated().to_string());
    let mut lines: Vec<Line<'_>> = Vec::with_capacity(count);
    if let (Some(root), Some(id)) = (&view.root, &root_id) {
        lines.push(Line::of_envelope(root, id));
    }
    lines.extend(view.messages.iter().map(Line::of_hit));
    let shown = write_lines(html, &lines, THREAD_BODY_CHARS).await;
    if view.cut || shown < count {
        html.raw("<p class=\"meta\">Showing the first ")
            .num(shown as u64)
            .raw(" messages of a longer thread.</p>");
    }
    end(html, Feed::Yes);
}

/// Writes lines while the page is under [`MAX_PAGE_BYTES`] (the first always), stepping
/// aside every [`LINES_PER_TURN`]; returns how many were written.
async fn write_lines(html: &mut Html<'_>, lines: &[Line<'_>], body_chars: usize) -> usize {
    let start = html.written();
    for (count, line) in lines.iter().enumerate() {
        if count > 0 && html.written() - start >= MAX_PAGE_BYTES {
            return count;
        }
        if count > 0 && count % LINES_PER_TURN == 0 {
            futures_lite::future::yield_now().await;
        }
        line.write(html, body_chars);
    }
    lines.len()
}

pub fn message(html: &mut Html<'_>, view: &MessageView, project_key: Option<&str>) {
    let e = &view.envelope;
    let id = e.id.hyphenated().to_string();
    let mut project_link = Vec::new();
    project_href(&mut Html::new(&mut project_link), &e.project_id);
    let project_link = String::from_utf8(project_link).unwrap_or_default();
    let subject = if e.subject().is_empty() {
        "(no subject)"
    } else {
        e.subject()
    };
    start(
        html,
        subject,
        &[
            (project_key.unwrap_or("project"), Some(project_link)),
            (subject, None),
        ],
        Feed::No,
    );
    html.raw("<h1>")
        .text_clipped(subject, 300)
        .raw("</h1><dl class=\"profile\"><dt>From</dt><dd>");
    agent_link(html, &e.project_id, e.from());
    html.raw("</dd><dt>Sent</dt><dd>")
        .time(e.timestamp_ms)
        .raw("</dd><dt>Thread</dt><dd>");
    thread_link(html, &e.project_id, &e.thread_id(), 80);
    html.raw("</dd>");
    if let Some(reply_to) = e.reply_to {
        html.raw("<dt>In reply to</dt><dd><a href=\"/ui/m/")
            .url_part(&reply_to.hyphenated().to_string())
            .raw("?p=")
            .url_part(&e.project_id.hyphenated().to_string())
            .raw("\">")
            .text(&reply_to.hyphenated().to_string())
            .raw("</a></dd>");
    }
    html.raw("<dt>Importance</dt><dd>")
        .raw(e.importance.as_str());
    html.raw("</dd><dt>Acknowledgement</dt><dd>")
        .raw(if e.ack_required {
            "required"
        } else {
            "not required"
        })
        .raw("</dd><dt>Id</dt><dd><code>")
        .text(&id)
        .raw("</code></dd></dl><div class=\"body full\">")
        .text_clipped(e.body(), MESSAGE_BODY_CHARS)
        .raw("</div>");
    receipts(html, e, &view.receipts);
    end(html, Feed::No);
}

/// A message page's table of who received it and what they did with it.
fn receipts(html: &mut Html<'_>, e: &Envelope, receipts: &[(Box<str>, Option<Receipt>)]) {
    html.raw("<h2>Recipients</h2><div class=\"scroll\"><table class=\"receipts\"><thead><tr><th>Agent</th><th>As</th><th class=\"n\">#</th><th>Read</th><th>Acknowledged</th><th>Drained</th></tr></thead><tbody>");
    for (name, receipt) in receipts {
        html.raw("<tr><td>");
        agent_link(html, &e.project_id, name);
        html.raw("</td>");
        match receipt {
            None => {
                html.raw("<td colspan=\"5\" class=\"meta\">no longer kept (retention) or not delivered</td>");
            }
            Some(r) => {
                html.raw("<td>")
                    .raw(r.kind.as_str())
                    .raw("</td><td class=\"n\">")
                    .num(r.seq)
                    .raw("</td><td>");
                match r.read_at {
                    Some(at) => html.time(at),
                    None => html.raw("<span class=\"badge unread\">unread</span>"),
                };
                html.raw("</td><td>");
                match (r.acked_at, e.ack_required) {
                    (Some(at), _) => html.time(at),
                    (None, true) => html.raw("<span class=\"badge ack\">pending</span>"),
                    (None, false) => html.raw("—"),
                };
                html.raw("</td><td>")
                    .raw(if r.drained { "yes" } else { "no" })
                    .raw("</td>");
            }
        }
        html.raw("</tr>");
    }
    html.raw("</tbody></table></div>");
}

pub async fn search(html: &mut Html<'_>, query: &str, hits: Result<&[Hit], &str>) {
    start(html, "Search", &[("Search", None)], Feed::No);
    html.raw("<h1>Search</h1><form class=\"search big\" action=\"/ui/search\" method=\"get\" role=\"search\"><input type=\"search\" name=\"q\" value=\"")
        .attr(query)
        .raw("\" aria-label=\"Query\" placeholder=\"deploy AND from:BlueLake\"><button type=\"submit\">Search</button></form>")
        .raw("<p class=\"meta\">Same syntax as <code>search_messages</code>: words, \"phrases\", AND/OR/NOT, and the fields from:, to:, cc:, thread_id:, importance:, subject:, project_id:.</p>");
    match hits {
        Err(problem) => {
            html.raw("<p class=\"error\">").text(problem).raw("</p>");
        }
        Ok([]) if !query.is_empty() => {
            html.raw("<p class=\"empty\">No messages match.</p>");
        }
        Ok(hits) => {
            let lines: Vec<Line<'_>> = hits.iter().map(Line::of_hit).collect();
            let shown = write_lines(html, &lines, PREVIEW_CHARS).await;
            if shown < lines.len() {
                html.raw("<p class=\"meta\">Showing the first ")
                    .num(shown as u64)
                    .raw(" hits: the page is full.</p>");
            }
        }
    }
    end(html, Feed::No);
}

pub fn login(html: &mut Html<'_>, failed: bool) {
    start(html, "Sign in", &[("Sign in", None)], Feed::No);
    html.raw("<h1>Sign in</h1>");
    if failed {
        html.raw("<p class=\"error\">That is not this server's token.</p>");
    }
    html.raw("<form class=\"login\" action=\"/ui/login\" method=\"post\"><label>Server token (<code>--token</code>) <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required autofocus></label><button type=\"submit\">Sign in</button></form>");
    end(html, Feed::No);
}

/// A short page for a refusal or a miss.
pub fn notice(html: &mut Html<'_>, title: &'static str, detail: &str) {
    start(html, title, &[(title, None)], Feed::No);
    html.raw("<h1>")
        .raw(title)
        .raw("</h1><p>")
        .text(detail)
        .raw("</p><p><a href=\"/ui/\">All projects</a></p>");
    end(html, Feed::No);
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use shards::{Envelope, Message};
    use std::sync::Arc;

    const XSS: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

    fn envelope(body: &str, subject: &str) -> SharedEnvelope {
        Arc::new(Envelope::compose(Message {
            id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
            project_id: Uuid::from_u128(9),
            timestamp_ms: 1_764_417_600_000,
            from: "Alice",
            subject,
            body,
            thread_id: Some("t-1"),
            reply_to: None,
            importance: Importance::Urgent,
            ack_required: true,
            to: vec!["Bob".into()],
            cc: vec!["Carol".into()],
        }))
    }

    fn hit(body: &str) -> Hit {
        Hit {
            id: vec!["0190a000-0000-7000-8000-000000000002".into()],
            project_id: vec![Uuid::from_u128(9).hyphenated().to_string()],
            from: vec!["Bob".into()],
            to: vec!["Alice".into()],
            subject: vec![XSS.into()],
            body: vec![body.into()],
            timestamp: vec!["2025-11-29T12:00:01.000Z".into()],
            ..Hit::default()
        }
    }

    fn render(write: impl FnOnce(&mut Html<'_>)) -> String {
        let mut out = Vec::new();
        write(&mut Html::new(&mut out));
        String::from_utf8(out).expect("utf-8")
    }

    /// Elements the pages are made of: anything else came from agent text.
    const ELEMENTS: &[&str] = &[
        "!doctype", "html", "head", "meta", "title", "link", "script", "body", "header", "a",
        "nav", "span", "form", "input", "button", "main", "h1", "h2", "h3", "p", "table", "thead",
        "tbody", "tr", "th", "td", "div", "dl", "dt", "dd", "code", "time", "article", "b", "svg",
        "rect", "footer", "label", "wbr",
    ];

    /// Every tag on the page is one of [`ELEMENTS`] and carries no event handler.
    fn assert_no_injected_markup(page: &str) {
        assert_eq!(
            page.matches("<script").count(),
            1,
            "only the page's own script tag"
        );
        for (at, _) in page.match_indices('<') {
            let tag = &page[at + 1..];
            let tag = &tag[..tag.find('>').expect("tags close")];
            let name = tag
                .trim_start_matches('/')
                .split([' ', '/'])
                .next()
                .unwrap_or("");
            assert!(ELEMENTS.contains(&name), "element <{name}> in {tag}");
            // Attribute names only: quoted values are text (escaped, so they hold no quote).
            let names: String = tag.split('"').step_by(2).collect();
            assert!(
                !names.to_ascii_lowercase().contains(" on"),
                "an event handler in <{tag}>"
            );
        }
    }

    #[test]
    fn agent_text_is_escaped_on_every_message_page() {
        let view = MessageView {
            envelope: envelope(XSS, XSS),
            receipts: vec![("Bob".into(), None), ("Carol".into(), None)],
        };
        let page = render(|html| message(html, &view, Some(XSS)));
        assert_no_injected_markup(&page);
        assert!(page.contains("&lt;img src=x onerror=alert(2)&gt;"));
        let thread_view = ThreadView {
            root: Some(envelope(XSS, "root")),
            messages: vec![hit(XSS)],
            cut: false,
        };
        let page = render(|html| {
            block_on(thread(
                html,
                &Uuid::from_u128(9),
                Some(XSS),
                XSS,
                &thread_view,
            ))
        });
        assert_no_injected_markup(&page);
        let page = render(|html| block_on(search(html, XSS, Ok(&[hit(XSS)]))));
        assert_no_injected_markup(&page);
        assert!(
            page.contains("value=\"&lt;script&gt;"),
            "the query echoed into the form, escaped"
        );
        let page = render(|html| block_on(search(html, "q", Err(XSS))));
        assert_no_injected_markup(&page);
    }

    #[test]
    fn pages_of_messages_stay_within_their_bound() {
        // Quotes escape to six bytes each: the worst case for a page's size.
        let body = "\"".repeat(THREAD_BODY_CHARS * 3);
        let view = ThreadView {
            root: None,
            messages: (0..200).map(|_| hit(&body)).collect(),
            cut: false,
        };
        let page = render(|html| block_on(thread(html, &Uuid::from_u128(9), None, "t", &view)));
        let one_line = THREAD_BODY_CHARS * 6 + 4096;
        assert!(
            page.len() <= MAX_PAGE_BYTES + one_line + 8192,
            "{} bytes",
            page.len()
        );
        assert!(
            page.contains("Showing the first "),
            "says it left messages out"
        );
        let shown = page.matches("<article").count();
        assert!((1..200).contains(&shown), "{shown}");

        let huge = envelope(&"<".repeat(1 << 20), &"\"".repeat(1 << 20));
        let view = MessageView {
            envelope: huge,
            receipts: Vec::new(),
        };
        let page = render(|html| message(html, &view, None));
        assert!(page.len() <= MAX_PAGE_BYTES, "{} bytes", page.len());
        assert!(page.contains("&lt;&lt;…</div>"), "the body is cut, visibly");
        let title =
            &page[page.find("<title>").expect("title")..page.find("</title>").expect("end")];
        assert!(title.len() < 1000 && !title.contains("<wbr>"), "{title}");
    }
}
