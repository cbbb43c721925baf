//! The local Cloud Foundry simulator: a stateful, in-process implementation of the Cloud
//! Controller v3 API subset that the plugin and `cf push` (cf CLI 7.3) use, a UAA token
//! endpoint, a Host-header router, and app instances that are real HTTP servers on loopback.
//! It is the test double of the end-to-end suite and the engine of `cf-zero-downtime demo`
//! and `cf-zero-downtime sim`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cf_zero_downtime::sim::Error> {
//! use cf_zero_downtime::sim::{Sim, SimConfig};
//! let sim = Sim::start(SimConfig::default()).await?;
//! println!("cf api {} --skip-ssl-validation", sim.api_url());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # What is modelled
//! * Discovery (`/`, `/v3`, `/v3/info`; `links.login`/`links.uaa`/`links.log_cache` point at the
//!   API server itself), UAA (`GET /login`, `POST /oauth/token` with the `password`,
//!   `refresh_token` and `client_credentials` grants; JWT-shaped tokens with `exp`, `iat`,
//!   `user_name`, `user_id`, `origin`, `client_id`, `scope`, signed with a per-simulator key),
//!   the seeded org and space, domains (shared `example.com` — the default domain —, internal
//!   `apps.internal`, TCP `tcp.example.com`).
//! * Apps: create, list (`names` case-insensitive and comma-split then percent-decoded,
//!   `guids`, `space_guids`, `organization_guids`, `label_selector`, `order_by`, pages), get,
//!   update (name unique per space, case-insensitive; metadata; lifecycle data), delete (job),
//!   start/stop/restart (422 without a droplet), environment variables (merge, `null` deletes),
//!   `/env` with `VCAP_SERVICES`/`VCAP_APPLICATION`, features, current droplet.
//! * `apply_manifest` (apps created synchronously, the rest applied with a job that stays
//!   PROCESSING for `job_polls` GETs): processes and `processes:` entries, scale, memory/disk/
//!   log rate, command, liveness/readiness health checks, buildpacks/stack, routes (CC's
//!   host/domain candidate algorithm, find-or-create, `no-route`, `random-route`,
//!   `default-route` when the app has no route), env merge, services by name (missing → job
//!   FAILED), metadata, features; validation errors are 422 with one entry per problem.
//!   `manifest_diff` validates the same way and answers `{"diff": []}`.
//! * Packages (bits: AWAITING_UPLOAD → multipart upload of `resources` + optional `bits` zip →
//!   PROCESSING_UPLOAD → READY after `package_polls` GETs; a second upload is
//!   `CF-PackageBitsAlreadyUploaded`; docker packages are READY at once), resource matches
//!   (every file the simulator has seen is in its SHA1 cache; `mode` is echoed), builds
//!   (STAGING → STAGED after `staging_delay`, or FAILED by fault), droplets (the package's
//!   files; `process_types` from a `Procfile`), processes (get, list, update, scale, stats with
//!   per-instance `state` STARTING/RUNNING/CRASHED/DOWN, `routable`, `instance_guid` (new on
//!   every (re)start), `uptime` (seconds since that start), `details`; no `pagination`;
//!   sidecars are always empty; killing one instance), routes (filters incl. empty `hosts=`/`paths=`,
//!   create with CC's validations and messages, update, delete as a job, delete unmapped),
//!   destinations (list, insert, replace, update protocol, delete → 204), user-provided service
//!   instances and app credential bindings, metadata labels and label selectors, networking v1
//!   policies (list/create/delete), and deployments (see `deployments.rs`): rolling and canary
//!   performed on the instances, `max_in_flight`, canary steps and PAUSED, continue, cancel,
//!   superseding.
//! * Audit events (`GET /v3/audit_events[/:guid]`, filters `types`, `target_guids`,
//!   `space_guids`, `organization_guids`, `created_ats` and `created_ats[lt|lte|gt|gte]`,
//!   `order_by`, pagination): `audit.app.process.crash` for every crash (actor = the process,
//!   target = the app, `data` with `index`, `instance`, `cell_id`, `exit_description`,
//!   `reason: CRASHED`, `exit_status`, `crash_count`, `crash_timestamp`), and
//!   `audit.app.create`/`update`/`start`/`stop`/`restart`/`delete-request` from the apps API
//!   (not from `apply_manifest`).
//! * Log-cache (`links.log_cache` = the API server): `GET /api/v1/info`, `GET
//!   /api/v1/read/:source_id` with `start_time`, `end_time`, `envelope_types`, `limit`,
//!   `descending`, answering Loggregator v2 envelopes in log-cache's JSON form from a per-app
//!   ring buffer of 5000 envelopes: staging lines (`STG`, the failure reason on failure), cell
//!   lines (`CELL`: creating container, container became healthy, stopping, `Exit status N` and
//!   destroying on a crash, `Timed out after ...: health check never passed.` on `ERR`), the
//!   crash line (`API`: `App instance exited with guid <app> payload: {...}`), a crash-on-start
//!   fault's stderr line (`APP/PROC/WEB`, `ERR`: `Error: the app crashed on start ...`), the output of
//!   process-lifecycle instances (`APP/PROC/WEB`, `OUT`/`ERR`, one envelope per line), and per
//!   routed request gorouter's `RTR` access line plus an `http` timer (tags `status_code`,
//!   `method`, `uri`, `peer_type`, `request_id`, ...; `instance_id` = the index).
//! * Protocol: CC JSON shapes, pagination (`per_page` 1..5000, absolute `first`/`last`/`next`/
//!   `previous` keeping the other query parameters), CC error bodies with CC codes and titles
//!   (`CF-ResourceNotFound` 10010, `CF-UnprocessableEntity` 10008, `CF-UniquenessError` 10016,
//!   `CF-BadQueryParameter` 10005, `CF-InvalidAuthToken` 1000, `CF-NotAuthenticated` 10002,
//!   `CF-NotFound` 10000 "Unknown request", ...), `X-Vcap-Request-Id` on every response,
//!   `X-Cf-Warnings` (by fault), 401 for missing, forged or expired tokens.
//! * Router: reverse proxy by Host header and longest path prefix to RUNNING, routable
//!   instances of the routes' destination processes (both `web` processes during a
//!   deployment), round robin per route, `X-Cf-App-Instance: <app-guid>:<index>` (400
//!   `invalid_cf_app_instance_header` when malformed, 404 `unknown_route` when the route has
//!   no such instance), `X-Cf-Process-Instance: <process-guid>[:<index>]`,
//!   404 `unknown_route`, 502 `endpoint_failure` (after up to three backends when connections
//!   fail), and a route-propagation delay: routing-table changes (mapping, unmapping,
//!   instances starting, crashing or stopping) become visible only after it.
//! * Instances: static-file lifecycle by default (serves the droplet's files, `/` is
//!   `index.html`, `/health` and the health-check endpoints answer 200); process lifecycle when
//!   the process has a command (manifest `command` or Procfile `web:`) and `run_commands` is
//!   set (`sh -c` in the extracted droplet with a cleared environment plus `PORT`, the app's
//!   env vars, `VCAP_APPLICATION`, `VCAP_SERVICES` and the rest of what Cloud Foundry gives an
//!   instance, in its own process group). Health checks `port`/`http`/`process` decide
//!   RUNNING, readiness decides `routable`. Crashes follow Diego: an exit, three failed
//!   liveness checks in a row, or a start-up health check that does not pass within the
//!   health-check timeout is a crash (audit event, log lines); the first
//!   `SimConfig::immediate_restarts` (3) crashes of an instance restart it at once with a new
//!   instance GUID (stats never show CRASHED, only STARTING again), later ones leave it CRASHED
//!   for `crash_backoff`, doubling per crash up to 16 times, then restart it. A stopped instance keeps serving for
//!   the route-propagation delay plus `stop_grace`, then ends (SIGTERM, `kill_grace`, SIGKILL to
//!   its process group). On Linux every process instance runs under a guard process that
//!   ends the instance and everything it started when the simulator ends, however it ends
//!   (see `procs.rs`).
//! * Stopping (see `stop.rs`): [`SimHandle::shutdown`], and in `sim` and `demo` SIGINT,
//!   SIGTERM or SIGHUP, stop every instance gracefully (SIGTERM, then SIGKILL after
//!   `kill_grace`) and remove the work directory; [`SimHandle::shutdown_or_now`] (a second
//!   signal) and dropping the handle end them at once. A simulator that starts ends the
//!   instance processes and removes the work directories that simulators that were killed
//!   left in the temp dir ([`SimHandle::swept`]).
//! * Quotas (see `quotas.rs`): the seeded space's space quota and the org's quota
//!   (`SimConfig::space_quota`/`org_quota`, or [`FaultSpec::SetQuota`] while running), shown by
//!   `GET /v3/space_quotas[/:guid]`, `GET /v3/organization_quotas[/:guid]`, the spaces' and
//!   orgs' `relationships.quota`, and `GET /v3/{spaces,organizations}/:guid/usage_summary`;
//!   enforced with Cloud Controller's 422 messages on start, scale, `apply_manifest`, new
//!   routes, builds (staging memory), deployment create and every scale-up of a rolling or
//!   canary deployment (refused scale-ups leave the deployment where it is, with the message
//!   in `status.details.error`, CAPI 3.192+).
//! * Fault injection and introspection: [`FaultInjector`] (`SimHandle::faults`) and, with
//!   `SimConfig::admin_api`, the admin API: `GET /_sim/state`, `GET|DELETE /_sim/calls`,
//!   `GET /_sim/router`, `POST /_sim/faults` (a JSON [`FaultSpec`] with a `kind` tag),
//!   `DELETE /_sim/faults`. The admin API needs the admin's access token from the simulator's
//!   UAA (`Authorization: bearer ...`, e.g. `SimHandle::token()` or `cf oauth-token`) and is
//!   absent when disabled. Faults: failing calls, staging, crashes on start (Diego model, or
//!   `stay_crashed` for the old always-CRASHED model), never-healthy instances
//!   (`NeverHealthy`: killed and restarted at the fault's health-check timeout), crashing one
//!   instance now, slow staging/starts, unhealthy, failing jobs, placement errors, warnings,
//!   optional APIs (audit events, log-cache, network policies) answering 403/404 or absent
//!   from `/`, a share of 5xx answers and slow answers through the router.
//!   Conventions for pushing a bad version: bits with a `.sim-fail-staging` file fail staging,
//!   a droplet with a `.sim-crash` file crashes on every start.
//! * Uploads: `resources[].path` values and zip entry names must be relative `/` paths without
//!   `..` components, backslashes, drive letters or NUL (422 naming the path otherwise).
//! * Safe to leave running on a shared machine: without an explicit password the simulator
//!   accepts only a random one (`cf-zero-downtime sim` writes it to a file only its owner can
//!   read and prints how to `cf auth` with it; on a non-loopback address it also warns); no
//!   request body is read before the request is authenticated, bodies are bounded
//!   (`SimConfig::max_upload_bytes` for package uploads, 16 MiB for other bodies, 64 KiB
//!   before login) and so is what an uploaded zip unzips to (`SimConfig::max_unzipped_bytes`);
//!   app instances start with a cleared environment plus what Cloud Foundry gives an instance
//!   (`PORT`, `VCAP_APPLICATION`, `VCAP_SERVICES`, `CF_INSTANCE_*`, `MEMORY_LIMIT`, `HOME`,
//!   `TMPDIR`, `LANG`, a minimal `PATH`, the app's env vars), never the simulator's own; the
//!   call log (`/_sim/calls`) masks bodies as `CF_TRACE` does (an `apply_manifest` YAML with
//!   interpolated secrets shows as `[application/x-yaml Content Hidden]`).
//!
//! # What differs from Cloud Foundry
//! * Quotas: a change is checked only when it asks for more memory, instances or routes
//!   (Cloud Controller refuses any save of a started process once usage is over a lowered
//!   limit); tasks do not count; log-rate, service and reserved-port limits are not modelled.
//! * Time is wall-clock based with small configurable delays (staging, start, propagation);
//!   jobs and packages advance per poll. Health-check invocations time out after 5 s unless the
//!   process sets `invocation_timeout` (CC's default is 1 s).
//! * One user (admin, every permission); no roles, rate limits (429 only by fault),
//!   isolation segments, tasks, sidecars, revisions (`revision` is always `null`), service
//!   brokers (user-provided service instances only), route services, TCP routing, TLS.
//! * Staging runs no buildpack: the droplet holds the package files; `process_types.web` comes
//!   from a `Procfile` or is empty. Docker droplets serve a placeholder page.
//! * `manifest_diff` always returns an empty diff; `GET /v3/apps/:guid/manifest` renders the
//!   main keys only (no sidecars, no readiness timings); droplet upload/copy and package
//!   download are not offered.
//! * Routes without a RUNNING instance are absent from the routing table (404), like a
//!   gorouter whose route emitter registered no endpoint. Router responses carry the
//!   simulator-specific `X-Sim-Backend: <process-guid>:<index>` header.
//! * Instance stats report loopback addresses and zero usage.
//! * Diego resets an instance's crash count after it has run for 5 minutes; the simulator
//!   never resets it. Back-offs are milliseconds, not Diego's 30 s .. 16 min.
//! * Audit events carry second-precision timestamps (as CC) and the admin user as actor;
//!   `apply_manifest`, routes and builds record none. Log-cache's 403 body is the
//!   simulator's own; envelopes other than LOG and TIMER are never produced. RTR lines and
//!   timers are written when the response headers arrive (the byte count is the
//!   `Content-Length`, 0 when streamed).
//! * The token signature is HMAC-SHA1 under a random key although the header says `HS256`;
//!   only the simulator verifies it.
//!
//! Depends on: axum, hyper, reqwest, tokio, zip, sha1; `cf::trace`'s body masking, so the call
//! log hides what a `CF_TRACE` dump hides. Must not: use other layers of the crate.

