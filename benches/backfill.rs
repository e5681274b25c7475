//! The backfill benchmark (not a test: run it with `cargo bench --bench backfill`; see
//! docs/performance.md). On one throwaway local PostgreSQL, on the same data:
//! 1. the real `zdm complete` backfilling 1,000,000 rows with every throttle input off,
//!    against one plain `UPDATE` of a copy of the table (rows/s);
//! 2. a pgbench-like workload's p50/p99 latency during a backfill at default settings
//!    (throttle on), and with the host-CPU input off (with and without a nice ratio),
//!    each window between two with no backfill (its baseline is their mean);
//! 3. the longest batch transaction (the longest any row lock was held by a batch);
//! 4. zdm's peak RSS backfilling 250,000 and 1,000,000 rows;
//! 5. four tables (issue 17): the narrow `accounts`, the realistic `readings`, `readings`
//!    with a composite key, and a change_type (shadow column) of `readings`: `zdm start`
//!    (sync trigger installed, every throttle input off) with one worker and with the
//!    adaptive default (`workers = auto`), each against `ALTER TABLE … ADD COLUMN; UPDATE
//!    …` of the same rows, on fresh copies, interleaved: rows/s, the server's CPU time
//!    and zdm's own, WAL written and table growth of each, the batches' percentiles, the
//!    workers the run reached.
//! 6. when a `reshape` binary is on PATH, Reshape's `migration start` of the same
//!    add_column on a fresh copy of `readings` (skipped, with a note, when there is none);
//! 7. where one worker's cost goes, in SQL alone: the readings UPDATE by itself, with a
//!    BEFORE UPDATE trigger its WHEN skips, cut into keyset batches, and cut into keyset
//!    batches with the skipped trigger (what a one-worker zdm batch is, without zdm).

#[path = "../tests/engine_support/mod.rs"]
mod engine_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine_support::{backfill, plan, quick_options};
use rand::Rng;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use zdm::engine::Engine;
use zdm::localpg::{LocalPg, Options};
use zdm::plan::Phase;

