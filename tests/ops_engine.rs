//! Every one of the 26 operations through the engine's commands (what `zdm start`,
//! `zdm rollback` and `zdm complete` run) on a real PostgreSQL with the demo schema:
//! start → rollback leaves the catalog and `pg_dump --schema-only` exactly as before;
//! start again, an old-version and a new-version client write at the same time (both
//! succeed, each sees the other's rows in its own shape, both obey the new constraints),
//! then complete and check the final schema. (add_enum_value's rollback leaves its label:
//! PostgreSQL cannot remove one; its test checks that this label is the only difference.)

mod plan_support;

use std::path::Path;

use plan_support::common;
use plan_support::{
    catalog, client, demo_database, fetch_one, schema_dump_without_zdm as schema_dump,
    write_concurrently,
};
use zdm::app;
use zdm::config::{Config, Overrides};

/// One operation's scenario. SQL in `*_sees` and `after` returns one text value.
struct Case {
    /// The migration's name (its file stem); also names the test database.
    name: &'static str,
    /// Run before anything is recorded (extra tables or data the operation needs).
    setup: &'static str,
    /// The migration file (TOML).
    file: &'static str,
    /// Written through the old version (search_path = public) ...
    old_writes: &'static [&'static str],
    /// ... while these are written through the new one (search_path = version schema).
    new_writes: &'static [&'static str],
    /// Then, one after the other, updates of the other version's rows: `(true, sql)` runs
    /// on the old version, `(false, sql)` on the new one.
    cross_updates: &'static [(bool, &'static str)],
    /// Queries on the old version and what they must return.
    old_sees: &'static [(&'static str, &'static str)],
    /// Queries on the new version and what they must return.
    new_sees: &'static [(&'static str, &'static str)],
    /// Writes each version must be refused (the new constraints hold for both).
    refused: &'static [&'static str],
    /// Queries on the physical tables after complete.
    after: &'static [(&'static str, &'static str)],
}

/// The config of a test run: its database and directory, the throttle off (these runs are
/// about each operation's mechanics: a busy test machine's CPU must not hold their
/// backfills; the throttle has tests of its own).
fn config(url: &str, dir: &Path) -> Config {
    // A dot file: the migrations directory skips it.
    let quiet = dir.join(".zdm-quiet.toml");
    std::fs::write(
        &quiet,
        "[throttle]\nmax_host_cpu_percent = \"none\"\nmax_canary_slowdown = \"none\"\n\
         max_active_sessions_factor = \"none\"\n",
    )
    .expect("write the test config");
    Config::load(&Overrides {
        config_file: Some(quiet),
        database_url: Some(url.to_string()),
        migrations_dir: Some(dir.to_path_buf()),
    })
    .expect("config")
}

async fn run(case: Case) {
    run_leaving(case, None).await
}

/// An enum label a rollback leaves behind, as (type, label): PostgreSQL cannot drop one.
type KeptLabel = (&'static str, &'static str);

/// `run`, where rollback is exact but for `kept`: that label stays in its enum type.
async fn run_leaving(case: Case, kept: Option<KeptLabel>) {
    let pg = common::primary();
    let db = case
        .name
        .trim_start_matches(|c: char| c.is_ascii_digit() || c == '_');
    let pool = demo_database(&pg, db).await;
    if !case.setup.is_empty() {
        sqlx::raw_sql(case.setup)
            .execute(&pool)
            .await
            .expect("setup");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(format!("{}.toml", case.name)), case.file).expect("write");
    let config = config(&pg.primary().url(db), dir.path());
    let name = case.name;
    let version = format!("public_{name}");

    // start → rollback: exactly as before.
    let catalog_before = catalog(&pool).await;
    let dump_before = schema_dump(&pg, db);
    let started = app::start::run(&config, Some(name)).await.expect("start");
    assert!(started.contains("ready to contract"), "{started}");
    let rolled_back = app::rollback::run(&config, name).await.expect("rollback");
    assert!(rolled_back.contains("rolled back"), "{rolled_back}");
    let mut catalog_after = catalog(&pool).await;
    let mut dump_after = schema_dump(&pg, db);
    if let Some((enum_type, label)) = kept {
        let found = catalog_after
            .enums
            .iter_mut()
            .find(|e| e.name.name == enum_type)
            .expect("the enum type is still there");
        let before = found.values.len();
        found.values.retain(|v| v != label);
        assert_eq!(found.values.len() + 1, before, "{name}: the label stays");
        let line = format!("    '{label}',");
        assert!(
            dump_after.contains(&line),
            "{name}: the label stays in the dump"
        );
        dump_after = dump_after.replacen(&format!("{line}\n"), "", 1);
    }
    assert_eq!(
        catalog_before, catalog_after,
        "{name}: rollback restores the catalog"
    );
    assert_eq!(
        dump_before, dump_after,
        "{name}: rollback restores the schema dump"
    );

    // start again; both versions write at once.
    app::start::run(&config, Some(name))
        .await
        .expect("start again");
    let old = client(&pg, db, "public").await;
    let new = client(&pg, db, &format!("\"{version}\"")).await;
    write_concurrently(
        &old,
        case.old_writes.iter().map(|s| s.to_string()).collect(),
        &new,
        case.new_writes.iter().map(|s| s.to_string()).collect(),
    )
    .await;
    for (on_old, sql) in case.cross_updates {
        let pool = if *on_old { &old } else { &new };
        sqlx::raw_sql(sql)
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    for (sql, expected) in case.old_sees {
        assert_eq!(fetch_one(&old, sql).await, *expected, "old version: {sql}");
    }
    for (sql, expected) in case.new_sees {
        assert_eq!(fetch_one(&new, sql).await, *expected, "new version: {sql}");
    }
    for sql in case.refused {
        for (who, pool) in [("old", &old), ("new", &new)] {
            assert!(
                sqlx::raw_sql(sql).execute(pool).await.is_err(),
                "{who} version must be refused: {sql}"
            );
        }
    }
    old.close().await;
    new.close().await;

    // This test is about contract's mechanics; the gates have their own tests (gates.rs).
    let options = app::complete::CompleteOptions {
        confirmation: name.to_string(),
        overrides: zdm::gates::registry::names()
            .into_iter()
            .map(String::from)
            .collect(),
        window: Some(std::time::Duration::ZERO),
        ..Default::default()
    };
    let completed = app::complete::run(&config, name, &options)
        .await
        .expect("complete");
    assert!(completed.contains("complete"), "{completed}");
    for (sql, expected) in case.after {
        assert_eq!(
            fetch_one(&pool, sql).await,
            *expected,
            "after complete: {sql}"
        );
    }
    // Columns of tables only: an index built on a shadow column keeps its column's name at
    // creation in its own pg_attribute (PostgreSQL renames no index column; its definition
    // and pg_dump name the table's column).
    let leftovers = fetch_one(
        &pool,
        "SELECT ((SELECT count(*) FROM pg_trigger WHERE tgname LIKE '\\_zdm%')
              + (SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
                   AND a.attname LIKE '\\_zdm%' AND NOT a.attisdropped)
              + (SELECT count(*) FROM pg_constraint WHERE conname LIKE '\\_zdm%')
              + (SELECT count(*) FROM pg_proc WHERE proname LIKE '\\_zdm%'))::text",
    )
    .await;
    assert_eq!(leftovers, "0", "{name}: contract leaves no zdm machinery");
    // The version schema keeps serving the new version after contract.
    let new = client(&pg, db, &format!("\"{version}\"")).await;
    for (sql, expected) in case.new_sees {
        assert_eq!(
            fetch_one(&new, sql).await,
            *expected,
            "after complete: {sql}"
        );
    }
    new.close().await;
    pool.close().await;
}

#[tokio::test]
async fn add_column() {
    run(Case {
        name: "0001_add_column",
        setup: "",
        file: r#"
[[operations]]
op = "add_column"
table = "orders"
column = { name = "status", type = "text", nullable = false, default = "'new'" }
up = "CASE WHEN shipped_at IS NULL THEN 'new' ELSE 'shipped' END"
"#,
        old_writes: &[
            "INSERT INTO orders (id, customer_id, total_cents, shipped_at) VALUES (10001, 1, 100, now())",
            "INSERT INTO orders (id, customer_id, total_cents, shipped_at) VALUES (10002, 1, 100, NULL)",
        ],
        new_writes: &[
            "INSERT INTO orders (id, customer_id, total_cents, status) VALUES (20001, 2, 200, 'cancelled')",
            "INSERT INTO orders (id, customer_id, total_cents) VALUES (20002, 2, 200)",
        ],
        cross_updates: &[],
        old_sees: &[(
            "SELECT count(*)::text FROM orders WHERE id IN (20001, 20002)",
            "2",
        )],
        new_sees: &[
            (
                "SELECT string_agg(status, ',' ORDER BY id) FROM orders WHERE id IN (10001, 10002, 20001, 20002)",
                "shipped,new,cancelled,new",
            ),
            ("SELECT count(*)::text FROM orders WHERE status IS NULL", "0"),
        ],
        refused: &[],
        after: &[
            (
                "SELECT is_nullable FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'status'",
                "NO",
            ),
            ("SELECT status FROM orders WHERE id = 10002", "new"),
        ],
    })
    .await;
}

#[tokio::test]
async fn drop_column() {
    run(Case {
        name: "0001_drop_column",
        setup: "",
        file: r#"
[[operations]]
op = "drop_column"
table = "products"
column = "discontinued_at"
down = "'2020-01-01 00:00:00+00'::timestamptz"
"#,
        old_writes: &["INSERT INTO products (id, sku, name, category, price_cents, discontinued_at) VALUES (10001, 'S-1', 'old', 'x', 1, '2019-05-05 00:00:00+00')"],
        new_writes: &["INSERT INTO products (id, sku, name, category, price_cents) VALUES (20001, 'S-2', 'new', 'x', 2)"],
        cross_updates: &[],
        old_sees: &[(
            "SELECT to_char(discontinued_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') FROM products WHERE id = 20001",
            "2020-01-01",
        )],
        new_sees: &[
            ("SELECT name FROM products WHERE id = 10001", "old"),
            (
                "SELECT count(*)::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'products' AND column_name = 'discontinued_at'",
                "0",
            ),
        ],
        refused: &[],
        after: &[(
            "SELECT count(*)::text FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'products' AND column_name = 'discontinued_at'",
            "0",
        )],
    })
    .await;
}

