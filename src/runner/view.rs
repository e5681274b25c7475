//! What `zdm ctl status` answers from: [`RunView`], a fold of the run's own events (the
//! same ones every client reads), kept by the runner as they go out.

use crate::protocol::{phase_name, Event, Phase, Progress, RunState, Status};

/// What the run's events have said so far: where it is.
#[derive(Debug, Clone)]
pub struct RunView {
    pub migration: String,
    /// The migration's status; `None` while the command starts, before it has one.
    pub status: Option<Status>,
    /// The step running now, in words.
    pub step: Option<String>,
    /// The running backfill's last progress (None outside a backfill).
    pub progress: Option<Progress>,
    /// The phase of the step running now.
    phase: Option<Phase>,
    /// What holds the run outside the backfill's own progress (the database unreachable,
    /// a stalled batch, the throttle), until the run moves again.
    held_by: Option<String>,
    /// The contract waits for the operator's confirmation (the gates have judged).
    pub awaiting_confirmation: bool,
    /// Why the run is paused, while it is: a paused run is paused, whatever held it
    /// before (a throttle is not news until it runs again).
    paused: Option<String>,
}

impl RunView {
    /// A run of `migration` whose status is `status` before its first step.
    pub fn new(migration: &str, status: Option<Status>) -> Self {
        RunView {
            migration: migration.to_string(),
            status,
            step: None,
            progress: None,
            phase: None,
            held_by: None,
            awaiting_confirmation: false,
            paused: None,
        }
    }

    /// Whether a backfill step runs now.
    pub fn backfilling(&self) -> bool {
        self.progress.is_some()
            || self.phase == Some(Phase::Backfill)
            || self.status == Some(Status::Backfilling)
    }

