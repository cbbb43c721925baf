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
        command: String,
        /// Exit status.
        status: String,
        /// The tail of its output (prefixed with `: `), if any.
        output: String,
    },
    /// The command did not finish in time.
    #[error("command '{command}' did not finish within {timeout:?}")]
    Timeout {
        command: String,
        /// The bound.
        timeout: Duration,
    },
    /// The command could not be run.
    #[error("command '{command}' could not be started: {reason}")]
    Spawn { command: String, reason: String },
    /// The HTTP client could not be built.
    #[error("the HTTP client for the smoke test could not be set up: {0}")]
    Client(String),
    #[error("interrupted")]
    Cancelled,
}

/// The URL of a route (`host.domain/path`) under the probe's scheme.
pub fn route_url(cfg: &ProbeConfig, route: &str) -> String {
    format!("{}://{route}", cfg.scheme)
}

/// The variable that hands `--smoke-test-router` to a smoke-test command, in curl's
/// `--connect-to` form: `curl --connect-to "$CF_ZDT_CONNECT_TO" "$CF_ZDT_URL"`.
pub const CONNECT_TO_ENV: &str = "CF_ZDT_CONNECT_TO";

/// `ROUTE_HOST:PORT:ROUTER_HOST:ROUTER_PORT` (curl's `--connect-to`) for `route` when the probe
/// dials a router of its own; `None` otherwise.
pub fn connect_to_env(cfg: &ProbeConfig, route: &str) -> Option<String> {
    let router = cfg.connect_to?;
    let host = route.split('/').next().unwrap_or(route);
    let port = if cfg.scheme == "http" { 80 } else { 443 };
    let router_host = match router.ip() {
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    Some(format!("{host}:{port}:{router_host}:{}", router.port()))
}

/// The router header that sends a request to one process (or one instance of it):
/// `X-Cf-Process-Instance: <process-guid>[:<index>]`.
pub const PROCESS_INSTANCE_HEADER: &str = "X-Cf-Process-Instance";

/// GETs `url` until it answers 2xx, at most `cfg.attempts` times, sending one extra request
/// header when given (e.g. [`PROCESS_INSTANCE_HEADER`] to reach a canary process through the
/// app's production route).
///
/// # Errors
/// No 2xx answer in time, or cancellation.
pub async fn probe(
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

/// Runs `sh -c 'CMD "$CF_ZDT_URL"'` with `CF_ZDT_URL=url` and the extra environment
/// variables `env` (e.g. `CF_ZDT_PROCESS_INSTANCE` for a canary), bounded by `timeout`.
///
/// The command runs in a process group of its own: on timeout, on cancellation and after it
/// exits, the whole group is killed, so nothing it started in the background outlives the
/// smoke test. Its output is kept up to [`OUTPUT_CAP`] bytes per stream (the newest), and
/// the last lines are part of the error.
///
/// # Errors
/// Non-zero exit, timeout, spawn failure, or cancellation (the group is killed).
pub async fn run_command(
    command: &str,
    url: &str,
    env: &[(&str, &str)],
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<(), SmokeError> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("{command} \"$CF_ZDT_URL\""))
        .env("CF_ZDT_URL", url)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = cmd.spawn().map_err(|e| SmokeError::Spawn {
        command: command.to_string(),
        reason: e.to_string(),
    })?;
    let group = Group(child.id());
    let stdout = tokio::spawn(read_tail(child.stdout.take()));
    let stderr = tokio::spawn(read_tail(child.stderr.take()));
    let status = tokio::select! {
        () = cancel.cancelled() => Err(SmokeError::Cancelled),
        r = tokio::time::timeout(timeout, child.wait()) => match r {
            Err(_) => Err(SmokeError::Timeout { command: command.to_string(), timeout }),
            Ok(Err(e)) => Err(SmokeError::Spawn { command: command.to_string(), reason: e.to_string() }),
            Ok(Ok(status)) => Ok(status),
        },
    };
    // Whatever happened, nothing of the smoke test runs on (this also closes pipes that a
    // background child kept open, so the readers below end).
    group.kill();
    let _ = child.kill().await;
    let status = status?;
    if status.success() {
        return Ok(());
    }
    let drained = Duration::from_secs(1);
    let err = tokio::time::timeout(drained, stderr)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let out = tokio::time::timeout(drained, stdout)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let mut text = String::from_utf8_lossy(&err).trim().to_string();
    if text.is_empty() {
        text = String::from_utf8_lossy(&out).trim().to_string();
    }
    let tail: Vec<&str> = text.lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(SmokeError::Command {
        command: command.to_string(),
        status: status
            .code()
            .map_or_else(|| "a signal".to_string(), |c| format!("status {c}")),
        output: if tail.is_empty() {
            String::new()
        } else {
            format!(": {}", tail.join(" / "))
        },
    })
}

/// How much of each output stream of a smoke-test command is kept (the newest bytes).
pub const OUTPUT_CAP: usize = 64 * 1024;

/// Reads a stream to its end, keeping the last [`OUTPUT_CAP`] bytes.
async fn read_tail<R: tokio::io::AsyncRead + Unpin>(stream: Option<R>) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let Some(mut stream) = stream else {
        return Vec::new();
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > OUTPUT_CAP {
                    let drop = kept.len() - OUTPUT_CAP;
                    kept.drain(..drop);
                }
            }
        }
    }
}

