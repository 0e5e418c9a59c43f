//! The indexer thread: adds documents and commits in batches, reloading the reader after
//! each commit so new mail becomes searchable.

use super::directory::UnsyncedDirectory;
use super::schema::{fields_of, Fields};
use crate::feed::{Consumer, Work};
use crate::metrics::SearchMetrics;
use shards::SharedEnvelope;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tantivy::indexer::UserOperation;
use tantivy::{IndexReader, IndexWriter, TantivyDocument};
use uuid::Uuid;

/// How far into each shard's log the index has got: every message a shard emitted below its
/// position is in the index. Kept as each commit's payload.
pub use shards::log::watermarks::{HelperWatermarks, Watermarks};

/// Tantivy's indexing memory budget (it flushes a segment when full).
pub const WRITER_HEAP_BYTES: usize = 64 * 1024 * 1024;
/// Commit once this many documents are waiting, whatever the time.
const MAX_BATCH_DOCS: usize = 8192;
/// Documents handed to Tantivy's worker in one operation batch, at most.
const MAX_HANDOFF_DOCS: usize = 256;
/// While a batch is open, how often the indexer looks for new documents. It adds at most
/// this much to visibility lag, and spares every send a wake-up of a sleeping thread.
const POLL_WHILE_BATCHING: Duration = Duration::from_millis(1);

/// Under load, the next commit waits at least this many times as long as the last one took,
/// so commits take at most about a fifth of the indexer's time. Each commit costs several
/// milliseconds whatever its size (Tantivy builds a new segment: a 512K-slot term table to
/// clear and walk, fresh term dictionaries, files, a worker thread), so at a fixed 10 ms the
/// indexer spent most of a storm committing (docs/BENCHMARKS.md).
const COMMIT_SPACING: u32 = 4;
/// The widest the commit wait may grow under load, in multiples of the configured interval:
/// it bounds visibility lag during a storm (50 ms at the default 10 ms interval).
const MAX_INTERVAL_WIDENING: u32 = 5;
/// A batch smaller than this is committed after the plain interval, however recent the last
/// commit: a few messages cost little to commit, and an agent waiting for its own message
/// (or a probe) should not wait for spacing meant for storms.
const SPACED_BATCH_DOCS: usize = 256;

/// When the open batch (`batch_docs` documents, the first taken at `first_uncommitted_at`)
/// is committed: `interval` after its first document at the earliest; for a batch of at least
/// `SPACED_BATCH_DOCS`, later while the last commit (`last_took`, ended at `last_ended_at`)
/// needs spacing, but never later than `MAX_INTERVAL_WIDENING` intervals.
pub fn commit_deadline(
    first_uncommitted_at: Instant,
    batch_docs: usize,
    interval: Duration,
    last_ended_at: Option<Instant>,
    last_took: Duration,
) -> Instant {
    let earliest = first_uncommitted_at + interval;
    let spaced = match last_ended_at {
        Some(ended) if batch_docs >= SPACED_BATCH_DOCS => ended + last_took * COMMIT_SPACING,
        _ => earliest,
    };
    let latest = first_uncommitted_at + interval * MAX_INTERVAL_WIDENING;
    earliest.max(spaced).min(latest)
}

/// Commits make segments of a few thousand documents. Merging only once 24 have piled up (not
/// Tantivy's 8) and treating segments under 20,000 documents as one level re-merges the same
/// documents less often. Under `mixed_load`, indexing plus merging took 5.1 s per 15 s
/// window against 6.4 s with 16 and 50,000, and 8.1 s with 16 and 10,000 (docs/BENCHMARKS.md).
pub fn merge_policy() -> tantivy::indexer::LogMergePolicy {
    let mut policy = tantivy::indexer::LogMergePolicy::default();
    policy.set_min_num_segments(24);
    policy.set_min_layer_size(20_000);
    policy
}

/// How often the indexer writes its in-memory files and metadata to disk (when it has
/// committed since): what a kill -9 can cost the index, which the shards' logs then replay.
const PERSIST_INTERVAL: Duration = Duration::from_secs(2);

