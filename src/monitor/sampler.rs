//! The sampler: one connection, one pass over every metric query per interval, each query
//! bounded by a statement timeout and a client-side timeout, so that one failure marks
//! only its own metrics stale and a lost server is reconnected on the next pass.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;
use tokio::sync::watch;

use super::alerts;
use super::history::History;
use super::host::{self, HostSampler};
use super::metrics::{
    Canary, Locks, Metrics, Progress, SamplerStatus, StatementTiming, Throughput,
};
use super::queries::{self, DatabaseCounters, ServerFacts};
use super::reading::Reading;
use super::MonitorOptions;

/// The `application_name` of the sampler's connection.
pub const APPLICATION_NAME: &str = "zdm-monitor";

/// The oldest `server_version_num` whose statistics views the queries use (13.0).
const MIN_VERSION: i32 = 130_000;

/// What the canary runs on the current connection.
#[derive(Debug, Clone)]
struct CanaryPlan {
    sql: String,
    description: String,
    /// Our own SQL is prepared once; a configured query is sent as written.
    prepared: bool,
}

/// A working connection and what was learnt when it was opened.
struct Connected {
    conn: PgConnection,
    facts: ServerFacts,
    canary: CanaryPlan,
}

/// Transactions the sampler itself committed or rolled back since its last read of
/// `pg_stat_database`: subtracted so that zdm top on an idle server shows 0 commits/s.
#[derive(Debug, Default, Clone, Copy)]
struct OwnTransactions {
    commits: i64,
    rollbacks: i64,
}

/// The state carried from one sample to the next.
pub(super) struct Sampler {
    options: MonitorOptions,
    connected: Option<Connected>,
    host: Option<HostSampler>,
    metrics: Metrics,
    counters: Option<(Instant, DatabaseCounters)>,
    own: OwnTransactions,
    statements: Option<HashMap<i64, (i64, f64)>>,
}

impl Sampler {
    pub(super) fn new(options: MonitorOptions) -> Self {
        let local = host::is_local(&options.connect);
        let mut metrics = Metrics::default();
        if !local {
            metrics.host = Reading::unavailable(host::REMOTE_HOST);
        }
        Sampler {
            options,
            connected: None,
            host: local.then(HostSampler::new),
            metrics,
            counters: None,
            own: OwnTransactions::default(),
            statements: None,
        }
    }