const BIG: i64 = 1_000_000;
const SMALL: i64 = 250_000;
const CLIENTS: usize = 4;
const WORKLOAD_WINDOW: Duration = Duration::from_secs(20);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let pg = LocalPg::start(&Options::default()).expect("a local PostgreSQL");
    let zdm = PathBuf::from(env!("CARGO_BIN_EXE_zdm"));
    println!("zdm binary: {}", zdm.display());

    // 5. first (the longest-standing question): the four tables, one worker and adaptive,
    // interleaved (which side runs first alternates).
    let one_worker = write_config(
        &pg,
        "off-one",
        &format!("[backfill]\nworkers = 1\n\n{THROTTLE_OFF}"),
    );
    let adaptive = write_config(&pg, "off-auto", THROTTLE_OFF);
    let mut rounds = Vec::new();
    for (index, case) in CASES.iter().enumerate() {
        for (variant, config) in [("1", &one_worker), ("auto", &adaptive)] {
            let round = rounds.len();
            let zdm_first = (index + round) % 2 == 1;
            let result = readings_round(&pg, &zdm, round, zdm_first, config, case).await;
            rounds.push((case.name, variant, zdm_first, result));
        }
    }
    // 6. Reshape, when it is installed.
    let reshape = reshape_round(&pg).await;
    // 7. Where one worker's cost goes, without zdm: the readings UPDATE alone, with a
    // BEFORE UPDATE trigger whose WHEN skips it (as zdm's sync trigger does for its
    // batches), and cut into keyset batches with a commit each (no trigger).
    let anatomy = anatomy(&pg).await;

    // 1. Backfill with throttling off vs one plain UPDATE, same data.
    let pool = database(&pg, "bench", BIG).await;
    run_each(
        &pool,
        &[
            "CREATE TABLE plain AS SELECT * FROM accounts",
            "ALTER TABLE plain ADD PRIMARY KEY (id)",
            "VACUUM ANALYZE plain",
            "CHECKPOINT",
        ],
    )
    .await;
    let started = Instant::now();
    sqlx::query("UPDATE plain SET cents = balance * 100 + id % 7")
        .execute(&pool)
        .await
        .expect("plain update");
    let update_took = started.elapsed();
    let update_rate = BIG as f64 / update_took.as_secs_f64();
    sqlx::raw_sql("CHECKPOINT")
        .execute(&pool)
        .await
        .expect("checkpoint");
    register(&pg, "bench", "0001_accounts", "accounts").await;
    let off = write_config(&pg, "off", THROTTLE_OFF);
    let fast = backfill_with_zdm(&zdm, &pg, "bench", "0001_accounts", &off, None);
    let backfill_rate = BIG as f64 / fast.wall.as_secs_f64();

    // 2. The workload without and during a backfill at default settings.
    run_each(
        &pool,
        &[
            "CREATE TABLE wl AS SELECT id, balance, pad, NULL::bigint AS cents FROM accounts",
            "ALTER TABLE wl ADD PRIMARY KEY (id)",
            "VACUUM ANALYZE wl",
            "CHECKPOINT",
        ],
    )
    .await;
    register(&pg, "bench", "0002_wl", "wl").await;
    let defaults = write_config(&pg, "defaults", "");
    // On a small shared machine the workload alone can keep host CPU above 90 %, so the
    // default throttle may hold the whole window: measure again with that input off, first
    // with a nice ratio of 1 (the backfill sleeps as long as each batch took), then without
    // (the same migration resumes from its checkpoint each time).
    let nice = write_config(
        &pg,
        "no-cpu-nice",
        "[backfill]\nnice_ratio = 1.0\n\n[throttle]\nmax_host_cpu_percent = \"none\"\n",
    );
    let no_cpu = write_config(
        &pg,
        "no-cpu",
        "[throttle]\nmax_host_cpu_percent = \"none\"\n",
    );
    // A quiet window (no backfill) before and after each backfill window: the workload's
    // p99 drifts as its table ages (a third from one window to the next on a shared
    // machine), so each backfill window is judged against the mean of its two neighbours.
    let mut quiet = vec![workload(&pool, WORKLOAD_WINDOW, || false).await];
    let mut windows = Vec::new();
    for (label, config) in [
        ("default settings", &defaults),
        ("default settings, host CPU input off, nice_ratio 1", &nice),
        ("default settings, host CPU input off", &no_cpu),
    ] {
        let (during, gentle) = workload_during_backfill(&zdm, &pg, &pool, config).await;
        quiet.push(workload(&pool, WORKLOAD_WINDOW, || false).await);
        windows.push((label, during, gentle));
    }

    // 4. Peak RSS at a quarter of the size.
    let _small_pool = database(&pg, "bench_small", SMALL).await;
    register(&pg, "bench_small", "0001_accounts", "accounts").await;
    let small = backfill_with_zdm(&zdm, &pg, "bench_small", "0001_accounts", &off, None);

    println!();
    const MIB: f64 = 1024.0 * 1024.0;
    println!(
        "| table, 1,000,000 rows | workers | first | UPDATE rows/s | zdm start rows/s, throttle off | zdm / UPDATE | server CPU zdm / UPDATE | zdm's own CPU | WAL zdm / UPDATE | WAL records per row, zdm / UPDATE | growth zdm / UPDATE | batch ms p50 / p95 / max | workers reached | at the most workers, zdm / UPDATE rows/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, variant, zdm_first, v) in &rounds {
        let update_rate = BIG as f64 / v.update.as_secs_f64();
        let zdm_rate = BIG as f64 / v.zdm.wall.as_secs_f64();
        println!(
            "| {name} | {variant} | {} | {:.0} ({:.1} s) | {:.0} ({:.1} s, {} batches) | **{:.2}** | {:.2} ({:.1} / {:.1} s) | {:.2} s | {:.2} ({:.0} / {:.0} MiB) | {:.1} / {:.1} | {:.2} ({:.0} / {:.0} MiB) | {} / {} / {} | {} | {} |",
            if *zdm_first { "zdm" } else { "UPDATE" },
            update_rate,
            v.update.as_secs_f64(),
            zdm_rate,
            v.zdm.wall.as_secs_f64(),
            v.zdm.batches,
            zdm_rate / update_rate,
            v.zdm_server_cpu / v.update_server_cpu.max(0.01),
            v.zdm_server_cpu,
            v.update_server_cpu,
            v.zdm.cpu_seconds,
            v.zdm_wal as f64 / v.update_wal.max(1) as f64,
            v.zdm_wal as f64 / MIB,
            v.update_wal as f64 / MIB,
            v.zdm_wal_records as f64 / BIG as f64,
            v.update_wal_records as f64 / BIG as f64,
            v.zdm_growth as f64 / v.update_growth.max(1) as f64,
            v.zdm_growth as f64 / MIB,
            v.update_growth as f64 / MIB,
            quantile(&v.zdm.batch_ms, 0.50),
            quantile(&v.zdm.batch_ms, 0.95),
            v.zdm.batch_ms.iter().max().copied().unwrap_or(0),
            v.zdm.most_workers,
            v.zdm
                .steady_rows_per_second
                .map(|steady| format!("{:.2} ({steady:.0} rows/s)", steady / update_rate))
                .unwrap_or_else(|| "too short".to_string())
        );
    }
    match &reshape {
        Some((took, rate_ratio)) => println!(
            "\nReshape `migration start`, readings: {:.1} s, {:.2}x one UPDATE's rows/s",
            took.as_secs_f64(),
            rate_ratio
        ),
        None => println!("\nReshape: no `reshape` binary on PATH, not measured"),
    }

    println!();
    println!(
        "| readings, 1,000,000 rows, in SQL alone | time | server CPU | WAL | WAL records per row |"
    );
    println!("|---|---|---|---|---|");
    for side in &anatomy {
        println!(
            "| {} | {:.1} s | {:.1} s | {:.0} MiB | {:.1} |",
            side.label,
            side.took.as_secs_f64(),
            side.server_cpu,
            side.wal as f64 / MIB,
            side.wal_records as f64 / BIG as f64
        );
    }

    println!();
    println!("| measurement | value |");
    println!("|---|---|");
    println!(
        "| plain `UPDATE` of {BIG} rows | {:.1} s, {:.0} rows/s |",
        update_took.as_secs_f64(),
        update_rate
    );
    println!(
        "| zdm backfill of {BIG} rows, throttle off (whole `zdm complete` run) | {:.1} s, {:.0} rows/s, {} batches |",
        fast.wall.as_secs_f64(),
        backfill_rate,
        fast.batches
    );
    println!(
        "| backfill / UPDATE rows/s | {:.2} |",
        backfill_rate / update_rate
    );
    for (index, (label, during, gentle)) in windows.iter().enumerate() {
        let (before, after) = (&quiet[index], &quiet[index + 1]);
        let baseline_p99 = (before.p99_ms + after.p99_ms) / 2.0;
        println!(
            "| workload without backfill, before the next window ({CLIENTS} clients, {} tx) | p50 {:.2} ms, p99 {:.2} ms |",
            before.count, before.p50_ms, before.p99_ms
        );
        println!(
            "| workload during a backfill at {label} ({} tx) | p50 {:.2} ms, p99 {:.2} ms (p99 {:.2}x baseline: the mean of the quiet windows before and after, {:.2} ms) |",
            during.count,
            during.p50_ms,
            during.p99_ms,
            during.p99_ms / baseline_p99,
            baseline_p99
        );
        println!(
            "| that backfill in the window | {} rows updated in all, {} batches this run, throttled {:.1} s, batch p50 / p95 / max {} / {} / {} ms (target 200); last throttle reason: {} |",
            gentle.rows,
            gentle.batches,
            gentle.throttled_seconds,
            quantile(&gentle.batch_ms, 0.50),
            quantile(&gentle.batch_ms, 0.95),
            gentle.longest_batch_ms,
            gentle.last_reason.as_deref().unwrap_or("none")
        );
    }
    if let Some(last) = quiet.last() {
        println!(
            "| workload without backfill, after the last window ({} tx) | p50 {:.2} ms, p99 {:.2} ms |",
            last.count, last.p50_ms, last.p99_ms
        );
    }
    println!(
        "| longest batch transaction (row locks held), throttle off | {} ms |",
        fast.longest_batch_ms
    );
    println!(
        "| zdm peak RSS, {SMALL} rows / {BIG} rows | {:.1} MiB / {:.1} MiB |",
        small.peak_rss_kib as f64 / 1024.0,
        fast.peak_rss_kib as f64 / 1024.0
    );
}

