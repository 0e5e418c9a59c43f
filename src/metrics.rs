//! `GET /metrics` in the Prometheus text format.
//!
//! Counters live in one cache-line-aligned slot per shard, written only by that shard
//! (relaxed atomics, no sharing between cores on the hot path) and summed when scraped. The
//! helper threads keep their own counters. Gauges of shard state (agents, queued messages,
//! calls in flight) are published by each shard once a second.

use crate::feed::FeedGauges;
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

pub const TOOLS: [&str; 17] = [
    "create_agent",
    "send_message",
    "get_inbox",
    "search_messages",
    "fetch_inbox",
    "wait_for_mail",
    "reply_message",
    "acknowledge_message",
    "mark_message_read",
    "get_thread",
    "list_agents",
    "file_reservation_paths",
    "release_file_reservations",
    "renew_file_reservations",
    "check_file_reservation_conflicts",
    "list_file_reservations",
    "force_release_file_reservation",
];
pub const METHODS: [&str; 8] = [
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "subscriptions/listen",
    "notification",
    "other",
];
/// Every status code the server answers with (`http::Status`; a test there keeps the two in
/// step). Codes, not the enum, so that metrics stays a leaf every layer can write to.
pub const STATUS_CODES: [u16; 16] = [
    100, 200, 202, 303, 400, 401, 403, 404, 405, 406, 408, 411, 413, 415, 431, 503,
];

/// A counter of [`ShardMetrics`], for rendering tables of them.
type ShardField = fn(&ShardMetrics) -> &AtomicU64;

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
    /// Deliveries and sent messages kept for reading (drained or not).
    pub retained_messages: AtomicU64,
    /// `wait_for_mail` calls parked on this shard.
    pub waiters: AtomicU64,
    /// Event streams open on this shard (`subscriptions/listen`, `GET /mcp`).
    pub event_streams: AtomicU64,
    pub cross_shard_in_flight: AtomicU64,
    /// Request bytes buffered beyond each connection's first read buffer (the read budget).
    pub read_buffer_bytes: AtomicU64,
    /// The shard's log (copied from its journal every second).
    pub log_bytes: AtomicU64,
    pub log_records: AtomicU64,
    pub log_batches: AtomicU64,
    pub log_syncs: AtomicU64,
    pub log_sync_micros: AtomicU64,
    pub log_snapshots: AtomicU64,
    /// 1 when the log bypasses the page cache (O_DIRECT).
    pub log_direct_io: AtomicU64,
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
    /// The feed from the shards to the indexer (documents, message text): the feed's own
    /// gauges, read here.
    pub feed: FeedGauges,
}

/// Counters of the git audit thread.
#[derive(Default)]
pub struct AuditMetrics {
    pub commits: AtomicU64,
    pub failures: AtomicU64,
    /// Profiles written to no commit yet.
    pub pending: AtomicU64,
    /// The feed from the shards to the git writer (profiles, their text): the feed's own
    /// gauges, read here.
    pub feed: FeedGauges,
}

/// Which core each thread class runs on, as configured (for `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct CoreLayout {
    pub shard_cores: Vec<usize>,
    pub index_core: usize,
    pub git_core: usize,
}

/// The per-shard gauges: name, help, field.
const SHARD_GAUGES: [(&str, &str, ShardField); 7] = [
    ("allman_shard_agents", "agents owned, per shard", |s| &s.agents),
    (
        "allman_shard_queued_messages",
        "messages waiting in inboxes, per shard",
        |s| &s.queued_messages,
    ),
    (
        "allman_shard_retained_messages",
        "deliveries and sent messages kept for reading (bounded per agent by --max-retained-messages), per shard",
        |s| &s.retained_messages,
    ),
    (
        "allman_shard_waiters",
        "wait_for_mail calls parked, per shard (bounded by --max-waiters)",
        |s| &s.waiters,
    ),
    (
        "allman_shard_event_streams",
        "event streams open (subscriptions/listen and GET /mcp), per shard (bounded by --max-waiters)",
        |s| &s.event_streams,
    ),
    (
        "allman_shard_cross_shard_in_flight",
        "cross-shard calls sent and not yet answered, per shard",
        |s| &s.cross_shard_in_flight,
    ),
    (
        "allman_shard_read_buffer_bytes",
        "request bytes buffered beyond each connection's first 8 KiB, per shard (bounded by --read-buffer-budget-bytes)",
        |s| &s.read_buffer_bytes,
    ),
];

