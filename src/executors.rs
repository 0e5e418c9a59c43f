//! The shard executors: one pinned glommio executor per shard, each accepting on the shared
//! listening socket and serving its connections itself, and the orderly stop.

use crate::audit::ProfileEvent;
use crate::config::{Config, Durability, MAX_HEADER_BYTES};
use crate::feed::{Feed, Producer};
use crate::http::{self, refuse_connection, serve_connection, ConnectionContext, ReadBudget};
use crate::lifecycle::Event;
use crate::mcp::sessions::Sessions;
use crate::mcp::transport::TransportPolicy;
use crate::metrics::Metrics;
use crate::routes::Routes;
use crate::search::{SearchDoc, SearchHandle};
use crate::storage::{self, StartKits};
use crate::tools::{ToolSettings, Toolbox};
use crate::wake::Notify;
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use shards::log::compaction::CompactPolicy;
use shards::log::journal::{segment_bytes_for, SegmentWriter};
use shards::log::watermarks::HelperWatermarks;
use shards::{MeshPair, Shard, Turn, WaiterLimits};
use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::os::unix::io::FromRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Memory glommio registers per executor for direct file I/O: the log's commit buffers in
/// fsync mode (O_DIRECT). A group commit of 64 connections' sends is about 20 KiB, so this
/// holds many; a larger batch takes ordinary memory instead (glommio falls back to the heap).
/// Kept small so start-up works where locked memory is scarce (`ulimit -l`).
const IO_MEMORY_BYTES: usize = 512 * 1024;
/// Poll interval while waiting for connections to finish during shutdown.
const DRAIN_POLL_MS: u64 = 5;
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF_MS: u64 = 10;
/// Debug builds log a task queue that runs this much longer than glommio's preempt timer
/// (100 ms) without yielding: a loop that forgot to yield shows up in the test logs.
#[cfg(debug_assertions)]
const STALL_THRESHOLD_MS: u64 = 50;

/// The helper threads' ends that every shard gets a copy of.
#[derive(Clone)]
pub struct Helpers {
    pub metrics: Arc<Metrics>,
    /// How far search and git got in each shard's log: compaction deletes only below both.
    pub watermarks: Arc<HelperWatermarks>,
    /// Each shard's recovered state and log.
    pub kits: Arc<StartKits>,
    pub search: SearchHandle,
    pub search_docs: Producer<SearchDoc>,
    pub audit: Producer<ProfileEvent>,
}

/// Settings every shard reads.
#[derive(Debug, Clone)]
struct ShardSettings {
    limits: http::Limits,
    timeouts: http::Timeouts,
    max_connections: usize,
    /// How long a stopping shard waits for in-flight requests before it gives up on them.
    shutdown_grace: Duration,
    /// Request bytes the shard buffers beyond each connection's first read buffer.
    read_buffer_budget_bytes: usize,
    transport: TransportPolicy,
    /// `--ui`: serve the web view.
    ui: bool,
    waiters: WaiterLimits,
    /// `subscriptions/listen` streams one shard holds open: `--max-waiters`, like long polls.
    max_listen_streams: usize,
    tools: ToolSettings,
}

impl ShardSettings {
    fn from_config(config: &Config) -> Self {
        ShardSettings {
            limits: http::Limits {
                max_header_bytes: MAX_HEADER_BYTES,
                max_body_bytes: config.max_body_bytes,
            },
            timeouts: http::Timeouts {
                idle: Duration::from_millis(config.idle_timeout_ms),
                request: Duration::from_millis(config.request_timeout_ms),
            },
            max_connections: config.max_connections,
            shutdown_grace: Duration::from_millis(config.shutdown_grace_ms),
            read_buffer_budget_bytes: config.read_buffer_budget_bytes,
            ui: config.ui,
            tools: ToolSettings {
                agent_auth: config.agent_auth,
                stale_lease_ms: config.stale_lease_minutes as i64 * 60_000,
            },
            max_listen_streams: config.max_waiters,
            waiters: WaiterLimits {
                per_shard: config.max_waiters,
                ..WaiterLimits::default()
            },
            transport: TransportPolicy {
                allowed_origins: config.allowed_origins.clone(),
                allowed_hosts: config.allowed_hosts.clone(),
                check_host: config.bind.is_loopback(),
                token: config.token.clone(),
            },
        }
    }
}

