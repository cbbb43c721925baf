//! Steps as data, their recorded outputs, and the undo each one needs.
//!
//! A [`Step`] names what to do; GUIDs that only exist once an earlier step ran (the
//! candidate, a created route, the package, the droplet) are looked up in the [`Ledger`] of
//! recorded outputs, never passed around in mutable state. [`undo_for`] is pure and
//! table-tested; [`Undo::manual_command`] and [`Step::manual_command`] give the `cf` commands a
//! user runs when an undo fails or a late step did not run.
//!
//! Depends on: deploy::api (data), deploy::route, deploy::request (RenderRequest). Must not: do I/O.

use std::time::Duration;

use std::collections::BTreeMap;

use super::api::{
    AppGuid, DeploymentGuid, DeploymentStrategy, Destination, DestinationGuid, DropletGuid,
    MetadataUpdate, NetworkPolicy, NewDestination, PackageGuid, ProcessGuid, Route, RouteGuid,
    ServiceCredentialBindingGuid,
};
use super::request::RenderRequest;
use super::route::RouteAddress;

/// An app a step acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppRef {
    /// The app created by this run's `ApplyManifest` for manifest app `app`.
    New {
        /// The manifest app's name.
        app: String,
    },
    /// An app that existed before the run.
    Existing {
        guid: AppGuid,
        /// Its name when observed.
        name: String,
    },
}

/// A route a step acts on: existing (GUID known) or created by this run (looked up by address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRef {
    /// Where the route is.
    pub address: RouteAddress,
    /// Its GUID if it existed before the run.
    pub guid: Option<RouteGuid>,
}

/// One end of a network policy to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyEnd {
    /// The candidate of this app.
    Candidate,
    /// Another app, by GUID.
    App(AppGuid),
}

/// A network policy of the live app, re-targeted at the candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTemplate {
    pub source: PolicyEnd,
    pub destination: PolicyEnd,
    pub protocol: String,
    /// First port.
    pub start_port: u16,
    /// Last port.
    pub end_port: u16,
}

/// One step of a plan: what to do ([`Action`]) for which manifest app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The manifest app the step belongs to; `None` for a step of the whole deploy
    /// ([`Action::Drain`]).
    pub app: Option<String>,
    /// What the step does.
    pub action: Action,
}

