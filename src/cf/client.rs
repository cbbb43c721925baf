//! The HTTP client: configuration, authentication, retries, timeouts, warnings, tracing and the
//! JSON plumbing every resource file uses.
//!
//! One `reqwest::Client` lives inside [`Client`]; clones share it, the warning buffer and the
//! discovered API version.
//!
//! Rules implemented here:
//! - the token comes from the [`TokenProvider`] for every request; after one `401
//!   CF-InvalidAuthToken` the provider is asked to `refresh()` once and the request is sent once
//!   more;
//! - a Cloud Controller outage is waited out, within [`RetryPolicy::outage_budget`] (the
//!   `--api-outage-budget`, 60 s by default) counted from the request's first failed attempt:
//!   idempotent requests ([`Idempotency`]: `GET`, `HEAD`, `PUT`, `PATCH`, `DELETE`, and the
//!   `POST`s a call site declares idempotent) are sent again after connection failures, resets,
//!   timeouts and 502/503/504, with capped, jittered exponential backoff; other 5xx (except 501
//!   and 505) are retried at most [`RetryPolicy::max_retries`] times;
//! - 429 is retried for every request (the rate limiter rejects before any work is done),
//!   waiting as `Retry-After` (or `X-RateLimit-Reset`) asks, as long as the budget allows;
//! - a non-idempotent `POST` (creating an app, route, package, build, deployment, binding, ...)
//!   is sent again only when the server cannot have seen it: the connection could not be
//!   established, the answer was 429, or gorouter answered 503 with `X-Cf-Routererror:
//!   no_endpoints` (no Cloud Controller instance was there to receive it).
//!   Any other failure is returned; [`Error::may_have_been_applied`] tells the caller to re-read
//!   the state (e.g. find the route by host) before deciding what to do next;
//! - the first wait of an outage is announced once through the notice sink
//!   ([`Client::set_notice_sink`]), and so is the first answer after it;
//! - a retried `DELETE` whose first attempt was applied but whose answer was lost gets 404:
//!   that is returned as the error it is ([`Error::is_not_found`]); callers deleting treat it as
//!   done;
//! - every request has a connect timeout and a total timeout (uploads have their own, longer one);
//! - every response body is capped ([`ClientConfig::max_response_bytes`]): a larger one fails
//!   with [`Error::ResponseTooLarge`] as soon as the cap is passed (or at once when
//!   `Content-Length` says so), without reading the rest; the pages of one listing together
//!   may take four times the cap, then the listing fails the same way;
//! - `X-Cf-Warnings` of the final response (success or error) are collected; responses that are
//!   retried (503, 429, ...) do not contribute warnings;
//! - absolute URLs from the API (`pagination.next.href`) are followed only on the API's origin,
//!   so the token is never sent elsewhere.
//!
//! Depends on: reqwest, tokio, serde. Must not: log or print tokens.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::nullable::null_as_default;
use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::error::{ApiError, CcError, Error};
use super::guid::JobGuid;
use super::page::Page;
use super::request::{Body, json_body, upload_form};
use super::root::RootInfo;
use super::trace::{self, Trace};
use super::version::ApiVersion;
use super::warnings::{self, Warnings};
use super::{AuthError, Target, TokenProvider};

/// Results per page requested for every list call (the API maximum).
pub const PER_PAGE: u32 = 5000;

/// Upper bound on pages followed by one list call (5000 × 1000 resources).
const MAX_PAGES: usize = 1000;

/// How many times [`ClientConfig::max_response_bytes`] the pages of one list call may total:
/// every page is kept until the last one has arrived, so the cap on one response alone would
/// let a listing hold [`MAX_PAGES`] times that much.
const LISTING_RESPONSES: u64 = 4;

/// Default cap on one response body (64 MiB): far above any Cloud Controller JSON page
/// (5000 resources), far below what would exhaust memory.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// Whether sending a request twice has the same effect as sending it once, which decides
/// whether a transient failure (5xx, lost connection) is retried.
///
/// [`Idempotency::of`] derives it from the method; call sites override it for `POST`s whose
/// effect is idempotent. The per-endpoint decisions:
///
/// | request | idempotent | why |
/// | --- | --- | --- |
/// | `GET`, `HEAD`, `PUT`, `PATCH` (rename, metadata, env, destinations replace, droplet, process), `DELETE` | yes | HTTP semantics; every CC `PATCH` sets fields to given values |
/// | `POST /v3/apps/:guid/actions/start`, `.../stop` | yes | state transitions to a target state |
/// | `POST .../actions/scale` | yes | absolute instance count and limits |
/// | `POST /v3/routes/:guid/destinations` | yes | adding an existing destination is a no-op in CC |
/// | `POST /v3/spaces/:guid/manifest_diff`, `POST /v3/resource_matches` | yes | read-only |
/// | `POST <networking>/policies`, `.../policies/delete` | yes | the policy server stores each policy once; deleting an absent one is a no-op |
/// | `POST /v3/apps`, `/v3/routes`, `/v3/packages`, `/v3/builds`, `/v3/deployments`, `/v3/service_credential_bindings` | no | a second create makes a second resource or a uniqueness error |
/// | `POST .../actions/restart`, `/v3/deployments/:guid/actions/continue`, `.../cancel` | no | a second call restarts again or advances another step |
/// | `POST /v3/spaces/:guid/actions/apply_manifest`, `POST /v3/packages/:guid/upload` | no | long, stateful server-side work: re-read instead |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Idempotency {
    /// Sending it again after a transient failure is safe.
    Idempotent,
    /// Sent again only when the server cannot have seen it (connect failure, 429).
    NotIdempotent,
}

impl Idempotency {
    /// `POST` (and `CONNECT`) are not idempotent; every other method is.
    pub fn of(method: &Method) -> Self {
        if *method == Method::POST || *method == Method::CONNECT {
            Idempotency::NotIdempotent
        } else {
            Idempotency::Idempotent
        }
    }
}

