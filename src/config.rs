//! Server configuration from flags and environment (flags win), with `--help`.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use shards::log::journal::Durability;

/// A setting's default: a value the parser reads like any other, one worked out at start
/// (from the usable cores), or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    Fixed(&'static str),
    Computed(&'static str),
    None,
}

/// One setting, written once: its flag, environment variable, value name, default and help.
/// The parser, `--help` and (through a test) the README's table all come from [`SETTINGS`].
#[derive(Debug)]
pub struct Setting {
    /// The flag without `--`.
    pub flag: &'static str,
    pub env: &'static str,
    /// How the value is named in `--help`, e.g. `<N>`.
    pub value: &'static str,
    pub default: DefaultValue,
    pub help: &'static str,
}

const fn setting(
    flag: &'static str,
    env: &'static str,
    value: &'static str,
    default: DefaultValue,
    help: &'static str,
) -> Setting {
    Setting {
        flag,
        env,
        value,
        default,
        help,
    }
}

use DefaultValue::{Computed, Fixed};

/// The value name of an on/off setting: given without a value, the flag means `on`.
const BOOL_VALUE: &str = "<on/off>";

/// Every setting, in `--help` order.
pub const SETTINGS: &[Setting] = &[
    setting("port", "ALLMAN_PORT", "<PORT>", Fixed("8000"), "TCP port to listen on; 0 picks a free one"),
    setting("bind", "ALLMAN_BIND", "<ADDR>", Fixed("127.0.0.1"), "address to bind"),
    setting("shards", "ALLMAN_SHARDS", "<N>", Computed("usable cores - 1, at least 1"), "number of shards (one executor each)"),
    setting("shard-cores", "ALLMAN_SHARD_CORES", "<LIST>", Computed("every usable core but the last"), "cores for the shards, e.g. 0,1,2 or 0-3"),
    setting("index-core", "ALLMAN_INDEX_CORE", "<CPU>", Computed("last usable core"), "core for the search indexer and query threads"),
    setting("git-core", "ALLMAN_GIT_CORE", "<CPU>", Computed("last usable core"), "core for the git audit thread"),
    setting("max-body-bytes", "ALLMAN_MAX_BODY_BYTES", "<N>", Fixed("1048576"), "largest accepted request body"),
    setting("max-connections", "ALLMAN_MAX_CONNECTIONS", "<N>", Fixed("10000"), "open connections across all shards"),
    setting("read-buffer-budget-bytes", "ALLMAN_READ_BUFFER_BUDGET_BYTES", "<N>", Fixed("268435456"), "request bytes one shard buffers beyond each connection's first 8 KiB; past it a request gets 503"),
    setting("idle-timeout-ms", "ALLMAN_IDLE_TIMEOUT_MS", "<MS>", Fixed("120000"), "close a connection idle this long"),
    setting("search-queue-depth", "ALLMAN_SEARCH_QUEUE_DEPTH", "<N>", Fixed("65536"), "messages in flight to the indexer before shards hold them back"),
    setting("search-queue-bytes", "ALLMAN_SEARCH_QUEUE_BYTES", "<N>", Fixed("268435456"), "message text held or in flight to the indexer, across shards, before sends wait"),
    setting("search-commit-ms", "ALLMAN_SEARCH_COMMIT_MS", "<MS>", Fixed("10"), "commit the search index this long after new mail arrives (up to 5 times longer under sustained load)"),
    setting("audit-queue-depth", "ALLMAN_AUDIT_QUEUE_DEPTH", "<N>", Fixed("65536"), "agent profiles in flight to the git writer before shards hold them back"),
    setting("audit-queue-bytes", "ALLMAN_AUDIT_QUEUE_BYTES", "<N>", Fixed("268435456"), "profile text held or in flight to the git writer, across shards, before registrations wait"),
    setting("shutdown-grace-ms", "ALLMAN_SHUTDOWN_GRACE_MS", "<MS>", Fixed("10000"), "on SIGINT/SIGTERM, wait this long for in-flight requests"),
    setting("allowed-origins", "ALLMAN_ALLOWED_ORIGINS", "<LIST>", DefaultValue::None, "Origins allowed on /mcp besides localhost ones, comma-separated"),
    setting("allowed-hosts", "ALLMAN_ALLOWED_HOSTS", "<LIST>", DefaultValue::None, "Host names allowed on /mcp besides local ones (checked when bound to loopback)"),
    setting("token", "ALLMAN_TOKEN", "<TOKEN>", DefaultValue::None, "require Authorization: Bearer <TOKEN> on /mcp (/health stays open)"),
    setting("request-timeout-ms", "ALLMAN_REQUEST_TIMEOUT_MS", "<MS>", Fixed("10000"), "a request must arrive whole this soon after its first byte, else 408"),
    setting("max-inbox-messages", "ALLMAN_MAX_INBOX_MESSAGES", "<N>", Fixed("10000"), "messages one inbox holds; a send to a full inbox is refused"),
    setting("max-inbox-bytes", "ALLMAN_MAX_INBOX_BYTES", "<N>", Fixed("67108864"), "text bytes one inbox holds; a send that would exceed it is refused"),
    setting("max-retained-messages", "ALLMAN_MAX_RETAINED_MESSAGES", "<N>", Fixed("10000"), "deliveries plus sent messages kept per agent for fetch_inbox and get_thread; past it the oldest drained ones go (undrained mail never)"),
    setting("max-retained-bytes", "ALLMAN_MAX_RETAINED_BYTES", "<N>", Fixed("4194304"), "text bytes of those kept per agent, the same way"),
    setting("max-waiters", "ALLMAN_MAX_WAITERS", "<N>", Fixed("10000"), "wait_for_mail calls parked on one shard, and event streams (subscriptions/listen, GET /mcp) open on it; past it the call is refused"),
    setting("agent-auth", "ALLMAN_AGENT_AUTH", BOOL_VALUE, Fixed("off"), "create_agent returns an agent_token once, and every tool acting as that agent requires it"),
    setting("ui", "ALLMAN_UI", BOOL_VALUE, Fixed("on"), "serve the read-only web view under /ui/ (with --token it asks for the token); off: /ui/ is 404"),
    setting("stale-lease-minutes", "ALLMAN_STALE_LEASE_MINUTES", "<MIN>", Fixed("30"), "a file reservation's holder inactive this long may have it force-released by another agent"),
    setting("cross-shard-queue-depth", "ALLMAN_CROSS_SHARD_QUEUE_DEPTH", "<N>", Fixed("1024"), "requests queued per direction between two shards; callers wait beyond it"),
    setting("spin-us", "ALLMAN_SPIN_US", "<US>", Computed("50 with a log (fsync or batch), else 0"), "busy-poll this long before an idle shard sleeps"),
    setting("data-dir", "DATA_DIR", "<DIR>", Fixed("allman_data"), "durable state (the shards' logs); locked while a server runs"),
    setting("durability", "ALLMAN_DURABILITY", "<MODE>", Fixed("batch"), "fsync: reply once the log is on disk (survives power loss); batch: once it is written, fdatasync every --fsync-interval-ms (survives crashes); none: memory only"),
    setting("fsync-interval-ms", "ALLMAN_FSYNC_INTERVAL_MS", "<MS>", Fixed("100"), "in batch durability, the longest written log data waits for fdatasync"),
    setting("log-compact-bytes", "ALLMAN_LOG_COMPACT_BYTES", "<N>", Fixed("67108864"), "snapshot a shard once its log since the last snapshot passes this and twice its live state"),
    setting("index-path", "INDEX_PATH", "<DIR>", Computed("index under --data-dir"), "search index directory"),
    setting("repo-root", "REPO_ROOT", "<DIR>", Computed("repo under --data-dir"), "git audit repository"),
];

