//! `apply_manifest` and `manifest_diff`: validation (422 with one error per problem), apps
//! found or created synchronously, then processes, scale, health checks, lifecycle, routes
//! (CC's candidate host/domain algorithm, default/random/no-route), env, services and
//! metadata, reported through a job.
//!
//! Depends on: `api` helpers (`routes`, `services`, `processes`), `state`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use serde_json::{Value, json};

use super::processes::{apply_check, apply_scale};
use super::routes::{create_route, map_route};
use super::services::bind;
use super::{ApiError, ApiResult, SharedState, accepted_job, created, merge_metadata};
use crate::sim::Shared;
use crate::sim::state::{App, JobOutcome, State};
use crate::sim::util::{parse_megabytes, random_u64};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/v3/spaces/{guid}/actions/apply_manifest",
            post(apply_manifest),
        )
        .route("/v3/spaces/{guid}/manifest_diff", post(manifest_diff))
}

/// Parses and validates a manifest body; returns its `applications`.
fn parse(headers: &HeaderMap, body: &Bytes) -> Result<Vec<Value>, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.contains("yaml") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            1001,
            "CF-MessageParseError",
            "Content-Type must be yaml",
        ));
    }
    let v: Value = serde_yaml_ng::from_slice(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            1001,
            "CF-MessageParseError",
            "Request invalid due to parse error: invalid YAML",
        )
    })?;
    if let Some(version) = v.get("version")
        && version.as_u64() != Some(1)
        && version.as_str() != Some("1")
    {
        return Err(ApiError::unprocessable(
            "Unsupported manifest schema version. Currently supported versions: [1].",
        ));
    }
    let apps = v["applications"]
        .as_array()
        .filter(|a| !a.is_empty())
        .cloned()
        .ok_or_else(|| {
            ApiError::unprocessable("Cannot parse manifest with no 'applications' field.")
        })?;
    let mut errors = Vec::new();
    for a in &apps {
        let Some(name) = a["name"].as_str().filter(|n| !n.is_empty()) else {
            errors.push("Found an application with no name specified".to_string());
            continue;
        };
        for e in validate_app(a) {
            errors.push(format!("For application '{name}': {e}"));
        }
    }
    if errors.is_empty() {
        Ok(apps)
    } else {
        Err(ApiError::unprocessable_many(errors))
    }
}

fn validate_settings(s: &Value, errors: &mut Vec<String>) {
    if let Some(i) = s.get("instances")
        && i.as_i64().is_none_or(|n| n < 0)
    {
        errors.push("Instances must be greater than or equal to 0".to_string());
    }
    if let Some(m) = s.get("memory")
        && size_mb(m).is_none()
    {
        errors
            .push("Memory must use a supported unit: B, K, KB, M, MB, G, GB, T, or TB".to_string());
    }
    for key in ["disk_quota", "disk-quota"] {
        if let Some(m) = s.get(key)
            && size_mb(m).is_none()
        {
            errors.push(
                "Disk quota must use a supported unit: B, K, KB, M, MB, G, GB, T, or TB"
                    .to_string(),
            );
        }
    }
    for key in ["health-check-type", "readiness-health-check-type"] {
        if let Some(t) = s.get(key)
            && !matches!(t.as_str(), Some("port" | "process" | "http" | "none"))
        {
            errors.push(format!(
                "{} must be one of: port, process, http",
                if key.starts_with("readiness") {
                    "Readiness health check type"
                } else {
                    "Health check type"
                }
            ));
        }
    }
    for key in [
        "timeout",
        "health-check-invocation-timeout",
        "health-check-interval",
        "readiness-health-check-invocation-timeout",
        "readiness-health-check-interval",
    ] {
        if let Some(t) = s.get(key)
            && t.as_u64().is_none_or(|n| n < 1)
        {
            errors.push(format!("{key} must be greater than or equal to 1"));
        }
    }
}

