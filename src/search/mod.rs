//! Full-text search of all mail: a Tantivy index owned by an indexer thread on its own core,
//! fed by the shards over a crossbeam channel, and a query thread that answers
//! `search_messages` from the latest committed snapshot.
//!
//! Nothing here runs on a shard: shards only enqueue (never block) and await query replies.

mod directory;
mod indexer;
mod query;
mod schema;

pub use indexer::{HelperWatermarks, Resume, SearchDoc, Watermarks};
pub use schema::OpenedIndex;

use crate::feed::{self, FeedLimits, Producer};
use crate::lifecycle::{supervise, Event};
use crate::metrics::SearchMetrics;
use crate::wake;
use crossbeam_channel::Sender;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Largest `limit` a search may ask for.
pub const MAX_SEARCH_LIMIT: usize = 1000;
pub const DEFAULT_SEARCH_LIMIT: usize = 10;
/// Queries waiting for the query thread; beyond it `search_messages` answers "busy" at once
/// rather than queueing unboundedly behind slow queries.
const MAX_QUEUED_QUERIES: usize = 256;

#[derive(Debug, Clone)]
pub struct SearchConfig {
    pub index_path: PathBuf,
    pub core: usize,
    /// Documents in flight from the shards to the indexer before shards hold new ones back.
    pub queue_depth: usize,
    /// Bytes of message text held or in flight to the indexer before senders wait.
    pub queue_bytes: usize,
    /// Longest wait between a document's arrival and its commit.
    pub commit_interval_ms: u64,
}

#[derive(Debug)]
pub enum SearchError {
    /// The index directory cannot be created, cleared or written.
    Index {
        path: PathBuf,
        reason: String,
    },
    Thread(std::io::Error),
}

impl fmt::Display for SearchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SearchError::Index { path, reason } => {
                write!(f, "search index at {}: {reason}", path.display())
            }
            SearchError::Thread(error) => write!(f, "cannot start the search threads: {error}"),
        }
    }
}

impl std::error::Error for SearchError {}

/// Why a query got no results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// The query text does not parse; the parser's reason.
    Syntax(String),
    /// Too many queries waiting; try again.
    Busy,
    /// The search threads have stopped (shutdown) or failed.
    Unavailable(String),
    /// Even the best hit does not fit in what is left of a batch's response.
    DoesNotFit,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Syntax(reason) => write!(f, "invalid query: {reason}"),
            QueryError::Busy => write!(
                f,
                "search is busy ({MAX_QUEUED_QUERIES} queries waiting); retry shortly"
            ),
            QueryError::Unavailable(reason) => write!(f, "search unavailable: {reason}"),
            QueryError::DoesNotFit => write!(
                f,
                "not searched: the best hit does not fit in what is left of this batch's \
                 response; search in a request of its own"
            ),
        }
    }
}

/// What a query looks for.
enum QueryText {
    /// Query syntax, parsed on the query thread (`search_messages`).
    Parsed(String),
    /// Every message of project `.0` whose `thread_id` term is exactly `.1` (the web view's
    /// thread page); no parsing, so any thread id works whatever characters it holds.
    Thread(String, String),
}

/// What the query thread receives.
enum QueryWork {
    Job(QueryJob),
    /// Exit now. Explicit, because a task left behind on a stopped shard may still hold a
    /// `SearchHandle`, so the channel might never close on its own.
    Stop,
}

/// A query for the query thread. `reply` gets the hits as a JSON array of named documents.
struct QueryJob {
    query: QueryText,
    limit: usize,
    /// The hits' JSON is cut (lowest-ranked first) so that the tool result carrying it (twice:
    /// once escaped as text, once as structured content) stays within this many bytes.
    max_result_bytes: usize,
    /// The best hit is sent even if it alone is larger (nothing else shares the response).
    at_least_one: bool,
    reply: wake::Sender<Result<Hits, QueryError>>,
}

/// A query's hits as a JSON array (see `QueryRunner::collect`), and whether hits were left
/// out (past the limit or the byte bound).
#[derive(Debug)]
pub struct Hits {
    pub json: String,
    pub cut: bool,
}

