//! Test-only helpers for the planner's integration tests: the demo schema in a fresh
//! database, a plain step runner and a simple backfill loop. The real engine (lock_timeout
//! retries, checkpoints, throttling) lives in `zdm::engine`; this runner is for tests only.
#![allow(dead_code)]

use std::time::Duration;

use sqlx::{Connection, Executor, PgPool, Row};
use zdm::db::catalog::Catalog;
use zdm::db::quote_ident;
use zdm::demo::Scale;
use zdm::localpg::LocalPg;
use zdm::migration::{Migration, Operation};
use zdm::plan::{Phase, Plan, Step, StepAction};

#[path = "../common/mod.rs"]
pub mod common;

/// A fresh database holding the demo shop schema with a little data.
pub async fn demo_database(pg: &LocalPg, name: &str) -> PgPool {
    let pool = common::database(pg, name).await;
    let scale = Scale {
        customers: 100,
        products: 20,
        orders: 200,
    };
    zdm::demo::schema::load(&pool, scale, |_| {})
        .await
        .expect("load the demo schema");
    pool
}

pub async fn catalog(pool: &PgPool) -> Catalog {
    let mut conn = pool.acquire().await.expect("connection");
    Catalog::load(&mut conn).await.expect("introspect")
}

/// A migration from TOML operations (the `[[operations]]` array of a migration file).
pub fn migration(name: &str, toml_text: &str) -> Migration {
    #[derive(serde::Deserialize)]
    struct File {
        operations: Vec<Operation>,
    }
    let file: File = toml::from_str(toml_text).expect("valid operations");
    Migration {
        name: name.to_string(),
        description: None,
        operations: file.operations,
        verify: Vec::new(),
        checksum: String::new(),
    }
}

/// Runs one phase's steps in order, as plainly as possible (test-only runner).
pub async fn run_phase(pool: &PgPool, plan: &Plan, phase: Phase) {
    for step in plan.phase(phase) {
        run_step(pool, step).await;
    }
}

pub async fn run_step(pool: &PgPool, step: &Step) {
    let mut conn = pool.acquire().await.expect("connection");
    conn.execute("SET lock_timeout = '10s'").await.expect("set");
    match &step.action {
        StepAction::Sql { sql, transactional } => {
            if *transactional {
                let mut tx = conn.begin().await.expect("begin");
                tx.execute(sql.as_str())
                    .await
                    .unwrap_or_else(|e| panic!("step {:?} failed: {e}\n{sql}", step.description));
                tx.commit().await.expect("commit");
            } else {
                conn.execute(sql.as_str())
                    .await
                    .unwrap_or_else(|e| panic!("step {:?} failed: {e}\n{sql}", step.description));
            }
        }
        StepAction::Backfill(backfill) => {
            // One pass in key order, batches of 50 (single-column keys, as in the demo).
            let key = quote_ident(&backfill.key_columns[0]);
            let keys: Vec<String> = sqlx::query(&format!(
                "SELECT {key}::text AS k FROM {} ORDER BY {key}",
                backfill.table
            ))
            .fetch_all(&mut *conn)
            .await
            .expect("keys")
            .iter()
            .map(|row| row.get("k"))
            .collect();
            let assignments: Vec<String> = backfill
                .assignments
                .iter()
                .map(|(column, expression)| format!("{} = ({expression})", quote_ident(column)))
                .collect();
            let predicate = backfill
                .predicate
                .as_ref()
                .map(|p| format!(" AND ({p})"))
                .unwrap_or_default();
            let sql = format!(
                "UPDATE {} SET {} WHERE {key}::text = ANY($1){predicate}",
                backfill.table,
                assignments.join(", ")
            );
            for batch in keys.chunks(50) {
                sqlx::query(&sql)
                    .bind(batch)
                    .execute(&mut *conn)
                    .await
                    .unwrap_or_else(|e| panic!("backfill failed: {e}\n{sql}"));
            }
        }
    }
}

/// A connection pool whose sessions use `search_path` (an application version).
pub async fn client(pg: &LocalPg, database: &str, search_path: &str) -> PgPool {
    let path = search_path.to_string();
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .after_connect(move |conn, _| {
            let path = path.clone();
            Box::pin(async move {
                conn.execute(format!("SET search_path TO {path}").as_str())
                    .await
                    .map(|_| ())
            })
        })
        .connect_with(pg.primary().connect_options(database))
        .await
        .expect("client pool")
}

