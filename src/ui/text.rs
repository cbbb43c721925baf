//! The text renderer: the cf CLI's voice ("Pushing app myapp to org o / space s as alice..."),
//! one line per step. On a terminal, an indicatif progress bar for the upload and spinners
//! with elapsed time for waits (drawn on stderr); otherwise plain lines only, deterministic for
//! a given event sequence (golden-tested).
//!
//! Every line and spinner message goes through `terminal_safe`: warnings (`X-Cf-Warnings`),
//! API error text, log lines and names come from the platform, and a terminal must not act on
//! what they hold (clear the screen, retitle the window, rewrite the line before it).
//!
//! Depends on: deploy::event, indicatif. Must not: decide anything.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::deploy::analysis::{VerdictKind, VersionStats, fmt_ppm};
use crate::deploy::event::{Event, LogLine, Outcome, Reporter};
use crate::deploy::step::fmt_duration;

/// Renders events as cf-CLI-like text to `W`.
pub struct TextReporter<W: Write + Send> {
    out: W,
    terminal: bool,
    /// Draws the bars and spinners (terminal only), one line per app.
    multi: Option<MultiProgress>,
    /// The upload bar of each app uploading now.
    bars: BTreeMap<String, ProgressBar>,
    /// The spinner of each app waiting now (the drain's app is empty).
    spinners: BTreeMap<String, ProgressBar>,
    /// The last wait detail printed per app (plain output prints changes only).
    last_detail: BTreeMap<String, String>,
    /// The apps whose upload was said done.
    upload_done: BTreeSet<String>,
    /// The run deploys several apps (whose steps may run at the same time, `--parallel`):
    /// every line of an app names it.
    several: bool,
    /// The run is a `zero-downtime-rollback` (its summary lines say so).
    rollback_cmd: bool,
    /// The run's request count, said next to the last line.
    requests: Option<String>,
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `s` as a terminal may show it, the one cleaning rule of text output: an escape sequence
/// (`ESC [ ... final`, `ESC ] ... BEL` or `ESC ] ... ESC \`, `ESC x`) becomes one U+FFFD, and
/// so does every other control character (C0 but tab, DEL, C1, carriage return and line feed
/// included) and every bidirectional override (U+202A–U+202E, U+2066–U+2069), which could make
/// a line read other than it is. Borrows `s` when there is nothing to clean.
pub(crate) fn terminal_safe(s: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\t')
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            match chars.next() {
                // CSI: parameters and intermediates up to a final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC (also DCS, SOS, PM, APC): up to BEL or ST (ESC \).
                Some(']' | 'P' | 'X' | '^' | '_') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                // A two-character sequence (or a lone ESC at the end).
                _ => {}
            }
            out.push('\u{FFFD}');
        } else if unsafe_char(c) {
            out.push('\u{FFFD}');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A platform log line as `cf push` and `cf logs` indent it: `   [STG/0] text`, with `ERR`
/// before the text of a stderr line.
fn log_line(l: &LogLine) -> String {
    let err = if l.stderr { "ERR " } else { "" };
    format!("   [{}] {err}{}", l.source, l.text)
}

/// Writes each `\n`-separated line of `s`, cleaned by [`terminal_safe`], and flushes.
fn write_lines(out: &mut impl Write, s: &str) {
    for l in s.split('\n') {
        // Output errors (a closed pipe) must not abort the deploy: the outcome is still
        // returned.
        let _ignored = writeln!(out, "{}", terminal_safe(l));
    }
    let _flushed = out.flush();
}

impl<W: Write + Send> TextReporter<W> {
    /// A renderer writing plain lines to `out` (no progress bars, no spinners).
    pub fn plain(out: W) -> Self {
        TextReporter {
            out,
            terminal: false,
            multi: None,
            bars: BTreeMap::new(),
            spinners: BTreeMap::new(),
            last_detail: BTreeMap::new(),
            upload_done: BTreeSet::new(),
            several: false,
            rollback_cmd: false,
            requests: None,
        }
    }

    /// A renderer for a terminal: lines to `out`, progress bar and spinners on stderr.
    pub fn terminal(out: W) -> Self {
        TextReporter {
            terminal: true,
            ..TextReporter::plain(out)
        }
    }

    /// The writer (tests read the rendered output from it).
    pub fn into_inner(self) -> W {
        self.out
    }

    /// Ends the bar and spinner of `app`; of every app when the run has one app (a step
    /// ends whatever its run showed) or `app` is `None`.
    fn clear_progress(&mut self, app: Option<&str>) {
        let several = self.several;
        let keep = |a: &String| app.is_some_and(|app| several && a != app);
        let mut ended: Vec<ProgressBar> = Vec::new();
        for map in [&mut self.bars, &mut self.spinners] {
            let gone: Vec<String> = map.keys().filter(|a| !keep(a)).cloned().collect();
            ended.extend(gone.iter().filter_map(|a| map.remove(a)));
        }
        for b in ended {
            b.finish_and_clear();
            if let Some(m) = &self.multi {
                m.remove(&b);
            }
        }
        self.last_detail.retain(|a, _| keep(a));
    }

    /// `s` naming `app` when the run has several apps: after its indent, `app: `.
    fn tagged(&self, app: &str, s: &str) -> String {
        if !self.several || app.is_empty() {
            return s.to_string();
        }
        let body = s.trim_start_matches(' ');
        let indent = &s[..s.len() - body.len()];
        format!("{indent}{app}: {body}")
    }

    /// Writes `s` (each of its `\n`-separated lines) through [`terminal_safe`]; the bars and
    /// spinners drawn step aside for it.
    fn line(&mut self, s: &str) {
        match &self.multi {
            Some(m) if !self.bars.is_empty() || !self.spinners.is_empty() => {
                let out = &mut self.out;
                m.suspend(|| write_lines(out, s));
            }
            _ => write_lines(&mut self.out, s),
        }
    }

    /// A line of `app`: named when the run has several apps.
    fn app_line(&mut self, app: &str, s: &str) {
        let l = self.tagged(app, s);
        self.line(&l);
    }

    /// Where the bars and spinners are drawn (stderr), made at the first one.
    fn multi(&mut self) -> MultiProgress {
        self.multi
            .get_or_insert_with(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
            .clone()
    }

    fn progress(&mut self, app: &str, sent: u64, total: Option<u64>) {
        if !self.terminal {
            if let Some(t) = total
                && sent >= t
                && self.upload_done.insert(app.to_string())
            {
                self.app_line(app, &format!("   uploaded {}", human_bytes(t)));
            }
            return;
        }
        let bar = match self.bars.get(app) {
            Some(b) => b.clone(),
            None => {
                let b = self.multi().add(ProgressBar::new(total.unwrap_or(0)));
                let style = ProgressStyle::with_template(
                    "   {prefix}{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                b.set_style(style);
                b.set_prefix(self.tagged(app, ""));
                self.bars.insert(app.to_string(), b.clone());
                b
            }
        };
        if let Some(t) = total {
            bar.set_length(t);
        }
        bar.set_position(sent);
    }

    fn waiting(&mut self, app: &str, detail: &str) {
        if !self.terminal {
            if self.last_detail.get(app).map(String::as_str) != Some(detail) {
                self.last_detail.insert(app.to_string(), detail.to_string());
                self.app_line(app, &format!("   {detail}"));
            }
            return;
        }
        let sp = match self.spinners.get(app) {
            Some(s) => s.clone(),
            None => {
                let s = self.multi().add(ProgressBar::new_spinner());
                let style = ProgressStyle::with_template("   {spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                s.set_style(style);
                s.enable_steady_tick(Duration::from_millis(120));
                self.spinners.insert(app.to_string(), s.clone());
                s
            }
        };
        sp.set_message(terminal_safe(&self.tagged(app, detail)).into_owned());
    }

    /// The first lines of a run: what is pushed (or rolled back) where, and by whom.
    fn started(
        &mut self,
        org: &str,
        space: &str,
        user: Option<&str>,
        apps: &[String],
        strategy: &str,
    ) {
        let what = if apps.len() == 1 {
            format!("app {}", apps[0])
        } else {
            format!("apps {}", apps.join(", "))
        };
        let who = user.map(|u| format!(" as {u}")).unwrap_or_default();
        self.rollback_cmd = strategy == crate::deploy::rollback::STRATEGY;
        self.several = apps.len() > 1;
        if self.rollback_cmd {
            self.line(&format!(
                "Rolling back {what} to its previous version in org {org} / space {space}{who}..."
            ));
        } else {
            self.line(&format!(
                "Pushing {what} to org {org} / space {space}{who}..."
            ));
        }
        self.line("Getting app info...");
    }

    /// The end of a step's progress, and the warnings the step collected.
    fn step_warnings(&mut self, app: &str, warnings: &[String]) {
        self.clear_progress(Some(app));
        for w in warnings {
            self.app_line(app, &format!("Warning: {w}"));
        }
    }

    /// One line per app; the steps too on a dry run.
    fn plan(&mut self, apps: &[String], steps: &[String], dry_run: bool) {
        for a in apps {
            self.line(&format!("   {a}"));
        }
        if dry_run {
            self.line("");
            self.line("Plan (dry run, nothing will be changed):");
            for s in steps {
                self.line(&format!("   {s}"));
            }
        }
        self.line("");
    }

    /// The numbers of both versions in a canary step, the verdict and its reasons.
    fn canary_verdict(
        &mut self,
        app: &str,
        candidate: &VersionStats,
        live: &VersionStats,
        verdict: VerdictKind,
        reasons: &[String],
    ) {
        self.app_line(app, &format!("      new:  {}", version_line(candidate)));
        self.app_line(app, &format!("      live: {}", version_line(live)));
        let v = match verdict {
            VerdictKind::Pass => "pass",
            VerdictKind::Fail => "FAIL",
            VerdictKind::NoTrafficPass => "pass (too little traffic)",
            VerdictKind::NoTrafficFail => "FAIL (too little traffic)",
        };
        self.app_line(app, &format!("      verdict: {v}"));
        for r in reasons {
            self.app_line(app, &format!("      - {r}"));
        }
    }

    fn finished(&mut self, outcome: &Outcome, elapsed: Duration) {
        self.clear_progress(None);
        match outcome {
            Outcome::Deployed if self.rollback_cmd => {
                self.line(&format!("Rollback took {}.", fmt_duration(elapsed)));
            }
            Outcome::Deployed => {
                self.line(&format!("Deploy took {}.", fmt_duration(elapsed)));
            }
            Outcome::DryRun => {}
            _ => {
                if let Some(e) = outcome.error() {
                    self.line("");
                    for l in e.to_string().lines() {
                        self.line(l);
                    }
                }
                match outcome {
                    Outcome::RollbackIncomplete { manual_steps, .. } => {
                        self.line("Finish the rollback by hand:");
                        for m in manual_steps {
                            self.line(&format!("   {m}"));
                        }
                    }
                    Outcome::DeployedWithLeftovers { leftovers, .. } => {
                        self.line("The new version is serving. Clean up by hand, or run the deploy again:");
                        for m in leftovers {
                            self.line(&format!("   {m}"));
                        }
                    }
                    Outcome::AfterSwitchTaskFailed { not_run, .. } if !not_run.is_empty() => {
                        self.line("These after-switch tasks did not run:");
                        for m in not_run {
                            self.line(&format!("   {m}"));
                        }
                    }
                    _ => {}
                }
            }
        }
        let last = match outcome {
            Outcome::Deployed if self.rollback_cmd => {
                "rolled back: the previous version serves under the app's name".to_string()
            }
            Outcome::RolledBack { .. } if self.rollback_cmd => {
                "the rollback was undone: the current version still serves".to_string()
            }
            _ => outcome.last_line(),
        };
        if let Some(requests) = self.requests.take() {
            self.line(&requests);
        }
        self.line(&last);
    }
}

impl<W: Write + Send> Reporter for TextReporter<W> {
    fn report(&mut self, event: Event) {
        match event {
            Event::Started {
                org,
                space,
                user,
                apps,
                strategy,
            } => self.started(&org, &space, user.as_deref(), &apps, &strategy),
            Event::Plan {
                apps,
                steps,
                dry_run,
            } => self.plan(&apps, &steps, dry_run),
            Event::Warning { app, message } => {
                self.app_line(
                    app.as_deref().unwrap_or_default(),
                    &format!("Warning: {message}"),
                );
            }
            Event::StrategyChosen {
                strategy,
                max_in_flight,
                reason,
            } => {
                let how = match max_in_flight {
                    Some(n) => format!("{strategy} with --max-in-flight {n}"),
                    None => strategy,
                };
                self.line(&format!("Strategy auto: {how}: {reason}"));
            }
            Event::Notice { app, message } => {
                self.clear_progress(app.as_deref());
                let l = match app {
                    Some(app) => format!("Note: {app}: {message}"),
                    None => format!("Note: {message}"),
                };
                self.line(&l);
            }
            Event::StepStarted {
                app, description, ..
            } => {
                self.clear_progress(Some(&app));
                self.app_line(&app, &format!("{description}..."));
            }
            Event::StepFinished { app, warnings, .. } => self.step_warnings(&app, &warnings),
            Event::StepFailed {
                app,
                error,
                warnings,
                ..
            } => {
                self.step_warnings(&app, &warnings);
                self.app_line(&app, &format!("FAILED: {error}"));
            }
            Event::UploadProgress {
                app, sent, total, ..
            } => self.progress(&app, sent, total),
            // The spinner shows its own elapsed time; plain output prints changes only.
            Event::Waiting { app, detail, .. } => self.waiting(&app, &detail),
            Event::RollbackStarted { .. } => {
                self.clear_progress(None);
                self.line("");
                self.line("Rolling back...");
            }
            Event::UndoStarted { .. } => {}
            Event::UndoFinished { description, .. } => {
                self.line(&format!("   {description}: OK"));
            }
            Event::UndoFailed {
                description, error, ..
            } => {
                self.line(&format!("   {description}: FAILED: {error}"));
            }
            Event::Requests(requests) => self.requests = Some(format!("{requests}.")),
            Event::Finished {
                outcome, elapsed, ..
            } => self.finished(&outcome, elapsed),
            Event::DrainEnded {
                elapsed, reason, ..
            } => {
                self.clear_progress(Some(""));
                self.line(&format!(
                    "   drain ended after {}: {reason}",
                    fmt_duration(elapsed)
                ));
            }
            Event::Log { app, line } => self.app_line(&app, &log_line(&line)),
            Event::LastLogs { app, name, lines } => {
                self.clear_progress(Some(&app));
                self.line(&format!("Last log lines of {name}:"));
                for l in &lines {
                    self.app_line(&app, &log_line(l));
                }
            }
            Event::CanaryAnalysis {
                app,
                step,
                steps,
                traffic_share_pct,
                candidate_instances,
                live_instances,
                interval,
                candidate,
                live,
                verdict,
                reasons,
            } => {
                self.clear_progress(Some(&app));
                self.app_line(&app, &format!(
                    "   Canary step {step} of {steps}: {traffic_share_pct}% of the requests ({candidate_instances} new / {live_instances} live instances), observed {}",
                    fmt_duration(interval)
                ));
                self.canary_verdict(&app, &candidate, &live, verdict, &reasons);
            }
            Event::CanaryPromoted { app, reason } => {
                self.clear_progress(Some(&app));
                self.app_line(&app, &format!("   Promoting: {reason}"));
            }
        }
    }
}

/// `412 requests, 5xx 0.24%, p99 38ms` of one version in a canary step.
fn version_line(v: &VersionStats) -> String {
    let p99 = v
        .p99
        .map_or_else(|| "-".to_string(), |d| format!("{}ms", d.as_millis()));
    format!(
        "{} requests, 5xx {}, p99 {p99}",
        v.requests,
        fmt_ppm(v.error_ppm())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::event::{Failure, StepTime};

    fn started(i: usize, description: &str) -> Event {
        Event::StepStarted {
            index: i,
            total: 9,
            kind: "k".into(),
            app: "web".into(),
            description: description.into(),
        }
    }

    fn finished(i: usize, warnings: &[&str]) -> Event {
        Event::StepFinished {
            index: i,
            kind: "k".into(),
            app: "web".into(),
            elapsed: Duration::from_millis(300),
            warnings: warnings.iter().map(|w| w.to_string()).collect(),
        }
    }

    fn waiting(detail: &str, secs: u64) -> Event {
        Event::Waiting {
            app: "web".into(),
            what: "instances".into(),
            elapsed: Duration::from_secs(secs),
            detail: detail.into(),
        }
    }

    fn render(events: Vec<Event>) -> String {
        let mut r = TextReporter::plain(Vec::new());
        for e in events {
            r.report(e);
        }
        String::from_utf8(r.into_inner()).unwrap()
    }

    #[test]
    fn escape_sequences_from_the_platform_never_reach_the_terminal() {
        let hostile = "ok\u{1b}[2J\u{1b}]0;pwned\u{7}\rFAILED\u{1b}]8;;http://x\u{1b}\\\u{9b}31m\u{202e}txt.exe\u{1b}c";
        let out = render(vec![
            Event::Warning {
                app: None,
                message: hostile.into(),
            },
            finished(1, &[hostile]),
            Event::StepFailed {
                index: 2,
                kind: "k".into(),
                app: "web".into(),
                elapsed: Duration::from_millis(1),
                error: format!("API error: {hostile}"),
                warnings: vec![hostile.into()],
            },
            waiting(hostile, 1),
            Event::Log {
                app: "web".into(),
                line: LogLine {
                    source: "APP/PROC/WEB/0".into(),
                    stderr: false,
                    text: hostile.into(),
                },
            },
        ]);
        for bad in ['\u{1b}', '\u{7}', '\r', '\u{9b}', '\u{202e}'] {
            assert!(!out.contains(bad), "{bad:?} in {out:?}");
        }
        assert!(
            out.contains("Warning: ok\u{FFFD}\u{FFFD}\u{FFFD}FAILED"),
            "{out:?}"
        );
        assert!(out.contains("txt.exe"), "{out:?}");
        // Plain text is left alone, tabs included.
        assert!(matches!(terminal_safe("a\tb é"), Cow::Borrowed("a\tb é")));
        assert_eq!(terminal_safe("\u{1b}"), "\u{FFFD}");
        assert_eq!(terminal_safe("x\u{1b}[31"), "x\u{FFFD}");
    }

    #[test]
    fn a_rollback_run_says_rollback_in_its_summary() {
        let started = |strategy: &str| Event::Started {
            org: "o".into(),
            space: "s".into(),
            user: None,
            apps: vec!["web".into()],
            strategy: strategy.into(),
        };
        let finished = |outcome: Outcome| Event::Finished {
            outcome,
            elapsed: Duration::from_secs(2),
            steps: Vec::new(),
        };
        let out = render(vec![
            started(crate::deploy::rollback::STRATEGY),
            finished(Outcome::Deployed),
        ]);
        assert!(
            out.starts_with("Rolling back app web to its previous version"),
            "{out}"
        );
        assert!(
            out.ends_with(
                "Rollback took 2s.\nrolled back: the previous version serves under the app's name\n"
            ),
            "{out}"
        );
        let out = render(vec![
            started(crate::deploy::rollback::STRATEGY),
            finished(Outcome::RolledBack {
                error: "smoke test failed".into(),
            }),
        ]);
        assert!(
            out.ends_with("the rollback was undone: the current version still serves\n"),
            "{out}"
        );
        let out = render(vec![started("blue-green"), finished(Outcome::Deployed)]);
        assert!(out.ends_with("Deploy took 2s.\ndeployed\n"), "{out}");
    }

    /// Several apps, their steps interleaved (`--parallel`): every line of an app names it,
    /// and each app's waits and upload are said on lines of their own.
    #[test]
    fn the_lines_of_several_apps_name_their_app() {
        let step = |app: &str, i: usize, description: &str| Event::StepStarted {
            index: i,
            total: 9,
            kind: "k".into(),
            app: app.into(),
            description: description.into(),
        };
        let wait = |app: &str, detail: &str| Event::Waiting {
            app: app.into(),
            what: "staging".into(),
            elapsed: Duration::from_secs(1),
            detail: detail.into(),
        };
        let upload = |app: &str| Event::UploadProgress {
            app: app.into(),
            sent: 2048,
            total: Some(2048),
        };
        let out = render(vec![
            Event::Started {
                org: "o".into(),
                space: "s".into(),
                user: None,
                apps: vec!["web".into(), "api".into()],
                strategy: "blue-green".into(),
            },
            step("web", 1, "Uploading web-candidate"),
            step("api", 2, "Uploading api-candidate"),
            upload("api"),
            upload("web"),
            step("web", 3, "Staging web-candidate"),
            wait("web", "staging"),
            step("api", 4, "Staging api-candidate"),
            wait("api", "staging"),
            wait("web", "staging"),
            Event::Log {
                app: "api".into(),
                line: LogLine {
                    source: "STG/0".into(),
                    stderr: false,
                    text: "Downloading".into(),
                },
            },
            wait("api", "staging"),
            Event::StepFailed {
                index: 4,
                kind: "stage".into(),
                app: "api".into(),
                elapsed: Duration::from_secs(2),
                error: "staging failed".into(),
                warnings: vec!["low disk".into()],
            },
            Event::Warning {
                app: None,
                message: "run-wide".into(),
            },
        ]);
        assert_eq!(
            out,
            concat!(
                "Pushing apps web, api to org o / space s...\n",
                "Getting app info...\n",
                "web: Uploading web-candidate...\n",
                "api: Uploading api-candidate...\n",
                "   api: uploaded 2.0 KiB\n",
                "   web: uploaded 2.0 KiB\n",
                "web: Staging web-candidate...\n",
                "   web: staging\n",
                "api: Staging api-candidate...\n",
                "   api: staging\n",
                "   api: [STG/0] Downloading\n",
                "api: Warning: low disk\n",
                "api: FAILED: staging failed\n",
                "Warning: run-wide\n",
            )
        );
    }

    #[test]
    fn the_request_count_comes_right_before_the_last_line() {
        use crate::deploy::budget::{Phase, PhaseRequests, Requests};
        let requests = Requests {
            total: 21,
            phases: vec![
                PhaseRequests {
                    phase: Phase::Preflight,
                    requests: 12,
                },
                PhaseRequests {
                    phase: Phase::Health,
                    requests: 9,
                },
            ],
        };
        let out = render(vec![
            Event::Requests(requests.clone()),
            Event::Finished {
                outcome: Outcome::Deployed,
                elapsed: Duration::from_secs(2),
                steps: Vec::new(),
            },
        ]);
        assert!(
            out.ends_with("Deploy took 2s.\n21 requests: 12 preflight, 9 health.\ndeployed\n"),
            "{out}"
        );
        let json = serde_json::to_value(Event::Requests(requests)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"event": "requests", "total": 21, "phases": [
                {"phase": "preflight", "requests": 12}, {"phase": "health", "requests": 9}]})
        );
    }

    #[test]
    fn canary_steps_show_share_numbers_and_verdict() {
        use crate::deploy::analysis::{RecordSource, VerdictKind, VersionStats};
        let stats = |requests, errors, ms| VersionStats {
            requests,
            errors,
            p99: Some(Duration::from_millis(ms)),
            source: RecordSource::Timers,
        };
        let out = render(vec![
            Event::CanaryAnalysis {
                app: "web".into(),
                step: 1,
                steps: 2,
                traffic_share_pct: 33,
                candidate_instances: 2,
                live_instances: 4,
                interval: Duration::from_secs(30),
                candidate: stats(100, 20, 40),
                live: VersionStats::empty(),
                verdict: VerdictKind::Fail,
                reasons: vec!["5xx ratio 20% (20 of 100) is above --max-error-rate 1%".into()],
            },
            Event::CanaryPromoted {
                app: "web".into(),
                reason: "every canary step below 100% passed".into(),
            },
        ]);
        assert_eq!(
            out,
            concat!(
                "   Canary step 1 of 2: 33% of the requests (2 new / 4 live instances), observed 30s\n",
                "      new:  100 requests, 5xx 20%, p99 40ms\n",
                "      live: 0 requests, 5xx 0%, p99 -\n",
                "      verdict: FAIL\n",
                "      - 5xx ratio 20% (20 of 100) is above --max-error-rate 1%\n",
                "   Promoting: every canary step below 100% passed\n",
            )
        );
    }

    #[test]
    fn the_strategy_auto_chose_is_one_line() {
        let out = render(vec![
            Event::StrategyChosen {
                strategy: "rolling".into(),
                max_in_flight: Some(2),
                reason: "the space quota 'small' (space 'dev') leaves room for 2 more instances of 64 MB".into(),
            },
            Event::StrategyChosen {
                strategy: "blue-green".into(),
                max_in_flight: None,
                reason: "the quotas leave room for the candidate next to the live app".into(),
            },
        ]);
        assert_eq!(
            out,
            concat!(
                "Strategy auto: rolling with --max-in-flight 2: the space quota 'small' (space 'dev') leaves room for 2 more instances of 64 MB\n",
                "Strategy auto: blue-green: the quotas leave room for the candidate next to the live app\n",
            )
        );
    }

    const SUMMARY: &str = "web: blue-green swap, candidate web-candidate, temporary route web-temp.example.com, routes web.example.com";
    const EXTRA: &str = "route extra.example.com is mapped to app web but not in the manifest; the new version gets it too";
    const CRASH: &str = "app 'web-candidate': instance 1 of process 'web' crashed: exit status 1";

    fn head() -> Vec<Event> {
        vec![
            Event::Started {
                org: "o".into(),
                space: "s".into(),
                user: Some("alice".into()),
                apps: vec!["web".into()],
                strategy: "blue-green".into(),
            },
            Event::Plan {
                apps: vec![SUMMARY.into()],
                steps: vec![" 1. Creating route web-temp.example.com".into()],
                dry_run: false,
            },
            Event::Warning {
                app: None,
                message: EXTRA.into(),
            },
            started(0, "Creating route web-temp.example.com"),
            finished(0, &[]),
            started(
                1,
                "Applying manifest for app web-candidate with route web-temp.example.com",
            ),
            finished(1, &["buildpack is deprecated"]),
            started(2, "Uploading files for web"),
            Event::UploadProgress {
                app: "web".into(),
                sent: 512,
                total: Some(2048),
            },
            Event::UploadProgress {
                app: "web".into(),
                sent: 2048,
                total: Some(2048),
            },
            finished(2, &[]),
            started(3, "Waiting for all instances of web to run"),
            waiting("0 of 2 instances running", 1),
            waiting("0 of 2 instances running", 2),
            waiting("1 of 2 instances running", 3),
        ]
    }

    const GOLDEN_ROLLBACK_INCOMPLETE: &[&str] = &[
        "Pushing app web to org o / space s as alice...",
        "Getting app info...",
        "   web: blue-green swap, candidate web-candidate, temporary route web-temp.example.com, routes web.example.com",
        "",
        "Warning: route extra.example.com is mapped to app web but not in the manifest; the new version gets it too",
        "Creating route web-temp.example.com...",
        "Applying manifest for app web-candidate with route web-temp.example.com...",
        "Warning: buildpack is deprecated",
        "Uploading files for web...",
        "   uploaded 2.0 KiB",
        "Waiting for all instances of web to run...",
        "   0 of 2 instances running",
        "   1 of 2 instances running",
        "FAILED: app 'web-candidate': instance 1 of process 'web' crashed: exit status 1",
        "",
        "Rolling back...",
        "   delete app web-candidate: FAILED: 500 CF-ServerError: boom",
        "   delete route web-temp.example.com: OK",
        "",
        "app 'web-candidate': instance 1 of process 'web' crashed: exit status 1",
        "TIP: the failed app is deleted by the rollback; watch 'cf logs web-candidate' in another terminal during the next push",
        "Finish the rollback by hand:",
        "   cf delete web-candidate -f",
        "ROLLBACK INCOMPLETE: cf delete web-candidate -f",
    ];

    #[test]
    fn golden_rollback_incomplete() {
        let mut events = head();
        events.extend([
            Event::StepFailed {
                index: 3,
                kind: "wait_healthy".into(),
                app: "web".into(),
                elapsed: Duration::from_secs(4),
                error: CRASH.into(),
                warnings: vec![],
            },
            Event::RollbackStarted {
                reason: "crashed".into(),
            },
            Event::UndoStarted {
                description: "delete app web-candidate".into(),
            },
            Event::UndoFailed {
                description: "delete app web-candidate".into(),
                elapsed: Duration::from_millis(20),
                error: "500 CF-ServerError: boom".into(),
                manual: "cf delete web-candidate -f".into(),
            },
            Event::UndoStarted {
                description: "delete route web-temp.example.com".into(),
            },
            Event::UndoFinished {
                description: "delete route web-temp.example.com".into(),
                elapsed: Duration::from_millis(20),
            },
            Event::Finished {
                outcome: Outcome::RollbackIncomplete {
                    error: Failure {
                        message: CRASH.into(),
                        hint: Some("TIP: the failed app is deleted by the rollback; watch 'cf logs web-candidate' in another terminal during the next push".into()),
                        earlier: None,
                    },
                    manual_steps: vec!["cf delete web-candidate -f".into()],
                },
                elapsed: Duration::from_secs(9),
                steps: vec![],
            },
        ]);
        let out = render(events);
        let got: Vec<&str> = out.lines().collect();
        assert_eq!(got, GOLDEN_ROLLBACK_INCOMPLETE);
    }

    #[test]
    fn golden_deployed_and_dry_run() {
        let mut events = head();
        events.extend([
            finished(3, &[]),
            Event::Finished {
                outcome: Outcome::Deployed,
                elapsed: Duration::from_millis(12_300),
                steps: vec![StepTime {
                    kind: "drain".into(),
                    app: String::new(),
                    elapsed: Duration::from_secs(10),
                }],
            },
        ]);
        let out = render(events);
        assert!(
            out.ends_with("   1 of 2 instances running\nDeploy took 12.3s.\ndeployed\n"),
            "{out}"
        );

        let out = render(vec![
            Event::Plan {
                apps: vec!["web: first deploy, routes web.example.com".into()],
                steps: vec![" 1. Applying manifest for app web".into()],
                dry_run: true,
            },
            Event::Finished {
                outcome: Outcome::DryRun,
                elapsed: Duration::ZERO,
                steps: vec![],
            },
        ]);
        let got: Vec<&str> = out.lines().collect();
        assert_eq!(
            got,
            [
                "   web: first deploy, routes web.example.com",
                "",
                "Plan (dry run, nothing will be changed):",
                "    1. Applying manifest for app web",
                "",
                "dry run: nothing was changed",
            ]
        );
    }

    #[test]
    fn log_lines_are_indented_with_their_source() {
        let line = |source: &str, stderr: bool, text: &str| crate::deploy::event::LogLine {
            source: source.into(),
            stderr,
            text: text.into(),
        };
        let out = render(vec![
            started(2, "Staging app web-candidate"),
            Event::Log {
                app: "web".into(),
                line: line("STG/0", false, "Downloading app package..."),
            },
            Event::LastLogs {
                app: "web".into(),
                name: "web-candidate".into(),
                lines: vec![
                    line("STG/0", false, "Downloading app package..."),
                    line("STG/0", true, "Staging failed: no buildpack"),
                ],
            },
        ]);
        let got: Vec<&str> = out.lines().collect();
        assert_eq!(
            got,
            [
                "Staging app web-candidate...",
                "   [STG/0] Downloading app package...",
                "Last log lines of web-candidate:",
                "   [STG/0] Downloading app package...",
                "   [STG/0] ERR Staging failed: no buildpack",
            ]
        );
    }

    #[test]
    fn a_failed_after_switch_task_lists_the_tasks_not_run_before_the_last_line() {
        let out = render(vec![Event::Finished {
            outcome: Outcome::AfterSwitchTaskFailed {
                error: "task 'zdt-after-switch-1' of app 'web' failed: exit 1".into(),
                not_run: vec!["cf run-task web --name zdt-after-switch-2 --command '<its --task-after-switch command>'".into()],
            },
            elapsed: Duration::ZERO,
            steps: vec![],
        }]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[lines.len() - 4..],
            [
                "task 'zdt-after-switch-1' of app 'web' failed: exit 1",
                "These after-switch tasks did not run:",
                "   cf run-task web --name zdt-after-switch-2 --command '<its --task-after-switch command>'",
                "deployed, after-switch task failed (the new version serves)",
            ]
        );
    }

    #[test]
    fn last_line_of_each_outcome() {
        let cases = [
            (
                Outcome::NothingChanged { error: "x".into() },
                "nothing was changed",
            ),
            (
                Outcome::RolledBack { error: "x".into() },
                "rolled back, the old version is serving",
            ),
            (
                Outcome::DeployedWithLeftovers {
                    error: "x".into(),
                    leftovers: vec!["cf stop web".into()],
                },
                "deployed with leftovers (the new version serves); to finish: cf stop web",
            ),
            (
                Outcome::AfterSwitchTaskFailed {
                    error: "x".into(),
                    not_run: vec![],
                },
                "deployed, after-switch task failed (the new version serves)",
            ),
        ];
        for (o, want) in cases {
            let out = render(vec![Event::Finished {
                outcome: o,
                elapsed: Duration::ZERO,
                steps: vec![],
            }]);
            assert_eq!(out.lines().last(), Some(want));
            assert!(out.contains("\nx\n"), "the error is shown: {out}");
        }
    }
}