/// One delivered message, as search stores it.
pub struct SearchDoc {
    pub envelope: SharedEnvelope,
    /// The log record it comes from: (shard, position), in the log generation the indexer
    /// was started for. Each shard sends its documents in log order.
    pub origin: Option<(usize, u64)>,
}

/// Where the indexer starts from.
pub struct Resume {
    /// A durable server's watermarks: where the index on disk got to (or a new generation's
    /// zeros). `None` without a log: nothing is kept across restarts.
    pub watermarks: Option<Watermarks>,
    /// How many documents at the head of the queue come from the logs' snapshots, for a new
    /// index. They carry no log position, so no commit is made until all of them are in:
    /// a commit records the log's generation, after which a restart would not hand any
    /// snapshot message over again, and those not yet committed would be lost to search.
    pub snapshot_documents: usize,
    /// Where each persist publishes how far the index on disk reaches.
    pub live: Arc<HelperWatermarks>,
}

pub struct Indexer {
    writer: IndexWriter,
    /// Where the index lives; its in-memory files go to disk at shutdown.
    directory: UnsyncedDirectory,
    reader: IndexReader,
    fields: Fields,
    /// Documents handed to Tantivy since the last commit.
    uncommitted: usize,
    /// When the first document of the open batch was taken from the queue.
    first_uncommitted_at: Option<Instant>,
    /// The last successful commit: when it ended and how long it took.
    last_commit: Option<(Instant, Duration)>,
    indexed_total: u64,
    metrics: Arc<SearchMetrics>,
    /// Commit at the latest this long after the first uncommitted document arrived: the
    /// bound on visibility lag while the indexer keeps up.
    commit_interval: Duration,
    /// Log positions of the documents handed to Tantivy; the payload of the next commit.
    watermarks: Watermarks,
    /// Where each persist publishes how far the index on disk reaches (`index`).
    live: Arc<HelperWatermarks>,
    /// Whether the index is kept across restarts (persisted every `PERSIST_INTERVAL`).
    durable: bool,
    /// The positions the last successful commit recorded: what a persist makes safe.
    committed_positions: Vec<u64>,
    last_persist: Instant,
    committed_since_persist: bool,
    /// Set by a test hook: the next commit fails, as a full disk makes it.
    fail_next_commit: bool,
    /// Snapshot documents (see [`Resume::snapshot_documents`]) not taken from the queue yet:
    /// no commit while any is left.
    snapshot_documents_left: usize,
}

impl Indexer {
    pub fn new(
        writer: IndexWriter,
        reader: IndexReader,
        directory: UnsyncedDirectory,
        metrics: Arc<SearchMetrics>,
        commit_interval: Duration,
        resume: Resume,
    ) -> Self {
        let Resume {
            watermarks,
            snapshot_documents,
            live,
        } = resume;
        // The schema was built by schema::build, so every field exists.
        let fields =
            fields_of(&writer.index().schema()).unwrap_or_else(|e| panic!("index schema: {e}"));
        Indexer {
            writer,
            directory,
            reader,
            fields,
            uncommitted: 0,
            first_uncommitted_at: None,
            last_commit: None,
            indexed_total: 0,
            metrics,
            commit_interval,
            durable: watermarks.is_some(),
            committed_positions: watermarks
                .as_ref()
                .map(|w| w.positions.clone())
                .unwrap_or_default(),
            watermarks: watermarks.unwrap_or_default(),
            live,
            last_persist: Instant::now(),
            committed_since_persist: false,
            fail_next_commit: false,
            snapshot_documents_left: snapshot_documents,
        }
    }

    /// Whether snapshot documents are still to come: a rebuild no commit may cut in two.
    fn rebuilding(&self) -> bool {
        self.snapshot_documents_left > 0
    }

