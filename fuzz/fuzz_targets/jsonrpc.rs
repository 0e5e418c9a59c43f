#![no_main]
//! The JSON-RPC classifier and the tool-argument parsers on arbitrary text.

libfuzzer_sys::fuzz_target!(|data: &[u8]| allman::fuzzing::jsonrpc(data));
