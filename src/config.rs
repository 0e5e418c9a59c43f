//! Server configuration from flags and environment (flags win), with `--help`.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

pub const HELP: &str = "\
allman - a thread-per-core MCP agent mail server

USAGE:
    allman [OPTIONS]

OPTIONS (each also settable by the environment variable shown; flags win):
    --port <PORT>                 TCP port to listen on; 0 picks a free one   [ALLMAN_PORT, default 8000]
    --bind <ADDR>                 address to bind                              [ALLMAN_BIND, default 127.0.0.1]
    --shards <N>                  number of shards (one executor each)         [ALLMAN_SHARDS, default: usable cores]
    --shard-cores <LIST>          cores for the shards, e.g. 0,1,2 or 0-3      [ALLMAN_SHARD_CORES, default: usable cores in order]
    --index-core <CPU>            core for the search indexer and query threads [ALLMAN_INDEX_CORE, default: last usable core]
    --git-core <CPU>              core for the git audit thread                [ALLMAN_GIT_CORE, default: last usable core]
    --max-body-bytes <N>          largest accepted request body                [ALLMAN_MAX_BODY_BYTES, default 1048576]
    --max-connections <N>         open connections across all shards           [ALLMAN_MAX_CONNECTIONS, default 10000]
    --read-buffer-budget-bytes <N> request bytes one shard buffers beyond each connection's first 8 KiB; past it a request gets 503 [ALLMAN_READ_BUFFER_BUDGET_BYTES, default 268435456]
    --idle-timeout-ms <MS>        close a connection idle this long            [ALLMAN_IDLE_TIMEOUT_MS, default 120000]
    --search-queue-depth <N>      messages in flight to the indexer before shards hold them back [ALLMAN_SEARCH_QUEUE_DEPTH, default 65536]
    --search-queue-bytes <N>      message text held or in flight to the indexer, across shards, before sends wait [ALLMAN_SEARCH_QUEUE_BYTES, default 268435456]
    --search-commit-ms <MS>       commit the search index at most this long after new mail arrives [ALLMAN_SEARCH_COMMIT_MS, default 10]
    --audit-queue-depth <N>       agent profiles in flight to the git writer before shards hold them back [ALLMAN_AUDIT_QUEUE_DEPTH, default 65536]
    --audit-queue-bytes <N>       profile text held or in flight to the git writer, across shards, before registrations wait [ALLMAN_AUDIT_QUEUE_BYTES, default 268435456]
    --shutdown-grace-ms <MS>      on SIGINT/SIGTERM, wait this long for in-flight requests [ALLMAN_SHUTDOWN_GRACE_MS, default 10000]
    --allowed-origins <LIST>      Origins allowed on /mcp besides localhost ones, comma-separated [ALLMAN_ALLOWED_ORIGINS]
    --allowed-hosts <LIST>        Host names allowed on /mcp besides local ones (checked when bound to loopback) [ALLMAN_ALLOWED_HOSTS]
    --token <TOKEN>               require Authorization: Bearer <TOKEN> on /mcp (/health stays open) [ALLMAN_TOKEN]
    --request-timeout-ms <MS>     a request must arrive whole this soon after its first byte, else 408 [ALLMAN_REQUEST_TIMEOUT_MS, default 10000]
    --max-inbox-messages <N>      messages one inbox holds; a send to a full inbox is refused [ALLMAN_MAX_INBOX_MESSAGES, default 10000]
    --max-inbox-bytes <N>         text bytes one inbox holds; a send that would exceed it is refused [ALLMAN_MAX_INBOX_BYTES, default 67108864]
    --cross-shard-queue-depth <N> requests queued per direction between two shards; callers wait beyond it [ALLMAN_CROSS_SHARD_QUEUE_DEPTH, default 1024]
    --spin-us <US>                busy-poll this long before an idle shard sleeps [ALLMAN_SPIN_US, default 0]
    --index-path <DIR>            search index directory                       [INDEX_PATH, default allman_index]
    --repo-root <DIR>             git audit repository                         [REPO_ROOT, default allman_repo]
    -h, --help                    print this help

