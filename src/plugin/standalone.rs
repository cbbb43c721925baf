//! Standalone mode: the login the cf CLI (v7/v8) saved in `$CF_HOME/.cf/config.json`
//! (else `~/.cf/config.json`), turned into a [`Target`] and a token provider that refreshes
//! through the login server's `refresh_token` grant (or `client_credentials`) and saves the
//! new tokens back into the file the way cf does (atomic replace, mode 0600).
//!
//! Depends on: `cf` (Target, TokenProvider), reqwest (rustls), serde_json. Must not: print
//! or log tokens.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::Error;
use crate::cf::{AuthError, NamedGuid, Target, TokenProvider};

/// Refresh when the access token expires in less than this (the cf CLI's margin).
const REFRESH_MARGIN_SECS: i64 = 60;

/// The part of the cf CLI's `config.json` this plugin reads (key spellings are cf's).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigJson {
    #[serde(rename = "ConfigVersion")]
    config_version: i64,
    #[serde(rename = "Target")]
    target: String,
    #[serde(rename = "AuthorizationEndpoint")]
    authorization_endpoint: String,
    #[serde(rename = "AccessToken")]
    access_token: String,
    #[serde(rename = "RefreshToken")]
    refresh_token: String,
    #[serde(rename = "SSLDisabled")]
    ssl_disabled: bool,
    #[serde(rename = "UAAGrantType")]
    uaa_grant_type: String,
    #[serde(rename = "UAAOAuthClient")]
    uaa_oauth_client: String,
    #[serde(rename = "UAAOAuthClientSecret")]
    uaa_oauth_client_secret: String,
    #[serde(rename = "OrganizationFields")]
    organization_fields: GuidName,
    #[serde(rename = "SpaceFields")]
    space_fields: GuidName,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GuidName {
    #[serde(rename = "GUID")]
    guid: String,
    #[serde(rename = "Name")]
    name: String,
}

impl GuidName {
    fn to_named(&self) -> Option<NamedGuid> {
        (!self.guid.is_empty()).then(|| NamedGuid {
            name: self.name.clone(),
            guid: self.guid.clone(),
        })
    }
}

/// A loaded standalone login: the target and its token provider.
#[derive(Debug)]
pub struct StandaloneLogin {
    /// Endpoint, org, space, skip-SSL and user from the config file.
    pub target: Target,
    /// Tokens from the config file, refreshed and saved back when they expire.
    pub token: Arc<ConfigTokenProvider>,
}

/// The config file path: `$CF_HOME/.cf/config.json`, else `$HOME/.cf/config.json`
/// (`%USERPROFILE%` on Windows), as the cf CLI resolves it.
///
/// # Errors
/// [`Error::NoHome`] when none of these variables is set.
pub fn config_path() -> Result<PathBuf, Error> {
    let home = std::env::var_os("CF_HOME")
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var_os("HOME").filter(|h| !h.is_empty()))
        .or_else(|| std::env::var_os("USERPROFILE").filter(|h| !h.is_empty()))
        .ok_or(Error::NoHome)?;
    Ok(PathBuf::from(home).join(".cf").join("config.json"))
}

