//! The backfill throttle: reads the monitor's Metrics snapshot (plus a flag file and an
//! optional SQL throttle query) and says whether the backfill may run, and if not, why.
//! [`ThrottlePolicy`] is the pure decision with hysteresis; [`Throttle`] gathers its
//! inputs from a running monitor.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;

use crate::monitor::Metrics;

/// Every throttle limit; each input can be switched off with `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottleSettings {
    /// Throttle while any replica's replay lag is above this.
    pub max_replica_lag: Option<Duration>,
    /// Throttle while more than this many other sessions wait for a lock on the target table.
    pub max_lock_waiters: Option<u64>,
    /// Throttle while active sessions exceed `start level × factor` (and start level + 5).
    pub max_active_sessions_factor: Option<f64>,
    /// Throttle while host CPU is above this percentage (only when the server is local).
    pub max_host_cpu_percent: Option<f64>,
    /// Throttle while the canary's latency exceeds `baseline × factor`.
    pub max_canary_factor: Option<f64>,
    /// A query returning one number; above 0 means throttle.
    pub query: Option<String>,
    /// While this file exists, the backfill is throttled.
    pub flag_file: Option<PathBuf>,
    /// An input above `critical_factor × its limit` pauses the backfill and raises an
    /// alert instead of throttling (None: off).
    pub critical_factor: Option<f64>,
    /// Consecutive samples below the release level before an input lets go.
    pub release_samples: u32,
    /// A limit lets go below `release_ratio × limit`.
    pub release_ratio: f64,
    /// A Metrics snapshot older than this is stale: hold.
    pub stale_after: Duration,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            max_replica_lag: Some(Duration::from_secs(1)),
            max_lock_waiters: Some(0),
            max_active_sessions_factor: Some(2.0),
            max_host_cpu_percent: Some(90.0),
            max_canary_factor: Some(4.0),
            query: None,
            flag_file: None,
            critical_factor: None,
            release_samples: 3,
            release_ratio: 0.8,
            stale_after: Duration::from_secs(5),
        }
    }
}

/// The inputs, in the order they are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    ReplicaLag,
    LockWaiters,
    ActiveSessions,
    HostCpu,
    Canary,
    Query,
    FlagFile,
}

const INPUTS: [Input; 7] = [
    Input::ReplicaLag,
    Input::LockWaiters,
    Input::ActiveSessions,
    Input::HostCpu,
    Input::Canary,
    Input::Query,
    Input::FlagFile,
];

impl Input {
    fn index(self) -> usize {
        self as usize
    }

    /// How the input is named in reasons and settings.
    pub fn name(self) -> &'static str {
        match self {
            Input::ReplicaLag => "replica lag",
            Input::LockWaiters => "lock waiters",
            Input::ActiveSessions => "active sessions",
            Input::HostCpu => "host CPU",
            Input::Canary => "canary latency",
            Input::Query => "throttle query",
            Input::FlagFile => "flag file",
        }
    }

    /// The `[throttle]` key that switches it off, for "holding" reasons.
    fn setting(self) -> &'static str {
        match self {
            Input::ReplicaLag => "max_replica_lag_ms",
            Input::LockWaiters => "max_lock_waiters",
            Input::ActiveSessions => "max_active_sessions_factor",
            Input::HostCpu => "max_host_cpu_percent",
            Input::Canary => "max_canary_factor",
            Input::Query => "query",
            Input::FlagFile => "flag_file",
        }
    }
}

/// One input's reading.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// The input is switched off or does not apply (e.g. host CPU of a remote server).
    NotUsed,
    /// A current value.
    Value(f64),
    /// No current value, and why: the throttle holds.
    Unknown(String),
}

/// The inputs of one evaluation, in raw units (seconds, sessions, percent, ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub replica_lag_seconds: Observed,
    pub lock_waiters: Observed,
    pub active_sessions: Observed,
    pub host_cpu_percent: Observed,
    pub canary_ms: Observed,
    pub query: Observed,
    /// Whether the flag file exists (None: no flag file configured).
    pub flag_file: Option<bool>,
}