/// The log filter when `RUST_LOG` is not set: allman's own logs, plus glommio's warnings
/// (debug builds report stalled shards there).
pub const DEFAULT_LOG_FILTER: &str = "allman=info,glommio=warn";

/// `allman --help`, from [`SETTINGS`].
pub fn help() -> String {
    use fmt::Write as _;
    let mut out = String::from(
        "allman - a thread-per-core MCP agent mail server\n\nUSAGE:\n    allman [OPTIONS]\n\n\
         OPTIONS (each also settable by the environment variable shown; flags win):\n",
    );
    for s in SETTINGS {
        let flag = format!("--{} {}", s.flag, s.value);
        let default = match s.default {
            Fixed(value) => format!(", default {value}"),
            Computed(how) => format!(", default: {how}"),
            DefaultValue::None => String::new(),
        };
        let _ = writeln!(out, "    {flag:<32}  {} [{}{default}]", s.help, s.env);
    }
    let _ = write!(
        out,
        "    {:<32}  print this help\n    {:<32}  print the version\n\nENVIRONMENT:\n    {:<32}  log filter, e.g. allman=info or allman=debug (default {DEFAULT_LOG_FILTER})\n",
        "-h, --help", "-V, --version", "RUST_LOG"
    );
    out
}

/// Largest header section accepted; beyond it the request gets 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub port: u16,
    pub bind: IpAddr,
    pub shard_cores: Vec<usize>,
    pub index_core: usize,
    pub git_core: usize,
    pub max_body_bytes: usize,
    pub max_connections: usize,
    pub idle_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub max_inbox_messages: usize,
    pub max_inbox_bytes: usize,
    pub max_retained_messages: usize,
    pub max_retained_bytes: usize,
    pub max_waiters: usize,
    pub agent_auth: bool,
    pub ui: bool,
    pub stale_lease_minutes: u64,
    pub cross_shard_queue_depth: usize,
    pub spin_us: u64,
    pub search_queue_depth: usize,
    pub search_queue_bytes: usize,
    pub search_commit_ms: u64,
    pub audit_queue_depth: usize,
    pub audit_queue_bytes: usize,
    pub read_buffer_budget_bytes: usize,
    pub shutdown_grace_ms: u64,
    pub allowed_origins: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub token: Option<String>,
    pub data_dir: PathBuf,
    pub durability: Durability,
    pub log_compact_bytes: u64,
    pub index_path: PathBuf,
    pub repo_root: PathBuf,
}