ENVIRONMENT:
    RUST_LOG                      log filter, e.g. allman=info or allman=debug (default allman=info,glommio=warn)
";

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
    pub index_path: PathBuf,
    pub repo_root: PathBuf,
}

impl Config {
    pub fn shard_count(&self) -> usize {
        self.shard_cores.len()
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    HelpRequested,
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

/// One setting: its flag (without `--`) and its environment variable.
struct Setting {
    flag: &'static str,
    env: &'static str,
}

const SETTINGS: &[Setting] = &[
    Setting {
        flag: "port",
        env: "ALLMAN_PORT",
    },
    Setting {
        flag: "bind",
        env: "ALLMAN_BIND",
    },
    Setting {
        flag: "shards",
        env: "ALLMAN_SHARDS",
    },
    Setting {
        flag: "shard-cores",
        env: "ALLMAN_SHARD_CORES",
    },
    Setting {
        flag: "index-core",
        env: "ALLMAN_INDEX_CORE",
    },
    Setting {
        flag: "git-core",
        env: "ALLMAN_GIT_CORE",
    },
    Setting {
        flag: "max-body-bytes",
        env: "ALLMAN_MAX_BODY_BYTES",
    },
    Setting {
        flag: "max-connections",
        env: "ALLMAN_MAX_CONNECTIONS",
    },
    Setting {
        flag: "idle-timeout-ms",
        env: "ALLMAN_IDLE_TIMEOUT_MS",
    },
    Setting {
        flag: "request-timeout-ms",
        env: "ALLMAN_REQUEST_TIMEOUT_MS",
    },
    Setting {
        flag: "max-inbox-messages",
        env: "ALLMAN_MAX_INBOX_MESSAGES",
    },
    Setting {
        flag: "max-inbox-bytes",
        env: "ALLMAN_MAX_INBOX_BYTES",
    },
    Setting {
        flag: "cross-shard-queue-depth",
        env: "ALLMAN_CROSS_SHARD_QUEUE_DEPTH",
    },
    Setting {
        flag: "spin-us",
        env: "ALLMAN_SPIN_US",
    },
    Setting {
        flag: "search-queue-depth",
        env: "ALLMAN_SEARCH_QUEUE_DEPTH",
    },
    Setting {
        flag: "audit-queue-depth",
        env: "ALLMAN_AUDIT_QUEUE_DEPTH",
    },
    Setting {
        flag: "search-queue-bytes",
        env: "ALLMAN_SEARCH_QUEUE_BYTES",
    },
    Setting {
        flag: "audit-queue-bytes",
        env: "ALLMAN_AUDIT_QUEUE_BYTES",
    },
    Setting {
        flag: "read-buffer-budget-bytes",
        env: "ALLMAN_READ_BUFFER_BUDGET_BYTES",
    },
    Setting {
        flag: "search-commit-ms",
        env: "ALLMAN_SEARCH_COMMIT_MS",
    },
    Setting {
        flag: "shutdown-grace-ms",
        env: "ALLMAN_SHUTDOWN_GRACE_MS",
    },
    Setting {
        flag: "allowed-origins",
        env: "ALLMAN_ALLOWED_ORIGINS",
    },
    Setting {
        flag: "allowed-hosts",
        env: "ALLMAN_ALLOWED_HOSTS",
    },
    Setting {
        flag: "token",
        env: "ALLMAN_TOKEN",
    },
    Setting {
        flag: "index-path",
        env: "INDEX_PATH",
    },
    Setting {
        flag: "repo-root",
        env: "REPO_ROOT",
    },
];

/// Parses flags (`--name value` or `--name=value`) over environment values.
/// `usable_cores` is the CPU set this process may run on, in order.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
    usable_cores: &[usize],
) -> Result<Config, ConfigError> {
    let mut values: Vec<Option<String>> = SETTINGS.iter().map(|s| env(s.env)).collect();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Err(ConfigError::HelpRequested);
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
        let value = match inline {
            Some(value) => value,
            None => args
                .next()
                .ok_or(ConfigError::MissingValue(SETTINGS[index].flag))?,
        };
        values[index] = Some(value);
    }
    let get = |flag: &str| -> Option<&str> {
        let index = SETTINGS.iter().position(|s| s.flag == flag)?;
        values[index].as_deref()
    };