/// What the throttle says.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Go on.
    Run,
    /// Wait; the reason names every input holding the backfill back.
    Throttle { reason: String },
    /// An input passed its critical level: pause and alert.
    Critical { reason: String },
}

impl Verdict {
    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Run => None,
            Verdict::Throttle { reason } | Verdict::Critical { reason } => Some(reason),
        }
    }
}

/// The pure throttle decision, with hysteresis per input and the baselines it learns
/// (active sessions and canary latency at the start).
#[derive(Debug, Clone)]
pub struct ThrottlePolicy {
    settings: ThrottleSettings,
    engaged: [bool; 7],
    /// Consecutive samples below the release level, per input.
    calm: [u32; 7],
    sessions_at_start: Option<f64>,
    canary_baseline: Option<f64>,
    canary_samples: Vec<f64>,
}

/// Canary samples averaged (median) into its baseline.
const CANARY_BASELINE_SAMPLES: usize = 3;
/// The canary never throttles below this latency, whatever its baseline.
const CANARY_FLOOR_MS: f64 = 5.0;
/// Active sessions never throttle below start level + this.
const SESSIONS_HEADROOM: f64 = 5.0;

impl ThrottlePolicy {
    pub fn new(settings: ThrottleSettings) -> Self {
        ThrottlePolicy {
            settings,
            engaged: [false; 7],
            calm: [0; 7],
            sessions_at_start: None,
            canary_baseline: None,
            canary_samples: Vec::new(),
        }
    }

    pub fn settings(&self) -> &ThrottleSettings {
        &self.settings
    }

    pub fn set_settings(&mut self, settings: ThrottleSettings) {
        self.settings = settings;
    }

    /// The limit of `input` in its raw unit (None: switched off or not learnt yet).
    fn limit(&self, input: Input) -> Option<f64> {
        let s = &self.settings;
        match input {
            Input::ReplicaLag => s.max_replica_lag.map(|d| d.as_secs_f64()),
            Input::LockWaiters => s.max_lock_waiters.map(|n| n as f64),
            Input::ActiveSessions => {
                let factor = s.max_active_sessions_factor?;
                let start = self.sessions_at_start?;
                Some((start * factor).max(start + SESSIONS_HEADROOM))
            }
            Input::HostCpu => s.max_host_cpu_percent,
            Input::Canary => {
                let factor = s.max_canary_factor?;
                Some((self.canary_baseline? * factor).max(CANARY_FLOOR_MS))
            }
            Input::Query => s.query.as_ref().map(|_| 0.0),
            Input::FlagFile => s.flag_file.as_ref().map(|_| 0.0),
        }
    }

    /// The level below which an engaged input counts a calm sample. Counts (waiters,
    /// query, flag) let go at their limit; measurements at `release_ratio` of it.
    fn release_level(&self, input: Input, limit: f64) -> f64 {
        match input {
            Input::LockWaiters | Input::Query | Input::FlagFile => limit,
            _ => limit * self.settings.release_ratio,
        }
    }

    fn learn(&mut self, observation: &Observation) {
        if self.sessions_at_start.is_none() {
            if let Observed::Value(active) = observation.active_sessions {
                self.sessions_at_start = Some(active);
            }
        }
        if self.canary_baseline.is_none() {
            if let Observed::Value(ms) = observation.canary_ms {
                self.canary_samples.push(ms);
                if self.canary_samples.len() >= CANARY_BASELINE_SAMPLES {
                    let mut sorted = self.canary_samples.clone();
                    sorted.sort_by(f64::total_cmp);
                    self.canary_baseline = Some(sorted[sorted.len() / 2]);
                }
            }
        }
    }

