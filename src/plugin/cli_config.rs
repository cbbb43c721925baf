//! The cf CLI's (v7/v8) saved login in its `config.json`: reading it, and `ConfigRefresher`,
//! how a token is refreshed without the cf CLI: re-read the file (a concurrent `cf` may have
//! rotated the tokens), else the login server's `refresh_token` grant (or
//! `client_credentials`) with bounded retries, saving the new tokens back the way cf does
//! (atomic replace, mode 0600).
//!
//! The refresher is bound to the API endpoint and the login server the file named when the
//! run started. A file that names another `Target` or `AuthorizationEndpoint` later (`cf login`
//! to another foundation in a second terminal) is neither read for tokens nor written: the run
//! goes on with the tokens it holds, and says so once in a warning. Tokens never follow a
//! redirect, and an https API's login server must be https too (`cf::links`).
//!
//! Depends on: `cf` (the token-link rule), [`super::jwt`], reqwest (rustls), serde_json.
//! Must not: print or log tokens; a failed save is handed back as a warning.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::Error;
use super::jwt::{expires_soon, now_unix};
use crate::cf::{AuthError, NamedGuid};

/// Most bytes of a login server's answer read: a token answer is a few kilobytes; a larger
/// one is refused as soon as it passes this, without reading the rest.
const MAX_TOKEN_ANSWER_BYTES: usize = 1 << 20;

/// The part of the cf CLI's `config.json` this plugin reads (key spellings are cf's).
/// Its `Debug` hides the tokens and the client secret.
#[derive(Default, Deserialize)]
#[serde(default)]
pub(crate) struct ConfigJson {
    #[serde(rename = "ConfigVersion")]
    config_version: i64,
    #[serde(rename = "Target")]
    pub(crate) target: String,
    #[serde(rename = "AuthorizationEndpoint")]
    authorization_endpoint: String,
    #[serde(rename = "AccessToken")]
    pub(crate) access_token: String,
    #[serde(rename = "RefreshToken")]
    pub(crate) refresh_token: String,
    #[serde(rename = "SSLDisabled")]
    pub(crate) ssl_disabled: bool,
    #[serde(rename = "UAAGrantType")]
    uaa_grant_type: String,
    #[serde(rename = "UAAOAuthClient")]
    uaa_oauth_client: String,
    #[serde(rename = "UAAOAuthClientSecret")]
    uaa_oauth_client_secret: String,
    #[serde(rename = "OrganizationFields")]
    pub(crate) organization_fields: GuidName,
    #[serde(rename = "SpaceFields")]
    pub(crate) space_fields: GuidName,
}

impl std::fmt::Debug for ConfigJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |s: &str| if s.is_empty() { "<empty>" } else { "<hidden>" };
        f.debug_struct("ConfigJson")
            .field("config_version", &self.config_version)
            .field("target", &self.target)
            .field("authorization_endpoint", &self.authorization_endpoint)
            .field("access_token", &hidden(&self.access_token))
            .field("refresh_token", &hidden(&self.refresh_token))
            .field("ssl_disabled", &self.ssl_disabled)
            .field("uaa_grant_type", &self.uaa_grant_type)
            .field("uaa_oauth_client", &self.uaa_oauth_client)
            .field(
                "uaa_oauth_client_secret",
                &hidden(&self.uaa_oauth_client_secret),
            )
            .field("organization_fields", &self.organization_fields)
            .field("space_fields", &self.space_fields)
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct GuidName {
    #[serde(rename = "GUID")]
    guid: String,
    #[serde(rename = "Name")]
    name: String,
}

impl GuidName {
    pub(crate) fn to_named(&self) -> Option<NamedGuid> {
        (!self.guid.is_empty()).then(|| NamedGuid {
            name: self.name.clone(),
            guid: self.guid.clone(),
        })
    }
}

/// Reads and parses the config file, checking only its version. A missing file is
/// [`Error::NoApiEndpoint`] (cf treats it as a fresh config).
pub(crate) fn read_config(path: &Path) -> Result<ConfigJson, Error> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
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
    Ok(config)
}

/// How often and how patiently a refresh at the login server is tried when the transport
/// fails or the server answers 5xx (or 429).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Attempts in all, at least (at least 1).
    pub(crate) attempts: u32,
    /// Beyond those attempts, the login server's outage is waited out this long from the
    /// first failure (as Cloud Controller's is: `--api-outage-budget`'s default).
    pub(crate) budget: Duration,
    /// The pause after the first failed attempt; doubled after each further one, up to 8 s.
    pub(crate) first_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            budget: crate::cf::DEFAULT_OUTAGE_BUDGET,
            first_delay: Duration::from_millis(250),
        }
    }
}

