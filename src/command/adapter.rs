//! The real Cloud Controller behind the deploy layer: [`CfBackend`] implements
//! [`CfApi`] over `cf::Client`, and `package::BitsApi` so `package::push_bits` uploads through it.
//!
//! Every internal wait (jobs of `apply_manifest` and deletes, package processing) polls with the
//! backend's own [`PollOptions`] (1 s by default; the simulator wants ~50 ms) and is bounded by
//! its timeout. `cf::Error` becomes [`ApiError`] with the HTTP status, the first CF error's code
//! and title, every detail, and the request id; transport failures and request timeouts become
//! [`ApiError::transport`]. The docker password (`CF_DOCKER_PASSWORD`) is held as a secret and
//! only ever sent in the package body.
//!
//! Depends on: cf (client), package (bits), deploy::api. Must not: print or decide anything.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::cf::guid::{
    AppGuid, BuildGuid, DeploymentGuid, DestinationGuid, DomainGuid, DropletGuid, OrganizationGuid,
    PackageGuid, ProcessGuid, RouteGuid, ServiceCredentialBindingGuid, ServiceInstanceGuid,
    SpaceGuid, TaskGuid,
};
use crate::cf::{self, PollOptions};
use crate::package;

use crate::deploy::api::{
    ApiError, ApiResult, App, AppLifecycle, AppSource, AppState, BuildState, CfApi, Destination,
    Domain, InstanceStat, InstanceState, MappedRoutes, MetadataUpdate, NetworkPolicy, NewApp,
    NewDestination, NewRoute, Process, ProgressSink, QuotaLevel, QuotaLimits, QuotaUsage, Quotas,
    Route, RouteState,
};
use crate::deploy::api::{
    Deployment, DeploymentState, DeploymentStrategy, NewDeployment, ServiceBinding,
};
use crate::deploy::api::{NewTask, TaskState};
use crate::deploy::budget::{self, Phase, Requests, Tally};
use crate::deploy::event::error_chain;

/// Default pause between polls of jobs and packages (real Cloud Controller).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default bound of one internal wait (a job, a package becoming READY).
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The deploy layer's view of a real Cloud Controller: a `cf::Client` plus the targeted space
/// and org. Cheap to share by reference; the client's warning buffer is internal.
pub struct CfBackend {
    client: cf::Client,
    space_guid: SpaceGuid,
    org_guid: Option<OrganizationGuid>,
    poll: PollOptions,
    docker_password: Option<SecretString>,
    /// Crash-record sources found absent or forbidden: not asked again at every health poll.
    gone: std::sync::Mutex<GoneSources>,
    /// The client's requests by deploy phase (the call budget), counted as they are sent.
    tally: Arc<std::sync::Mutex<Tally>>,
}

/// Which optional crash-record sources answered "not here for you" once already, with what
/// they answered (named again in every answer, so that the caller knows it has no records).
#[derive(Debug, Default, Clone)]
struct GoneSources {
    audit_events: Option<String>,
    log_cache: Option<String>,
}

impl std::fmt::Debug for CfBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CfBackend")
            .field("api", &self.client.api_endpoint().as_str())
            .field("space_guid", &self.space_guid)
            .field("org_guid", &self.org_guid)
            .field("poll", &self.poll)
            .field(
                "docker_password",
                &self.docker_password.as_ref().map(|_| "<hidden>"),
            )
            .finish()
    }
}

impl CfBackend {
    /// A backend for `space_guid` (and `org_guid`, for the default domain; `None` means no
    /// default domain), polling every [`DEFAULT_POLL_INTERVAL`] for at most
    /// [`DEFAULT_WAIT_TIMEOUT`], without a docker password.
    pub fn new(
        client: cf::Client,
        space_guid: impl Into<SpaceGuid>,
        org_guid: Option<OrganizationGuid>,
    ) -> Self {
        // The requests sent before this backend (discovery) are the preflight's.
        let tally = Arc::new(std::sync::Mutex::new(Tally::after(client.requests_sent())));
        let counting = Arc::clone(&tally);
        client.observe_sends(move || {
            if let Ok(mut t) = counting.lock() {
                t.count(budget::step_phase());
            }
        });
        CfBackend {
            client,
            space_guid: space_guid.into(),
            org_guid,
            poll: PollOptions::new(DEFAULT_POLL_INTERVAL, DEFAULT_WAIT_TIMEOUT),
            docker_password: None,
            gone: std::sync::Mutex::new(GoneSources::default()),
            tally,
        }
    }

    /// The same, with another poll interval and bound for internal waits.
    #[must_use]
    pub fn with_poll(mut self, interval: Duration, timeout: Duration) -> Self {
        self.poll =
            PollOptions::new(interval, timeout).starting_at(crate::deploy::wait::FIRST_POLL);
        self
    }

    /// The same, with the registry password for docker packages (`CF_DOCKER_PASSWORD`).
    #[must_use]
    pub fn with_docker_password(mut self, password: Option<SecretString>) -> Self {
        self.docker_password = password;
        self
    }

    /// The space this backend deploys to.
    pub fn space_guid(&self) -> &SpaceGuid {
        &self.space_guid
    }

    pub fn client(&self) -> &cf::Client {
        &self.client
    }

    /// Runs a create (a non-idempotent POST) whose answer may be lost in an outage: when it
    /// fails in a way that may have been applied, `find` reads whether the resource exists
    /// (then that is the answer: the create was applied); when it does not, the create is sent
    /// again, until the outage budget is spent. A create is never repeated without that read.
    async fn create_reconciled<T, C, CF, F, FF>(
        &self,
        what: &str,
        mut create: C,
        mut find: F,
    ) -> Result<T, cf::Error>
    where
        C: FnMut() -> CF,
        CF: std::future::Future<Output = Result<T, cf::Error>>,
        F: FnMut() -> FF,
        FF: std::future::Future<Output = Result<Option<T>, cf::Error>>,
    {
        let started = std::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            // Boxed: the deploy's futures nest every adapter call; keep this one small.
            let err = match Box::pin(create()).await {
                Ok(t) => return Ok(t),
                Err(e) if e.may_have_been_applied() && e.is_transient() => e,
                Err(e) => return Err(e),
            };
            tracing::debug!(target: "cf::http", what, "create may have been applied; reading");
            // The read waits out the outage by itself (it is idempotent).
            match Box::pin(find()).await {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                // The state cannot be read: the create's own error is the one to report.
                Err(_) => return Err(err),
            }
            let wait = cf::RetryPolicy::default().jittered(attempt, None, fastrand::f64());
            if started.elapsed().saturating_add(wait) > self.client.outage_budget() {
                return Err(err);
            }
            attempt += 1;
            tokio::time::sleep(wait).await;
        }
    }
}

