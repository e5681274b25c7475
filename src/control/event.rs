//! What a run reports, out to every front-end: the `Event` enum (JSON-tagged, RFC 3339
//! timestamps) and its one-line wording for people.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::format::{duration, thousands};
use crate::plan::Phase;

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
    /// The backfill's numbers, sent after every batch and while throttled or paused.
    Progress(Progress),
    /// One backfill batch committed with its checkpoint.
    BatchDone(BatchDone),
    /// The backfill is held back; `reason` in words, e.g. "replica lag 2.3 s > 1 s".
    ThrottleOn {
        reason: String,
    },
    /// The throttle released; `reason` says why, e.g. "replica lag 0.2 s ≤ 1 s".
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
    /// A step began. `index` is 0-based among the `total` steps of its phase.
    StepStarted {
        phase: Phase,
        index: usize,
        total: usize,
        description: String,
    },
    StepFinished {
        phase: Phase,
        index: usize,
        total: usize,
        #[serde(rename = "took_ms", with = "super::millis")]
        took: Duration,
    },
    /// The contract safety gates of a migration were evaluated (shown before the operator
    /// confirms contract).
    GatesEvaluated {
        migration: String,
        gates: Vec<Gate>,
    },
    /// A setting changed (by `set`, the console, or the engine itself).
    SettingChanged {
        key: String,
        value: String,
    },
    Log {
        level: Level,
        text: String,
    },
    /// Something failed; the run may go on (a retried batch) or stop (see `status_changed`).
    Error {
        message: String,
    },
    /// The migration moved to another status (`expanding`, `backfilling`,
    /// `ready_to_contract`, `complete`, `failed`, ...: the engine's status keys).
    StatusChanged {
        migration: String,
        status: String,
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

/// One contract safety gate's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    pub name: String,
    /// `None` when it could not be determined (which blocks contract like a failure).
    pub passed: Option<bool>,
    /// What was checked and seen, in words.
    pub evidence: String,
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

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
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
        line.push_str(&match self.eta {
            Some(eta) => format!(" · ETA {}", duration(eta)),
            None => " · ETA not yet known".to_string(),
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
    /// 1-based count of batches in this backfill.
    pub batch: u64,
    /// Rows the batch updated.
    pub rows: u64,
    /// Rows the batch was sized for.
    pub size: u64,
    #[serde(rename = "took_ms", with = "super::millis")]
    pub took: Duration,
    pub rows_done: u64,
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
            } => format!(
                "{} step {}/{total} finished in {}",
                phase_name(*phase),
                index + 1,
                duration(*took)
            ),
            Event::GatesEvaluated { migration, gates } => {
                let verdicts: Vec<String> = gates
                    .iter()
                    .map(|gate| {
                        let verdict = match gate.passed {
                            Some(true) => "pass",
                            Some(false) => "FAIL",
                            None => "unknown",
                        };
                        format!("{} {verdict} ({})", gate.name, gate.evidence)
                    })
                    .collect();
                format!("{migration}: contract gates: {}", verdicts.join("; "))
            }
            Event::SettingChanged { key, value } => format!("setting changed: {key}={value}"),
            Event::Log { level, text } => match level {
                Level::Debug => format!("debug: {text}"),
                Level::Info => text.clone(),
                Level::Warning => format!("warning: {text}"),
                Level::Error => format!("error: {text}"),
            },
            Event::Error { message } => format!("ERROR: {message}"),
            Event::StatusChanged { migration, status } => {
                format!("{migration}: now {}", status.replace('_', " "))
            }
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

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Expand => "expand",
        Phase::Backfill => "backfill",
        Phase::Contract => "contract",
        Phase::Rollback => "rollback",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        }
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
    fn every_kind_of_event_round_trips() {
        let events = vec![
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
                reason: "replica lag 0.2 s ≤ 1 s".to_string(),
                throttled_for: Duration::from_secs(12),
            },
            Event::Paused {
                reason: "operator (zdm ctl pause)".to_string(),
            },
            Event::Resumed {
                paused_for: Duration::from_secs(3),
            },
            Event::StepStarted {
                phase: Phase::Expand,
                index: 0,
                total: 3,
                description: "add column".to_string(),
            },
            Event::StepFinished {
                phase: Phase::Expand,
                index: 0,
                total: 3,
                took: Duration::from_millis(40),
            },
            Event::GatesEvaluated {
                migration: "m".to_string(),
                gates: vec![Gate {
                    name: "no reads of the old column".to_string(),
                    passed: None,
                    evidence: "pg_stat_statements not installed".to_string(),
                }],
            },
            Event::SettingChanged {
                key: "batch_target".to_string(),
                value: "500ms".to_string(),
            },
            Event::Log {
                level: Level::Warning,
                text: "lock wait".to_string(),
            },
            Event::Error {
                message: "boom".to_string(),
            },
            Event::StatusChanged {
                migration: "m".to_string(),
                status: "backfilling".to_string(),
            },
            Event::Finished {
                command: "start".to_string(),
                migration: "m".to_string(),
                ok: true,
                message: "ready to contract".to_string(),
            },
            Event::Missed { count: 7 },
        ];
        for event in events {
            let json = serde_json::to_string(&Stamped::now(event.clone())).expect("serialize");
            let back: Stamped = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back.event, event, "{json}");
            assert!(!event.describe().is_empty());
        }
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
}