/// What a refresh through the config file produced.
pub(crate) struct Refreshed {
    /// The new access token (`bearer ...`).
    pub(crate) access: SecretString,
    /// The refresh token to use next time.
    pub(crate) refresh: SecretString,
    /// Something the user should hear about (the new token could not be saved).
    pub(crate) warning: Option<String>,
}

/// Refreshes tokens the way the cf CLI does from its config file: re-read the file (a
/// concurrent `cf` may have rotated the tokens), else ask the login server at
/// `{AuthorizationEndpoint}/oauth/token` (`refresh_token` grant, or `client_credentials`)
/// with bounded retries, then save the new tokens back. Only while the file still names the
/// API and login server it named at the start ([`Binding`]).
pub(crate) struct ConfigRefresher {
    path: PathBuf,
    binding: Binding,
    token_url: String,
    /// Why the login server may not receive tokens ([`crate::cf::links`]), if it may not.
    token_url_refused: Option<String>,
    /// Set once the file was found to name another foundation (warned about once).
    other_target_warned: AtomicBool,
    client_id: String,
    client_secret: SecretString,
    client_credentials: bool,
    http: reqwest::Client,
    pub(crate) retry: RetryPolicy,
}

impl std::fmt::Debug for ConfigRefresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigRefresher")
            .field("path", &self.path)
            .field("binding", &self.binding)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_credentials", &self.client_credentials)
            .field("retry", &self.retry)
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

/// The API endpoint and login server a refresher was started with (trailing `/` trimmed):
/// the config file is used for tokens only while it still names both.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Binding {
    api: String,
    auth: String,
}

impl Binding {
    fn of(config: &ConfigJson) -> Binding {
        Binding::from_parts(&config.target, &config.authorization_endpoint)
    }

    fn from_parts(target: &str, auth: &str) -> Binding {
        Binding {
            api: target.trim_end_matches('/').to_string(),
            auth: auth.trim_end_matches('/').to_string(),
        }
    }

    /// The binding a config file as raw JSON names (empty strings for missing keys).
    fn of_json(json: &serde_json::Value) -> Binding {
        let text = |key: &str| json.get(key).and_then(|v| v.as_str()).unwrap_or_default();
        Binding::from_parts(text("Target"), text("AuthorizationEndpoint"))
    }
}

/// One failed attempt at the login server: worth another try or not.
enum Attempt {
    Retry(AuthError),
    Final(AuthError),
}

