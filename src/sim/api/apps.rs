//! Apps: list/get/create/update/delete, start/stop/restart, environment variables, features,
//! current droplet, and the app's droplets and packages.
//!
//! Depends on: `api` helpers, `state`, `instances` (stopping instances on restart).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State as AxState};
use axum::routing::get;
use serde_json::{Value, json};

use super::bits::{present_droplet, present_package};
use super::{
    ApiError, ApiResult, JsonBody, Q, SharedState, accepted_job, check_space, created, href,
    merge_metadata, metadata, ok, order, paginate, required_name, selector_matches,
};
use crate::sim::Shared;
use crate::sim::instances;
use crate::sim::state::{App, JobOutcome, State};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v3/apps", get(list_apps).post(create_app))
        .route(
            "/v3/apps/{guid}",
            get(get_app).patch(update_app).delete(delete_app),
        )
        .route(
            "/v3/apps/{guid}/actions/{action}",
            axum::routing::post(app_action),
        )
        .route(
            "/v3/apps/{guid}/environment_variables",
            get(get_env_vars).patch(patch_env_vars),
        )
        .route("/v3/apps/{guid}/env", get(get_env))
        .route("/v3/apps/{guid}/features", get(list_features))
        .route(
            "/v3/apps/{guid}/features/{name}",
            get(get_feature).patch(patch_feature),
        )
        .route("/v3/apps/{guid}/ssh_enabled", get(ssh_enabled))
        .route("/v3/apps/{guid}/droplets/current", get(current_droplet))
        .route(
            "/v3/apps/{guid}/relationships/current_droplet",
            get(get_current_droplet_rel).patch(set_current_droplet),
        )
        .route("/v3/apps/{guid}/droplets", get(app_droplets))
        .route("/v3/apps/{guid}/packages", get(app_packages))
        .route("/v3/apps/{guid}/manifest", get(app_manifest))
}

/// The CC app object.
pub(crate) fn present_app(base: &str, a: &App) -> Value {
    let g = &a.meta.guid;
    let lifecycle_data = if a.lifecycle == "docker" {
        json!({})
    } else {
        json!({"buildpacks": a.buildpacks, "stack": a.stack})
    };
    let l = |p: &str| href(format!("{base}/v3/apps/{g}{p}"));
    json!({
        "guid": g, "name": a.name, "state": if a.started { "STARTED" } else { "STOPPED" },
        "created_at": a.meta.created_at, "updated_at": a.meta.updated_at,
        "lifecycle": {"type": a.lifecycle, "data": lifecycle_data},
        "relationships": {
            "space": {"data": {"guid": a.space_guid}},
            "current_droplet": {"data": a.droplet_guid.as_ref().map(|d| json!({"guid": d}))},
        },
        "metadata": metadata(&a.meta),
        "links": {
            "self": l(""), "space": href(format!("{base}/v3/spaces/{}", a.space_guid)),
            "processes": l("/processes"), "packages": l("/packages"),
            "environment_variables": l("/environment_variables"),
            "current_droplet": l("/droplets/current"), "droplets": l("/droplets"),
            "tasks": l("/tasks"),
            "start": {"href": format!("{base}/v3/apps/{g}/actions/start"), "method": "POST"},
            "stop": {"href": format!("{base}/v3/apps/{g}/actions/stop"), "method": "POST"},
            "revisions": l("/revisions"), "deployed_revisions": l("/revisions/deployed"),
            "features": l("/features"),
        },
    })
}

/// Finds an app or answers CC's 404 (`App not found`).
pub(super) fn find_app<'a>(st: &'a State, guid: &str) -> Result<&'a App, ApiError> {
    st.app(guid).ok_or_else(|| ApiError::not_found("App"))
}

