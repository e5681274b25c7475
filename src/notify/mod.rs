//! Alerts that reach people: a run's events (a metric off its baseline, a throttle
//! input at its critical level, a backfill stopped, the command failed or finished, a
//! phase change, a contract gate that did not pass) become notices (`incident`: one per
//! incident, deduplicated and rate-limited) sent to the configured sinks (`sink`: a
//! webhook, a command hook). The [`Notifier`] reads the run's event stream like any
//! other listener, on a task of its own: nothing here can hold a batch.
//!
//! The JSON body of every notice is [`Payload`] (docs/monitoring.md lists it).

pub mod incident;
pub mod sink;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::protocol::{Event, Stamped};
pub use incident::{Incidents, Kind, Notice, Reader, Severity};
pub use sink::{redact_url, Hook, Webhook};

/// The default time before one incident is sent again (see `incident`).
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(15 * 60);
/// How long the end of a run waits for its last notices to be delivered.
const FINISH_GRACE: Duration = Duration::from_secs(10);

/// The `[alerts]` of `zdm.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    pub webhooks: Vec<Webhook>,
    pub commands: Vec<Hook>,
    /// One incident is sent at most once per this (see `incident`).
    pub cooldown: Duration,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            webhooks: Vec::new(),
            commands: Vec::new(),
            cooldown: DEFAULT_COOLDOWN,
        }
    }
}

impl AlertSettings {
    pub fn is_empty(&self) -> bool {
        self.webhooks.is_empty() && self.commands.is_empty()
    }
}

/// The JSON every sink gets. `text` is what Slack and Mattermost incoming webhooks show.
#[derive(Debug, Clone, Serialize)]
pub struct Payload<'a> {
    /// `[zdm critical] 0003_orders: ...`: one line for a chat channel.
    pub text: String,
    pub source: &'static str,
    pub kind: Kind,
    pub severity: Severity,
    pub migration: &'a str,
    /// The database as `host:port/name` (never a password).
    pub database: &'a str,
    /// The machine the run is on.
    pub host: &'a str,
    pub incident: &'a str,
    pub summary: &'a str,
    pub at: DateTime<Utc>,
    pub repeats: u32,
}

/// What every notice of one run says about where it comes from.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub migration: String,
    pub database: String,
    pub host: String,
}

impl<'a> Payload<'a> {
    pub fn new(notice: &'a Notice, origin: &'a Origin) -> Self {
        let severity = match notice.severity {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        };
        let repeats = match notice.repeats {
            0 => String::new(),
            n => format!(" (came back {n} more times since the last notice)"),
        };
        Payload {
            text: format!("[zdm {severity}] {}{repeats}", notice.summary),
            source: "zdm",
            kind: notice.kind,
            severity: notice.severity,
            migration: &origin.migration,
            database: &origin.database,
            host: &origin.host,
            incident: &notice.incident,
            summary: &notice.summary,
            at: notice.at,
            repeats: notice.repeats,
        }
    }
}

/// The task that reads a run's events and feeds the sinks; it ends after the run's
/// `finished` event (or when the stream closes).
pub struct Notifier {
    task: JoinHandle<()>,
}

impl Notifier {
    /// Starts reading `events` (a subscription taken before the run's first event); None
    /// without sinks.
    pub fn start(
        settings: &AlertSettings,
        origin: Origin,
        mut events: broadcast::Receiver<Stamped>,
    ) -> Option<Notifier> {
        if settings.is_empty() {
            return None;
        }
        let sinks: Vec<sink::Running> = settings
            .webhooks
            .iter()
            .cloned()
            .map(Webhook::start)
            .chain(settings.commands.iter().cloned().map(Hook::start))
            .collect();
        let cooldown = settings.cooldown;
        let task = tokio::spawn(async move {
            let mut reader = Reader::default();
            let mut incidents = Incidents::new(cooldown);
            loop {
                let stamped = match events.recv().await {
                    Ok(stamped) => stamped,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "the alert reader fell behind the run's events");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                for change in reader.read(&origin.migration, &stamped.event) {
                    if let Some(notice) = incidents.apply(change, stamped.at) {
                        match serde_json::to_string(&Payload::new(&notice, &origin)) {
                            Ok(body) => sinks.iter().for_each(|s| s.send(&body)),
                            Err(error) => tracing::warn!(%error, "alert not encoded"),
                        }
                    }
                }
                if matches!(stamped.event, Event::Finished { .. }) {
                    break;
                }
            }
            let deadline = tokio::time::Instant::now() + FINISH_GRACE;
            for sink in sinks {
                sink.finish(deadline).await;
            }
        });
        Some(Notifier { task })
    }

    /// Waits for the last notices to be delivered (at most a few seconds past the run's
    /// end: a dead sink never keeps the command from exiting for long).
    pub async fn finish(self) {
        let mut task = self.task;
        if tokio::time::timeout(FINISH_GRACE + Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}