#[tokio::test]
async fn rename_column() {
    run(Case {
        name: "0001_rename_column",
        setup: "",
        file: r#"
[[operations]]
op = "rename_column"
table = "orders"
column = "notes"
to = "delivery_notes"
"#,
        old_writes: &["INSERT INTO orders (id, customer_id, total_cents, notes) VALUES (10001, 1, 100, 'from old')"],
        new_writes: &["INSERT INTO orders (id, customer_id, total_cents, delivery_notes) VALUES (20001, 2, 200, 'from new')"],
        cross_updates: &[
            (true, "UPDATE orders SET notes = 'old edited new' WHERE id = 20001"),
            (false, "UPDATE orders SET delivery_notes = 'new edited old' WHERE id = 10001"),
        ],
        old_sees: &[("SELECT notes FROM orders WHERE id = 10001", "new edited old")],
        new_sees: &[("SELECT delivery_notes FROM orders WHERE id = 20001", "old edited new")],
        refused: &[],
        after: &[
            ("SELECT delivery_notes FROM orders WHERE id = 20001", "old edited new"),
            ("SELECT count(*)::text FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'orders' AND column_name = 'notes'", "0"),
        ],
    })
    .await;
}

#[tokio::test]
async fn change_type() {
    run(Case {
        name: "0001_change_type",
        setup: "",
        file: r#"
[[operations]]
op = "change_type"
table = "products"
column = "price_cents"
type = "numeric(12,2)"
up = "price_cents::numeric(12,2)"
down = "round(price_cents)::integer"
"#,
        old_writes: &["INSERT INTO products (id, sku, name, category, price_cents) VALUES (10001, 'S-1', 'old', 'x', 150)", "INSERT INTO products (id, sku, name, category, price_cents) VALUES (10002, 'S-3', 'old', 'x', 1)"],
        new_writes: &["INSERT INTO products (id, sku, name, category, price_cents) VALUES (20001, 'S-2', 'new', 'x', 2.5)", "INSERT INTO products (id, sku, name, category, price_cents) VALUES (20002, 'S-4', 'new', 'x', 1.25)"],
        cross_updates: &[
            (true, "UPDATE products SET price_cents = 7 WHERE id = 20002"),
            (false, "UPDATE products SET price_cents = 9.4 WHERE id = 10002"),
        ],
        old_sees: &[
            ("SELECT price_cents::text FROM products WHERE id = 20001", "3"),
            ("SELECT pg_typeof(price_cents)::text FROM products WHERE id = 20001", "integer"),
            ("SELECT price_cents::text FROM products WHERE id = 10002", "9"),
        ],
        new_sees: &[
            ("SELECT price_cents::text FROM products WHERE id = 10001", "150.00"),
            ("SELECT price_cents::text FROM products WHERE id = 20001", "2.50"),
            ("SELECT price_cents::text FROM products WHERE id = 20002", "7.00"),
            ("SELECT count(*)::text FROM products WHERE price_cents IS NULL", "0"),
        ],
        refused: &[],
        after: &[
            ("SELECT data_type FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'products' AND column_name = 'price_cents'", "numeric"),
            ("SELECT is_nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'products' AND column_name = 'price_cents'", "NO"),
            ("SELECT price_cents::text FROM products WHERE id = 20001", "2.50"),
        ],
    })
    .await;
}

#[tokio::test]
async fn set_not_null() {
    run(Case {
        name: "0001_set_not_null",
        setup: "UPDATE customers SET phone = NULL WHERE id <= 10",
        file: r#"
[[operations]]
op = "set_not_null"
table = "customers"
column = "phone"
up = "coalesce(phone, 'unknown')"
"#,
        old_writes: &["INSERT INTO customers (id, email, full_name, country, phone) VALUES (10001, 'old@x', 'Old', 'DE', NULL)"],
        new_writes: &["INSERT INTO customers (id, email, full_name, country, phone) VALUES (20001, 'new@x', 'New', 'FR', '+1')"],
        cross_updates: &[(true, "UPDATE customers SET phone = NULL WHERE id = 20001")],
        old_sees: &[("SELECT phone FROM customers WHERE id = 20001", "unknown")],
        new_sees: &[
            ("SELECT phone FROM customers WHERE id = 10001", "unknown"),
            ("SELECT phone FROM customers WHERE id = 1", "unknown"),
            ("SELECT count(*)::text FROM customers WHERE phone IS NULL", "0"),
        ],
        refused: &[],
        after: &[
            ("SELECT is_nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'customers' AND column_name = 'phone'", "NO"),
        ],
    })
    .await;
}

#[tokio::test]
async fn drop_not_null() {
    run(Case {
        name: "0001_drop_not_null",
        setup: "",
        file: r#"
[[operations]]
op = "drop_not_null"
table = "customers"
column = "full_name"
down = "split_part(email, '@', 1)"
"#,
        old_writes: &["INSERT INTO customers (id, email, full_name, country) VALUES (10001, 'old@x', 'Old', 'DE')"],
        new_writes: &["INSERT INTO customers (id, email, full_name, country) VALUES (20001, 'newbie@x.org', NULL, 'FR')"],
        cross_updates: &[(false, "UPDATE customers SET full_name = NULL WHERE id = 10001")],
        old_sees: &[
            ("SELECT full_name FROM customers WHERE id = 20001", "newbie"),
            ("SELECT full_name FROM customers WHERE id = 10001", "old"),
        ],
        new_sees: &[
            ("SELECT coalesce(full_name, 'null') FROM customers WHERE id = 10001", "null"),
            ("SELECT coalesce(full_name, 'null') FROM customers WHERE id = 20001", "null"),
        ],
        refused: &[],
        after: &[
            ("SELECT is_nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'customers' AND column_name = 'full_name'", "YES"),
            ("SELECT coalesce(full_name, 'null') FROM customers WHERE id = 20001", "null"),
        ],
    })
    .await;
}

#[tokio::test]
async fn set_default() {
    run(Case {
        name: "0001_set_default",
        setup: "",
        file: r#"
[[operations]]
op = "set_default"
table = "products"
column = "category"
default = "'uncategorized'"
"#,
        old_writes: &["INSERT INTO products (id, sku, name, category, price_cents) VALUES (10001, 'S-1', 'old', 'tools', 5)"],
        new_writes: &["INSERT INTO products (id, sku, name, price_cents) VALUES (20001, 'S-2', 'new', 5)"],
        cross_updates: &[],
        old_sees: &[("SELECT category FROM products WHERE id = 20001", "uncategorized")],
        new_sees: &[("SELECT category FROM products WHERE id = 10001", "tools")],
        refused: &[],
        after: &[(
            "SELECT column_default FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'products' AND column_name = 'category'",
            "'uncategorized'::text",
        )],
    })
    .await;
}

#[tokio::test]
async fn add_check() {
    run(Case {
        name: "0001_add_check",
        setup: "",
        file: r#"
[[operations]]
op = "add_check"
table = "order_items"
name = "order_items_quantity_positive"
check = "quantity > 0"
"#,
        old_writes: &["INSERT INTO order_items (id, order_id, product_id, quantity, unit_price_cents) VALUES (10001, 1, 1, 2, 100)"],
        new_writes: &["INSERT INTO order_items (id, order_id, product_id, quantity, unit_price_cents) VALUES (20001, 1, 1, 3, 100)"],
        cross_updates: &[],
        old_sees: &[("SELECT quantity::text FROM order_items WHERE id = 20001", "3")],
        new_sees: &[("SELECT quantity::text FROM order_items WHERE id = 10001", "2")],
        refused: &["INSERT INTO order_items (id, order_id, product_id, quantity, unit_price_cents) VALUES (30001, 1, 1, 0, 100)"],
        after: &[(
            "SELECT convalidated::text FROM pg_constraint WHERE conname = 'order_items_quantity_positive'",
            "true",
        )],
    })
    .await;
}

#[tokio::test]
async fn add_unique() {
    run(Case {
        name: "0001_add_unique",
        setup: "UPDATE products SET description = 'd' || id",
        file: r#"
[[operations]]
op = "add_unique"
table = "products"
name = "products_description_key"
columns = ["description"]
"#,
        old_writes: &["INSERT INTO products (id, sku, name, category, price_cents, description) VALUES (10001, 'S-1', 'old', 'x', 1, 'from old')"],
        new_writes: &["INSERT INTO products (id, sku, name, category, price_cents, description) VALUES (20001, 'S-2', 'new', 'x', 1, 'from new')"],
        cross_updates: &[],
        old_sees: &[("SELECT description FROM products WHERE id = 20001", "from new")],
        new_sees: &[("SELECT description FROM products WHERE id = 10001", "from old")],
        refused: &["INSERT INTO products (id, sku, name, category, price_cents, description) VALUES (30001, 'S-3', 'dup', 'x', 1, 'from old')"],
        after: &[(
            "SELECT contype::text FROM pg_constraint WHERE conname = 'products_description_key'",
            "u",
        )],
    })
    .await;
}

