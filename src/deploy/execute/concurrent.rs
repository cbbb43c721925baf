//! The concurrent ranges of a plan ([`Plan::concurrent`]): the steps of each app run in
//! their order, one lane per app, at most `--parallel` lanes at a time, in the one task of the
//! deploy (no spawn: the lanes borrow the run).
//!
//! Before the switch, the first lane that fails cancels the others' waits through a child of
//! the run's cancel token (a mutating request that has started is still awaited to its end)
//! and the lanes not started yet do not start; the caller then rolls back the whole ledger, as
//! after any failure before the commit point. After the switch a failed lane stops, the
//! others finish their app's retire, and the caller names every step not done.
//!
//! Each lane records into its own copy of the ledger (a step reads the ledger across its
//! waits); what the lanes recorded is merged back in the order it happened, so the rollback
//! undoes it newest first as always.
//!
//! The release tasks of a range still run one at a time, in plan order ([`TaskTurns`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Exec, Execs, Plan, Steps, Stop, interrupted};
use crate::deploy::api::CfApi;
use crate::deploy::error::Error;
use crate::deploy::event::{Event, Reporter, StepTime, error_chain};
use crate::deploy::interrupt::Interrupt;
use crate::deploy::step::{Step, StepOutput};

/// The steps of one app in a concurrent range, in plan order.
pub(super) struct Lane<'p> {
    app: &'p str,
    steps: Vec<usize>,
}

/// When a concurrent range of `plan` starts at `index` and runs more than one app with
/// `parallel` above 1: where it ends and its lanes, in the order of each app's first step.
/// A range that holds a step of the whole deploy, straddles the commit point or runs a task
/// after the switch runs step by step instead.
pub(super) fn lanes_at(
    plan: &Plan,
    index: usize,
    parallel: usize,
) -> Option<(usize, Vec<Lane<'_>>)> {
    if parallel < 2 {
        return None;
    }
    let range = plan
        .concurrent
        .iter()
        .find(|r| r.start == index && r.end <= plan.steps.len())?;
    let straddles = range.start < plan.commit && plan.commit < range.end;
    let steps = &plan.steps[range.clone()];
    let committed = range.start >= plan.commit;
    if straddles
        || steps
            .iter()
            .any(|s| s.app.is_none() || (committed && s.is_task()))
    {
        return None;
    }
    let mut lanes: Vec<Lane<'_>> = Vec::new();
    for i in range.clone() {
        let app = plan.steps[i].app_label();
        match lanes.iter_mut().find(|l| l.app == app) {
            Some(l) => l.steps.push(i),
            None => lanes.push(Lane {
                app,
                steps: vec![i],
            }),
        }
    }
    (lanes.len() > 1).then_some((range.end, lanes))
}

/// What the lanes share: the order in which their steps end, and the reporter.
struct Shared<'s, 'r> {
    /// Counts finished steps across lanes: the merge order of their records.
    seq: AtomicUsize,
    /// Whether a lane started a mutating step.
    mutated: AtomicBool,
    /// Whether the warning that a first interrupt after the switch finishes it was given.
    told_finishing: &'s AtomicBool,
    reporter: &'s Mutex<&'r mut dyn Reporter>,
    /// The app of the lane that failed first before the switch.
    failed: Mutex<Option<String>>,
    tasks: TaskTurns,
}

/// The release tasks of a range run one at a time, in plan order, as without `--parallel`:
/// the same `--task-before-switch` command (a migration) on several apps must not run twice
/// at once.
struct TaskTurns {
    /// The task steps not ended yet, with their lane (its place in the lanes' order).
    pending: Mutex<BTreeMap<usize, usize>>,
    ended: Notify,
}

