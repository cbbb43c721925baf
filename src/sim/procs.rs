//! The processes of process-lifecycle instances, and what the simulator leaves in its work
//! root when it cannot clean up after itself.
//!
//! # The guard
//! On Linux every instance process (`sh -c <command>`) runs under a guard: the child that
//! `Command::spawn` forks splits in two before exec. One half goes on to exec the command in a
//! process group of its own; the other stays behind as the guard, the process the simulator
//! sees as the instance (its pid, its exit status). The guard
//! * is a child subreaper (`PR_SET_CHILD_SUBREAPER`), so whatever the command starts and
//!   leaves behind (a `sh -c` wrapper's background jobs, double-forked daemons) becomes its
//!   child once its own parent is gone;
//! * relays SIGTERM (also SIGINT and SIGHUP) to the command's process group: the graceful
//!   stop, the simulator waits `kill_grace` for the instance to end;
//! * on SIGUSR2 ([`Guarded::end_now`]) ends everything at once;
//! * gets SIGUSR1 as its parent-death signal (`PR_SET_PDEATHSIG`) and re-checks that its
//!   parent is still the simulator (the signal also comes when only the thread that started
//!   it ends, and the simulator may already have died before the signal was armed); when the
//!   simulator is gone it ends everything at once;
//! * when the command's main process exits, SIGKILLs the rest of the process group and every
//!   process that was handed to it, reaps them, and exits as the command did (same exit code,
//!   or the same signal).
//!
//! The command's process also dies with its guard (`PR_SET_PDEATHSIG(SIGKILL)`, armed in the
//! single-threaded guard, so it is exact). So instances end with the simulator however it
//! ends: a graceful stop, SIGKILL, the OOM killer, a panic. The guard makes only
//! async-signal-safe calls (it is a fork of a multi-threaded process that never execs).
//! Elsewhere the command runs without a guard in its own process group, killed on drop.
//!
//! # What a simulator that did not stop leaves behind
//! Each simulator's work directory (`cf-zdt-sim-*` in the work root, the temp dir) holds an
//! `owner` file (pid, start time and boot id of the simulator's process) and one record per
//! running instance process (`processes/<instance guid>`: the guard's pid and start time).
//! Every instance process and its descendants carry `CF_INSTANCE_GUID=<instance guid>` in
//! their environment. A simulator that starts [`sweep`]s the work root: a work directory whose
//! owner is gone (another boot, no such process, or a process with another start time) and
//! that belongs to the current user is removed, after every process that a record names
//! (same pid *and* start time) or that carries one of its records' instance GUIDs has been
//! SIGKILLed. Directories without an owner file, of a live owner, of another user, or not
//! named `cf-zdt-sim-*` are never touched; neither is any other process.
//!
//! Tasks are instances too: they start through [`Guarded::spawn`] with a record of their own
//! (named by the task's GUID, which they also carry as `CF_INSTANCE_GUID`).
//!
//! Depends on: libc, tokio::process. Must not: touch a file or a process that no record ties
//! to a simulator that is gone.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Name prefix of the simulators' work directories in the work root.
pub(crate) const WORK_PREFIX: &str = "cf-zdt-sim-";
/// The file naming a work directory's simulator process.
const OWNER_FILE: &str = "owner";
/// The folder of the instance process records.
const RECORDS_DIR: &str = "processes";
/// The variable that marks an instance's whole process tree (Diego sets it too).
pub(crate) const INSTANCE_GUID_VAR: &str = "CF_INSTANCE_GUID";
/// How long a sweep keeps ending what it found before it gives up on a directory's processes.
const SWEEP_BOUND: Duration = Duration::from_secs(3);

