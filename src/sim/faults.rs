//! Fault injection and introspection: the rules that make API calls fail, staging fail,
//! instances crash or turn unhealthy, and the small admin HTTP API (`/_sim/...` on the API
//! port, only when `SimConfig::admin_api` is set) that exposes the same switches plus a state
//! dump and the API call log. The admin API needs an admin access token from the
//! simulator's UAA (`Authorization: bearer ...`, as `SimHandle::token()` gives). Tests use the Rust side ([`FaultInjector`]) through
//! `SimHandle::faults()`.
//!
//! Depends on: `state`, `mod.rs` (`Shared`). Must not: be reachable when the admin API is off.

use std::collections::{HashMap, HashSet};

use super::state::State;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::Shared;
use super::util::path_matches;

/// Make the `nth` (1-based) and the following `times - 1` calls matching `method` and
/// `path` fail with `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailRule {
    /// HTTP method (`POST`), or `*` for any.
    pub method: String,
    /// Path pattern: `:name` or `*` segments match any one segment, a trailing `**` the rest
    /// (`/v3/builds`, `/v3/apps/:guid/actions/restart`).
    pub path: String,
    /// The first matching call that fails (1 = the next one).
    pub nth: u32,
    /// How many calls fail, from the `nth` on (default 1).
    #[serde(default = "one")]
    pub times: u32,
    /// Status to answer with (a CC error body matching the status is sent).
    pub status: u16,
    /// `Retry-After` seconds (for 429s).
    #[serde(default)]
    pub retry_after: Option<u64>,
}

fn one() -> u32 {
    1
}

fn five_hundred() -> u16 {
    500
}

fn three_hundred() -> u64 {
    300
}

fn one_u64() -> u64 {
    1
}

fn one_i32() -> i32 {
    1
}

/// An API a foundation may lack or deny to a space developer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptionalApi {
    /// `GET /v3/audit_events`.
    AuditEvents,
    /// Log-cache (`/api/v1/...`, `links.log_cache`).
    LogCache,
    /// The network-policy server (`/networking/v1/external/...`, `links.network_policy_v1`).
    NetworkPolicy,
}

/// How an optional API fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unavailable {
    /// 403 with the real server's body.
    Forbidden,
    /// 404.
    NotFound,
    /// Not advertised by `GET /` (its link is missing or `null`) and 404.
    Absent,
}

