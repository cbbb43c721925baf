//! Discovery (`/`, `/v3`, `/v3/info`), organizations, spaces, domains, jobs and networking v1
//! policies. The `OptionalApiUnavailable` fault drops `links.network_policy_v1` /
//! `links.log_cache` from `/` (`absent`) and makes the policy endpoints answer 403 with the
//! policy server's scope message (`forbidden`) or 404 (`not_found`, `absent`).
//!
//! Depends on: `api` helpers, `state`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::telemetry::unavailable;
use super::{ApiError, ApiResult, Q, SharedState, href, metadata, ok, paginate, parse_json};
use crate::sim::Shared;
use crate::sim::fault_switches::{OptionalApi, Unavailable};
use crate::sim::state::{Domain, JobOutcome, State};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(root))
        .route("/v3", get(v3))
        .route("/v3/", get(v3))
        .route("/v3/info", get(info))
        .route("/v3/organizations", get(list_orgs))
        .route("/v3/organizations/{guid}", get(get_org))
        .route("/v3/organizations/{guid}/domains", get(org_domains))
        .route(
            "/v3/organizations/{guid}/domains/default",
            get(org_default_domain),
        )
        .route("/v3/spaces", get(list_spaces))
        .route("/v3/spaces/{guid}", get(get_space))
        .route("/v3/domains", get(list_domains))
        .route("/v3/domains/{guid}", get(get_domain))
        .route("/v3/jobs/{guid}", get(get_job))
        .route("/v3/feature_flags/{name}", get(feature_flag))
        .route(
            "/networking/v1/external/policies",
            get(list_policies).post(create_policies),
        )
        .route(
            "/networking/v1/external/policies/delete",
            post(delete_policies),
        )
}

async fn root(AxState(s): SharedState) -> ApiResult {
    let b = &s.base_url;
    let absent = |api| unavailable(&s, api) == Some(Unavailable::Absent);
    let policy = if absent(OptionalApi::NetworkPolicy) {
        Value::Null
    } else {
        href(format!("{b}/networking/v1/external"))
    };
    let log_cache = if absent(OptionalApi::LogCache) {
        Value::Null
    } else {
        href(b.clone())
    };
    ok(json!({"links": {
        "self": href(b.clone()),
        "bits_service": null,
        "cloud_controller_v2": {"href": format!("{b}/v2"), "meta": {"version": "2.200.0"}},
        "cloud_controller_v3": {"href": format!("{b}/v3"), "meta": {"version": s.config.api_version}},
        "network_policy_v0": href(format!("{b}/networking/v0/external")),
        "network_policy_v1": policy,
        "login": href(b.clone()),
        "uaa": href(b.clone()),
        "credhub": null,
        "routing": href(format!("{b}/routing")),
        "logging": null,
        "log_cache": log_cache,
        "log_stream": null,
        "app_ssh": null,
    }}))
}

async fn v3(AxState(s): SharedState) -> ApiResult {
    let mut links = serde_json::Map::new();
    links.insert("self".into(), href(format!("{}/v3", s.base_url)));
    for name in [
        "apps",
        "builds",
        "deployments",
        "domains",
        "droplets",
        "feature_flags",
        "info",
        "organizations",
        "packages",
        "processes",
        "resource_matches",
        "routes",
        "service_credential_bindings",
        "service_instances",
        "spaces",
    ] {
        links.insert(name.into(), href(format!("{}/v3/{name}", s.base_url)));
    }
    ok(json!({ "links": links }))
}

async fn info(AxState(s): SharedState) -> ApiResult {
    ok(json!({
        "build": "cf-zero-downtime-sim", "cli_version": {"minimum": "6.22.0", "recommended": "latest"},
        "custom": {}, "description": "Local Cloud Foundry simulator", "name": "cf-zero-downtime sim",
        "version": 1, "osbapi_version": "2.15",
        "rate_limits": {"enabled": false, "general_limit": null, "reset_interval_in_minutes": null},
        "links": {"self": href(format!("{}/v3/info", s.base_url)), "support": null},
    }))
}

