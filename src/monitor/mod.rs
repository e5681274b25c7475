//! The monitor: a sampler task that reads database (and, when local, host) metrics every
//! interval and publishes an immutable [`Metrics`] snapshot on a `watch` channel, with ring
//! buffers of history, baselines and alerts. See `docs/monitoring.md`.
//!
//! ```text
//! Monitor::start(options) ──▶ sampler task ──SQL (pg_monitor is enough)──▶ PostgreSQL
//!        │                        │
//!        │ subscribe()            ├─▶ History (ring buffers)  ─┐
//!        ▼                        │                            ├─▶ alerts::evaluate (pure)
//!  watch<Arc<Metrics>> ◀──────────┴─▶ Metrics snapshot ◀───────┘
//! ```

pub mod alerts;
pub mod baseline;
pub mod history;
pub mod host;
pub mod metrics;
pub mod queries;
pub mod reading;
mod sampler;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnectOptions;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use alerts::{Alert, AlertChange, AlertPolicy, Severity};
pub use baseline::Band;
pub use history::{History, MetricId, Series};
pub use metrics::{is_zdm_application, Metrics};
pub use reading::Reading;
pub use sampler::APPLICATION_NAME;

/// What to sample, how often and how patiently.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// The database to watch (the sampler adds its own application_name and timeouts).
    pub connect: PgConnectOptions,
    /// Other servers of the same database (`failover_urls`), tried in turn when `connect`
    /// cannot be reached; one is watched only while it is a primary, so after a failover
    /// the throttle reads the server the run writes to.
    pub failover: Vec<PgConnectOptions>,
    /// Time between samples.
    pub interval: Duration,
    /// Server-side `statement_timeout` of each metric query (`lock_timeout` is half).
    pub query_timeout: Duration,
    /// Extra time the client waits for an answer beyond `query_timeout` before it
    /// declares the server unresponsive and drops the connection.
    pub answer_grace: Duration,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// Tables the migration works on (`name` or `schema.name`): their statistics,
    /// progress views and the default canary.
    pub target_tables: Vec<String>,
    /// A query whose latency is the canary; default: a primary-key lookup on the first
    /// target table, else `SELECT 1`.
    pub canary_query: Option<String>,
    /// Transactions open longer than this are listed.
    pub long_transaction: Duration,
    /// Query texts are cut to this many characters.
    pub query_text_chars: i32,
    /// How many statements of pg_stat_statements to show.
    pub top_statements: usize,
    /// Points kept per metric in history.
    pub history_len: usize,
    pub alert_policy: AlertPolicy,
}

impl MonitorOptions {
    /// Defaults for watching `connect`.
    pub fn new(connect: PgConnectOptions) -> Self {
        MonitorOptions {
            connect,
            failover: Vec::new(),
            interval: Duration::from_secs(1),
            query_timeout: Duration::from_millis(500),
            answer_grace: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            target_tables: Vec::new(),
            canary_query: None,
            long_transaction: Duration::from_secs(60),
            query_text_chars: 200,
            top_statements: 5,
            history_len: 3600,
            alert_policy: AlertPolicy::default(),
        }
    }

    /// The sampler's own connection settings for `server` (`connect` or one of
    /// `failover`): marked as zdm, with short timeouts.
    fn session_options(&self, server: &PgConnectOptions) -> PgConnectOptions {
        let statement_ms = self.query_timeout.as_millis().max(1);
        let lock_ms = (statement_ms / 2).max(1);
        server.clone().application_name(APPLICATION_NAME).options([
            ("statement_timeout", format!("{statement_ms}ms")),
            ("lock_timeout", format!("{lock_ms}ms")),
            // The monitor's queries are small; JIT compilation would only cost.
            ("jit", "off".to_string()),
        ])
    }

    /// `host:port/database` of the target, for logs (never a password).
    fn describe_target(&self) -> String {
        let host = match self.connect.get_socket() {
            Some(socket) => socket.display().to_string(),
            None => self.connect.get_host().to_string(),
        };
        format!(
            "{host}:{}/{}",
            self.connect.get_port(),
            self.connect.get_database().unwrap_or_default()
        )
    }
}

/// A running monitor. Dropping it stops the sampler.
#[derive(Debug)]
pub struct Monitor {
    metrics: watch::Receiver<Arc<Metrics>>,
    history: Arc<RwLock<History>>,
    baseline_end: watch::Sender<Option<DateTime<Utc>>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Monitor {
    /// Starts the sampler task (call inside a tokio runtime). The first snapshot arrives
    /// after the first sample; until then [`Monitor::latest`] is an empty one.
    pub fn start(options: MonitorOptions) -> Monitor {
        let history = Arc::new(RwLock::new(History::new(options.history_len)));
        let (publish, metrics) = watch::channel(Arc::new(Metrics::default()));
        let (baseline_end, baseline_end_rx) = watch::channel(None);
        let (stop, stop_rx) = watch::channel(false);
        let sampler = sampler::Sampler::new(options);
        let task = tokio::spawn(sampler.run(publish, history.clone(), baseline_end_rx, stop_rx));
        Monitor {
            metrics,
            history,
            baseline_end,
            stop,
            task: Some(task),
        }
    }

    /// A receiver of every new snapshot (`changed().await`, then `borrow()`).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Metrics>> {
        self.metrics.clone()
    }

    /// The latest snapshot.
    pub fn latest(&self) -> Arc<Metrics> {
        self.metrics.borrow().clone()
    }

    /// The history, shared with the sampler: read it briefly (e.g. while drawing) through
    /// [`History`]'s methods; never hold the guard across an await.
    pub fn history(&self) -> Arc<RwLock<History>> {
        self.history.clone()
    }

    /// Fixes the end of the baseline window (when the migration started); `None` goes back
    /// to a rolling window.
    pub fn set_baseline_end(&self, at: Option<DateTime<Utc>>) {
        self.baseline_end.send_replace(at);
    }

    /// Stops the sampler and waits for it to close its connection.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
