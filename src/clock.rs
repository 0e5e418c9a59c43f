//! Wall-clock time and the two text forms allman prints: RFC 3339 UTC with milliseconds
//! (message timestamps) and the IMF-fixdate of the HTTP `Date` header. Civil-date arithmetic
//! is done here so the server needs no date library.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch. A clock before 1970 reads as 0.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// (year, month 1-12, day 1-31) of a count of days since 1970-01-01, proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so that leap days fall at the end of a 400-year era.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn push_digits(out: &mut String, value: i64, width: usize) {
    let text = value.to_string();
    for _ in text.len()..width {
        out.push('0');
    }
    out.push_str(&text);
}

/// `2026-11-25T12:06:11.123Z`
pub fn rfc3339_ms_string(unix_ms: i64) -> String {
    let mut out = String::with_capacity(24);
    write_rfc3339_ms(&mut out, unix_ms);
    out
}

pub fn write_rfc3339_ms(out: &mut String, unix_ms: i64) {
    let secs = unix_ms.div_euclid(1000);
    let millis = unix_ms.rem_euclid(1000);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let second_of_day = secs.rem_euclid(86_400);
    push_digits(out, year, 4);
    out.push('-');
    push_digits(out, i64::from(month), 2);
    out.push('-');
    push_digits(out, i64::from(day), 2);
    out.push('T');
    push_digits(out, second_of_day / 3600, 2);
    out.push(':');
    push_digits(out, second_of_day % 3600 / 60, 2);
    out.push(':');
    push_digits(out, second_of_day % 60, 2);
    out.push('.');
    push_digits(out, millis, 3);
    out.push('Z');
}

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Wed, 25 Nov 2026 12:06:11 GMT` (RFC 9110 IMF-fixdate).
pub fn http_date(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let second_of_day = unix_secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = String::with_capacity(29);
    out.push_str(WEEKDAYS[days.rem_euclid(7) as usize]);
    out.push_str(", ");
    push_digits(&mut out, i64::from(day), 2);
    out.push(' ');
    out.push_str(MONTHS[(month - 1) as usize]);
    out.push(' ');
    push_digits(&mut out, year, 4);
    out.push(' ');
    push_digits(&mut out, second_of_day / 3600, 2);
    out.push(':');
    push_digits(&mut out, second_of_day % 3600 / 60, 2);
    out.push(':');
    push_digits(&mut out, second_of_day % 60, 2);
    out.push_str(" GMT");
    out
}

thread_local! {
    /// Per-thread (= per-shard) cache: the Date header text changes once a second.
    static DATE_CACHE: RefCell<(i64, String)> =
        const { RefCell::new((i64::MIN, String::new())) };
}

/// Calls `f` with the current HTTP date, formatting it at most once a second per thread.
pub fn with_http_date<R>(f: impl FnOnce(&str) -> R) -> R {
    let secs = now_ms().div_euclid(1000);
    DATE_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            *cache = (secs, http_date(secs));
        }
        f(&cache.1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339_ms_string(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_ms_string(951_782_400_007),
            "2000-02-29T00:00:00.007Z"
        );
        assert_eq!(
            rfc3339_ms_string(1_795_608_371_123),
            "2026-11-25T12:06:11.123Z"
        );
        assert_eq!(
            rfc3339_ms_string(4_102_444_799_999),
            "2099-12-31T23:59:59.999Z"
        );
        assert_eq!(rfc3339_ms_string(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn http_date_known_instants() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_795_608_371), "Wed, 25 Nov 2026 12:06:11 GMT");
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn every_day_for_three_centuries_round_trips() {
        // Walks day by day and checks the calendar advances one day at a time.
        let mut previous = civil_from_days(-36_524);
        for days in -36_523..73_048 {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = previous;
            let next_day = (y, m, d) == (py, pm, pd + 1);
            let next_month =
                d == 1 && ((y == py && m == pm + 1) || (y == py + 1 && m == 1 && pm == 12));
            assert!(next_day || next_month, "{previous:?} -> {:?}", (y, m, d));
            previous = (y, m, d);
        }
    }
}