/// What a step does. Adding a variant: the compiler asks for its handler in `execute`'s
/// dispatch, and here for its kind and whether it mutates (`Action::kind_and_effect`), its
/// description, its undo ([`undo_for`]) and its command by hand ([`Action::manual_command`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Delete a leftover candidate of an earlier run that serves nothing.
    DeleteLeftover {
        /// The leftover's GUID.
        guid: AppGuid,
        /// The leftover's name.
        name: String,
    },
    RenameApp {
        /// Which app.
        target: AppRef,
        /// Its name before.
        from: String,
        /// Its new name.
        to: String,
        /// Labels and annotations set or removed by the same `PATCH` (empty: a plain rename).
        /// Cloud Controller applies both or neither; the undo renames back only, as a
        /// metadata change needs none (see [`undo_for`]).
        metadata: MetadataUpdate,
    },
    /// Create a route; one that exists already is taken as it is (not deleted on rollback),
    /// unless it is `temporary` and something is mapped to it.
    CreateRoute {
        route: RouteAddress,
        /// The candidate's temporary route (looked up only when its create finds it exists).
        temporary: bool,
    },
    /// Apply the rendered manifest (creates the candidate, or the app on a first deploy).
    ApplyManifest {
        /// What to render.
        render: RenderRequest,
    },
    /// Set the new app's SSH flag to the live app's.
    SetSsh {
        enabled: bool,
    },
    /// Copy the live app's labels and annotations to the new app.
    CopyMetadata {
        /// What to set.
        update: MetadataUpdate,
    },
    /// Recreate the live app's network policies for the new app.
    CopyNetworkPolicies {
        policies: Vec<PolicyTemplate>,
    },
    /// Create the package (bits or docker).
    CreatePackage,
    UploadBits,
    /// Create a build and wait until it is staged.
    Stage,
    /// Set the staged droplet as current.
    SetDroplet,
    /// Start the new app.
    Start,
    /// Wait until all instances of every process run.
    WaitHealthy,
    /// Smoke-test the new app at this route.
    SmokeTest {
        /// The route (`host.domain/path`).
        route: String,
    },
    /// Run a release task (`--task-before-switch`, `--task-after-switch`) on the new app,
    /// with its droplet, environment and bindings, and wait until it succeeds. What it does
    /// (a migration) is not undone by a rollback.
    RunTask {
        command: String,
        /// The task's name (`zdt-migrate-1`, `zdt-after-switch-1`).
        name: String,
        /// Whether it runs after the commit point (`--task-after-switch`): the new app has
        /// the app's name, and a failure is reported, not rolled back.
        after_switch: bool,
    },
    /// Map a production route to the new app.
    MapRoute {
        route: RouteRef,
        /// Process type, port and protocol (copied from the old destination).
        process_type: String,
        port: Option<u32>,
        protocol: Option<String>,
    },
    /// Unmap a production route from an old app.
    UnmapRoute {
        /// The route (existing).
        route: RouteRef,
        /// The old app's name.
        from_name: String,
        /// The destination removed.
        destination: Destination,
    },
    /// Wait for router propagation and in-flight requests.
    Drain {
        /// How long.
        duration: Duration,
    },
    /// Stop an old app.
    StopApp {
        guid: AppGuid,
        name: String,
    },
    /// Delete an old app.
    DeleteApp {
        guid: AppGuid,
        name: String,
    },
    /// Set or remove labels/annotations.
    UpdateMetadata {
        /// Which app.
        target: AppRef,
        /// Its name at that point (messages).
        name: String,
        /// The change.
        update: MetadataUpdate,
    },
    DeleteRoute {
        route: RouteRef,
    },
    /// Rolling/canary: record the live app's environment variables (undo restores them).
    SnapshotEnv {
        /// The live app's GUID.
        guid: AppGuid,
    },
    /// Rolling/canary: apply the rendered manifest to the live app itself (same GUID).
    UpdateApp {
        /// The live app's GUID.
        guid: AppGuid,
        /// What to render.
        render: RenderRequest,
    },
    /// Rolling/canary: create a Cloud Controller deployment of the staged droplet and watch
    /// it to the end; a crash, a stall, a failed canary smoke test or an interrupt cancels it.
    Deploy {
        /// Rolling or canary.
        strategy: DeploymentStrategy,
        /// The production route a canary is smoke-tested on (with the process header).
        smoke_route: Option<String>,
    },
    /// Rollback: take an existing app (the kept `<app>-venerable`) as the version this run
    /// brings back. Reads nothing and changes nothing: it records the app in the [`Ledger`]
    /// so that the steps acting on "the new app" (health wait, smoke test, route mapping,
    /// rename, labels) act on it.
    Reinstate {
        guid: AppGuid,
        /// Its name when observed.
        name: String,
    },
    /// Start an existing app that is stopped (undone by stopping it again).
    StartExisting {
        guid: AppGuid,
        /// Its name (messages).
        name: String,
    },
    /// `--drain auto`: wait until the routers dropped the old app(s) and no request reaches
    /// them any more (`deploy::drain`), at least a floor and at most `max`.
    DrainAuto {
        /// The longest drain (`--drain auto:MAX`).
        max: Duration,
    },
    /// Canary analysis: read the live app's router records from log-cache once, so a
    /// platform without them fails the deploy before any change.
    CheckRequestRecords {
        /// The live app's GUID.
        live: AppGuid,
        /// Its name (messages).
        live_name: String,
    },
    /// Blue-green canary: scale the candidate's `web` process to the instances that take
    /// about `percent` % of the requests next to the live app's (its full count at 100), and
    /// wait until they run.
    ScaleCandidate {
        /// The share of requests aimed at, in percent.
        percent: u32,
        /// The live app whose `web` instances the candidate's share is relative to.
        live: AppGuid,
    },
    /// Blue-green canary: observe the router's records of both versions for the analysis
    /// interval and judge the candidate; a failed verdict fails the step (and rolls back).
    AnalyseCanary {
        /// 1-based step number.
        step: usize,
        /// Number of steps (the last one, 100 %, is the switch and is not analysed).
        steps: usize,
        /// The share of requests aimed at, in percent.
        percent: u32,
        /// The live app's GUID.
        live: AppGuid,
        /// Its name (messages).
        live_name: String,
    },
}

/// A step's recorded output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutput {
    /// Nothing to record.
    None,
    /// An app was created.
    App {
        guid: AppGuid,
        name: String,
        /// Routes the server created for it (`random-route`), deleted with it on rollback.
        server_routes: Vec<Route>,
    },
    /// A route was created.
    Route(Route),
    /// A route to create existed already and was taken as it is (no undo).
    ExistingRoute(Route),
    /// A package was created.
    Package(PackageGuid),
    /// A droplet was staged.
    Droplet(DropletGuid),
    /// Network policies were created.
    Policies(Vec<NetworkPolicy>),
    /// A destination was added.
    Mapped {
        route_guid: RouteGuid,
        /// The new destination's GUID.
        destination_guid: DestinationGuid,
        /// The app's name (messages).
        app_name: String,
    },
    /// A destination was removed.
    Unmapped { route_guid: RouteGuid },
    /// An app was renamed.
    Renamed { guid: AppGuid },
    /// A deployment was created and did not finish (it is canceled on rollback).
    Deployment {
        guid: DeploymentGuid,
        app_name: String,
    },
    /// The environment variables and service bindings of an app before the run changed them.
    Env {
        guid: AppGuid,
        /// Its name (messages).
        name: String,
        /// The variables.
        vars: BTreeMap<String, String>,
        /// The GUIDs of its service bindings.
        bindings: Vec<ServiceCredentialBindingGuid>,
    },
    /// The candidate's `web` process was scaled.
    Scaled {
        process_guid: ProcessGuid,
        /// Its instance count before the first canary scale (the count of the final step).
        original: u32,
        /// Its instance count now.
        instances: u32,
    },
}