/// One round of the `readings` comparison, each side on its own fresh copy.
struct Versus {
    update: Duration,
    update_wal: i64,
    update_growth: i64,
    /// CPU seconds the server spent on the UPDATE, and on zdm's run.
    update_server_cpu: f64,
    zdm_server_cpu: f64,
    /// WAL records written during each side.
    update_wal_records: i64,
    zdm_wal_records: i64,
    zdm: Run,
    zdm_wal: i64,
    zdm_growth: i64,
}

const READINGS_MIGRATION: &str = "[[operations]]\nop = \"add_column\"\ntable = \"readings\"\n\
    column = { name = \"fahrenheit\", type = \"numeric(7,2)\" }\nup = \"celsius * 9 / 5 + 32\"\n";

/// One benchmark table: how a copy named `{table}` is made, the migration zdm runs on
/// `readings`, the one UPDATE it is measured against on `plain`, and the check that every
/// row of `readings` came out right (a count of wrong rows).
struct Case {
    name: &'static str,
    create: &'static str,
    migration: &'static str,
    update: &'static str,
    wrong: &'static str,
}

const READINGS_TABLE: &str = "CREATE TABLE {table} (id bigint PRIMARY KEY, sensor int NOT NULL, \
    celsius numeric(6,2) NOT NULL, note text); \
    INSERT INTO {table} SELECT g, g % 500, round((g % 8000) / 100.0 - 20, 2), \
    CASE WHEN g % 3 = 0 THEN 'calibrated' END FROM generate_series(1, {rows}) g";

