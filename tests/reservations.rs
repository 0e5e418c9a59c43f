//! File reservations (issue #16) over real HTTP: grants and conflicts, release, renew,
//! checks, listing, force release, racing agents, bounds, and kill -9.

mod common;

use common::Server;
use serde_json::{json, Value};
use std::sync::{Arc, Barrier};

fn reserve(client: &mut common::Client, agent: &str, paths: &[&str], extra: Value) -> Value {
    let mut arguments = json!({"agent_name": agent, "paths": paths});
    for (key, value) in extra.as_object().expect("object") {
        arguments[key] = value.clone();
    }
    client.call_ok("file_reservation_paths", arguments)
}

fn granted_paths(result: &Value) -> Vec<String> {
    result["granted"]
        .as_array()
        .expect("granted")
        .iter()
        .map(|g| g["path"].as_str().expect("path").to_string())
        .collect()
}

fn team(client: &mut common::Client, project: &str, names: &[&str]) {
    for name in names {
        client.create_agent(project, name);
    }
}

#[test]
fn conflicting_paths_are_not_granted_and_the_result_names_the_holders() {
    let server = Server::start();
    let mut client = server.client();
    team(&mut client, "res", &["ResAda", "ResBob", "ResCy"]);
    let first = reserve(
        &mut client,
        "ResAda",
        &["src/", "port:3000"],
        json!({"reason": "refactor"}),
    );
    assert_eq!(granted_paths(&first), vec!["src", "port:3000"]);
    let lease = &first["granted"][0];
    assert!(lease["id"].as_u64().is_some() && lease["exclusive"] == true);
    assert_eq!(lease["reason"], "refactor");
    assert!(lease["expires_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));

    // Everything conflicts: still not an error, so the model reads who holds what.
    let result = client.call(
        "file_reservation_paths",
        json!({"agent_name": "ResBob", "paths": ["./src/main.rs", "src/**/*.rs", "port:3000"]}),
    );
    assert_eq!(result["isError"], false, "{result}");
    let bob = &result["structuredContent"];
    assert_eq!(bob["granted"], json!([]));
    let conflicts = bob["conflicts"].as_array().expect("conflicts");
    assert_eq!(conflicts.len(), 3);
    assert_eq!(conflicts[0]["path"], "src/main.rs", "normalised");
    let holder = &conflicts[0]["holders"][0];
    assert_eq!(
        (holder["agent"].as_str(), holder["path"].as_str()),
        (Some("ResAda"), Some("src"))
    );
    assert_eq!(holder["reason"], "refactor");

    // Partly granted; shared with shared never conflicts; another project never does.
    let mixed = reserve(
        &mut client,
        "ResBob",
        &["src/lib.rs", "docs/", "port:3001"],
        json!({}),
    );
    assert_eq!(granted_paths(&mixed), vec!["docs", "port:3001"]);
    reserve(
        &mut client,
        "ResCy",
        &["README.md"],
        json!({"exclusive": false}),
    );
    let shared = reserve(
        &mut client,
        "ResAda",
        &["README.md"],
        json!({"exclusive": false}),
    );
    assert_eq!(granted_paths(&shared), vec!["README.md"]);
    let exclusive = reserve(&mut client, "ResBob", &["*.md"], json!({}));
    assert_eq!(
        exclusive["conflicts"][0]["holders"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    client.create_agent("elsewhere", "ResOther");
    let other = reserve(&mut client, "ResOther", &["src/"], json!({}));
    assert_eq!(
        granted_paths(&other),
        vec!["src"],
        "reservations are per project"
    );
}

#[test]
fn release_renew_check_and_list() {
    let server = Server::start();
    let mut client = server.client();
    team(&mut client, "rel", &["RelAda", "RelBob"]);
    let granted = reserve(
        &mut client,
        "RelAda",
        &["src/", "docs/", "Cargo.toml"],
        json!({"ttl_seconds": 60}),
    );
    let ids: Vec<u64> = granted["granted"]
        .as_array()
        .expect("granted")
        .iter()
        .map(|g| g["id"].as_u64().expect("id"))
        .collect();

    // Someone else's lease: an error naming the holder.
    let error = client.call_err(
        "release_file_reservations",
        json!({"agent_name": "RelBob", "ids": [ids[0]]}),
    );
    assert!(error.contains("held by 'RelAda'"), "{error}");
    let error = client.call_err(
        "renew_file_reservations",
        json!({"agent_name": "RelBob", "paths": ["docs/"]}),
    );
    assert!(error.contains("held by 'RelAda'"), "{error}");

    let renewed = client.call_ok(
        "renew_file_reservations",
        json!({"agent_name": "RelAda", "ids": [ids[1]], "extend_seconds": 3600}),
    );
    let before = granted["granted"][1]["expires_at"]
        .as_str()
        .expect("time")
        .to_string();
    let after = renewed["renewed"][0]["expires_at"]
        .as_str()
        .expect("time")
        .to_string();
    assert!(after > before, "{before} -> {after}");

    let check = client.call_ok(
        "check_file_reservation_conflicts",
        json!({"agent_name": "RelBob", "paths": ["src/a.rs", "tests/x.rs", "Cargo.toml"]}),
    );
    assert_eq!(check["conflicts"].as_array().map(Vec::len), Some(2));
    assert_eq!(check["clear"], json!(["tests/x.rs"]));
    let own = client.call_ok(
        "check_file_reservation_conflicts",
        json!({"agent_name": "RelAda", "paths": ["src/a.rs"]}),
    );
    assert_eq!(own["own"][0]["ids"], json!([ids[0]]));
    assert_eq!(own["conflicts"], json!([]));

    let released = client.call_ok(
        "release_file_reservations",
        json!({"agent_name": "RelAda", "paths": ["Cargo.toml"]}),
    );
    assert_eq!(released["released"][0]["id"], ids[2]);
    let listed = client.call_ok("list_file_reservations", json!({"project_key": "rel"}));
    assert_eq!(
        listed["reservations"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    let all = client.call_ok(
        "list_file_reservations",
        json!({"project_key": "rel", "include_inactive": true, "agent_name": "RelAda"}),
    );
    let inactive: Vec<&Value> = all["reservations"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|r| r["active"] == false)
        .collect();
    assert_eq!(inactive.len(), 1);
    assert!(inactive[0]["released_at"].is_string());
    let rest = client.call_ok("release_file_reservations", json!({"agent_name": "RelAda"}));
    assert_eq!(
        rest["released"].as_array().map(Vec::len),
        Some(2),
        "all of them without a filter"
    );
    let error = client.call_err(
        "release_file_reservations",
        json!({"agent_name": "RelAda", "ids": [999]}),
    );
    assert!(
        error.contains("no active reservation with id 999"),
        "{error}"
    );
    let error = client.call_err("release_file_reservations", json!({"agent_name": "Nobody"}));
    assert!(error.contains("unknown agent"), "{error}");
}

#[test]
fn force_release_needs_a_stale_holder_and_tells_it() {
    for (stale_minutes, allowed) in [("30", false), ("0", true)] {
        let server = Server::start_with(&["--shards", "2", "--stale-lease-minutes", stale_minutes]);
        let mut client = server.client();
        team(&mut client, "force", &["ForceAda", "ForceBob"]);
        let granted = reserve(&mut client, "ForceAda", &["src/"], json!({}));
        let id = granted["granted"][0]["id"].as_u64().expect("id");
        let arguments = json!({"agent_name": "ForceBob", "id": id, "note": "blocking the release"});
        if !allowed {
            let error = client.call_err("force_release_file_reservation", arguments);
            assert!(
                error.contains("'ForceAda' was active 0 minute(s) ago")
                    && error.contains("30 minutes"),
                "{error}"
            );
            continue;
        }
        let forced = client.call_ok("force_release_file_reservation", arguments);
        assert_eq!(forced["released"]["agent"], "ForceAda");
        assert_eq!(forced["notified"], true);
        let inbox = client.call_ok("fetch_inbox", json!({"agent_name": "ForceAda"}));
        let message = &inbox["messages"][0];
        assert_eq!(message["from"], "ForceBob");
        assert!(message["subject"]
            .as_str()
            .is_some_and(|s| s.contains("src")));
        assert!(message["body"]
            .as_str()
            .is_some_and(|b| b.contains("blocking the release")));
        let now_bob = reserve(&mut client, "ForceBob", &["src/x.rs"], json!({}));
        assert_eq!(granted_paths(&now_bob), vec!["src/x.rs"]);
        let error = client.call_err(
            "force_release_file_reservation",
            json!({"agent_name": "ForceBob", "id": id}),
        );
        assert!(error.contains("no active reservation"), "{error}");
    }
}

#[test]
fn racing_agents_get_exactly_one_exclusive_holder() {
    let server = Server::start();
    let mut client = server.client();
    const RACERS: usize = 12;
    const ROUNDS: usize = 5;
    let names: Vec<String> = (0..RACERS).map(|n| format!("Race{n}")).collect();
    for name in &names {
        client.create_agent("race", name);
    }
    for round in 0..ROUNDS {
        let start = Arc::new(Barrier::new(RACERS));
        let handles: Vec<_> = names
            .iter()
            .map(|name| {
                let (addr, name, start) = (server.addr, name.clone(), Arc::clone(&start));
                std::thread::spawn(move || {
                    let mut client = common::Client::connect(addr);
                    start.wait();
                    let result = reserve(&mut client, &name, &["src/hot.rs"], json!({}));
                    (name, result["granted"].as_array().map_or(0, Vec::len))
                })
            })
            .collect();
        let winners: Vec<String> = handles
            .into_iter()
            .map(|h| h.join().expect("racer"))
            .filter(|(_, granted)| *granted == 1)
            .map(|(name, _)| name)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let listed = client.call_ok("list_file_reservations", json!({"project_key": "race"}));
        assert_eq!(listed["reservations"][0]["agent"], winners[0].as_str());
        client.call_ok(
            "release_file_reservations",
            json!({"agent_name": winners[0]}),
        );
    }
}

#[test]
fn bounds_are_clear_tool_errors() {
    let server = Server::start();
    let mut client = server.client();
    team(&mut client, "bound", &["BoundAda"]);
    let too_many: Vec<String> = (0..101).map(|n| format!("f{n}")).collect();
    let error = client.call_err(
        "file_reservation_paths",
        json!({"agent_name": "BoundAda", "paths": too_many}),
    );
    assert!(
        error.contains("'paths'") && error.contains("more than 100"),
        "{error}"
    );
    let error = client.call_err(
        "file_reservation_paths",
        json!({"agent_name": "BoundAda", "paths": ["x"], "reason": "r".repeat(257)}),
    );
    assert!(error.contains("'reason'"), "{error}");
    let error = client.call_err(
        "file_reservation_paths",
        json!({"agent_name": "BoundAda", "paths": ["ok", "../../etc/passwd"]}),
    );
    assert!(
        error.contains("entry 1") && error.contains("leaves the project"),
        "{error}"
    );
    for batch in 0..3 {
        let paths: Vec<String> = (0..100).map(|n| format!("b{batch}/f{n}")).collect();
        let result = client.call(
            "file_reservation_paths",
            json!({"agent_name": "BoundAda", "paths": paths}),
        );
        if batch < 2 {
            assert_eq!(result["isError"], false);
        } else {
            let text = result["content"][0]["text"].as_str().expect("text");
            assert!(
                text.contains("at most 256 active") && text.contains("nothing was granted"),
                "{text}"
            );
        }
    }
    let listed = client.call_ok(
        "list_file_reservations",
        json!({"project_key": "bound", "limit": 1000}),
    );
    assert_eq!(listed["reservations"].as_array().map(Vec::len), Some(200));
}

#[test]
fn reservations_survive_kill_9_with_their_wall_clock_expiry() {
    let mut server = Server::start();
    let mut client = server.client();
    team(&mut client, "crashres", &["CrashAda", "CrashBob"]);
    reserve(
        &mut client,
        "CrashAda",
        &["src/", "slot:build"],
        json!({"reason": "release"}),
    );
    client.call_ok(
        "release_file_reservations",
        json!({"agent_name": "CrashAda", "paths": ["slot:build"]}),
    );
    let before = client.call_ok(
        "list_file_reservations",
        json!({"project_key": "crashres", "include_inactive": true}),
    );
    server.signal(libc::SIGKILL);
    let _ = server.take_child().wait();
    let restarted = Server::start_in(&server.dir, &["--shards", "3"]);
    let mut client = restarted.client();
    let after = client.call_ok(
        "list_file_reservations",
        json!({"project_key": "crashres", "include_inactive": true}),
    );
    assert_eq!(
        after["reservations"], before["reservations"],
        "moved to the new owner intact"
    );
    let blocked = reserve(
        &mut client,
        "CrashBob",
        &["src/x.rs", "slot:build"],
        json!({}),
    );
    assert_eq!(
        granted_paths(&blocked),
        vec!["slot:build"],
        "src/ is still held, the slot was released"
    );
    let next = reserve(&mut client, "CrashAda", &["docs/"], json!({}));
    let new_id = next["granted"][0]["id"].as_u64().expect("id");
    assert!(
        new_id > 3,
        "ids are never reused across a restart: {new_id}"
    );
}

#[test]
fn a_reshard_keeps_a_project_whose_new_owner_has_no_agents() {
    // A project key whose reservations land on the other shard than its only agent's.
    let agent = "LonelyAda";
    let key = (0..)
        .map(|n| format!("lonely-{n}"))
        .find(|key| {
            let project = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_DNS, key.as_bytes());
            shards::leases::owner_of_project(&project, 2) != shards::owner_of(agent, 2)
        })
        .expect("a key");
    let mut server = Server::start_with(&["--shards", "1"]);
    let mut client = server.client();
    client.create_agent(&key, agent);
    reserve(&mut client, agent, &["src/"], json!({}));
    assert!(server.terminate().success());
    let mut stopped = Vec::new();
    for _ in 0..2 {
        // The first restart reshards 1 -> 2; the second reads what that wrote.
        let mut restarted = Server::start_in(&server.dir, &["--shards", "2"]);
        let listed = restarted
            .client()
            .call_ok("list_file_reservations", json!({"project_key": key}));
        assert_eq!(listed["reservations"][0]["path"], "src", "{listed}");
        assert!(restarted.terminate().success());
        stopped.push(restarted);
    }
}
