//! Space and organization quotas: what counts against them
//! (memory and instances of the processes of STARTED apps, routes), and the checks Cloud
//! Controller makes when a process is started or scaled, a route created or an app staged,
//! with its messages.
//!
//! The messages are Cloud Controller's: process validation errors are Sequel's full messages
//! (`memory space_quota_exceeded`, `memory quota_exceeded`,
//! `memory space_instance_memory_limit_exceeded`, `memory instance_memory_limit_exceeded`,
//! `app_instance_limit space_app_instance_limit_exceeded`,
//! `app_instance_limit app_instance_limit_exceeded`, joined with `, `; `ProcessModel`'s
//! validation policies), routes give `Routes quota exceeded for space 'x'.` (`RouteCreate`),
//! staging `space's memory limit exceeded: staging requires 1024M memory` (`BuildsController`),
//! and a deployment adds ` for space x. This space's quota may not be large enough to support
//! rolling deployments or your configured max-in-flight.` (`DeploymentCreate`).
//!
//! Differences from Cloud Controller: a change is checked only when it asks for more (CC also
//! refuses a save that asks for nothing more once usage is already over the limit); running
//! tasks count against the total memory only; the log-rate, service and reserved-port limits
//! are not modelled.
//!
//! Depends on: `state`. Must not: do I/O.

use serde::{Deserialize, Serialize};

use super::state::{Process, Quota, QuotaSpec, State};

/// Which quota a setting applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaScope {
    /// The seeded space's space quota.
    Space,
    /// The seeded org's organization quota.
    Org,
}

/// What counts against a quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// MB of memory of the started instances.
    pub memory_mb: u64,
    /// Started instances.
    pub instances: u64,
    pub routes: u64,
}

/// Whether a process counts: its app is STARTED (processes follow their app here).
fn counts(st: &State, p: &Process) -> bool {
    st.app(&p.app_guid).is_some_and(|a| a.started)
}

fn space_of(st: &State, p: &Process) -> Option<String> {
    st.app(&p.app_guid).map(|a| a.space_guid.clone())
}

/// Usage of the spaces `spaces`.
fn usage_of(st: &State, spaces: &[String]) -> Usage {
    let mut u = Usage::default();
    for p in &st.processes {
        if counts(st, p) && space_of(st, p).is_some_and(|s| spaces.contains(&s)) {
            u.memory_mb = u
                .memory_mb
                .saturating_add(p.memory_mb.saturating_mul(u64::from(p.instances)));
            u.instances = u.instances.saturating_add(u64::from(p.instances));
        }
    }
    for t in &st.tasks {
        let in_scope = st
            .app(&t.app_guid)
            .is_some_and(|a| spaces.contains(&a.space_guid));
        if t.state.is_active() && in_scope {
            u.memory_mb = u.memory_mb.saturating_add(t.memory_mb);
        }
    }
    u.routes = st
        .routes
        .iter()
        .filter(|r| spaces.contains(&r.space_guid))
        .count() as u64;
    u
}

/// What counts against the space's quota.
pub(crate) fn space_usage(st: &State, space_guid: &str) -> Usage {
    usage_of(st, &[space_guid.to_string()])
}

/// What counts against the org's quota (all its spaces).
pub(crate) fn org_usage(st: &State, org_guid: &str) -> Usage {
    let spaces: Vec<String> = st
        .spaces
        .iter()
        .filter(|s| s.org_guid == org_guid)
        .map(|s| s.meta.guid.clone())
        .collect();
    usage_of(st, &spaces)
}

/// The space's quota (if any) and its org's, with the space's and the org's names.
struct Applicable<'a> {
    space_name: String,
    org_name: String,
    space_guid: String,
    org_guid: String,
    space: Option<&'a QuotaSpec>,
    org: Option<&'a QuotaSpec>,
}

fn applicable<'a>(st: &'a State, space_guid: &str) -> Option<Applicable<'a>> {
    let space = st.space(space_guid)?;
    let org = st.orgs.iter().find(|o| o.meta.guid == space.org_guid)?;
    let quota = |guid: &Option<String>| {
        guid.as_ref()
            .and_then(|g| st.quotas.iter().find(|q| q.meta.guid == *g))
            .map(|q| &q.spec)
    };
    Some(Applicable {
        space_name: space.name.clone(),
        org_name: org.name.clone(),
        space_guid: space.meta.guid.clone(),
        org_guid: org.meta.guid.clone(),
        space: quota(&space.quota_guid),
        org: quota(&org.quota_guid),
    })
}

/// Memory and instances a change adds to a space on top of what is counted now (other
/// processes already approved in the same change, e.g. the earlier processes of an app that
/// starts).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pending {
    pub memory_mb: u64,
    pub instances: u64,
}

