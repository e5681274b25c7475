//! Rule 1 on a real PostgreSQL: a DDL that cannot get its lock gives up after
//! lock_timeout and retries, so the application's queries are never queued behind it for
//! longer than about lock_timeout, and the step succeeds once the lock is free.

mod common;
mod engine_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine_support::{concurrent, engine, plan, quick_options, sql};
use sqlx::{Connection, Executor};
use zdm::engine::{Outcome, Status};
use zdm::plan::{LockLevel, Phase};

/// Runs `SELECT` on `table` in a loop until stopped; returns (queries, slowest).
fn reader(
    pg: &zdm::localpg::LocalPg,
    database: &str,
    table: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u32, Duration)> {
    let options = pg.primary().connect_options(database);
    tokio::spawn(async move {
        let mut conn = sqlx::PgConnection::connect_with(&options)
            .await
            .expect("reader connects");
        let mut slowest = Duration::ZERO;
        let mut queries = 0;
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let _: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&mut conn)
                .await
                .expect("reads always succeed");
            slowest = slowest.max(started.elapsed());
            queries += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (queries, slowest)
    })
}

#[tokio::test]
async fn a_blocked_ddl_retries_without_queueing_readers_and_succeeds_when_free() {
    let pg = common::primary();
    let pool = common::database(&pg, "lock_safety").await;
    sqlx::raw_sql(
        "CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL);
         INSERT INTO accounts SELECT g, g FROM generate_series(1, 1000) AS g;",
    )
    .execute(&pool)
    .await
    .expect("table");

    // A long transaction of the application holds a lock that ADD COLUMN's ACCESS
    // EXCLUSIVE conflicts with.
    let mut holder = pool.acquire().await.expect("holder");
    holder.execute("BEGIN").await.expect("begin");
    holder
        .execute("LOCK TABLE accounts IN ACCESS SHARE MODE")
        .await
        .expect("lock");

    let stop = Arc::new(AtomicBool::new(false));
    let reads = reader(&pg, "lock_safety", "accounts", stop.clone());

    let options = quick_options();
    let lock_timeout = options.ddl.lock_timeout;
    let plan = plan(
        "0001_accounts_currency",
        vec![sql(
            Phase::Expand,
            "add column accounts.currency",
            "ALTER TABLE accounts ADD COLUMN currency text",
            LockLevel::AccessExclusive,
            "public.accounts",
        )],
    );
    let mut engine = engine(&pg, "lock_safety", options).await;
    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
    engine.set_events(zdm::engine::Events::to(sender));
    let holder_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *holder)
        .await
        .expect("pid");
    let run = tokio::spawn(async move {
        let outcome = engine.start(&plan, "sum").await;
        (engine, outcome)
    });

    // Hold the lock for several lock timeouts: an unprotected ALTER would queue the
    // reader behind it for all of that time.
    let held = Duration::from_secs(3);
    tokio::time::sleep(held).await;
    assert!(
        !run.is_finished(),
        "the step cannot finish while the lock is held"
    );
    holder.execute("COMMIT").await.expect("release");

    let (engine, outcome) = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the step finishes once the lock is free")
        .expect("join");
    let outcome = outcome.expect("start succeeds");
    assert!(
        matches!(
            outcome,
            Outcome::Ran {
                status: Status::ReadyToContract,
                ..
            }
        ),
        "{outcome:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let (queries, slowest) = reads.await.expect("reader");

    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM zdm.steps")
        .fetch_one(&pool)
        .await
        .expect("recorded");
    let column: Option<String> = sqlx::query_scalar(
        "SELECT data_type::text FROM information_schema.columns \
         WHERE table_name = 'accounts' AND column_name = 'currency'",
    )
    .fetch_optional(&pool)
    .await
    .expect("catalog");
    assert_eq!(column.as_deref(), Some("text"));
    // A reader waits at most one lock_timeout behind a queued try (plus scheduling noise
    // on a busy machine), never the whole time the lock was held.
    let bound = lock_timeout + Duration::from_millis(800);
    assert!(
        slowest < bound,
        "a reader waited {slowest:?} (lock_timeout {lock_timeout:?}, lock held {held:?})"
    );
    // 3 s held, retries every 50..400 ms after 200 ms waits: many tries.
    assert!(
        attempts >= 4,
        "only {attempts} tries while the lock was held"
    );
    // Every wait was reported, naming the session in the way.
    let mut waits = 0;
    while let Ok(event) = events.try_recv() {
        if let zdm::engine::Event::LockWait { blocked_by, .. } = event {
            waits += 1;
            assert!(
                blocked_by.contains(&format!("server process {holder_pid}")),
                "{blocked_by}"
            );
        }
    }
    assert_eq!(waits, attempts - 1);
    assert!(queries >= 20, "the reader ran only {queries} queries");
    engine.close().await.expect("close");
}

