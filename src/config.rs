//! Settings from `zdm.toml`, the environment and flags, merged into one [`Config`]
//! (a flag beats the environment, which beats the file, which beats the default).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::db::DatabaseUrl;
use crate::engine::pacing::PacingSettings;
use crate::engine::throttle::ThrottleSettings;
use crate::engine::BackfillSettings;

/// The file read when `--config` is not given, if it exists in the current directory.
pub const DEFAULT_FILE: &str = "zdm.toml";

/// Why the settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "no database to work on: give --database-url, set DATABASE_URL, \
         or set database_url in zdm.toml"
    )]
    NoDatabase,
}

/// The contents of `zdm.toml`; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    migrations_dir: Option<PathBuf>,
    lock_timeout_ms: Option<u64>,
    lock_retry_first_ms: Option<u64>,
    lock_retry_max_ms: Option<u64>,
    lock_retry_attempts: Option<u32>,
    statement_timeout_ms: Option<u64>,
    backfill_batch_size: Option<u64>,
    reconnect_budget_s: Option<u64>,
    #[serde(default)]
    failover_urls: Vec<String>,
    #[serde(default)]
    monitor: MonitorFile,
    #[serde(default)]
    gates: GatesFile,
    #[serde(default)]
    backfill: BackfillFile,
    #[serde(default)]
    throttle: ThrottleFile,
}

/// The `[backfill]` table of `zdm.toml` (see `docs/engine.md`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackfillFile {
    target_batch_ms: Option<u64>,
    start_batch_rows: Option<u64>,
    min_batch_rows: Option<u64>,
    max_batch_rows: Option<u64>,
    nice_ratio: Option<f64>,
    /// 0 = no ceiling.
    max_rows_per_second: Option<f64>,
    /// Bound on one batch's statements; unset: derived from `target_batch_ms`.
    batch_timeout_ms: Option<u64>,
}

impl BackfillFile {
    fn settings(self) -> PacingSettings {
        let d = PacingSettings::default();
        let min_rows = self.min_batch_rows.map_or(d.min_rows, |n| n.max(1));
        PacingSettings {
            target: self
                .target_batch_ms
                .map_or(d.target, |ms| Duration::from_millis(ms.max(1))),
            start_rows: self.start_batch_rows.map_or(d.start_rows, |n| n.max(1)),
            min_rows,
            max_rows: self.max_batch_rows.map_or(d.max_rows, |n| n.max(min_rows)),
            nice_ratio: self.nice_ratio.map_or(d.nice_ratio, |r| r.max(0.0)),
            max_rows_per_second: self
                .max_rows_per_second
                .map_or(d.max_rows_per_second, |r| (r > 0.0).then_some(r)),
        }
    }
}

/// The `[throttle]` table of `zdm.toml`. A negative limit switches its input off.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThrottleFile {
    max_replica_lag_ms: Option<i64>,
    max_lock_waiters: Option<i64>,
    max_active_sessions_factor: Option<f64>,
    max_host_cpu_percent: Option<f64>,
    max_canary_factor: Option<f64>,
    query: Option<String>,
    flag_file: Option<PathBuf>,
    critical_factor: Option<f64>,
    release_samples: Option<u32>,
    release_ratio: Option<f64>,
    stale_after_ms: Option<u64>,
}

impl ThrottleFile {
    fn settings(self) -> ThrottleSettings {
        let d = ThrottleSettings::default();
        let on = |value: Option<f64>, default: Option<f64>| match value {
            Some(v) if v < 0.0 => None,
            Some(v) => Some(v),
            None => default,
        };
        ThrottleSettings {
            max_replica_lag: match self.max_replica_lag_ms {
                Some(ms) if ms < 0 => None,
                Some(ms) => Some(Duration::from_millis(ms.unsigned_abs())),
                None => d.max_replica_lag,
            },
            max_lock_waiters: match self.max_lock_waiters {
                Some(n) if n < 0 => None,
                Some(n) => Some(n.unsigned_abs()),
                None => d.max_lock_waiters,
            },
            max_active_sessions_factor: on(
                self.max_active_sessions_factor,
                d.max_active_sessions_factor,
            ),
            max_host_cpu_percent: on(self.max_host_cpu_percent, d.max_host_cpu_percent),
            max_canary_factor: on(self.max_canary_factor, d.max_canary_factor),
            query: self.query.filter(|q| !q.trim().is_empty()),
            flag_file: self.flag_file,
            critical_factor: self.critical_factor.filter(|f| *f > 1.0),
            release_samples: self.release_samples.map_or(d.release_samples, |n| n.max(1)),
            release_ratio: self
                .release_ratio
                .map_or(d.release_ratio, |r| r.clamp(0.0, 1.0)),
            stale_after: self
                .stale_after_ms
                .map_or(d.stale_after, |ms| Duration::from_millis(ms.max(100))),
        }
    }
}

