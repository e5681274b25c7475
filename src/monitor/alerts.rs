//! Alerts: a pure function from the latest sample and its history to what the operator
//! must be told (a metric past an absolute threshold, out of its baseline band, or stale).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::baseline::{Band, BandWidth};
use super::history::{History, MetricId};
use super::metrics::Metrics;

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Unusual; worth a look.
    Warning,
    /// Harmful now; the migration should slow down or pause.
    Critical,
}

/// Something the operator must be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub severity: Severity,
    /// The metric concerned, when the alert is about one tracked metric.
    pub metric: Option<MetricId>,
    /// What the alert is about: the metric's label, `database`, or a reading's name.
    /// At most one alert per subject is raised at a time.
    pub subject: String,
    /// A sentence for the operator.
    pub message: String,
    /// The value that raised it.
    pub value: Option<f64>,
    /// The metric's normal band, when one is known.
    pub baseline: Option<Band>,
}

/// Which way a metric going out of its band is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Higher,
    Lower,
}

/// Thresholds and band settings of one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub metric: MetricId,
    /// At or above: a warning.
    pub warning: Option<f64>,
    /// At or above: critical.
    pub critical: Option<f64>,
    /// Alert when the metric leaves its baseline band this way (None: never).
    pub band: Option<Direction>,
    pub width: BandWidth,
}

/// Which history is "normal".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaselineWindow {
    /// The end of the window: when the migration started. None: a rolling window that
    /// ends just before the points being judged.
    pub end: Option<DateTime<Utc>>,
    pub length: Duration,
}

/// Everything alert generation needs besides the data.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertPolicy {
    pub rules: Vec<Rule>,
    pub baseline: BaselineWindow,
    /// How many consecutive samples must be out of band before alerting (damps flapping).
    pub persist: usize,
    /// A reading not refreshed for this long raises a warning.
    pub stale_after: Duration,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        const MIB: f64 = 1024.0 * 1024.0;
        const GIB: f64 = 1024.0 * MIB;
        use Direction::{Higher, Lower};
        use MetricId as M;
        let rule = |metric, warning, critical, band, min_spread, min_relative_spread| Rule {
            metric,
            warning,
            critical,
            band,
            width: BandWidth {
                k: 4.0,
                min_spread,
                min_relative_spread,
            },
        };
        AlertPolicy {
            rules: vec![
                rule(
                    M::ReplayLagSeconds,
                    Some(5.0),
                    Some(30.0),
                    Some(Higher),
                    1.0,
                    0.5,
                ),
                rule(
                    M::ReplayLagBytes,
                    Some(256.0 * MIB),
                    Some(GIB),
                    Some(Higher),
                    16.0 * MIB,
                    0.5,
                ),
                rule(
                    M::SlotRetainedBytes,
                    Some(GIB),
                    Some(10.0 * GIB),
                    Some(Higher),
                    64.0 * MIB,
                    0.5,
                ),
                rule(
                    M::LockWaiters,
                    Some(5.0),
                    Some(20.0),
                    Some(Higher),
                    1.0,
                    0.5,
                ),
                rule(
                    M::LongestLockWaitSeconds,
                    Some(1.0),
                    Some(5.0),
                    Some(Higher),
                    1.0,
                    0.5,
                ),
                rule(M::ActiveSessions, None, None, Some(Higher), 2.0, 0.5),
                rule(M::IdleInTransaction, None, None, Some(Higher), 2.0, 0.5),
                rule(
                    M::OldestIdleInTransactionSeconds,
                    Some(60.0),
                    Some(600.0),
                    Some(Higher),
                    10.0,
                    0.5,
                ),
                rule(M::CommitsPerSecond, None, None, Some(Lower), 1.0, 0.5),
                rule(M::RollbacksPerSecond, None, None, Some(Higher), 1.0, 0.5),
                rule(M::DeadTuples, None, None, Some(Higher), 1000.0, 0.2),
                rule(
                    M::CanaryLatencyMs,
                    Some(100.0),
                    Some(1000.0),
                    Some(Higher),
                    2.0,
                    0.5,
                ),
                rule(
                    M::HostCpuPercent,
                    Some(85.0),
                    Some(95.0),
                    Some(Higher),
                    10.0,
                    0.0,
                ),
                rule(
                    M::HostMemoryPercent,
                    Some(90.0),
                    Some(97.0),
                    Some(Higher),
                    5.0,
                    0.0,
                ),
            ],
            baseline: BaselineWindow {
                end: None,
                length: Duration::minutes(5),
            },
            persist: 3,
            stale_after: Duration::seconds(5),
        }
    }
}

