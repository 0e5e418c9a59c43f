//! Agent simulations: agents with roles register, exchange mail through the MCP tools over
//! rounds, search the archive, and end with a report. Decisions come from an
//! OpenAI-compatible chat-completions endpoint when `ALLMAN_LLM_URL` is set, otherwise from
//! a seeded scripted policy that plays the same roles (so every simulation runs offline).

pub mod llm;
pub mod scenarios;

use crate::args::Args;
use crate::client::{CallError, McpClient};
use crate::http::Url;
use crate::report::{print_table, rows, write_json};
use crate::Rng;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// One message an agent decides to send; `to` holds role names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
}

impl Action {
    pub fn new(to: &[&str], subject: impl Into<String>, body: impl Into<String>) -> Action {
        Action {
            to: to.iter().map(|r| r.to_string()).collect(),
            subject: subject.into(),
            body: body.into(),
        }
    }
}

/// A message as an agent reads it from its inbox, with the sender's role resolved.
#[derive(Debug, Clone)]
pub struct Received {
    pub from_role: String,
    pub subject: String,
    pub body: String,
}

/// A scenario: its roles, how many rounds, its scripted policy and how to judge the outcome.
pub struct Scenario {
    pub key: &'static str,
    pub title: &'static str,
    /// (role name, what the role is for) — the brief is the LLM's system prompt.
    pub roles: &'static [(&'static str, &'static str)],
    pub rounds: usize,
    /// A word every message in the scenario carries, searched for at the end.
    pub search_term: &'static str,
    /// The scripted policy: what `role` sends in `round` after reading `inbox`.
    pub script: fn(role: &str, round: usize, inbox: &[Received], rng: &mut Rng) -> Vec<Action>,
    /// Reads the whole transcript and says how it ended.
    pub outcome: fn(transcript: &[(usize, String, Action)]) -> String,
}

/// Subjects go out as `[term] subject` so the archive can be searched; agents read them
/// without the tag.
fn strip_tag(subject: &str, term: &str) -> String {
    let tag = format!("[{term}] ");
    subject.strip_prefix(&tag).unwrap_or(subject).to_string()
}

/// Where decisions come from.
pub enum Policy {
    Scripted,
    Llm(llm::LlmPolicy),
}

const HELP: &str = "simulation - agents with roles exchange mail through allman over rounds

USAGE:
    cargo run --release --bin simulation -- --scenario <NAME> [OPTIONS]
    cargo run --release --bin cyber_sim | black_friday | escrow_sim -- [OPTIONS]

