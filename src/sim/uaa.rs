//! The login/UAA side of the simulator: `GET /login` (server info, as `cf api` reads it) and
//! `POST /oauth/token` with the `password`, `refresh_token` and `client_credentials` grants.
//! Tokens are JWT-shaped (`base64url(header).base64url(claims).base64url(signature)`) with
//! `exp`, `iat`, `user_name`, `user_id`, `origin`, `client_id`, `scope`, `jti`; the signature is
//! an HMAC-SHA1 under a per-simulator random key (clients only decode the claims; the header
//! says `HS256` because that is what JWT parsers expect to see, the simulator alone verifies).
//!
//! Depends on: `mod.rs` (`Shared`). Must not: log tokens or passwords.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

use super::Shared;
use super::util::{new_guid, unix_now, uuid_text};

pub(crate) const SCOPES: &[&str] = &[
    "cloud_controller.read",
    "cloud_controller.write",
    "cloud_controller.admin",
    "openid",
    "uaa.user",
];

fn hmac_sha1(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha1::new();
    inner.update(k.iter().map(|b| b ^ 0x36).collect::<Vec<u8>>());
    inner.update(msg);
    let mut outer = Sha1::new();
    outer.update(k.iter().map(|b| b ^ 0x5c).collect::<Vec<u8>>());
    outer.update(inner.finalize());
    outer.finalize().to_vec()
}

fn sign(shared: &Shared, claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT","kid":"sim-key"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let sig = URL_SAFE_NO_PAD.encode(hmac_sha1(shared.secret.as_bytes(), input.as_bytes()));
    format!("{input}.{sig}")
}

fn user_claims(shared: &Shared, exp: u64, refresh: bool) -> Value {
    let now = unix_now();
    let user = &shared.config.username;
    let jti = if refresh {
        format!("{}-r", new_guid())
    } else {
        new_guid()
    };
    json!({
        "jti": jti, "sub": user_id(user), "scope": SCOPES, "client_id": "cf", "cid": "cf",
        "azp": "cf", "grant_type": "password", "user_id": user_id(user), "origin": "uaa",
        "user_name": user, "email": format!("{user}@example.com"), "iat": now, "exp": exp,
        "iss": format!("{}/oauth/token", shared.base_url), "zid": "uaa",
        "aud": ["cloud_controller", "openid", "cf"],
    })
}

fn user_id(name: &str) -> String {
    let digest = Sha1::digest(name.as_bytes());
    let mut bytes = [0u8; 16];
    // A SHA-1 digest has 20 bytes; its first 16 make the id.
    bytes.copy_from_slice(&digest[..16]);
    uuid_text(&bytes)
}

/// A signed access token (without the `bearer ` prefix) living `ttl`.
pub(crate) fn issue_access(shared: &Shared, ttl: Duration) -> String {
    sign(
        shared,
        &user_claims(
            shared,
            unix_now().saturating_add(ttl.as_secs().max(1)),
            false,
        ),
    )
}

/// A signed access token that expired a minute ago.
pub(crate) fn issue_expired(shared: &Shared) -> String {
    sign(
        shared,
        &user_claims(shared, unix_now().saturating_sub(60), false),
    )
}

/// A refresh token living 30 days.
pub(crate) fn issue_refresh(shared: &Shared) -> String {
    sign(
        shared,
        &user_claims(shared, unix_now().saturating_add(30 * 86_400), true),
    )
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenError {
    Missing,
    Invalid,
    Expired,
}

/// Verifies a token (with or without the `bearer ` prefix); returns its claims.
pub(crate) fn verify(
    shared: &Shared,
    token: &str,
    want_refresh: bool,
) -> Result<Value, TokenError> {
    let token = token.trim();
    let token = token
        .strip_prefix("bearer ")
        .or_else(|| token.strip_prefix("Bearer "))
        .unwrap_or(token)
        .trim();
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Invalid);
    };
    let expected = URL_SAFE_NO_PAD.encode(hmac_sha1(
        shared.secret.as_bytes(),
        format!("{h}.{p}").as_bytes(),
    ));
    if expected != s {
        return Err(TokenError::Invalid);
    }
    let claims: Value = URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(TokenError::Invalid)?;
    let is_refresh = claims["jti"].as_str().is_some_and(|j| j.ends_with("-r"));
    if is_refresh != want_refresh {
        return Err(TokenError::Invalid);
    }
    if claims["exp"].as_u64().unwrap_or(0) <= unix_now() {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// `GET /login`: the login server's info document.
pub(crate) async fn login_info(AxState(s): AxState<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "app": {"version": "77.0.0"},
        "links": {"uaa": s.base_url, "passwd": format!("{}/forgot_password", s.base_url),
                  "login": s.base_url, "register": format!("{}/create_account", s.base_url)},
        "zone_name": "uaa",
        "entityID": "login.sim.local",
        "commit_id": "sim",
        "idpDefinitions": {},
        "prompts": {"username": ["text", "Email"], "password": ["password", "Password"]},
        "timestamp": super::util::now_rfc3339(),
    }))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// `POST /oauth/token` (form-encoded).
pub(crate) async fn token(
    AxState(s): AxState<Arc<Shared>>,
    _headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let ttl = s.config.token_ttl;
    let granted = |access: String, refresh: Option<String>| {
        let mut body = json!({
            "access_token": access, "token_type": "bearer", "expires_in": ttl.as_secs(),
            "scope": SCOPES.join(" "), "jti": new_guid(),
        });
        if let Some(r) = refresh {
            body["refresh_token"] = json!(r);
        }
        (StatusCode::OK, Json(body)).into_response()
    };
    match get("grant_type") {
        "password" => {
            if get("username") == s.config.username && get("password") == s.config.password {
                granted(issue_access(&s, ttl), Some(issue_refresh(&s)))
            } else {
                oauth_error(StatusCode::UNAUTHORIZED, "unauthorized", "Bad credentials")
            }
        }
        "refresh_token" => match verify(&s, get("refresh_token"), true) {
            Ok(_) => granted(issue_access(&s, ttl), Some(issue_refresh(&s))),
            Err(_) => oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "Invalid refresh token",
            ),
        },
        "client_credentials" => {
            if get("client_secret") == s.config.password {
                granted(issue_access(&s, ttl), None)
            } else {
                oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "Bad credentials",
                )
            }
        }
        other => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("Unsupported grant type: {other}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha1_matches_rfc2202_case_2() {
        let mac = hmac_sha1(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }
}
