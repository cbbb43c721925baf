//! Rendering one app back to a manifest document for Cloud Controller's `apply_manifest`.
//!
//! The document is `version: 1` plus `applications:` with exactly this app: typed keys first, then every
//! kept key verbatim. As the cf CLI does, `default-route: true` is added unless the app has `no-route` or
//! `random-route`, and `path` is left out (it is the client's business). Strings that a YAML reader could
//! take for another type are quoted, so types survive the round trip.
//!
//! Depends on: `model.rs`, `emit.rs`. Must not: read files.

use std::collections::BTreeMap;

use super::emit;
use super::error::Error;
use super::model::{AppManifest, ProcessSpec, RouteSpec, ServiceSpec};
use super::value::Value;

/// What a strategy changes in an app's entry when rendering it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderOverrides {
    /// A different app name (e.g. the blue-green candidate's).
    pub name: Option<String>,
    /// Replace the routes; `Some(vec![])` renders `no-route: true`.
    pub routes: Option<Vec<String>>,
    /// Instances of the web process.
    pub instances: Option<u32>,
    /// Instances per process type (`--keep-scale`); types with no entry in the manifest other than
    /// `web` are ignored (a new process entry would have no command).
    pub process_instances: BTreeMap<String, u32>,
    /// Labels merged into `metadata.labels` (they win over the manifest's).
    pub extra_labels: BTreeMap<String, String>,
    /// Annotations merged into `metadata.annotations` (they win over the manifest's).
    pub extra_annotations: BTreeMap<String, String>,
}

fn s(text: &str) -> Value {
    Value::Str(text.to_string())
}

fn opt_str(v: &Option<String>) -> Option<Value> {
    v.as_ref().map(|t| s(t))
}

fn push(entries: &mut Vec<(Value, Value)>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        entries.push((s(key), v));
    }
}

fn route_value(r: &RouteSpec) -> Value {
    let mut e = vec![(s("route"), s(&r.route))];
    push(&mut e, "protocol", opt_str(&r.protocol));
    push(&mut e, "options", r.options.clone());
    e.extend(r.extra.iter().cloned());
    Value::Map(e)
}

fn service_value(sv: &ServiceSpec) -> Value {
    if sv.short && sv.binding_name.is_none() && sv.parameters.is_none() && sv.extra.is_empty() {
        return s(&sv.name);
    }
    let mut e = vec![(s("name"), s(&sv.name))];
    push(&mut e, "binding_name", opt_str(&sv.binding_name));
    push(&mut e, "parameters", sv.parameters.clone());
    e.extend(sv.extra.iter().cloned());
    Value::Map(e)
}

fn process_value(p: &ProcessSpec, instances: Option<u32>) -> Value {
    let mut e = vec![(s("type"), s(&p.kind))];
    push(
        &mut e,
        "instances",
        instances.or(p.instances).map(|i| Value::Int(i.into())),
    );
    push(&mut e, "memory", opt_str(&p.memory));
    push(&mut e, "disk_quota", opt_str(&p.disk_quota));
    push(&mut e, "command", opt_str(&p.command));
    push(&mut e, "health-check-type", opt_str(&p.health_check_type));
    push(
        &mut e,
        "health-check-http-endpoint",
        opt_str(&p.health_check_http_endpoint),
    );
    e.extend(p.extra.iter().cloned());
    Value::Map(e)
}

fn labels_value(map: &BTreeMap<String, Option<String>>) -> Value {
    Value::Map(
        map.iter()
            .map(|(k, v)| (s(k), v.as_ref().map_or(Value::Null, |t| s(t))))
            .collect(),
    )
}

impl AppManifest {
    /// The app's entry as it is rendered (a mapping), with `ov` applied.
    ///
    /// # Errors
    /// When the resulting app has no name.
    pub fn to_value(&self, ov: &RenderOverrides) -> Result<Value, Error> {
        let name = ov.name.as_deref().unwrap_or(&self.name);
        if name.is_empty() {
            return Err(Error::NameRequired);
        }
        let mut e: Vec<(Value, Value)> = vec![(s("name"), s(name))];
        self.push_build(&mut e);
        // Scale: the web process entry carries web's instances when it exists (cf CLI rule).
        let web_override = ov.process_instances.get("web").copied().or(ov.instances);
        let has_web_entry = self.processes.iter().any(|p| p.kind == "web");
        let top_instances = if has_web_entry {
            self.instances
        } else {
            web_override.or(self.instances)
        };
        self.push_settings(&mut e, top_instances);
        self.push_routes(&mut e, ov.routes.as_deref());
        if !self.services.is_empty() {
            e.push((
                s("services"),
                Value::Seq(self.services.iter().map(service_value).collect()),
            ));
        }
        if !self.processes.is_empty() {
            let procs = self
                .processes
                .iter()
                .map(|p| {
                    let n = if p.kind == "web" {
                        web_override
                    } else {
                        ov.process_instances.get(&p.kind).copied()
                    };
                    process_value(p, n)
                })
                .collect();
            e.push((s("processes"), Value::Seq(procs)));
        }
        push(&mut e, "metadata", self.metadata_value(ov));
        e.extend(self.extra.iter().cloned());
        Ok(Value::Map(e))
    }

