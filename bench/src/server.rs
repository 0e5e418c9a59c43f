//! Where the cycles went: the server's core layout and its CPU time per thread class (read
//! from its `/metrics`, which reads `/proc`), and this load client's own CPU time, so a
//! result shows whether the server, its helpers or the client ran out of CPU.

use crate::http::{Connection, Url};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One scrape of the server, plus the client's CPU time at that moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// `role` (and shard) → core, e.g. `shard 0` → 0, `index` → 1.
    pub layout: BTreeMap<String, u64>,
    /// Thread class → CPU seconds since the server started.
    pub server_cpu_s: BTreeMap<String, f64>,
    /// The server's resident set size, when it exports it.
    pub server_rss_bytes: Option<u64>,
    pub client_cpu_s: f64,
}

impl Snapshot {
    /// Scrapes `/metrics`; an unreachable server or one without the metrics gives an empty
    /// view (the benchmark still runs against older servers).
    pub fn take(url: &Url) -> Snapshot {
        let text = Connection::get(url, "/metrics")
            .ok()
            .filter(|response| response.status == 200)
            .map(|response| String::from_utf8_lossy(&response.body).into_owned())
            .unwrap_or_default();
        let mut snapshot = parse_metrics(&text);
        snapshot.client_cpu_s = allman::metrics::process_cpu_seconds();
        snapshot
    }

    /// `shards on [0, 1], index on 2, git on 2`.
    pub fn describe_layout(&self) -> String {
        if self.layout.is_empty() {
            return "unknown (the server exports no allman_core_layout)".into();
        }
        let shards: Vec<String> = self
            .layout
            .iter()
            .filter(|(role, _)| role.starts_with("shard"))
            .map(|(_, core)| core.to_string())
            .collect();
        let core = |role: &str| {
            self.layout
                .get(role)
                .map_or("?".to_string(), |c| c.to_string())
        };
        format!(
            "{} shard(s) on cores [{}], index on {}, git on {}",
            shards.len(),
            shards.join(", "),
            core("index"),
            core("git")
        )
    }

    /// CPU seconds spent between `self` (before) and `after`, per server thread class and
    /// for the client.
    pub fn cpu_between(&self, after: &Snapshot) -> CpuSplit {
        let server = after
            .server_cpu_s
            .iter()
            .map(|(class, seconds)| {
                let before = self.server_cpu_s.get(class).copied().unwrap_or(0.0);
                (class.clone(), (seconds - before).max(0.0))
            })
            .collect();
        CpuSplit {
            server,
            client: (after.client_cpu_s - self.client_cpu_s).max(0.0),
        }
    }
}

/// CPU seconds per server thread class, and the client's, over some interval.
#[derive(Debug, Clone, Default)]
pub struct CpuSplit {
    pub server: BTreeMap<String, f64>,
    pub client: f64,
}

impl CpuSplit {
    /// `server 3.41 s (shard 2.10, index 0.80, merge 0.45, ...), client 4.02 s`.
    pub fn describe(&self) -> String {
        if self.server.is_empty() {
            return format!("client {:.2} s (server CPU unknown)", self.client);
        }
        let total: f64 = self.server.values().sum();
        let classes: Vec<String> = self
            .server
            .iter()
            .map(|(class, seconds)| format!("{class} {seconds:.2}"))
            .collect();
        format!(
            "server {total:.2} s ({}), client {:.2} s",
            classes.join(", "),
            self.client
        )
    }

    pub fn to_json(&self) -> Value {
        json!({"server_s": self.server, "client_s": self.client})
    }
}

/// The layout and thread-CPU samples of a `/metrics` text.
fn parse_metrics(text: &str) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let label = |name: &str| -> Option<&str> {
            let start = series.find(&format!("{name}=\""))? + name.len() + 2;
            let end = series[start..].find('"')? + start;
            Some(&series[start..end])
        };
        if series.starts_with("allman_core_layout{") {
            let (Some(role), Ok(core)) = (label("role"), value.parse::<u64>()) else {
                continue;
            };
            let key = match label("shard") {
                Some(shard) => format!("shard {shard:>4}"),
                None => role.to_string(),
            };
            snapshot.layout.insert(key, core);
        } else if series == "allman_resident_memory_bytes" {
            snapshot.server_rss_bytes = value.parse().ok();
        } else if series.starts_with("allman_thread_cpu_seconds_total{") {
            if let (Some(class), Ok(seconds)) = (label("class"), value.parse::<f64>()) {
                snapshot.server_cpu_s.insert(class.to_string(), seconds);
            }
        }
    }
    snapshot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_cpu_are_read_from_metrics_text() {
        let before = parse_metrics(
            "# HELP x\nallman_core_layout{role=\"shard\",shard=\"0\"} 0\n\
             allman_core_layout{role=\"shard\",shard=\"1\"} 2\nallman_core_layout{role=\"index\"} 3\n\
             allman_core_layout{role=\"git\"} 3\nallman_thread_cpu_seconds_total{class=\"shard\"} 1.50\n\
             allman_thread_cpu_seconds_total{class=\"merge\"} 0.25\nallman_other 7\n\
             allman_resident_memory_bytes 1048576\n",
        );
        assert_eq!(before.server_rss_bytes, Some(1 << 20));
        assert_eq!(
            before.describe_layout(),
            "2 shard(s) on cores [0, 2], index on 3, git on 3"
        );
        let mut after = before.clone();
        after.server_cpu_s.insert("shard".into(), 4.0);
        after.client_cpu_s = 2.0;
        let split = before.cpu_between(&after);
        assert_eq!(split.server["shard"], 2.5);
        assert_eq!(split.server["merge"], 0.0);
        assert_eq!(split.client, 2.0);
        assert!(split
            .describe()
            .starts_with("server 2.50 s (merge 0.00, shard 2.50)"));
    }

    #[test]
    fn a_server_without_the_metrics_reads_as_unknown() {
        let empty = parse_metrics("");
        assert!(empty.describe_layout().starts_with("unknown"));
        assert!(empty.cpu_between(&empty).describe().contains("unknown"));
    }
}
