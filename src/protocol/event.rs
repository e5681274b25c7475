//! What a run reports, the one vocabulary from the engine to every front-end: the
//! [`Event`] enum (JSON-tagged, durations in milliseconds, RFC 3339 timestamps once
//! [`Stamped`]) and its one-line wording for people ([`Event::describe`]).
//!
//! The engine emits these directly; the runner adds its own (settings, gates, metrics,
//! the end of the command) and stamps each as it goes out. Nothing on the wire is a
//! string a front-end has to parse back: statuses, phases, settings, verdicts and levels
//! are types.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::gate::{Observing, Report};
use super::status::Status;
use crate::format::{duration, thousands};
use crate::monitor::{MetricId, Metrics};
use crate::plan::Phase;
use crate::settings::Setting;

/// One event as it travels: when it happened and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    /// RFC 3339, UTC.
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: Event,
}

impl Stamped {
    /// The event, stamped now.
    pub fn now(event: Event) -> Self {
        Stamped {
            at: Utc::now(),
            event,
        }
    }

    /// `23:41:07  throttled: replica lag 2.3 s > 1 s` (local time, for people).
    pub fn describe(&self) -> String {
        let local = self.at.with_timezone(&chrono::Local);
        format!("{}  {}", local.format("%H:%M:%S"), self.event.describe())
    }
}

/// Everything a front-end shows about a run comes as one of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A step is about to run. `index` is 0-based among the `total` steps of its phase.
    StepStarted {
        migration: String,
        phase: Phase,
        index: usize,
        total: usize,
        description: String,
    },
    /// A step is done and recorded.
    StepFinished {
        migration: String,
        phase: Phase,
        index: usize,
        total: usize,
        #[serde(rename = "took_ms", with = "super::millis")]
        took: Duration,
    },
    /// The migration moved to another status (the engine wrote it, or the command ended
    /// in it).
    StatusChanged {
        migration: String,
        status: Status,
    },
    /// A statement gave up waiting for its lock (so the application is not queued behind
    /// it) and will try again after `retry_in`; `blocked_by` names the sessions holding it.
    LockWait {
        step: String,
        attempt: u32,
        max_attempts: u32,
        #[serde(rename = "retry_in_ms", with = "super::millis")]
        retry_in: Duration,
        blocked_by: String,
    },
    /// The backfill's numbers: after batches (at most about once a second) and every
    /// second while it waits (throttled or paused), so a front-end always shows the
    /// current state and throttle reason.
    Progress(Progress),
    /// One backfill batch committed with its checkpoint.
    BatchDone(BatchDone),
    /// The backfill is held back (the throttle, or an operator by hand); `reason` names
    /// every input holding it back, e.g. "replica lag 2.3 s > 1 s". Sent again when the
    /// reason changes.
    ThrottleOn {
        reason: String,
    },
    /// The throttle released after holding the backfill for `throttled_for`.
    ThrottleOff {
        reason: String,
        #[serde(rename = "throttled_ms", with = "super::millis")]
        throttled_for: Duration,
    },
    /// The backfill stopped between batches: by the operator, or at a critical level.
    Paused {
        reason: String,
    },
    Resumed {
        #[serde(rename = "paused_ms", with = "super::millis")]
        paused_for: Duration,
    },
    /// A throttle input passed its critical level: the backfill is paused until an
    /// operator resumes it. An alert, not a log line.
    CriticalLevel {
        step: String,
        reason: String,
    },
    /// The database does not answer (a restart, a crash, a failover, the network): the
    /// run waits and tries again with backoff until `budget` is spent. Sent on each try.
    Unreachable {
        #[serde(rename = "down_ms", with = "super::millis")]
        down_for: Duration,
        #[serde(rename = "budget_ms", with = "super::millis")]
        budget: Duration,
        why: String,
    },
    /// The backfill stopped after its last committed batch because `why` (a signal, an
    /// abort); its checkpoint of `rows_done` rows holds and running the command again
    /// resumes.
    BackfillStopped {
        step: String,
        why: String,
        rows_done: u64,
    },
    /// What the run's monitor sampled (every sample: the numbers its throttle acts on).
    Metrics(Box<Metrics>),
    /// The contract safety gates are watching the database: the countdown of their window
    /// and each gate's verdict as it settles (every second until the window closes).
    GatesObserving(Observing),
    /// The contract safety gates of a migration were evaluated, before contract runs:
    /// every gate's verdict and evidence, and the window they observed.
    GatesEvaluated(Report),
    /// The run evaluated the gates and now waits for the operator's confirmation
    /// (`confirm_contract` over its socket) before contract; `blocking` names the gates
    /// that must be overridden by name. Sent again every few seconds while it waits.
    AwaitingConfirmation {
        migration: String,
        blocking: Vec<String>,
        #[serde(rename = "remaining_ms", with = "super::millis")]
        remaining: Duration,
    },
    /// A setting changed (by `zdm ctl set` or the console): the value now in force.
    SettingChanged(Setting),
    Log {
        level: Level,
        text: String,
    },
    /// Something failed; the run may go on (a retried batch) or stop (see `finished`).
    Error {
        message: String,
    },
    /// The run's command ended (the last event before the stream closes): `ok` with what
    /// it did, or the error that stopped it, in words. A stream that ends without this
    /// means the runner died.
    Finished {
        command: String,
        migration: String,
        ok: bool,
        message: String,
    },
    /// Sent by the control socket to a client that read too slowly: this many events
    /// were dropped for it (the run never waits for a client).
    Missed {
        count: u64,
    },
}