mod api;
mod deployments;
mod fault_switches;
mod faults;
mod instances;
mod procs;
mod quotas;
mod router;
mod staging;
mod state;
mod stop;
mod tasks;
mod telemetry;
mod uaa;
mod util;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use fault_switches::{FailRule, OptionalApi, Unavailable};
pub use faults::{FaultInjector, FaultSpec};
pub use procs::Swept;
pub use quotas::QuotaScope;
pub use state::{CallRecord, QuotaSpec};
pub use stop::{StopSignals, Stopped};

use state::State;

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listening socket could not be bound.
    #[error("simulator: cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Another I/O failure at start-up (work directory, local address).
    #[error("simulator: {what}")]
    Io {
        /// What was being done.
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client used for health checks and the router could not be built.
    #[error("simulator: cannot build the http client")]
    Http(#[source] reqwest::Error),
}

/// Knobs of the simulator. `Default` gives small delays suited to tests. `Debug` hides the
/// password.
#[derive(Clone)]
pub struct SimConfig {
    /// Address to bind both servers to (default 127.0.0.1).
    pub bind: IpAddr,
    /// API (and UAA) port; 0 = any free port.
    pub api_port: u16,
    /// Router port; 0 = any free port.
    pub router_port: u16,
    /// The shared app domain (default `example.com`); routes are matched by Host header.
    pub app_domain: String,
    /// Seeded org name (default `org`).
    pub org: String,
    /// Seeded space name (default `space`).
    pub space: String,
    /// Accepted user name (default `admin`).
    pub username: String,
    /// Accepted password (and `client_credentials` secret). The default is random, made anew
    /// by every `SimConfig::default()`: read it back with `SimHandle::admin()`.
    pub password: String,
    /// `links.cloud_controller_v3.meta.version` (default `3.190.0`).
    pub api_version: String,
    /// Time a build stays STAGING.
    pub staging_delay: Duration,
    /// Time an instance needs before its first health check.
    pub start_delay: Duration,
    /// Time before routing-table changes become visible to the router.
    pub route_propagation: Duration,
    /// Interval between start-up health checks.
    pub health_check_interval: Duration,
    /// Interval between liveness (and readiness) checks of RUNNING instances.
    pub liveness_interval: Duration,
    /// How long a stopped instance keeps serving after the route-propagation delay.
    pub stop_grace: Duration,
    /// Process lifecycle: time between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Crashes of an instance after which Diego restarts it at once (default 3, like Diego);
    /// later crashes wait `crash_backoff`, doubling per crash up to 16 times it, showing
    /// CRASHED meanwhile.
    pub immediate_restarts: u32,
    /// First back-off before a crashed instance is restarted, once its immediate restarts are
    /// used up.
    pub crash_backoff: Duration,
    /// Start-up health-check timeout when the process sets none.
    pub health_check_timeout: Duration,
    /// Interval of the reconcile loop (instances, deployments, routing table).
    pub tick: Duration,
    /// How often rolling and canary deployments move on (Cloud Controller's deployment
    /// updater: `deployment_updater.update_frequency_in_seconds`, 5 s by default in
    /// capi-release); at least one tick.
    pub deployment_update_interval: Duration,
    /// Lifetime of issued access tokens.
    pub token_ttl: Duration,
    /// GETs a job stays PROCESSING.
    pub job_polls: u32,
    /// GETs a package stays PROCESSING_UPLOAD.
    pub package_polls: u32,
    /// Run process commands (process lifecycle). When false every instance is static-file.
    pub run_commands: bool,
    /// Mount the `/_sim/` admin API (fault injection, state dump, call log).
    pub admin_api: bool,
    /// Largest multipart (package upload) request body accepted, in bytes (default 1 GiB,
    /// Cloud Controller's default `max_package_size`); other bodies are bounded far lower,
    /// and no body is read before its request is authenticated.
    pub max_upload_bytes: usize,
    /// Most bytes the files of one uploaded zip may unzip to, all entries together (default
    /// 1 GiB); each entry is read only up to what is left.
    pub max_unzipped_bytes: u64,
    /// The seeded space's space quota (`None`: no space quota, as a new space has).
    pub space_quota: Option<QuotaSpec>,
    /// The seeded org's organization quota (`None`: an unlimited quota named `default`).
    pub org_quota: Option<QuotaSpec>,
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("bind", &self.bind)
            .field("api_port", &self.api_port)
            .field("router_port", &self.router_port)
            .field("app_domain", &self.app_domain)
            .field("org", &self.org)
            .field("space", &self.space)
            .field("username", &self.username)
            .field("password", &"***")
            .field("api_version", &self.api_version)
            .field("staging_delay", &self.staging_delay)
            .field("start_delay", &self.start_delay)
            .field("route_propagation", &self.route_propagation)
            .field("health_check_interval", &self.health_check_interval)
            .field("liveness_interval", &self.liveness_interval)
            .field("stop_grace", &self.stop_grace)
            .field("kill_grace", &self.kill_grace)
            .field("immediate_restarts", &self.immediate_restarts)
            .field("crash_backoff", &self.crash_backoff)
            .field("health_check_timeout", &self.health_check_timeout)
            .field("tick", &self.tick)
            .field(
                "deployment_update_interval",
                &self.deployment_update_interval,
            )
            .field("token_ttl", &self.token_ttl)
            .field("job_polls", &self.job_polls)
            .field("package_polls", &self.package_polls)
            .field("run_commands", &self.run_commands)
            .field("admin_api", &self.admin_api)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("max_unzipped_bytes", &self.max_unzipped_bytes)
            .field("space_quota", &self.space_quota)
            .field("org_quota", &self.org_quota)
            .finish()
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            api_port: 0,
            router_port: 0,
            app_domain: "example.com".to_string(),
            org: "org".to_string(),
            space: "space".to_string(),
            username: "admin".to_string(),
            password: random_password(),
            api_version: "3.190.0".to_string(),
            staging_delay: Duration::from_millis(30),
            start_delay: Duration::from_millis(20),
            route_propagation: Duration::from_millis(20),
            health_check_interval: Duration::from_millis(10),
            liveness_interval: Duration::from_millis(100),
            stop_grace: Duration::from_millis(100),
            kill_grace: Duration::from_millis(500),
            immediate_restarts: 3,
            crash_backoff: Duration::from_millis(50),
            health_check_timeout: Duration::from_secs(10),
            tick: Duration::from_millis(10),
            deployment_update_interval: Duration::from_millis(10),
            token_ttl: Duration::from_secs(3600),
            job_polls: 1,
            package_polls: 1,
            run_commands: true,
            admin_api: false,
            max_upload_bytes: 1 << 30,
            max_unzipped_bytes: 1 << 30,
            space_quota: None,
            org_quota: None,
        }
    }
}

