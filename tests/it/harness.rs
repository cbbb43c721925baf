//! The simulator harness shared by the end-to-end tests (`e2e`, `e2e_rolling`): a [`World`]
//! (an in-process simulator and a scratch folder for app versions) with the pushes, looks at the
//! space and router, and load that every end-to-end test uses. What a test file compares
//! (its own `State`) and how it writes its app versions stay in that file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cf_zero_downtime::cf::{
    App, AppGuid, AppQuery, Client, ClientConfig, MetadataUpdate, Route, RouteQuery, SpaceGuid,
};
use cf_zero_downtime::cli::PushArgs;
use cf_zero_downtime::demo::{self, load};
use cf_zero_downtime::deploy::lock::HEARTBEAT_ANNOTATION;
use cf_zero_downtime::deploy::{Event, Outcome, Reporter};
use cf_zero_downtime::sim::{Sim, SimConfig, SimHandle};
use cf_zero_downtime::wiring::push::push;
use tokio_util::sync::CancellationToken;

/// A simulator and a scratch folder for app versions.
pub struct World {
    /// The simulator (API, router, apps).
    pub sim: SimHandle,
    /// Where the versions' folders and manifests are written.
    pub dir: tempfile::TempDir,
}

/// A [`World`] whose simulator runs with `cfg`.
pub async fn world(cfg: SimConfig) -> World {
    World {
        sim: Sim::start(cfg).await.expect("simulator starts"),
        dir: tempfile::tempdir().expect("temp dir"),
    }
}

/// A simulator with short route propagation and stop grace.
pub fn fast() -> SimConfig {
    SimConfig {
        route_propagation: Duration::from_millis(50),
        stop_grace: Duration::from_millis(200),
        ..SimConfig::default()
    }
}

/// The push arguments every end-to-end deploy starts from: `manifest`, a 300 ms drain, a 20 s
/// timeout and the `-temp` route suffix.
pub fn push_args(manifest: &Path) -> PushArgs {
    PushArgs {
        manifest: Some(manifest.to_path_buf()),
        drain: cf_zero_downtime::cli::DrainArg::fixed(Duration::from_millis(300)),
        timeout: Duration::from_secs(20),
        smoke_test_timeout: Duration::from_secs(20),
        temp_route_suffix: "-temp".into(),
        ..PushArgs::default()
    }
}

/// The apps and routes of the simulator's space.
pub struct Listing {
    pub apps: Vec<App>,
    pub routes: Vec<Route>,
    /// App guid → app name.
    pub names: BTreeMap<String, String>,
}

impl Listing {
    /// Route url → the sorted names of the apps it routes to. A destination app that is not in
    /// the space is named `unknown(guid)`; with `dedup`, an app routed to twice is listed once.
    pub fn route_table(
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
    pub fn version_root(&self, version: &str) -> PathBuf {
        self.dir.path().join(version)
    }

    /// Writes app `name` of version `version`: a folder whose `index.html` says the version and
    /// whose `health` page says ok. Returns the folder.
    pub fn write_app(&self, version: &str, name: &str) -> PathBuf {
        let d = self.version_root(version).join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("index.html"), format!("{version}\n")).unwrap();
        std::fs::write(d.join("health"), "ok\n").unwrap();
        d
    }

