//! Processes: list/get/update, scale, stats (per-instance state from the instance model),
//! sidecars (always none), and killing one instance.
//!
//! Depends on: `api` helpers, `state`, `instances`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use serde_json::{Value, json};

use super::apps::find_app;
use super::{
    ApiError, ApiResult, JsonBody, Q, SharedState, href, merge_metadata, metadata, ok, order,
    paginate, parse_json, selector_matches,
};
use crate::sim::Shared;
use crate::sim::instances;
use crate::sim::state::{HealthCheck, InstState, Process, State};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v3/processes", get(list_processes))
        .route(
            "/v3/processes/{guid}",
            get(get_process).patch(update_process),
        )
        .route("/v3/processes/{guid}/actions/scale", post(scale_process))
        .route("/v3/processes/{guid}/stats", get(process_stats))
        .route("/v3/processes/{guid}/sidecars", get(sidecars))
        .route("/v3/apps/{guid}/processes", get(app_processes))
        .route("/v3/apps/{guid}/processes/{kind}", get(app_process))
        .route(
            "/v3/apps/{guid}/processes/{kind}/actions/scale",
            post(app_process_scale),
        )
        .route(
            "/v3/apps/{guid}/processes/{kind}/stats",
            get(app_process_stats),
        )
        .route(
            "/v3/apps/{guid}/processes/{kind}/instances/{index}",
            delete(kill_instance),
        )
}

fn present_check(h: &HealthCheck, liveness: bool) -> Value {
    let mut data = json!({"invocation_timeout": h.invocation_timeout, "interval": h.interval});
    if liveness {
        data["timeout"] = json!(h.timeout);
    }
    if h.kind == "http" {
        data["endpoint"] = json!(h.endpoint.clone().unwrap_or_else(|| "/".to_string()));
    }
    json!({"type": h.kind, "data": data})
}

/// The CC process object. In lists CC hides the command.
pub(crate) fn present_process(base: &str, st: &State, p: &Process, in_list: bool) -> Value {
    let g = &p.meta.guid;
    let space = st
        .app(&p.app_guid)
        .map(|a| a.space_guid.clone())
        .unwrap_or_default();
    let command = st.effective_command(p).map(|c| {
        if in_list {
            "[PRIVATE DATA HIDDEN IN LISTS]".to_string()
        } else {
            c
        }
    });
    json!({
        "guid": g, "type": p.kind, "command": command, "user": "vcap",
        "instances": p.instances, "memory_in_mb": p.memory_mb, "disk_in_mb": p.disk_mb,
        "log_rate_limit_in_bytes_per_second": p.log_rate,
        "health_check": present_check(&p.health, true),
        "readiness_health_check": present_check(&p.readiness, false),
        // Cloud Controller sends `"revision": null` (not `{"data": null}`) for a process
        // without a revision, e.g. a candidate app created moments ago.
        "relationships": {"app": {"data": {"guid": p.app_guid}}, "revision": null},
        "metadata": metadata(&p.meta),
        "created_at": p.meta.created_at, "updated_at": p.meta.updated_at,
        "version": p.version,
        "links": {
            "self": href(format!("{base}/v3/processes/{g}")),
            "scale": {"href": format!("{base}/v3/processes/{g}/actions/scale"), "method": "POST"},
            "app": href(format!("{base}/v3/apps/{}", p.app_guid)),
            "space": href(format!("{base}/v3/spaces/{space}")),
            "stats": href(format!("{base}/v3/processes/{g}/stats")),
        },
    })
}

fn find_process<'a>(st: &'a State, guid: &str) -> Result<&'a Process, ApiError> {
    st.process(guid)
        .ok_or_else(|| ApiError::not_found("Process"))
}

fn find_typed(st: &State, app: &str, kind: &str) -> Result<String, ApiError> {
    find_app(st, app)?;
    st.newest_process(app, kind)
        .map(|p| p.meta.guid.clone())
        .ok_or_else(|| ApiError::not_found("Process"))
}

async fn list_processes(AxState(s): SharedState, q: Q) -> ApiResult {
    let mut items = Vec::new();
    {
        let st = s.lock();
        for p in &st.processes {
            let space = st
                .app(&p.app_guid)
                .map(|a| a.space_guid.as_str())
                .unwrap_or("");
            if q.accepts("app_guids", &p.app_guid)
                && q.accepts("guids", &p.meta.guid)
                && q.accepts("types", &p.kind)
                && q.accepts("space_guids", space)
                && selector_matches(q.get("label_selector"), &p.meta.labels)?
            {
                items.push(present_process(&s.base_url, &st, p, true));
            }
        }
    }
    order(&mut items, &q)?;
    paginate(&s.base_url, "/v3/processes", &q, items)
}

