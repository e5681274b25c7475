//! Expand (and backfill) then rollback leaves the database exactly as before: the same
//! `pg_dump --schema-only` and the same introspected catalog, for every operation.

mod plan_support;

use plan_support::{
    catalog, client, demo_database, migration, run_phase, schema_dump, write_concurrently,
};
use zdm::plan::{plan, Phase};

/// Every operation zdm plans, on disjoint columns so they can share one migration.
const EVERY_OPERATION: &str = r#"
[[operations]]
op = "add_column"
table = "orders"
column = { name = "status", type = "text", nullable = false, default = "'new'", check = "status <> ''" }
up = "CASE WHEN shipped_at IS NULL THEN 'pending' ELSE 'shipped' END"

[[operations]]
op = "add_column"
table = "orders"
column = { name = "reference", type = "uuid", default = "gen_random_uuid()", unique = true }

[[operations]]
op = "drop_column"
table = "orders"
column = "notes"

[[operations]]
op = "rename_column"
table = "customers"
column = "full_name"
to = "display_name"

[[operations]]
op = "change_type"
table = "products"
column = "price_cents"
type = "numeric(12,2)"
up = "price_cents::numeric / 100"
down = "(price_cents * 100)::integer"

[[operations]]
op = "change_type"
table = "products"
column = "price_cents"
type = "numeric(14,3)"
up = "price_cents::numeric(14,3)"
down = "price_cents::numeric(12,2)"

[[operations]]
op = "set_replica_identity"
table = "orders"
identity = "full"

[[operations]]
op = "set_comment"
table = "customers"
column = "display_name"
comment = "How the customer is addressed"

[[operations]]
op = "set_not_null"
table = "customers"
column = "phone"
up = "'unknown'"

[[operations]]
op = "drop_not_null"
table = "customers"
column = "country"
down = "'ZZ'"

[[operations]]
op = "set_default"
table = "orders"
column = "currency"
default = "'USD'"

[[operations]]
op = "create_index"
table = "orders"
name = "orders_shipped_idx"
columns = ["shipped_at"]

[[operations]]
op = "drop_index"
name = "orders_placed_at_idx"

[[operations]]
op = "add_foreign_key"
table = "order_items"
name = "order_items_order_fk"
columns = ["order_id"]
references = { table = "orders", columns = ["id"], on_delete = "cascade" }

[[operations]]
op = "add_check"
table = "order_items"
name = "order_items_quantity_positive"
check = "quantity > 0"

[[operations]]
op = "add_unique"
table = "products"
name = "products_name_sku_unique"
columns = ["name", "sku"]

[[operations]]
op = "drop_constraint"
table = "order_items"
name = "order_items_product_id_fkey"

[[operations]]
op = "create_table"
table = "shipments"
columns = [
  { name = "id", type = "bigint", primary_key = true },
  { name = "order_id", type = "bigint", nullable = false, references = { table = "orders", columns = ["id"] } },
  { name = "carrier", type = "text", nullable = false, default = "'post'" },
]

[[operations]]
op = "rename_table"
table = "order_items"
to = "order_lines"

[[operations]]
op = "set_comment"
table = "order_lines"
comment = "One product of an order"

[[operations]]
op = "split_table"
table = "products"
new_table = "product_details"
columns = ["description", "discontinued_at"]

[[operations]]
op = "raw_sql"
up = "CREATE TABLE IF NOT EXISTS audit_note (id bigint PRIMARY KEY)"
down = "DROP TABLE IF EXISTS audit_note"
"#;

#[tokio::test]
async fn rollback_after_expand_and_backfill_restores_the_schema_exactly() {
    let pg = plan_support::common::primary();
    let pool = demo_database(&pg, "rollback").await;
    let dump_before = schema_dump(&pg, "rollback");
    let before = catalog(&pool).await;
    let m = migration("0009_everything", EVERY_OPERATION);
    let plan = plan(&m, &before).expect("plans");
    run_phase(&pool, &plan, Phase::Expand).await;
    // The new version is published at the end of the backfill: only then is it usable.
    run_phase(&pool, &plan, Phase::Backfill).await;
    let old = client(&pg, "rollback", "public").await;
    let new = client(&pg, "rollback", "public_0009_everything").await;
    write_concurrently(
        &old,
        (0..10).map(|i| format!("INSERT INTO orders (id, customer_id, total_cents, notes) VALUES ({}, 1, 100, 'old')", 10_000 + i)).collect(),
        &new,
        (0..10).map(|i| format!("INSERT INTO orders (id, customer_id, total_cents, status) VALUES ({}, 2, 100, 'cancelled')", 20_000 + i)).collect(),
    )
    .await;
    old.close().await;
    new.close().await;
    assert_ne!(catalog(&pool).await, before, "expand changed something");

    run_phase(&pool, &plan, Phase::Rollback).await;
    assert_eq!(catalog(&pool).await, before);
    let dump_after = schema_dump(&pg, "rollback");
    assert_eq!(dump_after, dump_before);

    // A rollback is idempotent: running it again changes nothing and fails nowhere.
    run_phase(&pool, &plan, Phase::Rollback).await;
    assert_eq!(schema_dump(&pg, "rollback"), dump_before);
}

