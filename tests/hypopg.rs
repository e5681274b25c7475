//! EXPLAIN before the work, with hypopg, on real PostgreSQL through the binary: dropping
//! the only index a frequent query uses fails the indexes-unused gate, naming the query,
//! even when the query did not run during the window (and an index with a stand-in does
//! not); without hypopg the gate says "not available" and judges nothing; `zdm plan` of a
//! create_index shows its [[verify]] queries against a hypothetical index and says when one
//! would not use it, before anything is built.

mod common;

use std::path::Path;

use common::{text, zdm};
use sqlx::{Executor, PgPool};
use zdm::localpg::LocalPg;

/// Items with an index on code (the only one a frequent query can use) and two on name
/// (one stands in for the other).
async fn items(pg: &LocalPg, database: &str) -> PgPool {
    let pool = common::database(pg, database).await;
    pool.execute(
        "CREATE EXTENSION pg_stat_statements;
         CREATE TABLE items (id bigint PRIMARY KEY, code text NOT NULL, name text NOT NULL, price int NOT NULL);
         INSERT INTO items SELECT g, 'C' || g, 'item ' || g, g % 1000 FROM generate_series(1, 50000) AS g;
         CREATE INDEX items_code_idx ON items (code);
         CREATE INDEX items_name_idx ON items (name);
         CREATE INDEX items_name_copy_idx ON items (name);",
    )
    .await
    .expect("schema");
    pool.execute("ANALYZE items").await.expect("analyze");
    pool
}

/// The application's frequent queries, with parameters (pg_stat_statements counts them
/// as `... = $1`), run before the gates: none runs during their window.
async fn frequent_queries(pool: &PgPool) {
    for i in 0..50 {
        sqlx::query("SELECT id, price FROM items WHERE code = $1")
            .bind(format!("C{}", i * 97 + 1))
            .fetch_all(pool)
            .await
            .expect("by code");
        sqlx::query("SELECT id FROM items WHERE name = $1")
            .bind(format!("item {}", i * 89 + 1))
            .fetch_all(pool)
            .await
            .expect("by name");
    }
}