#[tokio::test]
async fn a_concurrent_index_build_that_times_out_leaves_no_invalid_index_and_retries() {
    let pg = common::primary();
    let pool = common::database(&pg, "lock_safety_index").await;
    sqlx::raw_sql(
        "CREATE TABLE events (id bigint PRIMARY KEY, kind text NOT NULL);
         INSERT INTO events SELECT g, 'k' || (g % 7) FROM generate_series(1, 5000) AS g;",
    )
    .execute(&pool)
    .await
    .expect("table");

    // An open writing transaction: CREATE INDEX CONCURRENTLY gets its own lock, creates
    // the (still invalid) index, then must wait for this transaction to end.
    let mut writer = pool.acquire().await.expect("writer");
    writer.execute("BEGIN").await.expect("begin");
    writer
        .execute("INSERT INTO events VALUES (0, 'open')")
        .await
        .expect("write");

    let plan = plan(
        "0001_events_kind",
        vec![concurrent(
            Phase::Expand,
            "index events.kind",
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS events_kind ON events (kind)",
            "public.events",
            "events_kind",
        )],
    );
    let mut engine = engine(&pg, "lock_safety_index", quick_options()).await;
    let run = tokio::spawn(async move {
        let outcome = engine.start(&plan, "sum").await;
        (engine, outcome)
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !run.is_finished(),
        "the build waits for the open transaction"
    );
    writer.execute("COMMIT").await.expect("commit");

    let (engine, outcome) = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the build finishes once the transaction ended")
        .expect("join");
    outcome.expect("start succeeds");
    let indexes: Vec<(String, bool)> = sqlx::query_as(
        "SELECT indexrelid::regclass::text, indisvalid FROM pg_index \
         WHERE indrelid = 'events'::regclass AND NOT indisprimary",
    )
    .fetch_all(&pool)
    .await
    .expect("indexes");
    assert_eq!(indexes, vec![("events_kind".to_string(), true)]);
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM zdm.steps")
        .fetch_one(&pool)
        .await
        .expect("recorded");
    assert!(attempts > 1, "the build was retried ({attempts} tries)");
    engine.close().await.expect("close");
}

#[tokio::test]
async fn when_retries_run_out_the_error_names_the_blocking_session() {
    let pg = common::primary();
    let pool = common::database(&pg, "lock_safety_blocker").await;
    sqlx::raw_sql("CREATE TABLE jobs (id bigint PRIMARY KEY)")
        .execute(&pool)
        .await
        .expect("table");
    let mut holder = pool.acquire().await.expect("holder");
    holder
        .execute("SET application_name = 'nightly report'")
        .await
        .expect("name");
    holder.execute("BEGIN").await.expect("begin");
    holder
        .execute("SELECT count(*) FROM jobs")
        .await
        .expect("read");
    let holder_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *holder)
        .await
        .expect("pid");

    let mut options = quick_options();
    options.ddl.max_attempts = 3;
    let plan = plan(
        "0001_jobs_state",
        vec![sql(
            Phase::Expand,
            "add column jobs.state",
            "ALTER TABLE jobs ADD COLUMN state text",
            LockLevel::AccessExclusive,
            "public.jobs",
        )],
    );
    let mut engine = engine(&pg, "lock_safety_blocker", options).await;
    let error = engine
        .start(&plan, "sum")
        .await
        .expect_err("never gets the lock");
    let message = error.to_string();
    assert!(
        matches!(
            error,
            zdm::engine::Error::LockRetriesExhausted { attempts: 3, .. }
        ),
        "{message}"
    );
    assert!(
        message.contains(&format!("blocked by server process {holder_pid}")),
        "{message}"
    );
    assert!(message.contains("\"nightly report\""), "{message}");
    assert!(message.contains("idle in transaction"), "{message}");
    assert!(message.contains("AccessShareLock on jobs"), "{message}");
    holder.execute("ROLLBACK").await.expect("rollback");
    // Recorded as failed; running start again (lock now free) finishes it.
    let outcome = engine.start(&plan, "sum").await.expect("second try");
    assert!(matches!(
        outcome,
        Outcome::Ran {
            status: Status::ReadyToContract,
            ..
        }
    ));
    engine.close().await.expect("close");
}

