//! The `deploy` layer: observe (reads only) → plan (pure) → execute (steps with undo), with
//! progress reported as [`event::Event`]s. This module implements the blue-green strategy of
//! DESIGN.md section 2.
//!
//! # Seams (what the integrator provides)
//!
//! - [`api::CfApi`]: implemented for the real Cloud Controller client (and the package layer
//!   for [`api::CfApi::upload_bits`], with [`api::CfApi::Bits`] the scanned app directory or
//!   archive); `cf::Error` is mapped into [`api::ApiError`].
//! - [`request::AppSpec`]: one per manifest app, its `render` wired to the manifest layer
//!   (render the app's entry with [`request::RenderRequest`]'s overrides: name, routes or
//!   `no-route`, extra labels/annotations, instance counts).
//! - [`request::DeployRequest::from_args`]: from `PushArgs` and the `Target`.
//! - An [`event::Reporter`]: one of the `ui` renderers.
//! - A `CancellationToken` cancelled on Ctrl-C / SIGTERM.
//!
//! Then [`run`] does everything and returns the [`event::Outcome`]; its `exit_code()` is the
//! process exit code.
//!
//! Depends on: cli (flags), cf::target, tokio, tokio-util, reqwest (smoke probe).
//! Must not: print, exit, or use `cf`/`manifest`/`package` directly.

pub mod api;
pub mod error;
pub mod event;
pub mod execute;
pub mod observe;
pub mod plan;
pub mod request;
pub mod route;
pub mod smoke;
pub mod step;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use api::{ApiError, CfApi};
pub use error::Error;
pub use event::{Event, Outcome, Reporter};
pub use request::{AppSpec, DeployRequest, RenderRequest, RouteSpec};

use event::error_chain;

/// Observes, plans and (unless `--dry-run`) executes a blue-green deploy of `apps`.
/// Reports every event to `reporter`, ending with [`Event::Finished`], and returns the outcome.
/// Never panics; every failure ends in an [`Outcome`].
pub async fn run<A: CfApi>(
    api: &A,
    req: &DeployRequest,
    apps: &[AppSpec<A::Bits>],
    reporter: &mut dyn Reporter,
    cancel: &CancellationToken,
) -> Outcome {
    let started = Instant::now();
    reporter.report(Event::Started {
        org: req.org.clone(),
        space: req.space.clone(),
        user: req.user.clone(),
        apps: apps.iter().map(|a| a.name.clone()).collect(),
        strategy: format!("{:?}", req.strategy).to_lowercase(),
    });
    let (outcome, steps) = run_inner(api, req, apps, reporter, cancel).await;
    reporter.report(Event::Finished {
        outcome: outcome.clone(),
        elapsed: started.elapsed(),
        steps,
    });
    outcome
}

async fn run_inner<A: CfApi>(
    api: &A,
    req: &DeployRequest,
    apps: &[AppSpec<A::Bits>],
    reporter: &mut dyn Reporter,
    cancel: &CancellationToken,
) -> (Outcome, Vec<event::StepTime>) {
    let observed = tokio::select! {
        () = cancel.cancelled() => Err(Error::Cancelled),
        r = observe::observe(api, req, apps) => r.map_err(|source| Error::Observe {
            space: req.space.clone(),
            source: Box::new(source),
        }),
    };
    for message in api.take_warnings() {
        reporter.report(Event::Warning { app: None, message });
    }
    let observed = match observed {
        Ok(o) => o,
        Err(e) => {
            return (
                Outcome::NothingChanged {
                    error: error_chain(&e),
                },
                Vec::new(),
            );
        }
    };
    let plan = match plan::plan(&observed, req, apps) {
        Ok(p) => p,
        Err(e) => {
            let e = Error::from(e);
            return (
                Outcome::NothingChanged {
                    error: error_chain(&e),
                },
                Vec::new(),
            );
        }
    };
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
    if req.dry_run {
        return (Outcome::DryRun, Vec::new());
    }
    execute::execute(api, &plan, req, apps, reporter, cancel).await
}