/// A password nobody can guess: 128 random bits as 32 hex digits. The simulator never
/// accepts a well-known default: another local user could log in and run commands as its
/// owner.
pub(crate) fn random_password() -> String {
    format!("{:016x}{:016x}", util::random_u64(), util::random_u64())
}

/// State shared by the servers, the reconcile loop and the handle.
pub(crate) struct Shared {
    pub config: SimConfig,
    pub base_url: String,
    pub router_addr: SocketAddr,
    pub org_guid: String,
    pub space_guid: String,
    state: Mutex<State>,
    pub router: router::Table,
    /// Cancelled when the simulator stops (gracefully).
    pub cancel: CancellationToken,
    /// Cancelled when the stop is hurried: whatever still runs ends at once.
    pub hurry: CancellationToken,
    pub tasks: TaskTracker,
    pub secret: String,
    pub work_dir: tempfile::TempDir,
    /// What the start-up sweep ended of simulators that did not stop.
    pub swept: Vec<Swept>,
    pub http: reqwest::Client,
    /// Keep-alive client for http health checks (fewer sockets than one per check).
    pub health_http: reqwest::Client,
}

impl Shared {
    /// Locks the model. A poisoned lock is recovered: the model stays usable after a panic
    /// in another task.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes the work directory (droplets, process records) once the instances have ended.
    /// The `TempDir` would do it when the last reference goes, which may be later than the
    /// process's exit.
    pub fn remove_work_dir(&self) {
        match std::fs::remove_dir_all(self.work_dir.path()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                "cannot remove the work directory {}: {e}",
                self.work_dir.path().display()
            ),
        }
    }

    /// A JSON snapshot of apps, processes, instances, routes, deployments, the routing table
    /// and the call log.
    pub fn state_dump(&self) -> Value {
        let router = self.router.dump();
        let st = self.lock();
        let apps: Vec<Value> = st
            .apps
            .iter()
            .map(|a| {
                json!({"guid": a.meta.guid, "name": a.name, "state": if a.started {"STARTED"} else {"STOPPED"},
                       "droplet": a.droplet_guid, "labels": a.meta.labels, "env": a.env})
            })
            .collect();
        let processes: Vec<Value> = st
            .processes
            .iter()
            .map(|p| {
                json!({"guid": p.meta.guid, "app": p.app_guid, "type": p.kind, "instances": p.instances,
                       "droplet": p.droplet_guid, "command": p.command, "health_check": p.health.kind})
            })
            .collect();
        let instances: Vec<Value> = st
            .instances
            .iter()
            .map(|i| {
                json!({"guid": i.guid, "process": i.process_guid, "app": i.app_guid, "index": i.index,
                       "state": i.state.as_str(), "routable": i.routable, "port": i.port,
                       "crash_count": i.crash_count})
            })
            .collect();
        let routes: Vec<Value> = st
            .routes
            .iter()
            .map(|r| {
                json!({"guid": r.meta.guid, "url": st.route_url(r),
                       "apps": r.destinations.iter().map(|d| d.app_guid.clone()).collect::<Vec<_>>()})
            })
            .collect();
        let deployments: Vec<Value> = st
            .deployments
            .iter()
            .map(|d| {
                let (value, reason) = d.state.status();
                json!({"guid": d.meta.guid, "app": d.app_guid, "strategy": d.strategy,
                       "status": value, "reason": reason, "new_process": d.new_process,
                       "droplet": d.droplet_guid, "previous_droplet": d.previous_droplet})
            })
            .collect();
        json!({
            "apps": apps, "processes": processes, "instances": instances, "routes": routes,
            "deployments": deployments, "router": router,
            "calls": serde_json::to_value(&st.calls).unwrap_or_default(),
        })
    }
}

