//! Which JSON parser for request bodies: the server's own parse of a `tools/call` (serde_json,
//! layered through borrowed raw values, with every check a request gets), against one typed
//! pass of serde_json and of simd-json over the same bodies. Single-threaded, in-process; the
//! numbers are nanoseconds per body.

use bench::args::Args;
use serde::Deserialize;
use std::borrow::Cow;
use std::hint::black_box;
use std::time::Instant;

const HELP: &str = "json_parse - request-body parse cost: allman's parser, serde_json, simd-json

USAGE:
    cargo run --release --bin json_parse -- [OPTIONS]

OPTIONS:
    --iterations <N>         parses per body and parser (default 200000)
    -h, --help               print this help
";

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    jsonrpc: Cow<'a, str>,
    id: u64,
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(borrow)]
    params: Params<'a>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    arguments: Arguments<'a>,
}

/// The union of the arguments of the bodies below.
#[derive(Deserialize)]
struct Arguments<'a> {
    #[serde(borrow, default)]
    from_agent: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    to: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    subject: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    body: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    agent_name: Option<Cow<'a, str>>,
}

fn bodies() -> Vec<(&'static str, String)> {
    let long_body = "Deploy notes: the build is green, tests pass, \\\"ship it\\\". ".repeat(40);
    vec![
        (
            "send_message, short",
            r#"{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"send_message","arguments":{"from_agent":"BlueLake","to":["GreenCastle"],"subject":"benchmark message 1234","body":"the quick brown fox"}}}"#.to_string(),
        ),
        (
            "send_message, 2.4 KB body",
            format!(
                r#"{{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{{"name":"send_message","arguments":{{"from_agent":"BlueLake","to":["GreenCastle","RedFox","BlackBear"],"subject":"release 1.4","body":"{long_body}"}}}}}}"#
            ),
        ),
        (
            "get_inbox",
            r#"{"jsonrpc":"2.0","id":18,"method":"tools/call","params":{"name":"get_inbox","arguments":{"agent_name":"GreenCastle"}}}"#.to_string(),
        ),
    ]
}

/// Nanoseconds per call of `parse`, over `iterations` calls.
fn time(iterations: usize, mut parse: impl FnMut() -> bool) -> f64 {
    let started = Instant::now();
    let mut ok = 0usize;
    for _ in 0..iterations {
        ok += usize::from(black_box(parse()));
    }
    assert_eq!(ok, iterations, "every body must parse");
    started.elapsed().as_nanos() as f64 / iterations as f64
}

fn typed_ok(request: &Request<'_>) -> bool {
    request.jsonrpc == "2.0"
        && request.id > 0
        && request.method == "tools/call"
        && !request.params.name.is_empty()
        && (request.params.arguments.from_agent.is_some()
            || request.params.arguments.agent_name.is_some())
        && request
            .params
            .arguments
            .to
            .as_ref()
            .is_none_or(|to| !to.is_empty())
        && request
            .params
            .arguments
            .subject
            .as_ref()
            .is_none_or(|s| !s.is_empty())
        && request.params.arguments.body.is_some() == request.params.arguments.subject.is_some()
}

fn main() {
    let args = Args::from_env(HELP);
    let iterations: usize = args.get("iterations", 200_000usize).max(1);
    println!("json_parse: {iterations} parses per body and parser; ns per body");
    println!(
        "{:<28}{:>7}{:>14}{:>16}{:>16}{:>12}",
        "body", "bytes", "allman(serde)", "serde typed", "simd-json typed", "memcpy"
    );
    for (label, body) in bodies() {
        let allman = time(iterations, || allman::mcp::parse_tool_call(&body));
        let serde_typed = time(iterations, || {
            serde_json::from_str::<Request<'_>>(&body).is_ok_and(|r| typed_ok(&r))
        });
        // simd-json parses in place, so each pass needs its own copy of the body; in the
        // server the connection's read buffer could be that copy. The copy is timed alone too.
        let mut scratch = body.as_bytes().to_vec();
        let simd = time(iterations, || {
            scratch.copy_from_slice(body.as_bytes());
            simd_json::serde::from_slice::<Request<'_>>(&mut scratch).is_ok_and(|r| typed_ok(&r))
        });
        let mut copy_target = body.as_bytes().to_vec();
        let copy = time(iterations, || {
            copy_target.copy_from_slice(black_box(body.as_bytes()));
            true
        });
        println!(
            "{label:<28}{:>7}{allman:>14.0}{serde_typed:>16.0}{simd:>16.0}{copy:>12.0}",
            body.len()
        );
    }
}
