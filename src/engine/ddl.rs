//! Lock-safe execution of a step's SQL: every statement runs under a short
//! `lock_timeout`; one that cannot get its lock in time gives up (SQLSTATE 55P03) and is
//! retried after an exponential backoff with jitter, so it never queues the
//! application's queries behind it for longer than the lock timeout.

use std::time::{Duration, Instant};

use rand::Rng;
use sqlx::{Acquire, Executor, PgConnection};

use super::event::{Event, Events};
use super::state::{self, StepKey};
use super::Error;
use crate::plan::LockLevel;

/// `lock_not_available`: the lock was not granted within `lock_timeout`.
const LOCK_NOT_AVAILABLE: &str = "55P03";
/// `query_canceled`: a statement timeout, or a cancel request.
const QUERY_CANCELED: &str = "57014";
/// `deadlock_detected`: PostgreSQL chose this statement as the victim; also worth a retry.
const DEADLOCK_DETECTED: &str = "40P01";

/// How DDL waits for locks and how often it tries again.
#[derive(Debug, Clone)]
pub struct LockPolicy {
    /// The longest any statement waits for a lock before giving up.
    pub lock_timeout: Duration,
    /// The longest a statement may run (`None`: leave the server's setting alone).
    pub statement_timeout: Option<Duration>,
    /// The wait before the first retry; doubles on each further one.
    pub first_backoff: Duration,
    /// The longest wait between two tries.
    pub max_backoff: Duration,
    /// Tries before giving up (at least one).
    pub max_attempts: u32,
}

/// Whether an error means "the lock was not available in time; nothing was done".
pub fn is_lock_timeout(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            matches!(
                db.code().as_deref(),
                Some(LOCK_NOT_AVAILABLE | DEADLOCK_DETECTED)
            )
        }
        _ => false,
    }
}

/// Whether `error` is a statement cancelled by `statement_timeout` (or by a
/// `pg_cancel_backend`, which a backfill treats the same: retry smaller).
pub fn is_statement_timeout(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db.code().as_deref() == Some(QUERY_CANCELED),
        _ => false,
    }
}

/// The retry state of one step: counts tries and sleeps between them.
#[derive(Debug)]
pub struct LockRetry<'a> {
    policy: &'a LockPolicy,
    step: String,
    lock: LockLevel,
    attempts: u32,
    started: Instant,
    /// Who held conflicting locks at the last timeout, for the final error.
    blockers: Vec<Blocker>,
    events: Events,
}

impl<'a> LockRetry<'a> {
    /// Starts counting for `step` (a label for logs and errors) which takes `lock`.
    pub fn new(policy: &'a LockPolicy, step: String, lock: LockLevel) -> Self {
        LockRetry {
            policy,
            step,
            lock,
            attempts: 0,
            started: Instant::now(),
            blockers: Vec::new(),
            events: Events::none(),
        }
    }

    /// Also reports each wait as an [`Event::LockWait`].
    pub fn with_events(mut self, events: &Events) -> Self {
        self.events = events.clone();
        self
    }

    /// Marks the start of a try; returns its number (1 for the first).
    pub fn begin_attempt(&mut self) -> u32 {
        self.attempts += 1;
        self.attempts
    }

