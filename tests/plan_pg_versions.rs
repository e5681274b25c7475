//! Two migrations in a row: while the second is in flight, the first one's version schema
//! is the old version (not the physical tables), and the second's contract drops it.

mod plan_support;

use plan_support::{
    catalog, client, demo_database, fetch_one, migration, run_phase, write_concurrently,
};
use zdm::plan::{plan, Phase};

#[tokio::test]
async fn the_previous_version_schema_is_the_old_version_until_the_next_contract() {
    let pg = plan_support::common::primary();
    let pool = demo_database(&pg, "versions").await;
    let first = migration(
        "0001_display_name",
        "[[operations]]\nop = \"rename_column\"\ntable = \"customers\"\ncolumn = \"full_name\"\nto = \"display_name\"\n",
    );
    let first_plan = plan(&first, &catalog(&pool).await).expect("plans");
    for phase in [Phase::Expand, Phase::Backfill, Phase::Contract] {
        run_phase(&pool, &first_plan, phase).await;
    }

    let second = migration(
        "0002_tiers",
        r#"
[[operations]]
op = "add_column"
table = "customers"
column = { name = "tier", type = "text", nullable = false, default = "'basic'" }
up = "CASE WHEN marketing_opt_in THEN 'engaged' ELSE 'basic' END"

[[operations]]
op = "drop_column"
table = "customers"
column = "marketing_opt_in"
down = "tier = 'engaged'"
"#,
    );
    let second_plan = plan(&second, &catalog(&pool).await).expect("plans");
    assert!(
        second_plan
            .phase(Phase::Contract)
            .any(|s| s.description == "drop the previous version schema public_0001_display_name"),
        "{second_plan:#?}"
    );
    run_phase(&pool, &second_plan, Phase::Expand).await;
    // The new version is published at the end of the backfill: only then is it usable.
    run_phase(&pool, &second_plan, Phase::Backfill).await;

    let old = client(&pg, "versions", "public_0001_display_name").await;
    let new = client(&pg, "versions", "public_0002_tiers").await;
    write_concurrently(
        &old,
        (0..20)
            .map(|i| format!("INSERT INTO customers (id, email, display_name, country, marketing_opt_in) VALUES ({}, 'old{i}@x', 'Old', 'DE', {})", 5000 + i, i % 2 == 0))
            .collect(),
        &new,
        (0..20)
            .map(|i| format!("INSERT INTO customers (id, email, display_name, country, tier) VALUES ({}, 'new{i}@x', 'New', 'FR', '{}')", 6000 + i, if i % 2 == 0 { "engaged" } else { "basic" }))
            .collect(),
    )
    .await;
    // The old version (first migration's views) does not see the new column…
    assert!(sqlx::raw_sql("SELECT tier FROM customers")
        .execute(&old)
        .await
        .is_err());
    // …but sees the new version's rows, with `down` filling what it still has.
    assert_eq!(
        fetch_one(
            &old,
            "SELECT marketing_opt_in::text FROM customers WHERE id = 6000"
        )
        .await,
        "true"
    );
    assert_eq!(
        fetch_one(
            &old,
            "SELECT marketing_opt_in::text FROM customers WHERE id = 6001"
        )
        .await,
        "false"
    );
    // The new version sees the old version's rows with `up` applied.
    assert_eq!(
        fetch_one(&new, "SELECT tier FROM customers WHERE id = 5000").await,
        "engaged"
    );
    assert_eq!(
        fetch_one(&new, "SELECT tier FROM customers WHERE id = 5001").await,
        "basic"
    );
    assert!(sqlx::raw_sql("SELECT marketing_opt_in FROM customers")
        .execute(&new)
        .await
        .is_err());
    old.close().await;
    new.close().await;

    run_phase(&pool, &second_plan, Phase::Contract).await;
    let after = catalog(&pool).await;
    assert!(
        after.schema("public_0001_display_name").is_none(),
        "previous version dropped"
    );
    assert!(after.schema("public_0002_tiers").is_some());
    let customers = after
        .table(&zdm::db::catalog::QualifiedName::new("public", "customers"))
        .expect("customers");
    assert!(customers.column("marketing_opt_in").is_none());
    assert!(!customers.column("tier").expect("tier").nullable);
}

