//! Space and organization quotas (show, list) and the usage summaries of spaces and orgs, in
//! Cloud Controller's shapes (`SpaceQuotaPresenter`, `OrganizationQuotaPresenter`,
//! `SpaceUsageSummaryPresenter`, `OrganizationUsageSummaryPresenter`): unlimited is `null`.
//!
//! Depends on: `api` helpers, `state`, `sim::quotas`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State as AxState};
use axum::routing::get;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, Q, SharedState, href, ok, paginate};
use crate::sim::Shared;
use crate::sim::quotas::{Usage, org_usage, space_usage};
use crate::sim::state::{Quota, State};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v3/space_quotas", get(list_space_quotas))
        .route("/v3/space_quotas/{guid}", get(get_space_quota))
        .route("/v3/organization_quotas", get(list_org_quotas))
        .route("/v3/organization_quotas/{guid}", get(get_org_quota))
        .route("/v3/spaces/{guid}/usage_summary", get(space_usage_summary))
        .route(
            "/v3/organizations/{guid}/usage_summary",
            get(org_usage_summary),
        )
}

fn apps_and_routes(q: &Quota) -> (Value, Value, Value) {
    let s = &q.spec;
    (
        json!({
            "total_memory_in_mb": s.total_memory_mb,
            "per_process_memory_in_mb": s.instance_memory_mb,
            "total_instances": s.total_instances,
            "per_app_tasks": null,
            "log_rate_limit_in_bytes_per_second": null,
        }),
        json!({"paid_services_allowed": true, "total_service_instances": null,
               "total_service_keys": null}),
        json!({"total_routes": s.total_routes, "total_reserved_ports": null}),
    )
}

fn present_space_quota(base: &str, st: &State, q: &Quota) -> Value {
    let g = &q.meta.guid;
    let org = q.org_guid.clone().unwrap_or_default();
    let spaces: Vec<Value> = st
        .spaces
        .iter()
        .filter(|s| s.quota_guid.as_deref() == Some(g))
        .map(|s| json!({"guid": s.meta.guid}))
        .collect();
    let (apps, services, routes) = apps_and_routes(q);
    json!({
        "guid": g, "created_at": q.meta.created_at, "updated_at": q.meta.updated_at,
        "name": q.spec.name, "apps": apps, "services": services, "routes": routes,
        "relationships": {"organization": {"data": {"guid": org}}, "spaces": {"data": spaces}},
        "links": {"self": href(format!("{base}/v3/space_quotas/{g}")),
                  "organization": href(format!("{base}/v3/organizations/{org}"))},
    })
}

fn present_org_quota(base: &str, st: &State, q: &Quota) -> Value {
    let g = &q.meta.guid;
    let orgs: Vec<Value> = st
        .orgs
        .iter()
        .filter(|o| o.quota_guid.as_deref() == Some(g))
        .map(|o| json!({"guid": o.meta.guid}))
        .collect();
    let (apps, services, routes) = apps_and_routes(q);
    json!({
        "guid": g, "created_at": q.meta.created_at, "updated_at": q.meta.updated_at,
        "name": q.spec.name, "apps": apps, "services": services, "routes": routes,
        "domains": {"total_domains": null},
        "relationships": {"organizations": {"data": orgs}},
        "links": {"self": href(format!("{base}/v3/organization_quotas/{g}"))},
    })
}

async fn list_space_quotas(AxState(s): SharedState, q: Q) -> ApiResult {
    let items: Vec<Value> = {
        let st = s.lock();
        st.quotas
            .iter()
            .filter(|x| x.org_guid.is_some())
            .filter(|x| {
                q.accepts("names", &x.spec.name)
                    && q.accepts("guids", &x.meta.guid)
                    && q.accepts("organization_guids", x.org_guid.as_deref().unwrap_or(""))
                    && q.list("space_guids").is_none_or(|l| {
                        st.spaces.iter().any(|sp| {
                            l.contains(&sp.meta.guid)
                                && sp.quota_guid.as_deref() == Some(&x.meta.guid)
                        })
                    })
            })
            .map(|x| present_space_quota(&s.base_url, &st, x))
            .collect()
    };
    paginate(&s.base_url, "/v3/space_quotas", &q, items)
}

async fn get_space_quota(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    let q = st
        .quotas
        .iter()
        .find(|q| q.meta.guid == guid && q.org_guid.is_some())
        .ok_or_else(|| ApiError::not_found("Space quota"))?;
    ok(present_space_quota(&s.base_url, &st, q))
}

async fn list_org_quotas(AxState(s): SharedState, q: Q) -> ApiResult {
    let items: Vec<Value> = {
        let st = s.lock();
        st.quotas
            .iter()
            .filter(|x| x.org_guid.is_none())
            .filter(|x| {
                q.accepts("names", &x.spec.name)
                    && q.accepts("guids", &x.meta.guid)
                    && q.list("organization_guids").is_none_or(|l| {
                        st.orgs.iter().any(|o| {
                            l.contains(&o.meta.guid)
                                && o.quota_guid.as_deref() == Some(&x.meta.guid)
                        })
                    })
            })
            .map(|x| present_org_quota(&s.base_url, &st, x))
            .collect()
    };
    paginate(&s.base_url, "/v3/organization_quotas", &q, items)
}

async fn get_org_quota(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    let q = st
        .quotas
        .iter()
        .find(|q| q.meta.guid == guid && q.org_guid.is_none())
        .ok_or_else(|| ApiError::not_found("Organization quota"))?;
    ok(present_org_quota(&s.base_url, &st, q))
}

fn summary(u: Usage) -> Value {
    json!({
        "started_instances": u.instances, "memory_in_mb": u.memory_mb, "routes": u.routes,
        "service_instances": 0, "reserved_ports": 0, "domains": 0, "per_app_tasks": 0,
        "service_keys": 0,
    })
}

async fn space_usage_summary(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    let sp = st
        .space(&guid)
        .ok_or_else(|| ApiError::not_found("Space"))?;
    let b = &s.base_url;
    ok(json!({
        "usage_summary": summary(space_usage(&st, &guid)),
        "links": {"self": href(format!("{b}/v3/spaces/{guid}/usage_summary")),
                  "space": href(format!("{b}/v3/spaces/{}", sp.meta.guid))},
    }))
}

async fn org_usage_summary(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    if !st.orgs.iter().any(|o| o.meta.guid == guid) {
        return Err(ApiError::not_found("Organization"));
    }
    let b = &s.base_url;
    ok(json!({
        "usage_summary": summary(org_usage(&st, &guid)),
        "links": {"self": href(format!("{b}/v3/organizations/{guid}/usage_summary")),
                  "organization": href(format!("{b}/v3/organizations/{guid}"))},
    }))
}