/// Starts simulators.
#[derive(Debug)]
pub struct Sim;

impl Sim {
    /// Starts the API server and the router on `config`'s ports (0 = free ports) and the
    /// reconcile loop, all on the current tokio runtime.
    ///
    /// First it ends what simulators that did not stop (SIGKILL, OOM) left in the temp dir:
    /// their instance processes and work directories, nothing else (see
    /// [`SimHandle::swept`]).
    ///
    /// # Errors
    /// A port cannot be bound, or the work directory cannot be created.
    pub async fn start(config: SimConfig) -> Result<SimHandle, Error> {
        let api_addr = SocketAddr::new(config.bind, config.api_port);
        let api_listener = TcpListener::bind(api_addr)
            .await
            .map_err(|source| Error::Bind {
                addr: api_addr,
                source,
            })?;
        let router_bind = SocketAddr::new(config.bind, config.router_port);
        let router_listener =
            TcpListener::bind(router_bind)
                .await
                .map_err(|source| Error::Bind {
                    addr: router_bind,
                    source,
                })?;
        let api_local = api_listener.local_addr().map_err(|source| Error::Io {
            what: "cannot read the api address",
            source,
        })?;
        let router_addr = router_listener.local_addr().map_err(|source| Error::Io {
            what: "cannot read the router address",
            source,
        })?;
        let root = std::env::temp_dir();
        let swept = tokio::task::spawn_blocking(move || procs::sweep(&root))
            .await
            .unwrap_or_else(|e| {
                tracing::warn!("the sweep of the temp dir failed: {e}");
                Vec::new()
            });
        let work_dir = tempfile::Builder::new()
            .prefix(procs::WORK_PREFIX)
            .tempdir()
            .map_err(|source| Error::Io {
                what: "cannot create the droplet work directory",
                source,
            })?;
        procs::claim(work_dir.path()).map_err(|source| Error::Io {
            what: "cannot mark the work directory as this simulator's",
            source,
        })?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .connect_timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(Error::Http)?;
        let health_http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(Error::Http)?;
        let mut st = State::default();
        let (org_guid, space_guid) = seed(&mut st, &config);
        let shared = Arc::new(Shared {
            base_url: format!("http://{api_local}"),
            router_addr,
            org_guid,
            space_guid,
            state: Mutex::new(st),
            router: router::Table::new(config.route_propagation),
            cancel: CancellationToken::new(),
            hurry: CancellationToken::new(),
            tasks: TaskTracker::new(),
            secret: format!("{:016x}{:016x}", util::random_u64(), util::random_u64()),
            work_dir,
            swept,
            http,
            health_http,
            config,
        });
        let app = api::routes(&shared);
        let cancel = shared.cancel.clone();
        shared.tasks.spawn(async move {
            let server = axum::serve(api_listener, app)
                .with_graceful_shutdown(async move { cancel.cancelled().await });
            if let Err(e) = server.await {
                tracing::warn!("simulator api server ended: {e}");
            }
        });
        shared
            .tasks
            .spawn(router::serve(shared.clone(), router_listener));
        shared.tasks.spawn(reconcile_loop(shared.clone()));
        Ok(SimHandle { shared })
    }
}