#[tokio::test]
async fn an_application_role_that_owns_nothing_can_use_the_new_version() {
    let pg = plan_support::common::primary();
    let pool = demo_database(&pg, "grants").await;
    sqlx::raw_sql(
        "CREATE ROLE shop_app LOGIN;
         GRANT SELECT, INSERT, UPDATE ON orders, customers TO shop_app;",
    )
    .execute(&pool)
    .await
    .expect("application role");
    let m = migration(
        "0003_gift",
        "[[operations]]\nop = \"add_column\"\ntable = \"orders\"\ncolumn = { name = \"gift\", type = \"boolean\", nullable = false, default = \"false\" }\nup = \"notes IS NOT NULL\"\n",
    );
    let plan = plan(&m, &catalog(&pool).await).expect("plans");
    run_phase(&pool, &plan, Phase::Expand).await;
    // The new version is published at the end of the backfill: only then is it usable.
    run_phase(&pool, &plan, Phase::Backfill).await;
    let as_app = |search_path: &'static str| {
        let options = pg.primary().connect_options("grants").username("shop_app");
        async move {
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        sqlx::Executor::execute(
                            conn,
                            format!("SET search_path TO {search_path}").as_str(),
                        )
                        .await
                        .map(|_| ())
                    })
                })
                .connect_with(options)
                .await
                .expect("connect as shop_app")
        }
    };
    let old = as_app("public").await;
    let new = as_app("public_0003_gift").await;
    write_concurrently(
        &old,
        vec!["INSERT INTO orders (id, customer_id, total_cents, notes) VALUES (10000, 1, 1, 'wrap it')".to_string()],
        &new,
        vec!["INSERT INTO orders (id, customer_id, total_cents, gift) VALUES (10001, 1, 1, true)".to_string()],
    )
    .await;
    assert_eq!(
        fetch_one(&new, "SELECT gift::text FROM orders WHERE id = 10000").await,
        "true"
    );
    assert_eq!(
        fetch_one(&old, "SELECT count(*)::text FROM orders WHERE id = 10001").await,
        "1"
    );
    // Privileges are copied, not widened: the role could not delete before, and cannot now.
    assert!(sqlx::raw_sql("DELETE FROM orders WHERE id = 10001")
        .execute(&new)
        .await
        .is_err());
    assert!(sqlx::raw_sql("SELECT * FROM products")
        .execute(&new)
        .await
        .is_err());
}

#[tokio::test]
async fn split_table_keeps_both_tables_in_step_for_both_versions() {
    let pg = plan_support::common::primary();
    let pool = demo_database(&pg, "split").await;
    let m = migration(
        "0004_order_details",
        "[[operations]]\nop = \"split_table\"\ntable = \"orders\"\nnew_table = \"order_details\"\ncolumns = [\"notes\", \"currency\"]\n",
    );
    let plan = plan(&m, &catalog(&pool).await).expect("plans");
    run_phase(&pool, &plan, Phase::Expand).await;
    // The new version is published at the end of the backfill: only then is it usable.
    run_phase(&pool, &plan, Phase::Backfill).await;
    let old = client(&pg, "split", "public").await;
    let new = client(&pg, "split", "public_0004_order_details").await;
    write_concurrently(
        &old,
        (0..20)
            .map(|i| format!("INSERT INTO orders (id, customer_id, total_cents, notes, currency) VALUES ({}, 1, 1, 'old {i}', 'GBP')", 10_000 + i))
            .collect(),
        &new,
        (0..20)
            .map(|i| format!(
                "INSERT INTO orders (id, customer_id, total_cents) VALUES ({id}, 1, 1); INSERT INTO order_details (id, notes, currency) VALUES ({id}, 'new {i}', 'USD')",
                id = 20_000 + i
            ))
            .collect(),
    )
    .await;
    // Each version sees the other's writes in its own shape.
    assert_eq!(
        fetch_one(
            &new,
            "SELECT notes || ' ' || currency FROM order_details WHERE id = 10003"
        )
        .await,
        "old 3 GBP"
    );
    assert_eq!(
        fetch_one(
            &old,
            "SELECT notes || ' ' || currency FROM orders WHERE id = 20003"
        )
        .await,
        "new 3 USD"
    );
    sqlx::raw_sql("UPDATE orders SET notes = 'changed' WHERE id = 20004")
        .execute(&old)
        .await
        .expect("old update");
    assert_eq!(
        fetch_one(&new, "SELECT notes FROM order_details WHERE id = 20004").await,
        "changed"
    );
    sqlx::raw_sql("UPDATE order_details SET currency = 'CHF' WHERE id = 10004")
        .execute(&new)
        .await
        .expect("new update");
    assert_eq!(
        fetch_one(&old, "SELECT currency FROM orders WHERE id = 10004").await,
        "CHF"
    );
    // Existing rows were copied by the backfill.
    assert_eq!(
        fetch_one(&new, "SELECT count(*)::text FROM orders o LEFT JOIN order_details d USING (id) WHERE d.id IS NULL").await,
        "0"
    );
    assert!(sqlx::raw_sql("SELECT notes FROM orders")
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
    assert!(orders.column("notes").is_none() && orders.column("currency").is_none());
    assert!(orders.triggers.is_empty());
    assert!(after.functions.is_empty(), "{:?}", after.functions);
    assert_eq!(
        fetch_one(&pool, "SELECT currency FROM order_details WHERE id = 10004").await,
        "CHF"
    );
}