// ---- quotas ----

/// Any 404: a missing resource, or an endpoint this Cloud Controller does not have
/// (`CF-NotFound` "Unknown request").
fn is_404(e: &cf::Error) -> bool {
    matches!(e, cf::Error::Api(a) if a.status == 404)
}

/// A level whose quota or usage cannot be read: `Ok(Unknown)` when the platform says "not for
/// you" (absent, 403, 404), else the error.
fn unknown_level(what: &str, e: &cf::Error) -> ApiResult<QuotaLevel> {
    if e.is_unavailable_optional() || is_404(e) {
        Ok(QuotaLevel::Unknown(format!(
            "{what} cannot be read ({})",
            api_error(e)
        )))
    } else {
        Err(api_error(e))
    }
}

fn limits(q: cf::Quota) -> QuotaLimits {
    QuotaLimits {
        name: q.name,
        total_memory_mb: q.apps.total_memory_in_mb,
        instance_memory_mb: q.apps.per_process_memory_in_mb,
        total_instances: q.apps.total_instances,
        total_routes: q.routes.total_routes,
    }
}

fn usage(u: cf::UsageSummary) -> QuotaUsage {
    QuotaUsage {
        memory_mb: u.memory_in_mb,
        instances: u.started_instances,
        routes: u.routes,
    }
}

impl CfBackend {
    /// The space's usage: its usage summary, or (a Cloud Controller without one answers 404)
    /// the sum over its started apps' processes and its routes.
    async fn space_usage(&self, space: &SpaceGuid) -> Result<QuotaUsage, cf::Error> {
        match self.client.get_space_usage_summary(space).await {
            Ok(u) => return Ok(usage(u)),
            Err(e) if is_404(&e) => {}
            Err(e) => return Err(e),
        }
        let started: std::collections::BTreeSet<AppGuid> = self
            .client
            .list_apps(&cf::AppQuery::default().space_guids([space.clone()]))
            .await?
            .into_iter()
            .filter(|a| a.state == cf::AppState::Started)
            .map(|a| a.guid)
            .collect();
        let mut u = QuotaUsage::default();
        for p in self.client.list_space_processes(space).await? {
            if p.relationships
                .app
                .guid()
                .is_some_and(|a| started.contains(a))
            {
                let memory = p.memory_in_mb.unwrap_or(0);
                u.memory_mb = u
                    .memory_mb
                    .saturating_add(memory.saturating_mul(u64::from(p.instances)));
                u.instances = u.instances.saturating_add(u64::from(p.instances));
            }
        }
        let routes = self
            .client
            .list_routes(&cf::RouteQuery {
                space_guids: vec![space.clone()],
                ..cf::RouteQuery::default()
            })
            .await?;
        u.routes = Some(routes.len() as u64);
        Ok(u)
    }

    /// The space quota's level (`None`: no space quota assigned).
    async fn space_level(
        &self,
        space: &SpaceGuid,
        quota: Option<&cf::SpaceQuotaGuid>,
    ) -> ApiResult<QuotaLevel> {
        let Some(q) = quota else {
            return Ok(QuotaLevel::Unlimited);
        };
        let q = match self.client.get_space_quota(q).await {
            Ok(q) => q,
            Err(e) => return unknown_level("the space quota", &e),
        };
        match self.space_usage(space).await {
            Ok(u) => Ok(QuotaLevel::Limited {
                limits: limits(q),
                usage: u,
            }),
            Err(e) => unknown_level("the space's usage", &e),
        }
    }

    /// The org quota's level; `included` is the organization when the space's answer
    /// included it (read here otherwise).
    async fn org_level(
        &self,
        org: Option<&OrganizationGuid>,
        included: Option<cf::Organization>,
    ) -> ApiResult<QuotaLevel> {
        let Some(org) = org else {
            return Ok(QuotaLevel::Unknown(
                "the space names no organization".to_string(),
            ));
        };
        let o = match included {
            Some(o) => o,
            None => match self.client.get_organization(org).await {
                Ok(o) => o,
                Err(e) => return unknown_level("the organization", &e),
            },
        };
        let Some(q) = o.relationships.quota.guid() else {
            return Ok(QuotaLevel::Unlimited);
        };
        let q = match self.client.get_organization_quota(q).await {
            Ok(q) => q,
            Err(e) => return unknown_level("the organization quota", &e),
        };
        match self.client.get_organization_usage_summary(org).await {
            Ok(u) => Ok(QuotaLevel::Limited {
                limits: limits(q),
                usage: usage(u),
            }),
            Err(e) => unknown_level("the organization's usage", &e),
        }
    }
}

// ---- error mapping ----

impl From<cf::Error> for ApiError {
    fn from(e: cf::Error) -> Self {
        api_error(&e)
    }
}

/// `items` converted one by one into the deploy layer's type.
fn converted<T, U>(items: Vec<T>, convert: impl FnMut(T) -> U) -> Vec<U> {
    items.into_iter().map(convert).collect()
}

