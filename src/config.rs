//! Settings from `zdm.toml`, the environment and flags, merged into one [`Config`]
//! (a flag beats the environment, which beats the file, which beats the default).

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::db::DatabaseUrl;
use crate::engine::ddl::LockPolicy;
use crate::engine::{BackfillSettings, EngineOptions};
use crate::gates::context::Inputs as GateInputs;
use crate::monitor::MonitorOptions;
use crate::notify::AlertSettings;
use crate::position::line_column;
use crate::settings::{Kind, OldName, OldPlace, Setting, SettingKey, Table, OLD_NAMES, SPECS};
use crate::suggest;

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
        "no database to work on: give --database-url, set DATABASE_URL, set database_url \
         in zdm.toml, or set libpq's variables (PGHOST, PGPORT, PGDATABASE, PGUSER, with \
         PGPASSWORD or PGPASSFILE, PGSSLMODE, PGSSLROOTCERT, PGCONNECT_TIMEOUT as needed)"
    )]
    NoDatabase,
    #[error("the database URL {url} is not valid: {reason}")]
    InvalidUrl { url: String, reason: String },
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
    /// The old place of `[backfill] fixed_batch_rows`.
    backfill_batch_size: Option<Spanned<toml::Value>>,
    reconnect_budget_s: Option<u64>,
    #[serde(default)]
    failover_urls: Vec<String>,
    #[serde(default)]
    monitor: MonitorFile,
    #[serde(default)]
    gates: GatesFile,
    /// `[backfill]` and `[throttle]`: every key is a declared setting (`crate::settings`).
    #[serde(default)]
    backfill: SettingsTable,
    #[serde(default)]
    throttle: SettingsTable,
    /// `[schedule]`: the low-traffic windows, declared settings too.
    #[serde(default)]
    schedule: SettingsTable,
    #[serde(default)]
    alerts: AlertsFile,
    /// Where a run serves Prometheus metrics (`127.0.0.1:9187`).
    metrics_listen: Option<Spanned<String>>,
}

/// The `[alerts]` table of `zdm.toml`: where alerts are sent (docs/monitoring.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertsFile {
    cooldown_s: Option<u64>,
    #[serde(default)]
    webhook: Vec<WebhookFile>,
    #[serde(default)]
    command: Vec<CommandFile>,
}

/// One `[[alerts.webhook]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookFile {
    url: Spanned<String>,
    timeout_s: Option<f64>,
    retries: Option<u32>,
}

/// One `[[alerts.command]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandFile {
    run: Spanned<Vec<String>>,
    timeout_s: Option<f64>,
}

/// A webhook waits this long for each try by default.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
const WEBHOOK_RETRIES: u32 = 3;
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads `[alerts]`: a webhook URL must be http(s), a command must name a program.
fn read_alerts(path: &Path, text: &str, file: &AlertsFile) -> Result<AlertSettings, Error> {
    let at = |offset: usize, message: String| {
        let (line, column) = line_column(text, offset);
        Error::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    };
    let seconds = |s: Option<f64>, default: Duration| {
        s.filter(|s| s.is_finite() && *s > 0.0)
            .map_or(default, Duration::from_secs_f64)
    };
    let mut settings = AlertSettings {
        cooldown: file
            .cooldown_s
            .map_or(crate::notify::DEFAULT_COOLDOWN, Duration::from_secs),
        ..AlertSettings::default()
    };
    for hook in &file.webhook {
        let url = hook.url.get_ref().trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(at(
                hook.url.span().start,
                format!(
                    "alerts.webhook: `{}` is not an http:// or https:// URL",
                    crate::notify::redact_url(url)
                ),
            ));
        }
        settings.webhooks.push(crate::notify::Webhook {
            url: url.to_string(),
            timeout: seconds(hook.timeout_s, WEBHOOK_TIMEOUT),
            retries: hook.retries.unwrap_or(WEBHOOK_RETRIES),
        });
    }
    for command in &file.command {
        if command
            .run
            .get_ref()
            .first()
            .is_none_or(|p| p.trim().is_empty())
        {
            return Err(at(
                command.run.span().start,
                "alerts.command: `run` must name a program, e.g. run = [\"/usr/local/bin/page\", \"--team\", \"dba\"]".to_string(),
            ));
        }
        settings.commands.push(crate::notify::Hook {
            run: command.run.get_ref().clone(),
            timeout: seconds(command.timeout_s, COMMAND_TIMEOUT),
        });
    }
    Ok(settings)
}

