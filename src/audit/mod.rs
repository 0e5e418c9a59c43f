//! The git audit trail: every agent profile written as `agents/<project_id>/<name>.json` and
//! committed with gix to a bare repository at `REPO_ROOT`, by a thread on its own core.
//!
//! Shards never wait for git: `create_agent` replies first and hands the profile to the
//! writer through a [`crate::feed::Feed`], which never blocks and never drops.

mod writer;

use crate::feed::{self, FeedLimits, Producer};
use crate::lifecycle::{supervise, Event};
use crate::metrics::AuditMetrics;
use shards::AgentProfile;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub repo_root: PathBuf,
    pub core: usize,
    /// Profiles in flight to the writer before shards hold new ones back.
    pub queue_depth: usize,
    /// Bytes of profile text held or in flight to the writer before registrations wait.
    pub queue_bytes: usize,
}

/// One profile to write: a registration or an update by an idempotent re-register.
#[derive(Debug, Clone)]
pub struct ProfileEvent {
    pub profile: AgentProfile,
    pub created: bool,
    /// The log record it comes from: (shard, position) in the current log generation.
    pub origin: Option<(usize, u64)>,
}

pub use shards::log::watermarks::{HelperWatermarks, Watermarks};

/// What a profile costs the git feed's byte budget besides its text.
pub const PROFILE_FIXED_BYTES: usize = 128;

/// What `profile` costs the git feed's byte budget.
pub fn profile_bytes(profile: &AgentProfile) -> usize {
    PROFILE_FIXED_BYTES
        + profile.name.len()
        + profile.project_key.len()
        + profile.program.len()
        + profile.model.len()
        + profile.task_description.len()
}

/// How far into the shards' logs the last commit of the trail at `repo_root` got, as its
/// message records; `None` if there is no such repository or commit.
pub fn read_watermarks(repo_root: &Path) -> Option<Watermarks> {
    let repo = gix::open(repo_root).ok()?;
    let head = repo.head_commit().ok()?;
    let message = head.message_raw().ok()?;
    Watermarks::from_text(&String::from_utf8_lossy(message.as_ref()))
}

#[derive(Debug)]
pub enum AuditError {
    /// `REPO_ROOT` cannot be created, opened or written.
    Repository {
        path: PathBuf,
        reason: String,
    },
    Thread(std::io::Error),
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditError::Repository { path, reason } => {
                write!(f, "git audit repository at {}: {reason}", path.display())
            }
            AuditError::Thread(error) => write!(f, "cannot start the git audit thread: {error}"),
        }
    }
}

impl std::error::Error for AuditError {}

/// The running writer thread, as the main thread sees it.
pub struct AuditService {
    events: Producer<ProfileEvent>,
    thread: JoinHandle<()>,
    metrics: Arc<AuditMetrics>,
}

/// Opens (or creates) the repository and starts the writer thread. The repository is opened
/// on that thread (a gix `Repository` stays on the thread that opened it); its outcome is
/// reported back before this returns, so an unusable `REPO_ROOT` stops start-up. If the
/// writer dies while serving, `lifecycle` is told why.
pub fn start(
    config: &AuditConfig,
    watermarks: Option<Watermarks>,
    live: Arc<HelperWatermarks>,
    metrics: Arc<AuditMetrics>,
    lifecycle: &std::sync::mpsc::Sender<Event>,
) -> Result<AuditService, AuditError> {
    let limits = FeedLimits {
        depth: config.queue_depth,
        max_bytes: config.queue_bytes,
    };
    let (events, inbox) = feed::channel(limits, "git writer", metrics.feed.clone());
    let lifecycle = lifecycle.clone();
    let writer_metrics = Arc::clone(&metrics);
    let core = config.core;
    let repo_root = config.repo_root.clone();
    let (opened_tx, opened) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("allman-git".into())
        .spawn(move || {
            crate::cores::pin_current_thread(core);
            match open_or_create(&repo_root) {
                Ok((repo, lock)) => {
                    let _ = opened_tx.send(Ok(()));
                    supervise("git writer", &lifecycle, move || {
                        writer::Writer::new(repo, writer_metrics, watermarks, live).run(inbox)
                    });
                    // Held until the writer has committed its last batch.
                    drop(lock);
                }
                Err(error) => {
                    let _ = opened_tx.send(Err(error));
                }
            }
        })
        .map_err(AuditError::Thread)?;
    match opened.recv() {
        Ok(Ok(())) => Ok(AuditService {
            events,
            thread,
            metrics,
        }),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(AuditError::Repository {
            path: config.repo_root.clone(),
            reason: "the git thread ended while opening the repository".into(),
        }),
    }
}

impl AuditService {
    /// Where shards send profiles.
    pub fn events(&self) -> Producer<ProfileEvent> {
        self.events.clone()
    }

    /// Commits what is pending and stops the writer. Call after the shards have flushed.
    /// Returns how many profiles could not be committed (0 when the trail is complete).
    pub fn shutdown(self) -> u64 {
        self.events.shutdown();
        if self.thread.join().is_err() {
            tracing::error!("the git audit thread panicked");
        }
        let failures = self.metrics.failures.load(Ordering::Relaxed);
        if failures > 0 {
            tracing::warn!(failures, "git audit commits failed during this run");
        }
        self.metrics.pending.load(Ordering::Relaxed)
    }
}

/// allman's lock on the repository (in its git directory, where git ignores it), held while
/// the writer runs, so two servers never commit to one trail.
const LOCK_FILE: &str = "allman.lock";

/// Opens the bare repository at `path`, creating it if the path is missing or an empty
/// directory, and locks it for this server. Refuses anything else, so a user's own
/// repository is never written to.
fn open_or_create(path: &Path) -> Result<(gix::Repository, std::fs::File), AuditError> {
    let error = |reason: String| AuditError::Repository {
        path: path.to_path_buf(),
        reason,
    };
    let is_empty_dir = path.is_dir()
        && std::fs::read_dir(path)
            .map_err(|e| error(e.to_string()))?
            .next()
            .is_none();
    let repo = if !path.exists() || is_empty_dir {
        std::fs::create_dir_all(path).map_err(|e| error(e.to_string()))?;
        let repo = gix::init_bare(path).map_err(|e| error(format!("cannot create: {e}")))?;
        // A new repository's files are on disk before any commit names them.
        writer::sync_filesystem(path).map_err(|e| error(format!("cannot sync: {e}")))?;
        repo
    } else {
        let repo = gix::open(path).map_err(|e| {
            error(format!(
                "exists but is not a git repository ({e}); point REPO_ROOT elsewhere"
            ))
        })?;
        if !repo.is_bare() {
            return Err(error(
                "is a repository with a work tree; allman keeps its audit trail in a bare \
                 repository of its own"
                    .into(),
            ));
        }
        repo
    };
    let lock = shards::log::files::try_lock_file(repo.git_dir(), LOCK_FILE)
        .map_err(|e| error(format!("not writable: {e}")))?
        .ok_or_else(|| {
            error("is in use by another running allman; give each server its own REPO_ROOT".into())
        })?;
    // Fail now, not at the first commit, if objects cannot be written.
    let probe = repo.git_dir().join("objects").join(".allman-write-test");
    std::fs::write(&probe, b"").map_err(|e| error(format!("not writable: {e}")))?;
    let _ = std::fs::remove_file(&probe);
    Ok((repo, lock))
}
