//! Durability on the real binary: kill -9 under load and restart on the same data directory,
//! a restart with another shard count, the data-directory lock, torn and garbled logs, the
//! O_DIRECT path, and compaction.

mod common;

use common::mail::{fetch, id_of, ids, send, seqs, trio};
use common::{metric, wait_with_deadline, Server};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const AGENTS: [&str; 8] = ["Ada", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal"];

/// What the load threads saw acknowledged before the crash.
#[derive(Default)]
struct Acked {
    /// subject -> recipients, for sends that were answered.
    sends: BTreeMap<String, BTreeSet<String>>,
    /// (agent, subject) drained before the crash, from answered drains.
    drained: Vec<(String, String)>,
    registered: BTreeSet<String>,
    /// Drains in flight per agent when the server died: their messages may be gone without
    /// anyone having seen them. Counted, not a set: two threads may drain one agent at
    /// once, and the first to finish must not forget the other.
    drain_in_flight: BTreeMap<String, usize>,
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// One load thread: sends (to one or several owners), drains and registrations, recording
/// every answered one, until the server dies or `stop` is set.
fn load(
    server_addr: std::net::SocketAddr,
    thread: usize,
    acked: Arc<Mutex<Acked>>,
    stop: Arc<AtomicBool>,
) {
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut client = common::Client::connect(server_addr);
        let mut rng = Rng(0x9e37_79b9 + thread as u64);
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            match rng.below(10) {
                0 => {
                    let name = format!("New{thread}x{n}");
                    client.create_agent("crash", &name);
                    acked.lock().unwrap().registered.insert(name);
                }
                1..=6 => {
                    let to: BTreeSet<&str> = (0..1 + rng.below(3))
                        .map(|_| AGENTS[rng.below(AGENTS.len())])
                        .collect();
                    let to: Vec<&str> = to.into_iter().collect();
                    let subject = format!("m{thread}x{n}");
                    client.send(AGENTS[thread], &to, &subject, "body");
                    acked
                        .lock()
                        .unwrap()
                        .sends
                        .insert(subject, to.iter().map(|s| s.to_string()).collect());
                }
                _ => {
                    let agent = AGENTS[rng.below(AGENTS.len())];
                    *acked
                        .lock()
                        .unwrap()
                        .drain_in_flight
                        .entry(agent.to_string())
                        .or_default() += 1;
                    let messages = client.inbox(agent);
                    let mut acked = acked.lock().unwrap();
                    if let Some(count) = acked.drain_in_flight.get_mut(agent) {
                        *count -= 1;
                        if *count == 0 {
                            acked.drain_in_flight.remove(agent);
                        }
                    }
                    for message in messages {
                        let subject = message["subject"].as_str().unwrap_or_default();
                        acked.drained.push((agent.to_string(), subject.to_string()));
                    }
                }
            }
        }
    }));
    // A call cut short by the kill panics inside; that is the point of the test.
    let _ = run;
}