/// One `[backfill]` or `[throttle]` table, with the positions of its keys and values.
type SettingsTable = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

/// The declared settings a file sets, and the warnings about old spellings.
struct FileSettings {
    backfill: BackfillSettings,
    fixed_batch_rows: Option<u64>,
    batch_timeout: Option<Duration>,
    warnings: Vec<String>,
}

/// Where a setting was written in the file.
struct Entry<'f> {
    place: OldPlace,
    key: &'f Spanned<String>,
    value: &'f Spanned<toml::Value>,
}

/// Reads every declared setting of the file with the same parser and ranges as
/// `zdm ctl set`: a value out of range is a `file:line:col` error, never clamped.
fn read_settings(path: &Path, text: &str, file: &FileConfig) -> Result<FileSettings, Error> {
    let at = |offset: usize, message: String| {
        let (line, column) = line_column(text, offset);
        Error::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    };
    let mut entries: Vec<Entry> = Vec::new();
    let top = Spanned::new(0..0, "backfill_batch_size".to_string());
    if let Some(value) = &file.backfill_batch_size {
        entries.push(Entry {
            place: OldPlace::Top,
            key: &top,
            value,
        });
    }
    for (table, keys) in [
        (Table::Backfill, &file.backfill),
        (Table::Throttle, &file.throttle),
        (Table::Schedule, &file.schedule),
    ] {
        entries.extend(keys.iter().map(|(key, value)| Entry {
            place: OldPlace::In(table),
            key,
            value,
        }));
    }
    // File order: warnings read top to bottom, and "set twice" names the later one.
    let offset = |entry: &Entry| match entry.place {
        // Top-level keys come without their span: the key is the last mention of its
        // name before the value.
        OldPlace::Top => {
            let value = entry.value.span().start;
            text[..value.min(text.len())]
                .rfind(entry.key.get_ref().as_str())
                .unwrap_or(value)
        }
        OldPlace::In(_) => entry.key.span().start,
    };
    entries.sort_by_key(offset);
    let mut settings = FileSettings {
        backfill: BackfillSettings::default(),
        fixed_batch_rows: None,
        batch_timeout: None,
        warnings: Vec::new(),
    };
    let mut seen: Vec<(SettingKey, usize)> = Vec::new();
    for entry in &entries {
        let key_at = offset(entry);
        let warn = |warnings: &mut Vec<String>, message: String| {
            let (line, column) = line_column(text, key_at);
            warnings.push(format!("{}:{line}:{column}: {message}", path.display()));
        };
        let name = entry.key.get_ref().as_str();
        let (key, old) = lookup_in(entry.place, name).map_err(|message| at(key_at, message))?;
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
            let (line, _) = line_column(text, *first);
            return Err(at(
                key_at,
                format!("{key} is set twice (also on line {line}, under another name)"),
            ));
        }
        seen.push((key, key_at));
        let spec = key.spec();
        let value_at = entry.value.span().start;
        let mut value = match entry.value.get_ref() {
            toml::Value::String(text) => text.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(n) => n.to_string(),
            toml::Value::Boolean(on) if spec.kind == Kind::Switch => {
                if *on { "on" } else { "off" }.to_string()
            }
            // `windows = ["Mon-Fri 01:00-05:00", ...]`: each one checked at its own place.
            toml::Value::Array(items) if spec.kind == Kind::Windows => {
                let mut texts = Vec::new();
                for item in items {
                    let Some(item) = item.as_str() else {
                        return Err(at(value_at, format!("{key}: expected {}", key.expected())));
                    };
                    if let Err(error) = crate::schedule::Window::parse(item) {
                        // At the string's opening quote, as other values are.
                        let item_at = text[value_at.min(text.len())..]
                            .find(item)
                            .map_or(value_at, |i| value_at + i);
                        let item_at = match text[..item_at].chars().next_back() {
                            Some(quote @ ('"' | '\'')) => item_at - quote.len_utf8(),
                            _ => item_at,
                        };
                        return Err(at(item_at, format!("{key}: {error}")));
                    }
                    texts.push(item.to_string());
                }
                if texts.is_empty() {
                    "none".to_string()
                } else {
                    texts.join("; ")
                }
            }
            _ => return Err(at(value_at, format!("{key}: expected {}", key.expected()))),
        };
        // A negative number (or a rows/s ceiling of 0) meant "off" in the old release.
        let old_off = spec.kind.can_be_off() && old_off_spelling(key, entry.value.get_ref());
        let given = value.clone();
        if old_off {
            value = "none".to_string();
        } else if let Some(old) = old {
            value = old.value_text(&value);
        }
        let setting =
            Setting::parse_value(key, &value).map_err(|error| at(value_at, error.to_string()))?;
        // The warning shows the line to write instead, with the value as read.
        let instead = format!("`{key} = {}`", toml_text(spec.kind, &setting.value_text()));
        if let Some(old) = old {
            let moved = match old.place {
                OldPlace::Top => format!(" in [{}]", spec.table.name()),
                OldPlace::In(_) => String::new(),
            };
            warn(
                &mut settings.warnings,
                format!(
                    "`{}` is an old name, accepted until the next release: write {instead}{moved} \
                     instead",
                    old.name
                ),
            );
        } else if old_off {
            warn(
                &mut settings.warnings,
                format!(
                    "{key}: `{given}` to switch it off is accepted until the next release: \
                     write {instead} instead"
                ),
            );
        }
        match setting {
            Setting::FixedBatchRows(rows) => settings.fixed_batch_rows = rows,
            Setting::BatchTimeout(timeout) => settings.batch_timeout = timeout,
            other => settings.backfill.assign(other),
        }
    }
    if let Err(error) = settings.backfill.check(SettingKey::MaxBatchRows) {
        // Reported at whichever bound the file sets last.
        let last = seen
            .iter()
            .filter(|(k, _)| matches!(k, SettingKey::MinBatchRows | SettingKey::MaxBatchRows))
            .map(|(_, offset)| *offset)
            .max()
            .unwrap_or(0);
        return Err(at(last, error.to_string()));
    }
    Ok(settings)
}

