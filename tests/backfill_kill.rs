//! The real zdm binary backfilling 120,000 rows with adaptive batches and its throttle on:
//! killed with SIGKILL at random moments several times (20 times with three parallel
//! workers), then run to the end, every row is updated exactly once with the expected
//! value. SIGINT stops it cleanly after a batch, with exit code 3 and a message saying how
//! to resume; JSON lines on stdout.

mod common;
mod engine_support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use engine_support::{backfill, engine, plan, quick_options, sql};
use rand::Rng;
use zdm::localpg::LocalPg;
use zdm::plan::{LockLevel, Phase, Plan};

const ROWS: i64 = 120_000;
const NAME: &str = "0001_accounts_cents";

/// The backfill runs in contract (run by `zdm complete`) because `zdm start` needs the
/// planner, which is wired in on its own branch.
fn contract_plan() -> Plan {
    let mut fill = backfill(
        "\"public\".\"accounts\"",
        &["id"],
        &[
            ("cents", "balance * 100 + id % 7"),
            ("touched", "touched + 1"),
        ],
        None,
    );
    fill.phase = Phase::Contract;
    plan(
        NAME,
        vec![
            sql(
                Phase::Expand,
                "add column accounts.cents",
                "ALTER TABLE accounts ADD COLUMN cents bigint",
                LockLevel::AccessExclusive,
                "public.accounts",
            ),
            fill,
        ],
    )
}

/// The test's table, expanded; `backfill` is added to the `[backfill]` table of its config.
async fn prepare(pg: &LocalPg, database: &str, backfill: &str) -> sqlx::PgPool {
    let pool = common::database(pg, database).await;
    sqlx::raw_sql(&format!(
        "CREATE TABLE accounts (id bigint PRIMARY KEY, balance integer NOT NULL, \
                                touched integer NOT NULL DEFAULT 0);
         INSERT INTO accounts (id, balance) SELECT g * 2, g % 1000 FROM generate_series(1, {ROWS}) g;
         ANALYZE accounts;"
    ))
    .execute(&pool)
    .await
    .expect("accounts");
    let mut engine = engine(pg, database, quick_options()).await;
    engine.start(&contract_plan(), "sum").await.expect("start");
    engine.close().await.expect("close");
    // Adaptive batches (no fixed size), slowed by a rows/s ceiling so that the kills land
    // mid-way; the throttle watches lag and lock waiters only, so that a busy test
    // machine's CPU does not hold the run.
    std::fs::write(
        pg.root().join(format!("{database}.toml")),
        format!(
            "[backfill]\nbatch_target = \"100ms\"\n{backfill}\n{}",
            common::THROTTLE_OFF
        ),
    )
    .expect("config");
    pool
}

/// A migrations directory without files (the test's plan has none).
fn empty_dir(pg: &LocalPg) -> std::path::PathBuf {
    let dir = pg.root().join("no-migration-files");
    std::fs::create_dir_all(&dir).expect("empty migrations dir");
    dir
}

fn complete(pg: &LocalPg, database: &str) -> Child {
    Command::new(common::zdm_binary())
        .args(["complete", NAME, "--confirm-contract", NAME])
        // These tests are about the backfill that contract runs; the gates have theirs.
        .args(["--window", "0"])
        .args(
            zdm::gates::registry::names()
                .into_iter()
                .flat_map(|gate| ["--override-gate", gate]),
        )
        // The plan is the test's, not a file's: an existing directory without it (the
        // gates read [[verify]] queries from the file; a missing directory is refused).
        .arg("--dir")
        .arg(empty_dir(pg))
        .args(["--database-url", &pg.primary().url(database)])
        .arg("--config")
        .arg(pg.root().join(format!("{database}.toml")))
        .env_remove("DATABASE_URL")
        .env("ZDM_LOG_FILE", pg.root().join(format!("{database}.log")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn zdm")
}

/// `zdm status` (text, or JSON) of the test's database.
fn zdm_status(pg: &LocalPg, database: &str, json: bool) -> String {
    let output = Command::new(common::zdm_binary())
        .arg("status")
        .args(json.then_some("--json"))
        .args(["--database-url", &pg.primary().url(database)])
        .env_remove("DATABASE_URL")
        .env("ZDM_LOG_FILE", pg.root().join(format!("{database}.log")))
        .output()
        .expect("zdm status");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// (rows in the checkpoints, rows updated once with the right value, rows touched twice or
/// wrongly), read in one snapshot. The checkpoints are the key ranges' (one per range,
/// each saved in its batch's transaction).
async fn committed(pool: &sqlx::PgPool) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT coalesce((SELECT sum(rows_updated)::bigint FROM zdm.backfill_ranges), 0), \
                count(*) FILTER (WHERE touched = 1 AND cents = balance * 100 + id % 7), \
                count(*) FILTER (WHERE touched > 1 OR (touched = 1 AND \
                                 cents IS DISTINCT FROM balance * 100 + id % 7)) \
         FROM accounts",
    )
    .fetch_one(pool)
    .await
    .expect("committed rows")
}

/// Waits until the previous run's lock is gone (the server notices the killed client).
async fn wait_for_unlock(pool: &sqlx::PgPool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted)",
        )
        .fetch_one(pool)
        .await
        .expect("locks");
        if !held {
            return;
        }
        assert!(Instant::now() < deadline, "the killed run's lock stays");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_then_rerun_updates_every_row_exactly_once() {
    let pg = common::primary();
    let pool = prepare(&pg, "kill_random", "max_rows_per_second = 15000").await;
    kill_and_rerun(&pg, &pool, "kill_random", 5, 3).await;
}