/// The per-shard log counters: name, help, field.
const LOG_COUNTERS: [(&str, &str, ShardField); 5] = [
    (
        "allman_log_bytes_total",
        "bytes written to the shard's log, padding included",
        |s| &s.log_bytes,
    ),
    (
        "allman_log_records_total",
        "records written to the shard's log",
        |s| &s.log_records,
    ),
    (
        "allman_log_batches_total",
        "group commits (writes) of the shard's log; records / batches is the batch size",
        |s| &s.log_batches,
    ),
    (
        "allman_log_syncs_total",
        "fdatasync calls on the shard's log",
        |s| &s.log_syncs,
    ),
    (
        "allman_log_snapshots_total",
        "snapshots written by the shard's log compaction",
        |s| &s.log_snapshots,
    ),
];

pub struct Metrics {
    pub layout: CoreLayout,
    pub shards: Box<[ShardMetrics]>,
    pub open_connections: Arc<AtomicUsize>,
    pub refused_connections: AtomicU64,
    pub search: Arc<SearchMetrics>,
    pub audit: Arc<AuditMetrics>,
}

impl Metrics {
    pub fn new(shard_count: usize, search: Arc<SearchMetrics>, audit: Arc<AuditMetrics>) -> Self {
        Metrics {
            layout: CoreLayout::default(),
            shards: (0..shard_count).map(|_| ShardMetrics::default()).collect(),
            open_connections: Arc::new(AtomicUsize::new(0)),
            refused_connections: AtomicU64::new(0),
            search,
            audit,
        }
    }