    /// Takes one document from the queue: notes its position and adds it to `taken`.
    fn take(&mut self, doc: &SearchDoc, taken: &mut Vec<UserOperation>) {
        self.snapshot_documents_left = self.snapshot_documents_left.saturating_sub(1);
        self.watermarks.note(doc.origin);
        taken.push(UserOperation::Add(self.document(doc)));
        self.first_uncommitted_at.get_or_insert_with(Instant::now);
    }

    /// Takes documents from the shards and commits them in batches. While a batch is open
    /// the indexer polls its queue (every `POLL_WHILE_BATCHING`) instead of sleeping in it, so
    /// a shard's send never has to wake it: only the first document of a batch does. The
    /// documents taken in one poll go to Tantivy's worker as one operation batch, for the
    /// same reason.
    pub fn run(mut self, queue: Consumer<SearchDoc>) {
        let hooks = TestHooks::from_env();
        let mut taken: Vec<UserOperation> = Vec::with_capacity(MAX_HANDOFF_DOCS);
        // Set by a test hook: the next hand-off fails as a full disk would make it.
        let mut fail_hand_off = false;
        loop {
            hooks.pause();
            let next = if self.first_uncommitted_at.is_none() {
                // Idle: wake for the next persist if one is owed, else only for work.
                queue.recv(self.persist_deadline())
            } else {
                queue.try_recv()
            };
            match next {
                Some(Work::Item(doc)) => {
                    hooks.check(&doc);
                    fail_hand_off |= hooks.fails_hand_off(&doc);
                    self.fail_next_commit |= hooks.fails_commit(&doc);
                    self.take(&doc, &mut taken);
                    // While documents keep coming the queue is never empty, so the deadline
                    // is checked here too: lag stays bounded when the indexer is behind.
                    if taken.len() >= MAX_HANDOFF_DOCS {
                        self.hand_off(&mut taken, std::mem::take(&mut fail_hand_off));
                        if self.uncommitted >= MAX_BATCH_DOCS || self.is_due() {
                            self.commit();
                            self.persist_if_due();
                        }
                    }
                }
                Some(Work::Shutdown) => {
                    self.hand_off(&mut taken, std::mem::take(&mut fail_hand_off));
                    return self.finish();
                }
                // The queue is empty for now.
                None => {
                    self.hand_off(&mut taken, std::mem::take(&mut fail_hand_off));
                    self.commit_or_wait();
                    self.persist_if_due();
                }
            }
        }
    }

    /// Commits what is left, lets merges finish and writes the in-memory files to disk, so
    /// the index on disk is whole after a clean shutdown.
    fn finish(mut self) {
        self.commit();
        let indexed = self.indexed_total;
        if let Err(error) = self.writer.wait_merging_threads() {
            tracing::error!(%error, "search merges did not finish");
        }
        if let Err(error) = self.directory.persist() {
            tracing::error!(%error, "could not write the search index to disk");
        }
        tracing::info!(indexed, "search index flushed");
    }

    /// When the index is owed a persist (durable servers that committed since the last).
    fn persist_deadline(&self) -> Option<Instant> {
        (self.durable && self.committed_since_persist).then(|| self.last_persist + PERSIST_INTERVAL)
    }

    /// Writes the index to disk every `PERSIST_INTERVAL` while it changes (durable servers).
    fn persist_if_due(&mut self) {
        if !self.durable
            || !self.committed_since_persist
            || self.last_persist.elapsed() < PERSIST_INTERVAL
        {
            return;
        }
        let started = Instant::now();
        match self.directory.persist() {
            Ok(()) => {
                self.committed_since_persist = false;
                self.live.index.publish(&self.committed_positions);
                tracing::debug!(
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "search index persisted"
                );
            }
            Err(error) => tracing::error!(%error, "could not write the search index to disk"),
        }
        self.last_persist = Instant::now();
    }

    /// When the open batch is due for its commit (`None` when no batch is open).
    fn deadline(&self) -> Option<Instant> {
        let first = self.first_uncommitted_at?;
        let (ended, took) = self.last_commit.unzip();
        Some(commit_deadline(
            first,
            self.uncommitted,
            self.commit_interval,
            ended,
            took.unwrap_or_default(),
        ))
    }