    /// Takes one sample of every input and decides.
    pub fn evaluate(&mut self, observation: &Observation) -> Verdict {
        self.learn(observation);
        let mut throttling = Vec::new();
        let mut critical = Vec::new();
        for input in INPUTS {
            let observed = match input {
                Input::ReplicaLag => observation.replica_lag_seconds.clone(),
                Input::LockWaiters => observation.lock_waiters.clone(),
                Input::ActiveSessions => observation.active_sessions.clone(),
                Input::HostCpu => observation.host_cpu_percent.clone(),
                Input::Canary => observation.canary_ms.clone(),
                Input::Query => observation.query.clone(),
                Input::FlagFile => match observation.flag_file {
                    None => Observed::NotUsed,
                    Some(exists) => Observed::Value(if exists { 1.0 } else { 0.0 }),
                },
            };
            let i = input.index();
            if !self.settings_enable(input) || matches!(observed, Observed::NotUsed) {
                self.engaged[i] = false;
                self.calm[i] = 0;
                continue;
            }
            match observed {
                Observed::NotUsed => {}
                Observed::Unknown(why) => {
                    // Never speed up on missing data.
                    self.calm[i] = 0;
                    throttling.push(hold(input, &why));
                }
                Observed::Value(value) => {
                    // Relative limits wait for their baseline (learnt from this sample on).
                    let Some(limit) = self.limit(input) else {
                        continue;
                    };
                    if let Some(factor) = self.settings.critical_factor {
                        let level = critical_level(input, limit, factor);
                        if value > level {
                            critical.push(format!(
                                "{} {} is above its critical level {}",
                                input.name(),
                                show(input, value),
                                show(input, level)
                            ));
                        }
                    }
                    if value > limit {
                        self.engaged[i] = true;
                        self.calm[i] = 0;
                    } else if self.engaged[i] {
                        if value <= self.release_level(input, limit) {
                            self.calm[i] += 1;
                        } else {
                            self.calm[i] = 0;
                        }
                        // A flag file removed is an operator's deliberate act: at once.
                        let needed = match input {
                            Input::FlagFile => 1,
                            _ => self.settings.release_samples.max(1),
                        };
                        if self.calm[i] >= needed {
                            self.engaged[i] = false;
                            self.calm[i] = 0;
                        }
                    }
                    if self.engaged[i] {
                        throttling.push(describe(
                            input,
                            value,
                            limit,
                            self.calm[i],
                            &self.settings,
                        ));
                    }
                }
            }
        }
        if !critical.is_empty() {
            return Verdict::Critical {
                reason: critical.join("; "),
            };
        }
        if throttling.is_empty() {
            Verdict::Run
        } else {
            Verdict::Throttle {
                reason: throttling.join("; "),
            }
        }
    }

    /// Whether the input is switched on in the settings (its limit may still be unlearnt).
    fn settings_enable(&self, input: Input) -> bool {
        let s = &self.settings;
        match input {
            Input::ReplicaLag => s.max_replica_lag.is_some(),
            Input::LockWaiters => s.max_lock_waiters.is_some(),
            Input::ActiveSessions => s.max_active_sessions_factor.is_some(),
            Input::HostCpu => s.max_host_cpu_percent.is_some(),
            Input::Canary => s.max_canary_factor.is_some(),
            Input::Query => s.query.is_some(),
            Input::FlagFile => s.flag_file.is_some(),
        }
    }
}

/// The critical level: `factor × limit`, or for the zero-limit counts, `factor` itself.
fn critical_level(input: Input, limit: f64, factor: f64) -> f64 {
    match input {
        Input::LockWaiters | Input::Query | Input::FlagFile => (limit * factor).max(factor),
        _ => limit * factor,
    }
}

fn hold(input: Input, why: &str) -> String {
    format!(
        "{} unknown ({why}): holding until it is known again (or switch it off with \
         [throttle] {} in zdm.toml)",
        input.name(),
        input.setting()
    )
}

fn show(input: Input, value: f64) -> String {
    match input {
        Input::ReplicaLag => format!("{value:.1} s"),
        Input::LockWaiters | Input::ActiveSessions => format!("{value:.0}"),
        Input::HostCpu => format!("{value:.0} %"),
        Input::Canary => format!("{value:.1} ms"),
        Input::Query => format!("{value}"),
        Input::FlagFile => String::new(),
    }
}