/// The compensation of a completed step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// Delete an app created by the run, then the routes the server created for it.
    DeleteApp {
        guid: AppGuid,
        name: String,
        /// Routes created by the server along with the app.
        routes: Vec<Route>,
    },
    /// Delete a route created by the run.
    DeleteRoute {
        guid: RouteGuid,
        address: RouteAddress,
    },
    /// Remove a destination added by the run.
    RemoveDestination {
        route_guid: RouteGuid,
        destination_guid: DestinationGuid,
        address: RouteAddress,
        app_name: String,
    },
    /// Re-add a destination removed by the run.
    AddDestination {
        route_guid: RouteGuid,
        address: RouteAddress,
        app_name: String,
        /// The destination to restore.
        destination: NewDestination,
    },
    /// Delete network policies created by the run.
    DeleteNetworkPolicies(Vec<NetworkPolicy>),
    /// Rename an app back.
    RenameApp {
        guid: AppGuid,
        from: String,
        to: String,
    },
    /// Cancel a deployment created by the run and wait until it is over (the old process
    /// serves again).
    CancelDeployment {
        guid: DeploymentGuid,
        app_name: String,
    },
    /// Put an app's environment variables back as they were (variables added by the run are
    /// removed) and delete the service bindings the run added.
    RestoreEnv {
        guid: AppGuid,
        name: String,
        /// The variables before the run.
        vars: BTreeMap<String, String>,
        /// The service bindings before the run (GUIDs).
        bindings: Vec<ServiceCredentialBindingGuid>,
    },
    /// Stop an existing app the run started.
    StopApp { guid: AppGuid, name: String },
}

/// The compensation for a completed step, if it needs one. Pure, and exhaustive over
/// [`Action`]: a new step kind does not compile until it says what undoes it.
///
/// Without an undo, in the order of the last arm: a step undone from what it records that
/// recorded nothing (nothing was created); steps inside the app created (or updated in place)
/// by the run (package, build, droplet, start, SSH, metadata, scale), which deleting it, or the
/// canceled deployment and restored environment, undo; a task (what it did, a migration,
/// cannot be undone by the deploy; an interrupted or timed-out one is cancelled by its step);
/// reads and waits, and `Reinstate` (it records which existing app the run brings back); the
/// garbage of an earlier run and the retire after the commit point.
pub fn undo_for(step: &Step, out: &StepOutput) -> Option<Undo> {
    match (&step.action, out) {
        (Action::CreateRoute { route, .. }, StepOutput::Route(r)) => Some(Undo::DeleteRoute {
            guid: r.guid.clone(),
            address: route.clone(),
        }),
        (
            Action::ApplyManifest { .. },
            StepOutput::App {
                guid,
                name,
                server_routes,
            },
        ) => Some(Undo::DeleteApp {
            guid: guid.clone(),
            name: name.clone(),
            routes: server_routes.clone(),
        }),
        (Action::CopyNetworkPolicies { .. }, StepOutput::Policies(p)) if !p.is_empty() => {
            Some(Undo::DeleteNetworkPolicies(p.clone()))
        }
        (
            Action::MapRoute { route, .. },
            StepOutput::Mapped {
                route_guid,
                destination_guid,
                app_name,
            },
        ) => Some(Undo::RemoveDestination {
            route_guid: route_guid.clone(),
            destination_guid: destination_guid.clone(),
            address: route.address.clone(),
            app_name: app_name.clone(),
        }),
        (
            Action::UnmapRoute {
                route,
                from_name,
                destination,
            },
            StepOutput::Unmapped { route_guid },
        ) => Some(Undo::AddDestination {
            route_guid: route_guid.clone(),
            address: route.address.clone(),
            app_name: from_name.clone(),
            destination: destination.to_new(),
        }),
        (Action::RenameApp { from, to, .. }, StepOutput::Renamed { guid }) => {
            Some(Undo::RenameApp {
                guid: guid.clone(),
                from: to.clone(),
                to: from.clone(),
            })
        }
        (Action::Deploy { .. }, StepOutput::Deployment { guid, app_name }) => {
            Some(Undo::CancelDeployment {
                guid: guid.clone(),
                app_name: app_name.clone(),
            })
        }
        // Reads only, but its undo puts back what the later steps of a rolling or canary
        // deploy change in the live app.
        (
            Action::SnapshotEnv { .. },
            StepOutput::Env {
                guid,
                name,
                vars,
                bindings,
            },
        ) => Some(Undo::RestoreEnv {
            guid: guid.clone(),
            name: name.clone(),
            vars: vars.clone(),
            bindings: bindings.clone(),
        }),
        // Also recorded when the start failed (it may have taken effect): stopping a stopped
        // app is harmless.
        (Action::StartExisting { guid, name }, _) => Some(Undo::StopApp {
            guid: guid.clone(),
            name: name.clone(),
        }),
        (
            Action::CreateRoute { .. }
            | Action::ApplyManifest { .. }
            | Action::CopyNetworkPolicies { .. }
            | Action::MapRoute { .. }
            | Action::UnmapRoute { .. }
            | Action::RenameApp { .. }
            | Action::Deploy { .. }
            | Action::SnapshotEnv { .. }
            | Action::SetSsh { .. }
            | Action::CopyMetadata { .. }
            | Action::CreatePackage
            | Action::UploadBits
            | Action::Stage
            | Action::SetDroplet
            | Action::Start
            | Action::UpdateApp { .. }
            | Action::ScaleCandidate { .. }
            | Action::RunTask { .. }
            | Action::WaitHealthy
            | Action::SmokeTest { .. }
            | Action::Drain { .. }
            | Action::DrainAuto { .. }
            | Action::CheckRequestRecords { .. }
            | Action::AnalyseCanary { .. }
            | Action::Reinstate { .. }
            | Action::DeleteLeftover { .. }
            | Action::StopApp { .. }
            | Action::DeleteApp { .. }
            | Action::UpdateMetadata { .. }
            | Action::DeleteRoute { .. },
            _,
        ) => None,
    }
}

