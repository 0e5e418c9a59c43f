//! Power-cut property test: random interleaved histories on 1–3 logged shard states, written
//! by the real segment writer onto a [`SimulatedDisk`] whose unsynced writes a cut drops
//! (all of them, a random subset of their sectors, or each file's last one torn), then read
//! back by the real start-up (`read_shard`, `recover`) and run on, cut again, up to three
//! times a history; a quarter of the cuts are kill -9 instead (every write kept). Checked after every cut, in `fsync` and in `batch` mode:
//! - start-up always succeeds, and each shard's log reads back as a prefix of what was
//!   written, every record at its own position, holding at least everything synced (after
//!   kill -9, everything written);
//! - `fsync`: every acknowledged send, drain and registration survives;
//! - `batch`: whatever was synced survives (a loss is confined to what was acknowledged since
//!   the shard's last sync);
//! - no message is visible to some of its recipients and missing for others;
//! - a drain whose record survived never has its messages delivered again.

use futures_lite::future::block_on;
use shards::log::files::{self, ReadCost};
use shards::log::frame::{self, Frame};
use shards::log::journal::{flush_batch, Durability, SegmentWriter};
use shards::log::progress::Ticker;
use shards::log::simulated::{Cut, SimulatedDisk};
use shards::log::watermarks::Watermarks;
use shards::recovery::recover;
use shards::{owner_of, Envelope, Reply, Request, ShardState};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

mod common;

use common::{
    actor, drain_every_inbox, message_to, prepare_on_all, send_owners, upsert, Rng, LIMITS, NAMES,
};

/// Small segments, so histories roll over to new ones (the header takes 4 KiB of it).
const SEGMENT_BYTES: u64 = 10 * 1024;
/// Batch mode's timer never fires by itself here: the history decides when a shard syncs.
const NEVER: Duration = Duration::from_secs(3600);

/// One shard as the flusher sees it.
struct Shard {
    state: ShardState,
    writer: SegmentWriter,
    /// The position after the last record written, and after the last one synced.
    written: u64,
    synced: u64,
    last_sync: Instant,
    /// Every record's payload so far, by position: what reading the log back must match.
    payloads: Vec<Vec<u8>>,
}

/// What an acknowledgement waited for: each shard's log end it needed written (and, for a
/// multi-owner prepare in batch mode, synced).
type Needs = Vec<(usize, u64)>;

struct Drain {
    owner: usize,
    /// The position after the drain's record.
    end: u64,
    name: String,
    ids: Vec<Uuid>,
    acked: bool,
}

struct Prepared {
    id: Uuid,
    owners: Vec<usize>,
    needs: Needs,
}

struct Run {
    rng: Rng,
    mode: Durability,
    root: PathBuf,
    disk: Rc<SimulatedDisk>,
    shards: Vec<Shard>,
    in_flight: Vec<Prepared>,
    /// Acknowledged sends: id -> (recipients, what the reply waited for).
    acked_sends: BTreeMap<Uuid, (BTreeSet<String>, Needs)>,
    /// Every send ever started: id -> recipients.
    recipients_of: HashMap<Uuid, BTreeSet<String>>,
    drains: Vec<Drain>,
    /// Acknowledged registrations: name -> what the reply waited for.
    registered: BTreeMap<&'static str, Needs>,
    next_id: u128,
    step: usize,
    stats: Stats,
}

/// What the cuts did, over a test's histories (printed with `--nocapture`).
#[derive(Debug, Default)]
struct Stats {
    histories: u64,
    /// Power cuts, and kill -9 crashes (every write kept).
    cuts: u64,
    kills: u64,
    /// Acknowledged sends, drains and registrations a cut took (never one that was synced).
    acknowledged_lost: u64,
    /// Records written and not read back.
    records_lost: u64,
    /// Files whose torn tail start-up cut.
    torn_tails: u64,
}

fn generation_dir(root: &Path, count: usize, shard: usize) -> PathBuf {
    root.join(format!("gen-000001-shards-{count}"))
        .join(format!("shard-{shard}"))
}

