//! Durable state at start-up and its hand-over to the shards: the locked data directory,
//! recovery of every shard's log before anything is served, what the helper threads must be
//! given again, and each shard's start kit (its state, its journal, its log directory).
//!
//! The log itself (records, group commit, recovery rules) lives in the shards crate
//! (`shards::log`); this module only wires it to the server's files and helper threads.

use crate::audit::ProfileEvent;
use crate::config::{Config, Durability};
use crate::feed::{Feed, Producer};
use crate::search::SearchDoc;
use shards::log::journal::Journal;
use shards::log::progress::Progress;
use shards::log::watermarks::Watermarks;
use shards::recovery::{self, Report};
use shards::state::outbox::Emitted;
use shards::{InboxLimits, ShardState, SharedEnvelope};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// The lock file in the data directory: held (flock) for the server's whole life; the
/// kernel releases it when the process dies, however it dies.
const LOCK_FILE: &str = "LOCK";
/// The logs' root under the data directory.
const LOG_DIR: &str = "log";

/// The data directory, locked against a second server.
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates (if needed) and locks `path`. Fails at once, naming the directory, if another
    /// server holds it or it cannot be written.
    pub fn lock(path: &Path) -> Result<DataDir, String> {
        std::fs::create_dir_all(path)
            .map_err(|e| format!("cannot create the data directory {}: {e}", path.display()))?;
        let lock = shards::log::files::try_lock_file(path, LOCK_FILE)
            .map_err(|e| format!("the data directory {} is not writable: {e}", path.display()))?
            .ok_or_else(|| {
                format!(
                    "the data directory {} is in use by another running allman; give each \
                     server its own --data-dir",
                    path.display()
                )
            })?;
        Ok(DataDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn log_root(&self) -> PathBuf {
        self.path.join(LOG_DIR)
    }
}

/// What each shard starts from, taken by the shard whose mesh id it is.
pub struct StartKits {
    kits: Mutex<Vec<Option<StartKit>>>,
    pub mode: Durability,
    pub generation: u64,
    pub compact_bytes: u64,
}

/// One shard's state and, with a log, where it continues writing.
pub struct StartKit {
    pub state: ShardState,
    pub log: Option<LogStart>,
}

pub struct LogStart {
    pub dir: PathBuf,
    /// The position the log on disk ends at: the first record this run writes.
    pub base: u64,
    /// Bytes of log segments already in `dir`: counted towards the next snapshot.
    pub bytes_before: u64,
}

/// Bytes of the log segments in `dir`.
fn segment_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

impl StartKits {
    /// The kit of shard `id`, once.
    pub fn take(&self, id: usize) -> Result<StartKit, String> {
        let mut kits = self.kits.lock().unwrap_or_else(|p| p.into_inner());
        kits.get_mut(id)
            .and_then(Option::take)
            .ok_or_else(|| format!("no start state for shard {id}"))
    }

    /// A journal for a kit's log, in this server's mode.
    pub fn journal(&self, log: &LogStart) -> Rc<Journal> {
        Journal::new(self.mode, log.base)
    }
}

/// What start-up recovered, for the log and for the helper threads.
pub struct Recovery {
    pub kits: Arc<StartKits>,
    pub report: Option<Report>,
    /// Where the indexer and the git writer start counting (`None`: no log).
    pub index_watermarks: Option<Watermarks>,
    pub git_watermarks: Option<Watermarks>,
    reindex: Vec<(usize, Emitted)>,
    profiles: Vec<(usize, Emitted)>,
    /// For a new index: the snapshots' messages, handed over before anything else.
    snapshot_messages: Vec<SharedEnvelope>,
    /// Positions in `reindex` and `profiles` belong to the current generation.
    same_generation: bool,
}

/// Each shard's start kit: its state, told what was handed over again, and where its log
/// continues.
fn start_kits(
    states: Vec<ShardState>,
    bases: Vec<u64>,
    emitted_ends: Vec<(u64, u64)>,
    shard_dir: impl Fn(usize) -> PathBuf,
) -> Vec<Option<StartKit>> {
    states
        .into_iter()
        .zip(bases)
        .zip(emitted_ends)
        .enumerate()
        .map(|(shard, ((mut state, base), (message_end, profile_end)))| {
            state
                .outbox_mut()
                .raise_emitted_ends(message_end, profile_end);
            let dir = shard_dir(shard);
            let bytes_before = segment_bytes(&dir);
            Some(StartKit {
                state,
                log: Some(LogStart {
                    dir,
                    base,
                    bytes_before,
                }),
            })
        })
        .collect()
}

/// A long recovery says how far it has got, once a second.
fn log_progress(p: &Progress) {
    tracing::info!(
        phase = ?p.phase,
        percent = p.percent(),
        bytes_read = p.bytes_read,
        bytes_total = p.bytes_total,
        records = p.records,
        records_total = p.records_total,
        "recovering the log"
    );
}

/// Fresh states and no log (`--durability none`).
fn without_log(config: &Config, count: usize, limits: InboxLimits) -> Recovery {
    let kits = (0..count)
        .map(|shard| {
            Some(StartKit {
                state: ShardState::new(shard, count, limits),
                log: None,
            })
        })
        .collect();
    Recovery {
        kits: Arc::new(StartKits {
            kits: Mutex::new(kits),
            mode: config.durability,
            generation: 0,
            compact_bytes: config.log_compact_bytes,
        }),
        report: None,
        index_watermarks: None,
        git_watermarks: None,
        reindex: Vec::new(),
        profiles: Vec::new(),
        snapshot_messages: Vec::new(),
        same_generation: false,
    }
}

/// Per shard, the positions after the last message and the last profile handed over again.
fn emitted_ends(
    count: usize,
    reindex: &[(usize, Emitted)],
    profiles: &[(usize, Emitted)],
) -> Vec<(u64, u64)> {
    let mut ends = vec![(0u64, 0u64); count];
    for (shard, event) in reindex.iter().chain(profiles) {
        match event {
            Emitted::Message { seq, .. } => ends[*shard].0 = ends[*shard].0.max(seq + 1),
            Emitted::Profile { seq, .. } => ends[*shard].1 = ends[*shard].1.max(seq + 1),
        }
    }
    ends
}

/// Reads the logs under `data_dir` into the shards' start states (or fresh states without
/// a log). `index` and `git` are how far the helper threads got before, as they recorded it.
pub fn recover(
    config: &Config,
    data_dir: &DataDir,
    index: Option<Watermarks>,
    git: Option<Watermarks>,
) -> Result<Recovery, String> {
    let limits = InboxLimits {
        messages: config.max_inbox_messages,
        bytes: config.max_inbox_bytes,
        retained_messages: config.max_retained_messages,
        retained_bytes: config.max_retained_bytes,
    };
    let count = config.shard_count();
    if config.durability == Durability::None {
        return Ok(without_log(config, count, limits));
    }
    let index = index.unwrap_or_default();
    let git = git.unwrap_or_default();
    let root = data_dir.log_root();
    let recovered = recovery::recover(&root, count, limits, &index, &git, &mut log_progress)
        .map_err(|e| format!("cannot recover the log: {e}"))?;
    let generation = recovered.generation.number;
    let same_generation = recovered.report.resharded_from.is_none();
    // Where the helpers resume: their own positions if they are this log's, never past its
    // ends.
    let log = recovered.generation.identity();
    let index_watermarks = index.resumed(log, &recovered.bases);
    let git_watermarks = git.resumed(log, &recovered.bases);
    // What was handed to the helpers again must reach them before older log is deleted.
    let emitted_ends = if same_generation {
        emitted_ends(count, &recovered.reindex, &recovered.profiles)
    } else {
        vec![(0, 0); count]
    };
    let generation_dir = |shard| recovered.generation.shard_dir(shard);
    let kits = start_kits(
        recovered.states,
        recovered.bases,
        emitted_ends,
        generation_dir,
    );
    Ok(Recovery {
        kits: Arc::new(StartKits {
            kits: Mutex::new(kits),
            mode: config.durability,
            generation,
            compact_bytes: config.log_compact_bytes,
        }),
        report: Some(recovered.report),
        index_watermarks: Some(index_watermarks),
        git_watermarks: Some(git_watermarks),
        reindex: recovered.reindex,
        profiles: recovered.profiles,
        snapshot_messages: recovered.snapshot_messages,
        same_generation,
    })
}

impl Recovery {
    /// How many documents a new index takes from the snapshots before any other: it commits
    /// none of them until it has all (see `search::indexer`).
    pub fn snapshot_documents(&self) -> usize {
        self.snapshot_messages.len()
    }

    /// Hands the helper threads what they had not finished before the last stop: a new
    /// index's snapshot messages first (no log position), then messages past the index's
    /// position and profiles past the git trail's, in log order. Returns how many messages
    /// and profiles.
    pub fn hand_over(
        &mut self,
        search: &Producer<SearchDoc>,
        audit: &Producer<ProfileEvent>,
    ) -> (usize, usize) {
        let same_generation = self.same_generation;
        let origin = |shard: usize, seq: u64| same_generation.then_some((shard, seq));
        let snapshot = self.snapshot_messages.len();
        for envelope in self.snapshot_messages.drain(..) {
            let (doc, bytes) = search_doc(envelope, None);
            search.send_unbounded(doc, bytes);
        }
        let (messages, profiles) = (snapshot + self.reindex.len(), self.profiles.len());
        for (shard, event) in self.reindex.drain(..).chain(self.profiles.drain(..)) {
            match to_item(event, |seq| origin(shard, seq)) {
                Item::Doc(doc, bytes) => search.send_unbounded(doc, bytes),
                Item::Profile(profile, bytes) => audit.send_unbounded(profile, bytes),
            }
        }
        (messages, profiles)
    }
}

/// A message as the search feed takes it, and what it charges the feed's byte budget.
fn search_doc(envelope: SharedEnvelope, origin: Option<(usize, u64)>) -> (SearchDoc, usize) {
    let bytes = crate::search::doc_bytes(&envelope);
    (SearchDoc { envelope, origin }, bytes)
}

enum Item {
    Doc(SearchDoc, usize),
    Profile(ProfileEvent, usize),
}

fn to_item(event: Emitted, origin: impl Fn(u64) -> Option<(usize, u64)>) -> Item {
    match event {
        Emitted::Message { envelope, seq } => {
            let (doc, bytes) = search_doc(envelope, origin(seq));
            Item::Doc(doc, bytes)
        }
        Emitted::Profile {
            profile,
            created,
            seq,
        } => {
            let bytes = crate::audit::profile_bytes(&profile);
            let event = ProfileEvent {
                profile,
                created,
                origin: origin(seq),
            };
            Item::Profile(event, bytes)
        }
    }
}

/// Where shard `shard`'s emissions go once durable: its own feeds to the helper threads,
/// each in log order. `logged`: positions are meaningful (a log is written).
pub fn sink(
    shard: usize,
    logged: bool,
    search: Rc<Feed<SearchDoc>>,
    audit: Rc<Feed<ProfileEvent>>,
) -> shards::runtime::Sink {
    Box::new(
        move |event| match to_item(event, |seq| logged.then_some((shard, seq))) {
            Item::Doc(doc, bytes) => search.submit_owed(doc, bytes),
            Item::Profile(profile, bytes) => audit.submit_owed(profile, bytes),
        },
    )
}
