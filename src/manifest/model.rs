//! The typed manifest model and its construction from an interpolated YAML tree, with validation.
//!
//! Keys a deploy reads are typed ([`AppManifest`]'s pub fields); every other key is kept verbatim, in
//! order, so the manifest sent to `apply_manifest` loses nothing. Key spellings with `_` and `-` are the
//! same key (Cloud Controller underscores every key); giving both is an error.
//!
//! Depends on: `yaml.rs`, `value.rs`, `error.rs`. Must not: read files other than checking `path`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::{Error, Location};
use super::value::Value;
use super::yaml::{Kind, Mark, Node};

/// One entry of `routes:`.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSpec {
    /// The route, e.g. `myapp.example.com/api` or `tcp.example.com:1234`.
    pub route: String,
    /// `http1`, `http2` or `tcp`.
    pub protocol: Option<String>,
    /// `options:` (loadbalancing, hash_header, hash_balance), verbatim.
    pub options: Option<Value>,
    pub(crate) extra: Vec<(Value, Value)>,
}

impl RouteSpec {
    /// A route with no protocol or options.
    pub fn new(route: impl Into<String>) -> RouteSpec {
        RouteSpec {
            route: route.into(),
            protocol: None,
            options: None,
            extra: Vec::new(),
        }
    }
}

/// One entry of `processes:`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSpec {
    /// The process `type` (`web`, `worker`, ...).
    pub kind: String,
    pub instances: Option<u32>,
    /// `memory`, with its unit.
    pub memory: Option<String>,
    /// `disk_quota`/`disk-quota`, with its unit.
    pub disk_quota: Option<String>,
    pub command: Option<String>,
    pub health_check_type: Option<String>,
    pub health_check_http_endpoint: Option<String>,
    pub(crate) extra: Vec<(Value, Value)>,
}

impl ProcessSpec {
    /// A process entry of type `kind` with nothing else set.
    pub fn new(kind: impl Into<String>) -> ProcessSpec {
        ProcessSpec {
            kind: kind.into(),
            instances: None,
            memory: None,
            disk_quota: None,
            command: None,
            health_check_type: None,
            health_check_http_endpoint: None,
            extra: Vec::new(),
        }
    }
}

/// `docker:` of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerSpec {
    pub image: String,
    /// `username` (the password comes from `CF_DOCKER_PASSWORD`, never from the manifest).
    pub username: Option<String>,
}

/// Where an app's bits come from: an absolute, symlink-resolved path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppBits {
    /// A directory to walk.
    Directory(PathBuf),
    /// Anything else: a zip/jar/war archive.
    Archive(PathBuf),
}

impl AppBits {
    pub fn path(&self) -> &Path {
        match self {
            AppBits::Directory(p) | AppBits::Archive(p) => p,
        }
    }
}

/// One entry of `services:` (a name, or `{name, binding_name, parameters}`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    /// The service instance name.
    pub name: String,
    pub binding_name: Option<String>,
    /// `parameters`, verbatim.
    pub parameters: Option<Value>,
    /// Written as a bare string.
    pub(crate) short: bool,
    pub(crate) extra: Vec<(Value, Value)>,
}

impl ServiceSpec {
    /// A binding to service instance `name`, written as a bare name.
    pub fn new(name: impl Into<String>) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            binding_name: None,
            parameters: None,
            short: true,
            extra: Vec::new(),
        }
    }
}

/// One application of a manifest.
///
/// `Debug` shows env variable names and kept keys' names only: their values may hold credentials.
#[derive(Clone, PartialEq)]
pub struct AppManifest {
    /// `name` (empty when a single-app manifest has none; the command line supplies it).
    pub name: String,
    pub routes: Vec<RouteSpec>,
    pub no_route: bool,
    pub random_route: bool,
    /// `default-route` as written (rendering adds `default-route: true` as the cf CLI does).
    pub default_route: bool,
    /// `instances` (of the web process).
    pub instances: Option<u32>,
    pub processes: Vec<ProcessSpec>,
    pub docker: Option<DockerSpec>,
    /// The app's bits (None for docker apps).
    pub bits: Option<AppBits>,
    /// `metadata.labels` (a null value removes a label).
    pub labels: BTreeMap<String, Option<String>>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, Option<String>>,
    pub health_check_type: Option<String>,
    pub health_check_http_endpoint: Option<String>,
    /// `memory`, with its unit.
    pub memory: Option<String>,
    /// `disk_quota`/`disk-quota`, with its unit.
    pub disk_quota: Option<String>,
    pub log_rate_limit_per_second: Option<String>,
    /// `command` (`command: null` is kept verbatim and leaves this `None`).
    pub command: Option<String>,
    /// `buildpacks` (`Some(vec![])` = auto-detect).
    pub buildpacks: Option<Vec<String>>,
    pub stack: Option<String>,
    /// `lifecycle` (`buildpack`, `cnb` or `docker`).
    pub lifecycle: Option<String>,
    /// `env`, values with their YAML types.
    pub env: BTreeMap<String, Value>,
    pub services: Vec<ServiceSpec>,
    /// Every other key, verbatim and in order (sidecars, features, timeouts, readiness checks, ...).
    pub(crate) extra: Vec<(Value, Value)>,
    /// Other keys of `metadata`.
    pub(crate) metadata_extra: Vec<(Value, Value)>,
    /// A `path` that does not exist: reported when the app is selected.
    pub(crate) missing_path: Option<(Location, PathBuf)>,
}