fn present_org(s: &Shared, o: &crate::sim::state::Org) -> Value {
    let b = &s.base_url;
    let g = &o.meta.guid;
    json!({
        "guid": g, "name": o.name, "suspended": false,
        "created_at": o.meta.created_at, "updated_at": o.meta.updated_at,
        "relationships": {"quota": {"data": o.quota_guid.as_ref().map(|q| json!({"guid": q}))}},
        "metadata": metadata(&o.meta),
        "links": {"self": href(format!("{b}/v3/organizations/{g}")),
                  "domains": href(format!("{b}/v3/organizations/{g}/domains")),
                  "default_domain": href(format!("{b}/v3/organizations/{g}/domains/default"))},
    })
}

async fn list_orgs(AxState(s): SharedState, q: Q) -> ApiResult {
    let items: Vec<Value> = {
        let st = s.lock();
        st.orgs
            .iter()
            .filter(|o| q.accepts("names", &o.name) && q.accepts("guids", &o.meta.guid))
            .map(|o| present_org(&s, o))
            .collect()
    };
    paginate(&s.base_url, "/v3/organizations", &q, items)
}

async fn get_org(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    let o = st
        .orgs
        .iter()
        .find(|o| o.meta.guid == guid)
        .ok_or_else(|| ApiError::not_found("Organization"))?;
    ok(present_org(&s, o))
}

fn present_space(s: &Shared, sp: &crate::sim::state::Space) -> Value {
    let b = &s.base_url;
    let g = &sp.meta.guid;
    json!({
        "guid": g, "name": sp.name, "created_at": sp.meta.created_at, "updated_at": sp.meta.updated_at,
        "relationships": {"organization": {"data": {"guid": sp.org_guid}},
                          "quota": {"data": sp.quota_guid.as_ref().map(|q| json!({"guid": q}))}},
        "metadata": metadata(&sp.meta),
        "links": {"self": href(format!("{b}/v3/spaces/{g}")),
                  "organization": href(format!("{b}/v3/organizations/{}", sp.org_guid)),
                  "apply_manifest": {"href": format!("{b}/v3/spaces/{g}/actions/apply_manifest"), "method": "POST"}},
    })
}

async fn list_spaces(AxState(s): SharedState, q: Q) -> ApiResult {
    let (items, orgs): (Vec<Value>, Vec<Value>) = {
        let st = s.lock();
        let spaces: Vec<&crate::sim::state::Space> = st
            .spaces
            .iter()
            .filter(|sp| {
                q.accepts("names", &sp.name)
                    && q.accepts("guids", &sp.meta.guid)
                    && q.accepts("organization_guids", &sp.org_guid)
            })
            .collect();
        let orgs = st
            .orgs
            .iter()
            .filter(|o| spaces.iter().any(|sp| sp.org_guid == o.meta.guid))
            .map(|o| present_org(&s, o))
            .collect();
        (
            spaces.iter().map(|sp| present_space(&s, sp)).collect(),
            orgs,
        )
    };
    let mut resp = paginate(&s.base_url, "/v3/spaces", &q, items)?;
    if q.get("include").is_some_and(|i| i.contains("organization")) {
        resp = with_included(resp, "organizations", orgs).await;
    }
    Ok(resp)
}

/// Adds `included.<key>` to a JSON list response (keeps keys added before).
pub(super) async fn with_included(
    resp: axum::response::Response,
    key: &str,
    items: Vec<Value>,
) -> axum::response::Response {
    with_included_for(resp, key, |_| items).await
}

/// [`with_included`] with the items chosen from the response body (e.g. those of the
/// resources on this page only, as Cloud Controller decorates each page).
pub(super) async fn with_included_for(
    resp: axum::response::Response,
    key: &str,
    items: impl FnOnce(&Value) -> Vec<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return parts.status.into_response();
    };
    let mut v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let items = items(&v);
    if !v["included"].is_object() {
        v["included"] = json!({});
    }
    v["included"][key] = json!(items);
    (parts.status, axum::Json(v)).into_response()
}