/// Where the backfill is right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Throttled,
    Paused,
}

impl RunState {
    pub fn label(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Throttled => "throttled",
            RunState::Paused => "paused",
        }
    }
}

/// Severity of a log line, on the wire and in the console's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
}

/// The name of a phase as people read it (`expand`, `backfill`, ...).
pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Expand => "expand",
        Phase::Backfill => "backfill",
        Phase::Contract => "contract",
        Phase::Rollback => "rollback",
    }
}

/// "database unreachable for 42.0 s (reconnecting; gives up after 30m 00s): why": the one
/// wording of [`Event::Unreachable`] in logs and front-ends.
pub fn unreachable_words(down_for: Duration, budget: Duration, why: &str) -> String {
    format!(
        "database unreachable for {} (reconnecting; gives up after {}): {why}",
        duration(down_for),
        duration(budget)
    )
}

/// The backfill's numbers at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub migration: String,
    /// The table being backfilled, as a person reads it (`public.orders`).
    pub table: String,
    pub rows_done: u64,
    /// From the table's statistics, refined as the backfill goes; `None` when unknown.
    pub rows_total_estimate: Option<u64>,
    pub rows_per_second_now: f64,
    pub rows_per_second_average: f64,
    /// `None` until it means something (the engine's rule: see `engine::progress`).
    #[serde(rename = "eta_ms", with = "super::millis::option")]
    pub eta: Option<Duration>,
    /// Rows in the next batch.
    pub batch_size: u64,
    #[serde(rename = "last_batch_ms", with = "super::millis::option")]
    pub last_batch: Option<Duration>,
    #[serde(rename = "batch_target_ms", with = "super::millis")]
    pub batch_target: Duration,
    pub state: RunState,
    /// Why it is throttled (or paused), in words; `None` while running.
    pub reason: Option<String>,
    #[serde(rename = "running_ms", with = "super::millis")]
    pub time_running: Duration,
    #[serde(rename = "throttled_ms", with = "super::millis")]
    pub time_throttled: Duration,
    #[serde(rename = "paused_ms", with = "super::millis")]
    pub time_paused: Duration,
    /// Backfill workers running batches now (1 before parallel workers existed).
    #[serde(default = "one_worker")]
    pub workers: u32,
    /// Rows each worker updated in this run, by worker number: its share of the total.
    #[serde(default)]
    pub worker_rows: Vec<u64>,
}

fn one_worker() -> u32 {
    1
}

impl Progress {
    /// Percentage done, when the total is known (capped at 100: estimates run short).
    pub fn percent(&self) -> Option<f64> {
        let total = self.rows_total_estimate.filter(|total| *total > 0)?;
        Some((self.rows_done as f64 * 100.0 / total as f64).min(100.0))
    }