/// How failed requests are retried (see [`Idempotency`] for which ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries of an idempotent request answered with a server error that is not an outage
    /// (500, 507, ...; the cf CLI uses 2).
    pub max_retries: u32,
    /// How long one request may keep waiting out an outage (refused or reset connections,
    /// timeouts, 502/503/504) or rate limiting (429), from its first failed attempt.
    pub outage_budget: Duration,
    /// Backoff before the first retry; doubled for each further retry.
    pub initial_backoff: Duration,
    /// Cap on the exponential backoff.
    pub max_backoff: Duration,
    /// Cap on a server-sent `Retry-After`.
    pub max_retry_after: Duration,
}

/// The default of `--api-outage-budget`.
pub const DEFAULT_OUTAGE_BUDGET: Duration = Duration::from_secs(60);

/// The most an unauthenticated request (`GET /`, `GET /v3/info`: the first contact, before
/// anything is changed) waits out an outage: an API that does not answer (a mistyped
/// endpoint, a long outage) fails the command soon, and the run can simply be started again.
pub const FIRST_CONTACT_BUDGET: Duration = Duration::from_secs(15);

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            outage_budget: DEFAULT_OUTAGE_BUDGET,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn never() -> Self {
        Self {
            max_retries: 0,
            outage_budget: Duration::ZERO,
            ..Self::default()
        }
    }

    /// The longest wait before retry number `retry` (0-based): `Retry-After` when the server
    /// sent one (capped by `max_retry_after`), else `initial_backoff * 2^retry` capped by
    /// `max_backoff`. The actual wait is [`RetryPolicy::jittered`].
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(d) => d.min(self.max_retry_after),
            None => self
                .initial_backoff
                .saturating_mul(2u32.saturating_pow(retry.min(16)))
                .min(self.max_backoff),
        }
    }

    /// The wait before retry number `retry` for a random `unit` in `[0, 1)`: a server-sent
    /// `Retry-After` exactly (capped), else between half and all of [`RetryPolicy::delay`]
    /// ("equal jitter"), so that clients failing together do not retry together.
    pub fn jittered(&self, retry: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
        let ceiling = self.delay(retry, retry_after);
        if retry_after.is_some() {
            return ceiling;
        }
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        ceiling.mul_f64(0.5 + 0.5 * unit)
    }

    /// Whether a wait of `wait` after `waited` already spent on this request's failures stays
    /// within the outage budget.
    pub fn within_budget(&self, waited: Duration, wait: Duration) -> bool {
        waited.saturating_add(wait) <= self.outage_budget
    }
}

/// Everything needed to build a [`Client`].
pub struct ClientConfig {
    /// The API endpoint, e.g. `https://api.example.com`.
    pub api_endpoint: String,
    /// Skip TLS certificate validation (only when the cf CLI target says so).
    pub skip_ssl_validation: bool,
    /// Where access tokens come from.
    pub token: Arc<dyn TokenProvider>,
    /// `User-Agent` header.
    pub user_agent: String,
    /// TCP/TLS connect timeout (the cf CLI's `CF_DIAL_TIMEOUT`, 6 s by default there).
    pub connect_timeout: Duration,
    /// Total timeout of one request (connect, send, receive the whole body).
    pub request_timeout: Duration,
    /// Total timeout of a package upload.
    pub upload_timeout: Duration,
    /// Retry policy for idempotent requests (see [`Idempotency`]).
    pub retry: RetryPolicy,
    /// Cap on one response body in bytes ([`DEFAULT_MAX_RESPONSE_BYTES`]); a larger one fails
    /// with [`Error::ResponseTooLarge`].
    pub max_response_bytes: u64,
    /// `CF_TRACE` output.
    pub trace: Trace,
}

