//! User-provided service instances and app credential bindings (what `VCAP_SERVICES` is built
//! from). Managed services (brokers, plans) are not simulated.
//!
//! Depends on: `api` helpers, `state`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use super::{
    ApiError, ApiResult, JsonBody, Q, SharedState, check_space, created, href, merge_metadata,
    metadata, ok, paginate, required_name, selector_matches,
};
use crate::sim::Shared;
use crate::sim::state::{Binding, ServiceInstance, State};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/v3/service_instances",
            get(list_instances).post(create_instance),
        )
        .route(
            "/v3/service_instances/{guid}",
            get(get_instance).delete(delete_instance),
        )
        .route(
            "/v3/service_credential_bindings",
            get(list_bindings).post(create_binding),
        )
        .route(
            "/v3/service_credential_bindings/{guid}",
            get(get_binding).delete(delete_binding),
        )
        .route(
            "/v3/service_credential_bindings/{guid}/details",
            get(binding_details),
        )
}

fn last_op(created_at: &str) -> Value {
    json!({"type": "create", "state": "succeeded", "description": "",
           "created_at": created_at, "updated_at": created_at})
}

fn present_instance(base: &str, si: &ServiceInstance) -> Value {
    let g = &si.meta.guid;
    json!({
        "guid": g, "name": si.name, "type": si.kind, "tags": si.tags,
        "syslog_drain_url": null, "route_service_url": null,
        "created_at": si.meta.created_at, "updated_at": si.meta.updated_at,
        "last_operation": last_op(&si.meta.created_at),
        "relationships": {"space": {"data": {"guid": si.space_guid}}},
        "metadata": metadata(&si.meta),
        "links": {"self": href(format!("{base}/v3/service_instances/{g}")),
                  "space": href(format!("{base}/v3/spaces/{}", si.space_guid)),
                  "credentials": href(format!("{base}/v3/service_instances/{g}/credentials")),
                  "service_credential_bindings": href(format!("{base}/v3/service_credential_bindings?service_instance_guids={g}"))},
    })
}

async fn list_instances(AxState(s): SharedState, q: Q) -> ApiResult {
    let mut items = Vec::new();
    {
        let st = s.lock();
        for si in &st.service_instances {
            if q.accepts("names", &si.name)
                && q.accepts("space_guids", &si.space_guid)
                && q.accepts("guids", &si.meta.guid)
                && q.accepts("type", &si.kind)
                && selector_matches(q.get("label_selector"), &si.meta.labels)?
            {
                items.push(present_instance(&s.base_url, si));
            }
        }
    }
    paginate(&s.base_url, "/v3/service_instances", &q, items)
}

async fn get_instance(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    let si = st
        .service_instance(&guid)
        .ok_or_else(|| ApiError::not_found("Service instance"))?;
    ok(present_instance(&s.base_url, si))
}

