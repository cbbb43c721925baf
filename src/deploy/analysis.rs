//! Canary analysis: judges a candidate by the router's records of the requests it served,
//! compared with the live version's records of the same window. Pure: the executor reads the
//! records (`CfApi::app_log`) and reports; this module counts, computes and decides.
//!
//! # What is measured
//!
//! Per version: the number of requests the router sent to it, how many were answered with a
//! 5xx (or not answered at all: status 0 in a timer, which gorouter records as a 502 in the
//! access log), and the p99 of the router's request duration (nearest rank). The source is
//! gorouter's `http` timer envelopes (`status_code` tag, start/stop) when the platform
//! emits them, else its `RTR` access-log lines (status after the request line,
//! `response_time:<seconds>`); when both are present only the timers count (each request
//! would otherwise count twice).
//!
//! # The verdict ([`judge`])
//!
//! - Fewer than `min_requests` requests to the candidate: no verdict on the numbers; the
//!   result is `--analysis-no-traffic` (fail by default), with the reason said.
//! - 5xx ratio above `--max-error-rate`: fail.
//! - 5xx ratio above the live version's plus `--error-rate-margin` (only when the live
//!   version saw at least `min_requests` itself; else that comparison is skipped and said):
//!   fail.
//! - p99 above `--max-p99`: fail.
//! - p99 above `--max-p99-ratio` times the live version's p99 plus [`P99_RATIO_SLACK`] (the
//!   slack keeps a few milliseconds of noise on a fast app from failing a ratio): fail.
//! - Equal values pass (every bound is inclusive).
//!
//! Depends on: deploy::api (records). Must not: do I/O.

use std::time::Duration;

use serde::{Serialize, Serializer};

use super::api::{LogEntry, LogRecord};

/// `--analysis-no-traffic`: the verdict when too few requests reached the new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnalysisNoTraffic {
    /// Roll back: nothing proves the new version works.
    #[default]
    Fail,
    /// Go on to the next step (low-traffic apps).
    Pass,
}

/// Checks `--canary-steps` and returns the steps with 100 appended when missing.
///
/// # Errors
/// An empty list, a 0 or a value above 100, or values not strictly ascending.
pub fn canary_steps(steps: &[u32]) -> Result<Vec<u32>, String> {
    if steps.is_empty() {
        return Err("--canary-steps needs at least one percentage, e.g. 10,50,100".into());
    }
    let mut out = Vec::with_capacity(steps.len() + 1);
    for &s in steps {
        if s == 0 || s > 100 {
            return Err(format!(
                "--canary-steps: {s} is not a share of traffic between 1 and 100 (percent)"
            ));
        }
        if out.last().is_some_and(|l| *l >= s) {
            return Err(format!(
                "--canary-steps: the percentages must go up strictly ({} then {s})",
                out.last().copied().unwrap_or_default()
            ));
        }
        out.push(s);
    }
    if out.last() != Some(&100) {
        out.push(100);
    }
    Ok(out)
}

/// Latency below which a p99 ratio is not judged: candidate p99 may exceed `ratio × live
/// p99` by this much.
pub const P99_RATIO_SLACK: Duration = Duration::from_millis(10);

/// One million: rates are kept in parts per million (the request stays `Eq`).
pub const PPM: u32 = 1_000_000;

/// The canary analysis settings (flags `--canary-steps`, `--analysis*`, `--max-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalysisConfig {
    /// Traffic shares in percent, strictly ascending, the last one 100 (the switch).
    pub steps: Vec<u32>,
    /// How long each step is observed.
    pub interval: Duration,
    /// Highest 5xx ratio of the candidate, in parts per million.
    pub max_error_ppm: u32,
    /// How much the candidate's 5xx ratio may exceed the live version's, in ppm.
    pub error_margin_ppm: u32,
    /// Highest p99 of the candidate, if bounded.
    pub max_p99: Option<Duration>,
    /// Highest ratio of the candidate's p99 to the live version's, in thousandths.
    pub max_p99_ratio_milli: Option<u32>,
    /// Requests the candidate must see for a verdict on the numbers.
    pub min_requests: u64,
    /// What too little traffic means.
    pub no_traffic: AnalysisNoTraffic,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            steps: vec![10, 50, 100],
            interval: Duration::from_secs(30),
            max_error_ppm: 10_000,
            error_margin_ppm: 10_000,
            max_p99: None,
            max_p99_ratio_milli: None,
            min_requests: 20,
            no_traffic: AnalysisNoTraffic::Fail,
        }
    }
}

