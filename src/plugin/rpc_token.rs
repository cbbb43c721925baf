//! The one token source of both modes: [`TokenSource`] keeps the last good token and uses it
//! while its JWT `exp` is more than a minute away; when it is about to expire (or the API
//! rejected it) it asks, in order:
//!
//! 1. the cf CLI (`AccessToken`, plugin mode only), until a call shows that the CLI is gone:
//!    cf has no signal handler while a plugin runs, so Ctrl-C ends cf and its RPC server
//!    while the plugin lives on to roll back;
//! 2. the cf CLI's `config.json` (`ConfigRefresher`): the file is re-read (a concurrent
//!    `cf` may have rotated the tokens), else the login server's refresh grant is used
//!    (bounded retries) and the new tokens are saved back;
//! 3. the cached token itself, when every refresh failed but its `exp` has not passed yet
//!    (not after the API rejected it).
//!
//! A failure to save a refreshed token is not fatal (the token works for this run); it is
//! recorded as a warning that [`TokenSource::take_warnings`] (also reachable through
//! [`TokenProvider::take_warnings`]) hands to the caller, who prints it (`entry` prints
//! what is left after the push as `cf-zero-downtime: warning: ...` on stderr).
//!
//! Depends on: `connection`, `cli_config` (ConfigRefresher), `jwt` (expiry), `cf::auth`.
//! Must not: print or log a token.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};

use super::cli_config::ConfigRefresher;
use super::connection::CliConnection;
use super::jwt::{expires_soon, known_expired, now_unix, still_valid};
use super::{Error, rpc};
use crate::cf::{AuthError, TokenProvider};

/// Tokens for the CF API with fallbacks (see the module docs): the cached token, the cf CLI
/// over RPC, the cf CLI's `config.json` and its login server.
pub struct TokenSource {
    rpc: Option<CliConnection>,
    /// Set once a call showed the cf CLI's RPC server is gone (it never comes back).
    rpc_gone: AtomicBool,
    config: Option<ConfigRefresher>,
    /// Held across a refresh, so concurrent requests wait for one refresh.
    cached: tokio::sync::Mutex<Cached>,
    warnings: std::sync::Mutex<Vec<String>>,
}

/// The last good access token and the refresh token to use next.
struct Cached {
    access: SecretString,
    refresh: SecretString,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("rpc", &self.rpc.as_ref().map(|c| c.client().addr()))
            .field("rpc_gone", &self.rpc_gone.load(Ordering::Relaxed))
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// Plugin mode: `first` is the token the cf CLI gave while the target was gathered
    /// ([`fetch_rpc_token`]); later ones come from `conn` while the cf CLI lives. Add the
    /// config-file fallback with [`TokenSource::add_config_fallback`].
    pub fn from_rpc(conn: CliConnection, first: SecretString) -> Self {
        Self::new(Some(conn), None, first, SecretString::from(String::new()))
    }

    /// Standalone mode: the tokens read from the config file behind `refresher`.
    pub(crate) fn from_config(
        refresher: ConfigRefresher,
        access: SecretString,
        refresh: SecretString,
    ) -> Self {
        Self::new(None, Some(refresher), access, refresh)
    }