#[tokio::test]
async fn add_foreign_key() {
    run(Case {
        name: "0001_add_foreign_key",
        setup: "CREATE TABLE warehouses (code text PRIMARY KEY);
                INSERT INTO warehouses VALUES ('A'), ('B');
                ALTER TABLE products ADD COLUMN warehouse text;
                UPDATE products SET warehouse = 'A';",
        file: r#"
[[operations]]
op = "add_foreign_key"
table = "products"
name = "products_warehouse_fkey"
columns = ["warehouse"]
references = { table = "warehouses", columns = ["code"] }
"#,
        old_writes: &["INSERT INTO products (id, sku, name, category, price_cents, warehouse) VALUES (10001, 'S-1', 'old', 'x', 1, 'B')"],
        new_writes: &["INSERT INTO products (id, sku, name, category, price_cents, warehouse) VALUES (20001, 'S-2', 'new', 'x', 1, 'A')"],
        cross_updates: &[],
        old_sees: &[("SELECT warehouse FROM products WHERE id = 20001", "A")],
        new_sees: &[("SELECT warehouse FROM products WHERE id = 10001", "B")],
        refused: &["INSERT INTO products (id, sku, name, category, price_cents, warehouse) VALUES (30001, 'S-3', 'bad', 'x', 1, 'Z')"],
        after: &[(
            "SELECT convalidated::text FROM pg_constraint WHERE conname = 'products_warehouse_fkey'",
            "true",
        )],
    })
    .await;
}

#[tokio::test]
async fn drop_constraint() {
    run(Case {
        name: "0001_drop_constraint",
        setup: "",
        file: r#"
[[operations]]
op = "drop_constraint"
table = "orders"
name = "orders_customer_id_fkey"
"#,
        old_writes: &["INSERT INTO orders (id, customer_id, total_cents) VALUES (10001, 1, 100)"],
        new_writes: &["INSERT INTO orders (id, customer_id, total_cents) VALUES (20001, 2, 200)"],
        cross_updates: &[],
        old_sees: &[("SELECT customer_id::text FROM orders WHERE id = 20001", "2")],
        new_sees: &[("SELECT customer_id::text FROM orders WHERE id = 10001", "1")],
        // Both versions obey it until contract.
        refused: &["INSERT INTO orders (id, customer_id, total_cents) VALUES (30001, 999999, 1)"],
        after: &[
            ("SELECT count(*)::text FROM pg_constraint WHERE conname = 'orders_customer_id_fkey'", "0"),
            ("INSERT INTO orders (id, customer_id, total_cents) VALUES (30001, 999999, 1) RETURNING id::text", "30001"),
        ],
    })
    .await;
}

#[tokio::test]
async fn create_index() {
    run(Case {
        name: "0001_create_index",
        setup: "",
        file: r#"
[[operations]]
op = "create_index"
table = "orders"
name = "orders_customer_id_placed_at_idx"
columns = ["customer_id", "placed_at"]
"#,
        old_writes: &["INSERT INTO orders (id, customer_id, total_cents) VALUES (10001, 1, 100)"],
        new_writes: &["INSERT INTO orders (id, customer_id, total_cents) VALUES (20001, 2, 200)"],
        cross_updates: &[],
        old_sees: &[("SELECT customer_id::text FROM orders WHERE id = 20001", "2")],
        new_sees: &[("SELECT customer_id::text FROM orders WHERE id = 10001", "1")],
        refused: &[],
        after: &[(
            "SELECT (indisvalid AND indisready)::text FROM pg_index WHERE indexrelid = 'orders_customer_id_placed_at_idx'::regclass",
            "true",
        )],
    })
    .await;
}

#[tokio::test]
async fn drop_index() {
    run(Case {
        name: "0001_drop_index",
        setup: "",
        file: r#"
[[operations]]
op = "drop_index"
name = "orders_placed_at_idx"
"#,
        old_writes: &["INSERT INTO orders (id, customer_id, total_cents) VALUES (10001, 1, 100)"],
        new_writes: &["INSERT INTO orders (id, customer_id, total_cents) VALUES (20001, 2, 200)"],
        cross_updates: &[],
        old_sees: &[
            ("SELECT customer_id::text FROM orders WHERE id = 20001", "2"),
            // The old version keeps the index until contract.
            (
                "SELECT (to_regclass('public.orders_placed_at_idx') IS NOT NULL)::text",
                "true",
            ),
        ],
        new_sees: &[("SELECT customer_id::text FROM orders WHERE id = 10001", "1")],
        refused: &[],
        after: &[(
            "SELECT (to_regclass('public.orders_placed_at_idx') IS NULL)::text",
            "true",
        )],
    })
    .await;
}

#[tokio::test]
async fn create_table() {
    run(Case {
        name: "0001_create_table",
        setup: "",
        file: r#"
[[operations]]
op = "create_table"
table = "carriers"
columns = [
  { name = "code", type = "text", primary_key = true },
  { name = "name", type = "text", nullable = false },
]
"#,
        old_writes: &["INSERT INTO orders (id, customer_id, total_cents) VALUES (10001, 1, 100)"],
        new_writes: &["INSERT INTO carriers (code, name) VALUES ('dhl', 'DHL')"],
        cross_updates: &[],
        old_sees: &[("SELECT name FROM public.carriers WHERE code = 'dhl'", "DHL")],
        new_sees: &[
            ("SELECT customer_id::text FROM orders WHERE id = 10001", "1"),
            ("SELECT name FROM carriers WHERE code = 'dhl'", "DHL"),
        ],
        refused: &["INSERT INTO carriers (code, name) VALUES ('ups', NULL)"],
        after: &[("SELECT name FROM carriers WHERE code = 'dhl'", "DHL")],
    })
    .await;
}

#[tokio::test]
async fn drop_table() {
    run(Case {
        name: "0001_drop_table",
        setup: "CREATE TABLE legacy_notes (id bigint PRIMARY KEY, body text);
                INSERT INTO legacy_notes VALUES (1, 'kept until contract');",
        file: r#"
[[operations]]
op = "drop_table"
table = "legacy_notes"
"#,
        old_writes: &["INSERT INTO legacy_notes (id, body) VALUES (10001, 'from old')"],
        new_writes: &["INSERT INTO orders (id, customer_id, total_cents) VALUES (20001, 2, 200)"],
        cross_updates: &[],
        old_sees: &[
            ("SELECT string_agg(body, ',' ORDER BY id) FROM legacy_notes", "kept until contract,from old"),
            ("SELECT customer_id::text FROM orders WHERE id = 20001", "2"),
        ],
        new_sees: &[(
            "SELECT count(*)::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'legacy_notes'",
            "0",
        )],
        refused: &[],
        after: &[("SELECT (to_regclass('public.legacy_notes') IS NULL)::text", "true")],
    })
    .await;
}

#[tokio::test]
async fn rename_table() {
    run(Case {
        name: "0001_rename_table",
        setup: "CREATE TABLE carriers (code text PRIMARY KEY, name text NOT NULL);",
        file: r#"
[[operations]]
op = "rename_table"
table = "carriers"
to = "shipping_carriers"
"#,
        old_writes: &["INSERT INTO carriers (code, name) VALUES ('ups', 'UPS')"],
        new_writes: &["INSERT INTO shipping_carriers (code, name) VALUES ('dhl', 'DHL')"],
        cross_updates: &[],
        old_sees: &[("SELECT string_agg(code, ',' ORDER BY code) FROM carriers", "dhl,ups")],
        new_sees: &[
            ("SELECT string_agg(code, ',' ORDER BY code) FROM shipping_carriers", "dhl,ups"),
            (
                "SELECT count(*)::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'carriers'",
                "0",
            ),
        ],
        refused: &[],
        after: &[
            ("SELECT string_agg(code, ',' ORDER BY code) FROM shipping_carriers", "dhl,ups"),
            ("SELECT (to_regclass('public.carriers') IS NULL)::text", "true"),
        ],
    })
    .await;
}

#[tokio::test]
async fn split_table() {
    run(Case {
        name: "0001_split_table",
        setup: "",
        file: r#"
[[operations]]
op = "split_table"
table = "customers"
new_table = "customer_marketing"
columns = ["marketing_opt_in"]
"#,
        old_writes: &["INSERT INTO customers (id, email, full_name, country, marketing_opt_in) VALUES (10001, 'old@x', 'Old', 'DE', true)"],
        new_writes: &["INSERT INTO customers (id, email, full_name, country) VALUES (20001, 'new@x', 'New', 'FR'); \
                       INSERT INTO customer_marketing (id, marketing_opt_in) VALUES (20001, false)"],
        cross_updates: &[
            (false, "UPDATE customer_marketing SET marketing_opt_in = NULL WHERE id = 1"),
            (true, "UPDATE customers SET marketing_opt_in = true WHERE id = 20001"),
        ],
        old_sees: &[
            ("SELECT marketing_opt_in::text FROM customers WHERE id = 20001", "true"),
            ("SELECT coalesce(marketing_opt_in::text, 'null') FROM customers WHERE id = 1", "null"),
        ],
        new_sees: &[
            ("SELECT marketing_opt_in::text FROM customer_marketing WHERE id = 10001", "true"),
            ("SELECT marketing_opt_in::text FROM customer_marketing WHERE id = 20001", "true"),
            (
                "SELECT (SELECT count(*) FROM customers)::text || '=' || (SELECT count(*) FROM customer_marketing)::text",
                "102=102",
            ),
            (
                "SELECT count(*)::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'customers' AND column_name = 'marketing_opt_in'",
                "0",
            ),
        ],
        refused: &[],
        after: &[
            ("SELECT count(*)::text FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'customers' AND column_name = 'marketing_opt_in'", "0"),
            ("SELECT marketing_opt_in::text FROM customer_marketing WHERE id = 10001", "true"),
        ],
    })
    .await;
}