/// Where a version's numbers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordSource {
    /// gorouter's `http` timer envelopes.
    Timers,
    /// gorouter's `RTR` access-log lines.
    AccessLog,
    /// No record at all.
    None,
}

/// The router's numbers of one version in one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionStats {
    /// Requests seen.
    pub requests: u64,
    /// Of which answered 5xx or not at all.
    pub errors: u64,
    /// 99th percentile of the request duration (nearest rank); `None` without requests.
    pub p99: Option<Duration>,
    /// Where the numbers come from.
    pub source: RecordSource,
}

impl Serialize for VersionStats {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("VersionStats", 5)?;
        st.serialize_field("requests", &self.requests)?;
        st.serialize_field("errors_5xx", &self.errors)?;
        st.serialize_field("error_rate", &self.error_rate())?;
        st.serialize_field(
            "p99_ms",
            &self
                .p99
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )?;
        st.serialize_field("source", &self.source)?;
        st.end()
    }
}

impl VersionStats {
    /// No request.
    pub fn empty() -> Self {
        VersionStats {
            requests: 0,
            errors: 0,
            p99: None,
            source: RecordSource::None,
        }
    }

    /// The 5xx ratio (0 without requests).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// The 5xx ratio in parts per million, rounded up (a ratio just above a bound never
    /// rounds down onto it).
    pub fn error_ppm(&self) -> u64 {
        if self.requests == 0 {
            return 0;
        }
        let num = u128::from(self.errors) * u128::from(PPM);
        let den = u128::from(self.requests);
        u64::try_from(num.div_ceil(den)).unwrap_or(u64::MAX)
    }

    /// The numbers of a version from its log-cache records: timers when there are any, else
    /// `RTR` access lines (unparseable lines are skipped).
    pub fn from_records(records: &[LogRecord]) -> Self {
        let mut timers: Vec<(u16, Duration)> = Vec::new();
        let mut lines: Vec<(u16, Duration)> = Vec::new();
        for r in records {
            match &r.entry {
                LogEntry::Request { status, duration } => timers.push((*status, *duration)),
                LogEntry::Line {
                    source_type, text, ..
                } if source_type == "RTR" => {
                    if let Some(x) = parse_rtr_line(text) {
                        lines.push(x);
                    }
                }
                LogEntry::Line { .. } => {}
            }
        }
        let (source, reqs) = if !timers.is_empty() {
            (RecordSource::Timers, timers)
        } else if !lines.is_empty() {
            (RecordSource::AccessLog, lines)
        } else {
            return VersionStats::empty();
        };
        let errors = reqs.iter().filter(|(s, _)| is_error(*s)).count() as u64;
        let mut durations: Vec<Duration> = reqs.iter().map(|(_, d)| *d).collect();
        VersionStats {
            requests: reqs.len() as u64,
            errors,
            p99: p99(&mut durations),
            source,
        }
    }
}

/// A 5xx, or no answer (status 0).
fn is_error(status: u16) -> bool {
    status == 0 || (500..600).contains(&status)
}

/// The 99th percentile by nearest rank; `None` for no value. Sorts `d`.
pub fn p99(d: &mut [Duration]) -> Option<Duration> {
    if d.is_empty() {
        return None;
    }
    d.sort_unstable();
    // Nearest rank: ceil(0.99 × n), 1-based.
    let rank = (d.len() * 99).div_ceil(100).max(1);
    d.get(rank - 1).copied()
}

