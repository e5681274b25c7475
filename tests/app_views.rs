//! Views the application owns over a table a migration changes, on real PostgreSQL: the
//! new version reads them through its version schema over its own shape (renamed and
//! retyped columns, through its views), the old version keeps the original, both while
//! old and new clients write; rollback leaves `pg_dump --schema-only` as it was; complete
//! leaves them over the final shape with their options, grants and a view over them
//! still working; a view over a dropped column is named by the plan, not rewritten.

mod plan_support;

use plan_support::{
    catalog, client, fetch_one, fetch_strings, migration, run_phase, schema_dump_without_zdm,
    write_concurrently,
};
use sqlx::{Executor, PgPool};
use zdm::localpg::LocalPg;
use zdm::plan::{Phase, Plan};

const SCHEMA: &str = "
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_views_reader') THEN
    CREATE ROLE app_views_reader;
  END IF;
END $$;
CREATE TABLE orders (id int PRIMARY KEY, amount int NOT NULL, legacy text,
                     status text NOT NULL DEFAULT 'new');
INSERT INTO orders SELECT g, g * 10, 'L' || g, 'new' FROM generate_series(1, 50) AS g;
CREATE VIEW order_totals WITH (security_barrier) AS
  SELECT o.id, o.amount, o.status FROM orders o WHERE o.amount > 0;
GRANT SELECT ON order_totals TO app_views_reader;
CREATE VIEW big_orders AS SELECT id, amount FROM order_totals WHERE amount > 100;";

/// amount renamed, legacy dropped, status retyped (a shadow column: its physical column
/// goes at contract, so order_totals is recreated then).
const FILE: &str = r#"
[[operations]]
op = "rename_column"
table = "orders"
column = "amount"
to = "total_cents"

[[operations]]
op = "drop_column"
table = "orders"
column = "legacy"

[[operations]]
op = "change_type"
table = "orders"
column = "status"
type = "varchar(20)"
up = "status::varchar(20)"
down = "status::text"
"#;

async fn started(pg: &LocalPg, database: &str) -> (PgPool, Plan, String) {
    let pool = plan_support::common::database(pg, database).await;
    pool.execute(SCHEMA).await.expect("schema");
    let before = schema_dump_without_zdm(pg, database);
    let plan = zdm::plan::plan(
        &migration("0001_orders_reshape", FILE),
        &catalog(&pool).await,
    )
    .expect("plans");
    run_phase(&pool, &plan, Phase::Expand).await;
    run_phase(&pool, &plan, Phase::Backfill).await;
    (pool, plan, before)
}

