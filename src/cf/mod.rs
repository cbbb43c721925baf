//! Cloud Controller v3 client: the only code that speaks HTTP to Cloud Controller.
//!
//! Depends on: external crates only. Must not: know about manifests, deploys or printing.
//!
//! [`Client`] is built from a [`ClientConfig`] (endpoint, skip-SSL, a [`TokenProvider`], timeouts,
//! retry policy, `CF_TRACE`). Methods follow the cf CLI naming, snake-cased: `get_x` errors when
//! missing, `find_x` returns `Option`, `list_x` returns every page, `create_x` posts a `NewX`,
//! actions are named by their verb (`restart_app`, `cancel_deployment`, `apply_manifest`).
//! One file per resource holds its types and its calls.
//!
//! Inside, the files form layers, each using only those below it: plain types (`guid`, `page`,
//! `relationships`, `metadata`, `version`, `root`, `auth`, `target`), then `error` and
//! `request` (bodies and query filters), then the client core `client` (transport, retries,
//! JSON plumbing), then the resource files, which add their calls to [`Client`] (`discovery`
//! among them) and may use each other's types (`packages` uses `resource_matches` and `poll`).
//!
//! Optional platform services (audit events, log-cache, the network policy server) may be
//! missing or refused: their errors answer [`Error::is_unavailable_optional`] so callers can
//! degrade. Idempotent requests are retried on transient failures ([`Idempotency`]).
//!
//! Asynchronous operations return a [`JobGuid`]; [`Client::wait_for_job`] polls it with a bound
//! ([`PollOptions`]) and turns `FAILED` into [`Error::JobFailed`]. Warnings (`X-Cf-Warnings` and
//! job warnings) accumulate until [`Client::take_warnings`].
//!
//! ```no_run
//! # async fn f() -> Result<(), cf_zero_downtime::cf::Error> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use cf_zero_downtime::cf::{Client, ClientConfig, PollOptions, StaticToken};
//! use secrecy::SecretString;
//!
//! let token = Arc::new(StaticToken(SecretString::from("bearer eyJ...")));
//! let client = Client::new(ClientConfig::new("https://api.example.com", token))?;
//! client.discover().await?;
//! let org = client.find_organization("my-org").await?.expect("org exists");
//! let space = client.find_space(&org.guid, "dev").await?.expect("space exists");
//! let job = client
//!     .apply_manifest(&space.guid, "applications:\n- name: web\n")
//!     .await?;
//! client.wait_for_job(&job, PollOptions::new(Duration::from_secs(3), Duration::from_secs(600))).await?;
//! let app = client.find_app(&space.guid, "web").await?.expect("created by apply_manifest");
//! client.restart_app(&app.guid).await?;
//! for warning in client.take_warnings() {
//!     eprintln!("{warning}");
//! }
//! # Ok(()) }
//! ```

pub mod auth;
pub mod target;

pub mod apps;
pub mod audit_events;
pub mod builds;
pub mod client;
pub mod deployments;
pub mod discovery;
pub mod domains;
pub mod droplets;
pub mod error;
pub mod guid;
pub mod jobs;
pub(crate) mod links;
pub mod log_cache;
pub mod manifests;
pub mod metadata;
pub mod network_policies;
mod nullable;
pub mod organizations;
pub mod packages;
pub mod page;
pub mod poll;
pub mod processes;
pub mod quotas;
pub mod relationships;
mod request;
pub mod resource_matches;
pub mod root;
pub mod routes;
pub mod service_credential_bindings;
pub mod service_instances;
pub mod spaces;
pub mod tasks;
pub mod trace;
pub mod version;
mod warnings;

pub use auth::{AuthError, TokenProvider};
pub use target::{NamedGuid, Target};

pub use apps::{App, AppFeature, AppQuery, AppState, AppUpdate, Lifecycle, LifecycleType, NewApp};
pub use audit_events::{AuditEvent, AuditEventFilter, AuditEventParty, CrashDetails};
pub use auth::StaticToken;
pub use builds::{Build, BuildState};
pub use client::{
    Client, ClientConfig, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_OUTAGE_BUDGET, FIRST_CONTACT_BUDGET,
    Idempotency, NoticeSink, PER_PAGE, RetryPolicy,
};
pub use deployments::{
    CanaryStep, Deployment, DeploymentOptions, DeploymentReason, DeploymentStatus,
    DeploymentStatusValue, DeploymentStrategy, NewDeployment,
};
pub use discovery::Info;
pub use domains::Domain;
pub use droplets::{Droplet, DropletState};
pub use error::{ApiError, CcError, Error};
pub use guid::{
    AppGuid, BuildGuid, DeploymentGuid, DestinationGuid, DomainGuid, DropletGuid, JobGuid,
    OrganizationGuid, OrganizationQuotaGuid, PackageGuid, ProcessGuid, RevisionGuid, RouteGuid,
    RouterGroupGuid, ServiceCredentialBindingGuid, ServiceInstanceGuid, ServicePlanGuid, SpaceGuid,
    SpaceQuotaGuid, TaskGuid,
};
pub use jobs::{Job, JobState};
pub use log_cache::{
    Counter, Envelope, EnvelopeKind, EnvelopeType, GaugeValue, LogCacheQuery, LogMessage,
    LogStream, Timer,
};
pub use manifests::{DiffEntry, DiffOp, ManifestDiff};
pub use metadata::{Metadata, MetadataUpdate};
pub use network_policies::{NetworkPolicy, PolicyDestination, PolicySource, PortRange};
pub use organizations::Organization;
pub use packages::{NewPackage, Package, PackageState, PackageType};
pub use page::{Link, Page, Pagination};
pub use poll::{PollOptions, poll_until};
pub use processes::{
    HealthCheck, HealthCheckType, InstanceState, InstanceStats, Process, ProcessScale,
    ProcessUpdate,
};
pub use quotas::{Quota, QuotaApps, QuotaRoutes, UsageSummary};
pub use relationships::{GuidRef, ToOne};
pub use resource_matches::{Checksum, MatchedResource, Resource};
pub use root::RootInfo;
pub use routes::{Destination, NewDestination, NewRoute, Route, RouteQuery};
pub use service_credential_bindings::{
    BindingCreated, NewServiceCredentialBinding, ServiceCredentialBinding,
};
pub use service_instances::{LastOperation, ServiceInstance, ServiceInstanceType};
pub use spaces::Space;
pub use tasks::{NewTask, Task, TaskResult, TaskState};
pub use trace::Trace;
pub use version::{ApiVersion, Feature};