fn describe(
    input: Input,
    value: f64,
    limit: f64,
    calm: u32,
    settings: &ThrottleSettings,
) -> String {
    let state = if value > limit {
        String::new()
    } else {
        format!(
            ", easing ({calm} of {} calm samples)",
            settings.release_samples.max(1)
        )
    };
    match input {
        Input::FlagFile => format!(
            "flag file {} exists{state}",
            settings
                .flag_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
        Input::Query => format!("throttle query returned {value}{state}"),
        Input::LockWaiters => format!(
            "{} sessions wait for a lock on the target table (max {}){state}",
            show(input, value),
            show(input, limit)
        ),
        _ => format!(
            "{} {} above max {}{state}",
            input.name(),
            show(input, value),
            show(input, limit)
        ),
    }
}

/// The throttle of one backfill: the policy fed from a monitor's snapshots, the flag
/// file and the throttle query.
pub struct Throttle {
    policy: ThrottlePolicy,
    metrics: Option<watch::Receiver<Arc<Metrics>>>,
    /// Why there is no monitor (it could not start): every metric input holds.
    no_monitor: Option<String>,
    /// Where the throttle query runs.
    query_target: Option<PgConnectOptions>,
    query_conn: Option<PgConnection>,
    /// Whether the server runs on this machine (host CPU applies).
    host_is_local: bool,
    /// The target table (`schema.name`) whose lock waiters count.
    table: String,
    /// The last snapshot evaluated, so each sample is counted once for hysteresis.
    last_sequence: Option<u64>,
    last_verdict: Verdict,
    last_evaluated: Option<Instant>,
    /// Whether the flag file existed at the last evaluation.
    last_flag: Option<bool>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("policy", &self.policy)
            .field("table", &self.table)
            .field("last_verdict", &self.last_verdict)
            .finish()
    }
}

impl Throttle {
    /// A throttle reading snapshots from `metrics` (a `Monitor::subscribe()`).
    pub fn new(
        settings: ThrottleSettings,
        metrics: watch::Receiver<Arc<Metrics>>,
        query_target: Option<PgConnectOptions>,
        host_is_local: bool,
    ) -> Self {
        Throttle {
            policy: ThrottlePolicy::new(settings),
            metrics: Some(metrics),
            no_monitor: None,
            query_target,
            query_conn: None,
            host_is_local,
            table: String::new(),
            last_sequence: None,
            last_verdict: Verdict::Run,
            last_evaluated: None,
            last_flag: None,
        }
    }

    /// A throttle whose monitor could not start: metric inputs hold, saying `why`.
    pub fn without_monitor(settings: ThrottleSettings, why: String) -> Self {
        Throttle {
            policy: ThrottlePolicy::new(settings),
            metrics: None,
            no_monitor: Some(why),
            query_target: None,
            query_conn: None,
            host_is_local: false,
            table: String::new(),
            last_sequence: None,
            last_verdict: Verdict::Run,
            last_evaluated: None,
            last_flag: None,
        }
    }

    /// The table whose lock waiters count (`schema.name`, unquoted).
    pub fn watch_table(&mut self, table: &str) {
        self.table = table.to_string();
    }

    pub fn settings(&self) -> &ThrottleSettings {
        self.policy.settings()
    }

    pub fn apply(&mut self, settings: &ThrottleSettings) {
        if settings != self.policy.settings() {
            self.policy.set_settings(settings.clone());
            // New limits decide at once, not at the next sample.
            self.last_evaluated = None;
        }
    }

    /// The verdict now. A new monitor sample (or, without one, a second since the last
    /// evaluation) is evaluated; otherwise the last verdict stands, except that the flag
    /// file is looked at every time.
    pub async fn check(&mut self) -> Verdict {
        let snapshot = self.metrics.as_ref().map(|rx| rx.borrow().clone());
        let sequence = snapshot.as_ref().map(|m| m.sequence);
        let fresh_sample = sequence != self.last_sequence;
        // Between samples the verdict stands (hysteresis counts each sample once); time
        // alone triggers an evaluation only without a monitor, or when its last sample
        // has gone stale (to hold on it).
        let stale_after = self.policy.settings().stale_after;
        let snapshot_stale = snapshot.as_ref().is_some_and(|m| {
            (chrono::Utc::now() - m.taken_at)
                .to_std()
                .is_ok_and(|age| age > stale_after)
        });
        let due = self.last_evaluated.is_none_or(|at| {
            at.elapsed() >= Duration::from_secs(1) && (self.metrics.is_none() || snapshot_stale)
        });
        let flag_now = self.flag_exists();
        let flag_changed = flag_now != self.last_flag;
        if !(fresh_sample || due || flag_changed) {
            return self.last_verdict.clone();
        }
        let observation = self.observe(snapshot.as_deref(), flag_now).await;
        self.last_sequence = sequence;
        self.last_flag = flag_now;
        self.last_evaluated = Some(Instant::now());
        self.last_verdict = self.policy.evaluate(&observation);
        self.last_verdict.clone()
    }