async fn list_apps(AxState(s): SharedState, q: Q) -> ApiResult {
    let mut items = Vec::new();
    let mut space_guids: Vec<String> = Vec::new();
    let (spaces, orgs) = {
        let st = s.lock();
        for a in &st.apps {
            let org = st.space(&a.space_guid).map(|sp| sp.org_guid.as_str());
            if q.accepts_ci("names", &a.name)
                && q.accepts("guids", &a.meta.guid)
                && q.accepts("space_guids", &a.space_guid)
                && q.accepts("organization_guids", org.unwrap_or(""))
                && q.accepts("lifecycle_type", &a.lifecycle)
                && q.accepts("stacks", &a.stack)
                && selector_matches(q.get("label_selector"), &a.meta.labels)?
            {
                items.push(present_app(&s.base_url, a));
                if !space_guids.contains(&a.space_guid) {
                    space_guids.push(a.space_guid.clone());
                }
            }
        }
        super::root::spaces_and_orgs(&s, &st, &space_guids)
    };
    order(&mut items, &q)?;
    let mut resp = paginate(&s.base_url, "/v3/apps", &q, items)?;
    let include: Vec<String> = q.list("include").unwrap_or_default();
    if include
        .iter()
        .any(|i| i == "space" || i == "space.organization")
    {
        resp = super::root::with_included(resp, "spaces", spaces).await;
    }
    if include.iter().any(|i| i == "space.organization") {
        resp = super::root::with_included(resp, "organizations", orgs).await;
    }
    Ok(resp)
}

async fn get_app(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    ok(present_app(&s.base_url, find_app(&st, &guid)?))
}

fn check_env(env: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
    for k in env.keys() {
        if k.starts_with("VCAP_") {
            return Err(ApiError::unprocessable(
                "Environment variable names cannot start with VCAP_",
            ));
        }
        if k == "PORT" {
            return Err(ApiError::unprocessable(
                "Environment variable names cannot be PORT",
            ));
        }
    }
    Ok(())
}

async fn create_app(AxState(s): SharedState, JsonBody(v): JsonBody) -> ApiResult {
    let name = required_name(&v)?;
    let space = v["relationships"]["space"]["data"]["guid"]
        .as_str()
        .ok_or_else(|| ApiError::unprocessable("Relationships Space must be provided"))?;
    let lifecycle = v["lifecycle"]["type"].as_str().unwrap_or("buildpack");
    if !matches!(lifecycle, "buildpack" | "docker" | "cnb") {
        return Err(ApiError::unprocessable(
            "Lifecycle type must be one of: buildpack, docker, cnb",
        ));
    }
    if let Some(env) = v["environment_variables"].as_object() {
        check_env(env)?;
    }
    let mut st = s.lock();
    check_space(&st, space)?;
    if st.find_app(space, name).is_some() {
        return Err(ApiError::uniqueness(format!(
            "App with the name '{name}' already exists."
        )));
    }
    let guid = st.create_app(name, space, lifecycle);
    let app = st
        .app_mut(&guid)
        .ok_or_else(|| ApiError::not_found("App"))?;
    if let Some(bps) = v["lifecycle"]["data"]["buildpacks"].as_array() {
        app.buildpacks = bps
            .iter()
            .filter_map(|b| b.as_str().map(str::to_string))
            .collect();
    }
    if let Some(stack) = v["lifecycle"]["data"]["stack"].as_str() {
        app.stack = stack.to_string();
    }
    if let Some(env) = v["environment_variables"].as_object() {
        for (k, val) in env {
            app.env.insert(k.clone(), val.clone());
        }
    }
    merge_metadata(&mut app.meta, &v);
    let body = present_app(&s.base_url, app);
    st.audit_app(
        "audit.app.create",
        &guid,
        None,
        json!({"request": {"name": name}}),
    );
    created(body)
}

