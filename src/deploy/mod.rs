//! The `deploy` layer: observe (reads only) → plan (pure) → execute (steps with undo), with
//! progress reported as [`event::Event`]s. This module implements the strategies of docs/DESIGN.md
//! section 2: blue-green (`plan`) and rolling/canary (`rolling`, same app GUID, a Cloud
//! Controller deployment watched by our monitor).
//!
//! # Seams (what the integrator provides)
//!
//! - [`api::CfApi`]: implemented for the real Cloud Controller client in `command::adapter`
//!   (and the package layer for [`api::CfApi::upload_bits`], with [`api::CfApi::Bits`] the
//!   scanned app directory or archive); `cf::Error` is mapped into [`api::ApiError`].
//! - [`request::AppSpec`]: one per manifest app, its `render` wired to the manifest layer
//!   (render the app's entry with [`request::RenderRequest`]'s overrides: name, routes or
//!   `no-route`, extra labels/annotations, instance counts).
//! - [`request::DeployRequest`]: plain data, built from the flags and the target by
//!   `command::push::request`.
//! - An [`event::Reporter`]: one of the `ui` renderers.
//! - A `CancellationToken` cancelled on Ctrl-C / SIGTERM.
//!
//! Then [`run`] does everything and returns the [`event::Outcome`]; its `exit_code()` is the
//! process exit code.
//!
//! # Decisions (where docs/DESIGN.md is silent)
//!
//! - Names: the candidate is `<app>-candidate`, a kept old version `<app>-venerable`. Ours are
//!   marked with the label `zero-downtime.cf/role=candidate|venerable` and the annotation
//!   `zero-downtime.cf/app=<app>` (annotations accept any app name, label values do not). An app
//!   with one of those names that is not marked for this very app is never touched: the plan
//!   fails with a name-clash error before any change.
//! - Leftovers: a marked candidate that serves nothing but the temp route is deleted first
//!   (that deletion is not undone: it was garbage). A marked candidate that serves production
//!   routes is treated like the live app: its routes move to the new candidate and it is
//!   deleted after the switch (renamed out of the way first if it holds the candidate name).
//! - One deploy per app at a time ([`lock`]): a run marks the apps it works on with lock
//!   annotations (run id, `user@host`, start, a heartbeat refreshed every 10 s), creates its
//!   candidate (or first-deploy app) exclusively with `POST /v3/apps`, refuses in the preflight
//!   while another run's heartbeat on the app, its candidate or venerable is under 2 minutes old
//!   (`--wait-for-lock` waits instead), and removes its marks at the end whatever the outcome.
//!   A stale lock is a leftover's: healed as below.
//! - Commit point: the last unmap from the old app(s). Unmaps are undone (the old destination
//!   is re-added with its process, port and protocol), so a failure while unmapping app N of a
//!   multi-app deploy still restores every app. After the commit point nothing is undone: the
//!   outcome is `DeployedWithLeftovers` with the `cf` commands of the steps not done; its exit
//!   code is 1 although the new version is serving, so that a pipeline notices the leftovers
//!   ([`Outcome::exit_code`]).
//! - Release tasks: `--task-before-switch` tasks run in the verify phase (a failure rolls
//!   back); `--task-after-switch` tasks run last, after every app's retire, and a failure there
//!   is [`Outcome::AfterSwitchTaskFailed`] (exit 1, nothing undone). A task step is never
//!   tried again: a second create could run the command twice.
//! - Cancellation after the commit point stops at the next step boundary (or inside the drain)
//!   and reports the leftovers; the old app then still runs unrouted.
//! - Routes the live app serves that the manifest lacks are mapped to the new version too, with
//!   a warning (never silently dropped). A `no-route` app gets no temporary route unless a
//!   smoke test asks for one.
//! - Canary analysis (`--canary-steps`, `--analysis`; see [`analysis`] and the README): every
//!   step runs before the commit point, with the live app at full scale, so a failed verdict is
//!   an ordinary rollback whose first undo unmaps the candidate. log-cache being unavailable
//!   fails the deploy before any change, whatever `--analysis-no-traffic` says.
//! - Quotas: after observing and planning, before any change, the new version must fit in the
//!   space's and the org's quotas next to the live one (see `quota`); a level that cannot be
//!   read is skipped with one warning. `--strategy auto` is resolved there: blue-green when it
//!   fits, else the request's `AutoFallback` (rolling, or canary when pauses are asked for)
//!   with the largest `max_in_flight` that fits, reported as [`Event::StrategyChosen`].
//! - A first deploy (no live app) is a plain push under the app's own name: production routes
//!   that do not exist are created by us first (so a rollback deletes exactly those), then
//!   apply_manifest maps them; a smoke test runs on the first production route.
//!
//! # Layout
//!
//! | file | what lives there |
//! |------|------------------|
//! | [`api`] | the [`CfApi`] seam and its data; `MUTATING_METHODS` |
//! | `observe` | reads the live state (reads only) |
//! | [`lock`] | one deploy per app at a time: the lock's marks, freshness rule, heartbeat and release |
//! | `plan` | blue-green plan, one function per phase (first deploy, candidate, route moves, retire) |
//! | `quota` | the quota check: what each strategy adds at its peak, against the space's and org's quotas (pure) |
//! | `rolling` | rolling/canary plan (one per app) |
//! | `strategy` | which strategies are Cloud Controller deployments (rolling, canary) |
//! | [`rollback`] | `zero-downtime-rollback`: the kept venerable takes routes and name back (observe, plan, run) |
//! | `step` | `Step { app, action }`; per `step::Action`: kind, description, mutating, undo (exhaustive) |
//! | `execute` | the plans one after the other, the step loop, retries after the switch, the undo engine, a dispatcher over `Action` |
//! | `execute/{apps,routes,bits,env,deployment,smoke_test,analysis,drain,logs}.rs` | the step handlers |
//! | `drain`, `execute/drain.rs` | `--drain auto`: when the old version is quiet (probes, log-cache, floor), and its step |
//! | `wait` | the one polling schedule of every wait (stall timer, cancellation, `Waiting` events) |
//! | `crash`, [`interrupt`], `smoke` | crash detection, Ctrl-C phases, probe and command |
//! | `logs`, `execute/logs.rs` | staging output streamed, a failed app's last log lines (log-cache) |
//! | [`analysis`] | canary analysis: the router's request records judged (pure); `execute/analysis.rs` reads them, scales the candidate and reports |
//! | [`budget`] | the call budget: requests by phase (the backend counts, `execute` names the phase, `run` reports) |
//! | [`error`], [`event`], [`request`], [`route`] | the layer's errors, its events and outcome, its inputs, route addresses |
//!
//! Only [`api`], [`budget`], [`error`], [`event`], [`request`], [`route`], [`analysis`],
//! [`interrupt`], [`lock`] and [`rollback`] are public (the seams the `command` layer and the
//! tests use); the rest is
//! `pub(crate)`.
//!
//! Adding a step: a variant of `step::Action` (the compiler then asks for its kind and
//! whether it mutates, its description, its undo and its command by hand in `step.rs`, and for
//! its dispatch in `execute/mod.rs`), its handler in one `execute/*.rs` file, and where the
//! planner puts it. A new Cloud Controller call also needs the [`CfApi`] method (its doc names
//! its request), its implementation in `command::adapter` (and the test fake) and, when it
//! mutates, an entry in `MUTATING_METHODS` (a test in `api.rs` fails until a method whose doc
//! names a `POST`, `PATCH` or `DELETE` is listed). The canary analysis added `ScaleCandidate`
//! this way: `step.rs` (variant, kind, text, mutating, undo), `execute/mod.rs` (one dispatch
//! line), `execute/analysis.rs` (handler), `plan.rs` (placement), plus
//! `api.rs`/`command/adapter.rs` for `scale_process`.
//!
//! Depends on: cf::target (org/space of a request), cf::PollOptions, tokio, tokio-util,
//! reqwest (smoke probe).
//! Must not: print, exit, or use `cf` (the client), `manifest` or `package`: the `command`
//! layer joins those layers to this one.