/// The running shards, as seen from the main thread.
pub struct Executors {
    stops: Vec<Notify>,
    exits: Vec<Notify>,
    handles: Vec<glommio::ExecutorJoinHandle<()>>,
}

/// Starts one executor per configured shard core. Each reports `Ready` (or `Failed`) on
/// `events` once it has joined the mesh and holds its listener.
pub fn start(
    config: &Config,
    listener: &std::net::TcpListener,
    helpers: &Helpers,
    events: &Sender<Event>,
) -> std::io::Result<Executors> {
    let mesh = MeshPair::new(config.shard_count(), config.cross_shard_queue_depth);
    let settings = ShardSettings::from_config(config);
    let open_connections = Arc::clone(&helpers.metrics.open_connections);
    let sessions = Arc::new(Sessions::default());
    let mut shards = Executors {
        stops: Vec::new(),
        exits: Vec::new(),
        handles: Vec::new(),
    };
    for (slot, &core) in config.shard_cores.iter().enumerate() {
        let stop = Notify::default();
        let exit = Notify::default();
        // Each shard owns a dup of the one exclusively bound socket (see main.rs).
        let fd = listener.try_clone()?.into_raw_fd();
        let reporter = Reporter {
            events: events.clone(),
            slot,
            core,
            running: false,
        };
        let context = ShardContext {
            mesh: mesh.clone(),
            fd,
            settings: settings.clone(),
            stop: stop.clone(),
            exit: exit.clone(),
            open_connections: Arc::clone(&open_connections),
            helpers: helpers.clone(),
            sessions: Arc::clone(&sessions),
        };
        let mut builder = LocalExecutorBuilder::new(Placement::Fixed(core))
            .name("allman-shard")
            .io_memory(IO_MEMORY_BYTES);
        #[cfg(debug_assertions)]
        {
            builder = builder.detect_stalls(Some(Box::new(StallLogger)));
        }
        if config.spin_us > 0 {
            builder = builder.spin_before_park(Duration::from_micros(config.spin_us));
        }
        let handle = builder
            .spawn(move || async move {
                let mut reporter = reporter;
                reporter.running = true;
                run_shard(context, &reporter).await;
            })
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        shards.stops.push(stop);
        shards.exits.push(exit);
        shards.handles.push(handle);
    }
    Ok(shards)
}

impl Executors {
    /// Stop accepting, let in-flight requests finish, then stop the shards.
    /// `wait_drained` receives events until every shard has reported `Drained`.
    pub fn stop(self, wait_drained: impl FnOnce(usize)) {
        for stop in &self.stops {
            stop.fire();
        }
        wait_drained(self.stops.len());
        for exit in &self.exits {
            exit.fire();
        }
        for handle in self.handles {
            if let Err(error) = handle.join() {
                tracing::error!(%error, "shard ended with an error");
            }
        }
    }

    /// The error of the shard in `slot` whose executor could not be created. Its thread has
    /// already ended, so the join returns at once; other shards are never joined here (they
    /// may be waiting in the mesh for the one that failed).
    pub fn executor_error(self, slot: usize) -> String {
        self.handles
            .into_iter()
            .nth(slot)
            .and_then(|handle| handle.join().err())
            .map(|e| e.to_string())
            .unwrap_or_else(|| "unknown error".into())
    }
}

/// Tells the main thread how a shard thread ended, even if it panicked: dropped without
/// `running`, the executor never started; dropped while running, the shard exited.
struct Reporter {
    events: Sender<Event>,
    slot: usize,
    core: usize,
    running: bool,
}

impl Reporter {
    fn send(&self, event: Event) {
        // The main thread outlives the shards; a send error means it is already exiting.
        let _ = self.events.send(event);
    }

    /// The shard could not start (its executor did): start-up stops with `reason`.
    fn failed(&self, reason: String) {
        self.send(Event::Failed {
            slot: self.slot,
            core: self.core,
            reason,
            executor_started: true,
        })
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        let event = if self.running {
            Event::Exited {
                slot: self.slot,
                core: self.core,
            }
        } else {
            Event::Failed {
                slot: self.slot,
                core: self.core,
                reason: "the executor could not start".into(),
                executor_started: false,
            }
        };
        self.send(event);
    }
}

