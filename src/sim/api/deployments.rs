//! Deployments: create (validation as CC), get, list, continue and cancel. The rollout itself
//! is driven by `sim::deployments::advance` on every reconcile tick.
//!
//! Depends on: `api` helpers, `state`, `sim::deployments`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{
    ApiError, ApiResult, JsonBody, Q, SharedState, created, href, merge_metadata, metadata, ok,
    order, paginate,
};
use crate::sim::Shared;
use crate::sim::deployments::{self as engine, NewDeployment};
use crate::sim::state::{DeployState, Deployment};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/v3/deployments",
            get(list_deployments).post(create_deployment),
        )
        .route("/v3/deployments/{guid}", get(get_deployment))
        .route(
            "/v3/deployments/{guid}/actions/{action}",
            post(deployment_action),
        )
}

/// The CC deployment object.
pub(crate) fn present_deployment(base: &str, d: &Deployment) -> Value {
    let g = &d.meta.guid;
    let (value, reason) = d.state.status();
    let mut status = json!({
        "value": value, "reason": reason,
        "details": {"last_successful_healthcheck": d.last_healthcheck,
                    "last_status_change": d.last_status_change},
    });
    if let Some(e) = &d.error {
        status["details"]["error"] = json!(e);
    }
    if d.strategy == "canary" {
        let total = d.canary_weights.len().max(1);
        status["canary"] =
            json!({"steps": {"current": d.current_step.clamp(1, total), "total": total}});
    }
    let mut links = json!({
        "self": href(format!("{base}/v3/deployments/{g}")),
        "app": href(format!("{base}/v3/apps/{}", d.app_guid)),
    });
    if d.state.is_active() {
        links["cancel"] =
            json!({"href": format!("{base}/v3/deployments/{g}/actions/cancel"), "method": "POST"});
    }
    if d.state == DeployState::Paused {
        links["continue"] = json!({"href": format!("{base}/v3/deployments/{g}/actions/continue"), "method": "POST"});
    }
    json!({
        "guid": g, "status": status, "strategy": d.strategy, "options": d.options,
        "droplet": {"guid": d.droplet_guid},
        "previous_droplet": {"guid": d.previous_droplet},
        "new_processes": d.new_process.as_ref().map(|p| vec![json!({"guid": p, "type": "web"})]).unwrap_or_default(),
        "revision": null,
        "created_at": d.meta.created_at, "updated_at": d.meta.updated_at,
        "metadata": metadata(&d.meta),
        "relationships": {"app": {"data": {"guid": d.app_guid}}},
        "links": links,
    })
}

fn opt_u64(v: &Value, key: &str, what: &str) -> Result<Option<u64>, ApiError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x.as_u64().filter(|n| *n > 0).map(Some).ok_or_else(|| {
            ApiError::unprocessable(format!("{what} must be an integer greater than 0"))
        }),
    }
}

