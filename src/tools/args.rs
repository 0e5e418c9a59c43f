//! Reading tool arguments one field at a time, so each error names the argument at fault.

use super::ToolError;
use crate::json::{as_str, is_null};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Parses the `arguments` object into `T` (a struct of `Option<&RawValue>` fields).
pub fn object<'a, T>(arguments: Option<&'a RawValue>) -> Result<T, ToolError>
where
    T: serde::Deserialize<'a> + Default,
{
    match arguments {
        None => Ok(T::default()),
        Some(raw) if is_null(raw) => Ok(T::default()),
        Some(raw) if !raw.get().starts_with('{') => Err(ToolError::InvalidArgument {
            name: "arguments",
            problem: "must be a JSON object".into(),
        }),
        Some(raw) => serde_json::from_str(raw.get()).map_err(|error| ToolError::InvalidArgument {
            name: "arguments",
            problem: error.to_string(),
        }),
    }
}

/// A string argument that may be absent (or null).
pub fn optional_str<'a>(
    name: &'static str,
    raw: Option<&'a RawValue>,
    max_bytes: usize,
) -> Result<Option<Cow<'a, str>>, ToolError> {
    let Some(raw) = raw.filter(|r| !is_null(r)) else {
        return Ok(None);
    };
    let text = as_str(raw).ok_or(ToolError::InvalidArgument {
        name,
        problem: "must be a string".into(),
    })?;
    if text.len() > max_bytes {
        return Err(ToolError::InvalidArgument {
            name,
            problem: format!("longer than {max_bytes} bytes"),
        });
    }
    Ok(Some(text))
}

/// A required, non-empty string argument.
pub fn required_str<'a>(
    name: &'static str,
    raw: Option<&'a RawValue>,
    max_bytes: usize,
) -> Result<Cow<'a, str>, ToolError> {
    let text = optional_str(name, raw, max_bytes)?.ok_or(ToolError::MissingArgument(name))?;
    if text.is_empty() {
        return Err(ToolError::InvalidArgument {
            name,
            problem: "must not be empty".into(),
        });
    }
    Ok(text)
}

/// A required, non-empty array of at most `max_len` strings of at most `max_item_bytes` each.
pub fn string_array<'a>(
    name: &'static str,
    raw: Option<&'a RawValue>,
    max_len: usize,
    max_item_bytes: usize,
) -> Result<Vec<Cow<'a, str>>, ToolError> {
    let raw = raw
        .filter(|r| !is_null(r))
        .ok_or(ToolError::MissingArgument(name))?;
    let not_array = || ToolError::InvalidArgument {
        name,
        problem: "must be an array of agent names, e.g. [\"BlueLake\"]".into(),
    };
    if !raw.get().starts_with('[') {
        return Err(not_array());
    }
    let items: Vec<&RawValue> = serde_json::from_str(raw.get()).map_err(|_| not_array())?;
    if items.is_empty() {
        return Err(ToolError::InvalidArgument {
            name,
            problem: "must hold at least one entry".into(),
        });
    }
    if items.len() > max_len {
        return Err(ToolError::InvalidArgument {
            name,
            problem: format!("more than {max_len} entries"),
        });
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let text = as_str(item).ok_or_else(|| ToolError::InvalidArgument {
                name,
                problem: format!("entry {index} is not a string"),
            })?;
            if text.len() > max_item_bytes {
                return Err(ToolError::InvalidArgument {
                    name,
                    problem: format!("entry {index} is longer than {max_item_bytes} bytes"),
                });
            }
            Ok(text)
        })
        .collect()
}

/// Longest text parsed into a value (a UUID is 36 bytes): longer is a typo or an attack, and is
/// refused before parsing.
const MAX_PARSED_TEXT_BYTES: usize = 256;

/// Parses `T` from a JSON string argument with `FromStr` semantics.
pub fn optional_parsed<T: std::str::FromStr>(
    name: &'static str,
    raw: Option<&RawValue>,
    expected: &'static str,
) -> Result<Option<T>, ToolError> {
    optional_str(name, raw, MAX_PARSED_TEXT_BYTES)?
        .map(|text| {
            text.parse().map_err(|_| ToolError::InvalidArgument {
                name,
                problem: format!("{text:?} is not {expected}"),
            })
        })
        .transpose()
}

/// An optional boolean argument.
pub fn optional_bool(
    name: &'static str,
    raw: Option<&RawValue>,
) -> Result<Option<bool>, ToolError> {
    match raw.filter(|r| !is_null(r)).map(RawValue::get) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(ToolError::InvalidArgument {
            name,
            problem: format!("must be true or false, got {}", shorten(other)),
        }),
    }
}

