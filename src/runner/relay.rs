//! The one bridge from the engine's in-process events to the control socket's wire events:
//! it translates each [`engine::Event`] into the [`control::Event`]s front-ends read, and
//! keeps the [`RunView`] that `status` answers from.

use std::time::{Duration, Instant};

use crate::control::{self, BatchDone, Level, Progress, RunState};
use crate::engine::progress::{self, BackfillProgress};
use crate::engine::{self, phase_name, BackfillControl, Status};
use crate::plan::Phase;

/// What the run's events have said so far: where it is, for `zdm ctl status`.
#[derive(Debug, Clone)]
pub struct RunView {
    pub migration: String,
    /// The migration's status key (`expanding`, `backfilling`, ...).
    pub status: String,
    /// The step running now, in words.
    pub step: Option<String>,
    /// The running backfill's last progress (None outside a backfill).
    pub progress: Option<Progress>,
    /// The step running: its phase, position, count in its phase and start.
    current: Option<(Phase, usize, usize, Instant)>,
    paused_since: Option<Instant>,
    /// What holds the run outside the backfill's own progress (the database unreachable,
    /// a stalled batch), until the run moves again.
    held_by: Option<String>,
}

impl RunView {
    /// A run of `migration` whose status is `status` before its first step.
    pub fn new(migration: &str, status: &str) -> Self {
        RunView {
            migration: migration.to_string(),
            status: status.to_string(),
            step: None,
            progress: None,
            current: None,
            paused_since: None,
            held_by: None,
        }
    }

    /// Whether a backfill step runs now.
    pub fn backfilling(&self) -> bool {
        self.progress.is_some()
            || matches!(self.current, Some((Phase::Backfill, ..)))
            || self.status == "backfilling"
    }

    /// Every reason the backfill is held back now, in words.
    pub fn held_back_by(&self) -> Vec<String> {
        let mut reasons: Vec<String> = match &self.progress {
            Some(progress) if progress.state != RunState::Running => {
                progress.reason.iter().cloned().collect()
            }
            _ => Vec::new(),
        };
        if let Some(held) = &self.held_by {
            if !reasons.contains(held) {
                reasons.insert(0, held.clone());
            }
        }
        reasons
    }

    /// Records that the status changed to `status`; the event, when it is news.
    pub fn set_status(&mut self, status: &str) -> Option<control::Event> {
        if self.status == status {
            return None;
        }
        self.status = status.to_string();
        Some(control::Event::StatusChanged {
            migration: self.migration.clone(),
            status: status.to_string(),
        })
    }