const CASES: [Case; 4] = [
    Case {
        name: "accounts (narrow)",
        create: "CREATE TABLE {table} (id bigint PRIMARY KEY, balance integer NOT NULL, \
            pad text NOT NULL); INSERT INTO {table} SELECT g * 2, g % 1000, repeat('p', 40) \
            FROM generate_series(1, {rows}) g",
        migration: "[[operations]]\nop = \"add_column\"\ntable = \"readings\"\n\
            column = { name = \"cents\", type = \"bigint\" }\nup = \"balance * 100 + id % 7\"\n",
        update: "ALTER TABLE plain ADD COLUMN cents bigint; \
            UPDATE plain SET cents = balance * 100 + id % 7",
        wrong: "SELECT count(*) FROM readings WHERE cents IS DISTINCT FROM balance * 100 + id % 7",
    },
    Case {
        name: "readings",
        create: READINGS_TABLE,
        migration: READINGS_MIGRATION,
        update: "ALTER TABLE plain ADD COLUMN fahrenheit numeric(7,2); \
            UPDATE plain SET fahrenheit = celsius * 9 / 5 + 32",
        wrong: "SELECT count(*) FROM readings \
            WHERE fahrenheit IS DISTINCT FROM (celsius * 9 / 5 + 32)::numeric(7, 2)",
    },
    Case {
        name: "readings, key (sensor, id)",
        create: "CREATE TABLE {table} (sensor int NOT NULL, id bigint NOT NULL, \
            celsius numeric(6,2) NOT NULL, note text, PRIMARY KEY (sensor, id)); \
            INSERT INTO {table} SELECT g % 500, g, round((g % 8000) / 100.0 - 20, 2), \
            CASE WHEN g % 3 = 0 THEN 'calibrated' END FROM generate_series(1, {rows}) g",
        migration: READINGS_MIGRATION,
        update: "ALTER TABLE plain ADD COLUMN fahrenheit numeric(7,2); \
            UPDATE plain SET fahrenheit = celsius * 9 / 5 + 32",
        wrong: "SELECT count(*) FROM readings \
            WHERE fahrenheit IS DISTINCT FROM (celsius * 9 / 5 + 32)::numeric(7, 2)",
    },
    Case {
        name: "readings, change_type celsius",
        create: READINGS_TABLE,
        migration: "[[operations]]\nop = \"change_type\"\ntable = \"readings\"\n\
            column = \"celsius\"\ntype = \"numeric(8,3)\"\nup = \"celsius::numeric(8,3)\"\n\
            down = \"round(celsius, 2)::numeric(6,2)\"\n",
        update: "ALTER TABLE plain ADD COLUMN celsius_new numeric(8,3); \
            UPDATE plain SET celsius_new = celsius::numeric(8,3)",
        wrong: "SELECT count(*) FROM readings \
            WHERE \"_zdm_new_celsius\" IS DISTINCT FROM celsius::numeric(8,3)",
    },
];

async fn readings_round(
    pg: &LocalPg,
    zdm: &Path,
    round: usize,
    zdm_first: bool,
    config: &Path,
    case: &Case,
) -> Versus {
    let name = format!("readings{round}");
    let mut admin = pg.primary().connect("postgres").await.expect("connect");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("database");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(pg.primary().connect_options(&name))
        .await
        .expect("pool");
    let fill = |table: &str| {
        case.create
            .replace("{table}", table)
            .replace("{rows}", &BIG.to_string())
    };
    run_each(
        &pool,
        &[
            &fill("readings"),
            &fill("plain"),
            "VACUUM ANALYZE readings",
            "VACUUM ANALYZE plain",
            "CHECKPOINT",
        ],
    )
    .await;
    let dir = pg.root().join(format!("bench-migrations-{round}"));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("0001_fahrenheit.toml"), case.migration).expect("file");
    let mut update = (Duration::ZERO, 0, 0, 0.0, 0);
    let mut zdm_side = (Run::default(), 0, 0, 0.0, 0);
    for zdm_turn in [zdm_first, !zdm_first] {
        let table = if zdm_turn { "readings" } else { "plain" };
        let (lsn, size, records) = wal_and_size(&pool, table).await;
        let cpu = server_cpu(pg);
        if zdm_turn {
            let args: Vec<String> = [
                "start",
                "0001_fahrenheit",
                "--dir",
                &dir.display().to_string(),
                "--database-url",
                &pg.primary().url(&name),
            ]
            .iter()
            .map(|a| a.to_string())
            .collect();
            let zdm = zdm.to_path_buf();
            let config = config.to_path_buf();
            let run = tokio::task::spawn_blocking(move || run_zdm(&zdm, &args, &config, None))
                .await
                .expect("join");
            let cpu = server_cpu(pg) - cpu;
            let (lsn_after, size_after, records_after) = wal_and_size(&pool, table).await;
            zdm_side = (
                run,
                lsn_after - lsn,
                size_after - size,
                cpu,
                records_after - records,
            );
        } else {
            let started = Instant::now();
            sqlx::raw_sql(case.update)
                .execute(&pool)
                .await
                .expect("plain update");
            let took = started.elapsed();
            let cpu = server_cpu(pg) - cpu;
            let (lsn_after, size_after, records_after) = wal_and_size(&pool, table).await;
            update = (
                took,
                lsn_after - lsn,
                size_after - size,
                cpu,
                records_after - records,
            );
        }
        run_each(&pool, &["CHECKPOINT"]).await;
    }
    let wrong: i64 = sqlx::query_scalar(case.wrong)
        .fetch_one(&pool)
        .await
        .expect("check");
    assert_eq!(wrong, 0, "every row backfilled right");
    pool.close().await;
    Versus {
        update: update.0,
        update_wal: update.1,
        update_growth: update.2,
        update_server_cpu: update.3,
        update_wal_records: update.4,
        zdm: zdm_side.0,
        zdm_wal: zdm_side.1,
        zdm_growth: zdm_side.2,
        zdm_server_cpu: zdm_side.3,
        zdm_wal_records: zdm_side.4,
    }
}

