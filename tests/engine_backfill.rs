//! Rule 4 on a real PostgreSQL: a backfill killed at any point resumes after its last
//! committed batch, and every row is updated exactly once.

mod common;
mod engine_support;

use std::time::Duration;

use engine_support::{backfill, engine, engine_after_crash, plan, quick_options};
use zdm::engine::{EngineOptions, Outcome, Status};

fn small_batches(size: u64) -> EngineOptions {
    EngineOptions {
        batch_size: Some(size),
        ..quick_options()
    }
}

#[tokio::test]
async fn a_killed_backfill_resumes_after_its_last_batch_and_updates_every_row_once() {
    let pg = common::primary();
    let pool = common::database(&pg, "backfill_crash").await;
    sqlx::raw_sql(
        "CREATE TABLE orders (id bigint PRIMARY KEY, amount integer NOT NULL, \
                              touched integer NOT NULL DEFAULT 0, total integer);
         INSERT INTO orders (id, amount) SELECT g * 3, g % 1000 FROM generate_series(1, 20000) AS g;",
    )
    .execute(&pool)
    .await
    .expect("orders");
    // `touched + 1` shows any row updated twice (or never).
    let plan = plan(
        "0001_orders_total",
        vec![backfill(
            "\"public\".\"orders\"",
            &["id"],
            &[("touched", "touched + 1"), ("total", "amount * 2")],
            None,
        )],
    );

    let mut engine = engine(&pg, "backfill_crash", small_batches(100)).await;
    let first_plan = plan.clone();
    let run = tokio::spawn(async move { engine.start(&first_plan, "sum").await });
    // Let some batches commit, then kill the run wherever it is (as kill -9 would: its
    // connections close, the server rolls back any open transaction).
    let mut committed = 0;
    for _ in 0..1000 {
        committed = sqlx::query_scalar::<_, i64>(
            "SELECT coalesce((SELECT sum(batches)::bigint FROM zdm.backfill_ranges), 0)",
        )
        .fetch_one(&pool)
        .await
        .unwrap_or(0);
        if committed >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        committed >= 20,
        "the backfill made progress before the kill"
    );
    run.abort();
    assert!(run.await.expect_err("killed").is_cancelled());

    // What committed is exactly what the checkpoints (one per key range) say; nothing
    // more, nothing twice. (Read in one snapshot: a commit in flight at the kill lands on
    // both or neither.)
    let (checkpoint_rows, once, twice, status): (i64, i64, i64, String) = sqlx::query_as(
        "SELECT (SELECT sum(rows_updated)::bigint FROM zdm.backfill_ranges), \
                (SELECT count(*) FROM orders WHERE touched = 1 AND total = amount * 2), \
                (SELECT count(*) FROM orders WHERE touched > 1), \
                (SELECT status FROM zdm.migrations)",
    )
    .fetch_one(&pool)
    .await
    .expect("state after the kill");
    assert_eq!(status, "backfilling");
    assert!(
        checkpoint_rows > 0 && checkpoint_rows < 20000,
        "{checkpoint_rows}"
    );
    assert_eq!(once, checkpoint_rows);
    assert_eq!(twice, 0);

    // Run again: it resumes after the last committed batch.
    let mut engine = engine_after_crash(&pg, "backfill_crash", small_batches(100)).await;
    let outcome = engine.start(&plan, "sum").await.expect("resumed");
    assert_eq!(
        outcome,
        Outcome::Ran {
            migration: plan.migration.clone(),
            status: Status::ReadyToContract,
            steps_run: 1
        }
    );
    let (rows, batches, once, total, ranges): (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT rows_updated FROM zdm.backfill_progress), \
                (SELECT batches FROM zdm.backfill_progress), \
                (SELECT count(*) FROM orders WHERE touched = 1 AND total = amount * 2), \
                (SELECT count(*) FROM orders), \
                (SELECT count(*) FROM zdm.backfill_ranges)",
    )
    .fetch_one(&pool)
    .await
    .expect("state after the rerun");
    assert_eq!((rows, once, total), (20000, 20000, 20000));
    // Batches of 100 keys, cut at the key ranges' ends (at most one short batch a range).
    assert!(
        (200..=200 + ranges).contains(&batches),
        "{batches} batches in {ranges} ranges"
    );
    engine.close().await.expect("close");
}

