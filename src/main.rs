//! allman: start-up and shutdown, in order. Read this file as the table of contents.

use allman::metrics::{AuditMetrics, CoreLayout, Metrics, SearchMetrics};
use allman::{audit, config, cores, executors, lifecycle, search, storage};
use std::sync::Arc;

use config::{Config, ConfigError};
use lifecycle::Event;
use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

/// Backlog of the listening socket: absorbs a burst of connects from a large swarm.
const LISTEN_BACKLOG: i32 = 1024;
/// How long stopping waits for the shards' drained reports beyond their own grace period:
/// time to close connections and flush the feeds after the grace ends.
const DRAIN_REPORT_SLACK_MS: u64 = 2_000;
/// How long start-up waits for every shard to report ready.
const STARTUP_TIMEOUT_MS: u64 = 30_000;

fn main() -> ExitCode {
    // 0. `allman hook …` is a client for a coding agent's hooks, not the server.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "hook") {
        return run_hook(&args[1..]);
    }
    // 1. Configuration.
    let mut config =
        match config::parse(args, |key| std::env::var(key).ok(), &cores::usable_cores()) {
            Ok(config) => config,
            Err(ConfigError::HelpRequested) => {
                print!("{}", config::help());
                return ExitCode::SUCCESS;
            }
            Err(ConfigError::VersionRequested) => {
                println!("allman {}", allman::VERSION);
                return ExitCode::SUCCESS;
            }
            Err(error) => {
                eprintln!("allman: {error}");
                return ExitCode::from(2);
            }
        };
    if config.has_relative_paths() {
        match std::env::current_dir() {
            Ok(cwd) => config.make_paths_absolute(&cwd),
            Err(error) => {
                eprintln!(
                    "allman: cannot read the working directory to resolve a relative \
                     --data-dir, INDEX_PATH or REPO_ROOT: {error}"
                );
                return ExitCode::FAILURE;
            }
        }
    }
    init_logging();
    log_panics();
    match run(&config) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("allman: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `allman hook`: reads the client's event from stdin, prints the report (if any).
fn run_hook(args: &[String]) -> ExitCode {
    let hook_args = match allman::hook::parse_args(args, |key| std::env::var(key).ok()) {
        Ok(hook_args) => hook_args,
        Err(problem) => {
            if !problem.is_empty() {
                eprintln!("allman hook: {problem}");
            }
            eprint!("{}", allman::hook::USAGE);
            return ExitCode::from(if problem.is_empty() { 0 } else { 2 });
        }
    };
    let mut stdin = String::new();
    if !std::io::stdin().is_terminal() {
        // At most a hook event's size: the prompt itself may be long, and is not needed.
        let _ = std::io::Read::read_to_string(
            &mut std::io::Read::take(std::io::stdin(), 1 << 20),
            &mut stdin,
        );
    }
    // Whatever happens, the client's session goes on: a hook's failure is never an error.
    let _ = allman::hook::run(&hook_args, &stdin, &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// Start-up, serving and the orderly stop, in order. An error is a start-up failure.
fn run(config: &Config) -> Result<ExitCode, String> {
    // The version first, so that even a failed start (or a long recovery) names it.
    tracing::info!(version = allman::VERSION, "allman starting");
    // 1b. io_uring must be allowed (containers often filter it): say so plainly.
    allman::platform::check_io_uring().map_err(|refusal| refusal.to_string())?;

    // 2. The one listening socket, bound exclusively (no SO_REUSEPORT): a second server on
    //    the same port fails here instead of silently splitting the traffic.
    let addr = SocketAddr::new(config.bind, config.port);
    let listener = bind(config).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;

    // 3. Signals go to one thread. Blocked here first, so every thread started later
    //    (Tantivy's included) inherits the mask and none is killed by SIGTERM.
    let (events_tx, events) = mpsc::channel();
    watch_signals(events_tx.clone()).map_err(|e| format!("cannot install signal handling: {e}"))?;

    // 4. The data directory, locked: a second server on it stops here.
    let data_dir = storage::DataDir::lock(&config.data_dir)?;

    // 5. Recovery of every shard's log, then the search threads and the git writer on their
    //    cores, handed what they had not finished. An unusable INDEX_PATH or REPO_ROOT, or a
    //    corrupt log, stops start-up here.
    let (search, audit, helpers) = start_helpers(config, &data_dir, &events_tx)?;

    // 6. The shards. Each reports ready once it has joined the mesh and holds the socket.
    let executors = executors::start(config, &listener, &helpers, &events_tx)
        .map_err(|e| format!("cannot start the shard threads: {e}"))?;
    drop(listener);
    if let Err(failure) = wait_ready(&events, config.shard_count()) {
        eprintln!("allman: {}", failure.describe(executors));
        // Other shards may be waiting in the mesh for the one that failed; do not join them.
        std::process::exit(1);
    }
    log_started(config, local_addr);

    // 7. Serve until a signal, or until a shard or a helper thread dies (fatal, never a
    //    silent hang: nothing would drain its queue).
    if !serve_until_signal(&events) {
        return Ok(ExitCode::FAILURE);
    }

    // 8. Orderly stop: every shard drains its connections, then all exit together.
    executors.stop(|shard_count| wait_drained(&events, shard_count, config.shutdown_grace_ms));

    // 9. Every shard has handed over what it held: commit the last batches and stop.
    drop(helpers);
    search.shutdown();
    let unwritten = audit.shutdown();
    drop(data_dir);
    if unwritten > 0 {
        tracing::error!(
            unwritten,
            "agent profiles could not be committed to the git audit trail"
        );
        return Ok(ExitCode::FAILURE);
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Recovers the logs, starts the search threads and the git writer, hands them what they
/// had not finished, and gathers the ends every shard gets.
fn start_helpers(
    config: &Config,
    data_dir: &storage::DataDir,
    events: &mpsc::Sender<Event>,
) -> Result<
    (
        search::SearchService,
        audit::AuditService,
        executors::Helpers,
    ),
    String,
> {
    let (opened, mut recovery) = open_and_recover(config, data_dir)?;
    let search_config = search::SearchConfig {
        index_path: config.index_path.clone(),
        core: config.index_core,
        queue_depth: config.search_queue_depth,
        queue_bytes: config.search_queue_bytes,
        commit_interval_ms: config.search_commit_ms,
    };
    // How far search and git got, as they go: each publishes, compaction reads.
    let live_watermarks = Arc::new(search::HelperWatermarks::default());
    let search_metrics = Arc::new(SearchMetrics::default());
    let resume = search::Resume {
        watermarks: recovery.index_watermarks.clone(),
        snapshot_documents: recovery.snapshot_documents(),
        live: Arc::clone(&live_watermarks),
    };
    let search = search::start(
        &search_config,
        opened,
        resume,
        Arc::clone(&search_metrics),
        events,
    )
    .map_err(|e| e.to_string())?;
    let audit_config = audit::AuditConfig {
        repo_root: config.repo_root.clone(),
        core: config.git_core,
        queue_depth: config.audit_queue_depth,
        queue_bytes: config.audit_queue_bytes,
    };
    let audit_metrics = Arc::new(AuditMetrics::default());
    let audit = audit::start(
        &audit_config,
        recovery.git_watermarks.clone(),
        Arc::clone(&live_watermarks),
        Arc::clone(&audit_metrics),
        events,
    )
    .map_err(|e| e.to_string())?;
    let (messages, profiles) = recovery.hand_over(&search.docs(), &audit.events());
    if messages + profiles > 0 {
        tracing::info!(messages, profiles, "handed to search and git again");
    }
    let metrics =
        Metrics::new(config.shard_count(), search_metrics, audit_metrics).with_layout(CoreLayout {
            shard_cores: config.shard_cores.clone(),
            index_core: config.index_core,
            git_core: config.git_core,
        });
    let helpers = executors::Helpers {
        metrics: Arc::new(metrics),
        watermarks: live_watermarks,
        kits: recovery.kits,
        search: search.handle(),
        search_docs: search.docs(),
        audit: audit.events(),
    };
    Ok((search, audit, helpers))
}

/// Opens the search index and recovers the shards' state, each helper's watermarks read from
/// its own store (the index's last commit, the trail's last commit message).
fn open_and_recover(
    config: &Config,
    data_dir: &storage::DataDir,
) -> Result<(search::OpenedIndex, storage::Recovery), String> {
    let durable = config.durability != config::Durability::None;
    let opened = search::open_index(&config.index_path, durable).map_err(|e| e.to_string())?;
    if let Some(reason) = &opened.recreated_because {
        tracing::warn!(
            path = %config.index_path.display(),
            %reason,
            "the search index could not be kept; it is rebuilt from what the logs retain"
        );
    }
    let index_watermarks = opened
        .payload
        .as_deref()
        .and_then(search::Watermarks::from_text);
    let git_watermarks = durable
        .then(|| audit::read_watermarks(&config.repo_root))
        .flatten();
    let recovery = storage::recover(config, data_dir, index_watermarks, git_watermarks)?;
    if let Some(report) = &recovery.report {
        log_recovery(report);
    }
    Ok((opened, recovery))
}

fn log_recovery(report: &shards::recovery::Report) {
    for (path, bytes) in &report.torn {
        tracing::warn!(
            file = %path.display(),
            bytes,
            "cut a torn write at the end of the log (a crash during a write; nothing acknowledged was in it)"
        );
    }
    if let Some(from) = report.resharded_from {
        tracing::warn!(
            from,
            agents = report.agents,
            "the shard count changed: every agent and its inbox moved to its new owner"
        );
    }
    tracing::info!(
        agents = report.agents,
        queued_messages = report.queued_messages,
        records = report.records,
        bytes_read = report.bytes_read,
        pending_delivered = report.delivered_pending,
        pending_dropped = report.dropped_pending,
        resharded_from = ?report.resharded_from,
        took_ms = report.took.as_millis() as u64,
        "recovered"
    );
}

/// Waits for a signal (true) or a fatal event: a shard or a helper thread that stopped, which
/// ends the process here.
fn serve_until_signal(events: &Receiver<Event>) -> bool {
    loop {
        match events.recv() {
            Ok(Event::Signal(signal)) => {
                tracing::info!(signal, "stopping: finishing in-flight requests");
                return true;
            }
            Ok(Event::Exited { slot, core } | Event::Failed { slot, core, .. }) => {
                tracing::error!(shard = slot, core, "a shard stopped unexpectedly; exiting");
                std::process::exit(1);
            }
            Ok(Event::HelperStopped { helper, cause }) => {
                tracing::error!(helper, %cause, "a helper thread stopped; exiting");
                std::process::exit(1);
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

/// Waits until every shard has reported `Drained`; past the grace (and a slack), exits 1.
fn wait_drained(events: &Receiver<Event>, shard_count: usize, shutdown_grace_ms: u64) {
    let deadline = Duration::from_millis(shutdown_grace_ms + DRAIN_REPORT_SLACK_MS);
    let mut drained = 0;
    while drained < shard_count {
        match events.recv_timeout(deadline) {
            Ok(Event::Drained { shard }) => {
                tracing::debug!(shard, "shard drained");
                drained += 1;
            }
            Ok(_) => {}
            Err(_) => {
                tracing::error!(
                    drained,
                    shard_count,
                    "shards did not drain in time; exiting"
                );
                std::process::exit(1);
            }
        }
    }
}

const STARTUP_HINT: &str = "\
allman runs on glommio, which needs io_uring and locked memory:
  - raise the locked-memory limit: `ulimit -l unlimited` (or at least 512 KiB; under systemd set LimitMEMLOCK=infinity; in Docker --ulimit memlock=-1)
  - make sure io_uring is enabled: `sysctl kernel.io_uring_disabled` must be 0 (Linux 5.8 or newer)
  - check that the --shard-cores exist and are allowed (taskset / cgroup cpuset)";

fn bind(config: &Config) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(SocketAddr::new(config.bind, config.port))?;
    listener.set_nonblocking(true)?;
    // SAFETY: plain syscall on a socket we own; re-listening only raises the backlog.
    unsafe {
        libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG);
    }
    Ok(listener)
}

enum StartupFailure {
    Shard {
        slot: usize,
        core: usize,
        reason: String,
        executor_started: bool,
    },
    Helper {
        helper: &'static str,
        cause: String,
    },
    TimedOut,
    Interrupted,
}

impl StartupFailure {
    /// What to print. `executors` is consumed: an executor that never started is joined for
    /// its error (its thread has ended); the others are never joined.
    fn describe(self, executors: executors::Executors) -> String {
        match self {
            StartupFailure::Shard {
                slot,
                core,
                reason,
                executor_started: false,
            } => {
                let detail = executors.executor_error(slot);
                format!("shard {slot} (core {core}) failed to start: {reason}: {detail}\n{STARTUP_HINT}")
            }
            StartupFailure::Shard {
                slot, core, reason, ..
            } => format!("shard {slot} (core {core}) failed to start: {reason}"),
            StartupFailure::TimedOut => format!(
                "the shards did not report ready within {STARTUP_TIMEOUT_MS} ms\n{STARTUP_HINT}"
            ),
            StartupFailure::Helper { helper, cause } => {
                format!("the {helper} thread stopped during start-up: {cause}")
            }
            StartupFailure::Interrupted => "interrupted during start-up".to_string(),
        }
    }
}

fn wait_ready(events: &Receiver<Event>, shard_count: usize) -> Result<(), StartupFailure> {
    let deadline = std::time::Instant::now() + Duration::from_millis(STARTUP_TIMEOUT_MS);
    let mut ready = 0;
    while ready < shard_count {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match events.recv_timeout(left) {
            Ok(Event::Ready { shard }) => {
                tracing::debug!(shard, "shard ready");
                ready += 1;
            }
            Ok(Event::Signal(_)) => return Err(StartupFailure::Interrupted),
            Ok(Event::Failed {
                slot,
                core,
                reason,
                executor_started,
            }) => {
                return Err(StartupFailure::Shard {
                    slot,
                    core,
                    reason,
                    executor_started,
                })
            }
            Ok(Event::Exited { slot, core }) => {
                return Err(StartupFailure::Shard {
                    slot,
                    core,
                    reason: "exited during start-up".into(),
                    executor_started: true,
                })
            }
            Ok(Event::HelperStopped { helper, cause }) => {
                return Err(StartupFailure::Helper { helper, cause })
            }
            Ok(Event::Drained { .. }) => {}
            Err(_) => return Err(StartupFailure::TimedOut),
        }
    }
    Ok(())
}

fn log_started(config: &Config, addr: SocketAddr) {
    tracing::info!(
        shards = config.shard_count(),
        shard_cores = ?config.shard_cores,
        index_core = config.index_core,
        git_core = config.git_core,
        helpers_share_a_shard_core = config.helpers_share_a_shard_core(),
        "core layout"
    );
    tracing::info!(
        version = allman::VERSION,
        %addr,
        max_body_bytes = config.max_body_bytes,
        max_connections = config.max_connections,
        idle_timeout_ms = config.idle_timeout_ms,
        cross_shard_queue_depth = config.cross_shard_queue_depth,
        max_inbox_messages = config.max_inbox_messages,
        max_inbox_bytes = config.max_inbox_bytes,
        search_commit_ms = config.search_commit_ms,
        search_queue_bytes = config.search_queue_bytes,
        audit_queue_bytes = config.audit_queue_bytes,
        read_buffer_budget_bytes = config.read_buffer_budget_bytes,
        shutdown_grace_ms = config.shutdown_grace_ms,
        spin_us = config.spin_us,
        allowed_hosts = ?config.allowed_hosts,
        request_timeout_ms = config.request_timeout_ms,
        search_queue_depth = config.search_queue_depth,
        token_required = config.token.is_some(),
        allowed_origins = ?config.allowed_origins,
        audit_queue_depth = config.audit_queue_depth,
        durability = %config.durability,
        data_dir = %config.data_dir.display(),
        index_path = %config.index_path.display(),
        repo_root = %config.repo_root.display(),
        "allman started"
    );
    if !config.bind.is_loopback() && config.token.is_none() {
        tracing::warn!(
            bind = %config.bind,
            "listening beyond loopback without --token: anyone who reaches the port can read any inbox"
        );
    }
    // One machine-readable line on stdout: scripts and tests read the port from it.
    println!("allman listening on http://{addr}");
    let _ = std::io::stdout().flush();
}

/// Panics are logged through `tracing` (with the thread, e.g. `allman-shard-1`) before the
/// default report. A shard whose thread panics reports `Exited` and the server exits 1:
/// fatal and logged, never a silent hang.
fn log_panics() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        tracing::error!(thread = thread.name().unwrap_or("unnamed"), panic = %info, "panic");
        default_hook(info);
    }));
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config::DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Blocks SIGINT and SIGTERM in this thread (and so in every thread started later) and
/// starts one thread that waits for them and reports each as an event.
fn watch_signals(events: mpsc::Sender<Event>) -> std::io::Result<()> {
    // SAFETY: sigset manipulation on a local set, then masking this thread's signals.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        set
    };
    std::thread::Builder::new()
        .name("allman-signals".into())
        .spawn(move || loop {
            let mut signal: libc::c_int = 0;
            // SAFETY: waits on the set blocked above.
            let rc = unsafe { libc::sigwait(&set, &mut signal) };
            if rc == 0 && events.send(Event::Signal(signal)).is_err() {
                return;
            }
        })?;
    Ok(())
}
