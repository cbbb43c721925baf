//! The `manifest` layer: reads a cf CLI v8 app manifest, interpolates `((vars))`, validates it with
//! `file:line:column` errors, resolves app paths, applies the push flags, and renders one app back to
//! YAML for Cloud Controller's `apply_manifest`.
//!
//! Flow of [`load`]: read → parse YAML (anchors, aliases and merge keys expanded, duplicate keys and tabs
//! rejected) → interpolate vars → typed model with validation → resolve `path` against the manifest's
//! folder (no `path`: the working directory). The supported keys are listed in `docs/manifest.md`.
//!
//! Bounded input: one budget of 64 MiB covers what a manifest expands to after alias expansion and
//! `((vars))` interpolation together (every node counts 64 bytes plus its text); going over it is a
//! syntax error at the alias or string concerned, never an out-of-memory abort. Each vars file has a
//! budget of its own. Duplicate keys are found with a hash set per mapping, in linear time.
//!
//! Depends on: saphyr-parser (YAML events with marks), thiserror. Must not: make API calls or print.

mod emit;
mod error;
mod interpolate;
mod model;
mod render;
mod value;
mod yaml;

use std::path::{Path, PathBuf};

pub use error::{Error, Location};
pub(crate) use model::size_in_mb;
pub use model::{AppBits, AppManifest, DockerSpec, ProcessSpec, RouteSpec, ServiceSpec};
pub use render::RenderOverrides;
pub use value::Value;

use interpolate::Vars;
use model::Reader;

/// Inputs of [`load`] besides the manifest: vars and the working directory. Its `Debug`
/// shows the names of the `--var`s, never their values.
#[derive(Clone, Default)]
pub struct LoadOptions {
    /// `--vars-file` paths, in order (later files win).
    pub vars_files: Vec<PathBuf>,
    /// `--var NAME=VALUE` pairs, in order (win over files; values are read as YAML).
    pub vars: Vec<(String, String)>,
    /// The working directory: base of `-p` and the bits of apps without `path`.
    pub cwd: PathBuf,
}

impl std::fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let LoadOptions {
            vars_files,
            vars,
            cwd,
        } = self;
        let names: Vec<(&str, &str)> = vars
            .iter()
            .map(|(name, _)| (name.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("LoadOptions")
            .field("vars_files", vars_files)
            .field("vars", &names)
            .field("cwd", cwd)
            .finish()
    }
}

/// Flags of `cf push` that change the manifest, applied by [`Manifest::apply_flags`] as the cf
/// CLI applies them: to the app's `web` process entry when the manifest has one, else to the
/// app's own keys. Values are as typed on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagOverrides {
    /// `-p`: the app's bits (relative to the working directory).
    pub path: Option<PathBuf>,
    /// `-o`/`--docker-image`.
    pub docker_image: Option<String>,
    pub docker_username: Option<String>,
    /// `-s`/`--stack`.
    pub stack: Option<String>,
    /// `-b`/`--buildpack`, in order; a single `null` or `default` means auto-detection.
    pub buildpacks: Vec<String>,
    /// `-c`/`--start-command`; `null` or `default` resets it to the detected command.
    pub start_command: Option<String>,
    /// `-i`/`--instances`.
    pub instances: Option<u32>,
    /// `-m`/`--memory`, with its unit.
    pub memory: Option<String>,
    /// `-k`/`--disk`, with its unit.
    pub disk: Option<String>,
    /// `-l`/`--log-rate-limit`: `-1`, `0` or a size.
    pub log_rate_limit: Option<String>,
    /// `-u`/`--health-check-type`: `port`, `process` or `http`.
    pub health_check_type: Option<String>,
    /// `--endpoint`: the http health check's path.
    pub health_check_endpoint: Option<String>,
    /// `-t`/`--app-start-timeout`, in seconds (the manifest's `timeout`).
    pub app_start_timeout: Option<u32>,
    pub no_route: bool,
    pub random_route: bool,
    /// `--lifecycle`: `buildpack`, `docker` or `cnb`.
    pub lifecycle: Option<String>,
}

