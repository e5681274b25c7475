//! The sync trigger skips its work for zdm's own backfill rows only (docs/engine.md,
//! "Backfill"): a batch sets a transaction-local flag naming its table and the columns it
//! assigns, and the trigger's WHEN condition skips the function for that batch's own
//! UPDATE. On a real PostgreSQL through `zdm start`'s command, with the sync function's
//! calls counted (`track_functions`):
//! * a plain add_column: the function never runs for the backfill's rows, every row is
//!   right, and an application's write in its own transaction is still synced;
//! * a user trigger that, inside a batch, updates a row the backfill already passed:
//!   that nested write is synced (its trigger depth is not 0);
//! * a user BEFORE UPDATE trigger that changes a column `up` reads: the flag is not set,
//!   the sync function runs for every row and sees the user trigger's value;
//! * two operations on one table (two backfills, each assigning one of the trigger's two
//!   columns): the first batch does not match the trigger's rules, so it runs in full.

mod plan_support;

use std::time::{Duration, Instant};

use plan_support::{common, fetch_one};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use zdm::app;
use zdm::config::{Config, Overrides};
use zdm::localpg::LocalPg;

const ROWS: i64 = 20_000;

/// Small batches (many of them) and no throttle input that a busy test machine trips.
fn config() -> String {
    format!(
        "[backfill]\nstart_batch_rows = 1000\nmax_batch_rows = 1000\n\n{}\
         max_replica_lag = \"none\"\nmax_lock_waiters = \"none\"\n",
        common::THROTTLE_OFF
    )
}

const FAHRENHEIT: &str = r#"
[[operations]]
op = "add_column"
table = "r"
column = { name = "fahrenheit", type = "numeric(7,2)" }
up = "celsius * 9 / 5 + 32"
"#;

/// Calls of the sync function of `r`, counted by every other session of the database,
/// once each has ended (a backend flushes its function statistics as it exits; `pool`
/// has one connection, this one).
async fn sync_calls(pool: &PgPool) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let others: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(pool)
        .await
        .expect("sessions");
        if others == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{others} sessions still open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sqlx::raw_sql("SELECT pg_stat_clear_snapshot()")
        .execute(pool)
        .await
        .expect("fresh statistics");
    sqlx::query_scalar::<_, i64>(
        "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_user_functions \
         WHERE funcname = '_zdm_sync_r'",
    )
    .fetch_one(pool)
    .await
    .expect("function statistics")
}

/// An application's statement, on a connection of its own that then ends.
async fn application(pg: &LocalPg, database: &str, sql: &str) {
    let mut conn = pg.primary().connect(database).await.expect("connect");
    sqlx::raw_sql(sql).execute(&mut conn).await.expect("write");
    sqlx::Connection::close(conn).await.expect("close");
}

/// A database `name` with `r` (ROWS rows) and function statistics on, the migration file
/// written, `setup` run; then `zdm start` of `0001_f` (the file `migration`).
async fn started(pg: &LocalPg, name: &str, setup: &str, migration: &str) -> PgPool {
    let pool = common::database(pg, name).await;
    sqlx::raw_sql(&format!(
        "ALTER DATABASE {name} SET track_functions = 'pl';
         CREATE TABLE r (id bigint PRIMARY KEY, celsius numeric(6,2) NOT NULL, note text);
         INSERT INTO r SELECT g, (g % 100) - 20, NULL FROM generate_series(1, {ROWS}) g;
         {setup}"
    ))
    .execute(&pool)
    .await
    .expect("setup");
    // New connections read the database's track_functions.
    pool.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(pg.primary().connect_options(name))
        .await
        .expect("connect");
    let dir = tempfile::tempdir().expect("tempdir");
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).expect("dir");
    std::fs::write(migrations.join("0001_f.toml"), migration).expect("migration");
    let config_file = dir.path().join("zdm.toml");
    std::fs::write(&config_file, config()).expect("config");
    let config = Config::load(&Overrides {
        config_file: Some(config_file),
        database_url: Some(pg.primary().url(name)),
        migrations_dir: Some(migrations),
    })
    .expect("config");
    let report = app::start::run(&config, Some("0001_f"))
        .await
        .expect("start");
    assert!(report.contains("ready to contract"), "{report}");
    pool
}