async fn update_app(
    AxState(s): SharedState,
    Path(guid): Path<String>,
    JsonBody(v): JsonBody,
) -> ApiResult {
    let mut st = s.lock();
    let space = find_app(&st, &guid)?.space_guid.clone();
    if let Some(name) = v["name"].as_str() {
        if name.is_empty() {
            return Err(ApiError::unprocessable("Name can't be blank"));
        }
        if st
            .find_app(&space, name)
            .is_some_and(|other| other.meta.guid != guid)
        {
            return Err(ApiError::uniqueness(format!(
                "App with the name '{name}' already exists."
            )));
        }
    }
    let app = st
        .app_mut(&guid)
        .ok_or_else(|| ApiError::not_found("App"))?;
    // Every check before any change: Cloud Controller applies an update whole or not at all.
    if let Some(t) = v["lifecycle"]["type"].as_str()
        && t != app.lifecycle
    {
        return Err(ApiError::unprocessable("Lifecycle type cannot be changed"));
    }
    if let Some(name) = v["name"].as_str() {
        app.name = name.to_string();
    }
    if let Some(lc) = v.get("lifecycle").filter(|l| l.is_object()) {
        if let Some(bps) = lc["data"]["buildpacks"].as_array() {
            app.buildpacks = bps
                .iter()
                .filter_map(|b| b.as_str().map(str::to_string))
                .collect();
        }
        if let Some(stack) = lc["data"]["stack"].as_str() {
            app.stack = stack.to_string();
        }
    }
    merge_metadata(&mut app.meta, &v);
    app.meta.touch();
    let body = present_app(&s.base_url, app);
    st.audit_app("audit.app.update", &guid, None, json!({"request": v}));
    ok(body)
}

async fn delete_app(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let job = {
        let mut st = s.lock();
        find_app(&st, &guid)?;
        instances::stop_app_instances(&mut st, &guid);
        st.audit_app(
            "audit.app.delete-request",
            &guid,
            None,
            json!({"recursive": true}),
        );
        st.delete_app(&guid);
        st.create_job("app.delete", JobOutcome::Complete, None)
    };
    accepted_job(&s.base_url, &job)
}

/// Starts an app: it needs a current droplet; every process runs that droplet.
pub(crate) fn start_app(st: &mut State, guid: &str) -> Result<(), ApiError> {
    let app = find_app(st, guid)?;
    let Some(droplet) = app.droplet_guid.clone() else {
        return Err(ApiError::unprocessable(
            "Assign a droplet before starting this app.",
        ));
    };
    let was_started = app.started;
    crate::sim::quotas::check_start(st, guid).map_err(ApiError::unprocessable)?;
    for p in st.processes.iter_mut().filter(|p| p.app_guid == guid) {
        if !was_started || p.droplet_guid.is_none() {
            p.droplet_guid = Some(droplet.clone());
        }
    }
    if let Some(app) = st.app_mut(guid) {
        app.started = true;
        app.meta.touch();
    }
    Ok(())
}

async fn app_action(
    AxState(s): SharedState,
    Path((guid, action)): Path<(String, String)>,
) -> ApiResult {
    let mut st = s.lock();
    find_app(&st, &guid)?;
    match action.as_str() {
        "start" => start_app(&mut st, &guid)?,
        "stop" => {
            instances::stop_app_instances(&mut st, &guid);
            if let Some(app) = st.app_mut(&guid) {
                app.started = false;
                app.meta.touch();
            }
        }
        "restart" => {
            if find_app(&st, &guid)?.droplet_guid.is_none() {
                return Err(ApiError::unprocessable(
                    "Assign a droplet before starting this app.",
                ));
            }
            instances::stop_app_instances(&mut st, &guid);
            if let Some(app) = st.app_mut(&guid) {
                app.started = false;
            }
            start_app(&mut st, &guid)?;
        }
        "clear_buildpack_cache" => {}
        _ => {
            return Err(ApiError::unknown_request());
        }
    }
    if matches!(action.as_str(), "start" | "stop" | "restart") {
        st.audit_app(&format!("audit.app.{action}"), &guid, None, json!({}));
    }
    ok(present_app(&s.base_url, find_app(&st, &guid)?))
}

