//! Writing HTML: every piece of text an agent or client provided goes through [`Html::text`]
//! or [`Html::attr`], which escape it; markup is only ever a literal of this crate.

use crate::clock::write_rfc3339_ms;

/// A run of this many characters without a space gets a line-break opportunity (`<wbr>`), so
/// one long word (a path, a hash, a flood of `x`) cannot push a table off the screen.
pub const WORD_BREAK_CHARS: usize = 40;

/// HTML written into a response body.
pub struct Html<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Html<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Html { out }
    }

    /// Bytes in the response body so far.
    pub fn written(&self) -> usize {
        self.out.len()
    }

    /// Markup written by this crate (never text from outside).
    pub fn raw(&mut self, markup: &'static str) -> &mut Self {
        self.out.extend_from_slice(markup.as_bytes());
        self
    }

    /// Text content: escaped, control characters replaced, long words breakable.
    pub fn text(&mut self, text: &str) -> &mut Self {
        let mut run = 0usize;
        for c in text.chars() {
            if c.is_whitespace() {
                run = 0;
            } else {
                run += 1;
                if run > WORD_BREAK_CHARS {
                    self.out.extend_from_slice(b"<wbr>");
                    run = 1;
                }
            }
            self.char(c);
        }
        self
    }

    /// Text cut to at most `max_chars` characters (on a character boundary), with `…` when
    /// anything was cut.
    pub fn text_clipped(&mut self, text: &str, max_chars: usize) -> &mut Self {
        let (kept, cut) = clip(text, max_chars);
        self.text(kept).raw(if cut { "…" } else { "" })
    }

    /// An attribute value (inside double quotes): escaped the same way, without breaks.
    pub fn attr(&mut self, text: &str) -> &mut Self {
        for c in text.chars() {
            self.char(c);
        }
        self
    }

    /// Text where no markup may go (`<title>`): escaped, without breaks, cut to at most
    /// `max_chars` characters with `…`.
    pub fn plain_clipped(&mut self, text: &str, max_chars: usize) -> &mut Self {
        let (kept, cut) = clip(text, max_chars);
        self.attr(kept).raw(if cut { "…" } else { "" })
    }

    /// A decimal number.
    pub fn num(&mut self, n: impl Into<u64>) -> &mut Self {
        crate::json::write_u64(self.out, n.into());
        self
    }

    /// A path segment or query value of a link, percent-encoded (then safe in an attribute).
    pub fn url_part(&mut self, part: &str) -> &mut Self {
        for byte in part.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                self.out.push(byte);
            } else {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                self.out.extend_from_slice(&[
                    b'%',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 15)],
                ]);
            }
        }
        self
    }

    /// A time: UTC in the page (shown in the reader's local time by the page's script), the
    /// RFC 3339 value on hover and in `datetime`.
    pub fn time(&mut self, unix_ms: i64) -> &mut Self {
        let mut stamp = String::with_capacity(24);
        write_rfc3339_ms(&mut stamp, unix_ms);
        self.time_stamp(&stamp)
    }

    /// [`Html::time`] of an RFC 3339 value (as the search index stores them).
    pub fn time_stamp(&mut self, stamp: &str) -> &mut Self {
        self.raw("<time datetime=\"").attr(stamp).raw("\" title=\"");
        self.attr(stamp).raw("\">");
        // "2026-11-29T12:00:00.000Z" -> "2026-11-29 12:00:00 UTC"
        match stamp.get(..19) {
            Some(shown) => self.text(&shown.replacen('T', " ", 1)).raw(" UTC</time>"),
            None => self.text(stamp).raw("</time>"),
        }
    }

    fn char(&mut self, c: char) {
        match c {
            '&' => self.out.extend_from_slice(b"&amp;"),
            '<' => self.out.extend_from_slice(b"&lt;"),
            '>' => self.out.extend_from_slice(b"&gt;"),
            '"' => self.out.extend_from_slice(b"&quot;"),
            '\'' => self.out.extend_from_slice(b"&#39;"),
            '\t' | '\n' | '\r' => self.out.push(c as u8),
            // Control characters are not allowed in HTML text.
            c if c.is_control() => self.out.extend_from_slice("\u{fffd}".as_bytes()),
            c => {
                let mut buffer = [0u8; 4];
                self.out
                    .extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
            }
        }
    }
}

