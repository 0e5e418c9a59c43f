//! GET /metrics: Prometheus text with requests, tools, shard state and helper threads.

mod common;

use common::Server;
use serde_json::json;
use std::time::{Duration, Instant};

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit_once(' '))
        .and_then(|(_, value)| value.parse().ok())
}

/// Scrapes until `ready` holds for the text (gauges are published once a second).
fn scrape_until(server: &Server, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = server.client().get("/metrics");
        assert_eq!(response.status, 200);
        assert!(response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
        let text = response.text();
        if ready(&text) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_count_requests_tools_state_and_helpers() {
    let server = Server::start();
    let mut client = server.client();
    client.create_agent("m", "MetricA");
    client.create_agent("m", "MetricB");
    for n in 0..5 {
        client.send("MetricA", &["MetricB"], &format!("metric{n}"), "");
    }
    client.call_err("get_inbox", json!({"agent_name": "Nobody"}));
    client.rpc("ping", json!({}));
    assert_eq!(client.get("/nope").status, 404);

    let text = scrape_until(&server, |text| {
        let agents: f64 = (0..2)
            .filter_map(|s| metric(text, &format!("allman_shard_agents{{shard=\"{s}\"}}")))
            .sum();
        let queued: f64 = (0..2)
            .filter_map(|s| {
                metric(
                    text,
                    &format!("allman_shard_queued_messages{{shard=\"{s}\"}}"),
                )
            })
            .sum();
        agents == 2.0
            && queued == 5.0
            && metric(text, "allman_search_indexed_total") == Some(5.0)
            && metric(text, "allman_git_commits_total").is_some_and(|c| c >= 1.0)
    });
    let get =
        |series: &str| metric(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(
        get("allman_tool_calls_total{tool=\"create_agent\",outcome=\"ok\"}"),
        2.0
    );
    assert_eq!(
        get("allman_tool_calls_total{tool=\"send_message\",outcome=\"ok\"}"),
        5.0
    );
    assert_eq!(
        get("allman_tool_calls_total{tool=\"get_inbox\",outcome=\"error\"}"),
        1.0
    );
    assert_eq!(
        get("allman_tool_duration_seconds_count{tool=\"send_message\"}"),
        5.0
    );
    assert_eq!(get("allman_rpc_requests_total{method=\"ping\"}"), 1.0);
    assert_eq!(get("allman_rpc_requests_total{method=\"initialize\"}"), 0.0);
    assert!(get("allman_http_responses_total{code=\"200\"}") >= 9.0);
    assert_eq!(get("allman_http_responses_total{code=\"404\"}"), 1.0);
    assert!(get("allman_open_connections") >= 1.0);
    assert_eq!(get("allman_search_indexed_total"), 5.0);
    assert_eq!(get("allman_git_failures_total"), 0.0);
    assert_eq!(get("allman_search_pending_documents"), 0.0);
    let agents: f64 = (0..2)
        .map(|s| get(&format!("allman_shard_agents{{shard=\"{s}\"}}")))
        .sum();
    assert_eq!(agents, 2.0);
}
