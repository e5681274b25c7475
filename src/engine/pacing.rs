//! Adaptive backfill pacing: batch sizes aimed at a target batch duration, and the pause
//! after each batch (nice ratio, rows/s ceiling). Pure: it learns only from the
//! [`BatchReport`]s it is given, so it is tested on synthetic timings.

use std::collections::VecDeque;
use std::time::Duration;

use super::backfill::{BatchReport, Pacing};

/// How batches are sized and spaced; every field can change while a backfill runs.
#[derive(Debug, Clone, PartialEq)]
pub struct PacingSettings {
    /// The duration each batch aims at.
    pub target: Duration,
    /// The first batch's size (small: the table's speed is unknown yet).
    pub start_rows: u64,
    /// Never fewer keys per batch than this.
    pub min_rows: u64,
    /// Never more keys per batch than this.
    pub max_rows: u64,
    /// Sleep `nice_ratio × batch time` after each batch (0: no sleep).
    pub nice_ratio: f64,
    /// Upper bound on rows updated per second, sleeps included (None: no ceiling).
    pub max_rows_per_second: Option<f64>,
}

/// The declared defaults (`crate::settings`).
impl Default for PacingSettings {
    fn default() -> Self {
        super::BackfillSettings::default().pacing
    }
}

/// How many recent batches the percentile is taken over.
const WINDOW: usize = 10;
/// The largest growth from one batch to the next.
const MAX_GROWTH: f64 = 1.5;
/// A batch longer than this many targets cuts the size at once, from that batch alone.
const CUT_FACTOR: f64 = 5.0;
/// A batch longer than this many targets is sized down from at once (its own cost per
/// key), the history kept: one batch at 1.5× its target is already a row lock held half
/// as long again as asked.
const SLOW_FACTOR: f64 = 1.5;

/// Batch sizes resized from the p90 of recent batches' time per key: grow by at most
/// 1.5× a step, shrink to fit at once. When the p90 of the recent batches' durations
/// overruns the target, or one batch runs past 1.5× it, the next size comes from the
/// slowest recent cost per key; after a batch more than 5× over its target, from that
/// batch alone. Always within `min_rows..=max_rows`.
#[derive(Debug, Clone)]
pub struct AdaptiveBatches {
    settings: PacingSettings,
    size: u64,
    /// Seconds per key of the last batches, newest last.
    recent: VecDeque<f64>,
    /// Seconds each of the last batches took, newest last.
    durations: VecDeque<f64>,
}

impl AdaptiveBatches {
    pub fn new(settings: PacingSettings) -> Self {
        let size = clamp(settings.start_rows, &settings);
        AdaptiveBatches {
            settings,
            size,
            recent: VecDeque::with_capacity(WINDOW),
            durations: VecDeque::with_capacity(WINDOW),
        }
    }

    pub fn settings(&self) -> &PacingSettings {
        &self.settings
    }

    /// Takes new settings; the current size is kept within the new bounds.
    pub fn set_settings(&mut self, settings: PacingSettings) {
        self.size = clamp(self.size, &settings);
        self.settings = settings;
    }

    /// The p90 of the recent seconds per key.
    fn p90(&self) -> Option<f64> {
        p90(&self.recent)
    }

    fn resize(&mut self, report: &BatchReport) {
        let keys = report.batch_size.max(1) as f64;
        let took = report.took.as_secs_f64();
        let target = self.settings.target.as_secs_f64().max(0.001);
        let per_key = (took / keys).max(1e-9);
        if took > CUT_FACTOR * target {
            // Far over: the past no longer describes the table (a lock, a cold cache, a
            // busy server). Size from this batch alone and forget the rest.
            self.recent.clear();
            self.recent.push_back(per_key);
            self.durations.clear();
            self.durations.push_back(took);
            self.size = clamp((target / per_key).floor() as u64, &self.settings);
            return;
        }
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(per_key);
        if self.durations.len() == WINDOW {
            self.durations.pop_front();
        }
        self.durations.push_back(took);
        let overran =
            took > SLOW_FACTOR * target || p90(&self.durations).is_some_and(|p90| p90 > target);
        let cost = if overran {
            // The batches themselves overran (a workload started, a cache went cold): the
            // next one is sized to fit even at the slowest recent cost per key, at once.
            // Their durations are forgotten so that the next check judges the new size.
            self.durations.clear();
            self.recent.iter().copied().fold(per_key, f64::max)
        } else {
            match self.p90() {
                Some(p90) => p90,
                None => return,
            }
        };
        let ideal = (target / cost).floor();
        let grown = (self.size as f64 * MAX_GROWTH).floor();
        self.size = clamp(ideal.min(grown).max(1.0) as u64, &self.settings);
    }