fn policies_json(p: &[NetworkPolicy]) -> String {
    let items: Vec<String> = p
        .iter()
        .map(|p| {
            format!(
                r#"{{"source":{{"id":"{}"}},"destination":{{"id":"{}","protocol":"{}","ports":{{"start":{},"end":{}}}}}}}"#,
                p.source_app, p.destination_app, p.protocol, p.start_port, p.end_port
            )
        })
        .collect();
    format!(r#"{{"policies":[{}]}}"#, items.join(","))
}

impl Undo {
    /// What the undo does, for messages.
    pub fn describe(&self) -> String {
        match self {
            Undo::DeleteApp { name, routes, .. } if routes.is_empty() => {
                format!("delete app {name}")
            }
            Undo::DeleteApp { name, routes, .. } => {
                let urls: Vec<&str> = routes.iter().map(|r| r.url.as_str()).collect();
                format!("delete app {name} and its route {}", urls.join(", "))
            }
            Undo::DeleteRoute { address, .. } => format!("delete route {address}"),
            Undo::RemoveDestination {
                address, app_name, ..
            } => format!("unmap route {address} from {app_name}"),
            Undo::AddDestination {
                address, app_name, ..
            } => format!("map route {address} back to {app_name}"),
            Undo::DeleteNetworkPolicies(p) => format!("delete {} network policies", p.len()),
            Undo::RenameApp { from, to, .. } => format!("rename app {from} back to {to}"),
            Undo::RestoreEnv { name, .. } => {
                format!("restore the environment variables and service bindings of app {name}")
            }
            Undo::CancelDeployment { app_name, .. } => {
                format!("cancel the deployment of app {app_name} (the old version serves again)")
            }
            Undo::StopApp { name, .. } => format!("stop app {name} again"),
        }
    }

    /// The `cf` command that does the same by hand.
    pub fn manual_command(&self) -> String {
        match self {
            Undo::DeleteApp { name, routes, .. } if routes.is_empty() => {
                format!("cf delete {name} -f")
            }
            Undo::DeleteApp { name, .. } => format!("cf delete {name} -f -r"),
            Undo::DeleteRoute { address, .. } => {
                format!("cf delete-route {} -f", address.cf_flags())
            }
            Undo::RemoveDestination {
                address, app_name, ..
            } => format!("cf unmap-route {app_name} {}", address.cf_flags()),
            Undo::AddDestination {
                address, app_name, ..
            } => format!("cf map-route {app_name} {}", address.cf_flags()),
            Undo::DeleteNetworkPolicies(p) => format!(
                "cf curl -X POST /networking/v1/external/policies/delete -d '{}'",
                policies_json(p)
            ),
            Undo::RenameApp { from, to, .. } => format!("cf rename {from} {to}"),
            Undo::CancelDeployment { app_name, .. } => format!("cf cancel-deployment {app_name}"),
            Undo::StopApp { name, .. } => format!("cf stop {name}"),
            Undo::RestoreEnv { name, vars, .. } => {
                // Names only: the values may be secrets and this line ends up in CI logs.
                let names: Vec<&str> = vars.keys().map(String::as_str).collect();
                format!(
                    "restore the environment variables of app {name} to their values before the deploy (cf set-env {name} NAME VALUE for each of: {}; values not shown), cf unset-env for variables added since, cf unbind-service for services bound since",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                )
            }
        }
    }
}

impl Step {
    /// A step of manifest app `app`.
    pub fn new(app: impl Into<String>, action: Action) -> Self {
        Self {
            app: Some(app.into()),
            action,
        }
    }

    /// A step of the whole deploy (no one app).
    pub fn global(action: Action) -> Self {
        Self { app: None, action }
    }

    /// The manifest app for events and messages: empty for a step of the whole deploy.
    pub fn app_label(&self) -> &str {
        self.app.as_deref().unwrap_or_default()
    }

    /// A short machine name for the step kind (JSON output, fault injection in tests).
    pub fn kind(&self) -> &'static str {
        self.action.kind()
    }

    /// Whether the step changes anything on the platform.
    pub fn is_mutating(&self) -> bool {
        self.action.is_mutating()
    }

    /// What the step does, in the cf CLI's voice.
    pub fn describe(&self) -> String {
        self.action.describe(self.app_label())
    }

    /// The `cf` command that does this step by hand (for steps left undone after the switch).
    pub fn manual_command(&self) -> Option<String> {
        self.action.manual_command(self.app_label())
    }

    /// Whether the step runs a release task (never tried again: it could run twice).
    pub fn is_task(&self) -> bool {
        matches!(self.action, Action::RunTask { .. })
    }
}

/// A step that changes the platform (see [`Action::is_mutating`]).
const CHANGES: bool = true;
/// A step that only reads or waits.
const READS: bool = false;

