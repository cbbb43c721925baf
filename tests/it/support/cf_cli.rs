//! The plugin binary under tests/go, a fake cf CLI built from Go's net/rpc: [`fakecf`] builds
//! it, [`under_fake_cf`] runs the plugin under it and returns its JSON report, and
//! [`start_cf_like`] runs the plugin in the fake cf CLI's process group the way a real cf on a
//! terminal does, so that Ctrl-C can be pressed ([`CfLikeRun::interrupt`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value as Json;

use crate::support::sim_world::World;

/// The plugin binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_cf-zero-downtime");

/// What a process wrote to stderr, as text.
pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Builds tests/go once. Never `None` (the Option is kept for the callers' `let ... else`): a
/// missing Go toolchain fails the test. Tests that need Go are `#[ignore]`d with the reason, so
/// `cargo test` passes on a machine with only Rust; `.ci/run` runs them with `--include-ignored`.
pub(crate) fn fakecf() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fakecf");
            let exe = dir.join(if cfg!(windows) {
                "fakecf.exe"
            } else {
                "fakecf"
            });
            let mut cmd = Command::new("go");
            cmd.args(["build", "-o"])
                .arg(&exe)
                .arg(".")
                .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go"))
                .env("GOFLAGS", "-mod=mod")
                .env("GO111MODULE", "on");
            if std::env::var_os("GOCACHE").is_none() && std::env::var_os("HOME").is_none() {
                cmd.env("GOCACHE", dir.join("gocache"));
            }
            match cmd.output() {
                Ok(out) if out.status.success() => Some(exe),
                Ok(out) => panic!("go build of tests/go failed: {}", stderr(&out)),
                Err(e) => panic!(
                    "this test needs the Go toolchain, which is missing ({e}): apt-get install golang-go"
                ),
            }
        })
        .as_deref()
}

/// Runs the plugin under the fake cf CLI and returns its JSON report.
pub(crate) fn under_fake_cf(flags: &[&str], plugin_args: &[&str]) -> Option<Json> {
    under_fake_cf_for(flags, plugin_args, "20s")
}

/// As [`under_fake_cf`], killing the plugin after `timeout` (a Go duration).
pub(crate) fn under_fake_cf_for(
    flags: &[&str],
    plugin_args: &[&str],
    timeout: &str,
) -> Option<Json> {
    let fakecf = fakecf()?;
    let out = Command::new(fakecf)
        .args(flags)
        .arg(format!("-timeout={timeout}"))
        .arg(BIN)
        .args(plugin_args)
        .output()
        .expect("run fakecf");
    assert!(out.status.success(), "fakecf failed: {}", stderr(&out));
    let report: Json = serde_json::from_slice(&out.stdout).expect("fakecf report is JSON");
    assert_eq!(report["timed_out"], false, "plugin hung: {report}");
    Some(report)
}

