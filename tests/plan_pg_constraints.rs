//! Index and constraint operations on a real PostgreSQL: built without blocking writes,
//! both versions writing meanwhile, then contract; and a failed concurrent build recovered.

mod plan_support;

use plan_support::{
    catalog, client, demo_database, fetch_one, migration, run_phase, run_step, write_concurrently,
};
use zdm::db::catalog::{ConstraintKind, QualifiedName};
use zdm::engine::{Engine, EngineOptions};
use zdm::plan::{plan, LockLevel, Phase};

fn orders_writes(first_id: i64, customer: i64) -> Vec<String> {
    (0..20)
        .map(|i| {
            format!(
                "INSERT INTO orders (id, customer_id, total_cents) VALUES ({}, {customer}, 100)",
                first_id + i
            )
        })
        .collect()
}

#[tokio::test]
async fn create_index_is_concurrent_and_recovers_an_invalid_build() {
    let pg = plan_support::common::primary();
    let pool = demo_database(&pg, "create_index").await;
    // A failed concurrent build (duplicates) leaves an INVALID index of the planned name.
    let failed = sqlx::raw_sql(
        "CREATE UNIQUE INDEX CONCURRENTLY orders_shipped_idx ON orders (customer_id)",
    )
    .execute(&pool)
    .await;
    assert!(failed.is_err(), "the build fails on duplicate customer ids");
    let before = catalog(&pool).await;
    let orders = before
        .table(&QualifiedName::new("public", "orders"))
        .expect("orders");
    let invalid = orders
        .indexes
        .iter()
        .find(|i| i.name == "orders_shipped_idx")
        .expect("left behind");
    assert!(!invalid.valid, "the catalog reports the index INVALID");
    sqlx::raw_sql("DROP INDEX orders_shipped_idx")
        .execute(&pool)
        .await
        .expect("drop");

    let m = migration(
        "0006_index_shipped",
        r#"
[[operations]]
op = "create_index"
table = "orders"
name = "orders_shipped_idx"
columns = ["shipped_at"]
predicate = "shipped_at IS NOT NULL"
"#,
    );
    let plan = plan(&m, &catalog(&pool).await).expect("plans");
    let build = plan
        .phase(Phase::Expand)
        .find(|s| s.description.contains("orders_shipped_idx"))
        .expect("build step");
    assert_eq!(build.lock, LockLevel::ShareUpdateExclusive);
    assert!(!build.lock.blocks_writes());

    // An interrupted earlier attempt: the same name, INVALID. The engine drops it before
    // its build, so `IF NOT EXISTS` does not take it for a finished one.
    let _ = sqlx::raw_sql(
        "CREATE UNIQUE INDEX CONCURRENTLY orders_shipped_idx ON orders (customer_id)",
    )
    .execute(&pool)
    .await;
    let mut engine = Engine::connect_with(
        pg.primary().connect_options("create_index"),
        EngineOptions::default(),
    )
    .await
    .expect("engine");
    engine.start(&plan, "checksum").await.expect("expand");
    engine.close().await.expect("close");
    let old = client(&pg, "create_index", "public").await;
    let new = client(&pg, "create_index", "public_0006_index_shipped").await;
    write_concurrently(
        &old,
        orders_writes(10_000, 1),
        &new,
        orders_writes(20_000, 2),
    )
    .await;
    let after = catalog(&pool).await;
    let index = after
        .table(&QualifiedName::new("public", "orders"))
        .and_then(|t| t.indexes.iter().find(|i| i.name == "orders_shipped_idx"))
        .expect("index built");
    assert!(index.valid);
    assert!(
        !index.unique,
        "the invalid unique index was replaced by the planned one"
    );
    // Running the build again is a no-op.
    run_step(&pool, build).await;
    assert_eq!(
        fetch_one(&new, "SELECT count(*)::text FROM orders WHERE id >= 10000").await,
        "40"
    );
    run_phase(&pool, &plan, Phase::Backfill).await;
    run_phase(&pool, &plan, Phase::Contract).await;
    assert!(catalog(&pool)
        .await
        .table(&QualifiedName::new("public", "orders"))
        .is_some_and(|t| t
            .indexes
            .iter()
            .any(|i| i.name == "orders_shipped_idx" && i.valid)));
}