impl AlertPolicy {
    /// The baseline band of `metric` under this policy, from `history`.
    pub fn band(&self, history: &History, metric: MetricId) -> Option<Band> {
        let rule = self.rules.iter().find(|r| r.metric == metric)?;
        band_for(history, rule, &self.baseline, self.persist)
    }
}

/// The alerts for `metrics` (already recorded in `history`) under `policy`, most severe first.
pub fn evaluate(history: &History, metrics: &Metrics, policy: &AlertPolicy) -> Vec<Alert> {
    let mut alerts = staleness_alerts(metrics, policy);
    for rule in &policy.rules {
        let Some(value) = metrics.value_of(rule.metric) else {
            continue;
        };
        let band = band_for(history, rule, &policy.baseline, policy.persist);
        let crossed = [
            (Severity::Critical, rule.critical),
            (Severity::Warning, rule.warning),
        ]
        .into_iter()
        .find_map(|(severity, limit)| limit.filter(|l| value >= *l).map(|l| (severity, l)));
        if let Some((severity, limit)) = crossed {
            alerts.push(Alert {
                severity,
                metric: Some(rule.metric),
                subject: rule.metric.label().to_string(),
                message: format!(
                    "{} is {} (limit {})",
                    rule.metric.label(),
                    number(value),
                    number(limit)
                ),
                value: Some(value),
                baseline: band,
            });
            continue;
        }
        let (Some(direction), Some(band)) = (rule.band, band) else {
            continue;
        };
        if out_of_band_for(history, rule.metric, &band, direction, policy.persist) {
            let way = match direction {
                Direction::Higher => "above",
                Direction::Lower => "below",
            };
            alerts.push(Alert {
                severity: Severity::Warning,
                metric: Some(rule.metric),
                subject: rule.metric.label().to_string(),
                message: format!(
                    "{} is {}, {way} its normal {}..{} (median {}) for {} samples",
                    rule.metric.label(),
                    number(value),
                    number(band.low.max(0.0)),
                    number(band.high),
                    number(band.median),
                    policy.persist
                ),
                value: Some(value),
                baseline: Some(band),
            });
        }
    }
    alerts.sort_by_key(|a| std::cmp::Reverse(a.severity));
    alerts
}

/// A change between two consecutive alert lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertChange {
    /// A new alert, or one whose severity changed.
    Raised(Alert),
    /// The subject has no alert any more.
    Cleared { subject: String, severity: Severity },
}

/// What changed from `previous` to `current`. Snapshots carry every alert that holds
/// now; a consumer that reports events (the engine's log, the console) compares the list
/// it saw last with the new one, so a lasting alert is reported once and its end too.
pub fn changes(previous: &[Alert], current: &[Alert]) -> Vec<AlertChange> {
    let before = |subject: &str| previous.iter().find(|a| a.subject == subject);
    let mut changes: Vec<AlertChange> = current
        .iter()
        .filter(|alert| before(&alert.subject).is_none_or(|old| old.severity != alert.severity))
        .cloned()
        .map(AlertChange::Raised)
        .collect();
    changes.extend(
        previous
            .iter()
            .filter(|old| current.iter().all(|a| a.subject != old.subject))
            .map(|old| AlertChange::Cleared {
                subject: old.subject.clone(),
                severity: old.severity,
            }),
    );
    changes
}

/// The band of the baseline window: the fixed window before the migration when set, else
/// the `length` before the last `persist` points (so the points judged are not in it).
fn band_for(
    history: &History,
    rule: &Rule,
    window: &BaselineWindow,
    persist: usize,
) -> Option<Band> {
    let series = history.series(rule.metric)?;
    let end = match window.end {
        Some(end) => end,
        None => series.points().rev().nth(persist.saturating_sub(1))?.at,
    };
    let values = series.values_between(end - window.length, end);
    Band::from_values(&values, rule.width)
}

