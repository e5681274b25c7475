//! `zdm rehearse` on real PostgreSQL: a migration with a backfill (change_type on a table
//! of 30 000 rows) rehearsed at scales 0.1 and 0.3 prints every figure (phases, steps with
//! their locks, batches, rows/s, workload latency before and during, WAL, growth), a
//! forecast and the riskiest step, as text, JSON and Markdown; the forecast duration at
//! full size is within a factor of 2 of a rehearsal at full size (a ratio, not a timing).
//! The workload replays the target's pg_stat_statements reads with generated parameters,
//! at the target's observed rate (its calls since pg_stat_statements_reset), with updates
//! and inserts that all succeed; the report is kept beside the migrations. With
//! `--replica`, a real streaming replica's lag is measured per phase and forecast.

mod common;

use std::path::Path;
use std::process::Command;

use zdm::localpg::LocalPg;

const SOURCE: &str = "
CREATE TABLE accounts (
    id bigserial PRIMARY KEY,
    owner text NOT NULL,
    balance int NOT NULL,
    opened date NOT NULL CHECK (opened > '2000-01-01')
);
INSERT INTO accounts (owner, balance, opened)
SELECT 'owner ' || md5(g::text), (random() * 10000)::int, '2020-01-01'::date + g % 1500
FROM generate_series(1, 30000) g;
ANALYZE;
";

const MIGRATION: &str = r#"description = "balances outgrow int"

[[operations]]
op = "change_type"
table = "accounts"
column = "balance"
type = "bigint"
up = "balance::bigint"
down = "balance::integer"
"#;

