//! Routes and destinations (route mappings), and an app's routes.
//!
//! Depends on: `api` helpers, `state`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, patch};
use serde_json::{Value, json};

use super::apps::find_app;
use super::root::present_domain;
use super::{
    ApiError, ApiResult, JsonBody, Q, SharedState, accepted_job, check_space, created, href,
    merge_metadata, metadata, ok, paginate, selector_matches,
};
use crate::sim::Shared;
use crate::sim::state::{Destination, JobOutcome, Route, State};
use crate::sim::util::now_rfc3339;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v3/routes", get(list_routes).post(create_route_handler))
        .route(
            "/v3/routes/{guid}",
            get(get_route).patch(update_route).delete(delete_route),
        )
        .route(
            "/v3/routes/{guid}/destinations",
            get(list_destinations)
                .post(insert_destinations)
                .patch(replace_destinations),
        )
        .route(
            "/v3/routes/{guid}/destinations/{dguid}",
            patch(update_destination).delete(delete_destination),
        )
        .route("/v3/apps/{guid}/routes", get(app_routes))
        .route(
            "/v3/spaces/{guid}/routes",
            axum::routing::delete(delete_unmapped_routes),
        )
}

fn present_destination(d: &Destination) -> Value {
    json!({
        "guid": d.guid, "app": {"guid": d.app_guid, "process": {"type": d.process_type}},
        "weight": d.weight, "port": d.port, "protocol": d.protocol,
        "created_at": d.created_at, "updated_at": d.created_at,
    })
}

/// The CC route object.
pub(crate) fn present_route(base: &str, st: &State, r: &Route) -> Value {
    let g = &r.meta.guid;
    let mut options = json!({});
    if let Some(lb) = &r.loadbalancing {
        options["loadbalancing"] = json!(lb);
    }
    json!({
        "guid": g, "protocol": r.protocol, "host": r.host, "path": r.path, "port": r.port,
        "url": st.route_url(r),
        "created_at": r.meta.created_at, "updated_at": r.meta.updated_at,
        "destinations": r.destinations.iter().map(present_destination).collect::<Vec<_>>(),
        "options": options,
        "metadata": metadata(&r.meta),
        "relationships": {"space": {"data": {"guid": r.space_guid}},
                          "domain": {"data": {"guid": r.domain_guid}}},
        "links": {"self": href(format!("{base}/v3/routes/{g}")),
                  "space": href(format!("{base}/v3/spaces/{}", r.space_guid)),
                  "domain": href(format!("{base}/v3/domains/{}", r.domain_guid)),
                  "destinations": href(format!("{base}/v3/routes/{g}/destinations"))},
    })
}

/// Finds a route or answers CC's 404 (`Route not found`).
fn find_route<'a>(st: &'a State, guid: &str) -> Result<&'a Route, ApiError> {
    st.route(guid).ok_or_else(|| ApiError::not_found("Route"))
}

/// [`find_route`], to change the route.
fn find_route_mut<'a>(st: &'a mut State, guid: &str) -> Result<&'a mut Route, ApiError> {
    st.routes
        .iter_mut()
        .find(|r| r.meta.guid == guid)
        .ok_or_else(|| ApiError::not_found("Route"))
}

fn route_filter(st: &State, q: &Q, r: &Route) -> Result<bool, ApiError> {
    let org = st
        .space(&r.space_guid)
        .map(|s| s.org_guid.as_str())
        .unwrap_or("");
    Ok(q.accepts("hosts", &r.host)
        && q.accepts("paths", &r.path)
        && q.accepts("domain_guids", &r.domain_guid)
        && q.accepts("space_guids", &r.space_guid)
        && q.accepts("organization_guids", org)
        && q.accepts("guids", &r.meta.guid)
        && q.accepts("ports", &r.port.map(|p| p.to_string()).unwrap_or_default())
        && q.list("app_guids")
            .is_none_or(|l| r.destinations.iter().any(|d| l.contains(&d.app_guid)))
        && selector_matches(q.get("label_selector"), &r.meta.labels)?)
}