/// Whether the last `persist` points are all outside `band` on the bad side.
fn out_of_band_for(
    history: &History,
    metric: MetricId,
    band: &Band,
    direction: Direction,
    persist: usize,
) -> bool {
    let Some(series) = history.series(metric) else {
        return false;
    };
    let recent = series.tail(persist.max(1));
    recent.len() == persist.max(1)
        && recent.iter().all(|&v| match direction {
            Direction::Higher => band.is_above(v),
            Direction::Lower => band.is_below(v),
        })
}

/// Alerts for a lost connection and for readings not refreshed for too long.
fn staleness_alerts(metrics: &Metrics, policy: &AlertPolicy) -> Vec<Alert> {
    let mut alerts = Vec::new();
    if let Some(problem) = &metrics.sampler.problem {
        alerts.push(Alert {
            severity: Severity::Critical,
            metric: None,
            subject: "database".to_string(),
            message: format!("the monitor cannot read the database: {problem}"),
            value: None,
            baseline: None,
        });
    }
    let groups = [
        ("replication", stale_since(&metrics.replication)),
        ("locks", stale_since(&metrics.locks)),
        ("sessions", stale_since(&metrics.sessions)),
        ("throughput", stale_since(&metrics.throughput)),
        ("canary", stale_since(&metrics.canary)),
    ];
    for (name, stale) in groups {
        let Some((as_of, problem)) = stale else {
            continue;
        };
        let age = metrics.taken_at - as_of;
        if age >= policy.stale_after {
            alerts.push(Alert {
                severity: Severity::Warning,
                metric: None,
                subject: name.to_string(),
                message: format!("{name} not read for {} s: {problem}", age.num_seconds()),
                value: None,
                baseline: None,
            });
        }
    }
    alerts
}

/// When a reading that once had a value went stale, and why.
fn stale_since<T>(reading: &super::Reading<T>) -> Option<(DateTime<Utc>, &str)> {
    Some((reading.as_of?, reading.problem.as_deref()?))
}