impl std::fmt::Debug for AppManifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env_names: Vec<&String> = self.env.keys().collect();
        let extra_keys: Vec<String> = self
            .extra
            .iter()
            .map(|(k, _)| k.scalar_text().unwrap_or_default())
            .collect();
        f.debug_struct("AppManifest")
            .field("name", &self.name)
            .field("routes", &self.routes)
            .field("no_route", &self.no_route)
            .field("random_route", &self.random_route)
            .field("default_route", &self.default_route)
            .field("instances", &self.instances)
            .field("processes", &self.processes)
            .field("docker", &self.docker)
            .field("bits", &self.bits)
            .field("labels", &self.labels)
            .field("annotations", &self.annotations)
            .field("health_check_type", &self.health_check_type)
            .field(
                "health_check_http_endpoint",
                &self.health_check_http_endpoint,
            )
            .field("memory", &self.memory)
            .field("disk_quota", &self.disk_quota)
            .field("log_rate_limit_per_second", &self.log_rate_limit_per_second)
            .field("command", &self.command)
            .field("buildpacks", &self.buildpacks)
            .field("stack", &self.stack)
            .field("lifecycle", &self.lifecycle)
            .field("env (names only)", &env_names)
            .field(
                "services",
                &self.services.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .field("other keys (names only)", &extra_keys)
            .finish_non_exhaustive()
    }
}

impl AppManifest {
    /// An app with only a name.
    pub(crate) fn named(name: &str) -> AppManifest {
        AppManifest {
            name: name.to_string(),
            routes: Vec::new(),
            no_route: false,
            random_route: false,
            default_route: false,
            instances: None,
            processes: Vec::new(),
            docker: None,
            bits: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            health_check_type: None,
            health_check_http_endpoint: None,
            memory: None,
            disk_quota: None,
            log_rate_limit_per_second: None,
            command: None,
            buildpacks: None,
            stack: None,
            lifecycle: None,
            env: BTreeMap::new(),
            services: Vec::new(),
            extra: Vec::new(),
            metadata_extra: Vec::new(),
            missing_path: None,
        }
    }

    /// The value of a kept (untyped) key, e.g. `"sidecars"` or `"timeout"`.
    pub fn extra(&self, key: &str) -> Option<&Value> {
        self.extra
            .iter()
            .find(|(k, _)| k.as_str().map(normalize).as_deref() == Some(&normalize(key)))
            .map(|(_, v)| v)
    }

    /// The `web` process entry, if the manifest has one.
    pub fn web_process(&self) -> Option<&ProcessSpec> {
        self.processes.iter().find(|p| p.kind == "web")
    }

    /// Memory per instance in MB that the manifest sets, by process type (`web` from its
    /// `processes:` entry, else the app's top-level `memory`). Types without one are left out.
    pub fn memory_mb(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for p in &self.processes {
            if let Some(mb) = p.memory.as_deref().and_then(size_in_mb) {
                out.insert(p.kind.clone(), mb);
            }
        }
        if !out.contains_key("web")
            && let Some(mb) = self.memory.as_deref().and_then(size_in_mb)
        {
            out.insert("web".to_string(), mb);
        }
        out
    }
}

/// Keys are compared with `_` and `-` as the same character (Cloud Controller underscores them).
pub(crate) fn normalize(key: &str) -> String {
    key.replace('_', "-")
}

/// Builds typed values out of nodes, collecting warnings.
pub(crate) struct Reader<'a> {
    /// The manifest (for locations).
    pub file: &'a Path,
    /// Warnings found so far.
    pub warnings: Vec<String>,
}

/// One application as read: the app, where its entry starts, and its raw `path` (mark, text).
pub(crate) struct ParsedApp {
    pub app: AppManifest,
    pub mark: Mark,
    pub path: Option<(Mark, String)>,
}

/// The result of reading the top level.
pub(crate) struct Parsed {
    pub applications: Vec<ParsedApp>,
}

/// What reading one application collects besides the app: its raw `path` (mark, text) and
/// where the keys that are checked together were found.
#[derive(Default)]
struct AppKeys {
    path: Option<(Mark, String)>,
    buildpack_legacy: Option<Mark>,
    routes: Option<Mark>,
    default_route: Option<Mark>,
}

/// One key of an application entry: the key node, its value, the key as written, and the
/// `app 'name': ` prefix of messages.
struct AppEntry<'c> {
    k: Node,
    v: Node,
    key: String,
    ctx: &'c str,
}

const LEGACY_ROUTE_KEYS: [&str; 5] = ["host", "hosts", "domain", "domains", "no-hostname"];

/// Health-check keys of an app or a process that the model does not keep: each is checked by
/// [`Reader::check_extra`] and then passed on in `extra`.
const CHECKED_EXTRA_KEYS: [&str; 7] = [
    "readiness-health-check-type",
    "readiness-health-check-http-endpoint",
    "timeout",
    "health-check-invocation-timeout",
    "health-check-interval",
    "readiness-health-check-invocation-timeout",
    "readiness-health-check-interval",
];

/// App-level keys that may appear at the top level in cf CLI v6 manifests ("global attributes").
const GLOBAL_APP_KEYS: [&str; 21] = [
    "buildpack",
    "buildpacks",
    "command",
    "disk-quota",
    "docker",
    "domain",
    "domains",
    "env",
    "health-check-type",
    "host",
    "hosts",
    "instances",
    "memory",
    "no-hostname",
    "no-route",
    "path",
    "random-route",
    "routes",
    "services",
    "stack",
    "timeout",
];

