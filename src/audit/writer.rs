//! The git writer thread: batches profile events and commits them.

use super::ProfileEvent;
use crate::clock::{now_ms, rfc3339_ms_string};
use crate::feed::{Consumer, Work};
use crate::metrics::AuditMetrics;
use gix::objs::tree::EntryKind;
use gix::refs::transaction::{PreviousValue, RefEdit};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Commit this long after the first pending event: registrations that arrive together (a swarm
/// starting up) land in one commit instead of one each.
const BATCH_WINDOW_MS: u64 = 200;
/// Commit at once when this many agents are pending, bounding one commit's size.
const MAX_BATCH_AGENTS: usize = 10_000;
/// Agents listed by name in a commit message; the rest are counted.
const MESSAGE_AGENT_LINES: usize = 50;
/// After a failed commit, wait this long before trying again.
const RETRY_AFTER_FAILURE_MS: u64 = 1_000;

pub struct Writer {
    repo: gix::Repository,
    /// Latest profile per agent, in path order; an agent touched twice is written once.
    pending: BTreeMap<(Uuid, Box<str>), ProfileEvent>,
    commit_due: Option<Instant>,
    metrics: Arc<AuditMetrics>,
    /// The newest profile version seen per agent (one entry per agent ever registered).
    newest_version: HashMap<(Uuid, Box<str>), u64>,
    commits: u64,
    /// The last commit failed; the next waits for its retry time.
    failing: bool,
    /// With a durable log: how far into each shard's log the pending profiles reach; each
    /// commit message ends with it, so a restart re-submits only what follows.
    watermarks: Option<super::Watermarks>,
    /// Where each commit publishes how far the trail reaches (`git`).
    live: Arc<super::HelperWatermarks>,
    /// Test builds: what each commit made durable, in order, and when it published.
    #[cfg(test)]
    steps: std::cell::RefCell<Vec<DurableStep>>,
}

/// The steps of a commit, in the order they must happen (see [`Writer::write_commit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DurableStep {
    /// The commit's objects are on disk.
    Objects,
    /// The ref that names the commit is on disk.
    Ref,
    /// The watermark went out: the shards may delete log below it.
    Published,
}

