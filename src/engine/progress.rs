//! Backfill progress: rows done against an estimated total, rates now and on average, an
//! ETA once it means something, and the time spent running, throttled and paused. Pure:
//! the caller passes the clock in, so it is tested without waiting.
//!
//! Rates are measured on the running clock only: time paused or throttled is counted on
//! its own and never dilutes them, so the ETA (remaining rows at the running rate) stays
//! true across a pause. A paused run has no ETA (it will not end while paused); a done run
//! has an exact total and an ETA of zero.

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
    /// Rows per second over the last 10 s of running time; zero while paused or
    /// throttled (nothing moves).
    pub rows_per_second_now: f64,
    /// Rows per second over this run's running time (the pacing's own sleeps between
    /// batches included; time paused or throttled is not).
    pub rows_per_second_average: f64,
    /// Seconds of running left at the running rate, once meaningful (30 s of running or
    /// 5 % done); `None` while paused; zero once done.
    pub eta_seconds: Option<u64>,
    /// The end of the table was reached: `rows_done` is the exact total.
    pub done: bool,
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
/// The window of "rows/s now", in running time.
const RATE_WINDOW: Duration = Duration::from_secs(10);
/// The ETA uses the recent rate once its window spans this much running time, the
/// run's average before (a rate over one or two batches swings too much).
const ETA_WINDOW_MIN: Duration = Duration::from_secs(3);

/// Accumulates a backfill's progress.
#[derive(Debug, Clone)]
pub struct Tracker {
    step: String,
    table: String,
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
    /// (running time, rows_done) at recent batches, for "now".
    recent: VecDeque<(Duration, u64)>,
    /// The last batch's (keys counted, rows updated): see [`Tracker::finished`].
    last: Option<(u64, u64)>,
    done: bool,
    workers: u32,
    worker_rows: Vec<u64>,
}

impl Tracker {
    /// A run of `step` over `table` starting at `now` after a checkpoint of `rows_done`
    /// rows and `batches` batches.
    pub fn new(step: &str, table: &str, now: Instant, rows_done: u64, batches: u64) -> Self {
        let mut recent = VecDeque::new();
        recent.push_back((Duration::ZERO, rows_done));
        Tracker {
            step: step.to_string(),
            table: table.to_string(),
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
            last: None,
            done: false,
            workers: 1,
            worker_rows: Vec::new(),
        }
    }

    /// Workers running now, and the rows each updated in this run.
    pub fn set_workers(&mut self, workers: u32, worker_rows: Vec<u64>) {
        self.workers = workers;
        self.worker_rows = worker_rows;
    }

    /// Time spent running up to `now` (this run only).
    fn running_time(&self, now: Instant) -> Duration {
        let mut running = self.spent[0];
        if self.state == RunState::Running {
            running += now.saturating_duration_since(self.state_since);
        }
        running
    }

    /// A new estimate of the table's rows (from statistics); a negative or absent one is ignored.
    pub fn set_estimate(&mut self, rows: Option<i64>) {
        if let Some(rows) = rows.and_then(|r| u64::try_from(r).ok()) {
            self.estimate = Some(rows);
        }
    }

    /// The end of the table was reached: the total is what was done.
    ///
    /// Every batch but the last walked the keys it was sized for (its upper key is the
    /// n-th); the last one, cut by the end of the table, walked fewer: its rows updated
    /// count instead of its size (exact when each of its rows needed the update, as on a
    /// first run; a floor otherwise, never more than the table).
    pub fn finished(&mut self) {
        if let Some((keys, updated)) = self.last.take() {
            if updated < keys {
                self.rows_done -= keys - updated;
            }
        }
        self.estimate = Some(self.rows_done);
        self.done = true;
    }

    pub fn set_batch_size(&mut self, size: u64) {
        self.batch_size = size;
    }

