//! End-to-end: the rolling and canary strategies against the in-process simulator, under
//! steady load through its router. Every deploy keeps the app's GUID; every failure cancels the
//! deployment with the old version serving and the environment variables restored; no request
//! fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cf_zero_downtime::cf::AppGuid;
use cf_zero_downtime::command::push::PushArgs;
use cf_zero_downtime::deploy::Strategy;
use cf_zero_downtime::deploy::{Event, Outcome};
use cf_zero_downtime::sim::SimConfig;
use tokio_util::sync::CancellationToken;

use crate::support::sim_world::{AppVersion, World, assert_no_failures, fast, push_args, world};

/// Apps, route urls → app names, and each app's environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    apps: BTreeMap<String, String>,
    routes: BTreeMap<String, Vec<String>>,
    env: BTreeMap<String, BTreeMap<String, String>>,
    bindings: BTreeMap<String, Vec<String>>,
}

/// What this file needs of the shared [`World`] beyond the harness: versions of the single app
/// `web` with env vars and services, push arguments with a strategy, and the state it compares.
trait RollingWorld {
    /// Writes `version` of app `web` (with `instances`, env `GREETING=<version>` and the extra
    /// files `extra`) and returns its manifest.
    fn version(&self, version: &str, instances: u32, extra: &[&str]) -> PathBuf;
    /// [`RollingWorld::version`] whose manifest also binds `services`.
    fn version_with_services(
        &self,
        version: &str,
        instances: u32,
        extra: &[&str],
        services: &[&str],
    ) -> PathBuf;
    /// Push arguments for `manifest` with `strategy`.
    fn args(&self, manifest: &Path, strategy: Strategy) -> PushArgs;
    /// Apps, routes, env vars and service bindings of the space.
    async fn state(&self) -> State;
    /// v1 of `web` pushed with `strategy` (a first deploy: a plain push).
    async fn first_deploy(&self, instances: u32, strategy: Strategy) -> State;
}

impl RollingWorld for World {
    fn version(&self, version: &str, instances: u32, extra: &[&str]) -> PathBuf {
        self.version_with_services(version, instances, extra, &[])
    }

    fn version_with_services(
        &self,
        version: &str,
        instances: u32,
        extra: &[&str],
        services: &[&str],
    ) -> PathBuf {
        let mut web = extra
            .iter()
            .fold(AppVersion::new("web", instances), |web, f| {
                web.file(f, "x\n")
            })
            .yaml(&format!("  env:\n    GREETING: {version}\n"));
        if !services.is_empty() {
            web = web.yaml("  services:\n");
            for svc in services {
                web = web.yaml(&format!("  - {svc}\n"));
            }
        }
        self.write_version(version, &[web])
    }

    fn args(&self, manifest: &Path, strategy: Strategy) -> PushArgs {
        PushArgs {
            strategy,
            ..push_args(manifest)
        }
    }

    async fn state(&self) -> State {
        let listing = self.listing().await;
        let c = self.client();
        let mut env = BTreeMap::new();
        let mut bindings = BTreeMap::new();
        for a in &listing.apps {
            let guid = AppGuid::new(a.guid.as_str());
            let vars = c.get_app_environment_variables(&guid).await.unwrap();
            env.insert(a.name.clone(), vars);
            let mut bound: Vec<String> = c
                .list_app_service_credential_bindings(&guid)
                .await
                .unwrap()
                .iter()
                .filter_map(|b| b.service_instance_guid().map(ToString::to_string))
                .collect();
            bound.sort();
            bindings.insert(a.name.clone(), bound);
        }
        State {
            apps: listing
                .apps
                .iter()
                .map(|a| (a.name.clone(), a.guid.as_str().to_string()))
                .collect(),
            routes: listing.route_table(|_| String::new(), true),
            env,
            bindings,
        }
    }

    async fn first_deploy(&self, instances: u32, strategy: Strategy) -> State {
        let m = self.version("v1", instances, &["v1-only"]);
        self.push_deployed(self.args(&m, strategy)).await;
        let s = self.state().await;
        assert_eq!(s.env["web"]["GREETING"], "v1");
        s
    }
}

