//! The deployment files hold what they claim: the systemd unit passes `systemd-analyze
//! verify`, keeps io_uring usable and pins the cores its flags name; every metric the Grafana
//! dashboard queries is one `/metrics` exports, with the labels it groups by.

mod common;

use common::Server;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

const UNIT: &str = include_str!("../docs/deploy/allman.service");
const DASHBOARD: &str = include_str!("../docs/deploy/grafana-dashboard.json");

/// The value of `key=` in the unit's lines (the last one wins, as in systemd).
fn unit_value(key: &str) -> Option<&'static str> {
    UNIT.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
}

/// `2-5` or `2,3,5` -> the set of cores.
fn cores(list: &str) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                out.extend(a.parse::<usize>().expect("core")..=b.parse().expect("core"))
            }
            None => {
                out.insert(part.parse().expect("core"));
            }
        }
    }
    out
}

#[test]
fn the_unit_keeps_io_uring_usable_and_pins_the_cores_its_flags_name() {
    assert_eq!(unit_value("LimitMEMLOCK"), Some("infinity"));
    assert_eq!(unit_value("Restart"), Some("on-failure"));
    assert_eq!(unit_value("StateDirectory"), Some("allman"));
    assert_eq!(unit_value("KillSignal"), Some("SIGTERM"));
    for hardening in ["NoNewPrivileges", "ProtectHome", "PrivateTmp"] {
        assert_eq!(unit_value(hardening), Some("yes"), "{hardening}");
    }
    assert_eq!(unit_value("ProtectSystem"), Some("strict"));
    assert_eq!(
        unit_value("SystemCallFilter"),
        None,
        "a filter could drop io_uring"
    );
    assert_eq!(unit_value("ExecStop"), None, "SIGTERM is the graceful stop");

    let exec = unit_value("ExecStart").expect("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/allman"));
    let affinity = cores(unit_value("CPUAffinity").expect("CPUAffinity"));
    let usable: Vec<usize> = affinity.iter().copied().collect();
    let config = allman::config::parse(words.map(String::from), |_| None, &usable)
        .expect("the unit's flags parse on the cores it pins");
    let mut used: BTreeSet<usize> = config.shard_cores.iter().copied().collect();
    used.insert(config.index_core);
    used.insert(config.git_core);
    assert_eq!(
        used, affinity,
        "CPUAffinity is exactly the cores the flags use"
    );
    for helper in [config.index_core, config.git_core] {
        assert!(
            !config.shard_cores.contains(&helper),
            "helpers have a core of their own"
        );
    }
    assert_eq!(config.data_dir, std::path::Path::new("/var/lib/allman"));
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        // In CI a missing tool is a failure, never a silent pass.
        let required = ["CI", "ALLMAN_REQUIRE_SYSTEMD_ANALYZE"]
            .iter()
            .any(|name| std::env::var_os(name).is_some());
        assert!(
            !required,
            "systemd-analyze is required here but not installed"
        );
        eprintln!("systemd-analyze is not installed: not verified");
        return;
    };
    assert!(version.status.success());
    // The unit names the installed path; verify a copy that runs this build's binary.
    let dir = std::env::temp_dir().join(format!("allman-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let unit = dir.join("allman.service");
    let text = UNIT.replace("/usr/local/bin/allman", env!("CARGO_BIN_EXE_allman"));
    std::fs::write(&unit, text).expect("write the unit");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze runs");
    let _ = std::fs::remove_dir_all(&dir);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // It exits 0 on some mistakes (a bad value is "ignored"): any output is a finding.
    assert!(output.status.success() && said.trim().is_empty(), "{said}");
}

/// Every `allman_*` name in `expr`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("allman_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

/// The labels `expr` groups by (`by (...)`) or selects on (`{name="..."}`), but `le` and the
/// scrape's own `job`/`instance`.
fn labels_used(expr: &str) -> Vec<String> {
    let grouped = expr
        .split("by (")
        .skip(1)
        .filter_map(|part| part.split(')').next())
        .flat_map(|labels| labels.split(',').map(|l| l.trim().to_string()));
    let selected = expr
        .split('{')
        .skip(1)
        .filter_map(|part| part.split('}').next())
        .flat_map(|matchers| matchers.split(','))
        .filter_map(|matcher| {
            let name: String = matcher
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        });
    grouped
        .chain(selected)
        .filter(|label| !["le", "job", "instance"].contains(&label.as_str()))
        .collect()
}

#[test]
fn every_metric_the_dashboard_queries_is_exported_with_its_labels() {
    let dashboard: serde_json::Value =
        serde_json::from_str(DASHBOARD).expect("the dashboard parses");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().expect("an expr").to_string());
        }
    }
    assert!(exprs.len() >= 20, "{} queries", exprs.len());

    let server = Server::start();
    let mut client = server.client();
    let metrics = client.get("/metrics").text();
    // Each exported series' name with the label names of its lines.
    let mut exported: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name: String = line
            .chars()
            .take_while(|c| *c != '{' && *c != ' ')
            .collect();
        let labels = exported.entry(name.clone()).or_default();
        if let Some(inside) = line[name.len()..]
            .strip_prefix('{')
            .and_then(|l| l.split('}').next())
        {
            labels.extend(
                inside
                    .split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, _)| k.to_string()),
            );
        }
    }
    let mut queried = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{expr} queries no allman metric");
        for name in &names {
            let labels = exported
                .get(name)
                .unwrap_or_else(|| panic!("{name} (in {expr}) is not exported by /metrics"));
            for label in labels_used(expr) {
                assert!(
                    labels.contains(&label),
                    "{name} has no label {label} (in {expr})"
                );
            }
            queried.insert(name.clone());
        }
    }
    // The list of panels, by the metrics behind them.
    for needed in [
        "allman_tool_calls_total",
        "allman_tool_duration_seconds_bucket",
        "allman_shard_queued_messages",
        "allman_shard_agents",
        "allman_search_commit_lag_seconds_bucket",
        "allman_search_pending_documents",
        "allman_git_pending_events",
        "allman_git_failures_total",
        "allman_open_connections",
        "allman_log_bytes_total",
        "allman_log_sync_seconds_total",
        "allman_log_batches_total",
        "allman_build_info",
    ] {
        assert!(queried.contains(needed), "no panel queries {needed}");
    }
    let version = format!("allman_build_info{{version=\"{}\"}} 1", allman::VERSION);
    assert!(metrics.contains(&version), "{version} missing");
}

#[test]
fn version_is_answered_by_both_flags() {
    for flag in ["--version", "-V"] {
        let output = Command::new(env!("CARGO_BIN_EXE_allman"))
            .arg(flag)
            .output()
            .expect("runs");
        assert!(output.status.success(), "{flag}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            format!("allman {}\n", allman::VERSION),
            "{flag}"
        );
    }
}