/// A fault, as the admin API accepts it (`POST /_sim/faults`, JSON with a `kind` tag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultSpec {
    /// Fail API calls.
    FailCalls(FailRule),
    /// Every build of the app (by name, case-insensitive) fails with this error.
    FailStaging {
        /// The app it applies to, by name (the candidate's name to hit only the new version).
        app: String,
        /// `build.error`; default `StagingError - Staging error: staging failed`.
        #[serde(default)]
        message: Option<String>,
    },
    /// Every instance of the app crashes while starting. Like Diego, the instance is
    /// restarted at once for its first `SimConfig::immediate_restarts` crashes, then after a
    /// back-off during which it shows CRASHED.
    CrashOnStart {
        /// The app it applies to, by name (the candidate's name to hit only the new version).
        app: String,
        /// The old behaviour: a crashed instance stays CRASHED (and is not restarted) until
        /// the fault is cleared.
        #[serde(default)]
        stay_crashed: bool,
    },
    /// The app's instances start but never pass their start-up health check; after
    /// `health_check_timeout_ms` Diego kills and restarts them (a crash each time). Polling
    /// stats shows STARTING (with a new `instance_guid` after each restart), not CRASHED,
    /// while the restarts are immediate.
    NeverHealthy {
        /// The app it applies to, by name (the candidate's name to hit only the new version).
        app: String,
        /// The health-check timeout used instead of the process's.
        health_check_timeout_ms: u64,
    },
    /// One-shot: the app's instance `index` (of its newest `web` process) exits now, as a
    /// process would (a crash: audit event, log lines, restart).
    CrashInstance {
        /// The app it applies to, by name (the candidate's name to hit only the new version).
        app: String,
        /// Instance index.
        index: u32,
        /// `exit_description`; default `APP/PROC/WEB: Exited with status 1`.
        #[serde(default)]
        exit_description: Option<String>,
    },
    /// One-shot: Diego evacuates the cell the app's instances run on (a platform upgrade).
    /// For each placed instance a replacement is placed first at the same index (UNCLAIMED,
    /// with an empty `instance_guid`, for `unclaimed_ms`; then STARTING with a new GUID),
    /// Cloud Controller records `audit.app.process.rescheduling` and the cell logs that it
    /// requests a replacement; the old instance keeps serving, routed, until its replacement is
    /// RUNNING. Pending until the app has a placed instance.
    Evacuate {
        /// The app it applies to, by name.
        app: String,
        /// How long each replacement stays UNCLAIMED (default 300 ms).
        #[serde(default = "three_hundred")]
        unclaimed_ms: u64,
    },
    /// Cloud Controller is unreachable for `ms` from now: gorouter answers every API and UAA
    /// request with 503 and `X-Cf-Routererror: no_endpoints` (the `reset` variant closes
    /// each connection without an answer instead). The admin API keeps answering.
    Outage {
        /// How long, in milliseconds.
        ms: u64,
        /// Reset connections instead of answering 503.
        #[serde(default)]
        reset: bool,
    },
    /// The next `times` API requests (any path but the admin API) are answered 429
    /// `CF-RateLimitExceeded` with `Retry-After: retry_after` seconds, as Cloud Controller's
    /// rate limiter does.
    RateLimit {
        /// How many requests are refused.
        times: u32,
        /// `Retry-After` seconds.
        #[serde(default = "one_u64")]
        retry_after: u64,
    },
    /// An optional API is unavailable: it answers 403 or 404, or is absent from `GET /`.
    OptionalApiUnavailable {
        /// Which API.
        api: OptionalApi,
        /// How it fails.
        mode: Unavailable,
    },
    /// The app answers `percent` % of requests through the router with `status` (default
    /// 500): deterministically, every request that makes the running share reach the next
    /// whole percent fails.
    Http5xxShare {
        /// The app it applies to, by name (the candidate's name to hit only the new version).
        app: String,
        /// Share of requests that fail, 0..=100.
        percent: u8,
        /// The 5xx status (default 500).
        #[serde(default = "five_hundred")]
        status: u16,
    },
    /// The app answers every request through the router `delay_ms` later.
    SlowResponses {
        /// The app it applies to, by name (the candidate's name to hit only the new version).
        app: String,
        /// Extra milliseconds before the request reaches the app.
        delay_ms: u64,
    },
    /// Staging of the app takes this much longer.
    SlowStaging {
        /// The app it applies to, by name (the candidate's name to hit only the new version).
        app: String,
        /// Extra milliseconds.
        ms: u64,
    },
    /// Instances of the app take this much longer to start.
    SlowStart {
        /// The app it applies to, by name (the candidate's name to hit only the new version).
        app: String,
        /// Extra milliseconds.
        ms: u64,
    },
    /// The app's static-file instances answer `/health` with 500 (http health checks fail).
    Unhealthy {
        /// The app it applies to, by name (the candidate's name to hit only the new version).
        app: String,
    },
    /// Jobs of this operation (`space.apply_manifest`, `app.delete`, `route.delete`) created
    /// from now on end FAILED with this detail (`CF-UnprocessableEntity`).
    FailJobs {
        /// The job operation.
        operation: String,
        /// The error detail.
        detail: String,
    },
    /// Instances of the app cannot be placed: they stay STARTING with this `details` text
    /// (CC shows e.g. `insufficient resources: memory`) until the fault is cleared.
    PlacementError {
        /// The app it applies to, by name (the candidate's name to hit only the new version).
        app: String,
        /// The `details` of the instances' stats.
        details: String,
    },
    /// Every task of the app fails: instead of its command, it writes one line to stderr and
    /// exits with `status` (a migration that fails).
    FailTask {
        /// The app it applies to, by name (the candidate's name to hit only the new version).
        app: String,
        /// The exit status (default 1).
        #[serde(default = "one_i32")]
        status: i32,
    },
    /// Every task of the app hangs: instead of its command, it writes one line and never ends
    /// (until cancelled).
    HangTask {
        /// The app it applies to, by name (the candidate's name to hit only the new version).
        app: String,
    },
    /// Every API response carries this warning in `X-Cf-Warnings`.
    Warning {
        /// Warning text.
        text: String,
    },
    /// A setting rather than a fault: the seeded space's or org's quota becomes `quota` (an
    /// admin's `cf update-space-quota`/`cf set-space-quota`); `None` removes the space quota,
    /// or gives the org an unlimited `default` quota. Checked from the next call on; running
    /// instances are not stopped, as on Cloud Foundry. Clearing faults keeps it.
    SetQuota {
        /// The space's quota or the org's.
        scope: super::quotas::QuotaScope,
        /// The limits, `None` to remove.
        #[serde(default)]
        quota: Option<super::quotas::QuotaSpec>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct ActiveRule {
    pub rule: FailRule,
    pub seen: u32,
}

/// Fault switches kept in the state.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub rules: Vec<ActiveRule>,
    pub staging: HashMap<String, String>,
    /// App → stay CRASHED.
    pub crash_on_start: HashMap<String, bool>,
    pub never_healthy: HashMap<String, Duration>,
    pub optional: HashMap<OptionalApi, Unavailable>,
    /// App → (percent, status).
    pub http_5xx: HashMap<String, (u8, u16)>,
    /// Requests seen per app under `http_5xx`.
    pub http_5xx_seen: HashMap<String, u64>,
    pub slow_responses: HashMap<String, Duration>,
    pub slow_staging: HashMap<String, Duration>,
    pub slow_start: HashMap<String, Duration>,
    pub unhealthy: HashSet<String>,
    pub failing_jobs: HashMap<String, String>,
    pub placement: HashMap<String, String>,
    /// App → the exit status its tasks end with.
    pub fail_task: HashMap<String, i32>,
    /// Apps whose tasks never end.
    pub hang_task: HashSet<String>,
    pub warnings: Vec<String>,
    /// App (lowercase name) → how long its replacements stay UNCLAIMED: evacuations not yet
    /// carried out (the reconcile loop does them).
    pub evacuate: HashMap<String, Duration>,
    /// Cloud Controller unreachable until then; `true`: connections are reset.
    pub outage: Option<(std::time::Instant, bool)>,
    /// Requests still refused with 429, and the `Retry-After` they carry.
    pub rate_limit: Option<(u32, u64)>,
}

