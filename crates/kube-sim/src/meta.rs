//! Small object-metadata helpers: names, uids, timestamps, generateName.

use rand::Rng;
use serde_json::{Value, json};

use crate::error::FieldError;

pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn new_uid() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The apiserver's generateName suffix: 5 characters from a vowel-free alphabet.
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

static SUBDOMAIN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        .expect("static regex")
});
static LABEL: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("static regex")
});

/// How a kind's names are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    Subdomain,
    Label,
    /// RBAC objects: anything usable as a path segment (e.g. `system:controller:x`).
    PathSegment,
}

pub fn validate_name(name: &str, rule: NameRule) -> Option<FieldError> {
    let v = json!(name);
    match rule {
        NameRule::Subdomain => {
            if name.len() > 253 {
                return Some(FieldError::invalid(
                    "metadata.name",
                    &v,
                    "must be no more than 253 characters",
                ));
            }
            if !SUBDOMAIN.is_match(name) {
                return Some(FieldError::invalid(
                    "metadata.name",
                    &v,
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                ));
            }
        }
        NameRule::Label => {
            if name.len() > 63 {
                return Some(FieldError::invalid(
                    "metadata.name",
                    &v,
                    "must be no more than 63 characters",
                ));
            }
            if !LABEL.is_match(name) {
                return Some(FieldError::invalid(
                    "metadata.name",
                    &v,
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                ));
            }
        }
        NameRule::PathSegment => {
            if name == "." || name == ".." || name.contains('/') || name.contains('%') {
                return Some(FieldError::invalid(
                    "metadata.name",
                    &v,
                    "may not contain '/' or '%' and may not be '.' or '..'",
                ));
            }
        }
    }
    None
}

/// Label-map and annotation sanity (keys and values must be strings).
pub fn validate_string_map(obj: &Value, field: &str) -> Option<FieldError> {
    let m = &obj["metadata"][field];
    match m {
        Value::Null => None,
        Value::Object(map) => map.iter().find(|(_, v)| !v.is_string()).map(|(k, v)| {
            FieldError::invalid(format!("metadata.{field}.{k}"), v, "must be a string")
        }),
        other => Some(FieldError::invalid(
            format!("metadata.{field}"),
            other,
            "must be a map of strings",
        )),
    }
}
