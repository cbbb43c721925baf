//! The platform's own words about an app being deployed, as `cf push` shows them: the staging
//! output streamed while a build stages, and the last lines of the new app (or of the new
//! instances of a rolling or canary deployment) when it fails, read before the rollback
//! deletes it. Both come from log-cache through [`CfApi::app_log`](super::api::CfApi::app_log).
//!
//! What lives here is pure: the read cursor that neither repeats nor loses records between two
//! polls ([`LogCursor`]), which lines are shown and how ([`shown_line`], [`is_telling`]), and
//! what the whole deploy remembers: that log-cache is not there, and where this run's records
//! of a live app begin ([`LogAccess`]). The reads themselves are in `execute/logs.rs`.
//!
//! Where a run's records begin: all of them for an app the run created (a candidate, a first
//! deploy). For a live app (rolling, canary) the records after its newest one just before the
//! build starts, read from log-cache itself so that the client's clock does not matter; the
//! last lines of a failed deployment are read from there too (they include this run's staging
//! output). Records are not told apart by process: only by time.
//!
//! Depends on: deploy::{api, event}. Must not: do I/O.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use super::api::{AppGuid, LogEntry, LogQuery, LogRecord};
use super::event::LogLine;

/// Records read at most by one read while a build stages.
pub(crate) const STREAM_LIMIT: u32 = 1000;

/// Reads at most per poll while a build stages: a full answer is followed by the next page at
/// once (a live app under traffic writes router lines between the staging lines); what is
/// still left is read at the next poll, the cursor goes on from the last record read.
pub(crate) const STREAM_PAGES: usize = 4;

/// Records read for the last lines of a failed app (log-cache's largest answer); the telling
/// ones among them are kept.
pub(crate) const LAST_READ_LIMIT: u32 = 1000;

/// How far back the newest record of a live app is looked for before its build starts: the
/// records after it are this run's.
pub(crate) const BASELINE_WINDOW: Duration = Duration::from_secs(600);

/// Lines shown at most when an app failed.
pub(crate) const LAST_LINES: usize = 40;

/// Bytes of one shown line at most (the rest is cut, and said so).
pub(crate) const MAX_LINE_BYTES: usize = 4096;

/// How long one log-cache read may take before it is given up (until the next poll): a slow
/// log-cache must not slow the staging wait nor hold up a rollback.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How far ahead of the platform's clock the client's may be for the records of a live app
/// (rolling, canary) to count as this run's, when the platform's own time of the run's start
/// is not known: older records belong to earlier runs.
pub(crate) const LOG_SKEW: Duration = Duration::from_secs(2);

/// What a deploy learnt about log-cache, shared by the per-app runs of a rolling deploy:
/// whether it answered "not here" (absent, 403, 404, 501; then it is said once and never asked
/// again), and where each live app's records of this run begin (by the platform's clock).
#[derive(Debug, Default)]
pub struct LogAccess {
    gone: AtomicBool,
    begun: Mutex<BTreeMap<AppGuid, SystemTime>>,
}

impl LogAccess {
    /// Records that this run's records of app `guid` begin at `at`.
    pub(crate) fn begin(&self, guid: &AppGuid, at: SystemTime) {
        if let Ok(mut b) = self.begun.lock() {
            b.insert(guid.clone(), at);
        }
    }

    /// Where this run's records of app `guid` begin, when [`LogAccess::begin`] said so.
    pub(crate) fn begun(&self, guid: &AppGuid) -> Option<SystemTime> {
        self.begun.lock().ok().and_then(|b| b.get(guid).copied())
    }

    /// log-cache was found missing earlier in this deploy.
    pub(crate) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// Records that log-cache is missing; true only the first time (the caller warns then).
    pub(crate) fn mark_gone(&self) -> bool {
        !self.gone.swap(true, Ordering::Relaxed)
    }
}

/// The position of a log stream: the time of the newest record read and the records read at
/// exactly that time. log-cache's `start_time` is inclusive, so the next read starts at that
/// time again and the records already seen there are skipped: none is repeated, and none
/// written at the same nanosecond after the read is lost.
#[derive(Debug, Clone)]
pub(crate) struct LogCursor {
    since: SystemTime,
    seen: Vec<(String, LogEntry)>,
}

impl LogCursor {
    /// A cursor reading the records at or after `since`.
    pub(crate) fn new(since: SystemTime) -> Self {
        LogCursor {
            since,
            seen: Vec::new(),
        }
    }

    /// The next read: log lines from the cursor on, oldest first, at most `limit`.
    pub(crate) fn query(&self, limit: u32) -> LogQuery {
        LogQuery {
            since: self.since,
            lines: true,
            requests: false,
            limit,
            newest: false,
        }
    }

