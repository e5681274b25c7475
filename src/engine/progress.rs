//! Backfill progress: rows done against an estimated total, rates now and on average, an
//! ETA once it means something, and the time spent running, throttled and paused. Pure:
//! the caller passes the clock in, so it is tested without waiting.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

/// What the backfill is doing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RunState {
    Running,
    /// Waiting for the throttle; `reason` names every input holding it back.
    Throttled {
        reason: String,
    },
    /// Paused by the operator (or by a critical throttle level); `by` says which.
    Paused {
        by: String,
    },
}

impl RunState {
    pub fn key(&self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Throttled { .. } => "throttled",
            RunState::Paused { .. } => "paused",
        }
    }
}

/// One progress report, as events carry it and front-ends show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackfillProgress {
    pub step: String,
    /// The table being backfilled, as the plan names it.
    pub table: String,
    /// Keys walked so far (every batch's keys; a resumed run starts from the rows its
    /// checkpoint recorded).
    pub rows_done: u64,
    /// Rows the UPDATEs changed (rows matching the predicate).
    pub rows_updated: u64,
    /// Estimated rows in the table (statistics, never below `rows_done`; exact at the end).
    pub rows_total_estimate: Option<u64>,
    pub batches: u64,
    /// The size of the next batch.
    pub batch_size: u64,
    /// Duration of the last batch.
    pub last_batch_ms: Option<u64>,
    /// Rows per second over the last 10 s.
    pub rows_per_second_now: f64,
    /// Rows per second since this run started (sleeps, throttles and pauses included).
    pub rows_per_second_average: f64,
    /// Seconds left, once meaningful (30 s into the run or 5 % done).
    pub eta_seconds: Option<u64>,
    #[serde(flatten)]
    pub state: RunState,
    pub running_seconds: f64,
    pub throttled_seconds: f64,
    pub paused_seconds: f64,
    /// Workers running batches now.
    pub workers: u32,
    /// Rows each worker updated in this run (by worker number): its share.
    pub worker_rows: Vec<u64>,
}

impl BackfillProgress {
    /// Done as a fraction of the estimate (None without one).
    pub fn fraction(&self) -> Option<f64> {
        let total = self.rows_total_estimate?;
        Some(if total == 0 {
            1.0
        } else {
            (self.rows_done as f64 / total as f64).min(1.0)
        })
    }
}

impl BackfillProgress {
    /// The report as the protocol carries it: for `migration`, aiming at `batch_target`.
    pub fn event(&self, migration: &str, batch_target: Duration) -> crate::protocol::Event {
        use crate::protocol::{self, Progress};
        let (state, reason) = match &self.state {
            RunState::Running => (protocol::RunState::Running, None),
            RunState::Throttled { reason } => (protocol::RunState::Throttled, Some(reason.clone())),
            RunState::Paused { by } => (protocol::RunState::Paused, Some(by.clone())),
        };
        let seconds = |s: f64| Duration::try_from_secs_f64(s).unwrap_or_default();
        protocol::Event::Progress(Progress {
            migration: migration.to_string(),
            table: self.table.clone(),
            rows_done: self.rows_done,
            rows_total_estimate: self.rows_total_estimate,
            rows_per_second_now: self.rows_per_second_now,
            rows_per_second_average: self.rows_per_second_average,
            eta: self.eta_seconds.map(Duration::from_secs),
            batch_size: self.batch_size,
            last_batch: self.last_batch_ms.map(Duration::from_millis),
            batch_target,
            state,
            reason,
            time_running: seconds(self.running_seconds),
            time_throttled: seconds(self.throttled_seconds),
            time_paused: seconds(self.paused_seconds),
            workers: self.workers,
            worker_rows: self.worker_rows.clone(),
        })
    }
}

/// How far into a run the ETA starts to be shown, whichever comes first.
const ETA_AFTER: Duration = Duration::from_secs(30);
const ETA_AFTER_FRACTION: f64 = 0.05;
/// The window of "rows/s now".
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Accumulates a backfill's progress.
#[derive(Debug, Clone)]
pub struct Tracker {
    step: String,
    table: String,
    started: Instant,
    state: RunState,
    state_since: Instant,
    /// Time in each state before `state_since`: running, throttled, paused.
    spent: [Duration; 3],
    rows_at_start: u64,
    rows_done: u64,
    rows_updated: u64,
    batches: u64,
    estimate: Option<u64>,
    last_batch: Option<Duration>,
    batch_size: u64,
    /// (when, rows_done) of recent batches, for "now".
    recent: VecDeque<(Instant, u64)>,
    workers: u32,
    worker_rows: Vec<u64>,
}