    /// Every reason the backfill is held back now, in words; none while it is paused
    /// (the pause says why it does not move).
    pub fn held_back_by(&self) -> Vec<String> {
        if self.paused.is_some() {
            return Vec::new();
        }
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

    /// Brings the view up to date with one event of the run.
    pub fn apply(&mut self, event: &Event) {
        if matches!(
            event,
            Event::StepStarted { .. } | Event::StepFinished { .. } | Event::BatchDone(_)
        ) {
            // The run moves again: what held it is over.
            self.held_by = None;
            self.awaiting_confirmation = false;
        }
        match event {
            Event::StatusChanged { status, .. } => self.status = Some(*status),
            Event::StepStarted {
                phase,
                index,
                total,
                description,
                ..
            } => {
                self.phase = Some(*phase);
                self.step = Some(format!(
                    "{} {}/{total}: {description}",
                    phase_name(*phase),
                    index + 1
                ));
            }
            Event::StepFinished { phase, .. } => {
                if *phase == Phase::Backfill {
                    self.progress = None;
                }
                self.phase = None;
                self.step = None;
            }
            Event::Progress(progress) => self.progress = Some(progress.clone()),
            Event::GatesObserving(observing) => {
                self.step = Some(format!(
                    "contract gates: {} s of the window left",
                    observing.remaining.as_secs_f64().ceil() as u64
                ));
            }
            Event::AwaitingConfirmation { .. } => {
                self.awaiting_confirmation = true;
                self.step = Some("waiting for the contract confirmation".to_string());
            }
            Event::Paused { reason } => {
                self.held_by = None;
                self.paused = Some(reason.clone());
                // Until the next report: no rate or ETA for a run that does not move.
                if let Some(progress) = &mut self.progress {
                    progress.state = RunState::Paused;
                    progress.reason = Some(reason.clone());
                    progress.eta = None;
                    progress.rows_per_second_now = 0.0;
                }
            }
            Event::Resumed { .. } => self.paused = None,
            Event::ThrottleOn { reason } => self.held_by = Some(reason.clone()),
            Event::ThrottleOff { .. } => self.held_by = None,
            Event::Unreachable {
                down_for,
                budget,
                why,
            } => {
                self.held_by = Some(crate::protocol::unreachable_words(*down_for, *budget, why));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::BatchDone;
    use std::time::Duration;

    fn progress(state: RunState, reason: Option<&str>) -> Event {
        Event::Progress(Progress {
            migration: "m".to_string(),
            table: "public.orders".to_string(),
            rows_done: 500,
            rows_total_estimate: Some(1000),
            rows_per_second_now: 100.0,
            rows_per_second_average: 90.0,
            eta: Some(Duration::from_secs(6)),
            batch_size: 100,
            last_batch: Some(Duration::from_millis(150)),
            batch_target: Duration::from_millis(500),
            state,
            reason: reason.map(str::to_string),
            time_running: Duration::from_secs(5),
            time_throttled: Duration::from_millis(1500),
            time_paused: Duration::ZERO,
            workers: 1,
            worker_rows: Vec::new(),
        })
    }

    #[test]
    fn an_unreachable_database_is_what_holds_the_run_until_it_moves_again() {
        let mut view = RunView::new("m", Some(Status::Backfilling));
        view.apply(&Event::Unreachable {
            down_for: Duration::from_secs(42),
            budget: Duration::from_secs(1800),
            why: "Connection refused".to_string(),
        });
        let held = view.held_back_by();
        assert_eq!(held.len(), 1, "{held:?}");
        assert!(
            held[0].starts_with("database unreachable for 42.0 s (reconnecting; gives up after"),
            "{held:?}"
        );
        view.apply(&Event::BatchDone(BatchDone {
            batch: 1,
            rows: 10,
            size: 10,
            took: Duration::from_millis(5),
            rows_done: 10,
        }));
        assert!(view.held_back_by().is_empty());
    }

    #[test]
    fn a_paused_run_is_paused_not_throttled() {
        let mut view = RunView::new("m", Some(Status::Backfilling));
        view.apply(&progress(
            RunState::Throttled,
            Some("host CPU 95 % above max 90 %"),
        ));
        view.apply(&Event::ThrottleOn {
            reason: "host CPU 95 % above max 90 %".to_string(),
        });
        view.apply(&Event::Paused {
            reason: "operator (zdm ctl)".to_string(),
        });
        assert!(view.held_back_by().is_empty(), "{:?}", view.held_back_by());
        let shown = view.progress.clone().expect("progress");
        assert_eq!(shown.state, RunState::Paused);
        assert_eq!(shown.eta, None);
        let line = shown.describe();
        assert!(line.starts_with("public.orders paused (operator"), "{line}");
        assert!(!line.contains("throttled"), "{line}");
        assert!(line.contains("no ETA while paused"), "{line}");
        view.apply(&Event::Resumed {
            paused_for: Duration::from_secs(3),
        });
        view.apply(&progress(
            RunState::Throttled,
            Some("host CPU 95 % above max 90 %"),
        ));
        assert_eq!(view.held_back_by(), vec!["host CPU 95 % above max 90 %"]);
    }

    #[test]
    fn statuses_and_steps_come_from_the_events() {
        let mut view = RunView::new("m", None);
        assert!(!view.backfilling());
        view.apply(&Event::StatusChanged {
            migration: "m".to_string(),
            status: Status::Expanding,
        });
        view.apply(&Event::StepStarted {
            migration: "m".to_string(),
            phase: Phase::Expand,
            index: 0,
            total: 2,
            description: "add column".to_string(),
        });
        assert_eq!(view.status, Some(Status::Expanding));
        assert_eq!(view.step.as_deref(), Some("expand 1/2: add column"));
        view.apply(&Event::StepFinished {
            migration: "m".to_string(),
            phase: Phase::Expand,
            index: 0,
            total: 2,
            took: Duration::from_millis(3),
        });
        assert_eq!(view.step, None);
        view.apply(&Event::StepStarted {
            migration: "m".to_string(),
            phase: Phase::Backfill,
            index: 0,
            total: 1,
            description: "backfill".to_string(),
        });
        assert!(view.backfilling());
    }

    #[test]
    fn progress_carries_the_state_and_its_reason_until_running_again() {
        let mut view = RunView::new("m", Some(Status::Backfilling));
        view.apply(&progress(
            RunState::Throttled,
            Some("replica lag 2.0 s > 1 s"),
        ));
        assert_eq!(view.held_back_by(), vec!["replica lag 2.0 s > 1 s"]);
        assert!(view.backfilling());
        view.apply(&progress(RunState::Running, None));
        assert!(view.held_back_by().is_empty());
        view.apply(&Event::StepFinished {
            migration: "m".to_string(),
            phase: Phase::Backfill,
            index: 0,
            total: 1,
            took: Duration::from_secs(9),
        });
        assert_eq!(view.progress, None);
    }
}