async fn reconcile_loop(shared: Arc<Shared>) {
    // `interval` panics on a zero period.
    let mut tick = tokio::time::interval(shared.config.tick.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_update: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = shared.cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let due =
            last_update.is_none_or(|t| t.elapsed() >= shared.config.deployment_update_interval);
        if due {
            last_update = Some(tokio::time::Instant::now());
            deployments::advance(&shared);
        }
        instances::reconcile(&shared);
        shared.router.refresh(&shared);
    }
}

fn seed(st: &mut State, config: &SimConfig) -> (String, String) {
    let meta = st.meta();
    let org_guid = meta.guid.clone();
    st.orgs.push(state::Org {
        meta,
        name: config.org.clone(),
        quota_guid: None,
    });
    let meta = st.meta();
    let space_guid = meta.guid.clone();
    st.spaces.push(state::Space {
        meta,
        name: config.space.clone(),
        org_guid: org_guid.clone(),
        quota_guid: None,
    });
    quotas::set_quota(st, QuotaScope::Org, &space_guid, config.org_quota.clone());
    quotas::set_quota(
        st,
        QuotaScope::Space,
        &space_guid,
        config.space_quota.clone(),
    );
    for (name, internal, tcp) in [
        (config.app_domain.as_str(), false, false),
        ("apps.internal", true, false),
        ("tcp.example.com", false, true),
    ] {
        let meta = st.meta();
        st.domains.push(state::Domain {
            meta,
            name: name.to_string(),
            internal,
            tcp,
            router_group: tcp.then(util::new_guid),
            org_guid: None,
        });
    }
    (org_guid, space_guid)
}

