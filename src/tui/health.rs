//! The Health pane's data: the monitor's snapshot and history turned into what is drawn
//! (recent points, current value, baseline band, lock pairs, alerts, stale readings).
//! Pure: the event loop builds it from `monitor::Metrics` and `History`, a test builds it
//! from fixed values, and the view only draws it. While the console follows a run that
//! streams its metrics, [`RunFeed`] builds the pane from the run's samples (the figures
//! its throttle acts on) rather than the console's own sampler.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::monitor::metrics::{LockWait, SessionRef};
use crate::monitor::{AlertPolicy, History, MetricId, Metrics, Reading, Severity};

/// Points kept per metric from a followed run's samples (an hour at one a second).
const RUN_HISTORY: usize = 3600;

/// The Health pane fed by one followed run's `metrics` events: the history behind the
/// sparklines and bands is built from the run's own samples.
#[derive(Debug)]
pub struct RunFeed {
    /// The run's control socket.
    socket: PathBuf,
    history: History,
}

impl RunFeed {
    pub fn new(socket: &Path) -> Self {
        RunFeed {
            socket: socket.to_path_buf(),
            history: History::new(RUN_HISTORY),
        }
    }

    /// Whether this feed is the run at `socket`'s.
    pub fn is_of(&self, socket: &Path) -> bool {
        self.socket == socket
    }

    /// Takes one sample of the run and returns the pane it makes.
    pub fn view(
        &mut self,
        metrics: &Metrics,
        policy: &AlertPolicy,
        now: DateTime<Utc>,
    ) -> HealthView {
        self.history.record_metrics(metrics);
        HealthView::from_metrics(metrics, &self.history, policy, now)
    }
}

/// How many recent points a sparkline shows at most.
pub const SPARK_POINTS: usize = 120;

/// One metric as a sparkline with its current value and normal band.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesView {
    /// What a person calls it ("replica lag").
    pub label: String,
    /// Recent values, oldest first (a stale sample leaves no point).
    pub points: Vec<f64>,
    /// The current value, formatted with its unit; `None` when there is none.
    pub current: Option<String>,
    /// The baseline band, formatted ("normal 0.1–0.4 ms"), once enough history exists.
    pub band: Option<String>,
    /// Why there is no current value (stale reading, not measured); shown in words.
    pub problem: Option<String>,
    /// The alert on this metric, if one holds.
    pub alert: Option<Severity>,
}

/// One blocked/blocker pair of the lock table.
#[derive(Debug, Clone, PartialEq)]
pub struct LockPair {
    /// `pid 4711 shop-app`
    pub waiter: String,
    pub waiter_mode: String,
    /// `public.orders`, or the lock type when it is not on a table.
    pub object: String,
    pub blocker: String,
    /// The blocker's mode on the same object, and `(queued)` when it waits itself.
    pub blocker_mode: String,
    pub wait_seconds: f64,
    /// zdm is the blocker: the pair a DBA must see first.
    pub blocker_is_zdm: bool,
}

/// One alert line.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertLine {
    pub severity: Severity,
    pub message: String,
}

/// Everything the Health pane shows.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthView {
    pub series: Vec<SeriesView>,
    pub locks: Vec<LockPair>,
    /// Whether the lock table is current; otherwise why not.
    pub locks_problem: Option<String>,
    pub alerts: Vec<AlertLine>,
}

/// The metrics the pane plots, in order, with their short labels and units.
const PLOTTED: [(MetricId, &str, Unit); 5] = [
    (MetricId::HostCpuPercent, "CPU", Unit::Percent),
    (MetricId::ReplayLagSeconds, "replica lag", Unit::Seconds),
    (MetricId::LockWaiters, "lock waiters", Unit::Count),
    (MetricId::CanaryLatencyMs, "canary", Unit::Millis),
    (MetricId::CommitsPerSecond, "TPS", Unit::PerSecond),
];

#[derive(Debug, Clone, Copy)]
enum Unit {
    Percent,
    Seconds,
    Count,
    Millis,
    PerSecond,
}

impl Unit {
    fn format(self, value: f64) -> String {
        match self {
            Unit::Percent => format!("{value:.0}%"),
            Unit::Seconds => format!("{value:.1} s"),
            Unit::Count => format!("{value:.0}"),
            Unit::Millis if value < 10.0 => format!("{value:.2} ms"),
            Unit::Millis => format!("{value:.0} ms"),
            Unit::PerSecond => format!("{value:.1}/s"),
        }
    }