async fn app_processes(AxState(s): SharedState, Path(guid): Path<String>, q: Q) -> ApiResult {
    let items: Vec<Value> = {
        let st = s.lock();
        find_app(&st, &guid)?;
        st.app_processes(&guid)
            .into_iter()
            .filter(|p| q.accepts("types", &p.kind))
            .map(|p| present_process(&s.base_url, &st, p, true))
            .collect()
    };
    paginate(
        &s.base_url,
        &format!("/v3/apps/{guid}/processes"),
        &q,
        items,
    )
}

async fn get_process(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    ok(present_process(
        &s.base_url,
        &st,
        find_process(&st, &guid)?,
        false,
    ))
}

async fn app_process(
    AxState(s): SharedState,
    Path((app, kind)): Path<(String, String)>,
) -> ApiResult {
    let st = s.lock();
    let guid = find_typed(&st, &app, &kind)?;
    ok(present_process(
        &s.base_url,
        &st,
        find_process(&st, &guid)?,
        false,
    ))
}

/// Applies a `health_check` / `readiness_health_check` object.
pub(crate) fn apply_check(h: &mut HealthCheck, v: &Value, liveness: bool) -> Result<(), ApiError> {
    if let Some(kind) = v["type"].as_str() {
        let kind = if kind == "none" { "process" } else { kind };
        if !matches!(kind, "port" | "process" | "http") {
            return Err(ApiError::unprocessable(
                "Health check type must be \"port\", \"process\", or \"http\"",
            ));
        }
        h.kind = kind.to_string();
    }
    let data = &v["data"];
    let num = |key: &str| -> Result<Option<Option<u64>>, ApiError> {
        match data.get(key) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(x) => x
                .as_u64()
                .filter(|n| *n >= 1)
                .map(|n| Some(Some(n)))
                .ok_or_else(|| {
                    ApiError::unprocessable(format!(
                        "Health check {key} must be greater than or equal to 1"
                    ))
                }),
        }
    };
    if liveness && let Some(t) = num("timeout")? {
        h.timeout = t;
    }
    if let Some(t) = num("invocation_timeout")? {
        h.invocation_timeout = t;
    }
    if let Some(t) = num("interval")? {
        h.interval = t;
    }
    match data.get("endpoint") {
        Some(Value::String(e)) => h.endpoint = Some(e.clone()),
        Some(Value::Null) => h.endpoint = None,
        _ => {}
    }
    Ok(())
}

async fn update_process(
    AxState(s): SharedState,
    Path(guid): Path<String>,
    JsonBody(v): JsonBody,
) -> ApiResult {
    let mut st = s.lock();
    find_process(&st, &guid)?;
    let p = st
        .process_mut(&guid)
        .ok_or_else(|| ApiError::not_found("Process"))?;
    let mut updated = p.clone();
    match v.get("command") {
        Some(Value::String(c)) if !c.is_empty() => updated.command = Some(c.clone()),
        Some(Value::Null) => updated.command = None,
        Some(_) => {
            return Err(ApiError::unprocessable(
                "Command must be between 1 and 4096 characters",
            ));
        }
        None => {}
    }
    if v["health_check"].is_object() {
        apply_check(&mut updated.health, &v["health_check"], true)?;
    }
    if v["readiness_health_check"].is_object() {
        apply_check(&mut updated.readiness, &v["readiness_health_check"], false)?;
    }
    merge_metadata(&mut updated.meta, &v);
    updated.meta.touch();
    *p = updated;
    let p = find_process(&st, &guid)?;
    ok(present_process(&s.base_url, &st, p, false))
}

/// Instances per process the simulator accepts (each one is a real server on loopback).
pub(crate) const MAX_INSTANCES: u32 = 200;

/// Applies a scale body (`instances`, `memory_in_mb`, `disk_in_mb`, log rate).
pub(crate) fn apply_scale(p: &mut Process, v: &Value) -> Result<(), ApiError> {
    if let Some(i) = v.get("instances").filter(|i| !i.is_null()) {
        let n = i
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                ApiError::unprocessable("Instances must be greater than or equal to 0")
            })?;
        if n > MAX_INSTANCES {
            return Err(ApiError::unprocessable(format!(
                "Instances must be less than or equal to {MAX_INSTANCES} (a limit of the simulator)"
            )));
        }
        p.instances = n;
    }
    if let Some(m) = v.get("memory_in_mb").filter(|i| !i.is_null()) {
        p.memory_mb = m
            .as_u64()
            .filter(|m| *m > 0)
            .ok_or_else(|| ApiError::unprocessable("Memory in mb must be greater than 0"))?;
    }
    if let Some(d) = v.get("disk_in_mb").filter(|i| !i.is_null()) {
        p.disk_mb = d
            .as_u64()
            .filter(|d| *d > 0)
            .ok_or_else(|| ApiError::unprocessable("Disk in mb must be greater than 0"))?;
    }
    if let Some(l) = v
        .get("log_rate_limit_in_bytes_per_second")
        .filter(|i| !i.is_null())
    {
        p.log_rate = l.as_i64().filter(|l| *l >= -1).ok_or_else(|| {
            ApiError::unprocessable(
                "Log rate limit in bytes per second must be greater than or equal to -1",
            )
        })?;
    }
    p.meta.touch();
    Ok(())
}