/// The user the simulator accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminUser {
    /// User name.
    pub username: String,
    /// Password (not shown by `Debug`).
    pub password: String,
}

impl std::fmt::Debug for AdminUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminUser")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// A running simulator. Dropping it stops the servers and ends the instances at once (best
/// effort); call [`SimHandle::shutdown`] to stop gracefully and wait for the end.
pub struct SimHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("api_url", &self.shared.base_url)
            .field("router_addr", &self.shared.router_addr)
            .finish()
    }
}

impl SimHandle {
    /// The API base URL (`http://127.0.0.1:PORT`), also the UAA/login URL.
    pub fn api_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The router's address.
    pub fn router_addr(&self) -> SocketAddr {
        self.shared.router_addr
    }

    /// The router's URL (`http://127.0.0.1:PORT`); send requests with a `Host` header of a route.
    pub fn router_url(&self) -> String {
        format!("http://{}", self.shared.router_addr)
    }

    /// The shared app domain (default `example.com`).
    pub fn app_domain(&self) -> String {
        self.shared.config.app_domain.clone()
    }

    /// The accepted user.
    pub fn admin(&self) -> AdminUser {
        AdminUser {
            username: self.shared.config.username.clone(),
            password: self.shared.config.password.clone(),
        }
    }

    /// A valid admin access token as the cf CLI stores it: `bearer <jwt>`.
    pub fn token(&self) -> String {
        format!(
            "bearer {}",
            uaa::issue_access(&self.shared, self.shared.config.token_ttl)
        )
    }

