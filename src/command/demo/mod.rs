//! `cf-zero-downtime demo`: the whole flow on the embedded simulator, under load, with a report.
//!
//! It starts the simulator in-process, pushes a bundled v1 app (a first deploy), drives steady
//! HTTP load through the simulator's router, zero-downtime-pushes v2 with the built-in smoke
//! probe, and prints which version answered over time, the failed requests and the time per
//! step. It succeeds only when the deploy succeeded and no request failed.
//!
//! SIGINT (Ctrl-C), SIGTERM and SIGHUP stop it the same way: the deploy unwinds, then the
//! simulator stops gracefully and every temporary file is removed. A second signal stops the
//! simulator at once.
//!
//! Depends on: sim, deploy, ui, command::push. Must not: talk to anything but loopback.

pub mod load;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::cf::{NamedGuid, StaticToken, Target};
use crate::command::flags::{CommonFlags, DrainArg};
use crate::command::push::{PushArgs, PushOptions, push};
use crate::deploy::Strategy;
use crate::deploy::request::ProbeConfig;
use crate::deploy::{Event, Outcome, Reporter};
use crate::sim::{Sim, SimConfig, SimHandle, StopSignals};
use crate::ui::OutputFormat;

/// Flags of `cf-zero-downtime demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Instances of the demo app.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub instances: u32,
    /// Route-propagation delay of the simulated router, in milliseconds.
    #[arg(long = "propagation-ms", default_value_t = 250)]
    pub propagation_ms: u64,
    /// Simulated staging time, in milliseconds.
    #[arg(long = "staging-ms", default_value_t = 800)]
    pub staging_ms: u64,
    /// Drain period of the switch.
    #[arg(long, value_parser = crate::command::flags::parse_duration, default_value = "1s")]
    pub drain: Duration,
    /// Concurrent load workers.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// Strategy of the v2 push.
    #[arg(long, value_enum, default_value_t = Strategy::BlueGreen)]
    pub strategy: Strategy,
    /// Show the deploy's JSON events instead of its text output.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Errors of the demo set-up (the deploy itself reports through its outcome).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The simulator did not start.
    #[error("could not start the simulator")]
    Sim(#[source] crate::sim::Error),
    /// Writing the demo app failed.
    #[error("could not write the demo app to {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The load generator did not start.
    #[error("could not start the load")]
    Load(#[source] load::Error),
    /// A second signal stopped the demo at once (the simulator's instances were killed).
    #[error("stopped at once")]
    Stopped,
    /// A signal stopped the demo after the first push, before the zero-downtime push.
    #[error("stopped before the zero-downtime push")]
    Interrupted,
}

/// What the demo measured.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Outcome of the first push (v1).
    pub first: Outcome,
    /// Outcome of the zero-downtime push (v2).
    pub second: Outcome,
    /// The load during the zero-downtime push.
    pub load: load::LoadReport,
    /// Per-step durations of the zero-downtime push, in plan order.
    pub steps: Vec<(String, Duration)>,
    /// Wall time of the zero-downtime push.
    pub deploy_time: Duration,
    /// When the v2 push started and ended, relative to the load's start.
    pub deploy_window: (Duration, Duration),
}

impl DemoReport {
    /// Whether the demo proved its point: deployed, and not one failed request.
    pub fn success(&self) -> bool {
        self.second == Outcome::Deployed && self.load.failed == 0 && self.load.total > 0
    }
}

/// Runs the demo and prints its report. Exit 0 only when the deploy succeeded with zero
/// failed requests.
pub fn run(args: DemoArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cf-zero-downtime: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        // Before the simulator starts, so that no signal is lost.
        let mut signals = StopSignals::install();
        let cancel = CancellationToken::new();
        let hurry = CancellationToken::new();
        let (c, h) = (cancel.clone(), hurry.clone());
        tokio::spawn(async move {
            let first = signals.next().await;
            warn(&format!(
                "cf-zero-downtime demo: {first}: stopping: the deploy unwinds, then the simulator stops (send another signal to stop at once)"
            ));
            c.cancel();
            let again = signals.next().await;
            warn(&format!(
                "cf-zero-downtime demo: {again} during the stop: stopping at once (the simulator's instances get SIGKILL)"
            ));
            h.cancel();
        });
        let said = |line: &str| say(line);
        match run_demo_or_now(&args, &cancel, hurry.cancelled(), said).await {
            Ok(report) => {
                say(render_report(&report).trim_end_matches('\n'));
                if report.success() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                warn(&format!(
                    "cf-zero-downtime demo: {}",
                    crate::deploy::event::error_chain(&e)
                ));
                ExitCode::FAILURE
            }
        }
    })
}

