//! The simulator world of the end-to-end tests: a [`World`] (an in-process simulator and a
//! scratch folder for app versions) with the pushes, looks at the space and router, and load
//! that every end-to-end test uses. What a test file compares (its own `State`) stays in that
//! file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cf_zero_downtime::cf::{
    App, AppGuid, AppQuery, Client, ClientConfig, MetadataUpdate, Route, RouteQuery, SpaceGuid,
};
use cf_zero_downtime::command::demo::{self, load};
use cf_zero_downtime::command::flags::CommonFlags;
use cf_zero_downtime::command::push::PushArgs;
use cf_zero_downtime::command::push::{PushOptions, push};
use cf_zero_downtime::deploy::budget::Requests;
use cf_zero_downtime::deploy::lock::HEARTBEAT_ANNOTATION;
use cf_zero_downtime::deploy::{Event, Outcome, Reporter};
use cf_zero_downtime::sim::{Sim, SimConfig, SimHandle};
use tokio_util::sync::CancellationToken;

/// A simulator and a scratch folder for app versions.
pub(crate) struct World {
    /// The simulator (API, router, apps).
    pub(crate) sim: SimHandle,
    /// Where the versions' folders and manifests are written.
    pub(crate) dir: tempfile::TempDir,
}

/// A [`World`] whose simulator runs with `cfg`.
pub(crate) async fn world(cfg: SimConfig) -> World {
    World {
        sim: Sim::start(cfg).await.expect("simulator starts"),
        dir: tempfile::tempdir().expect("temp dir"),
    }
}

/// A simulator with short route propagation and stop grace.
pub(crate) fn fast() -> SimConfig {
    SimConfig {
        route_propagation: Duration::from_millis(50),
        stop_grace: Duration::from_millis(200),
        ..SimConfig::default()
    }
}

/// The push arguments every end-to-end deploy starts from: `manifest`, a 300 ms drain, a 20 s
/// timeout and the `-temp` route suffix.
pub(crate) fn push_args(manifest: &Path) -> PushArgs {
    PushArgs {
        manifest: Some(manifest.to_path_buf()),
        common: CommonFlags {
            drain: cf_zero_downtime::command::flags::DrainArg::fixed(Duration::from_millis(300)),
            timeout: Duration::from_secs(20),
            smoke_test_timeout: Duration::from_secs(20),
            ..CommonFlags::default()
        },
        ..PushArgs::default()
    }
}

/// One app of a version written by [`World::write_version`]: `instances` × 64 MB from its own
/// folder, routed at `<name>.<app domain>`, health-checked on `/health` over HTTP.
pub(crate) struct AppVersion {
    name: String,
    instances: u32,
    http_health: bool,
    files: Vec<(String, String)>,
    yaml: String,
}

impl AppVersion {
    pub(crate) fn new(name: &str, instances: u32) -> Self {
        AppVersion {
            name: name.to_string(),
            instances,
            http_health: true,
            files: Vec::new(),
            yaml: String::new(),
        }
    }

    /// The platform's default health check (the port) instead of HTTP on `/health`.
    pub(crate) fn port_health(mut self) -> Self {
        self.http_health = false;
        self
    }

    /// Adds the file `name` saying `text` to the app's folder (e.g. a `.sim-crash` marker).
    pub(crate) fn file(mut self, name: &str, text: &str) -> Self {
        self.files.push((name.to_string(), text.to_string()));
        self
    }

    /// Adds `lines` to the app's manifest entry: YAML indented as its keys (two spaces), each
    /// line ending in a newline, e.g. `"  env:\n    GREETING: v2\n"`.
    pub(crate) fn yaml(mut self, lines: &str) -> Self {
        self.yaml.push_str(lines);
        self
    }
}

/// The apps and routes of the simulator's space.
pub(crate) struct Listing {
    pub(crate) apps: Vec<App>,
    pub(crate) routes: Vec<Route>,
    /// App guid → app name.
    pub(crate) names: BTreeMap<String, String>,
}

impl Listing {
    /// Route url → the sorted names of the apps it routes to. A destination app that is not in
    /// the space is named `unknown(guid)`; with `dedup`, an app routed to twice is listed once.
    pub(crate) fn route_table(
        &self,
        unknown: impl Fn(&AppGuid) -> String,
        dedup: bool,
    ) -> BTreeMap<String, Vec<String>> {
        self.routes
            .iter()
            .map(|r| {
                let mut to: Vec<String> = r
                    .destinations
                    .iter()
                    .map(|d| {
                        self.names
                            .get(d.app.guid.as_str())
                            .cloned()
                            .unwrap_or_else(|| unknown(&d.app.guid))
                    })
                    .collect();
                to.sort();
                if dedup {
                    to.dedup();
                }
                (r.url.clone(), to)
            })
            .collect()
    }
}