/// The presented spaces and orgs of `space_guids` (for `include=space,space.organization`).
pub(super) fn spaces_and_orgs(
    s: &Shared,
    st: &State,
    space_guids: &[String],
) -> (Vec<Value>, Vec<Value>) {
    let spaces: Vec<&crate::sim::state::Space> = st
        .spaces
        .iter()
        .filter(|sp| space_guids.contains(&sp.meta.guid))
        .collect();
    let orgs = st
        .orgs
        .iter()
        .filter(|o| spaces.iter().any(|sp| sp.org_guid == o.meta.guid))
        .map(|o| present_org(s, o))
        .collect();
    (spaces.iter().map(|sp| present_space(s, sp)).collect(), orgs)
}

/// `GET /v3/spaces/:guid[?include=organization]`.
async fn get_space(AxState(s): SharedState, Path(guid): Path<String>, q: Q) -> ApiResult {
    let (body, orgs) = {
        let st = s.lock();
        let sp = st
            .space(&guid)
            .ok_or_else(|| ApiError::not_found("Space"))?;
        let orgs: Vec<Value> = st
            .orgs
            .iter()
            .filter(|o| o.meta.guid == sp.org_guid)
            .map(|o| present_org(&s, o))
            .collect();
        (present_space(&s, sp), orgs)
    };
    let resp = ok(body)?;
    if q.get("include")
        .is_some_and(|i| i.split(',').any(|x| x == "organization"))
    {
        return Ok(with_included(resp, "organizations", orgs).await);
    }
    Ok(resp)
}

pub(super) fn present_domain(s: &Shared, d: &Domain) -> Value {
    let b = &s.base_url;
    let g = &d.meta.guid;
    json!({
        "guid": g, "name": d.name, "internal": d.internal,
        "created_at": d.meta.created_at, "updated_at": d.meta.updated_at,
        "router_group": d.router_group.as_ref().map(|r| json!({"guid": r})),
        "supported_protocols": if d.tcp { json!(["tcp"]) } else { json!(["http"]) },
        "metadata": metadata(&d.meta),
        "relationships": {
            "organization": {"data": d.org_guid.as_ref().map(|o| json!({"guid": o}))},
            "shared_organizations": {"data": []},
        },
        "links": {"self": href(format!("{b}/v3/domains/{g}")),
                  "route_reservations": href(format!("{b}/v3/domains/{g}/route_reservations"))},
    })
}

fn domain_list(s: &Shared, st: &State, q: &Q) -> Vec<Value> {
    st.domains
        .iter()
        .filter(|d| q.accepts_ci("names", &d.name) && q.accepts("guids", &d.meta.guid))
        .map(|d| present_domain(s, d))
        .collect()
}

async fn list_domains(AxState(s): SharedState, q: Q) -> ApiResult {
    let items = domain_list(&s, &s.lock(), &q);
    paginate(&s.base_url, "/v3/domains", &q, items)
}

async fn get_domain(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    let d = st
        .domain(&guid)
        .ok_or_else(|| ApiError::not_found("Domain"))?;
    ok(present_domain(&s, d))
}

async fn org_domains(AxState(s): SharedState, Path(guid): Path<String>, q: Q) -> ApiResult {
    let items = {
        let st = s.lock();
        if !st.orgs.iter().any(|o| o.meta.guid == guid) {
            return Err(ApiError::not_found("Organization"));
        }
        domain_list(&s, &st, &q)
    };
    paginate(
        &s.base_url,
        &format!("/v3/organizations/{guid}/domains"),
        &q,
        items,
    )
}

async fn org_default_domain(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    let d = st
        .default_domain(&guid)
        .ok_or_else(|| ApiError::not_found("Domain"))?;
    ok(present_domain(&s, d))
}

