//! Small helpers for reading borrowed JSON values and writing JSON by hand into reused buffers,
//! below every layer that speaks JSON (MCP, the tools, search).

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::borrow::Cow;
use uuid::Uuid;

/// For `#[serde(deserialize_with)]` on `Option<&RawValue>` fields: an explicit `null` becomes
/// `Some("null")`, so "absent" and "null" stay distinguishable.
pub fn present<'de, D>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: Deserializer<'de>,
{
    <&'de RawValue>::deserialize(deserializer).map(Some)
}

/// The string held by `raw`, borrowed when it has no escapes; `None` if `raw` is not a string.
pub fn as_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    if !text.starts_with('"') {
        return None;
    }
    // Without escapes (and control characters, which JSON forbids raw) the literal's inside
    // is the string itself. Asking serde_json to borrow an escaped string instead fails by
    // building an error that quotes the whole string: microseconds for a long body.
    let inside = text.get(1..text.len() - 1)?;
    if !inside.bytes().any(|b| b == b'\\' || b < 0x20) {
        return Some(Cow::Borrowed(inside));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

pub fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

/// At most `max` bytes of a text, cut at a character boundary (for echoing client text in an
/// error, or quoting a subject in a notice). One definition, in the shards crate, for both.
pub use shards::envelope::prefix_at_char;

/// Appends `value` in decimal, without a heap allocation (JSON numbers, HTTP lengths).
pub fn write_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Appends `text` as a JSON string literal (quoted and escaped).
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    // Writing into a Vec cannot fail, and a &str always serialises.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// The length of `text` written by [`write_str`] (quotes included), without writing it.
pub fn quoted_len(text: &str) -> usize {
    2 + text.bytes().map(escaped_byte_len).sum::<usize>()
}

/// The length of `text` after [`write_str`] and then [`write_str`] again on that result (a
/// tool result's JSON carried as a `text` string), without writing either.
pub fn twice_quoted_len(text: &str) -> usize {
    // The outer quotes of the inner literal become \" (2 + 2), plus the new outer quotes.
    6 + text.bytes().map(twice_escaped_byte_len).sum::<usize>()
}

/// `quoted_len(text) + twice_quoted_len(text)` in one pass over `text`: what a string costs
/// in a tool result, which carries its JSON raw and again inside a `text` string.
pub fn both_quoted_len(text: &str) -> usize {
    8 + text
        .bytes()
        .map(|byte| escaped_byte_len(byte) + twice_escaped_byte_len(byte))
        .sum::<usize>()
}

/// Bytes serde_json writes for one byte of a string: `"` and `\` and the short control escapes
/// take 2, other control characters `\u00XX` take 6; the rest (UTF-8 included) is copied.
fn escaped_byte_len(byte: u8) -> usize {
    match byte {
        b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
        0x00..=0x1f => 6,
        _ => 1,
    }
}

/// Escaping an escape again: `\"` becomes `\\\"` (4), `\n` becomes `\\n` (3), `\u0001` becomes
/// `\\u0001` (7).
fn twice_escaped_byte_len(byte: u8) -> usize {
    match byte {
        b'"' | b'\\' => 4,
        b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 3,
        0x00..=0x1f => 7,
        _ => 1,
    }
}

pub fn write_uuid(out: &mut Vec<u8>, id: &Uuid) {
    let mut buffer = Uuid::encode_buffer();
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buffer).as_bytes());
    out.push(b'"');
}

/// `raw` read into `T` if it is a JSON object (serde would also read a struct from an array,
/// by position); `None` for anything else or what does not fit `T`.
pub fn parse_object<'a, T: serde::Deserialize<'a>>(raw: &'a RawValue) -> Option<T> {
    if !raw.get().starts_with('{') {
        return None;
    }
    serde_json::from_str(raw.get()).ok()
}

/// `[a,b,…]`: each item written by `write`, commas between. The one list writer of every
/// hand-written JSON answer.
pub fn write_array<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut Vec<u8>, T),
) {
    out.push(b'[');
    for (index, item) in items.into_iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_put_commas_only_between_items() {
        let mut out = Vec::new();
        write_array(&mut out, [1u64, 22, 333], write_u64);
        assert_eq!(out, b"[1,22,333]");
        out.clear();
        write_array(&mut out, std::iter::empty::<u64>(), |out, n| {
            write_u64(out, n)
        });
        assert_eq!(out, b"[]");
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for value in [0u64, 7, 10, 1_048_576, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, value);
            assert_eq!(out, value.to_string().into_bytes());
        }
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).expect("valid json")
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        assert!(matches!(
            as_str(&raw("\"plain\"")),
            Some(Cow::Borrowed("plain"))
        ));
        assert_eq!(as_str(&raw("\"a\\nb\"")).as_deref(), Some("a\nb"));
        assert_eq!(as_str(&raw("\"\\u00e9\"")).as_deref(), Some("é"));
        assert_eq!(as_str(&raw("12")), None);
        assert_eq!(as_str(&raw("null")), None);
        assert!(matches!(as_str(&raw("\"\"")), Some(Cow::Borrowed(""))));
        assert!(matches!(
            as_str(&raw("\"naïve → café\"")),
            Some(Cow::Borrowed("naïve → café"))
        ));
        let long = format!("\"{}\\\"end\"", "x".repeat(4000));
        assert_eq!(
            as_str(&raw(&long)).as_deref(),
            Some(format!("{}\"end", "x".repeat(4000)).as_str())
        );
    }

    #[test]
    fn escaped_lengths_match_what_is_written() {
        let mut every_byte = String::new();
        for code in 0u32..0x80 {
            every_byte.push(char::from_u32(code).expect("ascii"));
        }
        for text in [
            "",
            "plain",
            "q\"\\\n\r\t\u{8}\u{c}\u{1}\u{1f}é→",
            &every_byte,
        ] {
            let mut once = Vec::new();
            write_str(&mut once, text);
            assert_eq!(quoted_len(text), once.len(), "{text:?}");
            let mut twice = Vec::new();
            write_str(&mut twice, std::str::from_utf8(&once).expect("utf8"));
            assert_eq!(twice_quoted_len(text), twice.len(), "{text:?}");
            assert_eq!(both_quoted_len(text), once.len() + twice.len(), "{text:?}");
        }
    }

    #[test]
    fn written_strings_are_escaped_json() {
        let mut out = Vec::new();
        write_str(&mut out, "q\"\\\n\u{1}é");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "\"q\\\"\\\\\\n\\u0001é\""
        );
    }
}
