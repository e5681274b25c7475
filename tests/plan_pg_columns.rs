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
    // The new version is published at the end of the backfill: only then can it be used.
    run_phase(&pool, &plan, Phase::Backfill).await;

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

fn qualified(schema: &str, name: &str) -> zdm::db::catalog::QualifiedName {
    zdm::db::catalog::QualifiedName::new(schema, name)
}

#[tokio::test]
async fn drop_column_keeps_the_old_version_filled_by_down() {
    let pg = plan_support::common::primary();
    let pool = demo_database(&pg, "drop_column").await;
    let m = migration(
        "0002_drop_country",
        r#"
[[operations]]
op = "drop_column"
table = "customers"
column = "country"
down = "'ZZ'"
"#,
    );
    let plan = plan(&m, &catalog(&pool).await).expect("plans");
    run_phase(&pool, &plan, Phase::Expand).await;
    // The new version is published at the end of the backfill: only then can it be used.
    run_phase(&pool, &plan, Phase::Backfill).await;
    let old = client(&pg, "drop_column", "public").await;
    let new = client(&pg, "drop_column", "public_0002_drop_country").await;
    write_concurrently(
        &old,
        (0..20).map(|i| format!("INSERT INTO customers (id, email, full_name, country) VALUES ({}, 'old{i}@x', 'Old {i}', 'DE')", 5000 + i)).collect(),
        &new,
        (0..20).map(|i| format!("INSERT INTO customers (id, email, full_name) VALUES ({}, 'new{i}@x', 'New {i}')", 6000 + i)).collect(),
    )
    .await;
    // The old version sees the new version's rows with `down` applied.
    assert_eq!(
        fetch_one(
            &old,
            "SELECT string_agg(DISTINCT country, ',') FROM customers WHERE id >= 6000"
        )
        .await,
        "ZZ"
    );
    // The new version does not see the column at all, but sees the old version's rows.
    assert!(sqlx::raw_sql("SELECT country FROM customers")
        .execute(&new)
        .await
        .is_err());
    assert_eq!(
        fetch_one(
            &new,
            "SELECT count(*)::text FROM customers WHERE id BETWEEN 5000 AND 5019"
        )
        .await,
        "20"
    );
    old.close().await;
    new.close().await;
    run_phase(&pool, &plan, Phase::Contract).await;
    let after = catalog(&pool).await;
    let customers = after
        .table(&qualified("public", "customers"))
        .expect("customers");
    assert!(customers.column("country").is_none());
    assert!(customers.triggers.is_empty());
    assert!(after.functions.is_empty());
}

#[tokio::test]
async fn rename_column_shows_each_version_its_own_name() {
    let pg = plan_support::common::primary();
    let pool = demo_database(&pg, "rename_column").await;
    let m = migration(
        "0003_rename_full_name",
        r#"
[[operations]]
op = "rename_column"
table = "customers"
column = "full_name"
to = "display_name"
"#,
    );
    let plan = plan(&m, &catalog(&pool).await).expect("plans");
    run_phase(&pool, &plan, Phase::Expand).await;
    // The new version is published at the end of the backfill: only then can it be used.
    run_phase(&pool, &plan, Phase::Backfill).await;
    let old = client(&pg, "rename_column", "public").await;
    let new = client(&pg, "rename_column", "public_0003_rename_full_name").await;
    write_concurrently(
        &old,
        (0..20).map(|i| format!("INSERT INTO customers (id, email, full_name, country) VALUES ({}, 'old{i}@x', 'Old {i}', 'DE')", 5000 + i)).collect(),
        &new,
        (0..20).map(|i| format!("INSERT INTO customers (id, email, display_name, country) VALUES ({}, 'new{i}@x', 'New {i}', 'FR')", 6000 + i)).collect(),
    )
    .await;
    sqlx::raw_sql("UPDATE customers SET display_name = 'Renamed' WHERE id = 5000")
        .execute(&new)
        .await
        .expect("update through the view");
    assert_eq!(
        fetch_one(&old, "SELECT full_name FROM customers WHERE id = 6003").await,
        "New 3"
    );
    assert_eq!(
        fetch_one(&old, "SELECT full_name FROM customers WHERE id = 5000").await,
        "Renamed"
    );
    assert_eq!(
        fetch_one(&new, "SELECT display_name FROM customers WHERE id = 5001").await,
        "Old 1"
    );
    old.close().await;
    new.close().await;
    run_phase(&pool, &plan, Phase::Contract).await;
    let after = catalog(&pool).await;
    let customers = after
        .table(&qualified("public", "customers"))
        .expect("customers");
    assert!(customers.column("display_name").is_some());
    assert!(customers.column("full_name").is_none());
    let new = client(&pg, "rename_column", "public_0003_rename_full_name").await;
    assert_eq!(
        fetch_one(&new, "SELECT display_name FROM customers WHERE id = 6003").await,
        "New 3"
    );
}