    fn new(
        rpc: Option<CliConnection>,
        config: Option<ConfigRefresher>,
        access: SecretString,
        refresh: SecretString,
    ) -> Self {
        Self {
            rpc,
            rpc_gone: AtomicBool::new(false),
            config,
            cached: tokio::sync::Mutex::new(Cached { access, refresh }),
            warnings: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Lets this source refresh through the cf CLI's config file at `path` (what cf itself
    /// uses: the plugin inherits `CF_HOME`) once the cf CLI is gone. The file must target
    /// `api_endpoint`, so a token for another foundation is never used.
    ///
    /// # Errors
    /// The file cannot be read or parsed, has an unsupported version, or targets another API;
    /// the source then stays without this fallback.
    pub fn add_config_fallback(&mut self, path: &Path, api_endpoint: &str) -> Result<(), Error> {
        let (refresher, refresh) = ConfigRefresher::for_endpoint(path, api_endpoint)?;
        self.config = Some(refresher);
        self.cached.get_mut().refresh = refresh;
        Ok(())
    }

    /// The config file this source refreshes through, if any.
    pub fn config_path(&self) -> Option<&Path> {
        self.config.as_ref().map(ConfigRefresher::path)
    }

    /// Hands over (and forgets) the warnings recorded so far, e.g. that a refreshed token
    /// could not be saved to the config file. They name files, never tokens.
    pub fn take_warnings(&self) -> Vec<String> {
        match self.warnings.lock() {
            Ok(mut w) => std::mem::take(&mut *w),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    fn warn(&self, warning: String) {
        match self.warnings.lock() {
            Ok(mut w) => w.push(warning),
            Err(poisoned) => poisoned.into_inner().push(warning),
        }
    }

    /// The token; `rejected` when the API refused the cached one (then it is neither reused
    /// nor fallen back to).
    async fn obtain(&self, rejected: bool) -> Result<SecretString, AuthError> {
        let mut cached = self.cached.lock().await;
        if !rejected && !expires_soon(cached.access.expose_secret(), now_unix()) {
            return Ok(cached.access.clone());
        }
        // 1. The cf CLI, while it lives.
        let mut cli_error = None;
        if let Some(conn) = self
            .rpc
            .as_ref()
            .filter(|_| !self.rpc_gone.load(Ordering::Relaxed))
        {
            match conn.access_token().await {
                Ok(token) if token.expose_secret().trim().is_empty() => {
                    cli_error = Some(AuthError::NotLoggedIn);
                }
                // A cf CLI that could not refresh hands back the token it has: one already
                // expired, or the one the API just refused, is no answer; the config file's
                // login server may still give a fresh one.
                Ok(token)
                    if known_expired(token.expose_secret(), now_unix())
                        || (rejected && token.expose_secret() == cached.access.expose_secret()) =>
                {
                    cli_error = Some(AuthError::Failed(
                        "the cf CLI answered with an expired access token".into(),
                    ));
                }
                Ok(token) => {
                    cached.access = token.clone();
                    return Ok(token);
                }
                Err(rpc::Error::Remote { message, .. }) => {
                    cli_error = Some(AuthError::Failed(format!(
                        "the cf CLI could not refresh the access token: {message}"
                    )));
                }
                Err(e) => {
                    // Connection refused, reset or silent: cf has exited (Ctrl-C ends it).
                    self.rpc_gone.store(true, Ordering::Relaxed);
                    tracing::debug!(
                        "the cf CLI is gone, tokens now come from its config file: {}",
                        super::error_chain(&e)
                    );
                }
            }
        }
        // 2. The cf CLI's config file and its login server.
        let mut config_error = None;
        if let Some(config) = &self.config {
            let rejected_token = rejected.then(|| cached.access.clone());
            match config
                .refresh(rejected_token.as_ref(), &cached.refresh)
                .await
            {
                Ok(fresh) => {
                    if let Some(w) = fresh.warning {
                        self.warn(w);
                    }
                    cached.access = fresh.access.clone();
                    cached.refresh = fresh.refresh;
                    return Ok(fresh.access);
                }
                Err(e) => config_error = Some(e),
            }
        }
        // 3. The cached token, while the API still accepts it.
        if !rejected && still_valid(cached.access.expose_secret(), now_unix()) {
            return Ok(cached.access.clone());
        }
        // The cf CLI's own answer is the most telling; else the config file's.
        Err(match (cli_error, config_error) {
            (Some(e), _) | (None, Some(e)) => e,
            (None, None) if self.rpc.is_some() => AuthError::Failed(
                "the cf CLI has exited and no cf config file targeting its API was found to \
                 refresh the token from"
                    .into(),
            ),
            (None, None) => AuthError::NotLoggedIn,
        })
    }
}

impl TokenProvider for TokenSource {
    fn token(&self) -> BoxFuture<'_, Result<SecretString, AuthError>> {
        Box::pin(self.obtain(false))
    }

    fn refresh(&self) -> BoxFuture<'_, Result<SecretString, AuthError>> {
        Box::pin(self.obtain(true))
    }

    fn take_warnings(&self) -> Vec<String> {
        TokenSource::take_warnings(self)
    }
}

/// Asks the cf CLI behind `conn` for its token (`AccessToken`, which makes cf refresh it
/// when needed).
///
/// # Errors
/// [`AuthError::NotLoggedIn`] for an empty token; the CLI's refresh error; the RPC failure.
pub async fn fetch_rpc_token(conn: &CliConnection) -> Result<SecretString, AuthError> {
    match conn.access_token().await {
        Ok(token) if token.expose_secret().trim().is_empty() => Err(AuthError::NotLoggedIn),
        Ok(token) => Ok(token),
        Err(rpc::Error::Remote { message, .. }) => Err(AuthError::Failed(format!(
            "the cf CLI could not refresh the access token: {message}"
        ))),
        Err(e) => Err(AuthError::Failed(super::error_chain(&e))),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use base64::Engine as _;
    use serde_json::json;
    use wiremock::matchers::{body_string_contains, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::plugin::rpc::RpcClient;

    const API: &str = "http://api.example.com";

    fn jwt(exp_in: i64) -> String {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let claims = json!({"exp": now_unix() + exp_in, "user_name": "alice"}).to_string();
        format!("{}.{}.c2ln", enc(r#"{"alg":"RS256"}"#), enc(&claims))
    }

    fn bearer(exp_in: i64) -> String {
        format!("bearer {}", jwt(exp_in))
    }

    /// `$CF_HOME/.cf/config.json` as cf v8 writes it, for the login server at `uaa`.
    fn write_config(dir: &tempfile::TempDir, uaa: &str, access: &str, refresh: &str) -> PathBuf {
        let file = dir.path().join("config.json");
        let config = json!({
            "ConfigVersion": 4,
            "Target": format!("{API}/"),
            "AuthorizationEndpoint": uaa,
            "AccessToken": access,
            "RefreshToken": refresh,
            "UAAOAuthClient": "cf",
            "UAAOAuthClientSecret": "",
            "OrganizationFields": {"GUID": "org-guid", "Name": "my-org"},
            "SpaceFields": {"GUID": "space-guid", "Name": "dev"},
            "PluginRepos": [{"Name": "CF-Community"}]
        });
        std::fs::write(&file, serde_json::to_vec_pretty(&config).expect("json")).expect("write");
        file
    }

    /// An RPC connection to a port nothing listens on: the cf CLI has exited.
    fn dead_cli() -> CliConnection {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind")
            .port();
        CliConnection::with_client(RpcClient::new(port))
    }

    /// A plugin-mode source whose cf CLI is gone, with the config fallback at `file`.
    fn plugin_source(first: &str, file: &Path) -> TokenSource {
        let mut source = TokenSource::from_rpc(dead_cli(), SecretString::from(first.to_string()));
        source.add_config_fallback(file, API).expect("fallback");
        if let Some(config) = source.config.as_mut() {
            config.retry.first_delay = Duration::from_millis(1);
            // No outage to wait out beyond the attempts.
            config.retry.budget = Duration::ZERO;
        }
        source
    }

    /// A plugin-mode source whose cf CLI is gone, holding `access`, and its config file (in
    /// the returned directory) holding `access` and refresh token `r1` for the login server `uaa`.
    fn started(uaa: &MockServer, access: &str) -> (tempfile::TempDir, PathBuf, TokenSource) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write_config(&dir, &uaa.uri(), access, "r1");
        let source = plugin_source(access, &file);
        (dir, file, source)
    }

    fn token_answer(access: &str, refresh: &str) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(json!({
            "access_token": access,
            "token_type": "bearer",
            "refresh_token": refresh,
            "expires_in": 3599
        }))
    }

    fn saved(file: &Path) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(file).expect("read")).expect("json")
    }

    #[tokio::test]
    async fn the_cached_token_is_used_while_valid() {
        let uaa = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .mount(&uaa)
            .await;
        let dir = tempfile::tempdir().expect("tempdir");
        let first = bearer(3600);
        let file = write_config(&dir, &uaa.uri(), &bearer(-10), "r1");
        let source = plugin_source(&first, &file);
        for _ in 0..3 {
            let t = source.token().await.expect("token");
            assert_eq!(t.expose_secret(), first);
        }
        // Neither the cf CLI nor the login server was asked.
        assert!(!source.rpc_gone.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_dead_cli_means_a_refresh_through_the_config_file() {
        let uaa = MockServer::start().await;
        let new = jwt(3600);
        Mock::given(method("POST"))
            .and(path("/oauth/token"))
            .and(body_string_contains("grant_type=refresh_token"))
            .and(body_string_contains("refresh_token=r1"))
            .respond_with(token_answer(&new, "r2"))
            .expect(1)
            .mount(&uaa)
            .await;
        let (_dir, file, source) = started(&uaa, &bearer(10));
        let t = source.token().await.expect("refreshed");
        assert_eq!(t.expose_secret(), format!("bearer {new}"));
        assert!(source.rpc_gone.load(Ordering::Relaxed));
        // Cached from now on (the mock allows one refresh).
        let again = source.token().await.expect("cached");
        assert_eq!(again.expose_secret(), t.expose_secret());
        let s = saved(&file);
        assert_eq!(s["AccessToken"], format!("bearer {new}"));
        assert_eq!(s["RefreshToken"], "r2");
        assert_eq!(s["PluginRepos"][0]["Name"], "CF-Community");
        assert!(source.take_warnings().is_empty());
    }

    #[tokio::test]
    async fn a_failed_refresh_falls_back_to_the_still_valid_cached_token() {
        let uaa = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&uaa)
            .await;
        let first = bearer(30); // within the refresh margin, not expired
        let (_dir, _file, source) = started(&uaa, &first);
        let t = source.token().await.expect("cached fallback");
        assert_eq!(t.expose_secret(), first);
        // Every attempt of the bounded retry was made.
        let attempts = source.config.as_ref().map_or(0, |c| c.retry.attempts);
        let received = uaa.received_requests().await.unwrap_or_default();
        assert_eq!(received.len(), attempts as usize);
        // After the API rejected it, the cached token is no answer.
        let err = source.refresh().await.expect_err("rejected and no refresh");
        let text = err.to_string();
        assert!(text.contains("503"), "{text}");
        assert!(!text.contains("eyJ"), "{text}");
    }

    #[tokio::test]
    async fn an_expired_cached_token_with_a_failed_refresh_is_an_error() {
        let uaa = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({
                "error": "invalid_token",
                "error_description": "expired refresh token"
            })))
            .expect(1)
            .mount(&uaa)
            .await;
        let (_dir, _file, source) = started(&uaa, &bearer(-5));
        let err = source.token().await.expect_err("nothing valid");
        assert!(matches!(err, AuthError::NotLoggedIn), "{err}");
    }

    #[tokio::test]
    async fn login_server_5xx_is_retried_then_succeeds() {
        let uaa = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(502))
            .up_to_n_times(2)
            .with_priority(1)
            .mount(&uaa)
            .await;
        let new = jwt(3600);
        Mock::given(method("POST"))
            .respond_with(token_answer(&new, "r2"))
            .with_priority(2)
            .expect(1)
            .mount(&uaa)
            .await;
        let (_dir, _file, source) = started(&uaa, &bearer(-5));
        let t = source.token().await.expect("third attempt works");
        assert_eq!(t.expose_secret(), format!("bearer {new}"));
        assert_eq!(uaa.received_requests().await.map(|r| r.len()), Some(3));
    }

