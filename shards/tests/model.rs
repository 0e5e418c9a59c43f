//! Model-based property test: random operation sequences applied to a cluster of
//! `ShardState`s (routed by `owner_of`, as the server does) must give the same answers as a
//! plain in-memory model of agents and inboxes.

use shards::{
    owner_of, Delivery, Envelope, InboxLimits, RegisterMode, Registration, Reply, Request,
    ShardState,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use uuid::Uuid;

/// splitmix64: a tiny deterministic generator, so a failure names a reproducible seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Default)]
struct Model {
    /// name -> (project, queued message ids)
    agents: BTreeMap<String, (u128, Vec<u128>)>,
}

/// Small, so histories often fill inboxes and exercise the refusal path.
const MAX_INBOX: usize = 3;

const NAMES: [&str; 8] = ["ann", "bob", "cyd", "dee", "eve", "fay", "gus", "hal"];

fn cluster_call(cluster: &mut [ShardState], name: &str, request: Request) -> Reply {
    let owner = owner_of(name, cluster.len());
    cluster[owner].handle(request)
}

fn run(seed: u64, shard_count: usize, steps: usize) {
    let mut rng = Rng(seed);
    let mut cluster: Vec<ShardState> = (0..shard_count)
        .map(|i| {
            ShardState::new(
                i,
                shard_count,
                InboxLimits {
                    messages: MAX_INBOX,
                    bytes: usize::MAX,
                },
            )
        })
        .collect();
    let mut model = Model::default();
    let mut next_message = 0u128;

    for step in 0..steps {
        let context = format!("seed {seed}, shards {shard_count}, step {step}");
        match rng.below(10) {
            0..=2 => {
                let name = NAMES[rng.below(NAMES.len())];
                let project = rng.below(2) as u128;
                let reply = cluster_call(
                    &mut cluster,
                    name,
                    Request::Register(Registration {
                        name: name.into(),
                        mode: RegisterMode::Upsert,
                        new_id: Uuid::from_u128(step as u128),
                        project_id: Uuid::from_u128(project),
                        project_key: "k".into(),
                        program: None,
                        model: None,
                        now_ms: step as i64,
                    }),
                );
                match model.agents.get(name) {
                    Some((existing, _)) if *existing != project => {
                        assert_eq!(
                            reply,
                            Reply::NameTaken {
                                project_id: Uuid::from_u128(*existing)
                            },
                            "{context}"
                        );
                    }
                    Some(_) => assert!(
                        matches!(reply, Reply::Registered { created: false, .. }),
                        "{context}"
                    ),
                    None => {
                        assert!(
                            matches!(reply, Reply::Registered { created: true, .. }),
                            "{context}"
                        );
                        model.agents.insert(name.to_string(), (project, Vec::new()));
                    }
                }
            }
            3..=6 => {
                // Send to 1-3 recipients, as the server does: validate on every owner first,
                // then deliver to each owner's group.
                let recipients: BTreeSet<&str> = (0..1 + rng.below(3))
                    .map(|_| NAMES[rng.below(NAMES.len())])
                    .collect();
                let mut groups: BTreeMap<usize, Vec<Box<str>>> = BTreeMap::new();
                for name in &recipients {
                    groups
                        .entry(owner_of(name, shard_count))
                        .or_default()
                        .push((*name).into());
                }
                // Step one, as the server does with several owners: reserve on every owner;
                // if any refuses, release what the others granted.
                let mut granted: Vec<usize> = Vec::new();
                let mut refused: Option<Delivery> = None;
                for (owner, names) in &groups {
                    match cluster[*owner].handle(Request::Reserve {
                        names: names.clone(),
                        bytes: 1,
                    }) {
                        Reply::Delivered(Delivery::Enqueued { .. }) => granted.push(*owner),
                        Reply::Delivered(refusal) => {
                            refused.get_or_insert(refusal);
                        }
                        other => panic!("{context}: reserve answered {other:?}"),
                    }
                }
                let any_unknown = recipients.iter().any(|n| !model.agents.contains_key(*n));
                let any_full = recipients.iter().any(|n| {
                    model
                        .agents
                        .get(*n)
                        .is_some_and(|(_, inbox)| inbox.len() >= MAX_INBOX)
                });
                match &refused {
                    None => assert!(
                        !any_unknown && !any_full,
                        "{context}: reserve granted wrongly"
                    ),
                    Some(Delivery::UnknownRecipients(_)) => assert!(any_unknown, "{context}"),
                    Some(Delivery::InboxFull(_)) => assert!(any_full, "{context}"),
                    Some(other) => panic!("{context}: {other:?}"),
                }
                if refused.is_some() {
                    for owner in granted {
                        let names = groups[&owner].clone();
                        assert_eq!(
                            cluster[owner].handle(Request::Release { names, bytes: 1 }),
                            Reply::Released
                        );
                    }
                } else {
                    let id = next_message;
                    next_message += 1;
                    let envelope = Arc::new(Envelope::new(
                        Uuid::from_u128(id),
                        Uuid::nil(),
                        0,
                        "x",
                        "",
                        "",
                    ));
                    for (owner, names) in groups {
                        let count = names.len();
                        let reply = cluster[owner].handle(Request::Deliver {
                            names,
                            envelope: Arc::clone(&envelope),
                            reserved: true,
                        });
                        assert_eq!(
                            reply,
                            Reply::Delivered(Delivery::Enqueued { count }),
                            "{context}"
                        );
                    }
                    for name in recipients {
                        model.agents.get_mut(name).expect("validated").1.push(id);
                    }
                }
            }
            _ => {
                let name = NAMES[rng.below(NAMES.len())];
                let reply = cluster_call(
                    &mut cluster,
                    name,
                    Request::Drain {
                        name: name.into(),
                        max_bytes: usize::MAX,
                    },
                );
                let expected = model
                    .agents
                    .get_mut(name)
                    .map(|(_, inbox)| std::mem::take(inbox));
                let got = match reply {
                    Reply::Drained(Some(messages)) => {
                        Some(messages.iter().map(|m| m.id.as_u128()).collect::<Vec<_>>())
                    }
                    Reply::Drained(None) => None,
                    other => panic!("{context}: drain answered {other:?}"),
                };
                assert_eq!(got, expected, "{context}");
            }
        }
        let queued: usize = cluster.iter().map(|s| s.queued_messages()).sum();
        let model_queued: usize = model.agents.values().map(|(_, inbox)| inbox.len()).sum();
        assert_eq!(queued, model_queued, "{context}: queued-message counters");
        let agents: usize = cluster.iter().map(|s| s.agent_count()).sum();
        assert_eq!(agents, model.agents.len(), "{context}: agent counts");
    }
}

#[test]
fn cluster_matches_model_for_many_random_histories() {
    for seed in 0..300 {
        for shard_count in [1, 2, 3, 5] {
            run(seed, shard_count, 200);
        }
    }
}