/// The `cf set-label`/`cf unset-label` commands that make the label changes of `update` on
/// app `name` by hand; `None` when it changes no label (annotations have no cf command).
fn label_commands(name: &str, update: &MetadataUpdate) -> Option<String> {
    let set: Vec<String> = update
        .labels
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    let unset: Vec<&str> = update
        .labels
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k.as_str())
        .collect();
    let mut cmds = Vec::new();
    if !set.is_empty() {
        cmds.push(format!("cf set-label app {name} {}", set.join(" ")));
    }
    if !unset.is_empty() {
        cmds.push(format!("cf unset-label app {name} {}", unset.join(" ")));
    }
    (!cmds.is_empty()).then(|| cmds.join(" && "))
}

impl Action {
    /// A short machine name for the step kind (JSON output, fault injection in tests).
    pub fn kind(&self) -> &'static str {
        self.kind_and_effect().0
    }

    /// Whether the step changes anything on the platform (the executor's "nothing was
    /// attempted" and the tests read it).
    pub fn is_mutating(&self) -> bool {
        self.kind_and_effect().1 == CHANGES
    }

    /// The step kind and whether it changes the platform ([`CHANGES`]) or only reads and waits
    /// ([`READS`]): one row per action, exhaustive, so a new action says both here.
    fn kind_and_effect(&self) -> (&'static str, bool) {
        match self {
            Action::DeleteLeftover { .. } => ("delete_leftover", CHANGES),
            Action::RenameApp { .. } => ("rename_app", CHANGES),
            Action::CreateRoute { .. } => ("create_route", CHANGES),
            Action::ApplyManifest { .. } => ("apply_manifest", CHANGES),
            Action::SetSsh { .. } => ("set_ssh", CHANGES),
            Action::CopyMetadata { .. } => ("copy_metadata", CHANGES),
            Action::CopyNetworkPolicies { .. } => ("copy_network_policies", CHANGES),
            Action::CreatePackage => ("create_package", CHANGES),
            Action::UploadBits => ("upload_bits", CHANGES),
            Action::Stage => ("stage", CHANGES),
            Action::SetDroplet => ("set_droplet", CHANGES),
            Action::Start => ("start", CHANGES),
            Action::WaitHealthy => ("wait_healthy", READS),
            Action::SmokeTest { .. } => ("smoke_test", READS),
            Action::RunTask { .. } => ("run_task", CHANGES),
            Action::MapRoute { .. } => ("map_route", CHANGES),
            Action::UnmapRoute { .. } => ("unmap_route", CHANGES),
            Action::Drain { .. } => ("drain", READS),
            Action::StopApp { .. } => ("stop_app", CHANGES),
            Action::DeleteApp { .. } => ("delete_app", CHANGES),
            Action::UpdateMetadata { .. } => ("update_metadata", CHANGES),
            Action::DeleteRoute { .. } => ("delete_route", CHANGES),
            Action::SnapshotEnv { .. } => ("snapshot_env", READS),
            Action::UpdateApp { .. } => ("update_app", CHANGES),
            Action::Deploy { .. } => ("deploy", CHANGES),
            Action::Reinstate { .. } => ("reinstate", READS),
            Action::StartExisting { .. } => ("start_existing", CHANGES),
            Action::DrainAuto { .. } => ("drain", READS),
            Action::CheckRequestRecords { .. } => ("check_request_records", READS),
            Action::ScaleCandidate { .. } => ("scale_candidate", CHANGES),
            Action::AnalyseCanary { .. } => ("analyse_canary", READS),
        }
    }

    /// What the step of manifest app `app` does, in the cf CLI's voice.
    pub fn describe(&self, app: &str) -> String {
        match self {
            Action::DeleteLeftover { name, .. } => {
                format!("Deleting leftover app {name} of an interrupted run")
            }
            Action::RenameApp {
                from, to, metadata, ..
            } if metadata.is_empty() => {
                format!("Renaming app {from} to {to}")
            }
            Action::RenameApp { from, to, .. } => {
                format!("Renaming app {from} to {to} and updating its labels")
            }
            Action::CreateRoute { route, .. } => format!("Creating route {route}"),
            Action::ApplyManifest { render, .. } => applying("for app", render),
            Action::SetSsh { enabled } => format!(
                "{} SSH for the new {app} (as on the live app)",
                if *enabled { "Enabling" } else { "Disabling" }
            ),
            Action::CopyMetadata { update } => format!(
                "Copying {} labels and {} annotations of the live {app}",
                update.labels.len(),
                update.annotations.len()
            ),
            Action::CopyNetworkPolicies { policies } => format!(
                "Copying {} network policies of the live {app}",
                policies.len()
            ),
            Action::CreatePackage => format!("Creating package for {app}"),
            Action::UploadBits => format!("Uploading files for {app}"),
            Action::Stage => format!("Staging {app}"),
            Action::SetDroplet => format!("Setting droplet of {app}"),
            Action::Start => format!("Starting {app}"),
            Action::WaitHealthy => format!("Waiting for all instances of {app} to run"),
            Action::SmokeTest { route } => format!("Smoke-testing {app} at {route}"),
            Action::RunTask {
                name,
                after_switch: false,
                ..
            } => format!("Running task {name} on the new {app} (--task-before-switch)"),
            Action::RunTask {
                name,
                after_switch: true,
                ..
            } => format!("Running task {name} on {app} (--task-after-switch)"),
            Action::MapRoute { route, .. } => {
                format!("Mapping route {} to the new {app}", route.address)
            }
            Action::UnmapRoute {
                route, from_name, ..
            } => format!("Unmapping route {} from {from_name}", route.address),
            Action::Drain { duration } => {
                format!("Draining the old version for {}", fmt_duration(*duration))
            }
            Action::StopApp { name, .. } => format!("Stopping app {name}"),
            Action::DeleteApp { name, .. } => format!("Deleting app {name}"),
            Action::UpdateMetadata { name, .. } => format!("Updating labels of app {name}"),
            Action::DeleteRoute { route, .. } => format!("Deleting route {}", route.address),
            Action::SnapshotEnv { .. } => {
                format!(
                    "Recording the environment variables and service bindings of {app} (restored on rollback)"
                )
            }
            Action::UpdateApp { render, .. } => applying("to the live app", render),
            Action::Deploy {
                strategy: DeploymentStrategy::Rolling,
                ..
            } => format!("Rolling deployment of {app} (canceled on a crash or stall)"),
            Action::Deploy {
                strategy: DeploymentStrategy::Canary,
                smoke_route,
            } => match smoke_route {
                Some(r) => format!(
                    "Canary deployment of {app}: smoke-test the canary at {r} at every pause, then continue"
                ),
                None => format!("Canary deployment of {app}: continue at every pause"),
            },
            Action::Reinstate { name, .. } => {
                format!("Bringing back {name}, the previous version of {app}")
            }
            Action::StartExisting { name, .. } => format!("Starting app {name}"),
            Action::DrainAuto { max } => format!(
                "Draining the old version until the routers dropped it and it is quiet (at most {})",
                fmt_duration(*max)
            ),
            Action::CheckRequestRecords { live_name, .. } => format!(
                "Checking that the router's request records of {live_name} can be read (canary analysis)"
            ),
            Action::ScaleCandidate { percent, .. } if *percent >= 100 => {
                format!("Scaling the new {app} to its full instance count")
            }
            Action::ScaleCandidate { percent, .. } => {
                format!("Scaling the new {app} to take about {percent}% of the requests")
            }
            Action::AnalyseCanary {
                step,
                steps,
                percent,
                live_name,
                ..
            } => format!(
                "Canary step {step} of {steps}: judging the new {app} at about {percent}% of the requests against {live_name}"
            ),
        }
    }

    /// The `cf` command that does this step of manifest app `app` by hand (for steps left
    /// undone after the switch).
    pub fn manual_command(&self, app: &str) -> Option<String> {
        match self {
            Action::StopApp { name, .. } => Some(format!("cf stop {name}")),
            Action::DeleteApp { name, .. } | Action::DeleteLeftover { name, .. } => {
                Some(format!("cf delete {name} -f"))
            }
            Action::RenameApp {
                from, to, metadata, ..
            } => {
                let rename = format!("cf rename {from} {to}");
                Some(match label_commands(to, metadata) {
                    Some(labels) => format!("{rename} && {labels}"),
                    None => rename,
                })
            }
            // The command itself is not repeated (it may hold a secret): the user gave it.
            Action::RunTask {
                name,
                after_switch: true,
                ..
            } => Some(format!(
                "cf run-task {app} --name {name} --command '<its --task-after-switch command>'"
            )),
            Action::DeleteRoute { route, .. } => {
                Some(format!("cf delete-route {} -f", route.address.cf_flags()))
            }
            Action::UpdateMetadata { name, update, .. } => label_commands(name, update),
            Action::MapRoute { route, .. } => {
                Some(format!("cf map-route {app} {}", route.address.cf_flags()))
            }
            Action::UnmapRoute {
                route, from_name, ..
            } => Some(format!(
                "cf unmap-route {from_name} {}",
                route.address.cf_flags()
            )),
            // Waits: nothing to do by hand.
            Action::Drain { .. }
            | Action::DrainAuto { .. }
            // Before the commit point only: undone on failure, never left over.
            | Action::CreateRoute { .. }
            | Action::ApplyManifest { .. }
            | Action::SetSsh { .. }
            | Action::CopyMetadata { .. }
            | Action::CopyNetworkPolicies { .. }
            | Action::CreatePackage
            | Action::UploadBits
            | Action::Stage
            | Action::SetDroplet
            | Action::Start
            | Action::WaitHealthy
            | Action::SmokeTest { .. }
            | Action::RunTask {
                after_switch: false,
                ..
            }
            | Action::SnapshotEnv { .. }
            | Action::UpdateApp { .. }
            | Action::Deploy { .. }
            | Action::Reinstate { .. }
            | Action::StartExisting { .. }
            | Action::CheckRequestRecords { .. }
            | Action::ScaleCandidate { .. }
            | Action::AnalyseCanary { .. } => None,
        }
    }
}

