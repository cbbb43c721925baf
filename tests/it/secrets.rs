//! Secrets never leave the process: the standalone binary deploys to the simulator with a vars
//! file of planted secrets (interpolated into the manifest's env), `CF_TRACE` to a file or to
//! stdout, text or JSON output, and faults that force a failure, a rollback and a ROLLBACK
//! INCOMPLETE. Not one byte of stdout, stderr or the trace file may contain a secret or the
//! access token; the trace file is private (0600).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cf_zero_downtime::command::push::PushArgs;
use cf_zero_downtime::sim::{FailRule, FaultSpec};

use crate::support::sim_world::{AppVersion, World, fast, push_args, world};

/// The planted secrets: in the vars file, then in the app's environment.
const SECRETS: &[&str] = &[
    "Pa55-zq81-db-PLANTED",
    "key-7c1f-PLANTED",
    "tok3n-PLANTED-x9",
];

/// Writes version `version` of `web`, whose env holds the secrets through `((vars))`.
fn version(w: &World, version: &str) -> (PathBuf, PathBuf) {
    let web = AppVersion::new("web", 2).yaml(&format!(
        "  env:\n    DB_PASSWORD: ((db_password))\n    API_KEY: ((api_key))\n    \
         NOTE: ((note))\n    VERSION: {version}\n"
    ));
    let manifest = w.write_version(version, &[web]);
    let root = w.version_root(version);
    let vars = root.join("vars.yml");
    std::fs::write(
        &vars,
        format!(
            "db_password: {}\napi_key: {}\nnote: {}\n",
            SECRETS[0], SECRETS[1], SECRETS[2]
        ),
    )
    .unwrap();
    (manifest, vars)
}

/// `$CF_HOME/.cf/config.json` logged in to the simulator, as `cf login` leaves it.
fn cf_home(w: &World) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".cf");
    std::fs::create_dir_all(&dir).unwrap();
    let api = w.sim.api_url();
    let config = serde_json::json!({
        "ConfigVersion": 4,
        "Target": api,
        "APIVersion": "3.228.0",
        "AuthorizationEndpoint": api,
        "UaaEndpoint": api,
        "AccessToken": w.sim.token(),
        "RefreshToken": w.sim.refresh_token(),
        "SSLDisabled": false,
        "UAAOAuthClient": "cf",
        "UAAOAuthClientSecret": "",
        "OrganizationFields": {"GUID": w.sim.org_guid(), "Name": w.sim.org_name()},
        "SpaceFields": {"GUID": w.sim.space_guid(), "Name": w.sim.space_name()}
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    home
}

struct Run {
    stdout: String,
    stderr: String,
    trace: String,
    code: Option<i32>,
}

/// Runs `cf-zero-downtime push web ...` with `CF_TRACE` set to `trace` (a path, or `true`).
fn push(home: &Path, manifest: &Path, vars: &Path, trace: &str, extra: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_cf-zero-downtime"))
        .args(["push", "web", "-f"])
        .arg(manifest)
        .arg("--vars-file")
        .arg(vars)
        .args(["--drain", "300ms", "--timeout", "20s"])
        .args(extra)
        .env("CF_HOME", home)
        .env("CF_TRACE", trace)
        .current_dir(manifest.parent().unwrap())
        .output()
        .expect("run the binary");
    let trace_text = if trace == "true" {
        String::new()
    } else {
        std::fs::read_to_string(trace).unwrap_or_default()
    };
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        trace: trace_text,
        code: out.status.code(),
    }
}

fn assert_no_secret(run: &Run, token: &str, ctx: &str) {
    let token = token.trim_start_matches("bearer ");
    for (what, text) in [
        ("stdout", &run.stdout),
        ("stderr", &run.stderr),
        ("trace", &run.trace),
    ] {
        for s in SECRETS {
            assert!(!text.contains(s), "{ctx}: {what} leaks {s}:\n{text}");
        }
        assert!(!text.contains(token), "{ctx}: {what} leaks the token");
    }
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn fail_calls(w: &World, method: &str, path: &str, times: u32) {
    w.sim.faults().apply(FaultSpec::FailCalls(FailRule {
        method: method.into(),
        path: path.into(),
        nth: 1,
        times,
        status: 500,
        retry_after: None,
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_any_output_in_any_outcome() {
    let w = world(fast()).await;
    let (m1, v1_vars) = version(&w, "v1");
    w.push_deployed(PushArgs {
        vars_files: vec![v1_vars],
        ..push_args(&m1)
    })
    .await;
    let home = cf_home(&w);
    let token = w.sim.token();
    let trace_dir = tempfile::tempdir().unwrap();
    let trace = |n: &str| trace_dir.path().join(n).display().to_string();

    // Blue-green, deployed; text, then JSON, trace to a file and to stdout.
    let (m, vars) = version(&w, "v2");
    for (i, (output, trace_to)) in [("text", trace("ok.log")), ("json", "true".to_string())]
        .into_iter()
        .enumerate()
    {
        let run = push(home.path(), &m, &vars, &trace_to, &["--output", output]);
        let ctx = format!("deploy {i} ({output})");
        assert_eq!(run.code, Some(0), "{ctx}: {}{}", run.stdout, run.stderr);
        assert_no_secret(&run, &token, &ctx);
        if trace_to == "true" {
            assert!(
                run.stderr.contains("REQUEST:"),
                "{ctx}: the trace went to stderr"
            );
        } else {
            assert!(
                run.trace.contains("REQUEST:"),
                "{ctx}: the trace file is written"
            );
            #[cfg(unix)]
            assert_eq!(mode(Path::new(&trace_to)), 0o600, "{ctx}");
        }
    }

    // Blue-green, rolled back (staging fails), JSON output.
    w.sim.faults().fail_staging("web-candidate", None);
    let run = push(
        home.path(),
        &m,
        &vars,
        &trace("rollback.log"),
        &["--output", "json"],
    );
    assert_eq!(run.code, Some(1));
    assert!(run.stdout.contains("rolled_back"), "{}", run.stdout);
    assert_no_secret(&run, &token, "rollback");

    // Blue-green, ROLLBACK INCOMPLETE: the candidate cannot be deleted.
    fail_calls(&w, "DELETE", "/v3/apps/:guid", 50);
    let run = push(home.path(), &m, &vars, &trace("incomplete.log"), &[]);
    assert_eq!(run.code, Some(1));
    assert!(run.stdout.contains("ROLLBACK INCOMPLETE"), "{}", run.stdout);
    assert_no_secret(&run, &token, "rollback incomplete");
    w.sim.faults().clear();
    // Clean up the candidate the failed rollback left, for the rolling part.
    let (m_clean, vars_clean) = version(&w, "v3");
    let run = push(home.path(), &m_clean, &vars_clean, &trace("clean.log"), &[]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);

    // Rolling: the new instances crash, and restoring the environment fails: the manual
    // step names the variables, never their values.
    w.sim.faults().crash_and_stay_crashed("web");
    fail_calls(&w, "PATCH", "/v3/apps/:guid/environment_variables", 50);
    let (m4, vars4) = version(&w, "v4");
    let run = push(
        home.path(),
        &m4,
        &vars4,
        &trace("rolling.log"),
        &["--strategy", "rolling"],
    );
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("ROLLBACK INCOMPLETE"), "{}", run.stdout);
    assert!(
        run.stdout.contains("DB_PASSWORD"),
        "the names are shown: {}",
        run.stdout
    );
    assert_no_secret(&run, &token, "rolling rollback incomplete");
    w.sim.faults().clear();
    tokio::time::sleep(Duration::from_millis(100)).await;
    w.sim.shutdown().await;
}