impl FlagOverrides {
    fn any(&self) -> bool {
        self.path.is_some()
            || self.docker_image.is_some()
            || self.docker_username.is_some()
            || self.stack.is_some()
            || !self.buildpacks.is_empty()
            || self.start_command.is_some()
            || self.instances.is_some()
            || self.memory.is_some()
            || self.disk.is_some()
            || self.log_rate_limit.is_some()
            || self.health_check_type.is_some()
            || self.health_check_endpoint.is_some()
            || self.app_start_timeout.is_some()
            || self.no_route
            || self.random_route
            || self.lifecycle.is_some()
    }
}

/// Replaces kept key `key` (any `_`/`-` spelling) with `value`, or appends it.
fn set_extra(extra: &mut Vec<(Value, Value)>, key: &str, value: Value) {
    let norm = model::normalize(key);
    extra.retain(|(k, _)| k.as_str().map(model::normalize).as_deref() != Some(norm.as_str()));
    extra.push((Value::Str(key.to_string()), value));
}

/// Removes kept key `key` (any `_`/`-` spelling).
fn remove_extra(extra: &mut Vec<(Value, Value)>, key: &str) {
    let norm = model::normalize(key);
    extra.retain(|(k, _)| k.as_str().map(model::normalize).as_deref() != Some(norm.as_str()));
}

/// `flag` refused for `app` because of what its manifest sets.
fn mismatch(flag: &str, app: &str, what: &str) -> Error {
    Error::Usage(format!(
        "{flag} cannot be used with app '{app}' because its manifest sets {what}"
    ))
}

/// Checks a `-m`/`-k` value.
fn check_size(flag: &str, what: &str, value: &str) -> Result<(), Error> {
    if model::is_size(value) {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{flag} '{value}': {what} must use a supported unit: B, K, KB, M, MB, G, GB, T, or TB (e.g. 256M, 1G)"
        )))
    }
}

/// The keys the scale and health flags set: those of the app's `web` process entry when the
/// manifest has one, else the app's own.
struct ScaleKeys<'a> {
    instances: &'a mut Option<u32>,
    command: &'a mut Option<String>,
    health_check_type: &'a mut Option<String>,
    health_check_http_endpoint: &'a mut Option<String>,
    memory: &'a mut Option<String>,
    disk_quota: &'a mut Option<String>,
    /// The app's `log-rate-limit-per-second`; a process entry keeps it in `extra` (`None`).
    log_rate_limit: Option<&'a mut Option<String>>,
    extra: &'a mut Vec<(Value, Value)>,
}

impl<'a> ScaleKeys<'a> {
    /// The `web` process entry's keys, else the app's.
    fn of(target: &'a mut AppManifest) -> Self {
        if let Some(web) = target.processes.iter_mut().find(|p| p.kind == "web") {
            return ScaleKeys {
                instances: &mut web.instances,
                command: &mut web.command,
                health_check_type: &mut web.health_check_type,
                health_check_http_endpoint: &mut web.health_check_http_endpoint,
                memory: &mut web.memory,
                disk_quota: &mut web.disk_quota,
                log_rate_limit: None,
                extra: &mut web.extra,
            };
        }
        ScaleKeys {
            instances: &mut target.instances,
            command: &mut target.command,
            health_check_type: &mut target.health_check_type,
            health_check_http_endpoint: &mut target.health_check_http_endpoint,
            memory: &mut target.memory,
            disk_quota: &mut target.disk_quota,
            log_rate_limit: Some(&mut target.log_rate_limit_per_second),
            extra: &mut target.extra,
        }
    }
}

/// Checks the values of `-m`, `-k` and `-l`.
fn check_scale_flags(flags: &FlagOverrides) -> Result<(), Error> {
    if let Some(m) = &flags.memory {
        check_size("--memory, -m", "Memory", m)?;
    }
    if let Some(d) = &flags.disk {
        check_size("--disk, -k", "Disk quota", d)?;
    }
    if let Some(l) = &flags.log_rate_limit {
        let t = l.trim();
        if !(t == "-1" || t == "0" || model::is_size(t)) {
            return Err(Error::Usage(format!(
                "--log-rate-limit, -l '{l}': must be -1 (unlimited) or use a supported unit: B, K, KB, M, MB, G, GB, T, or TB (e.g. 4K)"
            )));
        }
    }
    Ok(())
}

