//! Kubernetes duration strings (`300s`, `15m`, `1h30m`, `250ms`) as the CRDs carry them.
//!
//! Stored as the string the user wrote, so `kubectl get -o yaml` shows exactly what was applied;
//! parsed on use. The schema pattern makes the API server refuse anything [`KubeDuration::parse`]
//! would refuse, so parsing on use only fails for objects that bypassed validation.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The accepted syntax: one or more `<number><unit>` with units h, m, s, ms (Go's
/// `time.ParseDuration` without the sign and without µs/ns, which no timeout here needs).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(h|ms|m|s))+$";

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KubeDuration(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected e.g. 300s, 15m, 1h30m, 250ms)")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

impl KubeDuration {
    /// Parses and keeps the original text. Refuses what the schema pattern refuses.
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        parse_duration(input)?;
        Ok(Self(input.to_owned()))
    }

    pub fn from_secs(secs: u64) -> Self {
        Self(format!("{secs}s"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The duration; an invalid stored string (only possible if validation was bypassed) is an error.
    pub fn to_std(&self) -> Result<Duration, DurationError> {
        parse_duration(&self.0)
    }
}

impl fmt::Display for KubeDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for KubeDuration {
    fn schema_name() -> Cow<'static, str> {
        "KubeDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration such as 300s, 15m, 1h30m or 250ms."
        })
    }
}

fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    if input.is_empty() {
        return Err(err("empty"));
    }
    let bytes = input.as_bytes();
    let mut total = Duration::ZERO;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let number = &input[start..i];
        if number.is_empty() {
            return Err(err("a number must come before each unit"));
        }
        let value: f64 = number.parse().map_err(|_| err("malformed number"))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let seconds_per_unit = match &input[unit_start..i] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        let secs = value * seconds_per_unit;
        // A timeout of centuries is a typo, not a wish; it would also overflow time arithmetic.
        if !secs.is_finite() || secs > 100.0 * 365.0 * 86400.0 {
            return Err(err("too large"));
        }
        total += Duration::from_secs_f64(secs);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_durations() {
        let d = |s: &str| KubeDuration::parse(s).unwrap().to_std().unwrap();
        assert_eq!(d("300s"), Duration::from_secs(300));
        assert_eq!(d("15m"), Duration::from_secs(900));
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("250ms"), Duration::from_millis(250));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
    }

    #[test]
    fn refuses_malformed_durations_with_reason() {
        for bad in ["", "10", "s", "10x", "-5s", "5 s", "1e9h", "99999999999h"] {
            let e = KubeDuration::parse(bad).unwrap_err();
            assert_eq!(e.input, bad);
        }
        assert_eq!(
            KubeDuration::parse("10").unwrap_err().reason,
            "missing unit"
        );
    }

    #[test]
    fn schema_pattern_agrees_with_parser_on_samples() {
        // The API server checks the pattern; the parser must accept everything the pattern does.
        for ok in ["1s", "0s", "10m", "2h", "100ms", "1h2m3s", "0.5h"] {
            assert!(KubeDuration::parse(ok).is_ok(), "{ok}");
        }
    }
}