fn scale(s: &Shared, guid: &str, v: &Value) -> ApiResult {
    let mut st = s.lock();
    let before = find_process(&st, guid)?.clone();
    let mut updated = before.clone();
    apply_scale(&mut updated, v)?;
    crate::sim::quotas::check_scale(&st, &before, &updated).map_err(ApiError::unprocessable)?;
    if let Some(p) = st.process_mut(guid) {
        *p = updated;
    }
    let p = find_process(&st, guid)?;
    let body = present_process(&s.base_url, &st, p, false);
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

async fn scale_process(
    AxState(s): SharedState,
    Path(guid): Path<String>,
    JsonBody(v): JsonBody,
) -> ApiResult {
    scale(&s, &guid, &v)
}

async fn app_process_scale(
    AxState(s): SharedState,
    Path((app, kind)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let guid = find_typed(&s.lock(), &app, &kind)?;
    scale(&s, &guid, &parse_json(&body)?)
}

/// The stats resources of a process.
pub(crate) fn stats(st: &State, p: &Process) -> Vec<Value> {
    let running_app = st
        .app(&p.app_guid)
        .is_some_and(|a| a.started && a.droplet_guid.is_some());
    (0..p.instances)
        .map(|index| {
            // An evacuating instance is not in the stats: its replacement is (UNCLAIMED,
            // without a GUID, until it is placed).
            let inst = st.instances.iter().find(|i| {
                i.process_guid == p.meta.guid && i.index == index && !i.evacuating
            });
            let unclaimed = |i: &crate::sim::state::Instance| {
                i.unclaimed_until
                    .is_some_and(|t| t > std::time::Instant::now())
            };
            let (state, routable, port, uptime, details, guid) = match inst {
                Some(i) if unclaimed(i) => {
                    ("STARTING", false, None, 0, None, String::new())
                }
                Some(i) => (
                    i.state.as_str(),
                    i.state == InstState::Running && i.routable,
                    i.port,
                    crate::sim::util::unix_now().saturating_sub(i.since),
                    i.details.clone(),
                    i.guid.clone(),
                ),
                None if running_app => ("STARTING", false, None, 0, None, String::new()),
                None => ("DOWN", false, None, 0, None, String::new()),
            };
            let up = state == "RUNNING";
            json!({
                "type": p.kind, "index": index, "instance_guid": guid, "state": state,
                "routable": routable,
                "usage": {"time": crate::sim::util::now_rfc3339(), "cpu": 0.0, "cpu_entitlement": 0.0,
                          "mem": 0, "disk": 0, "log_rate": 0},
                "host": if up { "127.0.0.1" } else { "" },
                "instance_internal_ip": if up { "127.0.0.1" } else { "" },
                "instance_ports": port.filter(|_| up).map(|port| json!([{"external": port, "internal": 8080,
                    "external_tls_proxy_port": null, "internal_tls_proxy_port": null}])),
                "uptime": uptime, "mem_quota": p.memory_mb.saturating_mul(1024 * 1024),
                "disk_quota": p.disk_mb.saturating_mul(1024 * 1024), "fds_quota": 16384,
                "isolation_segment": null, "log_rate_limit": if p.log_rate < 0 { Value::Null } else { json!(p.log_rate) },
                "details": details,
            })
        })
        .collect()
}

async fn process_stats(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    let p = find_process(&st, &guid)?;
    ok(json!({ "resources": stats(&st, p) }))
}

async fn app_process_stats(
    AxState(s): SharedState,
    Path((app, kind)): Path<(String, String)>,
) -> ApiResult {
    let st = s.lock();
    let guid = find_typed(&st, &app, &kind)?;
    ok(json!({ "resources": stats(&st, find_process(&st, &guid)?) }))
}

async fn sidecars(AxState(s): SharedState, Path(guid): Path<String>, q: Q) -> ApiResult {
    find_process(&s.lock(), &guid)?;
    paginate(
        &s.base_url,
        &format!("/v3/processes/{guid}/sidecars"),
        &q,
        Vec::new(),
    )
}

async fn kill_instance(
    AxState(s): SharedState,
    Path((app, kind, index)): Path<(String, String, u32)>,
) -> ApiResult {
    let mut st = s.lock();
    let guid = find_typed(&st, &app, &kind)?;
    if !st
        .instances
        .iter()
        .any(|i| i.process_guid == guid && i.index == index)
    {
        return Err(ApiError::not_found("Instance"));
    }
    instances::stop_matching(&mut st, |i| i.process_guid == guid && i.index == index);
    Ok(StatusCode::NO_CONTENT.into_response())
}