/// split_table with its key renamed and a NOT NULL column without a default moved under a
/// new name and type (up/down), beside a column moved as it is: the old version's inserts
/// supply the value, the new version's get it from their new-table row in the same
/// transaction, and a row that would be committed without it is refused for both.
#[tokio::test]
async fn split_table_renamed_key_transformed_not_null_column() {
    run(Case {
        name: "0001_split_table_transformed",
        setup: "UPDATE customers SET marketing_opt_in = (id % 2 = 1);
                ALTER TABLE customers ALTER COLUMN marketing_opt_in SET NOT NULL;",
        file: r#"
[[operations]]
op = "split_table"
table = "customers"
new_table = "customer_marketing"
key = { id = "customer_id" }
columns = [
  { column = "marketing_opt_in", to = "opt_in", type = "text", up = "CASE WHEN marketing_opt_in THEN 'yes' ELSE 'no' END", down = "opt_in = 'yes'" },
  "phone",
]
"#,
        old_writes: &["INSERT INTO customers (id, email, full_name, country, marketing_opt_in, phone) VALUES (10001, 'old@x', 'Old', 'DE', true, '+49')"],
        new_writes: &["INSERT INTO customers (id, email, full_name, country) VALUES (20001, 'new@x', 'New', 'FR'); \
                       INSERT INTO customer_marketing (customer_id, opt_in, phone) VALUES (20001, 'no', '+33')"],
        cross_updates: &[
            (false, "UPDATE customer_marketing SET opt_in = 'no' WHERE customer_id = 1"),
            (true, "UPDATE customers SET marketing_opt_in = true, phone = '+34' WHERE id = 20001"),
        ],
        old_sees: &[
            ("SELECT marketing_opt_in::text || ' ' || phone FROM customers WHERE id = 20001", "true +34"),
            ("SELECT marketing_opt_in::text FROM customers WHERE id = 1", "false"),
            ("SELECT count(*)::text FROM customers WHERE marketing_opt_in IS NULL", "0"),
        ],
        new_sees: &[
            ("SELECT opt_in || ' ' || phone FROM customer_marketing WHERE customer_id = 10001", "yes +49"),
            ("SELECT opt_in || ' ' || phone FROM customer_marketing WHERE customer_id = 20001", "yes +34"),
            ("SELECT opt_in FROM customer_marketing WHERE customer_id = 1", "no"),
            ("SELECT opt_in FROM customer_marketing WHERE customer_id = 2", "no"),
            (
                "SELECT (SELECT count(*) FROM customers)::text || '=' || (SELECT count(*) FROM customer_marketing)::text",
                "102=102",
            ),
            (
                "SELECT count(*)::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'customers' AND column_name IN ('marketing_opt_in', 'phone')",
                "0",
            ),
        ],
        // A customer without its marketing row would leave the old version's NOT NULL
        // column empty: refused at commit for the new version, at once for the old one.
        refused: &["INSERT INTO customers (id, email, full_name, country) VALUES (30001, 'x@x', 'X', 'NL')"],
        after: &[
            ("SELECT count(*)::text FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'customers' AND column_name IN ('marketing_opt_in', 'phone')", "0"),
            ("SELECT opt_in FROM customer_marketing WHERE customer_id = 10001", "yes"),
            ("SELECT is_nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'customer_marketing' AND column_name = 'opt_in'", "NO"),
        ],
    })
    .await;
}

/// split_table of a table with a composite primary key, each key column renamed, two NOT
/// NULL columns without a default moved (one as it is, one to another unit and type, its
/// up/down naming the columns qualified by their table).
#[tokio::test]
async fn split_table_composite_key() {
    run(Case {
        name: "0001_split_table_composite",
        setup: "CREATE TABLE shipments (order_id bigint NOT NULL, seq integer NOT NULL, carrier text NOT NULL,
                    weight_grams integer NOT NULL, label text, PRIMARY KEY (order_id, seq));
                INSERT INTO shipments (order_id, seq, carrier, weight_grams)
                SELECT o, s, (ARRAY['dhl', 'ups'])[1 + (o + s) % 2], 100 * o + s
                FROM generate_series(1, 50) o, generate_series(1, 2) s;",
        file: r#"
[[operations]]
op = "split_table"
table = "shipments"
new_table = "shipment_details"
key = { order_id = "shipment_order_id", seq = "shipment_seq" }
columns = [
  "carrier",
  { column = "weight_grams", to = "weight_kg", type = "numeric(10,3)", up = "shipments.weight_grams / 1000.0", down = "round(shipment_details.weight_kg * 1000)::integer" },
]
"#,
        old_writes: &["INSERT INTO shipments (order_id, seq, carrier, weight_grams) VALUES (900, 1, 'dhl', 1500)"],
        new_writes: &["INSERT INTO shipments (order_id, seq, label) VALUES (901, 1, 'fragile'); \
                       INSERT INTO shipment_details (shipment_order_id, shipment_seq, carrier, weight_kg) VALUES (901, 1, 'ups', 2.25)"],
        cross_updates: &[
            (false, "UPDATE shipment_details SET weight_kg = 0.5 WHERE shipment_order_id = 1 AND shipment_seq = 2"),
            (true, "UPDATE shipments SET weight_grams = 3000 WHERE order_id = 901 AND seq = 1"),
        ],
        old_sees: &[
            ("SELECT carrier || ' ' || weight_grams FROM shipments WHERE order_id = 901 AND seq = 1", "ups 3000"),
            ("SELECT weight_grams::text FROM shipments WHERE order_id = 1 AND seq = 2", "500"),
        ],
        new_sees: &[
            ("SELECT carrier || ' ' || weight_kg FROM shipment_details WHERE shipment_order_id = 900 AND shipment_seq = 1", "dhl 1.500"),
            ("SELECT weight_kg::text FROM shipment_details WHERE shipment_order_id = 901 AND shipment_seq = 1", "3.000"),
            ("SELECT weight_kg::text FROM shipment_details WHERE shipment_order_id = 1 AND shipment_seq = 2", "0.500"),
            ("SELECT weight_kg::text FROM shipment_details WHERE shipment_order_id = 7 AND shipment_seq = 1", "0.701"),
            (
                "SELECT (SELECT count(*) FROM shipments)::text || '=' || (SELECT count(*) FROM shipment_details)::text",
                "102=102",
            ),
        ],
        refused: &["INSERT INTO shipments (order_id, seq) VALUES (902, 1)"],
        after: &[
            ("SELECT string_agg(column_name::text, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'shipments'", "order_id,seq,label"),
            ("SELECT weight_kg::text FROM shipment_details WHERE shipment_order_id = 900 AND shipment_seq = 1", "1.500"),
        ],
    })
    .await;
}

/// Rollback after both versions wrote through a split with a NOT NULL column moved: the
/// new version's rows keep their values for the old version (those written while rollback
/// was dropping the triggers are filled from the new table; one with no value there stops
/// rollback until it has one), NOT NULL is back, and the schema is exactly as before.
#[tokio::test]
async fn split_table_not_null_rollback_after_writes() {
    let pg = common::primary();
    let db = "split_table_not_null_rollback";
    let pool = demo_database(&pg, db).await;
    sqlx::raw_sql(
        "UPDATE customers SET marketing_opt_in = coalesce(marketing_opt_in, false);
         ALTER TABLE customers ALTER COLUMN marketing_opt_in SET NOT NULL;",
    )
    .execute(&pool)
    .await
    .expect("setup");
    let name = "0001_split_table_not_null_rollback";
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(format!("{name}.toml")),
        "[[operations]]\nop = \"split_table\"\ntable = \"customers\"\nnew_table = \"customer_marketing\"\n\
         key = { id = \"customer_id\" }\ncolumns = [{ column = \"marketing_opt_in\", to = \"opt_in\" }]\n",
    )
    .expect("write");
    let config = config(&pg.primary().url(db), dir.path());
    let dump_before = schema_dump(&pg, db);
    app::start::run(&config, Some(name)).await.expect("start");
    let old = client(&pg, db, "public").await;
    let new = client(&pg, db, &format!("\"public_{name}\"")).await;
    write_concurrently(
        &old,
        vec!["INSERT INTO customers (id, email, full_name, country, marketing_opt_in) VALUES (10001, 'o@x', 'O', 'DE', true)".to_string()],
        &new,
        vec!["BEGIN; INSERT INTO customers (id, email, full_name, country) VALUES (20001, 'n@x', 'N', 'FR'); \
              INSERT INTO customer_marketing (customer_id, opt_in) VALUES (20001, true); COMMIT".to_string()],
    )
    .await;
    // A transaction that never writes the marketing row is refused at its commit.
    let mut tx = new.begin().await.expect("begin");
    sqlx::raw_sql(
        "INSERT INTO customers (id, email, full_name, country) VALUES (20002, 'm@x', 'M', 'FR')",
    )
    .execute(&mut *tx)
    .await
    .expect("the insert itself goes through");
    let refused = tx.commit().await.expect_err("refused at commit");
    assert!(
        refused.to_string().contains("marketing_opt_in"),
        "the error names the column: {refused}"
    );
    // Rollback's first step drops the triggers while the new version can still write: a
    // row it writes then gets no copy back. Here as if that step had just run.
    sqlx::raw_sql(
        "DROP TRIGGER _zdm_split_nn_customers ON customers;
         DROP TRIGGER _zdm_split_customer_marketing ON customer_marketing;",
    )
    .execute(&pool)
    .await
    .expect("drop the triggers as rollback does first");
    sqlx::raw_sql(
        "INSERT INTO customers (id, email, full_name, country) VALUES (20003, 'w@x', 'W', 'NL'); \
         INSERT INTO customer_marketing (customer_id, opt_in) VALUES (20003, false)",
    )
    .execute(&new)
    .await
    .expect("a new-version write in that window");
    // And one without its marketing row: nothing can give it a value.
    sqlx::raw_sql(
        "INSERT INTO customers (id, email, full_name, country) VALUES (20004, 'v@x', 'V', 'NL')",
    )
    .execute(&new)
    .await
    .expect("a new-version write in that window, without its marketing row");
    old.close().await;
    new.close().await;
    // Rollback stops at the validation, naming the check, without restoring NOT NULL ...
    let stopped = app::rollback::run(&config, name)
        .await
        .expect_err("a row without a value stops rollback");
    assert!(
        format!("{stopped:#}").contains("_zdm_nn_customers_marketing_opt_in"),
        "{stopped:#}"
    );
    // ... and runs again once the row has its value.
    sqlx::raw_sql("UPDATE customers SET marketing_opt_in = true WHERE id = 20004")
        .execute(&pool)
        .await
        .expect("give the row its value");
    let rolled_back = app::rollback::run(&config, name).await.expect("rollback");
    assert!(rolled_back.contains("rolled back"), "{rolled_back}");
    // Rollback filled 20003 from the new table before it went.
    assert_eq!(
        fetch_one(
            &pool,
            "SELECT string_agg(id || '=' || marketing_opt_in, ',' ORDER BY id) FROM customers WHERE id > 10000"
        )
        .await,
        "10001=true,20001=true,20003=false,20004=true"
    );
    assert_eq!(
        dump_before,
        schema_dump(&pg, db),
        "rollback restores the schema dump"
    );
    pool.close().await;
}

