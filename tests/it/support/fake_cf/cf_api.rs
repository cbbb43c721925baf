//! The `CfApi` calls of [`FakeCf`]: each records itself ([`FakeCf::enter`]), meets its injected
//! fault, and acts on the fake's [`State`].

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use cf_zero_downtime::deploy::api::{
    ApiError, ApiResult, App, AppGuid, AppSource, AppState, BuildGuid, BuildState, CfApi,
    CrashEvent, CrashEvents, Deployment, DeploymentGuid, DeploymentState, DeploymentStrategy,
    Destination, DestinationGuid, Domain, DropletGuid, InstanceStat, InstanceState, MappedRoutes,
    MetadataUpdate, NetworkPolicy, NewApp, NewDeployment, NewDestination, NewRoute, NewTask,
    PackageGuid, Process, ProcessGuid, ProgressSink, Quotas, Route, RouteGuid, RouteState,
    ServiceBinding, ServiceCredentialBindingGuid, SpaceGuid, TaskGuid, TaskState,
};

use cf_zero_downtime::deploy::route::resolve_route;

use super::*;

/// Sets (`Some`) and removes (`None`) the labels and annotations of `update` on `app`.
fn apply_metadata(app: &mut App, update: &MetadataUpdate) {
    for (k, v) in &update.labels {
        match v {
            Some(v) => app.labels.insert(k.clone(), v.clone()),
            None => app.labels.remove(k),
        };
    }
    for (k, v) in &update.annotations {
        match v {
            Some(v) => app.annotations.insert(k.clone(), v.clone()),
            None => app.annotations.remove(k),
        };
    }
}

fn not_found(what: &str) -> ApiError {
    ApiError::not_found(format!("{what} not found"))
}

impl CfApi for FakeCf {
    type Bits = ();

    async fn crash_events(&self, app: &AppGuid, _since: SystemTime) -> ApiResult<CrashEvents> {
        let app = app.as_str();
        self.enter("crash_events", app)?;
        let s = self.lock();
        if s.crash_records_forbidden {
            return Err(ApiError::new(
                403,
                "CF-NotAuthorized",
                "You are not authorized",
            ));
        }
        let crashing = s.crash_new_apps
            && s.crash_shows != CrashShows::CrashedState
            && s.apps.get(app).is_some_and(|a| {
                a.app.guid.as_str().starts_with("app-") && a.app.state != AppState::Stopped
            });
        Ok(CrashEvents {
            events: if crashing {
                vec![CrashEvent {
                    process_guid: Some(format!("{app}/web").into()),
                    instance_guid: None,
                    index: Some(0),
                    reason: "APP/PROC/WEB: Exited with status 137 (health check timed out)".into(),
                }]
            } else {
                Vec::new()
            },
            moves: Vec::new(),
            unavailable: Vec::new(),
        })
    }

    async fn find_apps_by_name(&self, _space: &SpaceGuid, names: &[String]) -> ApiResult<Vec<App>> {
        self.enter("find_apps_by_name", &names.join(","))?;
        Ok(self
            .lock()
            .apps
            .values()
            .filter(|a| names.contains(&a.app.name))
            .map(|a| a.app.clone())
            .collect())
    }