#[tokio::test]
async fn every_operation_contracts_to_the_planned_shape() {
    let pg = plan_support::common::primary();
    let pool = demo_database(&pg, "contract").await;
    let before = catalog(&pool).await;
    let m = migration("0009_everything", EVERY_OPERATION);
    let (plan, simulated) = zdm::plan::plan_and_simulate(&m, &before).expect("plans");
    run_phase(&pool, &plan, Phase::Expand).await;
    // The new version is published at the end of the backfill: only then is it usable.
    run_phase(&pool, &plan, Phase::Backfill).await;
    let old = client(&pg, "contract", "public").await;
    let new = client(&pg, "contract", "public_0009_everything").await;
    write_concurrently(
        &old,
        (0..10).map(|i| format!("INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) VALUES ({}, 1, 1, 100)", 1 + i)).collect(),
        &new,
        (0..10).map(|i| format!("INSERT INTO order_lines (order_id, product_id, quantity, unit_price_cents) VALUES ({}, 1, 2, 100)", 1 + i)).collect(),
    )
    .await;
    write_concurrently(
        &old,
        vec!["INSERT INTO customers (id, email, full_name, country) VALUES (9000, 'o@x', 'O', 'DE')".to_string()],
        &new,
        vec![
            "INSERT INTO customers (id, email, display_name, phone, country) VALUES (9001, 'n@x', 'N', '1', NULL)".to_string(),
            "INSERT INTO shipments (id, order_id) VALUES (1, 1)".to_string(),
            "INSERT INTO orders (id, customer_id, total_cents) VALUES (9002, 1, 5)".to_string(),
        ],
    )
    .await;
    assert_eq!(
        plan_support::fetch_one(&old, "SELECT country FROM customers WHERE id = 9001").await,
        "ZZ",
        "the old version never sees the NULL the new version wrote"
    );
    assert_eq!(
        plan_support::fetch_one(
            &new,
            "SELECT coalesce(country, 'null') FROM customers WHERE id = 9001"
        )
        .await,
        "null"
    );
    assert_eq!(
        plan_support::fetch_one(&new, "SELECT currency FROM orders WHERE id = 9002").await,
        "USD",
        "the new version has the new default"
    );
    assert_eq!(
        plan_support::fetch_one(&old, "SELECT count(*)::text FROM order_items").await,
        plan_support::fetch_one(&new, "SELECT count(*)::text FROM order_lines").await,
    );
    old.close().await;
    new.close().await;
    run_phase(&pool, &plan, Phase::Contract).await;
    let after = catalog(&pool).await;

    // The real schema has the planned tables and columns (types as PostgreSQL prints them
    // aside, which the simulation keeps as written).
    let shape = |c: &zdm::db::catalog::Catalog| {
        c.tables
            .iter()
            .map(|t| {
                let mut columns: Vec<(String, bool)> = t
                    .columns
                    .iter()
                    .map(|col| (col.name.clone(), col.nullable))
                    .collect();
                columns.sort();
                let mut constraints: Vec<String> =
                    t.constraints.iter().map(|c| c.name.clone()).collect();
                constraints.sort();
                let mut indexes: Vec<String> = t.indexes.iter().map(|i| i.name.clone()).collect();
                indexes.sort();
                (t.name.to_string(), columns, constraints, indexes)
            })
            .collect::<Vec<_>>()
    };
    // raw_sql is not simulated (zdm cannot know what it does): its table is the only extra.
    let mut real = shape(&after);
    real.retain(|(name, ..)| name != "public.audit_note");
    assert_eq!(real, shape(&simulated));
    let views = |c: &zdm::db::catalog::Catalog| {
        c.views
            .iter()
            .map(|v| (v.name.to_string(), v.columns.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(views(&after), views(&simulated));
    assert!(after
        .functions
        .iter()
        .all(|f| !f.name.name.starts_with("_zdm")));
    assert!(after.tables.iter().all(|t| t.triggers.is_empty()));
}

/// The engine re-runs a step that was interrupted: every step must be safe to run twice.
#[tokio::test]
async fn every_step_can_run_twice() {
    let pg = plan_support::common::primary();
    let pool = demo_database(&pg, "twice").await;
    let m = migration("0009_everything", EVERY_OPERATION);
    let (plan, simulated) = zdm::plan::plan_and_simulate(&m, &catalog(&pool).await).expect("plans");
    for phase in [Phase::Expand, Phase::Backfill, Phase::Contract] {
        for step in plan.phase(phase) {
            plan_support::run_step(&pool, step).await;
            plan_support::run_step(&pool, step).await;
        }
    }
    let after = catalog(&pool).await;
    let names = |c: &zdm::db::catalog::Catalog| {
        c.tables
            .iter()
            .filter(|t| t.name.name != "audit_note")
            .map(|t| {
                (
                    t.name.to_string(),
                    t.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>()
    };
    let mut real = names(&after);
    let mut planned = names(&simulated);
    for (_, columns) in real.iter_mut().chain(planned.iter_mut()) {
        columns.sort();
    }
    assert_eq!(real, planned);
}

#[tokio::test]
async fn drop_table_hides_it_from_the_new_version_until_contract() {
    let pg = plan_support::common::primary();
    let pool = demo_database(&pg, "drop_table").await;
    sqlx::raw_sql("CREATE TABLE legacy_notes (id bigint PRIMARY KEY, body text)")
        .execute(&pool)
        .await
        .expect("setup");
    let m = migration(
        "0010_drop_legacy",
        "[[operations]]\nop = \"drop_table\"\ntable = \"legacy_notes\"\n\n[[operations]]\nop = \"raw_sql\"\nup = \"ANALYZE orders\"\nphase = \"contract\"\n",
    );
    let plan = plan(&m, &catalog(&pool).await).expect("plans");
    run_phase(&pool, &plan, Phase::Expand).await;
    // The new version is published at the end of the backfill: only then is it usable.
    run_phase(&pool, &plan, Phase::Backfill).await;
    let old = client(&pg, "drop_table", "public").await;
    let new = client(&pg, "drop_table", "public_0010_drop_legacy").await;
    write_concurrently(
        &old,
        (0..10)
            .map(|i| format!("INSERT INTO legacy_notes VALUES ({i}, 'note')"))
            .collect(),
        &new,
        (0..10)
            .map(|i| {
                format!(
                    "INSERT INTO orders (id, customer_id, total_cents) VALUES ({}, 1, 1)",
                    10_000 + i
                )
            })
            .collect(),
    )
    .await;
    assert!(sqlx::raw_sql("SELECT * FROM legacy_notes")
        .execute(&new)
        .await
        .is_err());
    old.close().await;
    new.close().await;
    run_phase(&pool, &plan, Phase::Contract).await;
    assert!(catalog(&pool)
        .await
        .table(&zdm::db::catalog::QualifiedName::new(
            "public",
            "legacy_notes"
        ))
        .is_none());
}

/// Each step's declared lock is what PostgreSQL really takes: observed in pg_locks while
/// the step's transaction is open, for every transactional step of every phase.
#[tokio::test]
async fn declared_locks_match_the_locks_postgres_takes() {
    let pg = plan_support::common::primary();
    let check = |step: &zdm::plan::Step, taken: Vec<(String, zdm::plan::LockLevel)>| {
        for (relation, level) in taken {
            let unqualified = relation.trim_start_matches("public.").to_string();
            let declared_on = step
                .locked
                .iter()
                .any(|l| l == &format!("public.{unqualified}") || l == &relation);
            if level <= zdm::plan::LockLevel::RowExclusive && !declared_on {
                continue; // reading the catalog or a referenced row: never blocks anyone
            }
            assert!(
                declared_on,
                "{:?} also locks {relation} ({level:?}); declared {:?}",
                step.description, step.locked
            );
            assert!(
                level <= step.lock,
                "{:?} takes {level:?} on {relation} but declares {:?}",
                step.description,
                step.lock
            );
        }
    };
    let pool = demo_database(&pg, "locks").await;
    let m = migration("0009_everything", EVERY_OPERATION);
    let plan = plan(&m, &catalog(&pool).await).expect("plans");
    for phase in [Phase::Expand, Phase::Backfill, Phase::Contract] {
        for step in plan.phase(phase) {
            let taken = plan_support::run_step_observing_locks(&pool, step).await;
            check(step, taken);
        }
    }
    let pool = demo_database(&pg, "locks_rollback").await;
    run_phase(&pool, &plan, Phase::Expand).await;
    // The new version is published at the end of the backfill: only then is it usable.
    run_phase(&pool, &plan, Phase::Backfill).await;
    for step in plan.phase(Phase::Rollback) {
        let taken = plan_support::run_step_observing_locks(&pool, step).await;
        check(step, taken);
    }
}