/// Syncs the whole file system holding `dir`: one call for every object a commit wrote or
/// reused (a reused one may come from a failed attempt that never synced it), instead of a
/// sync per blob of a commit of up to `MAX_BATCH_AGENTS` profiles. The git writer runs on
/// the helper core; no shard waits for it.
pub(super) fn sync_filesystem(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(dir)?;
    // SAFETY: `file` is open for the duration of the call.
    if unsafe { libc::syncfs(file.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Syncs a file and the directory that names it.
fn sync_file_and_directory(path: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()?;
    match path.parent() {
        Some(dir) => shards::log::files::sync_directory_blocking(dir),
        None => Ok(()),
    }
}

#[derive(Serialize)]
struct ProfileFile<'a> {
    id: String,
    name: &'a str,
    project_id: String,
    project_key: &'a str,
    program: &'a str,
    model: &'a str,
    task_description: &'a str,
    created: String,
    updated: String,
}

impl Writer {
    pub fn new(
        repo: gix::Repository,
        metrics: Arc<AuditMetrics>,
        watermarks: Option<super::Watermarks>,
        live: Arc<super::HelperWatermarks>,
    ) -> Self {
        Writer {
            repo,
            pending: BTreeMap::new(),
            commit_due: None,
            metrics,
            newest_version: HashMap::new(),
            commits: 0,
            failing: false,
            watermarks,
            live,
            #[cfg(test)]
            steps: std::cell::RefCell::default(),
        }
    }

    pub fn run(mut self, queue: Consumer<ProfileEvent>) {
        loop {
            match queue.recv(self.commit_due) {
                Some(Work::Item(event)) => {
                    self.add(event);
                    // A full batch commits at once, unless commits are failing: then the
                    // retry waits for its backoff like everything else.
                    if self.pending.len() >= MAX_BATCH_AGENTS && !self.backing_off() {
                        self.commit();
                    }
                }
                None => self.commit(),
                Some(Work::Shutdown) => {
                    self.commit();
                    tracing::info!(
                        commits = self.commits,
                        unwritten = self.pending.len(),
                        "git audit flushed"
                    );
                    return;
                }
            }
        }
    }

    fn backing_off(&self) -> bool {
        self.failing && self.commit_due.is_some_and(|due| Instant::now() < due)
    }

    fn add(&mut self, event: ProfileEvent) {
        if let Some(watermarks) = &mut self.watermarks {
            watermarks.note(event.origin);
        }
        let key = (event.profile.project_id, event.profile.name.clone());
        // Profiles of one agent can arrive out of order (they are handed over by whichever
        // shard ran the tool call): only a newer version than anything seen is written.
        let newest = self.newest_version.get(&key).copied().unwrap_or(0);
        if event.profile.version <= newest {
            if event.created {
                if let Some(pending) = self.pending.get_mut(&key) {
                    pending.created = true;
                }
            }
            return;
        }
        self.newest_version
            .insert(key.clone(), event.profile.version);
        let created = event.created || self.pending.get(&key).is_some_and(|e| e.created);
        self.pending.insert(key, ProfileEvent { created, ..event });
        self.metrics
            .pending
            .store(self.pending.len() as u64, Ordering::Relaxed);
        self.commit_due
            .get_or_insert_with(|| Instant::now() + Duration::from_millis(BATCH_WINDOW_MS));
    }

    fn commit(&mut self) {
        if self.pending.is_empty() {
            self.commit_due = None;
            return;
        }
        let started = Instant::now();
        match self.write_commit() {
            Ok(id) => {
                self.commits += 1;
                if let Some(watermarks) = &self.watermarks {
                    self.live.git.publish(&watermarks.positions);
                    self.note_step(DurableStep::Published);
                }
                self.metrics.commits.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    commit = %id,
                    agents = self.pending.len(),
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "git audit commit"
                );
                self.pending.clear();
                self.failing = false;
                self.metrics.pending.store(0, Ordering::Relaxed);
                self.commit_due = None;
            }
            Err(reason) => {
                // The profiles stay pending and are retried; shard state is untouched.
                self.failing = true;
                let failures = self.metrics.failures.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::error!(%reason, pending = self.pending.len(), failures, "git audit commit failed");
                self.commit_due =
                    Some(Instant::now() + Duration::from_millis(RETRY_AFTER_FAILURE_MS));
            }
        }
    }

    fn write_commit(&self) -> Result<gix::ObjectId, String> {
        let repo = &self.repo;
        let parent = repo.head_id().ok().map(|id| id.detach());
        let base_tree = match parent {
            Some(id) => repo
                .find_commit(id)
                .and_then(|c| c.tree_id())
                .map_err(|e| format!("reading HEAD: {e}"))?
                .detach(),
            None => gix::ObjectId::empty_tree(repo.object_hash()),
        };
        let mut editor = repo
            .edit_tree(base_tree)
            .map_err(|e| format!("tree: {e}"))?;
        for event in self.pending.values() {
            let profile = &event.profile;
            let file = ProfileFile {
                id: profile.id.hyphenated().to_string(),
                name: &profile.name,
                project_id: profile.project_id.hyphenated().to_string(),
                project_key: &profile.project_key,
                program: &profile.program,
                model: &profile.model,
                task_description: &profile.task_description,
                created: rfc3339_ms_string(profile.created_ms),
                updated: rfc3339_ms_string(profile.updated_ms),
            };
            let mut text = serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?;
            text.push('\n');
            let blob = repo
                .write_blob(text.as_bytes())
                .map_err(|e| format!("blob: {e}"))?;
            // Names are [A-Za-z0-9_-]{1,64} (checked by create_agent), so this is a safe path.
            let path = format!(
                "agents/{}/{}.json",
                profile.project_id.hyphenated(),
                profile.name
            );
            editor
                .upsert(path, EntryKind::Blob, blob.detach())
                .map_err(|e| format!("tree entry: {e}"))?;
        }
        let tree = editor.write().map_err(|e| format!("tree: {e}"))?.detach();
        let secs = now_ms().div_euclid(1000);
        let signature = gix::actor::Signature {
            name: "allman".into(),
            email: "allman@localhost".into(),
            time: gix::date::Time::new(secs, 0),
        };
        let mut time = gix::date::parse::TimeBuf::default();
        let signature = signature.to_ref(&mut time);
        let message = self.message();
        // gix syncs nothing. The objects must be on disk before the ref names them (else a
        // power cut leaves HEAD naming a missing object, and every later commit fails), and
        // the ref before `commit` publishes the watermark that lets the shards delete log.
        let commit = gix::objs::Commit {
            message: message.as_str().into(),
            tree,
            author: signature.into(),
            committer: signature.into(),
            encoding: None,
            parents: parent.into_iter().collect(),
            extra_headers: Vec::new(),
        };
        let id = repo
            .write_object(&commit)
            .map_err(|e| format!("commit: {e}"))?
            .detach();
        sync_filesystem(repo.git_dir()).map_err(|e| format!("syncing the objects: {e}"))?;
        self.note_step(DurableStep::Objects);
        let expected = match parent {
            Some(parent) => PreviousValue::MustExistAndMatch(gix::refs::Target::Object(parent)),
            None => PreviousValue::MustNotExist,
        };
        let log =
            gix::reference::log::message("commit", message.as_str().into(), commit.parents.len());
        let head = gix::refs::FullName::try_from("HEAD").map_err(|e| format!("HEAD: {e}"))?;
        let edit = RefEdit::update(head, id, expected, log).with_deref(true);
        let edits = repo
            .edit_references_as(Some(edit), Some(signature))
            .map_err(|e| format!("moving HEAD: {e}"))?;
        for edit in &edits {
            let name = edit.name.to_path().map_err(|e| format!("ref path: {e}"))?;
            let path = repo.common_dir().join(name);
            sync_file_and_directory(&path)
                .map_err(|e| format!("syncing {}: {e}", path.display()))?;
        }
        self.note_step(DurableStep::Ref);
        Ok(id)
    }

    /// Test builds record the order in which a commit became durable.
    fn note_step(&self, _step: DurableStep) {
        #[cfg(test)]
        self.steps.borrow_mut().push(_step);
    }

    fn message(&self) -> String {
        let created = self.pending.values().filter(|e| e.created).count();
        let updated = self.pending.len() - created;
        let mut message = format!("agents: {created} registered, {updated} updated\n\n");
        for event in self.pending.values().take(MESSAGE_AGENT_LINES) {
            let verb = if event.created { "register" } else { "update" };
            message.push_str(&format!(
                "{verb} {} ({})\n",
                event.profile.name, event.profile.project_id
            ));
        }
        if self.pending.len() > MESSAGE_AGENT_LINES {
            message.push_str(&format!(
                "... and {} more\n",
                self.pending.len() - MESSAGE_AGENT_LINES
            ));
        }
        if let Some(watermarks) = &self.watermarks {
            message.push('\n');
            message.push_str(&watermarks.to_text());
            message.push('\n');
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shards::AgentProfile;

    fn event(version: u64, model: &str, created: bool) -> ProfileEvent {
        ProfileEvent {
            profile: AgentProfile {
                id: Uuid::nil(),
                name: "Agent".into(),
                project_id: Uuid::nil(),
                project_key: "p".into(),
                program: "".into(),
                model: model.into(),
                created_ms: 0,
                updated_ms: 0,
                version,
                task_description: "".into(),
                token_hash: None,
            },
            created,
            origin: None,
        }
    }

    #[test]
    fn a_commit_is_on_disk_objects_first_then_its_ref_before_its_watermark_goes_out() {
        let dir = std::env::temp_dir().join(format!("allman-durable-git-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let repo = gix::init_bare(&dir).expect("init");
        let log = shards::log::watermarks::LogIdentity::default();
        let marks = Some(super::super::Watermarks::new(log, 1));
        let mut writer = Writer::new(repo, Arc::default(), marks, Arc::default());
        for version in [1, 2] {
            writer.add(ProfileEvent {
                origin: Some((0, version)),
                ..event(version, "m", version == 1)
            });
            writer.commit();
        }
        use DurableStep::*;
        assert_eq!(
            *writer.steps.borrow(),
            vec![Objects, Ref, Published, Objects, Ref, Published]
        );
        assert_eq!(writer.live.git.of(0), 3);
        let reopened = gix::open(&dir).expect("opens");
        let head = reopened.head_id().expect("HEAD").detach();
        assert_eq!(writer.repo.head_id().expect("HEAD").detach(), head);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_older_profile_arriving_late_never_replaces_a_newer_one() {
        let dir = std::env::temp_dir().join(format!("allman-writer-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let repo = gix::init_bare(&dir).expect("init");
        let mut writer = Writer::new(repo, Arc::default(), None, Arc::default());
        writer.add(event(2, "new", false));
        writer.add(event(1, "old", true));
        let pending = writer.pending.values().next().expect("pending");
        assert_eq!(&*pending.profile.model, "new");
        assert!(
            pending.created,
            "the registration is still recorded as such"
        );
        writer.commit();
        assert!(writer.pending.is_empty(), "committed");
        writer.add(event(2, "stale", false));
        assert!(
            writer.pending.is_empty(),
            "a version already written is not written again"
        );
        writer.add(event(3, "newer", false));
        assert_eq!(writer.pending.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
