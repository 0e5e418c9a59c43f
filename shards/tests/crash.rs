//! Crash property test: random interleaved histories on a cluster of logged shard states
//! (multi-owner sends left half done while drains run on other owners), then a "crash" that
//! cuts each shard's log at a random record no earlier than what was acknowledged, and a
//! recovery. Checked after every crash:
//! - every acknowledged send is, for each recipient, queued or taken by a drain whose record
//!   survived;
//! - no message is visible to some of its recipients and missing for others;
//! - no acknowledged drain's messages are delivered again.

use shards::log::watermarks::{LogIdentity, Watermarks};
use shards::log::LogBuffer;
use shards::recovery::{rebuild, ShardLog};
use shards::state::record::{decode, Decoded, Record};
use shards::{owner_of, Envelope, Reply, Request, ShardState};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use uuid::Uuid;

mod common;

use common::{
    actor, drain_every_inbox, message_to, prepare_on_all, send_owners, upsert, Rng, LIMITS, NAMES,
};

/// A send prepared on every owner and not yet committed.
struct Prepared {
    id: Uuid,
    owners: Vec<usize>,
    /// Each owner's log end after its prepare: what acknowledging the send needs durable.
    needs: Vec<(usize, u64)>,
}

struct Run {
    rng: Rng,
    cluster: Vec<ShardState>,
    /// Each shard's records taken from its buffer so far, with sequence numbers.
    logs: Vec<Vec<(u64, Record)>>,
    /// Per shard, the log end every acknowledged operation needs (the cut never goes below).
    acked_end: Vec<u64>,
    in_flight: Vec<Prepared>,
    /// Acknowledged sends: id -> recipients.
    acked_sends: BTreeMap<Uuid, BTreeSet<String>>,
    /// Every send ever started: id -> recipients.
    recipients_of: HashMap<Uuid, BTreeSet<String>>,
    /// Drains: (owner, position after the drain record, recipient, ids taken, acknowledged).
    drains: Vec<(usize, u64, String, Vec<Uuid>, bool)>,
    next_id: u128,
}

impl Run {
    fn new(seed: u64, count: usize) -> Run {
        Run {
            rng: Rng(seed),
            cluster: (0..count)
                .map(|s| ShardState::with_log(s, count, LIMITS, LogBuffer::new(true, 0)))
                .collect(),
            logs: vec![Vec::new(); count],
            acked_end: vec![0; count],
            in_flight: Vec::new(),
            acked_sends: BTreeMap::new(),
            recipients_of: HashMap::new(),
            drains: Vec::new(),
            next_id: 1,
        }
    }

    fn count(&self) -> usize {
        self.cluster.len()
    }

    /// Moves shard `shard`'s buffered records into its log (a flush).
    fn flush(&mut self, shard: usize) {
        let (bytes, end) = self.cluster[shard].log_mut().take_batch(Vec::new());
        let mut at = 0;
        let mut seq = end - count_records(&bytes) as u64;
        while at < bytes.len() {
            let Ok(Decoded::Record(record, len)) = decode(&bytes[at..]) else {
                panic!("the state wrote an undecodable record");
            };
            self.logs[shard].push((seq, record));
            seq += 1;
            at += len;
        }
        let mut events = Vec::new();
        self.cluster[shard]
            .outbox_mut()
            .take_events(end, &mut events);
    }

    /// Acknowledges an operation that needs `needs` durable: flushes those shards first,
    /// as the server releases a reply only once its position is durable.
    fn acknowledge(&mut self, needs: &[(usize, u64)]) {
        for &(shard, end) in needs {
            if self.logs[shard].last().map_or(0, |(s, _)| s + 1) < end {
                self.flush(shard);
            }
            self.acked_end[shard] = self.acked_end[shard].max(end);
        }
    }

    fn end(&self, shard: usize) -> u64 {
        self.cluster[shard].log().end()
    }

    fn register(&mut self, step: usize) {
        let name = NAMES[self.rng.below(NAMES.len())];
        let owner = owner_of(name, self.count());
        let reply = self.cluster[owner].handle(Request::Register(upsert(
            name,
            Uuid::from_u128(10_000 + step as u128),
            Uuid::nil(),
            step as i64,
        )));
        assert!(matches!(reply, Reply::Registered { .. }));
        let needs = [(owner, self.end(owner))];
        self.acknowledge(&needs);
    }

