//! Wiring: the one place that joins the layers. The deploy layer decides and knows only its
//! [`CfApi`](crate::deploy::CfApi) seam; this module gives it the real Cloud Controller
//! ([`adapter::CfBackend`] over `cf::Client` and `package`), turns manifest apps into
//! [`AppSpec`](crate::deploy::AppSpec)s ([`from_manifest`]), and runs a command from flags to
//! outcome ([`push`]: manifest, flags, bits, client, discovery, then `deploy::run`).
//!
//! Depends on: cli, manifest, package, cf, deploy. Must not: print (events go to a
//! [`Reporter`](crate::deploy::Reporter)).

pub mod adapter;
pub mod from_manifest;
pub mod push;
pub mod rollback;

use std::sync::Arc;
use std::time::Duration;

use crate::cf;
use crate::deploy::{DeployRequest, Reporter};

use adapter::CfBackend;

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
        /// Why.
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
    /// each notice as an [`Event::Notice`](crate::deploy::Event::Notice) as it arrives.
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
                        r.report(crate::deploy::Event::Notice { app: None, message });
                    }
                }
            }
        }
    }
}

/// A reporter shared between a run and [`LiveNotices`]: each event is reported under the lock.
pub(crate) struct SharedReporter<'a, 'r>(pub(crate) &'a std::sync::Mutex<&'r mut dyn Reporter>);

impl Reporter for SharedReporter<'_, '_> {
    fn report(&mut self, event: crate::deploy::Event) {
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
