//! Smoke tests of a candidate: the built-in HTTP probe (`--smoke-test-path`) and the user's
//! command (`--smoke-test CMD`, run with `sh -c`, the candidate URL in `$CF_ZDT_URL` and as its
//! last argument). Both are bounded and stop early when the deploy is cancelled.
//!
//! Depends on: reqwest, tokio (process, time). Must not: print.

use std::process::Stdio;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::request::ProbeConfig;

/// Why a smoke test failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmokeError {
    /// The probe never got a 2xx answer.
    #[error("GET {url} did not answer 2xx after {attempts} attempts: {last}")]
    Probe {
        /// URL probed.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last status or error.
        last: String,
    },
    /// The command exited non-zero.
    #[error("command '{command}' exited with {status}{output}")]
    Command {
        /// The command.
        command: String,
        /// Exit status.
        status: String,
        /// The tail of its output (prefixed with `: `), if any.
        output: String,
    },
    /// The command did not finish in time.
    #[error("command '{command}' did not finish within {timeout:?}")]
    Timeout {
        /// The command.
        command: String,
        /// The bound.
        timeout: Duration,
    },
    /// The command could not be run.
    #[error("command '{command}' could not be started: {reason}")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("the HTTP client for the smoke test could not be set up: {0}")]
    Client(String),
    /// Cancelled.
    #[error("interrupted")]
    Cancelled,
}

/// The URL of a route (`host.domain/path`) under the probe's scheme.
pub fn route_url(cfg: &ProbeConfig, route: &str) -> String {
    format!("{}://{route}", cfg.scheme)
}

/// The router header that sends a request to one process (or one instance of it):
/// `X-Cf-Process-Instance: <process-guid>[:<index>]`.
pub const PROCESS_INSTANCE_HEADER: &str = "X-Cf-Process-Instance";

/// GETs `url` until it answers 2xx, at most `cfg.attempts` times.
///
/// # Errors
/// No 2xx answer in time, or cancellation.
pub async fn probe(
    cfg: &ProbeConfig,
    url: &str,
    cancel: &CancellationToken,
) -> Result<(), SmokeError> {
    probe_with_header(cfg, url, None, cancel).await
}

/// [`probe`] sending one extra request header, e.g. [`PROCESS_INSTANCE_HEADER`] to reach a
/// canary process through the app's production route.
///
/// # Errors
/// No 2xx answer in time, or cancellation.
pub async fn probe_with_header(
    cfg: &ProbeConfig,
    url: &str,
    header: Option<(&str, &str)>,
    cancel: &CancellationToken,
) -> Result<(), SmokeError> {
    let mut builder = reqwest::Client::builder()
        .timeout(cfg.request_timeout)
        .connect_timeout(cfg.request_timeout)
        .redirect(reqwest::redirect::Policy::limited(5))
        .danger_accept_invalid_certs(cfg.skip_tls_verify);
    if let Some(addr) = cfg.connect_to
        && let Ok(u) = url::Url::parse(url)
        && let Some(host) = u.host_str()
    {
        builder = builder.resolve(host, addr);
    }
    let client = builder
        .build()
        .map_err(|e| SmokeError::Client(e.to_string()))?;
    let attempts = cfg.attempts.max(1);
    let mut last = String::new();
    for i in 0..attempts {
        if i > 0 {
            tokio::select! {
                () = cancel.cancelled() => return Err(SmokeError::Cancelled),
                () = tokio::time::sleep(cfg.retry_interval) => {}
            }
        }
        let res = tokio::select! {
            () = cancel.cancelled() => return Err(SmokeError::Cancelled),
            r = match header {
                Some((k, v)) => client.get(url).header(k, v),
                None => client.get(url),
            }.send() => r,
        };
        match res {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("status {}", r.status()),
            Err(e) => last = transport_reason(&e),
        }
    }
    Err(SmokeError::Probe {
        url: url.to_string(),
        attempts,
        last,
    })
}

fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        let mut s = e.to_string();
        let mut cur = std::error::Error::source(e);
        while let Some(c) = cur {
            s.push_str(": ");
            s.push_str(&c.to_string());
            cur = c.source();
        }
        s
    }
}