impl Config {
    pub fn shard_count(&self) -> usize {
        self.shard_cores.len()
    }

    /// Makes the data directory, `INDEX_PATH` and `REPO_ROOT` absolute against `cwd`, once at
    /// start-up: glommio opens files with `openat(-1, path)`, where `-1` is not `AT_FDCWD`, so
    /// a relative path fails with EBADF on a shard. Absolute paths also make every error and
    /// log line name the place unambiguously. `.` components are dropped; `..` is kept (it
    /// may cross a symlink, so only the kernel may resolve it).
    pub fn make_paths_absolute(&mut self, cwd: &Path) {
        debug_assert!(cwd.is_absolute(), "the working directory is absolute");
        for path in [
            &mut self.data_dir,
            &mut self.index_path,
            &mut self.repo_root,
        ] {
            *path = cwd.join(&*path).components().collect();
        }
    }

    /// Whether any of the state paths is relative (then the working directory is needed).
    pub fn has_relative_paths(&self) -> bool {
        [&self.data_dir, &self.index_path, &self.repo_root]
            .iter()
            .any(|path| path.is_relative())
    }

    /// Whether a shard runs on the indexer's or the git writer's core (then commits, merges
    /// and git writes take time from that shard).
    pub fn helpers_share_a_shard_core(&self) -> bool {
        self.shard_cores
            .iter()
            .any(|core| *core == self.index_core || *core == self.git_core)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    HelpRequested,
    VersionRequested,
    UnknownFlag(String),
    MissingValue(&'static str),
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::HelpRequested => write!(f, "help requested"),
            ConfigError::VersionRequested => write!(f, "version requested"),
            ConfigError::UnknownFlag(flag) => write!(f, "unknown option {flag} (see --help)"),
            ConfigError::MissingValue(name) => write!(f, "option --{name} needs a value"),
            ConfigError::Invalid {
                name,
                value,
                reason,
            } => {
                write!(f, "invalid {name} {value:?}: {reason}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses flags (`--name value` or `--name=value`) over environment values over the defaults
/// in [`SETTINGS`]. `usable_cores` is the CPU set this process may run on, in order.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
    usable_cores: &[usize],
) -> Result<Config, ConfigError> {
    let values = read_values(args, env)?;
    let get = |flag: &str| -> Option<&str> {
        let index = SETTINGS.iter().position(|s| s.flag == flag)?;
        values[index].as_deref()
    };
    let usable = if usable_cores.is_empty() {
        &[0][..]
    } else {
        usable_cores
    };
    let helper_core = default_helper_core(usable);
    let data_dir = data_dir(&get)?;
    let durability = durability(
        get("durability").unwrap_or_default(),
        number(&get, "fsync-interval-ms")?,
    )?;
    let config = Config {
        port: number(&get, "port")?,
        bind: {
            let text = get("bind").unwrap_or_default();
            let not_an_address = |_| invalid("bind", text, "not an IP address".into());
            text.parse().map_err(not_an_address)?
        },
        shard_cores: shard_cores(&get, usable)?,
        index_core: number_or(&get, "index-core", helper_core)?,
        git_core: number_or(&get, "git-core", helper_core)?,
        max_body_bytes: number(&get, "max-body-bytes")?,
        max_connections: number(&get, "max-connections")?,
        idle_timeout_ms: number(&get, "idle-timeout-ms")?,
        request_timeout_ms: number(&get, "request-timeout-ms")?,
        max_inbox_messages: number(&get, "max-inbox-messages")?,
        max_inbox_bytes: number(&get, "max-inbox-bytes")?,
        max_retained_messages: number(&get, "max-retained-messages")?,
        max_retained_bytes: number(&get, "max-retained-bytes")?,
        max_waiters: number(&get, "max-waiters")?,
        agent_auth: on_off(&get, "agent-auth")?,
        ui: on_off(&get, "ui")?,
        stale_lease_minutes: number(&get, "stale-lease-minutes")?,
        cross_shard_queue_depth: number(&get, "cross-shard-queue-depth")?,
        spin_us: number_or(&get, "spin-us", default_spin_us(durability))?,
        search_queue_depth: number(&get, "search-queue-depth")?,
        search_queue_bytes: number(&get, "search-queue-bytes")?,
        search_commit_ms: number(&get, "search-commit-ms")?,
        audit_queue_depth: number(&get, "audit-queue-depth")?,
        audit_queue_bytes: number(&get, "audit-queue-bytes")?,
        read_buffer_budget_bytes: number(&get, "read-buffer-budget-bytes")?,
        shutdown_grace_ms: number(&get, "shutdown-grace-ms")?,
        allowed_origins: list(get("allowed-origins")),
        allowed_hosts: list(get("allowed-hosts")),
        token: get("token").filter(|t| !t.is_empty()).map(str::to_string),
        durability,
        log_compact_bytes: number(&get, "log-compact-bytes")?,
        index_path: get("index-path")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("index")),
        repo_root: get("repo-root")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("repo")),
        data_dir,
    };
    validate(&config, usable)?;
    Ok(config)
}

/// The data directory, and no empty `--index-path` or `--repo-root`: an empty path would
/// become the working directory itself once made absolute.
fn data_dir<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<PathBuf, ConfigError> {
    let data_dir = PathBuf::from(get("data-dir").unwrap_or_default());
    if data_dir.as_os_str().is_empty() {
        return Err(invalid("data-dir", "", "must name a directory".into()));
    }
    for name in ["index-path", "repo-root"] {
        if get(name).is_some_and(str::is_empty) {
            return Err(invalid(name, "", "must name a directory".into()));
        }
    }
    Ok(data_dir)
}

/// Spinning before parking only pays when there is a log to wait for.
fn default_spin_us(durability: Durability) -> u64 {
    match durability {
        Durability::None => 0,
        _ => DEFAULT_SPIN_WITH_LOG_US,
    }
}

/// Each setting's text, in [`SETTINGS`] order: the flag's, else the environment's, else the
/// default value (`None` for computed defaults and settings without one).
fn read_values(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Option<String>>, ConfigError> {
    let mut values: Vec<Option<String>> = SETTINGS.iter().map(|s| env(s.env)).collect();
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Err(ConfigError::HelpRequested);
        }
        if arg == "-V" || arg == "--version" {
            return Err(ConfigError::VersionRequested);
        }
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(ConfigError::UnknownFlag(arg));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (flag, None),
        };
        let Some(index) = SETTINGS.iter().position(|s| s.flag == name) else {
            return Err(ConfigError::UnknownFlag(arg));
        };
        let bare_switch = SETTINGS[index].value == BOOL_VALUE
            && args.peek().is_none_or(|next| next.starts_with("--"));
        let value = match inline {
            Some(value) => value,
            None if bare_switch => "on".to_string(),
            None => args
                .next()
                .ok_or(ConfigError::MissingValue(SETTINGS[index].flag))?,
        };
        values[index] = Some(value);
    }
    for (value, setting) in values.iter_mut().zip(SETTINGS) {
        if let (None, Fixed(default)) = (&value, setting.default) {
            *value = Some(default.to_string());
        }
    }
    Ok(values)
}

