//! How many workers a backfill runs at once: the `workers` setting, or, with `auto`, a
//! count that adapts to what the database shows. It starts with one; after each window of
//! calm (no throttle input raised) it adds one while the last one added paid for itself
//! (the total rows/s rose by at least [`WORTH`]); a worker that did not pay is taken away
//! again and the count holds a while; the moment a throttle input rises it drops one. Pure:
//! it learns only from the times and rows it is given, so it is tested on synthetic ones.

use std::time::{Duration, Instant};

/// How long the backfill runs at one count before its rows/s is judged.
pub const WINDOW: Duration = Duration::from_secs(3);
/// A worker is worth adding when the total rows/s grows by at least this factor with it.
pub const WORTH: f64 = 1.2;
/// After a worker that did not pay, or a drop on a throttle, no growth for this long.
pub const HOLD: Duration = Duration::from_secs(60);
/// The most workers `auto` runs, whatever the server's cores.
pub const AUTO_CAP: usize = 8;

/// The worker count of one backfill.
#[derive(Debug, Clone)]
pub struct WorkerCount {
    /// `Some(n)`: the operator's fixed count; None: adaptive.
    fixed: Option<usize>,
    /// The most `auto` may run (from the server's cores).
    limit: usize,
    current: usize,
    /// Rows/s measured over the last full window at each count (index = count).
    measured: Vec<Option<f64>>,
    window_started: Instant,
    window_rows: u64,
    /// Whether a throttle input rose during this window.
    window_throttled: bool,
    /// No growth before this.
    hold_until: Option<Instant>,
}

impl WorkerCount {
    /// `setting`: the `workers` setting (None: `auto`); `limit`: the most `auto` may run.
    pub fn new(setting: Option<u64>, limit: usize, now: Instant) -> Self {
        let limit = limit.clamp(1, AUTO_CAP);
        let mut count = WorkerCount {
            fixed: None,
            limit,
            current: 1,
            measured: vec![None; limit + 1],
            window_started: now,
            window_rows: 0,
            window_throttled: false,
            hold_until: None,
        };
        count.set(setting, now);
        count
    }

    /// Takes the `workers` setting (changed live: a fixed count applies at once, `auto`
    /// goes on from the count running now).
    pub fn set(&mut self, setting: Option<u64>, now: Instant) {
        let fixed = setting.map(|n| usize::try_from(n).unwrap_or(usize::MAX).max(1));
        if fixed == self.fixed {
            return;
        }
        self.fixed = fixed;
        self.current = fixed.unwrap_or_else(|| self.current.min(self.limit));
        self.restart_window(now);
    }

    /// How many workers should run now.
    pub fn target(&self) -> usize {
        self.current
    }

    /// Whether the count is adaptive (`workers=auto`).
    pub fn adaptive(&self) -> bool {
        self.fixed.is_none()
    }

    /// Rows a batch committed.
    pub fn batch(&mut self, rows: u64) {
        self.window_rows += rows;
    }

    /// A throttle input rose: one worker fewer at once (adaptive only).
    pub fn throttled(&mut self, now: Instant) {
        if self.fixed.is_some() {
            return;
        }
        if !self.window_throttled && self.current > 1 {
            self.current -= 1;
            tracing::info!(
                workers = self.current,
                "a throttle input rose: one worker fewer"
            );
        }
        self.window_throttled = true;
        self.hold_until = Some(now + WINDOW);
        // What was measured before no longer describes the server.
        self.measured.iter_mut().for_each(|m| *m = None);
    }

