//! Which events page someone, and how often (pure, tested without a sink): a run's
//! events become [`Notice`]s, one per incident, deduplicated and rate-limited by
//! [`Incidents`].
//!
//! The rule (docs/monitoring.md, *Alerts that reach people*): an incident is named by a
//! key (`metric:replica lag`, `critical:backfill items`, `status:backfilling`,
//! `gates:0003_orders`, `finished`). Its first raise is sent. While it is not cleared it
//! is never sent again, unless its severity rises (warning → critical). Once sent, the
//! same key is not sent again for `cooldown` (default 15 min) even when it clears and
//! comes back: the raises in between are counted, and the next notice after the
//! cooldown says how many (`repeats`). A flapping metric pages once per cooldown.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::monitor::alerts::{changes, Alert, AlertChange};
use crate::protocol::{Event, Status, Verdict};

/// How urgent a notice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// What a notice is about (the `kind` of the JSON body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A monitor metric off its baseline or past its limit.
    Metric,
    /// A throttle input past its critical level: the backfill paused.
    ThrottleCritical,
    /// The backfill stopped after its last checkpoint (a signal, an abort).
    RunStopped,
    /// The command ended with an error.
    RunFailed,
    /// The command ended well.
    RunFinished,
    /// The migration moved to another status.
    Phase,
    /// A contract safety gate did not pass.
    GateFailed,
    /// The run's monitor lost the database (a restart, a failover, a network cut): its
    /// readings are stale until it reconnects; the run waits it out by its own budget.
    MonitorLost,
}

/// One thing to tell people.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    pub kind: Kind,
    pub severity: Severity,
    /// The incident's key: the same key is one incident.
    pub incident: String,
    /// One sentence.
    pub summary: String,
    pub at: DateTime<Utc>,
    /// Raises of the same incident that were not sent since the last notice.
    pub repeats: u32,
}

/// A raise of an incident, before the dedup rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Raise {
    pub kind: Kind,
    pub severity: Severity,
    pub incident: String,
    pub summary: String,
}

/// Turns events into raises and clears; keeps the monitor's last alert list to compare,
/// and whether its last sample had lost the database.
#[derive(Debug, Default)]
pub struct Reader {
    alerts: Vec<Alert>,
    database_lost: bool,
}

/// The incident of a monitor that lost the database.
const MONITOR_LOST: &str = "monitor:database";

/// What one event means for the incidents.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Raise(Raise),
    Clear(String),
}

impl Reader {
    pub fn read(&mut self, migration: &str, event: &Event) -> Vec<Change> {
        let raise = |kind, severity, incident: String, summary: String| {
            Change::Raise(Raise {
                kind,
                severity,
                incident,
                summary,
            })
        };
        match event {
            Event::Metrics(metrics) => {
                let found = changes(&self.alerts, &metrics.alerts);
                self.alerts = metrics.alerts.clone();
                // Lost: raised once when a sample first says so (every later stale sample
                // is the same incident), cleared by the first sample connected again.
                let lost = metrics
                    .sampler
                    .problem
                    .as_ref()
                    .filter(|_| !metrics.sampler.connected);
                let mut out = Vec::new();
                match (lost, self.database_lost) {
                    (Some(why), false) => out.push(raise(
                        Kind::MonitorLost,
                        Severity::Warning,
                        MONITOR_LOST.to_string(),
                        format!(
                            "{migration}: the run's monitor lost the database ({why}); its \
                             readings are stale until it reconnects"
                        ),
                    )),
                    (None, true) => out.push(Change::Clear(MONITOR_LOST.to_string())),
                    _ => {}
                }
                self.database_lost = lost.is_some();
                out.extend(found.into_iter().map(|change| match change {
                    AlertChange::Raised(alert) => raise(
                        Kind::Metric,
                        match alert.severity {
                            crate::monitor::Severity::Warning => Severity::Warning,
                            crate::monitor::Severity::Critical => Severity::Critical,
                        },
                        format!("metric:{}", alert.subject),
                        format!("{migration}: {}", alert.message),
                    ),
                    AlertChange::Cleared { subject, .. } => {
                        Change::Clear(format!("metric:{subject}"))
                    }
                }));
                out
            }
            Event::CriticalLevel { step, reason } => vec![raise(
                Kind::ThrottleCritical,
                Severity::Critical,
                format!("critical:{step}"),
                format!(
                    "{migration}: the backfill ({step}) is paused at a critical level: {reason}; \
                     `zdm ctl resume` when it is safe"
                ),
            )],
            Event::Resumed { .. } => {
                vec![Change::Clear("critical:".to_string())]
            }
            Event::BackfillStopped {
                step,
                why,
                rows_done,
            } => vec![raise(
                Kind::RunStopped,
                Severity::Warning,
                format!("stopped:{step}"),
                format!(
                    "{migration}: the backfill ({step}) stopped after {rows_done} rows \
                     (checkpointed; running the command again resumes): {why}"
                ),
            )],
            Event::StatusChanged { status, .. } => {
                let severity = match status {
                    Status::Failed => Severity::Critical,
                    _ => Severity::Info,
                };
                vec![raise(
                    Kind::Phase,
                    severity,
                    format!("status:{}", status_name(*status)),
                    format!("{migration} is now {}", status_name(*status)),
                )]
            }
            Event::GatesEvaluated(report) => {
                let failed: Vec<String> = report
                    .gates
                    .iter()
                    .filter(|g| g.verdict != Verdict::Pass)
                    .map(|g| format!("{} ({})", g.name, g.verdict))
                    .collect();
                if failed.is_empty() {
                    return Vec::new();
                }
                vec![raise(
                    Kind::GateFailed,
                    Severity::Warning,
                    format!("gates:{}", report.migration),
                    format!(
                        "{}: contract gate(s) did not pass: {}",
                        report.migration,
                        failed.join(", ")
                    ),
                )]
            }
            Event::Finished {
                command,
                ok,
                message,
                ..
            } => {
                let (kind, severity, incident) = match ok {
                    true => (Kind::RunFinished, Severity::Info, "finished"),
                    false => (Kind::RunFailed, Severity::Critical, "failed"),
                };
                vec![raise(
                    kind,
                    severity,
                    incident.to_string(),
                    format!("zdm {command} {migration}: {message}"),
                )]
            }
            _ => Vec::new(),
        }
    }
}