    fn is_due(&self) -> bool {
        self.deadline().is_some_and(|due| Instant::now() >= due)
    }

    /// Commits if the open batch is due, else sleeps until the next poll.
    fn commit_or_wait(&mut self) {
        let Some(deadline) = self.deadline() else {
            return;
        };
        if self.rebuilding() {
            // The rest of the snapshots' documents are still being handed over.
            std::thread::sleep(POLL_WHILE_BATCHING);
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            self.commit();
        } else {
            std::thread::sleep((deadline - now).min(POLL_WHILE_BATCHING));
        }
    }

    /// Passes the documents taken so far to Tantivy's indexing worker, in one batch.
    ///
    /// A failed hand-off (a worker stopped by a full disk or an I/O error) stops the indexer,
    /// and with it the server: those documents are lost to this writer while their positions
    /// are already noted, so a later commit would record them as indexed and search would
    /// never find them. Stopped, the index keeps its last commit's watermarks, and the next
    /// start hands everything after them over again.
    fn hand_off(&mut self, taken: &mut Vec<UserOperation>, injected_failure: bool) {
        let count = taken.len();
        if count == 0 {
            return;
        }
        let handed = if injected_failure {
            taken.clear();
            Err("test hook: the hand-off was told to fail".to_string())
        } else {
            self.writer.run(taken.drain(..)).map_err(|e| e.to_string())
        };
        match handed {
            Ok(_) => self.uncommitted += count,
            Err(error) => panic!("could not index {count} messages: {error}"),
        }
    }

    /// The search document of one delivered message.
    fn document(&self, doc: &SearchDoc) -> TantivyDocument {
        let f = self.fields;
        let envelope = &doc.envelope;
        let mut document = TantivyDocument::default();
        document.add_text(
            f.id,
            envelope
                .id
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer()),
        );
        let project_id = envelope.project_id.hyphenated();
        document.add_text(
            f.project_id,
            project_id.encode_lower(&mut Uuid::encode_buffer()),
        );
        document.add_text(f.from, envelope.from());
        for recipient in envelope.to() {
            document.add_text(f.to, recipient);
        }
        for recipient in envelope.cc() {
            document.add_text(f.cc, recipient);
        }
        // A thread id only when the message names one: a term unique to each message (its
        // own id) doubles indexing CPU, as `id` showed. `thread_id:X` finds replies and
        // messages sent with an explicit thread id; `get_thread` lists a whole thread.
        if let Some(thread) = envelope.named_thread() {
            document.add_text(f.thread_id, thread);
        }
        document.add_text(f.importance, envelope.importance.as_str());
        document.add_text(f.subject, envelope.subject());
        document.add_text(f.body, envelope.body());
        let mut timestamp = String::with_capacity(24);
        crate::clock::write_rfc3339_ms(&mut timestamp, envelope.timestamp_ms);
        document.add_text(f.timestamp, timestamp);
        document
    }

    fn commit(&mut self) {
        if self.rebuilding() {
            // Not even at shutdown: the next start rebuilds from the snapshots again.
            return;
        }
        if self.uncommitted == 0 {
            self.first_uncommitted_at = None;
            return;
        }
        let started = Instant::now();
        let committed = if std::mem::take(&mut self.fail_next_commit) {
            Err(tantivy::TantivyError::InternalError(
                "test hook: the commit was told to fail".into(),
            ))
        } else if self.durable {
            let payload = self.watermarks.to_text();
            self.writer.prepare_commit().and_then(|mut prepared| {
                prepared.set_payload(&payload);
                prepared.commit()
            })
        } else {
            self.writer.commit()
        };
        match committed {
            Ok(_) => {
                self.committed_since_persist = true;
                self.committed_positions
                    .clone_from(&self.watermarks.positions);
                if let Err(error) = self.reader.reload() {
                    tracing::error!(%error, "could not reload the search reader");
                }
                self.indexed_total += self.uncommitted as u64;
                self.metrics
                    .indexed
                    .fetch_add(self.uncommitted as u64, Ordering::Relaxed);
                self.metrics.commits.fetch_add(1, Ordering::Relaxed);
                if let Some(first) = self.first_uncommitted_at {
                    self.metrics
                        .commit_lag
                        .record(first.elapsed().as_micros() as u64);
                }
                tracing::debug!(
                    docs = self.uncommitted,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "search commit"
                );
                self.uncommitted = 0;
                self.first_uncommitted_at = None;
                self.last_commit = Some((Instant::now(), started.elapsed()));
            }
            // Not retried: after a failed worker Tantivy commits without its documents, while
            // the watermarks would cover them. Stopped, the index keeps its last commit, and
            // the next start hands everything after it over again.
            Err(error) => panic!(
                "search commit of {} messages failed: {error}",
                self.uncommitted
            ),
        }
    }
}