/// Whether `more` on top of `used` goes over `limit` (`None`: unlimited). Asking for nothing
/// more never does, even when `used` is already over.
fn exceeds(used: u64, more: u64, limit: Option<u64>) -> bool {
    more > 0 && limit.is_some_and(|limit| used.saturating_add(more) > limit)
}

/// Checks one process of an app in `space_guid` that will run `new` (memory MB, instances)
/// while it counts `old` now (`(0, 0)` when it does not count yet: new, or its app stopped),
/// with `pending` approved before it in the same change. `Err` holds Cloud Controller's
/// message (Sequel's full messages of the process, joined with `, `).
pub(crate) fn check_process(
    st: &State,
    space_guid: &str,
    old: (u64, u32),
    new: (u64, u32),
    pending: Pending,
) -> Result<(), String> {
    let Some(q) = applicable(st, space_guid) else {
        return Ok(());
    };
    let old_mem = old.0.saturating_mul(u64::from(old.1));
    let new_mem = new.0.saturating_mul(u64::from(new.1));
    let more_memory = new_mem.saturating_sub(old_mem);
    let more_instances = u64::from(new.1.saturating_sub(old.1));
    let space_used = space_usage(st, &q.space_guid);
    let org_used = org_usage(st, &q.org_guid);
    let over_memory = |used: Usage, spec: Option<&QuotaSpec>| {
        exceeds(
            used.memory_mb.saturating_add(pending.memory_mb),
            more_memory,
            spec.and_then(|s| s.total_memory_mb),
        )
    };
    let over_instance_memory = |spec: Option<&QuotaSpec>| {
        (old == (0, 0) || new.0 > old.0)
            && spec
                .and_then(|s| s.instance_memory_mb)
                .is_some_and(|limit| new.0 > limit)
    };
    let over_instances = |used: Usage, spec: Option<&QuotaSpec>| {
        exceeds(
            used.instances.saturating_add(pending.instances),
            more_instances,
            spec.and_then(|s| s.total_instances),
        )
    };
    let mut errors = Vec::new();
    if over_memory(space_used, q.space) {
        errors.push("memory space_quota_exceeded");
    }
    if over_memory(org_used, q.org) {
        errors.push("memory quota_exceeded");
    }
    if over_instance_memory(q.org) {
        errors.push("memory instance_memory_limit_exceeded");
    }
    if over_instance_memory(q.space) {
        errors.push("memory space_instance_memory_limit_exceeded");
    }
    if over_instances(org_used, q.org) {
        errors.push("app_instance_limit app_instance_limit_exceeded");
    }
    if over_instances(space_used, q.space) {
        errors.push("app_instance_limit space_app_instance_limit_exceeded");
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join(", "))
    }
}

/// Checks starting the (stopped) app `app_guid`: every process in turn, as `AppStart` saves
/// them. `Err` holds the first failing process's message.
pub(crate) fn check_start(st: &State, app_guid: &str) -> Result<(), String> {
    let Some(app) = st.app(app_guid) else {
        return Ok(());
    };
    if app.started {
        return Ok(());
    }
    let mut pending = Pending::default();
    for p in st.app_processes(app_guid) {
        check_process(
            st,
            &app.space_guid,
            (0, 0),
            (p.memory_mb, p.instances),
            pending,
        )?;
        pending.memory_mb = pending
            .memory_mb
            .saturating_add(p.memory_mb.saturating_mul(u64::from(p.instances)));
        pending.instances = pending.instances.saturating_add(u64::from(p.instances));
    }
    Ok(())
}

/// Checks that process `before` may become `after` (a scale, or manifest settings): only a
/// process of a started app counts.
pub(crate) fn check_scale(st: &State, before: &Process, after: &Process) -> Result<(), String> {
    let Some(app) = st.app(&before.app_guid) else {
        return Ok(());
    };
    if !app.started {
        return Ok(());
    }
    check_process(
        st,
        &app.space_guid,
        (before.memory_mb, before.instances),
        (after.memory_mb, after.instances),
        Pending::default(),
    )
}

/// The message `DeploymentCreate` gives a quota failure: the process's message plus where and
/// what to look at.
pub(crate) fn deployment_create_message(st: &State, space_guid: &str, error: &str) -> String {
    let Some(q) = applicable(st, space_guid) else {
        return error.to_string();
    };
    let space_errors = ["space_quota_exceeded", "space_app_instance_limit_exceeded"];
    let org_errors = ["quota_exceeded", "app_instance_limit_exceeded"];
    if space_errors.iter().any(|e| error.contains(e)) {
        format!(
            "{error} for space {}. This space's quota may not be large enough to support rolling deployments or your configured max-in-flight.",
            q.space_name
        )
    } else if org_errors.iter().any(|e| error.contains(e)) {
        format!(
            "{error} for organization {}. This organization's quota may not be large enough to support rolling deployments or your configured max-in-flight.",
            q.org_name
        )
    } else {
        error.to_string()
    }
}