/// The shards' cores: `--shard-cores`, else `--shards` of the usable cores, else the
/// default layout ([`default_shard_cores`]).
fn shard_cores<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    usable: &[usize],
) -> Result<Vec<usize>, ConfigError> {
    Ok(match (get("shard-cores"), get("shards")) {
        (Some(list), shards) => {
            let cores = parse_core_list(list)?;
            if let Some(shards) = shards {
                let count: usize = parse_number("shards", shards)?;
                if count != cores.len() {
                    return Err(invalid(
                        "shards",
                        shards,
                        format!("--shard-cores lists {} cores", cores.len()),
                    ));
                }
            }
            cores
        }
        (None, Some(shards)) => {
            let count: usize = parse_number("shards", shards)?;
            if count == 0 || count > MAX_SHARDS {
                return Err(invalid(
                    "shards",
                    shards,
                    format!("must be 1..={MAX_SHARDS}"),
                ));
            }
            // The first `count` usable cores; more shards than cores share them round-robin.
            (0..count).map(|i| usable[i % usable.len()]).collect()
        }
        (None, None) => default_shard_cores(usable),
    })
}

/// The default layout: with two or more usable cores, one shard on each but the last, which
/// the helpers (indexer, its merges, git) get to themselves. A shard sharing a core with the
/// indexer is preempted by every commit and merge and answers slower than the whole machine
/// would without it (docs/BENCHMARKS.md). On one core, everything shares it.
pub fn default_shard_cores(usable: &[usize]) -> Vec<usize> {
    let shard_pool = match usable.len() {
        0 => return vec![0],
        1 => usable,
        n => &usable[..n - 1],
    };
    shard_pool.iter().copied().take(MAX_SHARDS).collect()
}