/// Applies the flags that change the app's own keys or its `web` process entry.
fn apply_scale_and_health(target: &mut AppManifest, flags: &FlagOverrides) -> Result<(), Error> {
    check_scale_flags(flags)?;
    let name = target.name.clone();
    let keys = ScaleKeys::of(target);
    if let Some(n) = flags.instances {
        *keys.instances = Some(n);
    }
    if let Some(c) = &flags.start_command {
        remove_extra(keys.extra, "command");
        if c == "null" || c == "default" {
            *keys.command = None;
            keys.extra.push((Value::Str("command".into()), Value::Null));
        } else {
            *keys.command = Some(c.clone());
        }
    }
    if let Some(t) = &flags.health_check_type {
        *keys.health_check_type = Some(t.clone());
        if t != "http" {
            *keys.health_check_http_endpoint = None;
        }
    }
    if let Some(e) = &flags.health_check_endpoint {
        *keys.health_check_http_endpoint = Some(e.clone());
        if let Some(t) = keys.health_check_type.as_deref().filter(|t| *t != "http") {
            return Err(mismatch(
                "--endpoint",
                &name,
                &format!("health-check-type '{t}' (use -u http)"),
            ));
        }
    }
    if let Some(t) = flags.app_start_timeout {
        set_extra(keys.extra, "timeout", Value::Int(i128::from(t)));
    }
    if let Some(m) = &flags.memory {
        *keys.memory = Some(m.clone());
    }
    if let Some(d) = &flags.disk {
        *keys.disk_quota = Some(d.clone());
    }
    if let Some(l) = &flags.log_rate_limit {
        match keys.log_rate_limit {
            Some(field) => *field = Some(l.clone()),
            None => set_extra(
                keys.extra,
                "log-rate-limit-per-second",
                Value::Str(l.clone()),
            ),
        }
    }
    Ok(())
}

/// A loaded manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The manifest file (None when pushing without one).
    pub file: Option<PathBuf>,
    /// The applications, in manifest order.
    pub applications: Vec<AppManifest>,
    /// Warnings to show the user (deprecated or unknown keys), each with its `file:line:column`.
    pub warnings: Vec<String>,
    cwd: PathBuf,
}

/// Reads, interpolates, parses and validates `manifest_file`, resolving paths relative to its folder.
///
/// # Errors
/// Unreadable files, invalid YAML, missing vars, invalid keys or values; see [`Error`].
/// `manifest_file` may also be a directory: its `manifest.yml` (or `manifest.yaml`) is read, as `cf push -f
/// DIR` does.
pub fn load(manifest_file: &Path, opts: &LoadOptions) -> Result<Manifest, Error> {
    let file = if manifest_file.is_dir() {
        locate(manifest_file).ok_or_else(|| Error::Read {
            what: "manifest",
            path: manifest_file.join("manifest.yml"),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no manifest.yml or manifest.yaml in this directory",
            ),
        })?
    } else {
        manifest_file.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|source| Error::Read {
        what: "manifest",
        path: file.clone(),
        source,
    })?;
    parse_str(&text, &file, opts)
}