#[tokio::test]
async fn the_sync_trigger_skips_only_the_backfills_own_rows() {
    let pg = common::primary();
    // A plain add_column: no sync call for the backfill's 20,000 rows.
    let pool = started(&pg, "skip_plain", "", FAHRENHEIT).await;
    assert_eq!(
        sync_calls(&pool).await,
        0,
        "the batches skipped the function"
    );
    assert_eq!(
        fetch_one(
            &pool,
            "SELECT count(*)::text FROM r WHERE fahrenheit IS DISTINCT FROM celsius * 9 / 5 + 32"
        )
        .await,
        "0"
    );
    // An application's write (its own transaction, no flag) is synced.
    application(&pg, "skip_plain", "UPDATE r SET celsius = 100 WHERE id = 3").await;
    assert_eq!(sync_calls(&pool).await, 1);
    assert_eq!(
        fetch_one(&pool, "SELECT fahrenheit::text FROM r WHERE id = 3").await,
        "212.00"
    );
    pool.close().await;

    // A user AFTER trigger writing, from inside a batch, a row the backfill passed.
    let pool = started(
        &pg,
        "skip_nested",
        "CREATE FUNCTION touch_back() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.id = 15000 AND pg_trigger_depth() = 1 THEN
             UPDATE r SET celsius = 100 WHERE id = 5;
           END IF;
           RETURN NULL;
         END $$;
         CREATE TRIGGER touch_back AFTER UPDATE ON r FOR EACH ROW EXECUTE FUNCTION touch_back();",
        FAHRENHEIT,
    )
    .await;
    assert_eq!(
        fetch_one(
            &pool,
            "SELECT celsius::text || ' ' || fahrenheit::text FROM r WHERE id = 5"
        )
        .await,
        "100.00 212.00",
        "the nested write was synced"
    );
    assert_eq!(
        fetch_one(
            &pool,
            "SELECT count(*)::text FROM r WHERE fahrenheit IS DISTINCT FROM celsius * 9 / 5 + 32"
        )
        .await,
        "0"
    );
    pool.close().await;

    // A user BEFORE UPDATE trigger changing what `up` reads: the sync function runs for
    // every row, after it (names starting with a capital fire before `_zdm_sync_r`).
    let pool = started(
        &pg,
        "skip_before",
        "CREATE FUNCTION warm() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.note IS NULL THEN NEW.celsius := NEW.celsius + 1; NEW.note := 'warmed'; END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER \"Warm\" BEFORE UPDATE ON r FOR EACH ROW EXECUTE FUNCTION warm();",
        FAHRENHEIT,
    )
    .await;
    assert!(
        sync_calls(&pool).await >= ROWS,
        "the function ran for every row"
    );
    assert_eq!(
        fetch_one(
            &pool,
            "SELECT count(*)::text FROM r WHERE fahrenheit IS DISTINCT FROM celsius * 9 / 5 + 32 \
             OR celsius <> (id % 100) - 19"
        )
        .await,
        "0"
    );
    pool.close().await;

    // Two operations on one table: each backfill assigns one of the trigger's two columns.
    let pool = started(
        &pg,
        "skip_two",
        "",
        &format!(
            "{FAHRENHEIT}
[[operations]]
op = \"add_column\"
table = \"r\"
column = {{ name = \"kelvin\", type = \"numeric(7,2)\" }}
up = \"celsius + 273.15\"
"
        ),
    )
    .await;
    // The first backfill fires the function in full, which fills kelvin too: the second
    // finds no NULL left.
    assert!(
        sync_calls(&pool).await >= ROWS,
        "the first backfill does not match the trigger's rules"
    );
    assert_eq!(
        fetch_one(
            &pool,
            "SELECT count(*)::text FROM r WHERE fahrenheit IS DISTINCT FROM celsius * 9 / 5 + 32 \
             OR kelvin IS DISTINCT FROM celsius + 273.15"
        )
        .await,
        "0"
    );
    pool.close().await;
}
