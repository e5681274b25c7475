//! The Metrics snapshot the sampler publishes: plain data, plus the questions the throttle asks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::alerts::Alert;
use super::reading::Reading;

/// The `application_name` prefix that marks zdm's own sessions in `pg_stat_activity`.
pub const ZDM_APPLICATION_PREFIX: &str = "zdm";

/// Whether a session with this `application_name` belongs to zdm itself.
pub fn is_zdm_application(application_name: &str) -> bool {
    application_name.starts_with(ZDM_APPLICATION_PREFIX)
}

/// Everything the monitor knows at one instant. Immutable once published.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Counts samples since the monitor started (1 for the first).
    pub sequence: u64,
    /// When this sample started.
    pub taken_at: DateTime<Utc>,
    /// The sampler's own connection and what it cost to take this sample.
    pub sampler: SamplerStatus,
    pub replication: Reading<Replication>,
    pub locks: Reading<Locks>,
    pub sessions: Reading<Sessions>,
    pub throughput: Reading<Throughput>,
    /// Statistics of the target tables (empty when none were given).
    pub tables: Reading<Vec<TableStats>>,
    pub canary: Reading<Canary>,
    /// The statements that took the most time during the last interval (pg_stat_statements).
    pub statements: Reading<Vec<StatementTiming>>,
    pub progress: Reading<Progress>,
    pub host: Reading<Host>,
    /// Alerts raised from this sample and the history before it.
    pub alerts: Vec<Alert>,
}

/// The sampler's connection and the cost of one sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SamplerStatus {
    /// Whether the sampler held a working connection at the end of this sample.
    pub connected: bool,
    /// Why it is not connected, when it is not.
    pub problem: Option<String>,
    /// The process id of the sampler's own backend (to tell it apart, or to test with).
    pub backend_pid: Option<i32>,
    /// `server_version_num`, e.g. 150004.
    pub server_version: Option<i32>,
    /// True when the monitored server is a standby.
    pub in_recovery: Option<bool>,
    /// Queries sent to the server during this sample (connecting not counted).
    pub queries: u32,
    /// Wall time of this sample, connecting included.
    pub duration_ms: f64,
}

/// Streaming replicas and replication slots, as the primary sees them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Replication {
    pub replicas: Vec<Replica>,
    pub slots: Vec<Slot>,
}

/// One row of `pg_stat_replication`. Byte lags count WAL between the primary's current
/// position and the replica's; second lags are PostgreSQL's own `*_lag` columns (they
/// read zero/none when the replica is caught up and the primary idle).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replica {
    pub pid: i32,
    pub application_name: String,
    pub client_addr: Option<String>,
    pub state: String,
    pub sync_state: String,
    pub write_lag_bytes: Option<i64>,
    pub flush_lag_bytes: Option<i64>,
    pub replay_lag_bytes: Option<i64>,
    pub write_lag_seconds: Option<f64>,
    pub flush_lag_seconds: Option<f64>,
    pub replay_lag_seconds: Option<f64>,
}

/// One replication slot and the WAL it keeps on the primary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    pub name: String,
    pub slot_type: String,
    pub active: bool,
    /// WAL bytes kept because of this slot (from its `restart_lsn`).
    pub retained_bytes: Option<i64>,
    /// `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
}

/// Who waits on whom.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Locks {
    /// One entry per (waiter, blocker) pair.
    pub waits: Vec<LockWait>,
    /// Distinct sessions waiting for a lock.
    pub waiters: usize,
    /// The longest current wait, in seconds (0 when nobody waits).
    pub longest_wait_seconds: f64,
}

/// A session waiting for a lock another session holds (or asked for first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockWait {
    pub waiter: SessionRef,
    pub blocker: SessionRef,
    /// `relation`, `transactionid`, `tuple`, ...
    pub lock_type: String,
    /// The mode the waiter asks for, e.g. `AccessShareLock`.
    pub waiter_mode: String,
    /// The blocker's mode on the same object, e.g. `AccessExclusiveLock`.
    pub blocker_mode: Option<String>,
    /// True when the blocker holds its lock; false when it is itself queued ahead.
    pub blocker_granted: bool,
    /// The table concerned, when there is one (for row locks, the row's table).
    pub relation: Option<RelationName>,
    pub wait_seconds: f64,
}