fn validate_app(a: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    validate_settings(a, &mut errors);
    let docker = a.get("docker").is_some() || a["lifecycle"].as_str() == Some("docker");
    let buildpacks = a.get("buildpacks").is_some() || a.get("buildpack").is_some();
    if a.get("buildpacks").is_some() && a.get("buildpack").is_some() {
        errors.push("Buildpack and Buildpacks fields cannot be used together.".to_string());
    }
    if docker && buildpacks {
        errors.push("Buildpacks cannot be configured for a docker lifecycle app.".to_string());
    }
    if a["random-route"].as_bool() == Some(true) && a["default-route"].as_bool() == Some(true) {
        errors.push("Random-route and default-route may not be used together".to_string());
    }
    if let Some(ps) = a["processes"].as_array() {
        let mut seen = Vec::new();
        for p in ps {
            let Some(t) = p["type"].as_str() else {
                errors.push("Process must have a type".to_string());
                continue;
            };
            if seen.contains(&t) {
                errors.push(format!("Process \"{t}\" may only be present once"));
            }
            seen.push(t);
            validate_settings(p, &mut errors);
        }
    }
    if let Some(routes) = a.get("routes")
        && !routes.is_array()
    {
        errors.push("Routes must be a list of route hashes".to_string());
    }
    errors
}

fn size_mb(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => parse_megabytes(s),
        _ => None,
    }
}

/// Parses a log rate (`1K`, `512B`, `-1`) into bytes per second.
fn log_rate(v: &Value) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    let s = v.as_str()?.trim().to_ascii_uppercase();
    if s == "-1" {
        return Some(-1);
    }
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    let n: i64 = digits.parse().ok()?;
    let mult = match s[digits.len()..].trim() {
        "" | "B" => 1,
        "K" | "KB" => 1024,
        "M" | "MB" => 1024 * 1024,
        "G" | "GB" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Applies process-level manifest keys to a process.
fn apply_process_settings(st: &mut State, pguid: &str, s: &Value) -> Result<(), ApiError> {
    let Some(before) = st.process(pguid).cloned() else {
        return Err(ApiError::not_found("Process"));
    };
    let mut updated = before.clone();
    let p = &mut updated;
    let mut scale = json!({});
    if let Some(i) = s.get("instances") {
        scale["instances"] = i.clone();
    }
    if let Some(m) = s.get("memory").and_then(size_mb) {
        scale["memory_in_mb"] = json!(m);
    }
    if let Some(d) = s
        .get("disk_quota")
        .or_else(|| s.get("disk-quota"))
        .and_then(size_mb)
    {
        scale["disk_in_mb"] = json!(d);
    }
    if let Some(l) = s.get("log-rate-limit-per-second").and_then(log_rate) {
        scale["log_rate_limit_in_bytes_per_second"] = json!(l);
    }
    apply_scale(p, &scale)?;
    match s.get("command") {
        Some(Value::String(c)) if !c.is_empty() => p.command = Some(c.clone()),
        Some(Value::Null) => p.command = None,
        _ => {}
    }
    let hc = check_body(
        s,
        "health-check-type",
        &[
            ("health-check-http-endpoint", "endpoint"),
            ("timeout", "timeout"),
            ("health-check-invocation-timeout", "invocation_timeout"),
            ("health-check-interval", "interval"),
        ],
    );
    apply_check(&mut p.health, &hc, true)?;
    if p.health.kind != "http" {
        p.health.endpoint = None;
    }
    let rc = check_body(
        s,
        "readiness-health-check-type",
        &[
            ("readiness-health-check-http-endpoint", "endpoint"),
            (
                "readiness-health-check-invocation-timeout",
                "invocation_timeout",
            ),
            ("readiness-health-check-interval", "interval"),
        ],
    );
    apply_check(&mut p.readiness, &rc, false)?;
    crate::sim::quotas::check_scale(st, &before, &updated).map_err(ApiError::unprocessable)?;
    if let Some(p) = st.process_mut(pguid) {
        *p = updated;
    }
    Ok(())
}

/// A process's health check in API form (`{"type": .., "data": {..}}`) from manifest keys:
/// `type_key` gives the type, each `(key, field)` of `fields` one field of `data`.
fn check_body(s: &Value, type_key: &str, fields: &[(&str, &str)]) -> Value {
    let mut check = json!({"data": {}});
    if let Some(t) = s.get(type_key) {
        check["type"] = t.clone();
    }
    for (key, field) in fields {
        if let Some(v) = s.get(*key) {
            check["data"][*field] = v.clone();
        }
    }
    check
}

/// Splits a manifest route string into (host part, path, port).
fn split_route(route: &str) -> (String, String, Option<u16>) {
    let r = route
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_start_matches("tcp://");
    let (hostport, path) = match r.find('/') {
        Some(i) => (&r[..i], r[i..].to_string()),
        None => (r, String::new()),
    };
    match hostport.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_lowercase(), path, p.parse().ok()),
        _ => (hostport.to_lowercase(), path, None),
    }
}