/// Checks creating one more route in the space (`RouteCreate`: the space's quota first).
pub(crate) fn check_route(st: &State, space_guid: &str) -> Result<(), String> {
    let Some(q) = applicable(st, space_guid) else {
        return Ok(());
    };
    let full = |used: Usage, spec: Option<&QuotaSpec>| {
        exceeds(used.routes, 1, spec.and_then(|s| s.total_routes))
    };
    if full(space_usage(st, &q.space_guid), q.space) {
        return Err(format!(
            "Routes quota exceeded for space '{}'.",
            q.space_name
        ));
    }
    if full(org_usage(st, &q.org_guid), q.org) {
        return Err(format!(
            "Routes quota exceeded for organization '{}'.",
            q.org_name
        ));
    }
    Ok(())
}

/// Cloud Controller's smallest staging memory (`staging.minimum_staging_memory_mb`): a smaller
/// request is raised to it without a quota check.
pub(crate) const MINIMUM_STAGING_MEMORY_MB: u64 = 1024;

/// Checks staging with `memory_mb` in the space (`QuotaValidatingStagingMemoryCalculator`).
pub(crate) fn check_staging(st: &State, space_guid: &str, memory_mb: u64) -> Result<(), String> {
    if memory_mb < MINIMUM_STAGING_MEMORY_MB {
        return Ok(());
    }
    let Some(q) = applicable(st, space_guid) else {
        return Ok(());
    };
    let short = |used: Usage, spec: Option<&QuotaSpec>| {
        spec.and_then(|s| s.total_memory_mb)
            .is_some_and(|limit| limit.saturating_sub(used.memory_mb) < memory_mb)
    };
    if short(space_usage(st, &q.space_guid), q.space) {
        return Err(format!(
            "space's memory limit exceeded: staging requires {memory_mb}M memory"
        ));
    }
    if short(org_usage(st, &q.org_guid), q.org) {
        return Err(format!(
            "organization's memory limit exceeded: staging requires {memory_mb}M memory"
        ));
    }
    Ok(())
}

/// Checks a task of `memory_mb` in the space: running tasks count against the total memory
/// (not against the instance limits). `Err` holds Cloud Controller's message.
pub(crate) fn check_task(st: &State, space_guid: &str, memory_mb: u64) -> Result<(), String> {
    let Some(q) = applicable(st, space_guid) else {
        return Ok(());
    };
    let over = |used: Usage, spec: Option<&QuotaSpec>| {
        spec.and_then(|s| s.total_memory_mb)
            .is_some_and(|limit| used.memory_mb.saturating_add(memory_mb) > limit)
    };
    let mut errors = Vec::new();
    if over(space_usage(st, &q.space_guid), q.space) {
        errors.push("memory_in_mb exceeds space memory quota");
    }
    if over(org_usage(st, &q.org_guid), q.org) {
        errors.push("memory_in_mb exceeds organization memory quota");
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join(", "))
    }
}

/// Sets (or with `None` removes; an org keeps an unlimited `default` quota) the quota of the
/// seeded space or org.
pub(crate) fn set_quota(
    st: &mut State,
    scope: QuotaScope,
    space_guid: &str,
    spec: Option<QuotaSpec>,
) {
    let Some(space) = st.space(space_guid).cloned() else {
        return;
    };
    let current = match scope {
        QuotaScope::Space => space.quota_guid.clone(),
        QuotaScope::Org => st
            .orgs
            .iter()
            .find(|o| o.meta.guid == space.org_guid)
            .and_then(|o| o.quota_guid.clone()),
    };
    let spec = match (scope, spec) {
        (_, Some(s)) => Some(s),
        (QuotaScope::Org, None) => Some(QuotaSpec::unlimited("default")),
        (QuotaScope::Space, None) => None,
    };
    let guid = match (spec, current) {
        (None, _) => None,
        (Some(spec), Some(g)) if st.quotas.iter().any(|q| q.meta.guid == g) => {
            if let Some(q) = st.quotas.iter_mut().find(|q| q.meta.guid == g) {
                q.spec = spec;
                q.meta.touch();
            }
            Some(g)
        }
        (Some(spec), _) => {
            let meta = st.meta();
            let g = meta.guid.clone();
            st.quotas.push(Quota {
                meta,
                org_guid: (scope == QuotaScope::Space).then(|| space.org_guid.clone()),
                spec,
            });
            Some(g)
        }
    };
    match scope {
        QuotaScope::Space => {
            if let Some(sp) = st.spaces.iter_mut().find(|s| s.meta.guid == space_guid) {
                sp.quota_guid = guid;
            }
        }
        QuotaScope::Org => {
            if let Some(o) = st.orgs.iter_mut().find(|o| o.meta.guid == space.org_guid) {
                o.quota_guid = guid;
            }
        }
    }
}
