//! Kill -9 of the real binary at several points of `zdm start` (in expand, between steps,
//! in the backfill of a 200k-row table, during a concurrent index build) and of
//! `zdm complete`, with the first sample migrations as the planner plans them; each
//! command is then run again to its end. The final catalog, `pg_dump --schema-only` and
//! every table's data equal an uninterrupted run on a copy of the same database.

mod plan_support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use plan_support::{catalog, common, schema_dump_without_zdm as schema_dump};
use sqlx::{Connection, PgPool};
use zdm::localpg::LocalPg;

/// The samples run here: add_column with a backfill of every order, set_not_null,
/// change_type, create_index + drop_index (concurrently, on the 200k orders), split_table.
const SAMPLES: [&str; 5] = [
    "0001_orders_add_status",
    "0002_customers_phone_not_null",
    "0003_products_price_cents_numeric",
    "0004_orders_customer_placed_index",
    "0005_customers_split_marketing",
];

/// Where a run is killed: once this many steps of `phase` are recorded, or once the
/// backfill committed this many batches.
#[derive(Debug, Clone, Copy)]
enum Point {
    Steps(&'static str, i64),
    Batches(i64),
}

const START_KILLS: [Point; 6] = [
    Point::Steps("expand", 1),
    Point::Steps("expand", 3),
    Point::Batches(5),
    Point::Batches(60),
    Point::Batches(150),
    Point::Steps("backfill", 1),
];
const COMPLETE_KILLS: [Point; 2] = [Point::Steps("contract", 1), Point::Steps("contract", 2)];

/// zdm on `database` with the test config (no host-CPU throttle: a busy CI machine must
/// not hold the backfill short of a kill point), stdout and stderr piped.
fn zdm(pg: &LocalPg, database: &str, dir: &Path, args: &[&str]) -> Command {
    let mut command = common::zdm_command(pg, &pg.primary().url(database), dir, args);
    if args.first() == Some(&"complete") {
        // This test is about resuming contract after kill -9; the gates have their own.
        command.args(["--window", "0"]).args(
            zdm::gates::registry::names()
                .into_iter()
                .flat_map(|gate| ["--override-gate", gate]),
        );
    }
    for name in common::DATABASE_ENV {
        command.env_remove(name);
    }
    command
        .env("ZDM_LOG_FILE", pg.root().join(format!("{database}.log")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs a command to its end (a killed run's lock is released by then: see `wait_unlocked`).
fn run_to_end(pg: &LocalPg, database: &str, dir: &Path, args: &[&str]) -> Output {
    let output = zdm(pg, database, dir, args).output().expect("run zdm");
    assert!(
        output.status.success(),
        "zdm {args:?} on {database}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Waits until no zdm holds the run lock (the server releases a killed session's lock once
/// it sees the connection closed).
async fn wait_unlocked(pool: &PgPool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut conn = pool.acquire().await.expect("connection");
    loop {
        let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(8021101, 1)") // zdm's run lock: 0x7a646d, 1
            .fetch_one(&mut *conn)
            .await
            .expect("try lock");
        if free {
            sqlx::query("SELECT pg_advisory_unlock(8021101, 1)")
                .execute(&mut *conn)
                .await
                .expect("unlock");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the killed run's lock stays held"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn reached(pool: &PgPool, migration: &str, point: Point) -> bool {
    let state: bool = sqlx::query_scalar(
        "SELECT to_regclass('zdm.steps') IS NOT NULL AND to_regclass('zdm.backfill_progress') IS NOT NULL",
    )
    .fetch_one(pool)
    .await
    .expect("state tables");
    if !state {
        return false;
    }
    let (sql, phase, at_least) = match point {
        Point::Steps(phase, n) => (
            "SELECT count(*) FROM zdm.steps WHERE migration = $1 AND phase = $2",
            phase,
            n,
        ),
        Point::Batches(n) => (
            "SELECT coalesce(sum(batches), 0)::bigint FROM zdm.backfill_progress WHERE migration = $1 AND phase = $2",
            "backfill",
            n,
        ),
    };
    let count: i64 = sqlx::query_scalar(sql)
        .bind(migration)
        .bind(phase)
        .fetch_one(pool)
        .await
        .expect("progress");
    count >= at_least
}

/// Runs `args`, killing it with SIGKILL at each point in turn (a run that finishes before
/// a point is reached is not killed), then runs it to its end. Returns how many runs
/// were killed.
async fn killed_then_finished(
    pg: &LocalPg,
    pool: &PgPool,
    dir: &Path,
    migration: &str,
    args: &[&str],
    points: &[Point],
) -> usize {
    let mut kills = 0;
    for &point in points {
        let mut child = zdm(pg, "killed", dir, args).spawn().expect("spawn zdm");
        let deadline = Instant::now() + Duration::from_secs(120);
        let exited = loop {
            if child.try_wait().expect("poll").is_some() {
                break true;
            }
            if reached(pool, migration, point).await {
                break false;
            }
            assert!(
                Instant::now() < deadline,
                "{migration}: {point:?} never reached"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        if !exited && child.try_wait().expect("poll").is_none() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .expect("kill -9");
            kills += 1;
            eprintln!("{migration}: killed {args:?} at {point:?}");
        }
        let output = child.wait_with_output().expect("wait");
        if !output.status.success() && output.status.code().is_some() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("another zdm is already running"),
                "{migration}: {args:?} failed on its own: {stderr}"
            );
        }
        wait_unlocked(pool).await;
    }
    run_to_end(pg, "killed", dir, args);
    kills
}

/// Every table of `public` with a digest of its rows, and zdm's record of each migration.
async fn data(pool: &PgPool) -> Vec<(String, String)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("tables");
    let mut out = Vec::new();
    for table in tables {
        let digest: String = sqlx::query_scalar(&format!(
            "SELECT count(*)::text || ' ' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) \
             FROM public.{} t",
            zdm::db::quote_ident(&table)
        ))
        .fetch_one(pool)
        .await
        .expect("digest");
        out.push((table, digest));
    }
    let statuses: Vec<(String, String)> =
        sqlx::query_as("SELECT name, status FROM zdm.migrations ORDER BY name")
            .fetch_all(pool)
            .await
            .expect("statuses");
    out.extend(statuses);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_migrations_killed_at_many_points_end_like_an_uninterrupted_run() {
    let pg = common::primary();
    // One database with the demo schema and 200k extra orders, copied before any migration
    // so that both runs start from the same rows.
    {
        let pool = common::database(&pg, "reference").await;
        let scale = zdm::demo::Scale {
            customers: 1000,
            products: 50,
            orders: 1000,
        };
        zdm::demo::schema::load(&pool, scale, |_| {})
            .await
            .expect("demo schema");
        sqlx::raw_sql(
            "INSERT INTO orders (customer_id, total_cents, shipped_at, placed_at)
             SELECT 1 + g % 1000, g, CASE WHEN g % 3 = 0 THEN now() END, now()
             FROM generate_series(1, 200000) AS g;
             ANALYZE;",
        )
        .execute(&pool)
        .await
        .expect("200k orders");
        pool.close().await;
        let mut admin = pg.primary().connect("postgres").await.expect("admin");
        // A closed pool's backends may take a moment to go away.
        let deadline = Instant::now() + Duration::from_secs(15);
        while let Err(error) = sqlx::query("CREATE DATABASE killed TEMPLATE reference")
            .execute(&mut admin)
            .await
        {
            if Instant::now() > deadline {
                let who: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
                    "SELECT application_name, state, backend_type FROM pg_stat_activity WHERE datname = 'reference'",
                )
                .fetch_all(&mut admin)
                .await
                .unwrap_or_default();
                panic!("copy the database: {error}; connected: {who:?}");
            }
            // A closed sqlx pool can leave an idle session behind for a while (seen in CI):
            // nothing of this test uses the template any more, so end such sessions.
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = 'reference' AND pid <> pg_backend_pid()",
            )
            .execute(&mut admin)
            .await
            .expect("end the template's sessions");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        admin.close().await.expect("close");
    }
    let reference = sqlx::PgPool::connect_with(pg.primary().connect_options("reference"))
        .await
        .expect("reference pool");
    let killed = sqlx::PgPool::connect_with(pg.primary().connect_options("killed"))
        .await
        .expect("killed pool");

    let dir = tempfile::tempdir().expect("tempdir");
    let samples = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/sample-migrations"));
    for name in SAMPLES {
        let file = format!("{name}.toml");
        std::fs::copy(samples.join(&file), dir.path().join(&file)).expect("copy sample");
    }

    let mut kills = 0;
    let mut backfill_kills = 0;
    for name in SAMPLES {
        run_to_end(&pg, "reference", dir.path(), &["start", name]);
        run_to_end(
            &pg,
            "reference",
            dir.path(),
            &["complete", name, "--confirm-contract", name],
        );

        let start_kills = killed_then_finished(
            &pg,
            &killed,
            dir.path(),
            name,
            &["start", name],
            &START_KILLS,
        )
        .await;
        if name == "0001_orders_add_status" {
            // The 200k-row backfill is long enough to be killed in the middle.
            let rows: i64 = sqlx::query_scalar(
                "SELECT rows_updated FROM zdm.backfill_progress WHERE migration = $1",
            )
            .bind(name)
            .fetch_one(&killed)
            .await
            .expect("progress");
            assert!(rows >= 200_000, "the backfill reached every order: {rows}");
            backfill_kills = start_kills;
        }
        let complete_kills = killed_then_finished(
            &pg,
            &killed,
            dir.path(),
            name,
            &["complete", name, "--confirm-contract", name],
            &COMPLETE_KILLS,
        )
        .await;
        kills += start_kills + complete_kills;
    }
    eprintln!("killed {kills} runs in all");
    assert!(
        backfill_kills >= 3,
        "0001's start was killed in expand and in the backfill ({backfill_kills} kills)"
    );
    assert!(kills >= 8, "runs were killed at many points ({kills})");

    assert_eq!(catalog(&reference).await, catalog(&killed).await);
    assert_eq!(schema_dump(&pg, "reference"), schema_dump(&pg, "killed"));
    let (expected, got) = (data(&reference).await, data(&killed).await);
    assert_eq!(expected, got);
    assert!(expected
        .iter()
        .any(|(name, status)| name == "0005_customers_split_marketing" && status == "complete"));
}
