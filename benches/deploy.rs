//! Deploy benchmark: the plugin's own overhead in a blue-green swap and the API calls it
//! makes, measured against the in-process simulator.
//!
//! Overhead = deploy wall time − the simulator's configured delays (staging, instance start)
//! − the configured drain. Run: `cargo bench --bench deploy` (`DEPLOY_BENCH_RUNS`, default 5).

use std::time::{Duration, Instant};

use cf_zero_downtime::cli::PushArgs;
use cf_zero_downtime::demo::{sim_push_options, write_app};
use cf_zero_downtime::deploy::Outcome;
use cf_zero_downtime::deploy::push::push;
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
    println!("deploy bench: one app, 4 instances, blue-green swap, {runs} runs per case");
    println!(
        "| case | wall ms (median) | configured delays ms | overhead ms (median, min, max) | API calls (GET + mutating) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for case in &cases {
        rt.block_on(bench_case(case, runs));
    }
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
            smoke_test_path: Some("/".into()),
            drain: cf_zero_downtime::cli::DrainArg::fixed(case.drain),
            timeout: Duration::from_secs(60),
            temp_route_suffix: "-temp".into(),
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