#[tokio::test]
async fn change_type_goes_through_a_shadow_column() {
    let pg = plan_support::common::primary();
    let pool = demo_database(&pg, "change_type").await;
    let m = migration(
        "0004_price_numeric",
        r#"
[[operations]]
op = "change_type"
table = "products"
column = "price_cents"
type = "numeric(12,2)"
up = "price_cents::numeric / 100"
down = "(price_cents * 100)::integer"
"#,
    );
    let plan = plan(&m, &catalog(&pool).await).expect("plans");
    assert!(plan.steps.iter().all(|s| !s.rewrites));
    run_phase(&pool, &plan, Phase::Expand).await;
    // The new version is published at the end of the backfill: only then can it be used.
    run_phase(&pool, &plan, Phase::Backfill).await;
    let old = client(&pg, "change_type", "public").await;
    let new = client(&pg, "change_type", "public_0004_price_numeric").await;
    write_concurrently(
        &old,
        (0..20).map(|i| format!("INSERT INTO products (id, sku, name, category, price_cents) VALUES ({}, 'OLD-{i}', 'Old', 'home', 999)", 5000 + i)).collect(),
        &new,
        (0..20).map(|i| format!("INSERT INTO products (id, sku, name, category, price_cents) VALUES ({}, 'NEW-{i}', 'New', 'home', 12.34)", 6000 + i)).collect(),
    )
    .await;
    assert_eq!(
        fetch_one(
            &old,
            "SELECT price_cents::text FROM products WHERE id = 6000"
        )
        .await,
        "1234"
    );
    assert_eq!(
        fetch_one(
            &new,
            "SELECT price_cents::text FROM products WHERE id = 5000"
        )
        .await,
        "9.99"
    );
    // Existing rows were backfilled exactly.
    assert_eq!(
        fetch_one(
            &new,
            "SELECT count(*)::text FROM products WHERE price_cents IS NULL"
        )
        .await,
        "0"
    );
    assert_eq!(
        fetch_one(
            &new,
            "SELECT (price_cents * 100)::int::text FROM products WHERE id = 1"
        )
        .await,
        fetch_one(&old, "SELECT price_cents::text FROM products WHERE id = 1").await
    );
    // An update by the old version reaches the new one.
    sqlx::raw_sql("UPDATE products SET price_cents = 500 WHERE id = 6001")
        .execute(&old)
        .await
        .expect("update");
    assert_eq!(
        fetch_one(
            &new,
            "SELECT price_cents::text FROM products WHERE id = 6001"
        )
        .await,
        "5.00"
    );
    old.close().await;
    new.close().await;
    run_phase(&pool, &plan, Phase::Contract).await;
    let after = catalog(&pool).await;
    let products = after
        .table(&qualified("public", "products"))
        .expect("products");
    let price = products.column("price_cents").expect("price_cents");
    assert_eq!(price.data_type, "numeric(12,2)");
    assert!(!price.nullable);
    assert!(products.columns.iter().all(|c| !c.name.starts_with("_zdm")));
    assert!(products
        .constraints
        .iter()
        .all(|c| !c.name.starts_with("_zdm")));
    assert_eq!(
        fetch_one(
            &pool,
            "SELECT price_cents::text FROM products WHERE id = 5000"
        )
        .await,
        "9.99"
    );
}

#[tokio::test]
async fn set_not_null_fills_nulls_in_place() {
    let pg = plan_support::common::primary();
    let pool = demo_database(&pg, "set_not_null").await;
    let m = migration(
        "0005_phone_required",
        r#"
[[operations]]
op = "set_not_null"
table = "customers"
column = "phone"
up = "'unknown'"
"#,
    );
    let plan = plan(&m, &catalog(&pool).await).expect("plans");
    run_phase(&pool, &plan, Phase::Expand).await;
    // The new version is published at the end of the backfill: only then can it be used.
    run_phase(&pool, &plan, Phase::Backfill).await;
    let old = client(&pg, "set_not_null", "public").await;
    let new = client(&pg, "set_not_null", "public_0005_phone_required").await;
    write_concurrently(
        &old,
        (0..20).map(|i| format!("INSERT INTO customers (id, email, full_name, country, phone) VALUES ({}, 'old{i}@x', 'Old', 'DE', NULL)", 5000 + i)).collect(),
        &new,
        (0..20).map(|i| format!("INSERT INTO customers (id, email, full_name, country, phone) VALUES ({}, 'new{i}@x', 'New', 'FR', '+100{i}')", 6000 + i)).collect(),
    )
    .await;
    // The new version may not write NULL any more; the old one's NULLs become `up`.
    assert!(sqlx::raw_sql(
        "INSERT INTO customers (id, email, full_name, country) VALUES (7000, 'n@x', 'N', 'FR')"
    )
    .execute(&new)
    .await
    .is_err());
    assert_eq!(
        fetch_one(&new, "SELECT phone FROM customers WHERE id = 5000").await,
        "unknown"
    );
    assert_eq!(
        fetch_one(
            &pool,
            "SELECT count(*)::text FROM customers WHERE phone IS NULL"
        )
        .await,
        "0"
    );
    old.close().await;
    new.close().await;
    run_phase(&pool, &plan, Phase::Contract).await;
    let after = catalog(&pool).await;
    let customers = after
        .table(&qualified("public", "customers"))
        .expect("customers");
    assert!(!customers.column("phone").expect("phone").nullable);
    assert!(customers
        .constraints
        .iter()
        .all(|c| !c.name.starts_with("_zdm")));
}