    /// One line: `public.orders 61.2% 1,224,000 / ~2,000,000 rows · 5,120 rows/s (avg 4,800) · ETA 2m 40s · batch 1,000 rows 180 ms (target 200 ms)`.
    pub fn describe(&self) -> String {
        let mut line = format!("{} {}", self.table, self.state.label());
        if let Some(reason) = &self.reason {
            line.push_str(&format!(" ({reason})"));
        }
        line.push_str(" · ");
        if let Some(percent) = self.percent() {
            line.push_str(&format!("{percent:.1}% "));
        }
        line.push_str(&thousands(self.rows_done));
        if let Some(total) = self.rows_total_estimate {
            line.push_str(&format!(" / ~{}", thousands(total)));
        }
        line.push_str(&format!(
            " rows · {} rows/s (avg {})",
            thousands(self.rows_per_second_now.max(0.0).round() as u64),
            thousands(self.rows_per_second_average.max(0.0).round() as u64)
        ));
        line.push_str(&match (self.eta, self.state) {
            (_, RunState::Paused) => " · no ETA while paused".to_string(),
            (Some(eta), _) => format!(" · ETA {}", duration(eta)),
            (None, _) => " · ETA not yet known".to_string(),
        });
        line.push_str(&format!(" · batch {} rows", thousands(self.batch_size)));
        if let Some(last) = self.last_batch {
            line.push_str(&format!(" {}", duration(last)));
        }
        line.push_str(&format!(" (target {})", duration(self.batch_target)));
        line
    }
}

/// One committed batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchDone {
    /// 1-based count of batches in this backfill (earlier runs included).
    pub batch: u64,
    /// Rows the batch updated.
    pub rows: u64,
    /// Rows the batch was sized for.
    pub size: u64,
    #[serde(rename = "took_ms", with = "super::millis")]
    pub took: Duration,
    /// Rows the whole backfill has updated (earlier runs included).
    pub rows_done: u64,
}

/// The figures a health line shows, in this order: what the throttle watches most.
const HEALTH_LINE: [(MetricId, &str); 5] = [
    (MetricId::ReplayLagSeconds, "replica lag"),
    (MetricId::LockWaiters, "lock waiters"),
    (MetricId::ActiveSessions, "active sessions"),
    (MetricId::HostCpuPercent, "CPU"),
    (MetricId::CanaryLatencyMs, "canary"),
];

/// `health: replica lag 0.2 s · lock waiters 0 · active sessions 12 · CPU 31% · canary 2 ms`
/// (figures the sample could not read are left out; with none, why).
fn health_line(metrics: &Metrics) -> String {
    let figures: Vec<String> = HEALTH_LINE
        .iter()
        .filter_map(|&(metric, label)| {
            let value = metrics.value_of(metric)?;
            let shown = match metric {
                MetricId::ReplayLagSeconds => format!("{value:.1} s"),
                MetricId::HostCpuPercent => format!("{value:.0}%"),
                MetricId::CanaryLatencyMs => format!("{value:.0} ms"),
                _ => thousands(value.max(0.0).round() as u64),
            };
            Some(format!("{label} {shown}"))
        })
        .collect();
    match (&metrics.sampler.problem, figures.is_empty()) {
        (Some(problem), _) => format!("health: the monitor cannot sample: {problem}"),
        (None, true) => "health: no figures in this sample".to_string(),
        (None, false) => format!("health: {}", figures.join(" · ")),
    }
}