fn rehearse(pg: &LocalPg, dir: &Path, extra: &[&str]) -> (bool, String, String) {
    // A busy test machine's CPU must not hold these backfills (the throttle has its own tests).
    let config = dir.join("zdm.toml");
    std::fs::write(&config, common::THROTTLE_OFF).expect("config");
    let output = Command::new(common::zdm_binary())
        .args(["rehearse", "0001_accounts_balance_bigint"])
        .args(["--database-url", &pg.primary().url("source")])
        .arg("--dir")
        .arg(dir.join("migrations"))
        .arg("--config")
        .arg(&config)
        .args(["--pause", "1", "--window", "1", "--baseline", "1"])
        .args(extra)
        .env_remove("ZDM_CONFIG")
        .env_remove("DATABASE_URL")
        .env("ZDM_LOG_FILE", pg.root().join("zdm.log"))
        .output()
        .expect("run zdm rehearse");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A directory with `migrations/` holding the migration.
fn migrations() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("migrations")).expect("mkdir");
    std::fs::write(
        dir.path()
            .join("migrations/0001_accounts_balance_bigint.toml"),
        MIGRATION,
    )
    .expect("migration");
    dir
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_measures_every_phase_and_its_forecast_holds_at_full_size() {
    let pg = tokio::task::spawn_blocking(common::primary)
        .await
        .expect("join");
    let source = common::database(&pg, "source").await;
    sqlx::raw_sql(SOURCE)
        .execute(&source)
        .await
        .expect("source");
    // The application's reads, for the workload to replay with generated parameters.
    sqlx::raw_sql("CREATE EXTENSION pg_stat_statements")
        .execute(&source)
        .await
        .expect("pg_stat_statements");
    for id in 1..40i64 {
        sqlx::query("SELECT owner, balance FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&source)
            .await
            .expect("a read");
    }
    for _ in 0..10 {
        sqlx::query("SELECT count(*) FROM accounts WHERE opened >= $1 AND owner <> $2")
            .bind(chrono::NaiveDate::from_ymd_opt(2021, 1, 1).expect("date"))
            .bind("x")
            .fetch_one(&source)
            .await
            .expect("a count");
    }
    let dir = migrations();

    // Text, with the Markdown report beside it.
    let markdown = dir.path().join("rehearsal.md");
    let (ok, out, err) = rehearse(
        &pg,
        dir.path(),
        &[
            "--scales",
            "0.1,0.3",
            "--report",
            markdown.to_str().expect("path"),
        ],
    );
    assert!(ok, "zdm rehearse failed:\n{out}\n{err}");
    eprintln!("{out}");
    for figure in [
        "scale 0.1",
        "scale 0.3",
        "expand",
        "backfill:",
        "rows/s",
        "workload: before p50",
        "during p50",
        "WAL",
        "table growth",
        "index growth",
        "ACCESS EXCLUSIVE",
        "forecast at full size (scale 1):",
        "duration, start to contract",
        "riskiest step:",
        "settings:",
        "lock_timeout",
        "replayed from the target's pg_stat_statements:",
        "SELECT owner, balance FROM accounts WHERE id = $1 (39 calls)",
        "opened >= $1 AND owner <> $2",
    ] {
        assert!(out.contains(figure), "the report lacks {figure:?}:\n{out}");
    }
    let md = std::fs::read_to_string(&markdown).expect("the Markdown report");
    for section in [
        "# Rehearsal of",
        "## Phases",
        "## Steps",
        "## Forecast",
        "## Riskiest",
    ] {
        assert!(md.contains(section), "{section} missing:\n{md}");
    }
    // The source is only read: it has no zdm state and its column is still an int.
    let zdm: bool = sqlx::query_scalar("SELECT to_regnamespace('zdm') IS NOT NULL")
        .fetch_one(&source)
        .await
        .expect("read");
    assert!(!zdm, "the rehearsal ran on the source");

    // Kept beside the migrations as its last rehearsal, for the console.
    let kept = dir
        .path()
        .join("migrations/.zdm/rehearsals/0001_accounts_balance_bigint.json");
    let last = zdm::synth::rehearsal::last(
        &dir.path().join("migrations"),
        "0001_accounts_balance_bigint",
    )
    .expect("readable")
    .unwrap_or_else(|| panic!("no rehearsal kept in {}", kept.display()));
    assert_eq!(last.runs.len(), 2);
    assert!(out.contains("kept as the last rehearsal"), "{out}");

    // The rate aimed at is the target's: its statements since pg_stat_statements was reset
    // (the catalog reads of tools, zdm's own, left out), over the time since.
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(&source)
        .await
        .expect("reset");
    let reset = std::time::Instant::now();
    const READS: i64 = 300;
    for id in 0..READS {
        sqlx::query("SELECT owner, balance FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&source)
            .await
            .expect("a read");
    }
    // A window of some seconds: a rate the two workload clients can keep.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let before = reset.elapsed().as_secs_f64();
    // JSON at two scales, then a rehearsal at full size to hold the forecast against.
    let (ok, out, err) = rehearse(&pg, dir.path(), &["--scales", "0.1,0.3", "--json"]);
    let after = reset.elapsed().as_secs_f64();
    assert!(ok, "{out}\n{err}");
    let forecast = json(&out);
    let aimed = forecast["rate"]["aimed_per_s"].as_f64().expect("rate");
    assert!(
        forecast["rate"]["source"]
            .as_str()
            .is_some_and(|s| s.contains("pg_stat_statements")),
        "{out}"
    );
    // A few statements of the pool's own (its connection checks) may be counted beside
    // the reads.
    assert!(
        aimed >= READS as f64 / after && aimed <= (READS + 20) as f64 / before,
        "aimed at {aimed:.1}/s: {READS} reads in {before:.1} s to {after:.1} s"
    );
    let runs = forecast["runs"].as_array().expect("runs");
    let rows = |i: usize| runs[i]["backfill_rows"].as_f64().expect("rows");
    assert!(
        rows(0) > 2500.0 && (rows(1) / rows(0) - 3.0).abs() < 0.3,
        "{out}"
    );
    for run in runs {
        assert!(
            run["latency_during"]["statements"].as_u64().expect("n") > 0,
            "{out}"
        );
        assert!(
            run["latency_during"]["per_s"].as_f64().expect("rate") > 0.0,
            "{out}"
        );
        // Updates and inserts of copied rows under new keys: a copy that broke the table's
        // constraints (NOT NULL, the check on opened, the key) would have failed.
        let writes = &run["writes"];
        assert!(writes["inserts"].as_u64().expect("inserts") > 0, "{out}");
        assert!(writes["updates"].as_u64().expect("updates") > 0, "{out}");
        assert_eq!(writes["failed"].as_u64(), Some(0), "{out}");
        assert!(run["wal_bytes"].as_u64().expect("wal") > 0, "{out}");
        assert!(run["batches"].as_u64().expect("batches") > 0, "{out}");
    }
    let predicted = forecast["forecast"]
        .as_array()
        .expect("forecast")
        .iter()
        .find(|f| f["figure"] == "duration, start to contract")
        .and_then(|f| f["at_full_size"].as_f64())
        .expect("the duration's forecast");

    // At the rate the forecast's runs aimed at (the target's, measured over a longer window
    // by now, would be lower).
    let rate = format!("{aimed}");
    let (ok, out, err) = rehearse(
        &pg,
        dir.path(),
        &["--scales", "1", "--json", "--rate", &rate],
    );
    assert!(ok, "{out}\n{err}");
    let full = json(&out);
    let run = &full["runs"][0];
    assert_eq!(run["rows"].as_u64(), Some(30000), "{out}");
    // Rows the workload's updates brought over through the sync trigger need no batch; rows
    // it inserted before the trigger existed do.
    let backfilled = run["backfill_rows"].as_f64().expect("rows");
    let inserted = run["writes"]["inserts"].as_f64().expect("inserts");
    assert!(
        backfilled > 29_000.0 && backfilled <= 30_000.0 + inserted,
        "{out}"
    );
    let actual = run["start_s"].as_f64().expect("start") + run["complete_s"].as_f64().expect("c");
    assert!(
        predicted / actual < 2.0 && actual / predicted < 2.0,
        "forecast {predicted:.1} s vs {actual:.1} s measured at full size"
    );
}

/// `--replica`: each scratch server gets a real streaming replica; its lag is sampled on
/// the primary through every phase, reported (max and p95) and forecast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_replica_its_lag_is_measured_per_phase_and_forecast() {
    let pg = tokio::task::spawn_blocking(common::primary)
        .await
        .expect("join");
    let source = common::database(&pg, "source").await;
    sqlx::raw_sql(&SOURCE.replace("30000", "6000"))
        .execute(&source)
        .await
        .expect("source");
    let dir = migrations();
    let (ok, out, err) = rehearse(
        &pg,
        dir.path(),
        &["--scales", "0.5,1", "--replica", "--rate", "40", "--json"],
    );
    assert!(ok, "zdm rehearse --replica failed:\n{out}\n{err}");
    let report = json(&out);
    for run in report["runs"].as_array().expect("runs") {
        let lags = run["replica_lag"].as_array().expect("replica_lag");
        let phases: Vec<&str> = lags.iter().filter_map(|l| l["phase"].as_str()).collect();
        assert_eq!(phases, ["before", "start", "pause", "complete"], "{out}");
        for lag in lags {
            assert!(lag["samples"].as_u64().expect("samples") > 0, "{out}");
            assert!(
                lag["max_bytes"].as_u64() >= lag["p95_bytes"].as_u64(),
                "{out}"
            );
        }
    }
    let figures: Vec<&str> = report["forecast"]
        .as_array()
        .expect("forecast")
        .iter()
        .filter_map(|f| f["figure"].as_str())
        .collect();
    for figure in ["replica lag max, start", "replica lag p95, complete"] {
        assert!(
            figures.contains(&figure),
            "{figure} not forecast: {figures:?}"
        );
    }
    // The rate was given: the report says so.
    assert_eq!(report["rate"]["source"], "--rate", "{out}");
    assert_eq!(report["rate"]["aimed_per_s"].as_f64(), Some(40.0));
}