/// What shards hold to reach the search threads. Cheap to clone; `Send`.
#[derive(Clone)]
pub struct SearchHandle {
    queries: Sender<QueryWork>,
    queries_waiting: Arc<AtomicUsize>,
}

impl SearchHandle {
    /// Runs a query on the query thread; see [`QueryJob::max_result_bytes`].
    pub async fn query(
        &self,
        text: &str,
        limit: usize,
        max_result_bytes: usize,
        at_least_one: bool,
    ) -> Result<String, QueryError> {
        let query = QueryText::Parsed(text.to_string());
        let hits = self
            .run(query, limit, max_result_bytes, at_least_one)
            .await?;
        Ok(hits.json)
    }

    /// The messages of a project's named thread (replies name their root's id), as
    /// [`Self::query`] gives them, and whether some were left out.
    pub async fn thread(
        &self,
        project_id: &str,
        thread_id: &str,
        limit: usize,
        max_result_bytes: usize,
    ) -> Result<Hits, QueryError> {
        let query = QueryText::Thread(project_id.to_string(), thread_id.to_string());
        self.run(query, limit, max_result_bytes, true).await
    }

    async fn run(
        &self,
        query: QueryText,
        limit: usize,
        max_result_bytes: usize,
        at_least_one: bool,
    ) -> Result<Hits, QueryError> {
        if self.queries_waiting.fetch_add(1, Ordering::AcqRel) >= MAX_QUEUED_QUERIES {
            self.queries_waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(QueryError::Busy);
        }
        let (reply, answer) = wake::channel();
        let job = QueryJob {
            query,
            limit,
            max_result_bytes,
            at_least_one,
            reply,
        };
        if self.queries.send(QueryWork::Job(job)).is_err() {
            self.queries_waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(QueryError::Unavailable(
                "the query thread has stopped".into(),
            ));
        }
        answer.await.unwrap_or_else(|| {
            Err(QueryError::Unavailable(
                "the query thread dropped the query".into(),
            ))
        })
    }
}

/// The running search threads, as the main thread sees them.
pub struct SearchService {
    handle: SearchHandle,
    docs: Producer<SearchDoc>,
    indexer: JoinHandle<()>,
    query: JoinHandle<()>,
    /// This server's lock on the index directory, released when the service is dropped.
    _lock: std::fs::File,
}

/// What a message costs the search feed's byte budget: its text, thread id and names. The
/// owner charges it when it hands the document over; a send reserves the same
/// ([`doc_bytes_of`] its parts) before its envelope exists.
pub fn doc_bytes(envelope: &shards::Envelope) -> usize {
    let names: usize = envelope.recipients().map(str::len).sum();
    doc_bytes_of(envelope.payload_len(), envelope.thread_len(), names)
}

/// [`doc_bytes`] from a message's parts: its text (from, subject, body), its thread id and
/// its recipients' names, in bytes.
pub fn doc_bytes_of(payload_bytes: usize, thread_id_bytes: usize, name_bytes: usize) -> usize {
    payload_bytes + thread_id_bytes + name_bytes
}

/// Opens the index at `path`: kept from the last run when `keep` (a durable server), else
/// recreated empty.
pub fn open_index(path: &Path, keep: bool) -> Result<OpenedIndex, SearchError> {
    if keep {
        return schema::open_or_create_index(path);
    }
    schema::create_empty_index(path)
}

