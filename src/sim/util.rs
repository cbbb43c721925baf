//! Small helpers of the simulator: GUIDs, RFC 3339 timestamps, memory sizes, path patterns.
//!
//! Depends on: std only. Must not: touch the simulator state.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(1);

/// 64 unpredictable bits (std's randomly keyed SipHash over a counter and the clock).
pub(crate) fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// A random version-4 UUID in its usual lowercase text form.
pub(crate) fn new_guid() -> String {
    let a = random_u64();
    let b = random_u64();
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_be_bytes());
    bytes[8..].copy_from_slice(&b.to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    uuid_text(&bytes)
}

/// 16 bytes in the usual lowercase UUID text form (8-4-4-4-12 hex digits).
pub(crate) fn uuid_text(bytes: &[u8; 16]) -> String {
    let h = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The current time as CC prints it: RFC 3339, UTC, second precision, `Z` suffix.
pub(crate) fn now_rfc3339() -> String {
    rfc3339(unix_now())
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// `ns` nanoseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (gorouter's access-log
/// time).
pub(crate) fn rfc3339_nanos(ns: i64) -> String {
    let secs = u64::try_from(ns.div_euclid(1_000_000_000)).unwrap_or_default();
    let frac = ns.rem_euclid(1_000_000_000);
    let base = rfc3339(secs);
    format!("{}.{frac:09}Z", base.trim_end_matches('Z'))
}

/// Parses a manifest memory/disk size (`256M`, `1G`, `512MB`) into megabytes.
/// A unit is required, as in CC.
pub(crate) fn parse_megabytes(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_uppercase();
    let digits: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
    let unit = t[digits.len()..].trim();
    let n: u64 = digits.parse().ok()?;
    let mb = match unit {
        "B" => n / (1024 * 1024),
        "K" | "KB" => n / 1024,
        "M" | "MB" => n,
        "G" | "GB" => n.checked_mul(1024)?,
        "T" | "TB" => n.checked_mul(1024 * 1024)?,
        _ => return None,
    };
    Some(mb)
}

/// Does `path` match `pattern`? Segments of the pattern that start with `:` or are `*`
/// match any one segment; a trailing `**` matches the rest.
pub(crate) fn path_matches(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.trim_end_matches('/').split('/').collect();
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    for (i, p) in pat.iter().enumerate() {
        if *p == "**" {
            return true;
        }
        let Some(s) = segs.get(i) else { return false };
        if !(p.starts_with(':') || *p == "*" || p == s) {
            return false;
        }
    }
    pat.len() == segs.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_has_uuid_v4_shape() {
        let g = new_guid();
        assert_eq!(g.len(), 36);
        assert_eq!(&g[14..15], "4");
        assert_ne!(g, new_guid());
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_714_564_800), "2024-05-01T12:00:00Z");
    }

    #[test]
    fn megabytes_need_a_unit() {
        assert_eq!(parse_megabytes("256M"), Some(256));
        assert_eq!(parse_megabytes("1g"), Some(1024));
        assert_eq!(parse_megabytes("512MB"), Some(512));
        assert_eq!(parse_megabytes("256"), None);
        assert_eq!(parse_megabytes("12X"), None);
    }

    #[test]
    fn path_patterns_match_segments() {
        assert!(path_matches("/v3/builds", "/v3/builds"));
        assert!(path_matches("/v3/builds/:guid", "/v3/builds/abc"));
        assert!(!path_matches("/v3/builds/:guid", "/v3/builds"));
        assert!(path_matches(
            "/v3/apps/*/actions/restart",
            "/v3/apps/x/actions/restart"
        ));
        assert!(path_matches("/v3/**", "/v3/apps/x"));
        assert!(!path_matches("/v3/apps", "/v3/apps/x"));
    }
}