impl Run {
    fn new(seed: u64, count: usize, mode: Durability, root: PathBuf) -> Run {
        let _ = std::fs::remove_dir_all(&root);
        let generation = files::begin_generation(&root, 1, count).expect("begins");
        files::complete_generation(&root, &generation).expect("completes");
        assert_eq!(generation.shard_dir(0), generation_dir(&root, count, 0));
        let disk = SimulatedDisk::new();
        let shards = (0..count)
            .map(|shard| {
                let state = ShardState::with_log(
                    shard,
                    count,
                    LIMITS,
                    shards::log::LogBuffer::new(true, 0),
                );
                Shard::open(&disk, &root, count, shard, state, 0, Vec::new())
            })
            .collect();
        Run {
            rng: Rng(seed),
            mode,
            root,
            disk,
            shards,
            in_flight: Vec::new(),
            acked_sends: BTreeMap::new(),
            recipients_of: HashMap::new(),
            drains: Vec::new(),
            registered: BTreeMap::new(),
            next_id: 1,
            step: 0,
            stats: Stats::default(),
        }
    }

    fn count(&self) -> usize {
        self.shards.len()
    }

    fn batch_mode(&self) -> bool {
        matches!(self.mode, Durability::Batch { .. })
    }

    /// The flusher's round on `shard`: writes what the state appended as one group commit,
    /// and syncs if the mode says so or `force_sync` (batch mode's timer, or a sync wait).
    fn flush(&mut self, shard: usize, force_sync: bool) {
        let mode = self.mode;
        let shard = &mut self.shards[shard];
        let (batch, end) = shard.take_batch();
        let written = shard.written;
        let flushed = block_on(flush_batch(
            &mut shard.writer,
            mode,
            &batch,
            written,
            end,
            &mut shard.last_sync,
            force_sync,
        ))
        .expect("the simulated disk takes every write");
        shard.written = end;
        if flushed.synced {
            shard.synced = end;
        }
        // A roll-over syncs the segment it leaves, whatever the mode.
        shard.synced = shard.synced.max(shard.writer.synced_end());
        let mut events = Vec::new();
        shard.state.outbox_mut().take_events(end, &mut events);
    }

    /// Releases a reply that needs `needs`: written (batch) or written and synced (fsync),
    /// as the server releases it; `synced` asks for the sync in batch mode too (a prepare).
    fn acknowledge(&mut self, needs: &[(usize, u64)], synced: bool) {
        for &(shard, end) in needs {
            if self.shards[shard].written < end {
                self.flush(shard, false);
            }
            if synced && self.shards[shard].synced < end {
                self.flush(shard, true);
            }
            assert!(self.shards[shard].written >= end);
            if !self.batch_mode() {
                assert!(
                    self.shards[shard].synced >= end,
                    "fsync mode syncs each flush"
                );
            }
        }
    }

    fn end(&self, shard: usize) -> u64 {
        self.shards[shard].state.log().end()
    }

    fn register(&mut self) {
        let name = NAMES[self.rng.below(NAMES.len())];
        let owner = owner_of(name, self.count());
        self.step += 1;
        let reply = self.shards[owner].state.handle(Request::Register(upsert(
            name,
            Uuid::from_u128(10_000 + self.step as u128),
            Uuid::nil(),
            self.step as i64,
        )));
        assert!(matches!(reply, Reply::Registered { .. }));
        let needs = vec![(owner, self.end(owner))];
        self.acknowledge(&needs, false);
        self.registered.entry(name).or_insert(needs);
    }

    fn envelope(&mut self, to: Vec<Box<str>>) -> Arc<Envelope> {
        let id = Uuid::from_u128(self.next_id);
        self.next_id += 1;
        message_to(id, to)
    }