    /// Tries made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// After a lock timeout: logs it (with the sessions holding conflicting locks) and
    /// sleeps before the next try, or returns the error that ends the run when the tries
    /// are used up.
    pub async fn back_off(
        &mut self,
        reason: &(dyn std::fmt::Display + Sync),
        blockers: Vec<Blocker>,
    ) -> Result<(), Error> {
        self.blockers = blockers;
        let blocked_by = describe_blockers(&self.blockers);
        if self.attempts >= self.policy.max_attempts.max(1) {
            tracing::error!(step = %self.step, attempts = self.attempts, %blocked_by, "lock retries exhausted");
            return Err(Error::LockRetriesExhausted {
                step: self.step.clone(),
                lock: self.lock.sql_name().to_string(),
                attempts: self.attempts,
                waited: self.started.elapsed(),
                blocked_by,
            });
        }
        let delay = backoff_delay(self.policy, self.attempts, &mut rand::thread_rng());
        tracing::warn!(
            step = %self.step,
            attempt = self.attempts,
            of = self.policy.max_attempts,
            retry_in_ms = delay.as_millis() as u64,
            reason = %reason,
            %blocked_by,
            "lock not granted within lock_timeout; gave up so the application is not queued behind it, will retry"
        );
        self.events.emit(Event::LockWait {
            step: self.step.clone(),
            attempt: self.attempts,
            max_attempts: self.policy.max_attempts,
            retry_in: delay,
            blocked_by,
        });
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

/// A session holding a lock that a step's DDL conflicts with.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Blocker {
    /// Server process id (what `pg_terminate_backend` takes).
    pub pid: i32,
    /// `AccessShareLock`, as `pg_locks.mode` spells it.
    pub mode: String,
    pub relation: String,
    pub application_name: String,
    pub db_user: String,
    /// `active`, `idle in transaction`, ...
    pub state: String,
    /// How long its transaction has been open, in seconds.
    pub transaction_seconds: Option<f64>,
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "server process {} (application {:?}, user {}, {}",
            self.pid, self.application_name, self.db_user, self.state
        )?;
        if let Some(seconds) = self.transaction_seconds {
            write!(f, ", transaction open {seconds:.0} s")?;
        }
        write!(f, ") holds {} on {}", self.mode, self.relation)
    }
}

/// "blocked by server process 1234 (...)", or a note that none was seen.
fn describe_blockers(blockers: &[Blocker]) -> String {
    if blockers.is_empty() {
        return "no conflicting lock was seen after the timeout (it may have been brief)"
            .to_string();
    }
    let list: Vec<String> = blockers.iter().map(Blocker::to_string).collect();
    format!("blocked by {}", list.join("; "))
}

/// Sessions holding locks on `tables` that conflict with `wanted`.
pub async fn blockers(
    conn: &mut PgConnection,
    tables: &[String],
    wanted: LockLevel,
) -> Result<Vec<Blocker>, sqlx::Error> {
    if tables.is_empty() || wanted == LockLevel::None {
        return Ok(Vec::new());
    }
    let rows: Vec<Blocker> = sqlx::query_as(
        "SELECT l.pid, l.mode, l.relation::regclass::text AS relation, \
                coalesce(a.application_name, '') AS application_name, \
                coalesce(a.usename::text, '') AS db_user, \
                coalesce(a.state, 'unknown state') AS state, \
                extract(epoch FROM now() - a.xact_start)::float8 AS transaction_seconds \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.granted AND l.locktype = 'relation' AND l.pid <> pg_backend_pid() \
           AND l.relation IN (SELECT to_regclass(t) FROM unnest($1::text[]) AS t) \
         ORDER BY a.xact_start NULLS LAST, l.pid",
    )
    .bind(tables)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|blocker| conflicts(wanted, &blocker.mode))
        .collect())
}

/// The sessions `pid` waits for right now (`pg_blocking_pids`), row locks included: for a
/// backfill batch waiting on rows another transaction locked (`SELECT … FOR UPDATE`, an
/// update not committed yet), which no table lock shows. `table` names the relation in
/// the description; the mode is the table lock the blocker holds that conflicts with a
/// batch's ROW EXCLUSIVE, else "a row lock".
pub async fn blocking(
    conn: &mut PgConnection,
    pid: i32,
    table: &str,
) -> Result<Vec<Blocker>, sqlx::Error> {
    let rows: Vec<BlockerRow> = sqlx::query_as(
        "SELECT a.pid, $2::text AS relation, \
                coalesce(a.application_name, '') AS application_name, \
                coalesce(a.usename::text, '') AS db_user, \
                coalesce(a.state, 'unknown state') AS state, \
                extract(epoch FROM now() - a.xact_start)::float8 AS transaction_seconds, \
                coalesce(array_agg(l.mode::text) FILTER (WHERE l.mode IS NOT NULL), '{}') AS modes \
         FROM pg_stat_activity a \
         LEFT JOIN pg_locks l ON l.pid = a.pid AND l.granted AND l.locktype = 'relation' \
              AND l.relation = to_regclass($2) \
         WHERE a.pid = ANY (pg_blocking_pids($1)) \
         GROUP BY a.pid, a.application_name, a.usename, a.state, a.xact_start \
         ORDER BY a.xact_start NULLS LAST, a.pid",
    )
    .bind(pid)
    .bind(table)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(BlockerRow::into_blocker).collect())
}

