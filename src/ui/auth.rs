//! Who may see the view. Without `--token`, anyone who may reach `/mcp` (the same Host and
//! Origin rules). With it, a request needs the token as a bearer header, or the cookie the
//! login form sets: a hash of the token, so the cookie (readable by nothing but the browser:
//! `HttpOnly`) opens the view only, never `/mcp`.

use crate::http::Headers;
use uuid::Uuid;

pub const COOKIE_NAME: &str = "allman_ui";
/// A login form holds one short field; anything larger is refused before it is read.
pub const MAX_LOGIN_BODY_BYTES: usize = 4096;

/// Hashes the token into the cookie's value (UUID v5, SHA-1 based).
const COOKIE_NAMESPACE: Uuid = Uuid::from_u128(0x0b7e_55d1_92a4_4c3f_8e60_d1c2_73a9_5f14);

pub fn cookie_value(token: &str) -> String {
    Uuid::new_v5(&COOKIE_NAMESPACE, token.as_bytes())
        .simple()
        .to_string()
}

/// Whether the request's `Cookie` header carries `expected` under [`COOKIE_NAME`].
pub fn has_cookie(headers: &Headers<'_>, expected: &str) -> bool {
    let Some(header) = headers.get("cookie") else {
        return false;
    };
    header
        .split(|b| *b == b';')
        .filter_map(|pair| {
            let pair = crate::http::request::trim_ows(pair);
            let at = pair.iter().position(|b| *b == b'=')?;
            Some((&pair[..at], &pair[at + 1..]))
        })
        .any(|(name, value)| name == COOKIE_NAME.as_bytes() && same(value, expected.as_bytes()))
}

/// Compares in time that depends only on the lengths.
pub fn same(presented: &[u8], expected: &[u8]) -> bool {
    presented.len() == expected.len()
        && presented
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookie: &str) -> Vec<u8> {
        format!("Cookie: {cookie}\r\n").into_bytes()
    }

    #[test]
    fn the_cookie_is_a_hash_of_the_token_found_among_others() {
        let value = cookie_value("s3cret");
        assert_eq!(value.len(), 32);
        assert!(!value.contains("s3cret"));
        assert_ne!(value, cookie_value("s3cret2"));
        let good = headers(&format!("theme=dark; {COOKIE_NAME}={value}; x=1"));
        assert!(has_cookie(&Headers::from_section(&good), &value));
        for bad in [
            format!("{COOKIE_NAME}={}", cookie_value("other")),
            format!("{COOKIE_NAME}x={value}"),
            format!("{COOKIE_NAME}={value}0"),
            String::from("theme=dark"),
        ] {
            let section = headers(&bad);
            assert!(
                !has_cookie(&Headers::from_section(&section), &value),
                "{bad}"
            );
        }
        assert!(!has_cookie(&Headers::from_section(b""), &value));
    }
}