/// One side of [`anatomy`].
struct Side {
    label: &'static str,
    took: Duration,
    server_cpu: f64,
    wal: i64,
    wal_records: i64,
}

/// The readings UPDATE four ways, each on a fresh copy: alone; with a BEFORE UPDATE row
/// trigger that its WHEN skips for this transaction (PostgreSQL still locks each row for
/// the trigger before it evaluates the WHEN); in keyset batches of 16,000 rows with a
/// commit each (no trigger; the batches a one-worker zdm run cuts, in plpgsql); and in
/// those batches with the skipped trigger (a one-worker zdm run's SQL, without zdm).
async fn anatomy(pg: &LocalPg) -> Vec<Side> {
    let name = "anatomy";
    let mut admin = pg.primary().connect("postgres").await.expect("connect");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("database");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(pg.primary().connect_options(name))
        .await
        .expect("pool");
    let update = "UPDATE {t} SET fahrenheit = celsius * 9 / 5 + 32";
    let sides: [(&'static str, &str, String); 4] = [
        ("one UPDATE", "", update.replace("{t}", "alone")),
        (
            "one UPDATE, BEFORE UPDATE trigger skipped by its WHEN",
            "CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'; \
             CREATE TRIGGER keep BEFORE UPDATE ON skipped FOR EACH ROW \
             WHEN (current_setting('bench.skip', true) IS DISTINCT FROM 'yes') \
             EXECUTE FUNCTION keep()",
            format!(
                "BEGIN; SET LOCAL bench.skip = 'yes'; {}; COMMIT",
                update.replace("{t}", "skipped")
            ),
        ),
        (
            "keyset batches of 16,000 rows, a commit each, no trigger",
            "",
            "DO $$ DECLARE lo bigint := 0; hi bigint; BEGIN LOOP \
               SELECT id INTO hi FROM batched WHERE id > lo ORDER BY id OFFSET 15999 LIMIT 1; \
               IF hi IS NULL THEN SELECT max(id) INTO hi FROM batched; END IF; \
               EXIT WHEN hi IS NULL OR hi <= lo; \
               UPDATE batched SET fahrenheit = celsius * 9 / 5 + 32 WHERE id > lo AND id <= hi; \
               COMMIT; lo := hi; END LOOP; END $$"
                .to_string(),
        ),
        (
            "keyset batches of 16,000 rows, a commit each, BEFORE UPDATE trigger skipped by its WHEN",
            "CREATE TRIGGER keep BEFORE UPDATE ON trig_batched FOR EACH ROW \
             WHEN (current_setting('bench.skip', true) IS DISTINCT FROM 'yes') \
             EXECUTE FUNCTION keep()",
            "DO $$ DECLARE lo bigint := 0; hi bigint; BEGIN LOOP \
               PERFORM set_config('bench.skip', 'yes', true); \
               SELECT id INTO hi FROM trig_batched WHERE id > lo ORDER BY id OFFSET 15999 LIMIT 1; \
               IF hi IS NULL THEN SELECT max(id) INTO hi FROM trig_batched; END IF; \
               EXIT WHEN hi IS NULL OR hi <= lo; \
               UPDATE trig_batched SET fahrenheit = celsius * 9 / 5 + 32 WHERE id > lo AND id <= hi; \
               COMMIT; lo := hi; END LOOP; END $$"
                .to_string(),
        ),
    ];
    let mut measured = Vec::new();
    for (index, (label, setup, work)) in sides.iter().enumerate() {
        let table = ["alone", "skipped", "batched", "trig_batched"][index];
        let create = READINGS_TABLE
            .replace("{table}", table)
            .replace("{rows}", &BIG.to_string());
        let alter = format!("ALTER TABLE {table} ADD COLUMN fahrenheit numeric(7,2)");
        let vacuum = format!("VACUUM ANALYZE {table}");
        let mut statements = vec![create.as_str(), vacuum.as_str(), alter.as_str()];
        if !setup.is_empty() {
            statements.push(setup);
        }
        statements.push("CHECKPOINT");
        run_each(&pool, &statements).await;
        let (lsn, _, records) = wal_and_size(&pool, table).await;
        let cpu = server_cpu(pg);
        let started = Instant::now();
        sqlx::raw_sql(work).execute(&pool).await.expect("update");
        let took = started.elapsed();
        let cpu = server_cpu(pg) - cpu;
        let (lsn_after, _, records_after) = wal_and_size(&pool, table).await;
        measured.push(Side {
            label,
            took,
            server_cpu: cpu,
            wal: lsn_after - lsn,
            wal_records: records_after - records,
        });
    }
    pool.close().await;
    measured
}

/// Reshape's `migration start` of the readings add_column on a fresh copy, against one
/// UPDATE of another: (its time, its rows/s over the UPDATE's). None without a `reshape`
/// binary on PATH (`cargo install reshape`).
async fn reshape_round(pg: &LocalPg) -> Option<(Duration, f64)> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("reshape"))
            .find(|path| path.is_file())
    })?;
    let name = "reshape_readings";
    let mut admin = pg.primary().connect("postgres").await.expect("connect");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("database");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(pg.primary().connect_options(name))
        .await
        .expect("pool");
    let fill = |table: &str| {
        READINGS_TABLE
            .replace("{table}", table)
            .replace("{rows}", &BIG.to_string())
    };
    run_each(
        &pool,
        &[
            &fill("readings"),
            &fill("plain"),
            "VACUUM ANALYZE readings",
            "VACUUM ANALYZE plain",
            "CHECKPOINT",
        ],
    )
    .await;
    let started = Instant::now();
    sqlx::raw_sql(CASES[1].update)
        .execute(&pool)
        .await
        .expect("plain update");
    let update = started.elapsed();
    let dir = pg.root().join("bench-reshape");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("1_fahrenheit.toml"),
        "[[actions]]\ntype = \"add_column\"\ntable = \"readings\"\nup = \"celsius * 9 / 5 + 32\"\n\
         \n[actions.column]\nname = \"fahrenheit\"\ntype = \"NUMERIC(7,2)\"\n",
    )
    .expect("reshape migration");
    let started = Instant::now();
    let status = Command::new(found)
        .args([
            "migration",
            "start",
            "--url",
            &pg.primary().url(name),
            "--dirs",
        ])
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .expect("reshape");
    let took = started.elapsed();
    assert!(status.success(), "reshape migration start failed");
    Some((took, update.as_secs_f64() / took.as_secs_f64()))
}

