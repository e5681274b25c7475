//! Ring buffers of past values, one per tracked metric, for sparklines and baselines.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::metrics::Metrics;

/// The scalar metrics kept in history (and judged against baselines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricId {
    ReplayLagBytes,
    ReplayLagSeconds,
    SlotRetainedBytes,
    LockWaiters,
    LongestLockWaitSeconds,
    ActiveSessions,
    IdleInTransaction,
    OldestIdleInTransactionSeconds,
    CommitsPerSecond,
    RollbacksPerSecond,
    TuplesWrittenPerSecond,
    DeadTuples,
    CanaryLatencyMs,
    HostCpuPercent,
    HostMemoryPercent,
}

impl MetricId {
    pub const ALL: [MetricId; 15] = [
        MetricId::ReplayLagBytes,
        MetricId::ReplayLagSeconds,
        MetricId::SlotRetainedBytes,
        MetricId::LockWaiters,
        MetricId::LongestLockWaitSeconds,
        MetricId::ActiveSessions,
        MetricId::IdleInTransaction,
        MetricId::OldestIdleInTransactionSeconds,
        MetricId::CommitsPerSecond,
        MetricId::RollbacksPerSecond,
        MetricId::TuplesWrittenPerSecond,
        MetricId::DeadTuples,
        MetricId::CanaryLatencyMs,
        MetricId::HostCpuPercent,
        MetricId::HostMemoryPercent,
    ];

    /// What a person calls it.
    pub fn label(self) -> &'static str {
        match self {
            MetricId::ReplayLagBytes => "replica replay lag (bytes)",
            MetricId::ReplayLagSeconds => "replica replay lag (s)",
            MetricId::SlotRetainedBytes => "WAL retained by slots (bytes)",
            MetricId::LockWaiters => "sessions waiting for locks",
            MetricId::LongestLockWaitSeconds => "longest lock wait (s)",
            MetricId::ActiveSessions => "active sessions",
            MetricId::IdleInTransaction => "idle-in-transaction sessions",
            MetricId::OldestIdleInTransactionSeconds => "oldest idle transaction (s)",
            MetricId::CommitsPerSecond => "commits/s",
            MetricId::RollbacksPerSecond => "rollbacks/s",
            MetricId::TuplesWrittenPerSecond => "rows written/s",
            MetricId::DeadTuples => "dead tuples in target tables",
            MetricId::CanaryLatencyMs => "canary latency (ms)",
            MetricId::HostCpuPercent => "host CPU (%)",
            MetricId::HostMemoryPercent => "host memory (%)",
        }
    }
}

/// One point of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub at: DateTime<Utc>,
    pub value: f64,
}

/// A bounded series: the oldest point goes when a new one arrives at capacity.
#[derive(Debug, Clone, Default)]
pub struct Series {
    capacity: usize,
    points: VecDeque<Point>,
}

impl Series {
    pub fn with_capacity(capacity: usize) -> Self {
        Series {
            capacity: capacity.max(1),
            points: VecDeque::with_capacity(capacity.max(1)),
        }
    }

    pub fn push(&mut self, point: Point) {
        if self.points.len() == self.capacity {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }

    /// Points, oldest first.
    pub fn points(&self) -> impl DoubleEndedIterator<Item = &Point> + ExactSizeIterator {
        self.points.iter()
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn last(&self) -> Option<&Point> {
        self.points.back()
    }

    /// The last `n` values, oldest first (for a sparkline `n` columns wide).
    pub fn tail(&self, n: usize) -> Vec<f64> {
        let skip = self.points.len().saturating_sub(n);
        self.points.iter().skip(skip).map(|p| p.value).collect()
    }

    /// Values with `from <= at < to`.
    pub fn values_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<f64> {
        self.points
            .iter()
            .filter(|p| p.at >= from && p.at < to)
            .map(|p| p.value)
            .collect()
    }
}

/// The history of every tracked metric.
#[derive(Debug, Clone)]
pub struct History {
    capacity: usize,
    series: BTreeMap<MetricId, Series>,
}

impl History {
    /// A history keeping up to `capacity` points per metric.
    pub fn new(capacity: usize) -> Self {
        History {
            capacity,
            series: BTreeMap::new(),
        }
    }

    /// Appends `value` for `metric` at `at`.
    pub fn record(&mut self, metric: MetricId, at: DateTime<Utc>, value: f64) {
        let capacity = self.capacity;
        self.series
            .entry(metric)
            .or_insert_with(|| Series::with_capacity(capacity))
            .push(Point { at, value });
    }

    /// Appends every metric that is current in `metrics` (stale ones leave a gap).
    pub fn record_metrics(&mut self, metrics: &Metrics) {
        for metric in MetricId::ALL {
            if let Some(value) = metrics.value_of(metric) {
                self.record(metric, metrics.taken_at, value);
            }
        }
    }

    /// The series of `metric`, when it has ever been read.
    pub fn series(&self, metric: MetricId) -> Option<&Series> {
        self.series.get(&metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_series_drops_its_oldest_point() {
        let mut series = Series::with_capacity(3);
        let start = Utc::now();
        for i in 0..5 {
            series.push(Point {
                at: start + chrono::Duration::seconds(i),
                value: i as f64,
            });
        }
        assert_eq!(series.tail(10), vec![2.0, 3.0, 4.0]);
        assert_eq!(series.tail(2), vec![3.0, 4.0]);
        assert_eq!(
            series.values_between(start, start + chrono::Duration::seconds(4)),
            vec![2.0, 3.0]
        );
    }
}