    /// Samples every `interval` until `stop` changes, publishing each snapshot.
    pub(super) async fn run(
        mut self,
        publish: watch::Sender<Arc<Metrics>>,
        history: Arc<RwLock<History>>,
        baseline_end: watch::Receiver<Option<DateTime<Utc>>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(self.options.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => break,
            }
            let mut metrics = tokio::select! {
                metrics = self.sample() => metrics,
                _ = stop.changed() => break,
            };
            let mut policy = self.options.alert_policy.clone();
            policy.baseline.end = *baseline_end.borrow();
            // A poisoned lock only means a reader panicked; the data is still whole.
            history
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .record_metrics(&metrics);
            let recorded = history.read().unwrap_or_else(|e| e.into_inner());
            metrics.alerts = alerts::evaluate(&recorded, &metrics, &policy);
            drop(recorded);
            self.metrics = metrics.clone();
            if publish.send(Arc::new(metrics)).is_err() {
                break; // nobody listens any more
            }
        }
        if let Some(connected) = self.connected.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), connected.conn.close()).await;
        }
    }

    /// One pass: host, then (re)connect, then every database metric.
    pub(super) async fn sample(&mut self) -> Metrics {
        if let Some(host) = &self.host {
            if self.metrics.sequence == 0 {
                // The first CPU figure needs a reference reading 200 ms older.
                tokio::time::sleep(host.ready_in()).await;
            }
        }
        let started = Instant::now();
        let now = Utc::now();
        let mut m = self.metrics.clone();
        m.sequence += 1;
        m.taken_at = now;
        m.alerts.clear();
        m.sampler.queries = 0;
        if let Some(host) = &mut self.host {
            m.host = Reading::fresh(host.sample(), now);
        }
        if self.connected.is_none() {
            if let Err(why) = self.connect().await {
                mark_database_stale(&mut m, &why);
                m.sampler = SamplerStatus {
                    connected: false,
                    problem: Some(why),
                    duration_ms: elapsed_ms(started),
                    ..SamplerStatus::default()
                };
                return m;
            }
        }
        let lost = self.sample_database(&mut m, now).await;
        m.sampler.duration_ms = elapsed_ms(started);
        match lost {
            Some(why) => {
                // The connection is broken or in an unknown state: start afresh next time.
                self.connected = None;
                self.counters = None;
                self.statements = None;
                m.sampler.connected = false;
                m.sampler.backend_pid = None;
                m.sampler.problem = Some(why);
            }
            None => {
                m.sampler.connected = true;
                m.sampler.problem = None;
            }
        }
        m
    }

    /// Opens the sampler's connection and reads what it needs once per connection.
    async fn connect(&mut self) -> Result<(), String> {
        let mut servers = vec![self.options.connect.clone()];
        servers.extend(self.options.failover.iter().cloned());
        let mut first_error = None;
        for (index, server) in servers.iter().enumerate() {
            match self.connect_to(server, index > 0).await {
                Ok(()) => return Ok(()),
                Err(why) => {
                    first_error.get_or_insert(why);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| "cannot connect".to_string()))
    }

    /// Opens the connection to one server; a failover server only while it is a primary.
    async fn connect_to(
        &mut self,
        server: &PgConnectOptions,
        failover: bool,
    ) -> Result<(), String> {
        let timeout = self.options.connect_timeout;
        let options = self.options.session_options(server);
        let opened = tokio::time::timeout(timeout, async {
            let mut conn = PgConnection::connect_with(&options).await?;
            let facts = queries::server_facts(&mut conn).await?;
            let canary = self.plan_canary(&mut conn).await?;
            if facts.version_num >= 150_000 {
                queries::flush_own_statistics(&mut conn).await?;
            }
            Ok::<_, sqlx::Error>(Connected {
                conn,
                facts,
                canary,
            })
        })
        .await;
        match opened {
            Ok(Ok(connected)) if failover && connected.facts.in_recovery => Err(format!(
                "cannot connect: failover server {}:{} is a standby",
                server.get_host(),
                server.get_port()
            )),
            Ok(Ok(connected)) if connected.facts.version_num < MIN_VERSION => Err(format!(
                "PostgreSQL {} is not supported: the monitor needs 13 or later",
                connected.facts.version_num / 10_000
            )),
            Ok(Ok(connected)) => {
                tracing::info!(
                    backend_pid = connected.facts.backend_pid,
                    "monitor connected to {}",
                    self.options.describe_target()
                );
                self.connected = Some(connected);
                self.counters = None;
                self.statements = None;
                self.own = OwnTransactions::default();
                Ok(())
            }
            Ok(Err(error)) => Err(format!("cannot connect: {}", describe(&error))),
            Err(_) => Err(format!(
                "cannot connect: no answer within {} ms",
                timeout.as_millis()
            )),
        }
    }

    async fn plan_canary(&self, conn: &mut PgConnection) -> Result<CanaryPlan, sqlx::Error> {
        if let Some(sql) = &self.options.canary_query {
            return Ok(CanaryPlan {
                sql: sql.clone(),
                description: truncate(sql, 60),
                prepared: false,
            });
        }
        let Some(table) = self.options.target_tables.first() else {
            return Ok(CanaryPlan {
                sql: "SELECT /* zdm-monitor canary */ 1".to_string(),
                description: "SELECT 1 (no target table given)".to_string(),
                prepared: true,
            });
        };
        Ok(match queries::default_canary(conn, table).await? {
            Some((sql, description)) => CanaryPlan {
                sql,
                description,
                prepared: true,
            },
            None => CanaryPlan {
                sql: "SELECT /* zdm-monitor canary */ 1".to_string(),
                description: format!(
                    "SELECT 1 ({table} was not found or has no single-column primary key)"
                ),
                prepared: true,
            },
        })
    }

    /// Runs every metric query; returns why the connection was lost, if it was.
    async fn sample_database(&mut self, m: &mut Metrics, now: DateTime<Utc>) -> Option<String> {
        let connected = self.connected.as_mut()?;
        let facts = connected.facts.clone();
        let plan = connected.canary.clone();
        m.sampler.backend_pid = Some(facts.backend_pid);
        m.sampler.server_version = Some(facts.version_num);
        m.sampler.in_recovery = Some(facts.in_recovery);
        let options = &self.options;
        let conn = &mut connected.conn;
        let mut link = Link {
            timeout: options.query_timeout + options.answer_grace,
            lost: None,
            queries: 0,
            own: OwnTransactions::default(),
        };

        // Counters first: every statement of the previous sample is flushed by now, so
        // the sampler's own transactions can be subtracted exactly.
        let read_at = Instant::now();
        match link.run(1, queries::database_counters(conn)).await {
            Ok(counters) => {
                m.throughput = match self.counters {
                    Some((before_at, before)) => {
                        Reading::fresh(rates(before, counters, self.own, read_at - before_at), now)
                    }
                    None => Reading::unavailable("rates need two samples"),
                };
                self.counters = Some((read_at, counters));
                self.own = OwnTransactions::default();
            }
            Err(why) => m.throughput.mark_stale(why),
        }

        set(
            &mut m.replication,
            link.run(2, queries::replication(conn)).await,
            now,
        );

        let (version, chars) = (facts.version_num, options.query_text_chars);
        let locks = link
            .run(1, queries::lock_waits(conn, version, chars))
            .await
            .map(|waits| {
                let mut pids: Vec<i32> = waits.iter().map(|w| w.waiter.pid).collect();
                pids.sort_unstable();
                pids.dedup();
                Locks {
                    waiters: pids.len(),
                    longest_wait_seconds: waits.iter().map(|w| w.wait_seconds).fold(0.0, f64::max),
                    waits,
                }
            });
        set(&mut m.locks, locks, now);

        let long_seconds = options.long_transaction.as_secs_f64();
        set(
            &mut m.sessions,
            link.run(2, queries::sessions(conn, long_seconds, chars))
                .await,
            now,
        );

        let targets = &options.target_tables;
        if targets.is_empty() {
            m.tables = Reading::fresh(Vec::new(), now);
        } else {
            match link.run(1, queries::tables(conn, targets)).await {
                Ok((stats, missing)) if missing.is_empty() => m.tables = Reading::fresh(stats, now),
                Ok((stats, missing)) => {
                    m.tables = Reading::fresh(stats, now);
                    m.tables.problem = Some(format!(
                        "no statistics for {} (no such table, or a partitioned one: \
                         name its partitions)",
                        missing.join(", ")
                    ));
                }
                Err(why) => m.tables.mark_stale(why),
            }
        }

        let latency = link
            .run(1, queries::canary(conn, &plan.sql, plan.prepared))
            .await
            .map(|latency_ms| Canary {
                description: plan.description.clone(),
                latency_ms,
            });
        set(&mut m.canary, latency, now);

        match &facts.statements_schema {
            None => {
                m.statements =
                    Reading::unavailable("pg_stat_statements is not installed in this database")
            }
            Some(schema) => {
                match link
                    .run(1, queries::statement_counters(conn, schema, chars))
                    .await
                {
                    Ok(counters) => {
                        let current: HashMap<i64, (i64, f64)> = counters
                            .iter()
                            .map(|s| (s.queryid, (s.calls, s.total_ms)))
                            .collect();
                        m.statements = match &self.statements {
                            Some(previous) => Reading::fresh(
                                top_statements(previous, &counters, options.top_statements),
                                now,
                            ),
                            None => Reading::unavailable("statement times need two samples"),
                        };
                        self.statements = Some(current);
                    }
                    Err(why) => m.statements.mark_stale(why),
                }
            }
        }

        let index = link.run(1, queries::index_progress(conn, targets)).await;
        let vacuum = link.run(1, queries::vacuum_progress(conn, targets)).await;
        let progress = match (index, vacuum) {
            (Ok(create_index), Ok(vacuum)) => Ok(Progress {
                create_index,
                vacuum,
            }),
            (Err(why), _) | (_, Err(why)) => Err(why),
        };
        set(&mut m.progress, progress, now);

        if version >= 150_000 {
            // Failure here only makes the next commit rate a little less exact.
            let _ = link.run(1, queries::flush_own_statistics(conn)).await;
        }

        m.sampler.queries = link.queries;
        self.own.commits += link.own.commits;
        self.own.rollbacks += link.own.rollbacks;
        link.lost
    }
}

