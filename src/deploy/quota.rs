//! The quota check: whether the new version fits in the space's and the org's quotas next to
//! the live version, before anything changes. Pure: it reads the [`Observed`] quotas and
//! usage, the plans and the manifest apps.
//!
//! What a strategy adds at its peak to what counts now:
//! - blue-green: the whole candidate of every app (memory × instances of each process, its
//!   instances), the routes the plan creates (the temporary routes), minus what deleting our
//!   leftovers first frees;
//! - rolling: per app, in order, what `apply_manifest` changes on the live app (new minus old
//!   memory × instances) plus `max_in_flight` new web instances while the deployment rolls
//!   (Cloud Controller's updater scales the old process down before it scales the new one up,
//!   so `target + max_in_flight` instances run at most), plus the production routes it
//!   creates; a stopped live app is started whole;
//! - canary: as rolling, with the larger of the biggest canary step's instances and
//!   `max_in_flight` (a paused step keeps the old process one instance above its share).
//!
//! Memory the manifest does not set is the live process's (rolling keeps it), else Cloud
//! Controller's usual `default_app_memory` of 1024 MB, said so in the message. Instances the
//! manifest does not set are the live process's (rolling, `--keep-scale`), else 1 `web`
//! instance. A level whose quota cannot be read is skipped (said once, by the caller); `None`
//! limits are unlimited.
//!
//! Depends on: deploy::{api, observe, plan, request, step}. Must not: do I/O.

use std::collections::BTreeSet;

use super::api::{AppState, DeploymentStrategy, QuotaLevel, QuotaLimits, QuotaUsage, Quotas};
use super::observe::{ExistingApp, Observed, ObservedApp};
use super::plan::Plan;
use super::request::{AppSpec, RouteSpec};
use super::step::Action;

/// Cloud Controller's default memory of a new app's process (`default_app_memory`, 1 GB
/// unless the operator changed it).
pub(crate) const DEFAULT_MEMORY_MB: u64 = 1024;

/// One process of the new version: what it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewProcess {
    /// The app as the manifest names it.
    pub app: String,
    pub process_type: String,
    /// Memory per instance, MB.
    pub memory_mb: u64,
    /// Whether `memory_mb` is [`DEFAULT_MEMORY_MB`] because nothing set it.
    pub memory_assumed: bool,
    pub instances: u32,
}

/// What a deploy adds, at its peak, to what counts against the quotas now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Demand {
    /// How the new version is deployed (`blue-green`, `rolling with --max-in-flight 2`, ...).
    pub strategy: String,
    /// More memory, MB.
    pub memory_mb: u64,
    /// More started instances.
    pub instances: u64,
    /// More routes: the ones the deploy creates.
    pub routes: Vec<String>,
    /// Every process of the new version (each one's memory is checked against the
    /// per-instance limit).
    pub processes: Vec<NewProcess>,
    /// What the memory is for, e.g. `candidate of web 2 × 128 MB`.
    pub parts: Vec<String>,
}

/// A limit of one level a demand does not fit in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Breach {
    /// `space quota 'small' (space 'dev')` or `org quota 'default' (org 'o')`.
    pub level: String,
    /// What is short, with the numbers.
    pub text: String,
    /// Whether a smaller rolling or canary deployment cannot help (the per-instance limit).
    pub per_instance: bool,
}

/// Which level a limit belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The space quota.
    Space,
    /// The org quota.
    Org,
}

/// The names a message uses: the space's and the org's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Names<'a> {
    /// Space name.
    pub space: &'a str,
    /// Org name.
    pub org: &'a str,
}

fn level_name(scope: Scope, limits: &QuotaLimits, names: Names<'_>) -> String {
    match scope {
        Scope::Space => format!("space quota '{}' (space '{}')", limits.name, names.space),
        Scope::Org => format!("org quota '{}' (org '{}')", limits.name, names.org),
    }
}

/// Memory × instances of a started app's processes, MB (0 for a stopped app).
fn running_mb(e: &ExistingApp) -> u64 {
    if e.app.state != AppState::Started {
        return 0;
    }
    e.processes
        .iter()
        .map(|p| {
            p.process
                .memory_mb
                .unwrap_or(0)
                .saturating_mul(u64::from(p.process.instances))
        })
        .fold(0, u64::saturating_add)
}

fn running_instances(e: &ExistingApp) -> u64 {
    if e.app.state != AppState::Started {
        return 0;
    }
    e.processes
        .iter()
        .map(|p| u64::from(p.process.instances))
        .fold(0, u64::saturating_add)
}