/// split_table's `up` is checked against the database before expand: a column it names
/// that does not exist stops `start` before anything changes.
#[tokio::test]
async fn split_table_up_that_does_not_fit_stops_start() {
    let pg = common::primary();
    let db = "split_table_up_does_not_fit";
    let pool = demo_database(&pg, db).await;
    let name = "0001_split_table_up_does_not_fit";
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(format!("{name}.toml")),
        "[[operations]]\nop = \"split_table\"\ntable = \"customers\"\nnew_table = \"customer_marketing\"\n\
         columns = [{ column = \"marketing_opt_in\", type = \"text\", up = \"marketing_opt_out::text\", down = \"marketing_opt_in::boolean\" }]\n",
    )
    .expect("write");
    let config = config(&pg.primary().url(db), dir.path());
    let before = catalog(&pool).await;
    let refused = app::start::run(&config, Some(name))
        .await
        .expect_err("refused before expand");
    assert!(
        format!("{refused:#}").contains("`columns[0].up` does not fit the database: column \"marketing_opt_out\" does not exist"),
        "{refused:#}"
    );
    assert_eq!(before, catalog(&pool).await, "nothing changed");
    pool.close().await;
}

#[tokio::test]
async fn raw_sql() {
    run(Case {
        name: "0001_raw_sql",
        setup: "",
        file: r#"
[[operations]]
op = "raw_sql"
up = """
CREATE FUNCTION public.order_line_total_cents(quantity integer, unit_price_cents integer)
RETURNS bigint LANGUAGE sql IMMUTABLE RETURN quantity::bigint * unit_price_cents;
"""
down = "DROP FUNCTION public.order_line_total_cents(integer, integer);"
"#,
        old_writes: &["INSERT INTO orders (id, customer_id, total_cents) VALUES (10001, 1, 100)"],
        new_writes: &["INSERT INTO orders (id, customer_id, total_cents) VALUES (20001, 2, 200)"],
        cross_updates: &[],
        old_sees: &[
            ("SELECT customer_id::text FROM orders WHERE id = 20001", "2"),
            ("SELECT order_line_total_cents(3, 50)::text", "150"),
        ],
        new_sees: &[
            ("SELECT customer_id::text FROM orders WHERE id = 10001", "1"),
            ("SELECT public.order_line_total_cents(2, 50)::text", "100"),
        ],
        refused: &[],
        after: &[("SELECT order_line_total_cents(4, 25)::text", "100")],
    })
    .await;
}

#[tokio::test]
async fn create_enum() {
    run(Case {
        name: "0001_create_enum",
        setup: "",
        file: r#"
[[operations]]
op = "create_enum"
name = "order_priority"
values = ["low", "normal", "high"]

[[operations]]
op = "add_column"
table = "orders"
column = { name = "priority", type = "order_priority", nullable = false, default = "'normal'" }
up = "CASE WHEN total_cents > 150 THEN 'high'::order_priority ELSE 'normal' END"
"#,
        old_writes: &["INSERT INTO orders (id, customer_id, total_cents) VALUES (10001, 1, 100)", "INSERT INTO orders (id, customer_id, total_cents) VALUES (10002, 1, 900)"],
        new_writes: &["INSERT INTO orders (id, customer_id, total_cents, priority) VALUES (20001, 2, 200, 'low')", "INSERT INTO orders (id, customer_id, total_cents) VALUES (20002, 2, 200)"],
        cross_updates: &[(false, "UPDATE orders SET priority = 'low' WHERE id = 10002")],
        old_sees: &[("SELECT count(*)::text FROM orders WHERE id IN (20001, 20002)", "2")],
        new_sees: &[
            ("SELECT string_agg(priority::text, ',' ORDER BY id) FROM orders WHERE id IN (10001, 10002, 20001, 20002)", "normal,low,low,normal"),
            ("SELECT count(*)::text FROM orders WHERE priority IS NULL", "0"),
        ],
        refused: &["SELECT 'urgent'::public.order_priority"],
        after: &[
            ("SELECT udt_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'orders' AND column_name = 'priority'", "order_priority"),
            ("SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = 'public.order_priority'::regtype", "low,normal,high"),
        ],
    })
    .await;
}

#[tokio::test]
async fn drop_enum() {
    run(Case {
        name: "0001_drop_enum",
        setup: "CREATE TYPE legacy_state AS ENUM ('active', 'archived');
                ALTER TABLE products ADD COLUMN legacy legacy_state;",
        file: r#"
[[operations]]
op = "drop_column"
table = "products"
column = "legacy"
down = "'active'"

[[operations]]
op = "drop_enum"
name = "legacy_state"
"#,
        old_writes: &["INSERT INTO products (id, sku, name, category, price_cents, legacy) VALUES (10001, 'S-1', 'old', 'x', 1, 'archived')"],
        new_writes: &["INSERT INTO products (id, sku, name, category, price_cents) VALUES (20001, 'S-2', 'new', 'x', 2)"],
        cross_updates: &[],
        old_sees: &[
            ("SELECT legacy::text FROM products WHERE id = 20001", "active"),
            ("SELECT legacy::text FROM products WHERE id = 10001", "archived"),
        ],
        new_sees: &[("SELECT name FROM products WHERE id = 10001", "old")],
        refused: &[],
        after: &[("SELECT (to_regtype('public.legacy_state') IS NULL)::text", "true")],
    })
    .await;
}

#[tokio::test]
async fn add_enum_value() {
    run_leaving(
        Case {
            name: "0001_add_enum_value",
            setup: "CREATE TYPE order_state AS ENUM ('placed', 'shipped');
                    ALTER TABLE orders ADD COLUMN state order_state NOT NULL DEFAULT 'placed';",
            file: r#"
[[operations]]
op = "add_enum_value"
name = "order_state"
value = "packed"
after = "placed"
"#,
            old_writes: &["INSERT INTO orders (id, customer_id, total_cents, state) VALUES (10001, 1, 100, 'shipped')"],
            new_writes: &["INSERT INTO orders (id, customer_id, total_cents, state) VALUES (20001, 2, 200, 'packed')"],
            cross_updates: &[(false, "UPDATE orders SET state = 'packed' WHERE id = 10001")],
            old_sees: &[
                ("SELECT state::text FROM orders WHERE id = 20001", "packed"),
                ("SELECT string_agg(state::text, ',' ORDER BY state) FROM orders WHERE id IN (10001, 20001)", "packed,packed"),
            ],
            new_sees: &[
                ("SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = 'public.order_state'::regtype", "placed,packed,shipped"),
                ("SELECT count(*)::text FROM orders WHERE state = 'packed'", "2"),
            ],
            refused: &["INSERT INTO orders (id, customer_id, total_cents, state) VALUES (30001, 1, 1, 'lost')"],
            after: &[("SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = 'public.order_state'::regtype", "placed,packed,shipped")],
        },
        Some(("order_state", "packed")),
    )
    .await;
}

#[tokio::test]
async fn rename_enum_value() {
    run(Case {
        name: "0001_rename_enum_value",
        setup: "CREATE TYPE ticket_kind AS ENUM ('bug', 'feature');",
        file: r#"
[[operations]]
op = "rename_enum_value"
name = "ticket_kind"
from = "feature"
to = "enhancement"
"#,
        old_writes: &["INSERT INTO orders (id, customer_id, total_cents) VALUES (10001, 1, 100)"],
        new_writes: &["INSERT INTO orders (id, customer_id, total_cents) VALUES (20001, 2, 200)"],
        cross_updates: &[],
        old_sees: &[("SELECT customer_id::text FROM orders WHERE id = 20001", "2")],
        new_sees: &[("SELECT 'enhancement'::public.ticket_kind::text", "enhancement")],
        refused: &["SELECT 'feature'::public.ticket_kind"],
        after: &[("SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = 'public.ticket_kind'::regtype", "bug,enhancement")],
    })
    .await;
}

#[tokio::test]
async fn change_type_to_an_enum() {
    run(Case {
        name: "0001_change_type_to_an_enum",
        setup: "CREATE TYPE order_state AS ENUM ('placed', 'shipped');
                ALTER TABLE orders ADD COLUMN state text NOT NULL DEFAULT 'placed';",
        file: r#"
[[operations]]
op = "change_type"
table = "orders"
column = "state"
type = "order_state"
up = "state::order_state"
down = "state::text"
"#,
        old_writes: &["INSERT INTO orders (id, customer_id, total_cents, state) VALUES (10001, 1, 100, 'shipped')", "INSERT INTO orders (id, customer_id, total_cents) VALUES (10002, 1, 100)"],
        new_writes: &["INSERT INTO orders (id, customer_id, total_cents, state) VALUES (20001, 2, 200, 'shipped')", "INSERT INTO orders (id, customer_id, total_cents) VALUES (20002, 2, 200)"],
        cross_updates: &[
            (true, "UPDATE orders SET state = 'placed' WHERE id = 20001"),
            (false, "UPDATE orders SET state = 'placed' WHERE id = 10001"),
        ],
        old_sees: &[
            ("SELECT pg_typeof(state)::text FROM orders WHERE id = 20002", "text"),
            ("SELECT string_agg(state, ',' ORDER BY id) FROM orders WHERE id IN (10001, 10002, 20001, 20002)", "placed,placed,placed,placed"),
        ],
        new_sees: &[
            ("SELECT pg_typeof(state)::text FROM orders WHERE id = 10002", "public.order_state"),
            ("SELECT count(*)::text FROM orders WHERE state = 'placed'", "204"),
        ],
        refused: &[],
        after: &[
            ("SELECT udt_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'orders' AND column_name = 'state'", "order_state"),
            ("SELECT count(*)::text FROM orders WHERE state = 'placed'", "204"),
        ],
    })
    .await;
}

