//! Tasks: create (validation as Cloud Controller: a command, a droplet, the memory quota),
//! get, list (all, or one app's), and cancel (the `actions/cancel` form and the older
//! `PUT .../cancel`). The process itself is run by `sim::tasks`.
//!
//! Depends on: `api` helpers, `state`, `sim::tasks`, `sim::quotas`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use super::{
    ApiError, ApiResult, JsonBody, Q, SharedState, href, merge_metadata, metadata, ok, order,
    paginate,
};
use crate::sim::Shared;
use crate::sim::quotas;
use crate::sim::state::{Task, TaskState};
use crate::sim::tasks::{self as engine, Spec};

/// Memory and disk of a task that asks for none (Cloud Controller's `default_app_memory` and
/// `default_app_disk_in_mb`).
const DEFAULT_TASK_MB: u64 = 1024;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v3/apps/{guid}/tasks", get(app_tasks).post(create_task))
        .route("/v3/tasks", get(list_tasks))
        .route("/v3/tasks/{guid}", get(get_task))
        .route("/v3/tasks/{guid}/actions/cancel", post(cancel_task))
        .route("/v3/tasks/{guid}/cancel", put(cancel_task))
}

/// The CC task object.
pub(crate) fn present_task(base: &str, t: &Task) -> Value {
    let g = &t.meta.guid;
    json!({
        "guid": g, "sequence_id": t.sequence_id, "name": t.name, "command": t.command,
        "state": t.state.as_str(), "memory_in_mb": t.memory_mb, "disk_in_mb": t.disk_mb,
        "log_rate_limit_in_bytes_per_second": -1,
        "result": {"failure_reason": t.failure_reason},
        "droplet_guid": t.droplet_guid,
        "relationships": {"app": {"data": {"guid": t.app_guid}}},
        "metadata": metadata(&t.meta),
        "created_at": t.meta.created_at, "updated_at": t.meta.updated_at,
        "links": {
            "self": href(format!("{base}/v3/tasks/{g}")),
            "app": href(format!("{base}/v3/apps/{}", t.app_guid)),
            "cancel": {"href": format!("{base}/v3/tasks/{g}/actions/cancel"), "method": "POST"},
            "droplet": href(format!("{base}/v3/droplets/{}", t.droplet_guid)),
        },
    })
}

fn positive(v: &Value, key: &str, what: &str) -> Result<Option<u64>, ApiError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x.as_u64().filter(|n| *n > 0).map(Some).ok_or_else(|| {
            ApiError::unprocessable(format!("{what} must be an integer greater than 0"))
        }),
    }
}