/// An optional integer argument within `min..=max`.
pub fn optional_integer(
    name: &'static str,
    raw: Option<&RawValue>,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ToolError> {
    let Some(raw) = raw.filter(|r| !is_null(r)) else {
        return Ok(None);
    };
    match raw.get().parse::<u64>() {
        Ok(value) if (min..=max).contains(&value) => Ok(Some(value)),
        _ => Err(ToolError::InvalidArgument {
            name,
            problem: format!(
                "must be an integer from {min} to {max}, got {}",
                shorten(raw.get())
            ),
        }),
    }
}

/// At most this much of a bad value is echoed in an error.
fn shorten(text: &str) -> &str {
    crate::json::prefix_at_char(text, 64)
}

/// An optional array of at most `max_len` agent names (absent or null means none).
pub fn optional_names<'a>(
    name: &'static str,
    raw: Option<&'a RawValue>,
    max_len: usize,
) -> Result<Vec<Cow<'a, str>>, ToolError> {
    match raw.filter(|r| !is_null(r)) {
        None => Ok(Vec::new()),
        Some(raw) if raw.get().trim() == "[]" => Ok(Vec::new()),
        Some(raw) => string_array(name, Some(raw), max_len, super::MAX_AGENT_NAME_BYTES),
    }
}

/// A required array of 1 to `max_len` UUIDs.
pub fn uuid_array(
    name: &'static str,
    raw: Option<&RawValue>,
    max_len: usize,
) -> Result<Vec<uuid::Uuid>, ToolError> {
    let texts =
        string_array(name, raw, max_len, MAX_PARSED_TEXT_BYTES).map_err(|error| match error {
            ToolError::InvalidArgument { name, problem } => ToolError::InvalidArgument {
                name,
                problem: problem.replace("agent names, e.g. [\"BlueLake\"]", "message ids"),
            },
            other => other,
        })?;
    texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            text.parse().map_err(|_| ToolError::InvalidArgument {
                name,
                problem: format!(
                    "entry {index} ({:?}) is not a message id (a UUID)",
                    shorten(text)
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).expect("valid json")
    }

    #[test]
    fn required_strings() {
        assert_eq!(
            required_str("x", None, 10),
            Err(ToolError::MissingArgument("x"))
        );
        assert_eq!(
            required_str("x", Some(&raw("null")), 10),
            Err(ToolError::MissingArgument("x"))
        );
        assert!(matches!(
            required_str("x", Some(&raw("3")), 10),
            Err(ToolError::InvalidArgument { name: "x", .. })
        ));
        assert!(matches!(
            required_str("x", Some(&raw("\"\"")), 10),
            Err(ToolError::InvalidArgument { .. })
        ));
        assert!(matches!(
            required_str("x", Some(&raw("\"abcdefghijk\"")), 10),
            Err(ToolError::InvalidArgument { .. })
        ));
        assert_eq!(
            required_str("x", Some(&raw("\"ok\"")), 10).as_deref(),
            Ok("ok")
        );
    }

    #[test]
    fn string_arrays() {
        let list = raw(r#"["a","b"]"#);
        let got = string_array("to", Some(&list), 4, 8).expect("valid");
        assert_eq!(got, vec![Cow::Borrowed("a"), Cow::Borrowed("b")]);
        for bad in [
            r#""a""#,
            "[]",
            r#"["a",1]"#,
            r#"{"a":1}"#,
            r#"["a","b","c","d","e"]"#,
        ] {
            let error = string_array("to", Some(&raw(bad)), 4, 8).expect_err(bad);
            assert!(
                matches!(error, ToolError::InvalidArgument { name: "to", .. }),
                "{bad}: {error:?}"
            );
        }
        assert_eq!(
            string_array("to", None, 4, 8),
            Err(ToolError::MissingArgument("to"))
        );
    }

    #[test]
    fn parsed_values() {
        let id: Option<uuid::Uuid> = optional_parsed(
            "project_id",
            Some(&raw("\"6ba7b810-9dad-11d1-80b4-00c04fd430c8\"")),
            "a UUID",
        )
        .expect("valid");
        assert!(id.is_some());
        let bad = optional_parsed::<uuid::Uuid>("project_id", Some(&raw("\"nope\"")), "a UUID");
        assert!(matches!(
            bad,
            Err(ToolError::InvalidArgument {
                name: "project_id",
                ..
            })
        ));
    }
}