/// The manifest `cf push` would use in `dir`: `manifest.yml`, else `manifest.yaml`, else none.
pub fn locate(dir: &Path) -> Option<PathBuf> {
    ["manifest.yml", "manifest.yaml"]
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

/// As [`load`] for manifest text; `origin` names the file in messages and is the base of relative
/// `path`s (through its folder).
///
/// # Errors
/// As [`load`], without the read of the manifest itself.
pub fn parse_str(text: &str, origin: &Path, opts: &LoadOptions) -> Result<Manifest, Error> {
    let vars = Vars::load(&opts.vars_files, &opts.vars)?;
    parse_with_vars(text, origin, &vars, &opts.cwd)
}

fn parse_with_vars(text: &str, origin: &Path, vars: &Vars, cwd: &Path) -> Result<Manifest, Error> {
    // One budget for the parse and the interpolation: what the whole document expands to.
    let mut budget = yaml::Budget::default();
    let root = yaml::parse_with(text, &mut budget).map_err(|e| Error::Syntax {
        location: Location {
            file: origin.to_path_buf(),
            line: e.mark.line,
            col: e.mark.col,
        },
        message: e.message,
        key: e.key,
    })?;
    let root = match root {
        Some(node) => Some(interpolate::interpolate_with(
            node,
            vars,
            origin,
            &mut budget,
        )?),
        None => None,
    };
    let mut reader = Reader::new(origin);
    let parsed = reader.document(root)?;
    let multi = parsed.applications.len() > 1;
    let cwd = &absolute_dir(cwd);
    let base = manifest_dir(origin, cwd);
    let mut applications: Vec<AppManifest> = Vec::with_capacity(parsed.applications.len());
    for parsed_app in parsed.applications {
        let model::ParsedApp {
            mut app,
            mark,
            path,
        } = parsed_app;
        let here = Location {
            file: origin.to_path_buf(),
            line: mark.line,
            col: mark.col,
        };
        if app.name.is_empty() && multi {
            return Err(Error::NoName { location: here });
        }
        if !app.name.is_empty()
            && applications
                .iter()
                .any(|a| a.name.eq_ignore_ascii_case(&app.name))
        {
            return Err(Error::DuplicateApp {
                location: here,
                name: app.name.clone(),
            });
        }
        if app.docker.is_none() {
            match path {
                Some((pmark, text)) => {
                    let joined = normalize_lexically(&base.join(&text));
                    match resolve_bits(&joined) {
                        Some(bits) => app.bits = Some(bits),
                        None => {
                            app.missing_path = Some((
                                Location {
                                    file: origin.to_path_buf(),
                                    line: pmark.line,
                                    col: pmark.col,
                                },
                                joined,
                            ));
                        }
                    }
                }
                None => app.bits = Some(AppBits::Directory(cwd.to_path_buf())),
            }
        }
        applications.push(app);
    }
    Ok(Manifest {
        file: Some(origin.to_path_buf()),
        applications,
        warnings: reader.warnings,
        cwd: cwd.to_path_buf(),
    })
}

/// The folder of the manifest, absolute and symlink-resolved. A relative `origin` that does not
/// exist from the process's directory (text given to [`parse_str`]) is taken relative to `cwd`.
fn manifest_dir(origin: &Path, cwd: &Path) -> PathBuf {
    let resolved = std::fs::canonicalize(origin).unwrap_or_else(|_| {
        if origin.is_absolute() {
            origin.to_path_buf()
        } else {
            cwd.join(origin)
        }
    });
    resolved
        .parent()
        .map_or_else(|| cwd.to_path_buf(), Path::to_path_buf)
}

/// Drops `.` and resolves `..` without touching the file system (for messages about missing paths;
/// existing paths are canonicalized instead).
fn normalize_lexically(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A directory is walked; anything else is an archive. None when the path does not exist.
fn resolve_bits(path: &Path) -> Option<AppBits> {
    let real = std::fs::canonicalize(path).ok()?;
    if real.is_dir() {
        Some(AppBits::Directory(real))
    } else {
        Some(AppBits::Archive(real))
    }
}

/// The manifest of `cf push APP` without a manifest file: one app, bits = the working directory.
pub fn without_file(app_name: &str, opts: &LoadOptions) -> Manifest {
    let cwd = absolute_dir(&opts.cwd);
    let mut app = AppManifest::named(app_name);
    app.bits = Some(AppBits::Directory(cwd.clone()));
    Manifest {
        file: None,
        applications: vec![app],
        warnings: Vec::new(),
        cwd,
    }
}

/// The working directory as an absolute, symlink-resolved path (as given when it cannot be resolved).
fn absolute_dir(cwd: &Path) -> PathBuf {
    std::fs::canonicalize(cwd).unwrap_or_else(|_| cwd.to_path_buf())
}

impl Manifest {
    fn file_name(&self) -> PathBuf {
        self.file
            .clone()
            .unwrap_or_else(|| PathBuf::from("<no manifest>"))
    }

    fn not_found(&self, name: &str) -> Error {
        Error::AppNotFound {
            name: name.to_string(),
            file: self.file_name(),
            available: self.applications.iter().map(|a| a.name.clone()).collect(),
        }
    }

    /// The app named `app`, or every app when `None`.
    ///
    /// # Errors
    /// The named app is not in the manifest (the message lists the manifest's apps); an app has no
    /// name; a selected app's `path` does not exist.
    pub fn select(&self, app: Option<&str>) -> Result<Vec<&AppManifest>, Error> {
        let selected: Vec<&AppManifest> = match app {
            Some(name) => {
                let found = self
                    .applications
                    .iter()
                    .find(|a| a.name == name)
                    .ok_or_else(|| self.not_found(name))?;
                vec![found]
            }
            None => self.applications.iter().collect(),
        };
        for a in &selected {
            if a.name.is_empty() {
                return Err(Error::NameRequired);
            }
            if let Some((location, path)) = &a.missing_path {
                return Err(Error::PathNotFound {
                    location: Some(location.clone()),
                    path: path.clone(),
                });
            }
        }
        Ok(selected)
    }

    /// Applies command-line flags as the cf CLI does: with a single-app manifest, `app` renames the app
    /// (or names it); with several apps, `app` picks the one the flags apply to, and flags without an
    /// app name are an error. `-p` replaces the app's path (relative to the working directory), `-o`
    /// makes it a docker app, `-b` replaces `buildpacks` (`null`/`default`: auto-detect), and
    /// `-i`, `-m`, `-k`, `-l`, `-c`, `-u`, `--endpoint`, `-t` set the `web` process entry's keys
    /// when the manifest has one, else the app's. `--no-route` and `--random-route` set the app's
    /// route keys (the manifest's `no-route: true` still wins over `--random-route`).
    ///
    /// # Errors
    /// Flags with several apps and no name; the named app missing; `-o` with `-p`, with `path` or
    /// buildpacks in the manifest; `-p`, `-b` or `--lifecycle buildpack|cnb` with a docker app;
    /// `--docker-username` without an image; `--endpoint` with a non-http health check type in
    /// the manifest; a size without a unit; a `-p` path that does not exist.
    pub fn apply_flags(&mut self, app: Option<&str>, flags: &FlagOverrides) -> Result<(), Error> {
        let Some(index) = self.flag_target(app, flags)? else {
            return Ok(());
        };
        if !flags.any() {
            return Ok(());
        }
        let cwd = self.cwd.clone();
        let Some(target) = self.applications.get_mut(index) else {
            return Ok(());
        };
        check_bits_flags(target, flags, &cwd)?;
        apply_bits_flags(target, flags, &cwd)?;
        if let Some(stack) = &flags.stack {
            target.stack = Some(stack.clone());
        }
        apply_scale_and_health(target, flags)?;
        if flags.no_route {
            target.no_route = true;
        }
        if flags.random_route {
            target.random_route = true;
        }
        apply_build_flags(target, flags)
    }

    /// The index of the app the flags apply to (`app` names it; a single app is renamed to
    /// it); `None` when there are several apps and no name, which is an error with flags.
    fn flag_target(
        &mut self,
        app: Option<&str>,
        flags: &FlagOverrides,
    ) -> Result<Option<usize>, Error> {
        match app {
            Some(name) if self.applications.len() == 1 => {
                let only = &mut self.applications[0];
                if only.name != name {
                    only.name = name.to_string();
                }
                Ok(Some(0))
            }
            Some(name) => self
                .applications
                .iter()
                .position(|a| a.name == name)
                .map(Some)
                .ok_or_else(|| self.not_found(name)),
            None if self.applications.len() > 1 => {
                if flags.any() {
                    return Err(Error::Usage(
                        "command line flags (except -f and --no-start) cannot be applied when pushing multiple apps from a manifest file"
                            .into(),
                    ));
                }
                Ok(None)
            }
            None => Ok(Some(0)),
        }
    }
}

/// Refuses the bits flags (`-o`, `--docker-username`, `-p`) that conflict with each other or
/// with what the app's manifest sets.
fn check_bits_flags(target: &AppManifest, flags: &FlagOverrides, cwd: &Path) -> Result<(), Error> {
    if flags.docker_image.is_some() {
        if flags.path.is_some() {
            return Err(Error::Usage(
                "the following arguments cannot be used together: --docker-image, -o, --path, -p"
                    .into(),
            ));
        }
        let has_buildpacks = target.buildpacks.as_ref().is_some_and(|b| !b.is_empty())
            || target.extra("buildpack").is_some();
        if has_buildpacks {
            return Err(Error::Usage(format!(
                "--docker-image, -o cannot be used with app '{}' because its manifest sets buildpack(s)",
                target.name
            )));
        }
        let manifest_path =
            target.missing_path.is_some() || matches!(&target.bits, Some(b) if b.path() != cwd);
        if manifest_path && target.docker.is_none() {
            return Err(Error::Usage(format!(
                "--docker-image, -o cannot be used with app '{}' because its manifest sets a path",
                target.name
            )));
        }
    }
    if flags.path.is_some() && target.docker.is_some() {
        return Err(Error::Usage(format!(
            "--path, -p cannot be used with app '{}' because its manifest sets a docker image",
            target.name
        )));
    }
    if flags.docker_username.is_some() && flags.docker_image.is_none() && target.docker.is_none() {
        return Err(Error::Usage(
            "'--docker-image, -o' and '--docker-username' must be used together".into(),
        ));
    }
    Ok(())
}

/// Applies `-o`/`--docker-username` (the app becomes a docker app) and `-p` (its bits, relative
/// to `cwd`).
fn apply_bits_flags(
    target: &mut AppManifest,
    flags: &FlagOverrides,
    cwd: &Path,
) -> Result<(), Error> {
    if let Some(image) = &flags.docker_image {
        let username = flags
            .docker_username
            .clone()
            .or_else(|| target.docker.as_ref().and_then(|d| d.username.clone()));
        target.docker = Some(DockerSpec {
            image: image.clone(),
            username,
        });
        target.bits = None;
        target.missing_path = None;
    } else if let (Some(user), Some(docker)) = (&flags.docker_username, target.docker.as_mut()) {
        docker.username = Some(user.clone());
    }
    if let Some(p) = &flags.path {
        let joined = normalize_lexically(&cwd.join(p));
        let bits = resolve_bits(&joined).ok_or_else(|| Error::PathNotFound {
            location: None,
            path: joined.clone(),
        })?;
        target.bits = Some(bits);
        target.missing_path = None;
    }
    Ok(())
}

/// Applies `--lifecycle` and `-b` (refused for a docker app; `null`/`default` alone: auto-detect).
fn apply_build_flags(target: &mut AppManifest, flags: &FlagOverrides) -> Result<(), Error> {
    if let Some(l) = &flags.lifecycle {
        if target.docker.is_some() && l != "docker" {
            return Err(mismatch(
                &format!("--lifecycle {l}"),
                &target.name,
                "a docker image",
            ));
        }
        target.lifecycle = Some(l.clone());
    }
    if !flags.buildpacks.is_empty() {
        if target.docker.is_some() {
            return Err(mismatch("--buildpack, -b", &target.name, "a docker image"));
        }
        let auto =
            matches!(flags.buildpacks.as_slice(), [one] if one == "null" || one == "default");
        target.buildpacks = Some(if auto {
            Vec::new()
        } else {
            flags.buildpacks.clone()
        });
        remove_extra(&mut target.extra, "buildpack");
    }
    Ok(())
}