#[tokio::test]
async fn change_type_from_an_enum() {
    run(Case {
        name: "0001_change_type_from_an_enum",
        setup: "CREATE TYPE order_state AS ENUM ('placed', 'shipped');
                ALTER TABLE orders ADD COLUMN state order_state NOT NULL DEFAULT 'placed';",
        file: r#"
[[operations]]
op = "change_type"
table = "orders"
column = "state"
type = "text"
up = "state::text"
down = "state::public.order_state"
"#,
        old_writes: &["INSERT INTO orders (id, customer_id, total_cents, state) VALUES (10001, 1, 100, 'shipped')"],
        new_writes: &["INSERT INTO orders (id, customer_id, total_cents, state) VALUES (20001, 2, 200, 'shipped')", "INSERT INTO orders (id, customer_id, total_cents) VALUES (20002, 2, 200)"],
        cross_updates: &[(false, "UPDATE orders SET state = 'placed' WHERE id = 10001")],
        old_sees: &[
            ("SELECT pg_typeof(state)::text FROM orders WHERE id = 20001", "order_state"),
            ("SELECT string_agg(state::text, ',' ORDER BY id) FROM orders WHERE id IN (10001, 20001, 20002)", "placed,shipped,placed"),
        ],
        new_sees: &[
            ("SELECT pg_typeof(state)::text FROM orders WHERE id = 10001", "text"),
            ("SELECT string_agg(state, ',' ORDER BY id) FROM orders WHERE id IN (10001, 20001, 20002)", "placed,shipped,placed"),
        ],
        // The new version may write what the old type cannot hold only once the old
        // version is gone: until contract its `down` must succeed.
        refused: &["INSERT INTO orders (id, customer_id, total_cents, state) VALUES (30001, 1, 1, 'lost')"],
        after: &[("SELECT data_type FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'orders' AND column_name = 'state'", "text")],
    })
    .await;
}

#[tokio::test]
async fn create_table_with_identity_and_generated_columns() {
    run(Case {
        name: "0001_create_table_identity",
        setup: "",
        file: r#"
[[operations]]
op = "create_table"
table = "invoices"
columns = [
  { name = "id", type = "bigint", primary_key = true, identity = "always", sequence = { start = 1000, increment = 10 } },
  { name = "net_cents", type = "integer", nullable = false },
  { name = "gross_cents", type = "integer", generated = "net_cents * 120 / 100" },
  { name = "number", type = "integer", identity = "by_default" },
]
"#,
        old_writes: &["INSERT INTO invoices (net_cents) VALUES (100)"],
        new_writes: &["INSERT INTO invoices (net_cents, number) VALUES (200, 77)"],
        cross_updates: &[(true, "UPDATE invoices SET net_cents = 300 WHERE number = 77")],
        // The two versions' inserts race: which one got 1000 is not fixed.
        old_sees: &[
            ("SELECT string_agg(id::text, ',' ORDER BY id) FROM public.invoices", "1000,1010"),
            ("SELECT string_agg(gross_cents::text, ',' ORDER BY gross_cents) FROM public.invoices", "120,360"),
        ],
        new_sees: &[
            ("SELECT string_agg(number::text, ',' ORDER BY number) FROM invoices", "1,77"),
            ("SELECT gross_cents::text FROM invoices WHERE number = 77", "360"),
        ],
        refused: &[
            "INSERT INTO invoices (id, net_cents) VALUES (1, 1)",
            "INSERT INTO invoices (net_cents, gross_cents) VALUES (1, 5)",
        ],
        after: &[
            ("SELECT is_identity || identity_generation FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'invoices' AND column_name = 'id'", "YESALWAYS"),
            ("SELECT is_generated FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'invoices' AND column_name = 'gross_cents'", "ALWAYS"),
            ("SELECT identity_generation FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'invoices' AND column_name = 'number'", "BY DEFAULT"),
        ],
    })
    .await;
}

/// Several changes to one column in one migration: renamed, then retyped (one shadow
/// column under the new name; `up` reads the old name, `down` the new one).
#[tokio::test]
async fn rename_then_change_type() {
    run(Case {
        name: "0001_rename_then_change_type",
        setup: "",
        file: r#"
[[operations]]
op = "rename_column"
table = "products"
column = "price_cents"
to = "price"

[[operations]]
op = "change_type"
table = "products"
column = "price"
type = "numeric(12,2)"
up = "price_cents::numeric / 100"
down = "round(price * 100)::integer"
"#,
        old_writes: &["INSERT INTO products (id, sku, name, category, price_cents) VALUES (10001, 'S-1', 'old', 'x', 150)"],
        new_writes: &["INSERT INTO products (id, sku, name, category, price) VALUES (20001, 'S-2', 'new', 'x', 2.5)"],
        cross_updates: &[
            (true, "UPDATE products SET price_cents = 700 WHERE id = 20001"),
            (false, "UPDATE products SET price = 9.99 WHERE id = 10001"),
        ],
        old_sees: &[("SELECT price_cents::text FROM products WHERE id = 10001", "999")],
        new_sees: &[
            ("SELECT price::text FROM products WHERE id = 20001", "7.00"),
            ("SELECT count(*)::text FROM products WHERE price IS NULL", "0"),
        ],
        refused: &[],
        after: &[
            ("SELECT data_type FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'products' AND column_name = 'price'", "numeric"),
            ("SELECT count(*)::text FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'products' AND column_name = 'price_cents'", "0"),
            ("SELECT price::text FROM products WHERE id = 10001", "9.99"),
        ],
    })
    .await;
}

#[tokio::test]
async fn rename_constraint() {
    run(Case {
        name: "0001_rename_constraint",
        setup: "ALTER TABLE products ADD CONSTRAINT products_sku_uq UNIQUE (sku);",
        file: r#"
[[operations]]
op = "rename_constraint"
table = "products"
from = "products_sku_uq"
to = "products_sku_unique"
"#,
        // Until contract both versions may name the constraint by its old name.
        old_writes: &["INSERT INTO products (id, sku, name, category, price_cents) VALUES (10001, 'S-1', 'old', 'x', 1) ON CONFLICT ON CONSTRAINT products_sku_uq DO NOTHING"],
        new_writes: &["INSERT INTO products (id, sku, name, category, price_cents) VALUES (20001, 'S-2', 'new', 'x', 2)"],
        cross_updates: &[(true, "INSERT INTO products (id, sku, name, category, price_cents) VALUES (10002, 'S-2', 'dup', 'x', 3) ON CONFLICT ON CONSTRAINT products_sku_uq DO NOTHING")],
        old_sees: &[("SELECT count(*)::text FROM products WHERE id IN (10001, 10002, 20001)", "2")],
        new_sees: &[("SELECT name FROM products WHERE sku = 'S-2'", "new")],
        refused: &["INSERT INTO products (id, sku, name, category, price_cents) VALUES (30001, 'S-1', 'again', 'x', 4)"],
        after: &[
            ("SELECT string_agg(conname, ',') FROM pg_constraint WHERE conrelid = 'public.products'::regclass AND contype = 'u' AND conname LIKE 'products\\_sku\\_u%'", "products_sku_unique"),
            ("SELECT (to_regclass('public.products_sku_unique') IS NOT NULL AND to_regclass('public.products_sku_uq') IS NULL)::text", "true"),
        ],
    })
    .await;
}

// ---- Several changes to one column in one migration: one shadow column, one up/down chain.

#[tokio::test]
async fn change_type_twice() {
    run(Case {
        name: "0001_change_type_twice",
        // The prices before the migration, to check the composed backfill against.
        setup: "CREATE TABLE price_ref AS SELECT id, price_cents FROM products;",
        file: r#"
[[operations]]
op = "change_type"
table = "products"
column = "price_cents"
type = "bigint"
up = "price_cents::bigint * 10"
down = "(price_cents / 10)::integer"

[[operations]]
op = "change_type"
table = "products"
column = "price_cents"
type = "numeric(14,3)"
up = "price_cents::numeric / 1000"
down = "round(price_cents * 1000)::bigint"
"#,
        old_writes: &["INSERT INTO products (id, sku, name, category, price_cents) VALUES (10001, 'S-1', 'old', 'x', 150)"],
        new_writes: &["INSERT INTO products (id, sku, name, category, price_cents) VALUES (20001, 'S-2', 'new', 'x', 2.5)"],
        cross_updates: &[
            (true, "UPDATE products SET price_cents = 7 WHERE id = 20001"),
            (false, "UPDATE products SET price_cents = 9.99 WHERE id = 10001"),
        ],
        // Each version sees the other's writes through the whole chain (a second rule
        // applied alone would give 10 times too much or too little).
        old_sees: &[
            ("SELECT price_cents::text FROM products WHERE id = 10001", "999"),
            ("SELECT pg_typeof(price_cents)::text FROM products WHERE id = 10001", "integer"),
        ],
        new_sees: &[
            ("SELECT price_cents::text FROM products WHERE id = 20001", "0.070"),
            ("SELECT pg_typeof(price_cents)::text FROM products WHERE id = 20001", "numeric"),
            ("SELECT count(*)::text FROM products p JOIN public.price_ref r USING (id) WHERE p.price_cents IS DISTINCT FROM r.price_cents::numeric / 100", "0"),
        ],
        refused: &["INSERT INTO products (id, sku, name, category, price_cents) VALUES (30001, 'S-3', 'null', 'x', NULL)"],
        after: &[
            ("SELECT data_type || ' ' || numeric_scale || ' ' || is_nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'products' AND column_name = 'price_cents'", "numeric 3 NO"),
            ("SELECT price_cents::text FROM products WHERE id = 10001", "9.990"),
        ],
    })
    .await;
}