impl TaskTurns {
    /// Waits until every task step of an earlier lane before step `index` ended; `false`
    /// when `section` is cancelled first. An earlier lane has started (the lanes start in
    /// their order) and never waits for a later one, so the wait ends.
    async fn wait(&self, index: usize, lane: usize, section: &CancellationToken) -> bool {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let earlier = self
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .any(|(i, l)| *i < index && *l < lane);
            if !earlier {
                return true;
            }
            tokio::select! {
                () = section.cancelled() => return false,
                () = &mut ended => {}
            }
        }
    }

    /// Records that the tasks of `lane` up to step `upto` (all of them: `usize::MAX`) ended
    /// or will not run.
    fn end(&self, lane: usize, upto: usize) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|i, l| *l != lane || *i > upto);
        self.ended.notify_waiters();
    }
}

/// A lane's reporter: each event goes to the run's reporter under its lock, held for the
/// event only (never across an await). A step whose wait ended because another lane failed
/// says so, not "interrupted".
struct LaneReporter<'s, 'r> {
    shared: &'s Shared<'s, 'r>,
    section: &'s CancellationToken,
    interrupt: &'s Interrupt,
}

impl Reporter for LaneReporter<'_, '_> {
    fn report(&mut self, mut event: Event) {
        if let Event::StepFailed { error, .. } = &mut event
            && *error == error_chain(&Error::Cancelled)
            && self.section.is_cancelled()
            && !self.interrupt.is_stopped()
            && let Some(app) = self
                .shared
                .failed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        {
            *error = format!("stopped: app {app} failed");
        }
        self.shared
            .reporter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .report(event);
    }
}

/// What one lane did: its records and step times with their place in the merge order, the
/// steps it finished, and where it stopped.
#[derive(Default)]
struct LaneRan {
    records: Vec<(usize, Step, StepOutput)>,
    times: Vec<(usize, StepTime)>,
    done: Vec<usize>,
    stop: Option<(usize, Stop)>,
}

/// Runs the lanes, at most `parallel` at a time, and merges what they did into `st`.
pub(super) async fn run<A: CfApi>(
    st: &mut Steps<'_>,
    execs: Execs<'_, '_, A>,
    lanes: Vec<Lane<'_>>,
    parallel: usize,
    reporter: &mut dyn Reporter,
    interrupt: &Interrupt,
) -> Result<(), Stop> {
    let plan = st.plan;
    let first = lanes
        .iter()
        .filter_map(|l| l.steps.first())
        .min()
        .copied()
        .unwrap_or_default();
    let committed = first >= plan.commit;
    if interrupted(committed, interrupt, &st.told_finishing, reporter) {
        return Err(Stop {
            index: first,
            error: Error::Cancelled,
            at: SystemTime::now(),
        });
    }
    // Every step of a lane uses one executor (a range after the switch holds no task).
    let exec = execs.of(&plan.steps[first], committed);
    let first_mutating = lanes
        .iter()
        .flat_map(|l| l.steps.iter().copied())
        .filter(|i| plan.steps[*i].is_mutating())
        .min();
    if let Some(i) = first_mutating {
        st.lock_before(exec, i).await?;
    }
    let section = exec.cancel.child_token();
    let lane_exec = Exec {
        cancel: &section,
        ..*exec
    };
    let shared_reporter = Mutex::new(reporter);
    let shared = Shared {
        seq: AtomicUsize::new(0),
        mutated: AtomicBool::new(false),
        told_finishing: &st.told_finishing,
        reporter: &shared_reporter,
        failed: Mutex::new(None),
        tasks: TaskTurns {
            pending: Mutex::new(
                lanes
                    .iter()
                    .enumerate()
                    .flat_map(|(l, lane)| lane.steps.iter().map(move |i| (*i, l)))
                    .filter(|(i, _)| plan.steps[*i].is_task())
                    .collect(),
            ),
            ended: Notify::new(),
        },
    };
    let ledger = &st.ledger;
    // Made before the first await: a closure held across it would make the deploy future
    // fail `Send` (a limit of the compiler's reasoning about higher-ranked lifetimes).
    let futures: Vec<_> = lanes
        .iter()
        .enumerate()
        .map(|(n, l)| {
            run_lane(
                &lane_exec,
                plan,
                (n, &l.steps),
                ledger,
                &shared,
                &section,
                committed,
                interrupt,
            )
        })
        .collect();
    let ran: Vec<LaneRan> = futures::stream::iter(futures)
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    st.attempted_mutation |= shared.mutated.load(Ordering::SeqCst);
    merge(st, ran)
}

