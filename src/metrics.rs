//! `GET /metrics` in the Prometheus text format.
//!
//! Counters live in one cache-line-aligned slot per shard, written only by that shard
//! (relaxed atomics, no sharing between cores on the hot path) and summed when scraped. The
//! helper threads keep their own counters. Gauges of shard state (agents, queued messages,
//! calls in flight) are published by each shard once a second.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Upper bounds of the latency buckets, in microseconds (Prometheus `le`, plus +Inf).
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];

/// A latency histogram with Prometheus' cumulative-bucket semantics.
#[derive(Default)]
pub struct Latency {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Latency {
    pub fn record(&self, micros: u64) {
        let index = LATENCY_BUCKETS_US
            .iter()
            .position(|le| micros <= *le)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
    }
}

pub const TOOLS: [&str; 4] = [
    "create_agent",
    "send_message",
    "get_inbox",
    "search_messages",
];
pub const METHODS: [&str; 6] = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "notification",
    "other",
];
/// Every status code the server answers with (`http::Status`; a test there keeps the two in
/// step). Codes, not the enum, so that metrics stays a leaf every layer can write to.
pub const STATUS_CODES: [u16; 15] = [
    100, 200, 202, 400, 401, 403, 404, 405, 406, 408, 411, 413, 415, 431, 503,
];

/// One shard's counters. Aligned so two shards never write the same cache line.
#[repr(align(128))]
#[derive(Default)]
pub struct ShardMetrics {
    http_responses: [AtomicU64; STATUS_CODES.len()],
    rpc_methods: [AtomicU64; METHODS.len()],
    tool_ok: [AtomicU64; TOOLS.len()],
    tool_error: [AtomicU64; TOOLS.len()],
    tool_latency: [Latency; TOOLS.len()],
    head_parses: AtomicU64,
    pub agents: AtomicU64,
    pub queued_messages: AtomicU64,
    pub cross_shard_in_flight: AtomicU64,
    /// Request bytes buffered beyond each connection's first read buffer (the read budget).
    pub read_buffer_bytes: AtomicU64,
}