/// Validates a create body into a [`NewDeployment`].
fn parse_new(v: &Value) -> Result<NewDeployment, ApiError> {
    let strategy = v["strategy"].as_str().unwrap_or("rolling").to_string();
    if !matches!(strategy.as_str(), "rolling" | "canary") {
        return Err(ApiError::unprocessable(format!(
            "'{strategy}' is not a supported deployment strategy"
        )));
    }
    if v.get("droplet").is_some_and(|d| !d.is_null())
        && v.get("revision").is_some_and(|r| !r.is_null())
    {
        return Err(ApiError::unprocessable(
            "Cannot set both fields 'droplet' and 'revision'",
        ));
    }
    if v.get("revision").is_some_and(|r| !r.is_null()) {
        return Err(ApiError::unprocessable(
            "Cannot create deployment from a revision for an app without revisions enabled",
        ));
    }
    let options = v.get("options").cloned().unwrap_or(json!({}));
    if let Some(o) = options.as_object() {
        let unknown: Vec<&str> = o
            .keys()
            .map(String::as_str)
            .filter(|k| {
                !matches!(
                    *k,
                    "max_in_flight"
                        | "web_instances"
                        | "memory_in_mb"
                        | "disk_in_mb"
                        | "log_rate_limit_in_bytes_per_second"
                        | "canary"
                )
            })
            .collect();
        if !unknown.is_empty() {
            return Err(ApiError::unprocessable(format!(
                "Options has unsupported key(s): {}",
                unknown.join(", ")
            )));
        }
    }
    let max_in_flight = opt_u64(&options, "max_in_flight", "Max in flight")?.unwrap_or(1);
    let web_instances = match options.get("web_instances") {
        None | Some(Value::Null) => None,
        Some(x) => Some(
            x.as_u64()
                .filter(|n| *n <= u64::from(super::processes::MAX_INSTANCES))
                .ok_or_else(|| {
                    ApiError::unprocessable(format!(
                        "Web instances must be an integer between 0 and {}",
                        super::processes::MAX_INSTANCES
                    ))
                })?,
        ),
    };
    let memory = opt_u64(&options, "memory_in_mb", "Memory in mb")?;
    let disk = opt_u64(&options, "disk_in_mb", "Disk in mb")?;
    let log_rate = match options.get("log_rate_limit_in_bytes_per_second") {
        None | Some(Value::Null) => None,
        Some(x) => Some(x.as_i64().filter(|n| *n >= -1).ok_or_else(|| {
            ApiError::unprocessable(
                "Log rate limit in bytes per second must be an integer greater than or equal to -1",
            )
        })?),
    };
    let mut weights = Vec::new();
    if let Some(c) = options.get("canary").filter(|c| !c.is_null()) {
        if strategy != "canary" {
            return Err(ApiError::unprocessable(
                "Options canary are only valid for Canary deployments",
            ));
        }
        if let Some(steps) = c.get("steps").filter(|s| !s.is_null()) {
            let steps = steps
                .as_array()
                .ok_or_else(|| ApiError::unprocessable("Canary steps must be an array"))?;
            for s in steps {
                let w = s["instance_weight"]
                    .as_u64()
                    .filter(|w| (1..=100).contains(w))
                    .ok_or_else(|| {
                        ApiError::unprocessable(
                            "Canary steps: instance_weight must be an integer between 1 and 100 (inclusive)",
                        )
                    })?;
                if weights.last().is_some_and(|l| u64::from(*l) > w) {
                    return Err(ApiError::unprocessable(
                        "Canary steps: instance_weights must be sorted in ascending order",
                    ));
                }
                weights.push(w as u32);
            }
        }
    }
    Ok(NewDeployment {
        app_guid: v["relationships"]["app"]["data"]["guid"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        droplet_guid: v["droplet"]["guid"].as_str().map(str::to_string),
        strategy,
        max_in_flight: u32::try_from(max_in_flight).unwrap_or(u32::MAX),
        web_instances: web_instances.map(|w| u32::try_from(w).unwrap_or(u32::MAX)),
        memory_mb: memory,
        disk_mb: disk,
        log_rate,
        canary_weights: weights,
    })
}

async fn create_deployment(AxState(s): SharedState, JsonBody(v): JsonBody) -> ApiResult {
    let new = parse_new(&v)?;
    let mut st = s.lock();
    let guid = engine::create(&mut st, new)?;
    let d = engine::find_deployment_mut(&mut st, &guid)?;
    merge_metadata(&mut d.meta, &v);
    created(present_deployment(&s.base_url, d))
}

async fn get_deployment(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    let d = st
        .deployments
        .iter()
        .find(|d| d.meta.guid == guid)
        .ok_or_else(|| ApiError::not_found("Deployment"))?;
    ok(present_deployment(&s.base_url, d))
}

async fn list_deployments(AxState(s): SharedState, q: Q) -> ApiResult {
    let mut items: Vec<Value> = {
        let st = s.lock();
        st.deployments
            .iter()
            .filter(|d| {
                let (value, reason) = d.state.status();
                q.accepts("app_guids", &d.app_guid)
                    && q.accepts("guids", &d.meta.guid)
                    && q.accepts("status_values", value)
                    && q.accepts("status_reasons", reason)
                    && q.accepts("states", reason)
            })
            .map(|d| present_deployment(&s.base_url, d))
            .collect()
    };
    order(&mut items, &q)?;
    paginate(&s.base_url, "/v3/deployments", &q, items)
}

async fn deployment_action(
    AxState(s): SharedState,
    Path((guid, action)): Path<(String, String)>,
) -> ApiResult {
    let mut st = s.lock();
    match action.as_str() {
        "continue" => engine::continue_deployment(&mut st, &guid)?,
        "cancel" => engine::cancel(&mut st, &guid)?,
        _ => {
            return Err(ApiError::unknown_request());
        }
    }
    Ok(StatusCode::OK.into_response())
}
