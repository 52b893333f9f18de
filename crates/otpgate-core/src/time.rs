//! RFC 3339 timestamps: the one formatter and parser of the project.
//!
//! Times are Unix milliseconds (`i64`), UTC. Nothing here reads a clock: the caller passes
//! the instant in.
//!
//! - [`format_rfc3339`]: second precision, `2026-11-25T20:19:58Z` (the issuer API, the audit
//!   log, key listings).
//! - [`format_rfc3339_millis`]: millisecond precision, `2026-11-25T20:19:58.123Z` (the
//!   sms-gate.app API).
//! - [`parse_rfc3339`]: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; `t`, `z` and a space for
//!   `T` are accepted (RFC 3339 §5.6 note), a fraction past milliseconds is truncated, a leap
//!   second (`:60`) counts as the next second. Anything else is an error, never a panic.
//!
//! # Example
//! ```
//! use otpgate_core::time::{format_rfc3339, parse_rfc3339};
//! assert_eq!(format_rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
//! assert_eq!(parse_rfc3339("2000-02-29T02:00:00.5+02:00"), Ok(951_782_400_500));
//! ```

/// Why a string is not an RFC 3339 date-time.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    /// The shape is wrong: not `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
    #[error("not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM))")]
    Malformed,
    /// The shape is right but a field is out of range (month 13, 31 April, 29 February of a
    /// common year, hour 24, offset +24:00, ...).
    #[error("a field of the date-time is out of range")]
    OutOfRange,
}

impl TimeError {
    /// A stable code for the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed_time",
            Self::OutOfRange => "time_out_of_range",
        }
    }
}

const MS_PER_DAY: i64 = 86_400_000;