    pub fn with_layout(mut self, layout: CoreLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Renders every metric in the Prometheus text exposition format (0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        header(
            &mut out,
            "allman_build_info",
            "gauge",
            "always 1; the running build's version is its label",
        );
        let _ = writeln!(
            out,
            "allman_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        self.render_layout(&mut out);
        self.render_requests(&mut out);
        self.render_tools(&mut out);
        self.render_shards(&mut out);
        self.render_search(&mut out);
        self.render_git(&mut out);
        out
    }

    /// A counter summed over every shard.
    fn sum(&self, count: impl Fn(&ShardMetrics) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|s| count(s).load(Ordering::Relaxed))
            .sum()
    }

    fn render_requests(&self, out: &mut String) {
        let name = "allman_http_responses_total";
        header(out, name, "counter", "HTTP responses by status code");
        for (index, code) in STATUS_CODES.iter().enumerate() {
            let count = self.sum(|s| &s.http_responses[index]);
            let _ = writeln!(out, "{name}{{code=\"{code}\"}} {count}");
        }
        let parses = self.sum(|s| &s.head_parses);
        let help = "HTTP header sections parsed";
        counter(out, "allman_http_head_parses_total", help, parses);
        let name = "allman_rpc_requests_total";
        header(out, name, "counter", "JSON-RPC messages by method");
        for (index, method) in METHODS.iter().enumerate() {
            let count = self.sum(|s| &s.rpc_methods[index]);
            let _ = writeln!(out, "{name}{{method=\"{method}\"}} {count}");
        }
    }

    fn render_tools(&self, out: &mut String) {
        let name = "allman_tool_calls_total";
        let help = "tools/call by tool and outcome (error = isError)";
        header(out, name, "counter", help);
        for (index, tool) in TOOLS.iter().enumerate() {
            let ok = self.sum(|s| &s.tool_ok[index]);
            let error = self.sum(|s| &s.tool_error[index]);
            let _ = writeln!(out, "{name}{{tool=\"{tool}\",outcome=\"ok\"}} {ok}");
            let _ = writeln!(out, "{name}{{tool=\"{tool}\",outcome=\"error\"}} {error}");
        }
        let name = "allman_tool_duration_seconds";
        header(out, name, "histogram", "tools/call latency on the server");
        for (index, tool) in TOOLS.iter().enumerate() {
            let latencies: Vec<&Latency> =
                self.shards.iter().map(|s| &s.tool_latency[index]).collect();
            histogram(out, name, &format!("tool=\"{tool}\","), &latencies);
        }
    }

    fn render_shards(&self, out: &mut String) {
        self.per_shard_series(out, "gauge", &SHARD_GAUGES);
        self.per_shard_series(out, "counter", &LOG_COUNTERS);
        self.render_log(out);
        let open = self.open_connections.load(Ordering::Relaxed) as u64;
        gauge(
            out,
            "allman_open_connections",
            "open client connections",
            open,
        );
        let refused = self.refused_connections.load(Ordering::Relaxed);
        let help = "connections refused with 503 over --max-connections";
        counter(out, "allman_refused_connections_total", help, refused);
    }

    /// The log series that are not plain per-shard counters.
    fn render_log(&self, out: &mut String) {
        let name = "allman_log_direct_io";
        header(
            out,
            name,
            "gauge",
            "1 when the shard's log bypasses the page cache (O_DIRECT, fsync durability)",
        );
        self.per_shard(out, name, |s| s.log_direct_io.load(Ordering::Relaxed));
        let name = "allman_log_sync_seconds_total";
        header(
            out,
            name,
            "counter",
            "time spent in fdatasync of the shard's log",
        );
        for (shard, metrics) in self.shards.iter().enumerate() {
            let seconds = metrics.log_sync_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {seconds}");
        }
    }

    fn render_search(&self, out: &mut String) {
        let search = &self.search;
        let load = |value: &AtomicU64| value.load(Ordering::Relaxed);
        let help = "messages committed to the search index";
        counter(
            out,
            "allman_search_indexed_total",
            help,
            load(&search.indexed),
        );
        let help = "search index commits";
        counter(
            out,
            "allman_search_commits_total",
            help,
            load(&search.commits),
        );
        let help = "documents on their way to the indexer";
        let documents = search.feed.in_flight.load(Ordering::Relaxed) as u64;
        gauge(out, "allman_search_pending_documents", help, documents);
        let help = "message text on its way to the indexer, held or in flight (bounded by --search-queue-bytes)";
        let bytes = search.feed.pending_bytes.load(Ordering::Relaxed) as u64;
        gauge(out, "allman_search_pending_bytes", help, bytes);
        let name = "allman_search_commit_lag_seconds";
        let help = "from a batch's first document to its commit being searchable";
        header(out, name, "histogram", help);
        histogram(out, name, "", &[&search.commit_lag]);
    }

    fn render_git(&self, out: &mut String) {
        let audit = &self.audit;
        let load = |value: &AtomicU64| value.load(Ordering::Relaxed);
        counter(
            out,
            "allman_git_commits_total",
            "git audit commits",
            load(&audit.commits),
        );
        let help = "failed git audit commits (retried)";
        counter(
            out,
            "allman_git_failures_total",
            help,
            load(&audit.failures),
        );
        let pending = load(&audit.pending) + audit.feed.in_flight.load(Ordering::Relaxed) as u64;
        let help = "agent profiles not committed yet";
        gauge(out, "allman_git_pending_events", help, pending);
        let help = "profile text on its way to the git writer, held or in flight (bounded by --audit-queue-bytes)";
        let bytes = audit.feed.pending_bytes.load(Ordering::Relaxed) as u64;
        gauge(out, "allman_git_pending_bytes", help, bytes);
    }

    fn render_layout(&self, out: &mut String) {
        let name = "allman_core_layout";
        let help = "the core each shard and helper thread is pinned to (value: the core)";
        header(out, name, "gauge", help);
        for (shard, core) in self.layout.shard_cores.iter().enumerate() {
            let _ = writeln!(out, "{name}{{role=\"shard\",shard=\"{shard}\"}} {core}");
        }
        let layout = &self.layout;
        let _ = writeln!(out, "{name}{{role=\"index\"}} {}", layout.index_core);
        let _ = writeln!(out, "{name}{{role=\"git\"}} {}", layout.git_core);
        let name = "allman_thread_cpu_seconds_total";
        let help = "CPU time (user + system) of this process's threads by class, from /proc; \
                    threads that have exited (Tantivy's per-commit indexing workers) count as index";
        header(out, name, "counter", help);
        for (class, seconds) in thread_cpu_seconds() {
            let _ = writeln!(out, "{name}{{class=\"{class}\"}} {seconds:.2}");
        }
        let help = "resident set size of the process, from /proc/self/statm";
        gauge(out, "allman_resident_memory_bytes", help, resident_bytes());
    }

    /// One series per shard for each of `rows` (name, help, field), all of type `kind`.
    fn per_shard_series(&self, out: &mut String, kind: &str, rows: &[(&str, &str, ShardField)]) {
        for (name, help, field) in rows {
            header(out, name, kind, help);
            self.per_shard(out, name, |s| field(s).load(Ordering::Relaxed));
        }
    }

    fn per_shard(&self, out: &mut String, name: &str, value: impl Fn(&ShardMetrics) -> u64) {
        for (shard, metrics) in self.shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", value(metrics));
        }
    }
}

/// The classes of [`thread_cpu_seconds`], in the order it reports them.
pub const THREAD_CLASSES: [&str; 6] = ["shard", "index", "merge", "query", "git", "other"];

/// Most threads a scrape reads; allman runs a few dozen, so this only bounds a runaway.
const MAX_THREADS_SCANNED: usize = 4096;

