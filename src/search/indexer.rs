//! The indexer thread: adds documents and commits in batches, reloading the reader after
//! each commit so new mail becomes searchable.

use super::schema::{fields_of, Fields};
use crate::feed::{Consumer, Work};
use crate::metrics::SearchMetrics;
use shards::SharedEnvelope;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tantivy::{IndexReader, IndexWriter, TantivyDocument};

/// After a failed commit (disk full, say), wait this long beyond the commit interval.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Tantivy's indexing memory budget (it flushes a segment when full).
pub const WRITER_HEAP_BYTES: usize = 64 * 1024 * 1024;
/// Commit once this many documents are waiting, whatever the time.
const MAX_BATCH_DOCS: usize = 8192;

/// Frequent small commits make many small segments. Merging only once 16 have piled up (not
/// Tantivy's 8) and treating segments under 50,000 documents as one level re-merges the same
/// documents less often: merge CPU fell by about a fifth in our send benchmark, CPU that the
/// index core otherwise takes from the shard sharing it.
pub fn merge_policy() -> tantivy::indexer::LogMergePolicy {
    let mut policy = tantivy::indexer::LogMergePolicy::default();
    policy.set_min_num_segments(16);
    policy.set_min_layer_size(50_000);
    policy
}

/// One delivered message, as search stores it.
pub struct SearchDoc {
    pub envelope: SharedEnvelope,
    pub to: Vec<Box<str>>,
}

pub struct Indexer {
    writer: IndexWriter,
    reader: IndexReader,
    fields: Fields,
    uncommitted: usize,
    first_uncommitted_at: Option<Instant>,
    indexed_total: u64,
    metrics: Arc<SearchMetrics>,
    /// Commit at the latest this long after the first uncommitted document arrived: the
    /// bound on visibility lag while the indexer keeps up.
    commit_interval: Duration,
}

impl Indexer {
    pub fn new(
        writer: IndexWriter,
        reader: IndexReader,
        metrics: Arc<SearchMetrics>,
        commit_interval: Duration,
    ) -> Self {
        // The schema was built by schema::build, so every field exists.
        let fields =
            fields_of(&writer.index().schema()).unwrap_or_else(|e| panic!("index schema: {e}"));
        Indexer {
            writer,
            reader,
            fields,
            uncommitted: 0,
            first_uncommitted_at: None,
            indexed_total: 0,
            metrics,
            commit_interval,
        }
    }

    pub fn run(mut self, queue: Consumer<SearchDoc>) {
        let hooks = TestHooks::from_env();
        loop {
            hooks.pause();
            let deadline = self
                .first_uncommitted_at
                .map(|first| first + self.commit_interval);
            match queue.recv(deadline) {
                Some(Work::Item(doc)) => {
                    hooks.check(&doc);
                    self.add(doc);
                    if self.uncommitted >= MAX_BATCH_DOCS {
                        self.commit();
                    }
                }
                None => self.commit(),
                Some(Work::Shutdown) => {
                    self.commit();
                    tracing::info!(indexed = self.indexed_total, "search index flushed");
                    return;
                }
            }
        }
    }

    fn add(&mut self, doc: SearchDoc) {
        let f = self.fields;
        let envelope = &doc.envelope;
        let mut document = TantivyDocument::default();
        document.add_text(f.id, envelope.id.hyphenated().to_string());
        document.add_text(f.project_id, envelope.project_id.hyphenated().to_string());
        document.add_text(f.from, envelope.from());
        for recipient in &doc.to {
            document.add_text(f.to, recipient);
        }
        document.add_text(f.subject, envelope.subject());
        document.add_text(f.body, envelope.body());
        let mut timestamp = String::with_capacity(24);
        crate::clock::write_rfc3339_ms(&mut timestamp, envelope.timestamp_ms);
        document.add_text(f.timestamp, timestamp);
        match self.writer.add_document(document) {
            Ok(_) => {
                self.uncommitted += 1;
                self.first_uncommitted_at.get_or_insert_with(Instant::now);
            }
            Err(error) => tracing::error!(%error, id = %envelope.id, "could not index a message"),
        }
    }

    fn commit(&mut self) {
        if self.uncommitted == 0 {
            self.first_uncommitted_at = None;
            return;
        }
        let started = Instant::now();
        match self.writer.commit() {
            Ok(_) => {
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
            }
            // The documents stay in the writer; retry after a pause instead of spinning.
            Err(error) => {
                tracing::error!(%error, pending = self.uncommitted, "search commit failed");
                self.first_uncommitted_at = Some(Instant::now() + RETRY_AFTER_FAILURE);
            }
        }
    }
}

/// Fault injection for the integration tests (`tests/helpers.rs`), compiled into debug builds
/// only and inert unless its environment variables are set:
/// - `ALLMAN_TEST_PAUSE_INDEXER=<path>`: the indexer takes no document while `<path>` exists
///   (a stalled indexer, to fill the search feed).
/// - `ALLMAN_TEST_PANIC_SUBJECT=<subject>`: indexing a message with this subject panics the
///   indexer (a helper thread that dies).
#[derive(Debug, Default)]
struct TestHooks {
    #[cfg(debug_assertions)]
    pause_file: Option<std::path::PathBuf>,
    #[cfg(debug_assertions)]
    panic_subject: Option<String>,
}

impl TestHooks {
    #[cfg(debug_assertions)]
    fn from_env() -> Self {
        TestHooks {
            pause_file: std::env::var_os("ALLMAN_TEST_PAUSE_INDEXER").map(Into::into),
            panic_subject: std::env::var("ALLMAN_TEST_PANIC_SUBJECT").ok(),
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

    fn check(&self, _doc: &SearchDoc) {
        #[cfg(debug_assertions)]
        if self.panic_subject.as_deref() == Some(_doc.envelope.subject()) {
            panic!("test hook: the indexer was told to fail");
        }
    }
}