impl Event {
    /// The event in words, for `zdm attach` and headless output on a terminal.
    pub fn describe(&self) -> String {
        match self {
            Event::Progress(progress) => progress.describe(),
            Event::BatchDone(batch) => format!(
                "batch {} done: {} of {} rows in {} ({} rows so far)",
                thousands(batch.batch),
                thousands(batch.rows),
                thousands(batch.size),
                duration(batch.took),
                thousands(batch.rows_done)
            ),
            Event::ThrottleOn { reason } => format!("throttled: {reason}"),
            Event::ThrottleOff {
                reason,
                throttled_for,
            } => format!(
                "throttle released after {}: {reason}",
                duration(*throttled_for)
            ),
            Event::Paused { reason } => format!("paused: {reason}"),
            Event::Resumed { paused_for } => {
                format!("resumed after {} paused", duration(*paused_for))
            }
            Event::StepStarted {
                phase,
                index,
                total,
                description,
                ..
            } => format!(
                "{} step {}/{total} started: {description}",
                phase_name(*phase),
                index + 1
            ),
            Event::StepFinished {
                phase,
                index,
                total,
                took,
                ..
            } => format!(
                "{} step {}/{total} finished in {}",
                phase_name(*phase),
                index + 1,
                duration(*took)
            ),
            Event::StatusChanged { migration, status } => format!("{migration}: now {status}"),
            Event::LockWait {
                step,
                attempt,
                max_attempts,
                retry_in,
                blocked_by,
            } => format!(
                "warning: {step}: lock not granted within lock_timeout (try {attempt} of \
                 {max_attempts}), gave up so the application is not queued; retrying in \
                 {:.1} s; {blocked_by}",
                retry_in.as_secs_f64()
            ),
            Event::CriticalLevel { step, reason } => format!(
                "ERROR: {step}: critical level reached, the backfill is paused until an \
                 operator resumes it: {reason}"
            ),
            Event::Unreachable {
                down_for,
                budget,
                why,
            } => format!("warning: {}", unreachable_words(*down_for, *budget, why)),
            Event::BackfillStopped {
                step,
                why,
                rows_done,
            } => format!(
                "warning: {step}: stopped after its last committed batch ({why}); {} rows are \
                 checkpointed, running the command again resumes",
                thousands(*rows_done)
            ),
            Event::Metrics(metrics) => health_line(metrics),
            // Several lines: every gate's verdict and evidence, as `zdm gates` prints them.
            Event::GatesEvaluated(report) => report.render().trim_end().to_string(),
            Event::GatesObserving(observing) => observing.describe(),
            Event::AwaitingConfirmation {
                migration,
                blocking,
                remaining,
            } => {
                let overrides: String = blocking
                    .iter()
                    .map(|gate| format!(" --override-gate {gate}"))
                    .collect();
                let mut line = format!(
                    "contract of {migration} waits for its confirmation ({} left): \
                     `zdm ctl confirm-contract {migration}{overrides}`, or `zdm ctl abort` \
                     to cancel",
                    duration(*remaining)
                );
                if !blocking.is_empty() {
                    line.push_str(&format!(
                        " (gate(s) {} did not pass: override only what you have checked)",
                        blocking.join(", ")
                    ));
                }
                line
            }
            Event::SettingChanged(setting) => format!("setting changed: {setting}"),
            Event::Log { level, text } => match level {
                Level::Debug => format!("debug: {text}"),
                Level::Info => text.clone(),
                Level::Warning => format!("warning: {text}"),
                Level::Error => format!("error: {text}"),
            },
            Event::Error { message } => format!("ERROR: {message}"),
            Event::Finished {
                command,
                migration,
                ok,
                message,
            } => {
                let verdict = if *ok { "finished" } else { "FAILED" };
                format!("{command} of {migration} {verdict}: {message}")
            }
            Event::Missed { count } => format!(
                "… {} events missed (this client read too slowly; the run did not wait)",
                thousands(*count)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::metrics::Host;
    use crate::monitor::Reading;
    use crate::protocol::{GateReport, Verdict};

    fn progress() -> Progress {
        Progress {
            migration: "0003_orders_status".to_string(),
            table: "public.orders".to_string(),
            rows_done: 1_224_000,
            rows_total_estimate: Some(2_000_000),
            rows_per_second_now: 5_120.4,
            rows_per_second_average: 4_800.0,
            eta: Some(Duration::from_secs(160)),
            batch_size: 1_000,
            last_batch: Some(Duration::from_millis(180)),
            batch_target: Duration::from_millis(200),
            state: RunState::Throttled,
            reason: Some("replica lag 2.3 s > 1 s".to_string()),
            time_running: Duration::from_secs(250),
            time_throttled: Duration::from_secs(20),
            time_paused: Duration::ZERO,
            workers: 1,
            worker_rows: Vec::new(),
        }
    }

    fn metrics() -> Metrics {
        let mut metrics = Metrics {
            sequence: 12,
            taken_at: DateTime::parse_from_rfc3339("2026-12-01T23:41:07Z")
                .map(|at| at.with_timezone(&Utc))
                .unwrap_or_default(),
            ..Metrics::default()
        };
        metrics.sampler.connected = true;
        metrics.host = Reading {
            value: Some(Host {
                cpu_percent: 31.0,
                memory_used_bytes: 1 << 30,
                memory_total_bytes: 4 << 30,
                load_average_1m: 0.5,
            }),
            as_of: Some(metrics.taken_at),
            problem: None,
        };
        metrics
    }

    /// One of every variant. The match below has no wildcard: a new variant does not
    /// compile until it is added here, so the round trip covers every kind.
    fn one_of_each() -> Vec<Event> {
        let events = vec![
            Event::StepStarted {
                migration: "m".to_string(),
                phase: Phase::Expand,
                index: 0,
                total: 3,
                description: "add column".to_string(),
            },
            Event::StepFinished {
                migration: "m".to_string(),
                phase: Phase::Backfill,
                index: 0,
                total: 3,
                took: Duration::from_millis(40),
            },
            Event::StatusChanged {
                migration: "m".to_string(),
                status: Status::ReadyToContract,
            },
            Event::LockWait {
                step: "expand 1/3".to_string(),
                attempt: 2,
                max_attempts: 5,
                retry_in: Duration::from_millis(1500),
                blocked_by: "pid 4711 (psql) holds AccessShareLock".to_string(),
            },
            Event::Progress(progress()),
            Event::BatchDone(BatchDone {
                batch: 3,
                rows: 998,
                size: 1000,
                took: Duration::from_millis(180),
                rows_done: 2998,
            }),
            Event::ThrottleOn {
                reason: "replica lag 2.3 s > 1 s".to_string(),
            },
            Event::ThrottleOff {
                reason: "every throttle input is back below its limit".to_string(),
                throttled_for: Duration::from_secs(12),
            },
            Event::Paused {
                reason: "paused by the operator".to_string(),
            },
            Event::Resumed {
                paused_for: Duration::from_secs(3),
            },
            Event::CriticalLevel {
                step: "backfill 1/1".to_string(),
                reason: "replica lag 9.0 s > 3 × 1 s".to_string(),
            },
            Event::Unreachable {
                down_for: Duration::from_secs(42),
                budget: Duration::from_secs(1800),
                why: "Connection refused".to_string(),
            },
            Event::BackfillStopped {
                step: "backfill 1/1".to_string(),
                why: "SIGINT received".to_string(),
                rows_done: 12_000,
            },
            Event::Metrics(Box::new(metrics())),
            Event::GatesEvaluated(Report {
                migration: "m".to_string(),
                window_seconds: 2.0,
                gates: vec![GateReport {
                    name: "old-version-unused".to_string(),
                    title: "the old version is not used".to_string(),
                    verdict: Verdict::Unknown,
                    evidence: vec!["pg_stat_statements not installed".to_string()],
                }],
            }),
            Event::GatesObserving(Observing {
                migration: "m".to_string(),
                window: Duration::from_secs(60),
                remaining: Duration::from_secs(42),
                settled: vec![GateReport {
                    name: "backfill".to_string(),
                    title: "backfill complete".to_string(),
                    verdict: Verdict::Pass,
                    evidence: vec!["all 1 backfill step(s) done".to_string()],
                }],
                watching: vec!["old-version-unused".to_string()],
            }),
            Event::AwaitingConfirmation {
                migration: "m".to_string(),
                blocking: vec!["explain".to_string()],
                remaining: Duration::from_secs(900),
            },
            Event::SettingChanged(Setting::BatchTarget(Duration::from_millis(500))),
            Event::Log {
                level: Level::Warning,
                text: "lock wait".to_string(),
            },
            Event::Error {
                message: "boom".to_string(),
            },
            Event::Finished {
                command: "start".to_string(),
                migration: "m".to_string(),
                ok: true,
                message: "ready to contract".to_string(),
            },
            Event::Missed { count: 7 },
        ];
        for event in &events {
            match event {
                Event::StepStarted { .. }
                | Event::StepFinished { .. }
                | Event::StatusChanged { .. }
                | Event::LockWait { .. }
                | Event::Progress(_)
                | Event::BatchDone(_)
                | Event::ThrottleOn { .. }
                | Event::ThrottleOff { .. }
                | Event::Paused { .. }
                | Event::Resumed { .. }
                | Event::CriticalLevel { .. }
                | Event::Unreachable { .. }
                | Event::BackfillStopped { .. }
                | Event::Metrics(_)
                | Event::GatesEvaluated(_)
                | Event::GatesObserving(_)
                | Event::AwaitingConfirmation { .. }
                | Event::SettingChanged(_)
                | Event::Log { .. }
                | Event::Error { .. }
                | Event::Finished { .. }
                | Event::Missed { .. } => {}
            }
        }
        events
    }

    #[test]
    fn events_are_tagged_json_with_millisecond_durations_and_rfc3339_times() {
        let stamped = Stamped::now(Event::Progress(progress()));
        let json = serde_json::to_value(&stamped).expect("serialize");
        assert_eq!(json["event"], "progress");
        assert_eq!(json["batch_target_ms"], 200);
        assert_eq!(json["eta_ms"], 160_000);
        assert_eq!(json["state"], "throttled");
        let at = json["at"].as_str().expect("at is text");
        assert!(DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
        let back: Stamped = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, stamped);
    }

    #[test]
    fn every_kind_of_event_round_trips_with_a_distinct_tag() {
        let mut tags = Vec::new();
        for event in one_of_each() {
            let json = serde_json::to_string(&Stamped::now(event.clone())).expect("serialize");
            let back: Stamped = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back.event, event, "{json}");
            assert!(!event.describe().is_empty());
            let value: serde_json::Value = serde_json::from_str(&json).expect("json");
            tags.push(value["event"].as_str().expect("tagged").to_string());
        }
        let count = tags.len();
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), count, "{tags:?}");
    }