    /// The pause after a batch: the nice ratio, or what keeps the rows/s ceiling,
    /// whichever is longer.
    fn pause_after(&self, report: &BatchReport) -> Duration {
        let took = report.took.as_secs_f64();
        let nice = took * self.settings.nice_ratio.max(0.0);
        let ceiling = match self.settings.max_rows_per_second {
            Some(rate) if rate > 0.0 => report.rows_updated as f64 / rate - took,
            _ => 0.0,
        };
        let pause = nice.max(ceiling).max(0.0);
        // An absurd setting must not sleep for ever: a day is the longest single pause.
        Duration::from_secs_f64(pause.min(86_400.0))
    }
}

impl Pacing for AdaptiveBatches {
    fn batch_size(&self) -> u64 {
        self.size.max(1)
    }

    fn after_batch(&mut self, report: &BatchReport) -> Duration {
        self.resize(report);
        self.pause_after(report)
    }

    fn apply(&mut self, settings: &PacingSettings) {
        if *settings != self.settings {
            self.set_settings(settings.clone());
        }
    }
}

/// The p90 (nearest rank: the smallest value with at least 90 % of the others at or below
/// it) of `values`.
fn p90(values: &VecDeque<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted: Vec<f64> = values.iter().copied().collect();
    sorted.sort_by(f64::total_cmp);
    let rank = ((sorted.len() as f64) * 0.9).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).copied()
}

