//! Start-up: reading every shard's snapshot and log back into states, before anything is
//! served. Plain blocking `std::fs` on the main thread; no executor runs yet.
//!
//! Layout under the log root: one directory per generation, `gen-NNNNNN-shards-C`, holding a
//! `shard-K` directory per shard with its snapshots (`POSITION.snap`) and segments
//! (`BASE.log`), and a `COMPLETE` marker written once the generation is whole. A new
//! generation is made when the shard count changes: every agent (profile and ordered inbox) is
//! moved to its new owner and written as a snapshot, then the marker makes it the one in use.
//!
//! Multi-owner sends are resolved across shards: a message prepared on several owners is
//! delivered if any log marks it visible or every owner's prepare record is present;
//! otherwise it is dropped everywhere.

use super::progress::{Phase, Progress, Ticker};
use super::record::Record;
use super::segment::{scan, Corrupt, FileKind, Header, HEADER_BYTES};
use super::watermarks::Watermarks;
use super::{Emitted, LogBuffer};
use crate::envelope::SharedEnvelope;
use crate::protocol::AgentProfile;
use crate::routing::owner_of;
use crate::state::{ImageEncoder, InboxLimits, ReplayError, ShardState, StateImage};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use uuid::Uuid;

const COMPLETE_MARKER: &str = "COMPLETE";
/// Why the logs could not be recovered. Start-up stops; nothing is dropped silently.
#[derive(Debug)]
pub enum RecoveryError {
    Io {
        path: PathBuf,
        error: io::Error,
    },
    /// A damaged record that is not a torn tail, or a header that does not fit.
    Corrupt {
        path: PathBuf,
        detail: String,
    },
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            RecoveryError::Corrupt { path, detail } => write!(
                f,
                "{}: {detail}; refusing to start rather than drop mail (see docs/OPERATIONS.md, \"A corrupt log\")",
                path.display()
            ),
        }
    }
}

impl std::error::Error for RecoveryError {}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> RecoveryError + '_ {
    move |error| RecoveryError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// One shard's log as read back: its snapshot (position and records) and the records after.
#[derive(Debug, Default)]
pub struct ShardLog {
    pub snapshot: Option<(u64, Vec<Record>)>,
    pub records: Vec<(u64, Record)>,
    /// Records below the snapshot still on disk (compaction keeps them until the search index
    /// and git trail have recorded them): not replayed, only handed to the helpers again.
    pub below_snapshot: Vec<(u64, Record)>,
    /// The position after the last record.
    pub end: u64,
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
    pub delivered_pending: usize,
    pub dropped_pending: usize,
}

/// Rebuilds the states of `logs` (one per shard, in shard order), resolves multi-owner sends
/// and collects what the helper threads have not seen. Logs are enabled on the result, each
/// continuing at its log's end; resolutions are logged there.
pub fn rebuild(
    logs: Vec<ShardLog>,
    limits: InboxLimits,
    generation: u64,
    index: &Watermarks,
    git: &Watermarks,
) -> Result<Rebuilt, (usize, ReplayError)> {
    rebuild_reporting(
        logs,
        limits,
        generation,
        index,
        git,
        &mut Ticker::new(&mut |_| {}),
    )
}