/// How an API request fares under the outage and rate-limit faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unreachable {
    /// gorouter: 503 with `X-Cf-Routererror: no_endpoints`.
    NoEndpoints,
    /// The connection is closed without an answer.
    Reset,
    /// 429 with this `Retry-After`.
    RateLimited(u64),
}

impl Faults {
    /// Whether an API request now meets an outage or the rate limiter (counts 429s).
    pub(crate) fn unreachable(&mut self) -> Option<Unreachable> {
        if let Some((until, reset)) = self.outage {
            if std::time::Instant::now() < until {
                return Some(if reset {
                    Unreachable::Reset
                } else {
                    Unreachable::NoEndpoints
                });
            }
            self.outage = None;
        }
        let (left, retry_after) = self.rate_limit?;
        self.rate_limit = (left > 1).then(|| (left - 1, retry_after));
        Some(Unreachable::RateLimited(retry_after))
    }

    /// Should this request to `app` (lowercase name) fail under `Http5xxShare`? Counts it.
    pub fn http_failure(&mut self, app: &str) -> Option<u16> {
        let (percent, status) = *self.http_5xx.get(app)?;
        let n = self.http_5xx_seen.entry(app.to_string()).or_insert(0);
        let before = *n * u64::from(percent) / 100;
        *n += 1;
        let after = *n * u64::from(percent) / 100;
        (after > before).then_some(status)
    }

    /// Counts a call and returns `(status, retry_after)` when a rule makes it fail.
    pub fn check_call(&mut self, method: &str, path: &str) -> Option<(u16, Option<u64>)> {
        let mut hit = None;
        for r in &mut self.rules {
            let m = r.rule.method == "*" || r.rule.method.eq_ignore_ascii_case(method);
            if !m || !path_matches(&r.rule.path, path) {
                continue;
            }
            r.seen += 1;
            let nth = r.rule.nth.max(1);
            if hit.is_none() && r.seen >= nth && r.seen < nth + r.rule.times.max(1) {
                hit = Some((r.rule.status, r.rule.retry_after));
            }
        }
        hit
    }