/// Maps a client error onto the deploy layer's [`ApiError`].
pub fn api_error(e: &cf::Error) -> ApiError {
    match e {
        cf::Error::Api(a) => {
            let first = a.errors.first();
            let mut details: Vec<String> = a
                .errors
                .iter()
                .map(|c| c.detail.trim().to_string())
                .filter(|d| !d.is_empty())
                .collect();
            if details.is_empty()
                && let Some(body) = a.body.as_deref().map(str::trim).filter(|b| !b.is_empty())
            {
                details.push(body.to_string());
            }
            let detail = if details.is_empty() {
                a.endpoint.clone()
            } else {
                format!("{}: {}", a.endpoint, details.join("; "))
            };
            ApiError {
                status: Some(a.status),
                code: first.map(|c| c.code).filter(|c| *c != 0),
                title: first
                    .map(|c| c.title.clone())
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| "HTTP error".to_string()),
                detail,
                request_id: a.request_id.clone(),
            }
        }
        cf::Error::Http { .. } | cf::Error::Timeout { .. } => ApiError::transport(error_chain(e)),
        cf::Error::Unavailable { .. } => ApiError::unavailable(e.to_string()),
        cf::Error::Auth(_) => ApiError {
            title: "authentication".into(),
            detail: format!("{}; log in again with 'cf login'", error_chain(e)),
            ..ApiError::default()
        },
        cf::Error::JobFailed { errors, .. } => {
            let first = errors.first();
            ApiError {
                status: None,
                code: first.map(|c| c.code).filter(|c| *c != 0),
                title: first
                    .map(|c| c.title.clone())
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| "job failed".to_string()),
                detail: e.to_string(),
                request_id: None,
            }
        }
        cf::Error::Decode { request_id, .. } => ApiError {
            title: "unexpected response".into(),
            detail: error_chain(e),
            request_id: request_id.clone(),
            ..ApiError::default()
        },
        cf::Error::PollTimeout { .. } => ApiError {
            title: "timeout".into(),
            detail: e.to_string(),
            ..ApiError::default()
        },
        cf::Error::PackageFailed { .. } => ApiError {
            title: "package failed".into(),
            detail: e.to_string(),
            ..ApiError::default()
        },
        cf::Error::StagingFailed { .. } => ApiError {
            title: "staging failed".into(),
            detail: e.to_string(),
            ..ApiError::default()
        },
        _ => ApiError {
            title: "client".into(),
            detail: error_chain(e),
            ..ApiError::default()
        },
    }
}

/// Maps a `package` error (scan, zip, or an API error boxed by [`package::push_bits`]) onto
/// [`ApiError`], keeping the status and request id of an API failure.
pub fn bits_error(e: &package::Error) -> ApiError {
    let (what, source) = match e {
        package::Error::ResourceMatch {
            chunk,
            chunks,
            source,
        } => (
            format!("resource match (chunk {chunk} of {chunks})"),
            Some(source),
        ),
        package::Error::Upload {
            package_guid,
            source,
        } => (format!("upload of package {package_guid}"), Some(source)),
        _ => (String::new(), None),
    };
    if let Some(api) = source.and_then(|s| s.downcast_ref::<ApiError>()) {
        let mut mapped = api.clone();
        mapped.detail = if mapped.detail.is_empty() {
            what
        } else {
            format!("{what}: {}", mapped.detail)
        };
        return mapped;
    }
    ApiError {
        title: "app bits".into(),
        detail: error_chain(e),
        ..ApiError::default()
    }
}

// ---- resource mapping ----

fn app(a: cf::App) -> App {
    App {
        guid: a.guid,
        name: a.name,
        state: match a.state {
            cf::AppState::Started => AppState::Started,
            _ => AppState::Stopped,
        },
        labels: a.metadata.labels,
        annotations: a.metadata.annotations,
    }
}

fn route(r: cf::Route) -> Route {
    Route {
        guid: r.guid,
        domain_guid: r
            .relationships
            .domain
            .guid()
            .cloned()
            .unwrap_or_else(|| DomainGuid::new("")),
        host: r.host,
        path: r.path,
        port: r.port,
        url: r.url,
    }
}

/// A route with the destinations its object carries.
fn route_state(mut r: cf::Route) -> RouteState {
    let destinations = converted(std::mem::take(&mut r.destinations), destination);
    RouteState {
        route: route(r),
        destinations,
    }
}

fn domain(d: cf::Domain) -> Domain {
    Domain {
        guid: d.guid,
        name: d.name,
        internal: d.internal,
    }
}

fn destination(d: cf::Destination) -> Destination {
    Destination {
        guid: d.guid,
        app_guid: d.app.guid,
        process_type: d.app.process.map_or_else(|| "web".to_string(), |p| p.type_),
        port: d.port.map(u32::from),
        protocol: d.protocol,
    }
}

/// How many recent log lines are searched for crash lines per poll.
const CRASH_LOG_LINES: u32 = 1000;

/// Reads Cloud Controller's crash line in an app's logs:
/// `App instance exited with guid <app> payload: {"instance"=>"<guid>", "index"=>0,
/// "reason"=>"CRASHED", "exit_description"=>"...", ...}` (Ruby hash syntax).
/// A Diego cell's evacuation line, `Cell <id> requesting replacement for instance <guid>`, as
/// a move record.
fn move_from_log_line(line: &str) -> Option<crate::deploy::api::CrashEvent> {
    let (head, guid) = line.split_once(" requesting replacement for instance ")?;
    let cell = head.trim().strip_prefix("Cell ")?.trim();
    let guid = guid.split_whitespace().next()?;
    Some(crate::deploy::api::CrashEvent {
        process_guid: None,
        instance_guid: Some(guid.to_owned()),
        index: None,
        reason: format!("cell {cell} is being evacuated"),
    })
}

fn crash_from_log_line(line: &str) -> Option<crate::deploy::api::CrashEvent> {
    let payload = line.split_once("App instance exited with guid ")?.1;
    let payload = payload.split_once("payload:")?.1;
    let field = |key: &str| -> Option<String> {
        let pat = format!("\"{key}\"=>");
        let rest = payload.split_once(pat.as_str())?.1.trim_start();
        if let Some(q) = rest.strip_prefix('"') {
            // A quoted Ruby string: up to the next unescaped quote.
            let mut out = String::new();
            let mut chars = q.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    '"' => return Some(out),
                    c => out.push(c),
                }
            }
            None
        } else {
            let end = rest.find([',', '}']).unwrap_or(rest.len());
            Some(rest[..end].trim().to_string())
        }
    };
    let reason = field("reason").unwrap_or_default();
    if !reason.is_empty() && reason != "CRASHED" {
        return None;
    }
    Some(crate::deploy::api::CrashEvent {
        process_guid: None,
        instance_guid: field("instance").filter(|s| !s.is_empty()),
        index: field("index").and_then(|i| i.parse().ok()),
        reason: field("exit_description")
            .filter(|s| !s.is_empty())
            .unwrap_or(reason),
    })
}