/// Folds the lanes' records, times and finished steps into `st`, in the order they
/// happened; the stop is the earliest failure that is not a cancellation (the cause), else
/// the earliest one.
fn merge(st: &mut Steps<'_>, ran: Vec<LaneRan>) -> Result<(), Stop> {
    let mut records = Vec::new();
    let mut times = Vec::new();
    let mut stops = Vec::new();
    for r in ran {
        records.extend(r.records);
        times.extend(r.times);
        for i in r.done {
            st.done[i] = true;
        }
        stops.extend(r.stop);
    }
    records.sort_by_key(|(seq, ..)| *seq);
    for (_, step, out) in records {
        st.ledger.push(step, out);
    }
    times.sort_by_key(|(seq, _)| *seq);
    st.times.extend(times.into_iter().map(|(_, t)| t));
    stops.sort_by_key(|(seq, s)| (matches!(s.error, Error::Cancelled), *seq));
    match stops.into_iter().next() {
        Some((_, stop)) => Err(stop),
        None => Ok(()),
    }
}

/// Runs the steps of one lane in order. Before the switch, a failure cancels `section` (the
/// other lanes' waits end) and a cancelled `section` keeps the next step from starting.
#[allow(clippy::too_many_arguments)]
async fn run_lane<A: CfApi>(
    exec: &Exec<'_, A>,
    plan: &Plan,
    (lane, steps): (usize, &[usize]),
    ledger: &crate::deploy::step::Ledger,
    shared: &Shared<'_, '_>,
    section: &CancellationToken,
    committed: bool,
    interrupt: &Interrupt,
) -> LaneRan {
    let mut ran = LaneRan::default();
    let mut reporter = LaneReporter {
        shared,
        section,
        interrupt,
    };
    // The lane reads what the steps before the range recorded, and its own records.
    let mut ledger = ledger.clone();
    for &index in steps {
        let step = &plan.steps[index];
        let turn = !step.is_task() || shared.tasks.wait(index, lane, section).await;
        let stopped = !turn
            || interrupted(committed, interrupt, shared.told_finishing, &mut reporter)
            || (!committed && section.is_cancelled());
        if stopped {
            ran.stop = Some((
                shared.seq.fetch_add(1, Ordering::SeqCst),
                Stop {
                    index,
                    error: Error::Cancelled,
                    at: SystemTime::now(),
                },
            ));
            break;
        }
        if step.is_mutating() {
            shared.mutated.store(true, Ordering::SeqCst);
        }
        let at = SystemTime::now();
        let before = ledger.entries().len();
        let (time, result) = exec
            .run_reported(
                step,
                (index, plan.steps.len()),
                &mut ledger,
                &mut reporter,
                committed,
            )
            .await;
        let seq = shared.seq.fetch_add(1, Ordering::SeqCst);
        ran.records.extend(
            ledger.entries()[before..]
                .iter()
                .map(|(s, o)| (seq, s.clone(), o.clone())),
        );
        ran.times.push((seq, time));
        if step.is_task() {
            shared.tasks.end(lane, index);
        }
        match result {
            Ok(()) => ran.done.push(index),
            Err(error) => {
                if !committed && !section.is_cancelled() {
                    *shared.failed.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(step.app_label().to_string());
                    section.cancel();
                }
                ran.stop = Some((seq, Stop { index, error, at }));
                break;
            }
        }
    }
    shared.tasks.end(lane, usize::MAX);
    ran
}