/// The default core of the helper threads (indexer and git): the last usable one.
pub fn default_helper_core(usable: &[usize]) -> usize {
    usable.last().copied().unwrap_or(0)
}

/// More shards than this is a typo, not a machine (each shard is a pinned thread).
const MAX_SHARDS: usize = 1024;
/// Bodies beyond this would let a few clients pin gigabytes of buffers.
const MAX_BODY_BYTES_LIMIT: usize = 64 * 1024 * 1024;
/// Longest duration setting. Far beyond any useful timeout, and far from overflowing
/// `Instant + Duration` arithmetic (which panics) however long the server has run.
pub const MAX_DURATION_MS: u64 = 24 * 60 * 60 * 1000;
/// Busy-polling longer than this before parking is a misconfiguration, not a tuning.
const MAX_SPIN_US: u64 = 1_000_000;
/// Largest item count for a queue or inbox setting: ~16 M, past any memory we would accept.
const MAX_QUEUE_ITEMS: usize = 1 << 24;
/// Connections across all shards: each holds an fd and at least 8 KiB.
const MAX_CONNECTIONS: usize = 1_000_000;
/// Largest byte budget: 1 TiB, a typo guard that also keeps sums of budgets from overflowing.
const MAX_MEMORY_BYTES: usize = 1 << 40;

/// An on/off setting.
fn on_off<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    flag: &'static str,
) -> Result<bool, ConfigError> {
    match get(flag).unwrap_or("off") {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        other => Err(invalid(flag, other, "must be on or off".into())),
    }
}

fn validate(config: &Config, usable: &[usize]) -> Result<(), ConfigError> {
    validate_cores(config, usable)?;
    validate_counts_and_sizes(config)?;
    validate_durations(config)?;
    // A request of the largest allowed size must be able to arrive at all.
    let largest_request = config.max_body_bytes + MAX_HEADER_BYTES;
    if config.read_buffer_budget_bytes < largest_request {
        return Err(invalid(
            "read-buffer-budget-bytes",
            &config.read_buffer_budget_bytes.to_string(),
            format!(
                "must hold at least one request of --max-body-bytes plus headers ({largest_request})"
            ),
        ));
    }
    if config.log_compact_bytes < MIN_LOG_COMPACT_BYTES {
        return Err(invalid(
            "log-compact-bytes",
            &config.log_compact_bytes.to_string(),
            format!("must be at least {MIN_LOG_COMPACT_BYTES}"),
        ));
    }
    if config.max_connections < config.shard_count() {
        return Err(invalid(
            "max-connections",
            &config.max_connections.to_string(),
            "must be at least one per shard".into(),
        ));
    }
    Ok(())
}

fn validate_cores(config: &Config, usable: &[usize]) -> Result<(), ConfigError> {
    let helpers = [
        ("index-core", config.index_core),
        ("git-core", config.git_core),
    ];
    let shards = config.shard_cores.iter().map(|c| ("shard-cores", *c));
    for (name, core) in shards.chain(helpers) {
        if !usable.contains(&core) {
            return Err(invalid(
                name,
                &core.to_string(),
                format!("this process may only run on cores {usable:?}"),
            ));
        }
    }
    Ok(())
}