    #[tokio::test]
    async fn a_rotation_by_a_concurrent_cf_is_picked_up() {
        let uaa = MockServer::start().await;
        let new = jwt(3600);
        // Only the rotated refresh token is accepted.
        Mock::given(method("POST"))
            .and(body_string_contains("refresh_token=r2"))
            .respond_with(token_answer(&new, "r3"))
            .expect(1)
            .mount(&uaa)
            .await;
        let (dir, file, source) = started(&uaa, &bearer(10));

        // cf refreshed meanwhile: a valid access token in the file is used as it is.
        let rotated = bearer(3600);
        write_config(&dir, &uaa.uri(), &rotated, "r2");
        let t = source.token().await.expect("rotated token");
        assert_eq!(t.expose_secret(), rotated);

        // The API rejects it: the file's token is the rejected one, so the file's current
        // refresh token (r2, not the r1 read at start) goes to the login server.
        let t = source.refresh().await.expect("refreshed with r2");
        assert_eq!(t.expose_secret(), format!("bearer {new}"));
        assert_eq!(saved(&file)["RefreshToken"], "r3");
    }

    #[tokio::test]
    async fn a_failed_save_is_reported_as_a_warning() {
        let uaa = MockServer::start().await;
        let new = jwt(3600);
        Mock::given(method("POST"))
            .respond_with(token_answer(&new, "r2"))
            .expect(1)
            .mount(&uaa)
            .await;
        let (_dir, file, source) = started(&uaa, &bearer(-5));
        // The file is clobbered after start: it can be neither re-read nor updated.
        std::fs::write(&file, "not json").expect("clobber");
        let t = source.token().await.expect("the refresh itself works");
        assert_eq!(t.expose_secret(), format!("bearer {new}"));
        let provider: &dyn TokenProvider = &source;
        let warnings = provider.take_warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("could not save the refreshed access token"),
            "{warnings:?}"
        );
        assert!(warnings[0].contains(&file.display().to_string()));
        assert!(!warnings[0].contains("eyJ") && !warnings[0].contains("r2"));
        assert!(provider.take_warnings().is_empty(), "drained");
    }

    #[test]
    fn a_config_for_another_api_is_no_fallback() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write_config(&dir, "https://uaa.example.com", "bearer x", "r1");
        let mut source = TokenSource::from_rpc(dead_cli(), SecretString::from("bearer y"));
        let err = source
            .add_config_fallback(&file, "https://api.other.example.com")
            .expect_err("other target");
        assert!(matches!(err, Error::ConfigOtherTarget { .. }), "{err}");
        assert!(source.config_path().is_none());
        source.add_config_fallback(&file, API).expect("same target");
        assert_eq!(source.config_path(), Some(file.as_path()));
    }

    #[tokio::test]
    async fn without_cli_or_config_an_expired_token_is_a_clear_error() {
        let source = TokenSource::from_rpc(dead_cli(), SecretString::from(bearer(-5)));
        let err = source.token().await.expect_err("nothing to refresh from");
        assert!(err.to_string().contains("cf CLI has exited"), "{err}");
    }
}
