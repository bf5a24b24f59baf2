//! Exact conversions of the vendors' bar fields that the streaming connectors'
//! `values` do not cover: volumes that may be written as floats (`12345.0`,
//! `1.5e6`), and daily stamps turned into trading dates.

use chrono::{DateTime, Duration as ChronoDuration, NaiveTime};
use chrono_tz::America::New_York;

use crate::domain::MAX_SIZE;

/// Most digits a volume may carry once leading zeros are gone: more is above
/// [`MAX_SIZE`] whatever the exponent says.
const MAX_DIGITS: usize = 30;
/// Exponents are read up to this magnitude (more digits saturate): enough to tell
/// "far too large" and "far too small" apart without big-number arithmetic.
const MAX_EXPONENT: i64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VolumeError {
    #[error("volume must be a non-negative decimal number")]
    NotANumber,
    #[error("volume is not a whole number of shares (refused, not rounded)")]
    Fractional,
    #[error("volume is above 2^53 - 1 shares")]
    TooLarge,
}

/// A volume from its JSON number text, exactly: `12345`, `12345.0` and `1.5e6` are
/// whole numbers of shares and accepted; `12.5` and `1.5e-1` are not, and are refused
/// rather than rounded. At most [`MAX_SIZE`], so every client reads it exactly.
///
/// Integer arithmetic on the digits, never `f64`: `1.5e6` is the digits `15` with the
/// point moved five places right, `1500000` whatever a float would print.
pub fn volume(text: &str) -> Result<u64, VolumeError> {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], exponent(&text[at + 1..])?),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    let fraction_ok = !mantissa.contains('.') || !fraction.is_empty();
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) || !fraction_ok {
        return Err(VolumeError::NotANumber);
    }
    // The value is digits × 10^scale.
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    let scale = exponent - fraction.len() as i64;
    let (kept, dropped) = if scale >= 0 {
        (digits, "")
    } else {
        let shift = usize::try_from(scale.unsigned_abs()).unwrap_or(usize::MAX);
        digits.split_at(digits.len().saturating_sub(shift))
    };
    if dropped.bytes().any(|b| b != b'0') {
        return Err(VolumeError::Fractional);
    }
    if kept.is_empty() {
        return Ok(0);
    }
    if kept.len() > MAX_DIGITS {
        return Err(VolumeError::TooLarge);
    }
    let mut value: u128 = kept.parse().map_err(|_| VolumeError::NotANumber)?;
    // At most 17 rounds: every one multiplies a non-zero value by ten.
    for _ in 0..scale.max(0) {
        if value > u128::from(MAX_SIZE) {
            break;
        }
        value *= 10;
    }
    u64::try_from(value)
        .ok()
        .filter(|&v| v <= MAX_SIZE)
        .ok_or(VolumeError::TooLarge)
}

/// An exponent's text (`6`, `+6`, `-1`), saturating at [`MAX_EXPONENT`].
fn exponent(text: &str) -> Result<i64, VolumeError> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VolumeError::NotANumber);
    }
    let magnitude = digits
        .parse::<i64>()
        .unwrap_or(MAX_EXPONENT)
        .min(MAX_EXPONENT);
    Ok(if text.starts_with('-') {
        -magnitude
    } else {
        magnitude
    })
}

/// A daily bar's trading date at 00:00 UTC, in ms, from the instant the vendor
/// stamped the day with; `None` out of chrono's range.
///
/// Vendors stamp a trading day differently: Alpaca and Polygon at midnight in New
/// York (`05:00Z` in winter, `04:00Z` in summer), Finnhub at `00:00Z` of the date,
/// which is the evening before in New York. The date is the one whose New York
/// midnight lies nearest the stamp, which is right for both: the stamp's New York
/// date once moved 12 hours later.
pub fn trading_date_ms(stamp_ms: i64) -> Option<i64> {
    let moved = DateTime::from_timestamp_millis(stamp_ms)? + ChronoDuration::hours(12);
    let date = moved.with_timezone(&New_York).date_naive();
    Some(date.and_time(NaiveTime::MIN).and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_volumes_are_read_exactly_whatever_their_notation() {
        for (text, expected) in [
            ("0", 0),
            ("12345", 12_345),
            ("12345.0", 12_345),
            ("12345.000", 12_345),
            ("1.5e6", 1_500_000),
            ("1.5E+6", 1_500_000),
            ("15e5", 1_500_000),
            ("1000000e-6", 1),
            ("0e999999999", 0),
            ("0.0", 0),
            ("007", 7),
            ("9007199254740991", 9_007_199_254_740_991),
            ("9.007199254740991e15", 9_007_199_254_740_991),
        ] {
            assert_eq!(volume(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn fractional_volumes_are_refused_not_rounded() {
        for text in [
            "12.5",
            "0.5",
            "1.5e-1",
            "1.2345e3",
            "100.0001",
            "1500000e-6",
            "1e-999999999",
        ] {
            assert_eq!(volume(text), Err(VolumeError::Fractional), "{text}");
        }
        for text in ["-1", "", "1.", ".5", "\"100\"", "1e", "1e+", "null", "1..2"] {
            assert_eq!(volume(text), Err(VolumeError::NotANumber), "{text}");
        }
        for text in ["9007199254740992", "1e16", "1e31", "1e999999999"] {
            assert_eq!(volume(text), Err(VolumeError::TooLarge), "{text}");
        }
    }

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn daily_stamps_become_the_trading_date_at_utc_midnight_across_dst() {
        // Friday 2024-03-08 (EST) and Monday 2024-03-11 (EDT, the day after the change).
        for (stamp, date) in [
            ("2024-03-08T05:00:00Z", "2024-03-08T00:00:00Z"), // New York midnight, EST
            ("2024-03-11T04:00:00Z", "2024-03-11T00:00:00Z"), // New York midnight, EDT
            ("2024-03-08T00:00:00Z", "2024-03-08T00:00:00Z"), // Finnhub's 00:00Z
            ("2024-03-11T00:00:00Z", "2024-03-11T00:00:00Z"),
            ("2024-11-01T04:00:00Z", "2024-11-01T00:00:00Z"), // before the change back
            ("2024-11-04T05:00:00Z", "2024-11-04T00:00:00Z"), // after it
        ] {
            assert_eq!(trading_date_ms(ms(stamp)), Some(ms(date)), "{stamp}");
        }
    }
}