#[tokio::test]
async fn rename_drop_not_null_and_change_type() {
    run(Case {
        name: "0001_rename_drop_not_null_change_type",
        setup: "CREATE TABLE name_ref AS SELECT id, full_name FROM customers;",
        file: r#"
[[operations]]
op = "rename_column"
table = "customers"
column = "full_name"
to = "display_name"

[[operations]]
op = "drop_not_null"
table = "customers"
column = "display_name"
down = "split_part(email, '@', 1)"

[[operations]]
op = "change_type"
table = "customers"
column = "display_name"
type = "varchar(200)"
up = "upper(display_name)"
down = "lower(display_name)"
"#,
        old_writes: &["INSERT INTO customers (id, email, full_name, country) VALUES (10001, 'old@x', 'Old', 'DE')"],
        new_writes: &[
            "INSERT INTO customers (id, email, display_name, country) VALUES (20001, 'newbie@x.org', NULL, 'FR')",
            "INSERT INTO customers (id, email, display_name, country) VALUES (20002, 'bob@x.org', 'Bob B', 'FR')",
        ],
        cross_updates: &[
            (true, "UPDATE customers SET full_name = 'Eve' WHERE id = 20002"),
            (false, "UPDATE customers SET display_name = NULL WHERE id = 10001"),
        ],
        old_sees: &[
            ("SELECT full_name FROM customers WHERE id = 20001", "newbie"),
            ("SELECT full_name FROM customers WHERE id = 10001", "old"),
        ],
        new_sees: &[
            ("SELECT display_name FROM customers WHERE id = 20002", "EVE"),
            ("SELECT coalesce(display_name, 'null') FROM customers WHERE id = 10001", "null"),
            ("SELECT count(*)::text FROM customers c JOIN public.name_ref r USING (id) WHERE c.display_name IS DISTINCT FROM upper(r.full_name)", "0"),
        ],
        refused: &[],
        after: &[
            ("SELECT data_type || ' ' || character_maximum_length || ' ' || is_nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'customers' AND column_name = 'display_name'", "character varying 200 YES"),
            ("SELECT count(*)::text FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'customers' AND column_name = 'full_name'", "0"),
        ],
    })
    .await;
}

// ---- pgroll's remaining operations.

#[tokio::test]
async fn set_replica_identity() {
    run(Case {
        name: "0001_set_replica_identity",
        setup: "ALTER TABLE customers REPLICA IDENTITY NOTHING;",
        file: r#"
[[operations]]
op = "set_replica_identity"
table = "products"
identity = "index"
index = "products_sku_key"

[[operations]]
op = "set_replica_identity"
table = "orders"
identity = "full"

[[operations]]
op = "set_replica_identity"
table = "customers"
identity = "default"
"#,
        old_writes: &["INSERT INTO products (id, sku, name, category, price_cents) VALUES (10001, 'S-1', 'old', 'x', 1)"],
        new_writes: &["INSERT INTO products (id, sku, name, category, price_cents) VALUES (20001, 'S-2', 'new', 'x', 2)"],
        cross_updates: &[
            (true, "UPDATE products SET name = 'new, by old' WHERE id = 20001"),
            (false, "DELETE FROM products WHERE id = 10001"),
        ],
        // Set at expand, for both versions: the rows are the same.
        old_sees: &[
            ("SELECT string_agg(relname || '=' || relreplident::text, ',' ORDER BY relname) FROM pg_class WHERE oid IN ('public.products'::regclass, 'public.orders'::regclass, 'public.customers'::regclass)", "customers=d,orders=f,products=i"),
            ("SELECT name FROM products WHERE id = 20001", "new, by old"),
        ],
        new_sees: &[("SELECT count(*)::text FROM products WHERE id IN (10001, 20001)", "1")],
        refused: &[],
        after: &[
            ("SELECT string_agg(relname || '=' || relreplident::text, ',' ORDER BY relname) FROM pg_class WHERE oid IN ('public.products'::regclass, 'public.orders'::regclass, 'public.customers'::regclass)", "customers=d,orders=f,products=i"),
            ("SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'public.products'::regclass AND indisreplident", "products_sku_key"),
        ],
    })
    .await;
}

#[tokio::test]
async fn set_comment() {
    run(Case {
        name: "0001_set_comment",
        setup: "COMMENT ON COLUMN customers.phone IS 'free text'; COMMENT ON COLUMN orders.notes IS 'legacy';",
        file: r#"
[[operations]]
op = "rename_column"
table = "customers"
column = "phone"
to = "phone_number"

[[operations]]
op = "set_comment"
table = "customers"
column = "phone_number"
comment = "E.164, with the leading +; it's checked by the app"

[[operations]]
op = "set_comment"
table = "customers"
comment = "People who placed at least one order"

[[operations]]
op = "set_comment"
table = "orders"
column = "notes"

[[operations]]
op = "add_column"
table = "orders"
column = { name = "channel", type = "text", comment = "web, phone or shop" }
"#,
        old_writes: &["INSERT INTO customers (id, email, full_name, country, phone) VALUES (10001, 'old@x', 'Old', 'DE', '+49')"],
        new_writes: &["INSERT INTO customers (id, email, full_name, country, phone_number) VALUES (20001, 'new@x', 'New', 'FR', '+33')"],
        cross_updates: &[],
        // Until contract the physical table keeps its comments.
        old_sees: &[
            ("SELECT col_description(a.attrelid, a.attnum) || ' ' || coalesce(obj_description(a.attrelid, 'pg_class'), 'none') FROM pg_attribute a WHERE a.attrelid = 'public.customers'::regclass AND a.attname = 'phone'", "free text none"),
            ("SELECT phone FROM customers WHERE id = 20001", "+33"),
        ],
        new_sees: &[("SELECT phone_number FROM customers WHERE id = 10001", "+49")],
        refused: &[],
        after: &[
            ("SELECT col_description('public.customers'::regclass, a.attnum) FROM pg_attribute a WHERE a.attrelid = 'public.customers'::regclass AND a.attname = 'phone_number'", "E.164, with the leading +; it's checked by the app"),
            ("SELECT obj_description('public.customers'::regclass, 'pg_class')", "People who placed at least one order"),
            ("SELECT coalesce(col_description(a.attrelid, a.attnum), 'none') FROM pg_attribute a WHERE a.attrelid = 'public.orders'::regclass AND a.attname = 'notes'", "none"),
            ("SELECT col_description(a.attrelid, a.attnum) FROM pg_attribute a WHERE a.attrelid = 'public.orders'::regclass AND a.attname = 'channel'", "web, phone or shop"),
        ],
    })
    .await;
}

#[tokio::test]
async fn add_primary_key() {
    run(Case {
        name: "0001_add_primary_key",
        setup: "CREATE TABLE events (id bigint, kind text NOT NULL); \
                INSERT INTO events SELECT i, 'k' || i FROM generate_series(1, 500) i;",
        file: r#"
[[operations]]
op = "add_primary_key"
table = "events"
columns = ["id"]
"#,
        old_writes: &["INSERT INTO events (id, kind) VALUES (10001, 'old')"],
        new_writes: &["INSERT INTO events (id, kind) VALUES (20001, 'new')"],
        cross_updates: &[(true, "UPDATE events SET kind = 'seen by old' WHERE id = 20001")],
        old_sees: &[("SELECT count(*)::text FROM events", "502")],
        new_sees: &[("SELECT kind FROM events WHERE id = 20001", "seen by old")],
        // From expand on, both versions obey the key: no NULL (the NOT VALID check), no
        // duplicate (the unique index).
        refused: &[
            "INSERT INTO events (id, kind) VALUES (NULL, 'null')",
            "INSERT INTO events (id, kind) VALUES (1, 'duplicate')",
        ],
        after: &[
            ("SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'public.events'::regclass AND contype = 'p'", "events_pkey PRIMARY KEY (id)"),
            ("SELECT attnotnull::text FROM pg_attribute WHERE attrelid = 'public.events'::regclass AND attname = 'id'", "true"),
            ("SELECT count(*)::text FROM pg_index WHERE indrelid = 'public.events'::regclass", "1"),
        ],
    })
    .await;
}

/// An identity column added to a table with rows, without a rewrite: filled from zdm's
/// sequence (existing rows by the backfill, both versions' inserts by its trigger), made an
/// identity at contract and restarted past every value handed out.
#[tokio::test]
async fn add_identity_column_always() {
    run(Case {
        name: "0001_add_identity_always",
        // No rewrite from start to complete: the table keeps its file.
        setup: "CREATE TABLE filenode_before AS SELECT pg_relation_filenode('public.orders') AS f;",
        file: r#"
[[operations]]
op = "add_column"
table = "orders"
column = { name = "number", type = "bigint", identity = "always", sequence = { start = 1000 } }
"#,
        old_writes: &["INSERT INTO orders (id, customer_id, total_cents) VALUES (10001, 1, 100)"],
        new_writes: &["INSERT INTO orders (id, customer_id, total_cents) VALUES (20001, 1, 200)"],
        cross_updates: &[(false, "UPDATE orders SET total_cents = 5 WHERE id = 10001")],
        old_sees: &[("SELECT total_cents::text FROM orders WHERE id = 10001", "5")],
        // The 200 existing rows got 1000..1199 from the backfill, the two inserts the next.
        new_sees: &[
            ("SELECT count(*)::text FROM orders WHERE number IS NULL", "0"),
            ("SELECT min(number)::text FROM orders", "1000"),
            ("SELECT string_agg(number::text, ',' ORDER BY number) FROM orders WHERE id IN (10001, 20001)", "1200,1201"),
            ("SELECT (count(DISTINCT number) = count(*))::text FROM orders", "true"),
        ],
        // `always`: a value given, or a filled value changed, is refused as PostgreSQL does.
        refused: &[
            "INSERT INTO orders (id, customer_id, total_cents, number) VALUES (30001, 1, 1, 5)",
            "UPDATE orders SET number = 7 WHERE id = 1",
        ],
        after: &[
            ("SELECT is_identity || identity_generation FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'orders' AND column_name = 'number'", "YESALWAYS"),
            ("SELECT is_nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'orders' AND column_name = 'number'", "NO"),
            ("WITH i AS (INSERT INTO orders (id, customer_id, total_cents) VALUES (40001, 1, 1) RETURNING number) SELECT number::text FROM i", "1202"),
            ("SELECT count(*)::text FROM pg_class WHERE relname LIKE '\\_zdm%'", "0"),
            ("SELECT pg_get_serial_sequence('public.orders', 'number')", "public.orders_number_seq"),
            ("SELECT (f = pg_relation_filenode('public.orders'))::text FROM filenode_before", "true"),
        ],
    })
    .await;
}