/// The `[gates]` table of `zdm.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatesFile {
    window_s: Option<f64>,
    replica_urls: Option<Vec<String>>,
    max_replication_lag_ms: Option<u64>,
}

/// How the contract safety gates observe (see `docs/operations.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct GateSettings {
    /// How long statement counts and index scans are watched before contract.
    pub window: Duration,
    /// Replicas whose index scans are checked too (their own connection strings).
    pub replica_urls: Vec<DatabaseUrl>,
    /// Replication lag above which "nothing old still running" fails.
    pub max_replication_lag: Duration,
}

impl Default for GateSettings {
    fn default() -> Self {
        GateSettings {
            window: Duration::from_secs(60),
            replica_urls: Vec::new(),
            max_replication_lag: Duration::from_secs(10),
        }
    }
}

impl GatesFile {
    fn settings(self) -> GateSettings {
        let defaults = GateSettings::default();
        GateSettings {
            window: self
                .window_s
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map_or(defaults.window, Duration::from_secs_f64),
            replica_urls: self
                .replica_urls
                .unwrap_or_default()
                .into_iter()
                .map(DatabaseUrl::new)
                .collect(),
            max_replication_lag: self
                .max_replication_lag_ms
                .map_or(defaults.max_replication_lag, Duration::from_millis),
        }
    }
}

/// The `[monitor]` table of `zdm.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MonitorFile {
    interval_ms: Option<u64>,
    query_timeout_ms: Option<u64>,
    canary_query: Option<String>,
    long_transaction_s: Option<u64>,
    baseline_window_s: Option<u64>,
}

/// How the monitor samples (see `docs/monitoring.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorSettings {
    /// Time between samples.
    pub interval: Duration,
    /// `statement_timeout` of each metric query.
    pub query_timeout: Duration,
    /// The canary query; None: a primary-key lookup on the target table, else `SELECT 1`.
    pub canary_query: Option<String>,
    /// Transactions open longer than this are listed as long-running.
    pub long_transaction: Duration,
    /// The window before the migration (or before now) that defines each metric's baseline.
    pub baseline_window: Duration,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            interval: Duration::from_secs(1),
            query_timeout: Duration::from_millis(500),
            canary_query: None,
            long_transaction: Duration::from_secs(60),
            baseline_window: Duration::from_secs(300),
        }
    }
}

impl MonitorFile {
    fn settings(self) -> MonitorSettings {
        let defaults = MonitorSettings::default();
        MonitorSettings {
            interval: self
                .interval_ms
                .map_or(defaults.interval, |ms| Duration::from_millis(ms.max(100))),
            query_timeout: self.query_timeout_ms.map_or(defaults.query_timeout, |ms| {
                Duration::from_millis(ms.max(10))
            }),
            canary_query: self.canary_query.filter(|q| !q.trim().is_empty()),
            long_transaction: self
                .long_transaction_s
                .map_or(defaults.long_transaction, Duration::from_secs),
            baseline_window: self
                .baseline_window_s
                .map_or(defaults.baseline_window, Duration::from_secs),
        }
    }
}

/// What the command line contributes (already merged with the environment by clap).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub database_url: Option<String>,
    pub migrations_dir: Option<PathBuf>,
}

