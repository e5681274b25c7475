//! drop_enum and the dependencies gate on real PostgreSQL, through the binary: every kind
//! of user of the type (a column of a table the migration does not touch, a function's
//! argument and its PL/pgSQL body, a domain, a composite type, a view) is named before
//! contract; a migration whose contract drops or changes the enum's only column first
//! passes and completes (no gate crying wolf, no failed DROP TYPE mid-contract).

mod common;

use std::path::Path;

use sqlx::{Executor, PgPool};
use zdm::localpg::LocalPg;

const SCHEMA: &str = "
CREATE TYPE order_priority AS ENUM ('low', 'high');
CREATE TABLE orders (id int PRIMARY KEY,
                     priority order_priority NOT NULL);
CREATE INDEX orders_priority_idx ON orders (priority);
INSERT INTO orders SELECT g, 'low' FROM generate_series(1, 100) AS g;";

const DROP_COLUMN: &str = r#"
[[operations]]
op = "drop_column"
table = "orders"
column = "priority"
down = "'low'"

[[operations]]
op = "drop_enum"
name = "order_priority"
"#;

/// The migration in a one-file directory, started; the gates' JSON and exit status.
fn start_and_gate(
    pg: &LocalPg,
    url: &str,
    dir: &Path,
    name: &str,
    file: &str,
) -> serde_json::Value {
    std::fs::write(dir.join(format!("{name}.toml")), file).expect("file");
    let output = common::zdm(pg, url, dir, &["start", name]);
    assert!(output.status.success(), "{}", common::text(&output.stderr));
    gates(pg, url, dir, name)
}

fn gates(pg: &LocalPg, url: &str, dir: &Path, name: &str) -> serde_json::Value {
    let output = common::zdm(pg, url, dir, &["gates", name, "--json", "--window", "0"]);
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("no JSON: {}", common::text(&output.stderr)))
}

