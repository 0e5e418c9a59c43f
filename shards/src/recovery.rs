//! Start-up: the shards' states rebuilt from their logs, before anything is served. The log
//! reads its files back as records ([`crate::log::files`]); here they are replayed into states
//! ([`ShardState::replay`]), multi-owner sends are resolved, what the helper threads have not
//! seen is collected, and a changed shard count moves every agent to its new owner.
//!
//! A new generation is made when the shard count changes: every agent (profile and ordered
//! inbox) is moved to its new owner and written as a snapshot, then the marker makes it the
//! one in use.
//!
//! Multi-owner sends are resolved across shards: a message prepared on several owners is
//! delivered if any log marks it visible or every owner's prepare record is present;
//! otherwise it is dropped everywhere.

use crate::envelope::SharedEnvelope;
use crate::log::files::{self, Generation, LogFiles, ReadCost, RecordAt};
use crate::log::progress::{Phase, Progress, Ticker};
use crate::log::watermarks::{LogIdentity, Watermarks};
use crate::log::LogBuffer;
use crate::protocol::AgentProfile;
use crate::routing::owner_of;
use crate::state::outbox::Emitted;
use crate::state::record::{self, Record};
use crate::state::{ImageEncoder, InboxLimits, ReplayError, ShardState};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use uuid::Uuid;

pub use crate::log::files::RecoveryError;

/// One shard's log as read back, its records decoded.
pub type ShardLog = files::ShardLog<Record>;

/// A record from a frame's payload, for [`files::read_shard`].
fn decode(payload: &[u8]) -> Result<Record, &'static str> {
    record::decode_payload(payload).map_err(|error| match error {
        record::DecodeError::Malformed(reason) => reason,
        record::DecodeError::Truncated | record::DecodeError::Checksum => "a bad frame",
    })
}

/// What was recovered and what it cost.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub agents: usize,
    pub queued_messages: usize,
    pub records: usize,
    pub bytes_read: u64,
    pub delivered_pending: usize,
    pub dropped_pending: usize,
    /// Files whose torn tail was cut, and how many bytes.
    pub torn: Vec<(PathBuf, usize)>,
    pub resharded_from: Option<usize>,
    pub took: Duration,
}

/// States rebuilt from logs, and what must be handed to the helper threads again.
#[derive(Debug)]
pub struct Rebuilt {
    pub states: Vec<ShardState>,
    /// Where each shard's log on disk ends: the first position the next run writes.
    pub bases: Vec<u64>,
    /// Messages past the index watermark (and profiles past the git one), with the shard
    /// whose log holds them, in log order per shard.
    pub reindex: Vec<(usize, Emitted)>,
    pub profiles: Vec<(usize, Emitted)>,
    /// For a new index only: the snapshots' messages that no log record hands over, each
    /// once. They carry no log position (a snapshot stands for every record below it), so the
    /// index must hold all of them before its first commit (see [`SnapshotMessages`]).
    pub snapshot_messages: SnapshotMessages,
    pub delivered_pending: usize,
    pub dropped_pending: usize,
}

/// Rebuilds the states of `logs` (one per shard, in shard order), resolves multi-owner sends
/// and collects what the helper threads have not seen. Logs are enabled on the result, each
/// continuing at its log's end; resolutions are logged there.
pub fn rebuild(
    logs: Vec<ShardLog>,
    limits: InboxLimits,
    log: LogIdentity,
    index: &Watermarks,
    git: &Watermarks,
) -> Result<Rebuilt, ReplayFailure> {
    rebuild_reporting(logs, limits, log, index, git, &mut Ticker::new(&mut |_| {}))
}

