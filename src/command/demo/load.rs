//! Steady HTTP load through the simulator's router, recording which version answered.
//!
//! Used by the `demo` and by the end-to-end tests: every request is counted, a request
//! that gets a non-2xx status or a transport error is a failure, and the body of a 2xx
//! answer (trimmed, at most 64 bytes) names the version that served it. The loop is bounded
//! by a request budget and stops when asked.
//!
//! Depends on: reqwest, tokio. Must not: print.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What load to drive.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The router's address (plain HTTP on loopback).
    pub router: SocketAddr,
    /// The `Host` header, i.e. the route (`myapp.example.com`).
    pub host: String,
    /// Request path.
    pub path: String,
    /// Concurrent workers.
    pub concurrency: usize,
    /// Pause each worker takes between requests.
    pub pause: Duration,
    /// Hard cap on requests across all workers (the loop is bounded even if never stopped).
    pub max_requests: u64,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Width of one timeline bucket.
    pub bucket: Duration,
}

impl LoadConfig {
    /// Steady load on `host` through `router` with small, bounded defaults.
    pub fn new(router: SocketAddr, host: impl Into<String>) -> Self {
        Self {
            router,
            host: host.into(),
            path: "/".into(),
            concurrency: 4,
            pause: Duration::from_millis(5),
            max_requests: 200_000,
            request_timeout: Duration::from_secs(5),
            bucket: Duration::from_millis(500),
        }
    }
}

/// One failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Milliseconds since the load started.
    pub at_ms: u64,
    /// The status, or the transport error.
    pub what: String,
}

/// Requests in one time slice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Answers per version in this slice.
    pub served: BTreeMap<String, u64>,
    /// Failed requests in this slice.
    pub failed: u64,
}

/// What the load saw.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Requests sent.
    pub total: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Successful answers per version.
    pub served: BTreeMap<String, u64>,
    /// The timeline, one bucket per [`LoadConfig::bucket`].
    pub timeline: Vec<Bucket>,
    /// The first failures (at most 20), for the report.
    pub failures: Vec<Failure>,
    /// How long the load ran.
    pub elapsed: Duration,
    /// Width of one timeline bucket.
    pub bucket: Duration,
}

impl LoadReport {
    fn record(&mut self, at: Duration, outcome: Result<String, String>) {
        let idx = (at.as_millis() / self.bucket.as_millis().max(1)) as usize;
        if self.timeline.len() <= idx {
            self.timeline.resize(idx + 1, Bucket::default());
        }
        self.total += 1;
        match outcome {
            Ok(version) => {
                *self.served.entry(version.clone()).or_default() += 1;
                *self.timeline[idx].served.entry(version).or_default() += 1;
            }
            Err(what) => {
                self.failed += 1;
                self.timeline[idx].failed += 1;
                if self.failures.len() < 20 {
                    self.failures.push(Failure {
                        at_ms: at.as_millis() as u64,
                        what,
                    });
                }
            }
        }
    }
}

/// A running load; [`LoadHandle::stop`] ends it and returns the report.
pub struct LoadHandle {
    cancel: CancellationToken,
    report: Arc<Mutex<LoadReport>>,
    workers: JoinSet<()>,
    started: Instant,
}

/// Errors starting the load.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP client could not be built.
    #[error("could not build the load client")]
    Client(#[source] reqwest::Error),
}

/// Starts the workers.
///
/// # Errors
/// When the HTTP client cannot be built.
pub fn start(cfg: LoadConfig) -> Result<LoadHandle, Error> {
    let client = reqwest::Client::builder()
        .timeout(cfg.request_timeout)
        .no_proxy()
        .pool_max_idle_per_host(cfg.concurrency)
        .build()
        .map_err(Error::Client)?;
    let cancel = CancellationToken::new();
    let report = Arc::new(Mutex::new(LoadReport {
        bucket: cfg.bucket,
        ..LoadReport::default()
    }));
    let started = Instant::now();
    let budget = Arc::new(std::sync::atomic::AtomicU64::new(cfg.max_requests));
    let url = format!("http://{}{}", cfg.router, cfg.path);
    let mut workers = JoinSet::new();
    for _ in 0..cfg.concurrency.max(1) {
        let (client, cancel, report, budget, url, host) = (
            client.clone(),
            cancel.clone(),
            report.clone(),
            budget.clone(),
            url.clone(),
            cfg.host.clone(),
        );
        let pause = cfg.pause;
        workers.spawn(async move {
            use std::sync::atomic::Ordering;
            while !cancel.is_cancelled()
                && budget
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                let outcome = one_request(&client, &url, &host).await;
                report.lock().await.record(started.elapsed(), outcome);
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        });
    }
    Ok(LoadHandle {
        cancel,
        report,
        workers,
        started,
    })
}

async fn one_request(client: &reqwest::Client, url: &str, host: &str) -> Result<String, String> {
    let resp = client
        .get(url)
        .header(reqwest::header::HOST, host)
        .send()
        .await
        .map_err(|e| format!("transport error: {e}"))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("reading body: {e}"))?;
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    Ok(if text.len() <= 64 {
        text.to_string()
    } else {
        "other".to_string()
    })
}

impl LoadHandle {
    /// A snapshot of the report so far.
    pub async fn snapshot(&self) -> LoadReport {
        let mut r = self.report.lock().await.clone();
        r.elapsed = self.started.elapsed();
        r
    }

    /// Stops the workers (each finishes its request in flight) and returns the report.
    pub async fn stop(mut self) -> LoadReport {
        self.cancel.cancel();
        while self.workers.join_next().await.is_some() {}
        let mut r = self.report.lock().await.clone();
        r.elapsed = self.started.elapsed();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_buckets_versions_and_failures() {
        let mut r = LoadReport {
            bucket: Duration::from_millis(100),
            ..LoadReport::default()
        };
        r.record(Duration::from_millis(10), Ok("v1".into()));
        r.record(Duration::from_millis(250), Ok("v2".into()));
        r.record(Duration::from_millis(260), Err("HTTP 502".into()));
        assert_eq!(r.total, 3);
        assert_eq!(r.failed, 1);
        assert_eq!(r.timeline.len(), 3);
        assert_eq!(r.timeline[0].served.get("v1"), Some(&1));
        assert_eq!(r.timeline[2].served.get("v2"), Some(&1));
        assert_eq!(r.timeline[2].failed, 1);
        assert_eq!(r.failures[0].what, "HTTP 502");
    }
}
