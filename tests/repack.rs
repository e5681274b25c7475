//! The table after the backfill, on real PostgreSQL through the binary: an in-place
//! backfill reports the table's size against before (heap, indexes, TOAST, dead tuples) as
//! an event and in `zdm status`; `zdm repack` rebuilds it online with pg_repack while an
//! application keeps writing, without one error, back to within 15 % of its size before the
//! backfill; without pg_repack's extension or client it says what to install, and
//! `--vacuum` runs plain VACUUM instead.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::{text, zdm};
use sqlx::{Executor, PgPool};
use zdm::localpg::LocalPg;

const MIGRATION: &str = "0001_items_add_grade";

const FILE: &str = r#"
description = "items get a grade, computed for existing rows"

[[operations]]
op = "add_column"
table = "items"
column = { name = "grade", type = "int", nullable = false, default = "0" }
up = "n % 5"
"#;

async fn total_size(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT pg_total_relation_size('public.items')")
        .fetch_one(pool)
        .await
        .expect("size")
}

/// The items table (100,000 rows), the migration file, and the migration started: its
/// backfill rewrote every row in place.
async fn backfilled(pg: &LocalPg, database: &str) -> (PgPool, String, tempfile::TempDir, i64) {
    let pool = common::database(pg, database).await;
    pool.execute(
        "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, n int NOT NULL);
         INSERT INTO items SELECT g, 'item number ' || g, g FROM generate_series(1, 100000) AS g;
         CREATE INDEX items_name_idx ON items (name);",
    )
    .await
    .expect("schema");
    pool.execute("VACUUM ANALYZE items").await.expect("vacuum");
    let before = total_size(&pool).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(format!("{MIGRATION}.toml")), FILE).expect("file");
    let url = pg.primary().url(database);
    let output = zdm(pg, &url, dir.path(), &["start", MIGRATION]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    // The report is an event: in the JSON lines (stdout is a pipe) as a log line.
    let stdout = text(&output.stdout);
    let report = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| {
            event["event"] == "log"
                && event["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("public.items after the backfill:"))
        })
        .unwrap_or_else(|| panic!("no table size report in:\n{stdout}"));
    let words = report["text"].as_str().unwrap_or_default();
    assert_eq!(report["level"], "warning", "{words}");
    for part in [
        "heap ",
        "indexes ",
        "TOAST ",
        "dead tuples",
        "zdm repack public.items",
    ] {
        assert!(words.contains(part), "{part:?} missing from: {words}");
    }
    (pool, url, dir, before)
}

/// The old application: inserts, updates and reads items through the physical table,
/// counting its operations and errors, until `stop`.
fn workload(
    pool: &PgPool,
    stop: &Arc<AtomicBool>,
    done: &Arc<AtomicU64>,
    errors: &Arc<std::sync::Mutex<Vec<String>>>,
    worker: i64,
) -> tokio::task::JoinHandle<()> {
    let (pool, stop, done, errors) = (pool.clone(), stop.clone(), done.clone(), errors.clone());
    tokio::spawn(async move {
        let mut i: i64 = 0;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let id = 1_000_000 + worker * 1_000_000 + i;
            let results = [
                sqlx::query("INSERT INTO items (id, name, n) VALUES ($1, 'new item', $2)")
                    .bind(id)
                    .bind(i32::try_from(i % 1000).unwrap_or(0))
                    .execute(&pool)
                    .await
                    .map(|_| ()),
                sqlx::query("UPDATE items SET name = name || '.' WHERE id = $1")
                    .bind((i * 7919) % 100_000 + 1)
                    .execute(&pool)
                    .await
                    .map(|_| ()),
                sqlx::query("SELECT id FROM items WHERE name = $1")
                    .bind(format!("item number {}", i % 100_000 + 1))
                    .fetch_all(&pool)
                    .await
                    .map(|_| ()),
            ];
            for result in results {
                match result {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => errors.lock().expect("lock").push(error.to_string()),
                }
            }
        }
    })
}