/// Every count and byte size lies in `1..=` its ceiling.
fn validate_counts_and_sizes(config: &Config) -> Result<(), ConfigError> {
    let c = config;
    let bounded: [(&'static str, usize, usize); 13] = [
        (
            "max-retained-messages",
            c.max_retained_messages,
            MAX_QUEUE_ITEMS,
        ),
        ("max-retained-bytes", c.max_retained_bytes, MAX_MEMORY_BYTES),
        ("max-waiters", c.max_waiters, MAX_QUEUE_ITEMS),
        ("max-body-bytes", c.max_body_bytes, MAX_BODY_BYTES_LIMIT),
        ("search-queue-depth", c.search_queue_depth, MAX_QUEUE_ITEMS),
        ("audit-queue-depth", c.audit_queue_depth, MAX_QUEUE_ITEMS),
        (
            "cross-shard-queue-depth",
            c.cross_shard_queue_depth,
            MAX_QUEUE_ITEMS,
        ),
        ("max-inbox-messages", c.max_inbox_messages, MAX_QUEUE_ITEMS),
        ("max-connections", c.max_connections, MAX_CONNECTIONS),
        ("max-inbox-bytes", c.max_inbox_bytes, MAX_MEMORY_BYTES),
        ("search-queue-bytes", c.search_queue_bytes, MAX_MEMORY_BYTES),
        ("audit-queue-bytes", c.audit_queue_bytes, MAX_MEMORY_BYTES),
        (
            "read-buffer-budget-bytes",
            c.read_buffer_budget_bytes,
            MAX_MEMORY_BYTES,
        ),
    ];
    for (name, value, max) in bounded {
        if value == 0 || value > max {
            let reason = format!("must be 1..={max}");
            return Err(invalid(name, &value.to_string(), reason));
        }
    }
    Ok(())
}

/// Every duration lies within one day, so `Instant` arithmetic cannot overflow.
fn validate_durations(config: &Config) -> Result<(), ConfigError> {
    for (name, value_ms, min_ms) in [
        ("request-timeout-ms", config.request_timeout_ms, 1),
        ("idle-timeout-ms", config.idle_timeout_ms, 1),
        ("shutdown-grace-ms", config.shutdown_grace_ms, 0),
        ("search-commit-ms", config.search_commit_ms, 0),
    ] {
        if value_ms < min_ms || value_ms > MAX_DURATION_MS {
            let reason = format!("must be {min_ms}..={MAX_DURATION_MS} (one day)");
            return Err(invalid(name, &value_ms.to_string(), reason));
        }
    }
    // A week: longer is a typo; 0 lets any lease be force-released (tests, single operators).
    const MAX_STALE_LEASE_MINUTES: u64 = 7 * 24 * 60;
    if config.stale_lease_minutes > MAX_STALE_LEASE_MINUTES {
        let reason = format!("must be 0..={MAX_STALE_LEASE_MINUTES} (one week)");
        let value = config.stale_lease_minutes.to_string();
        return Err(invalid("stale-lease-minutes", &value, reason));
    }
    if config.spin_us > MAX_SPIN_US {
        let reason = format!("must be 0..={MAX_SPIN_US}");
        return Err(invalid("spin-us", &config.spin_us.to_string(), reason));
    }
    Ok(())
}

/// With a log, an idle shard is usually waiting for its own log write, which completes within
/// tens of microseconds: spinning that long instead of sleeping saved a sleep and a wake-up per
/// group commit (batch mode, 16 connections: 29 k -> 35 k msgs/s; docs/BENCHMARKS.md).
const DEFAULT_SPIN_WITH_LOG_US: u64 = 50;

/// The longest `--fsync-interval-ms`: a power cut may lose this much acknowledged mail.
const MAX_FSYNC_INTERVAL_MS: u64 = 60_000;
/// The smallest `--log-compact-bytes`: below it a shard would snapshot all the time.
const MIN_LOG_COMPACT_BYTES: u64 = 1 << 20;

fn durability(mode: &str, fsync_interval_ms: u64) -> Result<Durability, ConfigError> {
    if fsync_interval_ms == 0 || fsync_interval_ms > MAX_FSYNC_INTERVAL_MS {
        return Err(invalid(
            "fsync-interval-ms",
            &fsync_interval_ms.to_string(),
            format!("must be 1..={MAX_FSYNC_INTERVAL_MS}"),
        ));
    }
    match mode.trim() {
        "fsync" => Ok(Durability::Fsync),
        "batch" => Ok(Durability::Batch {
            fsync_interval: Duration::from_millis(fsync_interval_ms),
        }),
        "none" => Ok(Durability::None),
        other => Err(invalid(
            "durability",
            other,
            "must be fsync, batch or none".into(),
        )),
    }
}

/// A comma-separated list, blanks dropped.
fn list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

fn invalid(name: &'static str, value: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_string(),
        reason,
    }
}

/// The numeric setting `flag`, whose default is in [`SETTINGS`].
fn number<'a, T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<&'a str>,
    flag: &'static str,
) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    parse_number(flag, get(flag).unwrap_or_default())
}

/// The numeric setting `flag`, or `default` (worked out at start) when it is not set.
fn number_or<'a, T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<&'a str>,
    flag: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    Ok(get(flag)
        .map(|v| parse_number(flag, v))
        .transpose()?
        .unwrap_or(default))
}

fn parse_number<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| invalid(name, value, e.to_string()))
}

