//! The migration commands around the engine, through the real binary on a real
//! PostgreSQL: `zdm start` refuses a file naming what the database lacks before changing
//! anything, `zdm status` lists pending files and flags a changed one, `zdm plan` shows a
//! started migration's recorded plan, `zdm validate --database-url` plans the pending
//! files against the live catalog without changing it.

mod plan_support;

use std::path::Path;
use std::process::{Command, Output};

use plan_support::{catalog, common, demo_database, fetch_one};
use zdm::localpg::LocalPg;

fn zdm(pg: &LocalPg, url: Option<&str>, dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(common::zdm_binary());
    command
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env_remove("DATABASE_URL")
        .env("ZDM_LOG_FILE", pg.root().join("zdm-cli.log"));
    if let Some(url) = url {
        command.args(["--database-url", url]);
    }
    command.output().expect("run zdm")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const ADD_STATUS: &str = r#"description = "Orders get a status"

[[operations]]
op = "add_column"
table = "orders"
column = { name = "status", type = "text", default = "'new'" }
"#;

/// Line 6, column 10 is the value of `column`.
const STATUS_TYPO: &str = r#"description = "status is mandatory"

[[operations]]
op = "set_not_null"
table = "orders"
column = "statsu"
up = "'new'"
"#;

const CREATE_NOTES: &str = r#"[[operations]]
op = "create_table"
table = "order_notes"
columns = [{ name = "id", type = "bigint", primary_key = true }]
"#;

async fn zdm_schema_exists(pool: &sqlx::PgPool) -> bool {
    fetch_one(pool, "SELECT (to_regnamespace('zdm') IS NOT NULL)::text").await == "true"
}

#[tokio::test]
async fn start_reports_an_unknown_table_or_column_before_changing_anything() {
    let pg = common::primary();
    let pool = demo_database(&pg, "unknown").await;
    let url = pg.primary().url("unknown");
    let before = catalog(&pool).await;

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("0001_typo_table.toml"),
        "[[operations]]\nop = \"drop_column\"\ntable = \"ordres\"\ncolumn = \"notes\"\n",
    )
    .expect("write");
    let output = zdm(&pg, Some(&url), dir.path(), &["start"]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("table public.ordres does not exist")
            && stderr.contains("did you mean orders?"),
        "{stderr}"
    );
    assert_eq!(before, catalog(&pool).await, "nothing changed");
    assert!(
        !zdm_schema_exists(&pool).await,
        "not even zdm's state schema"
    );

    std::fs::remove_file(dir.path().join("0001_typo_table.toml")).expect("remove");
    std::fs::write(
        dir.path().join("0001_typo_column.toml"),
        "[[operations]]\nop = \"drop_column\"\ntable = \"orders\"\ncolumn = \"ntoes\"\n",
    )
    .expect("write");
    let output = zdm(&pg, Some(&url), dir.path(), &["start", "0001_typo_column"]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("column ntoes does not exist in table public.orders")
            && stderr.contains("did you mean notes?"),
        "{stderr}"
    );
    assert_eq!(before, catalog(&pool).await, "nothing changed");
    assert!(!zdm_schema_exists(&pool).await);
}