/// [`rebuild`], reporting each [`PROGRESS_INTERVAL`] how many records it has replayed.
fn rebuild_reporting(
    logs: Vec<ShardLog>,
    limits: InboxLimits,
    generation: u64,
    index: &Watermarks,
    git: &Watermarks,
    ticker: &mut Ticker<'_>,
) -> Result<Rebuilt, (usize, ReplayError)> {
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
    let mut states = Vec::with_capacity(count);
    let mut prepared_on: HashMap<Uuid, u16> = HashMap::new();
    let mut visible: HashSet<Uuid> = HashSet::new();
    let mut reindex = Vec::new();
    let mut profiles = Vec::new();
    let mut bases = Vec::with_capacity(count);
    // Snapshot contents go to a helper that has recorded nothing of these logs (a new or
    // rebuilt index, a new trail): each message once, with the shard and position it is
    // handed over at, after the log records and skipping what those handed over.
    let mut snapshot_messages: Vec<(usize, SharedEnvelope, u64)> = Vec::new();
    let mut snapshot_seen: HashSet<Uuid> = HashSet::new();
    for (shard, log) in logs.into_iter().enumerate() {
        bases.push(log.end);
        let mut state = ShardState::with_log(shard, count, limits, LogBuffer::new(true, log.end));
        let index_from = index.of(generation, shard);
        let git_from = git.of(generation, shard);
        let mut note = |record: &Record| match record {
            Record::Prepared { envelope, .. } => {
                *prepared_on.entry(envelope.id).or_default() += 1;
            }
            Record::Visible { id } => {
                visible.insert(*id);
            }
            _ => {}
        };
        // Snapshot profiles go to a new trail at once; snapshot messages after every shard's
        // log records (below).
        if let Some((position, records)) = log.snapshot {
            for record in records {
                note(&record);
                match &record {
                    // Each message once, whichever shard's snapshot holds it first (a
                    // first-format snapshot holds `Enqueued` records).
                    Record::Delivery { envelope, .. }
                    | Record::Sent { envelope, .. }
                    | Record::Enqueued { envelope }
                        if index.generation == 0 && snapshot_seen.insert(envelope.id) =>
                    {
                        let seq = position.saturating_sub(1);
                        snapshot_messages.push((shard, envelope.clone(), seq));
                    }
                    Record::Agent(profile) if git.generation != generation => {
                        let event = profile_event(profile, position.saturating_sub(1));
                        profiles.push((shard, event));
                    }
                    _ => {}
                }
                state.replay(record).map_err(|e| (shard, e))?;
                ticker.replayed();
            }
        }
        let mut handover = Handover {
            shard,
            index_from,
            git_from,
            reindex: &mut reindex,
            profiles: &mut profiles,
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
            note(&record);
            handover.note(seq, &record, &state, |id| {
                state.pending_send(id).map(|send| send.envelope.clone())
            });
            state.replay(record).map_err(|e| (shard, e))?;
            ticker.replayed();
        }
        states.push(state);
    }
    // Snapshot contents last, skipping what any shard's log records handed over already.
    if !snapshot_messages.is_empty() {
        let handed: HashSet<Uuid> = reindex
            .iter()
            .filter_map(|(_, event)| match event {
                Emitted::Message { envelope, .. } => Some(envelope.id),
                Emitted::Profile { .. } => None,
            })
            .collect();
        for (shard, envelope, seq) in snapshot_messages {
            if !handed.contains(&envelope.id) {
                reindex.push((shard, Emitted::Message { envelope, seq }));
            }
        }
    }
    let (mut delivered_pending, mut dropped_pending) = (0, 0);
    for state in &mut states {
        let unsettled: Vec<(Uuid, u16)> =
            state.pending().map(|p| (p.envelope.id, p.owners)).collect();
        for (id, owners) in unsettled {
            let everywhere = prepared_on.get(&id).copied().unwrap_or(0) >= owners;
            if visible.contains(&id) || everywhere {
                state.commit(id);
                delivered_pending += 1;
            } else {
                state.abort(id);
                dropped_pending += 1;
            }
        }
        // Resolutions emit like live commits; they wait in the log buffer for the flusher.
    }
    Ok(Rebuilt {
        states,
        bases,
        reindex,
        profiles,
        delivered_pending,
        dropped_pending,
    })
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

/// Where a generation's files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub number: u64,
    pub shard_count: usize,
    pub dir: PathBuf,
}

impl Generation {
    fn new(root: &Path, number: u64, shard_count: usize) -> Generation {
        Generation {
            number,
            shard_count,
            dir: root.join(format!("gen-{number:06}-shards-{shard_count}")),
        }
    }

