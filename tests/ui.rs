//! The read-only web view (issue #17), over real HTTP on a real socket: pages show the names
//! and counts the tools report, agent text is escaped, viewing changes nothing, paging is
//! bounded, and the token, Host/Origin and `--ui off` rules hold.

mod common;

use common::{names_on_different_shards, Client, Response, Server};
use serde_json::{json, Value};

const XSS: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

fn project_id(key: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_DNS, key.as_bytes())
        .hyphenated()
        .to_string()
}

fn page(client: &mut Client, path: &str) -> String {
    let response = client.get(path);
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    assert_security_headers(&response, path);
    response.text()
}

fn assert_security_headers(response: &Response, path: &str) {
    let csp = response
        .header("content-security-policy")
        .unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{path}"
    );
    assert_eq!(
        response.header("x-content-type-options"),
        Some("nosniff"),
        "{path}"
    );
    assert_eq!(
        response.header("referrer-policy"),
        Some("no-referrer"),
        "{path}"
    );
}

/// The number in the table cell after `label`'s row cell `column` (1-based), for rows whose
/// first cell links `label`.
fn cell(html: &str, label: &str, column: usize) -> String {
    let row_start = html
        .find(&format!(">{label}</a></td>"))
        .unwrap_or_else(|| panic!("no row for {label}"));
    let row = &html[row_start..];
    let row = &row[..row.find("</tr>").expect("row end")];
    row.split("<td")
        .nth(column - 1)
        .and_then(|c| c.split('>').nth(1))
        .map(|c| c.trim_end_matches("</td").to_string())
        .unwrap_or_else(|| panic!("no column {column} in {row}"))
}

fn send(client: &mut Client, arguments: Value) -> String {
    client.call_ok("send_message", arguments)["id"]
        .as_str()
        .expect("id")
        .to_string()
}

#[test]
fn pages_show_what_the_tools_report_and_escape_agent_text() {
    let server = Server::start();
    let mut client = server.client();
    let key = "/home/dev/ui-webapp";
    let (a, b) = names_on_different_shards("Ui", 2);
    client.call_ok(
        "create_agent",
        json!({"project_key": key, "name_hint": a, "program": "claude-code", "model": "opus", "task_description": "front <end>"}),
    );
    client.call_ok(
        "create_agent",
        json!({"project_key": key, "name_hint": b, "program": "codex"}),
    );
    client.create_agent("/srv/ui-other", "UiLone");
    let first = send(
        &mut client,
        json!({"from_agent": a, "to": [b], "subject": "Plan \"A\" & more", "body": XSS, "ack_required": true}),
    );
    client.call_ok(
        "reply_message",
        json!({"from_agent": b, "message_id": first, "body": "on it"}),
    );
    send(
        &mut client,
        json!({"from_agent": a, "to": [b], "subject": "second", "body": "x", "thread_id": "plan:7"}),
    );
    client.call_ok(
        "file_reservation_paths",
        json!({"project_key": key, "agent_name": a, "paths": ["src/**"], "reason": "refactor <i>"}),
    );
    let project = project_id(key);

    let home = page(&mut client, "/ui/");
    assert!(
        home.contains(&format!("href=\"/ui/p/{project}\">{key}</a>")),
        "{home}"
    );
    assert_eq!(cell(&home, key, 2), "2", "agents");
    assert_eq!(
        cell(&home, key, 3),
        "3",
        "queued: two messages to b, the reply to a"
    );
    assert_eq!(cell(&home, key, 4), "3", "sent in the last hour");
    assert!(
        home.contains("3 messages in the last hour"),
        "the chart's label"
    );
    assert_eq!(cell(&home, "/srv/ui-other", 2), "1");

    let roster = page(&mut client, &format!("/ui/p/{project}"));
    assert!(roster.contains("front &lt;end&gt;"), "task escaped");
    assert_eq!(cell(&roster, &b, 6), "2", "b's queue");
    assert_eq!(cell(&roster, &b, 8), "1", "b owes one acknowledgement");
    assert!(
        roster.contains("Plan &quot;A&quot; &amp; more"),
        "subject escaped"
    );
    assert!(roster.contains("<code>src/**</code>") && roster.contains("refactor &lt;i&gt;"));

    let agent = page(&mut client, &format!("/ui/p/{project}/a/{b}"));
    assert!(
        agent.contains("<span class=\"badge ack\">ack pending</span>"),
        "{agent}"
    );
    assert!(
        agent.contains(&format!("/t/{first}\"")),
        "b's thread with a reply is listed"
    );
    assert!(agent.contains("/t/plan%3A7\">plan:7</a>"), "named thread");

    let message = page(&mut client, &format!("/ui/m/{first}?p={project}"));
    assert!(
        message.contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;")
    );
    assert!(
        !message.contains("<img src=x"),
        "the body's markup never reaches the page"
    );
    assert!(
        message.contains(&format!(">{b}</a></td><td>to</td>")),
        "{message}"
    );
    assert_eq!(
        page(&mut client, &format!("/ui/m/{first}?from={a}")),
        message
    );

    // Search is eventually consistent: the thread fills in within moments.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let thread = page(&mut client, &format!("/ui/p/{project}/t/{first}"));
        let articles = thread.matches("<article").count();
        if articles == 2 {
            let at = |name: &str| thread.find(&format!(">{name}</a> →")).expect("a sender");
            assert!(at(&a) < at(&b), "oldest first");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "thread never showed its reply: {thread}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let found = page(&mut client, "/ui/search?q=alert");
    assert!(
        found.contains(&format!("/ui/m/{first}?from={a}")),
        "{found}"
    );
    let bad = client.get("/ui/search?q=from%3A");
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("class=\"error\""));

    // A link may name another project than the agent's (a message's project is the sender's
    // choice): the agent's own project is shown.
    let elsewhere = page(
        &mut client,
        &format!("/ui/p/{}/a/{b}", project_id("/srv/ui-other")),
    );
    assert!(elsewhere.contains(&format!("<a href=\"/ui/p/{project}\">{key}</a>")));
    for missing in [
        "/ui/p/not-a-uuid".to_string(),
        format!("/ui/p/{}", project_id("nobody")),
        format!("/ui/p/{project}/a/Nobody"),
        format!("/ui/m/{first}"),
        format!("/ui/m/{}?p={project}", project_id("x")),
        format!("/ui/m/{first}?from=Nobody"),
        "/ui/nope".to_string(),
    ] {
        let response = client.get(&missing);
        assert_eq!(response.status, 404, "{missing}");
        assert_security_headers(&response, &missing);
    }
    let css = client.get("/ui/static/app.css");
    assert_eq!(
        (css.status, css.header("content-type")),
        (200, Some("text/css; charset=utf-8"))
    );
}

