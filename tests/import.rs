//! `zdm import` on real directories of other tools, then the imported files run by zdm on a
//! real database: a Flyway history (V1 tables, V2 a NOT NULL column with a default, V3 an
//! index, V4 a foreign key, V5 a data update, R__ a view) and the same history as
//! golang-migrate (with down files) and sqlx directories.

mod common;

use std::path::Path;
use std::process::Command;

const V1: &str = "CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL);\n\
                  CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, \
                  total_cents bigint NOT NULL DEFAULT 0);\n";
const V2: &str = "ALTER TABLE orders ADD COLUMN status text NOT NULL DEFAULT 'new';\n";
const V3: &str = "CREATE INDEX orders_customer_idx ON orders (customer_id);\n";
const V4: &str = "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) \
                  REFERENCES customers (id);\n";
const V5: &str = "UPDATE orders SET status = 'shipped' WHERE total_cents > 1000;\n";
const VIEW: &str = "CREATE OR REPLACE VIEW big_orders AS SELECT id, total_cents FROM orders \
                    WHERE total_cents > 1000;\n";

fn zdm(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(common::zdm_binary())
        .args(args)
        .env_remove("ZDM_CONFIG")
        .output()
        .expect("run zdm");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

fn import(tool: &str, from: &Path, into: &Path) -> String {
    let (code, out, err) = zdm(&[
        "import",
        "--from",
        tool,
        from.to_str().expect("path"),
        "--into",
        into.to_str().expect("path"),
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    out
}

/// How a test names the migration `zdm start` runs.
#[derive(Clone, Copy, PartialEq)]
enum Start {
    Named,
    /// The next one, as the ordering rule picks it.
    Next,
}

/// A zdm.toml for the runs of these tests: no gate window, no host-CPU or canary throttle
/// (a busy test machine must not hold them). Not in the migrations directory: every
/// .toml there is a migration.
struct Settings {
    dir: tempfile::TempDir,
}

impl Settings {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("zdm.toml"),
            format!("[gates]\nwindow_s = 0\n\n{}", common::THROTTLE_OFF),
        )
        .expect("config");
        Settings { dir }
    }

    /// `zdm start` then `zdm complete NAME` with every gate overridden (nothing here is
    /// about the gates), both exiting 0.
    fn start_and_complete(&self, name: &str, start: Start, dir: &str, url: &str) {
        let config = self.dir.path().join("zdm.toml");
        let config = config.to_str().expect("path");
        let common = ["--dir", dir, "--database-url", url, "--config", config];
        let mut args = vec!["start"];
        if start == Start::Named {
            args.push(name);
        }
        args.extend(common);
        let (code, out, err) = zdm(&args);
        assert_eq!(code, Some(0), "start (of {name}): {out}\n{err}");
        let gates: Vec<String> = zdm::gates::registry::names()
            .into_iter()
            .flat_map(|g| ["--override-gate".to_string(), g.to_string()])
            .collect();
        let mut args = vec!["complete", name, "--confirm-contract", name];
        args.extend(common);
        args.extend(gates.iter().map(String::as_str));
        let (code, out, err) = zdm(&args);
        assert_eq!(code, Some(0), "complete {name}: {out}\n{err}");
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flyway_history_is_imported_typed_where_zdm_understands_it_and_runs() {
    let flyway = tempfile::tempdir().expect("tempdir");
    write(flyway.path(), "V1__create_tables.sql", V1);
    write(flyway.path(), "V2__order_status.sql", V2);
    write(flyway.path(), "V3__orders_customer_index.sql", V3);
    write(flyway.path(), "V4__orders_customer_fk.sql", V4);
    write(flyway.path(), "V5__ship_big_orders.sql", V5);
    write(flyway.path(), "R__big_orders_view.sql", VIEW);
    let into = tempfile::tempdir().expect("tempdir");
    let report = import("flyway", flyway.path(), into.path());
    assert_eq!(
        names(into.path()),
        [
            "0001_create_tables.toml",
            "0002_order_status.toml",
            "0003_orders_customer_index.toml",
            "0004_orders_customer_fk.toml",
            "0005_ship_big_orders.toml",
            "0006_big_orders_view.toml",
        ]
    );
    for expected in [
        "typed    create_table customers",
        "typed    create_table orders",
        "typed    add_column orders.status",
        "typed    create_index orders_customer_idx on orders",
        "typed    add_foreign_key orders_customer_fk on orders",
        "raw_sql  UPDATE orders SET status = 'shipped' WHERE total_cents > 1000;",
        "raw_sql  CREATE OR REPLACE VIEW big_orders",
        "a Flyway repeatable",
        "6 migration(s) imported: 5 typed operation(s), 2 statement(s) kept as raw_sql, 0 problem(s)",
    ] {
        assert!(report.contains(expected), "{expected} missing:\n{report}");
    }
    let index =
        std::fs::read_to_string(into.path().join("0003_orders_customer_index.toml")).expect("read");
    assert!(index.contains("op = \"create_index\""), "{index}");
    let (code, out, err) = zdm(&["validate", "--dir", into.path().to_str().expect("path")]);
    assert_eq!(code, Some(0), "the imported files validate: {out}\n{err}");

    // zdm runs them, in order, start to complete, on a real database.
    let pg = tokio::task::spawn_blocking(common::primary)
        .await
        .expect("join");
    let pool = common::database(&pg, "shop").await;
    let url = pg.primary().url("shop");
    let dir = into.path().to_str().expect("path");
    let settings = Settings::new();
    for name in names(into.path())
        .iter()
        .filter_map(|n| n.strip_suffix(".toml"))
    {
        settings.start_and_complete(name, Start::Named, dir, &url);
    }
    sqlx::raw_sql(
        "INSERT INTO customers VALUES (1, 'a@example.com'); \
         INSERT INTO orders (id, customer_id, total_cents) VALUES (1, 1, 5000);",
    )
    .execute(&pool)
    .await
    .expect("the imported schema takes the application's rows");
    let (status, big): (String, i64) =
        sqlx::query_as("SELECT o.status, (SELECT count(*) FROM big_orders) FROM orders o")
            .fetch_one(&pool)
            .await
            .expect("read");
    assert_eq!((status.as_str(), big), ("new", 1));
    let refused = sqlx::raw_sql("INSERT INTO orders (id, customer_id) VALUES (2, 99)")
        .execute(&pool)
        .await;
    assert!(refused.is_err(), "the foreign key is in place");
}

#[test]
fn the_same_history_from_golang_migrate_and_sqlx_directories() {
    let migrate = tempfile::tempdir().expect("tempdir");
    write(migrate.path(), "000001_create_tables.up.sql", V1);
    write(
        migrate.path(),
        "000001_create_tables.down.sql",
        "DROP TABLE orders;\nDROP TABLE customers;\n",
    );
    write(migrate.path(), "000002_order_status.up.sql", V2);
    write(
        migrate.path(),
        "000002_order_status.down.sql",
        "ALTER TABLE orders DROP COLUMN status;\n",
    );
    write(
        migrate.path(),
        "000003_ship_big_orders.up.sql",
        &format!("BEGIN;\n{V5}COMMIT;\n"),
    );
    write(
        migrate.path(),
        "000003_ship_big_orders.down.sql",
        "UPDATE orders SET status = 'new' WHERE status = 'shipped';\n",
    );
    let into = tempfile::tempdir().expect("tempdir");
    let report = import("golang-migrate", migrate.path(), into.path());
    assert!(
        report.contains("its down script is not needed: zdm rolls typed operations back itself"),
        "{report}"
    );
    assert!(report.contains("left out BEGIN;"), "{report}");
    let update =
        std::fs::read_to_string(into.path().join("0003_ship_big_orders.toml")).expect("read");
    assert!(
        update.contains("down = \"UPDATE orders SET status = 'new' WHERE status = 'shipped';\""),
        "the down file is the raw_sql's rollback: {update}"
    );
    assert!(
        !update.contains("COMMIT"),
        "a COMMIT would end zdm's own transaction: {update}"
    );
    let (code, out, err) = zdm(&["validate", "--dir", into.path().to_str().expect("path")]);
    assert_eq!(code, Some(0), "{out}\n{err}");

    let sqlx_dir = tempfile::tempdir().expect("tempdir");
    write(sqlx_dir.path(), "20240101000000_create_tables.sql", V1);
    write(sqlx_dir.path(), "20240102000000_order_status.sql", V2);
    write(
        sqlx_dir.path(),
        "20240103000000_orders_customer_index.sql",
        V3,
    );
    let into = tempfile::tempdir().expect("tempdir");
    let report = import("sqlx", sqlx_dir.path(), into.path());
    assert!(
        report.contains(
            "3 migration(s) imported: 4 typed operation(s), 0 statement(s) kept as raw_sql"
        ),
        "{report}"
    );
    // Nothing is overwritten.
    let (code, _, err) = zdm(&[
        "import",
        "--from",
        "sqlx",
        sqlx_dir.path().to_str().expect("path"),
        "--into",
        into.path().to_str().expect("path"),
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("exists already"), "{err}");
}

/// Flyway applied V1–V2 on the database; `--adopt` records them complete in zdm's state,
/// and zdm runs the rest (V3 index, V4 foreign key, V5 update, the view) start to
/// complete while an application writes, without one application error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_takes_over_from_flyway_and_the_rest_runs_under_a_writing_application() {
    let flyway = tempfile::tempdir().expect("tempdir");
    write(flyway.path(), "V1__create_tables.sql", V1);
    write(flyway.path(), "V2__order_status.sql", V2);
    write(flyway.path(), "V3__orders_customer_index.sql", V3);
    write(flyway.path(), "V4__orders_customer_fk.sql", V4);
    write(flyway.path(), "V5__ship_big_orders.sql", V5);
    write(flyway.path(), "R__big_orders_view.sql", VIEW);
    let pg = tokio::task::spawn_blocking(common::primary)
        .await
        .expect("join");
    let pool = common::database(&pg, "shop").await;
    let url = pg.primary().url("shop");
    // What Flyway did: V1 and V2, and its history table.
    sqlx::raw_sql(&format!(
        "{V1}{V2}\
         CREATE TABLE flyway_schema_history (installed_rank int PRIMARY KEY, version text, \
           description text, type text, script text, checksum int, installed_by text, \
           installed_on timestamp DEFAULT now(), execution_time int, success boolean); \
         INSERT INTO flyway_schema_history VALUES \
           (1, '1', 'create tables', 'SQL', 'V1__create_tables.sql', 1, 'app', now(), 5, true), \
           (2, '2', 'order status', 'SQL', 'V2__order_status.sql', 2, 'app', now(), 5, true); \
         INSERT INTO customers SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 50) g; \
         INSERT INTO orders (id, customer_id, total_cents) \
           SELECT g, 1 + g % 50, g * 10 FROM generate_series(1, 2000) g;"
    ))
    .execute(&pool)
    .await
    .expect("flyway's V1 and V2");
    let into = tempfile::tempdir().expect("tempdir");
    let (code, out, err) = zdm(&[
        "import",
        "--from",
        "flyway",
        flyway.path().to_str().expect("path"),
        "--into",
        into.path().to_str().expect("path"),
        "--adopt",
        "--database-url",
        &url,
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("adopted  0001_create_tables"), "{out}");
    assert!(out.contains("adopted  0002_order_status"), "{out}");
    assert!(
        out.contains("2 migration(s) flyway applied recorded as complete"),
        "{out}"
    );
    let recorded: Vec<(String, String)> =
        sqlx::query_as("SELECT name, status FROM zdm.migrations ORDER BY name")
            .fetch_all(&pool)
            .await
            .expect("zdm's state");
    assert_eq!(
        recorded,
        [
            ("0001_create_tables".to_string(), "complete".to_string()),
            ("0002_order_status".to_string(), "complete".to_string())
        ]
    );

    // The application writes all along.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let pool = pool.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut ok, mut errors) = (0u64, Vec::new());
            let mut id = 10_000i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                id += 1;
                let written = sqlx::query(
                    "INSERT INTO orders (id, customer_id, total_cents, status) VALUES ($1, $2, $3, 'new')",
                )
                .bind(id)
                .bind(1 + id % 50)
                .bind(id % 3000)
                .execute(&pool)
                .await;
                match written {
                    Ok(_) => ok += 1,
                    Err(e) => errors.push(e.to_string()),
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            (ok, errors)
        })
    };
    let settings = Settings::new();
    let dir = into.path().to_str().expect("path");
    for name in [
        "0003_orders_customer_index",
        "0004_orders_customer_fk",
        "0005_ship_big_orders",
        "0006_big_orders_view",
    ] {
        settings.start_and_complete(name, Start::Next, dir, &url);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (written, errors) = writer.await.expect("writer");
    assert!(written > 0);
    assert!(errors.is_empty(), "application errors: {errors:?}");
    let (indexed, fk): (bool, bool) = sqlx::query_as(
        "SELECT to_regclass('orders_customer_idx') IS NOT NULL, \
                EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'orders_customer_fk' AND convalidated)",
    )
    .fetch_one(&pool)
    .await
    .expect("read");
    assert!(
        indexed && fk,
        "the index and the validated foreign key are in place"
    );
    let (code, out, err) = zdm(&["status", "--dir", dir, "--database-url", &url]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("0001_create_tables"), "{out}");
}
