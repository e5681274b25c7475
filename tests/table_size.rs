//! `zdm.table_sizes` across the runs of one migration, on real PostgreSQL: a backfill
//! stopped and resumed keeps the "before" its run measured first (the table was already
//! partly rewritten when it resumed); after a rollback, the migration started again
//! measures its table again (a new run's "before" is the table as that run finds it).

mod common;
mod engine_support;

use std::time::{Duration, Instant};

use engine_support::{backfill, engine, plan, quick_options};
use sqlx::PgPool;
use zdm::engine::{EngineOptions, Error};

const MIGRATION: &str = "0001_items_qty2";

fn items_plan() -> zdm::plan::Plan {
    plan(
        MIGRATION,
        vec![backfill(
            "\"public\".\"items\"",
            &["id"],
            &[("qty2", "qty * 2")],
            None,
        )],
    )
}

fn options() -> EngineOptions {
    let mut options = quick_options();
    options.batch_size = Some(500);
    // Slow enough to be stopped part way (20,000 rows: five seconds).
    options.backfill.pacing.max_rows_per_second = Some(4000.0);
    options
}

/// The recorded "before" of the items table: its total bytes and when it was measured;
/// and how many rows the migration has in zdm.table_sizes.
async fn before(pool: &PgPool) -> (i64, String, i64) {
    sqlx::query_as(
        "SELECT ((before->>'heap_bytes')::bigint + (before->>'index_bytes')::bigint \
                 + (before->>'toast_bytes')::bigint), measured_before::text, \
                (SELECT count(*) FROM zdm.table_sizes WHERE migration = $1) \
           FROM zdm.table_sizes WHERE migration = $1 AND table_name = 'public.items'",
    )
    .bind(MIGRATION)
    .fetch_one(pool)
    .await
    .expect("the recorded before")
}

async fn total_size(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT pg_total_relation_size('public.items')")
        .fetch_one(pool)
        .await
        .expect("size")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_backfill_keeps_its_before_and_a_new_run_measures_again() {
    let pg = common::primary();
    let pool = common::database(&pg, "table_size").await;
    // No autovacuum on it: the sizes compared below change only by what the test does.
    sqlx::raw_sql(
        "CREATE TABLE items (id bigint PRIMARY KEY, qty integer NOT NULL, qty2 integer)
           WITH (autovacuum_enabled = false);
         INSERT INTO items (id, qty) SELECT g, g % 97 FROM generate_series(1, 20000) AS g;",
    )
    .execute(&pool)
    .await
    .expect("items");
    // Alone: VACUUM cannot run in the implicit transaction of several statements.
    sqlx::raw_sql("VACUUM ANALYZE items")
        .execute(&pool)
        .await
        .expect("vacuum");
    let first_size = total_size(&pool).await;

    // The first run, stopped once a few batches are checkpointed.
    let mut first = engine(&pg, "table_size", options()).await;
    let control = first.control();
    let task = tokio::spawn(async move {
        let outcome = first.start(&items_plan(), "sum").await;
        (outcome, first)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = common::rows_checkpointed(&pool).await;
        if done >= 1500 {
            break;
        }
        assert!(Instant::now() < deadline, "no batch was checkpointed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    control.stop("test stop");
    let (outcome, first) = task.await.expect("join");
    let error = outcome.expect_err("stopped");
    assert!(matches!(error, Error::Stopped { .. }), "{error}");
    first.close().await.expect("close");
    let (measured, at, rows) = before(&pool).await;
    assert_eq!(measured, first_size, "the table before its backfill");
    assert_eq!(rows, 1);
    assert!(
        total_size(&pool).await > first_size,
        "the stopped backfill already rewrote part of the table"
    );

    // Resumed: the same run, the same "before".
    let mut fast = options();
    fast.backfill.pacing.max_rows_per_second = None;
    let mut resumed = engine(&pg, "table_size", fast).await;
    resumed
        .start(&items_plan(), "sum")
        .await
        .expect("resumes to the end");
    assert_eq!(
        before(&pool).await,
        (measured, at.clone(), 1),
        "kept on resume"
    );

    // Rolled back, more rows meanwhile, started again: a new run measures again.
    resumed.rollback(MIGRATION).await.expect("rollback");
    sqlx::raw_sql(
        "INSERT INTO items (id, qty) SELECT g, g % 97 FROM generate_series(20001, 40000) AS g",
    )
    .execute(&pool)
    .await
    .expect("more items");
    let second_size = total_size(&pool).await;
    resumed
        .start(&items_plan(), "sum")
        .await
        .expect("starts again");
    resumed.close().await.expect("close");
    let (again, again_at, rows) = before(&pool).await;
    assert_ne!(again_at, at, "measured again for the new run");
    assert_eq!(again, second_size, "the table as the new run found it");
    assert!(
        again as f64 > measured as f64 * 1.5,
        "{again} against the first run's {measured}"
    );
    assert_eq!(rows, 1);
    let wrong: i64 =
        sqlx::query_scalar("SELECT count(*) FROM items WHERE qty2 IS DISTINCT FROM qty * 2")
            .fetch_one(&pool)
            .await
            .expect("rows");
    assert_eq!(wrong, 0);
}