    fn flag_exists(&self) -> Option<bool> {
        self.policy
            .settings()
            .flag_file
            .as_ref()
            .map(|path| path.exists())
    }

    async fn observe(&mut self, metrics: Option<&Metrics>, flag: Option<bool>) -> Observation {
        let settings = self.policy.settings().clone();
        let query = match &settings.query {
            None => Observed::NotUsed,
            Some(sql) => self.run_query(sql).await,
        };
        let Some(metrics) = metrics else {
            let why = self
                .no_monitor
                .clone()
                .unwrap_or_else(|| "no monitor".to_string());
            let unknown = || Observed::Unknown(why.clone());
            return Observation {
                replica_lag_seconds: unknown(),
                lock_waiters: unknown(),
                active_sessions: unknown(),
                host_cpu_percent: if self.host_is_local {
                    unknown()
                } else {
                    Observed::NotUsed
                },
                canary_ms: unknown(),
                query,
                flag_file: flag,
            };
        };
        let age = (chrono::Utc::now() - metrics.taken_at).num_milliseconds() as f64 / 1000.0;
        let stale = if metrics.sequence == 0 {
            Some("the monitor has not taken its first sample yet".to_string())
        } else if age > settings.stale_after.as_secs_f64() {
            Some(format!("the monitor's last sample is {age:.0} s old"))
        } else {
            None
        };
        let read = |value: Option<f64>, problem: Option<&String>| match (&stale, value) {
            (Some(why), _) => Observed::Unknown(why.clone()),
            (None, Some(v)) => Observed::Value(v),
            (None, None) => Observed::Unknown(
                problem
                    .cloned()
                    .unwrap_or_else(|| "not measured".to_string()),
            ),
        };
        let waiters = metrics.locks.current().map(|locks| {
            let mut pids: Vec<i32> = locks
                .waits
                .iter()
                .filter(|w| !w.waiter.is_zdm)
                .filter(|w| w.relation.as_ref().is_some_and(|r| r.matches(&self.table)))
                .map(|w| w.waiter.pid)
                .collect();
            pids.sort_unstable();
            pids.dedup();
            pids.len() as f64
        });
        Observation {
            replica_lag_seconds: read(
                metrics.max_replay_lag_seconds(),
                metrics.replication.problem.as_ref(),
            ),
            lock_waiters: read(waiters, metrics.locks.problem.as_ref()),
            active_sessions: read(
                metrics.sessions.current().map(|s| s.active as f64),
                metrics.sessions.problem.as_ref(),
            ),
            host_cpu_percent: if self.host_is_local {
                read(
                    metrics.host.current().map(|h| h.cpu_percent),
                    metrics.host.problem.as_ref(),
                )
            } else {
                Observed::NotUsed
            },
            canary_ms: read(metrics.canary_latency_ms(), metrics.canary.problem.as_ref()),
            query,
            flag_file: flag,
        }
    }