async fn create_instance(AxState(s): SharedState, JsonBody(v): JsonBody) -> ApiResult {
    if v["type"].as_str() != Some("user-provided") {
        return Err(ApiError::unprocessable(
            "The simulator offers user-provided service instances only",
        ));
    }
    let name = required_name(&v)?;
    let space = v["relationships"]["space"]["data"]["guid"]
        .as_str()
        .unwrap_or("");
    let mut st = s.lock();
    check_space(&st, space)?;
    if st
        .service_instances
        .iter()
        .any(|i| i.space_guid == space && i.name == name)
    {
        return Err(ApiError::uniqueness(format!(
            "The service instance name is taken: {name}."
        )));
    }
    let mut meta = st.meta();
    merge_metadata(&mut meta, &v);
    let si = ServiceInstance {
        meta,
        name: name.to_string(),
        space_guid: space.to_string(),
        kind: "user-provided".to_string(),
        credentials: v.get("credentials").cloned().unwrap_or(json!({})),
        tags: v["tags"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let out = present_instance(&s.base_url, &si);
    st.service_instances.push(si);
    created(out)
}

async fn delete_instance(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let mut st = s.lock();
    if !st.service_instances.iter().any(|i| i.meta.guid == guid) {
        return Err(ApiError::not_found("Service instance"));
    }
    if st.bindings.iter().any(|b| b.instance_guid == guid) {
        return Err(ApiError::unprocessable(
            "Cannot delete service instance: it has bindings",
        ));
    }
    st.service_instances.retain(|i| i.meta.guid != guid);
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn present_binding(base: &str, b: &Binding) -> Value {
    let g = &b.meta.guid;
    json!({
        "guid": g, "name": b.name, "type": "app",
        "created_at": b.meta.created_at, "updated_at": b.meta.updated_at,
        "last_operation": last_op(&b.meta.created_at),
        "metadata": metadata(&b.meta),
        "relationships": {"app": {"data": {"guid": b.app_guid}},
                          "service_instance": {"data": {"guid": b.instance_guid}}},
        "links": {"self": href(format!("{base}/v3/service_credential_bindings/{g}")),
                  "details": href(format!("{base}/v3/service_credential_bindings/{g}/details")),
                  "parameters": href(format!("{base}/v3/service_credential_bindings/{g}/parameters")),
                  "service_instance": href(format!("{base}/v3/service_instances/{}", b.instance_guid)),
                  "app": href(format!("{base}/v3/apps/{}", b.app_guid))},
    })
}

async fn list_bindings(AxState(s): SharedState, q: Q) -> ApiResult {
    let mut items = Vec::new();
    {
        let st = s.lock();
        for b in &st.bindings {
            let si_name = st
                .service_instance(&b.instance_guid)
                .map(|i| i.name.as_str())
                .unwrap_or("");
            let app_name = st.app(&b.app_guid).map(|a| a.name.as_str()).unwrap_or("");
            if q.accepts("type", "app")
                && q.accepts("app_guids", &b.app_guid)
                && q.accepts("service_instance_guids", &b.instance_guid)
                && q.accepts("service_instance_names", si_name)
                && q.accepts("app_names", app_name)
                && q.accepts("names", b.name.as_deref().unwrap_or(""))
                && selector_matches(q.get("label_selector"), &b.meta.labels)?
            {
                items.push(present_binding(&s.base_url, b));
            }
        }
    }
    paginate(&s.base_url, "/v3/service_credential_bindings", &q, items)
}

/// Binds an app to a service instance (CC: 422 when already bound).
pub(crate) fn bind(
    st: &mut State,
    app_guid: &str,
    instance_guid: &str,
    name: Option<String>,
) -> Result<String, ApiError> {
    if st
        .bindings
        .iter()
        .any(|b| b.app_guid == app_guid && b.instance_guid == instance_guid)
    {
        return Err(ApiError::unprocessable(
            "The app is already bound to the service instance",
        ));
    }
    let meta = st.meta();
    let guid = meta.guid.clone();
    st.bindings.push(Binding {
        meta,
        name,
        app_guid: app_guid.to_string(),
        instance_guid: instance_guid.to_string(),
    });
    Ok(guid)
}

async fn create_binding(AxState(s): SharedState, JsonBody(v): JsonBody) -> ApiResult {
    if v["type"].as_str() != Some("app") {
        return Err(ApiError::unprocessable(
            "The simulator supports bindings of type 'app' only",
        ));
    }
    let app = v["relationships"]["app"]["data"]["guid"]
        .as_str()
        .unwrap_or("");
    let si = v["relationships"]["service_instance"]["data"]["guid"]
        .as_str()
        .unwrap_or("");
    let mut st = s.lock();
    if st.app(app).is_none() {
        return Err(ApiError::unprocessable(format!(
            "The app could not be found: '{app}'"
        )));
    }
    if !st.service_instances.iter().any(|i| i.meta.guid == si) {
        return Err(ApiError::unprocessable(format!(
            "The service instance could not be found: '{si}'"
        )));
    }
    let guid = bind(&mut st, app, si, v["name"].as_str().map(str::to_string))?;
    let b = st
        .bindings
        .iter_mut()
        .find(|b| b.meta.guid == guid)
        .ok_or_else(|| ApiError::not_found("Service credential binding"))?;
    merge_metadata(&mut b.meta, &v);
    created(present_binding(&s.base_url, b))
}

/// Finds a credential binding or answers CC's 404.
fn find_binding<'a>(st: &'a State, guid: &str) -> Result<&'a Binding, ApiError> {
    st.bindings
        .iter()
        .find(|b| b.meta.guid == guid)
        .ok_or_else(|| ApiError::not_found("Service credential binding"))
}

async fn get_binding(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    let b = find_binding(&st, &guid)?;
    ok(present_binding(&s.base_url, b))
}

async fn delete_binding(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let mut st = s.lock();
    find_binding(&st, &guid)?;
    st.bindings.retain(|b| b.meta.guid != guid);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn binding_details(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    let b = find_binding(&st, &guid)?;
    let creds = st
        .service_instance(&b.instance_guid)
        .map(|i| i.credentials.clone())
        .unwrap_or(json!({}));
    ok(json!({"credentials": creds, "syslog_drain_url": null, "volume_mounts": []}))
}
