//! `cf-zero-downtime sim`: runs the simulator in the foreground and prints how to point the
//! cf CLI at it, until Ctrl-C, SIGTERM or SIGHUP (all three stop it the same graceful way; a
//! second one stops it at once).
//!
//! Depends on: clap, `sim`. Must not: print secrets (a generated password goes to a
//! file only the current user can read; the `cf auth` line reads it from there).

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use crate::sim::{Sim, SimConfig, StopSignals, Stopped};

/// Arguments of `cf-zero-downtime sim`. `Debug` hides the password.
#[derive(Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Port of the API (and login) server; 0 picks a free port.
    #[arg(long, default_value_t = 0)]
    pub api_port: u16,
    /// Port of the router; 0 picks a free port.
    #[arg(long, default_value_t = 0)]
    pub router_port: u16,
    /// Route-propagation delay of the router, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub propagation_ms: u64,
    /// How long a build stays STAGING, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub staging_ms: u64,
    /// How long an instance takes before its first health check, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub start_ms: u64,
    /// Interval between health checks, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub health_check_ms: u64,
    /// How long a stopped instance keeps serving after the propagation delay, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub stop_grace_ms: u64,
    /// How often rolling and canary deployments move on, in milliseconds (Cloud Controller's
    /// deployment updater runs every 5 s by default).
    #[arg(long, default_value_t = 5000)]
    pub deployment_update_ms: u64,
    /// The shared app domain.
    #[arg(long, default_value = "example.com")]
    pub domain: String,
    /// Name of the seeded org.
    #[arg(long, default_value = "org")]
    pub org: String,
    /// Name of the seeded space.
    #[arg(long, default_value = "space")]
    pub space: String,
    /// User name accepted by the login server.
    #[arg(long, default_value = "admin")]
    pub user: String,
    /// Password accepted by the login server (default: a random one, written to a file only
    /// the current user can read, whose path is printed with the `cf auth` line that uses it).
    #[arg(long, env = "CF_ZDT_SIM_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Serve every app as static files, never running manifest commands.
    #[arg(long)]
    pub static_only: bool,
    /// Enable the fault-injection and introspection API under /_sim/.
    #[arg(long)]
    pub admin: bool,
    /// Give the seeded space a space quota (named `sim-space`) of this many MB of memory,
    /// enforced as Cloud Controller does (default: no space quota). Change it while running
    /// with `POST /_sim/faults` and `{"kind": "set_quota", ...}` (needs --admin).
    #[arg(long, value_name = "MB")]
    pub space_quota_memory: Option<u64>,
}

impl std::fmt::Debug for SimArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.clone();
        shown.password = shown.password.map(|_| "***".to_string());
        f.debug_struct("SimArgs")
            .field("config", &shown.config())
            .field("static_only", &self.static_only)
            .field("admin", &self.admin)
            .finish()
    }
}

impl SimArgs {
    /// The simulator configuration these arguments describe.
    pub fn config(&self) -> SimConfig {
        SimConfig {
            bind: self.bind,
            api_port: self.api_port,
            router_port: self.router_port,
            app_domain: self.domain.clone(),
            org: self.org.clone(),
            space: self.space.clone(),
            username: self.user.clone(),
            password: self
                .password
                .clone()
                .unwrap_or_else(crate::sim::random_password),
            staging_delay: Duration::from_millis(self.staging_ms),
            start_delay: Duration::from_millis(self.start_ms),
            route_propagation: Duration::from_millis(self.propagation_ms),
            health_check_interval: Duration::from_millis(self.health_check_ms.max(1)),
            liveness_interval: Duration::from_millis(self.health_check_ms.max(1) * 5),
            stop_grace: Duration::from_millis(self.stop_grace_ms),
            kill_grace: Duration::from_secs(10),
            tick: Duration::from_millis(50),
            deployment_update_interval: Duration::from_millis(self.deployment_update_ms),
            run_commands: !self.static_only,
            admin_api: self.admin,
            space_quota: self.space_quota_memory.map(|mb| crate::sim::QuotaSpec {
                total_memory_mb: Some(mb),
                ..crate::sim::QuotaSpec::unlimited("sim-space")
            }),
            ..SimConfig::default()
        }
    }
}

/// Writes a generated password to a new file only the current user can read; returns its path.
fn write_secret(password: &str) -> std::io::Result<std::path::PathBuf> {
    use std::io::Write as _;
    let mut file = tempfile::Builder::new()
        .prefix("cf-zdt-sim-password-")
        .tempfile()?;
    // tempfile creates the file with mode 0600 on Unix.
    writeln!(file, "{password}")?;
    let (_, path) = file.keep().map_err(|e| e.error)?;
    Ok(path)
}

/// A line on stdout. A closed terminal (SIGHUP) or pipe must not stop the stop half-way, so
/// write errors are ignored instead of panicking like `println!`.
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