    /// The wire events for one engine event (often one, sometimes none or two), with the
    /// view brought up to date. `control` gives the batch target in force.
    pub fn translate(
        &mut self,
        event: &engine::Event,
        control: &BackfillControl,
    ) -> Vec<control::Event> {
        let mut out = Vec::new();
        if matches!(
            event,
            engine::Event::StepStarted { .. }
                | engine::Event::StepDone { .. }
                | engine::Event::BatchCommitted { .. }
        ) {
            // The run moves again: what held it is over.
            self.held_by = None;
        }
        match event {
            engine::Event::StepStarted {
                phase,
                position,
                total,
                description,
                ..
            } => {
                if let Some(changed) = self.set_status(Status::during(*phase).key()) {
                    out.push(changed);
                }
                self.current = Some((*phase, *position, *total, Instant::now()));
                self.step = Some(format!(
                    "{} {}/{total}: {description}",
                    phase_name(*phase),
                    position + 1
                ));
                out.push(control::Event::StepStarted {
                    phase: *phase,
                    index: *position,
                    total: *total,
                    description: description.clone(),
                });
            }
            engine::Event::StepDone {
                phase, position, ..
            } => {
                let (total, took) = match self.current.take() {
                    Some((_, _, total, since)) => (total, since.elapsed()),
                    None => (position + 1, Duration::ZERO),
                };
                if *phase == Phase::Backfill {
                    self.progress = None;
                }
                self.step = None;
                out.push(control::Event::StepFinished {
                    phase: *phase,
                    index: *position,
                    total,
                    took,
                });
            }
            engine::Event::LockWait {
                step,
                attempt,
                max_attempts,
                retry_in,
                blocked_by,
            } => out.push(control::Event::Log {
                level: Level::Warning,
                text: format!(
                    "{step}: lock not granted within lock_timeout (try {attempt} of \
                     {max_attempts}), gave up so the application is not queued; retrying in \
                     {:.1} s; {blocked_by}",
                    retry_in.as_secs_f64()
                ),
            }),
            engine::Event::BatchCommitted {
                batches,
                rows_updated,
                batch_rows,
                batch_size,
                took,
                ..
            } => out.push(control::Event::BatchDone(BatchDone {
                batch: u64::try_from(*batches).unwrap_or(0),
                rows: *batch_rows,
                size: *batch_size,
                took: *took,
                rows_done: u64::try_from(*rows_updated).unwrap_or(0),
            })),
            engine::Event::BackfillProgress(progress) => {
                let wire = progress_of(&self.migration, progress, control);
                self.progress = Some(wire.clone());
                out.push(control::Event::Progress(wire));
            }
            engine::Event::Throttled { reason, .. } => {
                self.held_by = Some(reason.clone());
                out.push(control::Event::ThrottleOn {
                    reason: reason.clone(),
                })
            }
            engine::Event::ThrottleReleased { after, .. } => {
                self.held_by = None;
                out.push(control::Event::ThrottleOff {
                    reason: "every throttle input is back below its limit".to_string(),
                    throttled_for: *after,
                })
            }
            engine::Event::Paused { by, .. } => {
                self.paused_since = Some(Instant::now());
                out.push(control::Event::Paused { reason: by.clone() });
            }
            engine::Event::Resumed { .. } => {
                let paused_for = self
                    .paused_since
                    .take()
                    .map_or(Duration::ZERO, |since| since.elapsed());
                out.push(control::Event::Resumed { paused_for });
            }
            engine::Event::CriticalLevel { step, reason } => out.push(control::Event::Error {
                message: format!(
                    "{step}: critical level reached, the backfill is paused until an operator \
                     resumes it: {reason}"
                ),
            }),
            engine::Event::Unreachable {
                down_for,
                budget,
                why,
            } => {
                let text = engine::reconnect::describe(*down_for, *budget, why);
                self.held_by = Some(text.clone());
                out.push(control::Event::Log {
                    level: Level::Warning,
                    text,
                })
            }
            engine::Event::BackfillStopped {
                step,
                why,
                rows_updated,
            } => out.push(control::Event::Log {
                level: Level::Warning,
                text: format!(
                    "{step}: stopped after its last committed batch ({why}); {} rows are \
                     checkpointed, running the command again resumes",
                    crate::format::thousands(u64::try_from(*rows_updated).unwrap_or(0))
                ),
            }),
        }
        out
    }
}