#[tokio::test]
async fn drop_index_waits_for_contract() {
    let pg = plan_support::common::primary();
    let pool = demo_database(&pg, "drop_index").await;
    let m = migration(
        "0007_drop_placed_at_idx",
        r#"
[[operations]]
op = "drop_index"
name = "orders_placed_at_idx"
"#,
    );
    let plan = plan(&m, &catalog(&pool).await).expect("plans");
    run_phase(&pool, &plan, Phase::Expand).await;
    // The new version is published at the end of the backfill: only then is it usable.
    run_phase(&pool, &plan, Phase::Backfill).await;
    let old = client(&pg, "drop_index", "public").await;
    let new = client(&pg, "drop_index", "public_0007_drop_placed_at_idx").await;
    write_concurrently(
        &old,
        orders_writes(10_000, 1),
        &new,
        orders_writes(20_000, 2),
    )
    .await;
    let has_index = |c: &zdm::db::catalog::Catalog| {
        c.table(&QualifiedName::new("public", "orders"))
            .is_some_and(|t| t.indexes.iter().any(|i| i.name == "orders_placed_at_idx"))
    };
    assert!(
        has_index(&catalog(&pool).await),
        "the old version keeps its index until contract"
    );
    run_phase(&pool, &plan, Phase::Contract).await;
    assert!(!has_index(&catalog(&pool).await));
}

#[tokio::test]
async fn foreign_key_check_and_unique_are_added_without_blocking() {
    let pg = plan_support::common::primary();
    let pool = demo_database(&pg, "constraints").await;
    sqlx::raw_sql("ALTER TABLE orders DROP CONSTRAINT orders_customer_id_fkey")
        .execute(&pool)
        .await
        .expect("start without the foreign key");
    let m = migration(
        "0008_constraints",
        r#"
[[operations]]
op = "add_foreign_key"
table = "orders"
name = "orders_customer_fk"
columns = ["customer_id"]
references = { table = "customers", columns = ["id"] }

[[operations]]
op = "add_check"
table = "products"
name = "products_price_positive"
check = "price_cents > 0"

[[operations]]
op = "add_unique"
table = "products"
name = "products_name_sku_unique"
columns = ["name", "sku"]
"#,
    );
    let plan = plan(&m, &catalog(&pool).await).expect("plans");
    for step in plan.phase(Phase::Expand) {
        assert!(
            !step.scans || step.lock <= LockLevel::ShareUpdateExclusive,
            "a scanning step must not block writes: {step:?}"
        );
    }
    let validations: Vec<_> = plan
        .phase(Phase::Backfill)
        .filter(|s| s.description.starts_with("validate"))
        .collect();
    assert_eq!(validations.len(), 2);
    assert!(validations
        .iter()
        .all(|s| s.lock == LockLevel::ShareUpdateExclusive));

    run_phase(&pool, &plan, Phase::Expand).await;
    let state = catalog(&pool).await;
    let fk = state
        .table(&QualifiedName::new("public", "orders"))
        .and_then(|t| t.constraint("orders_customer_fk"))
        .expect("fk added");
    assert!(!fk.validated, "added NOT VALID");
    // The new version is published at the end of the backfill: only then is it usable.
    run_phase(&pool, &plan, Phase::Backfill).await;
    let old = client(&pg, "constraints", "public").await;
    let new = client(&pg, "constraints", "public_0008_constraints").await;
    write_concurrently(
        &old,
        orders_writes(10_000, 1),
        &new,
        orders_writes(20_000, 2),
    )
    .await;
    // New rows are checked by both versions from expand on.
    assert!(sqlx::raw_sql(
        "INSERT INTO orders (id, customer_id, total_cents) VALUES (30000, 999999, 1)"
    )
    .execute(&old)
    .await
    .is_err());
    assert!(sqlx::raw_sql("INSERT INTO products (id, sku, name, category, price_cents) VALUES (30000, 'X', 'X', 'home', 0)").execute(&new).await.is_err());
    assert!(sqlx::raw_sql("INSERT INTO products (id, sku, name, category, price_cents) SELECT 30001, sku, name, category, 5 FROM products WHERE id = 1").execute(&new).await.is_err());
    run_phase(&pool, &plan, Phase::Contract).await;
    let after = catalog(&pool).await;
    let orders = after
        .table(&QualifiedName::new("public", "orders"))
        .expect("orders");
    assert!(
        orders
            .constraint("orders_customer_fk")
            .expect("fk")
            .validated
    );
    let products = after
        .table(&QualifiedName::new("public", "products"))
        .expect("products");
    assert!(
        products
            .constraint("products_price_positive")
            .expect("check")
            .validated
    );
    let unique = products
        .constraint("products_name_sku_unique")
        .expect("unique");
    assert_eq!(unique.kind, ConstraintKind::Unique);
    assert_eq!(unique.index.as_deref(), Some("products_name_sku_unique"));
    assert_eq!(unique.columns, ["name", "sku"]);
}