fn instance(s: cf::InstanceStats) -> InstanceStat {
    InstanceStat {
        index: s.index,
        state: match s.state {
            cf::InstanceState::Running => InstanceState::Running,
            cf::InstanceState::Starting => InstanceState::Starting,
            cf::InstanceState::Crashed => InstanceState::Crashed,
            cf::InstanceState::Down => InstanceState::Down,
            cf::InstanceState::Stopping => InstanceState::Stopping,
            cf::InstanceState::Unknown => InstanceState::Unknown,
        },
        routable: s.routable,
        details: s.details,
        instance_guid: s.instance_guid,
        uptime: s.uptime,
    }
}

fn deployment(d: cf::Deployment) -> Deployment {
    use cf::{DeploymentReason as R, DeploymentStatusValue as V};
    let state = match (d.status.value, d.status.reason) {
        (V::Active, R::Deploying | R::Prepaused) => DeploymentState::Deploying,
        (V::Active, R::Paused) => DeploymentState::Paused,
        (V::Active, R::Canceling) => DeploymentState::Canceling,
        (V::Finalized, R::Deployed) => DeploymentState::Deployed,
        (V::Finalized, R::Canceled) => DeploymentState::Canceled,
        (V::Finalized, R::Superseded) => DeploymentState::Superseded,
        (v, r) => DeploymentState::Other(format!("{v:?}/{r:?}").to_uppercase()),
    };
    let error = d.error().map(str::to_string);
    let last_successful_healthcheck = d
        .status
        .details
        .as_ref()
        .and_then(|x| x.last_successful_healthcheck.clone());
    Deployment {
        guid: d.guid,
        state,
        new_processes: d.new_processes.into_iter().map(|p| p.guid).collect(),
        canary_step: d.status.canary.map(|c| (c.steps.current, c.steps.total)),
        error,
        last_successful_healthcheck,
    }
}

fn policy_from_cf(p: cf::NetworkPolicy) -> NetworkPolicy {
    NetworkPolicy {
        source_app: AppGuid::new(p.source.id),
        destination_app: AppGuid::new(p.destination.id),
        protocol: p.destination.protocol,
        start_port: p.destination.ports.start,
        end_port: p.destination.ports.end,
    }
}

fn policy_to_cf(p: &NetworkPolicy) -> cf::NetworkPolicy {
    cf::NetworkPolicy {
        source: cf::PolicySource {
            id: p.source_app.to_string(),
        },
        destination: cf::PolicyDestination {
            id: p.destination_app.to_string(),
            protocol: p.protocol.clone(),
            ports: cf::PortRange {
                start: p.start_port,
                end: p.end_port,
            },
        },
    }
}

fn resource_to_cf(r: &package::Resource) -> cf::Resource {
    cf::Resource::new(r.path.clone(), r.sha1.clone(), r.size, r.mode)
}

fn resource_from_cf(r: cf::Resource) -> package::Resource {
    package::Resource {
        mode: r.mode_bits().unwrap_or(0o644),
        sha1: r.checksum.value,
        size: r.size_in_bytes,
        path: r.path,
    }
}

fn metadata_update(u: &MetadataUpdate) -> cf::MetadataUpdate {
    cf::MetadataUpdate {
        labels: u.labels.clone(),
        annotations: u.annotations.clone(),
    }
}

// ---- the package layer's seam ----

impl package::BitsApi for CfBackend {
    type Error = ApiError;

    async fn match_resources(
        &self,
        candidates: Vec<package::Resource>,
    ) -> Result<Vec<package::Resource>, ApiError> {
        let asked: Vec<cf::Resource> = candidates.iter().map(resource_to_cf).collect();
        let found = self.client.match_resources(&asked).await?;
        Ok(found.into_iter().map(resource_from_cf).collect())
    }

    async fn upload(
        &self,
        package_guid: &str,
        matched: Vec<package::Resource>,
        zip: Option<&Path>,
        progress: package::ProgressFn,
    ) -> Result<(), ApiError> {
        let resources: Vec<cf::Resource> = matched.iter().map(resource_to_cf).collect();
        let report = Arc::clone(&progress);
        self.client
            .upload_package_bits(
                &cf::PackageGuid::new(package_guid),
                &resources,
                zip,
                move |sent, total| report(sent, total),
            )
            .await?;
        Ok(())
    }
}

// ---- the deploy layer's seam ----

impl CfApi for CfBackend {
    type Bits = package::Scan;