/// A number short enough for a message: integers without decimals, others with two.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::metrics::{Locks, Replica, Replication};
    use crate::monitor::Reading;

    fn start() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("valid time")
            .with_timezone(&Utc)
    }

    /// A snapshot whose only current metric is the replica's replay lag in seconds.
    fn metrics_with_lag(at: DateTime<Utc>, lag_seconds: f64) -> Metrics {
        let replica = Replica {
            pid: 1,
            application_name: "replica".to_string(),
            client_addr: None,
            state: "streaming".to_string(),
            sync_state: "async".to_string(),
            write_lag_bytes: Some(0),
            flush_lag_bytes: Some(0),
            replay_lag_bytes: Some(0),
            write_lag_seconds: None,
            flush_lag_seconds: None,
            replay_lag_seconds: Some(lag_seconds),
        };
        Metrics {
            taken_at: at,
            replication: Reading::fresh(
                Replication {
                    replicas: vec![replica],
                    slots: vec![],
                },
                at,
            ),
            ..Default::default()
        }
    }

    /// Records `lags` one second apart and evaluates the last one.
    fn run(lags: &[f64], policy: &AlertPolicy) -> Vec<Alert> {
        let mut history = History::new(1000);
        let mut last = Metrics::default();
        for (i, &lag) in lags.iter().enumerate() {
            last = metrics_with_lag(start() + Duration::seconds(i as i64), lag);
            history.record_metrics(&last);
        }
        evaluate(&history, &last, policy)
    }

    fn lag_alerts(alerts: &[Alert]) -> Vec<&Alert> {
        alerts
            .iter()
            .filter(|a| a.metric == Some(MetricId::ReplayLagSeconds))
            .collect()
    }

    #[test]
    fn a_steady_metric_raises_nothing() {
        let lags: Vec<f64> = (0..60).map(|i| 0.2 + (i % 3) as f64 * 0.1).collect();
        assert!(run(&lags, &AlertPolicy::default()).is_empty());
    }

    #[test]
    fn leaving_the_band_for_long_enough_raises_a_warning_with_the_baseline() {
        let mut lags = vec![0.3; 60];
        lags.extend([3.0, 3.5]);
        assert!(
            lag_alerts(&run(&lags, &AlertPolicy::default())).is_empty(),
            "two samples out of band are not yet an alert"
        );
        lags.push(4.0);
        let alerts = run(&lags, &AlertPolicy::default());
        let lag = lag_alerts(&alerts);
        assert_eq!(lag.len(), 1, "{alerts:?}");
        assert_eq!(lag[0].severity, Severity::Warning);
        assert_eq!(lag[0].value, Some(4.0));
        let band = lag[0].baseline.expect("band");
        assert_eq!(band.median, 0.3);
        assert!(
            lag[0].message.contains("above its normal"),
            "{}",
            lag[0].message
        );
    }

    #[test]
    fn absolute_thresholds_apply_even_without_a_baseline() {
        let alerts = run(&[40.0], &AlertPolicy::default());
        let lag = lag_alerts(&alerts);
        assert_eq!(lag.len(), 1);
        assert_eq!(lag[0].severity, Severity::Critical);
        assert_eq!(lag[0].baseline, None);
        assert_eq!(lag[0].message, "replica replay lag (s) is 40 (limit 30)");
        let alerts = run(&[6.5], &AlertPolicy::default());
        assert_eq!(lag_alerts(&alerts)[0].severity, Severity::Warning);
    }

    #[test]
    fn a_fixed_window_judges_against_the_time_before_the_migration() {
        // Normal lag 5..6 s before the start (below the warning limit's reach when the
        // limit is lifted), then 0.5 s: below the band, which is not bad for lag.
        let mut policy = AlertPolicy::default();
        for rule in &mut policy.rules {
            rule.warning = None;
            rule.critical = None;
        }
        policy.baseline.end = Some(start() + Duration::seconds(30));
        let mut lags: Vec<f64> = (0..30).map(|i| 1.0 + (i % 2) as f64 * 0.2).collect();
        lags.extend(vec![1.1; 30]);
        assert!(lag_alerts(&run(&lags, &policy)).is_empty());
        lags.extend(vec![9.0; 3]);
        let alerts = run(&lags, &policy);
        let lag = lag_alerts(&alerts);
        assert_eq!(lag.len(), 1, "{alerts:?}");
        assert_eq!(lag[0].baseline.expect("band").samples, 30);
    }

    #[test]
    fn a_lasting_alert_is_one_change_and_its_end_another() {
        let calm = run(&[0.3; 20], &AlertPolicy::default());
        let warned = run(&[6.0], &AlertPolicy::default());
        let still_warned = run(&[7.0], &AlertPolicy::default());
        let critical = run(&[40.0], &AlertPolicy::default());
        let raised = changes(&calm, &warned);
        assert!(
            matches!(&raised[..], [AlertChange::Raised(a)] if a.severity == Severity::Warning),
            "{raised:?}"
        );
        assert_eq!(changes(&warned, &still_warned), vec![]);
        let escalated = changes(&still_warned, &critical);
        assert!(
            matches!(&escalated[..], [AlertChange::Raised(a)] if a.severity == Severity::Critical),
            "{escalated:?}"
        );
        assert_eq!(
            changes(&critical, &calm),
            vec![AlertChange::Cleared {
                subject: "replica replay lag (s)".to_string(),
                severity: Severity::Critical
            }]
        );
    }

    #[test]
    fn a_stale_reading_and_a_lost_connection_are_reported() {
        let at = start();
        let mut metrics = metrics_with_lag(at, 0.1);
        metrics.taken_at = at + Duration::seconds(12);
        metrics
            .replication
            .mark_stale("connection lost: server closed the connection");
        metrics.locks = Reading::fresh(Locks::default(), metrics.taken_at);
        metrics.sampler.problem = Some("cannot connect: connection refused".to_string());
        let alerts = evaluate(&History::new(10), &metrics, &AlertPolicy::default());
        let messages: Vec<&str> = alerts.iter().map(|a| a.message.as_str()).collect();
        assert_eq!(
            messages,
            vec![
                "the monitor cannot read the database: cannot connect: connection refused",
                "replication not read for 12 s: connection lost: server closed the connection",
            ]
        );
        assert_eq!(alerts[0].severity, Severity::Critical);
    }
}