/// The setting a key of `place` names: its one name (in its own table), or an old name
/// where the old release had it.
fn lookup_in(
    place: OldPlace,
    name: &str,
) -> Result<(SettingKey, Option<&'static OldName>), String> {
    if let Some(spec) = SPECS.iter().find(|spec| spec.name == name) {
        return match place {
            OldPlace::In(table) if table == spec.table => Ok((spec.key, None)),
            _ => Err(format!("{name} belongs in [{}]", spec.table.name())),
        };
    }
    if let Some(old) = OLD_NAMES
        .iter()
        .find(|old| old.name == name && old.place == place)
    {
        return Ok((old.key, Some(old)));
    }
    let OldPlace::In(table) = place else {
        return Err(format!("unknown field `{name}`"));
    };
    let valid: Vec<&str> = SPECS
        .iter()
        .filter(|spec| spec.table == table)
        .map(|spec| spec.name)
        .collect();
    Err(format!(
        "unknown setting `{name}` in [{}]{}",
        table.name(),
        suggest::hint(name, &valid, &suggest::one_of(&valid))
    ))
}

/// A number where the old release meant "off": negative (any input), or a rows/s ceiling
/// of 0.
fn old_off_spelling(key: SettingKey, value: &toml::Value) -> bool {
    let number = match value {
        toml::Value::Integer(n) => *n as f64,
        toml::Value::Float(n) => *n,
        _ => return false,
    };
    number < 0.0 || (key == SettingKey::MaxRowsPerSecond && number == 0.0)
}