/// Starts the indexer and query threads on `opened`, both pinned to `config.core`. With
/// watermarks to resume from (a durable server), each commit records how far into the
/// shards' logs it got, and each persist publishes it to `resume.live`. If either thread dies
/// while serving, `events` is told why.
pub fn start(
    config: &SearchConfig,
    opened: OpenedIndex,
    resume: Resume,
    metrics: Arc<SearchMetrics>,
    events: &std::sync::mpsc::Sender<Event>,
) -> Result<SearchService, SearchError> {
    let OpenedIndex {
        index,
        directory,
        lock,
        ..
    } = opened;

    // Unbounded channels with our own counters: crossbeam's bounded try_send can spin for
    // milliseconds when the receiver is descheduled, which would stall a shard.
    let limits = FeedLimits {
        depth: config.queue_depth,
        max_bytes: config.queue_bytes,
    };
    let (docs, doc_rx) = feed::channel(limits, "search indexer", metrics.feed.clone());
    let (queries, query_rx) = crossbeam_channel::unbounded();
    let queries_waiting = Arc::new(AtomicUsize::new(0));

    let (indexer, reader) =
        spawn_indexer(config, &index, directory, resume, metrics, doc_rx, events)?;
    let searcher = query::QueryRunner::new(&index, reader, Arc::clone(&queries_waiting));
    let query_events = events.clone();
    let core = config.core;
    let query = std::thread::Builder::new()
        .name("allman-query".into())
        .spawn(move || {
            crate::cores::pin_current_thread(core);
            supervise("search query", &query_events, move || {
                searcher.run(query_rx)
            });
        })
        .map_err(SearchError::Thread)?;
    Ok(SearchService {
        handle: SearchHandle {
            queries,
            queries_waiting,
        },
        docs,
        indexer,
        query,
        _lock: lock,
    })
}

/// Starts `allman-index` and waits until it has opened the writer and the reader, whose
/// reader it hands back for the query thread. Both are built on the indexer thread once it
/// is pinned, so Tantivy's own threads (segment updater, merges, warming) inherit the pin.
fn spawn_indexer(
    config: &SearchConfig,
    index: &tantivy::Index,
    directory: directory::UnsyncedDirectory,
    resume: Resume,
    metrics: Arc<SearchMetrics>,
    doc_rx: feed::Consumer<SearchDoc>,
    events: &std::sync::mpsc::Sender<Event>,
) -> Result<(JoinHandle<()>, tantivy::IndexReader), SearchError> {
    let core = config.core;
    let interval = std::time::Duration::from_millis(config.commit_interval_ms);
    let writer_index = index.clone();
    let path = config.index_path.clone();
    let (opened_tx, opened) = std::sync::mpsc::channel();
    let events = events.clone();
    let indexer = std::thread::Builder::new()
        .name("allman-index".into())
        .spawn(move || {
            crate::cores::pin_current_thread(core);
            let parts = writer_index
                .reader_builder()
                .reload_policy(tantivy::ReloadPolicy::Manual)
                .try_into()
                .and_then(|reader| {
                    let writer: tantivy::IndexWriter =
                        writer_index.writer_with_num_threads(1, indexer::WRITER_HEAP_BYTES)?;
                    writer.set_merge_policy(Box::new(indexer::merge_policy()));
                    Ok((reader, writer))
                });
            match parts {
                Ok((reader, writer)) => {
                    let _ = opened_tx.send(Ok(reader.clone()));
                    supervise("search indexer", &events, move || {
                        indexer::Indexer::new(writer, reader, directory, metrics, interval, resume)
                            .run(doc_rx)
                    });
                }
                Err(error) => {
                    let _ = opened_tx.send(Err(index_error(&path, error)));
                }
            }
        })
        .map_err(SearchError::Thread)?;
    match opened.recv() {
        Ok(Ok(reader)) => Ok((indexer, reader)),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(index_error(
            &config.index_path,
            "the indexer thread ended while starting",
        )),
    }
}

impl SearchService {
    pub fn handle(&self) -> SearchHandle {
        self.handle.clone()
    }

    /// Where shards send the documents to index.
    pub fn docs(&self) -> Producer<SearchDoc> {
        self.docs.clone()
    }

    /// Commits everything sent so far and stops both threads. Call after the shards have
    /// flushed their held-back documents.
    pub fn shutdown(self) {
        let SearchService {
            handle,
            docs,
            indexer,
            query,
            _lock: lock,
        } = self;
        docs.shutdown();
        drop(docs);
        let _ = handle.queries.send(QueryWork::Stop);
        drop(handle);
        if indexer.join().is_err() {
            tracing::error!("the indexer thread panicked");
        }
        // Stopped by the explicit message above.
        if query.join().is_err() {
            tracing::error!("the query thread panicked");
        }
        // Held until the indexer has written its last commit.
        drop(lock);
    }
}

fn index_error(path: &Path, error: impl fmt::Display) -> SearchError {
    SearchError::Index {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}