/// zdm's settings for one run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file these settings were read from, if any (a detached runner reads it too).
    pub config_file: Option<PathBuf>,
    database_url: Option<DatabaseUrl>,
    /// Directory of migration files, ordered by file name.
    pub migrations_dir: PathBuf,
    /// How long any DDL may wait for its lock before giving up and retrying.
    pub lock_timeout: Duration,
    /// The wait before the first retry of a DDL that timed out on its lock; it doubles
    /// (with jitter) on each further retry up to `lock_retry_max`.
    pub lock_retry_first: Duration,
    /// The longest wait between two tries of a DDL.
    pub lock_retry_max: Duration,
    /// How many times a DDL is tried before the run stops with an error.
    pub lock_retry_attempts: u32,
    /// Limit on how long one DDL statement may run (`None`: no limit, whatever the role's
    /// default says), kept apart from the lock timeout: a long index build is fine, a long
    /// lock wait is not.
    pub statement_timeout: Option<Duration>,
    /// A fixed number of rows per backfill batch; None (the default): adaptive batches.
    pub backfill_batch_size: Option<u64>,
    /// How long a run waits for a database that went away (restart, crash, failover,
    /// network) before it stops as stopped (resumable); `reconnect_budget_s`.
    pub reconnect_budget: Duration,
    /// Other servers of the same database (standbys that may be promoted), tried in
    /// order after the main one when a run reconnects; `failover_urls`.
    pub failover_urls: Vec<DatabaseUrl>,
    /// `[backfill] batch_timeout_ms`: a batch statement running longer is cancelled and
    /// the batch retried smaller; None: derived from the batch target.
    pub backfill_batch_timeout: Option<Duration>,
    /// Backfill pacing and throttle limits (`[backfill]`, `[throttle]`).
    pub backfill: BackfillSettings,
    /// How the monitor samples.
    pub monitor: MonitorSettings,
    /// How the contract safety gates observe.
    pub gates: GateSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            config_file: None,
            database_url: None,
            migrations_dir: PathBuf::from("migrations"),
            lock_timeout: Duration::from_millis(500),
            lock_retry_first: Duration::from_millis(100),
            lock_retry_max: Duration::from_secs(5),
            lock_retry_attempts: 30,
            statement_timeout: None,
            backfill_batch_size: None,
            backfill_batch_timeout: None,
            reconnect_budget: Duration::from_secs(30 * 60),
            failover_urls: Vec::new(),
            backfill: BackfillSettings::default(),
            monitor: MonitorSettings::default(),
            gates: GateSettings::default(),
        }
    }
}

impl Config {
    /// Reads the config file (the given one, or `./zdm.toml` when present) and applies overrides.
    pub fn load(overrides: &Overrides) -> Result<Self, Error> {
        let file = match &overrides.config_file {
            Some(path) => Some((path.clone(), read(path)?)),
            None => {
                let path = PathBuf::from(DEFAULT_FILE);
                path.is_file()
                    .then(|| read(&path).map(|text| (path, text)))
                    .transpose()?
            }
        };
        let mut config = match file {
            Some((path, text)) => Self::from_toml(&path, &text)?,
            None => Config::default(),
        };
        // An empty variable (`DATABASE_URL=`) is no URL: the same as unset.
        if let Some(url) = overrides
            .database_url
            .as_ref()
            .filter(|u| !u.trim().is_empty())
        {
            config.database_url = Some(DatabaseUrl::new(url.clone()));
        }
        if let Some(dir) = &overrides.migrations_dir {
            config.migrations_dir = dir.clone();
        }
        Ok(config)
    }

