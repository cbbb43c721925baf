//! Cloud Controller client against wiremock: request shapes, parsing, pagination, jobs, auth
//! refresh, retries, warnings, errors, uploads and timeouts. One MockServer per test.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use assert_matches::assert_matches;
use cf_zero_downtime::cf::{
    ApiVersion, AppGuid, AppQuery, AppState, AuthError, BindingCreated, BuildGuid, BuildState,
    Client, ClientConfig, DeploymentGuid, DeploymentOptions, DeploymentReason,
    DeploymentStatusValue, DeploymentStrategy, DestinationGuid, DomainGuid, DropletGuid, Error,
    Feature, HealthCheck, HealthCheckType, InstanceState, JobGuid, JobState, NewDeployment,
    NewDestination, NewPackage, NewRoute, NewServiceCredentialBinding, OrganizationGuid,
    PackageGuid, PackageState, PollOptions, ProcessGuid, ProcessScale, ProcessUpdate, Resource,
    RetryPolicy, RouteGuid, ServiceCredentialBindingGuid, ServiceInstanceGuid, SpaceGuid,
    TokenProvider, Trace,
};
use cf_zero_downtime::cf::{
    AuditEventFilter, DiffOp, EnvelopeKind, EnvelopeType, LogCacheQuery, MetadataUpdate,
};
use cf_zero_downtime::cf::{NewTask, TaskGuid, TaskState};
use futures::future::BoxFuture;
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{
    body_json, body_string, header, method, path, query_param, query_param_is_missing,
};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::mock_api::{fixture, multipart_parts, ok_json, requests};

// ---------------------------------------------------------------- helpers

const TOKEN: &str = "bearer old-token-abc";
const FRESH: &str = "bearer fresh-token-xyz";

/// A token provider that counts calls and hands out a new token on refresh.
struct CountingToken {
    current: Mutex<String>,
    token_calls: AtomicU32,
    refresh_calls: AtomicU32,
}

impl CountingToken {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            current: Mutex::new(TOKEN.to_owned()),
            token_calls: AtomicU32::new(0),
            refresh_calls: AtomicU32::new(0),
        })
    }
}

impl TokenProvider for CountingToken {
    fn token(&self) -> BoxFuture<'_, Result<SecretString, AuthError>> {
        self.token_calls.fetch_add(1, Ordering::SeqCst);
        let t = self.current.lock().unwrap().clone();
        Box::pin(async move { Ok(SecretString::from(t)) })
    }
    fn refresh(&self) -> BoxFuture<'_, Result<SecretString, AuthError>> {
        self.refresh_calls.fetch_add(1, Ordering::SeqCst);
        *self.current.lock().unwrap() = FRESH.to_owned();
        Box::pin(async move { Ok(SecretString::from(FRESH.to_owned())) })
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 2,
        outage_budget: Duration::from_millis(200),
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        max_retry_after: Duration::from_millis(50),
    }
}

fn config(server: &MockServer, token: Arc<CountingToken>) -> ClientConfig {
    let mut c = ClientConfig::new(server.uri(), token);
    c.retry = fast_retry();
    c.request_timeout = Duration::from_secs(10);
    c
}

fn client(server: &MockServer) -> Client {
    Client::new(config(server, CountingToken::new())).unwrap()
}

fn fast_poll() -> PollOptions {
    PollOptions::new(Duration::from_millis(5), Duration::from_secs(5))
}

fn accepted_job(server: &MockServer, guid: &str) -> ResponseTemplate {
    ResponseTemplate::new(202).insert_header("Location", format!("{}/v3/jobs/{guid}", server.uri()))
}

// ---------------------------------------------------------------- discovery