/// Fault injection for the integration tests (`tests/helpers.rs`), compiled into debug builds
/// only and inert unless its environment variables are set:
/// - `ALLMAN_TEST_PAUSE_INDEXER=<path>`: the indexer takes no document while `<path>` exists
///   (a stalled indexer, to fill the search feed).
/// - `ALLMAN_TEST_PANIC_SUBJECT=<subject>`: indexing a message with this subject panics the
///   indexer (a helper thread that dies).
/// - `ALLMAN_TEST_FAIL_HAND_OFF_SUBJECT=<subject>`: the hand-off of the batch holding a message
///   with this subject fails, as a full disk or an I/O error makes Tantivy's worker fail.
/// - `ALLMAN_TEST_FAIL_COMMIT_SUBJECT=<subject>`: the commit holding a message with this subject
///   fails.
#[derive(Debug, Default)]
struct TestHooks {
    #[cfg(debug_assertions)]
    pause_file: Option<std::path::PathBuf>,
    #[cfg(debug_assertions)]
    panic_subject: Option<String>,
    #[cfg(debug_assertions)]
    fail_hand_off_subject: Option<String>,
    #[cfg(debug_assertions)]
    fail_commit_subject: Option<String>,
}

impl TestHooks {
    #[cfg(debug_assertions)]
    fn from_env() -> Self {
        TestHooks {
            pause_file: std::env::var_os("ALLMAN_TEST_PAUSE_INDEXER").map(Into::into),
            panic_subject: std::env::var("ALLMAN_TEST_PANIC_SUBJECT").ok(),
            fail_hand_off_subject: std::env::var("ALLMAN_TEST_FAIL_HAND_OFF_SUBJECT").ok(),
            fail_commit_subject: std::env::var("ALLMAN_TEST_FAIL_COMMIT_SUBJECT").ok(),
        }
    }

    #[cfg(not(debug_assertions))]
    fn from_env() -> Self {
        TestHooks::default()
    }

