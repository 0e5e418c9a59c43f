//! `search_messages(query; limit)` -> array of Tantivy documents, best match first, every
//! field an array of values. The query runs on the search query thread, never on a shard.

use super::args::{object, required_str};
use super::{OutputBudget, ToolError, ToolOutput, Toolbox};
use crate::json::{is_null, present};
use crate::search::{QueryError, DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LIMIT};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Longest query text: a query is a few terms, not a document.
const MAX_QUERY_BYTES: usize = 4096;

#[derive(Debug, Default, Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    query: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    limit: Option<&'a RawValue>,
}

#[derive(Debug)]
pub struct Args<'a> {
    query: Cow<'a, str>,
    limit: usize,
}

pub fn parse(arguments: Option<&RawValue>) -> Result<Args<'_>, ToolError> {
    let fields: Fields<'_> = object(arguments)?;
    let query = required_str("query", fields.query, MAX_QUERY_BYTES)?;
    if query.trim().is_empty() {
        return Err(ToolError::InvalidArgument {
            name: "query",
            problem: "must contain a search term, e.g. \"deploy\" or \"from:BlueLake\"".into(),
        });
    }
    let limit = match fields.limit.filter(|raw| !is_null(raw)) {
        None => DEFAULT_SEARCH_LIMIT,
        Some(raw) => match raw.get().parse::<u64>() {
            Ok(limit) if (1..=MAX_SEARCH_LIMIT as u64).contains(&limit) => limit as usize,
            _ => {
                return Err(ToolError::InvalidArgument {
                    name: "limit",
                    problem: format!(
                        "must be an integer from 1 to {MAX_SEARCH_LIMIT}, got {}",
                        raw.get()
                    ),
                })
            }
        },
    };
    Ok(Args { query, limit })
}

pub async fn run(
    tools: &Toolbox,
    args: Args<'_>,
    budget: OutputBudget,
) -> Result<ToolOutput, ToolError> {
    match tools
        .search
        .query(&args.query, args.limit, budget.bytes, budget.at_least_one)
        .await
    {
        Ok(hits) => Ok(ToolOutput::Search(hits)),
        Err(QueryError::Syntax(reason)) => Err(ToolError::InvalidArgument {
            name: "query",
            problem: reason,
        }),
        Err(error) => Err(ToolError::SearchUnavailable(error.to_string())),
    }
}

pub fn definition() -> serde_json::Value {
    serde_json::json!({
        "name": "search_messages",
        "title": "Search all mail",
        "description": "Full-text search over every message ever sent (drained ones included), best match first. Tantivy query syntax over subject and body by default; exact fields from:, to:, cc:, thread_id: (named threads and replies), importance:urgent; subject:deploy; AND/OR/NOT, \"phrases\". Newly sent mail becomes searchable within milliseconds.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "description": "The search query."},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_SEARCH_LIMIT, "default": DEFAULT_SEARCH_LIMIT}
            },
            "required": ["query"]
        },
        "outputSchema": {
            "type": "object",
            "properties": {
                "results": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "description": "A message document; every field is an array of values.",
                        "properties": {
                            "id": {"type": "array", "items": {"type": "string"}},
                            "project_id": {"type": "array", "items": {"type": "string"}},
                            "from": {"type": "array", "items": {"type": "string"}},
                            "to": {"type": "array", "items": {"type": "string"}},
                            "cc": {"type": "array", "items": {"type": "string"}},
                            "thread_id": {"type": "array", "items": {"type": "string"}},
                            "importance": {"type": "array", "items": {"type": "string"}},
                            "subject": {"type": "array", "items": {"type": "string"}},
                            "body": {"type": "array", "items": {"type": "string"}},
                            "timestamp": {"type": "array", "items": {"type": "string"}}
                        }
                    }
                }
            },
            "required": ["results"]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<usize, ToolError> {
        let raw = RawValue::from_string(text.to_string()).expect("json");
        parse(Some(&raw)).map(|args| args.limit)
    }

    #[test]
    fn limit_defaults_and_bounds() {
        assert_eq!(parse_text(r#"{"query":"a"}"#), Ok(DEFAULT_SEARCH_LIMIT));
        assert_eq!(parse_text(r#"{"query":"a","limit":1000}"#), Ok(1000));
        for bad in ["0", "1001", "-1", "2.5", "\"10\""] {
            let error = parse_text(&format!(r#"{{"query":"a","limit":{bad}}}"#)).expect_err(bad);
            assert!(
                matches!(error, ToolError::InvalidArgument { name: "limit", .. }),
                "{bad}"
            );
        }
    }

    #[test]
    fn empty_query_is_refused() {
        for bad in [r#"{"query":""}"#, r#"{"query":"   "}"#, "{}"] {
            assert!(parse_text(bad).is_err(), "{bad}");
        }
    }
}
