//! Model-based property test: random operation sequences applied to a cluster of
//! `ShardState`s (routed by `owner_of`, as the server does) must give the same answers as a
//! plain in-memory model of agents and inboxes.
//!
//! Both delivery paths the server uses are driven: a send whose recipients share one owner is
//! one `Deliver` that checks and enqueues at once; a send to several owners reserves a place on
//! every owner first and then delivers owner by owner. Multi-owner sends are left half-done
//! while other sends, registrations and drains run, as concurrent requests interleave on the
//! real shards. Every agent's delivery log is checked too: `fetch` must list each delivery
//! once, in order, with its drained state, whatever drains took.

use shards::{
    owner_of, DrainedPage, Envelope, FetchQuery, InboxLimits, Reply, Request, ShardState,
    Undeliverable,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use uuid::Uuid;

mod common;

use common::{actor, message_to, upsert, Rng};

#[derive(Default)]
struct ModelAgent {
    project: u128,
    queued: Vec<u128>,
    /// Every delivery, oldest first, and whether it was drained.
    delivered: Vec<(u128, bool)>,
    /// Places held by multi-owner sends not yet delivered here.
    reserved: usize,
}

#[derive(Default)]
struct Model {
    agents: BTreeMap<String, ModelAgent>,
}

impl Model {
    fn any_unknown(&self, names: &BTreeSet<&str>) -> bool {
        names.iter().any(|n| !self.agents.contains_key(*n))
    }

    fn any_full(&self, names: &BTreeSet<&str>) -> bool {
        names.iter().any(|n| {
            self.agents
                .get(*n)
                .is_some_and(|a| a.queued.len() + a.reserved >= MAX_INBOX)
        })
    }
}

/// A multi-owner send prepared on every owner and committed one owner at a time.
struct InFlight {
    envelope: Arc<Envelope>,
    /// Groups not delivered yet, by owner.
    groups: Vec<(usize, Vec<Box<str>>)>,
}

/// Small, so histories often fill inboxes and exercise the refusal path.
const MAX_INBOX: usize = 3;

const NAMES: [&str; 8] = ["ann", "bob", "cyd", "dee", "eve", "fay", "gus", "hal"];

struct Run {
    rng: Rng,
    cluster: Vec<ShardState>,
    model: Model,
    in_flight: Vec<InFlight>,
    next_message: u128,
    context: String,
}

impl Run {
    fn new(seed: u64, shard_count: usize) -> Run {
        let limits = InboxLimits {
            messages: MAX_INBOX,
            bytes: usize::MAX,
            retained_messages: usize::MAX,
            retained_bytes: usize::MAX,
        };
        Run {
            rng: Rng(seed),
            cluster: (0..shard_count)
                .map(|i| ShardState::new(i, shard_count, limits))
                .collect(),
            model: Model::default(),
            in_flight: Vec::new(),
            next_message: 0,
            context: String::new(),
        }
    }

    fn shard_count(&self) -> usize {
        self.cluster.len()
    }

    fn call(&mut self, name: &str, request: Request) -> Reply {
        let owner = owner_of(name, self.shard_count());
        self.cluster[owner].handle(request)
    }

    fn new_envelope(&mut self, recipients: &BTreeSet<&str>) -> Arc<Envelope> {
        let id = Uuid::from_u128(self.next_message);
        self.next_message += 1;
        message_to(id, recipients.iter().map(|n| (*n).into()).collect())
    }

    fn groups(&self, recipients: &BTreeSet<&str>) -> Vec<(usize, Vec<Box<str>>)> {
        let mut groups: BTreeMap<usize, Vec<Box<str>>> = BTreeMap::new();
        for name in recipients {
            groups
                .entry(owner_of(name, self.shard_count()))
                .or_default()
                .push((*name).into());
        }
        groups.into_iter().collect()
    }

    fn register(&mut self, step: usize) {
        let name = NAMES[self.rng.below(NAMES.len())];
        let project = self.rng.below(2) as u128;
        let reply = self.call(
            name,
            Request::Register(upsert(
                name,
                Uuid::from_u128(step as u128),
                Uuid::from_u128(project),
                step as i64,
            )),
        );
        let context = &self.context;
        match self.model.agents.get(name) {
            Some(existing) if existing.project != project => assert_eq!(
                reply,
                Reply::NameTaken {
                    project_id: Uuid::from_u128(existing.project)
                },
                "{context}"
            ),
            Some(_) => assert!(
                matches!(reply, Reply::Registered { created: false, .. }),
                "{context}"
            ),
            None => {
                assert!(
                    matches!(reply, Reply::Registered { created: true, .. }),
                    "{context}"
                );
                let agent = ModelAgent {
                    project,
                    ..ModelAgent::default()
                };
                self.model.agents.insert(name.to_string(), agent);
            }
        }
    }

    /// The server's path for recipients that share one owner: one `Deliver` that checks.
    fn send_single_owner(&mut self) {
        let owner = self.rng.below(self.shard_count());
        let on_owner: Vec<&str> = NAMES
            .iter()
            .copied()
            .filter(|n| owner_of(n, self.shard_count()) == owner)
            .collect();
        if on_owner.is_empty() {
            return;
        }
        let recipients: BTreeSet<&str> = (0..1 + self.rng.below(3))
            .map(|_| on_owner[self.rng.below(on_owner.len())])
            .collect();
        let envelope = self.new_envelope(&recipients);
        let reply = self.cluster[owner].handle(Request::Deliver {
            envelope: Arc::clone(&envelope),
        });
        let expected = if self.model.any_unknown(&recipients) {
            "unknown"
        } else if self.model.any_full(&recipients) {
            "full"
        } else {
            "enqueued"
        };
        let got = match &reply {
            Reply::Delivered(Err(Undeliverable::UnknownRecipients(_))) => "unknown",
            Reply::Delivered(Err(Undeliverable::InboxFull(_))) => "full",
            Reply::Delivered(Ok(count)) => {
                assert_eq!(*count, recipients.len(), "{}", self.context);
                "enqueued"
            }
            other => panic!("{}: deliver answered {other:?}", self.context),
        };
        assert_eq!(got, expected, "{}: single-owner send", self.context);
        if got == "enqueued" {
            for name in recipients {
                let agent = self.model.agents.get_mut(name).expect("known");
                agent.queued.push(envelope.id.as_u128());
                agent.delivered.push((envelope.id.as_u128(), false));
            }
        }
    }

    /// Step one of the server's path for several owners: prepare everywhere, or abort.
    fn start_multi_owner_send(&mut self) {
        let recipients: BTreeSet<&str> = (0..2 + self.rng.below(3))
            .map(|_| NAMES[self.rng.below(NAMES.len())])
            .collect();
        let groups = self.groups(&recipients);
        if groups.len() < 2 {
            return;
        }
        let envelope = self.new_envelope(&recipients);
        let mut granted: Vec<usize> = Vec::new();
        let mut refused: Option<Undeliverable> = None;
        for (owner, _) in &groups {
            match self.cluster[*owner].handle(Request::Prepare {
                envelope: Arc::clone(&envelope),
                owners: groups.len() as u16,
            }) {
                Reply::Prepared(Ok(_)) => granted.push(*owner),
                Reply::Prepared(Err(refusal)) => {
                    refused.get_or_insert(refusal);
                }
                other => panic!("{}: prepare answered {other:?}", self.context),
            }
        }
        let (unknown, full) = (
            self.model.any_unknown(&recipients),
            self.model.any_full(&recipients),
        );
        match &refused {
            None => assert!(!unknown && !full, "{}: granted wrongly", self.context),
            Some(Undeliverable::UnknownRecipients(_)) => assert!(unknown, "{}", self.context),
            Some(Undeliverable::InboxFull(_)) => assert!(full, "{}", self.context),
            Some(used @ Undeliverable::KeyUsed(_)) => {
                panic!("{}: no message here has a key: {used:?}", self.context)
            }
        }
        if refused.is_some() {
            for owner in granted {
                let reply = self.cluster[owner].handle(Request::Abort { id: envelope.id });
                assert_eq!(reply, Reply::Settled, "{}", self.context);
            }
            return;
        }
        for name in &recipients {
            self.model.agents.get_mut(*name).expect("known").reserved += 1;
        }
        self.in_flight.push(InFlight { envelope, groups });
    }

    /// Step two, one owner at a time: a commit never fails.
    fn advance_multi_owner_send(&mut self) {
        if self.in_flight.is_empty() {
            return;
        }
        let index = self.rng.below(self.in_flight.len());
        let send = &mut self.in_flight[index];
        let (owner, names) = send.groups.remove(0);
        let envelope = Arc::clone(&send.envelope);
        if send.groups.is_empty() {
            self.in_flight.swap_remove(index);
        }
        let reply = self.cluster[owner].handle(Request::Commit { id: envelope.id });
        assert_eq!(reply, Reply::Settled, "{}", self.context);
        for name in names {
            let agent = self.model.agents.get_mut(&*name).expect("reserved");
            agent.reserved -= 1;
            agent.queued.push(envelope.id.as_u128());
            agent.delivered.push((envelope.id.as_u128(), false));
        }
    }

    fn drain(&mut self) {
        let name = NAMES[self.rng.below(NAMES.len())];
        // Weights are 1 per message here, so a page holds `max_weight` messages.
        let (max_weight, at_least_one) = match self.rng.below(3) {
            0 => (usize::MAX, true),
            _ => (self.rng.below(3), self.rng.below(2) == 0),
        };
        let reply = self.call(
            name,
            Request::Drain {
                actor: actor(name),
                max_weight,
                at_least_one,
            },
        );
        let expected = self.model.agents.get_mut(name).map(|agent| {
            let mut take = max_weight.min(agent.queued.len());
            if take == 0 && at_least_one && !agent.queued.is_empty() {
                take = 1;
            }
            let taken: Vec<u128> = agent.queued.drain(..take).collect();
            for (id, drained) in agent.delivered.iter_mut() {
                if taken.contains(id) {
                    *drained = true;
                }
            }
            (taken, agent.queued.len())
        });
        let got = match reply {
            Reply::Drained(DrainedPage { messages, left }) => Some((
                messages
                    .iter()
                    .map(|m| m.envelope.id.as_u128())
                    .collect::<Vec<_>>(),
                left,
            )),
            Reply::NoAgent => None,
            other => panic!("{}: drain answered {other:?}", self.context),
        };
        assert_eq!(got, expected, "{}: drain of {name}", self.context);
    }

    /// A non-destructive read of the whole delivery log, compared with the model's.
    fn fetch(&mut self) {
        let name = NAMES[self.rng.below(NAMES.len())];
        let query = FetchQuery {
            after: 0,
            limit: usize::MAX,
            unread_only: false,
            urgent_only: false,
            thread_id: None,
            max_weight: usize::MAX,
            at_least_one: true,
        };
        let reply = self.call(
            name,
            Request::Fetch {
                actor: actor(name),
                query,
            },
        );
        let got = match reply {
            Reply::Fetched(Ok(page)) => {
                let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
                let expected_seqs: Vec<u64> = (1..=page.messages.len() as u64).collect();
                assert_eq!(seqs, expected_seqs, "{}: seqs of {name}", self.context);
                Some(
                    page.messages
                        .iter()
                        .map(|m| (m.envelope.id.as_u128(), m.drained))
                        .collect::<Vec<_>>(),
                )
            }
            Reply::NoAgent => None,
            other => panic!("{}: fetch answered {other:?}", self.context),
        };
        let expected = self.model.agents.get(name).map(|a| a.delivered.clone());
        assert_eq!(got, expected, "{}: delivery log of {name}", self.context);
    }

    fn check_counters(&self) {
        let queued: usize = self.cluster.iter().map(|s| s.queued_messages()).sum();
        let model_queued: usize = self.model.agents.values().map(|a| a.queued.len()).sum();
        assert_eq!(
            queued, model_queued,
            "{}: queued-message counters",
            self.context
        );
        let agents: usize = self.cluster.iter().map(|s| s.agent_count()).sum();
        assert_eq!(
            agents,
            self.model.agents.len(),
            "{}: agent counts",
            self.context
        );
    }
}

fn run(seed: u64, shard_count: usize, steps: usize) {
    let mut run = Run::new(seed, shard_count);
    for step in 0..steps {
        run.context = format!("seed {seed}, shards {shard_count}, step {step}");
        match run.rng.below(13) {
            0..=1 => run.register(step),
            2..=3 => run.send_single_owner(),
            4..=5 => run.start_multi_owner_send(),
            6..=8 => run.advance_multi_owner_send(),
            9 => run.fetch(),
            _ => run.drain(),
        }
        run.check_counters();
    }
    // Every send that was granted completes, and then every inbox drains to the model's.
    run.context = format!("seed {seed}, shards {shard_count}, finishing");
    while !run.in_flight.is_empty() {
        run.advance_multi_owner_send();
    }
    for name in NAMES {
        let reply = run.call(
            name,
            Request::Drain {
                actor: actor(name),
                max_weight: usize::MAX,
                at_least_one: true,
            },
        );
        let expected = run
            .model
            .agents
            .get_mut(name)
            .map(|a| std::mem::take(&mut a.queued));
        let got = match reply {
            Reply::Drained(page) => Some(
                page.messages
                    .iter()
                    .map(|m| m.envelope.id.as_u128())
                    .collect(),
            ),
            _ => None,
        };
        assert_eq!(got, expected, "{}: final drain of {name}", run.context);
    }
    run.check_counters();
}

#[test]
fn cluster_matches_model_for_many_random_histories() {
    for seed in 0..300 {
        for shard_count in [1, 2, 3, 5] {
            run(seed, shard_count, 200);
        }
    }
}