impl ShardMetrics {
    /// One response with this status code; a code not in `STATUS_CODES` is not counted.
    pub fn http_response(&self, code: u16) {
        if let Some(index) = STATUS_CODES.iter().position(|c| *c == code) {
            self.http_responses[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One HTTP header section parsed (a request whose body arrives in pieces costs two: at
    /// its head and when it is complete, never one per read).
    pub fn head_parsed(&self) {
        self.head_parses.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rpc_method(&self, method: &str) {
        let index = METHODS
            .iter()
            .position(|m| *m == method)
            .unwrap_or(METHODS.len() - 1);
        self.rpc_methods[index].fetch_add(1, Ordering::Relaxed);
    }

    pub fn tool_call(&self, tool: &str, ok: bool, micros: u64) {
        let Some(index) = TOOLS.iter().position(|t| *t == tool) else {
            return;
        };
        let counter = if ok {
            &self.tool_ok[index]
        } else {
            &self.tool_error[index]
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.tool_latency[index].record(micros);
    }
}

/// Counters of the search threads.
#[derive(Default)]
pub struct SearchMetrics {
    pub indexed: AtomicU64,
    pub commits: AtomicU64,
    /// Time from the first document of a batch arriving to its commit being searchable: the
    /// worst visibility lag within that batch.
    pub commit_lag: Latency,
    /// The feed from the shards to the indexer (documents, message text).
    pub feed: FeedGauges,
}

/// Counters of the git audit thread.
#[derive(Default)]
pub struct AuditMetrics {
    pub commits: AtomicU64,
    pub failures: AtomicU64,
    /// Profiles written to no commit yet.
    pub pending: AtomicU64,
    /// The feed from the shards to the git writer (profiles, their text).
    pub feed: FeedGauges,
}

/// What a feed to a helper thread holds (see `crate::feed`), kept by the feed itself.
#[derive(Debug, Clone, Default)]
pub struct FeedGauges {
    /// Items sent by the shards and not yet received by the helper.
    pub in_flight: Arc<AtomicUsize>,
    /// Bytes of those items, and of items held back or about to be produced, across shards.
    pub pending_bytes: Arc<AtomicUsize>,
}

pub struct Metrics {
    pub shards: Box<[ShardMetrics]>,
    pub open_connections: Arc<AtomicUsize>,
    pub refused_connections: AtomicU64,
    pub search: Arc<SearchMetrics>,
    pub audit: Arc<AuditMetrics>,
}

impl Metrics {
    pub fn new(shard_count: usize, search: Arc<SearchMetrics>, audit: Arc<AuditMetrics>) -> Self {
        Metrics {
            shards: (0..shard_count).map(|_| ShardMetrics::default()).collect(),
            open_connections: Arc::new(AtomicUsize::new(0)),
            refused_connections: AtomicU64::new(0),
            search,
            audit,
        }
    }

    /// Renders every metric in the Prometheus text exposition format (0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let sum = |f: &dyn Fn(&ShardMetrics) -> u64| self.shards.iter().map(f).sum::<u64>();

        header(
            &mut out,
            "allman_http_responses_total",
            "counter",
            "HTTP responses by status code",
        );
        for (index, code) in STATUS_CODES.iter().enumerate() {
            let count = sum(&|s| s.http_responses[index].load(Ordering::Relaxed));
            let _ = writeln!(
                out,
                "allman_http_responses_total{{code=\"{code}\"}} {count}"
            );
        }
        counter(
            &mut out,
            "allman_http_head_parses_total",
            "HTTP header sections parsed",
            sum(&|s| s.head_parses.load(Ordering::Relaxed)),
        );
        header(
            &mut out,
            "allman_rpc_requests_total",
            "counter",
            "JSON-RPC messages by method",
        );
        for (index, method) in METHODS.iter().enumerate() {
            let count = sum(&|s| s.rpc_methods[index].load(Ordering::Relaxed));
            let _ = writeln!(
                out,
                "allman_rpc_requests_total{{method=\"{method}\"}} {count}"
            );
        }
        header(
            &mut out,
            "allman_tool_calls_total",
            "counter",
            "tools/call by tool and outcome (error = isError)",
        );
        for (index, tool) in TOOLS.iter().enumerate() {
            let ok = sum(&|s| s.tool_ok[index].load(Ordering::Relaxed));
            let error = sum(&|s| s.tool_error[index].load(Ordering::Relaxed));
            let _ = writeln!(
                out,
                "allman_tool_calls_total{{tool=\"{tool}\",outcome=\"ok\"}} {ok}"
            );
            let _ = writeln!(
                out,
                "allman_tool_calls_total{{tool=\"{tool}\",outcome=\"error\"}} {error}"
            );
        }
        header(
            &mut out,
            "allman_tool_duration_seconds",
            "histogram",
            "tools/call latency on the server",
        );
        for (index, tool) in TOOLS.iter().enumerate() {
            let latencies: Vec<&Latency> =
                self.shards.iter().map(|s| &s.tool_latency[index]).collect();
            histogram(
                &mut out,
                "allman_tool_duration_seconds",
                &format!("tool=\"{tool}\","),
                &latencies,
            );
        }
        header(
            &mut out,
            "allman_shard_agents",
            "gauge",
            "agents owned, per shard",
        );
        self.per_shard(&mut out, "allman_shard_agents", |s| {
            s.agents.load(Ordering::Relaxed)
        });
        header(
            &mut out,
            "allman_shard_queued_messages",
            "gauge",
            "messages waiting in inboxes, per shard",
        );
        self.per_shard(&mut out, "allman_shard_queued_messages", |s| {
            s.queued_messages.load(Ordering::Relaxed)
        });
        header(
            &mut out,
            "allman_shard_cross_shard_in_flight",
            "gauge",
            "cross-shard calls sent and not yet answered, per shard",
        );
        self.per_shard(&mut out, "allman_shard_cross_shard_in_flight", |s| {
            s.cross_shard_in_flight.load(Ordering::Relaxed)
        });

        header(
            &mut out,
            "allman_shard_read_buffer_bytes",
            "gauge",
            "request bytes buffered beyond each connection's first 8 KiB, per shard (bounded by --read-buffer-budget-bytes)",
        );
        self.per_shard(&mut out, "allman_shard_read_buffer_bytes", |s| {
            s.read_buffer_bytes.load(Ordering::Relaxed)
        });

        gauge(
            &mut out,
            "allman_open_connections",
            "open client connections",
            self.open_connections.load(Ordering::Relaxed) as u64,
        );
        counter(
            &mut out,
            "allman_refused_connections_total",
            "connections refused with 503 over --max-connections",
            self.refused_connections.load(Ordering::Relaxed),
        );

        counter(
            &mut out,
            "allman_search_indexed_total",
            "messages committed to the search index",
            self.search.indexed.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "allman_search_commits_total",
            "search index commits",
            self.search.commits.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "allman_search_pending_documents",
            "documents on their way to the indexer",
            self.search.feed.in_flight.load(Ordering::Relaxed) as u64,
        );
        gauge(
            &mut out,
            "allman_search_pending_bytes",
            "message text on its way to the indexer, held or in flight (bounded by --search-queue-bytes)",
            self.search.feed.pending_bytes.load(Ordering::Relaxed) as u64,
        );
        header(
            &mut out,
            "allman_search_commit_lag_seconds",
            "histogram",
            "from a batch's first document to its commit being searchable",
        );
        histogram(
            &mut out,
            "allman_search_commit_lag_seconds",
            "",
            &[&self.search.commit_lag],
        );

        counter(
            &mut out,
            "allman_git_commits_total",
            "git audit commits",
            self.audit.commits.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "allman_git_failures_total",
            "failed git audit commits (retried)",
            self.audit.failures.load(Ordering::Relaxed),
        );
        let pending = self.audit.pending.load(Ordering::Relaxed)
            + self.audit.feed.in_flight.load(Ordering::Relaxed) as u64;
        gauge(
            &mut out,
            "allman_git_pending_events",
            "agent profiles not committed yet",
            pending,
        );
        gauge(
            &mut out,
            "allman_git_pending_bytes",
            "profile text on its way to the git writer, held or in flight (bounded by --audit-queue-bytes)",
            self.audit.feed.pending_bytes.load(Ordering::Relaxed) as u64,
        );
        out
    }

    fn per_shard(&self, out: &mut String, name: &str, value: impl Fn(&ShardMetrics) -> u64) {
        for (shard, metrics) in self.shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", value(metrics));
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

/// Writes the cumulative buckets, sum and count of the merged `latencies`.
fn histogram(out: &mut String, name: &str, labels: &str, latencies: &[&Latency]) {
    let mut cumulative = 0u64;
    for (index, le) in LATENCY_BUCKETS_US
        .iter()
        .map(|us| format!("{}", *us as f64 / 1e6))
        .chain(["+Inf".to_string()])
        .enumerate()
    {
        cumulative += latencies
            .iter()
            .map(|l| l.buckets[index].load(Ordering::Relaxed))
            .sum::<u64>();
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {cumulative}");
    }
    let sum_us: u64 = latencies
        .iter()
        .map(|l| l.sum_us.load(Ordering::Relaxed))
        .sum();
    let trimmed = labels.trim_end_matches(',');
    let braces = if trimmed.is_empty() {
        String::new()
    } else {
        format!("{{{trimmed}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{braces} {cumulative}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_from_every_shard_are_summed() {
        let metrics = Metrics::new(2, Arc::default(), Arc::default());
        metrics.shards[0].http_response(200);
        metrics.shards[1].http_response(200);
        metrics.shards[1].http_response(403);
        metrics.shards[0].tool_call("send_message", true, 300);
        metrics.shards[1].tool_call("send_message", false, 3_000_000);
        metrics.shards[0].rpc_method("tools/call");
        metrics.shards[0].rpc_method("server/discover");
        let text = metrics.render();
        assert!(
            text.contains("allman_http_responses_total{code=\"200\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("allman_http_responses_total{code=\"403\"} 1\n"));
        assert!(text.contains("allman_tool_calls_total{tool=\"send_message\",outcome=\"ok\"} 1\n"));
        assert!(
            text.contains("allman_tool_calls_total{tool=\"send_message\",outcome=\"error\"} 1\n")
        );
        assert!(
            text.contains(
                "allman_tool_duration_seconds_bucket{tool=\"send_message\",le=\"0.0005\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "allman_tool_duration_seconds_bucket{tool=\"send_message\",le=\"+Inf\"} 2\n"
        ));
        assert!(text.contains("allman_tool_duration_seconds_count{tool=\"send_message\"} 2\n"));
        assert!(text.contains("allman_rpc_requests_total{method=\"other\"} 1\n"));
        assert!(text.contains("allman_shard_agents{shard=\"1\"} 0\n"));
    }

    #[test]
    fn every_sample_line_is_well_formed() {
        let text = Metrics::new(1, Arc::default(), Arc::default()).render();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').expect("name value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(name.starts_with("allman_"), "{line}");
        }
    }
}