    pub fn apply(&mut self, spec: FaultSpec) {
        match spec {
            FaultSpec::FailCalls(rule) => self.rules.push(ActiveRule { rule, seen: 0 }),
            FaultSpec::FailStaging { app, message } => {
                let msg = message
                    .unwrap_or_else(|| "StagingError - Staging error: staging failed".to_string());
                self.staging.insert(app.to_lowercase(), msg);
            }
            FaultSpec::CrashOnStart { app, stay_crashed } => {
                self.crash_on_start.insert(app.to_lowercase(), stay_crashed);
            }
            FaultSpec::NeverHealthy {
                app,
                health_check_timeout_ms,
            } => {
                self.never_healthy.insert(
                    app.to_lowercase(),
                    Duration::from_millis(health_check_timeout_ms),
                );
            }
            // Actions on the model, handled by `apply_spec`.
            FaultSpec::CrashInstance { .. } | FaultSpec::SetQuota { .. } => {}
            FaultSpec::OptionalApiUnavailable { api, mode } => {
                self.optional.insert(api, mode);
            }
            FaultSpec::Http5xxShare {
                app,
                percent,
                status,
            } => {
                let status = if (500..=599).contains(&status) {
                    status
                } else {
                    500
                };
                self.http_5xx
                    .insert(app.to_lowercase(), (percent.min(100), status));
            }
            FaultSpec::SlowResponses { app, delay_ms } => {
                self.slow_responses
                    .insert(app.to_lowercase(), Duration::from_millis(delay_ms));
            }
            FaultSpec::SlowStaging { app, ms } => {
                self.slow_staging
                    .insert(app.to_lowercase(), Duration::from_millis(ms));
            }
            FaultSpec::SlowStart { app, ms } => {
                self.slow_start
                    .insert(app.to_lowercase(), Duration::from_millis(ms));
            }
            FaultSpec::Unhealthy { app } => {
                self.unhealthy.insert(app.to_lowercase());
            }
            FaultSpec::FailJobs { operation, detail } => {
                self.failing_jobs.insert(operation, detail);
            }
            FaultSpec::PlacementError { app, details } => {
                self.placement.insert(app.to_lowercase(), details);
            }
            FaultSpec::FailTask { app, status } => {
                self.fail_task.insert(app.to_lowercase(), status);
            }
            FaultSpec::HangTask { app } => {
                self.hang_task.insert(app.to_lowercase());
            }
            FaultSpec::Warning { text } => self.warnings.push(text),
            FaultSpec::Evacuate { app, unclaimed_ms } => {
                self.evacuate
                    .insert(app.to_lowercase(), Duration::from_millis(unclaimed_ms));
            }
            FaultSpec::Outage { ms, reset } => {
                self.outage = std::time::Instant::now()
                    .checked_add(Duration::from_millis(ms))
                    .map(|until| (until, reset));
            }
            FaultSpec::RateLimit { times, retry_after } => {
                self.rate_limit = (times > 0).then_some((times, retry_after));
            }
        }
    }
}

/// Applies a fault to the model: one-shot actions act on the instances, the rest become
/// switches in `st.faults`.
pub(crate) fn apply_spec(st: &mut State, space_guid: &str, spec: FaultSpec) {
    if let FaultSpec::SetQuota { scope, quota } = spec {
        super::quotas::set_quota(st, scope, space_guid, quota);
        return;
    }
    if let FaultSpec::CrashInstance {
        app,
        index,
        exit_description,
    } = &spec
    {
        let Some(app_guid) = st
            .apps
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(app))
            .map(|a| a.meta.guid.clone())
        else {
            return;
        };
        let Some(pguid) = st
            .newest_process(&app_guid, "web")
            .map(|p| p.meta.guid.clone())
        else {
            return;
        };
        if let Some(i) = st
            .instances
            .iter_mut()
            .find(|i| i.process_guid == pguid && i.index == *index)
        {
            i.crash_reason = Some(
                exit_description
                    .clone()
                    .unwrap_or_else(|| "APP/PROC/WEB: Exited with status 1".to_string()),
            );
            i.crash.cancel();
        }
        return;
    }
    st.faults.apply(spec);
}

/// The Rust fault-injection API (`SimHandle::faults()`).
#[derive(Clone)]
pub struct FaultInjector {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for FaultInjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultInjector")
    }
}

impl FaultInjector {
    /// Applies any fault.
    pub fn apply(&self, spec: FaultSpec) {
        apply_spec(&mut self.shared.lock(), &self.shared.space_guid, spec);
    }

    /// Sets the seeded space's (or org's) quota; `None` removes the space quota (the org gets
    /// an unlimited one). See [`FaultSpec::SetQuota`].
    pub fn set_quota(
        &self,
        scope: super::quotas::QuotaScope,
        quota: Option<super::quotas::QuotaSpec>,
    ) {
        self.apply(FaultSpec::SetQuota { scope, quota });
    }

