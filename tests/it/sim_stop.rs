//! The simulator binary stops clean however it is stopped: `sim` and `demo` are started with
//! a TMPDIR of their own, an app with two instances (each with background jobs and a daemon
//! that left its process group) is pushed, then the simulator gets SIGTERM, SIGHUP or SIGKILL.
//! Within 5 s no process may run from that TMPDIR, and after SIGTERM and SIGHUP no file may be
//! left in it. A simulator that starts after a SIGKILLed one ends what that one left.
//!
//! Linux only: processes are found through `/proc`.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sim::{Api, push_to};

const BIN: &str = env!("CARGO_BIN_EXE_cf-zero-downtime");

/// Passed explicitly: a password the simulator generated would be a file in its TMPDIR.
const PASSWORD: &str = "stop-test-password";

/// The bound the issue names for "stops clean".
const CLEAN_WITHIN: Duration = Duration::from_secs(5);

/// Bound for start-up waits (a busy 2-core machine builds and runs other tests meanwhile).
const START_WITHIN: Duration = Duration::from_secs(30);

/// Each instance: a background job of the `sh -c` wrapper, a daemon that left the process
/// group (`setsid`), and the main process.
const MANIFEST: &str = "applications:\n- name: lingering\n  instances: 2\n  command: sleep 3600 & (setsid sleep 3601 &); exec sleep 3602\n  health-check-type: process\n";

