//! Timestamps as the status stores them (RFC 3339, UTC, millisecond precision).
//!
//! Every deadline the engine acts on is computed from the *stored* string, never from an in-memory
//! value, so deciding again on the written status gives exactly the same deadlines.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

pub fn format(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The stored form of `t` read back: what a later decision will see.
pub fn normalize(t: DateTime<Utc>) -> DateTime<Utc> {
    parse(&format(t)).unwrap_or(t)
}

pub fn add(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `later - earlier`, zero when `later` is not after `earlier`.
pub fn until(earlier: DateTime<Utc>, later: DateTime<Utc>) -> Duration {
    (later - earlier).to_std().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_millisecond_precision() {
        let t = parse("2025-08-17T06:09:47.123456Z").unwrap();
        let n = normalize(t);
        assert_eq!(format(n), "2025-08-17T06:09:47.123Z");
        assert_eq!(normalize(n), n);
        assert_eq!(until(n, t), Duration::from_nanos(456_000));
        assert_eq!(until(t, n), Duration::ZERO);
    }
}
