//! A multi-owner `send_message` is cancellation-safe: whenever the request future is dropped
//! (its connection gone, the server stopping), the send is all or nothing and no inbox place
//! stays reserved.
//!
//! Runs three real shards (glommio executors joined by the channel mesh) in this process and
//! drives the tool layer directly, so the request future can be dropped after each of its
//! steps: the network cannot time a drop that precisely.

use allman::feed::{self, Feed, FeedLimits};
use allman::metrics::{FeedGauges, Metrics, SearchMetrics};
use allman::search::{self, SearchConfig};
use allman::tools::{self, OutputBudget, ToolOutput, ToolSettings, Toolbox};
use allman::wake::Notify;
use glommio::{LocalExecutorBuilder, Placement};
use serde_json::value::RawValue;
use shards::{owner_of, InboxLimits, MeshPair, Shard};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

const SHARDS: usize = 3;
const BUDGET: OutputBudget = OutputBudget {
    bytes: 1 << 20,
    at_least_one: true,
};

/// One name owned by each shard.
fn one_name_per_shard() -> Vec<String> {
    (0..SHARDS)
        .map(|shard| {
            (0..1000)
                .map(|i| format!("Owner{shard}x{i}"))
                .find(|name| owner_of(name, SHARDS) == shard)
                .expect("a name on every shard")
        })
        .collect()
}

fn raw(json: serde_json::Value) -> Box<RawValue> {
    RawValue::from_string(json.to_string()).expect("json")
}

async fn call(toolbox: &Toolbox, tool: &str, arguments: serde_json::Value) -> ToolOutput {
    let arguments = raw(arguments);
    let parsed = tools::parse(tool, Some(&arguments)).unwrap_or_else(|_| panic!("{tool} args"));
    toolbox
        .run(parsed, BUDGET)
        .await
        .unwrap_or_else(|error| panic!("{tool} failed: {error}"))
}

async fn inbox_len(toolbox: &Toolbox, name: &str) -> usize {
    match call(
        toolbox,
        "get_inbox",
        serde_json::json!({ "agent_name": name }),
    )
    .await
    {
        ToolOutput::Inbox(messages) => messages.len(),
        other => panic!("get_inbox answered {other:?}"),
    }
}

/// Polls a three-owner send `polls` times (letting the shards run between polls), then drops
/// it. Returns whether it finished before the drop.
async fn send_and_drop_after(toolbox: &Toolbox, names: &[String], polls: usize) -> bool {
    let arguments = raw(serde_json::json!({"from_agent": names[0], "to": names, "body": "x"}));
    let parsed = tools::parse("send_message", Some(&arguments)).expect("send args");
    let mut send = Box::pin(toolbox.run(parsed, BUDGET));
    for _ in 0..polls {
        if futures_lite::future::poll_once(&mut send).await.is_some() {
            return true;
        }
        glommio::timer::sleep(Duration::from_micros(50)).await;
    }
    false
}

/// Waits until no cross-shard call of this shard has been outstanding for several checks in a
/// row: a detached delivery still running always has one outstanding, or is runnable and
/// gets one before the next check.
async fn settle(shard: &Shard) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut quiet_checks = 0;
    while quiet_checks < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "the send never settled"
        );
        glommio::timer::sleep(Duration::from_millis(1)).await;
        quiet_checks = if shard.stats().in_flight == 0 {
            quiet_checks + 1
        } else {
            0
        };
    }
}

async fn check_every_drop_point(toolbox: &Toolbox) {
    let names = one_name_per_shard();
    for name in &names {
        call(
            toolbox,
            "create_agent",
            serde_json::json!({"project_key": "p", "name_hint": name}),
        )
        .await;
    }
    let mut outcomes = Vec::new();
    for polls in 0..40 {
        let finished = send_and_drop_after(toolbox, &names, polls).await;
        // Whatever was started runs to its end on its own.
        settle(toolbox.shard()).await;
        let mut delivered = Vec::new();
        for name in &names {
            delivered.push(inbox_len(toolbox, name).await);
        }
        assert!(
            delivered == [0, 0, 0] || delivered == [1, 1, 1],
            "dropped after {polls} polls: delivered {delivered:?}, not all or nothing"
        );
        assert!(
            !finished || delivered == [1, 1, 1],
            "a finished send delivered"
        );
        // Each inbox holds one message: a reservation left behind would refuse this send.
        let full_send = serde_json::json!({"from_agent": names[0], "to": names, "body": "y"});
        call(toolbox, "send_message", full_send).await;
        for name in &names {
            assert_eq!(inbox_len(toolbox, name).await, 1, "after {polls} polls");
        }
        outcomes.push(delivered[0]);
    }
    // The loop covered both ends: dropped before anything, and completed.
    assert_eq!(outcomes.first(), Some(&0));
    assert_eq!(outcomes.last(), Some(&1));
}

#[test]
fn a_multi_owner_send_dropped_at_any_step_is_all_or_nothing_and_leaks_nothing() {
    let dir = std::env::temp_dir().join(format!("allman-cancel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (events, _events_rx) = std::sync::mpsc::channel();
    let search_metrics = Arc::new(SearchMetrics::default());
    let index = search::open_index(&dir.join("index"), false).expect("index");
    let search = search::start(
        &SearchConfig {
            index_path: dir.join("index"),
            core: 0,
            queue_depth: 1024,
            queue_bytes: 1 << 20,
            commit_interval_ms: 10,
        },
        index,
        None,
        Arc::clone(&search_metrics),
        &events,
    )
    .expect("search");
    let (audit_out, audit_in) = feed::channel(
        FeedLimits {
            depth: 1024,
            max_bytes: 1 << 20,
        },
        "git writer",
        FeedGauges::default(),
    );
    let metrics = Arc::new(Metrics::new(SHARDS, search_metrics, Arc::default()));
    let mesh = MeshPair::new(SHARDS, 64);
    // One message per inbox, so a leaked reservation shows as a refused send.
    let limits = InboxLimits::inbox(1, 1 << 20);
    // One per shard: a Notify wakes a single waiting task.
    let done: Vec<Notify> = (0..SHARDS).map(|_| Notify::default()).collect();
    let handles: Vec<_> = (0..SHARDS)
        .map(|_| {
            let (mesh, done) = (mesh.clone(), done.clone());
            let (handle, docs, audit_out, metrics) = (
                search.handle(),
                search.docs(),
                audit_out.clone(),
                Arc::clone(&metrics),
            );
            LocalExecutorBuilder::new(Placement::Unbound)
                .spawn(move || async move {
                    let shard: Rc<Shard> = Shard::join(mesh, limits).await.expect("join");
                    if shard.id() == 0 {
                        let toolbox = Toolbox::new(
                            Rc::clone(&shard),
                            handle,
                            Feed::new(docs),
                            Feed::new(audit_out),
                            metrics,
                            ToolSettings::default(),
                        );
                        check_every_drop_point(&toolbox).await;
                        done.iter().for_each(Notify::fire);
                    } else {
                        done[shard.id()].wait().await;
                    }
                    shard.close();
                })
                .expect("executor")
        })
        .collect();
    for handle in handles {
        handle.join().expect("shard thread");
    }
    drop(audit_in);
    search.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