    /// Takes the answer of [`LogCursor::query`]`(limit)`: returns the records not seen
    /// before, oldest first, and moves the cursor past them. A full answer whose records all
    /// share the cursor's time (more than `limit` at one nanosecond) moves it one nanosecond
    /// on, so that the stream cannot stick there.
    pub(crate) fn accept(&mut self, mut records: Vec<LogRecord>, limit: u32) -> Vec<LogRecord> {
        let full = u32::try_from(records.len()).unwrap_or(u32::MAX) >= limit;
        records.sort_by_key(|r| r.at);
        let mut fresh = Vec::new();
        for r in records {
            if r.at < self.since {
                continue;
            }
            let key = (r.instance.clone(), r.entry.clone());
            if r.at > self.since {
                self.since = r.at;
                self.seen.clear();
            } else if self.seen.contains(&key) {
                continue;
            }
            self.seen.push(key);
            fresh.push(r);
        }
        if full && self.seen.len() >= usize::try_from(limit).unwrap_or(usize::MAX) {
            self.since += Duration::from_nanos(1);
            self.seen.clear();
        }
        fresh
    }
}

/// A log line as shown (`None` for a router request record).
pub(crate) fn shown_line(r: &LogRecord) -> Option<LogLine> {
    let LogEntry::Line {
        source_type,
        stderr,
        text,
    } = &r.entry
    else {
        return None;
    };
    let tag = if source_type.is_empty() {
        "LOG"
    } else {
        source_type.as_str()
    };
    let source = if r.instance.is_empty() {
        tag.to_string()
    } else {
        format!("{tag}/{}", r.instance)
    };
    Some(LogLine {
        source: clean(&source, 64),
        stderr: *stderr,
        text: clean(text, MAX_LINE_BYTES),
    })
}

/// Whether the record is staging output (`STG`), which `cf push` streams while it stages.
pub(crate) fn is_staging(r: &LogRecord) -> bool {
    matches!(&r.entry, LogEntry::Line { source_type, .. } if tag_is(source_type, "STG"))
}

/// Whether the record tells why an app failed: staging output, the cell's and Cloud
/// Controller's lines (container lifecycle, crashes), and what the app wrote to stderr.
/// Router lines and the app's stdout (mostly access logs) are left out.
pub(crate) fn is_telling(r: &LogRecord) -> bool {
    match &r.entry {
        LogEntry::Line {
            source_type,
            stderr,
            ..
        } => {
            ["STG", "CELL", "API"]
                .iter()
                .any(|t| tag_is(source_type, t))
                || (tag_is(source_type, "APP") && *stderr)
        }
        LogEntry::Request { .. } => false,
    }
}

/// `source_type` is `tag` or one of its sub-sources (`CELL/SSHD`, `APP/PROC/WEB`).
fn tag_is(source_type: &str, tag: &str) -> bool {
    let s = source_type.trim();
    s.get(..tag.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(tag))
        && matches!(s.as_bytes().get(tag.len()), None | Some(b'/'))
}

/// The newest [`LAST_LINES`] telling lines of `records` (oldest first), as shown.
pub(crate) fn last_lines(records: &[LogRecord]) -> Vec<LogLine> {
    let telling: Vec<LogLine> = records
        .iter()
        .filter(|r| is_telling(r))
        .filter_map(shown_line)
        .collect();
    let skip = telling.len().saturating_sub(LAST_LINES);
    telling.into_iter().skip(skip).collect()
}