pub mod analysis;
pub mod api;
pub mod budget;
mod crash;
pub(crate) mod drain;
pub mod error;
pub mod event;
pub(crate) mod execute;
pub mod interrupt;
pub mod lock;
mod logs;
pub(crate) mod observe;
pub(crate) mod plan;
pub(crate) mod quota;
pub mod request;
pub mod rollback;
pub(crate) mod rolling;
pub mod route;
pub(crate) mod smoke;
pub(crate) mod step;
mod strategy;
pub(crate) mod wait;

use tokio::time::Instant;

pub use api::{ApiError, CfApi};
pub use error::Error;
pub use event::{Event, Outcome, Reporter};
pub use interrupt::Interrupt;
pub use request::{AppSpec, DeployRequest, OldApp, RenderRequest, RouteSpec, Strategy};

use lock::{Busy, RunLock};
use plan::Plan;

/// Observes, plans and (unless `--dry-run`) executes a deploy of `apps` with the request's
/// strategy (blue-green, or rolling/canary through `rolling`).
/// Reports every event to `reporter`, ending with [`Event::Finished`], and returns the outcome.
/// Never panics; every failure ends in an [`Outcome`].
pub async fn run<A: CfApi>(
    api: &A,
    req: &DeployRequest,
    apps: &[AppSpec<A::Bits>],
    reporter: &mut dyn Reporter,
    interrupt: impl Into<Interrupt>,
) -> Outcome {
    let interrupt = interrupt.into();
    let started = report_started(
        reporter,
        req,
        apps.iter().map(|a| a.name.clone()).collect(),
        req.strategy.as_str(),
    );
    let (outcome, steps) = run_inner(api, req, apps, reporter, &interrupt).await;
    if let Some(requests) = api.requests() {
        reporter.report(Event::Requests(requests));
    }
    report_finished(reporter, outcome, started, steps)
}

