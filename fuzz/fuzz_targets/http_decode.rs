#![no_main]
//! The HTTP/1.1 request decoder and transport checks on arbitrary bytes.

libfuzzer_sys::fuzz_target!(|data: &[u8]| allman::fuzzing::http_decode(data));