/// The body of the `POST /v3/deployments` request.
fn deployment_body(w: &World) -> serde_json::Value {
    let call = w
        .sim
        .call_log()
        .into_iter()
        .find(|c| c.method == "POST" && c.path == "/v3/deployments")
        .expect("a deployment was created");
    serde_json::from_str(&call.body).unwrap()
}

fn deployment_calls(w: &World) -> Vec<String> {
    w.sim
        .call_log()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path.starts_with("/v3/deployments"))
        .map(|c| c.path)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_under_load_keeps_the_app_guid_and_loses_no_request() {
    let w = world(fast()).await;
    let before = w.first_deploy(3, Strategy::Rolling).await;
    let load = w.load("web").await;
    let m = w.version("v2", 3, &[]);
    let mut args = w.args(&m, Strategy::Rolling);
    args.max_in_flight = Some(1);
    let (outcome, events) = w.push(args).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    w.settle().await;
    let report = load.stop().await;
    assert_no_failures(&report);
    assert!(report.served.contains_key("v1") && report.served.contains_key("v2"));
    let after = w.state().await;
    assert_eq!(after.apps, before.apps, "the same app (GUID) serves");
    assert_eq!(after.routes, before.routes);
    assert_eq!(after.env["web"]["GREETING"], "v2");
    assert_eq!(w.serving("web").await, "v2");
    assert_eq!(deployment_calls(&w), vec!["/v3/deployments".to_string()]);
    let body = deployment_body(&w);
    assert_eq!(body["strategy"], "rolling");
    assert_eq!(body["options"]["max_in_flight"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_crash_is_canceled_early_with_v1_serving_and_env_restored() {
    let w = world(fast()).await;
    let db = w
        .sim
        .create_user_provided_service("db", serde_json::json!({"uri": "x"}));
    let before = w.first_deploy(2, Strategy::Rolling).await;
    assert!(before.bindings["web"].is_empty());
    let load = w.load("web").await;
    // v2 also binds a service: the rollback unbinds it.
    let m = w.version_with_services("v2", 2, &[".sim-crash"], &["db"]);
    let (outcome, events) = w.push(w.args(&m, Strategy::Rolling)).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    // Canceled on the crash, not after the 20 s stall timeout.
    assert!(error.to_string().contains("crashed"), "{error}");
    w.settle().await;
    assert_no_failures(&load.stop().await);
    assert_eq!(
        w.state().await,
        before,
        "same app, routes, env vars and bindings"
    );
    assert_eq!(w.serving("web").await, "v1");
    let unbind = w
        .sim
        .call_log()
        .into_iter()
        .filter(|c| c.method == "DELETE" && c.path.starts_with("/v3/service_credential_bindings/"))
        .count();
    assert_eq!(
        unbind, 1,
        "the binding to {db} made by v2's manifest is removed"
    );
    let calls = deployment_calls(&w);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[1].ends_with("/actions/cancel"), "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_with_a_passing_smoke_test_is_deployed() {
    let w = world(fast()).await;
    let before = w.first_deploy(2, Strategy::Canary).await;
    let load = w.load("web").await;
    // Only v2 has this page: the probe passes only on the canary itself.
    let m = w.version("v2", 2, &["canary-check"]);
    let mut args = w.args(&m, Strategy::Canary);
    args.common.smoke_test_path = Some("/canary-check".into());
    args.instance_steps = vec![50];
    let (outcome, events) = w.push(args).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let body = deployment_body(&w);
    assert_eq!(body["strategy"], "canary");
    assert_eq!(
        body["options"]["canary"],
        serde_json::json!({"steps": [{"instance_weight": 50}]})
    );
    w.settle().await;
    assert_no_failures(&load.stop().await);
    let after = w.state().await;
    assert_eq!(after.apps, before.apps);
    assert_eq!(w.serving("web").await, "v2");
    let calls = deployment_calls(&w);
    assert!(
        calls.iter().any(|c| c.ends_with("/actions/continue")),
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_with_a_failing_smoke_test_is_canceled_with_v1_serving() {
    let w = world(fast()).await;
    let before = w.first_deploy(2, Strategy::Canary).await;
    let load = w.load("web").await;
    // Only v1 has this page: pinned to the canary (v2), the probe must fail.
    let m = w.version("v2", 2, &[]);
    let mut args = w.args(&m, Strategy::Canary);
    args.common.smoke_test_path = Some("/v1-only".into());
    let (outcome, events) = w.push(args).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    assert!(
        error.to_string().contains("smoke test of app 'web' failed"),
        "{error}"
    );
    w.settle().await;
    assert_no_failures(&load.stop().await);
    assert_eq!(w.state().await, before, "same app, routes and env vars");
    assert_eq!(w.serving("web").await, "v1");
    let calls = deployment_calls(&w);
    assert!(
        !calls.iter().any(|c| c.ends_with("/actions/continue")),
        "{calls:?}"
    );
    assert!(
        calls.iter().any(|c| c.ends_with("/actions/cancel")),
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_on_an_old_cloud_controller_is_refused_before_any_change() {
    let w = world(SimConfig {
        api_version: "3.160.0".into(),
        ..fast()
    })
    .await;
    let m = w.version("v1", 1, &[]);
    let (outcome, events) = w.push(w.args(&m, Strategy::Canary)).await;
    let Outcome::NothingChanged { error } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    assert!(error.to_string().contains("--strategy canary"), "{error}");
    assert!(error.to_string().contains("3.173"), "{error}");
    assert!(
        w.sim.call_log().iter().all(|c| c.method == "GET"),
        "no mutating call"
    );
}

/// Collects the events; cancels the token (Ctrl-C) at the first wait for the deployment.
struct InterruptAtDeployment {
    events: Vec<Event>,
    token: CancellationToken,
}

impl cf_zero_downtime::deploy::Reporter for InterruptAtDeployment {
    fn report(&mut self, event: Event) {
        if matches!(&event, Event::Waiting { what, .. } if what == "deployment") {
            self.token.cancel();
        }
        self.events.push(event);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_interrupted_is_canceled_with_v1_serving_and_env_restored() {
    let w = world(fast()).await;
    let before = w.first_deploy(2, Strategy::Rolling).await;
    let load = w.load("web").await;
    // New instances take a while to start, so the deployment is still running when the
    // interrupt's cancel arrives (without it, a fast machine could finish it first).
    w.sim
        .faults()
        .slow_start("web", std::time::Duration::from_secs(3));
    let m = w.version("v2", 2, &[]);
    let args = w.args(&m, Strategy::Rolling);
    let token = CancellationToken::new();
    let mut r = InterruptAtDeployment {
        events: Vec::new(),
        token: token.clone(),
    };
    let outcome = w.push_with(args, &mut r, &token).await;
    assert_eq!(
        outcome,
        Outcome::RolledBack {
            error: "interrupted".into()
        },
        "{:#?}",
        r.events
    );
    let calls = deployment_calls(&w);
    assert!(
        calls.last().is_some_and(|c| c.ends_with("/actions/cancel")),
        "{calls:?}"
    );
    w.settle().await;
    assert_no_failures(&load.stop().await);
    assert_eq!(w.state().await, before, "same app, routes and env vars");
    assert_eq!(w.serving("web").await, "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_flags_that_do_not_fit_the_strategy_stop_before_any_request() {
    let w = world(fast()).await;
    let m = w.version("v1", 1, &[]);
    let mut args = w.args(&m, Strategy::BlueGreen);
    args.max_in_flight = Some(2);
    let (outcome, _) = w.push(args).await;
    assert_eq!(
        outcome.error().map(ToString::to_string).as_deref(),
        Some("--max-in-flight applies to --strategy rolling or canary only")
    );
    let mut args = w.args(&m, Strategy::Rolling);
    args.instance_steps = vec![50];
    let (outcome, _) = w.push(args).await;
    assert_eq!(
        outcome.error().map(ToString::to_string).as_deref(),
        Some("--instance-steps applies to --strategy canary (or auto) only")
    );
    let mut args = w.args(&m, Strategy::Canary);
    args.instance_steps = vec![50, 20];
    let (outcome, _) = w.push(args).await;
    assert!(
        matches!(&outcome, Outcome::NothingChanged { error } if error.to_string().contains("ascending")),
        "{outcome:?}"
    );
    assert!(w.sim.call_log().is_empty(), "{:?}", w.sim.call_log());
}