/// A value as it is written in `zdm.toml`: numbers bare, anything with a unit quoted.
fn toml_text(kind: Kind, value: &str) -> String {
    match kind {
        Kind::Count { .. } | Kind::Number { .. } if value != "none" => value.to_string(),
        _ => format!("{value:?}"),
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
    /// `[backfill] fixed_batch_rows`: a fixed number of rows per backfill batch; None (the
    /// default): adaptive batches.
    pub backfill_batch_size: Option<u64>,
    /// How long a run waits for a database that went away (restart, crash, failover,
    /// network) before it stops as stopped (resumable); `reconnect_budget_s`.
    pub reconnect_budget: Duration,
    /// Other servers of the same database (standbys that may be promoted), tried in
    /// order after the main one when a run reconnects; `failover_urls`.
    pub failover_urls: Vec<DatabaseUrl>,
    /// `[backfill] batch_timeout`: a batch statement running longer is cancelled and
    /// the batch retried smaller; None: derived from the batch target.
    pub backfill_batch_timeout: Option<Duration>,
    /// Backfill pacing and throttle limits (`[backfill]`, `[throttle]`).
    pub backfill: BackfillSettings,
    /// How the monitor samples.
    pub monitor: MonitorSettings,
    /// How the contract safety gates observe.
    pub gates: GateSettings,
    /// Where alerts are sent (`[alerts]`).
    pub alerts: AlertSettings,
    /// Where a run serves its Prometheus metrics (`metrics_listen`, `--metrics-listen`);
    /// None: not served.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// What the file wrote in a form accepted only until the next release
    /// (`file:line:col: ...`); [`Config::load`] prints them.
    pub warnings: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        // The engine owns its defaults; the file only overrides them.
        let engine = EngineOptions::default();
        Config {
            config_file: None,
            database_url: None,
            migrations_dir: PathBuf::from("migrations"),
            lock_timeout: engine.ddl.lock_timeout,
            lock_retry_first: engine.ddl.first_backoff,
            lock_retry_max: engine.ddl.max_backoff,
            lock_retry_attempts: engine.ddl.max_attempts,
            statement_timeout: engine.ddl.statement_timeout,
            backfill_batch_size: engine.batch_size,
            backfill_batch_timeout: engine.batch_timeout,
            reconnect_budget: engine.reconnect_budget,
            failover_urls: engine.failover,
            backfill: engine.backfill,
            monitor: MonitorSettings::default(),
            gates: GateSettings::default(),
            alerts: AlertSettings::default(),
            metrics_listen: None,
            warnings: Vec::new(),
        }
    }
}

impl Config {
    /// What the engine runs with.
    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            ddl: LockPolicy {
                lock_timeout: self.lock_timeout,
                statement_timeout: self.statement_timeout,
                first_backoff: self.lock_retry_first,
                max_backoff: self.lock_retry_max,
                max_attempts: self.lock_retry_attempts,
            },
            batch_size: self.backfill_batch_size,
            batch_timeout: self.backfill_batch_timeout,
            reconnect_budget: self.reconnect_budget,
            failover: self.failover_urls.clone(),
            backfill: self.backfill.clone(),
        }
    }

    /// What the contract gates evaluate with; `window` overrides `[gates] window_s`.
    pub fn gate_inputs(&self, window: Option<Duration>) -> Result<GateInputs, Error> {
        Ok(GateInputs {
            url: self.database_url()?.clone(),
            migrations_dir: self.migrations_dir.clone(),
            replica_urls: self.gates.replica_urls.clone(),
            window: window.unwrap_or(self.gates.window),
            max_replication_lag: self.gates.max_replication_lag,
        })
    }

    /// What the monitor samples (the database URL, its failover servers and `[monitor]`).
    pub fn monitor_options(&self) -> Result<MonitorOptions, Error> {
        let url = self.database_url()?;
        let mut options =
            MonitorOptions::new(url.connect_options().map_err(|source| Error::InvalidUrl {
                url: url.to_string(),
                reason: source.to_string(),
            })?);
        options.failover = self
            .failover_urls
            .iter()
            .filter_map(|url| url.connect_options().ok())
            .collect();
        let settings = &self.monitor;
        options.interval = settings.interval;
        options.query_timeout = settings.query_timeout;
        options.canary_query = settings.canary_query.clone();
        options.long_transaction = settings.long_transaction;
        options.alert_policy.baseline.length = chrono::Duration::from_std(settings.baseline_window)
            .unwrap_or(options.alert_policy.baseline.length);
        Ok(options)
    }

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
        // Every command reads the file through here, so an old spelling is pointed out
        // wherever zdm is used (a detached runner's go to its log).
        for warning in &config.warnings {
            eprintln!("warning: {warning}");
        }
        // An empty variable (`DATABASE_URL=`) is no URL: the same as unset.
        if let Some(url) = overrides
            .database_url
            .as_ref()
            .filter(|u| !u.trim().is_empty())
        {
            config.database_url = Some(DatabaseUrl::new(url.clone()));
        }
        // No URL anywhere: the libpq environment, as psql would read it.
        if config.database_url.is_none() {
            config.database_url = DatabaseUrl::from_libpq_env();
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
        let settings = read_settings(path, text, &file)?;
        let alerts = read_alerts(path, text, &file.alerts)?;
        let metrics_listen = match &file.metrics_listen {
            None => None,
            Some(given) => Some(given.get_ref().trim().parse().map_err(|_| {
                let (line, column) = line_column(text, given.span().start);
                Error::Parse {
                    path: path.to_path_buf(),
                    line,
                    column,
                    message: format!(
                        "metrics_listen: `{}` is not an address and port, e.g. `127.0.0.1:9187`",
                        given.get_ref()
                    ),
                }
            })?),
        };
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
            backfill_batch_size: settings.fixed_batch_rows,
            reconnect_budget: file
                .reconnect_budget_s
                .map_or(defaults.reconnect_budget, Duration::from_secs),
            failover_urls: file
                .failover_urls
                .into_iter()
                .filter(|url| !url.trim().is_empty())
                .map(DatabaseUrl::new)
                .collect(),
            backfill_batch_timeout: settings.batch_timeout,
            backfill: settings.backfill,
            monitor: file.monitor.settings(),
            gates: file.gates.settings(),
            alerts,
            metrics_listen,
            warnings: settings.warnings,
        })
    }

    /// `--metrics-listen` beats `metrics_listen` of the file.
    pub fn with_metrics_listen(mut self, flag: Option<std::net::SocketAddr>) -> Config {
        if flag.is_some() {
            self.metrics_listen = flag;
        }
        self
    }

    /// The target database, or an error that says the three ways to give one.
    /// The same settings aimed at another database (`zdm check`'s throwaway copy): the
    /// target's failover servers and replicas are not the copy's.
    pub fn for_database(&self, url: DatabaseUrl) -> Config {
        let mut config = self.clone();
        config.database_url = Some(url);
        config.failover_urls.clear();
        config.gates.replica_urls.clear();
        config
    }

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

