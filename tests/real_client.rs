//! A real application through a first migration: two Python processes with psycopg 3
//! (server-side prepared statements, `prepare_threshold=0`, and a connection pool), one
//! on the baseline version (`zdm init`) and one on the new version, each writing at a
//! bounded rate with prepared `SELECT *` and `... RETURNING *`, while the real binary runs
//! `zdm init`, `zdm start`, `zdm rollback`, `zdm start` and `zdm complete` of a migration
//! with a backfill (change_type + add_column, set_not_null + drop_column, split_table).
//! Zero application errors, and at the end every row equals what an oracle computes. The
//! new application rolls out once the new version is published (`zdm start` done: it is
//! not usable during the backfill, by design, docs/engine.md) and the old one retires
//! before contract, as in a real rollout.
//!
//! Needs python3 with psycopg and psycopg_pool (`.ci/run` installs them with pip).

mod plan_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use plan_support::{common, fetch_one};
use zdm::localpg::LocalPg;

const ROWS: i64 = 100_000;

/// One first migration and the two applications around it.
struct Case {
    database: &'static str,
    migration: &'static str,
    /// Creates and fills the table (ROWS rows with ids 1..=ROWS).
    setup: &'static str,
    file: &'static str,
    /// The old application's statements (on the baseline version); its fresh ids start at
    /// 1,000,000.
    old: &'static [&'static str],
    /// The new application's statements; its fresh ids start at 2,000,000.
    new: &'static [&'static str],
    /// Rows differing from the oracle after complete (one number, as text).
    wrong: &'static str,
}

const CHANGE_TYPE_AND_ADD_COLUMN: Case = Case {
    database: "client_change_type",
    migration: "0001_price_cents_and_label",
    setup: "CREATE TABLE items (id bigint PRIMARY KEY, title text NOT NULL, price numeric(10,2) NOT NULL);
            INSERT INTO items SELECT i, 'row ' || i, (i % 1000) / 10.0 FROM generate_series(1, 100000) i;",
    file: r#"
description = "prices in cents, and a label every row has"

[[operations]]
op = "change_type"
table = "items"
column = "price"
type = "bigint"
up = "(price * 100)::bigint"
down = "price / 100.0"

[[operations]]
op = "add_column"
table = "items"
column = { name = "label", type = "text", nullable = false }
up = "'item ' || id"
"#,
    old: &[
        "SELECT * FROM items WHERE id = %(rid)s",
        "INSERT INTO items (id, title, price) VALUES (%(id)s, 'old', (%(id)s %% 1000) / 10.0) RETURNING *",
        "UPDATE items SET title = 'old upd' WHERE id = %(rid)s RETURNING *",
    ],
    new: &[
        "SELECT * FROM items WHERE id = %(rid)s",
        "INSERT INTO items (id, title, price, label) VALUES (%(id)s, 'new', (%(id)s %% 1000) * 10, 'new ' || %(id)s) RETURNING *",
        "UPDATE items SET title = 'new upd' WHERE id = %(rid)s RETURNING *",
    ],
    wrong: "SELECT count(*)::text FROM items WHERE NOT CASE
              WHEN id <= 100000 THEN price = ((id % 1000) / 10.0 * 100)::bigint
                   AND label = 'item ' || id AND title IN ('row ' || id, 'old upd', 'new upd')
              WHEN id >= 2000000 THEN price = (id % 1000) * 10 AND label = 'new ' || id
                   AND title IN ('new', 'new upd')
              ELSE price = ((id % 1000) / 10.0 * 100)::bigint AND label = 'item ' || id
                   AND title IN ('old', 'old upd', 'new upd') END
            OR (SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
                  FROM pg_attribute WHERE attrelid = 'items'::regclass AND attnum > 0 AND NOT attisdropped)
               <> 'id bigint, title text, price bigint, label text'",
};