/// Runs the load for `run_for`, kills the server with SIGKILL, restarts it on the same data
/// directory and checks every acknowledged send is delivered exactly once across the crash.
/// Returns (acknowledged sends, messages seen twice, acknowledged sends lost).
fn crash_once(mode: &str, run_for: Duration) -> (usize, usize, usize) {
    let mut server = Server::start_with(&["--shards", "2", "--durability", mode]);
    {
        let mut client = server.client();
        for agent in AGENTS {
            client.create_agent("crash", agent);
        }
    }
    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let (acked, stop, addr) = (Arc::clone(&acked), Arc::clone(&stop), server.addr);
            std::thread::spawn(move || load(addr, thread, acked, stop))
        })
        .collect();
    std::thread::sleep(run_for);
    server.signal(libc::SIGKILL);
    let mut child = server.take_child();
    wait_with_deadline(&mut child, Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    let acked = Arc::try_unwrap(acked)
        .ok()
        .expect("threads done")
        .into_inner()
        .unwrap();

    let restarted = Server::start_in(&server.dir, &["--shards", "2", "--durability", mode]);
    let mut client = restarted.client();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (agent, subject) in &acked.drained {
        *seen.entry((agent.clone(), subject.clone())).or_default() += 1;
    }
    for agent in AGENTS {
        loop {
            let messages = client.inbox(agent);
            if messages.is_empty() {
                break;
            }
            for message in messages {
                let subject = message["subject"].as_str().unwrap_or_default().to_string();
                *seen.entry((agent.to_string(), subject)).or_default() += 1;
            }
        }
    }
    let duplicated = seen.values().filter(|count| **count > 1).count();
    let mut lost = 0;
    for (subject, recipients) in &acked.sends {
        for recipient in recipients {
            let key = (recipient.clone(), subject.clone());
            if !seen.contains_key(&key) && !acked.drain_in_flight.contains_key(recipient) {
                lost += 1;
            }
        }
    }
    for name in &acked.registered {
        // A registered agent exists: draining it is not an unknown-agent error.
        client.inbox(name);
    }
    // Recovered mail is searchable: the last acknowledged send, by its subject.
    if let Some((subject, _)) = acked.sends.iter().next_back() {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let hits = client.call_ok(
                "search_messages",
                json!({"query": format!("subject:{subject}"), "limit": 5}),
            );
            if hits.as_array().is_some_and(|h| !h.is_empty()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{subject} not searchable after the crash"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    eprintln!(
        "{mode} after {run_for:?}: {} sends acknowledged, {} drained before, {lost} lost, {duplicated} duplicated",
        acked.sends.len(),
        acked.drained.len()
    );
    (acked.sends.len(), duplicated, lost)
}

#[test]
fn kill_9_under_load_loses_and_duplicates_nothing_acknowledged() {
    let mut total = 0;
    for (mode, run_ms) in [
        ("batch", 300),
        ("batch", 900),
        ("fsync", 300),
        ("fsync", 700),
    ] {
        let (sends, duplicated, lost) = crash_once(mode, Duration::from_millis(run_ms));
        assert_eq!(duplicated, 0, "{mode}: messages delivered twice");
        assert_eq!(lost, 0, "{mode}: acknowledged sends lost");
        total += sends;
    }
    assert!(
        total > 0,
        "the load acknowledged nothing: the test tested nothing"
    );
}

#[test]
fn a_restart_with_another_shard_count_keeps_every_agent_and_message() {
    let mut server = Server::start_with(&["--shards", "2"]);
    let mut client = server.client();
    for agent in AGENTS {
        client.create_agent("reshard", agent);
    }
    for (n, agent) in AGENTS.iter().enumerate() {
        let other = AGENTS[(n + 3) % AGENTS.len()];
        client.send(agent, &[other, agent], &format!("r{n}"), "b");
    }
    assert!(server.terminate().success());
    // Each `Server` removes the directory when dropped: keep them until the end.
    let mut stopped = Vec::new();
    for shards in ["3", "1"] {
        let mut restarted = Server::start_in(&server.dir, &["--shards", shards]);
        assert!(
            restarted.wait_for_log("the shard count changed", Duration::from_secs(5)),
            "the restart with {shards} shards moved the agents"
        );
        if shards == "1" {
            let mut client = restarted.client();
            let mut subjects = BTreeSet::new();
            for agent in AGENTS {
                for message in client.inbox(agent) {
                    subjects.insert((
                        agent,
                        message["subject"].as_str().unwrap_or_default().to_string(),
                    ));
                }
            }
            assert_eq!(subjects.len(), 2 * AGENTS.len(), "{subjects:?}");
            // Registrations moved too: same name, same project, same id.
            let again = client.create_agent("reshard", "Ada");
            assert_eq!(again["name"], "Ada");
        }
        assert!(restarted.terminate().success());
        stopped.push(restarted);
    }
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused_and_the_first_keeps_serving() {
    let first = Server::start();
    let data = first.dir.join("data");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_allman"))
        .args(["--port", "0", "--shards", "1"])
        .env("DATA_DIR", &data)
        .env("INDEX_PATH", first.dir.join("other-index"))
        .env("REPO_ROOT", first.dir.join("other-repo"))
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("in use by another running allman"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&data.display().to_string()),
        "names the directory: {stderr}"
    );
    let mut client = first.client();
    client.create_agent("p", "Still");
    client.send("Still", &["Still"], "here", "");
    assert_eq!(client.inbox("Still").len(), 1);
}

/// The segment files of shard 0 (one shard), oldest first.
fn segments(data: &Path) -> Vec<PathBuf> {
    let log = data.join("log");
    let generation = std::fs::read_dir(&log)
        .expect("log dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("a generation");
    let mut files: Vec<PathBuf> = std::fs::read_dir(generation.join("shard-0"))
        .expect("shard dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

/// Where the records of a segment end (the last non-zero byte, rounded up to 512).
fn data_end(bytes: &[u8]) -> usize {
    let last = bytes.iter().rposition(|b| *b != 0).unwrap_or(0);
    (last / 512 + 1) * 512
}

fn seeded_stopped_server(messages: usize) -> Server {
    let mut server = Server::start_with(&["--shards", "1"]);
    let mut client = server.client();
    client.create_agent("p", "Keeper");
    for n in 0..messages {
        client.send("Keeper", &["Keeper"], &format!("k{n}"), "body");
    }
    assert!(server.terminate().success());
    server
}

#[test]
fn a_torn_last_write_is_cut_and_reported_and_nothing_acknowledged_is_lost() {
    let server = seeded_stopped_server(20);
    let last = segments(&server.dir.join("data")).pop().expect("a segment");
    let mut bytes = std::fs::read(&last).expect("read");
    let end = data_end(&bytes);
    // A record whose frame promises 64 bytes, of which only a few made it to disk.
    let torn = [64u8, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 2, 7, 7];
    if bytes.len() < end + 512 {
        bytes.resize(end + 512, 0);
    }
    bytes[end..end + torn.len()].copy_from_slice(&torn);
    std::fs::write(&last, &bytes).expect("write");
    let restarted = Server::start_in(&server.dir, &["--shards", "1"]);
    assert!(
        restarted.wait_for_log("cut a torn write", Duration::from_secs(5)),
        "the cut is reported"
    );
    assert_eq!(restarted.client().inbox("Keeper").len(), 20);
}

#[test]
fn a_garbled_record_in_the_middle_refuses_to_start_naming_file_and_offset() {
    let server = seeded_stopped_server(20);
    let first = segments(&server.dir.join("data")).remove(0);
    let mut bytes = std::fs::read(&first).expect("read");
    // Inside the first record after the 4 KiB header: valid records follow it.
    bytes[4096 + 12] ^= 0x55;
    std::fs::write(&first, &bytes).expect("write");
    // Spawned with a deadline: a build that took the damage for a torn tail would serve on.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_allman"))
        .args(["--port", "0", "--shards", "1"])
        .env("DATA_DIR", server.dir.join("data"))
        .env("INDEX_PATH", server.dir.join("index"))
        .env("REPO_ROOT", server.dir.join("repo"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    let status = wait_with_deadline(&mut child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut stderr)
        .expect("reads stderr");
    assert!(stderr.contains(&first.display().to_string()), "{stderr}");
    assert!(stderr.contains("byte offset 4096"), "{stderr}");
    assert!(stderr.contains("refusing to start"), "{stderr}");
}

fn is_tmpfs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    // SAFETY: statfs into a zeroed struct we own.
    unsafe {
        let mut stat: libc::statfs = std::mem::zeroed();
        libc::statfs(c_path.as_ptr(), &mut stat) == 0 && stat.f_type == libc::TMPFS_MAGIC
    }
}

/// A directory off tmpfs (where O_DIRECT does not exist): the temporary directory, else the
/// build's own (under `target/`).
fn off_tmpfs() -> Option<PathBuf> {
    [
        std::env::temp_dir(),
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
    ]
    .into_iter()
    .find(|dir| !is_tmpfs(dir))
}

#[test]
fn fsync_mode_on_a_real_filesystem_writes_around_the_page_cache() {
    let Some(root) = off_tmpfs() else {
        // In CI a missing filesystem is a failure, never a silent pass.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: no directory off tmpfs to test O_DIRECT in"
        );
        eprintln!("skipped: every candidate directory is tmpfs, where O_DIRECT does not exist");
        return;
    };
    let dir = root.join(format!("allman-direct-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test directory");
    let mut server = Server::start_in(&dir, &["--shards", "1", "--durability", "fsync"]);
    let mut client = server.client();
    client.create_agent("p", "Direct");
    client.send("Direct", &["Direct"], "d", "");
    let text = client.get("/metrics").text();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut direct = metric(&text, "allman_log_direct_io{shard=\"0\"}");
    while direct != Some(1.0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        direct = metric(
            &client.get("/metrics").text(),
            "allman_log_direct_io{shard=\"0\"}",
        );
    }
    assert_eq!(direct, Some(1.0), "the log is opened with O_DIRECT");
    assert!(server.terminate().success());
    let restarted = Server::start_in(&server.dir, &["--shards", "1", "--durability", "fsync"]);
    assert_eq!(restarted.client().inbox("Direct").len(), 1);
}

fn log_dir_bytes(data: &Path) -> u64 {
    fn walk(path: &Path) -> u64 {
        std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| {
                        let path = e.path();
                        if path.is_dir() {
                            walk(&path)
                        } else {
                            e.metadata().map(|m| m.len()).unwrap_or(0)
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&data.join("log"))
}

#[test]
fn compaction_keeps_a_long_run_within_its_bound_and_recovers_after() {
    // Live state is the inbox plus the retained history; a small history keeps it small.
    let mut server = Server::start_with(&[
        "--shards",
        "1",
        "--log-compact-bytes",
        "1048576",
        "--max-retained-bytes",
        "262144",
    ]);
    let mut client = server.client();
    client.create_agent("p", "Churn");
    let body = "x".repeat(2000);
    // About 24 MB through the log, with the inbox drained as it goes: live state stays small.
    for round in 0..60 {
        for n in 0..200 {
            client.send("Churn", &["Churn"], &format!("c{round}x{n}"), &body);
        }
        if round < 59 {
            assert_eq!(client.inbox("Churn").len(), 200);
        }
    }
    let data = server.dir.join("data");
    let deadline = Instant::now() + Duration::from_secs(20);
    // Segments are a quarter of the threshold (1 MiB at least); the log keeps at most the
    // segments since the last snapshot plus the one being written, and one snapshot.
    let bound = 6 * 1024 * 1024;
    loop {
        let snapshots = metric(
            &client.get("/metrics").text(),
            "allman_log_snapshots_total{shard=\"0\"}",
        )
        .unwrap_or(0.0);
        let bytes = log_dir_bytes(&data);
        if snapshots >= 1.0 && bytes <= bound {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "log not compacted: {snapshots} snapshots, {bytes} bytes on disk"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(server.terminate().success());
    let restarted = Server::start_in(
        &server.dir,
        &["--shards", "1", "--max-retained-bytes", "262144"],
    );
    let messages = restarted.client().inbox("Churn");
    assert_eq!(
        messages.len(),
        200,
        "the last round survives compaction and restart"
    );
    assert_eq!(messages[0]["subject"], "c59x0");
}

#[test]
fn deliveries_read_and_ack_state_and_threads_survive_kill_9() {
    let mut server = Server::start();
    let mut client = server.client();
    let (a, b, c) = trio(&mut client, "Crash");
    let opener = id_of(&send(
        &mut client,
        json!({"from_agent": a, "to": [b], "cc": [c], "subject": "s", "ack_required": true, "thread_id": "crash-1"}),
    ));
    let reply = id_of(&client.call_ok(
        "reply_message",
        json!({"from_agent": b, "message_id": opener, "body": "r"}),
    ));
    client.call_ok(
        "acknowledge_message",
        json!({"agent_name": b, "message_ids": [opener]}),
    );
    client.inbox(&c);
    let before: Vec<Value> = [&a, &b, &c]
        .iter()
        .map(|n| fetch(&mut client, n, json!({})))
        .collect();
    let thread_before = client.call_ok(
        "get_thread",
        json!({"agent_name": a, "thread_id": "crash-1"}),
    );
    assert_eq!(ids(&thread_before), vec![opener.clone(), reply.clone()]);

    server.signal(libc::SIGKILL);
    let _ = server.take_child().wait();
    let restarted = Server::start_in(&server.dir, &["--shards", "2"]);
    let mut client = restarted.client();
    for (name, page) in [&a, &b, &c].iter().zip(&before) {
        let after = fetch(&mut client, name, json!({}));
        assert_eq!(after["messages"], page["messages"], "{name}");
        assert_eq!(after["counts"], page["counts"], "{name}");
    }
    let thread_after = client.call_ok(
        "get_thread",
        json!({"agent_name": a, "thread_id": "crash-1"}),
    );
    assert_eq!(thread_after["messages"], thread_before["messages"]);
    // Sequence numbers continue, never reused.
    client.send(&a, &[&c], "after", "");
    assert_eq!(seqs(&fetch(&mut client, &c, json!({"after": 1}))), vec![2]);
}

#[test]
fn a_second_server_on_the_same_index_or_repository_elsewhere_is_refused() {
    let first = Server::start();
    let mut client = first.client();
    client.create_agent("p", "Held");
    for (shared, variable) in [("index", "INDEX_PATH"), ("repo", "REPO_ROOT")] {
        let other = |name: &str| first.dir.join(format!("other-{name}"));
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_allman"));
        command
            .args(["--port", "0", "--shards", "1"])
            .env("DATA_DIR", other("data"))
            .env("INDEX_PATH", other("index"))
            .env("REPO_ROOT", other("repo"))
            .env(variable, first.dir.join(shared))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        // A server that is not refused runs on: waited for with a deadline.
        let mut child = command.spawn().expect("run");
        let status = wait_with_deadline(&mut child, Duration::from_secs(20));
        assert!(!status.success(), "{variable}");
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
            .expect("reads stderr");
        assert!(
            stderr.contains("in use by another running allman")
                && stderr.contains(&format!("its own {variable}")),
            "{variable}: {stderr}"
        );
    }
    // The first server's index and trail are untouched and it keeps serving.
    client.send("Held", &["Held"], "still", "heldword");
    assert_eq!(client.inbox("Held").len(), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while client
        .call_ok("search_messages", serde_json::json!({"query": "heldword"}))
        .as_array()
        .is_none_or(|hits| hits.is_empty())
    {
        assert!(std::time::Instant::now() < deadline, "search still works");
        std::thread::sleep(Duration::from_millis(50));
    }
}