    pub fn shard_dir(&self, shard: usize) -> PathBuf {
        self.dir.join(format!("shard-{shard}"))
    }

    fn parse(root: &Path, name: &str) -> Option<Generation> {
        let rest = name.strip_prefix("gen-")?;
        let (number, count) = rest.split_once("-shards-")?;
        Some(Generation::new(
            root,
            number.parse().ok()?,
            count.parse().ok()?,
        ))
    }
}

/// The generation in use (the newest complete one), after removing unfinished or superseded
/// ones; `None` on a fresh data directory.
pub fn current_generation(root: &Path) -> Result<Option<Generation>, RecoveryError> {
    fs::create_dir_all(root).map_err(io_error(root))?;
    let mut found: Vec<(Generation, bool)> = Vec::new();
    for entry in fs::read_dir(root).map_err(io_error(root))? {
        let entry = entry.map_err(io_error(root))?;
        let name = entry.file_name();
        if let Some(generation) = name.to_str().and_then(|n| Generation::parse(root, n)) {
            let complete = generation.dir.join(COMPLETE_MARKER).exists();
            found.push((generation, complete));
        }
    }
    found.sort_by_key(|(g, _)| g.number);
    let current = found
        .iter()
        .rev()
        .find(|(_, complete)| *complete)
        .map(|(g, _)| g.clone());
    for (generation, _) in &found {
        if Some(generation) != current.as_ref() {
            fs::remove_dir_all(&generation.dir).map_err(io_error(&generation.dir))?;
        }
    }
    Ok(current)
}

/// Creates generation `number` for `states`: a snapshot per shard at position 0, synced,
/// then the marker that makes it current.
pub fn create_generation(
    root: &Path,
    number: u64,
    states: &mut [ShardState],
) -> Result<Generation, RecoveryError> {
    let generation = Generation::new(root, number, states.len());
    if generation.dir.exists() {
        fs::remove_dir_all(&generation.dir).map_err(io_error(&generation.dir))?;
    }
    for (shard, state) in states.iter_mut().enumerate() {
        let dir = generation.shard_dir(shard);
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        // A shard may own projects' reservations without owning any agent.
        if state.agent_count() > 0 || state.has_projects() {
            let image = state.image();
            write_snapshot(&dir, shard, states_len(&generation), &image)?;
        }
        sync_dir(&dir)?;
    }
    let marker = generation.dir.join(COMPLETE_MARKER);
    fs::File::create(&marker)
        .and_then(|f| f.sync_all())
        .map_err(io_error(&marker))?;
    sync_dir(&generation.dir)?;
    sync_dir(root)?;
    Ok(generation)
}

fn states_len(generation: &Generation) -> usize {
    generation.shard_count
}

pub fn sync_dir(dir: &Path) -> Result<(), RecoveryError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// The name of the snapshot that stands for every record below `position`.
pub fn snapshot_name(position: u64) -> String {
    format!("{position:020}.snap")
}

/// Writes `image` as a snapshot in `dir`: to a temporary name, synced, then renamed.
pub fn write_snapshot(
    dir: &Path,
    shard: usize,
    shard_count: usize,
    image: &StateImage,
) -> Result<PathBuf, RecoveryError> {
    let header = Header::snapshot(shard as u32, shard_count as u32, image.position);
    let path = dir.join(snapshot_name(image.position));
    let temporary = path.with_extension("snap.tmp");
    let mut file = io::BufWriter::new(fs::File::create(&temporary).map_err(io_error(&temporary))?);
    let mut buffer = header.encode();
    let mut encoder = ImageEncoder::new(image);
    loop {
        let done = encoder.fill(&mut buffer, 1 << 20);
        file.write_all(&buffer).map_err(io_error(&temporary))?;
        buffer.clear();
        if done {
            break;
        }
    }
    file.flush()
        .and_then(|()| file.get_ref().sync_all())
        .map_err(io_error(&temporary))?;
    fs::rename(&temporary, &path).map_err(io_error(&path))?;
    sync_dir(dir)?;
    Ok(path)
}