/// Three workers, each on its own key ranges, killed 20 times: no row lost or updated
/// twice, whatever each worker was doing (mid-batch, mid-commit, between ranges).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_20_random_moments_of_three_workers_then_rerun_updates_every_row_once() {
    let pg = common::primary();
    let pool = prepare(
        &pg,
        "kill_workers",
        "max_rows_per_second = 8000\nworkers = 3",
    )
    .await;
    kill_and_rerun(&pg, &pool, "kill_workers", 20, 15).await;
    let ranges: i64 =
        sqlx::query_scalar("SELECT count(*) FROM zdm.backfill_ranges WHERE batches > 0")
            .fetch_one(&pool)
            .await
            .expect("ranges");
    assert!(ranges > 3, "{ranges} ranges walked");
}

/// `rounds` runs each killed with SIGKILL at a random moment after it committed something
/// (at least `min_kills` of them mid-way), checking after each that what the checkpoints
/// say is exactly what the table holds; then a run to the end.
async fn kill_and_rerun(
    pg: &LocalPg,
    pool: &sqlx::PgPool,
    database: &str,
    rounds: u32,
    min_kills: u32,
) {
    let (pg, pool) = (pg, pool.clone());
    let mut rng = rand::thread_rng();
    let mut kills = 0;
    for round in 0..rounds {
        wait_for_unlock(&pool).await;
        let before = committed(&pool).await.0;
        let mut child = complete(pg, database);
        // Wait for this run to commit something, then kill it a random moment later
        // (mid-batch, mid-sleep, mid-commit: wherever it is).
        let deadline = Instant::now() + Duration::from_secs(30);
        while committed(&pool).await.0 == before && child.try_wait().expect("poll").is_none() {
            assert!(Instant::now() < deadline, "round {round}: no progress");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..700))).await;
        if child.try_wait().expect("poll").is_none() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .expect("kill -9");
            kills += 1;
        }
        let _ = child.wait();
        let (checkpoint, once, wrong) = committed(&pool).await;
        assert_eq!((once, wrong), (checkpoint, 0), "round {round}");
        eprintln!("round {round}: killed with {checkpoint} rows committed");
    }
    assert!(kills >= min_kills, "only {kills} runs were killed mid-way");
    wait_for_unlock(&pool).await;
    let output = complete(pg, database).wait_with_output().expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(committed(&pool).await, (ROWS, ROWS, 0));
    // stdout is not a terminal: JSON lines, ending with the outcome.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let last = lines.last().expect("lines");
    assert_eq!(last["event"], "outcome");
    assert!(
        last["text"]
            .as_str()
            .is_some_and(|t| t.contains("complete")),
        "{last}"
    );
    let done = lines
        .iter()
        .rfind(|l| l["event"] == "progress")
        .expect("progress lines");
    assert_eq!(done["rows_done"], done["rows_total_estimate"], "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_after_the_current_batch_and_says_how_to_resume() {
    let pg = common::primary();
    let pool = prepare(&pg, "sigint", "max_rows_per_second = 15000").await;
    let child = complete(&pg, "sigint");
    let deadline = Instant::now() + Duration::from_secs(30);
    while committed(&pool).await.0 < 5000 {
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("SIGINT received"), "{stderr}");
    // Said once, with the command that resumes it (the --dir and --config given).
    assert_eq!(stderr.matches("stopped after batch").count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "resume with `zdm complete {NAME} --confirm-contract {NAME} --dir"
        )),
        "{stderr}"
    );
    // The last event says how the run ended, as `zdm attach` would show it.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let finished: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|l| l["event"] == "finished")
        .unwrap_or_else(|| panic!("no finished event: {stdout}"));
    assert_eq!(finished["ok"], false, "{finished}");
    assert!(
        finished["message"]
            .as_str()
            .is_some_and(|m| m.contains("SIGINT received")),
        "{finished}"
    );
    let (checkpoint, once, wrong) = committed(&pool).await;
    assert!(checkpoint > 0 && checkpoint < ROWS, "{checkpoint}");
    assert_eq!((once, wrong), (checkpoint, 0));
    let status: String = sqlx::query_scalar("SELECT status FROM zdm.migrations")
        .fetch_one(&pool)
        .await
        .expect("status");
    assert_eq!(status, "contracting", "stopped, not failed");
    // Nothing runs it now: `zdm status` says stopped (resumable), not contracting.
    let text = zdm_status(&pg, "sigint", false);
    assert!(
        text.contains(&format!("{NAME}  stopped while contracting (resumable)")),
        "{text}"
    );
    assert!(text.contains("STOPPED:"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&zdm_status(&pg, "sigint", true)).expect("status JSON");
    let standing = &json["migrations"][0]["standing"];
    assert_eq!(standing["state"], "stopped", "{json}");
    assert_eq!(standing["during"], "contracting", "{json}");
    let output = complete(&pg, "sigint").wait_with_output().expect("rerun");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(committed(&pool).await, (ROWS, ROWS, 0));
}