    fn pause(&self) {
        #[cfg(debug_assertions)]
        if let Some(path) = &self.pause_file {
            while path.exists() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Whether the hand-off of this document's batch is to fail, as a full disk makes it.
    fn fails_hand_off(&self, _doc: &SearchDoc) -> bool {
        #[cfg(debug_assertions)]
        if self.fail_hand_off_subject.as_deref() == Some(_doc.envelope.subject()) {
            return true;
        }
        false
    }

    /// Whether the commit holding this document is to fail.
    fn fails_commit(&self, _doc: &SearchDoc) -> bool {
        #[cfg(debug_assertions)]
        if self.fail_commit_subject.as_deref() == Some(_doc.envelope.subject()) {
            return true;
        }
        false
    }

    fn check(&self, _doc: &SearchDoc) {
        #[cfg(debug_assertions)]
        if self.panic_subject.as_deref() == Some(_doc.envelope.subject()) {
            panic!("test hook: the indexer was told to fail");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const BIG: usize = SPACED_BATCH_DOCS;

    const LOG: shards::log::watermarks::LogIdentity = shards::log::watermarks::LogIdentity {
        generation: 7,
        id: Uuid::from_u128(77),
    };

    /// An indexer on a new index in a fresh directory, resuming generation 7 of one shard.
    fn indexer_in(dir: &std::path::Path, snapshot_documents: usize) -> Indexer {
        let _ = std::fs::remove_dir_all(dir);
        let opened = super::super::open_index(dir, true).expect("opens");
        let reader = (opened.index.reader_builder())
            .reload_policy(tantivy::ReloadPolicy::Manual)
            .try_into()
            .expect("a reader");
        let writer = (opened.index)
            .writer_with_num_threads(1, WRITER_HEAP_BYTES)
            .expect("a writer");
        let resume = Resume {
            watermarks: Some(Watermarks::new(LOG, 1)),
            snapshot_documents,
            live: Arc::default(),
        };
        let metrics = Arc::default();
        Indexer::new(writer, reader, opened.directory, metrics, MS, resume)
    }

    fn doc(n: u128, origin: Option<(usize, u64)>) -> SearchDoc {
        let envelope = shards::Envelope::compose(shards::envelope::Message {
            to: vec!["b".into()],
            ..shards::envelope::Message::plain(Uuid::from_u128(n), "a")
        });
        SearchDoc {
            envelope: Arc::new(envelope),
            origin,
        }
    }

    /// (documents searchable, the last commit's watermarks).
    fn committed(indexer: &Indexer) -> (u64, Option<Watermarks>) {
        let metas = indexer.writer.index().load_metas().expect("metas");
        let marks = metas.payload.as_deref().and_then(Watermarks::from_text);
        (indexer.reader.searcher().num_docs(), marks)
    }

    #[test]
    fn no_commit_cuts_a_rebuild_from_the_snapshots_in_two() {
        let dir = std::env::temp_dir().join(format!("allman-rebuild-{}", std::process::id()));
        let mut indexer = indexer_in(&dir, 2);
        let mut taken = Vec::new();
        indexer.take(&doc(1, None), &mut taken);
        indexer.hand_off(&mut taken, false);
        indexer.commit();
        assert_eq!(
            committed(&indexer),
            (0, None),
            "half the snapshot committed would record generation 7, and a restart would \
             not hand the other half over again"
        );
        indexer.take(&doc(2, None), &mut taken);
        indexer.take(&doc(3, Some((0, 4))), &mut taken);
        indexer.hand_off(&mut taken, false);
        indexer.commit();
        let all_in = Watermarks {
            log: LOG,
            positions: vec![5],
        };
        assert_eq!(committed(&indexer), (3, Some(all_in)));
        drop(indexer);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn at_light_load_new_mail_waits_just_the_interval() {
        let first = Instant::now();
        let deadline = commit_deadline(first, 1, 10 * MS, None, Duration::ZERO);
        assert_eq!(deadline, first + 10 * MS);
        // The last commit ended long ago: no spacing is owed.
        let long_ago = first - 1000 * MS;
        let deadline = commit_deadline(first, BIG, 10 * MS, Some(long_ago), 8 * MS);
        assert_eq!(deadline, first + 10 * MS);
        // A small batch right after a slow commit: no spacing either.
        let deadline = commit_deadline(first, 3, 10 * MS, Some(first), 8 * MS);
        assert_eq!(deadline, first + 10 * MS);
    }

    #[test]
    fn under_load_commits_are_spaced_by_their_cost_within_the_widest_wait() {
        let first = Instant::now();
        // A 6 ms commit that just ended: the next waits 24 ms after it.
        let deadline = commit_deadline(first, BIG, 10 * MS, Some(first), 6 * MS);
        assert_eq!(deadline, first + 24 * MS);
        // A 40 ms commit would ask for 160 ms; the wait stops at 5 intervals.
        let deadline = commit_deadline(first, BIG, 10 * MS, Some(first), 40 * MS);
        assert_eq!(deadline, first + 50 * MS);
        // A cheap commit never brings the deadline below the interval.
        let deadline = commit_deadline(first, BIG, 10 * MS, Some(first), MS);
        assert_eq!(deadline, first + 10 * MS);
    }
}