/// One sample's use of the connection: counts queries, bounds each in time, and once
/// the connection is lost answers every later query with the reason.
struct Link {
    timeout: Duration,
    lost: Option<String>,
    queries: u32,
    own: OwnTransactions,
}

impl Link {
    /// Runs `query`, which sends `statements` statements (it is not polled at all once
    /// the connection is lost).
    async fn run<T>(
        &mut self,
        statements: u32,
        query: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, String> {
        if let Some(why) = &self.lost {
            return Err(why.clone());
        }
        self.queries += statements;
        match tokio::time::timeout(self.timeout, query).await {
            Ok(Ok(value)) => {
                self.own.commits += i64::from(statements);
                Ok(value)
            }
            Ok(Err(error)) if breaks_connection(&error) => {
                let why = format!("connection lost: {}", describe(&error));
                self.lost = Some(why.clone());
                Err(why)
            }
            Ok(Err(error)) => {
                self.own.rollbacks += 1;
                Err(describe(&error))
            }
            Err(_) => {
                let why = format!(
                    "the server did not answer within {} ms",
                    self.timeout.as_millis()
                );
                self.lost = Some(why.clone());
                Err(why)
            }
        }
    }
}

/// Stores a successful read, or keeps the old value marked stale with the reason.
fn set<T>(reading: &mut Reading<T>, result: Result<T, String>, now: DateTime<Utc>) {
    match result {
        Ok(value) => *reading = Reading::fresh(value, now),
        Err(why) => reading.mark_stale(why),
    }
}

/// Marks every database reading stale (the host reading is measured apart).
fn mark_database_stale(m: &mut Metrics, why: &str) {
    m.replication.mark_stale(why);
    m.locks.mark_stale(why);
    m.sessions.mark_stale(why);
    m.throughput.mark_stale(why);
    m.tables.mark_stale(why);
    m.canary.mark_stale(why);
    m.statements.mark_stale(why);
    m.progress.mark_stale(why);
}

/// Whether an error leaves the connection unusable (as opposed to one failed statement).
fn breaks_connection(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 08: connection exceptions; 57P01..57P05: shutdown, crash, idle session timeout.
            code.starts_with("08") || (code.starts_with("57P") && code != "57P04")
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::PoolClosed
        | sqlx::Error::PoolTimedOut => true,
        _ => false,
    }
}