#[test]
fn viewing_drains_marks_and_touches_nothing() {
    let server = Server::start();
    let mut client = server.client();
    let key = "ui-readonly";
    let (a, b) = names_on_different_shards("Ro", 2);
    client.create_agent(key, &a);
    client.create_agent(key, &b);
    let id = send(
        &mut client,
        json!({"from_agent": a, "to": [b], "subject": "s", "body": "b", "ack_required": true}),
    );
    let roster_before = client.call_ok("list_agents", json!({"project_key": key}));
    let counts_of = |client: &mut Client| {
        let page = client.call_ok("fetch_inbox", json!({"agent_name": b, "limit": 0}));
        (
            page["counts"]["unread"].clone(),
            page["counts"]["ack_pending"].clone(),
        )
    };
    // fetch_inbox acts as b (moves its last_active): read the roster first.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let project = project_id(key);
    for path in [
        "/ui/".to_string(),
        format!("/ui/p/{project}"),
        format!("/ui/p/{project}/a/{b}"),
        format!("/ui/p/{project}/a/{a}"),
        format!("/ui/m/{id}?p={project}"),
        format!("/ui/p/{project}/t/{id}"),
    ] {
        page(&mut client, &path);
    }
    let roster_after = client.call_ok("list_agents", json!({"project_key": key}));
    assert_eq!(roster_after, roster_before, "last_active unchanged");
    assert_eq!(
        counts_of(&mut client),
        (json!(1), json!(1)),
        "still unread and unacknowledged"
    );
    let inbox = client.inbox(&b);
    assert_eq!(inbox.len(), 1, "still queued: the view drained nothing");
}

/// 55 names from `names`: the first 52 owned by shard 0 of 2, the last 3 by shard 1.
fn lopsided_names(names: &mut impl Iterator<Item = String>) -> Vec<String> {
    (0..55)
        .map(|n| {
            let shard = usize::from(n >= 52);
            names
                .find(|name| shards::owner_of(name, 2) == shard)
                .expect("a name")
        })
        .collect()
}

/// The `rel="next"` link of a page.
fn next_link(html: &str) -> String {
    html.split("rel=\"next\" href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a next link")
        .to_string()
}