    /// A committed batch sized for `keys` keys that updated `updated` rows and took
    /// `took` (the last batch of a table may hold fewer keys: see [`Tracker::finished`]).
    pub fn batch(&mut self, now: Instant, keys: u64, updated: u64, took: Duration) {
        self.rows_done += keys;
        self.last = Some((keys, updated));
        self.rows_updated += updated;
        self.batches += 1;
        self.last_batch = Some(took);
        let running = self.running_time(now);
        self.recent.push_back((running, self.rows_done));
        while self.recent.len() > 2
            && self
                .recent
                .get(1)
                .is_some_and(|(at, _)| running.saturating_sub(*at) >= RATE_WINDOW)
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
        self.spent[index] += now.saturating_duration_since(self.state_since);
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
        spent[state_index(&self.state)] += now.saturating_duration_since(self.state_since);
        let running = spent[0];
        let this_run = self.rows_done.saturating_sub(self.rows_at_start);
        let average = per_second(this_run, running);
        // The recent rate, on the running clock up to now (a run slower than its last
        // batch shows it as time goes by without a batch).
        let recent = match (self.recent.front(), self.recent.back()) {
            (Some((from, rows_from)), Some((_, rows_to))) => {
                let over = running.saturating_sub(*from);
                Some((per_second(rows_to - rows_from, over), over))
            }
            _ => None,
        };
        let running_rate = match recent {
            Some((rate, over)) if over >= ETA_WINDOW_MIN => rate,
            _ => average,
        };
        let estimate = self.estimate.map(|e| e.max(self.rows_done));
        let fraction = estimate.map(|total| {
            if total == 0 {
                1.0
            } else {
                self.rows_done as f64 / total as f64
            }
        });
        let meaningful = running >= ETA_AFTER
            || fraction.is_some_and(|f| f >= ETA_AFTER_FRACTION && this_run > 0);
        let eta_seconds = if self.done {
            Some(0)
        } else {
            match (estimate, &self.state, meaningful) {
                (_, RunState::Paused { .. }, _) => None,
                (Some(total), _, true) if running_rate > 0.0 => {
                    Some(((total - self.rows_done) as f64 / running_rate).ceil() as u64)
                }
                _ => None,
            }
        };
        let now_rate = match (&self.state, recent) {
            (RunState::Running, Some((rate, _))) if !self.done => rate,
            _ => 0.0,
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
            done: self.done,
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

    /// 1,000 rows/s for `seconds` seconds from `from_s`, one batch a second.
    fn run_for(tracker: &mut Tracker, t0: Instant, from_s: u64, seconds: u64) {
        for second in from_s + 1..=from_s + seconds {
            tracker.batch(
                at(t0, second * 1000),
                1000,
                1000,
                Duration::from_millis(200),
            );
        }
    }

    #[test]
    fn a_pause_has_no_eta_and_does_not_dilute_the_rates_after_it() {
        let t0 = Instant::now();
        let mut tracker = Tracker::new("s", "t", t0, 0, 0);
        tracker.set_estimate(Some(100_000));
        run_for(&mut tracker, t0, 0, 40);
        tracker.set_state(
            at(t0, 40_000),
            RunState::Paused {
                by: "operator".into(),
            },
        );
        // Paused for ten minutes: nothing moves, and nothing pretends to.
        let paused = tracker.report(at(t0, 640_000));
        assert_eq!(paused.eta_seconds, None, "{paused:?}");
        assert_eq!(paused.rows_per_second_now, 0.0);
        assert!((paused.rows_per_second_average - 1000.0).abs() < 1e-9);
        assert_eq!(paused.paused_seconds, 600.0);
        // Ten seconds after the resume: the same rate, and the ETA of the rows left at it.
        tracker.set_state(at(t0, 640_000), RunState::Running);
        for second in 641..=650 {
            tracker.batch(
                at(t0, second * 1000),
                1000,
                1000,
                Duration::from_millis(200),
            );
        }
        let resumed = tracker.report(at(t0, 650_000));
        assert!(
            (resumed.rows_per_second_now - 1000.0).abs() < 1.0,
            "{resumed:?}"
        );
        assert!((resumed.rows_per_second_average - 1000.0).abs() < 1e-9);
        assert_eq!(
            resumed.eta_seconds,
            Some(50),
            "50,000 rows left at 1,000 rows/s"
        );
        assert_eq!(
            (resumed.running_seconds, resumed.paused_seconds),
            (50.0, 600.0)
        );
    }

    #[test]
    fn throttled_time_is_counted_apart_and_the_eta_stays_on_the_running_rate() {
        let t0 = Instant::now();
        let mut tracker = Tracker::new("s", "t", t0, 0, 0);
        tracker.set_estimate(Some(100_000));
        run_for(&mut tracker, t0, 0, 40);
        tracker.set_state(
            at(t0, 40_000),
            RunState::Throttled {
                reason: "replica lag".into(),
            },
        );
        let held = tracker.report(at(t0, 70_000));
        assert_eq!(
            held.rows_per_second_now, 0.0,
            "nothing moves while throttled"
        );
        assert_eq!(
            held.eta_seconds,
            Some(60),
            "60,000 rows left at 1,000 rows/s"
        );
        assert_eq!((held.running_seconds, held.throttled_seconds), (40.0, 30.0));
        assert!((held.rows_per_second_average - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn a_done_backfill_is_exact_with_no_time_left_even_when_resumed_at_its_end() {
        let t0 = Instant::now();
        // Resumed after a checkpoint of every row: no batch in this run.
        let mut tracker = Tracker::new("s", "t", t0, 1_000_000, 500);
        tracker.set_estimate(Some(990_000));
        tracker.finished();
        let report = tracker.report(at(t0, 500));
        assert!(report.done);
        assert_eq!(report.rows_total_estimate, Some(1_000_000));
        assert_eq!(report.fraction(), Some(1.0));
        assert_eq!(report.eta_seconds, Some(0));
        assert_eq!(report.rows_per_second_now, 0.0);
    }

    #[test]
    fn a_short_last_batch_counts_its_rows_not_its_size_at_the_end() {
        let t0 = Instant::now();
        let mut tracker = Tracker::new("s", "t", t0, 0, 0);
        tracker.set_estimate(Some(1_000_000));
        tracker.set_batch_size(20_000);
        for batch in 1..=49 {
            tracker.batch(
                at(t0, batch * 100),
                20_000,
                20_000,
                Duration::from_millis(90),
            );
        }
        // The table's last batch, sized for 20,000 keys, finds 19,995: the end is next.
        tracker.batch(at(t0, 5000), 20_000, 19_995, Duration::from_millis(90));
        assert_eq!(tracker.report(at(t0, 5000)).rows_done, 1_000_000);
        tracker.finished();
        let report = tracker.report(at(t0, 5000));
        assert_eq!(report.rows_done, 999_995);
        assert_eq!(report.rows_total_estimate, Some(999_995));
    }
}