    /// The `nth` (1-based, counted from now) call to `method` + `path` pattern fails with `status`.
    pub fn fail_nth(&self, method: &str, path: &str, nth: u32, status: u16) {
        self.apply(FaultSpec::FailCalls(FailRule {
            method: method.to_string(),
            path: path.to_string(),
            nth,
            times: 1,
            status,
            retry_after: None,
        }));
    }

    /// Every build of `app` fails with `message` (default: a CC staging error).
    pub fn fail_staging(&self, app: &str, message: Option<&str>) {
        self.apply(FaultSpec::FailStaging {
            app: app.to_string(),
            message: message.map(str::to_string),
        });
    }

    /// Every instance of `app` crashes while starting (and is restarted like Diego does).
    pub fn crash_on_start(&self, app: &str) {
        self.apply(FaultSpec::CrashOnStart {
            app: app.to_string(),
            stay_crashed: false,
        });
    }

    /// Every instance of `app` crashes while starting and stays CRASHED until the fault is
    /// cleared (the simulator's old crash model).
    pub fn crash_and_stay_crashed(&self, app: &str) {
        self.apply(FaultSpec::CrashOnStart {
            app: app.to_string(),
            stay_crashed: true,
        });
    }

    /// Instances of `app` never pass their start-up health check; each is killed and
    /// restarted after `timeout`.
    pub fn never_healthy(&self, app: &str, timeout: Duration) {
        self.apply(FaultSpec::NeverHealthy {
            app: app.to_string(),
            health_check_timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        });
    }

    /// Instance `index` of `app` crashes now (exits with `APP/PROC/WEB: Exited with status 1`).
    pub fn crash_instance(&self, app: &str, index: u32) {
        self.apply(FaultSpec::CrashInstance {
            app: app.to_string(),
            index,
            exit_description: None,
        });
    }

    /// An optional API (audit events, log-cache, network policies) fails with `mode`.
    pub fn optional_api(&self, api: OptionalApi, mode: Unavailable) {
        self.apply(FaultSpec::OptionalApiUnavailable { api, mode });
    }

    /// `app` answers `percent` % of routed requests with 500.
    pub fn http_5xx_share(&self, app: &str, percent: u8) {
        self.apply(FaultSpec::Http5xxShare {
            app: app.to_string(),
            percent,
            status: 500,
        });
    }

    /// `app` answers routed requests `delay` later.
    pub fn slow_responses(&self, app: &str, delay: Duration) {
        self.apply(FaultSpec::SlowResponses {
            app: app.to_string(),
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        });
    }

    /// Staging of `app` takes `extra` longer.
    pub fn slow_staging(&self, app: &str, extra: Duration) {
        self.apply(FaultSpec::SlowStaging {
            app: app.to_string(),
            ms: u64::try_from(extra.as_millis()).unwrap_or(u64::MAX),
        });
    }

    /// Instances of `app` take `extra` longer to start.
    pub fn slow_start(&self, app: &str, extra: Duration) {
        self.apply(FaultSpec::SlowStart {
            app: app.to_string(),
            ms: u64::try_from(extra.as_millis()).unwrap_or(u64::MAX),
        });
    }

    /// Tasks of `app` fail: they exit with `status` instead of running their command.
    pub fn fail_task(&self, app: &str, status: i32) {
        self.apply(FaultSpec::FailTask {
            app: app.to_string(),
            status,
        });
    }

    /// Tasks of `app` never end (until cancelled).
    pub fn hang_task(&self, app: &str) {
        self.apply(FaultSpec::HangTask {
            app: app.to_string(),
        });
    }

    /// Static-file instances of `app` answer `/health` with 500.
    pub fn unhealthy(&self, app: &str) {
        self.apply(FaultSpec::Unhealthy {
            app: app.to_string(),
        });
    }

    /// Jobs of `operation` (e.g. `space.apply_manifest`) end FAILED with `detail`.
    pub fn fail_jobs(&self, operation: &str, detail: &str) {
        self.apply(FaultSpec::FailJobs {
            operation: operation.to_string(),
            detail: detail.to_string(),
        });
    }

    /// Instances of `app` cannot be placed and stay STARTING with `details`.
    pub fn placement_error(&self, app: &str, details: &str) {
        self.apply(FaultSpec::PlacementError {
            app: app.to_string(),
            details: details.to_string(),
        });
    }