#[tokio::test]
async fn status_lists_pending_files_and_flags_a_changed_one() {
    let pg = common::primary();
    let pool = demo_database(&pg, "status_files").await;
    let url = pg.primary().url("status_files");
    let dir = tempfile::tempdir().expect("tempdir");
    let first = dir.path().join("0001_orders_status.toml");
    std::fs::write(&first, ADD_STATUS).expect("write");
    std::fs::write(dir.path().join("0002_order_notes.toml"), CREATE_NOTES).expect("write");

    let output = zdm(&pg, Some(&url), dir.path(), &["status"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        stdout.contains("Pending migration files (run in this order):\n  0001_orders_status  Orders get a status\n  0002_order_notes"),
        "{stdout}"
    );
    assert!(!zdm_schema_exists(&pool).await, "status creates nothing");

    let output = zdm(&pg, Some(&url), dir.path(), &["start"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = zdm(&pg, Some(&url), dir.path(), &["status", "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let pending: Vec<&str> = json["pending"]
        .as_array()
        .expect("pending")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(pending, ["0002_order_notes"]);
    assert!(json["migrations"][0]["file_checksum_changed"].is_null());
    let recorded = json["migrations"][0]["checksum"]
        .as_str()
        .expect("checksum")
        .to_string();

    std::fs::write(&first, format!("{ADD_STATUS}# edited after it ran\n")).expect("edit");
    let changed =
        zdm::migration::checksum(format!("{ADD_STATUS}# edited after it ran\n").as_bytes());
    let output = zdm(&pg, Some(&url), dir.path(), &["status"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        stdout.contains(&format!(
            "FILE CHANGED:   recorded checksum {recorded}, the file now has {changed}"
        )),
        "{stdout}"
    );
    let output = zdm(&pg, Some(&url), dir.path(), &["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(json["migrations"][0]["file_checksum_changed"], changed);
    assert_eq!(json["migrations"][0]["checksum"], recorded);
    // start refuses it, with both checksums.
    let output = zdm(
        &pg,
        Some(&url),
        dir.path(),
        &["start", "0001_orders_status"],
    );
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&recorded) && stderr.contains(&changed),
        "{stderr}"
    );
}

#[tokio::test]
async fn plan_shows_the_recorded_plan_of_a_started_migration() {
    let pg = common::primary();
    let pool = demo_database(&pg, "plan_state").await;
    let url = pg.primary().url("plan_state");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("0001_orders_status.toml"), ADD_STATUS).expect("write");
    std::fs::write(dir.path().join("0002_order_notes.toml"), CREATE_NOTES).expect("write");
    let output = zdm(&pg, Some(&url), dir.path(), &["start"]);
    assert!(output.status.success(), "{}", text(&output.stderr));

    let output = zdm(
        &pg,
        Some(&url),
        dir.path(),
        &["plan", "0001_orders_status", "--json"],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let recorded: serde_json::Value = serde_json::from_str(
        &fetch_one(
            &pool,
            "SELECT plan::text FROM zdm.migrations WHERE name = '0001_orders_status'",
        )
        .await,
    )
    .expect("recorded plan");
    assert_eq!(shown, recorded);

    // Without a name: only what has not started.
    let output = zdm(&pg, Some(&url), dir.path(), &["plan", "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let plans: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let names: Vec<&str> = plans
        .as_array()
        .expect("plans")
        .iter()
        .map(|p| p["migration"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["0002_order_notes"]);

    // Rolled back (zdm's state says so): pending again.
    let output = zdm(
        &pg,
        Some(&url),
        dir.path(),
        &["rollback", "0001_orders_status"],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = zdm(&pg, Some(&url), dir.path(), &["plan", "--json"]);
    let plans: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(plans.as_array().expect("plans").len(), 2);
}

#[tokio::test]
async fn validate_with_a_database_plans_pending_files_against_its_catalog() {
    let pg = common::primary();
    let pool = demo_database(&pg, "validate_db").await;
    let url = pg.primary().url("validate_db");
    let before = catalog(&pool).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("0001_orders_status.toml"), ADD_STATUS).expect("write");
    std::fs::write(dir.path().join("0002_status_required.toml"), STATUS_TYPO).expect("write");
    std::fs::write(dir.path().join("0003_order_notes.toml"), CREATE_NOTES).expect("write");

    // Offline the files are fine.
    let output = zdm(&pg, None, dir.path(), &["validate"]);
    assert!(output.status.success(), "{}", text(&output.stderr));

    let output = zdm(&pg, Some(&url), dir.path(), &["validate"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    // 0001's column is known to 0002 (the simulated catalog), so the typo gets a hint.
    let expected = format!(
        "{}:6:10: 0002_status_required: operation 1 (set_not_null): column statsu does not \
         exist in table public.orders (did you mean status?)",
        dir.path().join("0002_status_required.toml").display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(
        stderr.contains("0003_order_notes.toml: warning: not checked against the database"),
        "{stderr}"
    );
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("3 migration files, 1 valid, 1 error, 1 warning"),
        "{stdout}"
    );
    assert_eq!(before, catalog(&pool).await, "validate changes nothing");
    assert!(!zdm_schema_exists(&pool).await);

    // Fixed, everything plans.
    std::fs::write(
        dir.path().join("0002_status_required.toml"),
        STATUS_TYPO.replace("statsu", "status"),
    )
    .expect("write");
    let output = zdm(&pg, Some(&url), dir.path(), &["validate"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
}