impl ConfigRefresher {
    pub(crate) fn new(path: PathBuf, config: &ConfigJson) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(config.ssl_disabled)
            // A redirect would carry the refresh token (or the client secret) in its body to
            // wherever the login server points; the API client follows none either.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(Error::Http)?;
        let client_id = if config.uaa_oauth_client.is_empty() {
            "cf".to_string()
        } else {
            config.uaa_oauth_client.clone()
        };
        let binding = Binding::of(config);
        let token_url = format!("{}/oauth/token", binding.auth);
        Ok(Self {
            path,
            token_url_refused: token_url_refused(&binding.api, &token_url),
            binding,
            token_url,
            other_target_warned: AtomicBool::new(false),
            client_id,
            client_secret: SecretString::from(config.uaa_oauth_client_secret.clone()),
            client_credentials: config.uaa_grant_type == "client_credentials",
            http,
            retry: RetryPolicy::default(),
        })
    }

    /// The refresher for the config file at `path`, which must target `api_endpoint` (the
    /// plugin-mode fallback: the file cf itself uses, checked to be for the same API).
    /// Returns it with the file's refresh token.
    pub(crate) fn for_endpoint(
        path: &Path,
        api_endpoint: &str,
    ) -> Result<(Self, SecretString), Error> {
        let config = read_config(path)?;
        let target = config.target.trim_end_matches('/');
        if target != api_endpoint.trim_end_matches('/') {
            return Err(Error::ConfigOtherTarget {
                path: path.to_path_buf(),
                found: target.to_string(),
            });
        }
        let refresh = SecretString::from(config.refresh_token.clone());
        Ok((Self::new(path.to_path_buf(), &config)?, refresh))
    }

    /// The config file this refresher reads and updates.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A new access token. The file is read again first: if it now holds a valid access
    /// token other than `rejected` (a concurrent `cf` refreshed it), that one is used;
    /// otherwise the login server is asked with the file's current refresh token (or
    /// `known_refresh` when the file has none or cannot be read), and the answer is saved.
    /// A file that now names another API or login server is not used at all: the login
    /// server this run started with is asked with `known_refresh`, nothing is saved, and the
    /// first such refresh carries a warning.
    pub(crate) async fn refresh(
        &self,
        rejected: Option<&SecretString>,
        known_refresh: &SecretString,
    ) -> Result<Refreshed, AuthError> {
        let mut current = read_config(&self.path).ok();
        let mut foreign = None;
        if let Some(file) = current.take_if(|file| Binding::of(file) != self.binding) {
            foreign = Some(file.target);
        }
        let mut refresh_token = known_refresh.clone();
        if let Some(file) = current {
            let rejected = rejected.map(ExposeSecret::expose_secret);
            if !file.access_token.is_empty()
                && !expires_soon(&file.access_token, now_unix())
                && rejected != Some(file.access_token.as_str())
            {
                return Ok(Refreshed {
                    access: SecretString::from(file.access_token),
                    refresh: if file.refresh_token.is_empty() {
                        refresh_token
                    } else {
                        SecretString::from(file.refresh_token)
                    },
                    warning: None,
                });
            }
            if !file.refresh_token.is_empty() {
                refresh_token = SecretString::from(file.refresh_token);
            }
        }
        let attempts = self.retry.attempts.max(1);
        let mut delay = self.retry.first_delay;
        let mut attempt = 1;
        let started = std::time::Instant::now();
        let (access, refresh) = loop {
            let patient =
                attempt < attempts || started.elapsed().saturating_add(delay) <= self.retry.budget;
            match self.request(&refresh_token).await {
                Ok(tokens) => break tokens,
                Err(Attempt::Retry(e)) if patient => {
                    tracing::debug!("token refresh attempt {attempt} failed: {e}");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2).min(Duration::from_secs(8));
                    attempt += 1;
                }
                Err(Attempt::Retry(AuthError::Failed(msg))) if attempt > 1 => {
                    return Err(AuthError::Failed(format!("{msg} ({attempt} attempts)")));
                }
                Err(Attempt::Retry(e) | Attempt::Final(e)) => return Err(e),
            }
        };
        let refresh = refresh.unwrap_or(refresh_token);
        let saved = match foreign {
            Some(found) => Saved::OtherTarget(found),
            None => save_tokens(&self.path, &self.binding, &access, &refresh)
                .unwrap_or_else(Saved::Failed),
        };
        let warning = match saved {
            Saved::Written => None,
            Saved::OtherTarget(found) => self.other_target_warning(&found),
            // The new token works for this run; only the next cf command will refresh again.
            Saved::Failed(e) => Some(format!(
                "could not save the refreshed access token to {}: {}",
                self.path.display(),
                super::error_chain(&e)
            )),
        };
        Ok(Refreshed {
            access,
            refresh,
            warning,
        })
    }

    /// The warning for a config file found to name `found` instead of this run's API (or to
    /// name another login server): the first time only.
    fn other_target_warning(&self, found: &str) -> Option<String> {
        if self.other_target_warned.swap(true, Ordering::Relaxed) {
            return None;
        }
        Some(format!(
            "{} now targets {} (login server or API changed since this run started): its tokens \
             are left alone, and this run goes on with the tokens it has for {}",
            self.path.display(),
            if found.is_empty() { "nothing" } else { found },
            self.binding.api
        ))
    }

    /// One request to the login server: the new access token and, if it sent one, the new
    /// refresh token.
    async fn request(
        &self,
        refresh_token: &SecretString,
    ) -> Result<(SecretString, Option<SecretString>), Attempt> {
        if let Some(why) = &self.token_url_refused {
            return Err(Attempt::Final(AuthError::Failed(format!(
                "the login server link {why}"
            ))));
        }
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
                if refresh_token.expose_secret().is_empty() {
                    return Err(Attempt::Final(AuthError::NotLoggedIn));
                }
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", refresh_token.expose_secret());
                request =
                    request.basic_auth(&self.client_id, Some(self.client_secret.expose_secret()));
            }
            form.finish()
        };
        let response = request.body(body).send().await.map_err(|e| {
            Attempt::Retry(AuthError::Failed(format!(
                "refreshing the token at {} failed: {}",
                self.token_url,
                super::error_chain(&e.without_url())
            )))
        })?;
        let status = response.status();
        let body = self.read_answer(response).await?;
        if !status.is_success() {
            return Err(self.refused(status, &body));
        }
        let answer: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            Attempt::Final(AuthError::Failed(format!(
                "the login server at {} sent an unreadable token answer: {e}",
                self.token_url
            )))
        })?;
        if answer.access_token.is_empty() {
            return Err(Attempt::Final(AuthError::Failed(format!(
                "the login server at {} sent no access token",
                self.token_url
            ))));
        }
        let token_type = if answer.token_type.is_empty() {
            "bearer"
        } else {
            answer.token_type.as_str()
        };
        let access = SecretString::from(format!("{token_type} {}", answer.access_token));
        let refresh =
            (!answer.refresh_token.is_empty()).then(|| SecretString::from(answer.refresh_token));
        Ok((access, refresh))
    }

    /// The login server's answer, at most [`MAX_TOKEN_ANSWER_BYTES`]: a larger one is refused
    /// from its `Content-Length`, or as soon as the received bytes pass the cap.
    async fn read_answer(&self, mut response: reqwest::Response) -> Result<Vec<u8>, Attempt> {
        let too_large = || {
            Attempt::Final(AuthError::Failed(format!(
                "the login server at {} sent an answer larger than {} KiB",
                self.token_url,
                MAX_TOKEN_ANSWER_BYTES >> 10
            )))
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_TOKEN_ANSWER_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        loop {
            let chunk = response.chunk().await.map_err(|e| {
                Attempt::Retry(AuthError::Failed(format!(
                    "reading the answer of {} failed: {}",
                    self.token_url,
                    super::error_chain(&e.without_url())
                )))
            })?;
            let Some(chunk) = chunk else { break };
            if body.len().saturating_add(chunk.len()) > MAX_TOKEN_ANSWER_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// What a refusal (`status` not a success) means: an expired or revoked refresh token is
    /// a new login; 5xx and 429 are worth another try.
    fn refused(&self, status: reqwest::StatusCode, body: &[u8]) -> Attempt {
        let err: UaaError = serde_json::from_slice(body).unwrap_or_default();
        // An expired or revoked refresh token: the user has to log in again.
        if matches!(err.error.as_str(), "invalid_token" | "invalid_grant") {
            return Attempt::Final(AuthError::NotLoggedIn);
        }
        let what = [err.error, err.error_description]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        let failed = AuthError::Failed(format!(
            "the login server at {} answered {status}{}{what}",
            self.token_url,
            if what.is_empty() { "" } else { ": " }
        ));
        let transient = status.is_server_error() || status.as_u16() == 429;
        if transient {
            Attempt::Retry(failed)
        } else {
            Attempt::Final(failed)
        }
    }
}

/// Why the login server at `token_url` may not receive this API's tokens, by the rule every
/// token link follows ([`crate::cf::links::check_token_link`]). An API endpoint that is no URL
/// is taken as https (the stricter case).
fn token_url_refused(api: &str, token_url: &str) -> Option<String> {
    let link = match url::Url::parse(token_url) {
        Ok(link) => link,
        Err(e) => return Some(format!("'{token_url}' is not a URL: {e}")),
    };
    let api = url::Url::parse(api)
        .or_else(|_| url::Url::parse("https://api.invalid"))
        .ok()?;
    crate::cf::links::check_token_link(&api, &link).err()
}

/// What became of a refreshed token's save to the config file.
enum Saved {
    Written,
    /// The file names another API or login server (its `Target`): left alone.
    OtherTarget(String),
    Failed(std::io::Error),
}

/// Writes the tokens into the config file, keeping every other key, atomically (temp file
/// in the same directory, then rename) with mode 0600 like the cf CLI. A file that no longer
/// names `binding` is not written ([`Saved::OtherTarget`]).
fn save_tokens(
    path: &Path,
    binding: &Binding,
    access: &SecretString,
    refresh: &SecretString,
) -> std::io::Result<Saved> {
    use std::io::Write as _;
    let bytes = std::fs::read(path)?;
    let mut json: serde_json::Value = serde_json::from_slice(&bytes)?;
    let found = Binding::of_json(&json);
    if json.is_object() && found != *binding {
        return Ok(Saved::OtherTarget(found.api));
    }
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
    Ok(Saved::Written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::rpc_token::TokenSource;

    #[test]
    fn debug_never_shows_tokens() {
        let config = ConfigJson {
            access_token: "bearer SECRET-ACCESS".into(),
            refresh_token: "SECRET-REFRESH".into(),
            uaa_oauth_client_secret: "SECRET-CLIENT".into(),
            target: "https://api.example.com".into(),
            ..ConfigJson::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("https://api.example.com"), "{shown}");
        let r = ConfigRefresher::new(PathBuf::from("/x/config.json"), &config).expect("builds");
        let source = TokenSource::from_config(
            r,
            SecretString::from(config.access_token.clone()),
            SecretString::from(config.refresh_token.clone()),
        );
        let shown = format!("{source:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("/x/config.json"), "{shown}");
    }
}