/// An error as a DBA wants to read it: the server's message, or the client's.
fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_string(),
        },
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// Per-second rates between two counter reads, minus the sampler's own transactions.
fn rates(
    before: DatabaseCounters,
    after: DatabaseCounters,
    own: OwnTransactions,
    elapsed: Duration,
) -> Throughput {
    let seconds = elapsed.as_secs_f64().max(1e-3);
    // Counters only go down after pg_stat_reset(); clamp rather than show a negative rate.
    let per_second = |delta: i64| delta.max(0) as f64 / seconds;
    Throughput {
        commits_per_second: per_second(after.commits - before.commits - own.commits),
        rollbacks_per_second: per_second(after.rollbacks - before.rollbacks - own.rollbacks),
        inserted_per_second: per_second(after.inserted - before.inserted),
        updated_per_second: per_second(after.updated - before.updated),
        deleted_per_second: per_second(after.deleted - before.deleted),
        interval_seconds: seconds,
    }
}

/// The `n` statements that spent the most time between two reads. A statement first
/// seen in the later read is left out: it may only have climbed into the list read.
fn top_statements(
    previous: &HashMap<i64, (i64, f64)>,
    current: &[queries::StatementCounters],
    n: usize,
) -> Vec<StatementTiming> {
    let mut timings: Vec<StatementTiming> = current
        .iter()
        .filter_map(|s| {
            let (calls_before, total_before) = previous.get(&s.queryid)?;
            let calls = s.calls - calls_before;
            let total_ms = s.total_ms - total_before;
            (calls > 0 && total_ms >= 0.0).then(|| StatementTiming {
                queryid: s.queryid,
                query: s.query.clone(),
                calls,
                mean_ms: total_ms / calls as f64,
                total_ms,
            })
        })
        .collect();
    timings.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
    timings.truncate(n);
    timings
}

