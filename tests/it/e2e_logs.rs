//! End-to-end: what the platform says, shown by a deploy against the in-process simulator's
//! log-cache: the staging output streamed while a build stages (events, text, JSON), the failed
//! app's last lines shown before the rollback deletes it (blue-green and rolling), and a
//! forbidden log-cache said once without failing the deploy.

use std::path::PathBuf;
use std::time::Duration;

use cf_zero_downtime::command::push::PushArgs;
use cf_zero_downtime::deploy::Strategy;
use cf_zero_downtime::deploy::event::LogLine;
use cf_zero_downtime::deploy::{Event, Outcome, Reporter};
use cf_zero_downtime::sim::{OptionalApi, SimConfig, Unavailable};
use cf_zero_downtime::ui::{JsonReporter, TextReporter};

use crate::support::sim_world::{AppVersion, World, fast, push_args, world};

/// A simulator whose builds stage for a while, so that the stream sees several polls.
fn slow_staging() -> SimConfig {
    SimConfig {
        staging_delay: Duration::from_millis(1500),
        ..fast()
    }
}

/// Writes version `version` of app `web` (one instance, the files `extra` added with their
/// text) and returns its manifest.
fn version(w: &World, version: &str, extra: &[(&str, &str)]) -> PathBuf {
    let web = extra
        .iter()
        .fold(AppVersion::new("web", 1), |web, (file, text)| {
            web.file(file, text)
        });
    w.write_version(version, &[web])
}

fn args(manifest: &std::path::Path, strategy: Strategy) -> PushArgs {
    PushArgs {
        strategy,
        ..push_args(manifest)
    }
}

/// The streamed staging lines, in order.
fn streamed(events: &[Event]) -> Vec<&LogLine> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Log { line, .. } => Some(line),
            _ => None,
        })
        .collect()
}

/// The one `LastLogs` event: its position, platform app name and lines.
fn last_logs(events: &[Event]) -> (usize, &str, &[LogLine]) {
    let found: Vec<(usize, &str, &[LogLine])> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Event::LastLogs { name, lines, .. } => Some((i, name.as_str(), lines.as_slice())),
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1, "{events:#?}");
    found[0]
}

/// The position of the first undo whose description contains `what`.
fn undo_at(events: &[Event], what: &str) -> usize {
    events
        .iter()
        .position(|e| matches!(e, Event::UndoStarted { description } if description.contains(what)))
        .unwrap_or_else(|| panic!("no undo {what}: {events:#?}"))
}

fn render_text(events: &[Event]) -> String {
    let mut r = TextReporter::plain(Vec::new());
    for e in events {
        r.report(e.clone());
    }
    String::from_utf8(r.into_inner()).unwrap()
}

fn render_json(events: &[Event]) -> String {
    let mut r = JsonReporter::new(Vec::new());
    for e in events {
        r.report(e.clone());
    }
    String::from_utf8(r.into_inner()).unwrap()
}

