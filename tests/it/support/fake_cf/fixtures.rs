//! The world, request and app specs the deploy tests start from, and what they look at.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cf_zero_downtime::deploy::api::{AppSource, AppState, DeploymentState, NetworkPolicy};
use cf_zero_downtime::deploy::event::{Event, Outcome, Reporter};
use cf_zero_downtime::deploy::request::{
    AppSpec, DeployRequest, ProbeConfig, RenderRequest, RouteSpec, TaskRequest,
};
use cf_zero_downtime::deploy::{OldApp, Strategy, run};
use tokio_util::sync::CancellationToken;

use super::FakeCf;

/// The world before a swap: live `web` (guid A, 2 instances, SSH off, labelled), its route,
/// an unrelated `backend` (B) with network policies in both directions.
pub(crate) fn world() -> FakeCf {
    let cf = FakeCf::new();
    cf.add_app("A", "web", 2);
    cf.with_app("A", |a| {
        a.ssh = false;
        a.app.labels.insert("team".into(), "blue".into());
        a.app.annotations.insert("owner".into(), "ops".into());
    });
    cf.add_app("B", "backend", 1);
    cf.add_route("web", &["A"]);
    cf.add_route("backend", &["B"]);
    {
        let mut s = cf.lock();
        s.policies.insert(NetworkPolicy {
            source_app: "A".into(),
            destination_app: "B".into(),
            protocol: "tcp".into(),
            start_port: 8080,
            end_port: 8080,
        });
        s.policies.insert(NetworkPolicy {
            source_app: "B".into(),
            destination_app: "A".into(),
            protocol: "tcp".into(),
            start_port: 9000,
            end_port: 9000,
        });
    }
    cf
}

pub(crate) fn render(r: &RenderRequest) -> Result<String, String> {
    let mut app = serde_json::json!({
        "name": r.name,
        "metadata": {"labels": r.labels, "annotations": r.annotations},
    });
    if r.random_route {
        app["random-route"] = true.into();
    } else if r.no_route {
        app["no-route"] = true.into();
    } else {
        app["routes"] = r
            .routes
            .iter()
            .map(|u| serde_json::json!({"route": u}))
            .collect();
    }
    if let Some(n) = r.instances.get("web") {
        app["instances"] = (*n).into();
    }
    serde_yaml_ng::to_string(&serde_json::json!({"applications": [app]})).map_err(|e| e.to_string())
}

pub(crate) fn spec(name: &str) -> AppSpec<()> {
    AppSpec {
        name: name.into(),
        routes: RouteSpec::Routes(vec![format!("{name}.example.com")]),
        instances: BTreeMap::from([("web".to_string(), 2)]),
        memory_mb: BTreeMap::from([("web".to_string(), 64)]),
        source: AppSource::Bits(()),
        cnb: false,
        render: Arc::new(render),
    }
}

pub(crate) fn req() -> DeployRequest {
    DeployRequest {
        org: "o".into(),
        space: "s".into(),
        space_guid: "sg".into(),
        user: Some("alice".into()),
        strategy: Strategy::BlueGreen,
        max_in_flight: None,
        instance_steps: Vec::new(),
        smoke_test: None,
        smoke_test_path: None,
        old_app: OldApp::Delete,
        drain: Duration::from_secs(10),
        drain_auto: false,
        timeout: Duration::from_secs(60),
        smoke_timeout: Duration::from_secs(30),
        poll_interval: Duration::from_secs(1),
        keep_scale: false,
        temp_route_suffix: "-temp".into(),
        dry_run: false,
        probe: ProbeConfig::default(),
        analysis: None,
        fallback: None,
        run_by: "alice@ci-host".into(),
        wait_for_lock: Duration::ZERO,
        tasks: TaskRequest::default(),
        parallel: 4,
    }
}

pub(crate) async fn deploy(
    cf: &FakeCf,
    req: &DeployRequest,
    apps: &[AppSpec<()>],
) -> (Outcome, Vec<Event>) {
    let mut events: Vec<Event> = Vec::new();
    let outcome = deploy_reporting(cf, req, apps, &mut events).await;
    (outcome, events)
}