#[tokio::test]
async fn discover_reads_version_and_links_without_auth() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/"))
        .respond_with(ok_json(fixture("root/get.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    assert_matches!(c.supports(Feature::MaxInFlight), Err(Error::VersionUnknown));
    let root = c.discover().await.unwrap();
    assert_eq!(root.api_version(), Some(ApiVersion::new(3, 180, 0)));
    assert_eq!(root.links.uaa.unwrap().href, "https://uaa.example.org");
    assert_eq!(c.api_version(), Some(ApiVersion::new(3, 180, 0)));
    assert!(c.supports(Feature::CanaryDeployments).unwrap());
    assert!(!c.supports(Feature::CanarySteps).unwrap());
    let err = c.require(Feature::CanarySteps).unwrap_err();
    assert_eq!(
        err.to_string(),
        "canary instance steps requires CF API version 3.189.0 or higher; the target is 3.180.0"
    );
    let reqs = requests(&server).await;
    assert!(reqs[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn get_info_parses_and_ignores_unknown_fields() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/info"))
        .respond_with(ok_json(fixture("info/get.json", &server)))
        .mount(&server)
        .await;
    let info = client(&server).get_info().await.unwrap();
    assert_eq!(info.name, "Cloud Foundry");
    assert_eq!(info.version, Some(123));
    assert_eq!(info.rate_limits.unwrap().general_limit, Some(2000));
}

#[tokio::test]
async fn unsupported_deployment_options_fail_before_any_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;
    let c = client(&server);
    c.set_api_version(ApiVersion::new(3, 150, 0));
    let new = NewDeployment::canary(AppGuid::new("app-1"), None);
    let err = c.create_deployment(&new).await.unwrap_err();
    assert_matches!(
        err,
        Error::Unsupported {
            feature: Feature::CanaryDeployments,
            ..
        }
    );
    let new = NewDeployment::rolling(AppGuid::new("app-1"), None).with_options(DeploymentOptions {
        max_in_flight: Some(2),
        ..DeploymentOptions::default()
    });
    assert_matches!(
        c.create_deployment(&new).await,
        Err(Error::Unsupported {
            feature: Feature::MaxInFlight,
            ..
        })
    );
}

// ---------------------------------------------------------------- orgs, spaces, apps

#[tokio::test]
async fn find_organization_and_space_by_name() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/organizations"))
        .and(query_param("names", "my-org"))
        .and(query_param("per_page", "5000"))
        .respond_with(ok_json(fixture("organizations/list_one.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/spaces"))
        .and(query_param("names", "dev"))
        .and(query_param("organization_guids", "org-1"))
        .respond_with(ok_json(fixture("spaces/list_one.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let org = c.find_organization("my-org").await.unwrap().unwrap();
    assert_eq!(org.guid, OrganizationGuid::new("org-1"));
    let space = c.find_space(&org.guid, "dev").await.unwrap().unwrap();
    assert_eq!(space.guid, SpaceGuid::new("space-1"));
    assert_eq!(space.relationships.organization.guid(), Some(&org.guid));
}

#[tokio::test]
async fn list_apps_sends_filters_and_tolerates_unknown_states() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/apps"))
        .and(query_param("names", "web,worker%2Cx"))
        .and(query_param("space_guids", "space-1"))
        .and(query_param("label_selector", "cf-zdt/role=live"))
        .and(query_param("per_page", "5000"))
        .and(header("authorization", TOKEN))
        .and(header("accept", "application/json"))
        .respond_with(ok_json(fixture("apps/list_unknown_state.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    let q = AppQuery::default()
        .names(["web", "worker,x"])
        .space_guids([SpaceGuid::new("space-1")])
        .label_selector("cf-zdt/role=live");
    let apps = client(&server).list_apps(&q).await.unwrap();
    assert_eq!(apps.len(), 2);
    assert_eq!(apps[0].state, AppState::Unknown);
    assert_eq!(apps[0].metadata.labels["cf-zdt/role"], "live");
    assert_eq!(
        apps[0].current_droplet_guid(),
        Some(&DropletGuid::new("drop-1"))
    );
    assert_eq!(apps[1].state, AppState::Stopped);
    assert_eq!(apps[1].current_droplet_guid(), None);
    assert_eq!(apps[1].space_guid(), Some(&SpaceGuid::new("space-1")));
}

#[tokio::test]
async fn pagination_follows_next_href_across_pages() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/apps"))
        .and(query_param("page", "2"))
        .respond_with(ok_json(fixture("apps/list_page2.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/apps"))
        .and(query_param_is_missing("page"))
        .and(query_param("per_page", "5000"))
        .respond_with(ok_json(fixture("apps/list_page1.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    let apps = client(&server)
        .list_apps(&AppQuery::default().names(["a", "b", "c"]))
        .await
        .unwrap();
    let names: Vec<_> = apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[tokio::test]
async fn next_href_on_another_origin_is_refused() {
    let server = MockServer::start().await;
    let mut page = fixture("apps/list_page1.json", &server);
    page["pagination"]["next"]["href"] = json!("https://evil.example.com/v3/apps?page=2");
    Mock::given(method("GET"))
        .and(path("/v3/apps"))
        .respond_with(ok_json(page))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server)
        .list_apps(&AppQuery::default())
        .await
        .unwrap_err();
    assert_matches!(err, Error::Protocol { .. });
}

#[tokio::test]
async fn find_app_is_none_when_the_list_is_empty() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/apps"))
        .and(query_param("names", "ghost"))
        .and(query_param("space_guids", "space-1"))
        .respond_with(ok_json(fixture("apps/list_empty.json", &server)))
        .mount(&server)
        .await;
    let found = client(&server)
        .find_app(&SpaceGuid::new("space-1"), "ghost")
        .await
        .unwrap();
    assert!(found.is_none());
}

#[tokio::test]
async fn get_app_maps_404_with_request_id() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/apps/nope"))
        .respond_with(
            ResponseTemplate::new(404)
                .insert_header("X-Vcap-Request-Id", "req-123")
                .set_body_json(fixture("errors/not_found_app.json", &server)),
        )
        .expect(1) // a 404 is not retried
        .mount(&server)
        .await;
    let err = client(&server)
        .get_app(&AppGuid::new("nope"))
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    assert!(err.has_title("CF-ResourceNotFound"));
    assert_eq!(err.request_id(), Some("req-123"));
    let api = err.api().unwrap();
    assert_eq!(api.status, 404);
    assert!(api.has_code(10010));
    assert_eq!(
        err.to_string(),
        "GET /v3/apps/nope failed with status 404: CF-ResourceNotFound (10010): App not found (request id: req-123)"
    );
}

#[tokio::test]
async fn get_app_parses_the_app() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-1"))
        .respond_with(ok_json(fixture("apps/get.json", &server)))
        .mount(&server)
        .await;
    let app = client(&server)
        .get_app(&AppGuid::new("app-1"))
        .await
        .unwrap();
    assert_eq!(app.name, "web");
    assert_eq!(app.state, AppState::Started);
    let lc = app.lifecycle.unwrap();
    assert_eq!(lc.data.buildpacks.unwrap(), ["java_buildpack"]);
}

#[tokio::test]
async fn rename_metadata_and_lifecycle_actions() {
    let server = MockServer::start().await;
    let app = fixture("apps/get.json", &server);
    Mock::given(method("PATCH"))
        .and(path("/v3/apps/app-1"))
        .and(body_json(json!({"name": "web-venerable"})))
        .respond_with(ok_json(app.clone()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v3/apps/app-1"))
        .and(body_json(json!({"metadata": {
            "labels": {"cf-zdt/role": "candidate", "old": null},
            "annotations": {"cf-zdt/run": "r1"}
        }})))
        .respond_with(ok_json(app.clone()))
        .expect(1)
        .mount(&server)
        .await;
    for action in ["start", "stop", "restart"] {
        Mock::given(method("POST"))
            .and(path(format!("/v3/apps/app-1/actions/{action}")))
            .respond_with(ok_json(app.clone()))
            .expect(1)
            .mount(&server)
            .await;
    }
    let c = client(&server);
    let g = AppGuid::new("app-1");
    c.rename_app(&g, "web-venerable").await.unwrap();
    let update = MetadataUpdate::default()
        .label("cf-zdt/role", "candidate")
        .remove_label("old")
        .annotation("cf-zdt/run", "r1");
    c.update_app_metadata(&g, &update).await.unwrap();
    c.start_app(&g).await.unwrap();
    c.stop_app(&g).await.unwrap();
    assert_eq!(c.restart_app(&g).await.unwrap().state, AppState::Started);
}

#[tokio::test]
async fn delete_app_returns_the_job_from_location() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/v3/apps/app-1"))
        .respond_with(accepted_job(&server, "job-del"))
        .expect(1)
        .mount(&server)
        .await;
    let job = client(&server)
        .delete_app(&AppGuid::new("app-1"))
        .await
        .unwrap();
    assert_eq!(job, JobGuid::new("job-del"));
}

#[tokio::test]
async fn accepted_without_location_is_a_protocol_error() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/v3/routes/r"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    let err = client(&server)
        .delete_route(&RouteGuid::new("r"))
        .await
        .unwrap_err();
    assert_matches!(err, Error::Protocol { .. });
}

#[tokio::test]
async fn environment_variables_get_and_patch() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-1/environment_variables"))
        .respond_with(ok_json(fixture("apps/env_vars.json", &server)))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v3/apps/app-1/environment_variables"))
        .and(body_json(json!({"var": {"DEBUG": "false", "USER": null}})))
        .respond_with(ok_json(json!({"var": {"DEBUG": "false"}, "links": {}})))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let g = AppGuid::new("app-1");
    let env = c.get_app_environment_variables(&g).await.unwrap();
    assert_eq!(env["RAILS_ENV"], "production");
    assert_eq!(env["PORTISH"], "8080");
    assert_eq!(env["FLAG"], "true");
    assert!(!env.contains_key("GONE"));
    let mut patch = BTreeMap::new();
    patch.insert("DEBUG".to_owned(), Some("false".to_owned()));
    patch.insert("USER".to_owned(), None);
    let after = c
        .update_app_environment_variables(&g, &patch)
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
}

#[tokio::test]
async fn app_features_list_get_and_update() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-1/features"))
        .respond_with(ok_json(fixture("apps/features.json", &server)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-1/features/ssh"))
        .respond_with(ok_json(fixture("apps/feature_ssh.json", &server)))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v3/apps/app-1/features/ssh"))
        .and(body_json(json!({"enabled": false})))
        .respond_with(ok_json(
            json!({"name": "ssh", "enabled": false, "description": "d"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let g = AppGuid::new("app-1");
    let all = c.list_app_features(&g).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(!all[1].enabled);
    assert!(c.get_app_feature(&g, "ssh").await.unwrap().enabled);
    assert!(
        !c.update_app_feature(&g, "ssh", false)
            .await
            .unwrap()
            .enabled
    );
}

#[tokio::test]
async fn current_droplet_get_find_and_set() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-1/droplets/current"))
        .respond_with(ok_json(fixture("droplets/get.json", &server)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-2/droplets/current"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(fixture("errors/not_found_droplet.json", &server)),
        )
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v3/apps/app-1/relationships/current_droplet"))
        .and(body_json(json!({"data": {"guid": "drop-9"}})))
        .respond_with(ok_json(fixture(
            "apps/current_droplet_relationship.json",
            &server,
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/droplets/drop-1"))
        .respond_with(ok_json(fixture("droplets/get.json", &server)))
        .mount(&server)
        .await;
    let c = client(&server);
    let d = c.get_current_droplet(&AppGuid::new("app-1")).await.unwrap();
    assert_eq!(
        d.process_types["web"],
        "bundle exec rackup config.ru -p $PORT"
    );
    assert!(
        c.find_current_droplet(&AppGuid::new("app-2"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        c.get_current_droplet(&AppGuid::new("app-2"))
            .await
            .unwrap_err()
            .is_not_found()
    );
    c.set_current_droplet(&AppGuid::new("app-1"), &DropletGuid::new("drop-9"))
        .await
        .unwrap();
    assert_eq!(
        c.get_droplet(&DropletGuid::new("drop-1"))
            .await
            .unwrap()
            .stack
            .as_deref(),
        Some("cflinuxfs4")
    );
}

// ---------------------------------------------------------------- manifests and jobs

#[tokio::test]
async fn apply_manifest_posts_yaml_and_the_job_completes_with_warnings() {
    let server = MockServer::start().await;
    let yaml = "applications:\n- name: web\n  instances: 2\n";
    Mock::given(method("POST"))
        .and(path("/v3/spaces/space-1/actions/apply_manifest"))
        .and(header("content-type", "application/x-yaml"))
        .and(body_string(yaml))
        .respond_with(
            accepted_job(&server, "job-1").insert_header("X-Cf-Warnings", "apply%20warning"),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/jobs/job-1"))
        .respond_with(ok_json(fixture("jobs/processing.json", &server)))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/jobs/job-1"))
        .respond_with(ok_json(fixture("jobs/polling.json", &server)))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/jobs/job-1"))
        .respond_with(ok_json(fixture("jobs/complete.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let job = c
        .apply_manifest(&SpaceGuid::new("space-1"), yaml)
        .await
        .unwrap();
    assert_eq!(job, JobGuid::new("job-1"));
    let done = c.wait_for_job(&job, fast_poll()).await.unwrap();
    assert_eq!(done.state, JobState::Complete);
    assert_eq!(done.operation, "space.apply_manifest");
    // Header warnings, then the final job's warnings (not those of intermediate polls).
    assert_eq!(
        c.take_warnings(),
        ["apply warning", "memory quota close to limit"]
    );
    assert!(c.take_warnings().is_empty());
}

#[tokio::test]
async fn failed_job_surfaces_errors_and_warnings() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/jobs/job-1"))
        .respond_with(ok_json(fixture("jobs/failed.json", &server)))
        .mount(&server)
        .await;
    let c = client(&server);
    let err = c
        .wait_for_job(&JobGuid::new("job-1"), fast_poll())
        .await
        .unwrap_err();
    assert!(err.has_title("CF-UnprocessableEntity"));
    match &err {
        Error::JobFailed {
            job,
            operation,
            errors,
        } => {
            assert_eq!(job, &JobGuid::new("job-1"));
            assert_eq!(operation, "space.apply_manifest");
            assert_eq!(errors[0].code, 10008);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("Routes cannot be mapped"));
    assert_eq!(c.take_warnings(), ["job warning"]);
}

#[tokio::test]
async fn job_polling_is_bounded() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/jobs/job-1"))
        .respond_with(ok_json(fixture("jobs/processing.json", &server)))
        .mount(&server)
        .await;
    let err = client(&server)
        .wait_for_job(
            &JobGuid::new("job-1"),
            PollOptions::new(Duration::from_millis(5), Duration::from_millis(40)),
        )
        .await
        .unwrap_err();
    assert_matches!(err, Error::PollTimeout { .. });
}

#[tokio::test]
async fn manifest_diff_parses_operations() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/spaces/space-1/manifest_diff"))
        .and(header("content-type", "application/x-yaml"))
        .and(body_string("applications: []\n"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(fixture("manifests/diff.json", &server)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let diff = client(&server)
        .manifest_diff(&SpaceGuid::new("space-1"), "applications: []\n")
        .await
        .unwrap();
    let ops: Vec<_> = diff.diff.iter().map(|d| d.op).collect();
    assert_eq!(
        ops,
        [
            DiffOp::Remove,
            DiffOp::Add,
            DiffOp::Replace,
            DiffOp::Unknown
        ]
    );
    assert_eq!(diff.diff[2].was, Some(json!("256M")));
    assert_eq!(diff.diff[1].value, Some(json!("java_buildpack")));
}

// ---------------------------------------------------------------- bits

#[tokio::test]
async fn resource_matches_sends_v3_resources() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/resource_matches"))
        .and(body_json(json!({"resources": [
            {"checksum": {"value": "a9993e364706816aba3e25717850c26c9cd0d89d"}, "size_in_bytes": 1234, "path": "app.js", "mode": "644"},
            {"checksum": {"value": "002d760bea1be268e27077412e11a320d0f164d3"}, "size_in_bytes": 36, "path": "bin/run", "mode": "755"}
        ]})))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("resource_matches/response.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    let local = [
        Resource::new(
            "app.js",
            "a9993e364706816aba3e25717850c26c9cd0d89d",
            1234,
            0o644,
        ),
        Resource::new(
            "bin/run",
            "002d760bea1be268e27077412e11a320d0f164d3",
            36,
            0o755,
        ),
    ];
    let matched = client(&server).match_resources(&local).await.unwrap();
    assert_eq!(matched, [local[0].clone()]);
    assert_eq!(matched[0].mode_bits(), Some(0o644));
}

#[tokio::test]
async fn create_bits_and_docker_packages() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/packages"))
        .and(body_json(
            json!({"type": "bits", "relationships": {"app": {"data": {"guid": "app-1"}}}}),
        ))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(fixture("packages/awaiting_upload.json", &server)),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/packages"))
        .and(body_json(json!({"type": "docker", "relationships": {"app": {"data": {"guid": "app-1"}}},
            "data": {"image": "registry/image:latest", "username": "user", "password": "s3cret-pw"}})))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("packages/docker_ready.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let p = c
        .create_package(&NewPackage::bits(AppGuid::new("app-1")))
        .await
        .unwrap();
    assert_eq!(p.state, PackageState::AwaitingUpload);
    let docker = NewPackage::docker(
        AppGuid::new("app-1"),
        "registry/image:latest",
        Some("user".to_owned()),
        Some(SecretString::from("s3cret-pw")),
    );
    assert!(!format!("{docker:?}").contains("s3cret-pw"));
    let p = c.create_package(&docker).await.unwrap();
    assert_eq!(p.state, PackageState::Ready);
    assert_eq!(p.data.image.as_deref(), Some("registry/image:latest"));
}

#[tokio::test]
async fn upload_streams_the_zip_with_resources_first() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/packages/pkg-1/upload"))
        .respond_with(ok_json(fixture("packages/processing_upload.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    // 300 KiB: several 64 KiB chunks, so progress is reported more than once.
    let content: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
    let mut zip = tempfile::NamedTempFile::new().unwrap();
    zip.write_all(&content).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let matched = [Resource::new(
        "app.js",
        "a9993e364706816aba3e25717850c26c9cd0d89d",
        1234,
        0o644,
    )];
    let p = client(&server)
        .upload_package_bits(
            &PackageGuid::new("pkg-1"),
            &matched,
            Some(zip.path()),
            move |sent, total| {
                seen2.lock().unwrap().push((sent, total));
            },
        )
        .await
        .unwrap();
    assert_eq!(p.state, PackageState::ProcessingUpload);

    let req = &requests(&server).await[0];
    let ct = req.headers.get("content-type").unwrap().to_str().unwrap();
    assert!(ct.starts_with("multipart/form-data; boundary="), "{ct}");
    assert!(
        req.headers.get("content-length").is_some(),
        "length is precomputed, not chunked"
    );
    let parts = multipart_parts(req);
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].name, "resources");
    assert_eq!(parts[0].filename, None);
    let resources: Value = serde_json::from_slice(&parts[0].content).unwrap();
    assert_eq!(
        resources,
        json!([{"checksum": {"value": "a9993e364706816aba3e25717850c26c9cd0d89d"}, "size_in_bytes": 1234, "path": "app.js", "mode": "644"}])
    );
    assert_eq!(parts[1].name, "bits");
    assert_eq!(parts[1].filename.as_deref(), Some("package.zip"));
    assert_eq!(parts[1].content, content);

    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 4, "progress per chunk: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(
        *seen.last().unwrap(),
        (content.len() as u64, content.len() as u64)
    );
}

#[tokio::test]
async fn upload_without_zip_sends_only_empty_resources() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/packages/pkg-1/upload"))
        .respond_with(ok_json(fixture("packages/processing_upload.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    let calls = Arc::new(AtomicU32::new(0));
    let calls2 = calls.clone();
    client(&server)
        .upload_package_bits(&PackageGuid::new("pkg-1"), &[], None, move |_, _| {
            calls2.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
    let parts = multipart_parts(&requests(&server).await[0]);
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].name, "resources");
    assert_eq!(parts[0].content, b"[]");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn upload_of_a_missing_zip_fails_before_sending() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let err = client(&server)
        .upload_package_bits(
            &PackageGuid::new("pkg-1"),
            &[],
            Some(std::path::Path::new("/nonexistent/package.zip")),
            |_, _| {},
        )
        .await
        .unwrap_err();
    assert_matches!(err, Error::Io { .. });
}

#[tokio::test]
async fn upload_is_rebuilt_from_the_file_after_a_token_refresh() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/packages/pkg-1/upload"))
        .and(header("authorization", TOKEN))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(fixture("errors/invalid_token.json", &server)),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/packages/pkg-1/upload"))
        .and(header("authorization", FRESH))
        .respond_with(ok_json(fixture("packages/processing_upload.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    let mut zip = tempfile::NamedTempFile::new().unwrap();
    zip.write_all(b"PK-zip-bytes").unwrap();
    client(&server)
        .upload_package_bits(&PackageGuid::new("pkg-1"), &[], Some(zip.path()), |_, _| {})
        .await
        .unwrap();
    let reqs = requests(&server).await;
    assert_eq!(multipart_parts(&reqs[1])[1].content, b"PK-zip-bytes");
}

#[tokio::test]
async fn package_polling_until_ready_or_failed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/packages/pkg-1"))
        .respond_with(ok_json(fixture("packages/processing_upload.json", &server)))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/packages/pkg-1"))
        .respond_with(ok_json(fixture("packages/ready.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/packages/pkg-2"))
        .respond_with(ok_json(fixture("packages/failed.json", &server)))
        .mount(&server)
        .await;
    let c = client(&server);
    let p = c
        .wait_for_package_ready(&PackageGuid::new("pkg-1"), fast_poll())
        .await
        .unwrap();
    assert_eq!(p.state, PackageState::Ready);
    let err = c
        .wait_for_package_ready(&PackageGuid::new("pkg-2"), fast_poll())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "package pkg-1 is FAILED instead of READY: bits could not be processed"
    );
}

#[tokio::test]
async fn build_create_and_poll_to_staged_or_failed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/builds"))
        .and(body_json(json!({"package": {"guid": "pkg-1"}})))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(fixture("builds/staging.json", &server)),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/builds/build-1"))
        .respond_with(ok_json(fixture("builds/staging.json", &server)))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/builds/build-1"))
        .respond_with(ok_json(fixture("builds/staged.json", &server)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/builds/build-2"))
        .respond_with(ok_json(fixture("builds/failed.json", &server)))
        .mount(&server)
        .await;
    let c = client(&server);
    let b = c.create_build(&PackageGuid::new("pkg-1")).await.unwrap();
    assert_eq!(b.state, BuildState::Staging);
    let staged = c.wait_for_build_staged(&b.guid, fast_poll()).await.unwrap();
    assert_eq!(staged.droplet_guid(), Some(&DropletGuid::new("drop-1")));
    let err = c
        .wait_for_build_staged(&BuildGuid::new("build-2"), fast_poll())
        .await
        .unwrap_err();
    match err {
        Error::StagingFailed { error, .. } => assert!(error.starts_with("NoAppDetectedError")),
        other => panic!("unexpected {other:?}"),
    }
}

// ---------------------------------------------------------------- tasks

#[tokio::test]
async fn task_create_poll_to_an_end_and_read_the_failure_reason() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/apps/app-1/tasks"))
        .and(body_json(
            json!({"command": "bin/rails db:migrate", "name": "zdt-migrate-1",
            "memory_in_mb": 256, "disk_in_mb": 512, "droplet_guid": "drop-1"}),
        ))
        .respond_with(
            ResponseTemplate::new(202).set_body_json(fixture("tasks/running.json", &server)),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/tasks/task-1"))
        .respond_with(ok_json(fixture("tasks/running.json", &server)))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/tasks/task-1"))
        .respond_with(ok_json(fixture("tasks/failed.json", &server)))
        .mount(&server)
        .await;
    let c = client(&server);
    let new = NewTask {
        name: Some("zdt-migrate-1".into()),
        memory_in_mb: Some(256),
        disk_in_mb: Some(512),
        droplet_guid: Some(DropletGuid::new("drop-1")),
        ..NewTask::new("bin/rails db:migrate")
    };
    let t = c.create_task(&AppGuid::new("app-1"), &new).await.unwrap();
    assert_eq!(
        (t.state, t.sequence_id, t.name.as_str()),
        (TaskState::Running, 1, "zdt-migrate-1")
    );
    assert_eq!(t.relationships.app.guid(), Some(&AppGuid::new("app-1")));
    let done = c.wait_for_task(&t.guid, fast_poll()).await.unwrap();
    assert_eq!(done.state, TaskState::Failed);
    assert_eq!(
        done.failure_reason(),
        Some("APP/TASK/zdt-migrate-1: Exited with status 1")
    );
}

#[tokio::test]
async fn a_task_create_is_not_retried_after_a_gateway_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/apps/app-1/tasks"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    let c = client(&server);
    c.create_task(&AppGuid::new("app-1"), &NewTask::new("x"))
        .await
        .unwrap_err();
    assert_eq!(
        requests(&server).await.len(),
        1,
        "a second create would run it twice"
    );
}

#[tokio::test]
async fn a_task_that_never_ends_is_a_bounded_wait() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/tasks/task-1"))
        .respond_with(ok_json(fixture("tasks/running.json", &server)))
        .mount(&server)
        .await;
    let c = client(&server);
    let opts = PollOptions::new(Duration::from_millis(5), Duration::from_millis(50));
    let err = c
        .wait_for_task(&TaskGuid::new("task-1"), opts)
        .await
        .unwrap_err();
    assert_matches!(err, Error::PollTimeout { .. });
}

#[tokio::test]
async fn task_cancel_uses_the_action_and_falls_back_to_the_old_endpoint() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/tasks/task-1/actions/cancel"))
        .respond_with(
            ResponseTemplate::new(202).set_body_json(fixture("tasks/canceling.json", &server)),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/tasks/task-2/actions/cancel"))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v3/tasks/task-2/cancel"))
        .respond_with(
            ResponseTemplate::new(202).set_body_json(fixture("tasks/canceling.json", &server)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let t = c.cancel_task(&TaskGuid::new("task-1")).await.unwrap();
    assert_eq!(t.state, TaskState::Canceling);
    let t = c.cancel_task(&TaskGuid::new("task-2")).await.unwrap();
    assert_eq!(t.state, TaskState::Canceling);
}

// ---------------------------------------------------------------- processes

#[tokio::test]
async fn processes_list_get_update_scale_and_stats() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-1/processes"))
        .and(query_param("per_page", "5000"))
        .respond_with(ok_json(fixture("processes/list.json", &server)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/processes/proc-web"))
        .respond_with(ok_json(fixture("processes/get.json", &server)))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v3/processes/proc-web"))
        .and(body_json(json!({"health_check": {"type": "http", "data": {"endpoint": "/health", "invocation_timeout": 5}},
                              "readiness_health_check": {"type": "process", "data": {}}})))
        .respond_with(ok_json(fixture("processes/get.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/processes/proc-web/actions/scale"))
        .and(body_json(json!({"instances": 3, "memory_in_mb": 512})))
        .respond_with(
            ResponseTemplate::new(202).set_body_json(fixture("processes/get.json", &server)),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/processes/proc-web/stats"))
        .respond_with(ok_json(fixture("processes/stats.json", &server)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-1/processes/web"))
        .respond_with(ok_json(fixture("processes/get.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/apps/app-1/processes/web/actions/scale"))
        .and(body_json(json!({"instances": 0})))
        .respond_with(
            ResponseTemplate::new(202).set_body_json(fixture("processes/get.json", &server)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let by_type = c
        .get_app_process(&AppGuid::new("app-1"), "web")
        .await
        .unwrap();
    assert_eq!(by_type.guid, ProcessGuid::new("proc-web"));
    let zero = ProcessScale {
        instances: Some(0),
        ..ProcessScale::default()
    };
    c.scale_app_process(&AppGuid::new("app-1"), "web", &zero)
        .await
        .unwrap();
    let procs = c.list_app_processes(&AppGuid::new("app-1")).await.unwrap();
    assert_eq!(procs.len(), 2);
    assert_eq!(procs[1].type_, "worker");
    assert_eq!(
        procs[1].health_check.as_ref().unwrap().type_,
        HealthCheckType::Unknown
    );
    let web = c.get_process(&ProcessGuid::new("proc-web")).await.unwrap();
    assert_eq!(web.instances, 2);
    let hc = web.health_check.unwrap();
    assert_eq!(hc.data.endpoint.as_deref(), Some("/health"));
    assert_eq!(hc.data.timeout, Some(60));
    let mut check = HealthCheck::http("/health");
    check.data.invocation_timeout = Some(5);
    let update = ProcessUpdate {
        health_check: Some(check),
        readiness_health_check: Some(HealthCheck::of_type(HealthCheckType::Process)),
        ..ProcessUpdate::default()
    };
    c.update_process(&web.guid, &update).await.unwrap();
    let scale = ProcessScale {
        instances: Some(3),
        memory_in_mb: Some(512),
        ..ProcessScale::default()
    };
    c.scale_process(&web.guid, &scale).await.unwrap();
    let stats = c.get_process_stats(&web.guid).await.unwrap();
    assert_eq!(stats.len(), 3);
    assert_eq!(stats[0].state, InstanceState::Running);
    assert_eq!(stats[0].routable, Some(true));
    assert_eq!(stats[0].instance_guid.as_deref(), Some("e49f"));
    assert_eq!(stats[1].instance_guid, None);
    assert!(stats[0].is_serving());
    assert_eq!(stats[1].state, InstanceState::Down);
    assert_eq!(
        stats[1].details.as_deref(),
        Some("insufficient resources: memory")
    );
    assert_eq!(stats[1].routable, None);
    assert_eq!(stats[2].state, InstanceState::Unknown);
    assert_eq!(stats[2].routable, Some(false));
}

// ---------------------------------------------------------------- domains and routes

#[tokio::test]
async fn domains_by_name_and_default() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/domains"))
        .and(query_param("names", "example.com"))
        .and(query_param("per_page", "1"))
        .and(query_param("page", "1"))
        .respond_with(ok_json(fixture("domains/list_one.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/organizations/org-1/domains/default"))
        .respond_with(ok_json(fixture("domains/default.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/domains/dom-tcp"))
        .respond_with(ok_json(fixture("domains/tcp.json", &server)))
        .mount(&server)
        .await;
    let c = client(&server);
    let d = c.find_domain("example.com").await.unwrap().unwrap();
    assert!(d.is_shared());
    assert!(!d.is_tcp());
    let def = c
        .get_default_domain(&OrganizationGuid::new("org-1"))
        .await
        .unwrap();
    assert_eq!(def.guid, DomainGuid::new("dom-1"));
    let tcp = c.get_domain(&DomainGuid::new("dom-tcp")).await.unwrap();
    assert!(tcp.is_tcp() && !tcp.is_shared());
}

#[tokio::test]
async fn find_route_always_sends_hosts_and_paths() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/routes"))
        .and(query_param("domain_guids", "dom-1"))
        .and(query_param("hosts", "myapp"))
        .and(query_param("paths", ""))
        .and(query_param_is_missing("ports"))
        .and(query_param("per_page", "1"))
        .respond_with(ok_json(fixture("routes/list_one.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/routes"))
        .and(query_param("hosts", ""))
        .and(query_param("ports", "1234"))
        .respond_with(ok_json(fixture("apps/list_empty.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let r = c
        .find_route(&DomainGuid::new("dom-1"), "myapp", "", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.url, "myapp.example.com");
    assert_eq!(r.destinations[0].app.guid, AppGuid::new("app-1"));
    assert!(
        c.find_route(&DomainGuid::new("dom-tcp"), "", "", Some(1234))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn routes_create_delete_and_list_for_app() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/routes"))
        .and(body_json(json!({"host": "myapp-temp",
            "relationships": {"space": {"data": {"guid": "space-1"}}, "domain": {"data": {"guid": "dom-1"}}}})))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("routes/created.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v3/routes/route-2"))
        .respond_with(accepted_job(&server, "job-r"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-1/routes"))
        .respond_with(ok_json(fixture("routes/list_one.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/routes/route-1"))
        .respond_with(ok_json(fixture("routes/get.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let new = NewRoute::http(
        SpaceGuid::new("space-1"),
        DomainGuid::new("dom-1"),
        "myapp-temp",
        "",
    );
    let r = c.create_route(&new).await.unwrap();
    assert_eq!(r.host, "myapp-temp");
    assert_eq!(
        c.delete_route(&r.guid).await.unwrap(),
        JobGuid::new("job-r")
    );
    assert_eq!(
        c.list_app_routes(&AppGuid::new("app-1"))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        c.get_route(&RouteGuid::new("route-1")).await.unwrap().path,
        ""
    );
}

#[tokio::test]
async fn route_destinations_list_insert_remove() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/routes/route-1/destinations"))
        .respond_with(ok_json(fixture("routes/destinations.json", &server)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/routes/route-1/destinations"))
        .and(body_json(json!({"destinations": [
            {"app": {"guid": "app-2"}},
            {"app": {"guid": "app-3", "process": {"type": "api"}}, "protocol": "http2"}
        ]})))
        .respond_with(ok_json(fixture("routes/destinations.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v3/routes/route-1/destinations"))
        .and(body_json(
            json!({"destinations": [{"app": {"guid": "app-2"}}]}),
        ))
        .respond_with(ok_json(fixture("routes/destinations.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v3/routes/route-1/destinations/dest-1"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let route = RouteGuid::new("route-1");
    let ds = c.list_route_destinations(&route).await.unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds[0].port, Some(8080));
    assert_eq!(ds[0].protocol.as_deref(), Some("http1"));
    let new = [
        NewDestination::app(AppGuid::new("app-2")),
        NewDestination::app(AppGuid::new("app-3"))
            .process("api")
            .protocol("http2"),
    ];
    assert_eq!(
        c.insert_route_destinations(&route, &new)
            .await
            .unwrap()
            .len(),
        2
    );
    c.replace_route_destinations(&route, &new[..1])
        .await
        .unwrap();
    c.remove_route_destination(&route, &DestinationGuid::new("dest-1"))
        .await
        .unwrap();
}

// ---------------------------------------------------------------- services

#[tokio::test]
async fn service_instance_by_name() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/service_instances"))
        .and(query_param("names", "my-db"))
        .and(query_param("space_guids", "space-1"))
        .respond_with(ok_json(fixture("service_instances/list_one.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    let si = client(&server)
        .find_service_instance(&SpaceGuid::new("space-1"), "my-db")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(si.guid, ServiceInstanceGuid::new("si-1"));
    assert_eq!(si.type_, cf_zero_downtime::cf::ServiceInstanceType::Managed);
    assert_eq!(si.last_operation.unwrap().state, "succeeded");
}

#[tokio::test]
async fn credential_bindings_list_create_delete() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/service_credential_bindings"))
        .and(query_param("type", "app"))
        .and(query_param("app_guids", "app-1"))
        .respond_with(ok_json(fixture(
            "service_credential_bindings/list.json",
            &server,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let managed = json!({"type": "app", "name": "some-name",
        "relationships": {"app": {"data": {"guid": "app-2"}}, "service_instance": {"data": {"guid": "si-1"}}}});
    Mock::given(method("POST"))
        .and(path("/v3/service_credential_bindings"))
        .and(body_json(managed))
        .respond_with(accepted_job(&server, "job-bind"))
        .expect(1)
        .mount(&server)
        .await;
    let ups = json!({"type": "app",
        "relationships": {"app": {"data": {"guid": "app-2"}}, "service_instance": {"data": {"guid": "si-ups"}}}});
    Mock::given(method("POST"))
        .and(path("/v3/service_credential_bindings"))
        .and(body_json(ups))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(fixture("service_credential_bindings/get.json", &server)),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v3/service_credential_bindings/bind-1"))
        .respond_with(accepted_job(&server, "job-unbind"))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v3/service_credential_bindings/bind-2"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let c = client(&server);
    let list = c
        .list_app_service_credential_bindings(&AppGuid::new("app-1"))
        .await
        .unwrap();
    assert_eq!(
        list[0].service_instance_guid(),
        Some(&ServiceInstanceGuid::new("si-1"))
    );
    let new = NewServiceCredentialBinding::app(
        AppGuid::new("app-2"),
        ServiceInstanceGuid::new("si-1"),
        list[0].name.clone(),
    );
    assert_eq!(
        c.create_service_credential_binding(&new).await.unwrap(),
        BindingCreated::Job(JobGuid::new("job-bind"))
    );
    let new = NewServiceCredentialBinding::app(
        AppGuid::new("app-2"),
        ServiceInstanceGuid::new("si-ups"),
        None,
    );
    assert_matches!(c.create_service_credential_binding(&new).await.unwrap(), BindingCreated::Binding(b) if b.guid == ServiceCredentialBindingGuid::new("bind-1"));
    assert_eq!(
        c.delete_service_credential_binding(&ServiceCredentialBindingGuid::new("bind-1"))
            .await
            .unwrap(),
        Some(JobGuid::new("job-unbind"))
    );
    assert_eq!(
        c.delete_service_credential_binding(&ServiceCredentialBindingGuid::new("bind-2"))
            .await
            .unwrap(),
        None
    );
}

// ---------------------------------------------------------------- deployments

#[tokio::test]
async fn deployments_create_rolling_and_canary_with_options() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/deployments"))
        .and(body_json(
            json!({"droplet": {"guid": "drop-1"}, "strategy": "rolling",
            "options": {"max_in_flight": 2},
            "relationships": {"app": {"data": {"guid": "app-1"}}}}),
        ))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(fixture("deployments/active_deploying.json", &server)),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/deployments"))
        .and(body_json(json!({"strategy": "canary",
            "options": {"canary": {"steps": [{"instance_weight": 20}, {"instance_weight": 60}]}, "web_instances": 4},
            "relationships": {"app": {"data": {"guid": "app-1"}}}})))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("deployments/active_deploying.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/deployments"))
        .and(body_json(
            json!({"strategy": "rolling", "relationships": {"app": {"data": {"guid": "app-1"}}}}),
        ))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(fixture("deployments/finalized_deployed.json", &server)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    c.set_api_version(ApiVersion::new(3, 228, 0));
    let rolling = NewDeployment::rolling(AppGuid::new("app-1"), Some(DropletGuid::new("drop-1")))
        .with_options(DeploymentOptions {
            max_in_flight: Some(2),
            ..Default::default()
        });
    let d = c.create_deployment(&rolling).await.unwrap();
    assert_eq!(d.status.value, DeploymentStatusValue::Active);
    assert_eq!(d.status.reason, DeploymentReason::Deploying);
    assert_eq!(d.status.canary.unwrap().steps.total, 2);
    assert_eq!(d.new_processes[0].guid, ProcessGuid::new("proc-new"));
    assert_eq!(d.previous_droplet.unwrap().guid, DropletGuid::new("drop-0"));
    let canary =
        NewDeployment::canary(AppGuid::new("app-1"), None).with_options(DeploymentOptions {
            web_instances: Some(4),
            ..DeploymentOptions::default().canary_steps([20, 60])
        });
    c.create_deployment(&canary).await.unwrap();
    // Empty options are omitted entirely.
    let plain = NewDeployment::rolling(AppGuid::new("app-1"), None)
        .with_options(DeploymentOptions::default());
    assert!(c.create_deployment(&plain).await.unwrap().is_deployed());
}

#[tokio::test]
async fn deployments_get_find_continue_cancel_and_wait() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/deployments/dep-1"))
        .respond_with(ok_json(fixture(
            "deployments/active_deploying.json",
            &server,
        )))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/deployments/dep-1"))
        .respond_with(ok_json(fixture("deployments/active_paused.json", &server)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/deployments/dep-x"))
        .respond_with(ok_json(fixture("deployments/unknown_reason.json", &server)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/deployments"))
        .and(query_param("app_guids", "app-1"))
        .and(query_param("status_values", "ACTIVE"))
        .and(query_param("order_by", "-created_at"))
        .and(query_param("per_page", "1"))
        .and(query_param("page", "1"))
        .respond_with(ok_json(fixture("deployments/list_active.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    for action in ["continue", "cancel"] {
        Mock::given(method("POST"))
            .and(path(format!("/v3/deployments/dep-1/actions/{action}")))
            .respond_with(ResponseTemplate::new(200))
            .expect(1)
            .mount(&server)
            .await;
    }
    let c = client(&server);
    let g = DeploymentGuid::new("dep-1");
    let settled = c.wait_for_deployment(&g, fast_poll()).await.unwrap();
    assert!(settled.is_paused());
    let odd = c
        .get_deployment(&DeploymentGuid::new("dep-x"))
        .await
        .unwrap();
    assert_eq!(odd.status.value, DeploymentStatusValue::Unknown);
    assert_eq!(odd.status.reason, DeploymentReason::Unknown);
    assert_eq!(odd.strategy, Some(DeploymentStrategy::Unknown));
    let active = c
        .find_active_deployment(&AppGuid::new("app-1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(active.guid, g);
    c.continue_deployment(&g).await.unwrap();
    c.cancel_deployment(&g).await.unwrap();
}

// ---------------------------------------------------------------- network policies

#[tokio::test]
async fn network_policies_default_base_list_and_create() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/networking/v1/external/policies"))
        .and(query_param("id", "app-old"))
        .respond_with(ok_json(fixture("network_policies/list.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/networking/v1/external/policies"))
        .and(body_json(json!({"policies": [
            {"source": {"id": "app-new"}, "destination": {"id": "app-backend", "protocol": "tcp", "ports": {"start": 8080, "end": 8080}}},
            {"source": {"id": "app-frontend"}, "destination": {"id": "app-new", "protocol": "udp", "ports": {"start": 9000, "end": 9010}}}
        ]})))
        .respond_with(ok_json(json!({})))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let (old, new) = (AppGuid::new("app-old"), AppGuid::new("app-new"));
    let policies = c
        .list_network_policies(std::slice::from_ref(&old))
        .await
        .unwrap();
    let copies: Vec<_> = policies
        .iter()
        .filter_map(|p| p.with_app_replaced(&old, &new))
        .collect();
    c.create_network_policies(&copies).await.unwrap();
    c.create_network_policies(&[]).await.unwrap(); // no request
}

#[tokio::test]
async fn network_policies_use_the_discovered_link() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/"))
        .respond_with(ok_json(fixture("root/get.json", &server)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/netpol/v1/external/policies"))
        .respond_with(ok_json(fixture("network_policies/list.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    c.discover().await.unwrap();
    assert_eq!(c.list_network_policies(&[]).await.unwrap().len(), 2);
}

// ---------------------------------------------------------------- auth

#[tokio::test]
async fn invalid_token_is_refreshed_once_and_the_request_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-1"))
        .and(header("authorization", TOKEN))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(fixture("errors/invalid_token.json", &server)),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-1"))
        .and(header("authorization", FRESH))
        .respond_with(ok_json(fixture("apps/get.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    let token = CountingToken::new();
    let c = Client::new(config(&server, token.clone())).unwrap();
    c.get_app(&AppGuid::new("app-1")).await.unwrap();
    assert_eq!(token.refresh_calls.load(Ordering::SeqCst), 1);
    assert_eq!(token.token_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_second_invalid_token_is_not_refreshed_again() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/apps/app-1/actions/restart"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(fixture("errors/invalid_token.json", &server)),
        )
        .expect(2)
        .mount(&server)
        .await;
    let token = CountingToken::new();
    let c = Client::new(config(&server, token.clone())).unwrap();
    let err = c.restart_app(&AppGuid::new("app-1")).await.unwrap_err();
    assert!(err.api().unwrap().is_invalid_auth_token());
    assert_eq!(token.refresh_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn other_401s_are_not_refreshed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(fixture("errors/not_authenticated.json", &server)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let token = CountingToken::new();
    let c = Client::new(config(&server, token.clone())).unwrap();
    let err = c.get_app(&AppGuid::new("x")).await.unwrap_err();
    assert!(err.has_title("CF-NotAuthenticated"));
    assert_eq!(token.refresh_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn token_provider_failure_is_an_auth_error() {
    struct NoToken;
    impl TokenProvider for NoToken {
        fn token(&self) -> BoxFuture<'_, Result<SecretString, AuthError>> {
            Box::pin(async { Err(AuthError::NotLoggedIn) })
        }
        fn refresh(&self) -> BoxFuture<'_, Result<SecretString, AuthError>> {
            self.token()
        }
    }
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let c = Client::new(ClientConfig::new(server.uri(), Arc::new(NoToken))).unwrap();
    assert_matches!(
        c.get_app(&AppGuid::new("x")).await,
        Err(Error::Auth(AuthError::NotLoggedIn))
    );
}

// ---------------------------------------------------------------- retries

#[tokio::test]
async fn get_is_retried_on_503() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-1"))
        .respond_with(
            ResponseTemplate::new(503).set_body_json(fixture("errors/unavailable.json", &server)),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-1"))
        .respond_with(ok_json(fixture("apps/get.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .get_app(&AppGuid::new("app-1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn get_retries_of_a_500_are_capped() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500).set_body_string("internal error"))
        .expect(3) // first attempt + max_retries (2)
        .mount(&server)
        .await;
    let err = client(&server)
        .get_app(&AppGuid::new("x"))
        .await
        .unwrap_err();
    let api = err.api().unwrap();
    assert_eq!(api.status, 500);
    assert_eq!(api.body.as_deref(), Some("internal error"));
}

#[tokio::test]
async fn an_outage_is_waited_out_within_the_budget_and_announced_once() {
    let server = MockServer::start().await;
    // Eight 502s (more than the 2 retries of other server errors), then the API is back.
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-1"))
        .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway"))
        .up_to_n_times(8)
        .expect(8)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-1"))
        .respond_with(ok_json(fixture("apps/get.json", &server)))
        .mount(&server)
        .await;
    let mut cfg = config(&server, CountingToken::new());
    cfg.retry.outage_budget = Duration::from_secs(30);
    let c = Client::new(cfg).unwrap();
    let notices = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = notices.clone();
    c.set_notice_sink(Arc::new(move |n| sink.lock().unwrap().push(n)));
    c.get_app(&AppGuid::new("app-1")).await.unwrap();
    // A second request after the outage says nothing.
    c.get_app(&AppGuid::new("app-1")).await.unwrap();
    let notices = notices.lock().unwrap().clone();
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(
        notices[0].contains("Cloud Controller is unavailable (502)")
            && notices[0].contains("waiting up to 30s"),
        "{notices:?}"
    );
    assert!(
        notices[1].starts_with("Cloud Controller answers again"),
        "{notices:?}"
    );
    assert!(c.take_warnings().is_empty());
}

#[tokio::test]
async fn an_outage_longer_than_the_budget_ends_in_the_last_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(504).set_body_string("gateway timeout"))
        .expect(2..)
        .mount(&server)
        .await;
    // A budget of 1 s (not the 60 s default), which the outage notice states.
    let mut cfg = config(&server, CountingToken::new());
    cfg.retry.outage_budget = Duration::from_secs(1);
    let c = Client::new(cfg).unwrap();
    let notices = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = notices.clone();
    c.set_notice_sink(Arc::new(move |n| sink.lock().unwrap().push(n)));
    // Bounded: a client that kept retrying would hang the test.
    let err = tokio::time::timeout(Duration::from_secs(60), c.get_app(&AppGuid::new("x")))
        .await
        .expect("the client gave up by itself")
        .unwrap_err();
    assert_eq!(err.api().unwrap().status, 504);
    let notices = notices.lock().unwrap().clone();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].contains("waiting up to 1s"), "{notices:?}");
}

#[tokio::test]
async fn a_post_gorouter_could_not_deliver_is_sent_again() {
    // 503 + X-Cf-Routererror: no_endpoints: no Cloud Controller received the create.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/builds"))
        .respond_with(
            ResponseTemplate::new(503)
                .insert_header("X-Cf-Routererror", "no_endpoints")
                .set_body_string("503 Service Unavailable"),
        )
        .up_to_n_times(3)
        .expect(3)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/builds"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(fixture("builds/staging.json", &server)),
        )
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .create_build(&PackageGuid::new("pkg-1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_rate_limit_longer_than_the_budget_is_not_waited_for() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "30")
                .set_body_string(fixture("errors/rate_limited.json", &server).to_string()),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut cfg = config(&server, CountingToken::new());
    cfg.retry.max_retry_after = Duration::from_secs(60);
    cfg.retry.outage_budget = Duration::from_secs(5);
    let c = Client::new(cfg).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), c.get_app(&AppGuid::new("x")))
        .await
        .expect("a 30 s Retry-After is beyond the 5 s budget: no wait")
        .unwrap_err();
    assert!(err.api().unwrap().is_rate_limited());
}

#[tokio::test]
async fn post_is_never_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(503).set_body_json(fixture("errors/unavailable.json", &server)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server)
        .create_build(&PackageGuid::new("pkg-1"))
        .await
        .unwrap_err();
    assert_eq!(err.api().unwrap().status, 503);
    assert!(err.has_title("CF-ServiceUnavailable"));
}

#[tokio::test]
async fn rate_limited_get_honours_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-1"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "0")
                .insert_header("Content-Type", "text/plain")
                .set_body_string(fixture("errors/rate_limited.json", &server).to_string()),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-1"))
        .respond_with(ok_json(fixture("apps/get.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .get_app(&AppGuid::new("app-1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn rate_limited_post_is_retried_because_nothing_was_done() {
    // The rate limiter rejects before any work: even a create may be sent again.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "0")
                .set_body_string(fixture("errors/rate_limited.json", &server).to_string()),
        )
        .expect(2..)
        .mount(&server)
        .await;
    let err = client(&server)
        .create_build(&PackageGuid::new("p"))
        .await
        .unwrap_err();
    assert!(err.api().unwrap().is_rate_limited());
    assert!(err.has_title("CF-RateLimitExceeded"));
    assert!(err.is_transient());
    assert!(!err.may_have_been_applied());
}

#[tokio::test]
async fn connection_errors_on_get_are_retried_then_reported() {
    // A port with no listener: bind, take the address, close.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cfg = ClientConfig::new(format!("http://{addr}"), CountingToken::new());
    cfg.retry = fast_retry();
    let err = Client::new(cfg)
        .unwrap()
        .get_app(&AppGuid::new("a"))
        .await
        .unwrap_err();
    assert_matches!(err, Error::Http { .. });
    assert!(
        err.to_string()
            .starts_with("GET /v3/apps/a: request failed")
    );
}

// ---------------------------------------------------------------- warnings and errors

#[tokio::test]
async fn warnings_are_collected_on_success_and_on_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-1"))
        .respond_with(
            ok_json(fixture("apps/get.json", &server))
                .insert_header("X-Cf-Warnings", "first%20one,second+one%2C+with+comma"),
        )
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v3/apps/app-1"))
        .respond_with(
            ResponseTemplate::new(422)
                .insert_header("X-Cf-Warnings", "on%20error")
                .set_body_json(fixture("errors/unprocessable_two.json", &server)),
        )
        .mount(&server)
        .await;
    let c = client(&server);
    let clone = c.clone();
    c.get_app(&AppGuid::new("app-1")).await.unwrap();
    let err = clone
        .rename_app(&AppGuid::new("app-1"), "x")
        .await
        .unwrap_err();
    assert!(err.has_title("CF-UnprocessableEntity"));
    assert!(err.has_title("CF-UniquenessError"));
    assert!(err.api().unwrap().is_uniqueness_error());
    assert_eq!(err.api().unwrap().errors.len(), 2);
    assert_eq!(
        err.to_string(),
        "PATCH /v3/apps/app-1 failed with status 422: CF-UnprocessableEntity (10008): For application 'x': Memory must use a supported unit; CF-UniquenessError (10016): App with the name 'x' already exists."
    );
    // Shared by clones, in order, drained once.
    assert_eq!(
        c.take_warnings(),
        ["first one", "second one, with comma", "on error"]
    );
    assert!(clone.take_warnings().is_empty());
}

#[tokio::test]
async fn undecodable_success_body_is_a_decode_error_with_request_id() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("X-Vcap-Request-Id", "rid-9")
                .set_body_string("<html>proxy</html>"),
        )
        .mount(&server)
        .await;
    let err = client(&server)
        .get_app(&AppGuid::new("a"))
        .await
        .unwrap_err();
    assert_matches!(err, Error::Decode { .. });
    assert_eq!(err.request_id(), Some("rid-9"));
    assert_eq!(
        err.to_string(),
        "GET /v3/apps/a: could not read the response (request id: rid-9)"
    );
}

// ---------------------------------------------------------------- timeouts

#[tokio::test(start_paused = true)]
async fn slow_responses_hit_the_request_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ok_json(json!({})).set_delay(Duration::from_secs(3600)))
        .mount(&server)
        .await;
    let mut cfg = config(&server, CountingToken::new());
    cfg.request_timeout = Duration::from_secs(30);
    let c = Client::new(cfg).unwrap();
    let err = c.get_app(&AppGuid::new("a")).await.unwrap_err();
    assert_matches!(err, Error::Timeout { .. });
    assert!(
        err.to_string()
            .starts_with("GET /v3/apps/a: timed out after")
    );
}

// ---------------------------------------------------------------- secrets

#[tokio::test]
async fn trace_redacts_the_token() {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/packages"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(fixture("packages/docker_ready.json", &server)),
        )
        .mount(&server)
        .await;
    let buf = Buf::default();
    let mut cfg = config(&server, CountingToken::new());
    cfg.trace = Trace::to_writer(buf.clone());
    let c = Client::new(cfg).unwrap();
    let docker = NewPackage::docker(
        AppGuid::new("app-1"),
        "img",
        None,
        Some(SecretString::from("pw-secret-1")),
    );
    c.create_package(&docker).await.unwrap();
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(out.contains("REQUEST: ["), "{out}");
    assert!(out.contains("POST /v3/packages HTTP/1.1"), "{out}");
    assert!(
        out.contains("Authorization: [PRIVATE DATA HIDDEN]"),
        "{out}"
    );
    assert!(out.contains("RESPONSE: ["), "{out}");
    assert!(!out.contains("old-token-abc"), "{out}");
    assert!(!out.contains("pw-secret-1"), "{out}");
    // Debug output never shows the token either.
    assert!(!format!("{c:?}").contains("old-token"));
    assert!(!format!("{:?}", config(&server, CountingToken::new())).contains("old-token"));
}

#[tokio::test]
async fn app_manifest_is_read_as_yaml() {
    let server = MockServer::start().await;
    let yaml = "applications:\n- name: web\n  instances: 2\n";
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-1/manifest"))
        .and(header("accept", "application/x-yaml"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(yaml, "application/x-yaml"))
        .expect(1)
        .mount(&server)
        .await;
    let text = client(&server)
        .get_app_manifest(&AppGuid::new("app-1"))
        .await
        .unwrap();
    assert_eq!(text, yaml);
}

/// A raw server on 127.0.0.1 that drops the first `drops` connections without answering, then
/// answers every request with `200 {"guid":"app-1",...}`. Returns its URL and the accept count.
async fn flaky_server(drops: u32) -> (String, Arc<AtomicU32>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicU32::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        // Bounded: the test makes at most a handful of connections.
        for _ in 0..10 {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            if n <= drops {
                drop(sock);
                continue;
            }
            let mut buf = vec![0u8; 8192];
            let _ = sock.read(&mut buf).await;
            let body = r#"{"guid":"app-1","name":"web","state":"STARTED"}"#;
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    (url, accepted)
}

#[tokio::test]
async fn get_is_retried_after_a_dropped_connection() {
    let (url, accepted) = flaky_server(1).await;
    let mut cfg = ClientConfig::new(url, CountingToken::new());
    cfg.retry = fast_retry();
    let app = Client::new(cfg)
        .unwrap()
        .get_app(&AppGuid::new("app-1"))
        .await
        .unwrap();
    assert_eq!(app.name, "web");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn post_is_not_retried_after_a_dropped_connection() {
    let (url, accepted) = flaky_server(1).await;
    let mut cfg = ClientConfig::new(url, CountingToken::new());
    cfg.retry = fast_retry();
    let err = Client::new(cfg)
        .unwrap()
        .restart_app(&AppGuid::new("app-1"))
        .await
        .unwrap_err();
    assert_matches!(err, Error::Http { .. });
    // The request may have reached the server: the caller must re-read, not resend.
    assert!(err.may_have_been_applied());
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn delete_is_retried_after_a_dropped_connection() {
    let (url, accepted) = flaky_server(1).await;
    let mut cfg = ClientConfig::new(url, CountingToken::new());
    cfg.retry = fast_retry();
    Client::new(cfg)
        .unwrap()
        .remove_route_destination(&RouteGuid::new("r"), &DestinationGuid::new("d"))
        .await
        .unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn start_is_declared_idempotent_and_retried_after_a_dropped_connection() {
    let (url, accepted) = flaky_server(1).await;
    let mut cfg = ClientConfig::new(url, CountingToken::new());
    cfg.retry = fast_retry();
    let app = Client::new(cfg)
        .unwrap()
        .start_app(&AppGuid::new("app-1"))
        .await
        .unwrap();
    assert_eq!(app.state, AppState::Started);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_token_provider_is_bounded() {
    struct Hangs;
    impl TokenProvider for Hangs {
        fn token(&self) -> BoxFuture<'_, Result<SecretString, AuthError>> {
            Box::pin(futures::future::pending())
        }
        fn refresh(&self) -> BoxFuture<'_, Result<SecretString, AuthError>> {
            self.token()
        }
    }
    let mut cfg = ClientConfig::new("http://127.0.0.1:9", Arc::new(Hangs));
    cfg.request_timeout = Duration::from_secs(30);
    let err = Client::new(cfg)
        .unwrap()
        .get_app(&AppGuid::new("a"))
        .await
        .unwrap_err();
    assert_matches!(err, Error::Auth(AuthError::Failed(_)));
}

#[tokio::test]
async fn remaining_getters_and_lists() {
    let server = MockServer::start().await;
    let org = fixture("organizations/list_one.json", &server)["resources"][0].clone();
    let space = fixture("spaces/list_one.json", &server)["resources"][0].clone();
    Mock::given(method("GET"))
        .and(path("/v3/organizations/org-1"))
        .respond_with(ok_json(org))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/spaces/space-1"))
        .respond_with(ok_json(space))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/organizations/org-1/domains"))
        .and(query_param("per_page", "5000"))
        .respond_with(ok_json(fixture("domains/list_one.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/routes"))
        .and(query_param("app_guids", "app-1,app-2"))
        .and(query_param("space_guids", "space-1"))
        .and(query_param_is_missing("hosts"))
        .and(query_param("per_page", "5000"))
        .respond_with(ok_json(fixture("routes/list_one.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/apps"))
        .and(body_json(json!({"name": "web-candidate",
            "relationships": {"space": {"data": {"guid": "space-1"}}},
            "lifecycle": {"type": "docker", "data": {}}})))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("apps/get.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    assert_eq!(
        c.get_organization(&OrganizationGuid::new("org-1"))
            .await
            .unwrap()
            .name,
        "my-org"
    );
    assert_eq!(
        c.get_space(&SpaceGuid::new("space-1")).await.unwrap().name,
        "dev"
    );
    let domains = c
        .list_organization_domains(&OrganizationGuid::new("org-1"))
        .await
        .unwrap();
    assert_eq!(domains[0].name, "example.com");
    let q = cf_zero_downtime::cf::RouteQuery {
        app_guids: vec![AppGuid::new("app-1"), AppGuid::new("app-2")],
        space_guids: vec![SpaceGuid::new("space-1")],
        ..Default::default()
    };
    assert_eq!(c.list_routes(&q).await.unwrap().len(), 1);
    let mut new = cf_zero_downtime::cf::NewApp::new("web-candidate", SpaceGuid::new("space-1"));
    new.lifecycle = Some(cf_zero_downtime::cf::Lifecycle {
        type_: cf_zero_downtime::cf::LifecycleType::Docker,
        data: Default::default(),
    });
    assert_eq!(
        c.create_app(&new).await.unwrap().guid,
        AppGuid::new("app-1")
    );
}

// ---------------------------------------------------------------- idempotent mutations

#[tokio::test]
async fn patch_and_delete_answered_500_then_success_are_retried_once() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/v3/apps/app-1"))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v3/apps/app-1"))
        .respond_with(ok_json(fixture("apps/get.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v3/routes/r/destinations/d"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v3/routes/r/destinations/d"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    c.rename_app(&AppGuid::new("app-1"), "web-venerable")
        .await
        .unwrap();
    c.remove_route_destination(&RouteGuid::new("r"), &DestinationGuid::new("d"))
        .await
        .unwrap();
    assert_eq!(requests(&server).await.len(), 4);
}

#[tokio::test]
async fn a_retried_delete_that_meets_404_reports_not_found() {
    // The first DELETE was applied but its answer lost (502 from the router): the retry finds
    // nothing, and the caller sees a recognisable not-found.
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/v3/apps/app-1"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v3/apps/app-1"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(fixture("errors/not_found_app.json", &server)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server)
        .delete_app(&AppGuid::new("app-1"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn rate_limited_patch_honours_retry_after_and_its_cap() {
    let server = MockServer::start().await;
    for retry_after in ["1", "3600"] {
        Mock::given(method("PATCH"))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("Retry-After", retry_after)
                    .set_body_json(fixture("errors/rate_limited.json", &server)),
            )
            .up_to_n_times(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("PATCH"))
        .respond_with(ok_json(fixture("apps/get.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    let mut cfg = config(&server, CountingToken::new());
    // Were Retry-After ignored, the backoff alone would wait an hour: the bound below fails the
    // test instead. Retry-After 3600 is cut to the 10 ms cap.
    cfg.retry = RetryPolicy {
        max_retries: 2,
        outage_budget: Duration::from_secs(60),
        initial_backoff: Duration::from_secs(3600),
        max_backoff: Duration::from_secs(3600),
        max_retry_after: Duration::from_millis(10),
    };
    let c = Client::new(cfg).unwrap();
    tokio::time::timeout(
        Duration::from_secs(60),
        c.rename_app(&AppGuid::new("app-1"), "x"),
    )
    .await
    .expect("Retry-After decides the wait, not the hour-long backoff")
    .unwrap();
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn a_create_answered_500_is_sent_once_and_flagged_for_a_re_read() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/routes"))
        .respond_with(ResponseTemplate::new(500).set_body_string("maybe created"))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server)
        .create_route(&NewRoute::http(
            SpaceGuid::new("s"),
            DomainGuid::new("d"),
            "web",
            "",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.api().unwrap().status, 500);
    assert!(err.may_have_been_applied());
    assert!(err.is_transient());
}

#[tokio::test]
async fn idempotent_retries_are_bounded() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(503).set_body_string("down"))
        .expect(2..) // until the 200 ms outage budget is spent
        .mount(&server)
        .await;
    let err = client(&server)
        .remove_route_destination(&RouteGuid::new("r"), &DestinationGuid::new("d"))
        .await
        .unwrap_err();
    assert_eq!(err.api().unwrap().status, 503);
}

#[tokio::test]
async fn declared_idempotent_posts_are_retried_on_5xx() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/routes/r/destinations"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/routes/r/destinations"))
        .respond_with(ok_json(json!({"destinations": []})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/apps/app-1/actions/stop"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/apps/app-1/actions/stop"))
        .respond_with(ok_json(fixture("apps/get.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    c.insert_route_destinations(
        &RouteGuid::new("r"),
        &[NewDestination::app(AppGuid::new("a"))],
    )
    .await
    .unwrap();
    c.stop_app(&AppGuid::new("app-1")).await.unwrap();
    assert_eq!(requests(&server).await.len(), 4);
}

#[tokio::test]
async fn a_connect_failure_proves_nothing_was_applied() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cfg = ClientConfig::new(format!("http://{addr}"), CountingToken::new());
    cfg.retry = fast_retry();
    let err = Client::new(cfg)
        .unwrap()
        .create_build(&PackageGuid::new("p"))
        .await
        .unwrap_err();
    assert_matches!(err, Error::Http { .. });
    assert!(!err.may_have_been_applied());
    assert!(err.is_transient());
}

// ---------------------------------------------------------------- response size cap

#[tokio::test]
async fn a_body_over_the_cap_is_refused_naming_the_endpoint() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(vec![b' '; 4096], "application/json"))
        .expect(1)
        .mount(&server)
        .await;
    let mut cfg = config(&server, CountingToken::new());
    cfg.max_response_bytes = 1024;
    let err = Client::new(cfg)
        .unwrap()
        .get_app(&AppGuid::new("a"))
        .await
        .unwrap_err();
    assert_matches!(err, Error::ResponseTooLarge { limit: 1024, .. });
    assert!(
        err.to_string()
            .starts_with("GET /v3/apps/a: the response is larger than 1024 bytes")
    );
}

#[tokio::test]
async fn a_chunked_body_over_the_cap_is_refused_without_reading_the_rest() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A chunked answer with no Content-Length that never ends: reading it whole would hang
    // until the request timeout. The cap must stop it first.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let mut buf = vec![0u8; 8192];
        let _ = sock.read(&mut buf).await;
        let chunk = "x".repeat(2048);
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        let _ = sock
            .write_all(format!("{head}{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
            .await;
        // Hold the connection open (bounded by the test's end).
        let _ = done_rx.await;
    });
    let mut cfg = ClientConfig::new(url, CountingToken::new());
    cfg.max_response_bytes = 1024;
    cfg.request_timeout = Duration::from_secs(60);
    let err = Client::new(cfg)
        .unwrap()
        .get_app(&AppGuid::new("a"))
        .await
        .unwrap_err();
    let _ = done_tx.send(());
    assert_matches!(err, Error::ResponseTooLarge { limit: 1024, .. });
}

/// Every page fits the cap, but a listing keeps all its pages: together they may take four
/// times the cap (pages used to be followed up to 1,000 times, each kept).
#[tokio::test]
async fn the_pages_of_one_listing_share_a_budget() {
    let server = MockServer::start().await;
    let page = json!({
        "pagination": {"next": {"href": format!("{}/v3/apps?page=2", server.uri())}},
        "resources": [],
        "padding": "x".repeat(800)
    });
    Mock::given(method("GET"))
        .and(path("/v3/apps"))
        .respond_with(ok_json(page))
        .mount(&server)
        .await;
    let mut cfg = config(&server, CountingToken::new());
    cfg.max_response_bytes = 1024;
    let err = Client::new(cfg)
        .unwrap()
        .list_apps(&AppQuery::default())
        .await
        .unwrap_err();
    assert_matches!(err, Error::ResponseTooLarge { limit: 4096, .. });
    assert!(
        err.to_string()
            .starts_with("GET /v3/apps (all pages together): the response is larger than 4096"),
        "{err}"
    );
    let requests = server.received_requests().await.unwrap_or_default();
    assert_eq!(
        requests.len(),
        5,
        "stopped at the page that passed the budget"
    );
}

// ---------------------------------------------------------------- CF_TRACE

#[tokio::test]
async fn cf_trace_file_holds_no_planted_secret_and_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/v3/apps/app-1/environment_variables"))
        .respond_with(
            ok_json(json!({"var": {"DB_PASSWORD": "planted-env-1", "PLAIN": "planted-env-2"}}))
                .insert_header("Set-Cookie", "session=planted-cookie-3"),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/spaces/s/actions/apply_manifest"))
        .respond_with(accepted_job(&server, "j1"))
        .mount(&server)
        .await;
    // The shape of `GET /v3/apps/:guid/env`, served here with an app so the client reads it.
    let mut app = fixture("apps/get.json", &server);
    let env_doc = json!({
        "staging_env_json": {"S": "planted-staging-4"},
        "running_env_json": {"R": "planted-running-5"},
        "environment_variables": {"E": "planted-env-6"},
        "system_env_json": {"VCAP_SERVICES": {"db": [{"credentials": {"uri": "planted-vcap-7"}}]}},
        "application_env_json": {"VCAP_APPLICATION": {"name": "planted-app-8"}}
    });
    for (k, v) in env_doc.as_object().unwrap() {
        app[k] = v.clone();
    }
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-1"))
        .respond_with(ok_json(app))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trace.log");
    std::fs::write(&file, "").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cfg = config(&server, CountingToken::new());
    // What CF_TRACE=<path> does (Trace::from_env reads the variable into from_value).
    cfg.trace = Trace::from_value(Some(file.to_str().unwrap())).unwrap();
    let c = Client::new(cfg).unwrap();
    let vars = BTreeMap::from([("DB_PASSWORD".to_owned(), Some("planted-env-1".to_owned()))]);
    c.update_app_environment_variables(&AppGuid::new("app-1"), &vars)
        .await
        .unwrap();
    c.apply_manifest(
        &SpaceGuid::new("s"),
        "applications:\n- name: web\n  env:\n    TOKEN: planted-yaml-9\n",
    )
    .await
    .unwrap();
    c.get_app(&AppGuid::new("app-1")).await.unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("PATCH /v3/apps/app-1/environment_variables"),
        "{text}"
    );
    assert!(
        text.contains("[application/x-yaml Content Hidden]"),
        "{text}"
    );
    assert!(text.contains("Set-Cookie: [PRIVATE DATA HIDDEN]"), "{text}");
    assert!(text.contains("DB_PASSWORD"), "names stay visible: {text}");
    for planted in ["planted", "old-token-abc"] {
        assert!(
            !text.contains(planted),
            "{planted} leaked into the trace:\n{text}"
        );
    }
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

// ---------------------------------------------------------------- audit events

fn crash_event(guid: &str, index: u32) -> Value {
    json!({
        "guid": guid, "type": "audit.app.process.crash", "created_at": "2026-12-02T10:00:00Z",
        "actor": {"guid": "proc-1", "type": "process", "name": "web"},
        "target": {"guid": "app-1", "type": "app", "name": "web"},
        "data": {"index": index, "reason": "CRASHED", "instance": format!("ig-{index}"),
                 "exit_description": "APP/PROC/WEB: Exited with status 1"},
        "space": {"guid": "s"}, "organization": {"guid": "o"}, "links": {}
    })
}

#[tokio::test]
async fn audit_events_are_filtered_paged_and_bounded() {
    let server = MockServer::start().await;
    let page = |n: u32, next: bool| {
        let next = next
            .then(|| json!({"href": format!("{}/v3/audit_events?page={}", server.uri(), n + 1)}));
        ok_json(json!({
            "pagination": {"total_results": 3, "total_pages": 3, "next": next},
            "resources": [crash_event(&format!("e{n}"), n)]
        }))
    };
    Mock::given(method("GET"))
        .and(path("/v3/audit_events"))
        .and(query_param("types", "audit.app.process.crash,app.crash"))
        .and(query_param("target_guids", "app-1"))
        .and(query_param("created_ats[gt]", "2026-12-02T09:59:59Z"))
        .and(query_param("order_by", "-created_at"))
        .respond_with(page(1, true))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/audit_events"))
        .and(query_param("page", "2"))
        .respond_with(page(2, true))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/audit_events"))
        .and(query_param("page", "3"))
        .respond_with(page(3, false))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let filter =
        AuditEventFilter::crashes_of(&AppGuid::new("app-1")).created_after_unix(1_796_205_599); // 2026-12-02T09:59:59Z
    let all = c.list_audit_events(filter.clone()).await.unwrap();
    assert_eq!(all.len(), 3);
    let crash = all[1].crash().unwrap();
    assert_eq!(crash.index, Some(2));
    assert_eq!(crash.instance.as_deref(), Some("ig-2"));
    assert_eq!(crash.reason.as_deref(), Some("CRASHED"));
    assert_eq!(crash.process_guid.as_deref(), Some("proc-1"));
    assert_eq!(all[0].target.guid, "app-1");
    // Bounded: two pages at most, the newest ones.
    let bounded = c
        .list_audit_events(AuditEventFilter {
            max_pages: 2,
            ..filter
        })
        .await
        .unwrap();
    assert_eq!(bounded.len(), 2);
}

#[tokio::test]
async fn audit_events_refused_for_the_role_are_an_optional_absence() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/audit_events"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"errors": [
            {"code": 10003, "title": "CF-NotAuthorized", "detail": "You are not authorized to perform the requested action"}
        ]})))
        .mount(&server)
        .await;
    let err = client(&server)
        .list_audit_events(AuditEventFilter::default())
        .await
        .unwrap_err();
    assert!(err.is_forbidden());
    assert!(err.is_unavailable_optional());
    assert!(!err.is_not_found());
}

// ---------------------------------------------------------------- log-cache

async fn mount_root(server: &MockServer, links: Value) {
    Mock::given(method("GET"))
        .and(path("/"))
        .respond_with(ok_json(json!({"links": links})))
        .mount(server)
        .await;
}

#[tokio::test]
async fn log_cache_read_discovers_the_link_and_decodes_envelopes() {
    let server = MockServer::start().await;
    mount_root(
        &server,
        json!({"cloud_controller_v3": {"href": format!("{}/v3", server.uri()), "meta": {"version": "3.180.0"}},
               "log_cache": {"href": format!("{}/lc", server.uri())}}),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/lc/api/v1/read/app-1"))
        .and(header("authorization", TOKEN))
        .and(query_param("start_time", "1700000000000000000"))
        .and(query_param("limit", "100"))
        .and(query_param("descending", "true"))
        .respond_with(ok_json(json!({"envelopes": {"batch": [
            {"timestamp": "1700000000000000002", "source_id": "app-1", "instance_id": "0",
             "tags": {"source_type": "RTR"}, "log": {"payload": "R0VUIC8gMjAw", "type": "OUT"}},
            {"timestamp": "1700000000000000001", "source_id": "app-1", "instance_id": "1",
             "tags": {"status_code": "502"}, "timer": {"name": "http", "start": "5", "stop": "9"}}
        ]}})))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let query = LogCacheQuery::recent(&[EnvelopeType::Log, EnvelopeType::Timer], 100)
        .since_ns(1_700_000_000_000_000_000);
    let out = c.read_log_cache("app-1", query).await.unwrap();
    assert_eq!(out.len(), 2);
    assert_matches!(&out[0].kind, EnvelopeKind::Log(l) if l.text() == "GET / 200");
    assert_eq!(out[1].tags["status_code"], "502");
    assert_matches!(&out[1].kind, EnvelopeKind::Timer(t) if t.name == "http" && t.stop - t.start == 4);
    let types: Vec<String> = requests(&server)
        .await
        .iter()
        .flat_map(|r| {
            r.url
                .query_pairs()
                .filter(|(k, _)| k == "envelope_types")
                .map(|(_, v)| v.into_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(types, ["LOG", "TIMER"]);
}

#[tokio::test]
async fn log_cache_absent_or_refused_is_an_optional_absence() {
    let server = MockServer::start().await;
    mount_root(
        &server,
        json!({"cloud_controller_v3": {"href": "x", "meta": {"version": "3.180.0"}}}),
    )
    .await;
    let c = client(&server);
    c.discover().await.unwrap();
    let err = c
        .read_log_cache("app-1", LogCacheQuery::default())
        .await
        .unwrap_err();
    assert_matches!(
        err,
        Error::Unavailable {
            link: "log_cache",
            ..
        }
    );
    assert!(err.is_unavailable_optional());
    assert_eq!(requests(&server).await.len(), 1, "only GET /");

    let server = MockServer::start().await;
    mount_root(&server, json!({"log_cache": {"href": server.uri()}})).await;
    Mock::given(method("GET"))
        .and(path("/api/v1/read/app-1"))
        .respond_with(ResponseTemplate::new(403).set_body_string("forbidden"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/read/gone"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let c = client(&server);
    let err = c
        .read_log_cache("app-1", LogCacheQuery::default())
        .await
        .unwrap_err();
    assert!(err.is_forbidden() && err.is_unavailable_optional(), "{err}");
    let err = c
        .read_log_cache("gone", LogCacheQuery::default())
        .await
        .unwrap_err();
    assert!(err.is_not_found() && err.is_unavailable_optional(), "{err}");
}

// ---------------------------------------------------------------- network policies, optional

#[tokio::test]
async fn network_policies_without_a_link_or_refused_are_an_optional_absence() {
    let server = MockServer::start().await;
    mount_root(
        &server,
        json!({"cloud_controller_v3": {"href": "x", "meta": {"version": "3.180.0"}}}),
    )
    .await;
    let c = client(&server);
    c.discover().await.unwrap();
    let err = c.list_network_policies(&[]).await.unwrap_err();
    assert_matches!(
        err,
        Error::Unavailable {
            link: "network_policy_v1",
            ..
        }
    );
    assert!(err.is_unavailable_optional());

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/networking/v1/external/policies"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(json!({"error": "token missing allowed scopes"})),
        )
        .mount(&server)
        .await;
    let err = client(&server)
        .list_network_policies(&[])
        .await
        .unwrap_err();
    assert!(err.is_forbidden() && err.is_unavailable_optional(), "{err}");
}

#[tokio::test]
async fn includes_come_back_with_the_resources_they_belong_to() {
    let server = MockServer::start().await;
    let mut routes = fixture("routes/list_one.json", &server);
    let domain = fixture("domains/list_one.json", &server)["resources"][0].clone();
    routes["included"] = serde_json::json!({"domains": [domain]});
    Mock::given(method("GET"))
        .and(path("/v3/routes"))
        .and(query_param("app_guids", "app-1"))
        .and(query_param("include", "domain"))
        .respond_with(ok_json(routes))
        .expect(1)
        .mount(&server)
        .await;
    let mut space = fixture("spaces/list_one.json", &server)["resources"][0].clone();
    let org = fixture("organizations/list_one.json", &server)["resources"][0].clone();
    space["included"] = serde_json::json!({"organizations": [org]});
    Mock::given(method("GET"))
        .and(path("/v3/spaces/space-1"))
        .and(query_param("include", "organization"))
        .respond_with(ok_json(space))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let (routes, domains) = c
        .list_app_routes_with_domains(&AppGuid::new("app-1"))
        .await
        .unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].destinations.len(), 1, "destinations come inline");
    assert_eq!(
        domains.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        vec!["example.com"]
    );
    let (space, org) = c
        .get_space_with_organization(&SpaceGuid::new("space-1"))
        .await
        .unwrap();
    assert_eq!(space.name, "dev");
    let org = org.expect("the included organization");
    assert_eq!(org.name, "my-org");
    assert_eq!(
        org.relationships.quota.guid().map(|g| g.as_str()),
        Some("q")
    );
}