fn env_vars_body(base: &str, a: &App) -> Value {
    json!({
        "var": a.env,
        "links": {"self": href(format!("{base}/v3/apps/{}/environment_variables", a.meta.guid)),
                  "app": href(format!("{base}/v3/apps/{}", a.meta.guid))},
    })
}

async fn get_env_vars(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    ok(env_vars_body(&s.base_url, find_app(&st, &guid)?))
}

async fn patch_env_vars(
    AxState(s): SharedState,
    Path(guid): Path<String>,
    JsonBody(v): JsonBody,
) -> ApiResult {
    let vars = v["var"]
        .as_object()
        .ok_or_else(|| ApiError::unprocessable("Var must be an object"))?;
    check_env(vars)?;
    let mut st = s.lock();
    find_app(&st, &guid)?;
    let app = st
        .app_mut(&guid)
        .ok_or_else(|| ApiError::not_found("App"))?;
    for (k, val) in vars {
        if val.is_null() {
            app.env.remove(k);
        } else {
            app.env.insert(k.clone(), val.clone());
        }
    }
    ok(env_vars_body(&s.base_url, app))
}

async fn get_env(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    let app = find_app(&st, &guid)?;
    ok(json!({
        "staging_env_json": {}, "running_env_json": {},
        "environment_variables": app.env,
        "system_env_json": {"VCAP_SERVICES": instances::vcap_services(&st, &guid)},
        "application_env_json": {"VCAP_APPLICATION": instances::vcap_application(&s, &st, app, 0)},
    }))
}

const FEATURE_DESCRIPTIONS: &[(&str, &str)] = &[
    ("ssh", "Enable SSHing into the app."),
    ("revisions", "Enable versioning of an application"),
    (
        "service-binding-k8s",
        "Enable k8s service bindings for the app",
    ),
    (
        "file-based-vcap-services",
        "Enable file-based VCAP service bindings for the app",
    ),
];

fn feature(a: &App, name: &str) -> Option<Value> {
    let (_, desc) = FEATURE_DESCRIPTIONS.iter().find(|(n, _)| *n == name)?;
    Some(json!({"name": name, "description": desc,
                "enabled": a.features.get(name).copied().unwrap_or(false)}))
}

async fn list_features(AxState(s): SharedState, Path(guid): Path<String>, q: Q) -> ApiResult {
    let items: Vec<Value> = {
        let st = s.lock();
        let app = find_app(&st, &guid)?;
        FEATURE_DESCRIPTIONS
            .iter()
            .filter_map(|(n, _)| feature(app, n))
            .collect()
    };
    paginate(&s.base_url, &format!("/v3/apps/{guid}/features"), &q, items)
}

async fn get_feature(
    AxState(s): SharedState,
    Path((guid, name)): Path<(String, String)>,
) -> ApiResult {
    let st = s.lock();
    feature(find_app(&st, &guid)?, &name)
        .ok_or_else(|| ApiError::not_found("Feature"))
        .and_then(ok)
}

async fn patch_feature(
    AxState(s): SharedState,
    Path((guid, name)): Path<(String, String)>,
    JsonBody(v): JsonBody,
) -> ApiResult {
    let enabled = v["enabled"]
        .as_bool()
        .ok_or_else(|| ApiError::unprocessable("Enabled must be a boolean"))?;
    let mut st = s.lock();
    find_app(&st, &guid)?;
    if !FEATURE_DESCRIPTIONS.iter().any(|(n, _)| *n == name) {
        return Err(ApiError::not_found("Feature"));
    }
    let app = st
        .app_mut(&guid)
        .ok_or_else(|| ApiError::not_found("App"))?;
    app.features.insert(name.clone(), enabled);
    feature(app, &name)
        .ok_or_else(|| ApiError::not_found("Feature"))
        .and_then(ok)
}