// Multi-threaded: the application keeps writing while the binary runs (a blocking call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repack_returns_a_backfilled_table_to_its_size_while_the_application_writes() {
    let pg = common::primary();
    let (pool, url, dir, before) = backfilled(&pg, "repack").await;
    let dir = dir.path();
    let doubled = total_size(&pool).await;
    assert!(
        doubled as f64 > before as f64 * 1.5,
        "the backfill should have left the table much larger: {before} -> {doubled}"
    );

    // zdm status shows the measure for the migration, ready to contract.
    let status = zdm(&pg, &url, dir, &["status"]);
    let said = text(&status.stdout);
    assert!(
        said.contains("table size:     public.items as last measured:"),
        "{said}"
    );

    // Without the extension in the database: what is needed, and the fallback.
    let refused = zdm(&pg, &url, dir, &["repack", "items"]);
    assert!(!refused.status.success());
    let why = text(&refused.stderr);
    assert!(
        why.contains("CREATE EXTENSION pg_repack") && why.contains("--vacuum"),
        "{why}"
    );

    pool.execute("CREATE EXTENSION pg_repack")
        .await
        .expect("pg_repack's extension (postgresql-NN-repack)");

    // A client that is not there: the package of the server's major version.
    let missing = zdm(
        &pg,
        &url,
        dir,
        &["repack", "items", "--pg-repack", "/nonexistent/pg_repack"],
    );
    assert!(!missing.status.success());
    let why = text(&missing.stderr);
    let major: i32 =
        sqlx::query_scalar("SELECT current_setting('server_version_num')::int / 10000")
            .fetch_one(&pool)
            .await
            .expect("version");
    assert!(
        why.contains(&format!("install postgresql-{major}-repack")),
        "{why}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..2)
        .map(|worker| workload(&pool, &stop, &done, &errors, worker))
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let during_start = done.load(Ordering::Relaxed);

    let repacked = {
        let command = common::zdm_command(&pg, &url, dir, &["repack", "public.items", "--json"]);
        tokio::task::spawn_blocking(move || {
            let mut command = command;
            command.output().expect("run zdm repack")
        })
        .await
        .expect("join")
    };
    let during = done.load(Ordering::Relaxed) - during_start;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("workload");
    }
    assert!(
        repacked.status.success(),
        "{}\n{}",
        text(&repacked.stderr),
        text(&repacked.stdout)
    );
    let errors = errors.lock().expect("lock").clone();
    assert!(errors.is_empty(), "the application saw errors: {errors:?}");
    assert!(during > 0, "the application did nothing during the repack");

    // Its events as JSON lines: pg_repack's phases, then the outcome with the sizes.
    let stdout = text(&repacked.stdout);
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    assert!(
        events.iter().any(|e| e["event"] == "log"
            && e["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("repack public.items: pg_repack started"))),
        "{stdout}"
    );
    let outcome = events.last().expect("an outcome");
    assert_eq!(outcome["event"], "outcome", "{stdout}");
    assert!(
        outcome["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("public.items after pg_repack:")),
        "{stdout}"
    );

    // Back to within 15 % of its size before the backfill (with the rows the application
    // added meanwhile), and nothing of pg_repack's left on it.
    let after = total_size(&pool).await;
    assert!(
        (after as f64) <= before as f64 * 1.15,
        "after pg_repack {after} bytes, before the backfill {before} bytes (doubled: {doubled})"
    );
    let triggers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.items'::regclass \
          AND tgname LIKE '%repack%'",
    )
    .fetch_one(&pool)
    .await
    .expect("triggers");
    assert_eq!(triggers, 0);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE grade = n % 5")
        .fetch_one(&pool)
        .await
        .expect("rows");
    assert!(rows >= 100_000, "rows lost or changed: {rows}");

    // zdm status now shows the table as pg_repack left it.
    let status = zdm(&pg, &url, dir, &["status"]);
    let said = text(&status.stdout);
    let line = said
        .lines()
        .find(|l| l.contains("table size:"))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        !line.contains("zdm repack"),
        "still shown as bloated: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_is_the_fallback_and_never_full() {
    let pg = common::primary();
    let (pool, url, dir, _) = backfilled(&pg, "vacuum").await;
    let file = "SELECT relfilenode::bigint FROM pg_class WHERE oid = 'public.items'::regclass";
    let file_before: i64 = sqlx::query_scalar(file)
        .fetch_one(&pool)
        .await
        .expect("file");
    let output = zdm(&pg, &url, dir.path(), &["repack", "items", "--vacuum"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("VACUUM (ANALYZE) without pg_repack"),
        "{stdout}"
    );
    assert!(stdout.contains("public.items after VACUUM:"), "{stdout}");
    // VACUUM FULL would have given the table a new file (under an ACCESS EXCLUSIVE lock).
    let file_after: i64 = sqlx::query_scalar(file)
        .fetch_one(&pool)
        .await
        .expect("file");
    assert_eq!(file_before, file_after, "the table was rewritten");
    let dead: i64 =
        sqlx::query_scalar("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'items'")
            .fetch_one(&pool)
            .await
            .expect("statistics");
    assert_eq!(dead, 0, "VACUUM left dead tuples");
    let (migration, detail) = repack_audit(&pool).await;
    assert_eq!(migration, "", "zdm repack is not a migration's");
    assert!(detail.starts_with("VACUUM of items: "), "{detail}");
}

/// The last `repack` row of zdm.audit: (migration, detail).
async fn repack_audit(pool: &PgPool) -> (String, String) {
    let row: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT migration, detail FROM zdm.audit WHERE action = 'repack' ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await
    .expect("audit");
    let (migration, detail) = row.expect("the rebuild is in zdm.audit");
    (migration, detail.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_with_repack_rebuilds_the_table_after_contract() {
    let pg = common::primary();
    let (pool, url, dir, before) = backfilled(&pg, "complete").await;
    pool.execute("CREATE EXTENSION pg_repack")
        .await
        .expect("pg_repack's extension");
    // Without pg_stat_statements the old-version gate cannot judge: overridden here, as
    // the operator would after checking.
    let output = zdm(
        &pg,
        &url,
        dir.path(),
        &[
            "complete",
            MIGRATION,
            "--confirm-contract",
            MIGRATION,
            "--window",
            "0",
            "--override-gate",
            "old-version-unused",
            "--repack",
        ],
    );
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}",
        text(&output.stderr)
    );
    assert!(stdout.contains("public.items after contract:"), "{stdout}");
    assert!(stdout.contains("public.items after pg_repack:"), "{stdout}");
    let after = total_size(&pool).await;
    assert!(
        (after as f64) <= before as f64 * 1.15,
        "after contract and pg_repack {after} bytes, before the backfill {before} bytes"
    );
    let (migration, detail) = repack_audit(&pool).await;
    assert_eq!(migration, MIGRATION, "audited as the contract's");
    assert!(
        detail.starts_with("pg_repack of public.items: "),
        "{detail}"
    );
}

/// Runs `zdm repack` (`command`) and sends it SIGINT, as a terminal's Ctrl-C, once it
/// prints a line starting with `when`; returns how it ended and everything it said on
/// stderr.
async fn interrupted(
    mut command: Command,
    when: &'static str,
) -> (std::process::ExitStatus, String) {
    use std::io::{BufRead, BufReader};
    tokio::task::spawn_blocking(move || {
        let mut child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run zdm repack");
        let stderr = child.stderr.take().expect("stderr");
        // A zdm that never ends fails the test instead of hanging it.
        let (ended, watchdog) = std::sync::mpsc::channel::<()>();
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        std::thread::spawn(move || {
            if watchdog.recv_timeout(std::time::Duration::from_secs(180))
                == Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        });
        let mut said = Vec::new();
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let line = line.expect("a line");
            if !sent && line.starts_with(when) {
                let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
                sent = true;
            }
            said.push(line);
        }
        let status = child.wait().expect("wait");
        let _ = ended.send(());
        (status, said.join("\n"))
    })
    .await
    .expect("join")
}

/// Ctrl-C while pg_repack copies: it is asked to stop, removes what it made, and the
/// table is the one it was (same file, no trigger, no log table left).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_pg_repack_cleanly() {
    let pg = common::primary();
    let pool = common::database(&pg, "abort").await;
    pool.execute(
        "CREATE EXTENSION pg_repack;
         CREATE TABLE big (id bigint PRIMARY KEY, pad text NOT NULL);
         INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 800000) AS g;",
    )
    .await
    .expect("schema");
    let file = "SELECT relfilenode::bigint FROM pg_class WHERE oid = 'public.big'::regclass";
    let file_before: i64 = sqlx::query_scalar(file)
        .fetch_one(&pool)
        .await
        .expect("file");
    let url = pg.primary().url("abort");
    let empty = tempfile::tempdir().expect("tempdir");
    let command = common::zdm_command(&pg, &url, empty.path(), &["repack", "big"]);
    let said = interrupted(command, "pg_repack: INFO: repacking table").await;
    let (status, said) = said;
    // Stopped by the operator, cleanly: the runs' exit code for a stop.
    assert_eq!(status.code(), Some(3), "{said}");
    assert!(
        said.contains("repack of public.big aborted: SIGINT received; pg_repack stopped and removed its trigger and tables; the table is unchanged"),
        "{said}"
    );
    let file_after: i64 = sqlx::query_scalar(file)
        .fetch_one(&pool)
        .await
        .expect("file");
    assert_eq!(file_before, file_after, "{said}");
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.big'::regclass) \
              + (SELECT count(*) FROM pg_tables WHERE schemaname = 'repack')",
    )
    .fetch_one(&pool)
    .await
    .expect("leftovers");
    assert_eq!(left, 0, "{said}");
}

