//! Tasks: one-off processes of an app, run as Diego runs them. A task is `sh -c <command>` in
//! the extracted droplet, under the same guard and process record as an instance (see
//! `procs`), with what Cloud Foundry gives a task: the app's env vars, `VCAP_APPLICATION`,
//! `VCAP_SERVICES`, `MEMORY_LIMIT`, `CF_INSTANCE_GUID`, `HOME`, `TMPDIR`, `LANG` and a minimal
//! `PATH`, but no `PORT` (a task serves nothing). Its output goes to the app's log-cache
//! buffer as `APP/TASK/<name>`; its exit status decides `SUCCEEDED` (0) or `FAILED`
//! (`APP/TASK/<name>: Exited with status N`). A cancel sends SIGTERM, waits `kill_grace`, then
//! ends it (`FAILED`, `task was cancelled`). When the simulator stops, a task ends at once.
//!
//! The `FailTask` fault replaces the command of the app's tasks by one that writes a line to
//! stderr and exits with the given status; `HangTask` by one that never ends (until cancelled).
//!
//! Depends on: `state`, `instances` (droplet extraction, output lines, the environment),
//! `procs`. Must not: hold the state lock across an `.await`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Shared;
use super::instances::{INSTANCE_PATH, app_env, extract_droplet, pump_lines};
use super::procs::{Guarded, INSTANCE_GUID_VAR};
use super::state::{Files, State, Task, TaskState};

/// The failure reason of a cancelled task.
pub(crate) const CANCELLED: &str = "task was cancelled";

/// How long the output of an ended task may take to reach log-cache before the task's end is
/// published anyway.
const OUTPUT_BOUND: Duration = Duration::from_secs(2);

/// How long a process gets once told to end now before its guard is killed.
const END_NOW_BOUND: Duration = Duration::from_secs(5);

/// What the supervisor of one task needs.
pub(crate) struct Spec {
    pub guid: String,
    pub app_guid: String,
    pub name: String,
    pub command: String,
    pub droplet_guid: String,
    pub files: Arc<Files>,
    pub env: Vec<(String, String)>,
    pub cancel: CancellationToken,
}

/// The environment of a task of `app_guid` (`None` if the app is gone).
pub(crate) fn task_env(
    shared: &Shared,
    st: &State,
    app_guid: &str,
    guid: &str,
    memory_mb: u64,
) -> Option<Vec<(String, String)>> {
    let app = st.app(app_guid)?;
    let mut env = app_env(shared, st, app, 0);
    env.push(("MEMORY_LIMIT".to_string(), format!("{memory_mb}m")));
    // Also marks the whole process tree of the task (see `procs`).
    env.push((INSTANCE_GUID_VAR.to_string(), guid.to_string()));
    Some(env)
}

/// The command the app's tasks run under the `FailTask`/`HangTask` faults, if one applies.
pub(crate) fn injected_command(st: &State, app_name: &str) -> Option<String> {
    let name = app_name.to_lowercase();
    if let Some(status) = st.faults.fail_task.get(&name) {
        return Some(format!(
            "echo 'simulated task failure (FailTask fault)' >&2; exit {status}"
        ));
    }
    if st.faults.hang_task.contains(&name) {
        return Some("echo 'simulated hanging task (HangTask fault)'; exec sleep 86400".into());
    }
    None
}

fn set(shared: &Shared, guid: &str, f: impl FnOnce(&mut Task)) {
    let mut st = shared.lock();
    if let Some(t) = st.tasks.iter_mut().find(|t| t.meta.guid == guid) {
        f(t);
        t.meta.touch();
    }
}

fn end(shared: &Shared, guid: &str, reason: Option<String>) {
    set(shared, guid, |t| match reason {
        None => t.state = TaskState::Succeeded,
        Some(r) => {
            t.state = TaskState::Failed;
            t.failure_reason = Some(r);
        }
    });
}

/// Runs one task to its end and records the outcome.
pub(crate) async fn supervise(shared: Arc<Shared>, spec: Spec) {
    let reason = run(&shared, &spec).await;
    end(&shared, &spec.guid, reason);
}

/// `None`: exited 0; otherwise the failure reason.
async fn run(shared: &Arc<Shared>, spec: &Spec) -> Option<String> {
    if spec.cancel.is_cancelled() {
        return Some(CANCELLED.to_string());
    }
    let source = format!("APP/TASK/{}", spec.name);
    let dir = match extract_droplet(shared, &spec.droplet_guid, &spec.files).await {
        Ok(d) => d,
        Err(e) => return Some(format!("{source}: {e}")),
    };
    let tmp = shared.work_dir.path().join("tmp");
    if let Err(e) = std::fs::create_dir_all(&tmp) {
        return Some(format!("{source}: cannot create {}: {e}", tmp.display()));
    }
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(&spec.command)
        .current_dir(&dir)
        // What Cloud Foundry gives a task, and nothing of the simulator's own environment.
        .env_clear()
        .env("PATH", INSTANCE_PATH)
        .env("LANG", "en_US.UTF-8")
        .env("TMPDIR", &tmp)
        .env("HOME", &dir)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut process = match Guarded::spawn(&mut command, shared.work_dir.path(), &spec.guid) {
        Ok(p) => p,
        Err(e) => return Some(format!("{source}: cannot start the task: {e}")),
    };
    set(shared, &spec.guid, |t| {
        if t.state == TaskState::Pending {
            t.state = TaskState::Running;
        }
    });
    let mut pumps = Vec::new();
    if let Some(out) = process.take_stdout() {
        pumps.push(tokio::spawn(pump_lines(
            shared.clone(),
            spec.app_guid.clone(),
            "0".to_string(),
            source.clone(),
            out,
            "OUT",
        )));
    }
    if let Some(err) = process.take_stderr() {
        pumps.push(tokio::spawn(pump_lines(
            shared.clone(),
            spec.app_guid.clone(),
            "0".to_string(),
            source.clone(),
            err,
            "ERR",
        )));
    }
    let reason = tokio::select! {
        status = process.wait() => match status {
            Ok(s) if s.success() => None,
            Ok(s) => Some(format!("{source}: Exited with status {}", exit_code(s))),
            Err(e) => Some(format!("{source}: wait failed: {e}")),
        },
        () = spec.cancel.cancelled() => {
            process.terminate();
            let ended = tokio::select! {
                r = tokio::time::timeout(shared.config.kill_grace, process.wait()) => r.is_ok(),
                () = shared.hurry.cancelled() => false,
            };
            if !ended {
                end_now(&mut process).await;
            }
            Some(CANCELLED.to_string())
        }
        () = shared.cancel.cancelled() => {
            end_now(&mut process).await;
            Some(format!("{source}: the cell stopped"))
        }
    };
    // The last lines reach log-cache before the end is published (bounded).
    for p in pumps {
        if tokio::time::timeout(OUTPUT_BOUND, p).await.is_err() {
            tracing::debug!("the output of task {} did not close in time", spec.guid);
        }
    }
    reason
}

fn exit_code(s: std::process::ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = s.signal() {
            return 128 + sig;
        }
    }
    s.code().unwrap_or(-1)
}

async fn end_now(process: &mut Guarded) {
    process.end_now();
    if tokio::time::timeout(END_NOW_BOUND, process.wait())
        .await
        .is_err()
    {
        process.kill_guard();
        // Bounded: SIGKILL cannot be ignored.
        if let Err(e) = process.wait().await {
            tracing::debug!("wait for a task process failed: {e}");
        }
    }
}
