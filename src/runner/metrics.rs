//! The run's Prometheus endpoint (`--metrics-listen 127.0.0.1:9187`, or `metrics_listen`
//! in `zdm.toml`): a minimal HTTP responder answering `GET /metrics` with the Prometheus
//! text exposition format (version 0.0.4), folded from the run's events like any other
//! listener's view: the backfill's rows, rate, batch durations (a histogram), throttle
//! state and reason, workers, every monitor metric, the alerts that hold, and whether the
//! monitor reaches the database (a lost one leaves the endpoint serving, the monitor said
//! to be stale). Names follow
//! Prometheus conventions (`zdm_backfill_rows_total`, base units in names: seconds,
//! bytes, ratios). docs/monitoring.md lists every series with a Grafana query.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::monitor::{MetricId, Metrics, Severity};
use crate::protocol::{Event, Progress, RunState, Stamped, Status};

/// Upper bounds of the batch duration histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];
/// A request that does not arrive within this is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What the endpoint shows: the fold of the run's events.
#[derive(Debug, Default)]
pub struct Exposition {
    migration: String,
    status: Option<Status>,
    progress: Option<Progress>,
    batches: u64,
    /// Per bucket (and +Inf last), cumulative at render time.
    bucket_counts: [u64; BUCKETS.len() + 1],
    batch_seconds_sum: f64,
    metrics: Option<Metrics>,
    alerts_sent: u64,
    finished: Option<bool>,
}