    fn send(&mut self) {
        let recipients: BTreeSet<&str> = (0..1 + self.rng.below(3))
            .map(|_| NAMES[self.rng.below(NAMES.len())])
            .collect();
        let owners = send_owners(&recipients, self.count());
        let names: Vec<Box<str>> = recipients.iter().map(|n| (*n).into()).collect();
        let envelope = self.envelope(names);
        let named: BTreeSet<String> = recipients.iter().map(|n| n.to_string()).collect();
        self.recipients_of.insert(envelope.id, named.clone());
        if let [owner] = owners[..] {
            let reply = self.shards[owner].state.handle(Request::Deliver {
                envelope: Arc::clone(&envelope),
            });
            if matches!(reply, Reply::Delivered(Ok(_))) && self.rng.below(4) > 0 {
                let needs = vec![(owner, self.end(owner))];
                self.acknowledge(&needs, false);
                self.acked_sends.insert(envelope.id, (named, needs));
            }
            return;
        }
        let shards = &mut self.shards;
        let call = |owner: usize, request| {
            let reply = shards[owner].state.handle(request);
            (reply, shards[owner].state.log().end())
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

    /// Commits one in-flight send on every owner once every prepare's reply is out (in
    /// batch mode, once every prepare is synced: the server's rule), and acknowledges it most
    /// of the time. The reply does not wait for the commits.
    fn commit(&mut self) {
        if self.in_flight.is_empty() {
            return;
        }
        let send = self
            .in_flight
            .swap_remove(self.rng.below(self.in_flight.len()));
        let batch_mode = self.batch_mode();
        self.acknowledge(&send.needs, batch_mode);
        let mut owners = send.owners.clone();
        if self.rng.below(2) == 0 {
            owners.reverse();
        }
        for owner in owners {
            self.shards[owner]
                .state
                .handle(Request::Commit { id: send.id });
            if self.rng.below(3) == 0 {
                self.flush(owner, false);
            }
        }
        if self.rng.below(4) > 0 {
            let recipients = self.recipients_of[&send.id].clone();
            self.acked_sends.insert(send.id, (recipients, send.needs));
        }
    }

    fn drain(&mut self) {
        let name = NAMES[self.rng.below(NAMES.len())];
        let owner = owner_of(name, self.count());
        let reply = self.shards[owner].state.handle(Request::Drain {
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
            self.acknowledge(&[(owner, end)], false);
        }
        self.drains.push(Drain {
            owner,
            end,
            name: name.to_string(),
            ids,
            acked,
        });
    }

    /// Whether what an acknowledgement waited for was synced before the cut: then nothing may
    /// lose it. In fsync mode that is every acknowledgement.
    fn must_survive(&self, needs: &[(usize, u64)]) -> bool {
        needs
            .iter()
            .all(|&(shard, end)| end <= self.shards[shard].synced)
    }

    /// Cuts the power, reads the logs back as start-up does, checks every property, and
    /// carries on from the recovered states on a new segment per shard.
    fn cut_and_check(&mut self, context: &str) {
        let count = self.count();
        for shard in 0..count {
            if self.rng.below(2) == 0 {
                self.shards[shard].write_in_flight();
            }
        }
        let cuts = [Cut::Crash, Cut::DropAll, Cut::RandomSectors, Cut::TearLast];
        let cut = cuts[self.rng.below(cuts.len())];
        let context = format!("{context}, {cut:?}");
        let Run { disk, rng, .. } = self;
        disk.cut(cut, &mut |n| rng.below(n.max(1) as usize) as u64)
            .expect("cuts");

        // Each log reads back as a prefix of what was written, at least what was synced.
        let mut ends = Vec::with_capacity(count);
        let mut cost = ReadCost::default();
        for (index, shard) in self.shards.iter().enumerate() {
            let dir = generation_dir(&self.root, count, index);
            let mut report = |_: &_| {};
            let mut ticker = Ticker::new(&mut report);
            let log = files::read_shard(
                &dir,
                index,
                count,
                &|payload: &[u8]| Ok(payload.to_vec()),
                &mut cost,
                &mut ticker,
            )
            .unwrap_or_else(|error| panic!("{context}: shard {index} does not start: {error}"));
            for (seq, payload) in &log.records {
                assert_eq!(
                    Some(payload),
                    shard.payloads.get(*seq as usize),
                    "{context}: shard {index} reads another record at position {seq}"
                );
            }
            assert_eq!(
                log.records.len() as u64,
                log.end,
                "{context}: no record is missing"
            );
            assert!(
                shard.synced <= log.end && log.end <= shard.written,
                "{context}: shard {index} recovered to {}, synced {}, written {}",
                log.end,
                shard.synced,
                shard.written
            );
            if cut == Cut::Crash {
                assert_eq!(log.end, shard.written, "{context}: kill -9 loses no write");
            }
            ends.push(log.end);
            self.stats.records_lost += shard.written - log.end;
        }
        self.stats.torn_tails += cost.torn.len() as u64;
        if cut == Cut::Crash {
            self.stats.kills += 1;
        } else {
            self.stats.cuts += 1;
        }

        // Start-up twice: one copy is drained to check it, the other runs on.
        let fresh = Watermarks::default();
        let start = || {
            recover(&self.root, count, LIMITS, &fresh, &fresh, &mut |_| {})
                .unwrap_or_else(|error| panic!("{context}: does not start: {error}"))
        };
        let mut checked = start();
        let recovered = start();
        assert_eq!(
            recovered.bases, ends,
            "{context}: the logs go on where they end"
        );

        let survived = |&(shard, end): &(usize, u64)| end <= ends[shard];
        let holders = self.check(&context, &mut checked.states, &ends);
        for (name, needs) in &self.registered {
            let owner = owner_of(name, count);
            let found = checked.states[owner].handle(Request::Lookup {
                name: (*name).into(),
                token: None,
            });
            let kept = matches!(found, Reply::Agent(Some(_)));
            if self.must_survive(needs) {
                assert!(
                    kept,
                    "{context}: the registration of {name} was synced and is gone"
                );
            }
            if needs.iter().all(survived) {
                assert!(
                    kept,
                    "{context}: the registration of {name} is on disk and is gone"
                );
            }
        }

        // What the cut took is forgotten; what it kept is on disk now (start-up synced it).
        let lost_drains = self
            .drains
            .iter()
            .filter(|d| d.acked && d.end > ends[d.owner]);
        let lost_sends = self
            .acked_sends
            .keys()
            .filter(|id| !holders.contains_key(id));
        let lost_registrations = self.registered.values().filter(|n| !n.iter().all(survived));
        self.stats.acknowledged_lost +=
            (lost_drains.count() + lost_sends.count() + lost_registrations.count()) as u64;
        self.registered
            .retain(|_, needs| needs.iter().all(survived));
        self.drains.retain(|drain| drain.end <= ends[drain.owner]);
        self.acked_sends.retain(|id, _| holders.contains_key(id));
        self.in_flight.clear();
        let shards = std::mem::take(&mut self.shards);
        let states = recovered.states.into_iter().zip(shards).enumerate();
        for ((index, (state, old)), base) in states.zip(ends) {
            let mut payloads = old.payloads;
            payloads.truncate(base as usize);
            self.shards.push(Shard::open(
                &self.disk, &self.root, count, index, state, base, payloads,
            ));
        }
    }

    /// The properties after recovery, over `states`; returns who holds each message (queued
    /// or taken by a drain whose record survived).
    fn check(
        &self,
        context: &str,
        states: &mut [ShardState],
        ends: &[u64],
    ) -> HashMap<Uuid, BTreeSet<String>> {
        let queued = drain_every_inbox(states);
        let mut holders = queued.clone();
        for drain in &self.drains {
            let survived = drain.end <= ends[drain.owner];
            if drain.acked && self.must_survive(&[(drain.owner, drain.end)]) {
                assert!(survived, "{context}: a synced drain was lost");
            }
            if !survived {
                continue;
            }
            for id in &drain.ids {
                holders.entry(*id).or_default().insert(drain.name.clone());
                assert!(
                    !queued.get(id).is_some_and(|q| q.contains(&drain.name)),
                    "{context}: {id} drained by {} (record kept) is queued again",
                    drain.name
                );
            }
        }
        for (id, (recipients, needs)) in &self.acked_sends {
            if self.must_survive(needs) {
                assert_eq!(
                    holders.get(id),
                    Some(recipients),
                    "{context}: synced send {id} after the cut"
                );
            }
        }
        for (id, held_by) in &holders {
            assert_eq!(
                Some(held_by),
                self.recipients_of.get(id),
                "{context}: {id} is visible to some recipients only"
            );
        }
        holders
    }
}

impl Shard {
    /// What the state appended since the last flush, and the position after it; each
    /// record's payload is remembered at its position.
    fn take_batch(&mut self) -> (Vec<u8>, u64) {
        let (batch, end) = self.state.log_mut().take_batch(Vec::new());
        let mut at = 0;
        while at < batch.len() {
            let Ok(Frame::Payload(payload, len)) = frame::read(&batch[at..]) else {
                panic!("the state wrote a bad frame");
            };
            self.payloads.push(payload.to_vec());
            at += len;
        }
        assert_eq!(self.payloads.len() as u64, end, "one payload per position");
        (batch, end)
    }

    /// A group commit whose write is issued and whose sync has not returned when the power
    /// goes (in fsync mode too): nothing acknowledged waits on it.
    fn write_in_flight(&mut self) {
        let (batch, end) = self.take_batch();
        if !batch.is_empty() {
            block_on(self.writer.write(&batch, self.written, end)).expect("writes");
            self.written = end;
            self.synced = self.synced.max(self.writer.synced_end());
        }
    }

    /// A shard whose log continues at `base` in a new segment on `disk`.
    fn open(
        disk: &Rc<SimulatedDisk>,
        root: &Path,
        count: usize,
        shard: usize,
        state: ShardState,
        base: u64,
        payloads: Vec<Vec<u8>>,
    ) -> Shard {
        let dir = generation_dir(root, count, shard);
        let writer = block_on(SegmentWriter::create_simulated(
            disk,
            &dir,
            shard as u32,
            count as u32,
            base,
            SEGMENT_BYTES,
        ))
        .expect("creates a segment");
        Shard {
            state,
            writer,
            written: base,
            synced: base,
            last_sync: Instant::now(),
            payloads,
        }
    }
}

/// Runs `histories` seeds on 1, 2 and 3 shards in `mode`, each cut one to three times.
fn run_histories(mode: Durability, histories: u64) -> Stats {
    let root = std::env::temp_dir().join(format!("allman-power-cut-{mode}-{}", std::process::id()));
    let mut total = Stats::default();
    for seed in 0..histories {
        for count in [1, 2, 3] {
            let mut run = Run::new(seed, count, mode, root.clone());
            let rounds = 1 + run.rng.below(3);
            for round in 0..rounds {
                let steps = 20 + run.rng.below(60);
                for _ in 0..steps {
                    match run.rng.below(10) {
                        0..=1 => run.register(),
                        2..=4 => run.send(),
                        5..=6 => run.commit(),
                        _ => run.drain(),
                    }
                    if run.rng.below(4) == 0 {
                        let shard = run.rng.below(count);
                        // Batch mode's timer: now and then a round syncs.
                        let sync = run.rng.below(3) == 0;
                        run.flush(shard, sync);
                    }
                }
                run.cut_and_check(&format!("{mode} seed {seed}, {count} shards, cut {round}"));
            }
            total.histories += 1;
            total.cuts += run.stats.cuts;
            total.kills += run.stats.kills;
            total.acknowledged_lost += run.stats.acknowledged_lost;
            total.records_lost += run.stats.records_lost;
            total.torn_tails += run.stats.torn_tails;
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    eprintln!("{mode}: {total:?}");
    total
}

#[test]
fn fsync_mode_loses_nothing_acknowledged_to_a_power_cut() {
    let stats = run_histories(Durability::Fsync, 400);
    assert_eq!(stats.histories, 1_200);
    assert_eq!(stats.acknowledged_lost, 0);
    // The cuts did take writes in flight: the checks above ran on real losses.
    assert!(stats.records_lost > 0 && stats.torn_tails > 0, "{stats:?}");
}

#[test]
fn batch_mode_loses_only_what_was_not_synced_and_never_half_a_send() {
    let mode = Durability::Batch {
        fsync_interval: NEVER,
    };
    let stats = run_histories(mode, 400);
    assert_eq!(stats.histories, 1_200);
    // The cuts did take unsynced work: the checks above ran on real losses.
    assert!(
        stats.acknowledged_lost > 0 && stats.torn_tails > 0,
        "{stats:?}"
    );
}