impl<'a> Reader<'a> {
    pub(crate) fn new(file: &'a Path) -> Reader<'a> {
        Reader {
            file,
            warnings: Vec::new(),
        }
    }

    fn loc(&self, mark: Mark) -> Location {
        Location {
            file: self.file.to_path_buf(),
            line: mark.line,
            col: mark.col,
        }
    }

    fn invalid(&self, node: &Node, key: &str, message: impl Into<String>) -> Error {
        Error::Invalid {
            location: self.loc(node.mark),
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn warn(&mut self, mark: Mark, message: impl AsRef<str>) {
        let l = self.loc(mark);
        self.warnings.push(format!("{l}: {}", message.as_ref()));
    }

    /// Reads the document root.
    pub(crate) fn document(&mut self, root: Option<Node>) -> Result<Parsed, Error> {
        let no_apps = || Error::NoApplications {
            file: self.file.to_path_buf(),
        };
        let Some(root) = root else {
            return Err(no_apps());
        };
        let entries = match root.kind {
            Kind::Map(entries) => entries,
            Kind::Null => return Err(no_apps()),
            other => {
                return Err(Error::Invalid {
                    location: self.loc(root.mark),
                    key: "manifest".into(),
                    message: format!(
                        "expected a mapping with an 'applications' key, found {}",
                        other.type_name()
                    ),
                });
            }
        };
        let mut apps_node = None;
        for (k, v) in entries {
            let key = k.to_value().scalar_text().unwrap_or_default();
            match normalize(&key).as_str() {
                "applications" => apps_node = Some(v),
                "version" => {
                    let ok = matches!(&v.kind, Kind::Int(1)) || v.as_str() == Some("1");
                    if !ok {
                        return Err(self.invalid(
                            &v,
                            "version",
                            "unsupported manifest schema version; currently supported versions: [1]",
                        ));
                    }
                }
                "inherit" => self.warn(
                    k.mark,
                    "'inherit' is not supported by cf CLI v7+ and is ignored; copy the inherited keys into this manifest",
                ),
                "declared-services" => self.warn(
                    k.mark,
                    "'declared-services' is not a Cloud Foundry manifest key and is ignored",
                ),
                n if GLOBAL_APP_KEYS.contains(&n) => self.warn(
                    k.mark,
                    format!(
                        "top-level '{key}' is ignored: cf CLI v7+ does not support global attributes; move it under each application"
                    ),
                ),
                // Other top-level keys (anchor holders such as `defaults:`) are ignored, as the cf CLI does.
                _ => {}
            }
        }
        let Some(apps_node) = apps_node else {
            return Err(no_apps());
        };
        let items = match apps_node.kind {
            Kind::Seq(items) => items,
            Kind::Null => return Err(no_apps()),
            other => {
                return Err(Error::Invalid {
                    location: self.loc(apps_node.mark),
                    key: "applications".into(),
                    message: format!(
                        "expected a list of applications, found {}",
                        other.type_name()
                    ),
                });
            }
        };
        if items.is_empty() {
            return Err(no_apps());
        }
        let mut applications = Vec::with_capacity(items.len());
        for item in items {
            let mark = item.mark;
            let (app, path) = self.app(item)?;
            applications.push(ParsedApp { app, mark, path });
        }
        Ok(Parsed { applications })
    }

    /// Reads one application entry. Returns the app and its raw `path` (mark, text).
    fn app(&mut self, node: Node) -> Result<(AppManifest, Option<(Mark, String)>), Error> {
        let mark = node.mark;
        let entries = match node.kind {
            Kind::Map(entries) => entries,
            other => {
                return Err(Error::Invalid {
                    location: self.loc(mark),
                    key: "applications".into(),
                    message: format!(
                        "each application must be a mapping, found {}",
                        other.type_name()
                    ),
                });
            }
        };
        let mut app = AppManifest::named("");
        // The app's name first, so that messages can name it.
        for (k, v) in &entries {
            if k.as_str() == Some("name")
                && let Some(n) = v.to_value().scalar_text()
            {
                app.name = n;
            }
        }
        let ctx = if app.name.is_empty() {
            String::new()
        } else {
            format!("app '{}': ", app.name)
        };
        let mut found = AppKeys::default();
        let mut seen: Vec<(String, String)> = Vec::new();
        for (k, v) in entries {
            let Some(key) = k.to_value().scalar_text() else {
                return Err(self.invalid(
                    &k,
                    "key",
                    format!("keys must be strings, found {}", k.type_name()),
                ));
            };
            let norm = normalize(&key);
            if let Some((first, _)) = seen.iter().find(|(_, n)| *n == norm) {
                return Err(self.invalid(
                    &k,
                    &key,
                    format!("'{first}' and '{key}' are the same key and cannot be used together"),
                ));
            }
            seen.push((key.clone(), norm.clone()));
            let entry = AppEntry {
                k,
                v,
                key,
                ctx: &ctx,
            };
            self.app_key(&mut app, &mut found, &norm, entry)?;
        }
        self.check_app(&app, &found, mark, &ctx)?;
        Ok((app, found.path))
    }

    /// Reads one key of an application into `app` (or `found`).
    fn app_key(
        &mut self,
        app: &mut AppManifest,
        found: &mut AppKeys,
        norm: &str,
        entry: AppEntry<'_>,
    ) -> Result<(), Error> {
        let AppEntry { k, v, key, ctx } = entry;
        match norm {
            "name" => {
                if v.kind != Kind::Null {
                    app.name = self.string(&v, &key)?;
                }
            }
            "path" => {
                if v.kind != Kind::Null {
                    found.path = Some((v.mark, self.string(&v, &key)?));
                }
            }
            "routes" => {
                found.routes = Some(k.mark);
                app.routes = self.routes(v, &key)?;
            }
            "no-route" => app.no_route = self.opt_bool(&v, &key)?.unwrap_or(false),
            "random-route" => app.random_route = self.opt_bool(&v, &key)?.unwrap_or(false),
            "default-route" => {
                found.default_route = Some(k.mark);
                app.default_route = self.opt_bool(&v, &key)?.unwrap_or(false);
            }
            "instances" => app.instances = self.opt_count(&v, &key)?,
            "memory" => app.memory = self.opt_size(&v, &key, "Memory")?,
            "disk-quota" => app.disk_quota = self.opt_size(&v, &key, "Disk quota")?,
            "log-rate-limit-per-second" => {
                app.log_rate_limit_per_second = self.opt_log_rate(&v, &key)?
            }
            "command" => {
                if v.kind == Kind::Null {
                    app.extra.push((k.to_value(), Value::Null));
                } else {
                    app.command = Some(self.string(&v, &key)?);
                }
            }
            "buildpacks" => app.buildpacks = self.opt_string_list(v, &key)?,
            "buildpack" => {
                if v.kind != Kind::Null {
                    self.string(&v, &key)?;
                }
                found.buildpack_legacy = Some(k.mark);
                self.warn(
                    k.mark,
                    format!("{ctx}'buildpack' is deprecated in favor of 'buildpacks'"),
                );
                app.extra.push((k.to_value(), v.to_value()));
            }
            "stack" => app.stack = self.opt_string(&v, &key)?,
            "lifecycle" => {
                app.lifecycle = self.opt_string(&v, &key)?;
                if let Some(l) = &app.lifecycle
                    && !matches!(l.as_str(), "buildpack" | "cnb" | "docker")
                {
                    return Err(self.invalid(&v, &key, "must be one of buildpack, cnb, docker"));
                }
            }
            "docker" => app.docker = self.docker(v, &key)?,
            "env" => app.env = self.env(v, &key)?,
            "services" => app.services = self.services(v, &key)?,
            "processes" => app.processes = self.processes(v, &key)?,
            "metadata" => self.metadata(v, &key, app)?,
            "health-check-type" => {
                app.health_check_type = self.opt_health_check_type(&v, &key)?;
            }
            "health-check-http-endpoint" => {
                app.health_check_http_endpoint = self.opt_endpoint(&v, &key)?;
            }
            _ => self.app_other_key(app, norm, AppEntry { k, v, key, ctx })?,
        }
        Ok(())
    }

    /// Reads a key of an application that the model does not keep: checked ones are passed on
    /// in `extra`, keys the cf CLI no longer reads are warned about and dropped, unknown ones
    /// are warned about and passed on.
    fn app_other_key(
        &mut self,
        app: &mut AppManifest,
        norm: &str,
        entry: AppEntry<'_>,
    ) -> Result<(), Error> {
        let AppEntry { k, v, key, ctx } = entry;
        match norm {
            n if CHECKED_EXTRA_KEYS.contains(&n) => {
                self.check_extra(n, &v, &key)?;
                app.extra.push((k.to_value(), v.to_value()));
            }
            "sidecars" => {
                self.sidecars(&v, &key)?;
                app.extra.push((k.to_value(), v.to_value()));
            }
            "features" => {
                self.features(&v, &key)?;
                app.extra.push((k.to_value(), v.to_value()));
            }
            "cnb-credentials" => app.extra.push((k.to_value(), v.to_value())),
            n if LEGACY_ROUTE_KEYS.contains(&n) => {
                // cf CLI v7+ no longer reads these, and Cloud Controller ignores them.
                self.warn(
                    k.mark,
                    format!(
                        "{ctx}'{key}' is not supported by cf CLI v7+ and is ignored; use 'routes' (e.g. routes: [{{route: host.domain}}])"
                    ),
                );
            }
            "inherit" => self.warn(
                k.mark,
                format!("{ctx}'inherit' is not supported by cf CLI v7+ and is ignored"),
            ),
            "docker-image" => {
                self.warn(
                    k.mark,
                    format!("{ctx}'{key}' is not supported by cf CLI v7+ and is ignored; use 'docker: {{image: ...}}'"),
                );
            }
            _ => {
                self.warn(
                    k.mark,
                    format!("{ctx}unknown key '{key}' is passed to Cloud Controller as is (it ignores keys it does not know)"),
                );
                app.extra.push((k.to_value(), v.to_value()));
            }
        }
        Ok(())
    }

    /// The combinations of an application's keys that Cloud Controller or the cf CLI reject
    /// (errors), or that do not do what they seem to (warnings).
    fn check_app(
        &mut self,
        app: &AppManifest,
        found: &AppKeys,
        mark: Mark,
        ctx: &str,
    ) -> Result<(), Error> {
        let here = |m: Option<Mark>| m.unwrap_or(mark);
        if found.buildpack_legacy.is_some() && app.buildpacks.is_some() {
            return Err(Error::Invalid {
                location: self.loc(here(found.buildpack_legacy)),
                key: "buildpack".into(),
                message: "Buildpack and Buildpacks fields cannot be used together".into(),
            });
        }
        if app.docker.is_some()
            && (found.buildpack_legacy.is_some()
                || app.buildpacks.as_ref().is_some_and(|b| !b.is_empty()))
        {
            return Err(Error::Invalid {
                location: self.loc(mark),
                key: "docker".into(),
                message: format!("{ctx}cannot specify both buildpack(s) and docker keys"),
            });
        }
        if app.docker.is_some() && app.lifecycle.as_deref().is_some_and(|l| l != "docker") {
            return Err(Error::Invalid {
                location: self.loc(mark),
                key: "docker".into(),
                message: format!("{ctx}docker cannot be configured for a buildpack lifecycle app"),
            });
        }
        if app.random_route && app.default_route {
            return Err(Error::Invalid {
                location: self.loc(here(found.default_route)),
                key: "default-route".into(),
                message: "Random-route and default-route may not be used together".into(),
            });
        }
        if app.no_route && !app.routes.is_empty() {
            self.warn(
                here(found.routes),
                format!("{ctx}'routes' are ignored because 'no-route' is true (all route mappings are removed)"),
            );
        }
        if app.health_check_http_endpoint.is_some()
            && app
                .health_check_type
                .as_deref()
                .is_some_and(|t| t != "http")
        {
            self.warn(
                mark,
                format!("{ctx}'health-check-http-endpoint' only applies to health-check-type http"),
            );
        }
        if app.docker.is_some()
            && let Some((m, _)) = &found.path
        {
            self.warn(*m, format!("{ctx}'path' is ignored for a docker app"));
        }
        Ok(())
    }

    fn string(&self, v: &Node, key: &str) -> Result<String, Error> {
        match &v.kind {
            Kind::Str(s) => Ok(s.clone()),
            // yaml.v2 turns a number or boolean into its text when a string is expected.
            Kind::Int(_) | Kind::Float(_) | Kind::Bool(_) => Ok(v.describe()),
            other => Err(self.invalid(
                v,
                key,
                format!("expected a string, found {}", other.type_name()),
            )),
        }
    }

    fn opt_string(&self, v: &Node, key: &str) -> Result<Option<String>, Error> {
        if v.kind == Kind::Null {
            Ok(None)
        } else {
            self.string(v, key).map(Some)
        }
    }

    fn opt_bool(&self, v: &Node, key: &str) -> Result<Option<bool>, Error> {
        match &v.kind {
            Kind::Null => Ok(None),
            Kind::Bool(b) => Ok(Some(*b)),
            _ => Err(self.invalid(
                v,
                key,
                format!("expected true or false, found {}", v.shown(&v.describe())),
            )),
        }
    }

    fn opt_count(&self, v: &Node, key: &str) -> Result<Option<u32>, Error> {
        match &v.kind {
            Kind::Null => Ok(None),
            Kind::Int(i) if *i < 0 => {
                Err(self.invalid(v, key, "must be greater than or equal to 0"))
            }
            Kind::Int(i) => u32::try_from(*i).map(Some).map_err(|_| {
                let n = if v.var.is_some() {
                    v.shown("")
                } else {
                    i.to_string()
                };
                self.invalid(v, key, format!("{n} is too large"))
            }),
            Kind::Str(t) if t.trim().parse::<i64>().is_ok() => Err(self.invalid(
                v,
                key,
                format!(
                    "expected a whole number, found the string {} (remove the quotes)",
                    v.shown(t)
                ),
            )),
            _ => Err(self.invalid(
                v,
                key,
                format!("expected a whole number, found {}", v.shown(&v.describe())),
            )),
        }
    }

    fn opt_positive(&self, v: &Node, key: &str) -> Result<Option<u32>, Error> {
        let n = self.opt_count(v, key)?;
        if n == Some(0) {
            return Err(self.invalid(v, key, "must be greater than or equal to 1"));
        }
        Ok(n)
    }

    /// A size with a unit, as Cloud Controller accepts it (`256M`, `1G`, `512mb`).
    fn opt_size(&self, v: &Node, key: &str, what: &str) -> Result<Option<String>, Error> {
        if v.kind == Kind::Null {
            return Ok(None);
        }
        let text = self.string(v, key)?;
        if is_size(&text) {
            Ok(Some(text))
        } else {
            Err(self.invalid(
                v,
                key,
                format!(
                    "{what} must use a supported unit: B, K, KB, M, MB, G, GB, T, or TB (found {})",
                    v.shown(&text)
                ),
            ))
        }
    }

    fn opt_log_rate(&self, v: &Node, key: &str) -> Result<Option<String>, Error> {
        if v.kind == Kind::Null {
            return Ok(None);
        }
        let text = self.string(v, key)?;
        let t = text.trim();
        if t == "-1" || t == "0" || is_size(t) {
            Ok(Some(text))
        } else {
            Err(self.invalid(
                v,
                key,
                format!("Log rate limit must be -1 (unlimited) or use a supported unit: B, K, KB, M, MB, G, GB, T, or TB (found {})", v.shown(&text)),
            ))
        }
    }

    fn opt_health_check_type(&mut self, v: &Node, key: &str) -> Result<Option<String>, Error> {
        let t = self.opt_string(v, key)?;
        match t.as_deref() {
            None | Some("port" | "process" | "http") => Ok(t),
            Some("none") => {
                self.warn(
                    v.mark,
                    format!("'{key}: none' is deprecated; use 'process'"),
                );
                Ok(t)
            }
            Some(other) => Err(self.invalid(
                v,
                key,
                format!(
                    "must be one of port, process, http (found {})",
                    v.shown(other)
                ),
            )),
        }
    }

    /// Checks the value of one of [`CHECKED_EXTRA_KEYS`] (normalized `norm`): a health-check
    /// type, an endpoint, or else a positive number of seconds.
    fn check_extra(&mut self, norm: &str, v: &Node, key: &str) -> Result<(), Error> {
        match norm {
            "readiness-health-check-type" => {
                self.opt_health_check_type(v, key)?;
            }
            "readiness-health-check-http-endpoint" => {
                self.opt_endpoint(v, key)?;
            }
            _ => {
                self.opt_positive(v, key)?;
            }
        }
        Ok(())
    }

    fn opt_endpoint(&self, v: &Node, key: &str) -> Result<Option<String>, Error> {
        let e = self.opt_string(v, key)?;
        if let Some(p) = &e
            && !p.starts_with('/')
        {
            return Err(self.invalid(
                v,
                key,
                format!("must be a path starting with '/' (found {})", v.shown(p)),
            ));
        }
        Ok(e)
    }

    fn opt_string_list(&self, v: Node, key: &str) -> Result<Option<Vec<String>>, Error> {
        match v.kind {
            Kind::Null => Ok(None),
            Kind::Seq(items) => items
                .iter()
                .map(|i| self.string(i, key))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            other => Err(Error::Invalid {
                location: self.loc(v.mark),
                key: key.into(),
                message: format!("expected a list of strings, found {}", other.type_name()),
            }),
        }
    }

    fn map_entries(&self, v: Node, key: &str) -> Result<Vec<(Node, Node)>, Error> {
        match v.kind {
            Kind::Map(e) => Ok(e),
            Kind::Null => Ok(Vec::new()),
            other => Err(Error::Invalid {
                location: self.loc(v.mark),
                key: key.into(),
                message: format!("expected a mapping, found {}", other.type_name()),
            }),
        }
    }

    fn list_items(&self, v: Node, key: &str) -> Result<Vec<Node>, Error> {
        match v.kind {
            Kind::Seq(items) => Ok(items),
            Kind::Null => Ok(Vec::new()),
            other => Err(Error::Invalid {
                location: self.loc(v.mark),
                key: key.into(),
                message: format!("expected a list, found {}", other.type_name()),
            }),
        }
    }

    fn key_text(&self, k: &Node, key: &str) -> Result<String, Error> {
        k.to_value().scalar_text().ok_or_else(|| {
            self.invalid(
                k,
                key,
                format!("keys must be strings, found {}", k.type_name()),
            )
        })
    }

    fn routes(&self, v: Node, key: &str) -> Result<Vec<RouteSpec>, Error> {
        let mut out = Vec::new();
        for item in self.list_items(v, key)? {
            let item_mark = item.mark;
            let Kind::Map(entries) = item.kind else {
                return Err(Error::Invalid {
                    location: self.loc(item_mark),
                    key: key.into(),
                    message: format!(
                        "each route must be a mapping like '- route: host.example.com', found {}",
                        item.kind.type_name()
                    ),
                });
            };
            let mut spec = RouteSpec::new("");
            let mut has_route = false;
            for (k, v) in entries {
                let name = self.key_text(&k, key)?;
                match name.as_str() {
                    "route" => {
                        let r = self.string(&v, "route")?;
                        if let Err(why) = check_route(&r) {
                            // `why` quotes parts of the route: not for a value from a var.
                            let message = if v.var.is_some() {
                                format!(
                                    "invalid route in {}: expected host.domain[/path] or host.domain:port",
                                    v.shown(&r)
                                )
                            } else {
                                format!("invalid route '{r}': {why}")
                            };
                            return Err(self.invalid(&v, "route", message));
                        }
                        spec.route = r;
                        has_route = true;
                    }
                    "protocol" => {
                        spec.protocol = self.opt_string(&v, "protocol")?;
                        if let Some(p) = &spec.protocol
                            && !matches!(p.as_str(), "http1" | "http2" | "tcp")
                        {
                            return Err(self.invalid(
                                &v,
                                "protocol",
                                format!("must be http1, http2 or tcp (found {})", v.shown(p)),
                            ));
                        }
                    }
                    "options" => {
                        if !matches!(v.kind, Kind::Map(_) | Kind::Null) {
                            return Err(self.invalid(&v, "options", "expected a mapping"));
                        }
                        spec.options = Some(v.to_value());
                    }
                    _ => spec.extra.push((k.to_value(), v.to_value())),
                }
            }
            if !has_route {
                return Err(Error::Invalid {
                    location: self.loc(item_mark),
                    key: key.into(),
                    message: "each route needs a 'route' key".into(),
                });
            }
            out.push(spec);
        }
        Ok(out)
    }

    fn docker(&mut self, v: Node, key: &str) -> Result<Option<DockerSpec>, Error> {
        if v.kind == Kind::Null {
            return Ok(None);
        }
        let mark = v.mark;
        let mut image = None;
        let mut username = None;
        let mut unknown = Vec::new();
        for (k, v) in self.map_entries(v, key)? {
            match self.key_text(&k, key)?.as_str() {
                "image" => image = self.opt_string(&v, "docker.image")?,
                "username" => username = self.opt_string(&v, "docker.username")?,
                "password" => {
                    return Err(self.invalid(
                        &k,
                        "docker.password",
                        "a docker password does not belong in a manifest; set CF_DOCKER_PASSWORD",
                    ));
                }
                other => unknown.push((k.mark, other.to_string())),
            }
        }
        for (m, key) in unknown {
            self.warn(
                m,
                format!("unknown key 'docker.{key}' is ignored (docker takes image and username)"),
            );
        }
        match image {
            Some(image) if !image.is_empty() => Ok(Some(DockerSpec { image, username })),
            _ => Err(Error::Invalid {
                location: self.loc(mark),
                key: "docker.image".into(),
                message: "docker needs an 'image'".into(),
            }),
        }
    }

    fn env(&self, v: Node, key: &str) -> Result<BTreeMap<String, Value>, Error> {
        let mut out = BTreeMap::new();
        for (k, v) in self.map_entries(v, key)? {
            let name = self.key_text(&k, key)?;
            if name.starts_with("VCAP_") || name.starts_with("VMC_") {
                return Err(self.invalid(
                    &k,
                    &format!("env.{name}"),
                    "names starting with VCAP_ or VMC_ are reserved",
                ));
            }
            if name == "PORT" {
                return Err(self.invalid(
                    &k,
                    "env.PORT",
                    "PORT is set by Cloud Foundry and cannot be set",
                ));
            }
            out.insert(name, v.to_value());
        }
        Ok(out)
    }

    fn services(&self, v: Node, key: &str) -> Result<Vec<ServiceSpec>, Error> {
        let mut out = Vec::new();
        for item in self.list_items(v, key)? {
            let mark = item.mark;
            match item.kind {
                Kind::Map(entries) => {
                    let mut spec = ServiceSpec {
                        short: false,
                        ..ServiceSpec::new("")
                    };
                    for (k, v) in entries {
                        match self.key_text(&k, key)?.as_str() {
                            "name" => spec.name = self.string(&v, "services.name")?,
                            "binding_name" => {
                                spec.binding_name = self.opt_string(&v, "services.binding_name")?
                            }
                            "parameters" => {
                                if !matches!(v.kind, Kind::Map(_) | Kind::Null) {
                                    return Err(self.invalid(
                                        &v,
                                        "services.parameters",
                                        "expected a mapping",
                                    ));
                                }
                                spec.parameters = Some(v.to_value());
                            }
                            _ => spec.extra.push((k.to_value(), v.to_value())),
                        }
                    }
                    if spec.name.is_empty() {
                        return Err(Error::Invalid {
                            location: self.loc(mark),
                            key: key.into(),
                            message: "each service needs a 'name'".into(),
                        });
                    }
                    out.push(spec);
                }
                _ => {
                    let node = Node::new(item.kind, mark);
                    let name = self.string(&node, key)?;
                    out.push(ServiceSpec::new(name));
                }
            }
        }
        Ok(out)
    }

    fn processes(&mut self, v: Node, key: &str) -> Result<Vec<ProcessSpec>, Error> {
        let mut out: Vec<ProcessSpec> = Vec::new();
        for item in self.list_items(v, key)? {
            let mark = item.mark;
            let entries = self.map_entries(item, key)?;
            let mut p = ProcessSpec::new("");
            let mut seen: Vec<String> = Vec::new();
            for (k, v) in entries {
                let name = self.key_text(&k, key)?;
                let norm = normalize(&name);
                if seen.contains(&norm) {
                    return Err(self.invalid(&k, &name, "given twice (with '_' and '-')"));
                }
                seen.push(norm.clone());
                let full = format!("processes.{name}");
                match norm.as_str() {
                    "type" => p.kind = self.string(&v, &full)?,
                    "instances" => p.instances = self.opt_count(&v, &full)?,
                    "memory" => p.memory = self.opt_size(&v, &full, "Memory")?,
                    "disk-quota" => p.disk_quota = self.opt_size(&v, &full, "Disk quota")?,
                    "command" => {
                        if v.kind == Kind::Null {
                            p.extra.push((k.to_value(), Value::Null));
                        } else {
                            p.command = Some(self.string(&v, &full)?);
                        }
                    }
                    "health-check-type" => {
                        p.health_check_type = self.opt_health_check_type(&v, &full)?
                    }
                    "health-check-http-endpoint" => {
                        p.health_check_http_endpoint = self.opt_endpoint(&v, &full)?
                    }
                    n if CHECKED_EXTRA_KEYS.contains(&n) => {
                        self.check_extra(n, &v, &full)?;
                        p.extra.push((k.to_value(), v.to_value()));
                    }
                    "log-rate-limit-per-second" => {
                        self.opt_log_rate(&v, &full)?;
                        p.extra.push((k.to_value(), v.to_value()));
                    }
                    "user" => {
                        self.opt_string(&v, &full)?;
                        p.extra.push((k.to_value(), v.to_value()));
                    }
                    _ => {
                        self.warn(
                            k.mark,
                            format!(
                                "unknown process key '{name}' is passed to Cloud Controller as is"
                            ),
                        );
                        p.extra.push((k.to_value(), v.to_value()));
                    }
                }
            }
            if p.kind.is_empty() {
                return Err(Error::Invalid {
                    location: self.loc(mark),
                    key: "processes".into(),
                    message: "each process needs a 'type'".into(),
                });
            }
            if out.iter().any(|o| o.kind == p.kind) {
                return Err(Error::Invalid {
                    location: self.loc(mark),
                    key: "processes".into(),
                    message: format!("Process \"{}\" may only be present once", p.kind),
                });
            }
            out.push(p);
        }
        Ok(out)
    }

    fn metadata(&self, v: Node, key: &str, app: &mut AppManifest) -> Result<(), Error> {
        for (k, v) in self.map_entries(v, key)? {
            let name = self.key_text(&k, key)?;
            let target = match name.as_str() {
                "labels" => &mut app.labels,
                "annotations" => &mut app.annotations,
                _ => {
                    app.metadata_extra.push((k.to_value(), v.to_value()));
                    continue;
                }
            };
            let full = format!("metadata.{name}");
            for (lk, lv) in self.map_entries(v, &full)? {
                let label = self.key_text(&lk, &full)?;
                let value = match &lv.kind {
                    Kind::Null => None,
                    Kind::Seq(_) | Kind::Map(_) => {
                        return Err(self.invalid(
                            &lv,
                            &format!("{full}.{label}"),
                            "expected a string",
                        ));
                    }
                    _ => Some(lv.describe()),
                };
                target.insert(label, value);
            }
        }
        Ok(())
    }

    fn sidecars(&self, v: &Node, key: &str) -> Result<(), Error> {
        let Kind::Seq(items) = &v.kind else {
            if v.kind == Kind::Null {
                return Ok(());
            }
            return Err(self.invalid(v, key, format!("expected a list, found {}", v.type_name())));
        };
        for item in items {
            let Kind::Map(entries) = &item.kind else {
                return Err(self.invalid(item, key, "each sidecar must be a mapping"));
            };
            let get = |name: &str| {
                entries
                    .iter()
                    .find(|(k, _)| k.as_str() == Some(name))
                    .map(|(_, v)| v)
            };
            for required in ["name", "command", "process_types"] {
                if get(required).is_none() {
                    return Err(self.invalid(
                        item,
                        key,
                        format!("each sidecar needs '{required}'"),
                    ));
                }
            }
            if let Some(pt) = get("process_types")
                && !matches!(&pt.kind, Kind::Seq(items) if !items.is_empty())
            {
                return Err(self.invalid(
                    pt,
                    "sidecars.process_types",
                    "expected a non-empty list of process types",
                ));
            }
            if let Some(m) = get("memory")
                && !matches!(m.kind, Kind::Int(i) if i > 0)
            {
                self.opt_size(m, "sidecars.memory", "Memory")?;
            }
        }
        Ok(())
    }

    fn features(&self, v: &Node, key: &str) -> Result<(), Error> {
        match &v.kind {
            Kind::Null => Ok(()),
            Kind::Map(entries) => {
                for (k, val) in entries {
                    if !matches!(val.kind, Kind::Bool(_)) {
                        return Err(self.invalid(
                            val,
                            &format!("features.{}", k.describe()),
                            "expected true or false",
                        ));
                    }
                }
                Ok(())
            }
            other => Err(self.invalid(
                v,
                key,
                format!("expected a mapping, found {}", other.type_name()),
            )),
        }
    }
}

/// A size as Cloud Controller's byte converter accepts it: a number (decimals allowed, `1.5G`) and a
/// unit B, K, KB, M, MB, G, GB, T, TB (or KiB, MiB, GiB, TiB), any case, e.g. `256M`, `1G`, `512mb`.
pub(crate) fn is_size(text: &str) -> bool {
    let t = text.trim();
    let num_len = t
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .count();
    let (num, unit) = t.split_at(num_len);
    let num_ok = !num.is_empty()
        && num.split('.').count() <= 2
        && num
            .split('.')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()));
    let unit = unit.to_ascii_uppercase();
    num_ok
        && matches!(
            unit.as_str(),
            "B" | "K" | "KB" | "KIB" | "M" | "MB" | "MIB" | "G" | "GB" | "GIB" | "T" | "TB" | "TIB"
        )
}

/// A manifest size (`256M`, `1G`, `1.5GB`, `1024K`) in whole megabytes, as Cloud Controller
/// stores memory (bytes / 2^20, rounded down); `None` when it is not a size.
pub(crate) fn size_in_mb(text: &str) -> Option<u64> {
    if !is_size(text) {
        return None;
    }
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().ok()?;
    let shift = match unit.to_ascii_uppercase().as_str() {
        "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => 40,
    };
    let mb = num * 2f64.powi(shift - 20);
    // A size beyond u64 megabytes is no size a platform accepts.
    (mb.is_finite() && mb < 1e18).then(|| mb.floor() as u64)
}

/// Checks a manifest route string the way Cloud Controller's `ManifestRoute` would parse it.
pub(crate) fn check_route(route: &str) -> Result<(), String> {
    if route.is_empty() {
        return Err("route is empty".into());
    }
    if route.chars().any(char::is_whitespace) {
        return Err("routes cannot contain spaces".into());
    }
    let rest = match route.split_once("://") {
        Some((scheme, rest)) => {
            if !matches!(
                scheme.to_ascii_lowercase().as_str(),
                "http" | "https" | "tcp"
            ) {
                return Err(format!(
                    "scheme '{scheme}' is not supported (use http, https or tcp, or none)"
                ));
            }
            rest
        }
        None => route,
    };
    let host_end = rest.find([':', '/']).unwrap_or(rest.len());
    let host = &rest[..host_end];
    let tail = &rest[host_end..];
    if host.is_empty() {
        return Err("the host and domain part is empty".into());
    }
    for (i, label) in host.split('.').enumerate() {
        if label.is_empty() {
            return Err("the host and domain part has an empty label".into());
        }
        if label == "*" && i == 0 {
            continue;
        }
        if label.len() > 63 {
            return Err(format!("'{label}' is longer than 63 characters"));
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "'{label}' may only contain letters, digits, '-' and '_'"
            ));
        }
    }
    if let Some(port_and_path) = tail.strip_prefix(':') {
        let port_end = port_and_path.find('/').unwrap_or(port_and_path.len());
        let port = &port_and_path[..port_end];
        match port.parse::<u32>() {
            Ok(p) if (1..=65535).contains(&p) => {}
            _ => return Err(format!("port '{port}' is not a number from 1 to 65535")),
        }
        if port_end < port_and_path.len() {
            return Err("a route cannot have both a port and a path".into());
        }
    } else if tail.contains('?') || tail.contains('#') {
        return Err("a route path cannot contain '?' or '#'".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_need_a_unit() {
        for ok in ["256M", "1G", "512mb", "1.5G", "10K", "2T", "64B", "1GiB"] {
            assert!(is_size(ok), "{ok}");
        }
        for bad in ["1024", "1Q", "", "M", "1.G", ".5G", "1 GB", "-1G", "1.2.3M"] {
            assert!(!is_size(bad), "{bad}");
        }
    }

    #[test]
    fn sizes_convert_to_whole_megabytes() {
        for (text, mb) in [
            ("256M", Some(256)),
            ("1G", Some(1024)),
            ("1.5GB", Some(1536)),
            ("1024K", Some(1)),
            ("512mb", Some(512)),
            ("1T", Some(1_048_576)),
            ("100B", Some(0)),
            ("1024", None),
        ] {
            assert_eq!(size_in_mb(text), mb, "{text}");
        }
    }

    #[test]
    fn routes_are_checked() {
        for ok in [
            "myapp.example.com",
            "example.com/api",
            "myapp.example.com/api/v1",
            "tcp.example.com:1234",
            "*.example.com",
            "https://myapp.example.com",
            "myapp.apps.internal",
        ] {
            assert_eq!(check_route(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "my app.example.com",
            "ftp://x.example.com",
            "https://",
            "a..example.com",
            "x.example.com:99999",
            "x.example.com:80/path",
            "x.example.com/a?b",
            "under$core.example.com",
        ] {
            assert!(check_route(bad).is_err(), "{bad}");
        }
    }
}