pub(crate) fn methods(report: &Json) -> Vec<String> {
    report["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| c["method"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// V2-backed calls and the legacy command runner, which the plugin must never use.
pub(crate) const FORBIDDEN: &[&str] = &[
    "CallCoreCommand",
    "GetOutputAndReset",
    "DisableTerminalOutput",
    "GetApp",
    "GetApps",
    "GetOrgs",
    "GetSpaces",
    "GetServices",
    "GetOrgUsers",
    "GetSpaceUsers",
    "GetOrg",
    "GetSpace",
    "GetService",
];

/// What a [`CfLikeRun`] needs: the fake cf CLI's answers and the cf CLI's saved login.
pub(crate) struct CfLikeSetup<'a> {
    /// Extra flags for `fakecf` (`-api=...`, `-token=...`, `-user=...`; see tests/go).
    pub(crate) peer_flags: Vec<String>,
    /// The plugin's arguments after the RPC port (`zero-downtime-push`, app, flags...).
    pub(crate) plugin_args: Vec<String>,
    /// `Target` of the config file (the same API the fake cf CLI answers with `-api`).
    pub(crate) api: &'a str,
    /// `AuthorizationEndpoint` of the config file (the login server, e.g. a wiremock).
    pub(crate) uaa: &'a str,
    /// `AccessToken` of the config file.
    pub(crate) access_token: &'a str,
    /// `RefreshToken` of the config file.
    pub(crate) refresh_token: &'a str,
}

/// The plugin binary running under `fakecf -cf-like` (tests/go), started by
/// [`start_cf_like`]: the fake cf CLI leads a process group of its own and the plugin runs
/// in it with the fake cf CLI's stdio (pipes read by this harness), as under a real cf on a
/// terminal. [`CfLikeRun::interrupt`] sends SIGINT to the whole group, which is what Ctrl-C
/// does: the fake cf CLI and its RPC server die at once, the plugin lives on with its
/// output still arriving here. `CF_HOME` is a temp dir holding `.cf/config.json` for the
/// given API and login server. Dropping the run kills whatever of the group is left.
pub(crate) struct CfLikeRun {
    peer: std::process::Child,
    pgid: i32,
    pid_file: PathBuf,
    /// The temp `CF_HOME` (its `.cf/config.json` is the cf CLI's saved login).
    pub(crate) cf_home: tempfile::TempDir,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

/// What the plugin printed, collected once it has exited.
#[derive(Debug)]
pub(crate) struct PluginOutput {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Starts the plugin binary under the fake cf CLI in cf-like mode (see [`CfLikeRun`]).
/// `fakecf` is the built peer ([`fakecf`]; `None` there means no Go
/// toolchain and the caller skips).
#[cfg(unix)]
pub(crate) fn start_cf_like(fakecf: &Path, setup: &CfLikeSetup<'_>) -> CfLikeRun {
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
    let mut peer = Command::new(fakecf);
    peer.arg("-cf-like")
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
        .process_group(0);
    // SIGINT and SIGQUIT at their default action, as for a terminal's foreground job: a test
    // run started as a background job of a non-interactive shell inherits them ignored, and
    // Go keeps a signal ignored at start ignored, so the fake cf CLI would survive Ctrl-C.
    // SAFETY: signal(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        peer.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGQUIT] {
                if libc::signal(sig, libc::SIG_DFL) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut peer = peer.spawn().expect("start fakecf -cf-like");
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
    pub(crate) fn config_file(&self) -> PathBuf {
        self.cf_home.path().join(".cf").join("config.json")
    }

    /// The fake cf CLI's pid, which is also the process group id.
    pub(crate) fn pgid(&self) -> i32 {
        self.pgid
    }

    /// The plugin's pid, once the fake cf CLI has started it (waits up to `bound`).
    pub(crate) fn plugin_pid(&self, bound: Duration) -> Option<i32> {
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
    pub(crate) fn interrupt(&self) {
        // SAFETY: kill(2) has no memory effects; a negative pid names the process group.
        let rc = unsafe { libc::kill(-self.pgid, libc::SIGINT) };
        assert_eq!(rc, 0, "kill(-{}, SIGINT) failed", self.pgid);
    }

    /// The fake cf CLI alone dies (SIGKILL to its pid, not the group): the plugin is not
    /// interrupted and goes on without the RPC server.
    pub(crate) fn kill_cli(&self) {
        // SAFETY: kill(2) has no memory effects.
        let rc = unsafe { libc::kill(self.pgid, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill({}, SIGKILL) failed", self.pgid);
    }

    /// Waits up to `bound` for the fake cf CLI to exit; `None` if it is still running.
    pub(crate) fn wait_peer(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
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
    pub(crate) fn wait_plugin_exit(&mut self, pid: i32, bound: Duration) -> Option<PluginOutput> {
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
pub(crate) fn process_alive(pid: i32) -> bool {
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
pub(crate) fn sim_peer_flags(w: &World, token: &str) -> Vec<String> {
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

/// `zero-downtime-push web -f <manifest> --drain <drain>` started by [`push_cf_like`].
#[cfg(unix)]
pub(crate) struct CfLikePush {
    pub(crate) run: CfLikeRun,
    /// The plugin's pid.
    pub(crate) pid: i32,
    /// The access token of the cf CLI's saved login (it must never be printed).
    pub(crate) token: String,
}

/// Starts `zero-downtime-push web -f <manifest> --drain <drain>` under the fake cf CLI in
/// cf-like mode (see [`CfLikeRun`]), logged in to `w`'s simulator as admin, the fake cf CLI
/// giving the plugin 120 s; waits (bounded) for the plugin to start.
#[cfg(unix)]
pub(crate) fn push_cf_like(fakecf: &Path, w: &World, manifest: &Path, drain: &str) -> CfLikePush {
    let api = w.sim.api_url();
    let token = w.sim.token();
    let refresh = w.sim.refresh_token();
    let setup = CfLikeSetup {
        peer_flags: [sim_peer_flags(w, &token), vec!["-timeout=120s".to_string()]].concat(),
        plugin_args: vec![
            "zero-downtime-push".into(),
            "web".into(),
            "-f".into(),
            manifest.display().to_string(),
            "--drain".into(),
            drain.into(),
        ],
        api: &api,
        uaa: &api,
        access_token: &token,
        refresh_token: &refresh,
    };
    let run = start_cf_like(fakecf, &setup);
    let pid = run
        .plugin_pid(Duration::from_secs(20))
        .expect("the plugin started");
    CfLikePush { run, pid, token }
}

/// [`under_fake_cf`] logged in to `w`'s simulator as admin with `token` (see
/// [`sim_peer_flags`]), the plugin given 120 s; run on a blocking thread so that the
/// simulator keeps serving.
pub(crate) async fn under_fake_cf_on_sim(
    w: &World,
    token: &str,
    plugin_args: &[&str],
) -> Option<Json> {
    let flags = sim_peer_flags(w, token);
    let plugin_args: Vec<String> = plugin_args.iter().map(ToString::to_string).collect();
    tokio::task::spawn_blocking(move || {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let plugin_args: Vec<&str> = plugin_args.iter().map(String::as_str).collect();
        under_fake_cf_for(&flags, &plugin_args, "120s")
    })
    .await
    .unwrap()
}