const SET_NOT_NULL_AND_DROP_COLUMN: Case = Case {
    database: "client_not_null",
    migration: "0001_phone_required_no_nickname",
    setup: "CREATE TABLE people (id bigint PRIMARY KEY, name text NOT NULL, phone text, nickname text NOT NULL);
            INSERT INTO people SELECT i, 'row ' || i, CASE WHEN i % 2 = 0 THEN NULL ELSE '+' || i END, 'nick ' || i
              FROM generate_series(1, 100000) i;",
    file: r#"
[[operations]]
op = "set_not_null"
table = "people"
column = "phone"
up = "coalesce(phone, 'none')"

[[operations]]
op = "drop_column"
table = "people"
column = "nickname"
down = "'n/a'"
"#,
    old: &[
        "SELECT * FROM people WHERE id = %(rid)s",
        "INSERT INTO people (id, name, phone, nickname) VALUES (%(id)s, 'old', NULL, 'nick') RETURNING *",
        "UPDATE people SET phone = NULL WHERE id = %(rid)s RETURNING *",
    ],
    new: &[
        "SELECT * FROM people WHERE id = %(rid)s",
        "INSERT INTO people (id, name, phone) VALUES (%(id)s, 'new', '+1') RETURNING *",
        "UPDATE people SET name = 'new upd' WHERE id = %(rid)s RETURNING *",
    ],
    wrong: "SELECT count(*)::text FROM people WHERE NOT CASE
              WHEN id <= 100000 THEN phone = 'none' OR (id % 2 = 1 AND phone = '+' || id)
              WHEN id >= 2000000 THEN phone = '+1' AND name IN ('new', 'new upd')
              ELSE phone = 'none' AND name IN ('old', 'new upd') END
            OR EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'people'::regclass AND attname = 'nickname' AND NOT attisdropped)
            OR NOT (SELECT attnotnull FROM pg_attribute WHERE attrelid = 'people'::regclass AND attname = 'phone')",
};

const SPLIT_TABLE: Case = Case {
    database: "client_split",
    migration: "0001_orders_notes_apart",
    setup: "CREATE TABLE orders (id bigint PRIMARY KEY, total bigint NOT NULL, notes text);
            INSERT INTO orders SELECT i, i % 500, 'note ' || i FROM generate_series(1, 100000) i;",
    file: r#"
[[operations]]
op = "split_table"
table = "orders"
columns = ["notes"]
new_table = "order_notes"
"#,
    old: &[
        "SELECT * FROM orders WHERE id = %(rid)s",
        "INSERT INTO orders (id, total, notes) VALUES (%(id)s, 1, 'old') RETURNING *",
        "UPDATE orders SET notes = 'old upd' WHERE id = %(rid)s RETURNING *",
    ],
    new: &[
        "SELECT * FROM orders o JOIN order_notes n USING (id) WHERE o.id = %(rid)s",
        "INSERT INTO orders (id, total) VALUES (%(id)s, 2) RETURNING *",
        "UPDATE order_notes SET notes = 'new upd' WHERE id = %(rid)s RETURNING *",
    ],
    wrong: "SELECT count(*)::text FROM orders o LEFT JOIN order_notes n USING (id) WHERE NOT CASE
              WHEN o.id <= 100000 THEN n.notes IN ('note ' || o.id, 'old upd', 'new upd')
              WHEN o.id >= 2000000 THEN n.notes IS NULL AND o.total = 2
              ELSE n.notes IN ('old', 'old upd', 'new upd') END
            OR EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'notes' AND NOT attisdropped)",
};

fn python_ready() {
    let probe = Command::new("python3")
        .args(["-c", "import psycopg, psycopg_pool"])
        .output();
    match probe {
        Ok(output) if output.status.success() => {}
        _ => panic!(
            "this test needs python3 with psycopg 3 and psycopg_pool: \
             pip install 'psycopg[binary]' psycopg-pool (.ci/run does)"
        ),
    }
}

struct App {
    child: Child,
    stop: PathBuf,
    name: &'static str,
}

impl App {
    fn start(
        name: &'static str,
        url: &str,
        search_path: &str,
        statements: &[&str],
        first_id: i64,
        dir: &Path,
    ) -> App {
        let stop = dir.join(format!("{name}.stop"));
        let spec = serde_json::json!({
            "statements": statements,
            "first_id": first_id,
            "max_rid": ROWS,
            "rate": 60,
            "threads": 3,
        });
        let child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/app.py"))
            .args([url, search_path, &spec.to_string()])
            .arg(&stop)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the Python application");
        App { child, stop, name }
    }

    /// Stops it and returns how many operations it ran; panics on any application error.
    fn finish(self) -> u64 {
        std::fs::write(&self.stop, "stop").expect("stop file");
        let output = self.child.wait_with_output().expect("app ends");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{} app failed: {}",
            self.name,
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("report");
        assert_eq!(
            report["error_count"], 0,
            "{} application errors: {}",
            self.name, report["errors"]
        );
        report["ops"].as_u64().unwrap_or(0)
    }
}

