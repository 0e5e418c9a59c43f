//! Result tables, JSON output and comparison with a baseline run.

use crate::client::Stats;
use crate::workers::PhaseResult;
use serde_json::{json, Value};
use std::time::Duration;

/// One row: a tool's figures within a phase.
pub fn rows(phase: &str, elapsed: Duration, stats: &Stats) -> Vec<Value> {
    stats
        .latency
        .iter()
        .map(|(tool, histogram)| {
            let seconds = elapsed.as_secs_f64().max(1e-9);
            json!({
                "phase": phase,
                "tool": tool,
                "calls": histogram.count(),
                "errors": stats.errors.get(tool).copied().unwrap_or(0),
                "throughput_per_s": (histogram.count() as f64 / seconds).round(),
                "p50_us": histogram.percentile(50.0),
                "p90_us": histogram.percentile(90.0),
                "p99_us": histogram.percentile(99.0),
                "p999_us": histogram.percentile(99.9),
                "max_us": histogram.max(),
            })
        })
        .collect()
}

pub fn phase_rows<T>(phase: &PhaseResult<T>) -> Vec<Value> {
    rows(&phase.name, phase.elapsed, &phase.stats)
}

fn ms(value: &Value) -> String {
    format!("{:.2}", value.as_u64().unwrap_or(0) as f64 / 1000.0)
}

pub fn print_table(rows: &[Value]) {
    println!(
        "{:<14} {:<16} {:>8} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "phase",
        "tool",
        "calls",
        "errors",
        "per_s",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "p999_ms",
        "max_ms"
    );
    for row in rows {
        println!(
            "{:<14} {:<16} {:>8} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
            row["phase"].as_str().unwrap_or(""),
            row["tool"].as_str().unwrap_or(""),
            row["calls"].to_string(),
            row["errors"].to_string(),
            row["throughput_per_s"].to_string(),
            ms(&row["p50_us"]),
            ms(&row["p90_us"]),
            ms(&row["p99_us"]),
            ms(&row["p999_us"]),
            ms(&row["max_us"]),
        );
    }
}

pub fn write_json(path: &str, value: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("cannot write {path}: {e}"))
}

/// Regressions of `current` against `baseline` (both `{"rows": [...]}`): a throughput drop or
/// a p99 rise beyond `threshold_pct` for the same phase and tool.
pub fn regressions(current: &Value, baseline: &Value, threshold_pct: f64) -> Vec<String> {
    let empty = Vec::new();
    let base_rows = baseline["rows"].as_array().unwrap_or(&empty);
    let mut found = Vec::new();
    for row in current["rows"].as_array().unwrap_or(&empty) {
        let Some(base) = base_rows
            .iter()
            .find(|b| b["phase"] == row["phase"] && b["tool"] == row["tool"])
        else {
            continue;
        };
        let label = format!(
            "{}/{}",
            row["phase"].as_str().unwrap_or(""),
            row["tool"].as_str().unwrap_or("")
        );
        let (now, before) = (
            row["throughput_per_s"].as_f64().unwrap_or(0.0),
            base["throughput_per_s"].as_f64().unwrap_or(0.0),
        );
        if before > 0.0 && now < before * (1.0 - threshold_pct / 100.0) {
            found.push(format!(
                "{label}: throughput {now:.0}/s vs baseline {before:.0}/s"
            ));
        }
        let (now, before) = (
            row["p99_us"].as_f64().unwrap_or(0.0),
            base["p99_us"].as_f64().unwrap_or(0.0),
        );
        if before > 0.0 && now > before * (1.0 + threshold_pct / 100.0) {
            found.push(format!(
                "{label}: p99 {now:.0} us vs baseline {before:.0} us"
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regressions_are_flagged_beyond_the_threshold_only() {
        let baseline = json!({"rows": [{"phase": "send", "tool": "send_message", "throughput_per_s": 1000.0, "p99_us": 1000}]});
        let same = json!({"rows": [{"phase": "send", "tool": "send_message", "throughput_per_s": 950.0, "p99_us": 1050}]});
        assert!(regressions(&same, &baseline, 10.0).is_empty());
        let worse = json!({"rows": [{"phase": "send", "tool": "send_message", "throughput_per_s": 800.0, "p99_us": 1500}]});
        assert_eq!(regressions(&worse, &baseline, 10.0).len(), 2);
    }
}