/// Runs `sh -c 'CMD "$CF_ZDT_URL"'` with `CF_ZDT_URL=url`, bounded by `timeout`.
///
/// # Errors
/// Non-zero exit, timeout, spawn failure, or cancellation (the child is killed).
pub async fn run_command(
    command: &str,
    url: &str,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<(), SmokeError> {
    run_command_with_env(command, url, &[], timeout, cancel).await
}

/// [`run_command`] with extra environment variables (e.g. `CF_ZDT_PROCESS_INSTANCE` for a
/// canary).
///
/// # Errors
/// Non-zero exit, timeout, spawn failure, or cancellation (the child is killed).
pub async fn run_command_with_env(
    command: &str,
    url: &str,
    env: &[(&str, &str)],
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<(), SmokeError> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{command} \"$CF_ZDT_URL\""))
        .env("CF_ZDT_URL", url)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| SmokeError::Spawn {
            command: command.to_string(),
            reason: e.to_string(),
        })?;
    let out = tokio::select! {
        () = cancel.cancelled() => return Err(SmokeError::Cancelled),
        r = tokio::time::timeout(timeout, child.wait_with_output()) => match r {
            Err(_) => return Err(SmokeError::Timeout { command: command.to_string(), timeout }),
            Ok(Err(e)) => return Err(SmokeError::Spawn { command: command.to_string(), reason: e.to_string() }),
            Ok(Ok(o)) => o,
        },
    };
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if text.is_empty() {
        text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    let tail: Vec<&str> = text.lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(SmokeError::Command {
        command: command.to_string(),
        status: out
            .status
            .code()
            .map_or_else(|| "a signal".to_string(), |c| format!("status {c}")),
        output: if tail.is_empty() {
            String::new()
        } else {
            format!(": {}", tail.join(" / "))
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn command_gets_url_as_env_and_argument() {
        let c = CancellationToken::new();
        run_command(
            "test \"$CF_ZDT_URL\" = http://a.b && test",
            "http://a.b",
            Duration::from_secs(10),
            &c,
        )
        .await
        .unwrap();
        // `test X` with the URL appended: `test http://a.b` (true). A mismatch fails:
        let e = run_command(
            "echo boom >&2; false",
            "http://a.b",
            Duration::from_secs(10),
            &c,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("status 1: boom"), "{e}");
    }

    #[tokio::test]
    async fn command_is_bounded() {
        let c = CancellationToken::new();
        let e = run_command("sleep 5;", "u", Duration::from_millis(100), &c)
            .await
            .unwrap_err();
        assert!(matches!(e, SmokeError::Timeout { .. }));
    }

    #[tokio::test]
    async fn probe_expects_2xx_and_retries() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/ok"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/bad"))
            .respond_with(ResponseTemplate::new(503))
            .expect(3)
            .mount(&server)
            .await;
        let cfg = ProbeConfig {
            scheme: "http".into(),
            connect_to: Some(*server.address()),
            retry_interval: Duration::from_millis(1),
            attempts: 3,
            ..ProbeConfig::default()
        };
        let c = CancellationToken::new();
        probe(&cfg, "http://app-temp.example.com/ok", &c)
            .await
            .unwrap();
        let e = probe(&cfg, "http://app-temp.example.com/bad", &c)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("503"), "{e}");
    }

    #[tokio::test]
    async fn probe_sends_the_process_instance_header() {
        use wiremock::matchers::{header, method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/h"))
            .and(header("x-cf-process-instance", "pg-1"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(404))
            .mount(&server)
            .await;
        let cfg = ProbeConfig {
            scheme: "http".into(),
            connect_to: Some(*server.address()),
            retry_interval: Duration::from_millis(1),
            attempts: 1,
            ..ProbeConfig::default()
        };
        let c = CancellationToken::new();
        let url = "http://app.example.com/h";
        probe_with_header(&cfg, url, Some((PROCESS_INSTANCE_HEADER, "pg-1")), &c)
            .await
            .unwrap();
        assert!(probe(&cfg, url, &c).await.is_err());
    }
}
