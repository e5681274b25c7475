//! The backfill throttle: reads the monitor's Metrics snapshot (plus a flag file and an
//! optional SQL throttle query) and asks the pure [`ThrottlePolicy`] whether the backfill
//! may run, and if not, why. This file is the I/O; `policy` is the decision.

mod policy;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;

use crate::monitor::Metrics;
use crate::schedule::{Clock, Schedule};

pub use policy::{Input, Observation, Observed, ThrottlePolicy, ThrottleSettings, Verdict};

/// Why every monitored input is unknown before the monitor's first sample (the policy
/// says so in one short line, not once per input).
const FIRST_SAMPLE: &str = "the monitor has not taken its first sample yet";

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
    /// Where "now" comes from for the low-traffic windows.
    clock: Clock,
    /// The windows in their time zone, built when the settings name them.
    schedule: Option<Result<Schedule, String>>,
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
            clock: Clock::system(),
            schedule: None,
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
            clock: Clock::system(),
            schedule: None,
        }
    }

    /// The table whose lock waiters count (`schema.name`, unquoted).
    pub fn watch_table(&mut self, table: &str) {
        self.table = table.to_string();
    }

    /// Reads the time of day for the low-traffic windows from `clock` (a test moves it
    /// by hand) instead of the system clock.
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    pub fn settings(&self) -> &ThrottleSettings {
        self.policy.settings()
    }

    pub fn apply(&mut self, settings: &ThrottleSettings) {
        if settings != self.policy.settings() {
            let (windows, tz) = (&settings.windows, &settings.tz);
            if (windows, tz) != (&self.policy.settings().windows, &self.policy.settings().tz) {
                self.schedule = None;
            }
            self.policy.set_settings(settings.clone());
            // New limits decide at once, not at the next sample.
            self.last_evaluated = None;
        }
    }

    /// Outside every low-traffic window (and the windows not switched off): why the
    /// backfill holds and when the next one opens. Looked at on every check: time moves
    /// between monitor samples too.
    fn window_hold(&mut self) -> Option<String> {
        let settings = self.policy.settings();
        if !settings.window || settings.windows.is_empty() {
            return None;
        }
        let schedule = self.schedule.get_or_insert_with(|| {
            let tz = match &settings.tz {
                None => Ok(jiff::tz::TimeZone::system()),
                Some(name) => crate::schedule::time_zone(name).map_err(|e| e.to_string()),
            };
            tz.map(|tz| Schedule {
                windows: settings.windows.clone(),
                tz,
            })
        });
        match schedule {
            Ok(schedule) => schedule.hold(self.clock.now()),
            // Validated when set; never run blind on a zone that cannot be read.
            Err(why) => Some(format!(
                "the low-traffic windows cannot be judged ({why}): holding"
            )),
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
        let window = self.window_hold();
        if !(fresh_sample || due || flag_changed) {
            return self.last_verdict.clone().held_by(window);
        }
        let observation = self.observe(snapshot.as_deref(), flag_now).await;
        self.last_sequence = sequence;
        self.last_flag = flag_now;
        self.last_evaluated = Some(Instant::now());
        self.last_verdict = self.policy.evaluate(&observation);
        self.last_verdict.clone().held_by(window)
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
            Some(FIRST_SAMPLE.to_string())
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
            match crate::db::connect_within(
                &target,
                Some(crate::db::conninfo::DEFAULT_CONNECT_TIMEOUT),
            )
            .await
            {
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
                "replica lag, lock waiters, active sessions, canary latency unknown (the \
                 monitor could not start: no database URL): holding"
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
            max_canary_slowdown: None,
            ..ThrottleSettings::default()
        }
    }
}