impl Exposition {
    pub fn new(migration: &str) -> Self {
        Exposition {
            migration: migration.to_string(),
            ..Exposition::default()
        }
    }

    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::StatusChanged { status, .. } => self.status = Some(*status),
            Event::Progress(progress) => self.progress = Some(progress.clone()),
            Event::BatchDone(batch) => {
                self.batches += 1;
                let seconds = batch.took.as_secs_f64();
                self.batch_seconds_sum += seconds;
                let bucket = BUCKETS
                    .iter()
                    .position(|le| seconds <= *le)
                    .unwrap_or(BUCKETS.len());
                self.bucket_counts[bucket] += 1;
                // The rows counter follows every batch, not only the 1 s progress.
                if let Some(progress) = self.progress.as_mut() {
                    progress.rows_done = progress.rows_done.max(batch.rows_done);
                }
            }
            Event::Metrics(metrics) => {
                let raised = metrics
                    .alerts
                    .iter()
                    .filter(|a| {
                        self.metrics
                            .as_ref()
                            .is_none_or(|m| m.alerts.iter().all(|b| b.subject != a.subject))
                    })
                    .count();
                self.alerts_sent += raised as u64;
                self.metrics = Some((**metrics).clone());
            }
            Event::Finished { ok, .. } => self.finished = Some(*ok),
            _ => {}
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let m = format!("migration=\"{}\"", escape(&self.migration));
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{{{labels}}} {}", number(*value));
            }
        };
        if let Some(status) = self.status {
            family(
                "zdm_migration_status",
                "gauge",
                "The migration's status (1 for the current one).",
                &[(format!("{m},status=\"{}\"", status_name(status)), 1.0)],
            );
        }
        let p = self.progress.as_ref();
        family(
            "zdm_backfill_rows_total",
            "counter",
            "Rows the backfill has updated (earlier runs of it included).",
            &[(m.clone(), p.map_or(0.0, |p| p.rows_done as f64))],
        );
        if let Some(total) = p.and_then(|p| p.rows_total_estimate) {
            family(
                "zdm_backfill_rows_estimate",
                "gauge",
                "Rows the table is estimated to hold (from its statistics).",
                &[(m.clone(), total as f64)],
            );
        }
        family(
            "zdm_backfill_rows_per_second",
            "gauge",
            "The backfill's rate over the last 10 s of running.",
            &[(m.clone(), p.map_or(0.0, |p| p.rows_per_second_now))],
        );
        family(
            "zdm_backfill_workers",
            "gauge",
            "Backfill workers running batches now.",
            &[(m.clone(), p.map_or(0.0, |p| p.workers as f64))],
        );
        if let Some(p) = p {
            let reason = p.reason.as_deref().unwrap_or("");
            family(
                "zdm_backfill_state",
                "gauge",
                "Where the backfill is (1 for the current state), with the throttle's or pause's reason.",
                &[(
                    format!(
                        "{m},state=\"{}\",reason=\"{}\"",
                        state_name(p.state),
                        escape(reason)
                    ),
                    1.0,
                )],
            );
            family(
                "zdm_backfill_throttled_seconds_total",
                "counter",
                "Time the backfill was held by its throttle.",
                &[(m.clone(), p.time_throttled.as_secs_f64())],
            );
            family(
                "zdm_backfill_paused_seconds_total",
                "counter",
                "Time the backfill was paused.",
                &[(m.clone(), p.time_paused.as_secs_f64())],
            );
            family(
                "zdm_backfill_running_seconds_total",
                "counter",
                "Time the backfill ran batches.",
                &[(m.clone(), p.time_running.as_secs_f64())],
            );
        }
        // The histogram: cumulative buckets, then +Inf, sum and count.
        let _ = writeln!(
            out,
            "# HELP zdm_backfill_batch_duration_seconds How long each backfill batch took."
        );
        let _ = writeln!(out, "# TYPE zdm_backfill_batch_duration_seconds histogram");
        let mut cumulative = 0;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += self.bucket_counts[i];
            let _ = writeln!(
                out,
                "zdm_backfill_batch_duration_seconds_bucket{{{m},le=\"{}\"}} {cumulative}",
                number(*le)
            );
        }
        cumulative += self.bucket_counts[BUCKETS.len()];
        let _ = writeln!(
            out,
            "zdm_backfill_batch_duration_seconds_bucket{{{m},le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "zdm_backfill_batch_duration_seconds_sum{{{m}}} {}",
            number(self.batch_seconds_sum)
        );
        let _ = writeln!(
            out,
            "zdm_backfill_batch_duration_seconds_count{{{m}}} {}",
            self.batches
        );
        if let Some(metrics) = &self.metrics {
            // A lost database does not end the endpoint: it keeps answering, and says the
            // monitor's readings are stale (their series are left out until it reconnects).
            let problem = metrics.sampler.problem.as_deref().unwrap_or("");
            let _ = writeln!(
                out,
                "# HELP zdm_monitor_connected Whether the run's monitor reaches the database \
                 (0: its readings are stale; the reason is the label)."
            );
            let _ = writeln!(out, "# TYPE zdm_monitor_connected gauge");
            let _ = writeln!(
                out,
                "zdm_monitor_connected{{{m},problem=\"{}\"}} {}",
                escape(problem),
                u8::from(metrics.sampler.connected)
            );
            let _ = writeln!(
                out,
                "# HELP zdm_monitor_sample_timestamp_seconds When the monitor's last sample \
                 was taken (Unix time)."
            );
            let _ = writeln!(out, "# TYPE zdm_monitor_sample_timestamp_seconds gauge");
            let _ = writeln!(
                out,
                "zdm_monitor_sample_timestamp_seconds{{{m}}} {}",
                number(metrics.taken_at.timestamp_millis() as f64 / 1000.0)
            );
            for id in MetricId::ALL {
                if let Some(value) = metrics.value_of(id) {
                    let (name, scale, help) = monitor_series(id);
                    let mut family = |name: &str, help: &str, value: f64| {
                        let _ = writeln!(out, "# HELP {name} {help}");
                        let _ = writeln!(out, "# TYPE {name} gauge");
                        let _ = writeln!(out, "{name}{{{m}}} {}", number(value));
                    };
                    family(name, help, value * scale);
                }
            }
            let _ = writeln!(
                out,
                "# HELP zdm_alert Alerts of the run's monitor that hold now (1 each)."
            );
            let _ = writeln!(out, "# TYPE zdm_alert gauge");
            for alert in &metrics.alerts {
                let severity = match alert.severity {
                    Severity::Warning => "warning",
                    Severity::Critical => "critical",
                };
                let _ = writeln!(
                    out,
                    "zdm_alert{{{m},subject=\"{}\",severity=\"{severity}\"}} 1",
                    escape(&alert.subject)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP zdm_alerts_raised_total Monitor alerts raised during this run."
        );
        let _ = writeln!(out, "# TYPE zdm_alerts_raised_total counter");
        let _ = writeln!(out, "zdm_alerts_raised_total{{{m}}} {}", self.alerts_sent);
        out
    }
}