    async fn find_apps_by_name(
        &self,
        space_guid: &SpaceGuid,
        names: &[String],
    ) -> ApiResult<Vec<App>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let q = cf::AppQuery::default()
            .names(names.iter().cloned())
            .space_guids([space_guid.clone()]);
        Ok(converted(self.client.list_apps(&q).await?, app))
    }

    async fn find_apps_by_label(
        &self,
        space_guid: &SpaceGuid,
        selector: &str,
    ) -> ApiResult<Vec<App>> {
        let q = cf::AppQuery::default()
            .label_selector(selector)
            .space_guids([space_guid.clone()]);
        Ok(converted(self.client.list_apps(&q).await?, app))
    }

    async fn get_app(&self, guid: &AppGuid) -> ApiResult<App> {
        Ok(app(self.client.get_app(guid).await?))
    }

    async fn create_app(&self, space_guid: &SpaceGuid, new: &NewApp) -> ApiResult<App> {
        let type_ = match new.lifecycle {
            AppLifecycle::Buildpack => cf::LifecycleType::Buildpack,
            AppLifecycle::Cnb => cf::LifecycleType::Cnb,
            AppLifecycle::Docker => cf::LifecycleType::Docker,
        };
        let body = cf::NewApp {
            lifecycle: Some(cf::Lifecycle {
                type_,
                data: cf::apps::LifecycleData::default(),
            }),
            metadata: Some(cf::Metadata {
                labels: new.labels.clone(),
                annotations: new.annotations.clone(),
            }),
            ..cf::NewApp::new(new.name.clone(), space_guid.clone())
        };
        let run_id = new
            .annotations
            .get(crate::deploy::lock::RUN_ID_ANNOTATION)
            .cloned();
        let created = self
            .create_reconciled(
                "app",
                || self.client.create_app(&body),
                || async {
                    // Ours when it carries this run's id (the lock's annotation); another
                    // run's app of that name is left for the uniqueness check to report.
                    let found = self.client.find_app(space_guid, &new.name).await?;
                    Ok(found.filter(|a| {
                        run_id.is_some()
                            && a.metadata
                                .annotations
                                .get(crate::deploy::lock::RUN_ID_ANNOTATION)
                                == run_id.as_ref()
                    }))
                },
            )
            .await?;
        Ok(app(created))
    }

    async fn apply_manifest(&self, space_guid: &SpaceGuid, yaml: &str) -> ApiResult<()> {
        let job = self.client.apply_manifest(space_guid, yaml).await?;
        self.client.wait_for_job(&job, self.poll).await?;
        Ok(())
    }

    async fn create_package(
        &self,
        app_guid: &AppGuid,
        source: &AppSource<package::Scan>,
    ) -> ApiResult<PackageGuid> {
        let new = match source {
            AppSource::Bits(_) => cf::NewPackage::bits(app_guid.clone()),
            AppSource::Docker { image, username } => cf::NewPackage::docker(
                app_guid.clone(),
                image.clone(),
                username.clone(),
                username.as_ref().and_then(|_| self.docker_password.clone()),
            ),
        };
        let image = match source {
            AppSource::Docker { image, .. } => Some(image.clone()),
            AppSource::Bits(_) => None,
        };
        let created = self
            .create_reconciled(
                "package",
                || self.client.create_package(&new),
                || async {
                    // One deploy per app at a time: a bits package still awaiting its upload,
                    // or a docker package of this image, is the one this run created.
                    let packages = self.client.list_app_packages(app_guid).await?;
                    Ok(packages.into_iter().find(|p| match &image {
                        None => {
                            p.type_ == cf::PackageType::Bits
                                && p.state == cf::PackageState::AwaitingUpload
                        }
                        Some(image) => p.data.image.as_ref() == Some(image),
                    }))
                },
            )
            .await?;
        Ok(created.guid)
    }

    async fn upload_bits(
        &self,
        package_guid: &PackageGuid,
        bits: &package::Scan,
        progress: ProgressSink,
    ) -> ApiResult<()> {
        let report: package::ProgressFn =
            Arc::new(move |sent, total| progress.report(sent, Some(total)));
        let started = std::time::Instant::now();
        loop {
            let Err(e) =
                package::push_bits(self, package_guid.as_str(), bits, report.clone()).await
            else {
                break;
            };
            // An upload whose answer was lost (a reset after the bits were sent, a 5xx): the
            // package's state tells whether Cloud Controller received them.
            let lost = matches!(&e, package::Error::Upload { source, .. }
            if source.downcast_ref::<ApiError>().is_some_and(|a| {
                a.title == "transport" || a.status.is_some_and(|s| (500..600).contains(&s))
            }));
            if !lost {
                return Err(bits_error(&e));
            }
            match self.client.get_package(package_guid).await {
                // Received: go on to wait for it to be processed.
                Ok(p) if p.state != cf::PackageState::AwaitingUpload => break,
                // Not received: sent again, within the outage budget.
                Ok(_) if started.elapsed() < self.client.outage_budget() => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => return Err(bits_error(&e)),
            }
        }
        self.client
            .wait_for_package_ready(package_guid, self.poll)
            .await?;
        Ok(())
    }

    async fn create_build(&self, package_guid: &PackageGuid) -> ApiResult<BuildGuid> {
        let build = self
            .create_reconciled(
                "build",
                || self.client.create_build(package_guid),
                || async {
                    // Only this run stages this package.
                    Ok(self
                        .client
                        .list_package_builds(package_guid)
                        .await?
                        .into_iter()
                        .next())
                },
            )
            .await?;
        Ok(build.guid)
    }

    async fn get_build(&self, build_guid: &BuildGuid) -> ApiResult<BuildState> {
        let b = self.client.get_build(build_guid).await?;
        Ok(match b.state {
            cf::BuildState::Staged => match b.droplet_guid() {
                Some(d) => BuildState::Staged(d.clone()),
                None => {
                    return Err(ApiError {
                        title: "unexpected response".into(),
                        detail: format!("build {build_guid} is STAGED but names no droplet"),
                        ..ApiError::default()
                    });
                }
            },
            cf::BuildState::Failed => BuildState::Failed(
                b.error
                    .unwrap_or_else(|| "no error given by cloud controller".to_string()),
            ),
            cf::BuildState::Staging | cf::BuildState::Unknown => BuildState::Staging,
        })
    }

    async fn set_current_droplet(
        &self,
        app: &AppGuid,
        droplet_guid: &DropletGuid,
    ) -> ApiResult<()> {
        self.client.set_current_droplet(app, droplet_guid).await?;
        Ok(())
    }

    async fn start_app(&self, app: &AppGuid) -> ApiResult<()> {
        self.client.start_app(app).await?;
        Ok(())
    }

    async fn stop_app(&self, app: &AppGuid) -> ApiResult<()> {
        self.client.stop_app(app).await?;
        Ok(())
    }

    async fn rename_app(
        &self,
        app: &AppGuid,
        name: &str,
        metadata: &MetadataUpdate,
    ) -> ApiResult<()> {
        let update = cf::AppUpdate {
            name: Some(name.to_string()),
            metadata: (!metadata.is_empty()).then(|| metadata_update(metadata)),
            ..cf::AppUpdate::default()
        };
        self.client.update_app(app, &update).await?;
        Ok(())
    }

    async fn delete_app(&self, app: &AppGuid) -> ApiResult<()> {
        let job = self.client.delete_app(app).await?;
        self.client.wait_for_job(&job, self.poll).await?;
        Ok(())
    }

    async fn update_metadata(&self, app: &AppGuid, update: &MetadataUpdate) -> ApiResult<()> {
        self.client
            .update_app_metadata(app, &metadata_update(update))
            .await?;
        Ok(())
    }

    async fn get_ssh_enabled(&self, app: &AppGuid) -> ApiResult<bool> {
        Ok(self.client.get_app_feature(app, "ssh").await?.enabled)
    }

    async fn set_ssh_enabled(&self, app: &AppGuid, enabled: bool) -> ApiResult<()> {
        self.client.update_app_feature(app, "ssh", enabled).await?;
        Ok(())
    }

    async fn list_processes(&self, app: &AppGuid) -> ApiResult<Vec<Process>> {
        Ok(self
            .client
            .list_app_processes(app)
            .await?
            .into_iter()
            .map(|p| Process {
                guid: p.guid,
                process_type: p.type_,
                instances: p.instances,
                memory_mb: p.memory_in_mb,
            })
            .collect())
    }

    async fn process_stats(&self, process_guid: &ProcessGuid) -> ApiResult<Vec<InstanceStat>> {
        Ok(converted(
            self.client.get_process_stats(process_guid).await?,
            instance,
        ))
    }

    async fn find_domain(&self, name: &str) -> ApiResult<Option<Domain>> {
        Ok(self.client.find_domain(name).await?.map(domain))
    }

    async fn default_domain(&self) -> ApiResult<Option<Domain>> {
        let Some(org) = &self.org_guid else {
            return Ok(None);
        };
        match self.client.get_default_domain(org).await {
            Ok(d) => Ok(Some(domain(d))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn list_app_routes(&self, app: &AppGuid) -> ApiResult<MappedRoutes> {
        let (routes, domains) = self.client.list_app_routes_with_domains(app).await?;
        Ok(MappedRoutes {
            routes: routes.into_iter().map(route_state).collect(),
            domains: converted(domains, domain),
        })
    }

    async fn find_route(&self, r: &NewRoute) -> ApiResult<Option<RouteState>> {
        Ok(self
            .client
            .find_route(&r.domain_guid, &r.host, &r.path, r.port)
            .await?
            .map(route_state))
    }

    async fn create_route(&self, space_guid: &SpaceGuid, r: &NewRoute) -> ApiResult<Route> {
        let space = space_guid.clone();
        let dom = r.domain_guid.clone();
        let new = match r.port {
            Some(port) => cf::NewRoute::tcp(space, dom, Some(port)),
            None => cf::NewRoute::http(space, dom, r.host.clone(), r.path.clone()),
        };
        let created = self
            .create_reconciled(
                "route",
                || self.client.create_route(&new),
                || {
                    self.client
                        .find_route(&r.domain_guid, &r.host, &r.path, r.port)
                },
            )
            .await?;
        Ok(route(created))
    }

    async fn delete_route(&self, route_guid: &RouteGuid) -> ApiResult<()> {
        let job = self.client.delete_route(route_guid).await?;
        self.client.wait_for_job(&job, self.poll).await?;
        Ok(())
    }

    async fn list_destinations(&self, route_guid: &RouteGuid) -> ApiResult<Vec<Destination>> {
        Ok(converted(
            self.client.list_route_destinations(route_guid).await?,
            destination,
        ))
    }

    async fn add_destination(
        &self,
        route_guid: &RouteGuid,
        d: &NewDestination,
    ) -> ApiResult<Destination> {
        let mut new = cf::NewDestination::app(d.app_guid.clone()).process(&d.process_type);
        if let Some(p) = &d.protocol {
            new = new.protocol(p.clone());
        }
        if let Some(port) = d.port {
            new.port = Some(u16::try_from(port).map_err(|_| ApiError {
                title: "invalid destination".into(),
                detail: format!("app port {port} is out of range"),
                ..ApiError::default()
            })?);
        }
        let all = self
            .client
            .insert_route_destinations(route_guid, &[new])
            .await?;
        let mut ours: Vec<Destination> = all
            .into_iter()
            .map(destination)
            .filter(|x| x.app_guid == d.app_guid && x.process_type == d.process_type)
            .collect();
        // Prefer the destination on the requested port when the app has several.
        let exact = ours
            .iter()
            .position(|x| d.port.is_none() || x.port == d.port);
        match exact {
            Some(i) => Ok(ours.swap_remove(i)),
            None => Err(ApiError {
                title: "unexpected response".into(),
                detail: format!(
                    "POST /v3/routes/{route_guid}/destinations: the answer lacks the destination of app {} (process {})",
                    d.app_guid, d.process_type
                ),
                ..ApiError::default()
            }),
        }
    }

    async fn remove_destination(
        &self,
        route_guid: &RouteGuid,
        destination_guid: &DestinationGuid,
    ) -> ApiResult<()> {
        self.client
            .remove_route_destination(route_guid, destination_guid)
            .await?;
        Ok(())
    }

    async fn list_network_policies(&self, app_guids: &[AppGuid]) -> ApiResult<Vec<NetworkPolicy>> {
        if app_guids.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: BTreeMap<&str, ()> = app_guids.iter().map(|g| (g.as_str(), ())).collect();
        Ok(self
            .client
            .list_network_policies(app_guids)
            .await?
            .into_iter()
            .map(policy_from_cf)
            // The filter is the server's; keep only what concerns these apps in any case.
            .filter(|p| {
                wanted.contains_key(p.source_app.as_str())
                    || wanted.contains_key(p.destination_app.as_str())
            })
            .collect())
    }

    async fn create_network_policies(&self, policies: &[NetworkPolicy]) -> ApiResult<()> {
        let p: Vec<cf::NetworkPolicy> = policies.iter().map(policy_to_cf).collect();
        self.client.create_network_policies(&p).await?;
        Ok(())
    }

    async fn delete_network_policies(&self, policies: &[NetworkPolicy]) -> ApiResult<()> {
        let p: Vec<cf::NetworkPolicy> = policies.iter().map(policy_to_cf).collect();
        self.client.delete_network_policies(&p).await?;
        Ok(())
    }

    async fn create_deployment(&self, new: &NewDeployment) -> ApiResult<Deployment> {
        let app = new.app_guid.clone();
        let droplet = Some(new.droplet_guid.clone());
        let base = match new.strategy {
            DeploymentStrategy::Rolling => cf::NewDeployment::rolling(app, droplet),
            DeploymentStrategy::Canary => cf::NewDeployment::canary(app, droplet),
        };
        let mut options = cf::DeploymentOptions {
            max_in_flight: new.max_in_flight,
            ..cf::DeploymentOptions::default()
        };
        if new.strategy == DeploymentStrategy::Canary && !new.canary_steps.is_empty() {
            options = options.canary_steps(new.canary_steps.iter().copied());
        }
        let body = base.with_options(options);
        let d = self
            .create_reconciled(
                "deployment",
                || self.client.create_deployment(&body),
                || async {
                    // An active deployment of this droplet on the app is the one created.
                    let active = self.client.find_active_deployment(&new.app_guid).await?;
                    Ok(active
                        .filter(|d| d.droplet.as_ref().map(|g| &g.guid) == Some(&new.droplet_guid)))
                },
            )
            .await?;
        Ok(deployment(d))
    }

    async fn get_deployment(&self, guid: &DeploymentGuid) -> ApiResult<Deployment> {
        let d = self.client.get_deployment(guid).await?;
        Ok(deployment(d))
    }

    async fn find_active_deployment(&self, app: &AppGuid) -> ApiResult<Option<Deployment>> {
        Ok(self
            .client
            .find_active_deployment(app)
            .await?
            .map(deployment))
    }

    async fn continue_deployment(&self, guid: &DeploymentGuid) -> ApiResult<()> {
        self.client.continue_deployment(guid).await?;
        Ok(())
    }

    async fn cancel_deployment(&self, guid: &DeploymentGuid) -> ApiResult<()> {
        self.client.cancel_deployment(guid).await?;
        Ok(())
    }

    async fn create_task(&self, app: &AppGuid, task: &NewTask) -> ApiResult<TaskGuid> {
        let new = cf::NewTask {
            name: Some(task.name.clone()),
            memory_in_mb: task.memory_mb,
            disk_in_mb: task.disk_mb,
            ..cf::NewTask::new(task.command.clone())
        };
        Ok(self.client.create_task(app, &new).await?.guid)
    }

    async fn get_task(&self, guid: &TaskGuid) -> ApiResult<TaskState> {
        let t = self.client.get_task(guid).await?;
        Ok(match t.state {
            cf::TaskState::Succeeded => TaskState::Succeeded,
            cf::TaskState::Failed => TaskState::Failed(
                t.failure_reason()
                    .unwrap_or("no failure reason given by cloud controller")
                    .to_string(),
            ),
            cf::TaskState::Pending
            | cf::TaskState::Running
            | cf::TaskState::Canceling
            | cf::TaskState::Unknown => TaskState::Running,
        })
    }

    async fn cancel_task(&self, guid: &TaskGuid) -> ApiResult<()> {
        self.client.cancel_task(guid).await?;
        Ok(())
    }

    async fn get_env_vars(&self, app: &AppGuid) -> ApiResult<BTreeMap<String, String>> {
        Ok(self.client.get_app_environment_variables(app).await?)
    }

    async fn update_env_vars(
        &self,
        app: &AppGuid,
        vars: &BTreeMap<String, Option<String>>,
    ) -> ApiResult<()> {
        self.client
            .update_app_environment_variables(app, vars)
            .await?;
        Ok(())
    }

    async fn list_service_bindings(&self, app: &AppGuid) -> ApiResult<Vec<ServiceBinding>> {
        Ok(self
            .client
            .list_app_service_credential_bindings(app)
            .await?
            .into_iter()
            .map(|b| ServiceBinding {
                service_instance_guid: b
                    .service_instance_guid()
                    .cloned()
                    .unwrap_or_else(|| ServiceInstanceGuid::new("")),
                guid: b.guid,
            })
            .collect())
    }

    async fn delete_service_binding(&self, guid: &ServiceCredentialBindingGuid) -> ApiResult<()> {
        let job = self.client.delete_service_credential_binding(guid).await?;
        if let Some(job) = job {
            self.client.wait_for_job(&job, self.poll).await?;
        }
        Ok(())
    }

    /// Audit events first (they name the crashed process); log-cache's "App instance exited"
    /// lines only when the audit events did not answer (absent, forbidden or failing) or show
    /// a crash (the lines may add to what they say): Cloud Controller records every crash and
    /// rescheduling in both, so an answer without any is enough. Each source that is absent
    /// or forbidden is named in `unavailable`; both failing otherwise is an error.
    async fn crash_events(
        &self,
        app_guid: &AppGuid,
        since: std::time::SystemTime,
    ) -> ApiResult<crate::deploy::api::CrashEvents> {
        let since = since
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let guid = app_guid.clone();
        let mut out = crate::deploy::api::CrashEvents::default();
        let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
        // CC compares created_at to the second: one second early catches the boundary.
        let filter = cf::AuditEventFilter::instance_events_of(&guid).created_after_unix(secs - 1);
        let gone = self.gone.lock().map(|g| g.clone()).unwrap_or_default();
        let mut errors = Vec::new();
        let record = |c: cf::CrashDetails, reason: Option<String>| crate::deploy::api::CrashEvent {
            process_guid: c.process_guid.map(ProcessGuid::new),
            instance_guid: c.instance.filter(|i| !i.is_empty()),
            index: c.index,
            reason: reason.unwrap_or_default(),
        };
        let audit = match &gone.audit_events {
            Some(why) => {
                out.unavailable.push(why.clone());
                Ok(Vec::new())
            }
            None => self.client.list_audit_events(filter).await,
        };
        let mut audit_answered = false;
        match audit {
            Ok(events) => {
                audit_answered = gone.audit_events.is_none();
                for e in &events {
                    if let Some(c) = e.crash() {
                        let reason = c.exit_description.clone().or(c.reason.clone());
                        out.events.push(record(c, reason));
                    } else if let Some(c) = e.rescheduling() {
                        let reason = match (&c.reason, &c.cell_id) {
                            (Some(r), Some(cell)) => Some(format!("{r} (cell {cell})")),
                            (r, _) => r.clone(),
                        };
                        out.moves.push(record(c, reason));
                    }
                }
            }
            Err(e) if e.is_unavailable_optional() => {
                let why = format!("audit events: {}", error_chain(&e));
                if let Ok(mut g) = self.gone.lock() {
                    g.audit_events = Some(why.clone());
                }
                out.unavailable.push(why);
            }
            Err(e) => errors.push(e),
        }
        let ns = i64::try_from(since.as_nanos()).unwrap_or(i64::MAX);
        let query =
            cf::LogCacheQuery::recent(&[cf::EnvelopeType::Log], CRASH_LOG_LINES).since_ns(ns);
        let logs = match &gone.log_cache {
            _ if audit_answered && out.events.is_empty() => Ok(Vec::new()),
            Some(why) => {
                out.unavailable.push(why.clone());
                Ok(Vec::new())
            }
            None => self.client.read_log_cache(app_guid.as_str(), query).await,
        };
        match logs {
            Ok(envelopes) => {
                for env in &envelopes {
                    let cf::EnvelopeKind::Log(m) = &env.kind else {
                        continue;
                    };
                    let text = m.text();
                    if let Some(c) = crash_from_log_line(&text)
                        && !out.events.iter().any(|e| {
                            e.instance_guid.is_some() && e.instance_guid == c.instance_guid
                        })
                    {
                        out.events.push(c);
                    } else if let Some(c) = move_from_log_line(&text)
                        && !out.moves.iter().any(|e| e.instance_guid == c.instance_guid)
                    {
                        out.moves.push(c);
                    }
                }
            }
            Err(e) if e.is_unavailable_optional() => {
                let why = format!("log-cache: {}", error_chain(&e));
                if let Ok(mut g) = self.gone.lock() {
                    g.log_cache = Some(why.clone());
                }
                out.unavailable.push(why);
            }
            Err(e) => errors.push(e),
        }
        // Both sources failing for another reason is a failed read (the caller tries again at
        // the next poll); one source is enough otherwise.
        match errors.as_slice() {
            [first, _] => Err(api_error(first)),
            _ => Ok(out),
        }
    }

    async fn app_log(
        &self,
        app_guid: &AppGuid,
        query: &crate::deploy::api::LogQuery,
    ) -> ApiResult<Vec<crate::deploy::api::LogRecord>> {
        use crate::deploy::api::{LogEntry, LogRecord};
        let mut types = Vec::new();
        if query.lines {
            types.push(cf::EnvelopeType::Log);
        }
        if query.requests {
            types.push(cf::EnvelopeType::Timer);
        }
        if types.is_empty() || query.limit == 0 {
            return Ok(Vec::new());
        }
        let since = query
            .since
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut q =
            cf::LogCacheQuery::recent(&types, query.limit.min(cf::log_cache::MAX_LOG_CACHE_LIMIT))
                .since_ns(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX));
        q.descending = query.newest;
        let mut envelopes = self
            .client
            .read_log_cache(app_guid.as_str(), q)
            .await
            .map_err(|e| api_error(&e))?;
        if query.newest {
            envelopes.reverse();
        }
        let at =
            |ns: i64| std::time::UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
        Ok(envelopes
            .into_iter()
            .filter_map(|env| {
                let entry = match &env.kind {
                    cf::EnvelopeKind::Log(m) if query.lines => LogEntry::Line {
                        source_type: env.tags.get("source_type").cloned().unwrap_or_default(),
                        stderr: m.stream == cf::LogStream::Err,
                        text: m.text().trim_end_matches(['\r', '\n']).to_string(),
                    },
                    cf::EnvelopeKind::Timer(t) if query.requests && t.name == "http" => {
                        LogEntry::Request {
                            status: env
                                .tags
                                .get("status_code")
                                .and_then(|s| s.parse().ok())
                                .unwrap_or(0),
                            duration: Duration::from_nanos(
                                u64::try_from(t.stop.saturating_sub(t.start)).unwrap_or(0),
                            ),
                        }
                    }
                    _ => return None,
                };
                Some(LogRecord {
                    at: at(env.timestamp),
                    instance: env.instance_id.clone(),
                    entry,
                })
            })
            .collect())
    }

    async fn scale_process(&self, process_guid: &ProcessGuid, instances: u32) -> ApiResult<()> {
        let scale = cf::ProcessScale {
            instances: Some(instances),
            ..cf::ProcessScale::default()
        };
        self.client.scale_process(process_guid, &scale).await?;
        Ok(())
    }

    async fn quotas(&self, space_guid: &SpaceGuid) -> ApiResult<Quotas> {
        let (space, org) = self.client.get_space_with_organization(space_guid).await?;
        let space_level = self
            .space_level(space_guid, space.relationships.quota.guid())
            .await?;
        let org_level = self
            .org_level(space.relationships.organization.guid(), org)
            .await?;
        Ok(Quotas {
            space: space_level,
            org: org_level,
        })
    }

    fn take_warnings(&self) -> Vec<String> {
        self.client.take_warnings()
    }

    fn enter_phase(&self, phase: Phase) {
        if let Ok(mut t) = self.tally.lock() {
            t.enter(phase);
        }
    }

    fn requests(&self) -> Option<Requests> {
        let t = self.tally.lock().ok()?;
        Some(t.requests())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evacuation_lines_are_moves_and_crash_lines_are_crashes() {
        let m = move_from_log_line("Cell cell-3 requesting replacement for instance 5f1c-aa11")
            .expect("a move");
        assert_eq!(m.instance_guid.as_deref(), Some("5f1c-aa11"));
        assert!(m.reason.contains("cell-3"), "{}", m.reason);
        assert!(move_from_log_line("Cell cell-3 creating container for instance 5f1c").is_none());
        assert!(move_from_log_line("requesting replacement for instance x").is_none());
        let c = crash_from_log_line(
            r#"App instance exited with guid app-1 payload: {"instance"=>"ig-1", "index"=>0, "cell_id"=>"c", "reason"=>"CRASHED", "exit_description"=>"APP/PROC/WEB: Exited with status 1"}"#,
        )
        .expect("a crash");
        assert_eq!(c.instance_guid.as_deref(), Some("ig-1"));
        assert!(move_from_log_line(&c.reason).is_none());
    }
}