/// "Applying manifest {to} {name}[ with route {routes}]".
fn applying(to: &str, render: &RenderRequest) -> String {
    if render.routes.is_empty() {
        format!("Applying manifest {to} {}", render.name)
    } else {
        format!(
            "Applying manifest {to} {} with route {}",
            render.name,
            render.routes.join(", ")
        )
    }
}

/// Formats a duration as the UI does: `250ms`, `3s`, `1m30s`.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    if s < 60 {
        let tenths = (ms % 1000) / 100;
        return if tenths == 0 {
            format!("{s}s")
        } else {
            format!("{s}.{tenths}s")
        };
    }
    let (m, s) = (s / 60, s % 60);
    if s == 0 {
        format!("{m}m")
    } else {
        format!("{m}m{s}s")
    }
}

/// The outputs of completed steps, in order: the only way data passes between steps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    entries: Vec<(Step, StepOutput)>,
}

impl Ledger {
    /// Records a step's output.
    pub fn push(&mut self, step: Step, out: StepOutput) {
        self.entries.push((step, out));
    }

    /// All entries, in order.
    pub fn entries(&self) -> &[(Step, StepOutput)] {
        &self.entries
    }

    /// The undos of everything recorded, in reverse order.
    pub fn undos(&self) -> Vec<Undo> {
        self.entries
            .iter()
            .rev()
            .filter_map(|(s, o)| undo_for(s, o))
            .collect()
    }