/// Old and new clients write at once, then each reads both rows through its own
/// version's order_totals and big_orders.
async fn both_versions_read_their_views(pg: &LocalPg, database: &str, plan: &Plan) {
    let old = client(pg, database, "public").await;
    let new = client(pg, database, &plan.version_schema).await;
    write_concurrently(
        &old,
        (0..10)
            .map(|i| {
                format!(
                    "INSERT INTO orders (id, amount, legacy, status) VALUES ({}, 500, 'x', 'old')",
                    1000 + i
                )
            })
            .collect(),
        &new,
        (0..10)
            .map(|i| {
                format!(
                    "INSERT INTO orders (id, total_cents, status) VALUES ({}, 700, 'new-version')",
                    2000 + i
                )
            })
            .collect(),
    )
    .await;
    for pool in [&old, &new] {
        assert_eq!(
            fetch_strings(
                pool,
                "SELECT amount::text FROM order_totals WHERE id IN (1000, 2000) ORDER BY id"
            )
            .await,
            ["500", "700"]
        );
        assert_eq!(
            fetch_one(
                pool,
                "SELECT count(*)::text FROM big_orders WHERE id >= 1000"
            )
            .await,
            "20"
        );
    }
    // The old version's view is the original over text; the new one's reads the new
    // version's orders view, where status is varchar(20).
    assert_eq!(
        fetch_one(
            &old,
            "SELECT pg_typeof(status)::text FROM order_totals LIMIT 1"
        )
        .await,
        "text"
    );
    assert_eq!(
        fetch_one(
            &new,
            "SELECT pg_typeof(status)::text FROM order_totals LIMIT 1"
        )
        .await,
        "character varying"
    );
    let copy = format!(
        "{}.order_totals",
        zdm::db::quote_ident(&plan.version_schema)
    );
    assert_eq!(
        fetch_one(
            &old,
            &format!("SELECT array_to_string(reloptions, ',') FROM pg_class WHERE oid = '{copy}'::regclass")
        )
        .await,
        "security_barrier=true"
    );
    assert_eq!(
        fetch_one(
            &old,
            &format!("SELECT has_table_privilege('app_views_reader', '{copy}', 'SELECT')::text")
        )
        .await,
        "true"
    );
    let definition = fetch_one(&old, &format!("SELECT pg_get_viewdef('{copy}'::regclass)")).await;
    assert!(definition.contains("total_cents"), "{definition}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_then_rollback_leaves_the_schema_as_it_was() {
    let pg = plan_support::common::primary();
    let (pool, plan, before) = started(&pg, "app_views_rollback").await;
    // Published with the new version: both application views are in its schema.
    let publish = plan.phase(Phase::Backfill).last().expect("publish step");
    assert!(publish.description.starts_with("publish the new version"));
    // Safe to run twice (a run killed after it commits runs it again).
    plan_support::run_step(&pool, publish).await;
    both_versions_read_their_views(&pg, "app_views_rollback", &plan).await;
    run_phase(&pool, &plan, Phase::Rollback).await;
    assert_eq!(schema_dump_without_zdm(&pg, "app_views_rollback"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_then_complete_leaves_the_views_over_the_final_shape() {
    let pg = plan_support::common::primary();
    let (pool, plan, _) = started(&pg, "app_views_complete").await;
    both_versions_read_their_views(&pg, "app_views_complete", &plan).await;
    run_phase(&pool, &plan, Phase::Contract).await;
    let definition = fetch_one(
        &pool,
        "SELECT pg_get_viewdef('public.order_totals'::regclass)",
    )
    .await;
    assert!(definition.contains("total_cents AS amount"), "{definition}");
    assert_eq!(
        fetch_one(
            &pool,
            "SELECT pg_typeof(status)::text FROM public.order_totals LIMIT 1"
        )
        .await,
        "character varying"
    );
    assert_eq!(
        fetch_one(
            &pool,
            "SELECT array_to_string(reloptions, ',') || ' ' || has_table_privilege('app_views_reader', 'public.order_totals', 'SELECT')::text FROM pg_class WHERE oid = 'public.order_totals'::regclass"
        )
        .await,
        "security_barrier=true true"
    );
    let new = client(&pg, "app_views_complete", &plan.version_schema).await;
    assert_eq!(
        fetch_one(
            &new,
            "SELECT count(*)::text FROM big_orders WHERE id >= 1000"
        )
        .await,
        "20"
    );
    assert_eq!(
        fetch_one(
            &pool,
            "SELECT count(*)::text FROM public.big_orders WHERE id >= 1000"
        )
        .await,
        "20"
    );
    // The planned catalog after contract is the real one, views included.
    let (_, simulated) = zdm::plan::plan_and_simulate(&migration("0001_orders_reshape", FILE), &{
        let fresh = plan_support::common::database(&pg, "app_views_sim").await;
        fresh.execute(SCHEMA).await.expect("schema");
        catalog(&fresh).await
    })
    .expect("plans");
    let real = catalog(&pool).await;
    let names = |c: &zdm::db::catalog::Catalog| {
        c.views
            .iter()
            .map(|v| (v.name.to_string(), v.columns.clone(), v.reads.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&simulated), names(&real));
}

/// A view over the dropped column cannot be rewritten, nor copied one of another schema:
/// the plan says so up front.
#[tokio::test]
async fn a_view_over_a_dropped_column_is_named_by_the_plan() {
    let pg = plan_support::common::primary();
    let pool = plan_support::common::database(&pg, "app_views_dropped").await;
    pool.execute(
        format!(
            "{SCHEMA} CREATE VIEW legacy_report AS SELECT id, legacy FROM orders;
             CREATE SCHEMA reporting;
             CREATE VIEW reporting.order_report AS SELECT id, amount FROM public.orders;"
        )
        .as_str(),
    )
    .await
    .expect("schema");
    let plan = zdm::plan::plan(
        &migration("0001_orders_reshape", FILE),
        &catalog(&pool).await,
    )
    .expect("plans");
    let publish = plan.phase(Phase::Backfill).last().expect("publish step");
    assert!(
        publish.description.contains(
            "view public.legacy_report is not recreated in the new version: it reads public.orders.legacy, which this migration drops"
        ),
        "{}",
        publish.description
    );
    assert!(!publish
        .description
        .contains("view public.order_totals is not"));
    // A view of another schema is named by it: a copy in the version schema could not
    // take its place, so the plan says it keeps the old shape.
    assert!(
        publish.description.contains(
            "view reporting.order_report is not recreated in the new version: schema reporting is not versioned"
        ),
        "{}",
        publish.description
    );
}

/// Through the binary: order_totals reads the retyped column, so contract recreates it and
/// the dependencies gate does not count it; a materialized view over the same column is
/// not recreated, and the gate names it.
#[tokio::test]
async fn the_dependency_gate_leaves_out_recreated_views_and_names_materialized_ones() {
    let pg = plan_support::common::primary();
    let url = pg.primary().url("app_views_gate");
    let pool = plan_support::common::database(&pg, "app_views_gate").await;
    pool.execute(SCHEMA).await.expect("schema");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("0001_orders_reshape.toml"), FILE).expect("file");
    let run = |args: &[&str]| plan_support::common::zdm(&pg, &url, dir.path(), args);
    let output = run(&["start", "0001_orders_reshape"]);
    assert!(
        output.status.success(),
        "{}",
        plan_support::common::text(&output.stderr)
    );
    let gates = |run: &dyn Fn(&[&str]) -> std::process::Output| {
        let output = run(&["gates", "0001_orders_reshape", "--json", "--window", "0"]);
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
        let gate = json["gates"]
            .as_array()
            .expect("gates")
            .iter()
            .find(|g| g["name"] == "dependencies")
            .cloned()
            .expect("dependencies gate");
        (
            gate["verdict"].as_str().unwrap_or_default().to_string(),
            gate["evidence"].to_string(),
        )
    };
    let (verdict, evidence) = gates(&run);
    assert_eq!(verdict, "pass", "{evidence}");

    pool.execute("CREATE MATERIALIZED VIEW order_stats AS SELECT status, count(*) FROM orders GROUP BY status")
        .await
        .expect("materialized view");
    let (verdict, evidence) = gates(&run);
    assert_eq!(verdict, "fail", "{evidence}");
    assert!(evidence.contains("order_stats"), "{evidence}");
    assert!(!evidence.contains("order_totals"), "{evidence}");
    pool.execute("DROP MATERIALIZED VIEW order_stats")
        .await
        .expect("drop it");

    let output = run(&[
        "complete",
        "0001_orders_reshape",
        "--confirm-contract",
        "0001_orders_reshape",
        "--window",
        "0",
        // Unknown without pg_stat_statements: not what this test is about.
        "--override-gate",
        "old-version-unused",
    ]);
    assert!(
        output.status.success(),
        "{}",
        plan_support::common::text(&output.stderr)
    );
    assert_eq!(
        fetch_one(&pool, "SELECT count(*)::text FROM big_orders").await,
        "40"
    );
}
