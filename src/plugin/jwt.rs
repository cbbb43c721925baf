//! The expiry rules of the access tokens the plugin holds, read from their JWT claims
//! without verifying the signature (as the cf CLI reads them).
//!
//! Depends on: base64, serde_json. Must not: log a token.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

/// Refresh when the access token expires in less than this (the cf CLI's margin).
const REFRESH_MARGIN_SECS: i64 = 60;

pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The claims of a `bearer <jwt>` (or bare JWT), without verifying the signature, as the cf
/// CLI reads them.
pub(crate) fn jwt_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let jwt = token
        .strip_prefix("bearer ")
        .or_else(|| token.strip_prefix("Bearer "))
        .unwrap_or(token);
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The token's `exp` claim in whole seconds; `None` when the claims do not parse or `exp` is
/// missing, not a number or not finite (such a token counts as expired). Values beyond the
/// range of `i64` saturate (a float `as` cast saturates; NaN and infinities are refused first).
fn expiry(token: &str) -> Option<i64> {
    let exp = jwt_claims(token)?.get("exp")?.as_f64()?;
    exp.is_finite().then_some(exp as i64)
}

/// Whether the token is still accepted by its `exp` (no margin): what a failed refresh may
/// fall back to.
pub(crate) fn still_valid(token: &str, now: i64) -> bool {
    expiry(token).is_some_and(|exp| exp > now)
}

/// Whether the token is a JWT whose `exp` has passed: a token that cannot be parsed is not
/// known to be expired (the API decides).
pub(crate) fn known_expired(token: &str, now: i64) -> bool {
    expiry(token).is_some_and(|exp| exp <= now)
}

/// Whether the token must be refreshed: it cannot be parsed, has no usable `exp`, or expires
/// within [`REFRESH_MARGIN_SECS`] (the cf v7+ HTTP client's rule), or within a quarter of its
/// lifetime (`exp - iat`) when that is shorter: a token living a few seconds is then used for
/// most of its life instead of being refreshed before every request. The arithmetic
/// saturates, so a hostile `exp` (`-1e300`) counts as long expired rather than wrapping to
/// fresh.
pub(crate) fn expires_soon(token: &str, now: i64) -> bool {
    let Some(exp) = expiry(token) else {
        return true;
    };
    let issued = jwt_claims(token)
        .and_then(|c| c.get("iat").and_then(serde_json::Value::as_f64))
        .filter(|iat| iat.is_finite())
        .map(|iat| iat as i64);
    let margin = match issued {
        Some(iat) if exp > iat => REFRESH_MARGIN_SECS.min(exp.saturating_sub(iat) / 4),
        _ => REFRESH_MARGIN_SECS,
    };
    exp.saturating_sub(now) < margin
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("bearer {}.{}.sig", enc(r#"{"alg":"none"}"#), enc(claims))
    }

    #[test]
    fn a_short_lived_token_is_used_for_most_of_its_life() {
        let now = 1_000_000;
        // Issued 1 s ago, lives 4 s: a margin of 1 s, not 60.
        let t = jwt(&format!(r#"{{"iat":{},"exp":{}}}"#, now - 1, now + 3));
        assert!(!expires_soon(&t, now));
        assert!(expires_soon(&t, now + 3));
        // A long-lived token keeps the one-minute margin.
        let t = jwt(&format!(r#"{{"iat":{},"exp":{}}}"#, now - 60, now + 3540));
        assert!(expires_soon(&t, now + 3500));
        assert!(!expires_soon(&t, now + 3400));
        // A hostile iat changes nothing.
        let t = jwt(&format!(r#"{{"iat":1e300,"exp":{}}}"#, now + 30));
        assert!(expires_soon(&t, now));
    }

    #[test]
    fn expiry_follows_the_one_minute_margin() {
        let now = 1_000_000;
        assert!(!expires_soon(
            &jwt(&format!(r#"{{"exp":{}}}"#, now + 600)),
            now
        ));
        assert!(expires_soon(
            &jwt(&format!(r#"{{"exp":{}}}"#, now + 30)),
            now
        ));
        assert!(expires_soon(&jwt(r#"{"user_name":"x"}"#), now));
        assert!(expires_soon("bearer not-a-jwt", now));
        assert!(expires_soon("", now));
    }

    #[test]
    fn claims_are_read_with_or_without_the_bearer_prefix() {
        let t = jwt(r#"{"user_name":"alice","exp":5}"#);
        assert_eq!(
            jwt_claims(&t).and_then(|c| c.get("user_name").cloned()),
            Some(serde_json::Value::String("alice".into()))
        );
        let bare = t.trim_start_matches("bearer ");
        assert!(jwt_claims(bare).is_some());
    }

    #[test]
    fn hostile_exp_claims_count_as_expired() {
        let now = 1_000_000;
        // `exp - now` used to wrap: i64::MIN - now is a huge positive number, i.e. "fresh".
        for exp in ["-1e300", "-9.3e18", "-9223372036854775808"] {
            let token = jwt(&format!(r#"{{"exp":{exp}}}"#));
            assert!(expires_soon(&token, now), "{exp}");
            assert!(!still_valid(&token, now), "{exp}");
        }
        // Far in the future saturates instead of overflowing.
        let forever = jwt(r#"{"exp":1e300}"#);
        assert!(!expires_soon(&forever, now));
        assert!(!expires_soon(&forever, i64::MIN));
        assert!(still_valid(&forever, now));
        // Claims that do not parse, or an `exp` that is no finite number: expired.
        for claims in [r#"{"exp":"soon"}"#, r#"{"exp":null}"#, r#"[1]"#, "not json"] {
            let token = jwt(claims);
            assert!(expires_soon(&token, now), "{claims}");
            assert!(!still_valid(&token, now), "{claims}");
        }
    }

    #[test]
    fn a_token_is_still_valid_until_its_exp() {
        let now = 1_000_000;
        assert!(still_valid(&jwt(&format!(r#"{{"exp":{}}}"#, now + 5)), now));
        assert!(!still_valid(&jwt(&format!(r#"{{"exp":{}}}"#, now)), now));
        assert!(!still_valid("bearer not-a-jwt", now));
    }
}