/// A row of [`blocking`]'s query.
#[derive(sqlx::FromRow)]
struct BlockerRow {
    pid: i32,
    relation: String,
    application_name: String,
    db_user: String,
    state: String,
    transaction_seconds: Option<f64>,
    modes: Vec<String>,
}

impl BlockerRow {
    fn into_blocker(self) -> Blocker {
        let mode = self
            .modes
            .into_iter()
            .find(|mode| conflicts(LockLevel::RowExclusive, mode))
            .unwrap_or_else(|| "a row lock".to_string());
        Blocker {
            pid: self.pid,
            mode,
            relation: self.relation,
            application_name: self.application_name,
            db_user: self.db_user,
            state: self.state,
            transaction_seconds: self.transaction_seconds,
        }
    }
}

/// Whether `wanted` waits for a lock held in `held_mode` (as `pg_locks.mode` spells it,
/// e.g. `RowExclusiveLock`); modes that are not table locks never conflict here.
pub fn conflicts(wanted: LockLevel, held_mode: &str) -> bool {
    LockLevel::from_pg_mode(held_mode).is_some_and(|held| wanted.conflicts_with(held))
}

/// The wait after the `attempt`-th failed try: `first × 2^(attempt-1)`, capped at
/// `max_backoff`, then drawn uniformly from its upper half so that two waiting zdm
/// sessions (or a zdm and an application retry loop) do not retry in lockstep.
pub fn backoff_delay(policy: &LockPolicy, attempt: u32, rng: &mut impl Rng) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let ceiling = policy
        .first_backoff
        .saturating_mul(1 << exponent)
        .min(policy.max_backoff)
        .max(Duration::from_millis(1));
    let half = ceiling / 2;
    half + ceiling
        .saturating_sub(half)
        .mul_f64(rng.gen_range(0.0..=1.0))
}

/// `SET [LOCAL] lock_timeout ...; SET [LOCAL] statement_timeout ...` for this policy.
fn timeout_settings(policy: &LockPolicy, local: bool) -> String {
    let scope = if local { "LOCAL " } else { "" };
    let mut sql = format!(
        "SET {scope}lock_timeout = {}",
        policy.lock_timeout.as_millis().max(1)
    );
    if let Some(limit) = policy.statement_timeout {
        sql.push_str(&format!(
            "; SET {scope}statement_timeout = {}",
            limit.as_millis()
        ));
    }
    sql
}

/// One try of a transactional step: its SQL and the record that it is done commit
/// together, so a crash never leaves it done but unrecorded (or recorded but undone).
pub async fn try_in_transaction(
    conn: &mut PgConnection,
    policy: &LockPolicy,
    sql: &str,
    done: &StepKey<'_>,
    attempts: u32,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    // `Executor::execute` (a boxed, Send future) rather than `RawSql::execute`, whose
    // future is not Send for a borrowed SQL text.
    let settings = timeout_settings(policy, true);
    (&mut *tx).execute(sqlx::raw_sql(&settings)).await?;
    (&mut *tx).execute(sqlx::raw_sql(sql)).await?;
    state::mark_step_done(&mut tx, done, attempts).await?;
    tx.commit().await
}

/// One try of a statement that cannot run in a transaction block (CREATE INDEX
/// CONCURRENTLY). It must be idempotent: a crash after it ran but before it was recorded
/// runs it again. The caller records it as done afterwards.
pub async fn try_outside_transaction(
    conn: &mut PgConnection,
    policy: &LockPolicy,
    sql: &str,
) -> Result<(), sqlx::Error> {
    let settings = timeout_settings(policy, false);
    (&mut *conn).execute(sqlx::raw_sql(&settings)).await?;
    let result = (&mut *conn).execute(sqlx::raw_sql(sql)).await.map(|_| ());
    let reset = (&mut *conn)
        .execute(sqlx::raw_sql("RESET lock_timeout; RESET statement_timeout"))
        .await;
    result?;
    reset.map(|_| ())
}