/// The WAL position (bytes) and the table's total size (bytes).
/// The WAL position, the table's total size, and the server's WAL records so far
/// (`pg_stat_wal`, the whole server: the sides run one after the other).
async fn wal_and_size(pool: &PgPool, table: &str) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, \
                pg_total_relation_size($1::regclass), \
                (SELECT wal_records FROM pg_stat_wal)",
    )
    .bind(table)
    .fetch_one(pool)
    .await
    .expect("wal and size")
}

/// CPU seconds (user + system) the whole server has used so far: the postmaster and every
/// process it started, the exited ones included (the kernel adds a child's time to its
/// parent's `cutime`/`cstime` when the parent reaps it, and the postmaster reaps its
/// backends at once). On a machine shared with other work, a side's CPU time moves far
/// less than its wall time: it says what the work cost, not how long it waited for a core.
fn server_cpu(pg: &LocalPg) -> f64 {
    // Let the postmaster reap a backend that has just exited.
    std::thread::sleep(Duration::from_millis(100));
    let Some(postmaster) = pg.primary().pid() else {
        return 0.0;
    };
    let mut ticks = process_ticks(postmaster, true).map_or(0, |(t, _)| t);
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some((t, parent)) = process_ticks(pid, false) {
                if parent == postmaster {
                    ticks += t;
                }
            }
        }
    }
    ticks as f64 / CLOCK_TICKS_PER_SECOND
}

/// /proc's CPU times are in USER_HZ, 100 per second on Linux whatever the kernel's HZ.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// A process's utime + stime (+ its reaped children's with `children`), and its parent.
fn process_ticks(pid: i32, children: bool) -> Option<(u64, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: the fields after it follow its ')'.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    let parent = fields.get(1)?.parse().ok()?;
    let mut ticks = field(11)? + field(12)?;
    if children {
        ticks += field(13)? + field(14)?;
    }
    Some((ticks, parent))
}

/// The `q` quantile (nearest rank) of `values`.
fn quantile(values: &[u64], q: f64) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((sorted.len() as f64 * q).ceil() as usize).max(1);
    sorted.get(rank - 1).copied().unwrap_or(0)
}

/// The workload measured while `zdm complete 0002_wl` runs with `config` (SIGINT at the
/// end of the window if it is still running).
async fn workload_during_backfill(
    zdm: &Path,
    pg: &LocalPg,
    pool: &PgPool,
    config: &Path,
) -> (Latency, Run) {
    let running = Arc::new(AtomicBool::new(true));
    let during = {
        let pool = pool.clone();
        let running = running.clone();
        tokio::spawn(async move {
            workload(&pool, WORKLOAD_WINDOW, move || {
                !running.load(Ordering::Relaxed)
            })
            .await
        })
    };
    let zdm = zdm.to_path_buf();
    let url = pg.primary().url("bench");
    let config = config.to_path_buf();
    let run = tokio::task::spawn_blocking(move || {
        backfill_with_url(&zdm, &url, "0002_wl", &config, Some(WORKLOAD_WINDOW))
    })
    .await
    .expect("join");
    running.store(false, Ordering::Relaxed);
    (during.await.expect("join"), run)
}