    /// `0.1–0.4 s`: the unit once, and never a percentage above 100.
    fn format_range(self, low: f64, high: f64) -> String {
        let low = low.max(0.0);
        let (low, high, unit) = match self {
            Unit::Percent => (format!("{low:.0}"), format!("{:.0}", high.min(100.0)), "%"),
            Unit::Seconds => (format!("{low:.1}"), format!("{high:.1}"), " s"),
            Unit::Count => (format!("{low:.0}"), format!("{high:.0}"), ""),
            Unit::Millis if high < 10.0 => (format!("{low:.2}"), format!("{high:.2}"), " ms"),
            Unit::Millis => (format!("{low:.0}"), format!("{high:.0}"), " ms"),
            Unit::PerSecond => (format!("{low:.1}"), format!("{high:.1}"), "/s"),
        };
        format!("{low}–{high}{unit}")
    }
}

impl HealthView {
    /// The pane's data from the latest snapshot and the history behind it.
    pub fn from_metrics(
        metrics: &Metrics,
        history: &History,
        policy: &AlertPolicy,
        now: DateTime<Utc>,
    ) -> HealthView {
        let series = PLOTTED
            .iter()
            .map(|&(metric, label, unit)| {
                let points = history
                    .series(metric)
                    .map(|series| series.tail(SPARK_POINTS))
                    .unwrap_or_default();
                let band = policy
                    .band(history, metric)
                    .map(|band| format!("normal {}", unit.format_range(band.low, band.high)));
                let current = metrics.value_of(metric).map(|value| unit.format(value));
                let problem = if current.is_some() {
                    None
                } else {
                    Some(problem_of(metrics, metric, now))
                };
                let alert = metrics
                    .alerts
                    .iter()
                    .find(|alert| alert.metric == Some(metric))
                    .map(|alert| alert.severity);
                SeriesView {
                    label: label.to_string(),
                    points,
                    current,
                    band,
                    problem,
                    alert,
                }
            })
            .collect();
        let locks = metrics
            .locks
            .value
            .as_ref()
            .map(|locks| {
                let mut pairs: Vec<LockPair> = locks.waits.iter().map(lock_pair).collect();
                // zdm's own blocking first, then the longest waits.
                pairs.sort_by(|a, b| {
                    b.blocker_is_zdm
                        .cmp(&a.blocker_is_zdm)
                        .then(b.wait_seconds.total_cmp(&a.wait_seconds))
                });
                pairs
            })
            .unwrap_or_default();
        HealthView {
            series,
            locks,
            locks_problem: stale_reason(&metrics.locks, now),
            alerts: metrics
                .alerts
                .iter()
                .map(|alert| AlertLine {
                    severity: alert.severity,
                    message: alert.message.clone(),
                })
                .collect(),
        }
    }
}

/// Why a plotted metric has no current value, in words.
fn problem_of(metrics: &Metrics, metric: MetricId, now: DateTime<Utc>) -> String {
    let reason = match metric {
        MetricId::HostCpuPercent => stale_reason(&metrics.host, now),
        MetricId::ReplayLagSeconds => stale_reason(&metrics.replication, now),
        MetricId::LockWaiters => stale_reason(&metrics.locks, now),
        MetricId::CanaryLatencyMs => stale_reason(&metrics.canary, now),
        MetricId::CommitsPerSecond => stale_reason(&metrics.throughput, now),
        _ => None,
    };
    reason.unwrap_or_else(|| "not read yet".to_string())
}

/// `None` for a fresh reading, else its problem and the age of the value still shown.
fn stale_reason<T>(reading: &Reading<T>, now: DateTime<Utc>) -> Option<String> {
    let problem = reading.problem.as_ref()?;
    Some(match reading.age_seconds(now) {
        Some(age) if reading.value.is_some() => format!("stale {age:.0} s: {problem}"),
        _ => problem.clone(),
    })
}

fn session(session: &SessionRef) -> String {
    if session.application_name.is_empty() {
        format!("pid {}", session.pid)
    } else {
        format!("pid {} {}", session.pid, session.application_name)
    }
}

