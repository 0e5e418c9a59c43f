//! Small helpers for reading borrowed JSON values and writing JSON by hand into reused buffers.

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
    if let Ok(borrowed) = serde_json::from_str::<&str>(text) {
        return Some(Cow::Borrowed(borrowed));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

pub fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

/// Appends `text` as a JSON string literal (quoted and escaped).
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    // Writing into a Vec cannot fail, and a &str always serialises.
    let _ = serde_json::to_writer(&mut *out, text);
}

pub fn write_uuid(out: &mut Vec<u8>, id: &Uuid) {
    let mut buffer = Uuid::encode_buffer();
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buffer).as_bytes());
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

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
