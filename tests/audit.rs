//! The git audit trail: profiles committed with gix, inspected here with stock git.

mod common;

use common::{Client, Server};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn git(repo: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(args)
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf8")
}

fn commit_count(repo: &Path) -> usize {
    git(repo, &["rev-list", "--count", "HEAD"])
        .trim()
        .parse()
        .expect("count")
}

fn project_id(key: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_DNS, key.as_bytes()).to_string()
}

#[test]
fn profiles_are_committed_as_pretty_json_and_the_repository_is_clean() {
    let mut server = Server::start();
    let repo = server.dir.join("repo");
    let mut client = server.client();
    let started = std::time::Instant::now();
    let first = client.call_ok(
        "create_agent",
        json!({"project_key": "audit-proj", "name_hint": "Auditor", "program": "cc", "model": "m1"}),
    );
    client.create_agent("audit-proj", "Witness");
    // An idempotent re-register that changes the model is an update.
    client.call_ok(
        "create_agent",
        json!({"project_key": "audit-proj", "name_hint": "Auditor", "model": "m2"}),
    );
    // The writer commits 200 ms after the first event of a batch.
    let in_one_window = started.elapsed() < std::time::Duration::from_millis(150);
    assert!(server.terminate().success());

    let path = format!("HEAD:agents/{}/Auditor.json", project_id("audit-proj"));
    let text = git(&repo, &["show", &path]);
    assert!(text.contains("\n  \""), "pretty-printed: {text}");
    let profile: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(profile["id"], first["id"]);
    assert_eq!(profile["name"], "Auditor");
    assert_eq!(profile["project_id"], project_id("audit-proj"));
    assert_eq!(profile["project_key"], "audit-proj");
    assert_eq!(profile["program"], "cc");
    assert_eq!(profile["model"], "m2", "the update is what HEAD holds");
    assert!(profile["created"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert!(profile["updated"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));

    let files = git(&repo, &["ls-tree", "-r", "--name-only", "HEAD"]);
    assert_eq!(files.lines().count(), 2, "{files}");
    let log = git(&repo, &["log", "--format=%an <%ae>%n%B"]);
    assert!(log.contains("allman <allman@localhost>"), "{log}");
    assert!(log.contains("Auditor") && log.contains("Witness"), "{log}");
    if in_one_window {
        assert_eq!(
            commit_count(&repo),
            1,
            "three events inside one batch window share one commit"
        );
    }
    git(&repo, &["fsck", "--strict"]);
    assert_eq!(
        git(&repo, &["rev-parse", "--is-bare-repository"]).trim(),
        "true"
    );
}

#[test]
fn a_restart_keeps_history_and_appends() {
    let mut server = Server::start();
    let repo = server.dir.join("repo");
    server.client().create_agent("p", "Early");
    assert!(server.terminate().success());
    let before = commit_count(&repo);
    assert!(before >= 1);

    let mut restarted = Server::start_in(&server.dir, &["--shards", "2"]);
    restarted.client().create_agent("p", "Late");
    assert!(restarted.terminate().success());
    assert_eq!(
        commit_count(&repo),
        before + 1,
        "new commits append to the old history"
    );
    let files = git(&repo, &["ls-tree", "-r", "--name-only", "HEAD"]);
    assert!(
        files.contains("Early.json") && files.contains("Late.json"),
        "{files}"
    );
    git(&repo, &["fsck", "--strict"]);
}

#[test]
fn a_burst_of_two_thousand_registrations_makes_few_commits() {
    const AGENTS: usize = 2000;
    let mut server = Server::start();
    let repo = server.dir.join("repo");
    let addr = server.addr;
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                for n in (worker..AGENTS).step_by(8) {
                    client.create_agent("burst", &format!("Burst{n}"));
                }
            })
        })
        .collect();
    let started = Instant::now();
    for worker in workers {
        worker.join().expect("worker");
    }
    // The commits happen in the background; shutdown flushes whatever is still pending.
    assert!(server.terminate().success());
    let elapsed = started.elapsed();
    let files = git(&repo, &["ls-tree", "-r", "--name-only", "HEAD"]);
    assert_eq!(files.lines().count(), AGENTS);
    let commits = commit_count(&repo);
    assert!(
        commits <= 50,
        "{commits} commits for {AGENTS} registrations in {elapsed:?}"
    );
    git(&repo, &["fsck", "--strict"]);
}

#[test]
fn an_unusable_repo_root_stops_start_up_with_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("allman-badrepo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("notes.txt"), "mine").expect("write");
    let index = dir.join("index");
    let output = Command::new(env!("CARGO_BIN_EXE_allman"))
        .args(["--port", "0", "--shards", "1"])
        .env("REPO_ROOT", &dir)
        .env("INDEX_PATH", &index)
        .env("DATA_DIR", dir.join("data"))
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a git repository"), "{stderr}");
    assert!(dir.join("notes.txt").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failing_commit_is_logged_retried_and_loses_nothing() {
    let mut server = Server::start();
    let repo = server.dir.join("repo");
    server.client().create_agent("p", "BeforeFault");
    // Break the object store (root ignores permissions, so replace the directory by a file).
    let objects = repo.join("objects");
    let moved = server.dir.join("objects-moved");
    std::fs::rename(&objects, &moved).expect("move objects away");
    std::fs::write(&objects, b"not a directory").expect("block objects");
    let mut client = server.client();
    client.create_agent("p", "DuringFault");
    assert!(
        server.wait_for_log("git audit commit failed", Duration::from_secs(20)),
        "the failure is logged with its reason"
    );
    // Mail keeps flowing while git is broken.
    client.send("DuringFault", &["BeforeFault"], "still", "working");
    assert_eq!(client.inbox("BeforeFault").len(), 1);
    // Repair; the pending profile is committed by the retry or at shutdown.
    std::fs::remove_file(&objects).expect("unblock");
    std::fs::rename(&moved, &objects).expect("restore objects");
    assert!(server.terminate().success());
    let files = git(&repo, &["ls-tree", "-r", "--name-only", "HEAD"]);
    assert!(files.contains("DuringFault.json"), "{files}");
    git(&repo, &["fsck", "--strict"]);
}

#[test]
fn profiles_that_cannot_be_committed_make_the_exit_status_fail() {
    let mut server = Server::start();
    let objects = server.dir.join("repo").join("objects");
    std::fs::rename(&objects, server.dir.join("objects-moved")).expect("move objects away");
    std::fs::write(&objects, b"not a directory").expect("block objects");
    server.client().create_agent("p", "NeverCommitted");
    assert!(server.wait_for_log("git audit commit failed", Duration::from_secs(20)));
    let status = server.terminate();
    assert_eq!(
        status.code(),
        Some(1),
        "a lost audit trail is not a clean exit"
    );
    assert!(server.wait_for_log("could not be committed", Duration::from_secs(5)));
}