    /// An admin token whose `exp` has already passed (the API answers 401 CF-InvalidAuthToken).
    pub fn expired_token(&self) -> String {
        format!("bearer {}", uaa::issue_expired(&self.shared))
    }

    /// A refresh token for the `refresh_token` grant.
    pub fn refresh_token(&self) -> String {
        uaa::issue_refresh(&self.shared)
    }

    /// Seeded org name.
    pub fn org_name(&self) -> String {
        self.shared.config.org.clone()
    }

    /// Seeded org GUID.
    pub fn org_guid(&self) -> String {
        self.shared.org_guid.clone()
    }

    /// Seeded space name.
    pub fn space_name(&self) -> String {
        self.shared.config.space.clone()
    }

    /// Seeded space GUID.
    pub fn space_guid(&self) -> String {
        self.shared.space_guid.clone()
    }

    /// The admin API's base URL (`.../_sim`) when it is enabled.
    pub fn admin_url(&self) -> Option<String> {
        self.shared
            .config
            .admin_api
            .then(|| format!("{}/_sim", self.shared.base_url))
    }

    /// Fault injection.
    pub fn faults(&self) -> FaultInjector {
        FaultInjector {
            shared: self.shared.clone(),
        }
    }

    /// A JSON snapshot: apps, processes, instances, routes, deployments, the router's
    /// published and pending tables, and the API call log.
    pub fn state_dump(&self) -> Value {
        self.shared.state_dump()
    }