    /// The first recorded output of manifest app `app` that `pick` recognises.
    fn find_for<'s, T>(
        &'s self,
        app: &str,
        pick: impl Fn(&'s Action, &'s StepOutput) -> Option<T>,
    ) -> Option<T> {
        self.entries
            .iter()
            .filter(|(s, _)| s.app.as_deref() == Some(app))
            .find_map(|(s, o)| pick(&s.action, o))
    }

    /// The app created by `ApplyManifest` (or updated by `UpdateApp`, or brought back by
    /// `Reinstate`) for manifest app `app`.
    pub fn new_app(&self, app: &str) -> Option<NewApp<'_>> {
        self.find_for(app, |a, o| match (a, o) {
            (
                Action::ApplyManifest { .. } | Action::UpdateApp { .. } | Action::Reinstate { .. },
                StepOutput::App { guid, name, .. },
            ) => Some(NewApp { guid, name }),
            _ => None,
        })
    }

    /// The GUID of a route created by the run at this address.
    pub fn created_route(&self, address: &RouteAddress) -> Option<&RouteGuid> {
        self.entries.iter().find_map(|(s, o)| match (&s.action, o) {
            (
                Action::CreateRoute { route, .. },
                StepOutput::Route(r) | StepOutput::ExistingRoute(r),
            ) if route == address => Some(&r.guid),
            _ => None,
        })
    }

    /// The package created for manifest app `app`.
    pub fn package(&self, app: &str) -> Option<&PackageGuid> {
        self.find_for(app, |a, o| match (a, o) {
            (Action::CreatePackage, StepOutput::Package(g)) => Some(g),
            _ => None,
        })
    }

    /// The droplet staged for manifest app `app`.
    pub fn droplet(&self, app: &str) -> Option<&DropletGuid> {
        self.find_for(app, |a, o| match (a, o) {
            (Action::Stage, StepOutput::Droplet(g)) => Some(g),
            _ => None,
        })
    }
}