async fn ssh_enabled(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    let app = find_app(&st, &guid)?;
    let on = app.features.get("ssh").copied().unwrap_or(false);
    ok(json!({"enabled": on, "reason": if on { "" } else { "Disabled for this app" }}))
}

async fn current_droplet(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    let app = find_app(&st, &guid)?;
    let d = app
        .droplet_guid
        .as_deref()
        .and_then(|d| st.droplet(d))
        .ok_or_else(|| ApiError::not_found("Droplet"))?;
    ok(present_droplet(&s.base_url, d))
}

fn droplet_rel(base: &str, guid: &str, droplet: Option<&String>) -> Value {
    json!({
        "data": droplet.map(|d| json!({"guid": d})),
        "links": {"self": href(format!("{base}/v3/apps/{guid}/relationships/current_droplet")),
                  "related": href(format!("{base}/v3/apps/{guid}/droplets/current"))},
    })
}

async fn get_current_droplet_rel(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    let app = find_app(&st, &guid)?;
    ok(droplet_rel(&s.base_url, &guid, app.droplet_guid.as_ref()))
}

async fn set_current_droplet(
    AxState(s): SharedState,
    Path(guid): Path<String>,
    JsonBody(v): JsonBody,
) -> ApiResult {
    let droplet = v["data"]["guid"].as_str().unwrap_or("").to_string();
    let mut st = s.lock();
    find_app(&st, &guid)?;
    let d = st
        .droplet(&droplet)
        .filter(|d| d.app_guid == guid && d.state == "STAGED")
        .ok_or_else(|| {
            ApiError::unprocessable(
                "Unable to assign current droplet. Ensure the droplet exists and belongs to this app.",
            )
        })?;
    let types: Vec<(String, String)> = d
        .process_types
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Assigning a droplet creates processes for new process types (CC AppAssignDroplet).
    for (kind, _) in types {
        if st.newest_process(&guid, &kind).is_none() {
            st.create_process(&guid, &kind, None);
        }
    }
    let app = st
        .app_mut(&guid)
        .ok_or_else(|| ApiError::not_found("App"))?;
    app.droplet_guid = Some(droplet.clone());
    app.meta.touch();
    ok(droplet_rel(&s.base_url, &guid, Some(&droplet)))
}

async fn app_droplets(AxState(s): SharedState, Path(guid): Path<String>, q: Q) -> ApiResult {
    app_owned_page(&s, &guid, &q, "droplets", |st, q| {
        st.droplets
            .iter()
            .filter(|d| d.app_guid == guid && q.accepts("states", &d.state))
            .map(|d| present_droplet(&s.base_url, d))
            .collect()
    })
}

async fn app_packages(AxState(s): SharedState, Path(guid): Path<String>, q: Q) -> ApiResult {
    app_owned_page(&s, &guid, &q, "packages", |st, q| {
        st.packages
            .iter()
            .filter(|p| p.app_guid == guid && q.accepts("states", &p.state))
            .map(|p| present_package(&s.base_url, p))
            .collect()
    })
}

/// One page of `/v3/apps/:guid/{what}`: the items `select` presents for the query, in the
/// query's order; CC's 404 when there is no such app.
fn app_owned_page(
    s: &Shared,
    guid: &str,
    q: &Q,
    what: &str,
    select: impl FnOnce(&State, &Q) -> Vec<Value>,
) -> ApiResult {
    let mut items = {
        let st = s.lock();
        find_app(&st, guid)?;
        select(&st, q)
    };
    order(&mut items, q)?;
    paginate(&s.base_url, &format!("/v3/apps/{guid}/{what}"), q, items)
}