/// [`rebuild`], reporting each [`crate::log::progress::PROGRESS_INTERVAL`] how many records it
/// has replayed.
fn rebuild_reporting(
    logs: Vec<ShardLog>,
    limits: InboxLimits,
    log: LogIdentity,
    index: &Watermarks,
    git: &Watermarks,
    ticker: &mut Ticker<'_>,
) -> Result<Rebuilt, ReplayFailure> {
    let count = logs.len();
    ticker.progress.phase = Phase::Replaying;
    ticker.progress.records_total = logs
        .iter()
        .map(|log| {
            let snapshot = log
                .snapshot
                .as_ref()
                .map_or(0, |(_, records)| records.len());
            (snapshot + log.records.len()) as u64
        })
        .sum();
    let mut replay = Replay {
        limits,
        count,
        log,
        index,
        git,
        sends: Sends::default(),
        reindex: Vec::new(),
        profiles: Vec::new(),
        snapshot_messages: Vec::new(),
        snapshot_seen: HashSet::new(),
    };
    let mut states = Vec::with_capacity(count);
    let mut bases = Vec::with_capacity(count);
    for (shard, log) in logs.into_iter().enumerate() {
        bases.push(log.end);
        let state = (replay.shard(shard, log, ticker)).map_err(|(at, error)| ReplayFailure {
            shard,
            at,
            error,
        })?;
        states.push(state);
    }
    let reindex = replay.reindex;
    let snapshot_messages = not_handed_over(&reindex, replay.snapshot_messages);
    let (delivered_pending, dropped_pending) = replay.sends.resolve(&mut states);
    Ok(Rebuilt {
        states,
        bases,
        reindex,
        profiles: replay.profiles,
        snapshot_messages,
        delivered_pending,
        dropped_pending,
    })
}

/// A record that reads back whole but does not fit the state replayed so far.
#[derive(Debug)]
pub struct ReplayFailure {
    pub shard: usize,
    pub at: RecordAt,
    pub error: ReplayError,
}

impl ReplayFailure {
    /// The error start-up stops with: the file and byte offset of the record, so the
    /// corrupt-log recipe (truncate there) can be followed.
    fn into_error(self, generation: &Generation, files: &[LogFiles]) -> RecoveryError {
        let located = files.get(self.shard).and_then(|f| f.locate(self.at));
        let (path, offset) = located.unwrap_or((generation.shard_dir(self.shard), None));
        let place = match (offset, self.at) {
            (Some(offset), _) => format!("byte offset {offset}"),
            (None, RecordAt::Snapshot(index)) => format!("snapshot record {index}"),
            (None, RecordAt::Log(seq)) => format!("log position {seq}"),
        };
        RecoveryError::Corrupt {
            path,
            detail: format!("{place}: a record that does not replay: {}", self.error),
        }
    }
}

/// What the logs say of multi-owner sends: on how many owners each was prepared, and which
/// any owner made visible.
#[derive(Default)]
struct Sends {
    prepared_on: HashMap<Uuid, u16>,
    visible: HashSet<Uuid>,
}

impl Sends {
    fn note(&mut self, record: &Record) {
        match record {
            Record::Prepared { envelope, .. } => {
                *self.prepared_on.entry(envelope.id).or_default() += 1;
            }
            Record::Visible { id } => {
                self.visible.insert(*id);
            }
            _ => {}
        }
    }

    /// Settles every send still pending in `states`: delivered if any owner made it visible
    /// or every owner prepared it, else dropped. Returns (delivered, dropped). Resolutions
    /// emit like live commits; they wait in the log buffer for the flusher.
    fn resolve(&self, states: &mut [ShardState]) -> (usize, usize) {
        let (mut delivered, mut dropped) = (0, 0);
        for state in states {
            let unsettled: Vec<(Uuid, u16)> =
                state.pending().map(|p| (p.envelope.id, p.owners)).collect();
            for (id, owners) in unsettled {
                let everywhere = self.prepared_on.get(&id).copied().unwrap_or(0) >= owners;
                if self.visible.contains(&id) || everywhere {
                    state.commit(id);
                    delivered += 1;
                } else {
                    state.abort(id);
                    dropped += 1;
                }
            }
        }
        (delivered, dropped)
    }
}

