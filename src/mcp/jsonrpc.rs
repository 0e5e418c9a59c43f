//! JSON-RPC 2.0 framing: classifying one incoming message and writing responses.

use crate::json::{as_str, present};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

pub const PARSE_ERROR: i32 = -32700;
pub const INVALID_REQUEST: i32 = -32600;
pub const METHOD_NOT_FOUND: i32 = -32601;
pub const INVALID_PARAMS: i32 = -32602;

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: i32,
    pub message: Cow<'static, str>,
    /// The error's `data`, as JSON text (2026-07-28 errors carry structured details).
    pub data: Option<String>,
}

impl RpcError {
    pub fn new(code: i32, message: impl Into<Cow<'static, str>>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// With `data`, which must be JSON text.
    pub fn with_data(mut self, data: String) -> Self {
        self.data = Some(data);
        self
    }
}

/// One incoming message, classified.
#[derive(Debug)]
pub enum Message<'a> {
    Request {
        id: &'a RawValue,
        method: Cow<'a, str>,
        params: Option<&'a RawValue>,
    },
    Notification {
        method: Cow<'a, str>,
    },
    /// A response from the client. allman sends no requests, so it is acknowledged and dropped.
    Response,
}

/// A message that could not be classified; `id` is echoed when it was readable.
#[derive(Debug)]
pub struct InvalidMessage<'a> {
    pub id: Option<&'a RawValue>,
    pub error: RpcError,
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

/// Classifies one JSON text. Malformed JSON is a parse error; well-formed JSON that is not a
/// valid JSON-RPC message is an invalid request.
pub fn classify(text: &str) -> Result<Message<'_>, InvalidMessage<'_>> {
    // serde would read a struct from an array by position; a message must be an object.
    if !text.trim_start().starts_with('{') {
        let error = match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => RpcError::new(
                INVALID_REQUEST,
                "invalid request: a JSON-RPC message is an object",
            ),
            Err(error) => RpcError::new(PARSE_ERROR, format!("parse error: {error}")),
        };
        return Err(InvalidMessage { id: None, error });
    }
    let fields: Fields<'_> = serde_json::from_str(text).map_err(|error| {
        let code = if error.is_data() {
            INVALID_REQUEST
        } else {
            PARSE_ERROR
        };
        let message = if code == PARSE_ERROR {
            format!("parse error: {error}")
        } else {
            format!("invalid request: expected a JSON-RPC 2.0 object ({error})")
        };
        InvalidMessage {
            id: None,
            error: RpcError::new(code, message),
        }
    })?;
    classify_fields(fields)
}

fn classify_fields(fields: Fields<'_>) -> Result<Message<'_>, InvalidMessage<'_>> {
    let id = match fields.id {
        Some(id) if is_valid_id(id) => Some(id),
        Some(_) => {
            return Err(InvalidMessage {
                id: None,
                error: RpcError::new(
                    INVALID_REQUEST,
                    "invalid request: id must be a string or an integer",
                ),
            })
        }
        None => None,
    };
    let invalid = |message: &'static str| InvalidMessage {
        id,
        error: RpcError::new(INVALID_REQUEST, message),
    };
    if fields.jsonrpc.map(RawValue::get) != Some("\"2.0\"") {
        return Err(invalid("invalid request: \"jsonrpc\" must be \"2.0\""));
    }
    match (fields.method, id) {
        (Some(method), id) => {
            let method = as_str(method)
                .ok_or_else(|| invalid("invalid request: method must be a string"))?;
            Ok(match id {
                Some(id) => Message::Request {
                    id,
                    method,
                    params: fields.params,
                },
                None => Message::Notification { method },
            })
        }
        (None, Some(_)) if fields.result.is_some() || fields.error.is_some() => {
            Ok(Message::Response)
        }
        (None, _) => Err(invalid("invalid request: missing method")),
    }
}

/// MCP ids are strings or integers (never null). Integers must fit 64 bits so that every
/// client can parse the id we echo back (`1e400` is valid JSON but not a usable id).
fn is_valid_id(id: &RawValue) -> bool {
    let text = id.get();
    text.starts_with('"') || text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok()
}

/// Writes `{"jsonrpc":"2.0","id":ID,"result":` ; the caller writes the result and then `}`.
pub fn open_result(out: &mut Vec<u8>, id: &RawValue) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.get().as_bytes());
    out.extend_from_slice(b",\"result\":");
}