/// Reads one shard's directory: the newest snapshot, then every segment's records from the
/// snapshot's position on. A torn tail of the last segment is cut from the file and
/// reported; anything else damaged is an error naming the file and offset.
pub fn read_shard(
    dir: &Path,
    shard: usize,
    shard_count: usize,
    report: &mut Report,
    ticker: &mut Ticker<'_>,
) -> Result<ShardLog, RecoveryError> {
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let mut snapshots: Vec<(u64, PathBuf)> = Vec::new();
    let mut segments: Vec<(u64, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        let number = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok());
        match (path.extension().and_then(|e| e.to_str()), number) {
            (Some("snap"), Some(n)) => snapshots.push((n, path)),
            (Some("log"), Some(n)) => segments.push((n, path)),
            // A snapshot that was never finished.
            (Some("tmp"), _) => fs::remove_file(&path).map_err(io_error(&path))?,
            _ => {}
        }
    }
    snapshots.sort();
    segments.sort();
    let mut log = ShardLog::default();
    if let Some((position, path)) = snapshots.last() {
        let bytes = read_reporting(path, ticker)?;
        report.bytes_read += bytes.len() as u64;
        let scanned = check_and_scan(path, &bytes, FileKind::Snapshot, shard, shard_count)?;
        log.snapshot = Some((
            *position,
            scanned.records.into_iter().map(|(_, r)| r).collect(),
        ));
        log.end = *position;
    }
    let last = segments.len().saturating_sub(1);
    for (index, (base, path)) in segments.iter().enumerate() {
        let bytes = read_reporting(path, ticker)?;
        report.bytes_read += bytes.len() as u64;
        if index == last && never_written(&bytes) {
            // A crash between creating the segment and writing its header: it holds nothing.
            fs::remove_file(path).map_err(io_error(path))?;
            continue;
        }
        let scanned = check_and_scan(path, &bytes, FileKind::Segment, shard, shard_count)?;

        if *base > log.end {
            return Err(RecoveryError::Corrupt {
                path: path.clone(),
                detail: format!(
                    "starts at record {base}, but the log before it ends at {}",
                    log.end
                ),
            });
        }
        if scanned.torn_bytes > 0 {
            if index < last {
                return Err(RecoveryError::Corrupt {
                    path: path.clone(),
                    detail: format!(
                        "damaged record at byte offset {} in a segment that is not the last",
                        scanned.valid_bytes
                    ),
                });
            }
            report.torn.push((path.clone(), scanned.torn_bytes));
        }
        if index == last && scanned.records.is_empty() && scanned.next_seq == *base {
            // Created by a run that wrote nothing to it: this run creates it again.
            fs::remove_file(path).map_err(io_error(path))?;
            continue;
        }
        if index == last {
            // Cuts a torn tail, and gives back the space preallocated past the last record.
            cut_to(path, scanned.valid_bytes)?;
        }
        for (seq, record) in scanned.records {
            if seq >= log.end {
                log.records.push((seq, record));
            } else {
                log.below_snapshot.push((seq, record));
            }
        }
        log.end = log.end.max(scanned.next_seq);
    }
    report.records += log.records.len();
    Ok(log)
}

/// Bytes read between two progress checks: a snapshot (the whole state) can be gigabytes.
const READ_CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// Reads a whole file in chunks, telling the ticker after each.
fn read_reporting(path: &Path, ticker: &mut Ticker<'_>) -> Result<Vec<u8>, RecoveryError> {
    use std::io::Read;
    let mut file = fs::File::open(path).map_err(io_error(path))?;
    let size = file.metadata().map_or(0, |m| m.len() as usize);
    let mut bytes = Vec::with_capacity(size);
    loop {
        let before = bytes.len();
        let read = (&mut file)
            .take(READ_CHUNK_BYTES as u64)
            .read_to_end(&mut bytes)
            .map_err(io_error(path))?;
        if read == 0 {
            return Ok(bytes);
        }
        ticker.read((bytes.len() - before) as u64);
    }
}