struct ShardContext {
    mesh: MeshPair,
    fd: RawFd,
    settings: ShardSettings,
    stop: Notify,
    exit: Notify,
    open_connections: Arc<AtomicUsize>,
    helpers: Helpers,
    /// MCP 2025 sessions, shared by every shard.
    sessions: Arc<Sessions>,
}

async fn run_shard(context: ShardContext, reporter: &Reporter) {
    let kits = Arc::clone(&context.helpers.kits);
    let agent_auth = context.settings.tools.agent_auth;
    let joined = join_shard(context.mesh, context.settings.waiters, &kits, agent_auth).await;
    let (shard, log_start) = match joined {
        Ok(joined) => joined,
        Err(error) => return reporter.failed(error),
    };
    let flusher = match &log_start {
        Some(log) => match start_log(&shard, log, &kits, &context.helpers).await {
            Ok(flusher) => Some(flusher),
            Err(error) => return reporter.failed(error),
        },
        None => None,
    };
    // SAFETY: `fd` is a listening socket this thread owns (a dup made for it in `start`).
    let listener = unsafe { TcpListener::from_raw_fd(context.fd) };
    let metrics = Arc::clone(&context.helpers.metrics);
    let (search_feed, audit_feed) = feeds_for(
        &shard,
        context.helpers.search_docs,
        context.helpers.audit,
        log_start.is_some(),
    );
    let toolbox = Toolbox::new(
        Rc::clone(&shard),
        context.helpers.search,
        Rc::clone(&search_feed),
        Rc::clone(&audit_feed),
        Arc::clone(&metrics),
        context.settings.tools,
    );
    let routes = routes_for(toolbox, &context.settings, &metrics, &context.sessions);
    let connections = Rc::new(RefCell::new(Connections::default()));
    let budget = Rc::new(ReadBudget::new(context.settings.read_buffer_budget_bytes));
    glommio::spawn_local(publish_shard_gauges(
        Rc::clone(&shard),
        Rc::clone(&budget),
        Arc::clone(&metrics),
    ))
    .detach();
    let settings = Rc::new(context.settings);
    reporter.send(Event::Ready { shard: shard.id() });

    let acceptor = Acceptor {
        routes: Rc::clone(&routes),
        metrics,
        connections: Rc::clone(&connections),
        settings: Rc::clone(&settings),
        budget,
        open_connections: context.open_connections,
    };
    acceptor
        .accept_until_stopped(&listener, &context.stop)
        .await;
    drop(listener);
    // Long polls answer now, so their connections can finish within the grace period.
    shard.close_waiters();
    routes.close_streams();
    drop(routes);
    finish_connections(shard.id(), &connections, settings.shutdown_grace).await;
    let flush_feeds = || {
        search_feed.flush_all();
        audit_feed.flush_all();
    };
    shut_down(&shard, flusher, flush_feeds, reporter, &context.exit).await;
}

/// The end of a shard whose connections are done: what it holds goes to the helpers, it
/// answers its peers until every shard has drained, then its log is written to the end.
async fn shut_down(
    shard: &Shard,
    flusher: Option<glommio::Task<()>>,
    flush_feeds: impl Fn(),
    reporter: &Reporter,
    exit: &Notify,
) {
    // No request runs here any more: whatever is held goes to the helper threads.
    flush_feeds();
    reporter.send(Event::Drained { shard: shard.id() });
    // Keep answering other shards' requests until every shard has drained.
    exit.wait().await;
    // Write and sync what is left of the log; its last emissions reach the feeds.
    if let (Some(journal), Some(flusher)) = (shard.journal(), flusher) {
        journal.close();
        flusher.await;
    }
    // A connection still busy after the grace period may have submitted more since.
    flush_feeds();
    shard.close();
}