#[test]
fn pages_are_bounded_and_link_to_the_next() {
    let server = Server::start();
    let mut client = server.client();
    // 55 projects: the first 52 (in key order) with their one agent on shard 0, so that shard
    // alone fills a page and the page must stop where every shard is complete.
    let mut names = (0..).map(|i| format!("Pager{i}"));
    let pagers = lopsided_names(&mut names);
    for (n, name) in pagers.iter().enumerate() {
        client.create_agent(&format!("ui-page-{n:02}"), name);
    }
    let sender = pagers[0].clone();
    client.create_agent("ui-page-00", "Reader");
    for n in 0..53 {
        send(
            &mut client,
            json!({"from_agent": sender, "to": ["Reader"], "subject": format!("m{n:02}"), "body": "x"}),
        );
    }
    let first = page(&mut client, "/ui/");
    assert_eq!(first.matches("<tr><td><a href=\"/ui/p/").count(), 50);
    assert!(first.contains("ui-page-49</a>") && !first.contains("ui-page-50</a>"));
    let next = next_link(&first);
    assert_eq!(next, "/ui/?after=ui-page-49");
    let second = page(&mut client, &next);
    assert_eq!(second.matches("<tr><td><a href=\"/ui/p/").count(), 5);
    assert!(!second.contains("rel=\"next\""));

    // A roster the same way: 52 of its 55 agents on shard 0.
    let mut crowd = lopsided_names(&mut names);
    for name in &crowd {
        client.create_agent("ui-crowd", name);
    }
    crowd.sort();
    let crowd_project = project_id("ui-crowd");
    let roster = page(&mut client, &format!("/ui/p/{crowd_project}"));
    let rows = |html: &str| html.matches("<tr><td><a href=\"/ui/p/").count();
    assert_eq!(rows(&roster), 50);
    let next = next_link(&roster);
    assert_eq!(next, format!("/ui/p/{crowd_project}?after={}", crowd[49]));
    let rest = page(&mut client, &next);
    assert_eq!(rows(&rest), 5);
    for name in &crowd[50..] {
        assert!(
            rest.contains(&format!(">{name}</a>")),
            "{name} on the second page"
        );
    }

    let project = project_id("ui-page-00");
    let log = page(&mut client, &format!("/ui/p/{project}/a/Reader"));
    assert_eq!(
        log.matches("<tr><td class=\"n\">").count(),
        50,
        "one page of deliveries"
    );
    let at = |subject: &str| log.find(subject).expect("listed");
    assert!(at(">m52</a>") < at(">m03</a>"), "newest first");
    assert!(!log.contains(">m02</a>"));
    let older = page(&mut client, &format!("/ui/p/{project}/a/Reader?before=4"));
    assert_eq!(older.matches("<tr><td class=\"n\">").count(), 3);
    assert!(older.contains(">m00</a>") && !older.contains("rel=\"next\""));
}

fn raw(client: &mut Client, request: String) -> Response {
    client.send_raw(request.as_bytes());
    client.read_response()
}

fn login(client: &mut Client, token: &str, origin: &str) -> Response {
    let body = format!("token={token}");
    raw(
        client,
        format!(
            "POST /ui/login HTTP/1.1\r\nHost: localhost\r\nOrigin: {origin}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn with_a_token_the_view_needs_the_login_cookie() {
    let server = Server::start_with(&["--shards", "2", "--token", "s3cret+token"]);
    let mut client = Client::connect(server.addr);
    let response = client.get("/ui/");
    assert_eq!(response.status, 303);
    assert_eq!(response.header("location"), Some("/ui/login"));
    let form = page(&mut client, "/ui/login");
    assert!(form.contains("type=\"password\" name=\"token\""));
    // `+` in a form is a space: the token's own `+` arrives as %2B.
    let wrong = login(&mut client, "s3cret+token", "http://localhost:8000");
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    let mut client = Client::connect(server.addr);
    let foreign = login(&mut client, "s3cret%2Btoken", "https://evil.example");
    assert_eq!(
        foreign.status, 403,
        "a foreign page cannot log a browser in"
    );
    let mut client = Client::connect(server.addr);
    let signed = login(&mut client, "s3cret%2Btoken", "http://localhost:8000");
    assert_eq!(signed.status, 303);
    assert_eq!(signed.header("location"), Some("/ui/"));
    let cookie = signed.header("set-cookie").expect("a cookie").to_string();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/ui"),
        "{cookie}"
    );
    assert!(!cookie.contains("s3cret"), "the cookie is not the token");
    let pair = cookie.split(';').next().expect("name=value").to_string();
    let with_cookie =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nCookie: {pair}\r\n\r\n");
    let home = raw(&mut client, with_cookie("/ui/"));
    assert_eq!(home.status, 200);
    assert_security_headers(&home, "/ui/");
    let bearer = raw(
        &mut client,
        "GET /ui/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer s3cret+token\r\n\r\n".into(),
    );
    assert_eq!(bearer.status, 200, "a bearer token works too");
    // The cookie opens the view only.
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let mcp = raw(
        &mut client,
        format!(
            "POST /mcp HTTP/1.1\r\nHost: localhost\r\nCookie: {pair}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(mcp.status, 401);
    let mut client = Client::connect(server.addr);
    let rebinding = raw(
        &mut client,
        "GET /ui/ HTTP/1.1\r\nHost: evil.example\r\n\r\n".into(),
    );
    assert_eq!(rebinding.status, 403, "the same Host check as /mcp");
}

#[test]
fn ui_off_is_not_found() {
    let server = Server::start_with(&["--shards", "1", "--ui=off"]);
    let mut client = server.client();
    for path in ["/ui/", "/ui/static/app.css", "/ui/login"] {
        assert_eq!(client.get(path).status, 404, "{path}");
    }
    assert_eq!(client.get("/health").status, 200);
}
