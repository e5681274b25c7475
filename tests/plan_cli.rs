//! `zdm plan` end to end: the binary, migration files in a directory, a real database.

mod plan_support;

use std::process::Command;

use plan_support::{common, demo_database};

fn zdm_plan(url: &str, dir: &std::path::Path, extra: &[&str]) -> (bool, String, String) {
    let output = Command::new(common::zdm_binary())
        .arg("plan")
        .args(extra)
        .arg("--database-url")
        .arg(url)
        .arg("--dir")
        .arg(dir)
        .env_remove("DATABASE_URL")
        .env_remove("ZDM_CONFIG")
        .output()
        .expect("run zdm");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn plan_prints_phases_locks_and_sql_and_chains_pending_migrations() {
    let pg = common::primary();
    let _pool = demo_database(&pg, "shop").await;
    let url = pg.primary().url("shop");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("0001_orders_status.toml"),
        r#"
description = "Orders get an explicit status"

[[operations]]
op = "add_column"
table = "orders"
column = { name = "status", type = "text", nullable = false, default = "'new'" }
up = "CASE WHEN shipped_at IS NULL THEN 'new' ELSE 'shipped' END"

[[operations]]
op = "create_index"
table = "orders"
name = "orders_status_idx"
columns = ["status"]

[[operations]]
op = "raw_sql"
up = "SELECT 1"
"#,
    )
    .expect("write");
    std::fs::write(
        dir.path().join("0002_status_not_null.json"),
        r#"{"operations": [{"op": "rename_column", "table": "orders", "column": "status", "to": "state"}]}"#,
    )
    .expect("write");

    let (ok, out, err) = zdm_plan(&url, dir.path(), &[]);
    assert!(ok, "{err}");
    for expected in [
        "Migration 0001_orders_status",
        "Orders get an explicit status",
        "SET search_path TO \"public_0001_orders_status\"",
        "EXPAND",
        "BACKFILL",
        "CONTRACT",
        "ROLLBACK",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS \"orders_status_idx\"",
        "lock: SHARE UPDATE EXCLUSIVE on public.orders",
        "(runs outside a transaction)",
        "UNSAFE: raw SQL not checked by zdm",
        "scans the table",
        "Migration 0002_status_not_null",
        // The second migration sees the first one's column and drops its version schema.
        "drop the previous version schema public_0001_orders_status",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(
        !out.contains("postgres://"),
        "no URL (and so no password) in the plan"
    );

    let (ok, json, err) = zdm_plan(&url, dir.path(), &["0001_orders_status", "--json"]);
    assert!(ok, "{err}");
    let plan: zdm::plan::Plan = serde_json::from_str(&json).expect("a plan as JSON");
    assert_eq!(plan.migration, "0001_orders_status");
    assert!(plan.steps.iter().any(|s| s.unchecked));

    let (ok, _, err) = zdm_plan(&url, dir.path(), &["0001_order_status"]);
    assert!(!ok);
    assert!(
        err.contains("no migration named 0001_order_status"),
        "{err}"
    );
    assert!(err.contains("did you mean 0001_orders_status?"), "{err}");
}

#[tokio::test]
async fn plan_reports_missing_tables_and_columns_before_anything_runs() {
    let pg = common::primary();
    let _pool = demo_database(&pg, "shop").await;
    let url = pg.primary().url("shop");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("0001_typo.toml"),
        "[[operations]]\nop = \"drop_column\"\ntable = \"ordrs\"\ncolumn = \"notes\"\n",
    )
    .expect("write");
    let (ok, _, err) = zdm_plan(&url, dir.path(), &[]);
    assert!(!ok);
    assert!(
        err.contains("0001_typo: operation 1 (drop_column): table public.ordrs does not exist (did you mean orders?)"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("0001_typo.toml"),
        "[[operations]]\nop = \"rename_column\"\ntable = \"orders\"\ncolumn = \"shiped_at\"\nto = \"sent_at\"\n",
    )
    .expect("write");
    let (ok, _, err) = zdm_plan(&url, dir.path(), &[]);
    assert!(!ok);
    assert!(
        err.contains(
            "column shiped_at does not exist in table public.orders (did you mean shipped_at?)"
        ),
        "{err}"
    );
}