/// This shard's ends of the feeds to the helper threads, and the sink that hands them what
/// becomes durable (at once without a log).
fn feeds_for(
    shard: &Shard,
    search_docs: Producer<SearchDoc>,
    audit: Producer<ProfileEvent>,
    logged: bool,
) -> (Rc<Feed<SearchDoc>>, Rc<Feed<ProfileEvent>>) {
    let search_feed = Feed::new(search_docs);
    let audit_feed = Feed::new(audit);
    shard.set_sink(storage::sink(
        shard.id(),
        logged,
        Rc::clone(&search_feed),
        Rc::clone(&audit_feed),
    ));
    (search_feed, audit_feed)
}

/// What this shard serves, with the settings every shard shares.
fn routes_for(
    toolbox: Toolbox,
    settings: &ShardSettings,
    metrics: &Arc<Metrics>,
    sessions: &Arc<Sessions>,
) -> Rc<Routes> {
    Rc::new(Routes::new(
        toolbox,
        Rc::new(settings.transport.clone()),
        Arc::clone(metrics),
        settings.ui,
        settings.max_listen_streams,
        Arc::clone(sessions),
    ))
}

/// Joins the mesh with this shard's recovered state, made ready before any peer is served;
/// with the log this shard continues, if it keeps one.
async fn join_shard(
    mesh: MeshPair,
    waiters: WaiterLimits,
    kits: &StartKits,
    agent_auth: bool,
) -> Result<(Rc<Shard>, Option<storage::LogStart>), String> {
    let mut log_start = None;
    let joined = Shard::join_with(mesh, waiters, |id| {
        let mut kit = kits.take(id)?;
        // Before any peer is served: a request in between would act without tokens.
        kit.state.set_agent_auth(agent_auth);
        // Replay keeps every logged lease active; those expired by now leave at once.
        kit.state.sweep_leases(crate::clock::now_ms(), usize::MAX);
        let journal = kit.log.as_ref().map(|log| kits.journal(log));
        log_start = kit.log;
        Ok((kit.state, journal))
    })
    .await;
    let shard = joined.map_err(|error| error.to_string())?;
    Ok((shard, log_start))
}

/// Starts this shard's log: the flusher (returned, awaited at shutdown) and the compactor.
async fn start_log(
    shard: &Rc<Shard>,
    log: &storage::LogStart,
    kits: &StartKits,
    helpers: &Helpers,
) -> Result<glommio::Task<()>, String> {
    let flusher = start_flusher(shard, log, kits, &helpers.metrics).await?;
    let compaction = compact_log(
        Rc::clone(shard),
        log.dir.clone(),
        log.bytes_before,
        kits.compact_bytes,
        Arc::clone(&helpers.watermarks),
    );
    glommio::spawn_local(compaction).detach();
    Ok(flusher)
}

/// Opens this shard's next segment and starts the flusher that writes its log; a write error
/// then stops the server (exit 1) rather than acknowledge anything it could not log.
async fn start_flusher(
    shard: &Rc<Shard>,
    log: &storage::LogStart,
    kits: &StartKits,
    metrics: &Metrics,
) -> Result<glommio::Task<()>, String> {
    let count = shard.count() as u32;
    // fsync mode writes around the page cache (the data goes to the device anyway); batch
    // mode hands each batch to the page cache, which survives a crash of the process and
    // costs no device round trip per group commit.
    let direct_io = kits.mode == Durability::Fsync;
    let segment_bytes = segment_bytes_for(kits.compact_bytes);
    let id = shard.id() as u32;
    let writer = SegmentWriter::create(&log.dir, id, count, log.base, direct_io, segment_bytes)
        .await
        .map_err(|error| format!("cannot open its log in {}: {error}", log.dir.display()))?;
    tracing::debug!(
        shard = shard.id(),
        direct_io = writer.is_direct(),
        "log open"
    );
    metrics.shards[shard.id()]
        .log_direct_io
        .store(u64::from(writer.is_direct()), Ordering::Relaxed);
    Ok(glommio::spawn_local(write_log(Rc::clone(shard), writer)))
}

/// How often a shard checks whether its log is due for a snapshot.
const COMPACT_CHECK_MS: u64 = 1_000;
/// After a failed snapshot or cleanup (disk full, say), wait this long before trying again.
const COMPACT_RETRY_MS: u64 = 10_000;

