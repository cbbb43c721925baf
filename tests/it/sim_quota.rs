//! The simulator's space and organization quotas through the API, as the cf CLI and the plugin
//! see them: the quota resources and usage summaries, and Cloud Controller's 422s when a
//! start, a scale, a deployment (at create and while it rolls) or a new route asks for more
//! than a quota allows.

use std::time::Duration;

use cf_zero_downtime::cf::{self, AppGuid, Client, OrganizationGuid, ProcessScale, SpaceGuid};
use cf_zero_downtime::command::adapter::CfBackend;
use cf_zero_downtime::deploy::api::{CfApi, QuotaLevel, QuotaLimits, QuotaUsage};
use cf_zero_downtime::sim::{FailRule, FaultSpec, QuotaScope, QuotaSpec, SimConfig};
use serde_json::{Value, json};

use crate::support::poll;
use crate::support::sim_world::{World, fast, push_args, world};

/// The detail of a 422 from Cloud Controller, or a panic naming what came instead.
fn detail_422<T: std::fmt::Debug>(r: Result<T, cf::Error>) -> String {
    match r {
        Err(cf::Error::Api(a)) if a.status == 422 => {
            assert!(a.has_title("CF-UnprocessableEntity"), "{a:?}");
            a.errors[0].detail.clone()
        }
        other => panic!("expected a 422, got {other:?}"),
    }
}

/// Writes `web` with `instances` × `memory` and pushes it (a first deploy).
async fn push_web(w: &World, instances: u32, memory: &str) -> AppGuid {
    let d = w.write_app("v1", "web");
    let manifest = d.parent().unwrap().join("manifest.yml");
    std::fs::write(
        &manifest,
        format!(
            "applications:\n- name: web\n  instances: {instances}\n  memory: {memory}\n  path: web\n  \
             routes:\n  - route: web.{}\n",
            w.sim.app_domain()
        ),
    )
    .unwrap();
    w.push_deployed(push_args(&manifest)).await;
    w.client()
        .find_app(&SpaceGuid::new(w.sim.space_guid()), "web")
        .await
        .unwrap()
        .unwrap()
        .guid
}

fn quota(name: &str) -> QuotaSpec {
    QuotaSpec::unlimited(name)
}