/// The first `max_chars` characters of `text`, and whether anything was cut.
fn clip(text: &str, max_chars: usize) -> (&str, bool) {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => (&text[..end], true),
        None => (text, false),
    }
}

/// Decodes a percent-encoded URL part (`+` is a space in a query); `None` if it is not UTF-8
/// or an escape is malformed.
pub fn decode_url_part(part: &str, plus_is_space: bool) -> Option<String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' => {
                let hex = bytes.get(at + 1..at + 3)?;
                // Both must be hex digits (from_str_radix alone would take "+a").
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                at += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                at += 1;
            }
            byte => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The value of `name` in a query string or form body (the first, decoded).
pub fn query_value(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| decode_url_part(value, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(input: &str) -> String {
        let mut out = Vec::new();
        Html::new(&mut out).text(input);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn script_and_markup_are_escaped() {
        assert_eq!(
            text("<script>alert(1)</script><img src=x onerror=alert(2)>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"
        );
        let mut out = Vec::new();
        Html::new(&mut out).attr("\" onmouseover='x' a=\"&amp;");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "&quot; onmouseover=&#39;x&#39; a=&quot;&amp;amp;"
        );
    }

    #[test]
    fn control_characters_are_replaced_and_whitespace_kept() {
        assert_eq!(
            text("a\u{0}b\u{7}c\u{1b}[31m\u{85}"),
            "a\u{fffd}b\u{fffd}c\u{fffd}[31m\u{fffd}"
        );
        assert_eq!(text("line\nnext\tcol\r"), "line\nnext\tcol\r");
        assert_eq!(text("héllo wörld ✓"), "héllo wörld ✓");
    }

    #[test]
    fn long_words_get_break_opportunities_short_ones_do_not() {
        let word = "x".repeat(WORD_BREAK_CHARS * 2 + 5);
        let written = text(&word);
        assert_eq!(written.matches("<wbr>").count(), 2);
        assert_eq!(written.replace("<wbr>", ""), word);
        let words = format!(
            "{} {}",
            "y".repeat(WORD_BREAK_CHARS),
            "z".repeat(WORD_BREAK_CHARS)
        );
        assert_eq!(text(&words), words);
        // A long word of escaped characters breaks between characters, never inside `&lt;`.
        let angles = text(&"<".repeat(WORD_BREAK_CHARS + 1));
        assert_eq!(
            angles,
            format!("{}<wbr>&lt;", "&lt;".repeat(WORD_BREAK_CHARS))
        );
    }

    #[test]
    fn clipping_cuts_on_character_boundaries() {
        let mut out = Vec::new();
        Html::new(&mut out).text_clipped("ééééé", 3);
        assert_eq!(String::from_utf8(out).expect("utf-8"), "ééé…");
        let mut out = Vec::new();
        Html::new(&mut out).text_clipped("abc", 3);
        assert_eq!(String::from_utf8(out).expect("utf-8"), "abc");
    }

    #[test]
    fn url_parts_round_trip_through_percent_encoding() {
        for part in ["plain", "a b/c?d&e=f#g", "<script>", "thread/é", "100%"] {
            let mut out = Vec::new();
            Html::new(&mut out).url_part(part);
            let encoded = String::from_utf8(out).expect("ascii");
            assert!(encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"%-._~".contains(&b)));
            assert_eq!(decode_url_part(&encoded, false).as_deref(), Some(part));
        }
        assert_eq!(decode_url_part("%zz", false), None);
        assert_eq!(
            decode_url_part("%+a", false),
            None,
            "a sign is not a hex digit"
        );
        assert_eq!(decode_url_part("%4", false), None, "cut short");
        assert_eq!(decode_url_part("%ff", false), None, "not UTF-8");
        assert_eq!(query_value("q=a+b%26c&x=1", "q").as_deref(), Some("a b&c"));
        assert_eq!(query_value("flag&q=", "q").as_deref(), Some(""));
        assert_eq!(query_value("x=1", "q"), None);
    }

    #[test]
    fn times_show_utc_with_the_rfc3339_value() {
        let mut out = Vec::new();
        Html::new(&mut out).time(1_764_417_600_123);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "<time datetime=\"2025-11-29T12:00:00.123Z\" title=\"2025-11-29T12:00:00.123Z\">2025-11-29 12:00:00 UTC</time>"
        );
    }
}
