//! Deploy benchmark: the plugin's own overhead in a blue-green swap and the API calls it
//! makes, measured against the in-process simulator.
//!
//! Overhead = deploy wall time − the simulator's configured delays (staging, instance start)
//! − the configured drain. Run: `cargo bench --bench deploy` (`DEPLOY_BENCH_RUNS`, default 5).
//!
//! Side by side (`cargo bench --bench deploy -- side`): with a 1 s route propagation and the
//! same staging and start times, the wall time of a blue-green deploy with default flags
//! (`--drain auto`), of one with the fixed 10 s drain of earlier versions, and of a rolling
//! deployment (`--strategy rolling`, a Cloud Controller deployment replacing one instance at
//! a time, as `cf push --strategy rolling` does). `cargo bench --bench deploy -- overhead` runs
//! only the overhead table.

use std::time::{Duration, Instant};

use cf_zero_downtime::command::demo::{sim_push_options, write_app};
use cf_zero_downtime::command::flags::{CommonFlags, DrainArg};
use cf_zero_downtime::command::push::PushArgs;
use cf_zero_downtime::command::push::push;
use cf_zero_downtime::deploy::Strategy;
use cf_zero_downtime::deploy::{Event, Outcome};
use cf_zero_downtime::sim::{Sim, SimConfig};
use tokio_util::sync::CancellationToken;

struct Case {
    name: &'static str,
    staging: Duration,
    start: Duration,
    drain: Duration,
    poll: Duration,
}

fn main() {
    let runs: usize = std::env::var("DEPLOY_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
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
    if wants("overhead") {
        println!("deploy bench: one app, 4 instances, blue-green swap, {runs} runs per case");
        println!(
            "| case | wall ms (median) | configured delays ms | overhead ms (median, min, max) | API calls (GET + mutating) |"
        );
        println!("|---|---:|---:|---:|---:|");
        for case in &cases {
            rt.block_on(bench_case(case, runs));
        }
    }
    if wants("side-by-side") {
        let runs: usize = std::env::var("DEPLOY_BENCH_SIDE_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3);
        println!();
        println!(
            "side by side: staging {} ms, instance start {} ms, route propagation {} ms, 1 s polls, {runs} runs each (median wall ms)",
            SIDE_STAGING.as_millis(),
            SIDE_START.as_millis(),
            SIDE_PROPAGATION.as_millis()
        );
        println!(
            "| instances | blue-green, default (--drain auto) | its drain | blue-green, --drain 10s | rolling | default / rolling | auto saves vs 10s |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        for instances in [4, 8] {
            rt.block_on(side_by_side(instances, runs));
        }
    }
}

const SIDE_STAGING: Duration = Duration::from_secs(3);
const SIDE_START: Duration = Duration::from_secs(2);
const SIDE_PROPAGATION: Duration = Duration::from_secs(1);

/// The deploys compared side by side.
#[derive(Clone, Copy)]
enum Flavour {
    BlueGreenDefault,
    BlueGreenFixed,
    Rolling,
}

/// One app of `instances`, deployed in turn by each flavour `runs` times on one simulator.
async fn side_by_side(instances: u32, runs: usize) {
    let sim = Sim::start(SimConfig {
        staging_delay: SIDE_STAGING,
        start_delay: SIDE_START,
        route_propagation: SIDE_PROPAGATION,
        // Cloud Controller's deployment updater moves a rolling deployment on every 5 s
        // (capi-release's `deployment_updater.update_frequency_in_seconds` default).
        deployment_update_interval: Duration::from_secs(5),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let domain = sim.app_domain();
    let cancel = CancellationToken::new();
    let flavours = [
        Flavour::BlueGreenDefault,
        Flavour::BlueGreenFixed,
        Flavour::Rolling,
    ];
    let mut walls: [Vec<Duration>; 3] = Default::default();
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
                timeout: Duration::from_secs(120),
                ..CommonFlags::default()
            },
            ..PushArgs::default()
        };
        let mut opts = sim_push_options(&sim, args, app.clone());
        // The real-CF default poll interval, for both strategies.
        opts.poll_interval = Duration::from_secs(1);
        let mut events = Vec::new();
        let t = Instant::now();
        let outcome = push(opts, &mut events, &cancel).await;
        let wall = t.elapsed();
        assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
        // Let the router settle before the next deploy.
        tokio::time::sleep(SIDE_PROPAGATION + Duration::from_millis(500)).await;
        if i == 0 {
            continue; // the first deploy is a plain push
        }
        walls[k].push(wall);
        if matches!(flavours[k], Flavour::BlueGreenDefault) {
            drains.extend(events.iter().filter_map(|e| match e {
                Event::DrainEnded { elapsed, .. } => Some(*elapsed),
                _ => None,
            }));
        }
    }
    sim.shutdown().await;
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    let [auto, fixed, rolling] = walls.each_mut().map(median);
    let drain = median(&mut drains);
    println!(
        "| {instances} | {} | {} | {} | {} | {:.2} | {} ms ({:.0} %) |",
        auto.as_millis(),
        drain.as_millis(),
        fixed.as_millis(),
        rolling.as_millis(),
        auto.as_secs_f64() / rolling.as_secs_f64().max(f64::EPSILON),
        fixed.saturating_sub(auto).as_millis(),
        100.0 * (1.0 - auto.as_secs_f64() / fixed.as_secs_f64().max(f64::EPSILON)),
    );
}

async fn bench_case(case: &Case, runs: usize) {
    let sim = Sim::start(SimConfig {
        staging_delay: case.staging,
        start_delay: case.start,
        route_propagation: Duration::ZERO,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let domain = sim.app_domain();
    let cancel = CancellationToken::new();
    let mut walls = Vec::new();
    let mut calls = (0usize, 0usize);
    for i in 0..=runs {
        let app = dir.path().join(format!("v{i}"));
        let manifest = write_app(&app, &format!("v{i}"), 4, &domain).expect("app");
        let args = PushArgs {
            manifest: Some(manifest),
            common: CommonFlags {
                smoke_test_path: Some("/".into()),
                drain: cf_zero_downtime::command::flags::DrainArg::fixed(case.drain),
                timeout: Duration::from_secs(60),
                ..CommonFlags::default()
            },
            ..PushArgs::default()
        };
        let mut opts = sim_push_options(&sim, args, app.clone());
        opts.poll_interval = case.poll;
        sim.clear_call_log();
        let mut events = Vec::new();
        let t = Instant::now();
        let outcome = push(opts, &mut events, &cancel).await;
        let wall = t.elapsed();
        assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
        if i == 0 {
            continue; // the first deploy is a plain push, not a swap
        }
        walls.push(wall);
        let log = sim.call_log();
        let gets = log.iter().filter(|c| c.method == "GET").count();
        calls = (gets, log.len() - gets);
    }
    sim.shutdown().await;
    walls.sort();
    let configured = case.staging + case.start + case.drain;
    let over = |d: Duration| d.saturating_sub(configured).as_millis();
    let median = walls[walls.len() / 2];
    println!(
        "| {} | {} | {} | {} ({}, {}) | {} ({} + {}) |",
        case.name,
        median.as_millis(),
        configured.as_millis(),
        over(median),
        over(walls[0]),
        over(walls[walls.len() - 1]),
        calls.0 + calls.1,
        calls.0,
        calls.1
    );
}