/// `by_default`: a value given by the new version is kept, and the identity attached at
/// contract never hands it out again.
#[tokio::test]
async fn add_identity_column_by_default() {
    run(Case {
        name: "0001_add_identity_by_default",
        setup: "",
        file: r#"
[[operations]]
op = "add_column"
table = "orders"
column = { name = "number", type = "integer", identity = "by_default", unique = true }
"#,
        old_writes: &["INSERT INTO orders (id, customer_id, total_cents) VALUES (10001, 1, 100)"],
        new_writes: &[
            "INSERT INTO orders (id, customer_id, total_cents, number) VALUES (20001, 1, 200, 5000)",
            "INSERT INTO orders (id, customer_id, total_cents) VALUES (20002, 1, 200)",
        ],
        cross_updates: &[(false, "UPDATE orders SET number = 6000 WHERE id = 10001")],
        old_sees: &[("SELECT number::text FROM orders WHERE id = 10001", "6000")],
        new_sees: &[
            ("SELECT count(*)::text FROM orders WHERE number IS NULL", "0"),
            ("SELECT min(number)::text FROM orders", "1"),
            ("SELECT number::text FROM orders WHERE id = 20001", "5000"),
        ],
        // The unique index and NOT NULL hold for both versions from expand on.
        refused: &[
            "INSERT INTO orders (id, customer_id, total_cents, number) VALUES (30001, 1, 1, 5000)",
            "UPDATE orders SET number = NULL WHERE id = 1",
        ],
        after: &[
            ("SELECT is_identity || identity_generation FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'orders' AND column_name = 'number'", "YESBY DEFAULT"),
            ("WITH i AS (INSERT INTO orders (id, customer_id, total_cents) VALUES (40001, 1, 1) RETURNING number) SELECT (number > 6000)::text FROM i", "true"),
            ("SELECT count(*)::text FROM pg_class WHERE relname LIKE '\\_zdm%'", "0"),
        ],
    })
    .await;
}

/// A multi-column check added with per-column `up` (pgroll's create_constraint): the new
/// version's columns are shadow columns holding the fixed values, the check binds them; the
/// old version's values, violating rows included, are left alone.
#[tokio::test]
async fn add_check_with_per_column_up() {
    run(Case {
        name: "0001_add_check_per_column",
        setup: "CREATE TABLE tickets (id bigint PRIMARY KEY, seat text NOT NULL, price integer NOT NULL); \
                INSERT INTO tickets SELECT i, CASE WHEN i % 10 = 0 THEN '' ELSE 'S' || i END, i % 7 FROM generate_series(1, 300) i;",
        file: r#"
[[operations]]
op = "add_check"
table = "tickets"
name = "tickets_valid"
check = "price > 0 AND seat <> ''"
up = { price = "greatest(price, 1)", seat = "CASE WHEN seat = '' THEN 'unassigned' ELSE seat END" }
"#,
        old_writes: &["INSERT INTO tickets (id, seat, price) VALUES (10001, '', 0)"],
        new_writes: &["INSERT INTO tickets (id, seat, price) VALUES (20001, 'A1', 50)"],
        cross_updates: &[(false, "UPDATE tickets SET price = 70 WHERE id = 10001")],
        // A new-version write reaches the old version through `down` (here the column as
        // it is), for every column of the constraint.
        old_sees: &[
            ("SELECT seat || ':' || price FROM tickets WHERE id = 10001", "unassigned:70"),
            ("SELECT count(*)::text FROM tickets WHERE price = 0 OR seat = ''", "68"),
            ("SELECT price::text FROM tickets WHERE id = 20001", "50"),
        ],
        new_sees: &[
            ("SELECT seat || ':' || price FROM tickets WHERE id = 10001", "unassigned:70"),
            ("SELECT count(*)::text FROM tickets WHERE NOT (price > 0 AND seat <> '')", "0"),
            ("SELECT price::text FROM tickets WHERE id = 7", "1"),
        ],
        refused: &[],
        after: &[
            ("SELECT pg_get_constraintdef(oid) || ' ' || convalidated FROM pg_constraint WHERE conname = 'tickets_valid'", "CHECK (((price > 0) AND (seat <> ''::text))) true"),
            ("SELECT count(*)::text FROM tickets WHERE price = 0 OR seat = ''", "0"),
        ],
    })
    .await;
}

/// A multi-column unique constraint added with per-column `up`: duplicates are renumbered
/// in the new version's column only.
#[tokio::test]
async fn add_unique_with_per_column_up() {
    run(Case {
        name: "0001_add_unique_per_column",
        setup: "CREATE TABLE seats (id bigint PRIMARY KEY, hall text NOT NULL, num integer NOT NULL); \
                INSERT INTO seats SELECT i, 'A', i % 10 FROM generate_series(1, 200) i;",
        file: r#"
[[operations]]
op = "add_unique"
table = "seats"
name = "seats_hall_num_key"
columns = ["hall", "num"]
up = { num = "id" }
down = { num = "num % 10" }
"#,
        old_writes: &["INSERT INTO seats (id, hall, num) VALUES (10001, 'A', 1)"],
        new_writes: &["INSERT INTO seats (id, hall, num) VALUES (20001, 'B', 25)"],
        // An old-version write gives every column of the constraint its `up` again (as
        // every `up`, on every old-version write).
        cross_updates: &[(true, "UPDATE seats SET hall = 'C' WHERE id = 20001")],
        old_sees: &[
            ("SELECT num::text FROM seats WHERE id = 20001", "5"),
            ("SELECT count(*)::text FROM seats WHERE hall = 'A' AND num = 1", "21"),
        ],
        new_sees: &[
            ("SELECT num::text FROM seats WHERE id = 10001", "10001"),
            ("SELECT hall || num FROM seats WHERE id = 20001", "C20001"),
            ("SELECT (count(DISTINCT (hall, num)) = count(*))::text FROM seats", "true"),
        ],
        refused: &[],
        after: &[
            ("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'seats_hall_num_key'", "UNIQUE (hall, num)"),
            ("SELECT num::text FROM seats WHERE id = 3", "3"),
        ],
    })
    .await;
}

/// A foreign key added with `up`: rows pointing nowhere are pointed at a fallback in the
/// new version only.
#[tokio::test]
async fn add_foreign_key_with_per_column_up() {
    run(Case {
        name: "0001_add_foreign_key_per_column",
        setup: "ALTER TABLE order_items DROP CONSTRAINT order_items_product_id_fkey; \
                UPDATE order_items SET product_id = 999999 WHERE id % 50 = 0;",
        file: r#"
[[operations]]
op = "add_foreign_key"
table = "order_items"
name = "order_items_product_id_fkey"
columns = ["product_id"]
references = { table = "products", columns = ["id"] }
up = { product_id = "CASE WHEN EXISTS (SELECT 1 FROM products p WHERE p.id = product_id) THEN product_id ELSE 1 END" }
"#,
        old_writes: &["INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) VALUES (1, 888888, 1, 5)"],
        new_writes: &["INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) VALUES (2, 3, 1, 5)"],
        cross_updates: &[],
        old_sees: &[("SELECT count(*)::text FROM order_items WHERE product_id IN (888888, 999999)", "9")],
        new_sees: &[(
            "SELECT count(*)::text FROM order_items i WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.id = i.product_id)",
            "0",
        )],
        refused: &[],
        after: &[(
            "SELECT pg_get_constraintdef(oid) || ' ' || convalidated FROM pg_constraint WHERE conname = 'order_items_product_id_fkey'",
            "FOREIGN KEY (product_id) REFERENCES products(id) true",
        )],
    })
    .await;
}

/// A constraint dropped with per-column `down` (pgroll's drop_multicolumn_constraint): the
/// new version writes what the constraint forbade; the old version, still bound by it,
/// gets `down`'s values.
#[tokio::test]
async fn drop_constraint_with_per_column_down() {
    run(Case {
        name: "0001_drop_constraint_per_column",
        setup: "CREATE TABLE tickets (id bigint PRIMARY KEY, seat text NOT NULL, price integer NOT NULL, \
                  CONSTRAINT tickets_valid CHECK (price > 0 AND seat <> '')); \
                INSERT INTO tickets SELECT i, 'S' || i, 1 + i % 7 FROM generate_series(1, 100) i;",
        file: r#"
[[operations]]
op = "drop_constraint"
table = "tickets"
name = "tickets_valid"
down = { price = "greatest(price, 1)", seat = "CASE WHEN seat = '' THEN 'unassigned' ELSE seat END" }
"#,
        old_writes: &["INSERT INTO tickets (id, seat, price) VALUES (10001, 'B2', 5)"],
        new_writes: &["INSERT INTO tickets (id, seat, price) VALUES (20001, '', 0)"],
        cross_updates: &[(false, "UPDATE tickets SET price = 0 WHERE id = 10001")],
        old_sees: &[
            ("SELECT seat || ':' || price FROM tickets WHERE id = 20001", "unassigned:1"),
            ("SELECT price::text FROM tickets WHERE id = 10001", "1"),
        ],
        new_sees: &[
            ("SELECT seat || ':' || price FROM tickets WHERE id = 20001", ":0"),
            ("SELECT price::text FROM tickets WHERE id = 10001", "0"),
        ],
        refused: &[],
        after: &[
            ("SELECT count(*)::text FROM pg_constraint WHERE conname = 'tickets_valid'", "0"),
            ("SELECT seat || ':' || price FROM tickets WHERE id = 20001", ":0"),
        ],
    })
    .await;
}
