//! Introspection on a real PostgreSQL: what the Catalog reports (NOT VALID constraints,
//! INVALID indexes, foreign keys, views, triggers), and that the recorded demo fixture used
//! by the pure planner tests still matches the live demo schema.

mod plan_support;

use plan_support::{catalog, demo_database};
use zdm::db::catalog::{Catalog, ConstraintKind, QualifiedName};

#[tokio::test]
async fn the_catalog_reports_what_the_planner_relies_on() {
    let pg = plan_support::common::primary();
    let pool = demo_database(&pg, "catalog").await;
    let fixture: Catalog =
        serde_json::from_str(include_str!("fixtures/demo_catalog.json")).expect("fixture");
    assert_eq!(
        catalog(&pool).await,
        fixture,
        "tests/fixtures/demo_catalog.json is stale"
    );

    sqlx::raw_sql(
        "ALTER TABLE products ADD CONSTRAINT price_positive CHECK (price_cents > 0) NOT VALID;
         CREATE SCHEMA reporting;
         CREATE VIEW reporting.big_orders AS SELECT id, total_cents FROM public.orders WHERE total_cents > 1000;
         CREATE FUNCTION reporting.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
         CREATE TRIGGER touch BEFORE UPDATE ON public.orders FOR EACH ROW EXECUTE FUNCTION reporting.touch();",
    )
    .execute(&pool)
    .await
    .expect("setup");
    let _ = sqlx::raw_sql(
        "CREATE UNIQUE INDEX CONCURRENTLY orders_customer_unique ON orders (customer_id)",
    )
    .execute(&pool)
    .await;
    let c = catalog(&pool).await;
    let products = c
        .table(&QualifiedName::new("public", "products"))
        .expect("products");
    let check = products.constraint("price_positive").expect("check");
    assert_eq!(check.kind, ConstraintKind::Check);
    assert!(!check.validated);
    assert_eq!(check.columns, ["price_cents"]);
    let orders = c
        .table(&QualifiedName::new("public", "orders"))
        .expect("orders");
    let broken = orders
        .indexes
        .iter()
        .find(|i| i.name == "orders_customer_unique")
        .expect("index");
    assert!(!broken.valid && broken.unique);
    let fk = orders.constraint("orders_customer_id_fkey").expect("fk");
    assert_eq!(
        fk.references.as_ref().map(|r| r.table.to_string()),
        Some("public.customers".to_string())
    );
    assert_eq!(
        orders.primary_key().map(|pk| pk.columns.clone()),
        Some(vec!["id".to_string()])
    );
    assert_eq!(orders.batch_key(), Some(vec!["id".to_string()]));
    assert!(orders.triggers.iter().any(|t| t.name == "touch"));
    let view = c
        .view(&QualifiedName::new("reporting", "big_orders"))
        .expect("view");
    assert_eq!(view.columns, ["id", "total_cents"]);
    assert!(c
        .functions
        .iter()
        .any(|f| f.name.to_string() == "reporting.touch"));
    assert_eq!(
        orders.dependents_of("customer_id").len(),
        3,
        "{:?}",
        orders.dependents_of("customer_id")
    );
}