/// The class of a thread, by the name allman or Tantivy gives it.
fn thread_class(name: &str) -> usize {
    let class = if name.starts_with("allman-shard") {
        "shard"
    } else if name.starts_with("merge_thread") {
        "merge"
    } else if name.starts_with("allman-index")
        || name.starts_with("thrd-tantivy")
        || name.starts_with("docstore")
        || name.starts_with("segment_updater")
    {
        "index"
    } else if name.starts_with("allman-query") {
        "query"
    } else if name.starts_with("allman-git") {
        "git"
    } else {
        "other"
    };
    THREAD_CLASSES.iter().position(|c| *c == class).unwrap_or(5)
}

/// User plus system CPU seconds of this process by thread class. Read from procfs (kernel
/// memory, no disk), one small file per thread. Threads that have exited are in the process
/// total but no longer listed; in allman those are Tantivy's indexing workers (restarted at
/// each commit), so the difference counts as `index`.
pub fn thread_cpu_seconds() -> [(&'static str, f64); THREAD_CLASSES.len()] {
    let mut ticks = [0u64; THREAD_CLASSES.len()];
    let mut listed = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten().take(MAX_THREADS_SCANNED) {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            if let Some((name, used)) = parse_task_stat(&stat) {
                ticks[thread_class(name)] += used;
                listed += used;
            }
        }
    }
    let total = process_cpu_ticks().unwrap_or(listed);
    ticks[1] += total.saturating_sub(listed);
    let per_second = clock_ticks_per_second();
    let mut out = [("", 0.0); THREAD_CLASSES.len()];
    for (slot, (class, used)) in out.iter_mut().zip(THREAD_CLASSES.iter().zip(ticks)) {
        *slot = (class, used as f64 / per_second);
    }
    out
}

/// The process's resident set size in bytes (0 where procfs is unreadable).
pub fn resident_bytes() -> u64 {
    let pages: u64 = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_ascii_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf only reads a configuration value.
    let page_bytes = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    pages * page_bytes
}

/// User plus system CPU seconds of this whole process, exited threads included (0 where
/// procfs is unreadable). The load tools in `bench/` read their own with it.
pub fn process_cpu_seconds() -> f64 {
    process_cpu_ticks().unwrap_or(0) as f64 / clock_ticks_per_second()
}

fn process_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_task_stat(&stat).map(|(_, used)| used)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// A `/proc/.../stat` line's name (between the parentheses; it may hold spaces) and its
/// user plus system time in clock ticks (fields 14 and 15).
fn parse_task_stat(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    let mut fields = stat.get(close + 1..)?.split_ascii_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th and stime the 13th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((name, utime + stime))
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
        metrics.shards[0].rpc_method("resources/list");
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
    fn task_stat_lines_parse_even_with_odd_names() {
        let line = "4242 (merge_thread) 0) S 1 2 3 4 5 6 7 8 9 10 31 7 0 0 20 0 1";
        assert_eq!(parse_task_stat(line), Some(("merge_thread) 0", 38)));
        assert_eq!(parse_task_stat("4242 (x"), None);
        assert_eq!(parse_task_stat("4242 (x) S 1 2"), None);
        assert_eq!(THREAD_CLASSES[thread_class("allman-shard-3")], "shard");
        assert_eq!(THREAD_CLASSES[thread_class("thrd-tantivy-in")], "index");
        assert_eq!(THREAD_CLASSES[thread_class("merge_thread_0")], "merge");
        assert_eq!(THREAD_CLASSES[thread_class("allman-git")], "git");
        assert_eq!(THREAD_CLASSES[thread_class("tokio-whatever")], "other");
    }

    #[test]
    fn the_layout_and_this_process_s_cpu_time_are_exported() {
        let layout = CoreLayout {
            shard_cores: vec![0, 2],
            index_core: 3,
            git_core: 3,
        };
        let metrics = Metrics::new(2, Arc::default(), Arc::default()).with_layout(layout);
        let spin_until = std::time::Instant::now() + std::time::Duration::from_millis(30);
        while std::time::Instant::now() < spin_until {
            std::hint::spin_loop();
        }
        let text = metrics.render();
        assert!(text.contains("allman_core_layout{role=\"shard\",shard=\"1\"} 2\n"));
        assert!(text.contains("allman_core_layout{role=\"index\"} 3\n"));
        assert!(
            resident_bytes() > 1024 * 1024,
            "a test process holds more than 1 MiB"
        );
        let total: f64 = thread_cpu_seconds().iter().map(|(_, s)| s).sum();
        assert!(total > 0.0, "this test spun for 30 ms of CPU");
        assert!(text.contains("allman_thread_cpu_seconds_total{class=\"shard\"}"));
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