#[cfg(test)]
mod tests {
    use super::*;

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
                    statement_timeout_ms = 60000\n[backfill]\nfixed_batch_rows = 250\n";
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

    fn read(text: &str) -> Result<Config, String> {
        Config::from_toml(Path::new("zdm.toml"), text).map_err(|error| error.to_string())
    }

    #[test]
    fn the_backfill_and_throttle_tables_set_pacing_and_limits() {
        let text =
            "[backfill]\nbatch_target = \"500ms\"\nmax_batch_rows = 5000\nnice_ratio = 0.5\n\
                    max_rows_per_second = \"none\"\nbatch_timeout = \"30s\"\n\
                    [throttle]\nmax_replica_lag = \"2.5s\"\nmax_lock_waiters = \"none\"\n\
                    flag_file = \"/run/zdm/throttle\"\ncritical_factor = 10\n\
                    max_host_cpu_percent = \"80%\"\nmax_canary_slowdown = \"6x\"\n\
                    max_active_sessions_factor = 3\nthrottle_query = \"SELECT 0\"\n\
                    release_samples = 5\nrelease_ratio = 0.5\nstale_after = \"10s\"\n";
        let config = read(text).expect("valid file");
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        let pacing = &config.backfill.pacing;
        assert_eq!(pacing.target, Duration::from_millis(500));
        assert_eq!(pacing.max_rows, 5000);
        assert_eq!(pacing.min_rows, 10);
        assert_eq!(pacing.nice_ratio, 0.5);
        assert_eq!(pacing.max_rows_per_second, None);
        assert_eq!(config.backfill_batch_timeout, Some(Duration::from_secs(30)));
        let throttle = &config.backfill.throttle;
        assert_eq!(throttle.max_replica_lag, Some(Duration::from_millis(2500)));
        assert_eq!(throttle.max_lock_waiters, None);
        assert_eq!(throttle.max_host_cpu_percent, Some(80.0));
        assert_eq!(throttle.max_canary_slowdown, Some(6.0));
        assert_eq!(throttle.max_active_sessions_factor, Some(3.0));
        assert_eq!(throttle.query.as_deref(), Some("SELECT 0"));
        assert_eq!(throttle.flag_file, Some(PathBuf::from("/run/zdm/throttle")));
        assert_eq!(throttle.critical_factor, Some(10.0));
        assert_eq!(throttle.release_samples, 5);
        assert_eq!(throttle.release_ratio, 0.5);
        assert_eq!(throttle.stale_after, Duration::from_secs(10));
        assert_eq!(Config::default().backfill.throttle.critical_factor, None);
        assert_eq!(Config::default().backfill_batch_size, None);
        assert_eq!(Config::default().backfill_batch_timeout, None);
    }