impl LockWait {
    /// True when zdm is the waiter or the blocker.
    pub fn involves_zdm(&self) -> bool {
        self.waiter.is_zdm || self.blocker.is_zdm
    }
}

/// A schema-qualified table name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationName {
    pub schema: String,
    pub name: String,
}

impl RelationName {
    /// Whether `table` names this relation: `schema.name`, or a bare `name`.
    pub fn matches(&self, table: &str) -> bool {
        match table.split_once('.') {
            Some((schema, name)) => schema == self.schema && name == self.name,
            None => table == self.name,
        }
    }
}

impl std::fmt::Display for RelationName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// One side of a lock wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRef {
    pub pid: i32,
    pub application_name: String,
    pub user: Option<String>,
    pub state: Option<String>,
    /// The session's current or last query, truncated.
    pub query: String,
    /// True when the session is zdm's own (application_name starting with "zdm").
    pub is_zdm: bool,
}

/// Client sessions on the whole server (the sampler's own excluded).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sessions {
    pub total: i64,
    pub active: i64,
    pub idle: i64,
    /// `idle in transaction` and `idle in transaction (aborted)`.
    pub idle_in_transaction: i64,
    /// Sessions waiting for a heavyweight lock.
    pub waiting: i64,
    /// Age of the oldest idle-in-transaction session's transaction.
    pub oldest_idle_in_transaction_seconds: Option<f64>,
    /// Transactions open longer than the configured threshold, oldest first.
    pub long_transactions: Vec<LongTransaction>,
}

/// A transaction open longer than the threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LongTransaction {
    pub pid: i32,
    pub application_name: String,
    pub state: Option<String>,
    pub seconds: f64,
    pub query: String,
    pub is_zdm: bool,
}

/// Rates over the last interval, from `pg_stat_database` of the monitored database.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub commits_per_second: f64,
    pub rollbacks_per_second: f64,
    pub inserted_per_second: f64,
    pub updated_per_second: f64,
    pub deleted_per_second: f64,
    /// The interval the rates were computed over.
    pub interval_seconds: f64,
}

/// `pg_stat_user_tables` for one target table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableStats {
    pub table: RelationName,
    pub live_tuples: i64,
    pub dead_tuples: i64,
    pub last_autovacuum: Option<DateTime<Utc>>,
    pub last_autoanalyze: Option<DateTime<Utc>>,
    pub autovacuum_count: i64,
    /// True when a (auto)vacuum is working on the table right now.
    pub vacuum_running: bool,
}

/// The canary query's latency, as a client of the server sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Canary {
    /// What the canary runs (the query text, or a short description of the default).
    pub description: String,
    pub latency_ms: f64,
}

/// One statement's work during the last interval (pg_stat_statements deltas).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementTiming {
    pub queryid: i64,
    pub query: String,
    pub calls: i64,
    pub mean_ms: f64,
    pub total_ms: f64,
}

/// Index builds and vacuums in progress (on the target tables when any were given).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub create_index: Vec<IndexProgress>,
    pub vacuum: Vec<VacuumProgress>,
}

/// A row of `pg_stat_progress_create_index`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexProgress {
    pub pid: i32,
    pub table: Option<RelationName>,
    pub index: Option<String>,
    pub command: String,
    pub phase: String,
    pub blocks_done: i64,
    pub blocks_total: i64,
    pub tuples_done: i64,
    pub tuples_total: i64,
}

/// A row of `pg_stat_progress_vacuum`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VacuumProgress {
    pub pid: i32,
    pub table: Option<RelationName>,
    pub phase: String,
    pub heap_blocks_total: i64,
    pub heap_blocks_scanned: i64,
    pub heap_blocks_vacuumed: i64,
    pub index_vacuum_count: i64,
}

/// CPU and memory of the machine zdm runs on, measured only when the server runs there too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub load_average_1m: f64,
}

impl Host {
    pub fn memory_percent(&self) -> f64 {
        if self.memory_total_bytes == 0 {
            return 0.0;
        }
        self.memory_used_bytes as f64 * 100.0 / self.memory_total_bytes as f64
    }
}

impl Metrics {
    /// The largest replay lag in bytes over all replicas (None when unknown or stale;
    /// `Some(0)` when there are no replicas).
    pub fn max_replay_lag_bytes(&self) -> Option<i64> {
        let replication = self.replication.current()?;
        Some(
            replication
                .replicas
                .iter()
                .filter_map(|r| r.replay_lag_bytes)
                .max()
                .unwrap_or(0),
        )
    }

