//! Kill -9 of the real zdm binary in the middle of `zdm complete`, then run it again:
//! it resumes from the last completed step, the backfill updates every row exactly once,
//! and the end state equals an uninterrupted run.

mod common;
mod engine_support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use engine_support::{backfill, concurrent, engine, plan, quick_options, sql};
use zdm::localpg::LocalPg;
use zdm::plan::{LockLevel, Phase, Plan, Step};

fn contract_plan() -> Plan {
    let mut fill = backfill(
        "\"public\".\"parcels\"",
        &["id"],
        &[("weight_g", "weight_kg * 1000"), ("touched", "touched + 1")],
        None,
    );
    fill.phase = Phase::Contract;
    let steps: Vec<Step> = vec![
        sql(
            Phase::Expand,
            "add column parcels.weight_g",
            "ALTER TABLE parcels ADD COLUMN weight_g integer",
            LockLevel::AccessExclusive,
            "public.parcels",
        ),
        sql(
            Phase::Contract,
            "add column parcels.touched",
            "ALTER TABLE parcels ADD COLUMN touched integer NOT NULL DEFAULT 0",
            LockLevel::AccessExclusive,
            "public.parcels",
        ),
        fill,
        concurrent(
            Phase::Contract,
            "index parcels.weight_g",
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS parcels_weight_g ON parcels (weight_g)",
            "public.parcels",
            "parcels_weight_g",
        ),
        sql(
            Phase::Contract,
            "drop column parcels.weight_kg",
            "ALTER TABLE parcels DROP COLUMN weight_kg",
            LockLevel::AccessExclusive,
            "public.parcels",
        ),
    ];
    plan("0001_parcels_grams", steps)
}

async fn prepare(pg: &LocalPg, database: &str) -> sqlx::PgPool {
    let pool = common::database(pg, database).await;
    sqlx::raw_sql(
        "CREATE TABLE parcels (id bigint PRIMARY KEY, weight_kg integer NOT NULL);
         INSERT INTO parcels SELECT g, g % 50 FROM generate_series(1, 30000) AS g;",
    )
    .execute(&pool)
    .await
    .expect("parcels");
    let mut engine = engine(pg, database, quick_options()).await;
    engine.start(&contract_plan(), "sum").await.expect("start");
    engine.close().await.expect("close");
    pool
}

fn complete(pg: &LocalPg, database: &str) -> Command {
    let mut command = Command::new(common::zdm_binary());
    command
        .args([
            "complete",
            "0001_parcels_grams",
            "--confirm-contract",
            "0001_parcels_grams",
            // The plan is built in the test, without a migration file to read [[verify]]
            // from: that gate says unknown, and is overridden.
            "--window",
            "0",
            "--override-gate",
            "explain",
        ])
        // An existing directory without the file: a missing one is refused at once.
        .arg("--dir")
        .arg({
            let dir = pg.root().join("no-migration-files");
            std::fs::create_dir_all(&dir).expect("empty migrations dir");
            dir
        })
        .args(["--database-url", &pg.primary().url(database)])
        .env_remove("DATABASE_URL")
        .env("ZDM_LOG_FILE", pg.root().join(format!("{database}.log")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `zdm complete` to its end, waiting while a killed run's lock is released.
fn complete_until_done(pg: &LocalPg, database: &str) -> Output {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = complete(pg, database).output().expect("run zdm");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() || !stderr.contains("another zdm is already running") {
            return output;
        }
        assert!(
            Instant::now() < deadline,
            "the killed run's lock was never released"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The end state: catalog shape, data, zdm's record of it.
async fn end_state(pool: &sqlx::PgPool) -> (Vec<String>, i64, i64, bool, String) {
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text || ' ' || data_type || ' ' || is_nullable \
         FROM information_schema.columns WHERE table_name = 'parcels' ORDER BY ordinal_position",
    )
    .fetch_all(pool)
    .await
    .expect("columns");
    let (right, once): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE weight_g IS NOT NULL AND weight_g = (id % 50) * 1000), \
                count(*) FILTER (WHERE touched = 1) FROM parcels",
    )
    .fetch_one(pool)
    .await
    .expect("data");
    let valid: bool = sqlx::query_scalar(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'parcels_weight_g'::regclass",
    )
    .fetch_one(pool)
    .await
    .expect("index");
    let status: String = sqlx::query_scalar("SELECT status FROM zdm.migrations")
        .fetch_one(pool)
        .await
        .expect("status");
    (columns, right, once, valid, status)
}

#[tokio::test]
async fn complete_killed_with_sigkill_resumes_to_the_same_end_as_an_uninterrupted_run() {
    let pg = common::primary();

    // The reference: one uninterrupted run.
    let reference_pool = prepare(&pg, "kill_reference").await;
    let output = complete_until_done(&pg, "kill_reference");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reference = end_state(&reference_pool).await;
    assert_eq!(reference.1, 30000);
    assert_eq!(reference.2, 30000);
    assert_eq!(reference.4, "complete");

    // Killed at several points: during the backfill (after a few batches) and right
    // after it starts, then run to the end.
    let pool = prepare(&pg, "kill_resumed").await;
    let mut kills = 0;
    for wait_for_batches in [3_i64, 12, 25] {
        let mut child = complete(&pg, "kill_resumed").spawn().expect("spawn zdm");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let batches: i64 = sqlx::query_scalar(
                "SELECT coalesce((SELECT batches FROM zdm.backfill_progress), 0)",
            )
            .fetch_one(&pool)
            .await
            .expect("progress");
            if batches >= wait_for_batches || child.try_wait().expect("poll").is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "no backfill progress");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if child.try_wait().expect("poll").is_none() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .expect("kill -9");
            kills += 1;
        }
        let _ = child.wait();
        // Whatever committed is exactly what the checkpoint says.
        let (rows, once, twice): (i64, i64, i64) = sqlx::query_as(
            "SELECT coalesce((SELECT rows_updated FROM zdm.backfill_progress), 0), \
                    count(*) FILTER (WHERE touched = 1), count(*) FILTER (WHERE touched > 1) \
             FROM parcels",
        )
        .fetch_one(&pool)
        .await
        .expect("after the kill");
        assert_eq!((once, twice), (rows, 0));
    }
    eprintln!("killed {kills} runs mid-way");
    assert!(kills >= 1, "at least one run was killed mid-way");
    let output = complete_until_done(&pg, "kill_resumed");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(end_state(&pool).await, reference);

    // And once more: nothing to do.
    let output = complete_until_done(&pg, "kill_resumed");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("nothing to do"));
}