/// `(year, month, day)` of the day `days` after 1970-01-01 (Howard Hinnant's civil-from-days).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days from 1970-01-01 to `y-m-d` (Howard Hinnant's days-from-civil); `m` is 1–12.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of the second holding `ms`, and the millisecond within it.
fn split(ms: i64) -> (String, i64) {
    let days = ms.div_euclid(MS_PER_DAY);
    let ms_of_day = ms.rem_euclid(MS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let sod = ms_of_day / 1000;
    let text = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    (text, ms_of_day % 1000)
}

/// Formats Unix milliseconds as RFC 3339 UTC with second precision (`2026-11-25T20:19:58Z`);
/// the milliseconds are dropped (rounded down).
///
/// Years outside 0000–9999 print with more digits or a sign and are then not RFC 3339; no
/// `i64` panics.
pub fn format_rfc3339(ms: i64) -> String {
    let (mut text, _) = split(ms);
    text.push('Z');
    text
}

/// Formats Unix milliseconds as RFC 3339 UTC with millisecond precision
/// (`2026-11-25T20:19:58.123Z`).
///
/// Years outside 0000–9999 print as [`format_rfc3339`] says.
pub fn format_rfc3339_millis(ms: i64) -> String {
    let (text, millis) = split(ms);
    format!("{text}.{millis:03}Z")
}

/// Parses an RFC 3339 date-time to Unix milliseconds.
///
/// Accepts `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` with `T`, `t` or a space between date
/// and time and `Z` or `z`; the fraction (one digit or more) is truncated to milliseconds; a
/// leap second (`:60`) reads as the next second.
///
/// # Errors
/// [`TimeError::Malformed`] for a wrong shape, [`TimeError::OutOfRange`] for a field out of
/// range (the day is checked against the month, leap years included).
pub fn parse_rfc3339(s: &str) -> Result<i64, TimeError> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(TimeError::Malformed);
    }
    // Fixed-width decimal field; `b` is bytes, so no char boundary is ever split.
    let num = |from: usize, to: usize| -> Result<i64, TimeError> {
        let field = b.get(from..to).ok_or(TimeError::Malformed)?;
        if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
            return Err(TimeError::Malformed);
        }
        Ok(field
            .iter()
            .fold(0i64, |acc, c| acc * 10 + i64::from(c - b'0')))
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, se) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 60
    {
        return Err(TimeError::OutOfRange);
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return Err(TimeError::Malformed);
        }
        for k in 0..3 {
            let digit = b
                .get(start + k)
                .filter(|_| start + k < i)
                .map_or(0, |c| c - b'0');
            frac_ms = frac_ms * 10 + i64::from(digit);
        }
    }
    let offset_ms = match &b[i..] {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1, i + 3)?, num(i + 4, i + 6)?);
            if oh > 23 || om > 59 {
                return Err(TimeError::OutOfRange);
            }
            let v = (oh * 60 + om) * 60_000;
            if *sign == b'-' { -v } else { v }
        }
        _ => return Err(TimeError::Malformed),
    };
    let days = days_from_civil(y, mo, d);
    Ok(days * MS_PER_DAY + ((h * 60 + mi) * 60 + se) * 1000 + frac_ms - offset_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_seconds_and_millis() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_764_101_998_000), "2025-11-25T20:19:58Z");
        assert_eq!(format_rfc3339(1_764_101_998_999), "2025-11-25T20:19:58Z");
        assert_eq!(format_rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(format_rfc3339_millis(1_500), "1970-01-01T00:00:01.500Z");
        assert_eq!(format_rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            format_rfc3339_millis(253_402_300_799_999),
            "9999-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn formatting_never_panics_at_the_extremes() {
        for ms in [i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1] {
            assert!(format_rfc3339(ms).ends_with('Z'));
            assert!(format_rfc3339_millis(ms).ends_with('Z'));
        }
    }

    #[test]
    fn parses_leap_years() {
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Ok(951_782_400_000));
        assert!(parse_rfc3339("2024-02-29T12:00:00Z").is_ok());
        assert_eq!(
            parse_rfc3339("1900-02-29T00:00:00Z"),
            Err(TimeError::OutOfRange)
        );
        assert_eq!(
            parse_rfc3339("2023-02-29T00:00:00Z"),
            Err(TimeError::OutOfRange)
        );
        assert_eq!(
            parse_rfc3339("2026-04-31T00:00:00Z"),
            Err(TimeError::OutOfRange)
        );
        assert!(parse_rfc3339("2026-12-31T23:59:59Z").is_ok());
    }

    #[test]
    fn parses_offsets() {
        let utc = parse_rfc3339("2026-08-01T08:00:00Z");
        assert_eq!(parse_rfc3339("2026-08-01T10:00:00+02:00"), utc);
        assert_eq!(parse_rfc3339("2026-08-01T02:30:00-05:30"), utc);
        assert_eq!(parse_rfc3339("2026-08-01T08:00:00-00:00"), utc);
        assert_eq!(parse_rfc3339("2026-08-01t08:00:00z"), utc);
        assert_eq!(parse_rfc3339("2026-08-01 08:00:00Z"), utc);
        assert_eq!(
            parse_rfc3339("2026-08-01T08:00:00+24:00"),
            Err(TimeError::OutOfRange)
        );
        assert_eq!(
            parse_rfc3339("2026-08-01T08:00:00+01:60"),
            Err(TimeError::OutOfRange)
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00+01:00"), Ok(-3_600_000));
    }

    #[test]
    fn parses_fractions() {
        let base = 1_785_571_200_000; // 2026-08-01T08:00:00Z
        assert_eq!(parse_rfc3339("2026-08-01T08:00:00Z"), Ok(base));
        assert_eq!(parse_rfc3339("2026-08-01T08:00:00.5Z"), Ok(base + 500));
        assert_eq!(parse_rfc3339("2026-08-01T08:00:00.05Z"), Ok(base + 50));
        assert_eq!(parse_rfc3339("2026-08-01T08:00:00.123Z"), Ok(base + 123));
        assert_eq!(
            parse_rfc3339("2026-08-01T08:00:00.123999999Z"),
            Ok(base + 123)
        );
        assert_eq!(
            parse_rfc3339("2026-08-01T10:00:00.250+02:00"),
            Ok(base + 250)
        );
        // A leap second reads as the next second.
        assert_eq!(parse_rfc3339("2026-08-01T07:59:60Z"), Ok(base));
    }

    #[test]
    fn round_trips() {
        for ms in [0, 1_500, 951_782_400_000, 1_764_101_998_123, -86_400_001] {
            assert_eq!(parse_rfc3339(&format_rfc3339_millis(ms)), Ok(ms));
            assert_eq!(
                parse_rfc3339(&format_rfc3339(ms)),
                Ok(ms.div_euclid(1000) * 1000)
            );
        }
    }

    #[test]
    fn rejects_bad_input() {
        use TimeError::{Malformed, OutOfRange};
        for (bad, err) in [
            ("", Malformed),
            ("2026-08-01", Malformed),
            ("2026-08-01T00:00:00", Malformed),
            ("2026-08-01T00:00:00.Z", Malformed),
            ("2026-08-01T00:00:00+0200", Malformed),
            ("2026-08-01T00:00:00+02:00:00", Malformed),
            ("2026-08-01T00:00:00ZZ", Malformed),
            ("2026-08-01X00:00:00Z", Malformed),
            ("+026-08-01T00:00:00Z", Malformed),
            ("2026-+8-01T00:00:00Z", Malformed),
            ("2026-08-01T00:00:00+a2:00", Malformed),
            ("2026-08-01T00:00:00\u{e9}", Malformed),
            ("2026-08-01T00:00:0\u{e9}Z", Malformed),
            (
                "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
                Malformed,
            ),
            ("2026-13-01T00:00:00Z", OutOfRange),
            ("2026-00-01T00:00:00Z", OutOfRange),
            ("2026-08-00T00:00:00Z", OutOfRange),
            ("2026-08-32T00:00:00Z", OutOfRange),
            ("2026-08-01T24:00:00Z", OutOfRange),
            ("2026-08-01T00:60:00Z", OutOfRange),
            ("2026-08-01T00:00:61Z", OutOfRange),
        ] {
            assert_eq!(parse_rfc3339(bad), Err(err), "{bad}");
        }
        assert_eq!(Malformed.code(), "malformed_time");
        assert_eq!(OutOfRange.code(), "time_out_of_range");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse_rfc3339(&s);
        }

        #[test]
        fn near_misses_never_panic(s in "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?([Zz]|[+-][0-9]{2}:[0-9]{2}|.{0,3})") {
            let _ = parse_rfc3339(&s);
        }

        #[test]
        fn format_then_parse_is_identity(ms in 0i64..253_402_300_800_000) {
            proptest::prop_assert_eq!(parse_rfc3339(&format_rfc3339_millis(ms)), Ok(ms));
        }
    }
}