/// Bytes of the files [`read_shard`] reads in `dir` (its segments and newest snapshot), for
/// the progress report; 0 for what cannot be listed (reading will say why).
fn files_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let (mut segments, mut newest_snapshot) = (0u64, (0u64, 0u64));
    for entry in entries.flatten() {
        let path = entry.path();
        let size = entry.metadata().map_or(0, |m| m.len());
        let number = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok());
        match (path.extension().and_then(|e| e.to_str()), number) {
            (Some("log"), Some(_)) => segments += size,
            (Some("snap"), Some(n)) if n >= newest_snapshot.0 => newest_snapshot = (n, size),
            _ => {}
        }
    }
    segments + newest_snapshot.1
}

/// A segment whose header never made it to disk and that holds no data after it.
fn never_written(bytes: &[u8]) -> bool {
    Header::decode(bytes).is_err()
        && bytes
            .get(HEADER_BYTES..)
            .is_none_or(|rest| rest.iter().all(|b| *b == 0))
}

fn check_and_scan(
    path: &Path,
    bytes: &[u8],
    kind: FileKind,
    shard: usize,
    shard_count: usize,
) -> Result<super::segment::Scanned, RecoveryError> {
    let corrupt = |detail: String| RecoveryError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let header = Header::decode(bytes).map_err(corrupt)?;
    if header.kind != kind
        || header.shard as usize != shard
        || header.shard_count as usize != shard_count
    {
        return Err(corrupt(format!(
            "header says {:?} of shard {} of {}, expected {kind:?} of shard {shard} of {shard_count}",
            header.kind, header.shard, header.shard_count
        )));
    }
    scan(bytes, &header)
        .map_err(|Corrupt { offset, reason }| corrupt(format!("byte offset {offset}: {reason}")))
}