/// Parses `0,2,4-7` into `[0, 2, 4, 5, 6, 7]`.
pub fn parse_core_list(list: &str) -> Result<Vec<usize>, ConfigError> {
    let mut cores = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let first: usize = parse_number("shard-cores", first)?;
                let last: usize = parse_number("shard-cores", last)?;
                if first > last || last - first >= MAX_SHARDS {
                    return Err(invalid("shard-cores", part, "not a valid range".into()));
                }
                cores.extend(first..=last);
            }
            None => cores.push(parse_number("shard-cores", part)?),
        }
    }
    if cores.is_empty() || cores.len() > MAX_SHARDS {
        return Err(invalid(
            "shard-cores",
            list,
            format!("list 1..={MAX_SHARDS} cores"),
        ));
    }
    Ok(cores)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(
            args.iter().map(|a| a.to_string()),
            |key| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
            &[0, 1, 2, 3],
        )
    }

    #[test]
    fn durability_modes_parse_and_bad_ones_name_the_choices() {
        let config = parse_with(&["--durability", "fsync"], &[]).expect("fsync");
        assert_eq!(config.durability, Durability::Fsync);
        let config = parse_with(&[], &[("ALLMAN_DURABILITY", "none")]).expect("none");
        assert_eq!(config.durability, Durability::None);
        let config = parse_with(&["--fsync-interval-ms", "5"], &[]).expect("batch");
        assert_eq!(
            config.durability,
            Durability::Batch {
                fsync_interval: Duration::from_millis(5)
            }
        );
        let error = parse_with(&["--durability", "sometimes"], &[]).expect_err("bad mode");
        assert!(
            error.to_string().contains("fsync, batch or none"),
            "{error}"
        );
        assert!(parse_with(&["--fsync-interval-ms", "0"], &[]).is_err());
    }

    #[test]
    fn the_index_and_repository_live_under_the_data_dir_unless_set() {
        let config = parse_with(&["--data-dir", "/d"], &[("REPO_ROOT", "/r")]).expect("parse");
        assert_eq!(config.index_path, PathBuf::from("/d/index"));
        assert_eq!(config.repo_root, PathBuf::from("/r"));
        assert!(parse_with(&["--data-dir", ""], &[]).is_err());
        assert!(parse_with(&[], &[("INDEX_PATH", "")]).is_err());
        assert!(parse_with(&["--repo-root="], &[]).is_err());
    }

    #[test]
    fn relative_paths_become_absolute_against_the_working_directory() {
        let mut config =
            parse_with(&["--data-dir", "./d"], &[("INDEX_PATH", "../i/./x")]).expect("parse");
        config.make_paths_absolute(Path::new("/work/run"));
        assert_eq!(config.data_dir, PathBuf::from("/work/run/d"));
        assert_eq!(config.index_path, PathBuf::from("/work/run/../i/x"));
        assert_eq!(config.repo_root, PathBuf::from("/work/run/d/repo"));
        let mut config = parse_with(&["--repo-root", "/abs/r"], &[]).expect("parse");
        config.make_paths_absolute(Path::new("/cwd"));
        assert_eq!(config.data_dir, PathBuf::from("/cwd/allman_data"));
        assert_eq!(config.repo_root, PathBuf::from("/abs/r"), "absolute stays");
    }

    #[test]
    fn defaults_match_the_documented_contract() {
        let config = parse_with(&[], &[]).expect("defaults parse");
        assert_eq!(config.port, 8000);
        assert_eq!(config.bind.to_string(), "127.0.0.1");
        assert_eq!(config.shard_cores, vec![0, 1, 2]);
        assert_eq!(config.index_core, 3);
        assert_eq!(config.git_core, 3);
        assert_eq!(config.max_body_bytes, 1024 * 1024);
        assert_eq!(config.data_dir, PathBuf::from("allman_data"));
        assert_eq!(
            config.durability,
            Durability::Batch {
                fsync_interval: Duration::from_millis(100)
            }
        );
        assert_eq!(config.index_path, PathBuf::from("allman_data/index"));
        assert_eq!(config.repo_root, PathBuf::from("allman_data/repo"));
    }

    #[test]
    fn flags_override_environment() {
        let config = parse_with(
            &["--port", "9000", "--shards=2", "--index-path", "/tmp/i"],
            &[
                ("ALLMAN_PORT", "7000"),
                ("INDEX_PATH", "/env/i"),
                ("REPO_ROOT", "/env/r"),
            ],
        )
        .expect("parses");
        assert_eq!(config.port, 9000);
        assert_eq!(config.shard_cores, vec![0, 1]);
        assert_eq!(config.index_path, PathBuf::from("/tmp/i"));
        assert_eq!(config.repo_root, PathBuf::from("/env/r"));
    }

    #[test]
    fn core_lists_and_ranges_parse() {
        assert_eq!(parse_core_list("0,2-3").expect("valid"), vec![0, 2, 3]);
        let config = parse_with(&["--shard-cores", "1-2", "--git-core", "0"], &[]).expect("parses");
        assert_eq!(config.shard_cores, vec![1, 2]);
        assert_eq!(config.git_core, 0);
    }

    fn layout_on(usable: &[usize], args: &[&str]) -> (Vec<usize>, usize, usize) {
        let config = parse(args.iter().map(|a| a.to_string()), |_| None, usable)
            .unwrap_or_else(|e| panic!("{args:?} on {usable:?}: {e}"));
        (config.shard_cores, config.index_core, config.git_core)
    }

    #[test]
    fn by_default_the_last_core_is_left_to_the_helpers() {
        assert_eq!(layout_on(&[0], &[]), (vec![0], 0, 0));
        assert_eq!(layout_on(&[0, 1], &[]), (vec![0], 1, 1));
        assert_eq!(layout_on(&[0, 1, 2], &[]), (vec![0, 1], 2, 2));
        assert_eq!(layout_on(&[0, 1, 2, 3], &[]), (vec![0, 1, 2], 3, 3));
        let all: Vec<usize> = (0..64).collect();
        assert_eq!(layout_on(&all, &[]), ((0..63).collect(), 63, 63));
        // An affinity mask with gaps (taskset -c 2,5,7): the layout follows the mask.
        assert_eq!(layout_on(&[2, 5, 7], &[]), (vec![2, 5], 7, 7));
        // No usable core reported at all: one shard on core 0.
        assert_eq!(layout_on(&[], &[]), (vec![0], 0, 0));
    }

    #[test]
    fn each_override_wins_over_the_default_layout() {
        let four = [0, 1, 2, 3];
        assert_eq!(layout_on(&four, &["--shards", "2"]), (vec![0, 1], 3, 3));
        assert_eq!(
            layout_on(&four, &["--shards", "4"]),
            (vec![0, 1, 2, 3], 3, 3)
        );
        assert_eq!(layout_on(&[0, 1], &["--shards", "2"]), (vec![0, 1], 1, 1));
        assert_eq!(
            layout_on(&four, &["--shard-cores", "1-3"]),
            (vec![1, 2, 3], 3, 3)
        );
        assert_eq!(
            layout_on(&four, &["--index-core", "0"]),
            (vec![0, 1, 2], 0, 3)
        );
        assert_eq!(
            layout_on(&four, &["--git-core", "1"]),
            (vec![0, 1, 2], 3, 1)
        );
        assert_eq!(
            layout_on(
                &four,
                &[
                    "--shard-cores",
                    "0,1",
                    "--index-core",
                    "2",
                    "--git-core",
                    "3"
                ]
            ),
            (vec![0, 1], 2, 3)
        );
        let env = |key: &str| (key == "ALLMAN_SHARDS").then(|| "3".to_string());
        let config = parse(std::iter::empty(), env, &four).expect("parses");
        assert_eq!(config.shard_cores, vec![0, 1, 2]);
    }

    #[test]
    fn more_shards_than_cores_share_cores() {
        let config = parse_with(&["--shards", "6"], &[]).expect("parses");
        assert_eq!(config.shard_cores, vec![0, 1, 2, 3, 0, 1]);
    }

    #[test]
    fn bad_values_are_refused_with_their_name() {
        let cases: &[&[&str]] = &[
            &["--port", "70000"],
            &["--shards", "0"],
            &["--shard-cores", "0,9"],
            &["--shards", "3", "--shard-cores", "0,1"],
            &["--bind", "localhost:1"],
            &["--max-body-bytes", "0"],
            &["--index-core", "8"],
            &["--idle-timeout-ms", "18446744073709551615"],
            &["--request-timeout-ms", "86400001"],
            &["--shutdown-grace-ms", "999999999999"],
            &["--search-commit-ms", "86400001"],
            &["--spin-us", "99999999999"],
            &["--max-inbox-bytes", "0"],
            &["--search-queue-bytes", "0"],
            &["--read-buffer-budget-bytes", "1024"],
            &["--max-connections", "99999999"],
        ];
        for args in cases {
            let err = parse_with(args, &[]).expect_err("must be refused");
            assert!(
                matches!(err, ConfigError::Invalid { .. }),
                "{args:?} gave {err:?}"
            );
        }
        assert_eq!(
            parse_with(&["--nope"], &[]),
            Err(ConfigError::UnknownFlag("--nope".into()))
        );
        assert_eq!(
            parse_with(&["--port"], &[]),
            Err(ConfigError::MissingValue("port"))
        );
        assert_eq!(parse_with(&["-h"], &[]), Err(ConfigError::HelpRequested));
        for flag in ["-V", "--version"] {
            assert_eq!(
                parse_with(&["--port", "1", flag], &[]),
                Err(ConfigError::VersionRequested)
            );
        }
    }
}