/// The processes of the new version of `spec`. `in_place`: rolling/canary (the live app's
/// processes are updated, so what the manifest leaves out stays as it is).
pub(crate) fn new_processes<B>(
    spec: &AppSpec<B>,
    live: Option<&ExistingApp>,
    keep_scale: bool,
    in_place: bool,
) -> Vec<NewProcess> {
    let live_process = |t: &str| {
        live.and_then(|l| {
            l.processes
                .iter()
                .find(|p| p.process.process_type == t)
                .map(|p| &p.process)
        })
    };
    let mut types: BTreeSet<String> = BTreeSet::from(["web".to_string()]);
    types.extend(spec.instances.keys().cloned());
    types.extend(spec.memory_mb.keys().cloned());
    if in_place && let Some(l) = live {
        types.extend(l.processes.iter().map(|p| p.process.process_type.clone()));
    }
    types
        .into_iter()
        .map(|t| {
            let lp = live_process(&t);
            let instances = match (keep_scale, lp) {
                (true, Some(p)) => p.instances,
                _ => spec
                    .instances
                    .get(&t)
                    .copied()
                    .or_else(|| lp.filter(|_| in_place).map(|p| p.instances))
                    .unwrap_or(u32::from(t == "web")),
            };
            let known = spec
                .memory_mb
                .get(&t)
                .copied()
                .or_else(|| lp.filter(|_| in_place).and_then(|p| p.memory_mb));
            NewProcess {
                app: spec.name.clone(),
                process_type: t,
                memory_mb: known.unwrap_or(DEFAULT_MEMORY_MB),
                memory_assumed: known.is_none(),
                instances,
            }
        })
        .collect()
}

fn mb_of(ps: &[NewProcess]) -> u64 {
    ps.iter()
        .map(|p| p.memory_mb.saturating_mul(u64::from(p.instances)))
        .fold(0, u64::saturating_add)
}

fn instances_of(ps: &[NewProcess]) -> u64 {
    ps.iter()
        .map(|p| u64::from(p.instances))
        .fold(0, u64::saturating_add)
}