impl ClientConfig {
    /// A configuration with the defaults: TLS verified, 10 s connect, 60 s per request, 30 min
    /// per upload, outages waited out for up to 60 s ([`DEFAULT_OUTAGE_BUDGET`]), 2 retries of other
    /// server errors for idempotent requests, 64 MiB per response, tracing off.
    pub fn new(api_endpoint: impl Into<String>, token: Arc<dyn TokenProvider>) -> Self {
        Self {
            api_endpoint: api_endpoint.into(),
            skip_ssl_validation: false,
            token,
            user_agent: concat!("cf-zero-downtime/", env!("CARGO_PKG_VERSION")).to_owned(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            upload_timeout: Duration::from_secs(30 * 60),
            retry: RetryPolicy::default(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            trace: Trace::off(),
        }
    }
}

impl ClientConfig {
    /// A configuration for the cf CLI's target (endpoint and skip-SSL flag), with the defaults
    /// of [`ClientConfig::new`]. `CF_TRACE` is not read here: set `trace` with
    /// [`Trace::from_env`] where the environment is known.
    pub fn for_target(target: &Target, token: Arc<dyn TokenProvider>) -> Self {
        Self {
            skip_ssl_validation: target.skip_ssl_validation,
            ..Self::new(target.api_endpoint.clone(), token)
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("api_endpoint", &self.api_endpoint)
            .field("skip_ssl_validation", &self.skip_ssl_validation)
            .field("token", &"<token provider>")
            .field("user_agent", &self.user_agent)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("upload_timeout", &self.upload_timeout)
            .field("retry", &self.retry)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("trace", &self.trace)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Discovered {
    pub(crate) version: Option<ApiVersion>,
    pub(crate) root: RootInfo,
    /// Whether `root` was read from `GET /` (false when only the version was set).
    pub(crate) root_known: bool,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    token: Arc<dyn TokenProvider>,
    retry: RetryPolicy,
    max_response_bytes: u64,
    request_timeout: Duration,
    upload_timeout: Duration,
    trace: Trace,
    warnings: Warnings,
    discovered: RwLock<Option<Discovered>>,
    /// Where outage notices go; `None`: into the warnings of the current step.
    notice: RwLock<Option<NoticeSink>>,
    /// The outage this client is waiting out, shared by concurrent requests so that it is
    /// announced once.
    outage: std::sync::Mutex<Option<Outage>>,
    /// Requests sent so far (every attempt, retries included).
    sent: std::sync::atomic::AtomicU64,
    /// Called as each request goes out, in the sending future (see [`Client::observe_sends`]).
    on_send: RwLock<Option<SendObserver>>,
}

/// What [`Client::observe_sends`] calls.
type SendObserver = Arc<dyn Fn() + Send + Sync>;

/// Receives one line of text when the client starts waiting out an outage or rate limiting,
/// and when the API answers again.
pub type NoticeSink = Arc<dyn Fn(String) + Send + Sync>;

/// An outage being waited out.
#[derive(Debug, Clone, Copy)]
struct Outage {
    since: std::time::Instant,
}

/// A Cloud Controller v3 client. Cheap to clone: clones share one connection pool, one warning
/// buffer and the discovered API version.
///
/// ```no_run
/// # async fn f() -> Result<(), cf_zero_downtime::cf::Error> {
/// use std::sync::Arc;
/// use cf_zero_downtime::cf::{Client, ClientConfig, StaticToken};
/// use secrecy::SecretString;
///
/// let token = Arc::new(StaticToken(SecretString::from("bearer eyJ...")));
/// let client = Client::new(ClientConfig::new("https://api.example.com", token))?;
/// client.discover().await?;
/// let org = client.find_organization("my-org").await?;
/// for w in client.take_warnings() {
///     eprintln!("warning: {w}");
/// }
/// # let _ = org; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("api", &self.inner.base.as_str())
            .finish_non_exhaustive()
    }
}

/// A fully read response.
pub(crate) struct Response {
    pub(crate) endpoint: String,
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Response {
    pub(crate) fn request_id(&self) -> Option<String> {
        request_id(&self.headers)
    }

    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        // 204 and empty bodies read as `{}`, like the cf CLI.
        let body: &[u8] = if self.body.is_empty() {
            b"{}"
        } else {
            &self.body
        };
        serde_json::from_slice(body).map_err(|source| Error::Decode {
            endpoint: self.endpoint.clone(),
            request_id: self.request_id(),
            source,
        })
    }

    /// The job GUID of a `202 Accepted` + `Location: .../v3/jobs/<guid>` response.
    pub(crate) fn job_location(&self) -> Result<JobGuid, Error> {
        let loc = self
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Protocol {
                endpoint: self.endpoint.clone(),
                what: format!("status {} without a job Location header", self.status),
            })?;
        job_guid_from_location(loc).ok_or_else(|| Error::Protocol {
            endpoint: self.endpoint.clone(),
            what: format!("Location '{loc}' is not a job URL"),
        })
    }
}

/// `https://api/v3/jobs/<guid>` (or a relative `/v3/jobs/<guid>`) → the GUID.
pub(crate) fn job_guid_from_location(loc: &str) -> Option<JobGuid> {
    let path = loc.split(['?', '#']).next()?.trim_end_matches('/');
    let (prefix, guid) = path.rsplit_once('/')?;
    if prefix.ends_with("/jobs") && !guid.is_empty() {
        Some(JobGuid::new(guid))
    } else {
        None
    }
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-vcap-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The wait a 429 or 503 asks for: `Retry-After` in seconds, else `X-RateLimit-Reset` (Cloud
/// Controller's rate limiter: the Unix time at which the limit resets). An HTTP date falls back
/// to the backoff.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| -> Option<u64> {
        headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok()
    };
    if let Some(secs) = number("retry-after") {
        return Some(Duration::from_secs(secs));
    }
    let reset = number("x-ratelimit-reset")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    // A small number is a delay in seconds (some proxies), a large one a point in time.
    if reset < 1_000_000_000 {
        Some(Duration::from_secs(reset))
    } else {
        Some(Duration::from_secs(reset.saturating_sub(now)))
    }
}

/// gorouter's `X-Cf-Routererror` (`no_endpoints`, `endpoint_failure`, ...).
fn router_error(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-cf-routererror")?.to_str().ok()
}

/// Why a response is worth another attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RetryClass {
    /// The API is unreachable for now (502/503/504): waited out within the outage budget.
    Outage,
    /// 429: waited out within the outage budget, as the server asks.
    RateLimited,
    /// Another server error (500, 507, ...): a couple of retries.
    ServerError,
}

/// Which responses are worth another attempt: 429 always (the rate limiter rejected the request
/// before any work), a 503 from gorouter with no Cloud Controller behind it (`no_endpoints`: the
/// request reached no server) always, and for idempotent requests 502/503/504 (an outage) and
/// every other 5xx except 501/505 (which will not change).
fn retry_class(status: StatusCode, headers: &HeaderMap, idempotent: bool) -> Option<RetryClass> {
    match status.as_u16() {
        429 => Some(RetryClass::RateLimited),
        503 if router_error(headers) == Some("no_endpoints") => Some(RetryClass::Outage),
        _ if !idempotent => None,
        502..=504 => Some(RetryClass::Outage),
        501 | 505 => None,
        500..=599 => Some(RetryClass::ServerError),
        _ => None,
    }
}

impl Client {
    /// Builds the client. No request is made.
    ///
    /// # Errors
    /// [`Error::Config`] when the endpoint is not an absolute http(s) URL or the TLS setup fails.
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        let base = Url::parse(config.api_endpoint.trim_end_matches('/'))
            .map_err(|e| Error::Config(format!("api endpoint '{}': {e}", config.api_endpoint)))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(Error::Config(format!(
                "api endpoint '{}' is not an http(s) URL",
                config.api_endpoint
            )));
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .default_headers(headers)
            .connect_timeout(config.connect_timeout)
            .danger_accept_invalid_certs(config.skip_ssl_validation)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Config(format!("http client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                token: config.token,
                retry: config.retry,
                max_response_bytes: config.max_response_bytes,
                request_timeout: config.request_timeout,
                upload_timeout: config.upload_timeout,
                trace: config.trace,
                warnings: Warnings::default(),
                discovered: RwLock::new(None),
                notice: RwLock::new(None),
                outage: std::sync::Mutex::new(None),
                sent: std::sync::atomic::AtomicU64::new(0),
                on_send: RwLock::new(None),
            }),
        })
    }

    /// Drains the warnings collected so far (`X-Cf-Warnings` headers and job warnings), oldest
    /// first. Call it after every step, including failed ones.
    pub fn take_warnings(&self) -> Vec<String> {
        self.inner.warnings.take()
    }

    /// How many requests this client (and its clones) has sent so far: every attempt that
    /// went out, retries included.
    pub fn requests_sent(&self) -> u64 {
        self.inner.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Calls `observer` as each request of this client (and its clones) goes out, every
    /// attempt included, from within the future that sends it (so that it can read that
    /// future's task-local values); replaces an earlier observer.
    pub fn observe_sends(&self, observer: impl Fn() + Send + Sync + 'static) {
        if let Ok(mut slot) = self.inner.on_send.write() {
            *slot = Some(Arc::new(observer));
        }
    }

    /// How long one request waits out an outage (`--api-outage-budget`).
    pub fn outage_budget(&self) -> Duration {
        self.inner.retry.outage_budget
    }

    /// Sends outage notices ("waiting up to 60s for Cloud Controller ...") to `sink` as they
    /// happen, instead of adding them to the warnings of the current step.
    pub fn set_notice_sink(&self, sink: NoticeSink) {
        if let Ok(mut n) = self.inner.notice.write() {
            *n = Some(sink);
        }
    }

    fn notify(&self, text: String) {
        tracing::info!(target: "cf::http", "{text}");
        let sink = self.inner.notice.read().ok().and_then(|n| n.clone());
        match sink {
            Some(sink) => sink(text),
            None => self.inner.warnings.extend([text]),
        }
    }

    /// Marks the start of an outage (announced when no other request already did), or, with
    /// `None`, its end (announced when one was under way).
    fn outage_changed(&self, waiting_for: Option<&str>) {
        let Ok(mut current) = self.inner.outage.lock() else {
            return;
        };
        let text = match (waiting_for, *current) {
            (Some(what), None) => {
                *current = Some(Outage {
                    since: std::time::Instant::now(),
                });
                format!(
                    "{what}; waiting up to {}s for it (--api-outage-budget)",
                    self.inner.retry.outage_budget.as_secs()
                )
            }
            (None, Some(o)) => {
                *current = None;
                format!(
                    "Cloud Controller answers again, after {:.1}s",
                    o.since.elapsed().as_secs_f64()
                )
            }
            _ => return,
        };
        drop(current);
        self.notify(text);
    }

    /// Sets the API version without `GET /` (e.g. from the plugin RPC's `ApiVersion`).
    pub fn set_api_version(&self, version: ApiVersion) {
        if let Ok(mut d) = self.inner.discovered.write() {
            let (root, root_known) = d.take().map(|d| (d.root, d.root_known)).unwrap_or_default();
            *d = Some(Discovered {
                version: Some(version),
                root,
                root_known,
            });
        }
    }

    pub(crate) fn store_root(&self, root: RootInfo) {
        if let Ok(mut d) = self.inner.discovered.write() {
            *d = Some(Discovered {
                version: root.api_version(),
                root,
                root_known: true,
            });
        }
    }

    pub(crate) fn discovered(&self) -> Option<Discovered> {
        self.inner.discovered.read().ok().and_then(|d| d.clone())
    }

    /// The API endpoint this client talks to.
    pub fn api_endpoint(&self) -> &Url {
        &self.inner.base
    }

    pub(crate) fn push_warnings(&self, w: impl IntoIterator<Item = String>) {
        self.inner.warnings.extend(w);
    }

    /// `path` (starting with `/`) on the API endpoint.
    pub(crate) fn url(&self, path: &str) -> Result<Url, Error> {
        let base = self.inner.base.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}{path}"))
            .map_err(|e| Error::Config(format!("bad request path '{path}': {e}")))
    }

    /// `path` with query parameters (values are URL-encoded here).
    pub(crate) fn url_with(&self, path: &str, query: &[(&str, String)]) -> Result<Url, Error> {
        let mut url = self.url(path)?;
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// An absolute URL sent by the API, accepted only on the API's own origin.
    pub(crate) fn same_origin(&self, href: &str) -> Result<Url, Error> {
        let url = Url::parse(href)
            .or_else(|_| self.url(href))
            .map_err(|_| Error::Protocol {
                endpoint: self.inner.base.to_string(),
                what: format!("'{href}' is not a URL"),
            })?;
        if url.origin() != self.inner.base.origin() {
            return Err(Error::Protocol {
                endpoint: self.inner.base.to_string(),
                what: format!("refusing to follow '{href}': not on the API endpoint"),
            });
        }
        Ok(url)
    }

    // ---- typed helpers used by the resource files ----

    pub(crate) async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<T, Error> {
        self.send(Method::GET, url, Body::Empty).await?.json()
    }

    pub(crate) async fn get_json_unauthenticated<T: DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<T, Error> {
        self.get(url, false, None).await?.json()
    }

    /// `get_json` with `CF-ResourceNotFound` mapped to `None` (kube's `get_opt`).
    pub(crate) async fn get_json_opt<T: DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<Option<T>, Error> {
        match self.get_json(url).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: &impl Serialize,
    ) -> Result<T, Error> {
        self.send(method, url, json_body(body)?).await?.json()
    }

    /// [`Client::send_json`] with the idempotency declared by the call site.
    pub(crate) async fn send_json_as<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: &impl Serialize,
        idempotency: Idempotency,
    ) -> Result<T, Error> {
        self.send_as(method, url, json_body(body)?, idempotency)
            .await?
            .json()
    }

    /// A `DELETE` whose answer is `202 Accepted` + a job `Location`.
    pub(crate) async fn delete_for_job(&self, url: Url) -> Result<JobGuid, Error> {
        self.send(Method::DELETE, url, Body::Empty)
            .await?
            .job_location()
    }

    /// Every resource of a list endpoint, following `pagination.next.href` (per_page=5000).
    pub(crate) async fn list_all<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, Error> {
        let (all, complete) = self.list_pages(path, query, MAX_PAGES).await?;
        if complete {
            Ok(all)
        } else {
            Err(Error::Protocol {
                endpoint: format!("GET {path}"),
                what: format!("more than {MAX_PAGES} pages"),
            })
        }
    }

    /// The resources of at most `max_pages` pages of a list endpoint (per_page=5000 unless the
    /// query sets it), and whether that was every page.
    pub(crate) async fn list_pages<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        max_pages: usize,
    ) -> Result<(Vec<T>, bool), Error> {
        let (all, _, complete) = self
            .list_pages_including::<T, serde::de::IgnoredAny>(path, query, max_pages, None)
            .await?;
        Ok((all, complete))
    }

    /// Every resource of a list endpoint queried with `include=...`, and the resources of
    /// every page's `included` object under `key` (e.g. `domains` for `include=domain`).
    pub(crate) async fn list_all_including<T: DeserializeOwned, I: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        key: &str,
    ) -> Result<(Vec<T>, Vec<I>), Error> {
        let (all, included, complete) = self
            .list_pages_including(path, query, MAX_PAGES, Some(key))
            .await?;
        if complete {
            Ok((all, included))
        } else {
            Err(Error::Protocol {
                endpoint: format!("GET {path}"),
                what: format!("more than {MAX_PAGES} pages"),
            })
        }
    }

    /// [`Client::list_pages`], also collecting the `included` resources under `key`.
    async fn list_pages_including<T: DeserializeOwned, I: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        max_pages: usize,
        key: Option<&str>,
    ) -> Result<(Vec<T>, Vec<I>, bool), Error> {
        let mut query = query.to_vec();
        if !query.iter().any(|(k, _)| *k == "per_page") {
            query.push(("per_page", PER_PAGE.to_string()));
        }
        let mut url = self.url_with(path, &query)?;
        let mut all = Vec::new();
        let mut included = Vec::new();
        let budget = self
            .inner
            .max_response_bytes
            .saturating_mul(LISTING_RESPONSES);
        let mut read = 0u64;
        for _ in 0..max_pages {
            let resp = self.send(Method::GET, url, Body::Empty).await?;
            read = read.saturating_add(resp.body.len() as u64);
            if read > budget {
                return Err(Error::ResponseTooLarge {
                    endpoint: format!("GET {path} (all pages together)"),
                    limit: budget,
                });
            }
            let mut page: Page<T> = resp.json()?;
            all.extend(page.resources);
            if let Some(items) = key.and_then(|k| page.included.remove(k)) {
                let items: Vec<I> =
                    serde_json::from_value(items).map_err(|source| Error::Decode {
                        endpoint: resp.endpoint.clone(),
                        request_id: resp.request_id(),
                        source,
                    })?;
                included.extend(items);
            }
            match page.pagination.and_then(|p| p.next).map(|n| n.href) {
                // CC sends next.href as an absolute URL; follow it verbatim (same origin only).
                Some(href) if !href.is_empty() => url = self.same_origin(&href)?,
                _ => return Ok((all, included, true)),
            }
        }
        Ok((all, included, false))
    }

    /// The first resource of a one-result list query (`per_page=1`).
    pub(crate) async fn first<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<T>, Error> {
        let mut query = query.to_vec();
        query.push(("per_page", "1".to_owned()));
        query.push(("page", "1".to_owned()));
        let page: Page<T> = self.get_json(self.url_with(path, &query)?).await?;
        Ok(page.resources.into_iter().next())
    }

    // ---- the transport ----

    /// Sends a request; its idempotency (what may be retried) follows from the method.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: Url,
        body: Body<'_>,
    ) -> Result<Response, Error> {
        let idempotency = Idempotency::of(&method);
        self.send_as(method, url, body, idempotency).await
    }

    /// Sends a request whose idempotency the call site declares (e.g. a `POST` action that only
    /// moves to a target state).
    pub(crate) async fn send_as(
        &self,
        method: Method,
        url: Url,
        body: Body<'_>,
        idempotency: Idempotency,
    ) -> Result<Response, Error> {
        self.execute(method, url, body, true, None, idempotency)
            .await
    }

    /// A GET with another `Accept` header (YAML documents).
    pub(crate) async fn get_accepting(
        &self,
        url: Url,
        accept: &'static str,
    ) -> Result<Response, Error> {
        self.get(url, true, Some(accept)).await
    }

    /// A GET (idempotent, no body), with or without the token.
    async fn get(
        &self,
        url: Url,
        authenticated: bool,
        accept: Option<&'static str>,
    ) -> Result<Response, Error> {
        let idempotency = Idempotency::Idempotent;
        self.execute(
            Method::GET,
            url,
            Body::Empty,
            authenticated,
            accept,
            idempotency,
        )
        .await
    }

    /// Sends a request until it has a final answer: refreshes the token once on `401
    /// CF-InvalidAuthToken`, retries server errors a few times and waits out outages within the
    /// budget (the rules in the module documentation).
    async fn execute(
        &self,
        method: Method,
        url: Url,
        body: Body<'_>,
        authenticated: bool,
        accept: Option<&'static str>,
        idempotency: Idempotency,
    ) -> Result<Response, Error> {
        let call = Call {
            endpoint: format!("{method} {}", url.path()),
            idempotent: idempotency == Idempotency::Idempotent,
            authenticated,
            timeout: match body {
                Body::Upload(_) => self.inner.upload_timeout,
                _ => self.inner.request_timeout,
            },
        };
        let limit = self.inner.max_response_bytes;
        let policy = &self.inner.retry;
        let mut token: Option<SecretString> = None;
        let mut refreshed = false;
        let mut retrying = Retrying::default();
        loop {
            if authenticated && token.is_none() {
                token = Some(self.bounded_token(self.inner.token.token()).await?);
            }
            let request = self
                .build(&method, &url, &body, token.as_ref(), accept)
                .await?;
            self.trace_request(&request, &body);
            self.inner
                .sent
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Cloned out of the lock: the observer may take locks of its own.
            let observer = self.inner.on_send.read().ok().and_then(|o| o.clone());
            if let Some(observe) = observer {
                observe();
            }
            tracing::debug!(target: "cf::http", endpoint = %call.endpoint, "request");
            let outcome = tokio::time::timeout(
                call.timeout,
                read_response(&self.inner.http, request, limit),
            )
            .await;
            let transient = match outcome {
                Err(_elapsed) => call.timed_out()?,
                Ok(Err(ReadError::TooLarge)) => {
                    let endpoint = call.endpoint;
                    return Err(Error::ResponseTooLarge { endpoint, limit });
                }
                Ok(Err(ReadError::Http(e))) => call.connection_failed(e)?,
                Ok(Ok((status, headers, bytes))) => {
                    self.trace_response(status, &headers, &bytes);
                    tracing::debug!(target: "cf::http", endpoint = %call.endpoint, status = status.as_u16(), "response");
                    let server_retry_left = retrying.server_errors < policy.max_retries;
                    match call.verdict(status, &headers, &bytes, !refreshed, server_retry_left) {
                        Verdict::RefreshToken => {
                            refreshed = true;
                            token = Some(self.bounded_token(self.inner.token.refresh()).await?);
                            continue;
                        }
                        Verdict::ServerError => {
                            let wait =
                                policy.jittered(retrying.server_errors, None, fastrand::f64());
                            tracing::debug!(target: "cf::http", endpoint = %call.endpoint, status = status.as_u16(), ?wait, "retrying");
                            retrying.server_errors += 1;
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        Verdict::Transient(transient) => transient,
                        Verdict::Final => {
                            let recovered = retrying.first_failure.is_some();
                            return self.finish(call.endpoint, status, headers, bytes, recovered);
                        }
                    }
                }
            };
            let wait = self.wait_out(&call, &mut retrying, transient)?;
            tokio::time::sleep(wait).await;
        }
    }

    /// The final answer of a request: announces the end of the outage it waited out (when
    /// `recovered`), keeps its warnings, and turns an error status into [`Error::Api`].
    fn finish(
        &self,
        endpoint: String,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        recovered: bool,
    ) -> Result<Response, Error> {
        if recovered {
            self.outage_changed(None);
        }
        self.inner.warnings.extend(warnings::from_headers(&headers));
        if status.is_success() {
            return Ok(Response {
                endpoint,
                status,
                headers,
                body,
            });
        }
        Err(api_error(&endpoint, status, &headers, &body).into())
    }

    /// The wait before the next attempt after `transient`, announcing the outage; its error
    /// when the wait would overrun the outage budget (or, unauthenticated, the first-contact
    /// budget).
    fn wait_out(
        &self,
        call: &Call,
        retrying: &mut Retrying,
        transient: Transient,
    ) -> Result<Duration, Error> {
        let policy = &self.inner.retry;
        let endpoint = &call.endpoint;
        let started = *retrying
            .first_failure
            .get_or_insert_with(std::time::Instant::now);
        let wait = policy.jittered(retrying.retries, transient.asked, fastrand::f64());
        let within = if call.authenticated {
            policy.within_budget(started.elapsed(), wait)
        } else {
            started.elapsed().saturating_add(wait) <= FIRST_CONTACT_BUDGET
                && policy.within_budget(started.elapsed(), wait)
        };
        if !within {
            tracing::debug!(target: "cf::http", %endpoint, "outage budget spent");
            return Err(transient.err);
        }
        let what = transient.what;
        self.outage_changed(Some(&what));
        tracing::debug!(target: "cf::http", %endpoint, ?wait, "{what}; retrying");
        retrying.retries += 1;
        Ok(wait)
    }

    /// The provider's answer, bounded by the request timeout (a plugin RPC peer may hang).
    async fn bounded_token(
        &self,
        fut: futures::future::BoxFuture<'_, Result<SecretString, AuthError>>,
    ) -> Result<SecretString, Error> {
        match tokio::time::timeout(self.inner.request_timeout, fut).await {
            Ok(result) => result.map_err(Error::Auth),
            Err(_) => Err(Error::Auth(AuthError::Failed(format!(
                "the token provider did not answer within {:?}",
                self.inner.request_timeout
            )))),
        }
    }

    async fn build(
        &self,
        method: &Method,
        url: &Url,
        body: &Body<'_>,
        token: Option<&SecretString>,
        accept: Option<&'static str>,
    ) -> Result<reqwest::Request, Error> {
        let mut rb = self.inner.http.request(method.clone(), url.clone());
        if let Some(accept) = accept {
            rb = rb.header(header::ACCEPT, accept);
        }
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                Error::Auth(AuthError::Failed(
                    "the access token contains characters not allowed in a header".to_owned(),
                ))
            })?;
            value.set_sensitive(true);
            rb = rb.header(header::AUTHORIZATION, value);
        }
        rb = match body {
            Body::Empty => rb,
            Body::Json(bytes) => rb
                .header(header::CONTENT_TYPE, "application/json")
                .body(bytes.clone()),
            Body::Yaml(text) => rb
                .header(header::CONTENT_TYPE, "application/x-yaml")
                .body(text.to_string()),
            Body::Upload(upload) => rb.multipart(upload_form(upload).await?),
        };
        rb.build().map_err(|e| Error::Http {
            endpoint: format!("{method} {}", url.path()),
            source: e,
        })
    }

    fn trace_request(&self, request: &reqwest::Request, body: &Body<'_>) {
        let trace = &self.inner.trace;
        if !trace.is_on() {
            return;
        }
        let url = request.url();
        let mut out = format!(
            "REQUEST: {}\n{} {}{} HTTP/1.1\nHost: {}\n",
            trace::timestamp(),
            request.method(),
            url.path(),
            url.query().map(|q| format!("?{q}")).unwrap_or_default(),
            url.host_str().unwrap_or_default(),
        );
        for (name, value) in request.headers() {
            let shown = if trace::is_private_header(name.as_str()) || value.is_sensitive() {
                trace::REDACTED.to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            out.push_str(&format!("{}: {shown}\n", canonical(name.as_str())));
        }
        out.push('\n');
        match body {
            Body::Empty => {}
            Body::Json(b) => out.push_str(&trace::render_body(Some("application/json"), b)),
            Body::Yaml(y) => {
                out.push_str(&trace::render_body(
                    Some("application/x-yaml"),
                    y.as_bytes(),
                ));
            }
            Body::Upload(_) => out.push_str(trace::MULTIPART_HIDDEN),
        }
        out.push_str("\n\n");
        trace.write(&out);
    }

    fn trace_response(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) {
        let trace = &self.inner.trace;
        if !trace.is_on() {
            return;
        }
        let mut out = format!("RESPONSE: {}\nHTTP/1.1 {status}\n", trace::timestamp());
        for (name, value) in headers {
            let shown = if trace::is_private_header(name.as_str()) {
                trace::REDACTED.to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            out.push_str(&format!("{}: {shown}\n", canonical(name.as_str())));
        }
        out.push('\n');
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        out.push_str(&trace::render_body(content_type, body));
        out.push_str("\n\n");
        trace.write(&out);
    }
}

/// The parts of one request that decide how its failures are handled.
struct Call {
    /// `METHOD /path`, for errors and logs.
    endpoint: String,
    idempotent: bool,
    authenticated: bool,
    timeout: Duration,
}

/// A failure worth another attempt after a wait within the outage budget.
struct Transient {
    /// What is being waited out, for the outage notice.
    what: String,
    /// The wait the server asked for (`Retry-After`).
    asked: Option<Duration>,
    /// What the request fails with when the budget is spent.
    err: Error,
}

/// How far the retrying of one request has got.
#[derive(Default)]
struct Retrying {
    /// Waits for transient failures so far (for the backoff).
    retries: u32,
    /// Retries of server errors that are not an outage.
    server_errors: u32,
    /// When this request first failed: the outage budget counts from there.
    first_failure: Option<std::time::Instant>,
}

/// What a response means for the retry loop.
enum Verdict {
    /// Returned as it is: a success, or an error not worth another attempt.
    Final,
    /// `401 CF-InvalidAuthToken`: send once more with a refreshed token.
    RefreshToken,
    /// A server error that is not an outage, with retries left.
    ServerError,
    /// An outage or rate limiting, waited out.
    Transient(Transient),
}

impl Call {
    /// The request timed out: worth another attempt only when idempotent.
    fn timed_out(&self) -> Result<Transient, Error> {
        let err = Error::Timeout {
            endpoint: self.endpoint.clone(),
            timeout: self.timeout,
        };
        if !self.idempotent {
            return Err(err);
        }
        let what = format!("{} timed out after {:?}", self.endpoint, self.timeout);
        Ok(Transient {
            what,
            asked: None,
            err,
        })
    }

    /// The request failed below HTTP. A connection that could not be made never carried the
    /// request: any request may be sent again. Once connected (reset, broken body, timeout),
    /// only idempotent ones. Building errors cannot improve by retrying.
    fn connection_failed(&self, e: reqwest::Error) -> Result<Transient, Error> {
        let unsent = e.is_connect();
        let retry = !e.is_builder() && (self.idempotent || unsent);
        let what = if unsent {
            "Cloud Controller refuses connections".to_owned()
        } else if e.is_timeout() {
            format!("{} timed out", self.endpoint)
        } else {
            "Cloud Controller dropped the connection".to_owned()
        };
        let endpoint = self.endpoint.clone();
        let err = if e.is_timeout() {
            Error::Timeout {
                endpoint,
                timeout: self.timeout,
            }
        } else {
            Error::Http {
                endpoint,
                source: e,
            }
        };
        if !retry {
            return Err(err);
        }
        Ok(Transient {
            what,
            asked: None,
            err,
        })
    }

    /// What to do with a response: `may_refresh` while the token has not been refreshed yet,
    /// `server_retry_left` while server errors may still be retried.
    fn verdict(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        may_refresh: bool,
        server_retry_left: bool,
    ) -> Verdict {
        if status == StatusCode::UNAUTHORIZED
            && self.authenticated
            && may_refresh
            && api_error(&self.endpoint, status, headers, body).is_invalid_auth_token()
        {
            return Verdict::RefreshToken;
        }
        match retry_class(status, headers, self.idempotent) {
            Some(RetryClass::Outage) | Some(RetryClass::RateLimited) => {
                Verdict::Transient(Transient {
                    what: unavailable(status, headers),
                    // `Retry-After: 0` asks for nothing: the backoff keeps a pace.
                    asked: retry_after(headers).filter(|d| !d.is_zero()),
                    err: Error::from(api_error(&self.endpoint, status, headers, body)),
                })
            }
            Some(RetryClass::ServerError) if server_retry_left => Verdict::ServerError,
            _ => Verdict::Final,
        }
    }
}

/// What an outage or rate-limiting answer says, for the outage notice.
fn unavailable(status: StatusCode, headers: &HeaderMap) -> String {
    if status == StatusCode::TOO_MANY_REQUESTS {
        "Cloud Controller is rate limiting requests (429)".to_owned()
    } else if let Some(router) = router_error(headers) {
        format!(
            "Cloud Controller is unavailable ({} {router})",
            status.as_u16()
        )
    } else {
        format!("Cloud Controller is unavailable ({})", status.as_u16())
    }
}

/// Why a response could not be read.
enum ReadError {
    Http(reqwest::Error),
    /// The body is larger than the cap.
    TooLarge,
}

/// Sends `request` and reads the whole response, at most `limit` body bytes: a larger body is
/// refused from its `Content-Length`, or as soon as the received bytes pass the cap.
async fn read_response(
    http: &reqwest::Client,
    request: reqwest::Request,
    limit: u64,
) -> Result<(StatusCode, HeaderMap, Bytes), ReadError> {
    let mut resp = http.execute(request).await.map_err(ReadError::Http)?;
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(ReadError::TooLarge);
    }
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Http)? {
        if (body.len() as u64).saturating_add(chunk.len() as u64) > limit {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, headers, body.freeze()))
}