/// A line on stdout; a closed terminal (SIGHUP) or pipe must not turn the stop into a panic.
fn say(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    // Nobody is left to tell when stdout is gone.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// A line on stderr; errors ignored as in [`say`].
fn warn(line: &str) {
    use std::io::Write as _;
    // As for stdout: there is nowhere else to report it.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The simulator settings of the demo.
pub fn sim_config(args: &DemoArgs) -> SimConfig {
    SimConfig {
        staging_delay: Duration::from_millis(args.staging_ms),
        start_delay: Duration::from_millis(300),
        route_propagation: Duration::from_millis(args.propagation_ms),
        health_check_interval: Duration::from_millis(50),
        stop_grace: Duration::from_millis(500),
        ..SimConfig::default()
    }
}

/// The demo app: a static site whose index names its version, and a manifest.
pub fn write_app(
    dir: &Path,
    version: &str,
    instances: u32,
    domain: &str,
) -> Result<PathBuf, Error> {
    let write = |p: PathBuf, text: String| {
        std::fs::write(&p, text).map_err(|source| Error::Write { path: p, source })
    };
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    write(dir.join("index.html"), format!("{version}\n"))?;
    write(dir.join("health"), "ok\n".to_string())?;
    let manifest = dir.join("manifest.yml");
    write(
        manifest.clone(),
        format!(
            "---\napplications:\n- name: demo-app\n  instances: {instances}\n  memory: 64M\n  \
             health-check-type: http\n  health-check-http-endpoint: /health\n  routes:\n  \
             - route: demo-app.{domain}\n"
        ),
    )?;
    Ok(manifest)
}

/// Target and token for an in-process simulator.
pub fn sim_target(sim: &SimHandle) -> (Target, Arc<StaticToken>) {
    let target = Target {
        api_endpoint: sim.api_url(),
        skip_ssl_validation: false,
        org: Some(NamedGuid {
            name: sim.org_name(),
            guid: sim.org_guid(),
        }),
        space: Some(NamedGuid {
            name: sim.space_name(),
            guid: sim.space_guid(),
        }),
        user: Some(sim.admin().username),
    };
    (
        target,
        Arc::new(StaticToken(SecretString::from(sim.token()))),
    )
}

/// Push options for the simulator: fast polls and the smoke probe through its router.
pub fn sim_push_options(sim: &SimHandle, args: PushArgs, cwd: PathBuf) -> PushOptions {
    let (target, token) = sim_target(sim);
    let mut opts = PushOptions::new(target, token, args, cwd);
    opts.poll_interval = Duration::from_millis(50);
    opts.probe = Some(ProbeConfig {
        scheme: "http".into(),
        connect_to: Some(sim.router_addr()),
        request_timeout: Duration::from_secs(5),
        retry_interval: Duration::from_millis(100),
        attempts: 20,
        ..ProbeConfig::default()
    });
    opts
}

/// Keeps the per-step durations of the `Finished` event while forwarding every event.
struct Recording<'a> {
    inner: &'a mut dyn Reporter,
    steps: Vec<(String, Duration)>,
}

impl Reporter for Recording<'_> {
    fn report(&mut self, event: Event) {
        if let Event::Finished { steps, .. } = &event {
            self.steps = steps
                .iter()
                .map(|s| (format!("{} {}", s.kind, s.app), s.elapsed))
                .collect();
        }
        self.inner.report(event);
    }
}