#[tokio::test]
async fn composite_text_keys_and_a_predicate_are_batched_exactly() {
    let pg = common::primary();
    let pool = common::database(&pg, "backfill_keys").await;
    // Keys with quotes and spaces survive the checkpoint's JSON round trip; rows that
    // already have a value are skipped by the predicate.
    sqlx::raw_sql(
        r#"CREATE TABLE "Line Items" (tenant text NOT NULL, n integer NOT NULL,
                                   qty integer NOT NULL, "Qty Copy" integer,
                                   PRIMARY KEY (tenant, n));
           INSERT INTO "Line Items" (tenant, n, qty)
             SELECT t, g, g FROM unnest(ARRAY['a', 'o''brien', 'x"y', 'z z']) AS t,
                                 generate_series(1, 250) AS g;
           UPDATE "Line Items" SET "Qty Copy" = -1 WHERE n % 10 = 0;"#,
    )
    .execute(&pool)
    .await
    .expect("table");
    let plan = plan(
        "0001_line_items_copy",
        vec![backfill(
            "\"public\".\"Line Items\"",
            &["tenant", "n"],
            &[("Qty Copy", "qty")],
            Some("\"Qty Copy\" IS NULL"),
        )],
    );
    let mut engine = engine(&pg, "backfill_keys", small_batches(7)).await;
    engine.start(&plan, "sum").await.expect("start");
    let (copied, skipped, missing, rows, batches): (i64, i64, i64, i64, i64) = sqlx::query_as(
        r#"SELECT (SELECT count(*) FROM "Line Items" WHERE "Qty Copy" = qty),
                  (SELECT count(*) FROM "Line Items" WHERE "Qty Copy" = -1),
                  (SELECT count(*) FROM "Line Items" WHERE "Qty Copy" IS NULL),
                  (SELECT rows_updated FROM zdm.backfill_progress),
                  (SELECT batches FROM zdm.backfill_progress)"#,
    )
    .fetch_one(&pool)
    .await
    .expect("result");
    assert_eq!((copied, skipped, missing), (900, 100, 0));
    assert_eq!(rows, 900);
    // 1000 keys in batches of 7, cut at the key ranges' ends.
    let ranges: i64 = sqlx::query_scalar("SELECT count(*) FROM zdm.backfill_ranges")
        .fetch_one(&pool)
        .await
        .expect("ranges");
    assert!(ranges >= 1);
    assert!(
        (143..=143 + ranges).contains(&batches),
        "{batches} batches in {ranges} ranges"
    );
    engine.close().await.expect("close");
}

/// Pauses after every batch so that a test can act between batches.
struct Slow;

impl zdm::engine::backfill::Pacing for Slow {
    fn batch_size(&self) -> u64 {
        10
    }
    fn after_batch(&mut self, _report: &zdm::engine::backfill::BatchReport) -> Duration {
        Duration::from_millis(300)
    }
}

#[tokio::test]
async fn a_batch_whose_checkpoint_moved_under_it_changes_nothing() {
    use sqlx::Connection;
    use zdm::engine::{backfill as engine_backfill, identity::Identity, state};
    use zdm::plan::{Phase, StepAction};

    let pg = common::primary();
    let pool = common::database(&pg, "backfill_fenced").await;
    sqlx::raw_sql(
        "CREATE TABLE t (id integer PRIMARY KEY, hits integer NOT NULL DEFAULT 0);
         INSERT INTO t (id) SELECT generate_series(1, 100);",
    )
    .execute(&pool)
    .await
    .expect("table");
    let step = backfill("\"public\".\"t\"", &["id"], &[("hits", "hits + 1")], None);
    let plan = plan("0001_t_hits", vec![step.clone()]);
    let StepAction::Backfill(spec) = &step.action else {
        unreachable!("a backfill step")
    };
    let mut conn =
        sqlx::PgConnection::connect_with(&pg.primary().connect_options("backfill_fenced"))
            .await
            .expect("connect");
    state::ensure(&mut conn).await.expect("state");
    state::insert(&mut conn, &plan, "sum", &Identity::current())
        .await
        .expect("record");
    state::set_status(
        &mut conn,
        "0001_t_hits",
        Status::Expanding,
        Status::Backfilling,
    )
    .await
    .expect("backfilling");
    let key = state::StepKey {
        migration: "0001_t_hits",
        phase: Phase::Backfill,
        position: 0,
        description: "backfill t",
    };
    // Another run (which should never exist) advances the checkpoint during a pause.
    let meddler = {
        let pool = pool.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(450)).await;
            sqlx::query("UPDATE zdm.backfill_ranges SET batches = batches + 1")
                .execute(&pool)
                .await
                .expect("meddle");
        })
    };
    let error = engine_backfill::run(
        &mut conn,
        None,
        &key,
        "backfill t",
        spec,
        &quick_options().ddl,
        &mut Slow,
        &zdm::engine::Events::none(),
        &mut engine_backfill::Steering::default(),
    )
    .await
    .expect_err("the moved checkpoint is noticed");
    meddler.await.expect("meddler");
    assert!(error.to_string().contains("checkpoint moved"), "{error}");
    let (done, twice): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE hits = 1), count(*) FILTER (WHERE hits > 1) FROM t",
    )
    .fetch_one(&pool)
    .await
    .expect("rows");
    assert_eq!(twice, 0);
    assert!(done > 0 && done % 10 == 0 && done < 100, "{done}");
}