OPTIONS:
    --url <URL>              server (default http://127.0.0.1:8000)
    --scenario <NAME>        cyber_sim, black_friday or escrow_sim (simulation only)
    --rounds <N>             rounds to play (default: the scenario's)
    --seed <N>               seed of the scripted policy (default 7)
    --json <FILE>            also write the report as JSON
    -h, --help               print this help

ENVIRONMENT (optional; without ALLMAN_LLM_URL the seeded scripted policy plays):
    ALLMAN_LLM_URL           OpenAI-compatible base URL (http:// only), e.g. http://127.0.0.1:11434/v1
    ALLMAN_LLM_MODEL         model name (default gpt-4o-mini)
    ALLMAN_LLM_API_KEY       bearer token, if the endpoint needs one
";

/// Entry point shared by the simulation binaries.
pub fn main_for(fixed: Option<&str>) -> ExitCode {
    let args = Args::from_env(HELP);
    let key = match fixed {
        Some(key) => key.to_string(),
        None => args.get("scenario", String::new()),
    };
    let Some(scenario) = scenarios::by_key(&key) else {
        eprintln!(
            "unknown scenario {key:?}; choose one of: {}\n\n{HELP}",
            scenarios::KEYS.join(", ")
        );
        return ExitCode::from(2);
    };
    let url = args.url();
    let policy = match llm::LlmPolicy::from_env() {
        Ok(Some(llm)) => Policy::Llm(llm),
        Ok(None) => Policy::Scripted,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let rounds = args.get("rounds", scenario.rounds);
    let seed = args.get("seed", 7u64);
    match run(&scenario, &url, policy, rounds, seed) {
        Ok(report) => {
            if let Some(path) = args.optional("json") {
                if let Err(error) = write_json(&path, &report) {
                    eprintln!("{error}");
                    return ExitCode::FAILURE;
                }
            }
            if report["errors"].as_u64().unwrap_or(0) > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("{} failed: {error}", scenario.key);
            ExitCode::FAILURE
        }
    }
}

/// Plays `scenario` for `rounds` rounds and prints (and returns) the report.
pub fn run(
    scenario: &Scenario,
    url: &Url,
    mut policy: Policy,
    rounds: usize,
    seed: u64,
) -> Result<Value, CallError> {
    let started = Instant::now();
    let run = crate::run_id();
    let mut client = McpClient::connect(url)?;
    let agent_name = |role: &str| format!("{role}_{run}");
    for (role, _) in scenario.roles {
        client.create_agent(&format!("{}-{run}", scenario.key), &agent_name(role))?;
    }
    let mut rng = Rng(seed);
    let mut transcript: Vec<(usize, String, Action)> = Vec::new();
    let mut llm_fallbacks = 0u64;
    for round in 0..rounds {
        for (role, brief) in scenario.roles {
            let inbox: Vec<Received> = client
                .inbox(&agent_name(role))?
                .iter()
                .map(|m| Received {
                    from_role: m["from"]
                        .as_str()
                        .unwrap_or_default()
                        .split('_')
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                    subject: strip_tag(
                        m["subject"].as_str().unwrap_or_default(),
                        scenario.search_term,
                    ),
                    body: m["body"].as_str().unwrap_or_default().to_string(),
                })
                .collect();
            let actions = match &mut policy {
                Policy::Scripted => (scenario.script)(role, round, &inbox, &mut rng),
                Policy::Llm(llm) => match llm.decide(scenario, role, brief, round, &inbox) {
                    Ok(actions) => actions,
                    Err(error) => {
                        llm_fallbacks += 1;
                        eprintln!("LLM decision for {role} failed ({error}); scripted policy used");
                        (scenario.script)(role, round, &inbox, &mut rng)
                    }
                },
            };
            for action in actions {
                let to: Vec<String> = action
                    .to
                    .iter()
                    .filter(|r| scenario.roles.iter().any(|(known, _)| known == &r.as_str()))
                    .map(|r| agent_name(r))
                    .collect();
                if to.is_empty() {
                    continue;
                }
                let to_refs: Vec<&str> = to.iter().map(String::as_str).collect();
                let subject = format!("[{}] {}", scenario.search_term, action.subject);
                client.send(&agent_name(role), &to_refs, &subject, &action.body)?;
                transcript.push((round, role.to_string(), action));
            }
        }
    }
    // The archive: every message carries the scenario's search term.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut hits = client.search(scenario.search_term, 1000)?.len();
    while hits < transcript.len().min(1000) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        hits = client.search(scenario.search_term, 1000)?.len();
    }
    let outcome = (scenario.outcome)(&transcript);
    let elapsed = started.elapsed();
    let table = rows(scenario.key, elapsed, &client.stats);
    println!("{} — {}", scenario.key, scenario.title);
    println!(
        "policy: {}; rounds: {rounds}; messages: {}; archive hits: {hits}; elapsed: {:.2}s",
        match policy {
            Policy::Scripted => "scripted (seeded)".to_string(),
            Policy::Llm(ref llm) => format!("LLM {} ({} fallbacks)", llm.model(), llm_fallbacks),
        },
        transcript.len(),
        elapsed.as_secs_f64()
    );
    println!("outcome: {outcome}");
    print_table(&table);
    Ok(json!({
        "tool": scenario.key,
        "rounds": rounds,
        "messages": transcript.len(),
        "archive_hits": hits,
        "outcome": outcome,
        "llm_fallbacks": llm_fallbacks,
        "errors": client.stats.total_errors(),
        "rows": table,
    }))
}