/// The length [`open_result`] writes for `id`.
pub fn open_result_len(id: &RawValue) -> usize {
    r#"{"jsonrpc":"2.0","id":,"result":"#.len() + id.get().len()
}

pub fn close_result(out: &mut Vec<u8>) {
    out.push(b'}');
}

/// An error response; an unknown id is written as `null` (JSON-RPC 2.0).
pub fn write_error(out: &mut Vec<u8>, id: Option<&RawValue>, error: &RpcError) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.map_or("null", RawValue::get).as_bytes());
    write_error_member(out, error);
}

/// An error response whose unknown id is left out: MCP 2026-07-28 allows no `null` id.
pub fn write_error_omitting_unknown_id(out: &mut Vec<u8>, id: Option<&RawValue>, error: &RpcError) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\"");
    if let Some(id) = id {
        out.extend_from_slice(b",\"id\":");
        out.extend_from_slice(id.get().as_bytes());
    }
    write_error_member(out, error);
}

fn write_error_member(out: &mut Vec<u8>, error: &RpcError) {
    out.extend_from_slice(b",\"error\":{\"code\":");
    out.extend_from_slice(error.code.to_string().as_bytes());
    out.extend_from_slice(b",\"message\":");
    crate::json::write_str(out, &error.message);
    if let Some(data) = &error.data {
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(data.as_bytes());
    }
    out.extend_from_slice(b"}}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_result_len_matches_what_is_written() {
        let id = RawValue::from_string("\"abc\"".into()).expect("json");
        let mut out = Vec::new();
        open_result(&mut out, &id);
        assert_eq!(open_result_len(&id), out.len());
    }

    fn code_of(text: &str) -> i32 {
        match classify(text) {
            Err(refusal) => refusal.error.code,
            Ok(message) => panic!("{text} classified as {message:?}"),
        }
    }

    #[test]
    fn requests_notifications_and_responses_are_told_apart() {
        match classify(r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#) {
            Ok(Message::Request {
                id,
                method,
                params: None,
            }) => {
                assert_eq!(id.get(), "7");
                assert_eq!(method, "ping");
            }
            other => panic!("{other:?}"),
        }
        match classify(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#) {
            Ok(Message::Notification { method }) => assert_eq!(method, "notifications/initialized"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#),
            Ok(Message::Response)
        ));
    }

    #[test]
    fn string_ids_are_echoed_verbatim() {
        let Ok(Message::Request { id, .. }) =
            classify(r#"{"jsonrpc":"2.0","id":"x\"y","method":"m"}"#)
        else {
            panic!("expected a request");
        };
        let mut out = Vec::new();
        open_result(&mut out, id);
        out.extend_from_slice(b"{}");
        close_result(&mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            r#"{"jsonrpc":"2.0","id":"x\"y","result":{}}"#
        );
    }

    #[test]
    fn every_error_code_for_bad_framing() {
        assert_eq!(code_of("{"), PARSE_ERROR);
        assert_eq!(code_of("not json"), PARSE_ERROR);
        assert_eq!(
            code_of(r#"{"jsonrpc":"2.0","id":1,"method":"ping""#),
            PARSE_ERROR
        );
        assert_eq!(code_of("42"), INVALID_REQUEST);
        assert_eq!(code_of(r#"["2.0",1,"ping"]"#), INVALID_REQUEST);
        assert_eq!(code_of("[1,"), PARSE_ERROR);
        assert_eq!(code_of(r#"{"id":1,"method":"ping"}"#), INVALID_REQUEST);
        assert_eq!(
            code_of(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#),
            INVALID_REQUEST
        );
        assert_eq!(
            code_of(r#"{"jsonrpc":"2.0","id":1,"method":5}"#),
            INVALID_REQUEST
        );
        assert_eq!(
            code_of(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#),
            INVALID_REQUEST
        );
        assert_eq!(
            code_of(r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#),
            INVALID_REQUEST
        );
        assert_eq!(code_of(r#"{"jsonrpc":"2.0","id":1}"#), INVALID_REQUEST);
        assert_eq!(
            code_of(r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#),
            INVALID_REQUEST
        );
    }

    #[test]
    fn error_response_shape() {
        let mut out = Vec::new();
        write_error(
            &mut out,
            None,
            &RpcError::new(METHOD_NOT_FOUND, "method not found: x"),
        );
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"method not found: x"}}"#
        );
    }
}