    let usable = if usable_cores.is_empty() {
        &[0][..]
    } else {
        usable_cores
    };
    let shard_cores = match (get("shard-cores"), get("shards")) {
        (Some(list), shards) => {
            let cores = parse_core_list(list)?;
            if let Some(shards) = shards {
                let count: usize = number("shards", shards)?;
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
            let count: usize = number("shards", shards)?;
            if count == 0 || count > MAX_SHARDS {
                return Err(invalid(
                    "shards",
                    shards,
                    format!("must be 1..={MAX_SHARDS}"),
                ));
            }
            // More shards than cores is allowed (they share cores round-robin).
            (0..count).map(|i| usable[i % usable.len()]).collect()
        }
        (None, None) => usable.iter().copied().take(MAX_SHARDS).collect(),
    };
    let last_core = *usable.last().unwrap_or(&0);
    let config = Config {
        port: number_or(&get, "port", 8000)?,
        bind: match get("bind") {
            Some(v) => v
                .parse()
                .map_err(|_| invalid("bind", v, "not an IP address".into()))?,
            None => IpAddr::from([127, 0, 0, 1]),
        },
        shard_cores,
        index_core: number_or(&get, "index-core", last_core)?,
        git_core: number_or(&get, "git-core", last_core)?,
        max_body_bytes: number_or(&get, "max-body-bytes", 1024 * 1024)?,
        max_connections: number_or(&get, "max-connections", 10_000)?,
        idle_timeout_ms: number_or(&get, "idle-timeout-ms", 120_000)?,
        request_timeout_ms: number_or(&get, "request-timeout-ms", 10_000)?,
        max_inbox_messages: number_or(&get, "max-inbox-messages", 10_000)?,
        max_inbox_bytes: number_or(&get, "max-inbox-bytes", 64 * 1024 * 1024)?,
        cross_shard_queue_depth: number_or(&get, "cross-shard-queue-depth", 1024)?,
        spin_us: number_or(&get, "spin-us", 0)?,
        search_queue_depth: number_or(&get, "search-queue-depth", 65_536)?,
        search_queue_bytes: number_or(&get, "search-queue-bytes", 256 * 1024 * 1024)?,
        search_commit_ms: number_or(&get, "search-commit-ms", 10)?,
        audit_queue_depth: number_or(&get, "audit-queue-depth", 65_536)?,
        audit_queue_bytes: number_or(&get, "audit-queue-bytes", 256 * 1024 * 1024)?,
        read_buffer_budget_bytes: number_or(&get, "read-buffer-budget-bytes", 256 * 1024 * 1024)?,
        shutdown_grace_ms: number_or(&get, "shutdown-grace-ms", 10_000)?,
        allowed_origins: list(get("allowed-origins")),
        allowed_hosts: list(get("allowed-hosts")),
        token: get("token").filter(|t| !t.is_empty()).map(str::to_string),
        index_path: get("index-path").unwrap_or("allman_index").into(),
        repo_root: get("repo-root").unwrap_or("allman_repo").into(),
    };
    validate(&config, usable)?;
    Ok(config)
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

fn validate(config: &Config, usable: &[usize]) -> Result<(), ConfigError> {
    for (name, core) in config
        .shard_cores
        .iter()
        .map(|c| ("shard-cores", *c))
        .chain([
            ("index-core", config.index_core),
            ("git-core", config.git_core),
        ])
    {
        if !usable.contains(&core) {
            return Err(invalid(
                name,
                &core.to_string(),
                format!("this process may only run on cores {usable:?}"),
            ));
        }
    }
    if config.max_body_bytes == 0 || config.max_body_bytes > MAX_BODY_BYTES_LIMIT {
        return Err(invalid(
            "max-body-bytes",
            &config.max_body_bytes.to_string(),
            format!("must be 1..={MAX_BODY_BYTES_LIMIT}"),
        ));
    }
    if config.max_connections < config.shard_count() {
        return Err(invalid(
            "max-connections",
            &config.max_connections.to_string(),
            "must be at least one per shard".into(),
        ));
    }
    for (name, value, max) in [
        (
            "search-queue-depth",
            config.search_queue_depth,
            MAX_QUEUE_ITEMS,
        ),
        (
            "audit-queue-depth",
            config.audit_queue_depth,
            MAX_QUEUE_ITEMS,
        ),
        (
            "cross-shard-queue-depth",
            config.cross_shard_queue_depth,
            MAX_QUEUE_ITEMS,
        ),
        (
            "max-inbox-messages",
            config.max_inbox_messages,
            MAX_QUEUE_ITEMS,
        ),
        ("max-connections", config.max_connections, MAX_CONNECTIONS),
        ("max-inbox-bytes", config.max_inbox_bytes, MAX_MEMORY_BYTES),
        (
            "search-queue-bytes",
            config.search_queue_bytes,
            MAX_MEMORY_BYTES,
        ),
        (
            "audit-queue-bytes",
            config.audit_queue_bytes,
            MAX_MEMORY_BYTES,
        ),
        (
            "read-buffer-budget-bytes",
            config.read_buffer_budget_bytes,
            MAX_MEMORY_BYTES,
        ),
    ] {
        if value == 0 || value > max {
            return Err(invalid(
                name,
                &value.to_string(),
                format!("must be 1..={max}"),
            ));
        }
    }
    for (name, value_ms, min_ms) in [
        ("request-timeout-ms", config.request_timeout_ms, 1),
        ("idle-timeout-ms", config.idle_timeout_ms, 1),
        ("shutdown-grace-ms", config.shutdown_grace_ms, 0),
        ("search-commit-ms", config.search_commit_ms, 0),
    ] {
        if value_ms < min_ms || value_ms > MAX_DURATION_MS {
            return Err(invalid(
                name,
                &value_ms.to_string(),
                format!("must be {min_ms}..={MAX_DURATION_MS} (one day)"),
            ));
        }
    }
    if config.spin_us > MAX_SPIN_US {
        return Err(invalid(
            "spin-us",
            &config.spin_us.to_string(),
            format!("must be 0..={MAX_SPIN_US}"),
        ));
    }
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
    Ok(())
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

/// The numeric setting `flag`, or `default` when it is not set.
fn number_or<'a, T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<&'a str>,
    flag: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    Ok(get(flag)
        .map(|v| number(flag, v))
        .transpose()?
        .unwrap_or(default))
}

fn number<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, ConfigError>
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
                let first: usize = number("shard-cores", first)?;
                let last: usize = number("shard-cores", last)?;
                if first > last || last - first >= MAX_SHARDS {
                    return Err(invalid("shard-cores", part, "not a valid range".into()));
                }
                cores.extend(first..=last);
            }
            None => cores.push(number("shard-cores", part)?),
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
    fn defaults_match_the_documented_contract() {
        let config = parse_with(&[], &[]).expect("defaults parse");
        assert_eq!(config.port, 8000);
        assert_eq!(config.bind.to_string(), "127.0.0.1");
        assert_eq!(config.shard_cores, vec![0, 1, 2, 3]);
        assert_eq!(config.index_core, 3);
        assert_eq!(config.git_core, 3);
        assert_eq!(config.max_body_bytes, 1024 * 1024);
        assert_eq!(config.index_path, PathBuf::from("allman_index"));
        assert_eq!(config.repo_root, PathBuf::from("allman_repo"));
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
    }
}