/// A status as people read it (`backfilling`, `ready to contract`).
fn status_name(status: Status) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_else(|| format!("{status:?}"))
}

/// One incident's state.
#[derive(Debug, Clone)]
struct Open {
    /// Raised now (not cleared since).
    active: bool,
    severity: Severity,
    last_sent: DateTime<Utc>,
    /// Raises not sent since `last_sent`.
    suppressed: u32,
}

/// The dedup and rate rule of the module doc.
#[derive(Debug)]
pub struct Incidents {
    cooldown: Duration,
    open: HashMap<String, Open>,
}

impl Incidents {
    pub fn new(cooldown: Duration) -> Self {
        Incidents {
            cooldown,
            open: HashMap::new(),
        }
    }

    /// What to send for `change` at `now` (None: nothing, by the rule).
    pub fn apply(&mut self, change: Change, now: DateTime<Utc>) -> Option<Notice> {
        let raise = match change {
            Change::Clear(prefix) => {
                // A key, or a prefix ending in `:` that clears every key under it.
                for (key, open) in self.open.iter_mut() {
                    if *key == prefix || (prefix.ends_with(':') && key.starts_with(&prefix)) {
                        open.active = false;
                    }
                }
                return None;
            }
            Change::Raise(raise) => raise,
        };
        let cooldown = chrono::Duration::from_std(self.cooldown).unwrap_or(chrono::Duration::MAX);
        let notice = |repeats| Notice {
            kind: raise.kind,
            severity: raise.severity,
            incident: raise.incident.clone(),
            summary: raise.summary.clone(),
            at: now,
            repeats,
        };
        match self.open.get_mut(&raise.incident) {
            None => {
                self.open.insert(
                    raise.incident.clone(),
                    Open {
                        active: true,
                        severity: raise.severity,
                        last_sent: now,
                        suppressed: 0,
                    },
                );
                Some(notice(0))
            }
            Some(open) => {
                let worse = raise.severity > open.severity;
                let was_active = open.active;
                open.active = true;
                if worse || (!was_active && now - open.last_sent >= cooldown) {
                    let repeats = open.suppressed;
                    open.severity = raise.severity;
                    open.last_sent = now;
                    open.suppressed = 0;
                    Some(notice(repeats))
                } else {
                    // Still raised (the same alert again) or back within the cooldown.
                    if !was_active {
                        open.suppressed += 1;
                    }
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raise(key: &str, severity: Severity) -> Change {
        Change::Raise(Raise {
            kind: Kind::Metric,
            severity,
            incident: key.to_string(),
            summary: format!("{key} is off"),
        })
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
    }

    #[test]
    fn a_flapping_metric_pages_once_per_cooldown_and_counts_the_rest() {
        let mut incidents = Incidents::new(Duration::from_secs(900));
        let mut sent = Vec::new();
        // Twenty raises and clears, one every 10 s.
        for i in 0..20 {
            let now = at(i * 20);
            sent.extend(incidents.apply(raise("metric:lag", Severity::Warning), now));
            incidents.apply(Change::Clear("metric:lag".to_string()), at(i * 20 + 10));
        }
        assert_eq!(sent.len(), 1, "{sent:#?}");
        assert_eq!(sent[0].repeats, 0);
        // After the cooldown the next raise is sent, saying how often it came back.
        let later = incidents
            .apply(raise("metric:lag", Severity::Warning), at(1000))
            .expect("after the cooldown");
        assert_eq!(later.repeats, 19);
    }

    #[test]
    fn a_lasting_alert_is_sent_once_and_again_when_it_gets_worse() {
        let mut incidents = Incidents::new(Duration::from_secs(900));
        assert!(incidents
            .apply(raise("metric:lag", Severity::Warning), at(0))
            .is_some());
        for i in 1..50 {
            assert!(incidents
                .apply(raise("metric:lag", Severity::Warning), at(i))
                .is_none());
        }
        let worse = incidents.apply(raise("metric:lag", Severity::Critical), at(60));
        assert_eq!(worse.map(|n| n.severity), Some(Severity::Critical));
        // Other incidents are their own.
        assert!(incidents
            .apply(raise("metric:cpu", Severity::Warning), at(61))
            .is_some());
    }

    /// A monitor alert that comes and goes with every sample, read from the run's
    /// `metrics` events: one notice, not one per raise.
    #[test]
    fn a_flapping_monitor_alert_read_from_events_pages_once() {
        use crate::monitor::Metrics;
        let alert = Alert {
            severity: crate::monitor::Severity::Warning,
            metric: None,
            subject: "replica replay lag (s)".to_string(),
            message: "replica replay lag (s) is 6.0 (limit 5)".to_string(),
            value: Some(6.0),
            baseline: None,
        };
        let sample = |alerts: Vec<Alert>| {
            Event::Metrics(Box::new(Metrics {
                alerts,
                ..Metrics::default()
            }))
        };
        let mut reader = Reader::default();
        let mut incidents = Incidents::new(Duration::from_secs(900));
        let mut sent = Vec::new();
        for i in 0..40 {
            let alerts = if i % 2 == 0 {
                vec![alert.clone()]
            } else {
                Vec::new()
            };
            for change in reader.read("0003_orders", &sample(alerts)) {
                sent.extend(incidents.apply(change, at(i)));
            }
        }
        assert_eq!(sent.len(), 1, "{sent:#?}");
        assert_eq!(sent[0].kind, Kind::Metric);
        assert_eq!(sent[0].severity, Severity::Warning);
        assert_eq!(sent[0].incident, "metric:replica replay lag (s)");
        assert_eq!(
            sent[0].summary,
            "0003_orders: replica replay lag (s) is 6.0 (limit 5)"
        );
    }

    /// A lost database, sampled stale for a while, then back: one notice while it is
    /// lost, cleared when the monitor connects again.
    #[test]
    fn a_lost_database_is_said_once_until_the_monitor_is_back() {
        use crate::monitor::Metrics;
        let sample = |connected: bool| {
            let mut metrics = Metrics::default();
            metrics.sampler.connected = connected;
            metrics.sampler.problem =
                (!connected).then(|| "connection refused (server restarting?)".to_string());
            Event::Metrics(Box::new(metrics))
        };
        let mut reader = Reader::default();
        let mut incidents = Incidents::new(Duration::from_secs(900));
        let mut sent = Vec::new();
        let mut cleared = 0;
        for (i, connected) in [true, false, false, false, false, true, true]
            .iter()
            .enumerate()
        {
            for change in reader.read("0003_orders", &sample(*connected)) {
                if matches!(&change, Change::Clear(key) if key == MONITOR_LOST) {
                    cleared += 1;
                }
                sent.extend(incidents.apply(change, at(i as i64)));
            }
        }
        assert_eq!(sent.len(), 1, "{sent:#?}");
        assert_eq!(sent[0].kind, Kind::MonitorLost);
        assert_eq!(sent[0].incident, "monitor:database");
        assert_eq!(
            sent[0].summary,
            "0003_orders: the run's monitor lost the database (connection refused (server \
             restarting?)); its readings are stale until it reconnects"
        );
        assert_eq!(cleared, 1);
    }

    #[test]
    fn events_become_incidents() {
        let mut reader = Reader::default();
        let changes = reader.read(
            "0003_orders",
            &Event::CriticalLevel {
                step: "backfill orders".to_string(),
                reason: "replica lag 12.0 s is above its critical level 10.0 s".to_string(),
            },
        );
        let [Change::Raise(raise)] = &changes[..] else {
            panic!("{changes:?}")
        };
        assert_eq!(raise.kind, Kind::ThrottleCritical);
        assert_eq!(raise.incident, "critical:backfill orders");
        assert!(raise
            .summary
            .starts_with("0003_orders: the backfill (backfill orders) is paused"));
        let changes = reader.read(
            "0003_orders",
            &Event::StatusChanged {
                migration: "0003_orders".to_string(),
                status: Status::ReadyToContract,
            },
        );
        let [Change::Raise(raise)] = &changes[..] else {
            panic!("{changes:?}")
        };
        assert_eq!(raise.summary, "0003_orders is now ready to contract");
        assert!(reader
            .read(
                "x",
                &Event::ThrottleOn {
                    reason: "lag".to_string()
                }
            )
            .is_empty());
    }
}