/// `x-cf-warnings` → `X-Cf-Warnings`.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[derive(serde::Deserialize)]
pub(super) struct ErrorDocument {
    #[serde(default, deserialize_with = "null_as_default")]
    errors: Vec<CcError>,
}

/// Maps an error response. Bodies that are not CC error JSON keep the status and the raw text.
fn api_error(endpoint: &str, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ApiError {
    let errors = serde_json::from_slice::<ErrorDocument>(body)
        .map(|d| d.errors)
        .unwrap_or_default();
    let raw = if errors.is_empty() && !body.is_empty() {
        let mut text = String::from_utf8_lossy(body).into_owned();
        if text.len() > 1024 {
            let mut cut = 1024;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("...");
        }
        Some(text)
    } else {
        None
    };
    ApiError {
        endpoint: endpoint.to_owned(),
        status: status.as_u16(),
        errors,
        request_id: request_id(headers),
        body: raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Backoff from 100 ms, capped at 350 ms; `Retry-After` capped at 10 s.
    fn short_backoff() -> RetryPolicy {
        RetryPolicy {
            max_retries: 5,
            outage_budget: Duration::from_secs(1),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            max_retry_after: Duration::from_secs(10),
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = short_backoff();
        assert_eq!(p.delay(0, None), Duration::from_millis(100));
        assert_eq!(p.delay(1, None), Duration::from_millis(200));
        assert_eq!(p.delay(2, None), Duration::from_millis(350));
        assert_eq!(p.delay(40, None), Duration::from_millis(350));
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(3600))),
            p.max_retry_after
        );
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_backoff() {
        let p = short_backoff();
        assert_eq!(p.jittered(1, None, 0.0), Duration::from_millis(100));
        assert_eq!(p.jittered(1, None, 1.0), Duration::from_millis(200));
        assert_eq!(p.jittered(1, None, 0.5), Duration::from_millis(150));
        assert_eq!(p.jittered(1, None, f64::NAN), Duration::from_millis(100));
        for _ in 0..100 {
            let d = p.jittered(3, None, fastrand::f64());
            assert!(d >= Duration::from_millis(175) && d <= Duration::from_millis(350));
        }
        // Retry-After is honoured exactly (capped), without jitter.
        assert_eq!(
            p.jittered(0, Some(Duration::from_secs(3)), 0.0),
            Duration::from_secs(3)
        );
        assert_eq!(
            p.jittered(0, Some(Duration::from_secs(99)), 0.9),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn idempotency_follows_the_method_and_retryable_statuses() {
        assert_eq!(Idempotency::of(&Method::POST), Idempotency::NotIdempotent);
        for m in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(Idempotency::of(&m), Idempotency::Idempotent);
        }
        let s = |n| StatusCode::from_u16(n).unwrap();
        let none = HeaderMap::new();
        let mut no_endpoints = HeaderMap::new();
        no_endpoints.insert("x-cf-routererror", HeaderValue::from_static("no_endpoints"));
        let class = |n, h: &HeaderMap, i| retry_class(s(n), h, i);
        assert_eq!(class(429, &none, false), Some(RetryClass::RateLimited));
        assert_eq!(class(429, &none, true), Some(RetryClass::RateLimited));
        for n in [502, 503, 504] {
            assert_eq!(class(n, &none, true), Some(RetryClass::Outage));
            assert_eq!(class(n, &none, false), None, "{n} may have reached CC");
        }
        // gorouter found no Cloud Controller: the POST reached no server.
        assert_eq!(class(503, &no_endpoints, false), Some(RetryClass::Outage));
        assert_eq!(class(502, &no_endpoints, false), None);
        assert_eq!(class(500, &none, true), Some(RetryClass::ServerError));
        assert_eq!(class(500, &none, false), None);
        assert_eq!(class(501, &none, true), None);
        assert_eq!(class(505, &none, true), None);
        assert_eq!(class(404, &none, true), None);
        assert_eq!(class(200, &none, true), None);
    }

    #[test]
    fn the_outage_budget_bounds_the_waiting() {
        let p = RetryPolicy::default();
        assert!(p.within_budget(Duration::from_secs(50), Duration::from_secs(10)));
        assert!(!p.within_budget(Duration::from_secs(55), Duration::from_secs(6)));
        assert!(!RetryPolicy::never().within_budget(Duration::ZERO, Duration::from_millis(1)));
        assert!(
            p.within_budget(Duration::MAX, Duration::ZERO) == (Duration::MAX <= p.outage_budget)
        );
    }

    #[test]
    fn rate_limit_reset_is_read_when_retry_after_is_missing() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let at = HeaderValue::from_str(&(now + 5).to_string()).unwrap();
        h.insert("x-ratelimit-reset", at);
        let d = retry_after(&h).unwrap();
        assert!(
            d <= Duration::from_secs(5) && d >= Duration::from_secs(3),
            "{d:?}"
        );
        let past = HeaderValue::from_str(&(now - 100).to_string()).unwrap();
        h.insert("x-ratelimit-reset", past);
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        // Retry-After wins.
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
    }

    #[test]
    fn retry_after_header_is_read_as_seconds() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn job_guid_comes_from_location() {
        assert_eq!(
            job_guid_from_location("https://api.example.org/v3/jobs/b19a-1"),
            Some(JobGuid::new("b19a-1"))
        );
        assert_eq!(
            job_guid_from_location("/v3/jobs/x/"),
            Some(JobGuid::new("x"))
        );
        assert_eq!(job_guid_from_location("https://api/v3/apps/x"), None);
    }

    #[test]
    fn non_json_error_bodies_keep_status_and_text() {
        let e = api_error(
            "GET /v3/apps",
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"<html>bad gateway</html>",
        );
        assert_eq!(e.status, 502);
        assert!(e.errors.is_empty());
        assert_eq!(e.body.as_deref(), Some("<html>bad gateway</html>"));
        assert!(e.to_string().contains("bad gateway"));
    }

    #[test]
    fn header_names_are_canonicalised() {
        assert_eq!(canonical("x-cf-warnings"), "X-Cf-Warnings");
    }
}