/// The engine's progress report in the wire's terms.
fn progress_of(
    migration: &str,
    progress: &BackfillProgress,
    control: &BackfillControl,
) -> Progress {
    let (state, reason) = match &progress.state {
        progress::RunState::Running => (RunState::Running, None),
        progress::RunState::Throttled { reason } => (RunState::Throttled, Some(reason.clone())),
        progress::RunState::Paused { by } => (RunState::Paused, Some(by.clone())),
    };
    let seconds = |s: f64| Duration::try_from_secs_f64(s).unwrap_or_default();
    Progress {
        migration: migration.to_string(),
        table: progress.table.clone(),
        rows_done: progress.rows_done,
        rows_total_estimate: progress.rows_total_estimate,
        rows_per_second_now: progress.rows_per_second_now,
        rows_per_second_average: progress.rows_per_second_average,
        eta: progress.eta_seconds.map(Duration::from_secs),
        batch_size: progress.batch_size,
        last_batch: progress.last_batch_ms.map(Duration::from_millis),
        batch_target: control.settings().pacing.target,
        state,
        reason,
        time_running: seconds(progress.running_seconds),
        time_throttled: seconds(progress.throttled_seconds),
        time_paused: seconds(progress.paused_seconds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(state: progress::RunState) -> engine::Event {
        engine::Event::BackfillProgress(BackfillProgress {
            step: "backfill 1/1".to_string(),
            table: "public.orders".to_string(),
            rows_done: 500,
            rows_updated: 500,
            rows_total_estimate: Some(1000),
            batches: 5,
            batch_size: 100,
            last_batch_ms: Some(150),
            rows_per_second_now: 100.0,
            rows_per_second_average: 90.0,
            eta_seconds: Some(6),
            state,
            running_seconds: 5.0,
            throttled_seconds: 1.5,
            paused_seconds: 0.0,
        })
    }

    #[test]
    fn an_unreachable_database_is_what_holds_the_run_until_it_moves_again() {
        let mut view = RunView::new("m", "backfilling");
        let control = BackfillControl::default();
        let out = view.translate(
            &engine::Event::Unreachable {
                down_for: Duration::from_secs(42),
                budget: Duration::from_secs(1800),
                why: "Connection refused".to_string(),
            },
            &control,
        );
        let held = view.held_back_by();
        assert_eq!(held.len(), 1, "{held:?}");
        assert!(
            held[0].starts_with("database unreachable for 42.0 s (reconnecting; gives up after"),
            "{held:?}"
        );
        assert!(matches!(&out[..], [control::Event::Log { text, .. }] if *text == held[0]));
        view.translate(
            &engine::Event::BatchCommitted {
                step: "s".to_string(),
                batches: 1,
                rows_updated: 10,
                batch_rows: 10,
                batch_size: 10,
                took: Duration::from_millis(5),
            },
            &control,
        );
        assert!(view.held_back_by().is_empty());
    }

    #[test]
    fn steps_change_the_status_once_and_finish_with_their_duration() {
        let control = BackfillControl::default();
        let mut view = RunView::new("m", "pending");
        let started = engine::Event::StepStarted {
            migration: "m".to_string(),
            phase: Phase::Expand,
            position: 0,
            total: 2,
            description: "add column".to_string(),
        };
        let events = view.translate(&started, &control);
        assert_eq!(
            events[0],
            control::Event::StatusChanged {
                migration: "m".to_string(),
                status: "expanding".to_string()
            }
        );
        assert!(matches!(
            events[1],
            control::Event::StepStarted {
                index: 0,
                total: 2,
                ..
            }
        ));
        assert_eq!(view.step.as_deref(), Some("expand 1/2: add column"));
        let done = engine::Event::StepDone {
            migration: "m".to_string(),
            phase: Phase::Expand,
            position: 0,
        };
        let events = view.translate(&done, &control);
        assert!(matches!(
            events.as_slice(),
            [control::Event::StepFinished {
                phase: Phase::Expand,
                index: 0,
                total: 2,
                ..
            }]
        ));
        let next = engine::Event::StepStarted {
            migration: "m".to_string(),
            phase: Phase::Expand,
            position: 1,
            total: 2,
            description: "add trigger".to_string(),
        };
        assert_eq!(view.translate(&next, &control).len(), 1, "no status change");
    }

    #[test]
    fn progress_carries_the_state_its_reason_and_the_batch_target_in_force() {
        let control = BackfillControl::default();
        control.update(|s| s.pacing.target = Duration::from_millis(500));
        let mut view = RunView::new("m", "backfilling");
        let throttled = progress(progress::RunState::Throttled {
            reason: "replica lag 2.0 s > 1 s".to_string(),
        });
        let events = view.translate(&throttled, &control);
        let [control::Event::Progress(wire)] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(wire.state, RunState::Throttled);
        assert_eq!(wire.reason.as_deref(), Some("replica lag 2.0 s > 1 s"));
        assert_eq!(wire.batch_target, Duration::from_millis(500));
        assert_eq!(wire.table, "public.orders");
        assert_eq!(wire.eta, Some(Duration::from_secs(6)));
        assert_eq!(view.held_back_by(), vec!["replica lag 2.0 s > 1 s"]);
        assert!(view.backfilling());
        view.translate(&progress(progress::RunState::Running), &control);
        assert!(view.held_back_by().is_empty());
    }

    #[test]
    fn a_batch_reports_its_own_rows_and_the_running_total() {
        let control = BackfillControl::default();
        let mut view = RunView::new("m", "backfilling");
        let batch = engine::Event::BatchCommitted {
            step: "s".to_string(),
            batches: 7,
            rows_updated: 700,
            batch_rows: 98,
            batch_size: 100,
            took: Duration::from_millis(120),
        };
        assert_eq!(
            view.translate(&batch, &control),
            vec![control::Event::BatchDone(BatchDone {
                batch: 7,
                rows: 98,
                size: 100,
                took: Duration::from_millis(120),
                rows_done: 700,
            })]
        );
    }
}
