//! A real application through a first migration: two Python processes with psycopg 3
//! (server-side prepared statements, `prepare_threshold=0`, and a connection pool), one
//! on the baseline version (`zdm init`) and one on the new version, each writing at a
//! bounded rate with prepared `SELECT *` and `... RETURNING *`, while the real binary runs
//! `zdm init`, `zdm start`, `zdm rollback`, `zdm start` and `zdm complete` of a migration
//! that changes a column's type and adds a NOT NULL column. Zero application errors, and at
//! the end every row equals what an oracle computes.
//!
//! Needs python3 with psycopg and psycopg_pool (`.ci/run` installs them with pip).

mod plan_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use plan_support::{common, fetch_one};
use zdm::localpg::LocalPg;

const ROWS: i64 = 100_000;
const MIGRATION: &str = "0001_price_cents_and_label";
const FILE: &str = r#"
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
"#;

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

#[tokio::test]
async fn prepared_statements_of_both_versions_survive_a_first_migration() {
    python_ready();
    let pg = common::primary();
    let database = "real_client";
    let pool = common::database(&pg, database).await;
    sqlx::raw_sql(&format!(
        "CREATE TABLE items (id bigint PRIMARY KEY, title text NOT NULL, price numeric(10,2) NOT NULL);
         INSERT INTO items SELECT i, 'row ' || i, (i % 1000) / 10.0 FROM generate_series(1, {ROWS}) i;
         ANALYZE items;"
    ))
    .execute(&pool)
    .await
    .expect("setup");
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(root.path().join("migrations")).expect("dir");
    std::fs::create_dir_all(root.path().join("run")).expect("dir");
    std::fs::write(
        root.path()
            .join("migrations")
            .join(format!("{MIGRATION}.toml")),
        FILE,
    )
    .expect("file");
    // A backfill of a few seconds, so the applications write during it.
    std::fs::write(
        root.path().join("zdm.toml"),
        "[backfill]\nmax_rows_per_second = 40000\n\n[throttle]\nmax_host_cpu_percent = -1\n\
         max_canary_factor = -1\nmax_active_sessions_factor = -1\n",
    )
    .expect("zdm.toml");
    let url = pg.primary().url(database);

    // zdm plan warns while the application is on the physical tables; zdm init gives it
    // the baseline version.
    let planned = zdm(&pg, database, root.path(), &["plan", MIGRATION]);
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
    let planned = zdm(&pg, database, root.path(), &["plan", MIGRATION]);
    assert!(
        String::from_utf8_lossy(&planned.stdout).contains("Old version: public_baseline"),
        "{}",
        String::from_utf8_lossy(&planned.stdout)
    );

    let old = App::start(
        "old",
        &url,
        "\"public_baseline\"",
        &[
            "SELECT * FROM items WHERE id = %(rid)s",
            "INSERT INTO items (id, title, price) VALUES (%(id)s, 'old', (%(id)s %% 1000) / 10.0) RETURNING *",
            "UPDATE items SET title = 'old upd' WHERE id = %(rid)s RETURNING *",
        ],
        1_000_000,
        root.path(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    zdm(&pg, database, root.path(), &["start", MIGRATION]);
    zdm(&pg, database, root.path(), &["rollback", MIGRATION]);
    zdm(&pg, database, root.path(), &["start", MIGRATION]);

    // Ready to contract: the new application rolls out, then the old one retires.
    let new = App::start(
        "new",
        &url,
        &format!("\"public_{MIGRATION}\""),
        &[
            "SELECT * FROM items WHERE id = %(rid)s",
            "INSERT INTO items (id, title, price, label) VALUES (%(id)s, 'new', (%(id)s %% 1000) * 10, 'new ' || %(id)s) RETURNING *",
            "UPDATE items SET title = 'new upd' WHERE id = %(rid)s RETURNING *",
        ],
        2_000_000,
        root.path(),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let old_ops = old.finish();
    let mut complete = vec![
        "complete",
        MIGRATION,
        "--confirm-contract",
        MIGRATION,
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

    // Every row as the oracle says: original rows (maybe retitled), the old application's
    // inserts (filled by `up`), the new application's inserts.
    let wrong = fetch_one(
        &pool,
        "SELECT count(*)::text FROM items WHERE NOT CASE
           WHEN id <= 100000 THEN price = ((id % 1000) / 10.0 * 100)::bigint
                AND label = 'item ' || id AND title IN ('row ' || id, 'old upd', 'new upd')
           WHEN id >= 2000000 THEN price = (id % 1000) * 10 AND label = 'new ' || id
                AND title IN ('new', 'new upd')
           ELSE price = ((id % 1000) / 10.0 * 100)::bigint AND label = 'item ' || id
                AND title IN ('old', 'old upd', 'new upd') END",
    )
    .await;
    assert_eq!(wrong, "0", "rows differing from the oracle");
    let types = fetch_one(
        &pool,
        "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
           FROM pg_attribute WHERE attrelid = 'items'::regclass AND attnum > 0 AND NOT attisdropped",
    )
    .await;
    assert_eq!(types, "id bigint, title text, price bigint, label text");
    pool.close().await;
}