/// Awaits an observation (reads only) unless interrupted first, then reports the warnings the
/// API gave meanwhile.
pub(crate) async fn observe_reporting<A: CfApi, T>(
    api: &A,
    req: &DeployRequest,
    reporter: &mut dyn Reporter,
    interrupt: &Interrupt,
    observation: impl std::future::Future<Output = Result<T, api::ApiError>>,
) -> Result<T, Error> {
    let observed = tokio::select! {
        () = interrupt.stop_token().cancelled() => Err(Error::Cancelled),
        r = observation => r.map_err(|source| Error::Observe {
            space: req.space.clone(),
            source: Box::new(source),
        }),
    };
    for message in api.take_warnings() {
        reporter.report(Event::Warning { app: None, message });
    }
    observed
}

/// Reports [`Event::Started`] for a run of `apps` with `strategy` and returns when it began.
pub(crate) fn report_started(
    reporter: &mut dyn Reporter,
    req: &DeployRequest,
    apps: Vec<String>,
    strategy: &str,
) -> Instant {
    reporter.report(Event::Started {
        org: req.org.clone(),
        space: req.space.clone(),
        user: req.user.clone(),
        apps,
        strategy: strategy.to_string(),
    });
    Instant::now()
}

/// Reports [`Event::Finished`] for a run that began at `started` and returns its outcome.
pub(crate) fn report_finished(
    reporter: &mut dyn Reporter,
    outcome: Outcome,
    started: Instant,
    steps: Vec<event::StepTime>,
) -> Outcome {
    reporter.report(Event::Finished {
        outcome: outcome.clone(),
        elapsed: started.elapsed(),
        steps,
    });
    outcome
}

/// Observes with `observe` until no other run holds an app of the run (`busy` says which,
/// given the run's id and the time): at once without `--wait-for-lock`, else looking again
/// every [`lock::WAIT_POLL`] until the lock is free or stale, at most for the flag's duration
/// (saying once that it waits). Reads only.
pub(crate) async fn observe_unlocked<A: CfApi, T, F>(
    api: &A,
    req: &DeployRequest,
    reporter: &mut dyn Reporter,
    interrupt: &Interrupt,
    lock: &RunLock,
    observe: impl Fn() -> F,
    busy: impl Fn(&T, &str, i64) -> Option<Busy>,
) -> Result<T, Error>
where
    F: std::future::Future<Output = Result<T, api::ApiError>>,
{
    let deadline = Instant::now() + req.wait_for_lock;
    let mut told = false;
    loop {
        let observed = observe_reporting(api, req, reporter, interrupt, observe()).await?;
        let Some(busy) = busy(&observed, lock.run_id(), lock::now_secs()) else {
            return Ok(observed);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Locked {
                busy: Box::new(busy),
                waited: req.wait_for_lock,
            });
        }
        if !told {
            told = true;
            reporter.report(Event::Warning {
                app: None,
                message: format!(
                    "{busy}; waiting up to {} for it to end (--wait-for-lock)",
                    step::fmt_duration(req.wait_for_lock)
                ),
            });
        }
        tokio::select! {
            () = interrupt.stop_token().cancelled() => return Err(Error::Cancelled),
            () = tokio::time::sleep(left.min(lock::WAIT_POLL)) => {}
        }
    }
}