impl Tracker {
    /// A run of `step` over `table` starting at `now` after a checkpoint of `rows_done`
    /// rows and `batches` batches.
    pub fn new(step: &str, table: &str, now: Instant, rows_done: u64, batches: u64) -> Self {
        let mut recent = VecDeque::new();
        recent.push_back((now, rows_done));
        Tracker {
            step: step.to_string(),
            table: table.to_string(),
            started: now,
            state: RunState::Running,
            state_since: now,
            spent: [Duration::ZERO; 3],
            rows_at_start: rows_done,
            rows_done,
            rows_updated: rows_done,
            batches,
            estimate: None,
            last_batch: None,
            batch_size: 0,
            recent,
            workers: 1,
            worker_rows: Vec::new(),
        }
    }

    /// Workers running now, and the rows each updated in this run.
    pub fn set_workers(&mut self, workers: u32, worker_rows: Vec<u64>) {
        self.workers = workers;
        self.worker_rows = worker_rows;
    }

    /// A new estimate of the table's rows (from statistics); a negative or absent one is ignored.
    pub fn set_estimate(&mut self, rows: Option<i64>) {
        if let Some(rows) = rows.and_then(|r| u64::try_from(r).ok()) {
            self.estimate = Some(rows);
        }
    }

    /// The end of the table was reached: the total is what was done.
    pub fn finished(&mut self) {
        self.estimate = Some(self.rows_done);
    }

    pub fn set_batch_size(&mut self, size: u64) {
        self.batch_size = size;
    }

    /// A committed batch of `keys` keys that updated `updated` rows and took `took`.
    pub fn batch(&mut self, now: Instant, keys: u64, updated: u64, took: Duration) {
        self.rows_done += keys;
        self.rows_updated += updated;
        self.batches += 1;
        self.last_batch = Some(took);
        self.recent.push_back((now, self.rows_done));
        while self.recent.len() > 2
            && self
                .recent
                .get(1)
                .is_some_and(|(at, _)| now.duration_since(*at) >= RATE_WINDOW)
        {
            self.recent.pop_front();
        }
    }

    /// Switches state at `now`; returns whether it changed.
    pub fn set_state(&mut self, now: Instant, state: RunState) -> bool {
        if state == self.state {
            return false;
        }
        let index = state_index(&self.state);
        self.spent[index] += now.duration_since(self.state_since);
        self.state = state;
        self.state_since = now;
        true
    }

    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// How long the backfill has been in its current state at `now`.
    pub fn in_state_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.state_since)
    }

    pub fn report(&self, now: Instant) -> BackfillProgress {
        let mut spent = self.spent;
        spent[state_index(&self.state)] += now.duration_since(self.state_since);
        let elapsed = now.duration_since(self.started);
        let this_run = self.rows_done - self.rows_at_start;
        let average = per_second(this_run, elapsed);
        let now_rate = match (self.recent.front(), self.recent.back()) {
            (Some((from, rows_from)), Some((_, rows_to))) => {
                per_second(rows_to - rows_from, now.duration_since(*from))
            }
            _ => 0.0,
        };
        let estimate = self.estimate.map(|e| e.max(self.rows_done));
        let fraction = estimate.map(|total| {
            if total == 0 {
                1.0
            } else {
                self.rows_done as f64 / total as f64
            }
        });
        let meaningful = elapsed >= ETA_AFTER
            || fraction.is_some_and(|f| f >= ETA_AFTER_FRACTION && this_run > 0);
        let eta_seconds = match (estimate, meaningful) {
            (Some(total), true) if average > 0.0 => {
                Some(((total - self.rows_done) as f64 / average).ceil() as u64)
            }
            _ => None,
        };
        BackfillProgress {
            step: self.step.clone(),
            table: self.table.clone(),
            rows_done: self.rows_done,
            rows_updated: self.rows_updated,
            rows_total_estimate: estimate,
            batches: self.batches,
            batch_size: self.batch_size,
            last_batch_ms: self.last_batch.map(|d| d.as_millis() as u64),
            rows_per_second_now: now_rate,
            rows_per_second_average: average,
            eta_seconds,
            state: self.state.clone(),
            running_seconds: spent[0].as_secs_f64(),
            throttled_seconds: spent[1].as_secs_f64(),
            paused_seconds: spent[2].as_secs_f64(),
            workers: self.workers,
            worker_rows: self.worker_rows.clone(),
        }
    }
}