    /// The largest replay lag in seconds over all replicas (None when unknown or stale).
    pub fn max_replay_lag_seconds(&self) -> Option<f64> {
        let replication = self.replication.current()?;
        Some(
            replication
                .replicas
                .iter()
                .filter_map(|r| r.replay_lag_seconds)
                .fold(0.0, f64::max),
        )
    }

    /// WAL retained by the slot that keeps the most (None when unknown or stale).
    pub fn max_slot_retained_bytes(&self) -> Option<i64> {
        let replication = self.replication.current()?;
        Some(
            replication
                .slots
                .iter()
                .filter_map(|s| s.retained_bytes)
                .max()
                .unwrap_or(0),
        )
    }

    /// Distinct sessions waiting for a lock on `table` (`schema.name` or `name`).
    pub fn lock_waiters_on(&self, table: &str) -> Option<usize> {
        let locks = self.locks.current()?;
        let mut pids: Vec<i32> = locks
            .waits
            .iter()
            .filter(|w| w.relation.as_ref().is_some_and(|r| r.matches(table)))
            .map(|w| w.waiter.pid)
            .collect();
        pids.sort_unstable();
        pids.dedup();
        Some(pids.len())
    }

    /// Lock waits in which zdm blocks another session (the ones a DBA must see first).
    pub fn waits_blocked_by_zdm(&self) -> Vec<&LockWait> {
        self.locks.current().map_or_else(Vec::new, |locks| {
            locks.waits.iter().filter(|w| w.blocker.is_zdm).collect()
        })
    }

    /// The canary's latency in milliseconds, when current.
    pub fn canary_latency_ms(&self) -> Option<f64> {
        self.canary.current().map(|c| c.latency_ms)
    }

    /// The current value of one tracked metric (None when unknown or stale).
    pub fn value_of(&self, metric: super::MetricId) -> Option<f64> {
        use super::MetricId as M;
        match metric {
            M::ReplayLagBytes => self.max_replay_lag_bytes().map(|v| v as f64),
            M::ReplayLagSeconds => self.max_replay_lag_seconds(),
            M::SlotRetainedBytes => self.max_slot_retained_bytes().map(|v| v as f64),
            M::LockWaiters => self.locks.current().map(|l| l.waiters as f64),
            M::LongestLockWaitSeconds => self.locks.current().map(|l| l.longest_wait_seconds),
            M::ActiveSessions => self.sessions.current().map(|s| s.active as f64),
            M::IdleInTransaction => self
                .sessions
                .current()
                .map(|s| s.idle_in_transaction as f64),
            M::OldestIdleInTransactionSeconds => self
                .sessions
                .current()
                .map(|s| s.oldest_idle_in_transaction_seconds.unwrap_or(0.0)),
            M::CommitsPerSecond => self.throughput.current().map(|t| t.commits_per_second),
            M::RollbacksPerSecond => self.throughput.current().map(|t| t.rollbacks_per_second),
            M::TuplesWrittenPerSecond => self
                .throughput
                .current()
                .map(|t| t.inserted_per_second + t.updated_per_second + t.deleted_per_second),
            M::DeadTuples => self
                .tables
                .current()
                .filter(|tables| !tables.is_empty())
                .map(|tables| tables.iter().map(|t| t.dead_tuples as f64).sum()),
            M::CanaryLatencyMs => self.canary_latency_ms(),
            M::HostCpuPercent => self.host.current().map(|h| h.cpu_percent),
            M::HostMemoryPercent => self.host.current().map(Host::memory_percent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zdm_sessions_are_recognised_but_an_application_is_not() {
        assert!(is_zdm_application("zdm-monitor"));
        assert!(is_zdm_application("zdm engine"));
        assert!(!is_zdm_application("shop-app"));
        assert!(!is_zdm_application("psql"));
    }

    #[test]
    fn relation_names_match_qualified_or_bare() {
        let orders = RelationName {
            schema: "public".to_string(),
            name: "orders".to_string(),
        };
        assert!(orders.matches("orders"));
        assert!(orders.matches("public.orders"));
        assert!(!orders.matches("shop.orders"));
        assert!(!orders.matches("order_items"));
    }
}