/// `2 × 128 MB` (with a note when the memory is assumed), per process.
fn shape(ps: &[NewProcess]) -> String {
    ps.iter()
        .filter(|p| p.instances > 0)
        .map(|p| {
            let assumed = if p.memory_assumed {
                " (assumed: the manifest sets no memory)"
            } else {
                ""
            };
            if ps.iter().filter(|p| p.instances > 0).count() > 1 {
                format!(
                    "{} {} × {} MB{assumed}",
                    p.process_type, p.instances, p.memory_mb
                )
            } else {
                format!("{} × {} MB{assumed}", p.instances, p.memory_mb)
            }
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

fn observed_app<'a>(obs: &'a Observed, name: &str) -> Option<&'a ObservedApp> {
    obs.apps.iter().find(|o| o.name == name)
}

/// How many web instances beyond its target a deployment runs at most.
fn deployment_extra(
    strategy: DeploymentStrategy,
    max_in_flight: u32,
    target: u32,
    steps: &[u32],
) -> u32 {
    let rolling = max_in_flight.max(1).min(target);
    match strategy {
        DeploymentStrategy::Rolling => rolling,
        DeploymentStrategy::Canary => {
            let biggest = if steps.is_empty() {
                1
            } else {
                steps
                    .iter()
                    .map(|w| {
                        let c = (f64::from(target) * f64::from(*w) / 100.0).round() as u32;
                        c.clamp(1, target.max(1))
                    })
                    .max()
                    .unwrap_or(1)
            };
            biggest.min(target).max(rolling)
        }
    }
}

/// A signed sum of MB or instances, clamped at 0 when read.
#[derive(Debug, Clone, Copy, Default)]
struct Signed(i128);

impl Signed {
    fn add(self, v: u64) -> Signed {
        Signed(self.0 + i128::from(v))
    }
    fn sub(self, v: u64) -> Signed {
        Signed(self.0 - i128::from(v))
    }
    fn plus(self, other: Signed) -> Signed {
        Signed(self.0 + other.0)
    }
    fn get(self) -> u64 {
        u64::try_from(self.0.max(0)).unwrap_or(u64::MAX)
    }
}

/// The live apps' share of the usage, e.g. `, of which live app web 128 MB`.
fn live_part<B>(obs: &Observed, apps: &[AppSpec<B>]) -> String {
    let parts: Vec<String> = apps
        .iter()
        .filter_map(|s| observed_app(obs, &s.name)?.live.as_ref())
        .filter(|l| running_mb(l) > 0)
        .map(|l| format!("live app {} {} MB", l.app.name, running_mb(l)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(", of which {}", parts.join(", "))
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// How `more` on top of `used` stands against a limit it goes over.
struct Over {
    limit: u64,
    /// What is left under the limit now.
    left: u64,
    /// The use with `more`.
    after: u64,
}

/// `Some` when `more` (not zero) on top of `used` goes over `limit`.
fn over(limit: Option<u64>, used: u64, more: u64) -> Option<Over> {
    let limit = limit?;
    let after = used.saturating_add(more);
    (more > 0 && after > limit).then(|| Over {
        limit,
        left: limit.saturating_sub(used),
        after,
    })
}

/// The limits of one level `demand` does not fit in.
fn level_breaches(
    scope: Scope,
    limits: &QuotaLimits,
    usage: &QuotaUsage,
    demand: &Demand,
    live: &str,
    names: Names<'_>,
) -> Vec<Breach> {
    let level = level_name(scope, limits, names);
    let mut out = Vec::new();
    let strategy = &demand.strategy;
    let total = |text: String| Breach {
        level: level.clone(),
        text,
        per_instance: false,
    };
    if let Some(o) = over(limits.total_memory_mb, usage.memory_mb, demand.memory_mb) {
        out.push(total(format!(
            "memory: {strategy} needs {} MB more, {} MB are left: {} MB of {} MB (in use {} MB{live}; {})",
            demand.memory_mb,
            o.left,
            o.after,
            o.limit,
            usage.memory_mb,
            demand.parts.join("; ")
        )));
    }
    if let Some(limit) = limits.instance_memory_mb {
        for p in demand
            .processes
            .iter()
            .filter(|p| p.memory_mb > limit && p.instances > 0)
        {
            out.push(Breach {
                level: level.clone(),
                text: format!(
                    "instance memory: process {} of app {} asks for {} MB per instance{}, the quota allows {limit} MB",
                    p.process_type,
                    p.app,
                    p.memory_mb,
                    if p.memory_assumed {
                        " (assumed: the manifest sets no memory)"
                    } else {
                        ""
                    }
                ),
                per_instance: true,
            });
        }
    }
    if let Some(o) = over(limits.total_instances, usage.instances, demand.instances) {
        out.push(total(format!(
            "instances: {strategy} needs {} more, {} left: {} of {} (in use {})",
            demand.instances, o.left, o.after, o.limit, usage.instances,
        )));
    }
    let more_routes = demand.routes.len() as u64;
    if let Some(used) = usage.routes
        && let Some(o) = over(limits.total_routes, used, more_routes)
    {
        out.push(total(format!(
            "routes: {strategy} creates {}, {} left: {} of {} (in use {used}; new: {})",
            plural(more_routes, "route", "routes"),
            o.left,
            o.after,
            o.limit,
            demand.routes.join(", ")
        )));
    }
    out
}

/// The levels that could not be read, each as a line saying the check goes on without it.
pub(crate) fn unknown_levels(quotas: &Quotas) -> Vec<String> {
    let mut reasons: Vec<String> = Vec::new();
    for level in [&quotas.space, &quotas.org] {
        if let QuotaLevel::Unknown(why) = level
            && !reasons.contains(why)
        {
            reasons.push(why.clone());
        }
    }
    reasons
        .into_iter()
        .map(|why| {
            format!("quota check: {why}; the deploy goes on without checking that quota (Cloud Controller still enforces it)")
        })
        .collect()
}

/// What the check looks at: the observed state (with the quotas), the manifest apps, and
/// the names its messages use.
pub(crate) struct Check<'a, B> {
    /// The observed state and quotas.
    pub obs: &'a Observed,
    /// The manifest apps, in deploy order.
    pub apps: &'a [AppSpec<B>],
    pub keep_scale: bool,
    /// The space's and the org's names.
    pub names: Names<'a>,
}

impl<B> Check<'_, B> {
    /// What a blue-green deploy with `plan` adds at its peak (every candidate runs next to its
    /// live app before any route switches).
    pub(crate) fn blue_green(&self, plan: &Plan) -> Demand {
        let mut d = Demand {
            strategy: "blue-green".into(),
            ..Demand::default()
        };
        let mut freed_mb = 0u64;
        let mut freed_instances = 0u64;
        for spec in self.apps {
            let oa = observed_app(self.obs, &spec.name);
            let live = oa.and_then(|o| o.live.as_ref());
            let ps = new_processes(spec, live, self.keep_scale, false);
            d.memory_mb = d.memory_mb.saturating_add(mb_of(&ps));
            d.instances = d.instances.saturating_add(instances_of(&ps));
            let who = if live.is_some() {
                format!("candidate of {}", spec.name)
            } else {
                format!("new app {}", spec.name)
            };
            d.parts.push(format!("{who} {}", shape(&ps)));
            if live.is_none() && spec.routes == RouteSpec::Random {
                d.routes.push(format!("a random route for {}", spec.name));
            }
            d.processes.extend(ps);
            // Leftovers the plan deletes first free their share before anything starts.
            for l in oa.map(|o| o.leftover_candidates.as_slice()).unwrap_or(&[]) {
                let deleted_first = plan.steps.iter().any(|s| {
                    matches!(&s.action, Action::DeleteLeftover { guid, .. } if *guid == l.app.guid)
                });
                if deleted_first {
                    freed_mb = freed_mb.saturating_add(running_mb(l));
                    freed_instances = freed_instances.saturating_add(running_instances(l));
                }
            }
        }
        for s in &plan.steps {
            if let Action::CreateRoute { route, .. } = &s.action {
                d.routes.push(route.url());
            }
        }
        d.memory_mb = d.memory_mb.saturating_sub(freed_mb);
        d.instances = d.instances.saturating_sub(freed_instances);
        if freed_mb > 0 {
            d.parts
                .push(format!("less {freed_mb} MB of leftovers deleted first"));
        }
        d
    }

    /// What a rolling or canary deploy (the apps one after the other) adds at its peak, with
    /// `max_in_flight` new instances at a time and canary `steps`. The production route URLs
    /// of each of `plans` that do not exist count as routes (`apply_manifest` creates them).
    pub(crate) fn in_place(
        &self,
        plans: &[Plan],
        strategy: DeploymentStrategy,
        max_in_flight: u32,
        steps: &[u32],
    ) -> Demand {
        let name = match strategy {
            DeploymentStrategy::Rolling => "rolling",
            DeploymentStrategy::Canary => "canary",
        };
        let mut d = Demand {
            strategy: format!("{name} with --max-in-flight {max_in_flight}"),
            ..Demand::default()
        };
        // Lasting changes of the apps deployed so far, and the peak.
        let (mut kept_mb, mut kept_instances) = (Signed::default(), Signed::default());
        let (mut peak_mb, mut peak_instances) = (0u64, 0u64);
        for spec in self.apps {
            let live = observed_app(self.obs, &spec.name).and_then(|o| o.live.as_ref());
            let ps = new_processes(spec, live, self.keep_scale, true);
            let (mut change_mb, mut change_instances) = (
                Signed::default().add(mb_of(&ps)),
                Signed::default().add(instances_of(&ps)),
            );
            let (mut extra_mb, mut extra_instances) = (0u64, 0u64);
            match live {
                Some(l) if l.app.state == AppState::Started => {
                    change_mb = change_mb.sub(running_mb(l));
                    change_instances = change_instances.sub(running_instances(l));
                    if let Some(web) = ps.iter().find(|p| p.process_type == "web") {
                        let extra = deployment_extra(strategy, max_in_flight, web.instances, steps);
                        extra_mb = web.memory_mb.saturating_mul(u64::from(extra));
                        extra_instances = u64::from(extra);
                        d.parts.push(format!(
                            "{} {extra} × {} MB while it rolls{}",
                            spec.name,
                            web.memory_mb,
                            if change_mb.0 == 0 {
                                String::new()
                            } else {
                                format!(", {:+} MB for good", change_mb.0)
                            }
                        ));
                    }
                }
                _ => d
                    .parts
                    .push(format!("{} started {}", spec.name, shape(&ps))),
            }
            let now_mb = kept_mb.plus(change_mb).add(extra_mb).get();
            let now_instances = kept_instances
                .plus(change_instances)
                .add(extra_instances)
                .get();
            peak_mb = peak_mb.max(now_mb);
            peak_instances = peak_instances.max(now_instances);
            kept_mb = kept_mb.plus(change_mb);
            kept_instances = kept_instances.plus(change_instances);
            d.processes.extend(ps);
        }
        d.memory_mb = peak_mb;
        d.instances = peak_instances;
        for p in plans {
            for a in &p.apps {
                for url in &a.routes {
                    if !self.obs.routes.contains_key(url) && !d.routes.contains(url) {
                        d.routes.push(url.clone());
                    }
                }
            }
            for s in &p.steps {
                if let Action::CreateRoute { route, .. } = &s.action
                    && !d.routes.contains(&route.url())
                {
                    d.routes.push(route.url());
                }
            }
        }
        d
    }

    /// Every limit of the readable levels that `demand` does not fit in (empty: it fits).
    pub(crate) fn breaches(&self, demand: &Demand) -> Vec<Breach> {
        let live = live_part(self.obs, self.apps);
        let mut out = Vec::new();
        for (scope, level) in [
            (Scope::Space, &self.obs.quotas.space),
            (Scope::Org, &self.obs.quotas.org),
        ] {
            if let QuotaLevel::Limited { limits, usage } = level {
                out.extend(level_breaches(
                    scope, limits, usage, demand, &live, self.names,
                ));
            }
        }
        out
    }

    /// The largest `max_in_flight` from `cap` down to 1 whose in-place demand fits, with that
    /// demand; `None` when not even 1 fits.
    pub(crate) fn largest_fit(
        &self,
        plans: &[Plan],
        strategy: DeploymentStrategy,
        steps: &[u32],
        cap: u32,
    ) -> Option<(u32, Demand)> {
        (1..=cap.max(1)).rev().find_map(|n| {
            let d = self.in_place(plans, strategy, n, steps);
            self.breaches(&d).is_empty().then_some((n, d))
        })
    }

    /// The most web instances any app will have: no deployment starts more at once.
    pub(crate) fn max_web_instances(&self) -> u32 {
        self.apps
            .iter()
            .flat_map(|spec| {
                let live = observed_app(self.obs, &spec.name).and_then(|o| o.live.as_ref());
                new_processes(spec, live, self.keep_scale, true)
            })
            .filter(|p| p.process_type == "web")
            .map(|p| p.instances)
            .max()
            .unwrap_or(1)
            .max(1)
    }
}

/// The refusal: every breach on its own line, then how to get out of it.
pub(crate) fn refusal(what: &str, breaches: &[Breach], way_out: &str) -> String {
    let mut s = format!("{what} does not fit in the quota:");
    for b in breaches {
        s.push_str(&format!("\n  {}: {}", b.level, b.text));
    }
    s.push('\n');
    s.push_str(way_out);
    s
}

/// The commands that raise the quotas named in `breaches`.
pub(crate) fn raise_commands(quotas: &Quotas, breaches: &[Breach]) -> String {
    let mut cmds = Vec::new();
    if let QuotaLevel::Limited { limits, .. } = &quotas.space
        && breaches.iter().any(|b| b.level.starts_with("space quota"))
    {
        cmds.push(format!("cf update-space-quota {} ...", limits.name));
    }
    if let QuotaLevel::Limited { limits, .. } = &quotas.org
        && breaches.iter().any(|b| b.level.starts_with("org quota"))
    {
        cmds.push(format!("cf update-org-quota {} ...", limits.name));
    }
    cmds.join(" / ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::deploy::api::{App, AppSource, Process};
    use crate::deploy::observe::ProcessState;
    use crate::deploy::step::Step;

    const NAMES: Names<'static> = Names {
        space: "dev",
        org: "acme",
    };

    fn spec(name: &str, instances: &[(&str, u32)], memory: &[(&str, u64)]) -> AppSpec<()> {
        AppSpec {
            name: name.into(),
            routes: RouteSpec::Routes(vec![format!("{name}.example.com")]),
            instances: instances.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            memory_mb: memory.iter().map(|(t, m)| (t.to_string(), *m)).collect(),
            source: AppSource::Bits(()),
            cnb: false,
            render: Arc::new(|_| Ok(String::new())),
        }
    }

    fn existing(guid: &str, name: &str, started: bool, procs: &[(&str, u32, u64)]) -> ExistingApp {
        ExistingApp {
            app: App {
                guid: guid.into(),
                name: name.into(),
                state: if started {
                    AppState::Started
                } else {
                    AppState::Stopped
                },
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
            },
            routes: Vec::new(),
            processes: procs
                .iter()
                .map(|(t, n, m)| ProcessState {
                    process: Process {
                        guid: format!("{guid}-{t}").into(),
                        process_type: t.to_string(),
                        instances: *n,
                        memory_mb: Some(*m),
                    },
                })
                .collect(),
            ssh_enabled: false,
            policies: Vec::new(),
        }
    }

    fn observed(apps: Vec<(&str, Option<ExistingApp>)>) -> Observed {
        Observed {
            apps: apps
                .into_iter()
                .map(|(name, live)| ObservedApp {
                    name: name.into(),
                    live,
                    leftover_candidates: Vec::new(),
                    venerables: Vec::new(),
                    foreign_names: Vec::new(),
                    active_deployment: None,
                })
                .collect(),
            ..Observed::default()
        }
    }

    fn plan(steps: Vec<Step>) -> Plan {
        Plan {
            commit: steps.len(),
            steps,
            apps: Vec::new(),
            warnings: Vec::new(),
            concurrent: Vec::new(),
        }
    }

    fn quotas(space: QuotaLevel, org: QuotaLevel) -> Quotas {
        Quotas { space, org }
    }

    fn check<'a>(obs: &'a Observed, apps: &'a [AppSpec<()>], keep_scale: bool) -> Check<'a, ()> {
        Check {
            obs,
            apps,
            keep_scale,
            names: NAMES,
        }
    }

    /// `obs` with quotas `q`.
    fn with(obs: &Observed, q: Quotas) -> Observed {
        Observed {
            quotas: q,
            ..obs.clone()
        }
    }

    fn level(limits: QuotaLimits, memory_mb: u64, instances: u64, routes: u64) -> QuotaLevel {
        QuotaLevel::Limited {
            limits,
            usage: QuotaUsage {
                memory_mb,
                instances,
                routes: Some(routes),
            },
        }
    }

    fn mem(name: &str, mb: u64) -> QuotaLimits {
        QuotaLimits {
            name: name.into(),
            total_memory_mb: Some(mb),
            ..QuotaLimits::default()
        }
    }

    /// `web` runs 2 × 128 MB; the new version asks for the same.
    fn web() -> (Observed, Vec<AppSpec<()>>) {
        (
            observed(vec![(
                "web",
                Some(existing("A", "web", true, &[("web", 2, 128)])),
            )]),
            vec![spec("web", &[("web", 2)], &[("web", 128)])],
        )
    }

    #[test]
    fn blue_green_needs_the_whole_candidate_and_its_temp_route() {
        let (obs, apps) = web();
        let route = crate::deploy::route::RouteAddress {
            host: "web-temp".into(),
            domain: "example.com".into(),
            domain_guid: "d1".into(),
            path: String::new(),
            port: None,
        };
        let p = plan(vec![Step::new(
            "web",
            Action::CreateRoute {
                route,
                temporary: false,
            },
        )]);
        let d = check(&obs, &apps, false).blue_green(&p);
        assert_eq!((d.memory_mb, d.instances), (256, 2));
        assert_eq!(d.routes, vec!["web-temp.example.com".to_string()]);
        assert_eq!(d.parts, vec!["candidate of web 2 × 128 MB".to_string()]);
        // Memory: 256 in use + 256 > 500; instances and routes unlimited.
        let q = quotas(level(mem("small", 500), 256, 2, 1), QuotaLevel::Unlimited);
        let b = check(&with(&obs, q.clone()), &apps, false).breaches(&d);
        assert_eq!(b.len(), 1, "{b:?}");
        assert_eq!(b[0].level, "space quota 'small' (space 'dev')");
        assert_eq!(
            b[0].text,
            "memory: blue-green needs 256 MB more, 244 MB are left: 512 MB of 500 MB (in use 256 MB, of which live app web 256 MB; candidate of web 2 × 128 MB)"
        );
        // Exactly full fits.
        let q = quotas(level(mem("small", 512), 256, 2, 1), QuotaLevel::Unlimited);
        assert!(
            check(&with(&obs, q.clone()), &apps, false)
                .breaches(&d)
                .is_empty()
        );
    }

    #[test]
    fn every_limit_of_both_levels_is_checked_and_unlimited_or_unknown_pass() {
        let (obs, apps) = web();
        let d = check(&obs, &apps, false).blue_green(&plan(Vec::new()));
        let all = QuotaLimits {
            name: "tight".into(),
            total_memory_mb: Some(300),
            instance_memory_mb: Some(100),
            total_instances: Some(3),
            total_routes: Some(1),
        };
        let mut with_route = d.clone();
        with_route.routes = vec!["web-temp.example.com".into()];
        let q = quotas(level(all.clone(), 256, 2, 1), level(all, 256, 2, 1));
        let b = check(&with(&obs, q.clone()), &apps, false).breaches(&with_route);
        let texts: Vec<String> = b
            .iter()
            .map(|b| format!("{}: {}", b.level, b.text))
            .collect();
        assert_eq!(b.len(), 8, "{texts:#?}");
        for (i, what) in ["memory", "instance memory", "instances", "routes"]
            .iter()
            .enumerate()
        {
            assert!(
                texts[i].starts_with(&format!("space quota 'tight' (space 'dev'): {what}:")),
                "{}",
                texts[i]
            );
            assert!(
                texts[i + 4].starts_with(&format!("org quota 'tight' (org 'acme'): {what}:")),
                "{}",
                texts[i + 4]
            );
        }
        assert!(b[1].per_instance && !b[0].per_instance);
        assert_eq!(
            b[2].text,
            "instances: blue-green needs 2 more, 1 left: 4 of 3 (in use 2)"
        );
        // Unlimited everywhere, or unreadable: fits.
        let open = QuotaLimits {
            name: "open".into(),
            ..QuotaLimits::default()
        };
        let q = quotas(level(open, 256, 2, 1), QuotaLevel::Unlimited);
        assert!(
            check(&with(&obs, q.clone()), &apps, false)
                .breaches(&with_route)
                .is_empty()
        );
        let q = quotas(
            QuotaLevel::Unknown("the space quota cannot be read (403)".into()),
            QuotaLevel::Unknown("the space quota cannot be read (403)".into()),
        );
        assert!(
            check(&with(&obs, q.clone()), &apps, false)
                .breaches(&with_route)
                .is_empty()
        );
        assert_eq!(unknown_levels(&q).len(), 1, "said once");
        // Routes the org summary does not count are not checked.
        let q = quotas(
            QuotaLevel::Unlimited,
            QuotaLevel::Limited {
                limits: QuotaLimits {
                    name: "o".into(),
                    total_routes: Some(1),
                    ..QuotaLimits::default()
                },
                usage: QuotaUsage {
                    memory_mb: 0,
                    instances: 0,
                    routes: None,
                },
            },
        );
        assert!(
            check(&with(&obs, q.clone()), &apps, false)
                .breaches(&with_route)
                .is_empty()
        );
    }

    #[test]
    fn rolling_needs_max_in_flight_instances_and_what_the_manifest_changes() {
        let (obs, apps) = web();
        let d = check(&obs, &apps, false).in_place(&[], DeploymentStrategy::Rolling, 1, &[]);
        assert_eq!((d.memory_mb, d.instances), (128, 1));
        let d = check(&obs, &apps, false).in_place(&[], DeploymentStrategy::Rolling, 5, &[]);
        assert_eq!((d.memory_mb, d.instances), (256, 2), "at most the target");
        // The manifest doubles the memory: +256 for good, new instances at 256 MB.
        let bigger = vec![spec("web", &[("web", 2)], &[("web", 256)])];
        let d = check(&obs, &bigger, false).in_place(&[], DeploymentStrategy::Rolling, 1, &[]);
        assert_eq!((d.memory_mb, d.instances), (512, 1));
        // The manifest sets no memory: the live process keeps its own.
        let unset = vec![spec("web", &[], &[])];
        let d = check(&obs, &unset, false).in_place(&[], DeploymentStrategy::Rolling, 1, &[]);
        assert_eq!((d.memory_mb, d.instances), (128, 1));
        assert!(d.processes.iter().all(|p| !p.memory_assumed));
        // Canary: the biggest step (50% of 2 = 1), or max_in_flight when larger.
        let d = check(&obs, &apps, false).in_place(&[], DeploymentStrategy::Canary, 1, &[50]);
        assert_eq!(d.instances, 1);
        let four = vec![spec("web", &[("web", 4)], &[("web", 128)])];
        let obs4 = observed(vec![(
            "web",
            Some(existing("A", "web", true, &[("web", 4, 128)])),
        )]);
        let d = check(&obs4, &four, false).in_place(&[], DeploymentStrategy::Canary, 1, &[25, 75]);
        assert_eq!(d.instances, 3);
        let d = check(&obs4, &four, false).in_place(&[], DeploymentStrategy::Canary, 4, &[25]);
        assert_eq!(d.instances, 4);
    }

    #[test]
    fn the_largest_max_in_flight_that_fits_is_chosen() {
        let obs = observed(vec![(
            "web",
            Some(existing("A", "web", true, &[("web", 6, 128)])),
        )]);
        let apps = vec![spec("web", &[("web", 6)], &[("web", 128)])];
        // 768 in use; 1100 leaves 332 MB: two new instances at a time.
        let q = quotas(level(mem("small", 1100), 768, 6, 1), QuotaLevel::Unlimited);
        let fit = check(&with(&obs, q.clone()), &apps, false).largest_fit(
            &[],
            DeploymentStrategy::Rolling,
            &[],
            6,
        );
        assert_eq!(fit.map(|f| f.0), Some(2));
        // The cap wins when smaller; nothing fits when less than one instance is left.
        let fit = check(&with(&obs, q.clone()), &apps, false).largest_fit(
            &[],
            DeploymentStrategy::Rolling,
            &[],
            1,
        );
        assert_eq!(fit.map(|f| f.0), Some(1));
        let q = quotas(QuotaLevel::Unlimited, level(mem("org", 800), 768, 6, 1));
        assert_eq!(
            check(&with(&obs, q.clone()), &apps, false).largest_fit(
                &[],
                DeploymentStrategy::Rolling,
                &[],
                6
            ),
            None
        );
        assert_eq!(check(&obs, &apps, false).max_web_instances(), 6);
    }

    #[test]
    fn apps_deployed_one_after_the_other_add_up() {
        // a grows by 128 MB for good, then b rolls with one 64 MB instance in flight.
        let obs = observed(vec![
            ("a", Some(existing("A", "a", true, &[("web", 1, 128)]))),
            ("b", Some(existing("B", "b", true, &[("web", 1, 64)]))),
        ]);
        let apps = vec![
            spec("a", &[("web", 2)], &[("web", 128)]),
            spec("b", &[("web", 1)], &[("web", 64)]),
        ];
        let d = check(&obs, &apps, false).in_place(&[], DeploymentStrategy::Rolling, 1, &[]);
        // a: +128 for good + 128 in flight = 256; b: 128 kept + 64 in flight = 192.
        assert_eq!(d.memory_mb, 256);
        let apps = vec![
            spec("a", &[("web", 2)], &[("web", 128)]),
            spec("b", &[("web", 1)], &[("web", 512)]),
        ];
        let d = check(&obs, &apps, false).in_place(&[], DeploymentStrategy::Rolling, 1, &[]);
        // b: 128 kept + 448 for good + 512 in flight.
        assert_eq!(d.memory_mb, 1088);
    }

    #[test]
    fn new_apps_stopped_apps_and_unset_memory() {
        // No live app: the whole app starts; no memory set: Cloud Controller's default.
        let obs = observed(vec![("new", None)]);
        let apps = vec![spec("new", &[], &[])];
        let d = check(&obs, &apps, false).blue_green(&plan(Vec::new()));
        assert_eq!((d.memory_mb, d.instances), (DEFAULT_MEMORY_MB, 1));
        assert_eq!(
            d.parts,
            vec!["new app new 1 × 1024 MB (assumed: the manifest sets no memory)".to_string()]
        );
        // A stopped live app counts nothing now and is started whole by a deployment.
        let obs = observed(vec![(
            "web",
            Some(existing("A", "web", false, &[("web", 2, 128)])),
        )]);
        let apps = vec![spec("web", &[], &[])];
        let d = check(&obs, &apps, false).in_place(&[], DeploymentStrategy::Rolling, 1, &[]);
        assert_eq!((d.memory_mb, d.instances), (256, 2));
        // --keep-scale takes the live counts; other process types count too.
        let obs = observed(vec![(
            "web",
            Some(existing(
                "A",
                "web",
                true,
                &[("web", 3, 128), ("worker", 2, 256)],
            )),
        )]);
        let apps = vec![spec(
            "web",
            &[("web", 1), ("worker", 1)],
            &[("web", 128), ("worker", 256)],
        )];
        let d = check(&obs, &apps, true).blue_green(&plan(Vec::new()));
        assert_eq!((d.memory_mb, d.instances), (3 * 128 + 2 * 256, 5));
        assert_eq!(
            d.parts,
            vec!["candidate of web web 3 × 128 MB + worker 2 × 256 MB".to_string()]
        );
    }

    #[test]
    fn leftovers_deleted_first_free_their_share() {
        let mut obs = observed(vec![(
            "web",
            Some(existing("A", "web", true, &[("web", 1, 128)])),
        )]);
        obs.apps[0].leftover_candidates =
            vec![existing("L", "web-candidate", true, &[("web", 1, 128)])];
        let apps = vec![spec("web", &[("web", 1)], &[("web", 128)])];
        let kept = check(&obs, &apps, false).blue_green(&plan(Vec::new()));
        assert_eq!(kept.memory_mb, 128);
        let deleted = plan(vec![Step::new(
            "web",
            Action::DeleteLeftover {
                guid: "L".into(),
                name: "web-candidate".into(),
            },
        )]);
        let d = check(&obs, &apps, false).blue_green(&deleted);
        assert_eq!((d.memory_mb, d.instances), (0, 0));
    }
}
