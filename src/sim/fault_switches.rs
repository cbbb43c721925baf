//! The fault switches the model keeps (`State::faults`): which calls fail, which apps crash,
//! hang, answer slowly or fail their tasks, which optional APIs are missing, and the outage
//! and rate limit. `faults.rs` turns a `FaultSpec` into these switches;
//! the API, router, staging, instances and tasks ask them.
//!
//! Depends on: `util`. Must not: do I/O.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
}