/// Reads the config file at `path` and checks that it describes a logged-in user with an
/// org and a space targeted (the cf CLI's own checks, in its order).
///
/// # Errors
/// Missing/unreadable/invalid file, unsupported `ConfigVersion`, then the cf-CLI-worded
/// [`Error::NoApiEndpoint`], [`Error::NotLoggedIn`], [`Error::NoOrgTargeted`],
/// [`Error::NoSpaceTargeted`].
pub fn load(path: &Path) -> Result<StandaloneLogin, Error> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        // No file: cf itself treats this as a fresh config (no target, not logged in).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NoApiEndpoint),
        Err(source) => {
            return Err(Error::ConfigRead {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let config: ConfigJson =
        serde_json::from_slice(&bytes).map_err(|source| Error::ConfigParse {
            path: path.to_path_buf(),
            source,
        })?;
    if !matches!(config.config_version, 3 | 4) {
        return Err(Error::ConfigVersion {
            path: path.to_path_buf(),
            found: config.config_version,
        });
    }
    let api_endpoint = config.target.trim_end_matches('/').to_string();
    if api_endpoint.is_empty() {
        return Err(Error::NoApiEndpoint);
    }
    if config.access_token.is_empty() && config.refresh_token.is_empty() {
        return Err(Error::NotLoggedIn);
    }
    let org = config
        .organization_fields
        .to_named()
        .ok_or(Error::NoOrgTargeted)?;
    let space = config
        .space_fields
        .to_named()
        .ok_or(Error::NoSpaceTargeted)?;
    let claims = jwt_claims(&config.access_token);
    let user = claims.as_ref().and_then(|c| {
        c.get("user_name")
            .or_else(|| c.get("client_id"))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    });
    let token = ConfigTokenProvider::new(path.to_path_buf(), &config)?;
    Ok(StandaloneLogin {
        target: Target {
            api_endpoint,
            skip_ssl_validation: config.ssl_disabled,
            org: Some(org),
            space: Some(space),
            user,
        },
        token: Arc::new(token),
    })
}

/// The current and refresh tokens.
struct Tokens {
    access: SecretString,
    refresh: SecretString,
}

/// A [`TokenProvider`] over the cf CLI's config file: returns the saved token while it is
/// valid for more than a minute, else refreshes it at `{AuthorizationEndpoint}/oauth/token`
/// and writes the new tokens back to the file.
pub struct ConfigTokenProvider {
    path: PathBuf,
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    client_credentials: bool,
    http: reqwest::Client,
    tokens: tokio::sync::Mutex<Tokens>,
}

impl std::fmt::Debug for ConfigTokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigTokenProvider")
            .field("path", &self.path)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: String,
    #[serde(default)]
    refresh_token: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UaaError {
    error: String,
    error_description: String,
}

impl ConfigTokenProvider {
    fn new(path: PathBuf, config: &ConfigJson) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(config.ssl_disabled)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(Error::Http)?;
        let client_id = if config.uaa_oauth_client.is_empty() {
            "cf".to_string()
        } else {
            config.uaa_oauth_client.clone()
        };
        Ok(Self {
            path,
            token_url: format!(
                "{}/oauth/token",
                config.authorization_endpoint.trim_end_matches('/')
            ),
            client_id,
            client_secret: SecretString::from(config.uaa_oauth_client_secret.clone()),
            client_credentials: config.uaa_grant_type == "client_credentials",
            http,
            tokens: tokio::sync::Mutex::new(Tokens {
                access: SecretString::from(config.access_token.clone()),
                refresh: SecretString::from(config.refresh_token.clone()),
            }),
        })
    }

    /// The config file this provider reads and updates.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn refresh_locked(&self, tokens: &mut Tokens) -> Result<SecretString, AuthError> {
        let mut request = self
            .http
            .post(&self.token_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            if self.client_credentials {
                form.append_pair("client_id", &self.client_id)
                    .append_pair("client_secret", self.client_secret.expose_secret())
                    .append_pair("grant_type", "client_credentials");
            } else {
                if tokens.refresh.expose_secret().is_empty() {
                    return Err(AuthError::NotLoggedIn);
                }
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", tokens.refresh.expose_secret());
                request =
                    request.basic_auth(&self.client_id, Some(self.client_secret.expose_secret()));
            }
            form.finish()
        };
        let response = request.body(body).send().await.map_err(|e| {
            AuthError::Failed(format!(
                "refreshing the token at {} failed: {}",
                self.token_url,
                super::error_chain(&e.without_url())
            ))
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            AuthError::Failed(format!(
                "reading the answer of {} failed: {}",
                self.token_url,
                super::error_chain(&e.without_url())
            ))
        })?;
        if !status.is_success() {
            let err: UaaError = serde_json::from_slice(&body).unwrap_or_default();
            // An expired or revoked refresh token: the user has to log in again.
            if matches!(err.error.as_str(), "invalid_token" | "invalid_grant") {
                return Err(AuthError::NotLoggedIn);
            }
            let what = [err.error, err.error_description]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(": ");
            return Err(AuthError::Failed(format!(
                "the login server at {} answered {status}{}{what}",
                self.token_url,
                if what.is_empty() { "" } else { ": " }
            )));
        }
        let answer: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            AuthError::Failed(format!(
                "the login server at {} sent an unreadable token answer: {e}",
                self.token_url
            ))
        })?;
        if answer.access_token.is_empty() {
            return Err(AuthError::Failed(format!(
                "the login server at {} sent no access token",
                self.token_url
            )));
        }
        let token_type = if answer.token_type.is_empty() {
            "bearer"
        } else {
            answer.token_type.as_str()
        };
        tokens.access = SecretString::from(format!("{token_type} {}", answer.access_token));
        if !answer.refresh_token.is_empty() {
            tokens.refresh = SecretString::from(answer.refresh_token);
        }
        if let Err(e) = save_tokens(&self.path, &tokens.access, &tokens.refresh) {
            // The new token works for this run; only the next cf command will refresh again.
            tracing::warn!(
                "could not save the refreshed token to {}: {}",
                self.path.display(),
                super::error_chain(&e)
            );
        }
        Ok(tokens.access.clone())
    }
}