fn lock_pair(wait: &LockWait) -> LockPair {
    let object = wait.relation.as_ref().map_or_else(
        || wait.lock_type.clone(),
        |relation| format!("{}.{}", relation.schema, relation.name),
    );
    let mode = wait.blocker_mode.clone().unwrap_or_else(|| "?".to_string());
    LockPair {
        waiter: session(&wait.waiter),
        waiter_mode: wait.waiter_mode.clone(),
        object,
        blocker: session(&wait.blocker),
        blocker_mode: if wait.blocker_granted {
            mode
        } else {
            format!("{mode} (queued)")
        },
        wait_seconds: wait.wait_seconds,
        blocker_is_zdm: wait.blocker.is_zdm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::metrics::Host;

    #[test]
    fn a_followed_runs_samples_make_the_pane_with_their_own_history() {
        let now = Utc::now();
        let sample = |sequence, cpu_percent| {
            let metrics = Metrics {
                sequence,
                taken_at: now,
                host: Reading::fresh(
                    Host {
                        cpu_percent,
                        memory_used_bytes: 1,
                        memory_total_bytes: 2,
                        load_average_1m: 0.5,
                    },
                    now,
                ),
                ..Metrics::default()
            };
            // As the console gets it: a `metrics` event off the run's socket.
            let line = serde_json::to_string(&crate::protocol::Stamped::now(
                crate::protocol::Event::Metrics(Box::new(metrics)),
            ))
            .expect("serialize");
            match serde_json::from_str::<crate::protocol::Stamped>(&line) {
                Ok(crate::protocol::Stamped {
                    event: crate::protocol::Event::Metrics(metrics),
                    ..
                }) => *metrics,
                other => panic!("{other:?}"),
            }
        };
        let socket = Path::new("/run/zdm/m.sock");
        let mut feed = RunFeed::new(socket);
        assert!(feed.is_of(socket) && !feed.is_of(Path::new("/run/zdm/other.sock")));
        let policy = AlertPolicy::default();
        feed.view(&sample(1, 12.0), &policy, now);
        let view = feed.view(&sample(2, 87.0), &policy, now);
        let cpu = &view.series[0];
        assert_eq!(cpu.label, "CPU");
        assert_eq!(
            cpu.current.as_deref(),
            Some("87%"),
            "the run's latest sample"
        );
        assert_eq!(cpu.points, vec![12.0, 87.0], "the run's samples, in order");
    }

    #[test]
    fn ranges_keep_the_unit_once() {
        assert_eq!(Unit::Seconds.format_range(0.1, 0.4), "0.1–0.4 s");
        assert_eq!(Unit::Percent.format_range(-3.0, 128.0), "0–100%");
        assert_eq!(Unit::Millis.format_range(0.2, 0.9), "0.20–0.90 ms");
        assert_eq!(Unit::PerSecond.format_range(18.8, 56.3), "18.8–56.3/s");
    }

    #[test]
    fn a_remote_host_says_cpu_is_not_measured_and_fresh_values_are_shown() {
        let now = Utc::now();
        let mut metrics = Metrics {
            host: Reading::unavailable("remote host: not measured"),
            ..Metrics::default()
        };
        let history = History::new(10);
        let view = HealthView::from_metrics(&metrics, &history, &AlertPolicy::default(), now);
        assert_eq!(
            view.series[0].problem.as_deref(),
            Some("remote host: not measured")
        );
        assert_eq!(view.series[0].current, None);

        metrics.host = Reading::fresh(
            Host {
                cpu_percent: 42.4,
                memory_used_bytes: 1,
                memory_total_bytes: 2,
                load_average_1m: 0.5,
            },
            now,
        );
        let view = HealthView::from_metrics(&metrics, &history, &AlertPolicy::default(), now);
        assert_eq!(view.series[0].current.as_deref(), Some("42%"));
        assert_eq!(view.series[0].problem, None);

        metrics
            .host
            .mark_stale("the server did not answer within 1500 ms");
        let later = now + chrono::Duration::seconds(7);
        let view = HealthView::from_metrics(&metrics, &history, &AlertPolicy::default(), later);
        assert_eq!(
            view.series[0].problem.as_deref(),
            Some("stale 7 s: the server did not answer within 1500 ms")
        );
    }
}