    /// Judges the window when it is over; returns true when the count changed.
    pub fn tick(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.window_started);
        if elapsed < WINDOW {
            return false;
        }
        if self.fixed.is_some() || self.window_throttled {
            self.restart_window(now);
            return false;
        }
        let rate = self.window_rows as f64 / elapsed.as_secs_f64();
        let n = self.current;
        self.measured[n] = Some(rate);
        let before = self.current;
        let paid = match self.measured.get(n - 1).copied().flatten() {
            // The first count measured, or the one before was judged under other
            // conditions: nothing to compare with yet, so this one stands.
            _ if n == 1 => true,
            None => true,
            Some(previous) => rate >= previous * WORTH,
        };
        let holding = self.hold_until.is_some_and(|until| now < until);
        if !paid {
            self.current = n - 1;
            self.hold_until = Some(now + HOLD);
            tracing::info!(
                workers = self.current,
                rows_per_second = rate as u64,
                "the last worker added did not pay for itself: one fewer"
            );
        } else if n < self.limit && !holding {
            self.current = n + 1;
            tracing::info!(
                workers = self.current,
                rows_per_second = rate as u64,
                "every throttle input calm: one worker more"
            );
        }
        self.restart_window(now);
        self.current != before
    }

    fn restart_window(&mut self, now: Instant) {
        self.window_started = now;
        self.window_rows = 0;
        self.window_throttled = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs windows of `rate(n)` rows/s for `windows` windows; the counts after each.
    fn run(
        count: &mut WorkerCount,
        start: Instant,
        windows: u32,
        rate: impl Fn(usize) -> f64,
    ) -> Vec<usize> {
        (1..=windows)
            .map(|w| {
                let rows = rate(count.target()) * WINDOW.as_secs_f64();
                count.batch(rows as u64);
                count.tick(start + WINDOW * w);
                count.target()
            })
            .collect()
    }

    #[test]
    fn auto_grows_while_it_pays_and_stops_at_the_limit() {
        let start = Instant::now();
        let mut count = WorkerCount::new(None, 4, start);
        assert_eq!(count.target(), 1);
        // Perfect scaling: one more every window, up to the limit.
        let counts = run(&mut count, start, 5, |n| 1000.0 * n as f64);
        assert_eq!(counts, vec![2, 3, 4, 4, 4]);
    }

    #[test]
    fn a_worker_that_does_not_pay_is_taken_back_and_the_count_holds() {
        let start = Instant::now();
        let mut count = WorkerCount::new(None, 8, start);
        // Two workers give 1.5×, a third only 1.1× more.
        let rate = |n: usize| match n {
            1 => 1000.0,
            2 => 1500.0,
            _ => 1650.0,
        };
        let counts = run(&mut count, start, 6, rate);
        assert_eq!(
            counts,
            vec![2, 3, 2, 2, 2, 2],
            "held at 2 after 3 did not pay"
        );
    }

    #[test]
    fn a_throttle_drops_one_at_once_and_growth_waits_for_calm() {
        let start = Instant::now();
        let mut count = WorkerCount::new(None, 8, start);
        run(&mut count, start, 2, |n| 1000.0 * n as f64);
        assert_eq!(count.target(), 3);
        let at = start + WINDOW * 2 + Duration::from_millis(500);
        count.throttled(at);
        assert_eq!(count.target(), 2);
        count.throttled(at + Duration::from_millis(100));
        assert_eq!(count.target(), 2, "one drop per window, not per look");
        // The throttled window is not judged; growth resumes after calm windows.
        assert!(!count.tick(start + WINDOW * 3));
        assert_eq!(count.target(), 2);
        count.batch(6000);
        count.tick(start + WINDOW * 4);
        assert_eq!(count.target(), 3);
    }

    #[test]
    fn a_fixed_count_never_moves_and_auto_takes_over_from_it() {
        let start = Instant::now();
        let mut count = WorkerCount::new(Some(3), 2, start);
        assert_eq!(
            count.target(),
            3,
            "a fixed count is not capped by the cores"
        );
        count.throttled(start);
        assert_eq!(count.target(), 3);
        assert!(!count.adaptive());
        count.set(None, start);
        assert_eq!(count.target(), 2, "auto stays within its limit");
        assert!(count.adaptive());
    }
}
