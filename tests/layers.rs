//! Data flows one way: a module of `src/` (and of `shards/src/`) may use only modules of a
//! lower layer (or its own). This reads every `crate::<module>` path in both crates and fails
//! on one that points up or sideways, so the layering the docs describe cannot drift.

use std::collections::BTreeMap;
use std::path::Path;

/// Each top-level module of `src/` and its layer, lowest first. Leaves (used by anyone) are 0.
const LAYERS: &[(&str, u8)] = &[
    // Leaves: plain helpers every layer may use.
    ("clock", 0),
    ("cores", 0),
    ("json", 0),
    ("ids", 0),
    ("lifecycle", 0),
    ("wake", 0),
    ("config", 0),
    ("platform", 0),
    // Handing work to the helper threads (the feed keeps its own gauges).
    ("feed", 1),
    // Counters, only read by `/metrics`: nothing below decides anything from them.
    ("metrics", 2),
    // Bytes <-> requests; the helper threads (search, git).
    ("http", 3),
    ("search", 3),
    ("audit", 3),
    // Arguments in, shard requests out.
    ("tools", 4),
    // JSON-RPC and the MCP transport rules.
    ("mcp", 5),
    // The web view: HTML over the tools' shard handle, under the transport's rules.
    ("ui", 6),
    // Routes; the durable state each shard starts from.
    ("routes", 7),
    ("storage", 7),
    ("executors", 8),
    // A client of a running server over HTTP (`allman hook`): uses none of the server's
    // modules, and none of them uses it.
    ("hook", 0),
    // Drives the decoders for the fuzz targets.
    ("fuzzing", 9),
];

/// The same for the shards crate, `shards/src/`.
const SHARDS_LAYERS: &[(&str, u8)] = &[
    // Hashes that never change (owners, logged request hashes).
    ("hash", 0),
    // Leaves. The log keeps bytes it does not interpret: nothing of the state or protocol.
    ("routing", 1),
    ("envelope", 1),
    ("glob", 1),
    ("cooperate", 1),
    ("log", 1),
    // One project's reservations; an agent directory; the long polls parked on a shard.
    ("leases", 2),
    ("directory", 2),
    ("waiters", 2),
    // Requests and replies.
    ("protocol", 3),
    // What a shard owns, and what its records mean.
    ("state", 4),
    // Start-up (the log's records replayed into states) and the running shard.
    ("recovery", 5),
    ("runtime", 6),
];

fn layer_in(layers: &[(&str, u8)], module: &str) -> Option<u8> {
    layers
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, layer)| *layer)
}

/// The top-level module a file of `src/` belongs to (`src/http/conn.rs` -> `http`).
fn module_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::name` in `text` (code only: line comments are skipped).
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    paths(text, "crate::")
}

/// Every `prefix` followed by a name in `text` (code only), e.g. `shards::` + `Turn`.
fn paths(text: &str, prefix: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let after = &rest[at + prefix.len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push((number + 1, name));
            rest = after;
        }
    }
    found
}

/// Every `crate::` path of the crate under `src` that points to a module of its own layer or
/// above; and every `module -> used` pair seen, so a caller can check the scan saw real uses.
fn layer_violations(src: &Path, layers: &[(&str, u8)]) -> (Vec<String>, BTreeMap<String, usize>) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut violations = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(src).expect("under src");
        let module = module_of(relative);
        if module == "main" || module == "lib" {
            continue; // start-up and the crate root may use everything
        }
        let shown = format!("{}/{}", src.display(), relative.display());
        let own =
            layer_in(layers, &module).unwrap_or_else(|| panic!("{module} ({shown}) has no layer"));
        let text = std::fs::read_to_string(file).expect("read");
        for (line, used) in crate_paths(&text) {
            *seen.entry(format!("{module} -> {used}")).or_default() += 1;
            if used == module {
                continue;
            }
            let Some(theirs) = layer_in(layers, &used) else {
                violations.push(format!("{shown}:{line}: unknown module {used}"));
                continue;
            };
            if theirs >= own {
                violations.push(format!(
                    "{shown}:{line}: {module} (layer {own}) uses {used} (layer {theirs})"
                ));
            }
        }
    }
    (violations, seen)
}

#[test]
fn no_module_uses_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (violations, seen) = layer_violations(&src, LAYERS);
    assert!(
        violations.is_empty(),
        "modules using a layer that is not below theirs:\n{}",
        violations.join("\n")
    );
    // The scan must see the real dependencies, or it proves nothing.
    assert!(seen.contains_key("tools -> feed"), "{seen:?}");
    assert!(seen.contains_key("executors -> routes"), "{seen:?}");
}

/// The shards crate in layers too: above all, the log below the state (it frames, writes and
/// reads back bytes; what they mean is the state's), and recovery above both.
#[test]
fn no_module_of_the_shards_crate_uses_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("shards/src");
    let (violations, seen) = layer_violations(&src, SHARDS_LAYERS);
    assert!(
        violations.is_empty(),
        "shards modules using a layer that is not below theirs:\n{}",
        violations.join("\n")
    );
    assert!(seen.contains_key("state -> log"), "{seen:?}");
    assert!(seen.contains_key("recovery -> state"), "{seen:?}");
    assert!(seen.contains_key("runtime -> protocol"), "{seen:?}");
}

/// HTTP turns bytes into requests and back and knows nothing of what it serves: not MCP
/// (the layers above say so), and not the shards either; the server hands it a service and
/// the way its connections take turns.
#[test]
fn http_uses_nothing_of_the_shards_crate() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut users = BTreeMap::new();
    for file in &files {
        let module = module_of(file.strip_prefix(&src).expect("under src"));
        let text = std::fs::read_to_string(file).expect("read");
        for (line, name) in paths(&text, "shards::") {
            users
                .entry(module.clone())
                .or_insert_with(Vec::new)
                .push(format!("{}:{line} {name}", file.display()));
        }
    }
    assert!(!users.contains_key("http"), "{:?}", users.get("http"));
    // The scan must see the real uses, or it proves nothing.
    assert!(users.contains_key("tools"), "{users:?}");
}

#[test]
fn the_scan_sees_paths_and_skips_comments() {
    let found = crate_paths("use crate::http::Status; // crate::tools\nlet x = crate::json::f();");
    let names: Vec<&str> = found.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, vec!["http", "json"]);
}