/// Finds (host, domain guid) for a manifest route: the whole host part as a domain first
/// (unless it is a wildcard), then first label + rest.
fn resolve_route(st: &State, hostpart: &str) -> Option<(String, String)> {
    let find = |name: &str| {
        st.domains
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
            .map(|d| d.meta.guid.clone())
    };
    if !hostpart.starts_with('*')
        && let Some(d) = find(hostpart)
    {
        return Some((String::new(), d));
    }
    let (host, domain) = hostpart.split_once('.')?;
    find(domain).map(|d| (host.to_string(), d))
}

fn find_or_create_route(st: &mut State, space: &str, route: &str) -> Result<String, String> {
    let (hostpart, path, port) = split_route(route);
    let (host, domain) = resolve_route(st, &hostpart)
        .ok_or_else(|| format!("No domains exist for route {route}"))?;
    let is_tcp = st.domain(&domain).is_some_and(|d| d.tcp);
    if let Some(r) = st.routes.iter().find(|r| {
        r.domain_guid == domain
            && r.host == host
            && r.path == path
            && (!is_tcp || port.is_none() || r.port == port)
    }) {
        if r.space_guid != space {
            return Err(format!(
                "For route '{route}': Routes cannot be mapped to destinations in different spaces"
            ));
        }
        return Ok(r.meta.guid.clone());
    }
    create_route(st, space, &domain, &host, &path, port)
        .map_err(|e| format!("For route '{route}': {}", first_detail(&e)))
}

fn first_detail(e: &ApiError) -> String {
    e.errors
        .first()
        .map(|(_, _, d)| d.clone())
        .unwrap_or_default()
}

const WORDS: &[&str] = &[
    "brave", "calm", "daring", "eager", "fierce", "gentle", "happy", "jolly", "kind", "lively",
    "nimble", "proud", "quick", "silly", "witty", "zesty", "badger", "otter", "lynx", "heron",
    "marmot", "panda", "quokka", "wombat",
];

fn app_has_routes(st: &State, app: &str) -> bool {
    st.routes
        .iter()
        .any(|r| r.destinations.iter().any(|d| d.app_guid == app))
}

/// Applies one manifest entry to an existing app (the job part of apply_manifest).
fn apply_app(st: &mut State, space: &str, org: &str, app: &str, a: &Value) -> Result<(), String> {
    if let Some(f) = a["features"].as_object()
        && let Some(app) = st.app_mut(app)
    {
        for (k, v) in f {
            if let Some(b) = v.as_bool() {
                app.features.insert(k.clone(), b);
            }
        }
    }
    for (kind, settings) in &process_entries(a) {
        let pguid = match st.newest_process(app, kind) {
            Some(p) => p.meta.guid.clone(),
            None => st.create_process(app, kind, None),
        };
        apply_process_settings(st, &pguid, settings).map_err(|e| first_detail(&e))?;
    }
    if let Some(app) = st.app_mut(app) {
        set_lifecycle(app, a);
    }
    apply_routes(st, space, org, app, a)?;
    // Env (merge).
    if let Some(env) = a["env"].as_object()
        && let Some(app) = st.app_mut(app)
    {
        for (k, v) in env {
            app.env.insert(k.clone(), v.clone());
        }
    }
    bind_services(st, space, app, a)?;
    if let Some(app) = st.app_mut(app) {
        merge_metadata(&mut app.meta, a);
        app.meta.touch();
    }
    Ok(())
}