/// Reports each message as a warning of the whole run.
pub(crate) fn report_warnings(reporter: &mut dyn Reporter, warnings: Vec<String>) {
    for message in warnings {
        reporter.report(Event::Warning { app: None, message });
    }
}

async fn run_inner<A: CfApi>(
    api: &A,
    req: &DeployRequest,
    apps: &[AppSpec<A::Bits>],
    reporter: &mut dyn Reporter,
    interrupt: &Interrupt,
) -> (Outcome, Vec<event::StepTime>) {
    let lock = RunLock::new(&req.run_by);
    let observed = observe_unlocked(
        api,
        req,
        reporter,
        interrupt,
        &lock,
        || observe::observe(api, req, apps),
        observe::Observed::busy,
    )
    .await;
    let observed = match observed {
        Ok(o) => o,
        Err(e) => return nothing_changed(&e),
    };
    for message in &observed.warnings {
        reporter.report(Event::Warning {
            app: None,
            message: message.clone(),
        });
    }
    for message in quota::unknown_levels(&observed.quotas) {
        reporter.report(Event::Warning { app: None, message });
    }
    lock.expect(observed.live_apps());
    let d = Deploy {
        api,
        apps,
        interrupt,
        lock: &lock,
    };
    if req.strategy == Strategy::Auto {
        return run_auto(&d, &observed, req, reporter).await;
    }
    if strategy::deployment_strategy(req.strategy).is_some() {
        return run_rolling(&d, &observed, req, reporter).await;
    }
    let plan = match plan::plan(&observed, req, apps) {
        Ok(p) => p,
        Err(e) => return nothing_changed(&Error::from(e)),
    };
    if let Err(e) = check_blue_green(&observed, &plan, req, apps) {
        return nothing_changed(&e);
    }
    show_and_execute(&d, req, &plan, std::slice::from_ref(&plan), reporter).await
}

/// What executing a plan needs besides the plan and the request.
pub(crate) struct Deploy<'a, A: CfApi> {
    pub(crate) api: &'a A,
    /// The manifest apps (none for a rollback).
    pub(crate) apps: &'a [AppSpec<A::Bits>],
    pub(crate) interrupt: &'a Interrupt,
    /// The run's lock, told which apps to mark ([`RunLock::expect`]).
    pub(crate) lock: &'a RunLock,
}

/// The quota check of `apps` for `req`.
fn quota_check<'a, B>(
    observed: &'a observe::Observed,
    req: &'a DeployRequest,
    apps: &'a [AppSpec<B>],
) -> quota::Check<'a, B> {
    quota::Check {
        obs: observed,
        apps,
        keep_scale: req.keep_scale,
        names: quota::Names {
            space: &req.space,
            org: &req.org,
        },
    }
}

/// The largest `max_in_flight` (at most `cap`, else the most web instances of an app) whose
/// rolling or canary deployment fits in the quotas, with its demand.
fn in_place_fit<B>(
    observed: &observe::Observed,
    req: &DeployRequest,
    apps: &[AppSpec<B>],
    strategy: api::DeploymentStrategy,
    steps: &[u32],
    cap: Option<u32>,
) -> Option<(u32, quota::Demand)> {
    let plans = rolling::plan(observed, &strategy::in_place_request(req, strategy), apps).ok()?;
    let check = quota_check(observed, req, apps);
    let cap = cap.unwrap_or_else(|| check.max_web_instances());
    check.largest_fit(&plans, strategy, steps, cap)
}

/// How to get a deploy that does not fit through, for blue-green's `breaches`.
fn blue_green_way_out<B>(
    observed: &observe::Observed,
    req: &DeployRequest,
    apps: &[AppSpec<B>],
    breaches: &[quota::Breach],
) -> String {
    let raise = quota::raise_commands(&observed.quotas, breaches);
    if breaches.iter().any(|b| b.per_instance) {
        return format!(
            "to deploy: give the app less memory per instance (manifest 'memory', or -m) or raise the quota ({raise})"
        );
    }
    let in_place = match in_place_fit(
        observed,
        req,
        apps,
        api::DeploymentStrategy::Rolling,
        &[],
        None,
    ) {
        Some((n, _)) => format!(
            "or replace the instances in place, which needs room for only --max-in-flight more: --strategy auto (rolling with --max-in-flight {n} here) or --strategy rolling --max-in-flight {n}"
        ),
        None => "(not even a rolling deployment with --max-in-flight 1 fits)".to_string(),
    };
    format!(
        "to deploy: scale down (fewer instances or less memory: manifest, -i, -m), raise the quota ({raise}), {in_place}"
    )
}