    async fn find_apps_by_label(&self, _space: &SpaceGuid, selector: &str) -> ApiResult<Vec<App>> {
        self.enter("find_apps_by_label", selector)?;
        let (k, v) = match selector.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (selector, None),
        };
        Ok(self
            .lock()
            .apps
            .values()
            .filter(|a| match (a.app.labels.get(k), v) {
                (Some(x), Some(v)) => x == v,
                (Some(_), None) => true,
                _ => false,
            })
            .map(|a| a.app.clone())
            .collect())
    }

    async fn get_app(&self, guid: &AppGuid) -> ApiResult<App> {
        let guid = guid.as_str();
        self.enter("get_app", guid)?;
        self.lock()
            .apps
            .get(guid)
            .map(|a| a.app.clone())
            .ok_or_else(|| not_found("app"))
    }

    async fn create_app(&self, _space: &SpaceGuid, new: &NewApp) -> ApiResult<App> {
        let after = self.enter("create_app", &new.name)?;
        let mut s = self.lock();
        if let Some(other) = s.create_race.take_if(|a| a.name == new.name) {
            s.apps.insert(
                other.guid.to_string(),
                FApp {
                    app: other,
                    ssh: true,
                    droplet: None,
                    processes: vec![("web".into(), 1)],
                    starting_polls: 0,
                },
            );
        }
        if s.apps
            .values()
            .any(|a| a.app.name.eq_ignore_ascii_case(&new.name))
        {
            return Err(ApiError::new(
                422,
                "CF-UniquenessError",
                format!("App with the name '{}' already exists.", new.name),
            ));
        }
        let g = Self::id(&mut s, "app");
        let app = App {
            guid: g.clone().into(),
            name: new.name.clone(),
            state: AppState::Stopped,
            labels: new.labels.clone(),
            annotations: new.annotations.clone(),
        };
        s.lifecycles.insert(g.clone(), new.lifecycle);
        s.apps.insert(
            g,
            FApp {
                app: app.clone(),
                ssh: true,
                droplet: None,
                processes: vec![("web".into(), 2)],
                starting_polls: 0,
            },
        );
        if after {
            Err(err500("create_app"))
        } else {
            Ok(app)
        }
    }

    async fn apply_manifest(&self, _space: &SpaceGuid, yaml: &str) -> ApiResult<()> {
        let after = self.enter("apply_manifest", "")?;
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml)
            .map_err(|e| ApiError::new(422, "CF-UnprocessableEntity", e.to_string()))?;
        let apps = doc["applications"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        for a in apps {
            let name = a["name"].as_str().unwrap_or_default().to_string();
            let mut s = self.lock();
            let guid = match s.apps.values().find(|x| x.app.name == name) {
                Some(x) => x.app.guid.to_string(),
                None => {
                    let g = Self::id(&mut s, "app");
                    let inst = a["instances"].as_u64().unwrap_or(2) as u32;
                    s.apps.insert(
                        g.clone(),
                        FApp {
                            app: App {
                                guid: g.clone().into(),
                                name: name.clone(),
                                state: AppState::Stopped,
                                labels: BTreeMap::new(),
                                annotations: BTreeMap::new(),
                            },
                            ssh: true,
                            droplet: None,
                            processes: vec![("web".into(), inst)],
                            starting_polls: 0,
                        },
                    );
                    g
                }
            };
            for svc in a["services"].as_sequence().cloned().unwrap_or_default() {
                let svc = svc
                    .as_str()
                    .or_else(|| svc["name"].as_str())
                    .unwrap_or_default()
                    .to_string();
                if !s.bindings.values().any(|(a, i)| a == &guid && i == &svc) {
                    let b = Self::id(&mut s, "binding");
                    s.bindings.insert(b, (guid.clone(), svc));
                }
            }
            if let Some(m) = a["env"].as_mapping() {
                let env = s.env.entry(guid.clone()).or_default();
                for (k, v) in m {
                    env.insert(
                        k.as_str().unwrap_or_default().to_string(),
                        v.as_str().unwrap_or_default().to_string(),
                    );
                }
            }
            let domains = s.domains.clone();
            let fa = s.apps.get_mut(&guid).unwrap();
            if let Some(n) = a["instances"].as_u64() {
                for p in fa.processes.iter_mut().filter(|p| p.0 == "web") {
                    p.1 = n as u32;
                }
            }
            for (kind, map) in [("labels", 0), ("annotations", 1)] {
                if let Some(m) = a["metadata"][kind].as_mapping() {
                    for (k, v) in m {
                        let (k, v) = (
                            k.as_str().unwrap_or_default(),
                            v.as_str().unwrap_or_default(),
                        );
                        let target = if map == 0 {
                            &mut fa.app.labels
                        } else {
                            &mut fa.app.annotations
                        };
                        target.insert(k.into(), v.into());
                    }
                }
            }
            let mut routes: Vec<String> = a["routes"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|r| r["route"].as_str().map(str::to_string))
                .collect();
            let mapped = s
                .routes
                .values()
                .any(|(_, d)| d.iter().any(|d| d.app_guid == guid));
            if a["random-route"].as_bool() == Some(true) && !mapped {
                routes.push(format!("{name}-rnd.example.com"));
            }
            for r in routes {
                let Some(addr) = resolve_route(&r, &domains) else {
                    return Err(ApiError::new(422, "CF-UnprocessableEntity", "no domain"));
                };
                let url = addr.url();
                let existing = s
                    .routes
                    .values()
                    .find(|(x, _)| x.url == url)
                    .map(|(x, _)| x.guid.to_string());
                let rg = match existing {
                    Some(g) => g,
                    None => {
                        let g = Self::id(&mut s, "route");
                        s.routes.insert(
                            g.clone(),
                            (
                                Route {
                                    guid: g.clone().into(),
                                    host: addr.host.clone(),
                                    path: addr.path.clone(),
                                    port: addr.port,
                                    domain_guid: addr.domain_guid.clone(),
                                    url,
                                },
                                Vec::new(),
                            ),
                        );
                        g
                    }
                };
                let dg = Self::id(&mut s, "dest");
                let dests = &mut s.routes.get_mut(&rg).unwrap().1;
                if !dests.iter().any(|d| d.app_guid == guid) {
                    dests.push(Destination {
                        guid: dg.into(),
                        app_guid: guid.clone().into(),
                        process_type: "web".into(),
                        port: None,
                        protocol: None,
                    });
                }
            }
        }
        self.lock().warnings.push("manifest applied".into());
        if after {
            Err(err500("apply_manifest"))
        } else {
            Ok(())
        }
    }

    async fn create_package(
        &self,
        app: &AppGuid,
        _source: &AppSource<()>,
    ) -> ApiResult<PackageGuid> {
        let app = app.as_str();
        let after = self.enter("create_package", app)?;
        let mut s = self.lock();
        let g = Self::id(&mut s, "pkg");
        s.packages.insert(g.clone(), app.into());
        if after {
            Err(err500("create_package"))
        } else {
            Ok(g.into())
        }
    }

    async fn upload_bits(
        &self,
        package: &PackageGuid,
        _bits: &(),
        progress: ProgressSink,
    ) -> ApiResult<()> {
        let package = package.as_str();
        let after = self.enter("upload_bits", package)?;
        progress.report(512, Some(1024));
        progress.report(1024, Some(1024));
        if after {
            Err(err500("upload_bits"))
        } else {
            Ok(())
        }
    }

    async fn create_build(&self, package: &PackageGuid) -> ApiResult<BuildGuid> {
        let package = package.as_str();
        let after = self.enter("create_build", package)?;
        let gate = {
            let mut s = self.lock();
            s.builds_begun += 1;
            s.build_gate
        };
        if let Some(n) = gate {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while self.lock().builds_begun < n {
                if tokio::time::Instant::now() >= deadline {
                    return Err(ApiError::new(
                        500,
                        "CF-ServerError",
                        format!("build gate: {n} builds were never staging at the same time"),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let mut s = self.lock();
        let g = Self::id(&mut s, "build");
        s.builds.insert(g.clone(), (package.into(), 2));
        if after {
            Err(err500("create_build"))
        } else {
            Ok(g.into())
        }
    }

    async fn get_build(&self, build: &BuildGuid) -> ApiResult<BuildState> {
        let build = build.as_str();
        self.enter("get_build", build)?;
        let mut s = self.lock();
        let fail_for = s.staging_fails_for.clone();
        let (pkg, left) = s.builds.get_mut(build).ok_or_else(|| not_found("build"))?;
        if *left > 0 {
            *left -= 1;
            return Ok(BuildState::Staging);
        }
        let pkg = pkg.clone();
        let app = s.packages.get(&pkg).cloned().unwrap_or_default();
        let name = s
            .apps
            .get(&app)
            .map(|a| a.app.name.clone())
            .unwrap_or_default();
        if let Some(f) = fail_for
            && name.starts_with(&f)
        {
            return Ok(BuildState::Failed(
                "NoAppDetectedError - no buildpack detected".into(),
            ));
        }
        Ok(BuildState::Staged(format!("droplet-{build}").into()))
    }

    async fn set_current_droplet(&self, app: &AppGuid, droplet: &DropletGuid) -> ApiResult<()> {
        let app = app.as_str();
        let droplet = droplet.as_str();
        let after = self.enter("set_current_droplet", app)?;
        let mut s = self.lock();
        s.apps.get_mut(app).ok_or_else(|| not_found("app"))?.droplet = Some(droplet.into());
        if after {
            Err(err500("set_current_droplet"))
        } else {
            Ok(())
        }
    }

    async fn start_app(&self, app: &AppGuid) -> ApiResult<()> {
        let app = app.as_str();
        let after = self.enter("start_app", app)?;
        let mut s = self.lock();
        let polls = s.starting_polls;
        let a = s.apps.get_mut(app).ok_or_else(|| not_found("app"))?;
        a.app.state = AppState::Started;
        a.starting_polls = polls;
        if after {
            Err(err500("start_app"))
        } else {
            Ok(())
        }
    }

    async fn stop_app(&self, app: &AppGuid) -> ApiResult<()> {
        let app = app.as_str();
        let after = self.enter("stop_app", app)?;
        let mut s = self.lock();
        s.apps
            .get_mut(app)
            .ok_or_else(|| not_found("app"))?
            .app
            .state = AppState::Stopped;
        if after {
            Err(err500("stop_app"))
        } else {
            Ok(())
        }
    }

    async fn rename_app(
        &self,
        app: &AppGuid,
        name: &str,
        metadata: &MetadataUpdate,
    ) -> ApiResult<()> {
        let app = app.as_str();
        let after = self.enter("rename_app", &format!("{app} {name}"))?;
        let mut s = self.lock();
        if s.apps
            .values()
            .any(|a| a.app.name == name && a.app.guid != app)
        {
            return Err(ApiError::new(
                422,
                "CF-UniquenessError",
                "The app name is taken",
            ));
        }
        let a = &mut s.apps.get_mut(app).ok_or_else(|| not_found("app"))?.app;
        a.name = name.into();
        apply_metadata(a, metadata);
        if after {
            Err(err500("rename_app"))
        } else {
            Ok(())
        }
    }

    async fn delete_app(&self, app: &AppGuid) -> ApiResult<()> {
        let app = app.as_str();
        let after = self.enter("delete_app", app)?;
        let mut s = self.lock();
        s.apps.remove(app).ok_or_else(|| not_found("app"))?;
        for (_, d) in s.routes.values_mut() {
            d.retain(|d| d.app_guid != app);
        }
        if after {
            Err(err500("delete_app"))
        } else {
            Ok(())
        }
    }

    async fn update_metadata(&self, app: &AppGuid, update: &MetadataUpdate) -> ApiResult<()> {
        let app = app.as_str();
        let after = self.enter("update_metadata", app)?;
        let mut s = self.lock();
        let a = s.apps.get_mut(app).ok_or_else(|| not_found("app"))?;
        apply_metadata(&mut a.app, update);
        if after {
            Err(err500("update_metadata"))
        } else {
            Ok(())
        }
    }

    async fn get_ssh_enabled(&self, app: &AppGuid) -> ApiResult<bool> {
        let app = app.as_str();
        self.enter("get_ssh_enabled", app)?;
        self.lock()
            .apps
            .get(app)
            .map(|a| a.ssh)
            .ok_or_else(|| not_found("app"))
    }

    async fn set_ssh_enabled(&self, app: &AppGuid, enabled: bool) -> ApiResult<()> {
        let app = app.as_str();
        let after = self.enter("set_ssh_enabled", app)?;
        self.lock()
            .apps
            .get_mut(app)
            .ok_or_else(|| not_found("app"))?
            .ssh = enabled;
        if after {
            Err(err500("set_ssh_enabled"))
        } else {
            Ok(())
        }
    }

    async fn list_processes(&self, app: &AppGuid) -> ApiResult<Vec<Process>> {
        let app = app.as_str();
        self.enter("list_processes", app)?;
        let s = self.lock();
        let a = s.apps.get(app).ok_or_else(|| not_found("app"))?;
        Ok(a.processes
            .iter()
            .map(|(t, n)| Process {
                guid: format!("{app}/{t}").into(),
                process_type: t.clone(),
                instances: *n,
                memory_mb: Some(64),
            })
            .collect())
    }

    async fn process_stats(&self, process: &ProcessGuid) -> ApiResult<Vec<InstanceStat>> {
        let process = process.as_str();
        self.enter("process_stats", process)?;
        let (app, t) = process.split_once('/').unwrap_or_default();
        let mut s = self.lock();
        if let Some(dep) = s.deployments.get(app)
            && t == "new-web"
        {
            let state = match s.new_instances.get(&dep.app).copied().unwrap_or_default() {
                NewInstances::Healthy => InstanceState::Running,
                NewInstances::Crash => InstanceState::Crashed,
                NewInstances::Stall => InstanceState::Starting,
            };
            return Ok(vec![InstanceStat {
                index: 0,
                state,
                routable: Some(state == InstanceState::Running),
                details: (state == InstanceState::Crashed).then(|| "exit status 1".to_string()),
                instance_guid: Some(format!("{process}/0")),
                uptime: Some(1),
            }]);
        }
        s.stat_polls += 1;
        let poll = s.stat_polls;
        let crash = s.crash_new_apps;
        let shows = s.crash_shows;
        let a = s.apps.get_mut(app).ok_or_else(|| not_found("process"))?;
        let n = a
            .processes
            .iter()
            .find(|(x, _)| x == t)
            .map(|(_, n)| *n)
            .unwrap_or(0);
        let is_new = app.starts_with("app-");
        let restarted = crash && is_new && shows == CrashShows::Restarted;
        let state = if a.app.state == AppState::Stopped {
            InstanceState::Down
        } else if crash && is_new && shows == CrashShows::CrashedState {
            InstanceState::Crashed
        } else if crash && is_new {
            InstanceState::Starting
        } else if a.starting_polls > 0 {
            a.starting_polls -= 1;
            InstanceState::Starting
        } else {
            InstanceState::Running
        };
        Ok((0..n)
            .map(|index| InstanceStat {
                index,
                state,
                routable: Some(state == InstanceState::Running),
                details: (state == InstanceState::Crashed)
                    .then(|| "exit status 1 (out of memory)".to_string()),
                instance_guid: Some(if restarted {
                    format!("{process}/{index}/{poll}")
                } else {
                    format!("{process}/{index}")
                }),
                uptime: Some(if restarted { 0 } else { u64::from(poll) }),
            })
            .collect())
    }

    async fn find_domain(&self, name: &str) -> ApiResult<Option<Domain>> {
        self.enter("find_domain", name)?;
        Ok(self.lock().domains.iter().find(|d| d.name == name).cloned())
    }

    async fn default_domain(&self) -> ApiResult<Option<Domain>> {
        self.enter("default_domain", "")?;
        Ok(self.lock().domains.first().cloned())
    }

    async fn list_app_routes(&self, app: &AppGuid) -> ApiResult<MappedRoutes> {
        let app = app.as_str();
        self.enter("list_app_routes", app)?;
        let s = self.lock();
        let routes: Vec<RouteState> = s
            .routes
            .values()
            .filter(|(_, d)| d.iter().any(|d| d.app_guid == app))
            .map(|(r, d)| RouteState {
                route: r.clone(),
                destinations: d.clone(),
            })
            .collect();
        let domains = s
            .domains
            .iter()
            .filter(|d| routes.iter().any(|r| r.route.domain_guid == d.guid))
            .cloned()
            .collect();
        Ok(MappedRoutes { routes, domains })
    }

    async fn find_route(&self, route: &NewRoute) -> ApiResult<Option<RouteState>> {
        self.enter("find_route", &route.host)?;
        let s = self.lock();
        let url = Self::url_of(&s, route);
        Ok(s.routes
            .values()
            .find(|(r, _)| r.url == url)
            .map(|(r, d)| RouteState {
                route: r.clone(),
                destinations: d.clone(),
            }))
    }

    async fn create_route(&self, _space: &SpaceGuid, route: &NewRoute) -> ApiResult<Route> {
        let after = self.enter("create_route", &route.host)?;
        let mut s = self.lock();
        let url = Self::url_of(&s, route);
        if s.routes.values().any(|(r, _)| r.url == url) {
            return Err(ApiError::new(
                422,
                "CF-UnprocessableEntity",
                format!(
                    "Route already exists with host '{}' for domain 'example.com'.",
                    route.host
                ),
            ));
        }
        let g = Self::id(&mut s, "route");
        let r = Route {
            guid: g.clone().into(),
            host: route.host.clone(),
            path: route.path.clone(),
            port: route.port,
            domain_guid: route.domain_guid.clone(),
            url,
        };
        s.routes.insert(g, (r.clone(), Vec::new()));
        if after {
            Err(err500("create_route"))
        } else {
            Ok(r)
        }
    }

    async fn delete_route(&self, route: &RouteGuid) -> ApiResult<()> {
        let route = route.as_str();
        let after = self.enter("delete_route", route)?;
        self.lock()
            .routes
            .remove(route)
            .ok_or_else(|| not_found("route"))?;
        if after {
            Err(err500("delete_route"))
        } else {
            Ok(())
        }
    }

    async fn list_destinations(&self, route: &RouteGuid) -> ApiResult<Vec<Destination>> {
        let route = route.as_str();
        self.enter("list_destinations", route)?;
        self.lock()
            .routes
            .get(route)
            .map(|(_, d)| d.clone())
            .ok_or_else(|| not_found("route"))
    }

    async fn add_destination(
        &self,
        route: &RouteGuid,
        d: &NewDestination,
    ) -> ApiResult<Destination> {
        let route = route.as_str();
        let after = self.enter("add_destination", &format!("{route} {}", d.app_guid))?;
        let mut s = self.lock();
        let g = Self::id(&mut s, "dest");
        let dests = &mut s.routes.get_mut(route).ok_or_else(|| not_found("route"))?.1;
        let existing = dests
            .iter()
            .find(|x| x.app_guid == d.app_guid && x.process_type == d.process_type)
            .cloned();
        let out = match existing {
            Some(x) => x,
            None => {
                let x = Destination {
                    guid: g.into(),
                    app_guid: d.app_guid.clone(),
                    process_type: d.process_type.clone(),
                    port: d.port,
                    protocol: d.protocol.clone(),
                };
                dests.push(x.clone());
                x
            }
        };
        if after {
            Err(err500("add_destination"))
        } else {
            Ok(out)
        }
    }

    async fn remove_destination(
        &self,
        route: &RouteGuid,
        destination: &DestinationGuid,
    ) -> ApiResult<()> {
        let route = route.as_str();
        let destination = destination.as_str();
        let after = self.enter("remove_destination", &format!("{route} {destination}"))?;
        let mut s = self.lock();
        let dests = &mut s.routes.get_mut(route).ok_or_else(|| not_found("route"))?.1;
        let before = dests.len();
        dests.retain(|d| d.guid != destination);
        if dests.len() == before {
            return Err(not_found("destination"));
        }
        if after {
            Err(err500("remove_destination"))
        } else {
            Ok(())
        }
    }

    async fn list_network_policies(&self, apps: &[AppGuid]) -> ApiResult<Vec<NetworkPolicy>> {
        let joined: Vec<&str> = apps.iter().map(AppGuid::as_str).collect();
        self.enter("list_network_policies", &joined.join(","))?;
        if let Some(status) = self.lock().policies_status {
            return Err(ApiError::new(
                status,
                "policy-server",
                "token missing allowed scopes: [network.write]",
            ));
        }
        Ok(self
            .lock()
            .policies
            .iter()
            .filter(|p| apps.contains(&p.source_app) || apps.contains(&p.destination_app))
            .cloned()
            .collect())
    }

    async fn create_network_policies(&self, p: &[NetworkPolicy]) -> ApiResult<()> {
        let after = self.enter("create_network_policies", &p.len().to_string())?;
        self.lock().policies.extend(p.iter().cloned());
        if after {
            Err(err500("create_network_policies"))
        } else {
            Ok(())
        }
    }

    async fn delete_network_policies(&self, p: &[NetworkPolicy]) -> ApiResult<()> {
        let after = self.enter("delete_network_policies", &p.len().to_string())?;
        let mut s = self.lock();
        for x in p {
            s.policies.remove(x);
        }
        if after {
            Err(err500("delete_network_policies"))
        } else {
            Ok(())
        }
    }

    async fn create_deployment(&self, new: &NewDeployment) -> ApiResult<Deployment> {
        let after = self.enter("create_deployment", new.app_guid.as_str())?;
        let mut s = self.lock();
        s.created_deployments.push(new.clone());
        let g = Self::id(&mut s, "dep");
        let a = s
            .apps
            .get_mut(new.app_guid.as_str())
            .ok_or_else(|| not_found("app"))?;
        let previous = a.droplet.replace(new.droplet_guid.to_string());
        let d = FDep {
            app: new.app_guid.to_string(),
            strategy: new.strategy,
            state: DeploymentState::Deploying,
            previous,
            steps: u32::try_from(new.canary_steps.len()).unwrap().max(1),
            current: 1,
            paused_for: 0,
            done_steps: false,
            polls: 2,
            error: s.deployment_error.clone(),
        };
        s.deployments.insert(g.clone(), d);
        let out = Self::dep_view(&g, &s.deployments[&g]);
        if after {
            Err(err500("create_deployment"))
        } else {
            Ok(out)
        }
    }

    async fn find_active_deployment(&self, app: &AppGuid) -> ApiResult<Option<Deployment>> {
        self.enter("find_active_deployment", app.as_str())?;
        let s = self.lock();
        Ok(s.deployments
            .iter()
            .rfind(|(_, d)| d.app == app.as_str() && !d.state.is_final())
            .map(|(g, d)| Self::dep_view(g, d)))
    }

    async fn get_deployment(&self, guid: &DeploymentGuid) -> ApiResult<Deployment> {
        let guid = guid.as_str();
        self.enter("get_deployment", guid)?;
        let mut s = self.lock();
        let behaviour = {
            let d = s
                .deployments
                .get(guid)
                .ok_or_else(|| not_found("deployment"))?;
            s.new_instances.get(&d.app).copied().unwrap_or_default()
        };
        let d = s
            .deployments
            .get_mut(guid)
            .ok_or_else(|| not_found("deployment"))?;
        match d.state {
            DeploymentState::Deploying if behaviour == NewInstances::Healthy => {
                if d.polls > 0 {
                    d.polls -= 1;
                } else if d.strategy == DeploymentStrategy::Canary
                    && !d.done_steps
                    && d.paused_for < d.current
                {
                    d.paused_for = d.current;
                    d.state = DeploymentState::Paused;
                } else {
                    d.state = DeploymentState::Deployed;
                }
            }
            DeploymentState::Canceling => {
                d.state = DeploymentState::Canceled;
            }
            _ => {}
        }
        Ok(Self::dep_view(guid, d))
    }

    async fn continue_deployment(&self, guid: &DeploymentGuid) -> ApiResult<()> {
        let guid = guid.as_str();
        let after = self.enter("continue_deployment", guid)?;
        let mut s = self.lock();
        let d = s
            .deployments
            .get_mut(guid)
            .ok_or_else(|| not_found("deployment"))?;
        if d.state != DeploymentState::Paused {
            return Err(ApiError::new(
                422,
                "CF-UnprocessableEntity",
                format!("Cannot continue a deployment with status: {}", d.state),
            ));
        }
        if d.current < d.steps {
            d.current += 1;
        } else {
            d.done_steps = true;
        }
        d.state = DeploymentState::Deploying;
        d.polls = 1;
        if after {
            Err(err500("continue_deployment"))
        } else {
            Ok(())
        }
    }

    async fn cancel_deployment(&self, guid: &DeploymentGuid) -> ApiResult<()> {
        let guid = guid.as_str();
        let after = self.enter("cancel_deployment", guid)?;
        let mut s = self.lock();
        let d = s
            .deployments
            .get_mut(guid)
            .ok_or_else(|| not_found("deployment"))?;
        if d.state.is_final() {
            return Err(ApiError::new(
                422,
                "CF-UnprocessableEntity",
                format!("Cannot cancel a deployment with status: {}", d.state),
            ));
        }
        d.state = DeploymentState::Canceling;
        let (app, previous) = (d.app.clone(), d.previous.clone());
        if let Some(a) = s.apps.get_mut(&app) {
            a.droplet = previous;
        }
        if after {
            Err(err500("cancel_deployment"))
        } else {
            Ok(())
        }
    }

    async fn list_service_bindings(&self, app: &AppGuid) -> ApiResult<Vec<ServiceBinding>> {
        let app = app.as_str();
        self.enter("list_service_bindings", app)?;
        Ok(self
            .lock()
            .bindings
            .iter()
            .filter(|(_, (a, _))| a == app)
            .map(|(g, (_, i))| ServiceBinding {
                guid: g.clone().into(),
                service_instance_guid: i.clone().into(),
            })
            .collect())
    }

    async fn delete_service_binding(&self, guid: &ServiceCredentialBindingGuid) -> ApiResult<()> {
        let guid = guid.as_str();
        let after = self.enter("delete_service_binding", guid)?;
        self.lock()
            .bindings
            .remove(guid)
            .ok_or_else(|| not_found("service binding"))?;
        if after {
            Err(err500("delete_service_binding"))
        } else {
            Ok(())
        }
    }

    async fn get_env_vars(&self, app: &AppGuid) -> ApiResult<BTreeMap<String, String>> {
        let app = app.as_str();
        self.enter("get_env_vars", app)?;
        let s = self.lock();
        if !s.apps.contains_key(app) {
            return Err(not_found("app"));
        }
        Ok(s.env.get(app).cloned().unwrap_or_default())
    }

    async fn update_env_vars(
        &self,
        app: &AppGuid,
        vars: &BTreeMap<String, Option<String>>,
    ) -> ApiResult<()> {
        let app = app.as_str();
        let after = self.enter("update_env_vars", app)?;
        let mut s = self.lock();
        if !s.apps.contains_key(app) {
            return Err(not_found("app"));
        }
        let env = s.env.entry(app.to_string()).or_default();
        for (k, v) in vars {
            match v {
                Some(v) => env.insert(k.clone(), v.clone()),
                None => env.remove(k),
            };
        }
        if after {
            Err(err500("update_env_vars"))
        } else {
            Ok(())
        }
    }

    async fn app_log(
        &self,
        app: &AppGuid,
        _query: &cf_zero_downtime::deploy::api::LogQuery,
    ) -> ApiResult<Vec<cf_zero_downtime::deploy::api::LogRecord>> {
        let app = app.as_str();
        self.enter("app_log", app)?;
        // The fake has no log-cache: as on a platform that does not offer it.
        Err(ApiError::unavailable(
            "log-cache is not offered by the fake",
        ))
    }

    async fn scale_process(&self, process: &ProcessGuid, instances: u32) -> ApiResult<()> {
        let process = process.as_str();
        let after = self.enter("scale_process", process)?;
        let (app, t) = process.split_once('/').unwrap_or_default();
        let mut s = self.lock();
        let a = s.apps.get_mut(app).ok_or_else(|| not_found("process"))?;
        let n = a
            .processes
            .iter_mut()
            .find(|(pt, _)| pt == t)
            .ok_or_else(|| not_found("process"))?;
        n.1 = instances;
        if after {
            return Err(err500("scale_process"));
        }
        Ok(())
    }

    async fn quotas(&self, space: &SpaceGuid) -> ApiResult<Quotas> {
        self.enter("quotas", space.as_str())?;
        Ok(self.lock().quotas.clone())
    }

    async fn create_task(&self, app: &AppGuid, task: &NewTask) -> ApiResult<TaskGuid> {
        let after = self.enter("create_task", app.as_str())?;
        let mut s = self.lock();
        let name = s
            .apps
            .get(app.as_str())
            .map(|a| a.app.name.clone())
            .ok_or_else(|| not_found("app"))?;
        let state = s
            .task_outcomes
            .get(name.trim_end_matches("-candidate"))
            .cloned()
            .unwrap_or(TaskState::Succeeded);
        let guid = Self::id(&mut s, "task");
        s.tasks
            .insert(guid.clone(), (app.to_string(), task.name.clone(), state));
        if after {
            return Err(err500("create_task"));
        }
        Ok(TaskGuid::new(guid))
    }

    async fn get_task(&self, guid: &TaskGuid) -> ApiResult<TaskState> {
        let n = self.enter("get_task", guid.as_str()).map(|_| {
            let s = self.lock();
            s.calls
                .iter()
                .filter(|c| *c == &format!("get_task {guid}"))
                .count()
        })?;
        let s = self.lock();
        if u32::try_from(n).unwrap_or(u32::MAX) <= s.task_running_reads {
            return Ok(TaskState::Running);
        }
        s.tasks
            .get(guid.as_str())
            .map(|t| t.2.clone())
            .ok_or_else(|| not_found("task"))
    }

    async fn cancel_task(&self, guid: &TaskGuid) -> ApiResult<()> {
        self.enter("cancel_task", guid.as_str())?;
        let mut s = self.lock();
        let t = s
            .tasks
            .get_mut(guid.as_str())
            .ok_or_else(|| not_found("task"))?;
        t.2 = TaskState::Failed("task was cancelled".into());
        Ok(())
    }

    fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().warnings)
    }
}