    /// Pushes `args` (from the manifest's folder) reporting to `reporter`.
    pub async fn push_with(
        &self,
        args: PushArgs,
        reporter: &mut dyn Reporter,
        cancel: &CancellationToken,
    ) -> Outcome {
        let cwd = args
            .manifest
            .as_ref()
            .and_then(|m| m.parent())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.dir.path().to_path_buf());
        let opts = demo::sim_push_options(&self.sim, args, cwd);
        // Boxed: the deploy future is large, and a test thread's stack is 2 MiB.
        Box::pin(push(opts, reporter, cancel)).await
    }

    /// Pushes `args` to the end; returns the outcome and every event.
    pub async fn push(&self, args: PushArgs) -> (Outcome, Vec<Event>) {
        let mut events = Vec::new();
        let outcome = self
            .push_with(args, &mut events, &CancellationToken::new())
            .await;
        (outcome, events)
    }

    /// Pushes `args`, which must deploy, and lets the router settle.
    pub async fn push_deployed(&self, args: PushArgs) {
        let (outcome, events) = self.push(args).await;
        assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
        self.settle().await;
    }

    /// A CF API client logged in to the simulator.
    pub fn client(&self) -> Client {
        let (target, token) = demo::sim_target(&self.sim);
        Client::new(ClientConfig::for_target(&target, token)).unwrap()
    }

    /// The names of the space's apps, sorted.
    pub async fn app_names(&self) -> Vec<String> {
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
    pub async fn listing(&self) -> Listing {
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
    pub async fn serving(&self, app: &str) -> String {
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
    pub async fn load(&self, app: &str) -> load::LoadHandle {
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
    pub async fn age_locks(&self) -> Vec<String> {
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

    /// Lets the router settle (propagation, old instances ending) before the next look.
    pub async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The load sent requests and none of them failed.
pub fn assert_no_failures(r: &load::LoadReport) {
    assert!(r.total > 0, "the load sent no request");
    assert_eq!(r.failed, 0, "failed requests: {:?}", r.failures);
}

// ---------------------------------------------------------------------------------------
// The plugin binary under a fake cf CLI that behaves like the real one on Ctrl-C.
// ---------------------------------------------------------------------------------------

/// What a [`CfLikeRun`] needs: the fake cf CLI's answers and the cf CLI's saved login.
pub struct CfLikeSetup<'a> {
    /// Extra flags for `fakecf` (`-api=...`, `-token=...`, `-user=...`; see tests/go).
    pub peer_flags: Vec<String>,
    /// The plugin's arguments after the RPC port (`zero-downtime-push`, app, flags...).
    pub plugin_args: Vec<String>,
    /// `Target` of the config file (the same API the fake cf CLI answers with `-api`).
    pub api: &'a str,
    /// `AuthorizationEndpoint` of the config file (the login server, e.g. a wiremock).
    pub uaa: &'a str,
    /// `AccessToken` of the config file.
    pub access_token: &'a str,
    /// `RefreshToken` of the config file.
    pub refresh_token: &'a str,
}

/// The plugin binary running under `fakecf -cf-like` (tests/go), started by
/// [`start_cf_like`]: the fake cf CLI leads a process group of its own and the plugin runs
/// in it with the fake cf CLI's stdio (pipes read by this harness), as under a real cf on a
/// terminal. [`CfLikeRun::interrupt`] sends SIGINT to the whole group, which is what Ctrl-C
/// does: the fake cf CLI and its RPC server die at once, the plugin lives on with its
/// output still arriving here. `CF_HOME` is a temp dir holding `.cf/config.json` for the
/// given API and login server. Dropping the run kills whatever of the group is left.
pub struct CfLikeRun {
    peer: std::process::Child,
    pgid: i32,
    pid_file: PathBuf,
    /// The temp `CF_HOME` (its `.cf/config.json` is the cf CLI's saved login).
    pub cf_home: tempfile::TempDir,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

/// What the plugin printed, collected once it has exited.
#[derive(Debug)]
pub struct PluginOutput {
    pub stdout: String,
    pub stderr: String,
}

/// Starts the plugin binary under the fake cf CLI in cf-like mode (see [`CfLikeRun`]).
/// `fakecf` is the built peer (`crate::plugin::fakecf()`; `None` there means no Go
/// toolchain and the caller skips).
#[cfg(unix)]
pub fn start_cf_like(fakecf: &Path, setup: &CfLikeSetup<'_>) -> CfLikeRun {
    use std::io::Read as _;
    use std::os::unix::process::CommandExt as _;
    use std::process::{Command, Stdio};

    let cf_home = tempfile::tempdir().expect("temp CF_HOME");
    let cf_dir = cf_home.path().join(".cf");
    std::fs::create_dir_all(&cf_dir).expect("mkdir .cf");
    let config = serde_json::json!({
        "ConfigVersion": 4,
        "Target": setup.api,
        "APIVersion": "3.228.0",
        "AuthorizationEndpoint": setup.uaa,
        "UaaEndpoint": setup.uaa,
        "AccessToken": setup.access_token,
        "RefreshToken": setup.refresh_token,
        "SSLDisabled": false,
        "UAAGrantType": "",
        "UAAOAuthClient": "cf",
        "UAAOAuthClientSecret": "",
        "OrganizationFields": {"GUID": "org-guid-1", "Name": "my-org"},
        "SpaceFields": {"GUID": "space-guid-1", "Name": "dev"}
    });
    std::fs::write(
        cf_dir.join("config.json"),
        serde_json::to_vec_pretty(&config).expect("json"),
    )
    .expect("write config.json");
    let pid_file = cf_home.path().join("plugin.pid");
    let mut peer = Command::new(fakecf)
        .arg("-cf-like")
        .arg(format!("-pid-file={}", pid_file.display()))
        .arg(format!("-api={}", setup.api))
        .args(&setup.peer_flags)
        .arg(env!("CARGO_BIN_EXE_cf-zero-downtime"))
        .args(&setup.plugin_args)
        .env("CF_HOME", cf_home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own, led by the fake cf CLI: the plugin joins it as under cf.
        .process_group(0)
        .spawn()
        .expect("start fakecf -cf-like");
    let pgid = i32::try_from(peer.id()).expect("pid fits i32");
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = peer.stdout.take().map(|s| drain(Box::new(s)));
    let stderr = peer.stderr.take().map(|s| drain(Box::new(s)));
    CfLikeRun {
        peer,
        pgid,
        pid_file,
        cf_home,
        stdout,
        stderr,
    }
}

#[cfg(unix)]
impl CfLikeRun {
    /// The config file the plugin reads (`$CF_HOME/.cf/config.json`).
    pub fn config_file(&self) -> PathBuf {
        self.cf_home.path().join(".cf").join("config.json")
    }

    /// The fake cf CLI's pid, which is also the process group id.
    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    /// The plugin's pid, once the fake cf CLI has started it (waits up to `bound`).
    pub fn plugin_pid(&self, bound: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + bound;
        loop {
            if let Ok(text) = std::fs::read_to_string(&self.pid_file)
                && let Some(pid) = text
                    .trim()
                    .strip_prefix("plugin-pid: ")
                    .and_then(|p| p.parse().ok())
            {
                return Some(pid);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ctrl-C on a terminal: SIGINT to every process of the group.
    pub fn interrupt(&self) {
        // SAFETY: kill(2) has no memory effects; a negative pid names the process group.
        let rc = unsafe { libc::kill(-self.pgid, libc::SIGINT) };
        assert_eq!(rc, 0, "kill(-{}, SIGINT) failed", self.pgid);
    }

    /// The fake cf CLI alone dies (SIGKILL to its pid, not the group): the plugin is not
    /// interrupted and goes on without the RPC server.
    pub fn kill_cli(&self) {
        // SAFETY: kill(2) has no memory effects.
        let rc = unsafe { libc::kill(self.pgid, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill({}, SIGKILL) failed", self.pgid);
    }

    /// Waits up to `bound` for the fake cf CLI to exit; `None` if it is still running.
    pub fn wait_peer(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + bound;
        loop {
            if let Some(status) = self.peer.try_wait().expect("wait for fakecf") {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `bound` for the plugin process `pid` to be gone (also once the fake cf
    /// CLI, its parent, has died) and its output pipes to close; returns what it printed,
    /// `None` if it is still running at the bound.
    pub fn wait_plugin_exit(&mut self, pid: i32, bound: Duration) -> Option<PluginOutput> {
        let deadline = std::time::Instant::now() + bound;
        while process_alive(pid) {
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The pipes close when the last holder exits; the plugin started nothing else.
        while [&self.stdout, &self.stderr]
            .iter()
            .any(|h| h.as_ref().is_some_and(|h| !h.is_finished()))
        {
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
            h.and_then(|h| h.join().ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        Some(PluginOutput {
            stdout: text(self.stdout.take()),
            stderr: text(self.stderr.take()),
        })
    }
}

/// Whether `pid` is a running process (an exited one not yet reaped counts as gone).
#[cfg(unix)]
pub fn process_alive(pid: i32) -> bool {
    // Linux: a zombie ('Z') or a vanished /proc entry means it has exited.
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        return !matches!(state, Some('Z' | 'X'));
    }
    if Path::new("/proc/self/stat").exists() {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[cfg(unix)]
impl Drop for CfLikeRun {
    fn drop(&mut self) {
        // SAFETY: as in `interrupt`; whatever of the group is left is ended.
        unsafe {
            libc::kill(-self.pgid, libc::SIGKILL);
        }
        let _ = self.peer.wait();
    }
}

/// The fake cf CLI's flags for the simulator of `w` logged in as admin with `token`: its API,
/// org, space and user.
pub fn sim_peer_flags(w: &World, token: &str) -> Vec<String> {
    vec![
        format!("-api={}", w.sim.api_url()),
        format!("-token={token}"),
        format!("-org={}", w.sim.org_name()),
        format!("-org-guid={}", w.sim.org_guid()),
        format!("-space={}", w.sim.space_name()),
        format!("-space-guid={}", w.sim.space_guid()),
        "-user=admin".to_string(),
    ]
}