/// `s` safe to print: control characters (terminal escapes among them) replaced, at most
/// `max` bytes (cut at a character boundary, with a note).
fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let c = if c.is_control() && c != '\t' {
            '\u{FFFD}'
        } else {
            c
        };
        if out.len() + c.len_utf8() > max {
            out.push_str(" [line cut]");
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ns: u64, source: &str, text: &str) -> LogRecord {
        LogRecord {
            at: SystemTime::UNIX_EPOCH + Duration::from_nanos(ns),
            instance: "0".into(),
            entry: LogEntry::Line {
                source_type: source.into(),
                stderr: false,
                text: text.into(),
            },
        }
    }

    fn texts(rs: &[LogRecord]) -> Vec<String> {
        rs.iter().filter_map(shown_line).map(|l| l.text).collect()
    }

    #[test]
    fn the_cursor_neither_repeats_nor_loses_records_at_the_same_time() {
        let mut c = LogCursor::new(SystemTime::UNIX_EPOCH);
        let first = vec![
            rec(10, "STG", "a"),
            rec(20, "STG", "b"),
            rec(20, "STG", "c"),
        ];
        assert_eq!(texts(&c.accept(first, 100)), ["a", "b", "c"]);
        // log-cache's start_time is inclusive: the records at 20 come again, with one
        // written at the same nanosecond after the first read.
        assert_eq!(
            c.query(100).since,
            SystemTime::UNIX_EPOCH + Duration::from_nanos(20)
        );
        let second = vec![
            rec(20, "STG", "b"),
            rec(20, "STG", "c"),
            rec(20, "STG", "d"),
            rec(30, "STG", "e"),
        ];
        assert_eq!(texts(&c.accept(second, 100)), ["d", "e"]);
        assert_eq!(
            texts(&c.accept(vec![rec(30, "STG", "e")], 100)),
            Vec::<String>::new()
        );
        assert_eq!(texts(&c.accept(Vec::new(), 100)), Vec::<String>::new());
        // Out of order and older than the cursor: sorted, and the old one is dropped.
        let third = vec![
            rec(50, "STG", "g"),
            rec(40, "STG", "f"),
            rec(5, "STG", "old"),
        ];
        assert_eq!(texts(&c.accept(third, 100)), ["f", "g"]);
    }

    #[test]
    fn the_same_line_of_two_instances_at_one_time_is_two_records() {
        let mut c = LogCursor::new(SystemTime::UNIX_EPOCH);
        let mut other = rec(10, "CELL", "x");
        other.instance = "1".into();
        let got = c.accept(vec![rec(10, "CELL", "x"), other.clone()], 10);
        assert_eq!(got.len(), 2);
        assert!(c.accept(vec![other], 10).is_empty());
    }

    #[test]
    fn a_full_page_at_one_time_moves_the_cursor_on() {
        let mut c = LogCursor::new(SystemTime::UNIX_EPOCH);
        let page = vec![rec(10, "STG", "a"), rec(10, "STG", "b")];
        assert_eq!(c.accept(page.clone(), 2).len(), 2);
        assert_eq!(
            c.query(2).since,
            SystemTime::UNIX_EPOCH + Duration::from_nanos(11)
        );
        assert!(c.accept(Vec::new(), 2).is_empty());
        // A page that is not full stays at its last time.
        let mut c = LogCursor::new(SystemTime::UNIX_EPOCH);
        assert_eq!(c.accept(page, 3).len(), 2);
        assert_eq!(
            c.query(3).since,
            SystemTime::UNIX_EPOCH + Duration::from_nanos(10)
        );
    }

    #[test]
    fn telling_lines_are_staging_cell_api_and_app_stderr() {
        let mut err = rec(5, "APP/PROC/WEB", "boom");
        if let LogEntry::Line { stderr, .. } = &mut err.entry {
            *stderr = true;
        }
        let records = vec![
            rec(1, "STG", "staging"),
            rec(2, "RTR", "GET / 200"),
            rec(3, "APP/PROC/WEB", "listening"),
            rec(4, "CELL", "creating container"),
            err,
            rec(6, "API", "App instance exited"),
            rec(7, "CELL/SSHD", "sshd"),
            rec(8, "CELLAR", "not a cell"),
            LogRecord {
                at: SystemTime::UNIX_EPOCH,
                instance: "0".into(),
                entry: LogEntry::Request {
                    status: 200,
                    duration: Duration::from_millis(1),
                },
            },
        ];
        assert_eq!(
            texts(
                &records
                    .iter()
                    .filter(|r| is_telling(r))
                    .cloned()
                    .collect::<Vec<_>>()
            ),
            [
                "staging",
                "creating container",
                "boom",
                "App instance exited",
                "sshd"
            ]
        );
        assert!(is_staging(&records[0]));
        assert!(!is_staging(&records[3]));
        let lines = last_lines(&records);
        assert_eq!(lines[2].source, "APP/PROC/WEB/0");
        assert!(lines[2].stderr);
    }

    #[test]
    fn last_lines_keep_the_newest_forty() {
        let records: Vec<LogRecord> = (0..100).map(|i| rec(i, "CELL", &i.to_string())).collect();
        let lines = last_lines(&records);
        assert_eq!(lines.len(), LAST_LINES);
        assert_eq!(lines[0].text, "60");
        assert_eq!(lines[39].text, "99");
    }

    #[test]
    fn shown_lines_are_bounded_and_free_of_terminal_escapes() {
        let long = "é".repeat(MAX_LINE_BYTES);
        let l = shown_line(&rec(1, "APP/PROC/WEB", &long)).unwrap();
        assert!(l.text.len() <= MAX_LINE_BYTES + " [line cut]".len());
        assert!(l.text.ends_with(" [line cut]"));
        let l = shown_line(&rec(1, "STG", "\u{1b}[2Jred\u{7}\tok")).unwrap();
        assert_eq!(l.text, "\u{FFFD}[2Jred\u{FFFD}\tok");
        let mut r = rec(1, "", "x");
        r.instance = String::new();
        assert_eq!(shown_line(&r).unwrap().source, "LOG");
    }

    #[test]
    fn log_access_says_gone_once() {
        let a = LogAccess::default();
        assert!(!a.is_gone());
        assert!(a.mark_gone());
        assert!(!a.mark_gone());
        assert!(a.is_gone());
    }
}
