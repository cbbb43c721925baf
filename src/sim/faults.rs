//! Fault injection and introspection: the rules that make API calls fail, staging fail,
//! instances crash or turn unhealthy, and the small admin HTTP API (`/_sim/...` on the API
//! port, only when `SimConfig::admin_api` is set) that exposes the same switches plus a state
//! dump and the API call log. The admin API needs an admin access token from the
//! simulator's UAA (`Authorization: bearer ...`, as `SimHandle::token()` gives). Tests use the Rust side ([`FaultInjector`]) through
//! `SimHandle::faults()`.
//!
//! Depends on: `state`, `fault_switches`, `quotas`, `mod.rs` (`Shared`). Must not: be reachable when the admin API is off.

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
use super::fault_switches::{ActiveRule, FailRule, Faults, OptionalApi, Unavailable};
use super::quotas::{self, QuotaScope};
use super::state::{QuotaSpec, State};

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
        scope: QuotaScope,
        /// The limits, `None` to remove.
        #[serde(default)]
        quota: Option<QuotaSpec>,
    },
}

/// Sets the switch a fault asks for (one-shot actions and the quota setting act on the model
/// instead: see `apply_spec`).
fn switch_on(f: &mut Faults, spec: FaultSpec) {
    match spec {
        FaultSpec::FailCalls(rule) => f.rules.push(ActiveRule { rule, seen: 0 }),
        FaultSpec::FailStaging { app, message } => {
            let msg = message
                .unwrap_or_else(|| "StagingError - Staging error: staging failed".to_string());
            f.staging.insert(app.to_lowercase(), msg);
        }
        FaultSpec::CrashOnStart { app, stay_crashed } => {
            f.crash_on_start.insert(app.to_lowercase(), stay_crashed);
        }
        FaultSpec::NeverHealthy {
            app,
            health_check_timeout_ms,
        } => {
            f.never_healthy.insert(
                app.to_lowercase(),
                Duration::from_millis(health_check_timeout_ms),
            );
        }
        // Actions on the model, handled by `apply_spec`.
        FaultSpec::CrashInstance { .. } | FaultSpec::SetQuota { .. } => {}
        FaultSpec::OptionalApiUnavailable { api, mode } => {
            f.optional.insert(api, mode);
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
            f.http_5xx
                .insert(app.to_lowercase(), (percent.min(100), status));
        }
        FaultSpec::SlowResponses { app, delay_ms } => {
            f.slow_responses
                .insert(app.to_lowercase(), Duration::from_millis(delay_ms));
        }
        FaultSpec::SlowStaging { app, ms } => {
            f.slow_staging
                .insert(app.to_lowercase(), Duration::from_millis(ms));
        }
        FaultSpec::SlowStart { app, ms } => {
            f.slow_start
                .insert(app.to_lowercase(), Duration::from_millis(ms));
        }
        FaultSpec::Unhealthy { app } => {
            f.unhealthy.insert(app.to_lowercase());
        }
        FaultSpec::FailJobs { operation, detail } => {
            f.failing_jobs.insert(operation, detail);
        }
        FaultSpec::PlacementError { app, details } => {
            f.placement.insert(app.to_lowercase(), details);
        }
        FaultSpec::FailTask { app, status } => {
            f.fail_task.insert(app.to_lowercase(), status);
        }
        FaultSpec::HangTask { app } => {
            f.hang_task.insert(app.to_lowercase());
        }
        FaultSpec::Warning { text } => f.warnings.push(text),
        FaultSpec::Evacuate { app, unclaimed_ms } => {
            f.evacuate
                .insert(app.to_lowercase(), Duration::from_millis(unclaimed_ms));
        }
        FaultSpec::Outage { ms, reset } => {
            f.outage = std::time::Instant::now()
                .checked_add(Duration::from_millis(ms))
                .map(|until| (until, reset));
        }
        FaultSpec::RateLimit { times, retry_after } => {
            f.rate_limit = (times > 0).then_some((times, retry_after));
        }
    }
}

/// Applies a fault to the model: one-shot actions act on the instances, the rest become
/// switches in `st.faults`.
pub(crate) fn apply_spec(st: &mut State, space_guid: &str, spec: FaultSpec) {
    if let FaultSpec::SetQuota { scope, quota } = spec {
        quotas::set_quota(st, scope, space_guid, quota);
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
    switch_on(&mut st.faults, spec);
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
    pub fn set_quota(&self, scope: QuotaScope, quota: Option<QuotaSpec>) {
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
        switch_on(
            &mut f,
            FaultSpec::FailCalls(FailRule {
                method: "POST".into(),
                path: "/v3/builds".into(),
                nth: 2,
                times: 1,
                status: 500,
                retry_after: None,
            }),
        );
        assert_eq!(f.check_call("POST", "/v3/builds"), None);
        assert_eq!(f.check_call("GET", "/v3/builds"), None);
        assert_eq!(f.check_call("POST", "/v3/builds"), Some((500, None)));
        assert_eq!(f.check_call("POST", "/v3/builds"), None);
    }

    #[test]
    fn http_5xx_share_is_exact() {
        let mut f = Faults::default();
        switch_on(
            &mut f,
            FaultSpec::Http5xxShare {
                app: "A".into(),
                percent: 25,
                status: 503,
            },
        );
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