fn dependencies(json: &serde_json::Value) -> (String, String) {
    let gate = json["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .find(|g| g["name"] == "dependencies")
        .unwrap_or_else(|| panic!("no dependencies gate in {json:#}"));
    let evidence = gate["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .map(|e| e.as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    (
        gate["verdict"].as_str().unwrap_or_default().to_string(),
        evidence,
    )
}

async fn database(pg: &LocalPg, name: &str, extra: &str) -> (PgPool, String) {
    let pool = common::database(pg, name).await;
    pool.execute(format!("{SCHEMA}{extra}").as_str())
        .await
        .expect("schema");
    (pool, pg.primary().url(name))
}

/// The only column using the enum is dropped (with its default, a check and an index) earlier
/// in the same contract: the gate passes, contract drops the type.
#[tokio::test]
async fn dropping_the_enums_only_column_in_the_same_contract_passes_and_drops_the_type() {
    let pg = common::primary();
    let (pool, url) = database(
        &pg,
        "enum_clean",
        "ALTER TABLE orders ADD CHECK (priority <> 'high' OR id > 0);
         ALTER TABLE orders ALTER priority SET DEFAULT 'low'::order_priority;",
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let json = start_and_gate(&pg, &url, dir.path(), "0001_drop_priority", DROP_COLUMN);
    let (verdict, evidence) = dependencies(&json);
    assert_eq!(verdict, "pass", "{evidence}");
    let output = common::zdm(
        &pg,
        &url,
        dir.path(),
        &[
            "complete",
            "0001_drop_priority",
            "--confirm-contract",
            "0001_drop_priority",
            "--window",
            "0",
            // Unknown without pg_stat_statements: not what this test is about.
            "--override-gate",
            "old-version-unused",
        ],
    );
    assert!(output.status.success(), "{}", common::text(&output.stderr));
    let left: Option<String> = sqlx::query_scalar("SELECT to_regtype('order_priority')::text")
        .fetch_one(&pool)
        .await
        .expect("regtype");
    assert_eq!(left, None);
}

/// change_type from the enum to text: the old physical column (of the enum) goes at
/// contract before the type does; the sync trigger's cast back to the enum is zdm's own.
/// With a default, the reshaped column would keep `'low'::order_priority` as its default
/// (DROP TYPE would fail mid-contract): refused at start, naming the default.
#[tokio::test]
async fn changing_the_enums_column_to_text_in_the_same_migration_passes_unless_its_default_casts_to_it(
) {
    let pg = common::primary();
    let file = r#"
[[operations]]
op = "change_type"
table = "orders"
column = "priority"
type = "text"
up = "priority::text"
down = "priority::order_priority"

[[operations]]
op = "drop_enum"
name = "order_priority"
"#;
    let (.., url) = database(&pg, "enum_change", "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let json = start_and_gate(&pg, &url, dir.path(), "0001_priority_text", file);
    let (verdict, evidence) = dependencies(&json);
    assert_eq!(verdict, "pass", "{evidence}");

    let (.., url) = database(
        &pg,
        "enum_change_default",
        "ALTER TABLE orders ALTER priority SET DEFAULT 'low';",
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("0001_priority_text.toml"), file).expect("file");
    let output = common::zdm(&pg, &url, dir.path(), &["start", "0001_priority_text"]);
    assert!(!output.status.success());
    let stderr = common::text(&output.stderr);
    assert!(
        stderr.contains("used by the default of column public.orders.priority"),
        "{stderr}"
    );
}

/// Every other kind of user is named, each on its line, before contract.
#[tokio::test]
async fn every_user_of_the_type_is_named_by_the_dependencies_gate() {
    let pg = common::primary();
    let users = "
CREATE FUNCTION bump(p order_priority) RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION lowest() RETURNS text LANGUAGE plpgsql
  AS $$ BEGIN RETURN 'low'::order_priority::text; END $$;
CREATE FUNCTION innocent() RETURNS text LANGUAGE plpgsql
  AS $$ DECLARE order_priority_label text := 'order_priority'; BEGIN RETURN order_priority_label; END $$;
CREATE DOMAIN urgent AS order_priority CHECK (VALUE <> 'low');
CREATE TYPE ticket AS (id int, level order_priority);
CREATE VIEW levels AS SELECT 'low'::order_priority AS level;";
    let (pool, url) = database(&pg, "enum_users", users).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let json = start_and_gate(&pg, &url, dir.path(), "0001_drop_priority", DROP_COLUMN);
    let (verdict, evidence) = dependencies(&json);
    assert_eq!(verdict, "fail", "{evidence}");
    for named in [
        "function public.bump(p order_priority) uses type order_priority",
        "function public.lowest() (in its body) uses type order_priority",
        "domain public.urgent uses type order_priority",
        "type public.ticket (attribute level) uses type order_priority",
        "view public.levels",
    ] {
        assert!(evidence.contains(named), "{named} not in:\n{evidence}");
    }
    // Not users: the dropped column and what goes with it, a string naming the type.
    for absent in ["orders", "innocent"] {
        assert!(!evidence.contains(absent), "{absent} in:\n{evidence}");
    }

    // A column added after start, to a table the migration does not touch, is named too.
    pool.execute(
        "DROP VIEW levels; DROP FUNCTION bump(order_priority), lowest();
         DROP DOMAIN urgent; DROP TYPE ticket;
         CREATE TABLE audit (id int, level order_priority);",
    )
    .await
    .expect("change the users");
    let (verdict, evidence) = dependencies(&gates(&pg, &url, dir.path(), "0001_drop_priority"));
    assert_eq!(verdict, "fail", "{evidence}");
    assert!(
        evidence.contains("column public.audit.level uses type order_priority"),
        "{evidence}"
    );
    assert_eq!(evidence.lines().count(), 1, "{evidence}");
}

/// At plan time the catalog already tells: a column of a table the migration does not
/// touch refuses the migration before anything runs.
#[tokio::test]
async fn a_column_of_an_untouched_table_refuses_drop_enum_at_start() {
    let pg = common::primary();
    let (.., url) = database(
        &pg,
        "enum_refused",
        "CREATE TABLE audit (id int, level order_priority);",
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("0001_drop_priority.toml"), DROP_COLUMN).expect("file");
    let output = common::zdm(&pg, &url, dir.path(), &["start", "0001_drop_priority"]);
    assert!(!output.status.success());
    let stderr = common::text(&output.stderr);
    assert!(stderr.contains("column public.audit.level"), "{stderr}");
}