/// Runs compaction for the shard until the journal closes; an I/O error is logged and
/// retried later (the log only grows meanwhile: nothing is lost).
async fn compact_log(
    shard: Rc<Shard>,
    dir: std::path::PathBuf,
    bytes_before: u64,
    min_log_bytes: u64,
    watermarks: Arc<HelperWatermarks>,
) {
    let id = shard.id();
    let policy = CompactPolicy {
        min_log_bytes,
        check_interval: Duration::from_millis(COMPACT_CHECK_MS),
    };
    let mut bytes_before = bytes_before;
    loop {
        let run = Rc::clone(&shard).compact_log(
            dir.clone(),
            policy,
            bytes_before,
            Arc::clone(&watermarks),
        );
        match run.await {
            Ok(()) => return,
            Err(error) => {
                tracing::error!(shard = id, %error, "log compaction failed; retrying later");
                bytes_before = 0;
                glommio::timer::sleep(Duration::from_millis(COMPACT_RETRY_MS)).await;
            }
        }
    }
}

/// Runs the shard's log flusher; if the log cannot be written, the server stops (exit 1):
/// nothing it could not log is ever acknowledged.
async fn write_log(shard: Rc<Shard>, writer: SegmentWriter) {
    let id = shard.id();
    if let Err(error) = shard.flush_log(writer).await {
        tracing::error!(shard = id, %error, "cannot write the log; stopping");
        std::process::exit(1);
    }
}

/// Ends idle connections at once and lets busy ones finish the requests they have read, for
/// at most `grace`.
async fn finish_connections(shard: usize, connections: &RefCell<Connections>, grace: Duration) {
    let open = connections.borrow().shutdown_reads();
    tracing::info!(shard, open, "shard stopping");
    let deadline = Instant::now() + grace;
    while !connections.borrow().is_empty() && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(DRAIN_POLL_MS)).await;
    }
    let left = connections.borrow().len();
    if left > 0 {
        tracing::warn!(shard, left, "connections still busy after the grace period");
    }
}

/// What the accept loop hands to each connection it starts.
struct Acceptor {
    routes: Rc<Routes>,
    metrics: Arc<Metrics>,
    connections: Rc<RefCell<Connections>>,
    settings: Rc<ShardSettings>,
    budget: Rc<ReadBudget>,
    open_connections: Arc<AtomicUsize>,
}

impl Acceptor {
    async fn accept_until_stopped(&self, listener: &TcpListener, stop: &Notify) {
        let mut turn = Turn::new();
        loop {
            let accepted =
                futures_lite::future::or(async { Some(listener.accept().await) }, async {
                    stop.wait().await;
                    None
                });
            let accepted = turn.wait(accepted).await;
            match accepted {
                None => return,
                Some(Ok(stream)) => self.start_connection(stream),
                Some(Err(error)) => {
                    tracing::warn!(%error, "accept failed");
                    glommio::timer::sleep(Duration::from_millis(ACCEPT_BACKOFF_MS)).await;
                }
            }
            // Under a connect flood `accept` completes at once every time: take turns, so the
            // connections already accepted get served.
            turn.done().await;
        }
    }

    fn start_connection(&self, stream: glommio::net::TcpStream) {
        let open = &self.open_connections;
        if open.fetch_add(1, Ordering::AcqRel) >= self.settings.max_connections {
            open.fetch_sub(1, Ordering::AcqRel);
            self.metrics
                .refused_connections
                .fetch_add(1, Ordering::Relaxed);
            glommio::spawn_local(async move {
                let mut stream = stream;
                let reason = "too many open connections; retry later\n";
                refuse_connection(&mut stream, reason, &mut Turn::new()).await;
                tracing::debug!("refused a connection over the limit");
            })
            .detach();
            return;
        }
        let key = self.connections.borrow_mut().insert(stream.as_raw_fd());
        let guard = ConnectionGuard {
            connections: Rc::clone(&self.connections),
            key,
            open_connections: Arc::clone(open),
        };
        let routes = Rc::clone(&self.routes);
        let settings = Rc::clone(&self.settings);
        let budget = Rc::clone(&self.budget);
        glommio::spawn_local(async move {
            let mut stream = stream;
            // Small request/response exchanges: send each batch of responses immediately.
            let _ = stream.set_nodelay(true);
            let context = ConnectionContext {
                service: &*routes,
                limits: &settings.limits,
                timeouts: settings.timeouts,
                budget: &budget,
            };
            if let Err(error) = serve_connection(&mut stream, &context).await {
                tracing::debug!(%error, "connection ended with an error");
            }
            // Unregister before the socket closes, so shutdown never touches a reused fd.
            drop(guard);
            drop(stream);
        })
        .detach();
    }
}