fn gate(json: &serde_json::Value, name: &str) -> (String, String) {
    let gate = json["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("no gate {name} in {json:#}"));
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

fn gates(pg: &LocalPg, url: &str, dir: &Path, name: &str) -> serde_json::Value {
    let output = zdm(pg, url, dir, &["gates", name, "--json", "--window", "0.5"]);
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("no JSON: {}", text(&output.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_only_index_a_frequent_query_uses_fails_its_gate() {
    let pg = common::primary();
    let pool = items(&pg, "drops").await;
    let url = pg.primary().url("drops");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("0001_drop_code_idx.toml"),
        "[[operations]]\nop = \"drop_index\"\nname = \"items_code_idx\"\n",
    )
    .expect("file");
    let dir = dir.path();
    let started = zdm(&pg, &url, dir, &["start", "0001_drop_code_idx"]);
    assert!(started.status.success(), "{}", text(&started.stderr));
    frequent_queries(&pool).await;

    // Without hypopg: said, with the package, and no failure for it.
    let json = gates(&pg, &url, dir, "0001_drop_code_idx");
    let (verdict, evidence) = gate(&json, "indexes-unused");
    assert_eq!(verdict, "pass", "{evidence}");
    assert!(
        evidence.contains(
            "plans without the dropped indexes: not available: the hypopg extension is not created"
        ),
        "{evidence}"
    );

    pool.execute("CREATE EXTENSION hypopg")
        .await
        .expect("hypopg (postgresql-NN-hypopg)");
    let json = gates(&pg, &url, dir, "0001_drop_code_idx");
    let (verdict, evidence) = gate(&json, "indexes-unused");
    assert_eq!(verdict, "fail", "{evidence}");
    assert!(
        evidence.contains("SELECT id, price FROM items WHERE code = $1 (run 50 time(s))")
            && evidence.contains("would read items with a sequential scan")
            && evidence.contains("without public.items_code_idx"),
        "{evidence}"
    );
    // Its scans did not move during the window: only the plans found it.
    assert!(!evidence.contains("scanned"), "{evidence}");
    // Nothing is left hidden or hypothetical: the index serves the query as before.
    let plan: serde_json::Value =
        sqlx::query_scalar("EXPLAIN (FORMAT JSON) SELECT id, price FROM items WHERE code = 'C5'")
            .fetch_one(&pool)
            .await
            .expect("explain");
    assert!(plan.to_string().contains("items_code_idx"), "{plan}");

    // A dropped index with a stand-in (another database): the name query keeps as good a
    // plan without it, and the gate passes.
    let pool = items(&pg, "standin").await;
    pool.execute("CREATE EXTENSION hypopg")
        .await
        .expect("hypopg");
    let url = pg.primary().url("standin");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("0001_drop_name_copy.toml"),
        "[[operations]]\nop = \"drop_index\"\nname = \"items_name_copy_idx\"\n",
    )
    .expect("file");
    let dir = dir.path();
    let started = zdm(&pg, &url, dir, &["start", "0001_drop_name_copy"]);
    assert!(started.status.success(), "{}", text(&started.stderr));
    frequent_queries(&pool).await;
    let json = gates(&pg, &url, dir, "0001_drop_name_copy");
    let (verdict, evidence) = gate(&json, "indexes-unused");
    assert_eq!(verdict, "pass", "{evidence}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planning_an_index_the_verify_query_would_not_use_says_so_before_it_is_built() {
    let pg = common::primary();
    let pool = items(&pg, "plans").await;
    pool.execute("CREATE EXTENSION hypopg")
        .await
        .expect("hypopg");
    let url = pg.primary().url("plans");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("0001_items_price_idx.toml"),
        r#"
[[operations]]
op = "create_index"
table = "items"
name = "items_price_idx"
columns = ["price"]

# Nearly every row: a sequential scan is cheaper, the index would not serve it.
[[verify]]
sql = "SELECT id FROM items WHERE price > 2"
uses_index = "items_price_idx"

[[verify]]
sql = "SELECT id FROM items WHERE price = 42"
uses_index = "items_price_idx"
"#,
    )
    .expect("file");
    let output = zdm(&pg, &url, dir.path(), &["plan", "0001_items_price_idx"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let said = text(&output.stdout);
    let section = said
        .split("EXPLAIN before the build (hypopg")
        .nth(1)
        .unwrap_or_else(|| panic!("no hypopg section:\n{said}"));
    let wide = section
        .split("[[verify]] SELECT id FROM items WHERE price > 2")
        .nth(1)
        .and_then(|rest| rest.split("\n    [[verify]]").next())
        .unwrap_or_else(|| panic!("{section}"));
    assert!(
        wide.contains("would NOT use items_price_idx, which its [[verify]] requires"),
        "{section}"
    );
    let narrow = section
        .split("[[verify]] SELECT id FROM items WHERE price = 42")
        .nth(1)
        .unwrap_or_else(|| panic!("{section}"));
    assert!(narrow.contains("→ would use items_price_idx"), "{section}");
    assert!(
        narrow.contains("now:            Seq Scan on items"),
        "{section}"
    );
    // Nothing was built.
    let built: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'items_price_idx'")
            .fetch_one(&pool)
            .await
            .expect("indexes");
    assert_eq!(built, 0);

    // Without hypopg in the database: what to do, and the plan itself still printed.
    pool.execute("DROP EXTENSION hypopg")
        .await
        .expect("drop hypopg");
    let output = zdm(&pg, &url, dir.path(), &["plan", "0001_items_price_idx"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let said = text(&output.stdout);
    assert!(
        said.contains("not available: the hypopg extension is not created in database plans"),
        "{said}"
    );
    assert!(said.contains("CREATE INDEX CONCURRENTLY"), "{said}");
}