const THROTTLE_OFF: &str = "[throttle]\nmax_replica_lag = \"none\"\nmax_lock_waiters = \"none\"\n\
    max_active_sessions_factor = \"none\"\nmax_host_cpu_percent = \"none\"\nmax_canary_slowdown = \"none\"\n";

fn write_config(pg: &LocalPg, name: &str, text: &str) -> PathBuf {
    let path = pg.root().join(format!("bench-{name}.toml"));
    std::fs::write(&path, text).expect("config");
    path
}

/// A database with `accounts` of `rows` rows (ids with gaps, 40 bytes of padding).
async fn database(pg: &LocalPg, name: &str, rows: i64) -> PgPool {
    let mut admin = pg.primary().connect("postgres").await.expect("connect");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("database");
    let pool = PgPoolOptions::new()
        .max_connections(CLIENTS as u32 + 2)
        .connect_with(pg.primary().connect_options(name))
        .await
        .expect("pool");
    let insert = format!(
        "INSERT INTO accounts (id, balance, pad) \
           SELECT g * 2, g % 1000, repeat('p', 40) FROM generate_series(1, {rows}) g"
    );
    run_each(
        &pool,
        &[
            "CREATE TABLE accounts (id bigint PRIMARY KEY, balance integer NOT NULL, \
                                    pad text NOT NULL, cents bigint)",
            &insert,
            "VACUUM ANALYZE accounts",
        ],
    )
    .await;
    pool
}