/// Blue-green's quota check: `Err` naming every limit the candidates do not fit in, and the
/// way out.
fn check_blue_green<B>(
    observed: &observe::Observed,
    plan: &Plan,
    req: &DeployRequest,
    apps: &[AppSpec<B>],
) -> Result<(), Error> {
    let check = quota_check(observed, req, apps);
    let b = check.breaches(&check.blue_green(plan));
    if b.is_empty() {
        return Ok(());
    }
    Err(Error::Quota(quota::refusal(
        "a blue-green deploy (the candidate runs next to the live app)",
        &b,
        &blue_green_way_out(observed, req, apps, &b),
    )))
}

/// The quota check of a rolling or canary deployment with the request's `--max-in-flight`.
fn check_in_place<B>(
    observed: &observe::Observed,
    plans: &[Plan],
    req: &DeployRequest,
    apps: &[AppSpec<B>],
    strategy: api::DeploymentStrategy,
) -> Result<(), Error> {
    let n = req.max_in_flight.unwrap_or(1).max(1);
    let check = quota_check(observed, req, apps);
    let b = check.breaches(&check.in_place(plans, strategy, n, &req.instance_steps));
    if b.is_empty() {
        return Ok(());
    }
    let raise = quota::raise_commands(&observed.quotas, &b);
    let way_out = if b.iter().any(|x| x.per_instance) {
        format!(
            "to deploy: give the app less memory per instance (manifest 'memory', or -m) or raise the quota ({raise})"
        )
    } else {
        match (n > 1)
            .then(|| {
                in_place_fit(
                    observed,
                    req,
                    apps,
                    strategy,
                    &req.instance_steps,
                    Some(n - 1),
                )
            })
            .flatten()
        {
            Some((k, _)) => format!(
                "to deploy: --max-in-flight {k} fits; or scale down (fewer instances or less memory: manifest, -i, -m), or raise the quota ({raise})"
            ),
            None => format!(
                "to deploy: scale down (fewer instances or less memory: manifest, -i, -m) or raise the quota ({raise})"
            ),
        }
    };
    Err(Error::Quota(quota::refusal(
        &format!(
            "a {} deployment with --max-in-flight {n}",
            req.strategy.as_str()
        ),
        &b,
        &way_out,
    )))
}