/// Status and duration from one of gorouter's access-log lines:
/// `host - [time] "GET /p HTTP/1.1" 200 0 12 "-" "ua" "peer" "backend" ... response_time:0.003 ...`.
/// `None` when the line does not have that shape.
pub fn parse_rtr_line(line: &str) -> Option<(u16, Duration)> {
    // The request line is the first quoted string after the timestamp.
    let after_time = &line[line.find("] \"")? + 3..];
    let rest = &after_time[after_time.find('"')? + 1..];
    let status: u16 = rest.split_whitespace().next()?.parse().ok()?;
    let rt = line.find("response_time:")? + "response_time:".len();
    let secs: f64 = line[rt..]
        .split(|c: char| c.is_whitespace())
        .next()?
        .trim_matches('"')
        .parse()
        .ok()?;
    let duration = Duration::try_from_secs_f64(secs).ok()?;
    Some((status, duration))
}

/// The `instance_id:"..."` field of one of gorouter's access-log lines: the Diego instance
/// GUID on a real platform (the simulator writes `<process-guid>:<index>`, the form of the
/// `X-Cf-Process-Instance` header).
pub fn rtr_instance_id(line: &str) -> Option<&str> {
    let key = " instance_id:\"";
    let start = line.find(key)? + key.len();
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

/// Splits an app's records into those of the instances named in `new_ids` (by the access
/// line's `instance_id`) and the others. Only `RTR` lines carry the instance: timers and
/// other lines are dropped, so both halves are judged from access lines.
pub fn split_by_instance(
    records: Vec<LogRecord>,
    new_ids: &std::collections::BTreeSet<String>,
) -> (Vec<LogRecord>, Vec<LogRecord>) {
    let mut new = Vec::new();
    let mut old = Vec::new();
    for r in records {
        let id = match &r.entry {
            LogEntry::Line {
                source_type, text, ..
            } if source_type == "RTR" => rtr_instance_id(text).map(str::to_string),
            _ => None,
        };
        match id {
            Some(id) if new_ids.contains(&id) => new.push(r),
            Some(_) => old.push(r),
            None => {}
        }
    }
    (new, old)
}

/// What an analysis decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// Every check held.
    Pass,
    /// A check failed.
    Fail,
    /// Too little traffic; passed by `--analysis-no-traffic pass`.
    NoTrafficPass,
    /// Too little traffic; failed by `--analysis-no-traffic fail`.
    NoTrafficFail,
}

impl VerdictKind {
    /// Whether the deploy goes on.
    pub fn passed(self) -> bool {
        matches!(self, VerdictKind::Pass | VerdictKind::NoTrafficPass)
    }
}

/// A verdict with its reasons (every failed check, or what was skipped and why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The decision.
    pub kind: VerdictKind,
    /// Why: one sentence per failed check or note.
    pub reasons: Vec<String>,
}