/// Runs the simulator in the foreground until Ctrl-C, SIGTERM or SIGHUP, on its own
/// two-thread runtime.
pub fn run_foreground(args: SimArgs) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(args)),
        Err(e) => {
            eprintln!("cf-zero-downtime: could not start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the simulator until SIGINT (Ctrl-C), SIGTERM or SIGHUP, then stops it gracefully
/// (instances get SIGTERM, then SIGKILL after 10 s; temporary files are removed); a second
/// signal stops it at once. Exit code 0 after a stop, 1 when it cannot start.
///
/// Unless `--password` is given it generates a random password and writes it to a private
/// temporary file (its path is printed, never the password): on a shared machine any local
/// user can reach a loopback address, and a logged-in user runs commands as the simulator's
/// owner. Bound to a non-loopback address, it also warns that anyone who can reach the address
/// can try to log in.
pub async fn run(args: SimArgs) -> ExitCode {
    // Before anything else, so that a signal during the start is not lost.
    let mut signals = StopSignals::install();
    let mut args = args;
    let mut secret_file = None;
    if !args.bind.is_loopback() {
        warn(&format!(
            "warning: the simulator listens on {}, not a loopback address: anyone who can reach it can try to log in and, once in, run commands in pushed apps.",
            args.bind
        ));
    }
    if args.password.is_none() {
        let generated = crate::sim::random_password();
        match write_secret(&generated) {
            Ok(path) => secret_file = Some(path),
            Err(e) => {
                warn(&format!(
                    "cf-zero-downtime sim: cannot write the generated password: {e}"
                ));
                return ExitCode::FAILURE;
            }
        }
        args.password = Some(generated);
    }
    let sim = match Sim::start(args.config()).await {
        Ok(sim) => sim,
        Err(e) => {
            let mut msg = format!("cf-zero-downtime sim: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            warn(&msg);
            return ExitCode::FAILURE;
        }
    };
    let api = sim.api_url();
    let router = sim.router_addr();
    let password = match &secret_file {
        Some(path) => format!("\"$(cat {})\"", path.display()),
        None => "<your --password>".to_string(),
    };
    for swept in sim.swept() {
        say(&format!("Note: {swept}"));
    }
    say("Cloud Foundry simulator running.");
    say(&format!("  API + login: {api}"));
    if let Some(path) = &secret_file {
        say(&format!(
            "  Password:    generated, in {} (readable by you only)",
            path.display()
        ));
    }
    say(&format!(
        "  Router:      http://{router}  (routes on *.{}, chosen by the Host header)",
        args.domain
    ));
    if let Some(admin) = sim.admin_url() {
        say(&format!(
            "  Admin API:   {admin}/state, {admin}/calls, {admin}/router, POST {admin}/faults"
        ));
        say("               (send the admin's token: -H \"Authorization: $(cf oauth-token)\")");
    }
    say("");
    say("Point the cf CLI at it:");
    say(&format!("  cf api {api} --skip-ssl-validation"));
    say(&format!("  cf auth {} {password}", args.user));
    say(&format!("  cf target -o {} -s {}", args.org, args.space));
    say("  cf push myapp -p ./my-site");
    say(&format!(
        "  curl -H 'Host: myapp.{}' http://{router}/",
        args.domain
    ));
    say("");
    say("Smoke tests of a zero-downtime push reach the candidate through this router:");
    say(&format!(
        "  cf zero-downtime-push myapp --smoke-test-path / --smoke-test-router {router} --smoke-test-scheme http"
    ));
    say("");
    say("Press Ctrl-C to stop (SIGTERM and SIGHUP stop it the same way).");
    let first = signals.next().await;
    say(&format!(
        "{first}: stopping the simulator: instances get SIGTERM, then SIGKILL after {} s (send another signal to stop at once)...",
        sim.kill_grace().as_secs_f64()
    ));
    let stopped = sim
        .shutdown_or_now(async {
            let again = signals.next().await;
            warn(&format!(
                "cf-zero-downtime sim: {again} during the stop: stopping at once (instances get SIGKILL)"
            ));
        })
        .await;
    if let Some(path) = &secret_file
        && let Err(e) = std::fs::remove_file(path)
    {
        warn(&format!(
            "cf-zero-downtime sim: cannot remove {}: {e}",
            path.display()
        ));
    }
    say(match stopped {
        Stopped::Gracefully => "Simulator stopped.",
        Stopped::AtOnce => "Simulator stopped at once.",
    });
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn flags_map_to_the_config() {
        let w = Wrapper::parse_from([
            "sim",
            "--api-port",
            "9000",
            "--router-port",
            "9001",
            "--propagation-ms",
            "5",
            "--admin",
            "--static-only",
        ]);
        let c = w.sim.config();
        assert_eq!((c.api_port, c.router_port), (9000, 9001));
        assert_eq!(c.route_propagation, Duration::from_millis(5));
        assert!(c.admin_api);
        assert!(!c.run_commands);
        assert_eq!(c.app_domain, "example.com");
        // No well-known default: a random password, different every time.
        assert_ne!(c.password, "admin");
        assert_eq!(c.password.len(), 32);
        assert_ne!(c.password, w.sim.config().password);
        let w = Wrapper::parse_from(["sim", "--password", "s3cret"]);
        assert_eq!(w.sim.config().password, "s3cret");
        assert!(!format!("{:?}", w.sim).contains("s3cret"));
        assert!(!format!("{:?}", w.sim.config()).contains("s3cret"));
    }

    #[cfg(unix)]
    #[test]
    fn a_space_quota_can_be_given() {
        let c = Wrapper::parse_from(["sim"]).sim.config();
        assert_eq!(c.space_quota, None);
        let c = Wrapper::parse_from(["sim", "--space-quota-memory", "400"])
            .sim
            .config();
        let q = c.space_quota.expect("a space quota");
        assert_eq!(
            (q.name.as_str(), q.total_memory_mb),
            ("sim-space", Some(400))
        );
        assert_eq!(q.instance_memory_mb, None);
    }

    #[test]
    fn generated_passwords_go_to_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let path = write_secret("p4ss").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        assert_eq!(text, "p4ss\n");
    }
}