#[tokio::test]
async fn an_invalid_index_left_by_an_interrupted_build_is_rebuilt_not_skipped() {
    let pg = common::primary();
    let pool = common::database(&pg, "lock_safety_leftover").await;
    sqlx::raw_sql(
        "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);
         INSERT INTO users SELECT g, 'u' || g || '@example.com' FROM generate_series(1, 1000) AS g;
         INSERT INTO users VALUES (0, 'u1@example.com');",
    )
    .execute(&pool)
    .await
    .expect("table");
    // An earlier build failed half-way (here: a duplicate), leaving an INVALID index
    // with the step's name, as a killed run can.
    let failed = sqlx::raw_sql("CREATE UNIQUE INDEX CONCURRENTLY users_email ON users (email)")
        .execute(&pool)
        .await;
    assert!(failed.is_err());
    sqlx::query("DELETE FROM users WHERE id = 0")
        .execute(&pool)
        .await
        .expect("fix the data");

    let plan = plan(
        "0001_users_email_unique",
        vec![concurrent(
            Phase::Expand,
            "unique index users.email",
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email ON users (email)",
            "public.users",
            "users_email",
        )],
    );
    let mut engine = engine(&pg, "lock_safety_leftover", quick_options()).await;
    engine.start(&plan, "sum").await.expect("start");
    let valid: bool = sqlx::query_scalar(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_email'::regclass",
    )
    .fetch_one(&pool)
    .await
    .expect("index");
    assert!(valid, "IF NOT EXISTS must not accept the invalid leftover");
    engine.close().await.expect("close");
}

#[tokio::test]
async fn a_statement_timeout_stops_the_step_instead_of_retrying_it() {
    let pg = common::primary();
    let pool = common::database(&pg, "lock_safety_statement").await;
    let mut options = quick_options();
    options.ddl.statement_timeout = Some(Duration::from_millis(300));
    let plan = plan(
        "0001_slow",
        vec![sql(
            Phase::Expand,
            "a slow statement",
            "SELECT pg_sleep(5)",
            LockLevel::None,
            "public.nothing",
        )],
    );
    let mut engine = engine(&pg, "lock_safety_statement", options).await;
    let error = engine
        .start(&plan, "sum")
        .await
        .expect_err("statement timeout");
    assert!(
        matches!(error, zdm::engine::Error::StepFailed { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("statement timeout"), "{error}");
    let (status, steps): (String, i64) = sqlx::query_as(
        "SELECT (SELECT status FROM zdm.migrations), (SELECT count(*) FROM zdm.steps)",
    )
    .fetch_one(&pool)
    .await
    .expect("state");
    assert_eq!((status.as_str(), steps), ("failed", 0));
    engine.close().await.expect("close");
}