/// One rebuild's running state across the shards' logs.
struct Replay<'a> {
    limits: InboxLimits,
    count: usize,
    /// The log being replayed, as the helpers' watermarks name it.
    log: LogIdentity,
    index: &'a Watermarks,
    git: &'a Watermarks,
    sends: Sends,
    reindex: Vec<(usize, Emitted)>,
    profiles: Vec<(usize, Emitted)>,
    /// Snapshot contents go to a helper that has recorded nothing of these logs (a new or
    /// rebuilt index, a new trail): each message once, skipping what log records hand over.
    snapshot_messages: SnapshotMessages,
    snapshot_seen: HashSet<Uuid>,
}

impl Replay<'_> {
    /// Replays one shard's snapshot and records into its state, noting what the helpers
    /// have not seen.
    fn shard(
        &mut self,
        shard: usize,
        log: ShardLog,
        ticker: &mut Ticker<'_>,
    ) -> Result<ShardState, (RecordAt, ReplayError)> {
        let buffer = LogBuffer::new(true, log.end);
        let mut state = ShardState::with_log(shard, self.count, self.limits, buffer);
        // Snapshot profiles go to a new trail at once; snapshot messages before every log
        // record, without a position (see `SnapshotMessages`).
        if let Some((position, records)) = log.snapshot {
            for (index, record) in records.into_iter().enumerate() {
                self.sends.note(&record);
                self.note_snapshot_record(shard, position, &record);
                let at = RecordAt::Snapshot(index);
                state.replay(record).map_err(|error| (at, error))?;
                ticker.replayed();
            }
        }
        let mut handover = Handover {
            shard,
            index_from: self.index.of(self.log, shard),
            git_from: self.git.of(self.log, shard),
            reindex: &mut self.reindex,
            profiles: &mut self.profiles,
        };
        // Prepared messages below the snapshot, by id, for their Visible records there.
        let mut prepared_below: HashMap<Uuid, SharedEnvelope> = HashMap::new();
        for (seq, record) in log.below_snapshot {
            if let Record::Prepared { envelope, .. } = &record {
                prepared_below.insert(envelope.id, envelope.clone());
            }
            handover.note(seq, &record, &state, |id| prepared_below.remove(id));
        }
        for (seq, record) in log.records {
            self.sends.note(&record);
            handover.note(seq, &record, &state, |id| {
                state.pending_send(id).map(|send| send.envelope.clone())
            });
            let at = RecordAt::Log(seq);
            state.replay(record).map_err(|error| (at, error))?;
            ticker.replayed();
        }
        Ok(state)
    }

    /// A snapshot's message for a new index (each once, whichever shard's snapshot holds it
    /// first; a first-format snapshot holds `Enqueued` records), and its profile for a new
    /// trail.
    fn note_snapshot_record(&mut self, shard: usize, position: u64, record: &Record) {
        match record {
            Record::Delivery { envelope, .. }
            | Record::Sent { envelope, .. }
            | Record::Enqueued { envelope }
                if self.index.is_new() && self.snapshot_seen.insert(envelope.id) =>
            {
                self.snapshot_messages.push(envelope.clone());
            }
            Record::Agent(profile) if self.git.log != self.log => {
                let event = profile_event(profile, position.saturating_sub(1));
                self.profiles.push((shard, event));
            }
            _ => {}
        }
    }
}

/// The snapshots' messages for a new index, handed to it before any log record. A snapshot
/// stands for every record below its position, so no position can say how many of its
/// messages a commit holds: the index commits none of them until it holds all (see
/// `search::indexer`), and a crash before that rebuilds them all again, never losing some.
pub type SnapshotMessages = Vec<SharedEnvelope>;

/// The snapshot messages that no shard's log record hands over (those are handed with their
/// position, so a commit's watermark covers them).
fn not_handed_over(reindex: &[(usize, Emitted)], snapshot: SnapshotMessages) -> SnapshotMessages {
    if snapshot.is_empty() {
        return snapshot;
    }
    let handed: HashSet<Uuid> = reindex
        .iter()
        .filter_map(|(_, event)| match event {
            Emitted::Message { envelope, .. } => Some(envelope.id),
            Emitted::Profile { .. } => None,
        })
        .collect();
    snapshot
        .into_iter()
        .filter(|envelope| !handed.contains(&envelope.id))
        .collect()
}