    /// Each old name and spelling has the same effect as the new one, with a warning at
    /// its position that names the new one.
    #[test]
    fn old_names_work_with_a_warning_that_names_the_new_one() {
        for (old, new, warning) in [
            (
                "[backfill]\ntarget_batch_ms = 500\n",
                "[backfill]\nbatch_target = \"500ms\"\n",
                "zdm.toml:2:1: `target_batch_ms` is an old name, accepted until the next release: write `batch_target = \"500ms\"` instead",
            ),
            (
                "backfill_batch_size = 250\n",
                "[backfill]\nfixed_batch_rows = 250\n",
                "zdm.toml:1:1: `backfill_batch_size` is an old name, accepted until the next release: write `fixed_batch_rows = 250` in [backfill] instead",
            ),
            (
                "[backfill]\nbatch_timeout_ms = 20000\n",
                "[backfill]\nbatch_timeout = \"20s\"\n",
                "`batch_timeout_ms` is an old name",
            ),
            (
                "[backfill]\nmax_rate = 5000\n",
                "[backfill]\nmax_rows_per_second = \"5000/s\"\n",
                "write `max_rows_per_second = \"5000/s\"`",
            ),
            (
                "[backfill]\nmax_rows_per_second = 0\n",
                "[backfill]\nmax_rows_per_second = \"none\"\n",
                "zdm.toml:2:1: max_rows_per_second: `0` to switch it off is accepted until the next release: write `max_rows_per_second = \"none\"` instead",
            ),
            (
                "[throttle]\nmax_replica_lag_ms = 2500\n",
                "[throttle]\nmax_replica_lag = \"2.5s\"\n",
                "write `max_replica_lag = \"2.5s\"`",
            ),
            (
                "[throttle]\nmax_replica_lag_ms = -1\n",
                "[throttle]\nmax_replica_lag = \"none\"\n",
                "write `max_replica_lag = \"none\"`",
            ),
            (
                "[throttle]\nmax_active_sessions = 3\n",
                "[throttle]\nmax_active_sessions_factor = \"3x\"\n",
                "write `max_active_sessions_factor = \"3x\"` instead",
            ),
            (
                "[throttle]\nmax_cpu = 70\n",
                "[throttle]\nmax_host_cpu_percent = \"70%\"\n",
                "write `max_host_cpu_percent = \"70%\"` instead",
            ),
            (
                "[throttle]\nmax_canary_factor = -1\n",
                "[throttle]\nmax_canary_slowdown = \"none\"\n",
                "write `max_canary_slowdown = \"none\"` instead",
            ),
            (
                "[throttle]\nquery = \"SELECT 1\"\n",
                "[throttle]\nthrottle_query = \"SELECT 1\"\n",
                "write `throttle_query = \"SELECT 1\"`",
            ),
            (
                "[throttle]\nstale_after_ms = 2000\n",
                "[throttle]\nstale_after = \"2s\"\n",
                "`stale_after_ms` is an old name",
            ),
            (
                "[throttle]\nmax_lock_waiters = -1\n",
                "[throttle]\nmax_lock_waiters = \"none\"\n",
                "zdm.toml:2:1: max_lock_waiters: `-1` to switch it off",
            ),
        ] {
            let old_config = read(old).unwrap_or_else(|e| panic!("{old}: {e}"));
            let new_config = read(new).unwrap_or_else(|e| panic!("{new}: {e}"));
            assert_eq!(old_config.backfill, new_config.backfill, "{old}");
            assert_eq!(old_config.backfill_batch_size, new_config.backfill_batch_size);
            assert_eq!(
                old_config.backfill_batch_timeout,
                new_config.backfill_batch_timeout
            );
            assert!(new_config.warnings.is_empty(), "{new}: {:?}", new_config.warnings);
            assert_eq!(old_config.warnings.len(), 1, "{old}: {:?}", old_config.warnings);
            assert!(
                old_config.warnings[0].contains(warning),
                "{old}: {}",
                old_config.warnings[0]
            );
        }
        // The defaults differ from every value above, so each file had its effect.
        assert_ne!(
            read("[backfill]\ntarget_batch_ms = 500\n")
                .expect("old")
                .backfill,
            Config::default().backfill
        );
    }