impl TokenProvider for ConfigTokenProvider {
    fn token(&self) -> BoxFuture<'_, Result<SecretString, AuthError>> {
        Box::pin(async move {
            let mut tokens = self.tokens.lock().await;
            if expires_soon(tokens.access.expose_secret(), now_unix()) {
                self.refresh_locked(&mut tokens).await
            } else {
                Ok(tokens.access.clone())
            }
        })
    }

    fn refresh(&self) -> BoxFuture<'_, Result<SecretString, AuthError>> {
        Box::pin(async move {
            let mut tokens = self.tokens.lock().await;
            self.refresh_locked(&mut tokens).await
        })
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The claims of a `bearer <jwt>` (or bare JWT), without verifying the signature, as the cf
/// CLI reads them.
fn jwt_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
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

/// Whether the token must be refreshed: it cannot be parsed, has no `exp`, or expires
/// within [`REFRESH_MARGIN_SECS`] (the cf v7+ HTTP client's rule).
fn expires_soon(token: &str, now: i64) -> bool {
    let exp = jwt_claims(token)
        .and_then(|c| c.get("exp").and_then(|e| e.as_f64()))
        .map(|e| e as i64);
    exp.is_none_or(|exp| exp - now < REFRESH_MARGIN_SECS)
}

/// Writes the tokens into the config file, keeping every other key, atomically (temp file
/// in the same directory, then rename) with mode 0600 like the cf CLI.
fn save_tokens(path: &Path, access: &SecretString, refresh: &SecretString) -> std::io::Result<()> {
    use std::io::Write as _;
    let bytes = std::fs::read(path)?;
    let mut json: serde_json::Value = serde_json::from_slice(&bytes)?;
    let obj = json.as_object_mut().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "config is not a JSON object",
        )
    })?;
    obj.insert(
        "AccessToken".into(),
        serde_json::Value::String(access.expose_secret().to_string()),
    );
    obj.insert(
        "RefreshToken".into(),
        serde_json::Value::String(refresh.expose_secret().to_string()),
    );
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix("temp-config")
        .tempfile_in(dir)?;
    serde_json::to_writer_pretty(&mut tmp, &json)?;
    tmp.write_all(b"\n")?;
    tmp.as_file().sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("bearer {}.{}.sig", enc(r#"{"alg":"none"}"#), enc(claims))
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
    fn debug_never_shows_tokens() {
        let config = ConfigJson {
            access_token: "bearer SECRET-ACCESS".into(),
            refresh_token: "SECRET-REFRESH".into(),
            uaa_oauth_client_secret: "SECRET-CLIENT".into(),
            ..ConfigJson::default()
        };
        let p = ConfigTokenProvider::new(PathBuf::from("/x/config.json"), &config).expect("builds");
        let shown = format!("{p:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