/// The app a run created (or updated) for one manifest app, as the [`Ledger`] recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewApp<'a> {
    pub guid: &'a AppGuid,
    /// The name it was created under (the candidate name during a swap).
    pub name: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(host: &str) -> RouteAddress {
        RouteAddress {
            host: host.into(),
            domain: "example.com".into(),
            domain_guid: "d".into(),
            path: String::new(),
            port: None,
        }
    }

    fn route(guid: &str) -> Route {
        Route {
            guid: guid.into(),
            host: "h".into(),
            path: String::new(),
            port: None,
            domain_guid: "d".into(),
            url: "h.example.com".into(),
        }
    }

    #[test]
    fn undo_for_table() {
        let app = || "web".to_string();
        let dest = Destination {
            guid: "dg".into(),
            app_guid: "A".into(),
            process_type: "web".into(),
            port: Some(8080),
            protocol: Some("http2".into()),
        };
        let policy = NetworkPolicy {
            source_app: "C".into(),
            destination_app: "X".into(),
            protocol: "tcp".into(),
            start_port: 1,
            end_port: 2,
        };
        let cases: Vec<(Step, StepOutput, Option<Undo>)> = vec![
            (
                Step::new(
                    app(),
                    Action::CreateRoute {
                        route: addr("h"),
                        temporary: false,
                    },
                ),
                StepOutput::Route(route("R")),
                Some(Undo::DeleteRoute {
                    guid: "R".into(),
                    address: addr("h"),
                }),
            ),
            (
                Step::new(
                    app(),
                    Action::ApplyManifest {
                        render: RenderRequest::default(),
                    },
                ),
                StepOutput::App {
                    guid: "C".into(),
                    name: "web-candidate".into(),
                    server_routes: vec![route("RR")],
                },
                Some(Undo::DeleteApp {
                    guid: "C".into(),
                    name: "web-candidate".into(),
                    routes: vec![route("RR")],
                }),
            ),
            (
                Step::new(app(), Action::CopyNetworkPolicies { policies: vec![] }),
                StepOutput::Policies(vec![policy.clone()]),
                Some(Undo::DeleteNetworkPolicies(vec![policy])),
            ),
            (
                Step::new(
                    app(),
                    Action::MapRoute {
                        route: RouteRef {
                            address: addr("h"),
                            guid: Some("R".into()),
                        },
                        process_type: "web".into(),
                        port: None,
                        protocol: None,
                    },
                ),
                StepOutput::Mapped {
                    route_guid: "R".into(),
                    destination_guid: "D".into(),
                    app_name: "web-candidate".into(),
                },
                Some(Undo::RemoveDestination {
                    route_guid: "R".into(),
                    destination_guid: "D".into(),
                    address: addr("h"),
                    app_name: "web-candidate".into(),
                }),
            ),
            (
                Step::new(
                    app(),
                    Action::UnmapRoute {
                        route: RouteRef {
                            address: addr("h"),
                            guid: Some("R".into()),
                        },
                        from_name: "web".into(),
                        destination: dest,
                    },
                ),
                StepOutput::Unmapped {
                    route_guid: "R".into(),
                },
                Some(Undo::AddDestination {
                    route_guid: "R".into(),
                    address: addr("h"),
                    app_name: "web".into(),
                    destination: NewDestination {
                        app_guid: "A".into(),
                        process_type: "web".into(),
                        port: Some(8080),
                        protocol: Some("http2".into()),
                    },
                }),
            ),
            (
                Step::new(
                    app(),
                    Action::RenameApp {
                        target: AppRef::Existing {
                            guid: "L".into(),
                            name: "web-candidate".into(),
                        },
                        from: "web-candidate".into(),
                        to: "web-leftover-1".into(),
                        metadata: MetadataUpdate::default(),
                    },
                ),
                StepOutput::Renamed { guid: "L".into() },
                Some(Undo::RenameApp {
                    guid: "L".into(),
                    from: "web-leftover-1".into(),
                    to: "web-candidate".into(),
                }),
            ),
        ];
        for (step, out, want) in cases {
            assert_eq!(undo_for(&step, &out), want, "{step:?}");
        }
    }

    #[test]
    fn steps_without_an_undo() {
        let app = || "web".to_string();
        let cases: Vec<(Step, StepOutput, Option<Undo>)> = vec![
            // Steps inside the new app are undone by deleting it.
            (Step::new(app(), Action::Start), StepOutput::None, None),
            (
                Step::new(app(), Action::Stage),
                StepOutput::Droplet("D".into()),
                None,
            ),
            (
                Step::new(app(), Action::SetSsh { enabled: true }),
                StepOutput::None,
                None,
            ),
            (
                Step::new(app(), Action::CreatePackage),
                StepOutput::Package("P".into()),
                None,
            ),
            (
                Step::new(app(), Action::WaitHealthy),
                StepOutput::None,
                None,
            ),
            (
                Step::global(Action::Drain {
                    duration: Duration::from_secs(1),
                }),
                StepOutput::None,
                None,
            ),
            // A step without the output it records has nothing to undo.
            (
                Step::new(
                    app(),
                    Action::ApplyManifest {
                        render: RenderRequest::default(),
                    },
                ),
                StepOutput::None,
                None,
            ),
        ];
        for (step, out, want) in cases {
            assert_eq!(undo_for(&step, &out), want, "{step:?}");
        }
    }

    #[test]
    fn ledger_undos_run_in_reverse_order() {
        let mut l = Ledger::default();
        l.push(
            Step::new(
                "web",
                Action::CreateRoute {
                    route: addr("t"),
                    temporary: true,
                },
            ),
            StepOutput::Route(route("R")),
        );
        l.push(
            Step::new(
                "web",
                Action::ApplyManifest {
                    render: RenderRequest::default(),
                },
            ),
            StepOutput::App {
                guid: "C".into(),
                name: "c".into(),
                server_routes: vec![],
            },
        );
        l.push(Step::new("web", Action::Start), StepOutput::None);
        let d: Vec<String> = l.undos().iter().map(Undo::describe).collect();
        assert_eq!(d, vec!["delete app c", "delete route t.example.com"]);
        let new = l.new_app("web").expect("recorded");
        assert_eq!((new.guid.as_str(), new.name), ("C", "c"));
        assert_eq!(
            l.created_route(&addr("t")).map(RouteGuid::as_str),
            Some("R")
        );
    }

    #[test]
    fn manual_commands_are_cf_commands() {
        let u = Undo::DeleteRoute {
            guid: "R".into(),
            address: addr("h"),
        };
        assert_eq!(
            u.manual_command(),
            "cf delete-route example.com --hostname h -f"
        );
        let u = Undo::AddDestination {
            route_guid: "R".into(),
            address: addr("h"),
            app_name: "web".into(),
            destination: NewDestination {
                app_guid: "A".into(),
                process_type: "web".into(),
                port: None,
                protocol: None,
            },
        };
        assert_eq!(
            u.manual_command(),
            "cf map-route web example.com --hostname h"
        );
        let s = Step::new(
            "web",
            Action::UpdateMetadata {
                target: AppRef::New { app: "web".into() },
                name: "web".into(),
                update: MetadataUpdate {
                    labels: [("zero-downtime.cf/role".to_string(), None)].into(),
                    annotations: Default::default(),
                },
            },
        );
        assert_eq!(
            s.manual_command().as_deref(),
            Some("cf unset-label app web zero-downtime.cf/role")
        );
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(fmt_duration(Duration::from_millis(20)), "20ms");
    }
}