/// Runs the demo flow; `say` receives the demo's own narration lines.
///
/// # Errors
/// When the simulator, the app files or the load cannot be set up. Deploy failures are in the
/// returned report's outcomes.
pub async fn run_demo(
    args: &DemoArgs,
    cancel: &CancellationToken,
    say: impl Fn(&str),
) -> Result<DemoReport, Error> {
    run_demo_or_now(args, cancel, std::future::pending(), say).await
}

/// [`run_demo`], which `cancel` stops the graceful way (the deploy unwinds, the rest is
/// skipped, the simulator stops gracefully) and `now` at once (the simulator's instances are
/// killed, temporary files removed).
///
/// # Errors
/// As [`run_demo`]; [`Error::Stopped`] when `now` resolved before the flow ended.
pub async fn run_demo_or_now(
    args: &DemoArgs,
    cancel: &CancellationToken,
    now: impl std::future::Future<Output = ()>,
    say: impl Fn(&str),
) -> Result<DemoReport, Error> {
    let sim = Sim::start(sim_config(args)).await.map_err(Error::Sim)?;
    let mut now = std::pin::pin!(now);
    let result = tokio::select! {
        r = demo_on(&sim, args, cancel, &say) => Some(r),
        () = &mut now => None,
    };
    match result {
        Some(r) => {
            sim.shutdown_or_now(now).await;
            r
        }
        None => {
            sim.shutdown_now().await;
            Err(Error::Stopped)
        }
    }
}

async fn demo_on(
    sim: &SimHandle,
    args: &DemoArgs,
    cancel: &CancellationToken,
    say: &impl Fn(&str),
) -> Result<DemoReport, Error> {
    let work = tempfile::tempdir().map_err(|source| Error::Write {
        path: std::env::temp_dir(),
        source,
    })?;
    let domain = sim.app_domain();
    say(&format!(
        "Simulator: API {} · router {} · route propagation {} ms · staging {} ms",
        sim.api_url(),
        sim.router_url(),
        args.propagation_ms,
        args.staging_ms
    ));

    // v1: a first deploy (a plain push, no swap).
    let v1 = work.path().join("v1");
    let manifest = write_app(&v1, "v1", args.instances, &domain)?;
    say("\n== Pushing v1 (first deploy)\n");
    let first = deploy(sim, args, Strategy::BlueGreen, &manifest, &v1, cancel)
        .await
        .0;
    if first == Outcome::Deployed && cancel.is_cancelled() {
        return Err(Error::Interrupted);
    }
    if first != Outcome::Deployed {
        return Ok(DemoReport {
            first: first.clone(),
            second: first,
            load: load::LoadReport::default(),
            steps: Vec::new(),
            deploy_time: Duration::ZERO,
            deploy_window: (Duration::ZERO, Duration::ZERO),
        });
    }

    // Steady load through the router while v2 replaces v1.
    let mut cfg = load::LoadConfig::new(sim.router_addr(), format!("demo-app.{domain}"));
    cfg.concurrency = args.concurrency as usize;
    cfg.bucket = Duration::from_millis(500);
    let handle = load::start(cfg).map_err(Error::Load)?;
    sleep_unless(cancel, Duration::from_secs(1)).await;

    let v2 = work.path().join("v2");
    let manifest = write_app(&v2, "v2", args.instances, &domain)?;
    say(&format!(
        "\n== Zero-downtime push of v2 under load ({} workers, strategy {:?})\n",
        args.concurrency, args.strategy
    ));
    let t0 = handle.snapshot().await.elapsed;
    let started = Instant::now();
    let (second, steps) = deploy(sim, args, args.strategy, &manifest, &v2, cancel).await;
    let deploy_time = started.elapsed();
    let t1 = t0 + deploy_time;
    // Let the load see the settled state before stopping it.
    sleep_unless(cancel, Duration::from_secs(1)).await;
    let load = handle.stop().await;
    Ok(DemoReport {
        first,
        second,
        load,
        steps,
        deploy_time,
        deploy_window: (t0, t1),
    })
}

/// Sleeps for `d`, less when `cancel` fires.
async fn sleep_unless(cancel: &CancellationToken, d: Duration) {
    tokio::select! {
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(d) => {}
    }
}

