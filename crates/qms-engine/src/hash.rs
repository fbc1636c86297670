//! A small stable hash (FNV-1a, 64 bit). Stable across processes, platforms and Rust versions,
//! unlike `std`'s `DefaultHasher`, which is what Job names and backoff jitter need.

pub fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The first `len` hex digits of the hash of `parts`.
pub fn short(parts: &[&str], len: usize) -> String {
    let hex = format!("{:016x}", fnv1a(parts));
    hex[..len.min(hex.len())].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_parts_and_is_stable() {
        assert_ne!(fnv1a(&["ab", "c"]), fnv1a(&["a", "bc"]));
        assert_eq!(fnv1a(&["x"]), fnv1a(&["x"]));
        assert_eq!(short(&["x"], 6).len(), 6);
    }
}