    /// Parses the text of a config file; `path` names it in errors.
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, Error> {
        let file: FileConfig = toml::from_str(text).map_err(|error| {
            let (line, column) = error
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            Error::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: error.message().to_string(),
            }
        })?;
        let defaults = Config::default();
        Ok(Config {
            config_file: Some(path.to_path_buf()),
            database_url: file
                .database_url
                .filter(|url| !url.trim().is_empty())
                .map(DatabaseUrl::new),
            migrations_dir: file.migrations_dir.unwrap_or(defaults.migrations_dir),
            lock_timeout: file
                .lock_timeout_ms
                .map_or(defaults.lock_timeout, Duration::from_millis),
            lock_retry_first: file
                .lock_retry_first_ms
                .map_or(defaults.lock_retry_first, Duration::from_millis),
            lock_retry_max: file
                .lock_retry_max_ms
                .map_or(defaults.lock_retry_max, Duration::from_millis),
            lock_retry_attempts: file
                .lock_retry_attempts
                .map_or(defaults.lock_retry_attempts, |n| n.max(1)),
            // 0 and unset both mean "no limit" (zdm's sessions override the role's).
            statement_timeout: file.statement_timeout_ms.map(Duration::from_millis),
            backfill_batch_size: file.backfill_batch_size.map(|n| n.max(1)),
            reconnect_budget: file
                .reconnect_budget_s
                .map_or(defaults.reconnect_budget, Duration::from_secs),
            failover_urls: file
                .failover_urls
                .into_iter()
                .filter(|url| !url.trim().is_empty())
                .map(DatabaseUrl::new)
                .collect(),
            backfill_batch_timeout: file
                .backfill
                .batch_timeout_ms
                .map(|ms| Duration::from_millis(ms.max(1))),
            backfill: BackfillSettings {
                pacing: file.backfill.settings(),
                throttle: file.throttle.settings(),
            },
            monitor: file.monitor.settings(),
            gates: file.gates.settings(),
        })
    }

    /// The target database, or an error that says the three ways to give one.
    pub fn database_url(&self) -> Result<&DatabaseUrl, Error> {
        self.database_url.as_ref().ok_or(Error::NoDatabase)
    }
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Where each line of a text starts, so that the positions of many findings in one file
/// cost a binary search each instead of a count from the start.
#[derive(Debug, Clone, Default)]
pub struct LineIndex {
    /// Byte offset of each line's first character.
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(at, _)| at + 1));
        LineIndex { starts }
    }

    /// 1-based line and column (in characters) of a byte offset of `text`, the text this
    /// index was made from; the same as [`line_column`].
    pub fn line_column(&self, text: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts.get(line.wrapping_sub(1)).copied().unwrap_or(0);
        (line.max(1), text[start..offset].chars().count() + 1)
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_index_agrees_with_counting() {
        let text = "a\n\nbé c\nlast";
        let index = LineIndex::new(text);
        for offset in (0..=text.len()).filter(|&o| text.is_char_boundary(o)) {
            assert_eq!(
                index.line_column(text, offset),
                line_column(text, offset),
                "{offset}"
            );
        }
    }

    #[test]
    fn a_file_sets_what_it_names_and_defaults_fill_the_rest() {
        let config = Config::from_toml(Path::new("zdm.toml"), "lock_timeout_ms = 250\n")
            .expect("valid file");
        assert_eq!(config.lock_timeout, Duration::from_millis(250));
        assert_eq!(config.migrations_dir, PathBuf::from("migrations"));
        assert!(matches!(config.database_url(), Err(Error::NoDatabase)));
    }

    #[test]
    fn gate_settings_are_read_with_defaults_for_the_rest() {
        let config = Config::from_toml(
            Path::new("zdm.toml"),
            "[gates]\nwindow_s = 2.5\nreplica_urls = [\"postgres://u:pw@r1/db\"]\n",
        )
        .expect("valid file");
        assert_eq!(config.gates.window, Duration::from_millis(2500));
        assert_eq!(config.gates.replica_urls.len(), 1);
        assert!(!config.gates.replica_urls[0].to_string().contains("pw"));
        assert_eq!(config.gates.max_replication_lag, Duration::from_secs(10));
        assert_eq!(Config::default().gates.window, Duration::from_secs(60));
        let typo = Config::from_toml(Path::new("zdm.toml"), "[gates]\nwindow = 5\n");
        assert!(matches!(typo, Err(Error::Parse { line: 2, .. })));
    }

    #[test]
    fn engine_settings_are_read_and_kept_in_range() {
        let text = "lock_retry_first_ms = 50\nlock_retry_max_ms = 2000\nlock_retry_attempts = 0\n\
                    statement_timeout_ms = 60000\nbackfill_batch_size = 250\n";
        let config = Config::from_toml(Path::new("zdm.toml"), text).expect("valid file");
        assert_eq!(config.lock_retry_first, Duration::from_millis(50));
        assert_eq!(config.lock_retry_max, Duration::from_secs(2));
        assert_eq!(config.lock_retry_attempts, 1, "at least one try");
        assert_eq!(config.statement_timeout, Some(Duration::from_secs(60)));
        assert_eq!(config.backfill_batch_size, Some(250));
        let defaults = Config::default();
        assert_eq!(defaults.statement_timeout, None);
        assert_eq!(defaults.lock_retry_attempts, 30);
    }

    #[test]
    fn unknown_keys_are_reported_with_their_position() {
        let text = "migrations_dir = \"m\"\nlock_timeout = 5\n";
        let message = Config::from_toml(Path::new("zdm.toml"), text)
            .expect_err("unknown key")
            .to_string();
        assert!(
            message.starts_with("zdm.toml:2:1: unknown field `lock_timeout`"),
            "{message}"
        );
        assert!(message.contains("lock_timeout_ms"), "{message}");
    }

    #[test]
    fn wrong_types_are_reported_with_their_position() {
        let text = "lock_timeout_ms = \"soon\"\n";
        let message = Config::from_toml(Path::new("zdm.toml"), text)
            .expect_err("wrong type")
            .to_string();
        assert!(message.starts_with("zdm.toml:1:19:"), "{message}");
    }

    #[test]
    fn flags_beat_the_file() {
        let dir = std::env::temp_dir().join(format!("zdm-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("zdm.toml");
        std::fs::write(&file, "database_url = \"postgres://a:pw@file/db\"\n").expect("write");
        let overrides = Overrides {
            config_file: Some(file),
            database_url: Some("postgres://b@flag/db".to_string()),
            migrations_dir: None,
        };
        let config = Config::load(&overrides).expect("loads");
        assert_eq!(
            config.database_url().expect("set").expose(),
            "postgres://b@flag/db"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_monitor_table_sets_sampling() {
        let text = "[monitor]\ninterval_ms = 2000\ncanary_query = \"SELECT 1\"\n";
        let config = Config::from_toml(Path::new("zdm.toml"), text).expect("valid file");
        assert_eq!(config.monitor.interval, Duration::from_secs(2));
        assert_eq!(config.monitor.canary_query.as_deref(), Some("SELECT 1"));
        assert_eq!(config.monitor.query_timeout, Duration::from_millis(500));
    }

    #[test]
    fn the_backfill_and_throttle_tables_set_pacing_and_limits() {
        let text = "[backfill]\ntarget_batch_ms = 500\nmax_batch_rows = 5000\nnice_ratio = 0.5\n\
                    max_rows_per_second = 0\n\
                    [throttle]\nmax_replica_lag_ms = 2500\nmax_lock_waiters = -1\n\
                    flag_file = \"/run/zdm/throttle\"\ncritical_factor = 10\n";
        let config = Config::from_toml(Path::new("zdm.toml"), text).expect("valid file");
        let pacing = &config.backfill.pacing;
        assert_eq!(pacing.target, Duration::from_millis(500));
        assert_eq!(pacing.max_rows, 5000);
        assert_eq!(pacing.min_rows, 10);
        assert_eq!(pacing.nice_ratio, 0.5);
        assert_eq!(pacing.max_rows_per_second, None, "0 is no ceiling");
        let throttle = &config.backfill.throttle;
        assert_eq!(throttle.max_replica_lag, Some(Duration::from_millis(2500)));
        assert_eq!(throttle.max_lock_waiters, None, "negative switches it off");
        assert_eq!(throttle.max_host_cpu_percent, Some(90.0));
        assert_eq!(throttle.flag_file, Some(PathBuf::from("/run/zdm/throttle")));
        assert_eq!(throttle.critical_factor, Some(10.0));
        assert_eq!(Config::default().backfill.throttle.critical_factor, None);
        assert_eq!(Config::default().backfill_batch_size, None);
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é = 1", 3), (1, 3));
    }
}