/// The process group of a smoke-test command (its pid: it was made the group's leader).
struct Group(Option<u32>);

impl Group {
    /// Kills every process of the group. A group that is already gone is fine.
    fn kill(&self) {
        #[cfg(unix)]
        if let Some(pid) = self.0.and_then(|p| libc::pid_t::try_from(p).ok())
            && pid > 0
        {
            // SAFETY: killpg only sends a signal; a stale or empty group yields ESRCH,
            // which is ignored.
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
            }
        }
    }
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
            &[],
            Duration::from_secs(10),
            &c,
        )
        .await
        .unwrap();
        // `test X` with the URL appended: `test http://a.b` (true). A mismatch fails:
        let e = run_command(
            "echo boom >&2; false",
            "http://a.b",
            &[],
            Duration::from_secs(10),
            &c,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("status 1: boom"), "{e}");
    }

    #[test]
    fn the_connect_to_value_is_curls() {
        let mut cfg = ProbeConfig {
            connect_to: Some(([127, 0, 0, 1], 8081).into()),
            ..ProbeConfig::default()
        };
        assert_eq!(
            connect_to_env(&cfg, "web-temp.example.com").as_deref(),
            Some("web-temp.example.com:443:127.0.0.1:8081")
        );
        cfg.scheme = "http".into();
        assert_eq!(
            connect_to_env(&cfg, "web-temp.example.com/api").as_deref(),
            Some("web-temp.example.com:80:127.0.0.1:8081")
        );
        cfg.connect_to = None;
        assert_eq!(connect_to_env(&cfg, "web-temp.example.com"), None);
    }

    #[tokio::test]
    async fn command_is_bounded() {
        let c = CancellationToken::new();
        let e = run_command("sleep 5;", "u", &[], Duration::from_millis(100), &c)
            .await
            .unwrap_err();
        assert!(matches!(e, SmokeError::Timeout { .. }));
    }

    #[cfg(target_os = "linux")]
    fn alive(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
            .is_ok_and(|s| !s.contains(") Z "))
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn nothing_the_command_started_outlives_it() {
        let dir = tempfile::tempdir().unwrap();
        let c = CancellationToken::new();
        for (script, timeout) in [
            // Exits at once, leaving a background child behind.
            ("sleep 30 & echo $! > {pid}; exit 0; true", 10_000),
            // Times out while the background child runs.
            ("sleep 30 & echo $! > {pid}; sleep 30; true", 300),
        ] {
            let pid_file = dir.path().join("pid");
            let cmd = script.replace("{pid}", &pid_file.display().to_string());
            let _ = run_command(&cmd, "u", &[], Duration::from_millis(timeout), &c).await;
            let pid = std::fs::read_to_string(&pid_file).unwrap();
            // The group was sent SIGKILL before run_command returned; give the kernel a
            // moment to reap it (bounded).
            let mut gone = false;
            for _ in 0..50 {
                if !alive(&pid) {
                    gone = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(gone, "{script}: background sleep {pid} survived");
        }
    }

    #[tokio::test]
    async fn a_chatty_failing_command_keeps_only_its_last_lines() {
        let c = CancellationToken::new();
        let e = run_command(
            "i=0; while [ $i -lt 20000 ]; do echo line-$i; i=$((i+1)); done >&2; false",
            "u",
            &[],
            Duration::from_secs(30),
            &c,
        )
        .await
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("line-19999"), "{text}");
        assert!(!text.contains("line-19994"), "{text}");
    }

    /// A plain-HTTP probe of `attempts` tries, 1 ms apart, connecting to `server`.
    fn probe_to(server: &wiremock::MockServer, attempts: u32) -> ProbeConfig {
        ProbeConfig {
            scheme: "http".into(),
            connect_to: Some(*server.address()),
            retry_interval: Duration::from_millis(1),
            attempts,
            ..ProbeConfig::default()
        }
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
        let cfg = probe_to(&server, 3);
        let c = CancellationToken::new();
        probe(&cfg, "http://app-temp.example.com/ok", None, &c)
            .await
            .unwrap();
        let e = probe(&cfg, "http://app-temp.example.com/bad", None, &c)
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
        let cfg = probe_to(&server, 1);
        let c = CancellationToken::new();
        let url = "http://app.example.com/h";
        probe(&cfg, url, Some((PROCESS_INSTANCE_HEADER, "pg-1")), &c)
            .await
            .unwrap();
        assert!(probe(&cfg, url, None, &c).await.is_err());
    }
}
