//! Deploy benchmark: the plugin's own overhead in a blue-green swap, the API requests it sends,
//! and blue-green against rolling, measured against the in-process simulator. Every table is
//! printed as markdown, ready to paste into README.md's "## Measured" section.
//!
//! Regenerate the README tables: `mold -run cargo bench --bench deploy` (release build; the
//! rolling deployment of 50 instances alone takes about 5 minutes: the simulator moves it on
//! every 5 s, as Cloud Controller's deployment updater does). One section only:
//! `cargo bench --bench deploy -- overhead`, `-- side`, `-- multi`.
//!
//! - overhead: one app with 4 instances, blue-green swap; wall time − the simulator's
//!   configured delays (staging, instance start) − the configured drain, and the requests by
//!   phase (the run's `Event::Requests`). `DEPLOY_BENCH_RUNS` (default 5).
//! - side by side: with a 1 s route propagation, staging 3 s and instance start 2 s, the wall
//!   time and request count of a blue-green deploy with default flags (`--drain auto`), of one
//!   with the fixed 10 s drain of earlier versions, and of a rolling deployment
//!   (`--strategy rolling`, a Cloud Controller deployment replacing one instance at a time, as
//!   `cf push --strategy rolling` does), for each instance count of `DEPLOY_BENCH_INSTANCES`
//!   (default `2,12,50`), `DEPLOY_BENCH_SIDE_RUNS` deploys of each (default 3, 1 from 50
//!   instances on), with the ratios of one run.
//! - multi-app: the same blue-green deploy of one app and of a 4-app manifest (4 instances
//!   each) with the demo's delays, the 4 apps with the default `--parallel` and with
//!   `--parallel 1`; wall time, requests and the ratios 4 apps / 1 app.
//!   `DEPLOY_BENCH_RUNS` (default 5).
//!
//! A deploy's request count is the simulator's call log over that deploy (cleared before it).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cf_zero_downtime::command::demo::{sim_push_options, write_app};
use cf_zero_downtime::command::flags::{CommonFlags, DrainArg};
use cf_zero_downtime::command::push::push;
use cf_zero_downtime::command::push::{PushArgs, PushOptions};
use cf_zero_downtime::deploy::Strategy;
use cf_zero_downtime::deploy::budget::Requests;
use cf_zero_downtime::deploy::request::DEFAULT_PARALLEL;
use cf_zero_downtime::deploy::{Event, Outcome};
use cf_zero_downtime::sim::{CallRecord, Sim, SimConfig, SimHandle};
use tokio_util::sync::CancellationToken;

struct Case {
    name: &'static str,
    staging: Duration,
    start: Duration,
    drain: Duration,
    poll: Duration,
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn main() {
    let runs = env_usize("DEPLOY_BENCH_RUNS").unwrap_or(5).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cases = [
        Case {
            name: "no simulated delays, 50 ms polls",
            staging: Duration::ZERO,
            start: Duration::ZERO,
            drain: Duration::ZERO,
            poll: Duration::from_millis(50),
        },
        Case {
            name: "demo delays (staging 800 ms, start 300 ms, drain 1 s), 50 ms polls",
            staging: Duration::from_millis(800),
            start: Duration::from_millis(300),
            drain: Duration::from_secs(1),
            poll: Duration::from_millis(50),
        },
        Case {
            name: "no simulated delays, 1 s polls (the real-CF default)",
            staging: Duration::ZERO,
            start: Duration::ZERO,
            drain: Duration::ZERO,
            poll: Duration::from_secs(1),
        },
    ];
    // The first argument that is not a flag (cargo passes `--bench`) picks a section.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wants = |section: &str| filter.as_deref().is_none_or(|f| section.contains(f));
    println!(
        "deploy bench on the simulator, {} cores, commit {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        commit()
    );
    if wants("overhead") {
        println!();
        println!("overhead: one app, 4 instances, blue-green swap, median of {runs} runs per case");
        println!();
        println!(
            "| case | wall | configured delays | overhead (median, min, max) | requests (GET + mutating) | requests by phase |"
        );
        println!("|---|---:|---:|---:|---:|---|");
        for case in &cases {
            rt.block_on(bench_case(case, runs));
        }
    }
    if wants("side-by-side") {
        let instances: Vec<u32> = std::env::var("DEPLOY_BENCH_INSTANCES")
            .ok()
            .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![2, 12, 50]);
        let runs_set = env_usize("DEPLOY_BENCH_SIDE_RUNS");
        println!();
        println!(
            "side by side: staging {} ms, instance start {} ms, route propagation {} ms, deployment updater every {} s, 1 s polls; median of the runs given per row",
            SIDE_STAGING.as_millis(),
            SIDE_START.as_millis(),
            SIDE_PROPAGATION.as_millis(),
            SIDE_UPDATER.as_secs()
        );
        println!();
        println!(
            "| instances | runs | blue-green, default (`--drain auto`) | its drain | blue-green, `--drain 10s` | rolling | default / rolling: time | requests | auto vs 10 s drain |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for n in instances {
            let runs = runs_set.unwrap_or(if n >= 50 { 1 } else { 3 }).max(1);
            rt.block_on(side_by_side(n, runs));
        }
    }
    if wants("multi-app") {
        println!();
        println!(
            "multi-app: blue-green deploy of 1 app vs a 4-app manifest, {MULTI_INSTANCES} instances each, demo delays (staging {} ms, start {} ms, propagation {} ms, drain {} s), 50 ms polls, default push flags (`--parallel {DEFAULT_PARALLEL}`) and `--parallel 1`, median of {runs} runs",
            MULTI_STAGING.as_millis(),
            MULTI_START.as_millis(),
            MULTI_PROPAGATION.as_millis(),
            MULTI_DRAIN.as_secs(),
        );
        println!();
        println!("| apps | wall | requests | requests by phase |");
        println!("|---|---:|---:|---|");
        let one = rt.block_on(multi_app(1, None, runs));
        let four = rt.block_on(multi_app(4, None, runs));
        let serial = rt.block_on(multi_app(4, Some(1), runs));
        for (name, (wall, sent)) in [
            (
                format!("4 apps / 1 app (`--parallel {DEFAULT_PARALLEL}`)"),
                four,
            ),
            ("4 apps / 1 app (`--parallel 1`)".to_string(), serial),
        ] {
            println!(
                "| {name} | **{:.2}** | **{:.2}** | |",
                wall.as_secs_f64() / one.0.as_secs_f64().max(f64::EPSILON),
                sent as f64 / (one.1 as f64).max(1.0)
            );
        }
    }
}

