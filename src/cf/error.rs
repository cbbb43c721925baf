//! The errors of the Cloud Controller client.
//!
//! Cloud Controller errors are data: [`ApiError`] keeps the HTTP status, every `{code, title,
//! detail}` entry and the `X-Vcap-Request-Id`. Callers branch on `title`/`code` through the
//! predicates ([`ApiError::is_not_found`], [`ApiError::has_title`]); `detail` is for display only.
//!
//! Depends on: thiserror, reqwest. Must not: contain tokens or other secrets in any message.

use std::fmt;
use std::time::Duration;

use super::nullable::null_as_default;
use serde::{Deserialize, Serialize};

use super::AuthError;
use super::guid::{BuildGuid, JobGuid, PackageGuid};
use super::version::{ApiVersion, Feature};

/// One entry of a Cloud Controller `errors` array (also used in failed jobs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CcError {
    /// Numeric error code, e.g. `10010`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub code: i64,
    /// Error title, e.g. `CF-ResourceNotFound`. Branch on this.
    #[serde(default, deserialize_with = "null_as_default")]
    pub title: String,
    /// Human-readable detail. Display only: never branch on it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub detail: String,
}

impl fmt::Display for CcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.title, self.code, self.detail)
    }
}

/// A non-success HTTP response from Cloud Controller (or the networking API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The request, e.g. `GET /v3/apps/1234` (no query string, no host).
    pub endpoint: String,
    /// HTTP status code.
    pub status: u16,
    /// Every entry of the response's `errors` array (empty if the body was not CC JSON).
    pub errors: Vec<CcError>,
    /// The `X-Vcap-Request-Id` header, when present.
    pub request_id: Option<String>,
    /// The raw body (truncated) when it could not be read as a CC error document.
    pub body: Option<String>,
}

impl ApiError {
    /// True when any entry has this title (e.g. `CF-UniquenessError`).
    pub fn has_title(&self, title: &str) -> bool {
        self.errors.iter().any(|e| e.title == title)
    }

    /// True when any entry has this numeric code (e.g. `10008`).
    pub fn has_code(&self, code: i64) -> bool {
        self.errors.iter().any(|e| e.code == code)
    }

    /// `CF-ResourceNotFound`, or a bare 404 without a CC error body.
    pub fn is_not_found(&self) -> bool {
        self.has_title("CF-ResourceNotFound") || (self.status == 404 && self.errors.is_empty())
    }

    /// `CF-NotAuthorized`, or a bare 403 (e.g. log-cache or the policy server refusing a space
    /// developer).
    pub fn is_forbidden(&self) -> bool {
        self.status == 403 || self.has_title("CF-NotAuthorized")
    }

    /// A 5xx: the server failed, and may or may not have applied a mutating request.
    pub fn is_server_error(&self) -> bool {
        (500..600).contains(&self.status)
    }

    /// `CF-InvalidAuthToken` (an expired or revoked token).
    pub fn is_invalid_auth_token(&self) -> bool {
        self.has_title("CF-InvalidAuthToken")
    }

    /// `CF-UnprocessableEntity` (422 validation failures).
    pub fn is_unprocessable(&self) -> bool {
        self.has_title("CF-UnprocessableEntity")
    }

    /// `CF-UniquenessError` (a name already taken).
    pub fn is_uniqueness_error(&self) -> bool {
        self.has_title("CF-UniquenessError")
    }