async fn route_list(s: &Shared, path: &str, q: Q, app: Option<&str>) -> ApiResult {
    let (items, domains) = {
        let st = s.lock();
        if let Some(a) = app {
            find_app(&st, a)?;
        }
        let mut items = Vec::new();
        let mut domains: Vec<(String, Value)> = Vec::new();
        for r in &st.routes {
            if app.is_some_and(|a| !r.destinations.iter().any(|d| d.app_guid == a)) {
                continue;
            }
            if route_filter(&st, &q, r)? {
                items.push(present_route(&s.base_url, &st, r));
                if !domains.iter().any(|(g, _)| *g == r.domain_guid)
                    && let Some(d) = st.domain(&r.domain_guid)
                {
                    domains.push((r.domain_guid.clone(), present_domain(s, d)));
                }
            }
        }
        (items, domains)
    };
    let resp = paginate(&s.base_url, path, &q, items)?;
    // Cloud Controller honours `include` on `GET /v3/routes` only: `/v3/apps/:guid/routes`
    // accepts it and answers without `included`. Each page includes the domains of its own
    // routes.
    if app.is_none()
        && q.get("include")
            .is_some_and(|i| i.split(',').any(|x| x == "domain"))
    {
        let on_page = |body: &Value| {
            let guids: Vec<&str> = body["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["relationships"]["domain"]["data"]["guid"].as_str())
                .collect();
            domains
                .into_iter()
                .filter(|(g, _)| guids.contains(&g.as_str()))
                .map(|(_, d)| d)
                .collect()
        };
        return Ok(super::root::with_included_for(resp, "domains", on_page).await);
    }
    Ok(resp)
}

async fn list_routes(AxState(s): SharedState, q: Q) -> ApiResult {
    route_list(&s, "/v3/routes", q, None).await
}

async fn app_routes(AxState(s): SharedState, Path(guid): Path<String>, q: Q) -> ApiResult {
    let path = format!("/v3/apps/{guid}/routes");
    route_list(&s, &path, q, Some(&guid)).await
}

fn valid_host(h: &str) -> bool {
    h == "*"
        || (!h.is_empty()
            && h.len() <= 63
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
}

/// Creates a route after CC's validations; returns its GUID.
pub(crate) fn create_route(
    st: &mut State,
    space_guid: &str,
    domain_guid: &str,
    host: &str,
    path: &str,
    port: Option<u16>,
) -> Result<String, ApiError> {
    let domain = st.domain(domain_guid).cloned().ok_or_else(|| {
        ApiError::unprocessable(
            "Invalid domain. Ensure that the domain exists and you have access to it.",
        )
    })?;
    check_space(st, space_guid)?;
    let d = &domain.name;
    if domain.tcp {
        if !host.is_empty() {
            return Err(ApiError::unprocessable(
                "Hosts are not supported for TCP routes.",
            ));
        }
        if !path.is_empty() {
            return Err(ApiError::unprocessable(
                "Paths are not supported for TCP routes.",
            ));
        }
    } else {
        if port.is_some() {
            return Err(ApiError::unprocessable(
                "Routes with protocol 'http' do not support ports.",
            ));
        }
        if host.is_empty() && domain.org_guid.is_none() {
            return Err(ApiError::unprocessable(
                "Missing host. Routes in shared domains must have a host defined.",
            ));
        }
        if !host.is_empty() && !valid_host(host) {
            return Err(ApiError::unprocessable("Host format is invalid."));
        }
        if !path.is_empty() {
            if domain.internal {
                return Err(ApiError::unprocessable(
                    "Paths are not supported for internal domains.",
                ));
            }
            if path == "/" {
                return Err(ApiError::unprocessable("Path cannot be a single '/'."));
            }
            if !path.starts_with('/') {
                return Err(ApiError::unprocessable(
                    "Path is missing the beginning '/'.",
                ));
            }
            if path.contains('?') {
                return Err(ApiError::unprocessable("Path cannot contain '?'."));
            }
            if path.len() > 128 {
                return Err(ApiError::unprocessable("Path exceeds 128 characters."));
            }
        }
    }
    let port = if domain.tcp {
        Some(port.unwrap_or_else(|| 1024 + (crate::sim::util::random_u64() % 60_000) as u16))
    } else {
        None
    };
    let exists = st.routes.iter().any(|r| {
        r.domain_guid == domain_guid && r.host == host && r.path == path && r.port == port
    });
    if exists {
        let detail = match (host.is_empty(), path.is_empty(), port) {
            (_, _, Some(p)) => format!("Route already exists with port '{p}' for domain '{d}'."),
            (false, true, _) => {
                format!("Route already exists with host '{host}' for domain '{d}'.")
            }
            (false, false, _) => format!(
                "Route already exists with host '{host}' and path '{path}' for domain '{d}'."
            ),
            (true, false, _) => {
                format!("Route already exists with path '{path}' for domain '{d}'.")
            }
            (true, true, _) => format!("Route already exists for domain '{d}'."),
        };
        return Err(ApiError::unprocessable(detail));
    }
    crate::sim::quotas::check_route(st, space_guid).map_err(ApiError::unprocessable)?;
    let meta = st.meta();
    let guid = meta.guid.clone();
    st.routes.push(Route {
        meta,
        host: host.to_string(),
        path: path.to_string(),
        port,
        domain_guid: domain_guid.to_string(),
        space_guid: space_guid.to_string(),
        protocol: if domain.tcp { "tcp" } else { "http" }.to_string(),
        destinations: Vec::new(),
        loadbalancing: None,
    });
    Ok(guid)
}

/// Adds a destination (app + process type) to a route unless it is already there.
pub(crate) fn map_route(
    st: &mut State,
    route_guid: &str,
    app_guid: &str,
    process_type: &str,
    protocol: Option<&str>,
    port: Option<u16>,
) -> Result<(), ApiError> {
    let app_space = find_app(st, app_guid)?.space_guid.clone();
    let route = find_route_mut(st, route_guid)?;
    if route.space_guid != app_space {
        return Err(ApiError::unprocessable(
            "Routes cannot be mapped to destinations in different spaces",
        ));
    }
    let protocol = match protocol {
        Some(p) => p.to_string(),
        None if route.protocol == "tcp" => "tcp".to_string(),
        None => "http1".to_string(),
    };
    if !matches!(protocol.as_str(), "http1" | "http2" | "tcp") {
        return Err(ApiError::unprocessable(
            "Destinations[0]: protocol must be 'http1', 'http2' or 'tcp'.",
        ));
    }
    let port = port.unwrap_or(8080);
    if let Some(existing) = route
        .destinations
        .iter_mut()
        .find(|d| d.app_guid == app_guid && d.process_type == process_type && d.port == port)
    {
        existing.protocol = protocol;
        return Ok(());
    }
    route.destinations.push(Destination {
        guid: crate::sim::util::new_guid(),
        app_guid: app_guid.to_string(),
        process_type: process_type.to_string(),
        port,
        protocol,
        weight: None,
        created_at: now_rfc3339(),
    });
    route.meta.touch();
    Ok(())
}

async fn create_route_handler(AxState(s): SharedState, JsonBody(v): JsonBody) -> ApiResult {
    let space = v["relationships"]["space"]["data"]["guid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let domain = v["relationships"]["domain"]["data"]["guid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let host = v["host"].as_str().unwrap_or("").to_string();
    let path = v["path"].as_str().unwrap_or("").to_string();
    let port = v["port"].as_u64().and_then(|p| u16::try_from(p).ok());
    let mut st = s.lock();
    let guid = create_route(&mut st, &space, &domain, &host, &path, port)?;
    let r = find_route_mut(&mut st, &guid)?;
    merge_metadata(&mut r.meta, &v);
    if let Some(lb) = v["options"]["loadbalancing"].as_str() {
        r.loadbalancing = Some(lb.to_string());
    }
    let r = find_route(&st, &guid)?;
    created(present_route(&s.base_url, &st, r))
}

async fn get_route(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    let r = find_route(&st, &guid)?;
    ok(present_route(&s.base_url, &st, r))
}

async fn update_route(
    AxState(s): SharedState,
    Path(guid): Path<String>,
    JsonBody(v): JsonBody,
) -> ApiResult {
    let mut st = s.lock();
    let r = find_route_mut(&mut st, &guid)?;
    merge_metadata(&mut r.meta, &v);
    if let Some(lb) = v["options"]["loadbalancing"].as_str() {
        r.loadbalancing = Some(lb.to_string());
    }
    r.meta.touch();
    let r = find_route(&st, &guid)?;
    ok(present_route(&s.base_url, &st, r))
}

async fn delete_route(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let job = {
        let mut st = s.lock();
        find_route(&st, &guid)?;
        st.routes.retain(|r| r.meta.guid != guid);
        st.create_job("route.delete", JobOutcome::Complete, None)
    };
    accepted_job(&s.base_url, &job)
}

async fn delete_unmapped_routes(
    AxState(s): SharedState,
    Path(guid): Path<String>,
    q: Q,
) -> ApiResult {
    if q.get("unmapped") != Some("true") {
        return Err(ApiError::bad_query(
            "Mass delete not supported for routes. Use 'unmapped=true' parameter to delete all unmapped routes.",
        ));
    }
    let job = {
        let mut st = s.lock();
        if st.space(&guid).is_none() {
            return Err(ApiError::not_found("Space"));
        }
        st.routes
            .retain(|r| r.space_guid != guid || !r.destinations.is_empty());
        st.create_job("space.delete_unmapped_routes", JobOutcome::Complete, None)
    };
    accepted_job(&s.base_url, &job)
}

fn destinations_body(base: &str, r: &Route) -> Value {
    json!({
        "destinations": r.destinations.iter().map(present_destination).collect::<Vec<_>>(),
        "links": {"self": href(format!("{base}/v3/routes/{}/destinations", r.meta.guid)),
                  "route": href(format!("{base}/v3/routes/{}", r.meta.guid))},
    })
}

async fn list_destinations(AxState(s): SharedState, Path(guid): Path<String>, q: Q) -> ApiResult {
    let st = s.lock();
    let r = find_route(&st, &guid)?;
    let mut r = r.clone();
    r.destinations
        .retain(|d| q.accepts("app_guids", &d.app_guid) && q.accepts("guids", &d.guid));
    ok(destinations_body(&s.base_url, &r))
}

fn add_destinations(st: &mut State, guid: &str, v: &Value) -> Result<(), ApiError> {
    let list = v["destinations"]
        .as_array()
        .ok_or_else(|| ApiError::unprocessable("Destinations must be an array"))?;
    for d in list {
        let app = d["app"]["guid"]
            .as_str()
            .ok_or_else(|| ApiError::unprocessable("Destinations[0]: must have an app guid"))?;
        let kind = d["app"]["process"]["type"].as_str().unwrap_or("web");
        if st.app(app).is_none() {
            return Err(ApiError::unprocessable(format!(
                "App(s) with guid(s) \"{app}\" do not exist or you do not have access."
            )));
        }
        let port = d["port"].as_u64().and_then(|p| u16::try_from(p).ok());
        map_route(st, guid, app, kind, d["protocol"].as_str(), port)?;
    }
    Ok(())
}

async fn insert_destinations(
    AxState(s): SharedState,
    Path(guid): Path<String>,
    JsonBody(v): JsonBody,
) -> ApiResult {
    set_destinations(&s, &guid, &v, false)
}

async fn replace_destinations(
    AxState(s): SharedState,
    Path(guid): Path<String>,
    JsonBody(v): JsonBody,
) -> ApiResult {
    set_destinations(&s, &guid, &v, true)
}

/// Adds the body's destinations to a route (after removing its old ones when `replace`), all or
/// none: on an error the routes are as they were. Answers all destinations of the route.
fn set_destinations(s: &Shared, guid: &str, v: &Value, replace: bool) -> ApiResult {
    let mut st = s.lock();
    find_route(&st, guid)?;
    let before = st.routes.clone();
    if replace {
        find_route_mut(&mut st, guid)?.destinations.clear();
    }
    if let Err(e) = add_destinations(&mut st, guid, v) {
        st.routes = before;
        return Err(e);
    }
    let r = find_route(&st, guid)?;
    ok(destinations_body(&s.base_url, r))
}

async fn delete_destination(
    AxState(s): SharedState,
    Path((guid, dguid)): Path<(String, String)>,
) -> ApiResult {
    let mut st = s.lock();
    let r = find_route_mut(&mut st, &guid)?;
    let before = r.destinations.len();
    r.destinations.retain(|d| d.guid != dguid);
    if r.destinations.len() == before {
        return Err(ApiError::unprocessable(
            "Unable to unmap route from destination. Ensure the route has a destination with this guid.",
        ));
    }
    r.meta.touch();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn update_destination(
    AxState(s): SharedState,
    Path((guid, dguid)): Path<(String, String)>,
    JsonBody(v): JsonBody,
) -> ApiResult {
    let mut st = s.lock();
    let r = find_route_mut(&mut st, &guid)?;
    let d = r
        .destinations
        .iter_mut()
        .find(|d| d.guid == dguid)
        .ok_or_else(|| ApiError::not_found("Destination"))?;
    if let Some(p) = v["protocol"].as_str() {
        if !matches!(p, "http1" | "http2") {
            return Err(ApiError::unprocessable(
                "Protocol must be 'http1' or 'http2'.",
            ));
        }
        d.protocol = p.to_string();
    }
    ok(present_destination(d))
}