/// The process settings of a manifest entry by process type: top-level settings are the web
/// process's; `processes:` entries override them.
fn process_entries(a: &Value) -> Vec<(String, Value)> {
    let mut entries: Vec<(String, Value)> = vec![("web".to_string(), a.clone())];
    if let Some(ps) = a["processes"].as_array() {
        for p in ps {
            let t = p["type"].as_str().unwrap_or("web").to_string();
            if let Some(e) = entries.iter_mut().find(|(k, _)| *k == t) {
                if let (Some(dst), Some(src)) = (e.1.as_object_mut(), p.as_object()) {
                    for (k, v) in src {
                        dst.insert(k.clone(), v.clone());
                    }
                }
            } else {
                entries.push((t, p.clone()));
            }
        }
    }
    entries
}

/// Buildpacks and stack.
fn set_lifecycle(app: &mut App, a: &Value) {
    if let Some(bps) = a["buildpacks"].as_array() {
        app.buildpacks = bps
            .iter()
            .filter_map(|b| b.as_str().map(str::to_string))
            .collect();
    } else if let Some(bp) = a["buildpack"].as_str() {
        app.buildpacks = vec![bp.to_string()];
    }
    if let Some(stack) = a["stack"].as_str() {
        app.stack = stack.to_string();
    }
}

/// `no-route` unmaps the app, `routes` are found or created and mapped, and `random-route` /
/// `default-route` give an app without a route one.
fn apply_routes(
    st: &mut State,
    space: &str,
    org: &str,
    app: &str,
    a: &Value,
) -> Result<(), String> {
    if a["no-route"].as_bool() == Some(true) {
        for r in &mut st.routes {
            r.destinations.retain(|d| d.app_guid != app);
        }
    } else if let Some(routes) = a["routes"].as_array() {
        for r in routes {
            let Some(url) = r["route"].as_str().or_else(|| r.as_str()) else {
                return Err("Routes must be a list of route hashes".to_string());
            };
            let rguid = find_or_create_route(st, space, url)?;
            map_route(st, &rguid, app, "web", r["protocol"].as_str(), None)
                .map_err(|e| first_detail(&e))?;
            if let Some(lb) = r["options"]["loadbalancing"].as_str()
                && let Some(route) = st.routes.iter_mut().find(|x| x.meta.guid == rguid)
            {
                route.loadbalancing = Some(lb.to_string());
            }
        }
    } else if !app_has_routes(st, app)
        && (a["random-route"].as_bool() == Some(true) || a["default-route"].as_bool() == Some(true))
    {
        let name = a["name"].as_str().unwrap_or("");
        let random = a["random-route"].as_bool() == Some(true);
        map_default_route(st, space, org, app, name, random)?;
    }
    Ok(())
}

/// Maps the default route of app `name` (`<name>.<default domain>`, or with `random` two
/// random words appended), creating it if needed.
fn map_default_route(
    st: &mut State,
    space: &str,
    org: &str,
    app: &str,
    name: &str,
    random: bool,
) -> Result<(), String> {
    let domain = st
        .default_domain(org)
        .map(|d| d.meta.guid.clone())
        .ok_or_else(|| "No default domains available".to_string())?;
    let base = name.to_lowercase();
    let host = if random {
        let w = |n: u64| WORDS[(n % WORDS.len() as u64) as usize];
        format!("{base}-{}-{}", w(random_u64()), w(random_u64()))
    } else {
        base
    };
    if host.len() > 63 {
        return Err(
            "Failed to create default route from app name: Host cannot exceed 63 characters"
                .to_string(),
        );
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("Failed to create default route from app name: Host must be either \"*\" or contain only alphanumeric characters, \"_\", or \"-\"".to_string());
    }
    let rguid = match st
        .routes
        .iter()
        .find(|r| r.domain_guid == domain && r.host == host && r.path.is_empty())
    {
        Some(r) => r.meta.guid.clone(),
        None => create_route(st, space, &domain, &host, "", None).map_err(|e| first_detail(&e))?,
    };
    map_route(st, &rguid, app, "web", None, None).map_err(|e| first_detail(&e))
}

