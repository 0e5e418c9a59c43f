//! The docs name the same defaults as the code: every setting's default is written once, in
//! `config::SETTINGS`, and these tests fail when README.md or docs/OPERATIONS.md says
//! otherwise.

use allman::config::{DefaultValue, DEFAULT_LOG_FILTER, SETTINGS};

const README: &str = include_str!("../README.md");
const OPERATIONS: &str = include_str!("../docs/OPERATIONS.md");
const PROTOCOL: &str = include_str!("../docs/PROTOCOL.md");

/// The cells of a Markdown table row (`| a | b |` -> `["a", "b"]`).
fn cells(row: &str) -> Vec<&str> {
    row.trim()
        .trim_start_matches('|')
        .trim_end_matches('|')
        .split(" | ")
        .map(str::trim)
        .collect()
}

#[test]
fn the_readme_configuration_table_is_the_code_s() {
    for setting in SETTINGS {
        let flag = format!("`--{} {}`", setting.flag, setting.value);
        let row = README
            .lines()
            .find(|line| line.starts_with('|') && cells(line).first() == Some(&flag.as_str()))
            .unwrap_or_else(|| panic!("README.md's configuration table has no row {flag}"));
        let row = cells(row);
        assert_eq!(row[1], format!("`{}`", setting.env), "{flag}: environment");
        let expected = match setting.default {
            DefaultValue::Fixed(value) => format!("`{value}`"),
            DefaultValue::Computed(how) => how.to_string(),
            DefaultValue::None => "—".to_string(),
        };
        assert_eq!(row[2], expected, "{flag}: default in README.md");
    }
    let log_row = README
        .lines()
        .find(|line| line.contains("`RUST_LOG`") && line.starts_with('|'))
        .expect("README.md documents RUST_LOG");
    assert_eq!(cells(log_row)[2], format!("`{DEFAULT_LOG_FILTER}`"));
}

/// `10,000`, `1 MiB`, `256 MiB per shard`, `10 ms` -> the number the parser reads.
fn documented_number(cell: &str) -> Option<u64> {
    let mut words = cell.split_whitespace();
    let number: u64 = words.next()?.replace(',', "").parse().ok()?;
    let scale = match words.next() {
        Some("KiB") => 1 << 10,
        Some("MiB") => 1 << 20,
        Some("GiB") => 1 << 30,
        _ => 1,
    };
    Some(number * scale)
}

#[test]
fn the_operations_limits_table_names_the_code_s_defaults() {
    let mut checked = 0;
    for line in OPERATIONS.lines().filter(|l| l.starts_with('|')) {
        let row = cells(line);
        let Some(option) = row.get(1) else { continue };
        let Some(flag) = option
            .strip_prefix("`--")
            .and_then(|rest| rest.strip_suffix('`'))
        else {
            continue;
        };
        let setting = SETTINGS
            .iter()
            .find(|s| s.flag == flag)
            .unwrap_or_else(|| panic!("OPERATIONS.md names --{flag}, which does not exist"));
        let DefaultValue::Fixed(default) = setting.default else {
            continue;
        };
        let expected: u64 = default.parse().expect("a numeric default");
        assert_eq!(
            documented_number(row[2]),
            Some(expected),
            "OPERATIONS.md gives --{flag} the default {:?}; the code says {default}",
            row[2]
        );
        checked += 1;
    }
    assert!(
        checked >= 10,
        "only {checked} rows of the limits table were read"
    );
}

#[test]
fn documented_numbers_parse_as_the_parser_reads_them() {
    assert_eq!(documented_number("10,000"), Some(10_000));
    assert_eq!(documented_number("1 MiB (max 64 MiB)"), Some(1 << 20));
    assert_eq!(documented_number("256 MiB per shard"), Some(256 << 20));
    assert_eq!(documented_number("10 ms"), Some(10));
    assert_eq!(documented_number("usable cores"), None);
}

#[test]
fn the_protocol_doc_shows_every_tool_exactly_as_tools_list_sends_it() {
    let list: serde_json::Value =
        serde_json::from_str(allman::tools::list_json()).expect("tools/list is JSON");
    let tools = list["tools"].as_array().expect("tools");
    for tool in tools {
        let name = tool["name"].as_str().expect("name");
        let heading = format!("### {name}\n");
        let at = PROTOCOL
            .find(&heading)
            .unwrap_or_else(|| panic!("docs/PROTOCOL.md has no section {name}"));
        let block = &PROTOCOL[at..];
        let start = block.find("```json\n").expect("a json block") + "```json\n".len();
        let end = start + block[start..].find("```").expect("a closed block");
        let documented: serde_json::Value = serde_json::from_str(&block[start..end])
            .unwrap_or_else(|e| panic!("{name}'s block is not JSON: {e}"));
        assert_eq!(
            &documented, tool,
            "docs/PROTOCOL.md's {name} differs from tools/list"
        );
    }
    assert_eq!(tools.len(), 17);
}