/// The commit measured (`git rev-parse --short HEAD` in the crate's folder), `-dirty` with
/// uncommitted changes, or `unknown`.
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty { format!("{head}-dirty") } else { head }
}

fn ms(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn median<T: Ord + Copy + Default>(v: &mut [T]) -> T {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// The run's `Event::Requests`, if it reported one.
fn requests(events: &[Event]) -> Option<&Requests> {
    events.iter().find_map(|e| match e {
        Event::Requests(r) => Some(r),
        _ => None,
    })
}

/// `9 preflight, 6 candidate, ...` (the phases of `Requests`' display without the total).
fn phases(r: Option<&Requests>) -> String {
    r.map(|r| {
        r.phases
            .iter()
            .map(|p| format!("{} {}", p.requests, p.phase.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    })
    .unwrap_or_else(|| "-".into())
}

const SIDE_STAGING: Duration = Duration::from_secs(3);
const SIDE_START: Duration = Duration::from_secs(2);
const SIDE_PROPAGATION: Duration = Duration::from_secs(1);
/// Cloud Controller's deployment updater moves a rolling deployment on every 5 s
/// (capi-release's `deployment_updater.update_frequency_in_seconds` default).
const SIDE_UPDATER: Duration = Duration::from_secs(5);

/// The deploys compared side by side.
#[derive(Clone, Copy)]
enum Flavour {
    BlueGreenDefault,
    BlueGreenFixed,
    Rolling,
}

/// One app of `instances`, deployed in turn by each flavour `runs` times on one simulator.
/// A simulator for one section, with a folder for the app versions it deploys.
struct Bench {
    sim: SimHandle,
    dir: tempfile::TempDir,
    /// The simulator's app domain, for the manifests' routes.
    domain: String,
    cancel: CancellationToken,
}

impl Bench {
    async fn start(config: SimConfig) -> Bench {
        let sim = Sim::start(config).await.expect("simulator");
        let domain = sim.app_domain();
        Bench {
            sim,
            dir: tempfile::tempdir().expect("tempdir"),
            domain,
            cancel: CancellationToken::new(),
        }
    }
}

/// One deploy on `sim`, timed: its wall time, the simulator's call log over it and its events;
/// the deploy must succeed.
async fn measured_push(
    sim: &SimHandle,
    opts: PushOptions,
    cancel: &CancellationToken,
) -> (Duration, Vec<CallRecord>, Vec<Event>) {
    let mut events = Vec::new();
    sim.clear_call_log();
    let t = Instant::now();
    let outcome = Box::pin(push(opts, &mut events, cancel)).await;
    let wall = t.elapsed();
    let log = sim.call_log();
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    (wall, log, events)
}

async fn side_by_side(instances: u32, runs: usize) {
    let Bench {
        sim,
        dir,
        domain,
        cancel,
    } = Bench::start(SimConfig {
        staging_delay: SIDE_STAGING,
        start_delay: SIDE_START,
        route_propagation: SIDE_PROPAGATION,
        deployment_update_interval: SIDE_UPDATER,
        ..SimConfig::default()
    })
    .await;
    let flavours = [
        Flavour::BlueGreenDefault,
        Flavour::BlueGreenFixed,
        Flavour::Rolling,
    ];
    let mut walls: [Vec<Duration>; 3] = Default::default();
    let mut calls: [Vec<usize>; 3] = Default::default();
    let mut drains = Vec::new();
    for i in 0..=runs * flavours.len() {
        let app = dir.path().join(format!("v{i}"));
        let manifest = write_app(&app, &format!("v{i}"), instances, &domain).expect("app");
        let k = i.saturating_sub(1) % flavours.len();
        let (strategy, drain) = match flavours[k] {
            Flavour::BlueGreenDefault => (Strategy::BlueGreen, DrainArg::auto(DrainArg::AUTO_MAX)),
            Flavour::BlueGreenFixed => (
                Strategy::BlueGreen,
                DrainArg::fixed(Duration::from_secs(10)),
            ),
            Flavour::Rolling => (Strategy::Rolling, DrainArg::auto(DrainArg::AUTO_MAX)),
        };
        let args = PushArgs {
            manifest: Some(manifest),
            strategy,
            common: CommonFlags {
                drain,
                // Rolling 50 instances at one per 5 s takes minutes; the timeout is the
                // stall timer (no progress), so this bounds a hang only.
                timeout: Duration::from_secs(120),
                ..CommonFlags::default()
            },
            ..PushArgs::default()
        };
        let mut opts = sim_push_options(&sim, args, app.clone());
        // The real-CF default poll interval, for both strategies.
        opts.poll_interval = Duration::from_secs(1);
        let (wall, log, events) = measured_push(&sim, opts, &cancel).await;
        let sent = log.len();
        // Let the router settle before the next deploy.
        tokio::time::sleep(SIDE_PROPAGATION + Duration::from_millis(500)).await;
        if i == 0 {
            continue; // the first deploy is a plain push
        }
        walls[k].push(wall);
        calls[k].push(sent);
        if matches!(flavours[k], Flavour::BlueGreenDefault) {
            drains.extend(events.iter().filter_map(|e| match e {
                Event::DrainEnded { elapsed, .. } => Some(*elapsed),
                _ => None,
            }));
        }
    }
    sim.shutdown().await;
    let [auto, fixed, rolling] = walls.each_mut().map(|v| median(v));
    let [auto_n, fixed_n, rolling_n] = calls.each_mut().map(|v| median(v));
    let drain = median(&mut drains);
    println!(
        "| {instances} | {runs} | {} ({auto_n} requests) | {} | {} ({fixed_n} requests) | {} ({rolling_n} requests) | **{:.2}** | **{:.2}** | {} ({:.0} %) saved |",
        ms(auto),
        ms(drain),
        ms(fixed),
        ms(rolling),
        auto.as_secs_f64() / rolling.as_secs_f64().max(f64::EPSILON),
        auto_n as f64 / (rolling_n as f64).max(1.0),
        ms(fixed.saturating_sub(auto)),
        100.0 * (1.0 - auto.as_secs_f64() / fixed.as_secs_f64().max(f64::EPSILON)),
    );
}

async fn bench_case(case: &Case, runs: usize) {
    let Bench {
        sim,
        dir,
        domain,
        cancel,
    } = Bench::start(SimConfig {
        staging_delay: case.staging,
        start_delay: case.start,
        route_propagation: Duration::ZERO,
        ..SimConfig::default()
    })
    .await;
    let mut walls = Vec::new();
    let mut calls = (0usize, 0usize);
    let mut by_phase = None;
    for i in 0..=runs {
        let app = dir.path().join(format!("v{i}"));
        let manifest = write_app(&app, &format!("v{i}"), 4, &domain).expect("app");
        let args = PushArgs {
            manifest: Some(manifest),
            common: CommonFlags {
                smoke_test_path: Some("/".into()),
                drain: DrainArg::fixed(case.drain),
                timeout: Duration::from_secs(60),
                ..CommonFlags::default()
            },
            ..PushArgs::default()
        };
        let mut opts = sim_push_options(&sim, args, app.clone());
        opts.poll_interval = case.poll;
        let (wall, log, events) = measured_push(&sim, opts, &cancel).await;
        if i == 0 {
            continue; // the first deploy is a plain push, not a swap
        }
        walls.push(wall);
        let gets = log.iter().filter(|c| c.method == "GET").count();
        calls = (gets, log.len() - gets);
        by_phase = Some(phases(requests(&events)));
    }
    sim.shutdown().await;
    walls.sort();
    let configured = case.staging + case.start + case.drain;
    let over = |d: Duration| d.saturating_sub(configured).as_millis();
    let median = walls[walls.len() / 2];
    println!(
        "| {} | {} ms | {} ms | **{} ms** ({}, {}) | {} ({} + {}) | {} |",
        case.name,
        median.as_millis(),
        configured.as_millis(),
        over(median),
        over(walls[0]),
        over(walls[walls.len() - 1]),
        calls.0 + calls.1,
        calls.0,
        calls.1,
        by_phase.unwrap_or_default()
    );
}

const MULTI_INSTANCES: u32 = 4;
// The demo's delays (`cf-zero-downtime demo` defaults, `command::demo::sim_config`).
const MULTI_STAGING: Duration = Duration::from_millis(800);
const MULTI_START: Duration = Duration::from_millis(300);
const MULTI_PROPAGATION: Duration = Duration::from_millis(250);
const MULTI_DRAIN: Duration = Duration::from_secs(1);

/// Writes version `version` of `apps` apps (`app0`, `app1`, ...) of `instances` each, every
/// one a static site in its own folder with its own route, and their manifest; returns it.
fn write_apps(root: &Path, version: &str, apps: usize, instances: u32, domain: &str) -> PathBuf {
    let mut yaml = String::from("---\napplications:\n");
    for a in 0..apps {
        let name = format!("app{a}");
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir).expect("app folder");
        std::fs::write(dir.join("index.html"), format!("{name} {version}\n")).expect("index");
        std::fs::write(dir.join("health"), "ok\n").expect("health");
        yaml.push_str(&format!(
            "- name: {name}\n  path: {name}\n  instances: {instances}\n  memory: 64M\n  \
             health-check-type: http\n  health-check-http-endpoint: /health\n  routes:\n  \
             - route: {name}.{domain}\n"
        ));
    }
    let manifest = root.join("manifest.yml");
    std::fs::write(&manifest, yaml).expect("manifest");
    manifest
}

/// The median wall time and request count of a blue-green deploy of `apps` apps (after a first
/// plain push) with `--parallel` (None: the default), with the request count by phase of the
/// last run printed as a table row.
async fn multi_app(apps: usize, parallel: Option<usize>, runs: usize) -> (Duration, usize) {
    let Bench {
        sim,
        dir,
        domain,
        cancel,
    } = Bench::start(SimConfig {
        staging_delay: MULTI_STAGING,
        start_delay: MULTI_START,
        route_propagation: MULTI_PROPAGATION,
        health_check_interval: Duration::from_millis(50),
        stop_grace: Duration::from_millis(500),
        ..SimConfig::default()
    })
    .await;
    let mut walls = Vec::new();
    let mut calls = Vec::new();
    let mut by_phase = String::new();
    for i in 0..=runs {
        let root = dir.path().join(format!("v{i}"));
        let manifest = write_apps(&root, &format!("v{i}"), apps, MULTI_INSTANCES, &domain);
        let args = PushArgs {
            manifest: Some(manifest),
            common: CommonFlags {
                smoke_test_path: Some("/".into()),
                drain: DrainArg::fixed(MULTI_DRAIN),
                timeout: Duration::from_secs(60),
                ..CommonFlags::default()
            },
            parallel,
            ..PushArgs::default()
        };
        let opts = sim_push_options(&sim, args, root.clone());
        let (wall, log, events) = measured_push(&sim, opts, &cancel).await;
        let sent = log.len();
        tokio::time::sleep(MULTI_PROPAGATION + Duration::from_millis(200)).await;
        if i == 0 {
            continue; // the first deploy is a plain push
        }
        walls.push(wall);
        calls.push(sent);
        by_phase = phases(requests(&events));
    }
    sim.shutdown().await;
    let (wall, sent) = (median(&mut walls), median(&mut calls));
    let flag = match (apps, parallel) {
        (1, _) => String::new(),
        (_, Some(n)) => format!(", `--parallel {n}`"),
        (_, None) => format!(", `--parallel {DEFAULT_PARALLEL}` (default)"),
    };
    println!("| {apps}{flag} | {} | {sent} | {by_phase} |", ms(wall));
    (wall, sent)
}