/// `0.5%`-style percent of a ppm value.
pub fn fmt_ppm(ppm: u64) -> String {
    let pct = ppm as f64 / 10_000.0;
    let s = format!("{pct:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

fn fmt_ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Judges `candidate` against `live` (see the module docs).
pub fn judge(cfg: &AnalysisConfig, candidate: &VersionStats, live: &VersionStats) -> Verdict {
    if candidate.requests < cfg.min_requests.max(1) {
        let reason = format!(
            "too little traffic: {} requests reached the candidate, at least {} are needed for a verdict (--min-requests)",
            candidate.requests,
            cfg.min_requests.max(1)
        );
        let kind = match cfg.no_traffic {
            AnalysisNoTraffic::Pass => VerdictKind::NoTrafficPass,
            AnalysisNoTraffic::Fail => VerdictKind::NoTrafficFail,
        };
        let policy = match kind {
            VerdictKind::NoTrafficPass => "passed by --analysis-no-traffic pass",
            _ => "failed by --analysis-no-traffic fail",
        };
        return Verdict {
            kind,
            reasons: vec![format!("{reason}; {policy}")],
        };
    }
    let mut fails = Vec::new();
    let mut notes = Vec::new();
    let cand_ppm = candidate.error_ppm();
    if cand_ppm > u64::from(cfg.max_error_ppm) {
        fails.push(format!(
            "5xx ratio {} ({} of {}) is above --max-error-rate {}",
            fmt_ppm(cand_ppm),
            candidate.errors,
            candidate.requests,
            fmt_ppm(u64::from(cfg.max_error_ppm))
        ));
    }
    let live_judged = live.requests >= cfg.min_requests.max(1);
    if live_judged {
        let live_ppm = live.error_ppm();
        let bound = live_ppm.saturating_add(u64::from(cfg.error_margin_ppm));
        if cand_ppm > bound {
            fails.push(format!(
                "5xx ratio {} is worse than the live version's {} by more than --error-rate-margin {}",
                fmt_ppm(cand_ppm),
                fmt_ppm(live_ppm),
                fmt_ppm(u64::from(cfg.error_margin_ppm))
            ));
        }
    } else if cfg.error_margin_ppm < PPM || cfg.max_p99_ratio_milli.is_some() {
        notes.push(format!(
            "the live version saw {} requests (fewer than {}): not compared with it",
            live.requests,
            cfg.min_requests.max(1)
        ));
    }
    if let (Some(max), Some(p)) = (cfg.max_p99, candidate.p99)
        && p > max
    {
        fails.push(format!(
            "p99 {} is above --max-p99 {}",
            fmt_ms(p),
            fmt_ms(max)
        ));
    }
    if let (Some(ratio), Some(p), Some(lp), true) = (
        cfg.max_p99_ratio_milli,
        candidate.p99,
        live.p99,
        live_judged,
    ) {
        let bound = lp
            .checked_mul(ratio)
            .map(|b| b / 1000)
            .unwrap_or(Duration::MAX)
            .saturating_add(P99_RATIO_SLACK);
        if p > bound {
            fails.push(format!(
                "p99 {} is more than {}× the live version's {} (--max-p99-ratio)",
                fmt_ms(p),
                f64::from(ratio) / 1000.0,
                fmt_ms(lp)
            ));
        }
    }
    if fails.is_empty() {
        Verdict {
            kind: VerdictKind::Pass,
            reasons: notes,
        }
    } else {
        fails.extend(notes);
        Verdict {
            kind: VerdictKind::Fail,
            reasons: fails,
        }
    }
}

/// Candidate instances that take about `percent` % of a route's requests next to `live`
/// instances (the router balances over instances): `ceil(p·n / (100 − p))`, at least 1, at
/// most `full` (the candidate's own count: the live app is never scaled down before the
/// switch, so a share above `full / (n + full)` is not reached before the final step).
/// 100 % is the switch: the full count.
pub fn candidate_instances(percent: u32, live: u32, full: u32) -> u32 {
    let full = full.max(1);
    if percent >= 100 {
        return full;
    }
    let p = u64::from(percent);
    let k = (p * u64::from(live)).div_ceil(100 - p).max(1);
    u32::try_from(k).unwrap_or(u32::MAX).min(full)
}

/// The share of requests `k` candidate instances get next to `n` live ones, in whole percent.
pub fn share_percent(k: u32, n: u32) -> u32 {
    let total = u64::from(k) + u64::from(n);
    if total == 0 {
        return 0;
    }
    u32::try_from((u64::from(k) * 100 + total / 2) / total).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn req(status: u16, ms: u64) -> LogRecord {
        LogRecord {
            at: SystemTime::UNIX_EPOCH,
            instance: "0".into(),
            entry: LogEntry::Request {
                status,
                duration: Duration::from_millis(ms),
            },
        }
    }

    fn line(text: &str) -> LogRecord {
        LogRecord {
            at: SystemTime::UNIX_EPOCH,
            instance: "0".into(),
            entry: LogEntry::Line {
                source_type: "RTR".into(),
                stderr: false,
                text: text.into(),
            },
        }
    }

    fn stats(requests: u64, errors: u64, p99_ms: u64) -> VersionStats {
        VersionStats {
            requests,
            errors,
            p99: Some(Duration::from_millis(p99_ms)),
            source: RecordSource::Timers,
        }
    }

    const RTR: &str = r#"web.example.com - [2026-12-02T15:00:00.123456789Z] "GET /x HTTP/1.1" 503 0 12 "-" "curl/8" "10.0.0.1:5000" "10.0.1.2:61000" x_forwarded_for:"10.0.0.1" x_forwarded_proto:"https" vcap_request_id:"abc" response_time:0.250000 gorouter_time:0.000100 app_id:"g" app_index:"0" instance_id:"p:0" x_cf_routererror:"-""#;

    #[test]
    fn rtr_lines_give_status_and_response_time() {
        assert_eq!(parse_rtr_line(RTR), Some((503, Duration::from_millis(250))));
        // A quoted response_time (some gorouter versions) and a request line with spaces.
        let l = r#"h - [t] "GET /a b HTTP/1.1" 200 0 1 "-" "ua" response_time:"0.001""#;
        assert_eq!(parse_rtr_line(l), Some((200, Duration::from_millis(1))));
        for bad in [
            "",
            "no brackets",
            r#"h - [t] "GET / HTTP/1.1" - 0 1 response_time:0.1"#,
            r#"h - [t] "GET / HTTP/1.1" 200 0 1"#,
            r#"h - [t] "GET / HTTP/1.1" 200 0 1 response_time:-1"#,
            r#"h - [t] "GET / HTTP/1.1"#,
        ] {
            assert_eq!(parse_rtr_line(bad), None, "{bad}");
        }
    }

    #[test]
    fn access_lines_split_by_instance() {
        assert_eq!(rtr_instance_id(RTR), Some("p:0"));
        assert_eq!(rtr_instance_id("no id"), None);
        let mk = |id: &str, status: u16| {
            line(&format!(
                r#"h - [t] "GET / HTTP/1.1" {status} 0 1 "-" "ua" vcap_request_id:"x" response_time:0.001 app_index:"0" instance_id:"{id}""#
            ))
        };
        let ids = std::collections::BTreeSet::from(["new-guid".to_string()]);
        let (new, old) = split_by_instance(
            vec![
                mk("new-guid", 500),
                mk("old-guid", 200),
                req(200, 1),
                mk("old-2", 200),
            ],
            &ids,
        );
        assert_eq!((new.len(), old.len()), (1, 2));
        assert_eq!(VersionStats::from_records(&new).errors, 1);
    }

    #[test]
    fn the_simulators_access_line_parses() {
        // The shape src/sim/router.rs writes.
        let l = r#"web.apps.sim - [2026-12-02T15:00:00.000000001Z] "GET / HTTP/1.1" 500 0 3 "-" "load" "127.0.0.1:1" "127.0.0.1:2" x_forwarded_for:"127.0.0.1" x_forwarded_proto:"http" vcap_request_id:"r" response_time:0.002000 gorouter_time:0.000100 app_id:"a" app_index:"1" instance_id:"p:1" x_cf_routererror:"-""#;
        assert_eq!(parse_rtr_line(l), Some((500, Duration::from_millis(2))));
    }

    #[test]
    fn timers_win_over_access_lines_and_lines_are_the_fallback() {
        let both = [req(200, 1), line(RTR), req(500, 2)];
        let s = VersionStats::from_records(&both);
        assert_eq!(
            (s.requests, s.errors, s.source),
            (2, 1, RecordSource::Timers)
        );
        let lines = [line(RTR), line("garbage"), line(RTR)];
        let s = VersionStats::from_records(&lines);
        assert_eq!(
            (s.requests, s.errors, s.source),
            (2, 2, RecordSource::AccessLog)
        );
        assert_eq!(s.p99, Some(Duration::from_millis(250)));
        assert_eq!(VersionStats::from_records(&[]), VersionStats::empty());
    }

    #[test]
    fn no_answer_counts_as_an_error_and_4xx_does_not() {
        let s = VersionStats::from_records(&[req(0, 1), req(404, 1), req(599, 1), req(600, 1)]);
        assert_eq!((s.requests, s.errors), (4, 2));
    }

    #[test]
    fn p99_is_the_nearest_rank() {
        let mut one = [Duration::from_millis(7)];
        assert_eq!(p99(&mut one), Some(Duration::from_millis(7)));
        assert_eq!(p99(&mut []), None);
        let mut hundred: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(p99(&mut hundred), Some(Duration::from_millis(99)));
        let mut many: Vec<Duration> = (1..=1000).map(Duration::from_millis).collect();
        assert_eq!(p99(&mut many), Some(Duration::from_millis(990)));
        let mut two = [Duration::from_millis(1), Duration::from_millis(9)];
        assert_eq!(p99(&mut two), Some(Duration::from_millis(9)));
    }

    #[test]
    fn healthy_candidate_passes_and_ties_pass() {
        let cfg = AnalysisConfig::default();
        let v = judge(&cfg, &stats(100, 0, 5), &stats(300, 0, 5));
        assert_eq!(v.kind, VerdictKind::Pass, "{v:?}");
        // Exactly at the bound: 1 of 100 = 1%.
        let v = judge(&cfg, &stats(100, 1, 5), &stats(300, 0, 5));
        assert_eq!(v.kind, VerdictKind::Pass, "{v:?}");
        let v = judge(&cfg, &stats(99, 1, 5), &stats(300, 0, 5));
        assert_eq!(v.kind, VerdictKind::Fail, "{v:?}");
        assert!(v.reasons[0].contains("above --max-error-rate 1%"), "{v:?}");
    }

    #[test]
    fn twenty_percent_errors_fail_and_all_errors_fail() {
        let cfg = AnalysisConfig::default();
        let v = judge(&cfg, &stats(100, 20, 5), &stats(300, 0, 5));
        assert_eq!(v.kind, VerdictKind::Fail);
        assert!(
            v.reasons[0].starts_with("5xx ratio 20% (20 of 100)"),
            "{v:?}"
        );
        assert!(
            v.reasons[1].contains("worse than the live version's 0%"),
            "{v:?}"
        );
        let v = judge(&cfg, &stats(50, 50, 5), &stats(50, 50, 5));
        assert_eq!(v.kind, VerdictKind::Fail);
        // Both equally bad: only the absolute bound fails.
        assert_eq!(v.reasons.len(), 1, "{v:?}");
    }

    #[test]
    fn margin_compares_with_the_live_version() {
        let cfg = AnalysisConfig {
            max_error_ppm: 100_000,
            error_margin_ppm: 10_000,
            ..AnalysisConfig::default()
        };
        // 5% against the live 4%: within the 1-point margin.
        assert_eq!(
            judge(&cfg, &stats(100, 5, 1), &stats(100, 4, 1)).kind,
            VerdictKind::Pass
        );
        let v = judge(&cfg, &stats(100, 6, 1), &stats(100, 4, 1));
        assert_eq!(v.kind, VerdictKind::Fail);
        assert!(v.reasons[0].contains("--error-rate-margin 1%"), "{v:?}");
        // A live version with too few requests is not compared, and that is said.
        let v = judge(&cfg, &stats(100, 6, 1), &stats(3, 0, 1));
        assert_eq!(v.kind, VerdictKind::Pass);
        assert!(v.reasons[0].contains("not compared"), "{v:?}");
    }

    #[test]
    fn too_little_traffic_follows_the_policy() {
        let mut cfg = AnalysisConfig::default();
        let v = judge(&cfg, &stats(19, 0, 1), &stats(1000, 0, 1));
        assert_eq!(v.kind, VerdictKind::NoTrafficFail);
        assert!(!v.kind.passed());
        assert!(v.reasons[0].contains("19 requests"), "{v:?}");
        cfg.no_traffic = AnalysisNoTraffic::Pass;
        let v = judge(&cfg, &VersionStats::empty(), &VersionStats::empty());
        assert_eq!(v.kind, VerdictKind::NoTrafficPass);
        assert!(v.kind.passed());
        // min_requests 0 still needs one request.
        cfg.min_requests = 0;
        cfg.no_traffic = AnalysisNoTraffic::Fail;
        assert_eq!(
            judge(&cfg, &VersionStats::empty(), &stats(5, 0, 1)).kind,
            VerdictKind::NoTrafficFail
        );
        assert_eq!(
            judge(&cfg, &stats(1, 0, 1), &VersionStats::empty()).kind,
            VerdictKind::Pass
        );
    }

    #[test]
    fn latency_bounds_absolute_and_relative() {
        let cfg = AnalysisConfig {
            max_p99: Some(Duration::from_millis(100)),
            max_p99_ratio_milli: Some(2000),
            ..AnalysisConfig::default()
        };
        assert_eq!(
            judge(&cfg, &stats(50, 0, 100), &stats(50, 0, 50)).kind,
            VerdictKind::Pass
        );
        let v = judge(&cfg, &stats(50, 0, 101), &stats(50, 0, 80));
        assert_eq!(v.kind, VerdictKind::Fail);
        assert!(v.reasons[0].contains("above --max-p99 100ms"), "{v:?}");
        // Ratio: 2 × 30 ms + 10 ms slack = 70 ms.
        assert_eq!(
            judge(&cfg, &stats(50, 0, 70), &stats(50, 0, 30)).kind,
            VerdictKind::Pass
        );
        let v = judge(&cfg, &stats(50, 0, 71), &stats(50, 0, 30));
        assert_eq!(v.kind, VerdictKind::Fail);
        assert!(v.reasons[0].contains("2×"), "{v:?}");
        // Fast apps: a few milliseconds over a tiny live p99 is noise.
        assert_eq!(
            judge(&cfg, &stats(50, 0, 8), &stats(50, 0, 1)).kind,
            VerdictKind::Pass
        );
    }

    #[test]
    fn instances_for_a_share() {
        // 10% next to 9 live instances: 1; 50%: as many as live; capped at the full count.
        assert_eq!(candidate_instances(10, 9, 9), 1);
        assert_eq!(candidate_instances(50, 4, 4), 4);
        assert_eq!(candidate_instances(90, 4, 4), 4);
        assert_eq!(candidate_instances(25, 4, 4), 2);
        assert_eq!(candidate_instances(1, 4, 4), 1);
        assert_eq!(candidate_instances(100, 4, 6), 6);
        assert_eq!(candidate_instances(10, 0, 3), 1);
        assert_eq!(candidate_instances(99, u32::MAX, 0), 1);
        assert_eq!(share_percent(2, 4), 33);
        assert_eq!(share_percent(1, 9), 10);
        assert_eq!(share_percent(0, 0), 0);
    }

    #[test]
    fn canary_steps_are_checked_and_end_at_100() {
        assert_eq!(canary_steps(&[10, 50]), Ok(vec![10, 50, 100]));
        assert_eq!(canary_steps(&[25, 100]), Ok(vec![25, 100]));
        assert_eq!(canary_steps(&[100]), Ok(vec![100]));
        assert!(canary_steps(&[]).is_err());
        assert!(canary_steps(&[0, 10]).is_err());
        assert!(canary_steps(&[10, 150]).is_err());
        let e = canary_steps(&[50, 10]).unwrap_err();
        assert!(e.contains("50 then 10"), "{e}");
        assert!(canary_steps(&[10, 10]).is_err());
    }

    #[test]
    fn ppm_formats_and_rounds_up() {
        assert_eq!(fmt_ppm(10_000), "1%");
        assert_eq!(fmt_ppm(5_000), "0.5%");
        assert_eq!(fmt_ppm(0), "0%");
        assert_eq!(fmt_ppm(333_334), "33.33%");
        assert_eq!(stats(3, 1, 1).error_ppm(), 333_334);
        assert_eq!(stats(0, 0, 1).error_ppm(), 0);
    }

    #[test]
    fn stats_serialize_with_rate_and_p99_in_ms() {
        let j = serde_json::to_string(&stats(4, 1, 12)).unwrap();
        assert_eq!(
            j,
            r#"{"requests":4,"errors_5xx":1,"error_rate":0.25,"p99_ms":12,"source":"timers"}"#
        );
    }
}