async fn create_task(
    AxState(s): SharedState,
    Path(app_guid): Path<String>,
    JsonBody(v): JsonBody,
) -> ApiResult {
    let command = match v.get("command") {
        Some(Value::String(c)) if !c.trim().is_empty() => c.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(ApiError::unprocessable("Command can't be blank"));
        }
        Some(_) => return Err(ApiError::unprocessable("Command must be a string")),
    };
    let name = match v.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => return Err(ApiError::unprocessable("Name must be a string")),
    };
    let memory_mb = positive(&v, "memory_in_mb", "Memory in mb")?.unwrap_or(DEFAULT_TASK_MB);
    let disk_mb = positive(&v, "disk_in_mb", "Disk in mb")?.unwrap_or(DEFAULT_TASK_MB);
    let asked_droplet = match v.get("droplet_guid") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(_) => return Err(ApiError::unprocessable("Droplet guid must be a string")),
    };
    let (spec, presented) = {
        let mut st = s.lock();
        let app = st
            .app(&app_guid)
            .cloned()
            .ok_or_else(|| ApiError::not_found("App"))?;
        let droplet_guid = asked_droplet
            .or_else(|| app.droplet_guid.clone())
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "Task must have a droplet. Assign a current droplet to the app.",
                )
            })?;
        let droplet = st
            .droplet(&droplet_guid)
            .filter(|d| d.app_guid == app_guid)
            .cloned()
            .ok_or_else(|| ApiError::not_found("Droplet"))?;
        quotas::check_task(&st, &app.space_guid, memory_mb).map_err(ApiError::unprocessable)?;
        let meta = st.meta();
        let guid = meta.guid.clone();
        let name = name.unwrap_or_else(|| guid.chars().take(8).collect());
        let sequence_id = st
            .tasks
            .iter()
            .filter(|t| t.app_guid == app_guid)
            .map(|t| t.sequence_id)
            .max()
            .unwrap_or(0)
            + 1;
        let env = engine::task_env(&s, &st, &app_guid, &guid, memory_mb)
            .ok_or_else(|| ApiError::not_found("App"))?;
        let run = engine::injected_command(&st, &app.name).unwrap_or_else(|| command.clone());
        let cancel = s.cancel.child_token();
        let mut task = Task {
            meta,
            app_guid: app_guid.clone(),
            name: name.clone(),
            sequence_id,
            command,
            state: TaskState::Pending,
            memory_mb,
            disk_mb,
            droplet_guid: droplet_guid.clone(),
            failure_reason: None,
            cancel: cancel.clone(),
        };
        merge_metadata(&mut task.meta, &v);
        let presented = present_task(&s.base_url, &task);
        st.tasks.push(task);
        let spec = Spec {
            guid,
            app_guid,
            name,
            command: run,
            droplet_guid,
            files: droplet.files.clone(),
            env,
            cancel,
        };
        (spec, presented)
    };
    s.tasks.spawn(engine::supervise(s.clone(), spec));
    Ok((StatusCode::ACCEPTED, axum::Json(presented)).into_response())
}

async fn get_task(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    let t = st
        .tasks
        .iter()
        .find(|t| t.meta.guid == guid)
        .ok_or_else(|| ApiError::not_found("Task"))?;
    ok(present_task(&s.base_url, t))
}

fn listed(s: &Shared, q: &Q, app: Option<&str>) -> Vec<Value> {
    let st = s.lock();
    st.tasks
        .iter()
        .filter(|t| {
            app.is_none_or(|a| t.app_guid == a)
                && q.accepts("app_guids", &t.app_guid)
                && q.accepts("guids", &t.meta.guid)
                && q.accepts("names", &t.name)
                && q.accepts("states", t.state.as_str())
                && q.accepts("sequence_ids", &t.sequence_id.to_string())
        })
        .map(|t| present_task(&s.base_url, t))
        .collect()
}

async fn list_tasks(AxState(s): SharedState, q: Q) -> ApiResult {
    let mut items = listed(&s, &q, None);
    order(&mut items, &q)?;
    paginate(&s.base_url, "/v3/tasks", &q, items)
}

async fn app_tasks(AxState(s): SharedState, Path(guid): Path<String>, q: Q) -> ApiResult {
    if s.lock().app(&guid).is_none() {
        return Err(ApiError::not_found("App"));
    }
    let mut items = listed(&s, &q, Some(&guid));
    order(&mut items, &q)?;
    paginate(&s.base_url, &format!("/v3/apps/{guid}/tasks"), &q, items)
}

async fn cancel_task(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let mut st = s.lock();
    let state = st
        .tasks
        .iter()
        .find(|t| t.meta.guid == guid)
        .map(|t| t.state)
        .ok_or_else(|| ApiError::not_found("Task"))?;
    if !state.is_active() {
        return Err(ApiError::unprocessable(format!(
            "Task state is {} and therefore cannot be canceled",
            state.as_str()
        )));
    }
    st.cancel_task(&guid);
    let t = st
        .tasks
        .iter()
        .find(|t| t.meta.guid == guid)
        .ok_or_else(|| ApiError::not_found("Task"))?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(present_task(&s.base_url, t)),
    )
        .into_response())
}