/// [`deploy`] reporting to `reporter` (never interrupted).
pub(crate) async fn deploy_reporting(
    cf: &FakeCf,
    req: &DeployRequest,
    apps: &[AppSpec<()>],
    reporter: &mut dyn Reporter,
) -> Outcome {
    run(cf, req, apps, reporter, &CancellationToken::new()).await
}

pub(crate) fn undo_descriptions(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::UndoStarted { description } => Some(description.clone()),
            _ => None,
        })
        .collect()
}

pub(crate) fn index_of(calls: &[String], prefix: &str) -> usize {
    calls
        .iter()
        .position(|c| c.starts_with(prefix))
        .unwrap_or_else(|| panic!("no call {prefix} in {calls:#?}"))
}

/// Asserts the swap finished: `web` is the new app, serving its route; nothing left over.
pub(crate) fn assert_swapped(cf: &FakeCf) -> String {
    let web = cf.app_named("web").expect("an app named web");
    assert_ne!(web.app.guid, "A");
    assert_eq!(web.app.state, AppState::Started);
    assert!(web.droplet.is_some());
    assert_eq!(
        cf.route_apps("web.example.com"),
        Some(BTreeSet::from([web.app.guid.clone()]))
    );
    assert_eq!(
        cf.route_apps("web-temp.example.com"),
        None,
        "temp route left"
    );
    assert!(cf.app_named("web-candidate").is_none());
    assert!(!web.app.labels.contains_key("zero-downtime.cf/role"));
    web.app.guid.to_string()
}

/// A reporter that cancels the deploy when a step of the given kind starts.
pub(crate) struct CancelAt {
    pub(crate) kind: String,
    pub(crate) token: CancellationToken,
    pub(crate) events: Vec<Event>,
}

impl Reporter for CancelAt {
    fn report(&mut self, event: Event) {
        if let Event::StepStarted { kind, .. } = &event
            && *kind == self.kind
        {
            self.token.cancel();
        }
        self.events.push(event);
    }
}

// ---- rolling and canary

/// Renders like [`render`], plus `env: {GREETING: v2}` (what a new version's manifest changes).
pub(crate) fn render_with_env(r: &RenderRequest) -> Result<String, String> {
    let yaml = render(r)?;
    let mut doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&yaml).map_err(|e| e.to_string())?;
    doc["applications"][0]["env"] = serde_yaml_ng::from_str("{GREETING: v2, ADDED: yes}").unwrap();
    doc["applications"][0]["services"] = serde_yaml_ng::from_str("[old-db, new-db]").unwrap();
    serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())
}

pub(crate) fn rolling_spec(name: &str) -> AppSpec<()> {
    AppSpec {
        render: Arc::new(render_with_env),
        ..spec(name)
    }
}

pub(crate) fn rolling_req(strategy: Strategy) -> DeployRequest {
    DeployRequest {
        strategy,
        timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(20),
        max_in_flight: Some(2),
        ..req()
    }
}

/// `web` (guid A) runs v1 with `GREETING=v1`.
pub(crate) fn rolling_world() -> FakeCf {
    let cf = world();
    cf.lock().env.insert(
        "A".into(),
        BTreeMap::from([("GREETING".to_string(), "v1".to_string())]),
    );
    cf.lock()
        .bindings
        .insert("binding-0".into(), ("A".into(), "old-db".into()));
    cf
}

/// The service instances bound to `app`.
pub(crate) fn services_of(cf: &FakeCf, app: &str) -> Vec<String> {
    cf.lock()
        .bindings
        .values()
        .filter(|(a, _)| a == app)
        .map(|(_, i)| i.clone())
        .collect()
}

pub(crate) fn env_of(cf: &FakeCf, app: &str) -> BTreeMap<String, String> {
    cf.lock().env.get(app).cloned().unwrap_or_default()
}

pub(crate) fn deployment_states(cf: &FakeCf) -> Vec<DeploymentState> {
    cf.lock()
        .deployments
        .values()
        .map(|d| d.state.clone())
        .collect()
}