/// A raw POST with the admin token: (status, body).
async fn post(w: &World, path: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", w.sim.api_url()))
        .header("Authorization", w.sim.token())
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_quotas_are_presented_and_counted() {
    let w = world(SimConfig {
        space_quota: Some(QuotaSpec {
            total_memory_mb: Some(200),
            total_routes: Some(10),
            ..quota("small")
        }),
        ..fast()
    })
    .await;
    push_web(&w, 1, "128M").await;
    let c: Client = w.client();
    let space = c
        .get_space(&SpaceGuid::new(w.sim.space_guid()))
        .await
        .unwrap();
    let q = c
        .get_space_quota(space.relationships.quota.guid().expect("a space quota"))
        .await
        .unwrap();
    assert_eq!(q.name, "small");
    assert_eq!(q.apps.total_memory_in_mb, Some(200));
    assert_eq!(q.apps.per_process_memory_in_mb, None);
    assert_eq!(q.routes.total_routes, Some(10));
    let used = c.get_space_usage_summary(&space.guid).await.unwrap();
    assert_eq!(
        (used.memory_in_mb, used.started_instances, used.routes),
        (128, 1, Some(1))
    );
    let org = c
        .get_organization(&OrganizationGuid::new(w.sim.org_guid()))
        .await
        .unwrap();
    let oq = c
        .get_organization_quota(org.relationships.quota.guid().expect("every org has one"))
        .await
        .unwrap();
    assert_eq!(
        (oq.name.as_str(), oq.apps.total_memory_in_mb),
        ("default", None)
    );
    let org_used = c.get_organization_usage_summary(&org.guid).await.unwrap();
    assert_eq!(org_used.memory_in_mb, 128);
    // Removing the space quota: the space shows none.
    w.sim.faults().set_quota(QuotaScope::Space, None);
    let space = c.get_space(&space.guid).await.unwrap();
    assert_eq!(space.relationships.quota.guid(), None);
    w.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_quotas_refuse_starts_scales_routes_and_deployments_with_cc_messages() {
    let w = world(SimConfig {
        space_quota: Some(QuotaSpec {
            total_memory_mb: Some(200),
            ..quota("small")
        }),
        ..fast()
    })
    .await;
    let app = push_web(&w, 1, "128M").await;
    let c = w.client();
    let web = c.get_app_process(&app, "web").await.unwrap().guid;
    let scale = |instances: Option<u32>, memory: Option<u64>| ProcessScale {
        instances,
        memory_in_mb: memory,
        ..ProcessScale::default()
    };
    // Memory: the space's, then the org's.
    assert_eq!(
        detail_422(c.scale_process(&web, &scale(Some(2), None)).await),
        "memory space_quota_exceeded"
    );
    w.sim.faults().set_quota(
        QuotaScope::Org,
        Some(QuotaSpec {
            total_memory_mb: Some(150),
            ..quota("org-small")
        }),
    );
    assert_eq!(
        detail_422(c.scale_process(&web, &scale(Some(2), None)).await),
        "memory space_quota_exceeded, memory quota_exceeded"
    );
    // Instance memory and instances.
    w.sim.faults().set_quota(
        QuotaScope::Org,
        Some(QuotaSpec {
            total_instances: Some(1),
            ..quota("org-small")
        }),
    );
    w.sim.faults().set_quota(
        QuotaScope::Space,
        Some(QuotaSpec {
            instance_memory_mb: Some(150),
            ..quota("small")
        }),
    );
    assert_eq!(
        detail_422(c.scale_process(&web, &scale(None, Some(256))).await),
        "memory space_instance_memory_limit_exceeded"
    );
    assert_eq!(
        detail_422(c.scale_process(&web, &scale(Some(2), None)).await),
        "app_instance_limit app_instance_limit_exceeded"
    );
    // Asking for less is always allowed.
    c.scale_process(&web, &scale(None, Some(64))).await.unwrap();
    // Routes: the space has one route; its quota allows one.
    w.sim.faults().set_quota(QuotaScope::Org, None);
    w.sim.faults().set_quota(
        QuotaScope::Space,
        Some(QuotaSpec {
            total_routes: Some(1),
            ..quota("small")
        }),
    );
    let domain = c.find_domain(&w.sim.app_domain()).await.unwrap().unwrap();
    let (status, body) = post(
        &w,
        "/v3/routes",
        json!({"host": "other", "relationships": {
            "space": {"data": {"guid": w.sim.space_guid()}},
            "domain": {"data": {"guid": domain.guid}}}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["errors"][0]["detail"],
        "Routes quota exceeded for space 'space'."
    );
    // 64 MB in use; a deployment's first new instance needs 64 MB more: 128 of 100.
    w.sim.faults().set_quota(
        QuotaScope::Space,
        Some(QuotaSpec {
            total_memory_mb: Some(100),
            ..quota("small")
        }),
    );
    let (status, body) = post(
        &w,
        "/v3/deployments",
        json!({"strategy": "rolling", "relationships": {"app": {"data": {"guid": app}}}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["errors"][0]["detail"],
        "memory space_quota_exceeded for space space. This space's quota may not be large enough to support rolling deployments or your configured max-in-flight."
    );
    // Starting a stopped app counts all of it.
    c.stop_app(&app).await.unwrap();
    w.sim.faults().set_quota(
        QuotaScope::Space,
        Some(QuotaSpec {
            total_memory_mb: Some(50),
            ..quota("small")
        }),
    );
    assert_eq!(
        detail_422(c.start_app(&app).await),
        "memory space_quota_exceeded"
    );
    w.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_deployment_scale_up_refused_by_a_quota_shows_in_details_error_until_it_fits() {
    let w = world(SimConfig {
        space_quota: Some(QuotaSpec {
            total_memory_mb: Some(192),
            ..quota("small")
        }),
        ..fast()
    })
    .await;
    let app = push_web(&w, 2, "64M").await;
    // New instances take a while to start: the quota changes before the first scale-up.
    w.sim.faults().slow_start("web", Duration::from_millis(600));
    let (status, dep) = post(
        &w,
        "/v3/deployments",
        json!({"strategy": "rolling", "options": {"max_in_flight": 1},
               "relationships": {"app": {"data": {"guid": app}}}}),
    )
    .await;
    assert_eq!(status, 201, "{dep}");
    assert!(dep["status"]["details"].get("error").is_none(), "{dep}");
    let guid = dep["guid"].as_str().unwrap().to_string();
    // Someone else takes 32 MB: 2 × 64 + 64 no longer fits in 160.
    w.sim.faults().set_quota(
        QuotaScope::Space,
        Some(QuotaSpec {
            total_memory_mb: Some(160),
            ..quota("small")
        }),
    );
    let c = w.client();
    let dguid = cf::DeploymentGuid::new(guid.as_str());
    let stuck = poll("details.error", || async {
        let d = c.get_deployment(&dguid).await.unwrap();
        d.error().map(str::to_string).map(|e| (e, d))
    })
    .await;
    assert_eq!(stuck.0, "memory space_quota_exceeded");
    assert!(!stuck.1.is_finalized());
    // The quota is raised again: the deployment goes on, the error goes away.
    w.sim.faults().set_quota(
        QuotaScope::Space,
        Some(QuotaSpec {
            total_memory_mb: Some(192),
            ..quota("small")
        }),
    );
    let done = poll("deployed", || async {
        let d = c.get_deployment(&dguid).await.unwrap();
        d.is_finalized().then_some(d)
    })
    .await;
    assert!(done.is_deployed(), "{done:?}");
    assert_eq!(done.error(), None);
    w.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_reads_both_levels_with_or_without_a_space_usage_summary() {
    let w = world(SimConfig {
        space_quota: Some(QuotaSpec {
            total_memory_mb: Some(200),
            ..quota("small")
        }),
        ..fast()
    })
    .await;
    push_web(&w, 1, "128M").await;
    let space = SpaceGuid::new(w.sim.space_guid());
    let backend = CfBackend::new(
        w.client(),
        space.clone(),
        Some(OrganizationGuid::new(w.sim.org_guid())),
    );
    let expected_space = QuotaLevel::Limited {
        limits: QuotaLimits {
            name: "small".into(),
            total_memory_mb: Some(200),
            ..QuotaLimits::default()
        },
        usage: QuotaUsage {
            memory_mb: 128,
            instances: 1,
            routes: Some(1),
        },
    };
    w.sim.clear_call_log();
    let q = backend.quotas(&space).await.unwrap();
    assert_eq!(q.space, expected_space);
    assert!(
        matches!(&q.org, QuotaLevel::Limited { limits, usage }
            if limits.name == "default" && limits.total_memory_mb.is_none() && usage.memory_mb == 128),
        "{:?}",
        q.org
    );
    // The organization comes with the space (include=organization), not read on its own.
    let org_path = format!("/v3/organizations/{}", w.sim.org_guid());
    let calls: Vec<String> = w
        .sim
        .call_log()
        .iter()
        .map(|c| format!("{} {}?{}", c.method, c.path, c.query))
        .collect();
    assert!(
        calls.iter().any(|c| c.contains("include=organization"))
            && !calls
                .iter()
                .any(|c| c.starts_with(&format!("GET {org_path}?"))),
        "{calls:#?}"
    );
    // A Cloud Controller without the space usage summary (404): the same numbers, summed.
    let fail = |path: &str, status: u16, times: u32| {
        w.sim.faults().apply(FaultSpec::FailCalls(FailRule {
            method: "GET".into(),
            path: path.into(),
            nth: 1,
            times,
            status,
            retry_after: None,
        }));
    };
    fail("/v3/spaces/:guid/usage_summary", 404, 1);
    assert_eq!(backend.quotas(&space).await.unwrap().space, expected_space);
    // A space developer who may not read the org quota: that level is unknown, saying why.
    fail("/v3/organization_quotas/:guid", 403, 1);
    let q = backend.quotas(&space).await.unwrap();
    assert_eq!(q.space, expected_space);
    let QuotaLevel::Unknown(why) = &q.org else {
        panic!("{:?}", q.org)
    };
    assert!(
        why.starts_with("the organization quota cannot be read (403"),
        "{why}"
    );
    w.sim.shutdown().await;
}