fn elapsed_ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

/// At most `max` characters of `text`, on one line, with an ellipsis when cut.
fn truncate(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(commits: i64, rollbacks: i64, inserted: i64) -> DatabaseCounters {
        DatabaseCounters {
            commits,
            rollbacks,
            inserted,
            updated: 0,
            deleted: 0,
        }
    }

    #[test]
    fn rates_leave_out_the_samplers_own_transactions() {
        let own = OwnTransactions {
            commits: 12,
            rollbacks: 1,
        };
        let rate = rates(
            counters(100, 5, 1000),
            counters(132, 6, 1500),
            own,
            Duration::from_secs(2),
        );
        assert_eq!(rate.commits_per_second, 10.0);
        assert_eq!(rate.rollbacks_per_second, 0.0);
        assert_eq!(rate.inserted_per_second, 250.0);
        let reset = rates(
            counters(100, 5, 1000),
            counters(3, 0, 0),
            own,
            Duration::from_secs(1),
        );
        assert_eq!(
            reset.commits_per_second, 0.0,
            "a stats reset never shows negative"
        );
    }

    #[test]
    fn statement_times_are_deltas_of_known_statements() {
        let previous = HashMap::from([(1, (10, 100.0)), (2, (5, 50.0)), (3, (1, 1.0))]);
        let current = vec![
            queries::StatementCounters {
                queryid: 1,
                query: "a".into(),
                calls: 14,
                total_ms: 140.0,
            },
            queries::StatementCounters {
                queryid: 2,
                query: "b".into(),
                calls: 6,
                total_ms: 150.0,
            },
            queries::StatementCounters {
                queryid: 3,
                query: "idle".into(),
                calls: 1,
                total_ms: 1.0,
            },
            queries::StatementCounters {
                queryid: 4,
                query: "new".into(),
                calls: 1000,
                total_ms: 9999.0,
            },
        ];
        let top = top_statements(&previous, &current, 5);
        let summary: Vec<(i64, i64, f64)> = top
            .iter()
            .map(|s| (s.queryid, s.calls, s.mean_ms))
            .collect();
        assert_eq!(summary, vec![(2, 1, 100.0), (1, 4, 10.0)]);
    }

    #[test]
    fn connection_errors_are_told_apart_from_statement_errors() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(breaks_connection(&io));
        assert!(!breaks_connection(&sqlx::Error::RowNotFound));
    }

    #[test]
    fn long_text_is_cut_on_one_line() {
        assert_eq!(truncate("SELECT\n  1", 60), "SELECT 1");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