    #[test]
    fn statuses_phases_settings_and_verdicts_are_typed_values_on_the_wire() {
        let json = |event: &Event| serde_json::to_value(event).expect("serialize");
        let events = one_of_each();
        let find = |tag: &str| {
            events
                .iter()
                .map(json)
                .find(|value| value["event"] == tag)
                .unwrap_or_else(|| panic!("no {tag}"))
        };
        let status = find("status_changed");
        assert_eq!(status["status"], "ready_to_contract");
        let step = find("step_started");
        assert_eq!(step["phase"], "expand");
        assert_eq!(step["migration"], "m");
        let setting = find("setting_changed");
        assert_eq!(setting["key"], "batch_target");
        assert_eq!(setting["value"], "500ms");
        let gates = find("gates_evaluated");
        assert_eq!(gates["gates"][0]["verdict"], "unknown");
        assert_eq!(gates["window_seconds"], 2.0);
        let observing = find("gates_observing");
        assert_eq!(observing["remaining_ms"], 42_000);
        assert_eq!(observing["settled"][0]["verdict"], "pass");
        assert_eq!(observing["watching"][0], "old-version-unused");
        let awaiting = find("awaiting_confirmation");
        assert_eq!(awaiting["blocking"][0], "explain");
        assert_eq!(awaiting["remaining_ms"], 900_000);
        let log = find("log");
        assert_eq!(log["level"], "warning");
        let metrics = find("metrics");
        assert_eq!(metrics["sequence"], 12);
        // A status the engine does not know is refused, not carried as text.
        let unknown = r#"{"event":"status_changed","migration":"m","status":"aborted"}"#;
        assert!(serde_json::from_str::<Event>(unknown).is_err());
        let known = r#"{"event":"setting_changed","key":"max_rows_per_second","value":"5000/s"}"#;
        assert_eq!(
            serde_json::from_str::<Event>(known).expect("a setting"),
            Event::SettingChanged(Setting::MaxRowsPerSecond(Some(5000.0)))
        );
    }

    #[test]
    fn progress_reads_like_a_status_line() {
        let line = progress().describe();
        assert_eq!(
            line,
            "public.orders throttled (replica lag 2.3 s > 1 s) · 61.2% 1,224,000 / ~2,000,000 rows \
             · 5,120 rows/s (avg 4,800) · ETA 2m 40s · batch 1,000 rows 180 ms (target 200 ms)"
        );
    }

    #[test]
    fn metrics_read_as_a_health_line_of_what_the_sample_has() {
        let line = Event::Metrics(Box::new(metrics())).describe();
        assert_eq!(line, "health: CPU 31%");
        let mut broken = metrics();
        broken.sampler.problem = Some("connection refused".to_string());
        assert_eq!(
            Event::Metrics(Box::new(broken)).describe(),
            "health: the monitor cannot sample: connection refused"
        );
    }
}
