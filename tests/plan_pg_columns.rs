//! Column operations on a real PostgreSQL: expand, backfill, an old-version and a
//! new-version client writing at the same time, then contract (and the final schema).

mod plan_support;

use plan_support::{
    catalog, client, demo_database, fetch_one, fetch_strings, migration, run_phase,
    write_concurrently,
};
use zdm::plan::{plan, Phase};

#[tokio::test]
async fn add_column_with_up_serves_both_versions_then_contracts() {
    let pg = plan_support::common::primary();
    let pool = demo_database(&pg, "add_column").await;
    let before = catalog(&pool).await;
    let m = migration(
        "0001_orders_status",
        r#"
[[operations]]
op = "add_column"
table = "orders"
column = { name = "status", type = "text", nullable = false, default = "'new'" }
up = "CASE WHEN shipped_at IS NULL THEN 'pending' ELSE 'shipped' END"
"#,
    );
    let plan = plan(&m, &before).expect("plans");
    assert_eq!(plan.version_schema, "public_0001_orders_status");
    run_phase(&pool, &plan, Phase::Expand).await;

    let old = client(&pg, "add_column", "public").await;
    let new = client(&pg, "add_column", "public_0001_orders_status").await;
    let old_writes: Vec<String> = (0..20)
        .map(|i| format!("INSERT INTO orders (id, customer_id, total_cents, shipped_at) VALUES ({}, 1, 100, {})", 10_000 + i, if i % 2 == 0 { "now()" } else { "NULL" }))
        .collect();
    let new_writes: Vec<String> = (0..20)
        .map(|i| format!("INSERT INTO orders (id, customer_id, total_cents, status) VALUES ({}, 2, 200, 'cancelled')", 20_000 + i))
        .collect();
    write_concurrently(&old, old_writes, &new, new_writes).await;
    // New-version inserts that leave the column out get its default.
    sqlx::raw_sql("INSERT INTO orders (id, customer_id, total_cents) VALUES (30000, 3, 300)")
        .execute(&new)
        .await
        .expect("new version insert without status");

    run_phase(&pool, &plan, Phase::Backfill).await;

    // The new version sees the old version's rows with `up` applied, and its own as written.
    assert_eq!(
        fetch_one(&new, "SELECT string_agg(DISTINCT status, ',' ORDER BY status) FROM orders WHERE id BETWEEN 10000 AND 10019").await,
        "pending,shipped"
    );
    assert_eq!(
        fetch_one(&new, "SELECT status FROM orders WHERE id = 20000").await,
        "cancelled"
    );
    assert_eq!(
        fetch_one(&new, "SELECT status FROM orders WHERE id = 30000").await,
        "new"
    );
    // Existing rows were backfilled.
    assert_eq!(
        fetch_one(
            &new,
            "SELECT count(*)::text FROM orders WHERE status IS NULL"
        )
        .await,
        "0"
    );
    assert_eq!(
        fetch_one(&new, "SELECT status FROM orders WHERE id = 1").await,
        fetch_one(&pool, "SELECT CASE WHEN shipped_at IS NULL THEN 'pending' ELSE 'shipped' END FROM orders WHERE id = 1").await
    );
    // The old version sees the new version's rows (without the column it does not know).
    assert_eq!(
        fetch_one(
            &old,
            "SELECT count(*)::text FROM orders WHERE id BETWEEN 20000 AND 20019"
        )
        .await,
        "20"
    );
    // The new version cannot break NOT NULL even before contract.
    assert!(sqlx::raw_sql(
        "INSERT INTO orders (id, customer_id, total_cents, status) VALUES (30001, 3, 300, NULL)"
    )
    .execute(&new)
    .await
    .is_err());

    old.close().await;
    new.close().await;
    run_phase(&pool, &plan, Phase::Contract).await;
    let after = catalog(&pool).await;
    let orders = after
        .table(&zdm::db::catalog::QualifiedName::new("public", "orders"))
        .expect("orders");
    let status = orders.column("status").expect("status column");
    assert!(!status.nullable, "status is NOT NULL after contract");
    assert!(
        orders
            .constraints
            .iter()
            .all(|c| !c.name.starts_with("_zdm")),
        "{:?}",
        orders.constraints
    );
    assert!(orders.triggers.is_empty(), "{:?}", orders.triggers);
    assert!(after.functions.is_empty(), "{:?}", after.functions);
    let view = after
        .view(&zdm::db::catalog::QualifiedName::new(
            "public_0001_orders_status",
            "orders",
        ))
        .expect("the version view stays");
    assert!(view.columns.contains(&"status".to_string()));
    let new = client(&pg, "add_column", "public_0001_orders_status").await;
    sqlx::raw_sql("INSERT INTO orders (id, customer_id, total_cents) VALUES (40000, 3, 300)")
        .execute(&new)
        .await
        .expect("the new version keeps working after contract");
    assert_eq!(
        fetch_strings(&new, "SELECT status FROM orders WHERE id = 40000").await,
        ["new"]
    );
}