/// A simulator binary (`sim` or `demo`) running with its own TMPDIR, its output collected.
struct Running {
    child: Child,
    tmp: PathBuf,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(tmp: &Path, args: &[&str]) -> Running {
        let mut child = Command::new(BIN)
            .args(args)
            .env("TMPDIR", tmp)
            .env_remove("CF_ZDT_SIM_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the simulator binary starts");
        let collect = |pipe: Box<dyn std::io::Read + Send>| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let into = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    into.lock().unwrap().push(line);
                }
            });
            lines
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Running {
            child,
            tmp: tmp.to_path_buf(),
            stdout,
            stderr,
        }
    }

    /// `sim` with short delays and the explicit password.
    fn sim(tmp: &Path) -> Running {
        Running::start(
            tmp,
            &[
                "sim",
                "--password",
                PASSWORD,
                "--staging-ms",
                "50",
                "--start-ms",
                "50",
                "--health-check-ms",
                "50",
                "--propagation-ms",
                "50",
            ],
        )
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.stdout.lock().unwrap().join("\n"),
            self.stderr.lock().unwrap().join("\n")
        )
    }

    /// Waits (bounded) for a stdout line starting with `prefix`; returns it.
    fn line(&self, prefix: &str) -> String {
        self.line_after("", prefix)
    }

    /// Waits (bounded) for a stdout line starting with `prefix` that comes after the first
    /// line starting with `after`; returns it.
    fn line_after(&self, after: &str, prefix: &str) -> String {
        let deadline = Instant::now() + START_WITHIN;
        loop {
            {
                let lines = self.stdout.lock().unwrap();
                if let Some(from) = lines.iter().position(|l| l.starts_with(after))
                    && let Some(l) = lines.iter().skip(from).find(|l| l.starts_with(prefix))
                {
                    return l.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no line '{prefix}' after '{after}' within {START_WITHIN:?}\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn api_url(&self) -> String {
        self.line("  API + login: ")
            .trim_start_matches("  API + login: ")
            .trim()
            .to_string()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) has no memory effects; the pid is our unreaped child.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// Pushes the lingering app and waits until its instances run; returns how many
    /// processes then run from the TMPDIR.
    async fn push_app(&self) -> usize {
        let base = self.api_url();
        let token = token(&base).await;
        let api = Api::at(base, token);
        let spaces = api.ok("/v3/spaces").await;
        let space = spaces["resources"][0]["guid"].as_str().unwrap().to_string();
        push_to(
            &api,
            &space,
            MANIFEST,
            "lingering",
            &[("README", b"an app that leaves processes behind")],
        )
        .await;
        // 2 instances × (background job, daemon, main process), all started.
        let deadline = Instant::now() + START_WITHIN;
        loop {
            let procs = processes_in(&self.tmp);
            let started = ["sleep 3600 ", "sleep 3601 ", "sleep 3602 "]
                .iter()
                .all(|c| procs.iter().filter(|(_, cmd)| cmd == c).count() == 2);
            if started {
                return procs.len();
            }
            assert!(
                Instant::now() < deadline,
                "the instances' processes did not all start: {procs:?}\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits up to [`CLEAN_WITHIN`] for the simulator to exit and no process to run from its
    /// TMPDIR (and, with `no_files`, for the TMPDIR to be empty); fails with what is left.
    async fn assert_clean_within_bound(&mut self, no_files: bool, what: &str) {
        let deadline = Instant::now() + CLEAN_WITHIN;
        loop {
            let exited = self.exited();
            let procs = processes_in(&self.tmp);
            let files = entries(&self.tmp);
            if exited && procs.is_empty() && (!no_files || files.is_empty()) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: not clean within {CLEAN_WITHIN:?}: simulator exited: {exited}, processes: {procs:?}, files: {files:?}\n{}",
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed test must not leave anything running either.
        let _ = self.child.kill();
        let _ = self.child.wait();
        for (pid, _) in processes_in(&self.tmp) {
            // SAFETY: kill(2) has no memory effects; these run from the test's own TMPDIR.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// An access token from the simulator's UAA (`bearer ...`).
async fn token(base: &str) -> String {
    let v: serde_json::Value = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .post(format!("{base}/oauth/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=password&client_id=cf&username=admin&password={PASSWORD}"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    format!("bearer {}", v["access_token"].as_str().expect("a token"))
}

/// Processes (not zombies) whose working directory or command line is in `tmp`: (pid,
/// command line).
fn processes_in(tmp: &Path) -> Vec<(i32, String)> {
    let canon = tmp.canonicalize().unwrap_or_else(|_| tmp.to_path_buf());
    let text = canon.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let cwd_in =
            std::fs::read_link(entry.path().join("cwd")).is_ok_and(|c| c.starts_with(&canon));
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        if cwd_in || cmdline.contains(&text) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// The names in `dir`.
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The pids whose parent is `parent`.
fn children_of(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid: i32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

async fn stops_clean_on(sig: i32, name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let mut sim = Running::sim(tmp.path());
    let before = sim.push_app().await;
    assert!(before >= 6, "{before}");
    sim.signal(sig);
    sim.assert_clean_within_bound(true, name).await;
    let status = sim.child.wait().unwrap();
    assert!(status.success(), "{name}: {status:?}\n{}", sim.output());
    assert!(
        sim.stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with(&format!("{name}: stopping the simulator"))),
        "{}",
        sim.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_stop_sigterm_ends_every_instance_and_removes_every_file() {
    stops_clean_on(libc::SIGTERM, "SIGTERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_stop_sighup_ends_every_instance_and_removes_every_file() {
    stops_clean_on(libc::SIGHUP, "SIGHUP").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_stop_sigkill_ends_every_instance_and_the_next_start_removes_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sim = Running::sim(tmp.path());
    sim.push_app().await;
    let old_dirs = entries(tmp.path());
    assert_eq!(old_dirs.len(), 1, "{old_dirs:?}");
    sim.signal(libc::SIGKILL);
    sim.assert_clean_within_bound(false, "SIGKILL").await;
    assert_eq!(entries(tmp.path()), old_dirs, "the work dir stays behind");

    // The next simulator on the same TMPDIR removes it, and nothing else.
    let other = tmp.path().join("cf-zdt-sim-not-a-work-dir");
    std::fs::create_dir(&other).unwrap();
    let mut next = Running::sim(tmp.path());
    let note = next.line("Note: cleaned up after a simulator that did not stop");
    assert!(
        note.contains(&format!("(pid {})", sim.pid())),
        "{note}\n{}",
        next.output()
    );
    assert!(!tmp.path().join(&old_dirs[0]).exists());
    assert!(other.exists());
    std::fs::remove_dir(&other).unwrap();
    next.signal(libc::SIGTERM);
    next.assert_clean_within_bound(true, "SIGTERM after a sweep")
        .await;
}

/// When even the guards die with the simulator (SIGKILL to all of them), what the
/// instances started outlives them; the next simulator ends it by its `CF_INSTANCE_GUID`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_stop_the_next_start_ends_what_a_killed_simulator_and_its_guards_left() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sim = Running::sim(tmp.path());
    sim.push_app().await;
    let guards = children_of(sim.pid());
    assert!(guards.len() >= 2, "guards: {guards:?}");
    for g in &guards {
        // SAFETY: kill(2) has no memory effects; these are the simulator's children.
        // Stopped first, so that they cannot tear their instances down.
        unsafe { libc::kill(*g, libc::SIGSTOP) };
    }
    sim.signal(libc::SIGKILL);
    for g in &guards {
        // SAFETY: as above.
        unsafe { libc::kill(*g, libc::SIGKILL) };
    }
    let deadline = Instant::now() + CLEAN_WITHIN;
    while !sim.exited() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let left = processes_in(tmp.path());
    assert!(
        left.len() >= 2,
        "background jobs and daemons outlive their guards: {left:?}"
    );

    let mut next = Running::sim(tmp.path());
    let note = next.line("Note: cleaned up after a simulator that did not stop");
    assert!(!note.contains("ended 0 processes"), "{note}");
    next.signal(libc::SIGTERM);
    next.assert_clean_within_bound(true, "after a sweep of orphans")
        .await;
}

/// A second signal during the graceful stop ends it at once and says so: the app ignores
/// SIGTERM, so the graceful stop would wait the 10 s kill grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_stop_a_second_signal_stops_at_once_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sim = Running::sim(tmp.path());
    let base = sim.api_url();
    let api = Api::at(base.clone(), token(&base).await);
    let spaces = api.ok("/v3/spaces").await;
    let space = spaces["resources"][0]["guid"].as_str().unwrap().to_string();
    push_to(
        &api,
        &space,
        "applications:\n- name: stubborn\n  command: trap '' TERM; exec sleep 3600\n  health-check-type: process\n",
        "stubborn",
        &[("README", b"ignores SIGTERM")],
    )
    .await;
    sim.signal(libc::SIGTERM);
    sim.line("SIGTERM: stopping the simulator");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!sim.exited(), "the graceful stop waits for the instance");
    sim.signal(libc::SIGINT);
    sim.assert_clean_within_bound(true, "a second signal").await;
    let stderr = sim.stderr.lock().unwrap().join("\n");
    assert!(
        stderr.contains("SIGINT during the stop: stopping at once"),
        "{}",
        sim.output()
    );
    assert!(
        sim.stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l == "Simulator stopped at once."),
        "{}",
        sim.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_stop_demo_interrupted_by_sigterm_mid_deploy_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = Running::start(tmp.path(), &["demo", "--instances", "2"]);
    // Mid-deploy: the candidate exists and its bits are staging.
    demo.line_after("== Zero-downtime push of v2", "Staging demo-app");
    assert!(
        !entries(tmp.path()).is_empty(),
        "the demo works in its TMPDIR"
    );
    demo.signal(libc::SIGTERM);
    demo.assert_clean_within_bound(true, "demo SIGTERM").await;
    let stderr = demo.stderr.lock().unwrap().join("\n");
    assert!(stderr.contains("SIGTERM: stopping"), "{}", demo.output());
}
