//! The bodies of the fuzz targets (`fuzz/`), kept in the library so that `cargo test` replays
//! every saved regression input through exactly the same code (`tests/fuzz_regressions.rs`).
//! Each function must never panic, whatever the input.

use crate::http::request::{decode, Decoded, Limits};
use crate::mcp::jsonrpc::classify;
use crate::mcp::transport::{check, TransportPolicy};
use serde_json::value::RawValue;

/// The HTTP request decoder on arbitrary bytes, decoding pipelined requests one after another,
/// plus the transport checks on whatever headers decode.
pub fn http_decode(data: &[u8]) {
    let limits = Limits {
        max_header_bytes: 16 * 1024,
        max_body_bytes: 1024 * 1024,
    };
    let policy = TransportPolicy {
        allowed_origins: vec!["https://app.example.com".into()],
        allowed_hosts: vec!["mail.internal".into()],
        check_host: true,
        token: Some("token".into()),
    };
    let mut offset = 0;
    // Every complete request consumes at least one byte, so this ends.
    while offset < data.len() {
        match decode(&data[offset..], &limits) {
            Ok(Decoded::Complete { request, consumed }) => {
                assert!(
                    consumed > 0 && consumed <= data.len() - offset,
                    "consumed out of range"
                );
                assert!(
                    request.body.len() <= limits.max_body_bytes,
                    "body over the limit"
                );
                let _ = check(&request.headers, &policy);
                offset += consumed;
            }
            Ok(Decoded::Partial { total_len, .. }) => {
                if let Some(total) = total_len {
                    assert!(total > data.len() - offset, "partial but long enough");
                }
                return;
            }
            Err(error) => {
                let _ = (error.status(), error.message());
                return;
            }
        }
    }
}

/// The JSON-RPC classifier and every tool's argument parser on arbitrary text.
pub fn jsonrpc(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = classify(text);
    if let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(text) {
        for item in items.iter().take(crate::mcp::MAX_BATCH_LEN) {
            let _ = classify(item.get());
        }
    }
    if let Ok(raw) = serde_json::from_str::<&RawValue>(text) {
        for tool in [
            "create_agent",
            "send_message",
            "get_inbox",
            "search_messages",
            "nope",
        ] {
            if let Err(crate::tools::ParseFailure::Arguments(error)) =
                crate::tools::parse(tool, Some(raw))
            {
                let _ = error.to_string();
            }
        }
    }
}