fn clamp(size: u64, settings: &PacingSettings) -> u64 {
    let min = settings.min_rows.max(1);
    let max = settings.max_rows.max(min);
    size.clamp(min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(batch_size: u64, took_ms: f64) -> BatchReport {
        BatchReport {
            rows_updated: batch_size,
            batch_size,
            took: Duration::from_secs_f64(took_ms / 1000.0),
        }
    }

    /// Runs batches on a table where each key costs `per_key_ms` (plus `fixed_ms` a
    /// batch) and returns the sizes asked for.
    fn simulate(
        pacing: &mut AdaptiveBatches,
        batches: usize,
        mut cost: impl FnMut(u64) -> f64,
    ) -> Vec<u64> {
        let mut sizes = Vec::new();
        for _ in 0..batches {
            let size = pacing.batch_size();
            sizes.push(size);
            pacing.after_batch(&report(size, cost(size)));
        }
        sizes
    }

    #[test]
    fn starts_small_and_grows_by_at_most_half_a_step() {
        let mut pacing = AdaptiveBatches::new(PacingSettings::default());
        let sizes = simulate(&mut pacing, 30, |n| n as f64 * 0.01);
        assert_eq!(sizes[0], 100);
        for pair in sizes.windows(2) {
            assert!(pair[1] as f64 <= pair[0] as f64 * 1.5 + 1.0, "{sizes:?}");
        }
        // 0.01 ms a key: 200 ms is 20 000 keys.
        let last = *sizes.last().expect("sizes");
        assert!((19_000..=20_000).contains(&last), "{sizes:?}");
    }

    #[test]
    fn converges_on_wide_and_narrow_rows_with_a_fixed_cost_per_batch() {
        for (per_key_ms, fixed_ms) in [(0.5, 5.0), (0.002, 3.0)] {
            let mut pacing = AdaptiveBatches::new(PacingSettings::default());
            simulate(&mut pacing, 60, |n| fixed_ms + n as f64 * per_key_ms);
            let size = pacing.batch_size();
            let took = fixed_ms + size as f64 * per_key_ms;
            // Sizing from time per key counts the fixed cost as per-key cost, so it lands
            // a little under the target, never over it.
            assert!(
                (150.0..=200.0).contains(&took),
                "{per_key_ms}: {size} keys take {took} ms"
            );
        }
    }

    #[test]
    fn a_batch_far_over_target_cuts_at_once() {
        let mut pacing = AdaptiveBatches::new(PacingSettings::default());
        simulate(&mut pacing, 30, |n| n as f64 * 0.01);
        let before = pacing.batch_size();
        // The table became 100× slower (a lock, a cold cache).
        pacing.after_batch(&report(before, before as f64 * 1.0));
        let after = pacing.batch_size();
        assert_eq!(after, 200, "200 ms at 1 ms a key, from {before}");
    }

    #[test]
    fn one_batch_past_one_and_a_half_targets_cuts_at_once() {
        let mut pacing = AdaptiveBatches::new(PacingSettings::default());
        simulate(&mut pacing, 30, |n| n as f64 * 0.1);
        assert_eq!(pacing.batch_size(), 2000);
        // 0.3 ms a key: 3× over the target (under the 5× that forgets the history).
        pacing.after_batch(&report(2000, 600.0));
        assert_eq!(pacing.batch_size(), 666, "200 ms at 0.3 ms a key");
    }

    #[test]
    fn a_slight_overrun_once_is_ignored_but_a_p90_over_target_cuts() {
        let mut pacing = AdaptiveBatches::new(PacingSettings::default());
        simulate(&mut pacing, 30, |n| n as f64 * 0.1);
        // 260 ms: 1.3× the target, once in ten: the p90 of the durations is still 200 ms.
        pacing.after_batch(&report(2000, 260.0));
        assert_eq!(pacing.batch_size(), 2000, "one outlier in ten");
        // Twice: the recent p90 overran, sized from the slowest cost (0.13 ms a key).
        pacing.after_batch(&report(2000, 260.0));
        assert_eq!(pacing.batch_size(), 1538, "200 ms at 0.13 ms a key");
    }

    /// A deterministic jitter in `1 - spread ..= 1 + spread`.
    fn jitter(state: &mut u64, spread: f64) -> f64 {
        *state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let unit = (*state >> 11) as f64 / (1u64 << 53) as f64;
        1.0 - spread + 2.0 * spread * unit
    }

    #[test]
    fn under_a_workload_the_p95_of_batch_time_stays_within_one_and_a_half_targets() {
        let mut pacing = AdaptiveBatches::new(PacingSettings::default());
        let mut state = 7;
        simulate(&mut pacing, 40, |n| {
            n as f64 * 0.01 * jitter(&mut state, 0.1)
        });
        // A bursty workload: every 25 batches, 6 in a row cost 2.5× as much a key (±10 %
        // throughout). Waiting for two slow batches in the p90 of costs (or for 5× the
        // target) lets 2 of every 25 batches run at 2.5× the target: a p95 of 500 ms.
        let mut took = Vec::new();
        for i in 0..500 {
            let size = pacing.batch_size();
            let burst = if i % 25 < 6 { 2.5 } else { 1.0 };
            let ms = size as f64 * 0.01 * burst * jitter(&mut state, 0.1);
            took.push(ms);
            pacing.after_batch(&report(size, ms));
        }
        took.sort_by(f64::total_cmp);
        let p95 = took[(took.len() * 95) / 100];
        let p50 = took[took.len() / 2];
        assert!(p95 <= 300.0, "p95 {p95} ms for a 200 ms target");
        // Not bought by tiny batches: the typical batch still uses most of its target.
        assert!(p50 >= 100.0, "p50 {p50} ms");
    }

    #[test]
    fn sizes_stay_within_min_and_max() {
        let settings = PacingSettings {
            min_rows: 50,
            max_rows: 500,
            ..PacingSettings::default()
        };
        let mut fast = AdaptiveBatches::new(settings.clone());
        assert_eq!(
            *simulate(&mut fast, 30, |_| 0.01).last().expect("sizes"),
            500
        );
        let mut slow = AdaptiveBatches::new(settings);
        assert_eq!(
            *simulate(&mut slow, 30, |n| n as f64 * 100.0)
                .last()
                .expect("sizes"),
            50
        );
    }

    #[test]
    fn nice_ratio_and_ceiling_set_the_pause() {
        let mut pacing = AdaptiveBatches::new(PacingSettings {
            nice_ratio: 0.5,
            ..PacingSettings::default()
        });
        assert_eq!(
            pacing.after_batch(&report(100, 100.0)),
            Duration::from_millis(50)
        );
        pacing.apply(&PacingSettings {
            nice_ratio: 0.0,
            max_rows_per_second: Some(1000.0),
            ..PacingSettings::default()
        });
        // 500 rows at 1000 rows/s is 0.5 s, of which the batch took 0.1 s.
        let pause = pacing.after_batch(&report(500, 100.0));
        assert!((pause.as_secs_f64() - 0.4).abs() < 1e-6, "{pause:?}");
        // Without a ceiling or ratio: no pause.
        pacing.apply(&PacingSettings::default());
        assert_eq!(pacing.after_batch(&report(500, 100.0)), Duration::ZERO);
    }

    #[test]
    fn new_bounds_apply_to_the_current_size() {
        let mut pacing = AdaptiveBatches::new(PacingSettings::default());
        simulate(&mut pacing, 30, |n| n as f64 * 0.01);
        pacing.apply(&PacingSettings {
            max_rows: 300,
            ..PacingSettings::default()
        });
        assert_eq!(pacing.batch_size(), 300);
    }
}