/// A client that ignores SIGINT (and SIGTERM): a stand-in for a hung pg_repack, a script
/// given as `--pg-repack`. zdm sends SIGTERM after the grace period, then SIGKILL, says
/// so, exits as stopped, and nothing is left: no process, no lock, the table unchanged,
/// the rebuild in zdm.audit as not completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pg_repack_that_ignores_ctrl_c_is_terminated_then_killed() {
    use std::os::unix::fs::PermissionsExt;
    let pg = common::primary();
    let pool = common::database(&pg, "stubborn").await;
    pool.execute(
        "CREATE EXTENSION pg_repack;
         CREATE TABLE big (id bigint PRIMARY KEY, pad text NOT NULL);
         INSERT INTO big SELECT g, 'x' FROM generate_series(1, 1000) AS g;",
    )
    .await
    .expect("schema");
    let bin = tempfile::tempdir().expect("tempdir");
    let pid_file = bin.path().join("stand-in.pid");
    let stand_in = bin.path().join("pg_repack");
    std::fs::write(
        &stand_in,
        format!(
            "#!/bin/sh\n# Ignores SIGINT and SIGTERM, as a hung client would.\n\
             trap '' INT TERM\necho $$ > '{}'\n\
             echo 'INFO: repacking table \"public\".\"big\"' >&2\n\
             while :; do sleep 1; done\n",
            pid_file.display()
        ),
    )
    .expect("the stand-in");
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755))
        .expect("executable");
    let url = pg.primary().url("stubborn");
    let client = stand_in.to_str().expect("utf-8");
    let command = common::zdm_command(
        &pg,
        &url,
        bin.path(),
        &[
            "repack",
            "big",
            "--pg-repack",
            client,
            "--wait-timeout",
            "1",
        ],
    );
    let (status, said) = interrupted(command, "pg_repack: INFO: repacking table").await;
    assert_eq!(status.code(), Some(3), "stopped, not failed: {said}");
    assert!(
        said.contains("pg_repack did not stop within 6.0 s of SIGINT: sending SIGTERM"),
        "{said}"
    );
    assert!(
        said.contains("pg_repack is still running 5.0 s after SIGTERM: killing it (SIGKILL)"),
        "{said}"
    );
    assert!(
        said.contains(
            "repack of public.big aborted: SIGINT received; pg_repack did not stop within 6.0 s \
             of SIGINT nor within 5.0 s of SIGTERM and was killed (SIGKILL); it left no trigger \
             or log table on it; the table is unchanged"
        ),
        "{said}"
    );
    // The stand-in is gone: killed, and reaped by zdm.
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("the stand-in's pid")
        .trim()
        .parse()
        .expect("a pid");
    let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None);
    assert_eq!(gone, Err(nix::errno::Errno::ESRCH), "the stand-in lives on");
    let (migration, detail) = repack_audit(&pool).await;
    assert_eq!(migration, "");
    assert!(
        detail.starts_with("pg_repack of big did not complete: repack of public.big aborted"),
        "{detail}"
    );
    let locks: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE relation = 'public.big'::regclass")
            .fetch_one(&pool)
            .await
            .expect("locks");
    assert_eq!(locks, 0);
}
