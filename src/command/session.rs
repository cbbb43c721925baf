//! What every command that talks to Cloud Controller does around its call into the core: the
//! client that has read the API's root document ([`connect`]), the outage notices said as they
//! happen ([`LiveNotices`]), the deploy engine's backend for the target space ([`backend`]),
//! the first and second interrupt ([`interrupt_on_signals`]), and how a command that failed its
//! preflight ends ([`refuse`]).
//!
//! Depends on: cf, deploy, ui (the interrupt notice). Prints only through `ui`.

use std::sync::Arc;
use std::time::Duration;

use crate::cf;
use tokio::time::Instant;

use crate::deploy::event::error_chain;
use crate::deploy::{DeployRequest, Event, Interrupt, Outcome, Reporter};
use crate::ui;

use super::adapter::CfBackend;

/// What stops a command before its first question to Cloud Controller is answered.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `CF_TRACE` names a file that cannot be opened.
    #[error("CF_TRACE: cannot open the trace file")]
    Trace(#[source] std::io::Error),
    /// The HTTP client cannot be built (TLS settings, proxy variables).
    #[error("cannot set up the cloud controller client")]
    Client(#[source] cf::Error),
    /// API discovery (`GET /`) failed.
    #[error("cannot reach the cloud controller at {endpoint}")]
    Discovery {
        /// The target's API endpoint.
        endpoint: String,
        #[source]
        source: cf::Error,
    },
}

/// A client for the target (tracing as `CF_TRACE` says) that has read the API's root
/// document: the first request every command makes.
pub(crate) async fn connect(
    target: &cf::Target,
    token: &Arc<dyn cf::TokenProvider>,
    outage_budget: Option<Duration>,
) -> Result<cf::Client, ConnectError> {
    let mut config = cf::ClientConfig::for_target(target, Arc::clone(token));
    if let Some(budget) = outage_budget {
        config.retry.outage_budget = budget;
    }
    config.trace = cf::Trace::from_env().map_err(ConnectError::Trace)?;
    let client = cf::Client::new(config).map_err(ConnectError::Client)?;
    let discovered = client.discover().await;
    discovered.map_err(|source| ConnectError::Discovery {
        endpoint: target.api_endpoint.clone(),
        source,
    })?;
    Ok(client)
}

/// Reports `client`'s outage notices ("waiting up to 60s for Cloud Controller") while a run
/// goes on, as they happen, instead of after the step that met the outage.
pub(crate) struct LiveNotices {
    rx: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl LiveNotices {
    /// Sends `client`'s notices here from now on.
    pub(crate) fn attach(client: &cf::Client) -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        client.set_notice_sink(Arc::new(move |text| {
            // The receiver ends with the run; a notice after it has no one to tell.
            let _ = tx.send(text);
        }));
        LiveNotices { rx }
    }

    /// Runs `run` (which reports through a [`SharedReporter`] over `reporter`), reporting
    /// each notice as an [`Event::Notice`] as it arrives.
    pub(crate) async fn around<F: std::future::Future>(
        mut self,
        reporter: &std::sync::Mutex<&mut dyn Reporter>,
        run: F,
    ) -> F::Output {
        // On the heap: a whole deploy is a large future.
        let mut run = Box::pin(run);
        loop {
            tokio::select! {
                biased;
                out = &mut run => return out,
                Some(message) = self.rx.recv() => {
                    if let Ok(mut r) = reporter.lock() {
                        r.report(Event::Notice { app: None, message });
                    }
                }
            }
        }
    }
}

/// A reporter shared between a run and [`LiveNotices`]: each event is reported under the lock.
pub(crate) struct SharedReporter<'a, 'r>(pub(crate) &'a std::sync::Mutex<&'r mut dyn Reporter>);

impl Reporter for SharedReporter<'_, '_> {
    fn report(&mut self, event: Event) {
        if let Ok(mut r) = self.0.lock() {
            r.report(event);
        }
    }
}

/// The deploy layer's backend for `request`'s space: internal waits poll every
/// `poll_interval` and are bounded by the request's timeout (at least a minute).
pub(crate) fn backend(
    client: cf::Client,
    target: &cf::Target,
    request: &DeployRequest,
    poll_interval: Duration,
) -> CfBackend {
    CfBackend::new(
        client,
        request.space_guid.clone(),
        target
            .org
            .as_ref()
            .map(|o| cf::OrganizationGuid::new(o.guid.as_str())),
    )
    .with_poll(poll_interval, request.timeout.max(Duration::from_secs(60)))
}

/// The first SIGINT, SIGTERM or SIGHUP stops the deploy safely, the second abandons the
/// waits. A handler that cannot be installed only means that signal keeps its default action.
pub(crate) async fn interrupt_on_signals(interrupt: Interrupt) {
    let mut signals = Signals::install();
    signals.next().await;
    ui::interrupted_notice(
        false,
        interrupt.is_switched(),
        interrupt.running_task().as_deref(),
    );
    interrupt.stop();
    signals.next().await;
    ui::interrupted_notice(
        true,
        interrupt.is_switched(),
        interrupt.running_task().as_deref(),
    );
    interrupt.abandon();
}

/// The interrupting signals of this platform, as one stream.
struct Signals {
    #[cfg(unix)]
    streams: Vec<tokio::signal::unix::Signal>,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let streams = [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ]
        .into_iter()
        .filter_map(|k| signal(k).ok())
        .collect();
        Signals { streams }
    }

    #[cfg(not(unix))]
    fn install() -> Self {
        Signals {}
    }

    /// Waits for the next signal (for ever when none could be installed).
    #[cfg(unix)]
    async fn next(&mut self) {
        if self.streams.is_empty() {
            std::future::pending::<()>().await;
        }
        let waits = self.streams.iter_mut().map(|s| Box::pin(s.recv()));
        let _ = futures::future::select_all(waits).await;
    }

    #[cfg(not(unix))]
    async fn next(&mut self) {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Ends a command that failed its preflight, the way every such end looks: an
/// [`Event::Started`] naming the target as cf knows it (when the app names are known), the
/// warnings found so far, then [`Event::Finished`] with [`Outcome::NothingChanged`] and the
/// error. Returns the outcome.
pub(crate) fn refuse(
    reporter: &mut dyn Reporter,
    target: &cf::Target,
    apps: Vec<String>,
    strategy: &str,
    warnings: Vec<String>,
    error: &(dyn std::error::Error + 'static),
    started: Instant,
) -> Outcome {
    if !apps.is_empty() {
        let name = |n: &Option<cf::NamedGuid>| n.as_ref().map(|n| n.name.clone());
        reporter.report(Event::Started {
            org: name(&target.org).unwrap_or_default(),
            space: name(&target.space).unwrap_or_default(),
            user: target.user.clone(),
            apps,
            strategy: strategy.to_string(),
        });
    }
    for message in warnings {
        reporter.report(Event::Warning { app: None, message });
    }
    let outcome = Outcome::NothingChanged {
        error: error_chain(error).into(),
    };
    reporter.report(Event::Finished {
        outcome: outcome.clone(),
        elapsed: started.elapsed(),
        steps: Vec::new(),
    });
    outcome
}