/// One process, as `/proc` names it: a pid alone can be reused, a pid with its start time
/// (clock ticks after boot) cannot within one boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcId {
    /// The process id.
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`.
    pub start: u64,
}

impl ProcId {
    /// The running process `pid` (`None` when there is none, it has exited, or `/proc` is not
    /// there).
    pub(crate) fn of(pid: u32) -> Option<ProcId> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (state, start) = parse_stat(&text)?;
        // A zombie has exited; only its parent's wait is missing.
        (!matches!(state, 'Z' | 'X')).then_some(ProcId { pid, start })
    }

    /// This process.
    pub(crate) fn current() -> Option<ProcId> {
        ProcId::of(std::process::id())
    }

    /// Whether this very process still runs.
    pub(crate) fn is_running(&self) -> bool {
        ProcId::of(self.pid) == Some(*self)
    }
}

/// The state and start time in a `/proc/<pid>/stat` line. The command name (field 2) is in
/// parentheses and may itself contain spaces and parentheses, so fields are counted from the
/// last `)`.
fn parse_stat(text: &str) -> Option<(char, u64)> {
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 4..=21 come between the state (3) and the start time (22).
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The kernel's id of the current boot (start times count from it).
fn boot_id() -> Option<String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = text.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// The simulator process a work directory belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    /// The simulator's process.
    pub proc: ProcId,
    /// The boot it ran in.
    pub boot: String,
}

impl Owner {
    /// This process in this boot (`None` without `/proc`).
    pub(crate) fn current() -> Option<Owner> {
        Some(Owner {
            proc: ProcId::current()?,
            boot: boot_id()?,
        })
    }

    fn render(&self) -> String {
        format!(
            "pid {}\nstart {}\nboot {}\n",
            self.proc.pid, self.proc.start, self.boot
        )
    }

    fn parse(text: &str) -> Option<Owner> {
        let (pid, start, boot) = (
            field(text, "pid")?,
            field(text, "start")?,
            field(text, "boot")?,
        );
        Some(Owner {
            proc: ProcId {
                pid: pid.parse().ok()?,
                start: start.parse().ok()?,
            },
            boot: boot.to_string(),
        })
    }

    /// Whether the owner has certainly ended: another boot, or its process is gone. `None`
    /// when that cannot be told (no `/proc`).
    fn is_gone(&self) -> Option<bool> {
        let boot = boot_id()?;
        Some(boot != self.boot || !self.proc.is_running())
    }
}

/// The value of the `key value` line of a record.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|v| v.strip_prefix(' '))
            .map(str::trim)
    })
}

/// Marks `work_dir` as this process's: writes its owner file (atomically, so that a sweep
/// never reads half of one) and creates the records folder. Without `/proc` there is nothing
/// to write: such a directory is never swept.
///
/// # Errors
/// The owner file or the records folder cannot be written.
pub(crate) fn claim(work_dir: &Path) -> io::Result<()> {
    let Some(owner) = Owner::current() else {
        return Ok(());
    };
    std::fs::create_dir_all(work_dir.join(RECORDS_DIR))?;
    let tmp = work_dir.join(format!("{OWNER_FILE}.tmp"));
    std::fs::write(&tmp, owner.render())?;
    std::fs::rename(&tmp, work_dir.join(OWNER_FILE))
}

/// Whether `guid` can name a record file (the simulator's GUIDs always can).
fn valid_guid(guid: &str) -> bool {
    !guid.is_empty()
        && guid.len() <= 64
        && guid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Writes the record of instance `guid`'s process `pid`; returns its path. Best effort: a
/// missing record only means that a later sweep finds the processes by their
/// `CF_INSTANCE_GUID` alone.
fn write_record(work_dir: &Path, guid: &str, pid: u32) -> Option<PathBuf> {
    let dir = work_dir.join(RECORDS_DIR);
    if !valid_guid(guid) || !dir.is_dir() {
        return None;
    }
    let id = ProcId::of(pid)?;
    let path = dir.join(guid);
    match std::fs::write(&path, format!("pid {}\nstart {}\n", id.pid, id.start)) {
        Ok(()) => Some(path),
        Err(e) => {
            tracing::debug!("cannot record process {pid} in {}: {e}", path.display());
            None
        }
    }
}

/// The records of a work directory: (instance guid, its guard process).
fn read_records(work_dir: &Path) -> Vec<(String, Option<ProcId>)> {
    let Ok(entries) = std::fs::read_dir(work_dir.join(RECORDS_DIR)) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let guid = e
                .file_name()
                .to_str()
                .filter(|g| valid_guid(g))?
                .to_string();
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let id = (|| {
                Some(ProcId {
                    pid: field(&text, "pid")?.parse().ok()?,
                    start: field(&text, "start")?.parse().ok()?,
                })
            })();
            Some((guid, id))
        })
        .collect()
}

/// What a sweep removed of one simulator that did not stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swept {
    /// The work directory, now removed (unless `removed` is false).
    pub dir: PathBuf,
    /// The pid the simulator had.
    pub owner_pid: u32,
    /// Processes that were still running and were ended.
    pub ended: usize,
    /// Whether the directory could be removed.
    pub removed: bool,
}

impl std::fmt::Display for Swept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = if self.ended == 1 { "" } else { "es" };
        write!(
            f,
            "cleaned up after a simulator that did not stop (pid {}): ended {} process{s}, {} {}",
            self.owner_pid,
            self.ended,
            if self.removed {
                "removed"
            } else {
                "could not remove"
            },
            self.dir.display()
        )
    }
}

/// Ends what simulators that did not stop left in `root` (see the module doc): their
/// instance processes, then their work directories. Blocks for up to a few seconds per such
/// directory; returns one entry per directory.
pub(crate) fn sweep(root: &Path) -> Vec<Swept> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut swept = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let named = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(WORK_PREFIX));
        let dir = entry.path();
        // `symlink_metadata`: a link named like a work directory is not one.
        let ours = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && owned_by_us(&m));
        if !named || !ours {
            continue;
        }
        let Some(owner) = std::fs::read_to_string(dir.join(OWNER_FILE))
            .ok()
            .and_then(|t| Owner::parse(&t))
        else {
            continue;
        };
        if owner.is_gone() != Some(true) {
            continue;
        }
        swept.push(sweep_dir(&dir, &owner));
    }
    swept
}

#[cfg(unix)]
fn owned_by_us(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    m.uid() == unsafe { libc::geteuid() }
}

#[cfg(not(unix))]
fn owned_by_us(_: &std::fs::Metadata) -> bool {
    false
}

/// Ends the processes of a dead owner's work directory, then removes it.
fn sweep_dir(dir: &Path, owner: &Owner) -> Swept {
    let records = read_records(dir);
    let guards: Vec<ProcId> = records.iter().filter_map(|(_, id)| *id).collect();
    let markers: Vec<String> = records
        .iter()
        .map(|(guid, _)| format!("{INSTANCE_GUID_VAR}={guid}"))
        .collect();
    let mut ended = std::collections::BTreeSet::new();
    let deadline = Instant::now() + SWEEP_BOUND;
    loop {
        let found = leftovers(&guards, &markers);
        if found.is_empty() {
            break;
        }
        for id in &found {
            if kill_exactly(*id) {
                ended.insert((id.pid, id.start));
            }
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                "processes of {} are still running after {SWEEP_BOUND:?}",
                dir.display()
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let removed = match std::fs::remove_dir_all(dir) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("cannot remove {}: {e}", dir.display());
            false
        }
    };
    Swept {
        dir: dir.to_path_buf(),
        owner_pid: owner.proc.pid,
        ended: ended.len(),
        removed,
    }
}

/// Running processes that are one of `guards` or carry one of `markers` in their environment
/// (only the current user's environments are readable).
fn leftovers(guards: &[ProcId], markers: &[String]) -> Vec<ProcId> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(ProcId::of)
        .filter(|id| guards.contains(id) || carries_marker(id.pid, markers))
        .collect()
}

/// Whether process `pid`'s environment holds one of `markers` (`NAME=value`) exactly.
fn carries_marker(pid: u32, markers: &[String]) -> bool {
    if markers.is_empty() {
        return false;
    }
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    environ
        .split(|b| *b == 0)
        .any(|var| markers.iter().any(|m| m.as_bytes() == var))
}

/// SIGKILLs `id` if that very process still runs; whether the signal was sent.
fn kill_exactly(id: ProcId) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(id.pid) else {
            return false;
        };
        if pid <= 1 || !id.is_running() {
            return false;
        }
        // SAFETY: kill(2) has no memory-safety preconditions. `pid` > 1 names one process
        // (never a group or "every process"), checked just above to be the recorded one; the
        // window in which it could exit and its pid be reused is a few microseconds.
        unsafe { libc::kill(pid, libc::SIGKILL) == 0 }
    }
    #[cfg(not(unix))]
    {
        let _ = id;
        false
    }
}

/// An instance process: on Linux its guard (see the module doc), elsewhere the command itself
/// in a process group of its own. Dropping it ends the process and everything it started.
pub(crate) struct Guarded {
    child: tokio::process::Child,
    /// The record to remove once the process has been waited for.
    record: Option<PathBuf>,
}

impl Guarded {
    /// Starts `command` (program, arguments, directory, environment and stdio already set)
    /// under a guard, and records it in `work_dir` as instance `guid`'s process.
    ///
    /// # Errors
    /// The process cannot be started (the program cannot be executed, no process can be
    /// forked).
    pub(crate) fn spawn(
        command: &mut tokio::process::Command,
        work_dir: &Path,
        guid: &str,
    ) -> io::Result<Guarded> {
        #[cfg(unix)]
        command.process_group(0);
        #[cfg(target_os = "linux")]
        {
            let sim = libc::pid_t::try_from(std::process::id())
                .map_err(|_| io::Error::other("the process id does not fit a pid_t"))?;
            // SAFETY: the closure runs in the forked child before exec, where only
            // async-signal-safe calls are allowed; `guard::split` makes only such calls (no
            // allocation, no locks, no panics) and either returns (in the process that execs
            // the command) or ends with `_exit` (in the guard).
            unsafe {
                command.pre_exec(move || guard::split(sim));
            }
        }
        #[cfg(not(target_os = "linux"))]
        command.kill_on_drop(true);
        let child = command.spawn()?;
        let record = child.id().and_then(|pid| write_record(work_dir, guid, pid));
        Ok(Guarded { child, record })
    }

    /// The command's stdout, when piped (once).
    pub(crate) fn take_stdout(&mut self) -> Option<tokio::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// The command's stderr, when piped (once).
    pub(crate) fn take_stderr(&mut self) -> Option<tokio::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// Asks the process to stop: SIGTERM to the command's process group.
    pub(crate) fn terminate(&self) {
        #[cfg(target_os = "linux")]
        self.signal(false, libc::SIGTERM);
        #[cfg(all(unix, not(target_os = "linux")))]
        self.signal(true, libc::SIGTERM);
    }

    /// Ends the process and everything it started at once (SIGKILL).
    pub(crate) fn end_now(&self) {
        #[cfg(target_os = "linux")]
        self.signal(false, guard::END_NOW);
        #[cfg(all(unix, not(target_os = "linux")))]
        self.signal(true, libc::SIGKILL);
    }

    /// Last resort when the guard itself does not end: SIGKILL to the guard (its command gets
    /// its parent-death SIGKILL; descendants in other groups may survive until a sweep).
    pub(crate) fn kill_guard(&mut self) {
        if let Err(e) = self.child.start_kill() {
            tracing::debug!("cannot kill the guard: {e}");
        }
    }

    /// Sends `sig` to the process (to its group with `group`), unless it has been waited for.
    #[cfg(unix)]
    fn signal(&self, group: bool, sig: libc::c_int) {
        let Some(pid) = self
            .child
            .id()
            .and_then(|p| libc::pid_t::try_from(p).ok())
            .filter(|p| *p > 1)
        else {
            return;
        };
        let target = if group { -pid } else { pid };
        // SAFETY: kill(2) has no memory-safety preconditions. `pid` > 1 is a child of this
        // process that has not been reaped yet (`id()` is `Some` until `wait` has seen it
        // exit), so the pid (and, negated, the group it leads: `process_group(0)`) still
        // names it, never "every process" (-1) or our own group (0).
        if unsafe { libc::kill(target, sig) } != 0 {
            tracing::debug!("signal {sig} to {target} failed");
        }
    }

    /// Waits for the process to end (on Linux: the command and everything it left, torn down
    /// by the guard); removes its record then.
    pub(crate) async fn wait(&mut self) -> io::Result<std::process::ExitStatus> {
        let status = self.child.wait().await?;
        if let Some(record) = self.record.take()
            && let Err(e) = std::fs::remove_file(&record)
        {
            tracing::debug!("cannot remove {}: {e}", record.display());
        }
        Ok(status)
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // Not waited for: end it; the guard (or tokio's orphan reaping) collects the rest.
        self.end_now();
    }
}

#[cfg(target_os = "linux")]
mod guard {
    //! The guard's half of the fork. Everything here runs in a child forked from a
    //! multi-threaded process that never execs: async-signal-safe libc calls only, no
    //! allocation, no locks, no panics.

    use std::io;

    use libc::{c_int, pid_t};

    /// Asks the guard to end everything now.
    pub(super) const END_NOW: c_int = libc::SIGUSR2;
    /// The guard's parent-death signal.
    const PARENT_GONE: c_int = libc::SIGUSR1;
    /// How long the guard keeps killing and reaping what the command left, in nanoseconds.
    const TEARDOWN_NS: i64 = 3_000_000_000;
    /// How often the guard looks at its parent when no signal comes, in nanoseconds.
    const PARENT_CHECK_NS: libc::c_long = 200_000_000;

    fn os_error() -> io::Error {
        io::Error::last_os_error()
    }

    /// Runs in the child `Command::spawn` forked, before exec. Returns `Ok` in the process
    /// that goes on to exec the command; in the other one becomes the guard of `sim`'s
    /// instance and never returns.
    ///
    /// # Safety
    /// Must run in a freshly forked child before exec (`pre_exec`).
    pub(super) unsafe fn split(sim: pid_t) -> io::Result<()> {
        // SAFETY (whole block): plain libc calls on stack values; see each comment for the
        // reasoning about pids.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in [
                libc::SIGTERM,
                libc::SIGINT,
                libc::SIGHUP,
                libc::SIGCHLD,
                PARENT_GONE,
                END_NOW,
            ] {
                libc::sigaddset(&mut set, sig);
            }
            // Blocked, then taken with sigtimedwait: no handler runs in the guard (the
            // inherited ones are the simulator's).
            let mut old: libc::sigset_t = std::mem::zeroed();
            if libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old) != 0 {
                return Err(os_error());
            }
            let on: libc::c_ulong = 1;
            if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, on, 0, 0, 0) != 0 {
                return Err(os_error());
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                PARENT_GONE as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(os_error());
            }
            let guard = libc::getpid();
            let app = libc::fork();
            if app < 0 {
                return Err(os_error());
            }
            if app == 0 {
                // The command: a process group of its own, dead with its guard. The
                // guard is single-threaded, so its parent-death signal is exact.
                libc::setpgid(0, 0);
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(os_error());
                }
                if libc::getppid() != guard {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                // The command starts with the signal mask the simulator's thread had.
                if libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) != 0 {
                    return Err(os_error());
                }
                return Ok(());
            }
            // Both sides set the group, so it exists before the guard may signal it (the
            // call fails harmlessly once the command has exec'd).
            libc::setpgid(app, app);
            // Among the inherited descriptors are the simulator's listening sockets and the
            // pipe on which `spawn` waits for the exec: the guard keeps only stdio.
            close_from(3);
            // The simulator may have died before the parent-death signal was armed.
            let orphaned = libc::getppid() != sim;
            run(sim, app, &set, orphaned)
        }
    }

    /// The guard's life: relays stop requests until the command exits, the simulator asks to
    /// end it now, or the simulator is gone; then tears everything down and exits like the
    /// command.
    unsafe fn run(sim: pid_t, app: pid_t, set: &libc::sigset_t, orphaned: bool) -> ! {
        // SAFETY (whole block): libc calls on stack values. `app` is this process's child
        // and is not reaped before `teardown`, so `-app` names its process group.
        unsafe {
            let mut end_now = orphaned;
            let pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: PARENT_CHECK_NS,
            };
            while !end_now && !has_exited(app) {
                reap_others(app);
                if libc::getppid() != sim {
                    break;
                }
                match libc::sigtimedwait(set, std::ptr::null_mut(), &pause) {
                    libc::SIGTERM | libc::SIGINT | libc::SIGHUP => {
                        libc::kill(-app, libc::SIGTERM);
                    }
                    END_NOW => end_now = true,
                    // SIGCHLD, the parent-death signal (checked above), a timeout, EINTR.
                    _ => {}
                }
            }
            let status = teardown(app);
            exit_like(status)
        }
    }

    /// Whether the command's process has exited, without reaping it (so that its pid keeps
    /// naming its process group).
    unsafe fn has_exited(app: pid_t) -> bool {
        // SAFETY (whole block): waitid on this process's child with a zeroed siginfo_t; with
        // WNOHANG, si_pid stays 0 when the child has not changed state.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let rc = libc::waitid(
                libc::P_PID,
                app as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            rc != 0 || info.si_pid() != 0
        }
    }

    /// Reaps the processes handed to the guard that have exited, except the command itself.
    unsafe fn reap_others(app: pid_t) {
        let mut pids = [0 as pid_t; 256];
        // SAFETY (whole block): waitpid on pids that are this process's children.
        unsafe {
            let n = children(&mut pids);
            for pid in pids.iter().take(n) {
                if *pid != app {
                    let mut st: c_int = 0;
                    libc::waitpid(*pid, &mut st, libc::WNOHANG);
                }
            }
        }
    }

    /// SIGKILLs the command's process group and every process handed to the guard, and
    /// reaps them, until none is left or the teardown bound has passed. Returns the
    /// command's wait status when it was reaped.
    unsafe fn teardown(app: pid_t) -> Option<c_int> {
        // SAFETY (whole block): libc calls on stack values. `-app` is signalled only while
        // `app` is unreaped (its pid still names its group); the pids from `children` are
        // unreaped children of this process (only this loop reaps), so none is reused.
        unsafe {
            let deadline = monotonic_ns().saturating_add(TEARDOWN_NS);
            let mut status = None;
            let mut pids = [0 as pid_t; 256];
            loop {
                if status.is_none() {
                    libc::kill(-app, libc::SIGKILL);
                }
                let n = children(&mut pids);
                for pid in pids.iter().take(n) {
                    libc::kill(*pid, libc::SIGKILL);
                }
                loop {
                    let mut st: c_int = 0;
                    let r = libc::waitpid(-1, &mut st, libc::WNOHANG);
                    if r == app {
                        status = Some(st);
                    }
                    if r > 0 {
                        continue;
                    }
                    if r < 0 && os_error().raw_os_error() == Some(libc::ECHILD) {
                        return status;
                    }
                    break;
                }
                if monotonic_ns() >= deadline {
                    return status;
                }
                let nap = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 5_000_000,
                };
                libc::nanosleep(&nap, std::ptr::null_mut());
            }
        }
    }

    /// Ends the guard the way the command ended: its exit code, or its signal.
    unsafe fn exit_like(status: Option<c_int>) -> ! {
        // SAFETY (whole block): libc calls on stack values; `_exit` skips every destructor
        // and atexit handler of the forked image, as it must.
        unsafe {
            match status {
                Some(st) if libc::WIFEXITED(st) => libc::_exit(libc::WEXITSTATUS(st)),
                Some(st) if libc::WIFSIGNALED(st) => {
                    let sig = libc::WTERMSIG(st);
                    // No core file of the guard for a command that dumped one.
                    let none = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    libc::setrlimit(libc::RLIMIT_CORE, &none);
                    libc::signal(sig, libc::SIG_DFL);
                    let mut one: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut one);
                    libc::sigaddset(&mut one, sig);
                    libc::sigprocmask(libc::SIG_UNBLOCK, &one, std::ptr::null_mut());
                    libc::kill(libc::getpid(), sig);
                    libc::_exit(128 + sig)
                }
                _ => libc::_exit(128 + libc::SIGKILL),
            }
        }
    }

    /// This process's children (`/proc/thread-self/children`; the guard has one thread), at
    /// most `out.len()` of them; 0 when the kernel does not offer the list.
    unsafe fn children(out: &mut [pid_t]) -> usize {
        let mut buf = [0u8; 4096];
        // SAFETY (whole block): open/read/close on a NUL-terminated literal and a stack
        // buffer whose length is passed.
        let len = unsafe {
            let fd = libc::open(
                c"/proc/thread-self/children".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return 0;
            }
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            libc::close(fd);
            n
        };
        let Ok(len) = usize::try_from(len) else {
            return 0;
        };
        parse_pids(buf.get(..len).unwrap_or(&[]), len == buf.len(), out)
    }

    /// Parses space-separated pids into `out`; with `truncated`, the last number may be cut
    /// and is dropped. Returns how many were written.
    pub(super) fn parse_pids(text: &[u8], truncated: bool, out: &mut [pid_t]) -> usize {
        let mut n = 0;
        let mut value: Option<pid_t> = None;
        for &b in text {
            if b.is_ascii_digit() {
                let d = pid_t::from(b - b'0');
                value = Some(value.unwrap_or(0).saturating_mul(10).saturating_add(d));
                continue;
            }
            if let Some(v) = value.take()
                && v > 1
                && let Some(slot) = out.get_mut(n)
            {
                *slot = v;
                n += 1;
            }
        }
        if let Some(v) = value
            && !truncated
            && v > 1
            && let Some(slot) = out.get_mut(n)
        {
            *slot = v;
            n += 1;
        }
        n
    }

    /// Closes every descriptor from `first` up.
    unsafe fn close_from(first: c_int) {
        // SAFETY (whole block): close_range/close on descriptor numbers; closing one that is
        // not open fails harmlessly.
        unsafe {
            if libc::syscall(
                libc::SYS_close_range,
                first as libc::c_uint,
                libc::c_uint::MAX,
                0,
            ) == 0
            {
                return;
            }
            let mut lim: libc::rlimit = std::mem::zeroed();
            let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                lim.rlim_cur.min(65_536) as c_int
            } else {
                1024
            };
            for fd in first..max {
                libc::close(fd);
            }
        }
    }

    /// CLOCK_MONOTONIC in nanoseconds.
    #[allow(
        clippy::useless_conversion,
        reason = "time_t and c_long are i32 on some 32-bit targets"
    )]
    unsafe fn monotonic_ns() -> i64 {
        // SAFETY (whole block): clock_gettime fills a stack timespec.
        unsafe {
            let mut ts: libc::timespec = std::mem::zeroed();
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
            i64::from(ts.tv_sec)
                .saturating_mul(1_000_000_000)
                .saturating_add(i64::from(ts.tv_nsec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_state_and_start_even_with_odd_command_names() {
        let line =
            "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(line), Some(('S', 987_654)));
        assert_eq!(parse_stat("12 (x) Z 1"), None);
        assert_eq!(parse_stat("garbage"), None);
        let me = ProcId::current().expect("/proc is there on Linux");
        assert!(me.is_running());
        let other = ProcId {
            start: me.start + 1,
            ..me
        };
        assert!(!other.is_running());
    }

    #[test]
    fn owner_files_round_trip_and_tell_a_gone_owner() {
        let me = Owner::current().expect("/proc is there on Linux");
        assert_eq!(Owner::parse(&me.render()), Some(me.clone()));
        assert_eq!(me.is_gone(), Some(false));
        let restarted = Owner {
            proc: ProcId {
                start: me.proc.start + 1,
                ..me.proc
            },
            ..me.clone()
        };
        assert_eq!(restarted.is_gone(), Some(true));
        let other_boot = Owner {
            boot: "another-boot".to_string(),
            ..me.clone()
        };
        assert_eq!(other_boot.is_gone(), Some(true));
        assert_eq!(Owner::parse("pid 1\nstart x\nboot b\n"), None);
        assert_eq!(Owner::parse("pid 1\nboot b\n"), None);
    }

    #[test]
    fn record_names_are_guids_only() {
        assert!(valid_guid("0f8b1c9e-1d2c-4c5b-9a7e-3f2d1c0b9a87"));
        for bad in ["", "../owner", "a/b", "a b", &"x".repeat(65)] {
            assert!(!valid_guid(bad), "{bad}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn children_lists_parse_and_drop_a_cut_number() {
        let mut out = [0; 4];
        let n = guard::parse_pids(b"12 345 6789 ", false, &mut out);
        assert_eq!(&out[..n], &[12, 345, 6789]);
        let n = guard::parse_pids(b"12 34", true, &mut out);
        assert_eq!(&out[..n], &[12]);
        let n = guard::parse_pids(b"1 0 7 8 9 10 11", false, &mut out);
        assert_eq!(&out[..n], &[7, 8, 9, 10], "never 0 or 1, at most out.len()");
        let n = guard::parse_pids(b"99999999999999999999", false, &mut out);
        assert_eq!(&out[..n], &[i32::MAX]);
    }

    /// A `sleep` child marked as instance `guid`'s process.
    fn marked_sleep(guid: &str) -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("300")
            .env(INSTANCE_GUID_VAR, guid)
            .spawn()
            .expect("sleep starts")
    }

    /// Waits (bounded) for `child` to end; its status, or `None` while it still runs.
    fn ended_within(
        child: &mut std::process::Child,
        bound: Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sweeps_end_a_gone_owners_processes_and_dir_and_touch_nothing_else() {
        use std::os::unix::process::ExitStatusExt;
        let root = tempfile::tempdir().unwrap();
        let me = Owner::current().unwrap();
        let gone = Owner {
            proc: ProcId {
                start: me.proc.start + 1,
                ..me.proc
            },
            ..me.clone()
        };
        let mk = |name: &str, owner: Option<&Owner>| {
            let d = root.path().join(name);
            std::fs::create_dir_all(d.join(RECORDS_DIR)).unwrap();
            if let Some(o) = owner {
                std::fs::write(d.join(OWNER_FILE), o.render()).unwrap();
            }
            d
        };
        let dead = mk("cf-zdt-sim-dead", Some(&gone));
        let live = mk("cf-zdt-sim-live", Some(&me));
        let unowned = mk("cf-zdt-sim-unowned", None);
        let foreign = mk("something-else", Some(&gone));
        std::fs::write(dead.join("droplet-file"), "x").unwrap();
        // The dead simulator's instance: recorded, and marked in its environment.
        let guid = "11111111-2222-4333-8444-555555555555";
        let mut recorded = marked_sleep(guid);
        assert!(write_record(&dead, guid, recorded.id()).is_some());
        // A descendant that only carries the marker (its guard record is gone).
        let mut marked = marked_sleep(guid);
        // Processes of a live simulator, and unrelated ones, are left alone.
        let live_guid = "66666666-7777-4888-8999-000000000000";
        let mut live_proc = marked_sleep(live_guid);
        assert!(write_record(&live, live_guid, live_proc.id()).is_some());
        let mut unrelated = marked_sleep("99999999-2222-4333-8444-555555555555");

        let swept = sweep(root.path());

        assert_eq!(swept.len(), 1, "{swept:?}");
        assert_eq!(swept[0].dir, dead);
        assert_eq!(swept[0].owner_pid, gone.proc.pid);
        assert_eq!(swept[0].ended, 2);
        assert!(swept[0].removed);
        assert!(swept[0].to_string().contains("ended 2 processes"));
        assert!(!dead.exists());
        for d in [&live, &unowned, &foreign] {
            assert!(d.exists(), "{} was removed", d.display());
        }
        for child in [&mut recorded, &mut marked] {
            let status = ended_within(child, Duration::from_secs(5)).expect("ended");
            assert_eq!(status.signal(), Some(libc::SIGKILL));
        }
        for child in [&mut live_proc, &mut unrelated] {
            assert!(
                child.try_wait().unwrap().is_none(),
                "a bystander was killed"
            );
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    #[test]
    fn claimed_dirs_are_not_swept_while_their_owner_runs() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cf-zdt-sim-mine");
        std::fs::create_dir(&dir).unwrap();
        claim(&dir).unwrap();
        assert!(dir.join(RECORDS_DIR).is_dir());
        assert!(sweep(root.path()).is_empty());
        assert!(dir.exists());
    }

    /// Every running process (not this one) whose environment holds `CF_INSTANCE_GUID=guid`.
    #[cfg(target_os = "linux")]
    fn marked(guid: &str) -> Vec<ProcId> {
        leftovers(&[], &[format!("{INSTANCE_GUID_VAR}={guid}")])
    }

    #[cfg(target_os = "linux")]
    async fn until_none_marked(guid: &str) -> Vec<ProcId> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = marked(guid);
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[cfg(target_os = "linux")]
    fn guarded(script: &str, dir: &Path, guid: &str) -> Guarded {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .env(INSTANCE_GUID_VAR, guid)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        Guarded::spawn(&mut cmd, dir, guid).expect("guarded process starts")
    }

    /// Background jobs of the `sh -c` wrapper and a daemon that left its process group.
    #[cfg(target_os = "linux")]
    const TREE: &str = "sleep 300 & (setsid sleep 301 &); exec sleep 302";

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn ending_a_guarded_process_ends_its_whole_tree_and_its_record() {
        let dir = tempfile::tempdir().unwrap();
        claim(dir.path()).unwrap();
        let guid = crate::sim::util::new_guid();
        let mut p = guarded(TREE, dir.path(), &guid);
        let record = dir.path().join(RECORDS_DIR).join(&guid);
        assert!(record.exists());
        let deadline = Instant::now() + Duration::from_secs(5);
        while marked(&guid).len() < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(marked(&guid).len(), 3, "sleep 300, 301 and 302 run");
        p.end_now();
        let status = tokio::time::timeout(Duration::from_secs(5), p.wait())
            .await
            .expect("the guard ends")
            .unwrap();
        assert!(!status.success());
        assert_eq!(until_none_marked(&guid).await, vec![]);
        assert!(!record.exists());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn guards_relay_sigterm_and_exit_like_their_command() {
        use std::os::unix::process::ExitStatusExt;
        let dir = tempfile::tempdir().unwrap();
        let guid = crate::sim::util::new_guid();
        let mut p = guarded("exit 3", dir.path(), &guid);
        let status = tokio::time::timeout(Duration::from_secs(5), p.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), Some(3));
        let mut p = guarded("kill -9 $$", dir.path(), &guid);
        let status = tokio::time::timeout(Duration::from_secs(5), p.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        // The trap runs once the group's `sleep` has got the SIGTERM too.
        let guid = crate::sim::util::new_guid();
        let mut p = guarded(
            "trap 'exit 7' TERM; sleep 300 & while :; do sleep 0.05; done",
            dir.path(),
            &guid,
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        p.terminate();
        let status = tokio::time::timeout(Duration::from_secs(5), p.wait())
            .await
            .expect("SIGTERM ends it")
            .unwrap();
        assert_eq!(status.code(), Some(7));
        assert_eq!(
            until_none_marked(&guid).await,
            vec![],
            "the background sleep too"
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn dropping_a_guarded_process_ends_its_tree() {
        let dir = tempfile::tempdir().unwrap();
        let guid = crate::sim::util::new_guid();
        let p = guarded(TREE, dir.path(), &guid);
        let deadline = Instant::now() + Duration::from_secs(5);
        while marked(&guid).len() < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(p);
        assert_eq!(until_none_marked(&guid).await, vec![]);
    }

    /// The parent-death signal also comes when the thread that started the guard ends while
    /// the simulator lives on: the guard must not take it for the simulator's death.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_guard_outlives_the_thread_that_started_it() {
        let dir = tempfile::tempdir().unwrap();
        let guid = crate::sim::util::new_guid();
        let (d, g) = (dir.path().to_path_buf(), guid.clone());
        let pid = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let p = guarded("exec sleep 300", &d, &g);
                let pid = p.child.id().unwrap();
                // Neither ended nor waited for here: the test does both.
                std::mem::forget(p);
                pid
            })
        })
        .join()
        .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(marked(&guid).len(), 1, "the command still runs");
        let pid = libc::pid_t::try_from(pid).unwrap();
        // SAFETY: `pid` is this process's unreaped child (the guard).
        unsafe { libc::kill(pid, guard::END_NOW) };
        let mut st = 0;
        // SAFETY: waits for that child; bounded because END_NOW makes the guard exit.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        assert_eq!(r, pid);
        assert!(marked(&guid).is_empty());
    }
}