/// Each monitor metric's series: name, factor to its base unit, help.
fn monitor_series(id: MetricId) -> (&'static str, f64, &'static str) {
    use MetricId as M;
    match id {
        M::ReplayLagBytes => (
            "zdm_replica_replay_lag_bytes",
            1.0,
            "The largest replica replay lag.",
        ),
        M::ReplayLagSeconds => (
            "zdm_replica_replay_lag_seconds",
            1.0,
            "The largest replica replay lag.",
        ),
        M::SlotRetainedBytes => (
            "zdm_replication_slot_retained_bytes",
            1.0,
            "WAL the most demanding replication slot retains.",
        ),
        M::LockWaiters => ("zdm_lock_waiters", 1.0, "Sessions waiting for a lock."),
        M::LongestLockWaitSeconds => (
            "zdm_lock_wait_longest_seconds",
            1.0,
            "The longest current lock wait.",
        ),
        M::ActiveSessions => ("zdm_sessions_active", 1.0, "Active sessions."),
        M::IdleInTransaction => (
            "zdm_sessions_idle_in_transaction",
            1.0,
            "Sessions idle in a transaction.",
        ),
        M::OldestIdleInTransactionSeconds => (
            "zdm_idle_in_transaction_oldest_seconds",
            1.0,
            "The oldest idle-in-transaction session's idle time.",
        ),
        M::CommitsPerSecond => (
            "zdm_commits_per_second",
            1.0,
            "Commits per second over the last sample.",
        ),
        M::RollbacksPerSecond => (
            "zdm_rollbacks_per_second",
            1.0,
            "Rollbacks per second over the last sample.",
        ),
        M::TuplesWrittenPerSecond => (
            "zdm_rows_written_per_second",
            1.0,
            "Rows inserted, updated and deleted per second.",
        ),
        M::DeadTuples => ("zdm_dead_rows", 1.0, "Dead rows of the backfilled tables."),
        M::CanaryLatencyMs => (
            "zdm_canary_latency_seconds",
            0.001,
            "The canary query's latency.",
        ),
        M::HostCpuPercent => (
            "zdm_host_cpu_ratio",
            0.01,
            "Host CPU use (0-1), when the server runs on this machine.",
        ),
        M::HostMemoryPercent => (
            "zdm_host_memory_ratio",
            0.01,
            "Host memory use (0-1), when the server runs on this machine.",
        ),
    }
}

fn status_name(status: Status) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{status:?}"))
}

fn state_name(state: RunState) -> &'static str {
    state.label()
}

/// A label value escaped as the format asks (backslash, quote, newline).
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value: finite numbers as Rust prints them, the rest as the format spells them.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{value}")
    }
}

/// The endpoint of one run: its listener task and the fold of the run's events.
pub struct Endpoint {
    pub address: SocketAddr,
    serve: JoinHandle<()>,
    fold: JoinHandle<()>,
}

impl Endpoint {
    /// Binds `address` and serves until [`Endpoint::stop`]; `events` is a subscription
    /// to the run's events taken before the first one.
    pub async fn start(
        address: SocketAddr,
        migration: &str,
        mut events: broadcast::Receiver<Stamped>,
    ) -> std::io::Result<Endpoint> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let view = Arc::new(Mutex::new(Exposition::new(migration)));
        let folded = view.clone();
        let fold = tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(stamped) => lock(&folded).apply(&stamped.event),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        let serve = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let view = view.clone();
                tokio::spawn(answer(stream, view));
            }
        });
        Ok(Endpoint {
            address,
            serve,
            fold,
        })
    }

    pub fn stop(self) {
        self.serve.abort();
        self.fold.abort();
    }
}

fn lock(view: &Mutex<Exposition>) -> std::sync::MutexGuard<'_, Exposition> {
    view.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Answers one connection: `GET /metrics` (any query string), else 404 or 405.
async fn answer(mut stream: tokio::net::TcpStream, view: Arc<Mutex<Exposition>>) {
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => request.extend_from_slice(&buffer[..n]),
            }
        }
        true
    })
    .await;
    if !matches!(read, Ok(true)) {
        return;
    }
    let text = String::from_utf8_lossy(&request);
    let mut line = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (line.next().unwrap_or(""), line.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            lock(&view).render(),
        ),
        (_, "/metrics") => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        ),
        _ => (
            "404 Not Found",
            "text/plain",
            "zdm serves /metrics only\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    if method != "HEAD" {
        let _ = stream.write_all(body.as_bytes()).await;
    }
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a \"b\"\\\nc"), "a \\\"b\\\"\\\\\\nc");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(f64::INFINITY), "+Inf");
    }
}