/// `--strategy auto`: blue-green when the candidates fit in the quotas next to the live apps,
/// else the fallback (rolling or canary) with the largest `--max-in-flight` that fits, said
/// with [`Event::StrategyChosen`]; refused with the numbers when nothing fits.
async fn run_auto<A: CfApi>(
    d: &Deploy<'_, A>,
    observed: &observe::Observed,
    req: &DeployRequest,
    reporter: &mut dyn Reporter,
) -> (Outcome, Vec<event::StepTime>) {
    let apps = d.apps;
    let bg = DeployRequest {
        strategy: Strategy::BlueGreen,
        ..req.clone()
    };
    let plan = match plan::plan(observed, &bg, apps) {
        Ok(p) => p,
        Err(e) => return nothing_changed(&Error::from(e)),
    };
    let check = quota_check(observed, req, apps);
    let demand = check.blue_green(&plan);
    let b = check.breaches(&demand);
    if b.is_empty() {
        let reason = if quota::unknown_levels(&observed.quotas).is_empty() {
            "the quotas leave room for the candidate next to the live app".to_string()
        } else {
            "the quotas that can be read leave room for the candidate next to the live app"
                .to_string()
        };
        reporter.report(Event::StrategyChosen {
            strategy: Strategy::BlueGreen.as_str().to_string(),
            max_in_flight: None,
            reason,
        });
        return show_and_execute(d, &bg, &plan, std::slice::from_ref(&plan), reporter).await;
    }
    let refuse = |way_out: String| {
        nothing_changed(&Error::Quota(quota::refusal(
            "a blue-green deploy (the candidate runs next to the live app)",
            &b,
            &way_out,
        )))
    };
    let Some(fallback) = req.fallback.clone() else {
        return refuse(blue_green_way_out(observed, req, apps, &b));
    };
    let name = match fallback.strategy {
        api::DeploymentStrategy::Rolling => "rolling",
        api::DeploymentStrategy::Canary => "canary",
    };
    let raise = quota::raise_commands(&observed.quotas, &b);
    if b.iter().any(|x| x.per_instance) {
        return refuse(blue_green_way_out(observed, req, apps, &b));
    }
    if let Some(why) = &fallback.unsupported {
        return refuse(format!(
            "--strategy auto cannot fall back to a {name} deployment: {why}; to deploy: scale down (fewer instances or less memory: manifest, -i, -m) or raise the quota ({raise})"
        ));
    }
    let cap = if fallback.max_in_flight_supported {
        fallback.max_in_flight_cap
    } else {
        Some(1)
    };
    let Some((n, _)) = in_place_fit(
        observed,
        req,
        apps,
        fallback.strategy,
        &fallback.instance_steps,
        cap,
    ) else {
        return refuse(format!(
            "not even a {name} deployment with --max-in-flight 1 fits; to deploy: scale down (fewer instances or less memory: manifest, -i, -m) or raise the quota ({raise})"
        ));
    };
    let web_mb = demand
        .processes
        .iter()
        .filter(|p| p.process_type == "web")
        .map(|p| p.memory_mb)
        .max()
        .unwrap_or(0);
    let instances = if n == 1 { "instance" } else { "instances" };
    reporter.report(Event::StrategyChosen {
        strategy: name.to_string(),
        max_in_flight: Some(n),
        reason: format!(
            "the {} leaves room for {n} more {instances} of {web_mb} MB, not for the blue-green candidate ({} MB): deploying {name} with --max-in-flight {n} instead of blue-green",
            b[0].level, demand.memory_mb
        ),
    });
    let in_place = DeployRequest {
        max_in_flight: fallback.max_in_flight_supported.then_some(n),
        instance_steps: fallback.instance_steps.clone(),
        ..strategy::in_place_request(req, fallback.strategy)
    };
    run_rolling(d, observed, &in_place, reporter).await
}

/// Rolling or canary: per-app plans, shown as one, executed one app after the other.
async fn run_rolling<A: CfApi>(
    d: &Deploy<'_, A>,
    observed: &observe::Observed,
    req: &DeployRequest,
    reporter: &mut dyn Reporter,
) -> (Outcome, Vec<event::StepTime>) {
    let plans = match rolling::plan(observed, req, d.apps) {
        Ok(p) => p,
        Err(e) => return nothing_changed(&Error::from(e)),
    };
    if let Some(strategy) = strategy::deployment_strategy(req.strategy)
        && let Err(e) = check_in_place(observed, &plans, req, d.apps, strategy)
    {
        return nothing_changed(&e);
    }
    show_and_execute(d, req, &rolling::combined(&plans), &plans, reporter).await
}

/// Reports `shown` (the plan of `plans` as one); unless it is a dry run, executes `plans` one
/// after the other holding the lock ([`RunLock::hold_while`]): the apps named to the lock are
/// marked before the first change, the marks refreshed while the run lasts and removed at its
/// end.
pub(crate) async fn show_and_execute<A: CfApi>(
    d: &Deploy<'_, A>,
    req: &DeployRequest,
    shown: &Plan,
    plans: &[Plan],
    reporter: &mut dyn Reporter,
) -> (Outcome, Vec<event::StepTime>) {
    if report_plan(shown, req, reporter) {
        return (Outcome::DryRun, Vec::new());
    }
    let Deploy {
        api,
        apps,
        interrupt,
        lock,
    } = *d;
    let run = execute::execute(api, plans, req, apps, reporter, interrupt, lock);
    let (result, warnings) = lock.hold_while(api, interrupt, run).await;
    report_warnings(reporter, warnings);
    result
}

/// Reports the plan and its warnings; true for a dry run (nothing more to do).
fn report_plan(plan: &Plan, req: &DeployRequest, reporter: &mut dyn Reporter) -> bool {
    reporter.report(Event::Plan {
        apps: plan.summary_lines(),
        steps: plan.step_lines(),
        dry_run: req.dry_run,
    });
    for message in &plan.warnings {
        reporter.report(Event::Warning {
            app: None,
            message: message.clone(),
        });
    }
    req.dry_run
}

/// The result of a deploy that stopped before its first change.
fn nothing_changed(e: &Error) -> (Outcome, Vec<event::StepTime>) {
    (Outcome::nothing_changed(e), Vec::new())
}