    fn recipients(&mut self) -> BTreeSet<&'static str> {
        (0..1 + self.rng.below(3))
            .map(|_| NAMES[self.rng.below(NAMES.len())])
            .collect()
    }

    fn envelope(&mut self, to: Vec<Box<str>>) -> Arc<Envelope> {
        let id = Uuid::from_u128(self.next_id);
        self.next_id += 1;
        message_to(id, to)
    }

    fn send(&mut self) {
        let recipients = self.recipients();
        let owners = send_owners(&recipients, self.count());
        let names: Vec<Box<str>> = recipients.iter().map(|n| (*n).into()).collect();
        let envelope = self.envelope(names);
        self.recipients_of.insert(
            envelope.id,
            recipients.iter().map(|n| n.to_string()).collect(),
        );
        if let [owner] = owners[..] {
            let reply = self.cluster[owner].handle(Request::Deliver {
                envelope: Arc::clone(&envelope),
            });
            if matches!(reply, Reply::Delivered(Ok(_))) && self.rng.below(4) > 0 {
                let needs = [(owner, self.end(owner))];
                self.acknowledge(&needs);
                self.acked_sends
                    .insert(envelope.id, self.recipients_of[&envelope.id].clone());
            }
            return;
        }
        let cluster = &mut self.cluster;
        let call = |owner: usize, request| {
            let reply = cluster[owner].handle(request);
            (reply, cluster[owner].log().end())
        };
        let Some(needs) = prepare_on_all(&envelope, &owners, call) else {
            return;
        };
        self.in_flight.push(Prepared {
            id: envelope.id,
            owners,
            needs,
        });
    }

    /// Commits one in-flight send on every owner, then acknowledges it (most of the time).
    /// As on the server, commits go out only once every owner's prepare reply came back, i.e.
    /// once every prepare is durable; the reply to the client does not wait for the commits.
    fn commit(&mut self) {
        if self.in_flight.is_empty() {
            return;
        }
        let send = self
            .in_flight
            .swap_remove(self.rng.below(self.in_flight.len()));
        self.acknowledge(&send.needs);
        // Owners commit in a random order, and a crash may come between them.
        let mut owners = send.owners.clone();
        if self.rng.below(2) == 0 {
            owners.reverse();
        }
        for owner in owners {
            self.cluster[owner].handle(Request::Commit { id: send.id });
            if self.rng.below(3) == 0 {
                self.flush(owner);
            }
        }
        if self.rng.below(4) > 0 {
            self.acked_sends
                .insert(send.id, self.recipients_of[&send.id].clone());
        }
    }

    fn drain(&mut self) {
        let name = NAMES[self.rng.below(NAMES.len())];
        let owner = owner_of(name, self.count());
        let reply = self.cluster[owner].handle(Request::Drain {
            actor: actor(name),
            max_weight: 1 + self.rng.below(3),
            at_least_one: true,
        });
        let Reply::Drained(page) = reply else {
            return;
        };
        if page.messages.is_empty() {
            return;
        }
        let ids: Vec<Uuid> = page.messages.iter().map(|m| m.envelope.id).collect();
        let end = self.end(owner);
        let acked = self.rng.below(4) > 0;
        if acked {
            self.acknowledge(&[(owner, end)]);
        }
        self.drains.push((owner, end, name.to_string(), ids, acked));
    }

    /// Cuts each log at a random record no earlier than what was acknowledged, recovers,
    /// and checks the three properties.
    fn crash_and_check(&mut self, context: &str) {
        let count = self.count();
        for shard in 0..count {
            if self.rng.below(2) == 0 {
                self.flush(shard);
            }
        }
        let mut cuts = Vec::with_capacity(count);
        let mut logs = Vec::with_capacity(count);
        for shard in 0..count {
            let total = self.logs[shard].len() as u64;
            let floor = self.acked_end[shard];
            assert!(floor <= total, "{context}: acknowledged beyond the log");
            let cut = floor + self.rng.below((total - floor) as usize + 1) as u64;
            cuts.push(cut);
            logs.push(ShardLog {
                snapshot: None,
                records: self.logs[shard][..cut as usize].to_vec(),
                below_snapshot: Vec::new(),
                end: cut,
                files: Default::default(),
            });
        }
        let rebuilt = rebuild(
            logs,
            LIMITS,
            LogIdentity {
                generation: 1,
                id: Uuid::nil(),
            },
            &Watermarks::default(),
            &Watermarks::default(),
        )
        .unwrap_or_else(|failure| panic!("{context}: replay: {failure:?}"));
        // Who holds what after recovery: queued, or taken by a drain that survived the cut.
        let mut states = rebuilt.states;
        let queued = drain_every_inbox(&mut states);
        let mut holders = queued.clone();
        for (owner, end, name, ids, acked) in &self.drains {
            let survived = *end <= cuts[*owner];
            if *acked {
                assert!(survived, "{context}: an acknowledged drain was cut");
            }
            for id in ids {
                if survived {
                    holders.entry(*id).or_default().insert(name.clone());
                    assert!(
                        !queued.get(id).is_some_and(|q| q.contains(name)),
                        "{context}: {id} drained by {name} (record kept) is queued again"
                    );
                }
            }
        }
        for (id, recipients) in &self.acked_sends {
            assert_eq!(
                holders.get(id),
                Some(recipients),
                "{context}: acknowledged send {id} after the crash"
            );
        }
        for (id, held_by) in &holders {
            assert_eq!(
                Some(held_by),
                self.recipients_of.get(id),
                "{context}: {id} is visible to some recipients only"
            );
        }
    }
}

fn count_records(bytes: &[u8]) -> usize {
    let mut at = 0;
    let mut n = 0;
    while at < bytes.len() {
        match decode(&bytes[at..]) {
            Ok(Decoded::Record(_, len)) => {
                at += len;
                n += 1;
            }
            _ => panic!("undecodable buffer"),
        }
    }
    n
}

#[test]
fn acknowledged_work_survives_a_crash_at_any_point() {
    for seed in 0..400 {
        for count in [1, 2, 3] {
            let mut run = Run::new(seed, count);
            let steps = 20 + run.rng.below(60);
            for step in 0..steps {
                match run.rng.below(10) {
                    0..=1 => run.register(step),
                    2..=4 => run.send(),
                    5..=6 => run.commit(),
                    _ => run.drain(),
                }
                if run.rng.below(5) == 0 {
                    let shard = run.rng.below(count);
                    run.flush(shard);
                }
            }
            run.crash_and_check(&format!("seed {seed}, shards {count}"));
        }
    }
}
