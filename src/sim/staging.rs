//! Staging: a build stays STAGING for the configured delay (plus any injected slowness), then
//! becomes STAGED with a droplet holding the package's files (`process_types` from a
//! `Procfile`, else `{"web": ""}`), or FAILED when a staging fault is set for the app or the
//! bits contain a `.sim-fail-staging` file (its text, if any, is the error). Staging writes a
//! few `STG` lines into the app's log-cache buffer, and the failure reason on failure.
//!
//! Depends on: `state`. Must not: hold the state lock across the delay.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use super::state::{Build, Droplet, Files, Package, State};

/// Parses a Procfile (`type: command` lines).
pub(crate) fn procfile_types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                return None;
            }
            let (k, v) = l.split_once(':')?;
            let k = k.trim();
            (!k.is_empty() && !k.contains(' ')).then(|| (k.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Runs one build to its end.
pub(crate) async fn stage(shared: Arc<Shared>, build_guid: String) {
    let Some(delay) = begin(&shared, &mut shared.lock(), &build_guid) else {
        return;
    };
    tokio::select! {
        () = shared.cancel.cancelled() => return,
        () = tokio::time::sleep(delay) => {}
    }
    let mut st = shared.lock();
    let Some(b) = st
        .builds
        .iter()
        .find(|b| b.meta.guid == build_guid)
        .cloned()
    else {
        return;
    };
    let pkg = st
        .packages
        .iter()
        .find(|p| p.meta.guid == b.package_guid)
        .cloned();
    let outcome = match (failure(&st, &b, pkg.as_ref()), pkg) {
        (Some(msg), _) => Err(msg),
        (None, None) => Err("StagingError - Staging error: package was deleted".to_string()),
        (None, Some(pkg)) => Ok(droplet(&mut st, &b, &pkg)),
    };
    end(&mut st, &b, outcome);
}

/// Logs the start of staging; returns how long it takes (`None` if the build is gone).
fn begin(shared: &Shared, st: &mut State, build_guid: &str) -> Option<Duration> {
    let app_guid = st
        .builds
        .iter()
        .find(|b| b.meta.guid == build_guid)?
        .app_guid
        .clone();
    for line in [
        "Downloading app package...".to_string(),
        format!("Staging app and tracing dependencies (build {build_guid})..."),
        "-----> Simulator buildpack: the droplet is the package's files".to_string(),
    ] {
        st.logs.log(&app_guid, "0", "STG", &line, "OUT");
    }
    let name = st
        .app(&app_guid)
        .map(|a| a.name.to_lowercase())
        .unwrap_or_default();
    Some(
        shared.config.staging_delay.saturating_add(
            st.faults
                .slow_staging
                .get(&name)
                .copied()
                .unwrap_or_default(),
        ),
    )
}

/// Why the build fails, if it does: a `FailStaging` fault for its app, or (a convention of
/// the simulator) a `.sim-fail-staging` file in the bits.
fn failure(st: &State, b: &Build, pkg: Option<&Package>) -> Option<String> {
    let app_name = st
        .app(&b.app_guid)
        .map(|a| a.name.to_lowercase())
        .unwrap_or_default();
    let failure = st.faults.staging.get(&app_name).cloned();
    failure.or_else(|| {
        pkg.and_then(|p| p.files.as_ref())
            .and_then(|f| f.get(".sim-fail-staging"))
            .map(|f| {
                let text = String::from_utf8_lossy(&f.data).trim().to_string();
                if text.is_empty() {
                    "StagingError - Staging error: staging failed".to_string()
                } else {
                    text
                }
            })
    })
}

/// Creates the build's droplet (the package's files); returns its GUID.
fn droplet(st: &mut State, b: &Build, pkg: &Package) -> String {
    let files: Arc<Files> = pkg.files.clone().unwrap_or_default();
    let mut types = files
        .get("Procfile")
        .map(|f| procfile_types(&String::from_utf8_lossy(&f.data)))
        .unwrap_or_default();
    types.entry("web".to_string()).or_default();
    let meta = st.meta();
    let guid = meta.guid.clone();
    st.droplets.push(Droplet {
        meta,
        app_guid: b.app_guid.clone(),
        package_guid: Some(pkg.meta.guid.clone()),
        state: "STAGED".to_string(),
        process_types: types,
        files,
        image: pkg.image.clone(),
        lifecycle: b.lifecycle.clone(),
        buildpacks: if b.buildpacks.is_empty() && b.lifecycle != "docker" {
            vec!["staticfile_buildpack".to_string()]
        } else {
            b.buildpacks.clone()
        },
        stack: b.stack.clone(),
    });
    guid
}

/// Logs the end of staging and records it on the build: STAGED with its droplet, or FAILED
/// with the error.
fn end(st: &mut State, b: &Build, outcome: Result<String, String>) {
    let lines: Vec<(String, &'static str)> = match &outcome {
        Ok(_) => vec![
            ("Exit status 0".to_string(), "OUT"),
            ("Uploading droplet...".to_string(), "OUT"),
            ("Uploaded droplet".to_string(), "OUT"),
        ],
        Err(msg) => vec![
            (format!("Staging failed: {msg}"), "ERR"),
            ("Exit status 223".to_string(), "ERR"),
        ],
    };
    for (line, stream) in lines {
        st.logs.log(&b.app_guid, "0", "STG", &line, stream);
    }
    if let Some(b) = st.builds.iter_mut().find(|x| x.meta.guid == b.meta.guid) {
        match outcome {
            Ok(droplet) => {
                b.state = "STAGED".to_string();
                b.droplet_guid = Some(droplet);
            }
            Err(msg) => {
                b.state = "FAILED".to_string();
                b.error = Some(msg);
            }
        }
        b.meta.touch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procfile_lines_become_process_types() {
        let t = procfile_types("web: python -m http.server $PORT\n# c\nworker: ./w --x=1:2\n");
        assert_eq!(t["web"], "python -m http.server $PORT");
        assert_eq!(t["worker"], "./w --x=1:2");
        assert_eq!(t.len(), 2);
    }
}