/// Debug builds: a task queue that runs `STALL_THRESHOLD_MS` past its time slice without
/// yielding is logged by glommio (target `glommio`, level warn, with the stack it sampled).
#[cfg(debug_assertions)]
#[derive(Debug)]
struct StallLogger;

#[cfg(debug_assertions)]
impl glommio::StallDetectionHandler for StallLogger {
    fn threshold(
        &self,
        _queue: glommio::TaskQueueHandle,
        _max_expected_runtime: Duration,
    ) -> Option<Duration> {
        Some(Duration::from_millis(STALL_THRESHOLD_MS))
    }
}

/// How often a shard copies its state gauges (agents, queued messages, calls in flight)
/// into the metrics; a scrape sees values at most this old.
const GAUGE_INTERVAL_MS: u64 = 1_000;

/// Projects whose expired reservations one sweep (once a second) reaps.
const LEASE_SWEEP_PROJECTS: usize = 256;

/// Publishes this shard's gauges for `/metrics`, which any shard may serve, and sweeps
/// expired reservations.
async fn publish_shard_gauges(shard: Rc<Shard>, budget: Rc<ReadBudget>, metrics: Arc<Metrics>) {
    loop {
        let stats = shard.stats();
        let slot = &metrics.shards[shard.id()];
        slot.read_buffer_bytes
            .store(budget.used_bytes() as u64, Ordering::Relaxed);
        slot.agents.store(stats.agents as u64, Ordering::Relaxed);
        slot.queued_messages
            .store(stats.queued_messages as u64, Ordering::Relaxed);
        slot.retained_messages
            .store(stats.retained_messages as u64, Ordering::Relaxed);
        slot.waiters.store(stats.waiters as u64, Ordering::Relaxed);
        // Expired file reservations leave the active lists of a bounded number of projects.
        shard.with_state(|state| state.sweep_leases(crate::clock::now_ms(), LEASE_SWEEP_PROJECTS));
        slot.cross_shard_in_flight
            .store(stats.in_flight as u64, Ordering::Relaxed);
        if let Some(journal) = shard.journal() {
            let log = *journal.stats.borrow();
            slot.log_bytes.store(log.bytes_written, Ordering::Relaxed);
            slot.log_records.store(log.records, Ordering::Relaxed);
            slot.log_batches.store(log.batches, Ordering::Relaxed);
            slot.log_syncs.store(log.syncs, Ordering::Relaxed);
            slot.log_snapshots.store(log.snapshots, Ordering::Relaxed);
            slot.log_sync_micros
                .store(log.sync_micros_total, Ordering::Relaxed);
        }
        glommio::timer::sleep(Duration::from_millis(GAUGE_INTERVAL_MS)).await;
    }
}

/// The sockets this shard is serving, so a stop can end their reads.
#[derive(Default)]
struct Connections {
    next_key: u64,
    fds: HashMap<u64, RawFd>,
}

impl Connections {
    fn insert(&mut self, fd: RawFd) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        self.fds.insert(key, fd);
        key
    }

    fn len(&self) -> usize {
        self.fds.len()
    }

    fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// Shuts down the read side of every connection: a connection waiting for its next
    /// request sees end-of-stream and closes; one in the middle of a request still writes
    /// its response. Returns how many were open.
    fn shutdown_reads(&self) -> usize {
        for fd in self.fds.values() {
            // SAFETY: the fd is registered only while its stream is alive (ConnectionGuard).
            unsafe {
                libc::shutdown(*fd, libc::SHUT_RD);
            }
        }
        self.fds.len()
    }
}

struct ConnectionGuard {
    connections: Rc<RefCell<Connections>>,
    key: u64,
    open_connections: Arc<AtomicUsize>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.connections.borrow_mut().fds.remove(&self.key);
        self.open_connections.fetch_sub(1, Ordering::AcqRel);
    }
}