fn zdm(pg: &LocalPg, database: &str, root: &Path, args: &[&str]) -> Output {
    let output = Command::new(common::zdm_binary())
        .args(args)
        .arg("--dir")
        .arg(root.join("migrations"))
        .args(["--config"])
        .arg(root.join("zdm.toml"))
        .args(["--database-url", &pg.primary().url(database)])
        .env_remove("DATABASE_URL")
        .env("ZDM_LOG_FILE", root.join("zdm.log"))
        .env("XDG_RUNTIME_DIR", root.join("run"))
        .env("XDG_STATE_HOME", root.join("state"))
        .output()
        .expect("run zdm");
    assert!(
        output.status.success(),
        "zdm {args:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

async fn run(case: &Case) {
    python_ready();
    let pg = common::primary();
    let database = case.database;
    let migration = case.migration;
    let pool = common::database(&pg, database).await;
    sqlx::raw_sql(case.setup)
        .execute(&pool)
        .await
        .expect("setup");
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(root.path().join("migrations")).expect("dir");
    std::fs::create_dir_all(root.path().join("run")).expect("dir");
    std::fs::write(
        root.path()
            .join("migrations")
            .join(format!("{migration}.toml")),
        case.file,
    )
    .expect("file");
    // A backfill of a few seconds, so the applications write during it.
    std::fs::write(
        root.path().join("zdm.toml"),
        "[backfill]\nmax_rows_per_second = 40000\n\n[throttle]\nmax_host_cpu_percent = \"none\"\n\
         max_canary_slowdown = \"none\"\nmax_active_sessions_factor = \"none\"\n",
    )
    .expect("zdm.toml");
    let url = pg.primary().url(database);

    // zdm plan warns while the application is on the physical tables; zdm init gives it
    // the baseline version.
    let planned = zdm(&pg, database, root.path(), &["plan", migration]);
    assert!(
        String::from_utf8_lossy(&planned.stdout)
            .contains("WARNING: applications still on the physical tables"),
        "{}",
        String::from_utf8_lossy(&planned.stdout)
    );
    let init = zdm(&pg, database, root.path(), &["init"]);
    let init_text = String::from_utf8_lossy(&init.stdout);
    assert!(
        init_text.contains("SET search_path TO \"public_baseline\""),
        "{init_text}"
    );
    let again = zdm(&pg, database, root.path(), &["init"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already there"));
    let status = zdm(&pg, database, root.path(), &["status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout)
            .contains("baseline: SET search_path TO \"public_baseline\""),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    let planned = zdm(&pg, database, root.path(), &["plan", migration]);
    assert!(
        String::from_utf8_lossy(&planned.stdout).contains("Old version: public_baseline"),
        "{}",
        String::from_utf8_lossy(&planned.stdout)
    );

    let old = App::start(
        "old",
        &url,
        "\"public_baseline\"",
        case.old,
        1_000_000,
        root.path(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    zdm(&pg, database, root.path(), &["start", migration]);
    zdm(&pg, database, root.path(), &["rollback", migration]);
    zdm(&pg, database, root.path(), &["start", migration]);

    // Ready to contract: both versions are offered, the baseline and the new one.
    let status = zdm(&pg, database, root.path(), &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("baseline: SET search_path TO \"public_baseline\"")
            && text.contains(&format!(
                "{migration}: SET search_path TO \"public_{migration}\""
            )),
        "{text}"
    );
    // The new application rolls out, then the old one retires.
    let new = App::start(
        "new",
        &url,
        &format!("\"public_{migration}\""),
        case.new,
        2_000_000,
        root.path(),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let old_ops = old.finish();
    let mut complete = vec![
        "complete",
        migration,
        "--confirm-contract",
        migration,
        "--window",
        "0",
    ];
    // This test is about the applications; the gates have their own tests.
    for gate in zdm::gates::registry::names() {
        complete.extend(["--override-gate", gate]);
    }
    zdm(&pg, database, root.path(), &complete);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let new_ops = new.finish();
    assert!(
        old_ops > 50 && new_ops > 50,
        "old {old_ops}, new {new_ops} operations"
    );

    assert_eq!(
        fetch_one(&pool, case.wrong).await,
        "0",
        "{migration}: rows differing from the oracle"
    );
    pool.close().await;
}

#[tokio::test]
async fn change_type_and_add_column() {
    run(&CHANGE_TYPE_AND_ADD_COLUMN).await;
}

#[tokio::test]
async fn set_not_null_and_drop_column() {
    run(&SET_NOT_NULL_AND_DROP_COLUMN).await;
}

#[tokio::test]
async fn split_table() {
    run(&SPLIT_TABLE).await;
}