async fn get_job(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let polls_needed = s.config.job_polls;
    let mut st = s.lock();
    let job = st
        .jobs
        .iter_mut()
        .find(|j| j.meta.guid == guid)
        .ok_or_else(|| ApiError::not_found("Job"))?;
    job.polls += 1;
    let b = &s.base_url;
    let (state, errors) = if job.polls <= polls_needed {
        ("PROCESSING", Vec::new())
    } else {
        match &job.outcome {
            JobOutcome::Complete => ("COMPLETE", Vec::new()),
            JobOutcome::Failed(errs) => (
                "FAILED",
                errs.iter()
                    .map(|(c, t, d)| json!({"code": c, "title": t, "detail": d}))
                    .collect(),
            ),
        }
    };
    let mut links = json!({"self": href(format!("{b}/v3/jobs/{}", job.meta.guid))});
    if let Some((name, path)) = &job.resource {
        links[name] = href(format!("{b}{path}"));
    }
    ok(json!({
        "guid": job.meta.guid, "created_at": job.meta.created_at, "updated_at": job.meta.updated_at,
        "operation": job.operation, "state": state, "links": links, "errors": errors,
        "warnings": job.warnings.iter().map(|w| json!({"detail": w})).collect::<Vec<_>>(),
    }))
}

async fn feature_flag(Path(name): Path<String>) -> ApiResult {
    ok(json!({"name": name, "enabled": true, "updated_at": null, "custom_error_message": null}))
}

/// The policy server's answer when it denies the token's scopes (403) or is not deployed
/// (404 from the router in front of it).
fn policy_refused(s: &Shared) -> Option<ApiResult> {
    use axum::response::IntoResponse;
    let mode = unavailable(s, OptionalApi::NetworkPolicy)?;
    Some(Ok(match mode {
        Unavailable::Forbidden => (
            axum::http::StatusCode::FORBIDDEN,
            axum::Json(json!({"error": format!(
                "provided scopes [{}] do not include allowed scopes [network.admin network.write]",
                crate::sim::uaa::SCOPES.join(" ")
            )})),
        )
            .into_response(),
        Unavailable::NotFound | Unavailable::Absent => {
            let host = s
                .base_url
                .trim_start_matches("http://")
                .trim_start_matches("https://");
            (
                axum::http::StatusCode::NOT_FOUND,
                [("x-cf-routererror", "unknown_route")],
                format!("404 Not Found: Requested route ('{host}') does not exist.\n"),
            )
                .into_response()
        }
    }))
}

async fn list_policies(AxState(s): SharedState, q: Q) -> ApiResult {
    if let Some(r) = policy_refused(&s) {
        return r;
    }
    let st = s.lock();
    let ids = q.list("id");
    let policies: Vec<Value> = st
        .policies
        .iter()
        .filter(|p| {
            ids.as_ref().is_none_or(|ids| {
                ids.iter().any(|id| {
                    p["source"]["id"].as_str() == Some(id.as_str())
                        || p["destination"]["id"].as_str() == Some(id.as_str())
                })
            })
        })
        .cloned()
        .collect();
    ok(json!({"total_policies": policies.len(), "policies": policies}))
}

async fn create_policies(AxState(s): SharedState, body: Bytes) -> ApiResult {
    if let Some(r) = policy_refused(&s) {
        return r;
    }
    let v = parse_json(&body)?;
    let list = v["policies"]
        .as_array()
        .ok_or_else(|| ApiError::unprocessable("missing policies"))?;
    let mut st = s.lock();
    for p in list {
        if p["source"]["id"].is_null() || p["destination"]["id"].is_null() {
            return Err(ApiError::unprocessable(
                "each policy needs source and destination ids",
            ));
        }
        if !st.policies.contains(p) {
            st.policies.push(p.clone());
        }
    }
    ok(json!({}))
}

async fn delete_policies(AxState(s): SharedState, body: Bytes) -> ApiResult {
    if let Some(r) = policy_refused(&s) {
        return r;
    }
    let v = parse_json(&body)?;
    let list = v["policies"].as_array().cloned().unwrap_or_default();
    s.lock().policies.retain(|p| !list.contains(p));
    ok(json!({}))
}
