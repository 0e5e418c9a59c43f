//! A multi-owner send is cancellation-safe: whenever the future of `Shard::send` is dropped
//! (its connection gone, the server stopping), the send is all or nothing and no inbox place
//! stays reserved.
//!
//! Runs three real shards (glommio executors joined by the channel mesh) in this process and
//! drives `Shard::send` directly, so its future can be dropped after each of its steps: the
//! network cannot time a drop that precisely.

use glommio::{LocalExecutorBuilder, Placement};
use shards::runtime::send::SendError;
use shards::{
    owner_of, Actor, Envelope, InboxLimits, MeshPair, Message, RegisterMode, Registration, Reply,
    Request, Shard, Undeliverable,
};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const SHARDS: usize = 3;

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

/// Message `n` from the first name to all of them.
fn message(n: u128, names: &[String], body: &str) -> Arc<Envelope> {
    Arc::new(Envelope::compose(Message {
        body,
        to: names.iter().map(|name| name.as_str().into()).collect(),
        ..Message::plain(Uuid::from_u128(n), &names[0])
    }))
}

async fn register(shard: &Shard, name: &str, n: u128) {
    let request = Request::Register(Registration {
        name: name.into(),
        mode: RegisterMode::Upsert,
        new_id: Uuid::from_u128(n),
        project_id: Uuid::nil(),
        project_key: "p".into(),
        program: None,
        model: None,
        task_description: None,
        now_ms: 0,
        new_token_hash: None,
        token: None,
    });
    let reply = shard.call(shard.owner_of(name), request).await;
    assert!(matches!(reply, Ok(Reply::Registered { .. })), "{reply:?}");
}

/// Drains `name`'s inbox; how many messages it held.
async fn inbox_len(shard: &Shard, name: &str) -> usize {
    let request = Request::Drain {
        actor: Actor {
            name: name.into(),
            token: None,
            now_ms: 0,
        },
        max_weight: usize::MAX,
        at_least_one: true,
    };
    match shard.call(shard.owner_of(name), request).await {
        Ok(Reply::Drained(page)) => page.messages.len(),
        other => panic!("Drain answered {other:?}"),
    }
}

/// Polls a three-owner send `polls` times (letting the shards run between polls), then drops
/// it. Returns whether it finished before the drop.
async fn send_and_drop_after(shard: &Rc<Shard>, names: &[String], n: u128, polls: usize) -> bool {
    let mut send = Box::pin(shard.send(message(n, names, "x")));
    for _ in 0..polls {
        if let Some(outcome) = futures_lite::future::poll_once(&mut send).await {
            assert!(outcome.is_ok(), "{outcome:?}");
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

async fn check_every_drop_point(shard: &Rc<Shard>) {
    let names = one_name_per_shard();
    for (n, name) in names.iter().enumerate() {
        register(shard, name, n as u128 + 1).await;
    }
    let mut outcomes = Vec::new();
    for polls in 0..40 {
        let n = 1000 + 2 * polls as u128;
        let finished = send_and_drop_after(shard, &names, n, polls).await;
        // Whatever was started runs to its end on its own.
        settle(shard).await;
        let mut delivered = Vec::new();
        for name in &names {
            delivered.push(inbox_len(shard, name).await);
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
        let full = shard.send(message(n + 1, &names, "y")).await;
        assert!(full.is_ok(), "after {polls} polls: {full:?}");
        for name in &names {
            assert_eq!(inbox_len(shard, name).await, 1, "after {polls} polls");
        }
        outcomes.push(delivered[0]);
    }
    // The loop covered both ends: dropped before anything, and completed.
    assert_eq!(outcomes.first(), Some(&0));
    assert_eq!(outcomes.last(), Some(&1));
    // And a full inbox refuses the whole send, naming it.
    shard.send(message(1, &names, "z")).await.expect("room");
    let refused = shard.send(message(2, &names, "z")).await;
    assert!(
        matches!(&refused, Err(SendError::Refused(Undeliverable::InboxFull(full))) if full.len() == SHARDS),
        "{refused:?}"
    );
}

#[test]
fn a_multi_owner_send_dropped_at_any_step_is_all_or_nothing_and_leaks_nothing() {
    let mesh = MeshPair::new(SHARDS, 64);
    // One message per inbox, so a leaked reservation shows as a refused send.
    let limits = InboxLimits::inbox(1, 1 << 20);
    let done = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..SHARDS)
        .map(|_| {
            let (mesh, done) = (mesh.clone(), Arc::clone(&done));
            LocalExecutorBuilder::new(Placement::Unbound)
                .spawn(move || async move {
                    let shard: Rc<Shard> = Shard::join(mesh, limits).await.expect("join");
                    if shard.id() == 0 {
                        check_every_drop_point(&shard).await;
                        done.store(true, Ordering::Release);
                    } else {
                        while !done.load(Ordering::Acquire) {
                            glommio::timer::sleep(Duration::from_millis(1)).await;
                        }
                    }
                    shard.close();
                })
                .expect("executor")
        })
        .collect();
    for handle in handles {
        handle.join().expect("shard thread");
    }
}