impl World {
    /// The folder of version `version` (where its manifest goes).
    pub(crate) fn version_root(&self, version: &str) -> PathBuf {
        self.dir.path().join(version)
    }

    /// Writes app `name` of version `version`: a folder whose `index.html` says the version and
    /// whose `health` page says ok. Returns the folder.
    pub(crate) fn write_app(&self, version: &str, name: &str) -> PathBuf {
        let d = self.version_root(version).join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("index.html"), format!("{version}\n")).unwrap();
        std::fs::write(d.join("health"), "ok\n").unwrap();
        d
    }

    /// Writes version `version` of `apps`, each in its own folder (see [`World::write_app`]),
    /// and its `manifest.yml`; returns the manifest.
    pub(crate) fn write_version(&self, version: &str, apps: &[AppVersion]) -> PathBuf {
        let domain = self.sim.app_domain();
        let mut yaml = String::from("applications:\n");
        for app in apps {
            let dir = self.write_app(version, &app.name);
            for (file, text) in &app.files {
                std::fs::write(dir.join(file), text).unwrap();
            }
            let name = &app.name;
            yaml.push_str(&format!(
                "- name: {name}\n  instances: {}\n  memory: 64M\n  path: {name}\n",
                app.instances
            ));
            if app.http_health {
                yaml.push_str("  health-check-type: http\n  health-check-http-endpoint: /health\n");
            }
            yaml.push_str(&app.yaml);
            yaml.push_str(&format!("  routes:\n  - route: {name}.{domain}\n"));
        }
        let manifest = self.version_root(version).join("manifest.yml");
        std::fs::write(&manifest, yaml).unwrap();
        manifest
    }

    /// Version `version` of `web` alone with `instances` (the version most tests push); returns
    /// the manifest.
    pub(crate) fn web_version(&self, version: &str, instances: u32) -> PathBuf {
        self.write_version(version, &[AppVersion::new("web", instances)])
    }

    /// Pushes `args` (from the manifest's folder) reporting to `reporter`.
    pub(crate) async fn push_with(
        &self,
        args: PushArgs,
        reporter: &mut dyn Reporter,
        cancel: &CancellationToken,
    ) -> Outcome {
        let opts = self.push_options(args);
        // Boxed: the deploy future is large, and a test thread's stack is 2 MiB.
        Box::pin(push(opts, reporter, cancel)).await
    }

    /// Pushes `args` to the end without the harness's probe override (which points smoke tests
    /// and drain probes at the simulator's router): only the flags decide where they go.
    pub(crate) async fn push_probing_by_flags(&self, args: PushArgs) -> (Outcome, Vec<Event>) {
        let mut opts = self.push_options(args);
        opts.probe = None;
        let mut events = Vec::new();
        let outcome = Box::pin(push(opts, &mut events, &CancellationToken::new())).await;
        (outcome, events)
    }

    /// The options of a push of `args` to the simulator, run from the manifest's folder.
    fn push_options(&self, args: PushArgs) -> PushOptions {
        let cwd = args
            .manifest
            .as_ref()
            .and_then(|m| m.parent())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.dir.path().to_path_buf());
        demo::sim_push_options(&self.sim, args, cwd)
    }

    /// Pushes `args` to the end; returns the outcome and every event.
    pub(crate) async fn push(&self, args: PushArgs) -> (Outcome, Vec<Event>) {
        let mut events = Vec::new();
        let outcome = self
            .push_with(args, &mut events, &CancellationToken::new())
            .await;
        (outcome, events)
    }

    /// Pushes `args` like [`World::push`]; the run must end by itself within `bound`, a guard
    /// against a hang (not a speed check: choose it longer than the run's own `--timeout`, so
    /// that the outcome says what ended the run).
    pub(crate) async fn push_bounded(
        &self,
        args: PushArgs,
        bound: Duration,
    ) -> (Outcome, Vec<Event>) {
        tokio::time::timeout(bound, self.push(args))
            .await
            .unwrap_or_else(|_| panic!("the push did not end by itself within {bound:?}"))
    }

    /// Pushes `args`, which must deploy, and lets the router settle.
    pub(crate) async fn push_deployed(&self, args: PushArgs) {
        let (outcome, events) = self.push(args).await;
        assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
        self.settle().await;
    }

    /// A CF API client logged in to the simulator.
    pub(crate) fn client(&self) -> Client {
        let (target, token) = demo::sim_target(&self.sim);
        Client::new(ClientConfig::for_target(&target, token)).unwrap()
    }

    /// The names of the space's apps, sorted.
    pub(crate) async fn app_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .listing()
            .await
            .apps
            .into_iter()
            .map(|a| a.name)
            .collect();
        names.sort();
        names
    }

    /// The apps and routes of the space.
    pub(crate) async fn listing(&self) -> Listing {
        let c = self.client();
        let space = SpaceGuid::new(self.sim.space_guid());
        let apps = c
            .list_apps(&AppQuery {
                space_guids: vec![space.clone()],
                ..AppQuery::default()
            })
            .await
            .unwrap();
        let names: BTreeMap<String, String> = apps
            .iter()
            .map(|a| (a.guid.as_str().to_string(), a.name.clone()))
            .collect();
        let routes = c
            .list_routes(&RouteQuery {
                space_guids: vec![space],
                ..RouteQuery::default()
            })
            .await
            .unwrap();
        Listing {
            apps,
            routes,
            names,
        }
    }

    /// What the router answers for `app`'s route (several requests, all must agree).
    pub(crate) async fn serving(&self, app: &str) -> String {
        let client = reqwest::Client::new();
        let mut seen = Vec::new();
        for _ in 0..8 {
            let body = client
                .get(format!("{}/", self.sim.router_url()))
                .header("Host", format!("{app}.{}", self.sim.app_domain()))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            seen.push(body.trim().to_string());
        }
        seen.dedup();
        assert_eq!(seen.len(), 1, "instances disagree on the version: {seen:?}");
        seen.remove(0)
    }

    /// Starts a bounded load on `app`'s route and waits (bounded) for its first answer.
    pub(crate) async fn load(&self, app: &str) -> load::LoadHandle {
        let mut cfg = load::LoadConfig::new(
            self.sim.router_addr(),
            format!("{app}.{}", self.sim.app_domain()),
        );
        cfg.concurrency = 2;
        cfg.pause = Duration::from_millis(5);
        cfg.max_requests = 50_000;
        let handle = load::start(cfg).unwrap();
        // On a loaded machine the workers may start late: wait for the first answer.
        for _ in 0..300 {
            if handle.snapshot().await.total > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        handle
    }

    /// Makes every deploy lock in the space stale, as if the run that holds it had been
    /// killed long ago: its heartbeat annotation is set to 2000-01-01. Returns the names of
    /// the apps it changed.
    pub(crate) async fn age_locks(&self) -> Vec<String> {
        let c = self.client();
        let mut aged = Vec::new();
        for a in self.listing().await.apps {
            if a.metadata.annotations.contains_key(HEARTBEAT_ANNOTATION) {
                let old = MetadataUpdate::default()
                    .annotation(HEARTBEAT_ANNOTATION, "2000-01-01T00:00:00Z");
                c.update_app_metadata(&a.guid, &old).await.unwrap();
                aged.push(a.name);
            }
        }
        aged
    }

    /// Waits (bounded) until the simulator's call log holds a call `method` whose path contains
    /// `part`, answered below 300; fails the test if none comes.
    pub(crate) async fn wait_for_call(&self, method: &str, part: &str) {
        crate::support::poll(&format!("a call {method} …{part}…"), || async {
            self.sim
                .call_log()
                .iter()
                .any(|c| c.method == method && c.path.contains(part) && c.status < 300)
                .then_some(())
        })
        .await;
    }

    /// The calls to the simulator that may change something (all but GETs), as `METHOD path`.
    pub(crate) fn changing_calls(&self) -> Vec<String> {
        self.sim
            .call_log()
            .into_iter()
            .filter(|c| c.method != "GET")
            .map(|c| format!("{} {}", c.method, c.path))
            .collect()
    }

    /// Lets the router settle (propagation, old instances ending) before the next look.
    pub(crate) async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The load sent requests and none of them failed.
pub(crate) fn assert_no_failures(r: &load::LoadReport) {
    assert!(r.total > 0, "the load sent no request");
    assert_eq!(r.failed, 0, "failed requests: {:?}", r.failures);
}

/// The run's one `requests` event (the call budget by phase); panics naming the events when
/// there is not exactly one.
pub(crate) fn requests_event(events: &[Event]) -> &Requests {
    let found: Vec<&Requests> = events
        .iter()
        .filter_map(|e| match e {
            Event::Requests(r) => Some(r),
            _ => None,
        })
        .collect();
    let [requests] = found[..] else {
        panic!("one requests event: {events:#?}");
    };
    requests
}