/// A logged profile, handed to the git writer again: version 1 is its registration.
fn profile_event(profile: &AgentProfile, seq: u64) -> Emitted {
    Emitted::Profile {
        profile: profile.clone(),
        created: profile.version == 1,
        seq,
    }
}

/// What one shard's records hand to the helper threads again: messages at or past the search
/// index's position, profiles at or past the git trail's.
struct Handover<'a> {
    shard: usize,
    index_from: u64,
    git_from: u64,
    reindex: &'a mut Vec<(usize, Emitted)>,
    profiles: &'a mut Vec<(usize, Emitted)>,
}

impl Handover<'_> {
    /// Notes `record` at `seq`; `prepared` finds the message a `Visible` record makes visible.
    fn note(
        &mut self,
        seq: u64,
        record: &Record,
        state: &ShardState,
        prepared: impl FnOnce(&Uuid) -> Option<SharedEnvelope>,
    ) {
        match record {
            Record::Agent(profile) if seq >= self.git_from => {
                self.profiles
                    .push((self.shard, profile_event(profile, seq)));
            }
            Record::Enqueued { envelope } if seq >= self.index_from => {
                let event = Emitted::Message {
                    envelope: envelope.clone(),
                    seq,
                };
                self.reindex.push((self.shard, event));
            }
            // A multi-owner message is indexed by its lowest owner only.
            Record::Visible { id } if seq >= self.index_from => {
                if let Some(envelope) = prepared(id).filter(|e| state.emits(e)) {
                    let event = Emitted::Message { envelope, seq };
                    self.reindex.push((self.shard, event));
                }
            }
            _ => {}
        }
    }
}

/// Moves every agent of `states` (pending sends settled) to its owner among `shard_count`.
pub fn reshard(
    states: Vec<ShardState>,
    shard_count: usize,
    limits: InboxLimits,
) -> Result<Vec<ShardState>, ReplayError> {
    let mut moved: Vec<ShardState> = (0..shard_count)
        .map(|shard| ShardState::with_log(shard, shard_count, limits, LogBuffer::new(true, 0)))
        .collect();
    for mut state in states {
        for project in state.take_projects() {
            let owner = crate::leases::owner_of_project(&project.project_id, shard_count);
            moved[owner].restore_project(project);
        }
        for agent in state.into_agents() {
            let owner = owner_of(&agent.profile.name, shard_count);
            moved[owner].restore_agent(agent)?;
        }
    }
    Ok(moved)
}

/// Creates generation `number` for `states`: a snapshot per shard at position 0, synced,
/// then the marker that makes it current.
pub fn create_generation(
    root: &Path,
    number: u64,
    states: &mut [ShardState],
) -> Result<Generation, RecoveryError> {
    let generation = files::begin_generation(root, number, states.len())?;
    for (shard, state) in states.iter_mut().enumerate() {
        let dir = generation.shard_dir(shard);
        // A shard may own projects' reservations without owning any agent.
        if state.agent_count() > 0 || state.has_projects() {
            let image = state.image();
            let mut encoder = ImageEncoder::new(&image);
            let count = generation.shard_count;
            files::write_snapshot(&dir, shard, count, image.position, |out, piece_bytes| {
                encoder.fill(out, piece_bytes)
            })?;
        }
        files::sync_dir(&dir)?;
    }
    files::complete_generation(root, &generation)?;
    Ok(generation)
}

/// Everything start-up needs to serve from recovered state.
#[derive(Debug)]
pub struct Recovered {
    pub generation: Generation,
    pub states: Vec<ShardState>,
    /// Where each shard's log continues (see [`Rebuilt::bases`]).
    pub bases: Vec<u64>,
    pub reindex: Vec<(usize, Emitted)>,
    pub profiles: Vec<(usize, Emitted)>,
    pub snapshot_messages: SnapshotMessages,
    pub report: Report,
}