    /// Diego evacuates the app's cell now (see [`FaultSpec::Evacuate`]).
    pub fn evacuate(&self, app: &str) {
        self.apply(FaultSpec::Evacuate {
            app: app.to_string(),
            unclaimed_ms: three_hundred(),
        });
    }

    /// Cloud Controller and UAA are unreachable for `d` from now (503 `no_endpoints`, or
    /// reset connections).
    pub fn outage(&self, d: Duration, reset: bool) {
        self.apply(FaultSpec::Outage {
            ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            reset,
        });
    }

    /// The next `times` API requests get 429 with `Retry-After: retry_after`.
    pub fn rate_limit(&self, times: u32, retry_after: u64) {
        self.apply(FaultSpec::RateLimit { times, retry_after });
    }

    /// Every API response carries `text` in `X-Cf-Warnings`.
    pub fn warning(&self, text: &str) {
        self.apply(FaultSpec::Warning {
            text: text.to_string(),
        });
    }

    /// Removes every fault.
    pub fn clear(&self) {
        self.shared.lock().faults = Faults::default();
    }
}

/// The admin routes (`/_sim/...`), mounted only when the admin API is enabled.
pub(crate) fn admin_routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/state", get(state_dump))
        .route("/_sim/calls", get(calls).delete(clear_calls))
        .route("/_sim/router", get(router_table))
        .route(
            "/_sim/faults",
            axum::routing::post(add_fault).delete(clear_faults),
        )
}

async fn state_dump(AxState(s): AxState<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(s.state_dump())
}

async fn calls(AxState(s): AxState<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(serde_json::to_value(s.lock().calls.clone()).unwrap_or_default())
}

async fn clear_calls(AxState(s): AxState<Arc<Shared>>) -> StatusCode {
    s.lock().calls.clear();
    StatusCode::NO_CONTENT
}

async fn router_table(AxState(s): AxState<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(s.router.dump())
}

async fn add_fault(AxState(s): AxState<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<FaultSpec>(&body) {
        Ok(spec) => {
            apply_spec(&mut s.lock(), &s.space_guid, spec);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": format!("invalid fault: {e}")})),
        )
            .into_response(),
    }
}

async fn clear_faults(AxState(s): AxState<Arc<Shared>>) -> StatusCode {
    s.lock().faults = Faults::default();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_call_fails_once() {
        let mut f = Faults::default();
        f.apply(FaultSpec::FailCalls(FailRule {
            method: "POST".into(),
            path: "/v3/builds".into(),
            nth: 2,
            times: 1,
            status: 500,
            retry_after: None,
        }));
        assert_eq!(f.check_call("POST", "/v3/builds"), None);
        assert_eq!(f.check_call("GET", "/v3/builds"), None);
        assert_eq!(f.check_call("POST", "/v3/builds"), Some((500, None)));
        assert_eq!(f.check_call("POST", "/v3/builds"), None);
    }

    #[test]
    fn http_5xx_share_is_exact() {
        let mut f = Faults::default();
        f.apply(FaultSpec::Http5xxShare {
            app: "A".into(),
            percent: 25,
            status: 503,
        });
        let failed = (0..100).filter(|_| f.http_failure("a").is_some()).count();
        assert_eq!(failed, 25);
        assert_eq!(f.http_failure("other"), None);
    }

    #[test]
    fn fault_specs_parse_from_json() {
        let spec: FaultSpec =
            serde_json::from_str(r#"{"kind":"crash_on_start","app":"web"}"#).unwrap();
        assert_eq!(
            spec,
            FaultSpec::CrashOnStart {
                app: "web".into(),
                stay_crashed: false
            }
        );
        let spec: FaultSpec = serde_json::from_str(
            r#"{"kind":"optional_api_unavailable","api":"log_cache","mode":"absent"}"#,
        )
        .unwrap();
        assert_eq!(
            spec,
            FaultSpec::OptionalApiUnavailable {
                api: OptionalApi::LogCache,
                mode: Unavailable::Absent
            }
        );
        let spec: FaultSpec = serde_json::from_str(
            r#"{"kind":"fail_calls","method":"GET","path":"/v3/apps","nth":1,"status":503}"#,
        )
        .unwrap();
        assert!(matches!(
            spec,
            FaultSpec::FailCalls(FailRule { times: 1, .. })
        ));
    }
}