    /// How the app is built: `lifecycle`, `buildpacks`, `stack`, `docker`.
    fn push_build(&self, e: &mut Vec<(Value, Value)>) {
        push(e, "lifecycle", opt_str(&self.lifecycle));
        push(
            e,
            "buildpacks",
            self.buildpacks
                .as_ref()
                .map(|b| Value::Seq(b.iter().map(|x| s(x)).collect())),
        );
        push(e, "stack", opt_str(&self.stack));
        if let Some(d) = &self.docker {
            let mut de = vec![(s("image"), s(&d.image))];
            push(&mut de, "username", opt_str(&d.username));
            e.push((s("docker"), Value::Map(de)));
        }
    }

    /// The app-level scale, command, health check and `env` (`instances` as given).
    fn push_settings(&self, e: &mut Vec<(Value, Value)>, instances: Option<u32>) {
        push(e, "instances", instances.map(|i| Value::Int(i.into())));
        push(e, "memory", opt_str(&self.memory));
        push(e, "disk_quota", opt_str(&self.disk_quota));
        push(
            e,
            "log-rate-limit-per-second",
            opt_str(&self.log_rate_limit_per_second),
        );
        push(e, "command", opt_str(&self.command));
        push(e, "health-check-type", opt_str(&self.health_check_type));
        push(
            e,
            "health-check-http-endpoint",
            opt_str(&self.health_check_http_endpoint),
        );
        if !self.env.is_empty() {
            e.push((
                s("env"),
                Value::Map(self.env.iter().map(|(k, v)| (s(k), v.clone())).collect()),
            ));
        }
    }

    /// `routes`, `no-route`, `random-route` and the `default-route: true` the cf CLI adds;
    /// `replaced` routes win over the manifest's (none: `no-route`).
    fn push_routes(&self, e: &mut Vec<(Value, Value)>, replaced: Option<&[String]>) {
        let (routes, no_route, random_route) = match replaced {
            Some([]) => (Vec::new(), true, false),
            Some(list) => (
                list.iter()
                    .map(|r| route_value(&RouteSpec::new(r.as_str())))
                    .collect(),
                false,
                false,
            ),
            None => (
                self.routes.iter().map(route_value).collect(),
                self.no_route,
                self.random_route,
            ),
        };
        if !routes.is_empty() && !no_route {
            e.push((s("routes"), Value::Seq(routes)));
        }
        if no_route {
            e.push((s("no-route"), Value::Bool(true)));
        }
        if random_route {
            e.push((s("random-route"), Value::Bool(true)));
        }
        if !no_route && !random_route {
            e.push((s("default-route"), Value::Bool(true)));
        }
    }

    /// `metadata` with the overrides' labels and annotations merged in; `None` when empty.
    fn metadata_value(&self, ov: &RenderOverrides) -> Option<Value> {
        let mut labels = self.labels.clone();
        for (k, v) in &ov.extra_labels {
            labels.insert(k.clone(), Some(v.clone()));
        }
        let mut annotations = self.annotations.clone();
        for (k, v) in &ov.extra_annotations {
            annotations.insert(k.clone(), Some(v.clone()));
        }
        if labels.is_empty() && annotations.is_empty() && self.metadata_extra.is_empty() {
            return None;
        }
        let mut m = Vec::new();
        if !labels.is_empty() {
            m.push((s("labels"), labels_value(&labels)));
        }
        if !annotations.is_empty() {
            m.push((s("annotations"), labels_value(&annotations)));
        }
        m.extend(self.metadata_extra.iter().cloned());
        Some(Value::Map(m))
    }

    /// A complete manifest document (`version: 1`, `applications:` with exactly this app) for
    /// `apply_manifest`, with `ov` applied.
    ///
    /// # Errors
    /// When the resulting app has no name.
    pub fn render(&self, ov: &RenderOverrides) -> Result<String, Error> {
        let app = self.to_value(ov)?;
        let doc = Value::Map(vec![
            (s("version"), Value::Int(1)),
            (s("applications"), Value::Seq(vec![app])),
        ]);
        Ok(emit::emit(&doc))
    }
}