    /// Runs the throttle query on its own connection (opened on first use, reopened after
    /// a failure); a failure is "unknown", which holds.
    async fn run_query(&mut self, sql: &str) -> Observed {
        if self.query_conn.is_none() {
            let Some(target) = &self.query_target else {
                return Observed::Unknown("no connection for the throttle query".to_string());
            };
            let target = target
                .clone()
                .application_name("zdm throttle")
                .options([("statement_timeout", "1000ms")]);
            match PgConnection::connect_with(&target).await {
                Ok(conn) => self.query_conn = Some(conn),
                Err(error) => return Observed::Unknown(format!("cannot connect: {error}")),
            }
        }
        let Some(conn) = self.query_conn.as_mut() else {
            return Observed::Unknown("no connection for the throttle query".to_string());
        };
        let result: Result<Option<f64>, sqlx::Error> =
            sqlx::query_scalar(&format!("SELECT ({sql})::float8"))
                .fetch_one(&mut *conn)
                .await;
        match result {
            Ok(Some(value)) => Observed::Value(value),
            Ok(None) => Observed::Unknown("the throttle query returned NULL".to_string()),
            Err(error) => {
                if let Some(conn) = self.query_conn.take() {
                    let _ = conn.close().await;
                }
                Observed::Unknown(format!("the throttle query failed: {error}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calm() -> Observation {
        Observation {
            replica_lag_seconds: Observed::Value(0.0),
            lock_waiters: Observed::Value(0.0),
            active_sessions: Observed::Value(3.0),
            host_cpu_percent: Observed::NotUsed,
            canary_ms: Observed::Value(1.0),
            query: Observed::NotUsed,
            flag_file: None,
        }
    }

    fn lag(seconds: f64) -> Observation {
        Observation {
            replica_lag_seconds: Observed::Value(seconds),
            ..calm()
        }
    }

    #[test]
    fn calm_inputs_run() {
        let mut policy = ThrottlePolicy::new(ThrottleSettings::default());
        assert_eq!(policy.evaluate(&calm()), Verdict::Run);
    }

    #[test]
    fn lag_engages_above_max_and_releases_below_80_percent_after_three_samples() {
        let mut policy = ThrottlePolicy::new(ThrottleSettings::default());
        assert_eq!(policy.evaluate(&lag(0.9)), Verdict::Run);
        let verdict = policy.evaluate(&lag(2.5));
        assert_eq!(
            verdict.reason(),
            Some("replica lag 2.5 s above max 1.0 s"),
            "{verdict:?}"
        );
        // 0.9 s is below the max but above 80 % of it: still throttled, not counting.
        let verdict = policy.evaluate(&lag(0.9));
        assert!(
            verdict.reason().is_some_and(|r| r.contains("0 of 3 calm")),
            "{verdict:?}"
        );
        for _ in 0..2 {
            assert!(matches!(
                policy.evaluate(&lag(0.5)),
                Verdict::Throttle { .. }
            ));
        }
        assert_eq!(policy.evaluate(&lag(0.5)), Verdict::Run);
    }

    #[test]
    fn a_flapping_input_does_not_flap_the_verdict() {
        let mut policy = ThrottlePolicy::new(ThrottleSettings::default());
        let mut verdicts = Vec::new();
        for i in 0..12 {
            let seconds = if i % 2 == 0 { 1.2 } else { 0.3 };
            verdicts.push(matches!(policy.evaluate(&lag(seconds)), Verdict::Run));
        }
        assert!(verdicts.iter().all(|run| !run), "{verdicts:?}");
    }

    #[test]
    fn unknown_inputs_hold_and_say_why() {
        let mut policy = ThrottlePolicy::new(ThrottleSettings::default());
        let verdict = policy.evaluate(&Observation {
            replica_lag_seconds: Observed::Unknown("connection lost".to_string()),
            ..calm()
        });
        let reason = verdict.reason().expect("holds");
        assert!(
            reason.starts_with("replica lag unknown (connection lost): holding"),
            "{reason}"
        );
        assert!(reason.contains("max_replica_lag_ms"), "{reason}");
        // An input switched off is never waited for.
        let mut off = ThrottlePolicy::new(ThrottleSettings {
            max_replica_lag: None,
            ..ThrottleSettings::default()
        });
        assert_eq!(
            off.evaluate(&Observation {
                replica_lag_seconds: Observed::Unknown("connection lost".to_string()),
                ..calm()
            }),
            Verdict::Run
        );
    }

    #[test]
    fn every_throttling_input_is_named() {
        let mut policy = ThrottlePolicy::new(ThrottleSettings {
            flag_file: Some(PathBuf::from("/tmp/zdm-throttle")),
            query: Some("SELECT 1".to_string()),
            ..ThrottleSettings::default()
        });
        let verdict = policy.evaluate(&Observation {
            lock_waiters: Observed::Value(2.0),
            query: Observed::Value(1.0),
            flag_file: Some(true),
            ..lag(3.0)
        });
        let reason = verdict.reason().expect("throttled");
        assert!(reason.contains("replica lag 3.0 s"), "{reason}");
        assert!(
            reason.contains("2 sessions wait for a lock on the target table"),
            "{reason}"
        );
        assert!(reason.contains("throttle query returned 1"), "{reason}");
        assert!(
            reason.contains("flag file /tmp/zdm-throttle exists"),
            "{reason}"
        );
    }

    #[test]
    fn active_sessions_and_canary_are_relative_to_the_start() {
        let mut policy = ThrottlePolicy::new(ThrottleSettings::default());
        for _ in 0..3 {
            assert_eq!(policy.evaluate(&calm()), Verdict::Run);
        }
        // Start level 3: the limit is max(3 × 2, 3 + 5) = 8.
        let busy = Observation {
            active_sessions: Observed::Value(9.0),
            ..calm()
        };
        assert!(policy
            .evaluate(&busy)
            .reason()
            .is_some_and(|r| r.contains("active sessions 9 above max 8")));
        // Canary baseline 1 ms: the limit is max(1 × 4, 5 ms) = 5 ms.
        let mut policy = ThrottlePolicy::new(ThrottleSettings::default());
        for _ in 0..3 {
            policy.evaluate(&calm());
        }
        let slow = Observation {
            canary_ms: Observed::Value(7.0),
            ..calm()
        };
        assert!(policy
            .evaluate(&slow)
            .reason()
            .is_some_and(|r| r.contains("canary latency 7.0 ms above max 5.0 ms")));
    }

    #[tokio::test]
    async fn without_a_monitor_metric_inputs_hold_and_the_flag_file_acts_at_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let flag = dir.path().join("throttle");
        let mut throttle = Throttle::without_monitor(
            ThrottleSettings {
                flag_file: Some(flag.clone()),
                ..ThrottleSettings::default()
            },
            "the monitor could not start: no database URL".to_string(),
        );
        let verdict = throttle.check().await;
        let reason = verdict.reason().expect("holds");
        assert!(
            reason.starts_with(
                "replica lag unknown (the monitor could not start: no database URL): holding"
            ),
            "{reason}"
        );
        // Only the flag file left on: it throttles when created, lets go when removed,
        // each time at the very next check.
        throttle.apply(&ThrottleSettings {
            flag_file: Some(flag.clone()),
            ..only_flag()
        });
        assert_eq!(throttle.check().await, Verdict::Run);
        std::fs::write(&flag, "").expect("flag");
        let verdict = throttle.check().await;
        assert_eq!(
            verdict.reason(),
            Some(format!("flag file {} exists", flag.display()).as_str())
        );
        std::fs::remove_file(&flag).expect("remove");
        assert_eq!(throttle.check().await, Verdict::Run);
    }

    fn only_flag() -> ThrottleSettings {
        ThrottleSettings {
            max_replica_lag: None,
            max_lock_waiters: None,
            max_active_sessions_factor: None,
            max_host_cpu_percent: None,
            max_canary_factor: None,
            ..ThrottleSettings::default()
        }
    }

    #[test]
    fn the_critical_level_is_off_by_default_and_pauses_when_set() {
        let mut policy = ThrottlePolicy::new(ThrottleSettings::default());
        assert!(matches!(
            policy.evaluate(&lag(50.0)),
            Verdict::Throttle { .. }
        ));
        let mut policy = ThrottlePolicy::new(ThrottleSettings {
            critical_factor: Some(10.0),
            ..ThrottleSettings::default()
        });
        assert!(matches!(
            policy.evaluate(&lag(5.0)),
            Verdict::Throttle { .. }
        ));
        let verdict = policy.evaluate(&lag(12.0));
        assert_eq!(
            verdict,
            Verdict::Critical {
                reason: "replica lag 12.0 s is above its critical level 10.0 s".to_string()
            }
        );
    }
}