#[tokio::test]
async fn change_type_rebuilds_the_columns_index_and_foreign_key() {
    let pg = plan_support::common::primary();
    let pool = demo_database(&pg, "change_type_keys").await;
    let m = migration(
        "0011_item_order_int",
        r#"
[[operations]]
op = "change_type"
table = "order_items"
column = "order_id"
type = "integer"
up = "order_id::integer"
down = "order_id::bigint"
"#,
    );
    let plan = plan(&m, &catalog(&pool).await).expect("plans");
    run_phase(&pool, &plan, Phase::Expand).await;
    // The new version is published at the end of the backfill: only then can it be used.
    run_phase(&pool, &plan, Phase::Backfill).await;
    let old = client(&pg, "change_type_keys", "public").await;
    let new = client(&pg, "change_type_keys", "public_0011_item_order_int").await;
    write_concurrently(
        &old,
        (0..20).map(|i| format!("INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) VALUES ({}, 1, 1, 100)", 1 + i)).collect(),
        &new,
        (0..20).map(|i| format!("INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) VALUES ({}, 2, 1, 100)", 50 + i)).collect(),
    )
    .await;
    // The rebuilt foreign key already holds for new rows, from both versions.
    assert!(sqlx::raw_sql("INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) VALUES (999999, 1, 1, 1)").execute(&new).await.is_err());
    old.close().await;
    new.close().await;
    run_phase(&pool, &plan, Phase::Contract).await;
    let after = catalog(&pool).await;
    let items = after
        .table(&qualified("public", "order_items"))
        .expect("order_items");
    assert_eq!(
        items.column("order_id").expect("order_id").data_type,
        "integer"
    );
    let fk = items
        .constraint("order_items_order_id_fkey")
        .expect("foreign key keeps its name");
    assert!(fk.validated);
    assert_eq!(fk.columns, ["order_id"]);
    let index = items
        .indexes
        .iter()
        .find(|i| i.name == "order_items_order_id_idx")
        .expect("index keeps its name");
    assert!(index.valid);
    assert_eq!(index.columns, [Some("order_id".to_string())]);
    assert_eq!(
        fetch_one(
            &pool,
            "SELECT count(*)::text FROM order_items i JOIN orders o ON o.id = i.order_id"
        )
        .await,
        fetch_one(&pool, "SELECT count(*)::text FROM order_items").await
    );
}

/// The old version keeps updating rows while the backfill runs, and the new version (which
/// is not published until the backfill is done) cannot be reached meanwhile; then both
/// versions update rows while the backfill runs again (as a resumed run would): afterwards
/// every row's old and new columns agree (no write lost, none undone by the backfill).
#[tokio::test]
async fn writes_during_the_backfill_are_never_lost() {
    let pg = plan_support::common::primary();
    let pool = demo_database(&pg, "backfill_race").await;
    let m = migration(
        "0012_price_numeric",
        r#"
[[operations]]
op = "change_type"
table = "products"
column = "price_cents"
type = "numeric(12,2)"
up = "price_cents::numeric / 100"
down = "(price_cents * 100)::integer"
"#,
    );
    let plan = plan(&m, &catalog(&pool).await).expect("plans");
    run_phase(&pool, &plan, Phase::Expand).await;
    let old = client(&pg, "backfill_race", "public").await;
    let new = client(&pg, "backfill_race", "public_0012_price_numeric").await;
    let old_updates = |offset: i32| -> Vec<String> {
        (0..200)
            .map(|i| {
                format!(
                    "UPDATE products SET price_cents = {} WHERE id = {}",
                    offset + i,
                    1 + i % 20
                )
            })
            .collect()
    };
    let unpublished = sqlx::raw_sql("SELECT count(*) FROM products")
        .execute(&new)
        .await
        .expect_err("the new version is not usable before its backfill is done");
    assert!(
        unpublished.to_string().contains("does not exist"),
        "{unpublished}"
    );
    let old_writers = async {
        for sql in old_updates(1000) {
            sqlx::raw_sql(&sql).execute(&old).await.expect("old write");
        }
    };
    tokio::join!(old_writers, run_phase(&pool, &plan, Phase::Backfill));
    let writers = async {
        write_concurrently(
            &old,
            old_updates(3000),
            &new,
            (0..200)
                .map(|i| {
                    format!(
                        "UPDATE products SET price_cents = {}.50 WHERE id = {}",
                        7 + i,
                        1 + (i * 7) % 20
                    )
                })
                .collect(),
        )
        .await;
    };
    let backfill = async {
        for _ in 0..4 {
            run_phase(&pool, &plan, Phase::Backfill).await;
        }
    };
    tokio::join!(writers, backfill);
    assert_eq!(
        fetch_one(
            &pool,
            "SELECT count(*)::text FROM products WHERE _zdm_new_price_cents IS NULL OR (_zdm_new_price_cents * 100)::integer <> price_cents"
        )
        .await,
        "0",
        "old and new columns agree on every row"
    );
}
