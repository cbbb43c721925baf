//! Audit events (`GET /v3/audit_events`, `GET /v3/audit_events/:guid`) and log-cache's
//! read API (`GET /api/v1/info`, `GET /api/v1/read/:source_id`), each of which an
//! `OptionalApiUnavailable` fault can turn into a 403 or 404.
//!
//! Audit event filters: `types`, `target_guids`, `space_guids`, `organization_guids`,
//! `created_ats` (a list of exact timestamps) and `created_ats[lt|lte|gt|gte]`
//! (`YYYY-MM-DDThh:mm:ssZ`, CC's format; fractional seconds are accepted), `order_by`,
//! pagination. Log-cache read parameters: `start_time` (inclusive, ns, default 0),
//! `end_time` (exclusive, ns, default now), `envelope_types` (repeated or comma-separated:
//! `LOG`, `TIMER`, `GAUGE`, `COUNTER`, `EVENT`), `limit` (1..=1000, default 100),
//! `descending`.
//!
//! Depends on: `api` helpers, `state`, `telemetry`, `faults`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, Q, SharedState, ok, order, paginate};
use crate::sim::Shared;
use crate::sim::fault_switches::{OptionalApi, Unavailable};
use crate::sim::telemetry::{ReadQuery, now_ns, parse_timestamp};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v3/audit_events", get(list_events))
        .route("/v3/audit_events/{guid}", get(get_event))
        .route("/api/v1/info", get(log_cache_info))
        .route("/api/v1/read/{source_id}", get(log_cache_read))
}

/// The fault mode of an optional API, if any.
pub(crate) fn unavailable(s: &Shared, api: OptionalApi) -> Option<Unavailable> {
    s.lock().faults.optional.get(&api).copied()
}

/// CC's answer when audit events are denied (403) or not offered (404).
fn audit_refused(mode: Unavailable) -> ApiError {
    match mode {
        Unavailable::Forbidden => ApiError::for_status(403, None),
        Unavailable::NotFound | Unavailable::Absent => ApiError::unknown_request(),
    }
}

/// `(op, bound in ns)` pairs of the `created_ats[...]` filters; exact values as `eq`.
fn time_filters(q: &Q) -> Result<Vec<(&'static str, i128)>, ApiError> {
    let mut out = Vec::new();
    let bad = || {
        ApiError::bad_query(
            "Created ats has an invalid timestamp format. Timestamps should be formatted as 'YYYY-MM-DDThh:mm:ssZ'",
        )
    };
    for (op, key) in [
        ("lt", "created_ats[lt]"),
        ("lte", "created_ats[lte]"),
        ("gt", "created_ats[gt]"),
        ("gte", "created_ats[gte]"),
    ] {
        if let Some(v) = q.get(key) {
            out.push((op, parse_timestamp(v).ok_or_else(bad)?));
        }
    }
    if let Some(list) = q.list("created_ats") {
        for v in list {
            out.push(("eq", parse_timestamp(&v).ok_or_else(bad)?));
        }
    }
    Ok(out)
}

async fn list_events(AxState(s): SharedState, q: Q) -> ApiResult {
    if let Some(mode) = unavailable(&s, OptionalApi::AuditEvents) {
        return Err(audit_refused(mode));
    }
    let bounds = time_filters(&q)?;
    let exact: Vec<i128> = bounds
        .iter()
        .filter(|(op, _)| *op == "eq")
        .map(|(_, t)| *t)
        .collect();
    let mut items: Vec<Value> = {
        let st = s.lock();
        st.audit_events
            .iter()
            .filter(|e| {
                let at = i128::from(e.created) * 1_000_000_000;
                q.accepts("types", &e.kind)
                    && q.accepts("target_guids", e.target["guid"].as_str().unwrap_or(""))
                    && q.accepts("space_guids", &e.space_guid)
                    && q.accepts("organization_guids", &e.org_guid)
                    && (exact.is_empty() || exact.contains(&at))
                    && bounds.iter().all(|(op, t)| match *op {
                        "lt" => at < *t,
                        "lte" => at <= *t,
                        "gt" => at > *t,
                        "gte" => at >= *t,
                        _ => true,
                    })
            })
            .map(|e| e.to_json(&s.base_url))
            .collect()
    };
    order(&mut items, &q)?;
    paginate(&s.base_url, "/v3/audit_events", &q, items)
}

async fn get_event(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    if let Some(mode) = unavailable(&s, OptionalApi::AuditEvents) {
        return Err(audit_refused(mode));
    }
    let st = s.lock();
    let e = st
        .audit_events
        .iter()
        .find(|e| e.guid == guid)
        .ok_or_else(|| ApiError::not_found("Event"))?;
    ok(e.to_json(&s.base_url))
}

/// log-cache's answer when it is denied or missing.
fn log_cache_refused(mode: Unavailable) -> Response {
    match mode {
        Unavailable::Forbidden => (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"error": "forbidden", "message": "token does not grant access to this source id"})),
        )
            .into_response(),
        Unavailable::NotFound | Unavailable::Absent => {
            (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
        }
    }
}

fn log_cache_error(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": message, "code": 3, "message": message})),
    )
        .into_response()
}

async fn log_cache_info(AxState(s): SharedState) -> Response {
    if let Some(mode) = unavailable(&s, OptionalApi::LogCache) {
        return log_cache_refused(mode);
    }
    axum::Json(json!({"version": "2.11.4", "vm_uptime": "0"})).into_response()
}

async fn log_cache_read(AxState(s): SharedState, Path(source_id): Path<String>, q: Q) -> Response {
    if let Some(mode) = unavailable(&s, OptionalApi::LogCache) {
        return log_cache_refused(mode);
    }
    let int = |key: &str| -> Result<Option<i64>, String> {
        q.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| format!("{key} must be an integer, got '{v}'"))
            })
            .transpose()
    };
    let start_time = match int("start_time") {
        Ok(v) => v.unwrap_or(0),
        Err(m) => return log_cache_error(m),
    };
    let end_time = match int("end_time") {
        Ok(v) => v.unwrap_or_else(|| now_ns().saturating_add(1)),
        Err(m) => return log_cache_error(m),
    };
    let limit = match int("limit") {
        Ok(None) => 100,
        Ok(Some(n)) if (1..=1000).contains(&n) => usize::try_from(n).unwrap_or(100),
        Ok(Some(_)) => return log_cache_error("limit must be between 1 and 1000".to_string()),
        Err(m) => return log_cache_error(m),
    };
    let descending = match q.get("descending") {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(v) => return log_cache_error(format!("descending must be a boolean, got '{v}'")),
    };
    let mut types = Vec::new();
    for (k, v) in &q.0 {
        if k == "envelope_types" {
            for t in v.split(',').filter(|t| !t.is_empty()) {
                let t = t.to_ascii_uppercase();
                if !matches!(
                    t.as_str(),
                    "LOG" | "TIMER" | "GAUGE" | "COUNTER" | "EVENT" | "ANY"
                ) {
                    return log_cache_error(format!("unknown envelope type '{t}'"));
                }
                if t != "ANY" {
                    types.push(t);
                }
            }
        }
    }
    let read = ReadQuery {
        start_time,
        end_time: Some(end_time),
        types,
        limit,
        descending,
    };
    let batch: Vec<Value> = {
        let st = s.lock();
        st.logs
            .read(&source_id, &read)
            .into_iter()
            .map(|e| e.to_json())
            .collect()
    };
    axum::Json(json!({"envelopes": {"batch": batch}})).into_response()
}