fn warnings<'e>(events: &'e [Event], containing: &str) -> Vec<&'e str> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Warning { message, .. } if message.contains(containing) => {
                Some(message.as_str())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_lines_are_streamed_once_each_as_events_text_and_json() {
    let w = world(slow_staging()).await;
    let m = version(&w, "v1", &[]);
    let (outcome, events) = w.push(args(&m, Strategy::BlueGreen)).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let lines = streamed(&events);
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts.len(), 6, "every staging line once: {texts:#?}");
    assert_eq!(texts[0], "Downloading app package...");
    assert!(texts[1].starts_with("Staging app and tracing dependencies (build "));
    assert_eq!(
        texts[2..],
        [
            "-----> Simulator buildpack: the droplet is the package's files",
            "Exit status 0",
            "Uploading droplet...",
            "Uploaded droplet"
        ]
    );
    assert!(lines.iter().all(|l| l.source == "STG/0" && !l.stderr));
    // Streamed while it stages: the first lines come before the build is done, between
    // the staging step's waits.
    let stage_started = events
        .iter()
        .position(|e| matches!(e, Event::StepStarted { kind, .. } if kind == "stage"))
        .unwrap();
    let stage_finished = events
        .iter()
        .position(|e| matches!(e, Event::StepFinished { kind, .. } if kind == "stage"))
        .unwrap();
    let first_line = events
        .iter()
        .position(|e| matches!(e, Event::Log { .. }))
        .unwrap();
    let last_line = events
        .iter()
        .rposition(|e| matches!(e, Event::Log { .. }))
        .unwrap();
    assert!(stage_started < first_line && last_line < stage_finished);
    assert!(
        events[first_line..last_line]
            .iter()
            .any(|e| matches!(e, Event::Waiting { what, .. } if what == "staging")),
        "lines before and after a staging poll: {events:#?}"
    );
    let text = render_text(&events);
    assert!(
        text.contains("   [STG/0] Downloading app package...\n"),
        "{text}"
    );
    assert!(text.contains("   [STG/0] Uploaded droplet\n"), "{text}");
    let json = render_json(&events);
    assert!(
        json.lines().any(|l| l
            == r#"{"event":"log","app":"web","source":"STG/0","stderr":false,"text":"Uploaded droplet"}"#),
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staging_failure_shows_the_last_lines_before_the_candidate_is_deleted() {
    let w = world(fast()).await;
    let m = version(&w, "v1", &[]);
    w.push_deployed(args(&m, Strategy::BlueGreen)).await;
    w.sim.faults().fail_staging(
        "web-candidate",
        Some("StagingError - Staging error: no buildpack detected the app"),
    );
    let m = version(&w, "v2", &[]);
    let (outcome, events) = w.push(args(&m, Strategy::BlueGreen)).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    assert!(error.hint.is_none(), "the lines were shown: {error}");
    let (at, name, lines) = last_logs(&events);
    assert_eq!(name, "web-candidate");
    let failed = LogLine {
        source: "STG/0".into(),
        stderr: true,
        text: "Staging failed: StagingError - Staging error: no buildpack detected the app".into(),
    };
    assert!(lines.contains(&failed), "{lines:#?}");
    assert_eq!(
        lines.first().map(|l| l.text.as_str()),
        Some("Downloading app package...")
    );
    // Also streamed while staging, and shown before the rollback deletes the candidate.
    assert!(streamed(&events).contains(&&failed), "{events:#?}");
    let step_failed = events
        .iter()
        .position(|e| matches!(e, Event::StepFailed { kind, .. } if kind == "stage"))
        .unwrap();
    let rollback = events
        .iter()
        .position(|e| matches!(e, Event::RollbackStarted { .. }))
        .unwrap();
    assert!(step_failed < at && at < rollback, "{events:#?}");
    assert!(at < undo_at(&events, "web-candidate"));
    let text = render_text(&events);
    assert!(
        text.contains("Last log lines of web-candidate:\n   [STG/0] Downloading app package...\n"),
        "{text}"
    );
    assert!(
        text.contains("   [STG/0] ERR Staging failed: StagingError - Staging error: no buildpack detected the app\n   [STG/0] ERR Exit status 223\n"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_on_start_shows_the_cell_api_and_app_stderr_lines() {
    let w = world(fast()).await;
    let m = version(&w, "v1", &[(".sim-crash", "x")]);
    // A first deploy: the app under its own name is deleted by the rollback.
    let (outcome, events) = w.push(args(&m, Strategy::BlueGreen)).await;
    assert!(
        matches!(outcome, Outcome::RolledBack { .. }),
        "{outcome:?} {events:#?}"
    );
    let (at, name, lines) = last_logs(&events);
    assert_eq!(name, "web");
    assert!(at < undo_at(&events, "delete app web"), "{events:#?}");
    let has = |source: &str, stderr: bool, text: &str| {
        lines
            .iter()
            .any(|l| l.source == source && l.stderr == stderr && l.text.starts_with(text))
    };
    assert!(has("CELL/0", false, "Cell "), "{lines:#?}");
    assert!(has("CELL/0", false, "Exit status 1"), "{lines:#?}");
    assert!(
        has("APP/PROC/WEB/0", true, "Error: the app crashed on start"),
        "{lines:#?}"
    );
    assert!(
        has("API/0", false, "App instance exited with guid "),
        "{lines:#?}"
    );
    // Router lines and the app's stdout are left out.
    assert!(
        lines
            .iter()
            .all(|l| !l.source.starts_with("RTR") && (l.stderr || !l.source.starts_with("APP"))),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_healthy_instances_show_the_health_check_timeout() {
    let w = world(fast()).await;
    let m = version(&w, "v1", &[]);
    w.push_deployed(args(&m, Strategy::BlueGreen)).await;
    w.sim
        .faults()
        .never_healthy("web-candidate", Duration::from_millis(150));
    let m = version(&w, "v2", &[]);
    let mut a = args(&m, Strategy::BlueGreen);
    a.common.timeout = Duration::from_secs(2);
    let (outcome, events) = w.push(a).await;
    assert!(
        matches!(outcome, Outcome::RolledBack { .. }),
        "{outcome:?} {events:#?}"
    );
    let (_, name, lines) = last_logs(&events);
    assert_eq!(name, "web-candidate");
    assert!(
        lines.iter().any(|l| l.source == "CELL/0"
            && l.stderr
            && l.text == "Timed out after 150ms: health check never passed."),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_log_cache_is_said_once_and_the_deploy_goes_on() {
    let w = world(fast()).await;
    w.sim
        .faults()
        .optional_api(OptionalApi::LogCache, Unavailable::Forbidden);
    let m = version(&w, "v1", &[]);
    let (outcome, events) = w.push(args(&m, Strategy::BlueGreen)).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let said = warnings(&events, "log-cache is not available");
    assert_eq!(said.len(), 1, "{events:#?}");
    assert!(said[0].contains("403"), "{said:?}");
    assert!(said[0].ends_with("staging logs and the last log lines of a failed app are not shown"));
    assert!(streamed(&events).is_empty());
    // A failure then keeps the hint where to find the log next time.
    let m = version(&w, "v2", &[(".sim-fail-staging", "")]);
    let (outcome, events) = w.push(args(&m, Strategy::BlueGreen)).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    assert!(
        error
            .hint
            .as_deref()
            .is_some_and(|h| h.starts_with("TIP: ")),
        "{error}"
    );
    assert_eq!(warnings(&events, "log-cache is not available").len(), 1);
    assert!(!events.iter().any(|e| matches!(e, Event::LastLogs { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_streams_staging_and_shows_the_new_instances_last_lines() {
    let w = world(fast()).await;
    let m = version(&w, "v1", &[]);
    w.push_deployed(args(&m, Strategy::Rolling)).await;
    let m = version(&w, "v2", &[]);
    let (outcome, events) = w.push(args(&m, Strategy::Rolling)).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let texts: Vec<&str> = streamed(&events).iter().map(|l| l.text.as_str()).collect();
    // Only this build's lines, not those of v1's staging of the same app.
    assert_eq!(texts.len(), 6, "{texts:#?}");
    assert_eq!(texts.last(), Some(&"Uploaded droplet"));

    let m = version(&w, "v3", &[(".sim-crash", "x")]);
    let (outcome, events) = w.push(args(&m, Strategy::Rolling)).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    assert!(error.hint.is_none(), "{error}");
    let (at, name, lines) = last_logs(&events);
    assert_eq!(name, "web");
    assert!(at < undo_at(&events, "cancel"), "{events:#?}");
    assert!(
        lines.iter().any(|l| l.source == "APP/PROC/WEB/0"
            && l.stderr
            && l.text.starts_with("Error: the app crashed on start")),
        "{lines:#?}"
    );
    // None of the earlier runs' staging lines (v1, v2): at most this run's one build.
    let builds = lines
        .iter()
        .filter(|l| l.text.starts_with("Staging app and tracing dependencies"))
        .count();
    assert!(builds <= 1, "{lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_staging_failure_shows_the_failing_line() {
    let w = world(fast()).await;
    let m = version(&w, "v1", &[]);
    w.push_deployed(args(&m, Strategy::Rolling)).await;
    let m = version(
        &w,
        "v2",
        &[(".sim-fail-staging", "buildpack compile failed")],
    );
    let (outcome, events) = w.push(args(&m, Strategy::Rolling)).await;
    assert!(
        matches!(outcome, Outcome::RolledBack { .. }),
        "{outcome:?} {events:#?}"
    );
    let (at, _, lines) = last_logs(&events);
    assert!(
        lines
            .iter()
            .any(|l| l.stderr && l.text == "Staging failed: buildpack compile failed"),
        "{lines:#?}"
    );
    let rollback = events
        .iter()
        .position(|e| matches!(e, Event::RollbackStarted { .. }))
        .unwrap();
    assert!(at < rollback);
}