/// Each statement on its own (VACUUM cannot share a transaction).
async fn run_each(pool: &PgPool, statements: &[&str]) {
    for statement in statements {
        sqlx::raw_sql(statement)
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

/// Records migration `name`, whose one step is a contract-phase backfill of `table` (run
/// by `zdm complete`: `zdm start` needs the planner).
async fn register(pg: &LocalPg, database: &str, name: &str, table: &str) {
    let mut fill = backfill(
        &format!("\"public\".\"{table}\""),
        &["id"],
        &[("cents", "balance * 100 + id % 7")],
        None,
    );
    fill.phase = Phase::Contract;
    let mut engine = Engine::connect_with(pg.primary().connect_options(database), quick_options())
        .await
        .expect("engine");
    engine
        .start(&plan(name, vec![fill]), "bench")
        .await
        .expect("record");
    engine.close().await.expect("close");
}

/// What one `zdm complete` run did, from its JSON lines and /proc.
#[derive(Debug, Default)]
struct Run {
    wall: Duration,
    rows: u64,
    batches: u64,
    longest_batch_ms: u64,
    throttled_seconds: f64,
    last_reason: Option<String>,
    peak_rss_kib: u64,
    /// Every batch's `took_ms`, in order.
    batch_ms: Vec<u64>,
    /// The most workers the progress reported.
    most_workers: u64,
    /// zdm's own CPU seconds (user + system), its last sample before it exited.
    cpu_seconds: f64,
    /// Rows/s from the first progress report at `most_workers` to the last batch: the
    /// backfill's pace once `auto` has ramped up (None: too short to tell).
    steady_rows_per_second: Option<f64>,
}

fn backfill_with_zdm(
    zdm: &Path,
    pg: &LocalPg,
    database: &str,
    name: &str,
    config: &Path,
    stop_after: Option<Duration>,
) -> Run {
    backfill_with_url(zdm, &pg.primary().url(database), name, config, stop_after)
}

/// Runs `zdm complete NAME` (see [`run_zdm`]) of a plan the benchmark recorded itself:
/// its migrations directory (which the gates read) is an empty one beside `config`.
fn backfill_with_url(
    zdm: &Path,
    url: &str,
    name: &str,
    config: &Path,
    stop_after: Option<Duration>,
) -> Run {
    let dir = config.with_extension("migrations");
    std::fs::create_dir_all(&dir).expect("migrations dir");
    let mut args: Vec<String> = [
        "complete",
        name,
        "--confirm-contract",
        name,
        "--dir",
        &dir.display().to_string(),
        "--database-url",
        url,
        // The benchmark measures contract's backfill, not the gates' observation window.
        "--window",
        "0",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    for gate in zdm::gates::registry::names() {
        args.extend(["--override-gate".to_string(), gate.to_string()]);
    }
    run_zdm(zdm, &args, config, stop_after)
}

/// Runs zdm with `args` and `--config config` to its end (or SIGINT after
/// `stop_after`), sampling its VmHWM (peak RSS) from /proc while it runs. A run not
/// stopped by the benchmark must succeed: a figure from a failed run would be a lie.
fn run_zdm(zdm: &Path, args: &[String], config: &Path, stop_after: Option<Duration>) -> Run {
    let started = Instant::now();
    let stderr_path = config.with_extension("stderr");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let mut child: Child = Command::new(zdm)
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("zdm");
    // Read its JSON lines as they come: a run of many batches writes more than a pipe
    // holds, and zdm, like any program, waits for its reader before it can exit.
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut text).expect("zdm's stdout");
        text
    });
    let status_file = format!("/proc/{}/status", child.id());
    let pid = child.id() as i32;
    let mut cpu_ticks = 0;
    let mut peak = 0;
    let mut signalled = false;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = text
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
        }
        if let Some((ticks, _)) = process_ticks(pid, false) {
            cpu_ticks = ticks;
        }
        if child.try_wait().expect("poll").is_some() {
            break;
        }
        if let (Some(limit), false) = (stop_after, signalled) {
            if started.elapsed() >= limit {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGINT,
                )
                .expect("SIGINT");
                signalled = true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall = started.elapsed();
    let status = child.wait().expect("zdm's exit");
    let stdout = reader.join().expect("stdout reader");
    if stop_after.is_none() || !signalled {
        assert!(
            status.success(),
            "zdm {} failed ({}): {}",
            args.join(" "),
            status,
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
    }
    let mut run = Run {
        wall,
        peak_rss_kib: peak,
        cpu_seconds: cpu_ticks as f64 / CLOCK_TICKS_PER_SECOND,
        ..Run::default()
    };
    // (seconds since the epoch, rows done, workers) of each progress report, and the
    // time and rows of the last batch.
    let mut reports: Vec<(f64, u64, u64)> = Vec::new();
    let mut last_batch: Option<(f64, u64)> = None;
    let at = |value: &serde_json::Value| {
        value["at"]
            .as_str()
            .and_then(|at| at.parse::<jiff::Timestamp>().ok())
            .map(|at| at.as_microsecond() as f64 / 1e6)
    };
    for line in String::from_utf8_lossy(&stdout).lines() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        // The run's events, as `zdm attach --json` prints them (docs/control.md).
        match value["event"].as_str() {
            Some("batch_done") => {
                run.batches += 1;
                run.batch_ms.push(value["took_ms"].as_u64().unwrap_or(0));
                run.longest_batch_ms = run
                    .longest_batch_ms
                    .max(value["took_ms"].as_u64().unwrap_or(0));
                run.rows = value["rows_done"].as_u64().unwrap_or(run.rows);
                last_batch = at(&value).map(|at| (at, run.rows));
            }
            Some("progress") => {
                if let Some(at) = at(&value) {
                    reports.push((
                        at,
                        value["rows_done"].as_u64().unwrap_or(0),
                        value["workers"].as_u64().unwrap_or(1),
                    ));
                }
                run.throttled_seconds = value["throttled_ms"].as_f64().unwrap_or(0.0) / 1000.0;
                run.most_workers = run.most_workers.max(value["workers"].as_u64().unwrap_or(1));
            }
            Some("throttle_on") => run.last_reason = value["reason"].as_str().map(str::to_string),
            _ => {}
        }
    }
    let ramped = reports.iter().find(|r| r.2 == run.most_workers);
    if let (Some(&(from, rows_then, _)), Some((to, rows_end))) = (ramped, last_batch) {
        // At least a second and a tenth of the rows, or the figure says nothing.
        if to - from >= 1.0 && (rows_end - rows_then) * 10 >= run.rows {
            run.steady_rows_per_second = Some((rows_end - rows_then) as f64 / (to - from));
        }
    }
    run
}

/// Latencies of a pgbench-like mix (read a row, update it, read another) by `CLIENTS`
/// clients for up to `window` or until `done()`.
struct Latency {
    count: usize,
    p50_ms: f64,
    p99_ms: f64,
}

async fn workload(
    pool: &PgPool,
    window: Duration,
    done: impl Fn() -> bool + Send + Sync + Clone + 'static,
) -> Latency {
    let deadline = Instant::now() + window;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let pool = pool.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            while Instant::now() < deadline && !done() {
                let id = rand::thread_rng().gen_range(1..=BIG) * 2;
                let other = rand::thread_rng().gen_range(1..=BIG) * 2;
                let started = Instant::now();
                let mut tx = pool.begin().await.expect("begin");
                sqlx::query("SELECT balance FROM wl WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .expect("select");
                sqlx::query("UPDATE wl SET balance = balance + 1 WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .expect("update");
                sqlx::query("SELECT balance FROM wl WHERE id = $1")
                    .bind(other)
                    .fetch_optional(&mut *tx)
                    .await
                    .expect("select");
                tx.commit().await.expect("commit");
                times.push(started.elapsed());
            }
            times
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client"));
    }
    all.sort();
    let at = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Latency {
        count: all.len(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    }
}