    /// `CF-RateLimitExceeded` or `CF-IPBasedRateLimitExceeded`.
    pub fn is_rate_limited(&self) -> bool {
        self.status == 429
            || self.has_title("CF-RateLimitExceeded")
            || self.has_title("CF-IPBasedRateLimitExceeded")
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed with status {}", self.endpoint, self.status)?;
        if let Some(body) = self
            .body
            .as_deref()
            .filter(|b| self.errors.is_empty() && !b.trim().is_empty())
        {
            write!(f, ": {}", body.trim())?;
        }
        for (i, e) in self.errors.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{e}")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id: {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Everything that can go wrong talking to Cloud Controller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Cloud Controller answered with an error status.
    #[error(transparent)]
    Api(Box<ApiError>),
    /// The request could not be sent or the response not read (connection, TLS, ...).
    #[error("{endpoint}: request failed")]
    Http {
        /// The request, e.g. `GET /v3/apps`.
        endpoint: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The request did not complete within its timeout.
    #[error("{endpoint}: timed out after {timeout:?}")]
    Timeout {
        /// The request, e.g. `GET /v3/apps`.
        endpoint: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// A response body was not the JSON we expected.
    #[error("{endpoint}: could not read the response{}", request_id_suffix(.request_id))]
    Decode {
        /// The request, e.g. `GET /v3/apps`.
        endpoint: String,
        /// The `X-Vcap-Request-Id` of the response.
        request_id: Option<String>,
        #[source]
        source: serde_json::Error,
    },
    /// No access token could be had.
    #[error("could not authenticate to cloud controller")]
    Auth(#[source] AuthError),
    /// The configuration is unusable (bad endpoint URL, TLS setup).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// A response was missing something the protocol promises (e.g. a `Location` header).
    #[error("{endpoint}: unexpected response: {what}")]
    Protocol {
        /// The request, e.g. `POST /v3/spaces/S/actions/apply_manifest`.
        endpoint: String,
        /// What was wrong.
        what: String,
    },
    /// An asynchronous job ended in `FAILED`.
    #[error("job {job} ({operation}) failed: {}", join_cc_errors(.errors))]
    JobFailed {
        job: JobGuid,
        /// The job's operation, e.g. `space.apply_manifest`.
        operation: String,
        /// The job's errors.
        errors: Vec<CcError>,
    },
    /// A package ended in `FAILED` or `EXPIRED`.
    #[error("package {package} is {state} instead of READY{}", .error.as_deref().map(|e| format!(": {e}")).unwrap_or_default())]
    PackageFailed {
        package: PackageGuid,
        /// The final state, e.g. `FAILED`.
        state: String,
        /// The package's `data.error`, when present.
        error: Option<String>,
    },
    /// Staging failed (`build.state == FAILED`).
    #[error("staging failed (build {build}): {error}")]
    StagingFailed {
        build: BuildGuid,
        /// The build's `error`, e.g. `NoAppDetectedError - ...`.
        error: String,
    },
    /// A bounded wait gave up.
    #[error("timed out after {timeout:?} waiting for {what}")]
    PollTimeout {
        /// What was waited for, e.g. `job 1234 to complete`.
        what: String,
        /// The bound that was reached.
        timeout: Duration,
    },
    /// The target Cloud Controller is too old for a feature.
    #[error("{feature} requires CF API version {required} or higher; the target is {actual}")]
    Unsupported {
        feature: Feature,
        /// Its minimum API version.
        required: ApiVersion,
        /// The target's API version.
        actual: ApiVersion,
    },
    /// A feature check was made before [`crate::cf::Client::discover`].
    #[error("the cloud controller API version is unknown: discover the target first")]
    VersionUnknown,
    /// A response body was larger than [`crate::cf::ClientConfig::max_response_bytes`]; the rest
    /// was not read.
    #[error(
        "{endpoint}: the response is larger than {limit} bytes (the client's response size cap)"
    )]
    ResponseTooLarge {
        /// The request, e.g. `GET /v3/apps`.
        endpoint: String,
        /// The cap that was passed.
        limit: u64,
    },
    /// An optional platform service (log-cache, the policy server) is not advertised by the
    /// target's root document (`GET /`). Callers degrade: see [`Error::is_unavailable_optional`].
    #[error(
        "{service} is not available on this Cloud Foundry (no '{link}' link in its root document)"
    )]
    Unavailable {
        /// The service, e.g. `log-cache`.
        service: &'static str,
        /// The root link that is missing, e.g. `log_cache`.
        link: &'static str,
    },
    /// A local file could not be read (package upload).
    #[error("could not read {path}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The Cloud Controller error, when this is one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            _ => None,
        }
    }

    /// True for `CF-ResourceNotFound` (or a bare 404).
    pub fn is_not_found(&self) -> bool {
        self.api().is_some_and(ApiError::is_not_found)
    }

    /// True for a 403 / `CF-NotAuthorized`.
    pub fn is_forbidden(&self) -> bool {
        self.api().is_some_and(ApiError::is_forbidden)
    }

    /// True when an optional service (log-cache, audit events, the policy server) cannot be
    /// used here, so the caller should degrade with a warning instead of failing: the service is
    /// not advertised ([`Error::Unavailable`]), or it answered 403 (the user's role may not read
    /// it) or 404 (not deployed, or an older API without the endpoint). Any other error (5xx,
    /// transport, timeout) is not an absence and stays an error.
    pub fn is_unavailable_optional(&self) -> bool {
        matches!(self, Error::Unavailable { .. }) || self.is_forbidden() || self.is_not_found()
    }

    /// True when a failed request may still have been applied by the server, so a caller of a
    /// non-idempotent call (a create) must re-read the state before retrying or giving up: the
    /// connection broke after the request was sent, the request timed out, or the server
    /// answered 5xx. False for errors that prove nothing was done (4xx, connect failures,
    /// building the request, auth).
    pub fn may_have_been_applied(&self) -> bool {
        match self {
            Error::Api(e) => e.is_server_error(),
            Error::Http { source, .. } => !source.is_connect() && !source.is_builder(),
            Error::Timeout { .. } | Error::ResponseTooLarge { .. } => true,
            _ => false,
        }
    }

    /// True for failures that another attempt later may not meet: 5xx, 429, transport errors and
    /// timeouts (what the client itself retries for idempotent requests).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Api(e) => {
                e.is_rate_limited() || (e.is_server_error() && !matches!(e.status, 501 | 505))
            }
            Error::Http { source, .. } => !source.is_builder(),
            Error::Timeout { .. } => true,
            _ => false,
        }
    }

    /// True when the API error (or a failed job) carries this title.
    pub fn has_title(&self, title: &str) -> bool {
        match self {
            Error::Api(e) => e.has_title(title),
            Error::JobFailed { errors, .. } => errors.iter().any(|e| e.title == title),
            _ => false,
        }
    }

    /// The `X-Vcap-Request-Id` of the failed response, when known.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Error::Api(e) => e.request_id.as_deref(),
            Error::Decode { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error::Api(Box::new(e))
    }
}

fn request_id_suffix(id: &Option<String>) -> String {
    id.as_deref()
        .map(|id| format!(" (request id: {id})"))
        .unwrap_or_default()
}

fn join_cc_errors(errors: &[CcError]) -> String {
    if errors.is_empty() {
        return "no error details given".to_owned();
    }
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
