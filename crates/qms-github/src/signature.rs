//! `X-Hub-Signature-256` verification: HMAC-SHA256 of the raw body with the webhook secret.
//!
//! Runs on the raw bytes before anything parses them. The comparison is constant-time
//! (`Mac::verify_slice`), and every configured secret is tried so a secret can be rotated without
//! losing deliveries.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("malformed X-Hub-Signature-256 header (expected sha256=<64 hex digits>)")]
    Malformed,
    #[error("signature does not match any configured webhook secret")]
    Mismatch,
    #[error("no webhook secret is configured")]
    NoSecret,
}

/// Verifies `header` (the `X-Hub-Signature-256` value) against `body` with any of `secrets`.
pub fn verify(secrets: &[Secret], header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let expected = parse_header(header)?;
    // An empty secret would make every forged body "valid" for anyone who guesses it is empty.
    let usable: Vec<&Secret> = secrets.iter().filter(|s| !s.is_empty()).collect();
    if usable.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let mut ok = false;
    // Try every secret (no early exit) so the time taken does not tell which one matched.
    for secret in usable {
        let Ok(mut mac) = HmacSha256::new_from_slice(secret.expose().as_bytes()) else {
            continue;
        };
        mac.update(body);
        ok |= mac.verify_slice(&expected).is_ok();
    }
    if ok {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The `sha256=<hex>` value for `body` (what GitHub sends; used by tests and tools).
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let mut mac = match HmacSha256::new_from_slice(secret.expose().as_bytes()) {
        Ok(m) => m,
        // HMAC accepts keys of any length; this branch cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn parse_header(header: &str) -> Result<[u8; 32], SignatureError> {
    let hex = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = hex_val(pair[0]).ok_or(SignatureError::Malformed)?;
        let lo = hex_val(pair[1]).ok_or(SignatureError::Malformed)?;
        out[i] = (hi << 4) | lo;
    }
    Ok(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_documented_example() {
        // From GitHub's "Validating webhook deliveries" docs.
        let secret = Secret::new("It's a Secret to Everybody");
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(&secret, b"Hello, World!"), header);
        assert_eq!(verify(&[secret], Some(header), b"Hello, World!"), Ok(()));
    }

    #[test]
    fn any_configured_secret_is_accepted() {
        let old = Secret::new("old");
        let new = Secret::new("new");
        let sig = sign(&new, b"{}");
        assert_eq!(verify(&[old.clone(), new], Some(&sig), b"{}"), Ok(()));
        assert_eq!(
            verify(&[old], Some(&sig), b"{}"),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn refuses_missing_malformed_tampered_and_empty_secret() {
        let s = Secret::new("s");
        let sig = sign(&s, b"body");
        let secrets = [s];
        assert_eq!(
            verify(&secrets, None, b"body"),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(&secrets, Some("sha1=abc"), b"body"),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&secrets, Some(&sig[..60]), b"body"),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&secrets, Some(&sig), b"bodY"),
            Err(SignatureError::Mismatch)
        );
        let empty_sig = sign(&Secret::new(""), b"body");
        assert_eq!(
            verify(&[Secret::new("")], Some(&empty_sig), b"body"),
            Err(SignatureError::NoSecret)
        );
    }
}