    /// A value out of range is refused at its position with the range, as `zdm ctl set`
    /// refuses it; nothing is clamped.
    #[test]
    fn values_out_of_range_are_errors_at_their_position() {
        for (text, start) in [
            (
                "[backfill]\nbatch_target = \"5ms\"\n",
                "zdm.toml:2:16: batch_target: `5ms` is not a duration (10ms–1m), e.g. `200ms`",
            ),
            (
                "[backfill]\ntarget_batch_ms = 1\n",
                "zdm.toml:2:19: batch_target: `1ms` is not a duration (10ms–1m)",
            ),
            (
                "[backfill]\nmin_batch_rows = 0\n",
                "zdm.toml:2:18: min_batch_rows: `0` is not a whole number of rows (1–10,000,000)",
            ),
            (
                "[backfill]\nnice_ratio = -1\n",
                "zdm.toml:2:14: nice_ratio: `-1` is not a number (0–100)",
            ),
            (
                "[throttle]\nmax_host_cpu_percent = 150\n",
                "zdm.toml:2:24: max_host_cpu_percent: `150` is not a percentage (1%–100%)",
            ),
            (
                "[throttle]\ncritical_factor = 1\n",
                "zdm.toml:2:19: critical_factor: `1` is not a multiple (above 1x, up to 1000x)",
            ),
            (
                "[throttle]\nrelease_ratio = 2\n",
                "zdm.toml:2:17: release_ratio: `2` is not a number (0–1)",
            ),
            (
                "[throttle]\nmax_replica_lag = 1000\n",
                "zdm.toml:2:19: max_replica_lag: `1000` is not a duration",
            ),
        ] {
            let message = read(text).expect_err(text);
            assert!(message.starts_with(start), "{text}: {message}");
            let live = crate::settings::Setting::parse(&format!(
                "{}={}",
                text.lines()
                    .nth(1)
                    .and_then(|l| l.split(" = ").next())
                    .unwrap_or_default(),
                text.lines()
                    .nth(1)
                    .and_then(|l| l.split(" = ").nth(1))
                    .unwrap_or_default()
                    .trim_matches('"')
            ));
            assert!(live.is_err(), "{text}: zdm ctl set accepts it: {live:?}");
        }
        let message = read("[throttle]\nflag_file = true\n").expect_err("a boolean");
        assert!(
            message.starts_with("zdm.toml:2:13: flag_file: expected a file path"),
            "{message}"
        );
    }

    #[test]
    fn misplaced_unknown_twice_set_and_contradicting_settings_are_errors() {
        for (text, start) in [
            ("[throttle]\nnice_ratio = 1\n", "zdm.toml:2:1: nice_ratio belongs in [backfill]"),
            ("[backfill]\nbatch_traget = \"1s\"\n", "zdm.toml:2:1: unknown setting `batch_traget` in [backfill]; did you mean `batch_target`?"),
            ("[backfill]\nbatch_target = \"1s\"\ntarget_batch_ms = 100\n", "zdm.toml:3:1: batch_target is set twice (also on line 2"),
            ("[backfill]\nmin_batch_rows = 500\nmax_batch_rows = 100\n", "zdm.toml:3:1: max_batch_rows: must not be below min_batch_rows (500)"),
        ] {
            let message = read(text).expect_err(text);
            assert!(message.starts_with(start), "{text}: {message}");
        }
        // Bounds are checked once the whole file is read, not in file order.
        let config = read("[backfill]\nmin_batch_rows = 200000\nmax_batch_rows = 500000\n")
            .expect("consistent");
        assert_eq!(config.backfill.pacing.min_rows, 200_000);
    }