/// Binds the `services` (by name, in the space) the app is not bound to yet.
fn bind_services(st: &mut State, space: &str, app: &str, a: &Value) -> Result<(), String> {
    let Some(services) = a["services"].as_array() else {
        return Ok(());
    };
    for s in services {
        let (sname, binding_name) = match s {
            Value::String(n) => (n.clone(), None),
            other => (
                other["name"].as_str().unwrap_or("").to_string(),
                other["binding_name"].as_str().map(str::to_string),
            ),
        };
        let Some(si) = st
            .service_instances
            .iter()
            .find(|i| i.space_guid == space && i.name == sname)
            .map(|i| i.meta.guid.clone())
        else {
            return Err(format!("Service instance '{sname}' not found"));
        };
        if !st
            .bindings
            .iter()
            .any(|b| b.app_guid == app && b.instance_guid == si)
        {
            bind(st, app, &si, binding_name).map_err(|e| first_detail(&e))?;
        }
    }
    Ok(())
}

async fn apply_manifest(
    AxState(s): SharedState,
    Path(space): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let apps = parse(&headers, &body)?;
    let job = {
        let mut st = s.lock();
        let org = st
            .space(&space)
            .map(|sp| sp.org_guid.clone())
            .ok_or_else(|| ApiError::not_found("Space"))?;
        // Synchronously: find or create every app.
        let mut guids = Vec::new();
        for a in &apps {
            let name = a["name"].as_str().unwrap_or("");
            let docker = a.get("docker").is_some() || a["lifecycle"].as_str() == Some("docker");
            let guid = match st.find_app(&space, name) {
                Some(existing) => {
                    if existing.lifecycle == "buildpack" && a.get("docker").is_some() {
                        return Err(ApiError::unprocessable(format!(
                            "For application '{name}': Docker cannot be configured for a buildpack lifecycle app."
                        )));
                    }
                    existing.meta.guid.clone()
                }
                None => st.create_app(name, &space, if docker { "docker" } else { "buildpack" }),
            };
            guids.push(guid);
        }
        let mut outcome = JobOutcome::Complete;
        for (a, guid) in apps.iter().zip(&guids) {
            if let Err(detail) = apply_app(&mut st, &space, &org, guid, a) {
                let name = a["name"].as_str().unwrap_or("");
                let (code, title) = if detail.starts_with("Service instance") {
                    (10010, "CF-ResourceNotFound")
                } else {
                    (10008, "CF-UnprocessableEntity")
                };
                outcome = JobOutcome::Failed(vec![(
                    code,
                    title.to_string(),
                    format!("For application '{name}': {detail}"),
                )]);
                break;
            }
        }
        st.create_job(
            "space.apply_manifest",
            outcome,
            Some(("space".to_string(), format!("/v3/spaces/{space}"))),
        )
    };
    accepted_job(&s.base_url, &job)
}

async fn manifest_diff(
    AxState(s): SharedState,
    Path(space): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    parse(&headers, &body)?;
    if s.lock().space(&space).is_none() {
        return Err(ApiError::not_found("Space"));
    }
    created(json!({"diff": []}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_strings_split() {
        assert_eq!(
            split_route("myapp.example.com/api/v1"),
            ("myapp.example.com".into(), "/api/v1".into(), None)
        );
        assert_eq!(
            split_route("tcp.example.com:1234"),
            ("tcp.example.com".into(), String::new(), Some(1234))
        );
        assert_eq!(
            split_route("https://A.Example.com"),
            ("a.example.com".into(), String::new(), None)
        );
    }

    #[test]
    fn validation_collects_every_problem() {
        let a: Value = serde_yaml_ng::from_str(
            "name: a\ninstances: -1\nmemory: 256\nrandom-route: true\ndefault-route: true\n",
        )
        .unwrap();
        let errs = validate_app(&a);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].contains("Instances must be greater than or equal to 0"));
    }

    #[test]
    fn log_rates_parse() {
        assert_eq!(log_rate(&json!("1K")), Some(1024));
        assert_eq!(log_rate(&json!("-1")), Some(-1));
        assert_eq!(log_rate(&json!("x")), None);
    }
}
