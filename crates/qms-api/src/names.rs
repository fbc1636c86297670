//! Kubernetes name rules the qms crates check before they use a name (a namespace from the
//! configuration, a step or gate named in a `/qms` comment, a generated name in tests). One home
//! so they cannot drift apart.

/// Longest DNS-1123 label (namespace, Service, step names).
pub const MAX_DNS_LABEL: usize = 63;
/// Longest DNS-1123 subdomain (most object names).
pub const MAX_DNS_SUBDOMAIN: usize = 253;

/// DNS-1123 label: 1 to 63 characters of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_DNS_LABEL
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// DNS-1123 subdomain: at most 253 characters, dot-separated DNS-1123 labels.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= MAX_DNS_SUBDOMAIN && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "default", "team-a", "0", "a1-b2", &"x".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "é", &"x".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn dns_subdomains() {
        for ok in [
            "a",
            "qms-operator",
            "a.b.c",
            &format!("{}.b", "x".repeat(63)),
        ] {
            assert!(is_dns_subdomain(ok), "{ok}");
        }
        let long = vec!["x".repeat(63); 4].join(".");
        assert_eq!(long.len(), 255);
        for bad in ["", "a..b", ".a", "a.", "A.b", &long] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
    }
}