/// Invalid indexes on the given tables (a failed CREATE INDEX CONCURRENTLY leaves one).
pub async fn invalid_indexes(
    conn: &mut PgConnection,
    tables: &[String],
) -> Result<Vec<(u32, String)>, sqlx::Error> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(sqlx::postgres::types::Oid, String)> = sqlx::query_as(
        "SELECT i.indexrelid, i.indexrelid::regclass::text FROM pg_index i \
         WHERE NOT i.indisvalid \
           AND i.indrelid IN (SELECT to_regclass(t) FROM unnest($1::text[]) AS t)",
    )
    .bind(tables)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(oid, name)| (oid.0, name)).collect())
}

/// Drops an invalid index left by a failed try of this run, without blocking the
/// application (concurrently, under the same lock timeout and retries).
pub async fn drop_invalid_index(
    conn: &mut PgConnection,
    policy: &LockPolicy,
    qualified_name: &str,
) -> Result<(), Error> {
    let mut retry = LockRetry::new(
        policy,
        format!("dropping the invalid index {qualified_name} left by a failed try"),
        LockLevel::ShareUpdateExclusive,
    );
    // The name comes from `regclass::text`, which quotes where needed.
    let sql = format!("DROP INDEX CONCURRENTLY IF EXISTS {qualified_name}");
    loop {
        retry.begin_attempt();
        let result = try_outside_transaction(conn, policy, &sql).await;
        match result {
            Ok(()) => return Ok(()),
            Err(error) if is_lock_timeout(&error) => retry.back_off(&error, Vec::new()).await?,
            Err(source) => {
                return Err(Error::StepFailed {
                    step: format!("dropping the invalid index {qualified_name}"),
                    source,
                })
            }
        }
    }
}

/// An invalid index named `name` on one of `tables`, left by an interrupted build, and
/// whether a build of it is still running in some session.
pub async fn leftover_index(
    conn: &mut PgConnection,
    name: &str,
    tables: &[String],
) -> Result<Option<(String, Option<i32>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.oid::regclass::text, \
                (SELECT p.pid FROM pg_stat_progress_create_index p \
                 WHERE p.index_relid = c.oid LIMIT 1) \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE c.relname = $1 AND NOT i.indisvalid \
           AND i.indrelid IN (SELECT to_regclass(t) FROM unnest($2::text[]) AS t) \
         LIMIT 1",
    )
    .bind(name)
    .bind(tables)
    .fetch_optional(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn policy() -> LockPolicy {
        LockPolicy {
            lock_timeout: Duration::from_millis(500),
            statement_timeout: None,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            max_attempts: 10,
        }
    }

    #[test]
    fn backoff_doubles_within_jitter_and_stops_at_the_cap() {
        let policy = policy();
        let mut rng = StdRng::seed_from_u64(7);
        for (attempt, ceiling_ms) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (30, 1000),
        ] {
            for _ in 0..50 {
                let delay = backoff_delay(&policy, attempt, &mut rng);
                let ceiling = Duration::from_millis(ceiling_ms);
                assert!(
                    delay <= ceiling,
                    "attempt {attempt}: {delay:?} > {ceiling:?}"
                );
                assert!(delay >= ceiling / 2, "attempt {attempt}: {delay:?} < half");
            }
        }
    }

    #[test]
    fn the_conflict_matrix_matches_postgres() {
        use LockLevel::*;
        assert!(conflicts(AccessExclusive, "AccessShareLock"));
        assert!(!conflicts(ShareUpdateExclusive, "RowExclusiveLock"));
        assert!(conflicts(Share, "RowExclusiveLock"));
        assert!(!conflicts(RowExclusive, "RowExclusiveLock"));
        assert!(conflicts(ShareUpdateExclusive, "ShareUpdateExclusiveLock"));
        assert!(!conflicts(AccessShare, "ExclusiveLock"));
        assert!(!conflicts(None, "AccessExclusiveLock"));
        assert!(!conflicts(AccessExclusive, "SIReadLock"));
    }

    #[test]
    fn timeouts_are_set_apart() {
        let mut policy = policy();
        assert_eq!(
            timeout_settings(&policy, true),
            "SET LOCAL lock_timeout = 500"
        );
        policy.statement_timeout = Some(Duration::from_secs(60));
        assert_eq!(
            timeout_settings(&policy, false),
            "SET lock_timeout = 500; SET statement_timeout = 60000"
        );
    }
}