/// Runs two lists of statements at the same time, interleaved, one per version; every
/// statement must succeed.
pub async fn write_concurrently(
    old: &PgPool,
    old_sql: Vec<String>,
    new: &PgPool,
    new_sql: Vec<String>,
) {
    let run = |pool: PgPool, statements: Vec<String>, who: &'static str| async move {
        for sql in statements {
            sqlx::raw_sql(&sql)
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("{who} version: {e}\n{sql}"));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::join!(
        run(old.clone(), old_sql, "old"),
        run(new.clone(), new_sql, "new")
    );
}

/// `pg_dump --schema-only` of a database (for "exactly as before" comparisons).
pub fn schema_dump(pg: &LocalPg, database: &str) -> String {
    dump_schema(pg, database, &[])
}

/// `pg_dump --schema-only` without zdm's own state schema (which the first start creates
/// and a rollback keeps).
pub fn schema_dump_without_zdm(pg: &LocalPg, database: &str) -> String {
    dump_schema(pg, database, &["--exclude-schema=zdm"])
}

fn dump_schema(pg: &LocalPg, database: &str, extra: &[&str]) -> String {
    let output = std::process::Command::new(pg.binaries().tool("pg_dump"))
        .args(["--schema-only", "--no-owner"])
        .args(extra)
        .arg(format!("--dbname={}", pg.primary().url(database)))
        .output()
        .expect("run pg_dump");
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // pg_dump 15.14+ brackets its output with a random \restrict key: not schema.
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn fetch_strings(pool: &PgPool, sql: &str) -> Vec<String> {
    sqlx::query(sql)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"))
        .iter()
        .map(|row| {
            row.get::<Option<String>, _>(0)
                .unwrap_or_else(|| "NULL".to_string())
        })
        .collect()
}

pub async fn fetch_one(pool: &PgPool, sql: &str) -> String {
    fetch_strings(pool, sql)
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no row: {sql}"))
}

/// Runs a transactional step and returns the strongest lock it took on each table that
/// existed before it (tables it creates are invisible to others until it commits).
pub async fn run_step_observing_locks(
    pool: &PgPool,
    step: &Step,
) -> Vec<(String, zdm::plan::LockLevel)> {
    use zdm::plan::LockLevel;
    let StepAction::Sql {
        sql,
        transactional: true,
    } = &step.action
    else {
        run_step(pool, step).await;
        return Vec::new();
    };
    let mut conn = pool.acquire().await.expect("connection");
    let existing: Vec<String> =
        sqlx::query("SELECT c.oid::regclass::text FROM pg_class c WHERE c.relkind IN ('r', 'p')")
            .fetch_all(&mut *conn)
            .await
            .expect("tables")
            .iter()
            .map(|row| row.get(0))
            .collect();
    let mut tx = conn.begin().await.expect("begin");
    tx.execute(sql.as_str())
        .await
        .unwrap_or_else(|e| panic!("step {:?} failed: {e}\n{sql}", step.description));
    let rows = sqlx::query(
        "SELECT l.relation::regclass::text AS rel, l.mode FROM pg_locks l
         WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted",
    )
    .fetch_all(&mut *tx)
    .await
    .expect("locks");
    tx.commit().await.expect("commit");
    let level = |mode: &str| match mode {
        "AccessShareLock" => LockLevel::AccessShare,
        "RowShareLock" => LockLevel::RowShare,
        "RowExclusiveLock" => LockLevel::RowExclusive,
        "ShareUpdateExclusiveLock" => LockLevel::ShareUpdateExclusive,
        "ShareLock" => LockLevel::Share,
        "ShareRowExclusiveLock" => LockLevel::ShareRowExclusive,
        "ExclusiveLock" => LockLevel::Exclusive,
        _ => LockLevel::AccessExclusive,
    };
    let mut strongest: Vec<(String, LockLevel)> = Vec::new();
    for row in &rows {
        let relation: String = row.get("rel");
        if !existing.contains(&relation) {
            continue;
        }
        let mode: String = row.get("mode");
        match strongest.iter_mut().find(|(r, _)| *r == relation) {
            Some((_, current)) => *current = (*current).max(level(&mode)),
            None => strongest.push((relation, level(&mode))),
        }
    }
    strongest
}