/// Cuts a segment after its last valid record (the next run writes a new segment after it).
fn cut_to(path: &Path, valid_bytes: usize) -> Result<(), RecoveryError> {
    let file = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error(path))?;
    file.set_len(valid_bytes as u64)
        .and_then(|()| file.sync_all())
        .map_err(io_error(path))
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
    let Some(generation) = current_generation(root)? else {
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
            report,
        });
    };
    let mut ticker = Ticker::new(progress);
    ticker.progress.bytes_total = (0..generation.shard_count)
        .map(|shard| files_bytes(&generation.shard_dir(shard)))
        .sum();
    let mut logs = Vec::with_capacity(generation.shard_count);
    for shard in 0..generation.shard_count {
        logs.push(read_shard(
            &generation.shard_dir(shard),
            shard,
            generation.shard_count,
            &mut report,
            &mut ticker,
        )?);
    }
    let rebuilt = rebuild_reporting(logs, limits, generation.number, index, git, &mut ticker)
        .map_err(|(shard, e)| RecoveryError::Corrupt {
            path: generation.shard_dir(shard),
            detail: e.0,
        })?;
    let mut reindex = rebuilt.reindex;
    report.delivered_pending = rebuilt.delivered_pending;
    report.dropped_pending = rebuilt.dropped_pending;
    let (mut states, generation, bases) = if generation.shard_count == shard_count {
        (rebuilt.states, generation, rebuilt.bases)
    } else {
        report.resharded_from = Some(generation.shard_count);
        let mut old = rebuilt.states;
        for (shard, state) in old.iter_mut().enumerate() {
            // Resolutions would have been emitted after their first flush; there is none.
            let mut events = Vec::new();
            state.log_mut().take_events(u64::MAX, &mut events);
            reindex.extend(events.into_iter().map(|event| (shard, event)));
        }
        let mut states = reshard(old, shard_count, limits).map_err(|e| RecoveryError::Corrupt {
            path: generation.dir.clone(),
            detail: e.0,
        })?;
        let next = create_generation(root, generation.number + 1, &mut states)?;
        fs::remove_dir_all(&generation.dir).map_err(io_error(&generation.dir))?;
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
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;
    use crate::protocol::AgentProfile;
    use std::sync::Arc;

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
            state: super::super::record::DeliveryState {
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
        }
    }

    #[test]
    fn records_below_a_snapshot_are_handed_over_only_past_the_helpers_position() {
        let behind = Watermarks {
            generation: 7,
            positions: vec![1],
        };
        let rebuilt = rebuild(vec![log()], LIMITS, 7, &behind, &behind).expect("rebuilds");
        assert_eq!(reindexed(&rebuilt), vec![1, 2], "the index lacks 1 and 2");
        assert_eq!(
            rebuilt.states[0].queued_messages(),
            2,
            "replayed once, not twice"
        );
        let caught_up = Watermarks {
            generation: 7,
            positions: vec![3],
        };
        let rebuilt = rebuild(vec![log()], LIMITS, 7, &caught_up, &caught_up).expect("rebuilds");
        assert!(reindexed(&rebuilt).is_empty());
        assert!(rebuilt.profiles.is_empty());
        let other_generation = Watermarks {
            generation: 6,
            positions: vec![3],
        };
        let rebuilt = rebuild(vec![log()], LIMITS, 7, &other_generation, &other_generation)
            .expect("rebuilds");
        assert_eq!(
            reindexed(&rebuilt),
            vec![1, 2],
            "another generation's positions mean nothing"
        );
        assert_eq!(rebuilt.bases, vec![3]);
    }

    #[test]
    fn only_a_segment_with_no_header_and_no_data_counts_as_never_written() {
        assert!(never_written(&[]));
        assert!(never_written(&[0; 100]));
        assert!(never_written(&vec![0; 3 * HEADER_BYTES]));
        let mut garbage_header = vec![0; 2 * HEADER_BYTES];
        garbage_header[..8].copy_from_slice(b"ALLMANLX");
        assert!(
            never_written(&garbage_header),
            "a torn header, nothing after it"
        );
        garbage_header[HEADER_BYTES + 3] = 1;
        assert!(
            !never_written(&garbage_header),
            "data after a bad header is corruption"
        );
        let header = Header {
            kind: FileKind::Segment,
            shard: 0,
            shard_count: 1,
            base_seq: 0,
            block_bytes: 512,
        };
        assert!(!never_written(&header.encode()));
    }

    #[test]
    fn a_new_index_gets_the_snapshot_contents_once() {
        let fresh = Watermarks::default();
        let rebuilt = rebuild(vec![log()], LIMITS, 7, &fresh, &fresh).expect("rebuilds");
        assert_eq!(
            reindexed(&rebuilt),
            vec![1, 2],
            "message 10 is in the snapshot and below it: handed over once"
        );
        let mut compacted = log();
        compacted.below_snapshot.clear();
        let rebuilt = rebuild(vec![compacted], LIMITS, 7, &fresh, &fresh).expect("rebuilds");
        assert_eq!(
            reindexed(&rebuilt),
            vec![2, 1],
            "the log's record, then the snapshot's message (at the position below it)"
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
                }
            })
            .collect();
        let fresh = Watermarks::default();
        let rebuilt = rebuild(logs, LIMITS, 7, &fresh, &fresh).expect("rebuilds");
        let messages: Vec<u128> = rebuilt
            .reindex
            .iter()
            .filter_map(|(_, event)| match event {
                Emitted::Message { envelope, .. } => Some(envelope.id.as_u128()),
                Emitted::Profile { .. } => None,
            })
            .collect();
        assert_eq!(messages, vec![10]);
    }

    #[test]
    fn watermarks_round_trip_through_their_text_form() {
        let marks = Watermarks {
            generation: 3,
            positions: vec![10, 0, 7],
        };
        let text = format!("agents: 2 registered\n\n{}\n", marks.to_text());
        assert_eq!(Watermarks::from_text(&text), Some(marks));
        assert_eq!(Watermarks::from_text("no progress here"), None);
    }
}