/// The app as a manifest (`GET /v3/apps/:guid/manifest`), YAML like CC's `AppManifestPresenter`.
fn manifest_of(st: &State, app: &App) -> Value {
    let mut entry = serde_json::Map::new();
    entry.insert("name".into(), json!(app.name));
    if app.lifecycle == "docker" {
        let image = app
            .droplet_guid
            .as_deref()
            .and_then(|d| st.droplet(d))
            .and_then(|d| d.image.clone());
        entry.insert("docker".into(), json!({ "image": image }));
    } else {
        if !app.buildpacks.is_empty() {
            entry.insert("buildpacks".into(), json!(app.buildpacks));
        }
        entry.insert("stack".into(), json!(app.stack));
    }
    entry.insert("features".into(), json!(app.features));
    let services: Vec<Value> = st
        .app_bindings(&app.meta.guid)
        .map(|(b, si)| match &b.name {
            Some(n) => json!({"name": si.name, "binding_name": n}),
            None => json!(si.name),
        })
        .collect();
    if !services.is_empty() {
        entry.insert("services".into(), json!(services));
    }
    let routes: Vec<Value> = st
        .routes
        .iter()
        .filter_map(|r| {
            let d = r
                .destinations
                .iter()
                .find(|d| d.app_guid == app.meta.guid)?;
            Some(json!({"route": st.route_url(r), "protocol": d.protocol}))
        })
        .collect();
    if routes.is_empty() {
        entry.insert("no-route".into(), json!(true));
    } else {
        entry.insert("routes".into(), json!(routes));
    }
    if !app.env.is_empty() {
        entry.insert("env".into(), json!(app.env));
    }
    if !app.meta.labels.is_empty() || !app.meta.annotations.is_empty() {
        entry.insert("metadata".into(), metadata(&app.meta));
    }
    let mut processes = Vec::new();
    let mut kinds: Vec<&str> = Vec::new();
    for p in st.app_processes(&app.meta.guid) {
        if kinds.contains(&p.kind.as_str()) {
            continue;
        }
        kinds.push(&p.kind);
        let Some(p) = st.newest_process(&app.meta.guid, &p.kind) else {
            continue;
        };
        let mut m = serde_json::Map::new();
        m.insert("type".into(), json!(p.kind));
        m.insert("instances".into(), json!(p.instances));
        m.insert("memory".into(), json!(format!("{}M", p.memory_mb)));
        m.insert("disk_quota".into(), json!(format!("{}M", p.disk_mb)));
        m.insert(
            "log-rate-limit-per-second".into(),
            json!(if p.log_rate < 0 {
                "-1".to_string()
            } else {
                format!("{}B", p.log_rate)
            }),
        );
        if let Some(c) = &p.command {
            m.insert("command".into(), json!(c));
        }
        m.insert("health-check-type".into(), json!(p.health.kind));
        if let Some(e) = &p.health.endpoint {
            m.insert("health-check-http-endpoint".into(), json!(e));
        }
        if let Some(t) = p.health.timeout {
            m.insert("timeout".into(), json!(t));
        }
        if let Some(t) = p.health.invocation_timeout {
            m.insert("health-check-invocation-timeout".into(), json!(t));
        }
        if let Some(t) = p.health.interval {
            m.insert("health-check-interval".into(), json!(t));
        }
        m.insert(
            "readiness-health-check-type".into(),
            json!(p.readiness.kind),
        );
        if let Some(e) = &p.readiness.endpoint {
            m.insert("readiness-health-check-http-endpoint".into(), json!(e));
        }
        processes.push(Value::Object(m));
    }
    entry.insert("processes".into(), json!(processes));
    json!({"applications": [Value::Object(entry)]})
}

async fn app_manifest(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    use axum::response::IntoResponse;
    let manifest = {
        let st = s.lock();
        manifest_of(&st, find_app(&st, &guid)?)
    };
    let yaml = serde_yaml_ng::to_string(&manifest).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            10001,
            "UnknownError",
            format!("manifest could not be rendered: {e}"),
        )
    })?;
    Ok((
        axum::http::StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/x-yaml")],
        format!("---\n{yaml}"),
    )
        .into_response())
}