async fn deploy(
    sim: &SimHandle,
    args: &DemoArgs,
    strategy: Strategy,
    manifest: &Path,
    dir: &Path,
    cancel: &CancellationToken,
) -> (Outcome, Vec<(String, Duration)>) {
    let push_args = PushArgs {
        manifest: Some(manifest.to_path_buf()),
        strategy,
        common: CommonFlags {
            // A rolling deployment has no pause to smoke-test in; canary and blue-green do.
            smoke_test_path: (strategy != Strategy::Rolling).then(|| "/".to_string()),
            drain: DrainArg::fixed(args.drain),
            timeout: Duration::from_secs(60),
            output: args.output,
            ..CommonFlags::default()
        },
        ..PushArgs::default()
    };
    let opts = sim_push_options(sim, push_args, dir.to_path_buf());
    let mut ui = crate::ui::stdout_reporter(args.output);
    let mut rec = Recording {
        inner: ui.as_mut(),
        steps: Vec::new(),
    };
    let outcome = push(opts, &mut rec, cancel).await;
    (outcome, rec.steps)
}

/// Renders the demo's report as text.
pub fn render_report(r: &DemoReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n== Report");
    let _ = writeln!(
        s,
        "Requests: {} sent, {} failed, over {:.1} s",
        r.load.total,
        r.load.failed,
        r.load.elapsed.as_secs_f64()
    );
    for (version, n) in &r.load.served {
        let _ = writeln!(s, "  served by {version}: {n}");
    }
    for f in &r.load.failures {
        let _ = writeln!(s, "  failed at {} ms: {}", f.at_ms, f.what);
    }
    let versions: Vec<&String> = r.load.served.keys().collect();
    if !r.load.timeline.is_empty() {
        let _ = writeln!(
            s,
            "\nServed per {} ms (| = deploy of v2 running):",
            r.load.bucket.as_millis()
        );
        let peak = r
            .load
            .timeline
            .iter()
            .map(|b| b.served.values().sum::<u64>() + b.failed)
            .max()
            .unwrap_or(1)
            .max(1);
        for (i, b) in r.load.timeline.iter().enumerate() {
            let at = r.load.bucket * i as u32;
            let mark = if at + r.load.bucket > r.deploy_window.0 && at < r.deploy_window.1 {
                '|'
            } else {
                ' '
            };
            let mut line = format!("{:>6.1}s {mark} ", at.as_secs_f64());
            let mut bar = String::new();
            for (vi, v) in versions.iter().enumerate() {
                let n = b.served.get(*v).copied().unwrap_or(0);
                let _ = write!(line, "{v} {n:>5}  ");
                let width = (n * 30 / peak) as usize;
                let ch = ['#', '=', '+', '*'][vi % 4];
                bar.extend(std::iter::repeat_n(ch, width));
            }
            let _ = write!(line, "failed {:>3}  {bar}", b.failed);
            let _ = writeln!(s, "{}", line.trim_end());
        }
    }
    let mut phases: BTreeMap<usize, (String, Duration)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for (name, d) in &r.steps {
        let kind = name.split(' ').next().unwrap_or(name).to_string();
        let idx = match order.iter().position(|k| *k == kind) {
            Some(i) => i,
            None => {
                order.push(kind.clone());
                order.len() - 1
            }
        };
        let e = phases.entry(idx).or_insert((kind, Duration::ZERO));
        e.1 += *d;
    }
    let _ = writeln!(
        s,
        "\nZero-downtime push of v2: {:.2} s",
        r.deploy_time.as_secs_f64()
    );
    for (kind, d) in phases.values() {
        let _ = writeln!(s, "  {kind:<24} {:>8.0} ms", d.as_secs_f64() * 1000.0);
    }
    let _ = writeln!(s, "\nFirst push (v1): {}", r.first.last_line());
    let _ = writeln!(s, "Zero-downtime push (v2): {}", r.second.last_line());
    let verdict = if r.success() {
        format!(
            "demo passed: v2 deployed with 0 failed requests out of {}",
            r.load.total
        )
    } else if r.load.failed > 0 {
        format!("demo FAILED: {} requests failed", r.load.failed)
    } else {
        "demo FAILED: the deploy did not succeed".to_string()
    };
    let _ = writeln!(s, "{verdict}");
    s
}