    /// Every API call so far (admin API calls excluded), oldest first.
    pub fn call_log(&self) -> Vec<CallRecord> {
        self.shared.lock().calls.clone()
    }

    /// Forgets the call log.
    pub fn clear_call_log(&self) {
        self.shared.lock().calls.clear();
    }

    /// The routing table the router currently uses: `(url, backends)` where a backend is
    /// `process_guid:index`. Changes reach it only after the route-propagation delay.
    pub fn router_table(&self) -> Vec<(String, Vec<String>)> {
        self.shared.router.published_summary()
    }

    /// Changes the router's route-propagation delay from now on (changes already queued
    /// become visible `delay` after they happened).
    pub fn set_route_propagation(&self, delay: Duration) {
        self.shared.router.set_delay(delay);
    }

    /// Routing-table changes that are not yet visible to the router.
    pub fn pending_route_changes(&self) -> usize {
        self.shared.router.pending_len()
    }

    /// Creates a user-provided service instance in the seeded space; returns its GUID.
    pub fn create_user_provided_service(&self, name: &str, credentials: Value) -> String {
        let mut st = self.shared.lock();
        let meta = st.meta();
        let guid = meta.guid.clone();
        st.service_instances.push(state::ServiceInstance {
            meta,
            name: name.to_string(),
            space_guid: self.shared.space_guid.clone(),
            kind: "user-provided".to_string(),
            credentials,
            tags: Vec::new(),
        });
        guid
    }

    /// What this simulator's start ended of simulators that did not stop.
    pub fn swept(&self) -> &[Swept] {
        &self.shared.swept
    }

    /// How long a process instance gets between SIGTERM and SIGKILL, also when the simulator
    /// stops.
    pub fn kill_grace(&self) -> Duration {
        self.shared.config.kill_grace
    }

    /// Stops the simulator gracefully (instances get SIGTERM, then SIGKILL after the kill
    /// grace; the work directory is removed) and waits for it.
    pub async fn shutdown(self) {
        self.shutdown_or_now(std::future::pending()).await;
    }

    /// Stops the simulator at once: every instance is killed (with everything it started),
    /// the work directory removed.
    pub async fn shutdown_now(self) {
        self.shutdown_or_now(std::future::ready(())).await;
    }

    /// Stops the simulator gracefully, or at once from the moment `now` resolves (a second
    /// signal); says which it was.
    pub async fn shutdown_or_now(self, now: impl std::future::Future<Output = ()>) -> Stopped {
        stop::stop(&self.shared, now).await
    }
}

impl Drop for SimHandle {
    /// Without a `shutdown` (a test that ends early, a panic): ends everything at once. The
    /// instance tasks end their processes if the runtime goes on; if it does not, dropping
    /// them does.
    fn drop(&mut self) {
        self.shared.hurry.cancel();
        self.shared.cancel.cancel();
    }
}