fn state_index(state: &RunState) -> usize {
    match state {
        RunState::Running => 0,
        RunState::Throttled { .. } => 1,
        RunState::Paused { .. } => 2,
    }
}

fn per_second(rows: u64, over: Duration) -> f64 {
    let seconds = over.as_secs_f64();
    if seconds <= 0.0 {
        0.0
    } else {
        rows as f64 / seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn eta_waits_until_it_means_something() {
        let t0 = Instant::now();
        let mut tracker = Tracker::new("s", "t", t0, 0, 0);
        tracker.set_estimate(Some(1_000_000));
        tracker.batch(at(t0, 1000), 1000, 1000, Duration::from_millis(200));
        // 0.1 % done after 1 s: no ETA yet.
        assert_eq!(tracker.report(at(t0, 1000)).eta_seconds, None);
        for second in 2..=30 {
            tracker.batch(
                at(t0, second * 1000),
                1000,
                1000,
                Duration::from_millis(200),
            );
        }
        // 30 s in, 1000 rows/s, 970 000 left.
        let report = tracker.report(at(t0, 30_000));
        assert_eq!(report.eta_seconds, Some(970));
        assert!((report.rows_per_second_average - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn five_percent_done_is_enough_for_an_eta() {
        let t0 = Instant::now();
        let mut tracker = Tracker::new("s", "t", t0, 0, 0);
        tracker.set_estimate(Some(10_000));
        tracker.batch(at(t0, 2000), 600, 600, Duration::from_millis(200));
        assert_eq!(tracker.report(at(t0, 2000)).eta_seconds, Some(32));
    }

    #[test]
    fn the_estimate_never_falls_below_what_was_done_and_is_exact_at_the_end() {
        let t0 = Instant::now();
        let mut tracker = Tracker::new("s", "t", t0, 0, 0);
        tracker.set_estimate(Some(100));
        tracker.batch(at(t0, 10), 150, 150, Duration::from_millis(10));
        assert_eq!(tracker.report(at(t0, 10)).rows_total_estimate, Some(150));
        tracker.set_estimate(Some(-1)); // never analysed: ignored
        assert_eq!(tracker.report(at(t0, 10)).rows_total_estimate, Some(150));
        tracker.batch(at(t0, 20), 20, 0, Duration::from_millis(10));
        tracker.finished();
        let report = tracker.report(at(t0, 20));
        assert_eq!(report.fraction(), Some(1.0));
        assert_eq!(report.rows_updated, 150);
    }

    #[test]
    fn time_in_each_state_adds_up() {
        let t0 = Instant::now();
        let mut tracker = Tracker::new("s", "t", t0, 0, 0);
        tracker.set_state(
            at(t0, 1000),
            RunState::Throttled {
                reason: "lag".into(),
            },
        );
        assert!(!tracker.set_state(
            at(t0, 1500),
            RunState::Throttled {
                reason: "lag".into()
            }
        ));
        tracker.set_state(
            at(t0, 3000),
            RunState::Paused {
                by: "operator".into(),
            },
        );
        tracker.set_state(at(t0, 7000), RunState::Running);
        let report = tracker.report(at(t0, 8000));
        assert_eq!(
            (
                report.running_seconds,
                report.throttled_seconds,
                report.paused_seconds
            ),
            (2.0, 2.0, 4.0)
        );
    }

    #[test]
    fn the_rate_now_covers_the_last_ten_seconds() {
        let t0 = Instant::now();
        let mut tracker = Tracker::new("s", "t", t0, 0, 0);
        // 100 rows/s for 20 s, then 1000 rows/s for 10 s.
        for second in 1..=20 {
            tracker.batch(at(t0, second * 1000), 100, 100, Duration::ZERO);
        }
        for second in 21..=30 {
            tracker.batch(at(t0, second * 1000), 1000, 1000, Duration::ZERO);
        }
        let report = tracker.report(at(t0, 30_000));
        assert!(
            (report.rows_per_second_now - 1000.0).abs() < 100.0,
            "{report:?}"
        );
        assert!((report.rows_per_second_average - 400.0).abs() < 1e-9);
    }
}