    #[test]
    fn the_schedule_table_sets_windows_and_their_time_zone() {
        let text = "[schedule]\nwindows = [\"Mon-Fri 01:00-05:00\", \"Sat,Sun 00:00-08:00\"]\n\
                    tz = \"Europe/Zurich\"\n";
        let config = read(text).expect("valid file");
        let throttle = &config.backfill.throttle;
        assert_eq!(
            crate::schedule::windows_text(&throttle.windows),
            "Mon-Fri 01:00-05:00; Sat,Sun 00:00-08:00"
        );
        assert_eq!(throttle.tz.as_deref(), Some("Europe/Zurich"));
        assert!(throttle.window);
        let off = read("[schedule]\nwindow = false\n").expect("a boolean");
        assert!(!off.backfill.throttle.window);
        // No windows: any time, in the system's zone.
        let defaults = Config::default().backfill.throttle;
        assert!(defaults.windows.is_empty());
        assert_eq!(defaults.tz, None);
    }

    /// A bad window is reported at its own string in the list, with what is wrong and
    /// the form; a bad zone at its value, with the nearest name.
    #[test]
    fn a_bad_window_or_zone_is_an_error_at_its_position() {
        let text = "[schedule]\nwindows = [\"Mon-Fri 01:00-05:00\", \"Sat,Sun 00:00-28:00\"]\n";
        let message = read(text).expect_err("bad time");
        assert!(
            message.starts_with(
                "zdm.toml:2:35: windows: window `Sat,Sun 00:00-28:00`: `28:00` is not a time"
            ),
            "{message}"
        );
        assert!(
            message.contains("the form is `DAYS HH:MM-HH:MM`"),
            "{message}"
        );
        let message = read("[schedule]\nwindows = [\"Mon-Fry 01:00-05:00\"]\n").expect_err("day");
        assert!(
            message.starts_with(
                "zdm.toml:2:12: windows: window `Mon-Fry 01:00-05:00`: `Fry` is not a day"
            ),
            "{message}"
        );
        let message = read("[schedule]\ntz = \"Europe/Zurch\"\n").expect_err("zone");
        assert!(
            message.starts_with(
                "zdm.toml:2:6: tz: `Europe/Zurch` is not an IANA time zone name; did you mean `Europe/Zurich`?"
            ),
            "{message}"
        );
        let message = read("[schedule]\nwindows = [1]\n").expect_err("not a string");
        assert!(
            message.starts_with("zdm.toml:2:11: windows: expected low-traffic windows"),
            "{message}"
        );
        let message = read("[schedule]\nmax_replica_lag = \"1s\"\n").expect_err("misplaced");
        assert!(
            message.starts_with("zdm.toml:2:1: max_replica_lag belongs in [throttle]"),
            "{message}"
        );
    }

    #[test]
    fn the_alerts_table_names_its_sinks_and_refuses_bad_ones() {
        let text = "[alerts]\ncooldown_s = 600\n[[alerts.webhook]]\n\
                    url = \"https://hooks.slack.com/services/T/B/SECRET\"\n\
                    [[alerts.command]]\nrun = [\"/usr/local/bin/page\", \"--team\", \"dba\"]\ntimeout_s = 3\n";
        let config = read(text).expect("valid file");
        assert_eq!(config.alerts.cooldown, Duration::from_secs(600));
        assert_eq!(config.alerts.webhooks.len(), 1);
        assert_eq!(config.alerts.webhooks[0].timeout, Duration::from_secs(5));
        assert_eq!(config.alerts.webhooks[0].retries, 3);
        assert_eq!(config.alerts.commands[0].timeout, Duration::from_secs(3));
        assert!(!format!("{config:?}").contains("SECRET"));
        let message = read("[[alerts.webhook]]\nurl = \"hooks.slack.com/services/T/B/SECRET\"\n")
            .expect_err("no scheme");
        assert!(
            message.starts_with("zdm.toml:2:7: alerts.webhook: `(a webhook URL)` is not an http"),
            "{message}"
        );
        assert!(!message.contains("SECRET"), "{message}");
        let message = read("[[alerts.command]]\nrun = []\n").expect_err("no program");
        assert!(
            message.starts_with("zdm.toml:2:7: alerts.command: `run` must name a program"),
            "{message}"
        );
        let message =
            read("[[alerts.webhook]]\nurl = \"http://127.0.0.1/\"\nretry = 3\n").expect_err("typo");
        assert!(
            message.starts_with("zdm.toml:3:1: unknown field `retry`"),
            "{message}"
        );
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é = 1", 3), (1, 3));
    }
}