/// Reads the current generation under `root` into states for `shard_count` shards, moving
/// agents to new owners (a new generation) if the shard count changed.
pub fn recover(
    root: &Path,
    shard_count: usize,
    limits: InboxLimits,
    index: &Watermarks,
    git: &Watermarks,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Recovered, RecoveryError> {
    let started = Instant::now();
    let mut report = Report::default();
    let Some(generation) = files::current_generation(root)? else {
        let mut states: Vec<ShardState> = (0..shard_count)
            .map(|shard| ShardState::with_log(shard, shard_count, limits, LogBuffer::new(true, 0)))
            .collect();
        let generation = create_generation(root, 1, &mut states)?;
        report.took = started.elapsed();
        return Ok(Recovered {
            generation,
            states,
            bases: vec![0; shard_count],
            reindex: Vec::new(),
            profiles: Vec::new(),
            snapshot_messages: Vec::new(),
            report,
        });
    };
    let mut ticker = Ticker::new(progress);
    let (logs, cost) = read_logs(&generation, &mut ticker)?;
    report.bytes_read = cost.bytes_read;
    report.records = cost.records;
    report.torn = cost.torn;
    let files: Vec<LogFiles> = logs.iter().map(|log| log.files.clone()).collect();
    let rebuilt = rebuild_reporting(logs, limits, generation.identity(), index, git, &mut ticker)
        .map_err(|failure| failure.into_error(&generation, &files))?;
    let mut reindex = rebuilt.reindex;
    report.delivered_pending = rebuilt.delivered_pending;
    report.dropped_pending = rebuilt.dropped_pending;
    let (mut states, generation, bases) = if generation.shard_count == shard_count {
        (rebuilt.states, generation, rebuilt.bases)
    } else {
        report.resharded_from = Some(generation.shard_count);
        let moved = move_to_new_generation(root, generation, rebuilt.states, shard_count, limits);
        let (states, next, resolved) = moved?;
        reindex.extend(resolved);
        (states, next, vec![0; shard_count])
    };
    for state in &mut states {
        report.agents += state.agent_count();
        report.queued_messages += state.queued_messages();
    }
    report.took = started.elapsed();
    Ok(Recovered {
        generation,
        states,
        bases,
        reindex,
        profiles: rebuilt.profiles,
        snapshot_messages: rebuilt.snapshot_messages,
        report,
    })
}

/// Reads every shard's log of `generation`, reporting progress.
fn read_logs(
    generation: &Generation,
    ticker: &mut Ticker<'_>,
) -> Result<(Vec<ShardLog>, ReadCost), RecoveryError> {
    ticker.progress.bytes_total = (0..generation.shard_count)
        .map(|shard| files::files_bytes(&generation.shard_dir(shard)))
        .sum();
    let mut logs = Vec::with_capacity(generation.shard_count);
    let mut cost = ReadCost::default();
    for shard in 0..generation.shard_count {
        logs.push(files::read_shard(
            &generation.shard_dir(shard),
            shard,
            generation.shard_count,
            &decode,
            &mut cost,
            ticker,
        )?);
    }
    Ok((logs, cost))
}

/// What is handed to the helper threads again, each with the shard whose log holds it.
type Handed = Vec<(usize, Emitted)>;

/// Moves every agent of `old` (the states of `generation`) to its owner among `shard_count`
/// shards, writes them as a new generation and removes the old one. Also returns what the
/// old states' send resolutions emit (they would have been emitted after their first flush,
/// and there is none).
fn move_to_new_generation(
    root: &Path,
    generation: Generation,
    mut old: Vec<ShardState>,
    shard_count: usize,
    limits: InboxLimits,
) -> Result<(Vec<ShardState>, Generation, Handed), RecoveryError> {
    let mut resolved = Vec::new();
    for (shard, state) in old.iter_mut().enumerate() {
        let mut events = Vec::new();
        state.outbox_mut().take_events(u64::MAX, &mut events);
        resolved.extend(events.into_iter().map(|event| (shard, event)));
    }
    let mut states = reshard(old, shard_count, limits).map_err(|e| RecoveryError::Corrupt {
        path: generation.dir.clone(),
        detail: e.0,
    })?;
    let next = create_generation(root, generation.number + 1, &mut states)?;
    fs::remove_dir_all(&generation.dir).map_err(|error| RecoveryError::Io {
        path: generation.dir.clone(),
        error,
    })?;
    Ok((states, next, resolved))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;
    use crate::protocol::AgentProfile;
    use std::sync::Arc;

    const LOG: LogIdentity = LogIdentity {
        generation: 7,
        id: Uuid::from_u128(77),
    };
    const LIMITS: InboxLimits = InboxLimits {
        retained_messages: 10_000,
        retained_bytes: usize::MAX,
        messages: 10,
        bytes: usize::MAX,
    };

    fn agent(name: &str) -> Record {
        Record::Agent(AgentProfile {
            id: Uuid::from_u128(1),
            name: name.into(),
            project_id: Uuid::nil(),
            project_key: "k".into(),
            program: "".into(),
            model: "".into(),
            created_ms: 0,
            updated_ms: 0,
            version: 1,
            task_description: "".into(),
            token_hash: None,
        })
    }

    fn message(n: u128, to: &str) -> SharedEnvelope {
        Arc::new(Envelope::compose(crate::envelope::Message {
            to: vec![to.into()],
            ..crate::envelope::Message {
                id: Uuid::from_u128(n),
                project_id: Uuid::nil(),
                timestamp_ms: 0,
                from: "f",
                subject: "",
                body: "",
                thread_id: None,
                reply_to: None,
                importance: crate::envelope::Importance::Normal,
                ack_required: false,
                to: Vec::new(),
                cc: Vec::new(),
            }
        }))
    }

    fn enqueued(n: u128, to: &str) -> Record {
        Record::Enqueued {
            envelope: message(n, to),
        }
    }

    /// A snapshot's copy of message `n`, the first delivery to `to`.
    fn delivered(n: u128, to: &str) -> Record {
        Record::Delivery {
            name: to.into(),
            state: record::DeliveryState {
                seq: 1,
                read_at: None,
                acked_at: None,
                drained: false,
            },
            envelope: message(n, to),
        }
    }

    fn reindexed(rebuilt: &Rebuilt) -> Vec<u64> {
        rebuilt
            .reindex
            .iter()
            .map(|(_, event)| match event {
                Emitted::Message { seq, .. } => *seq,
                Emitted::Profile { seq, .. } => *seq,
            })
            .collect()
    }

    /// A snapshot at 2 (agent and message 10), older records still on disk below it, and one
    /// record after it.
    fn log() -> ShardLog {
        ShardLog {
            snapshot: Some((2, vec![agent("a"), delivered(10, "a")])),
            records: vec![(2, enqueued(11, "a"))],
            below_snapshot: vec![(0, agent("a")), (1, enqueued(10, "a"))],
            end: 3,
            files: Default::default(),
        }
    }

    #[test]
    fn records_below_a_snapshot_are_handed_over_only_past_the_helpers_position() {
        let behind = Watermarks {
            log: LOG,
            positions: vec![1],
        };
        let rebuilt = rebuild(vec![log()], LIMITS, LOG, &behind, &behind).expect("rebuilds");
        assert_eq!(reindexed(&rebuilt), vec![1, 2], "the index lacks 1 and 2");
        assert_eq!(
            rebuilt.states[0].queued_messages(),
            2,
            "replayed once, not twice"
        );
        let caught_up = Watermarks {
            log: LOG,
            positions: vec![3],
        };
        let rebuilt = rebuild(vec![log()], LIMITS, LOG, &caught_up, &caught_up).expect("rebuilds");
        assert!(reindexed(&rebuilt).is_empty());
        assert!(rebuilt.profiles.is_empty());
        let other_generation = Watermarks {
            log: LogIdentity {
                generation: 6,
                ..LOG
            },
            positions: vec![3],
        };
        let rebuilt = rebuild(
            vec![log()],
            LIMITS,
            LOG,
            &other_generation,
            &other_generation,
        )
        .expect("rebuilds");
        assert_eq!(
            reindexed(&rebuilt),
            vec![1, 2],
            "another generation's positions mean nothing"
        );
        assert_eq!(rebuilt.bases, vec![3]);
    }

    #[test]
    fn a_new_index_gets_the_snapshot_contents_once() {
        let fresh = Watermarks::default();
        let rebuilt = rebuild(vec![log()], LIMITS, LOG, &fresh, &fresh).expect("rebuilds");
        assert_eq!(
            reindexed(&rebuilt),
            vec![1, 2],
            "message 10 is in the snapshot and below it: handed over once"
        );
        assert!(rebuilt.snapshot_messages.is_empty());
        let mut compacted = log();
        compacted.below_snapshot.clear();
        let rebuilt = rebuild(vec![compacted], LIMITS, LOG, &fresh, &fresh).expect("rebuilds");
        assert_eq!(
            reindexed(&rebuilt),
            vec![2],
            "the log's record, at its position"
        );
        let ids: Vec<u128> = (rebuilt.snapshot_messages.iter())
            .map(|envelope| envelope.id.as_u128())
            .collect();
        assert_eq!(
            ids,
            vec![10],
            "the snapshot's message, apart: it has no position a watermark could cover"
        );
        assert_eq!(
            rebuilt.profiles.len(),
            1,
            "the snapshot's profile, for a new trail"
        );
    }

    #[test]
    fn a_message_in_several_snapshots_is_handed_to_a_new_index_once() {
        // Two shards whose snapshots (first format: one record per local recipient) both
        // hold message 10.
        let name_on = |shard: usize| {
            (0..)
                .map(|n| format!("n{n}"))
                .find(|name| owner_of(name, 2) == shard)
                .expect("a name")
        };
        let logs: Vec<ShardLog> = (0..2)
            .map(|shard| {
                let name = name_on(shard);
                ShardLog {
                    snapshot: Some((2, vec![agent(&name), enqueued(10, &name)])),
                    records: Vec::new(),
                    below_snapshot: Vec::new(),
                    end: 2,
                    files: Default::default(),
                }
            })
            .collect();
        let fresh = Watermarks::default();
        let rebuilt = rebuild(logs, LIMITS, LOG, &fresh, &fresh).expect("rebuilds");
        assert!(rebuilt.reindex.is_empty());
        let messages: Vec<u128> = (rebuilt.snapshot_messages.iter())
            .map(|envelope| envelope.id.as_u128())
            .collect();
        assert_eq!(messages, vec![10]);
    }

    #[test]
    fn a_record_that_does_not_replay_is_named_by_its_file_and_byte_offset() {
        use crate::log::segment::{BatchHeader, Header, BATCH_HEADER_BYTES, HEADER_BYTES};
        let root = std::env::temp_dir().join(format!("allman-replay-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let generation = files::begin_generation(&root, 1, 1).expect("begins");
        files::complete_generation(&root, &generation).expect("completes");
        let header = Header::segment(0, 1, 0, 512, 1);
        let mut records = Vec::new();
        record::encode(&mut records, &agent("a"));
        let offset = HEADER_BYTES + BATCH_HEADER_BYTES + records.len();
        // Delivered to an agent no record registered: it reads, but does not replay.
        record::encode(&mut records, &enqueued(10, "b"));
        let mut bytes = header.encode();
        let batch = BatchHeader {
            first_seq: 0,
            records_bytes: records.len() as u32,
            synced_before: 0,
        };
        batch.encode(&mut bytes, &records, header.salt);
        bytes.extend_from_slice(&records);
        let segment = generation
            .shard_dir(0)
            .join(crate::log::journal::segment_name(0));
        fs::write(&segment, &bytes).expect("writes the segment");
        let fresh = Watermarks::default();
        let error =
            recover(&root, 1, LIMITS, &fresh, &fresh, &mut |_| {}).expect_err("refuses to start");
        let text = error.to_string();
        let named = format!("{}: byte offset {offset}: ", segment.display());
        assert!(text.starts_with(&named), "{text}");
        assert!(text.contains("who is not registered"), "{text}");
        let _ = fs::remove_dir_all(&root);
    }
}
