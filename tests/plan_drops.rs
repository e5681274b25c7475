//! What a plan's contract drops (`Plan::drops`), computed by the planner for the contract
//! safety gates: dropped, replaced and renamed columns, indexes (explicit, and those of a
//! dropped table), and the names that stop existing.

use zdm::db::catalog::{Catalog, QualifiedName};
use zdm::migration::{Migration, Operation};
use zdm::plan::drops::{DroppedColumn, DroppedIndex, RenamedColumn};
use zdm::plan::plan;

fn demo() -> Catalog {
    serde_json::from_str(include_str!("fixtures/demo_catalog.json")).expect("fixture")
}

fn planned_drops(toml_text: &str) -> zdm::plan::ContractDrops {
    #[derive(serde::Deserialize)]
    struct File {
        operations: Vec<Operation>,
    }
    let file: File = toml::from_str(toml_text).expect("valid operations");
    let migration = Migration {
        name: "0042_test".to_string(),
        description: None,
        operations: file.operations,
        verify: Vec::new(),
        checksum: String::new(),
    };
    plan(&migration, &demo())
        .unwrap_or_else(|e| panic!("{e}"))
        .drops
}

fn public(name: &str) -> QualifiedName {
    QualifiedName::new("public", name)
}

#[test]
fn dropped_replaced_and_renamed_columns_and_a_dropped_index() {
    let drops = planned_drops(
        r#"
        [[operations]]
        op = "drop_column"
        table = "products"
        column = "discontinued_at"

        [[operations]]
        op = "change_type"
        table = "products"
        column = "price_cents"
        type = "numeric(12,2)"
        up = "price_cents::numeric(12,2)"
        down = "round(price_cents)::integer"

        [[operations]]
        op = "rename_column"
        table = "orders"
        column = "notes"
        to = "delivery_notes"

        [[operations]]
        op = "drop_index"
        name = "orders_placed_at_idx"
        "#,
    );
    assert!(drops.columns.contains(&DroppedColumn {
        table: public("products"),
        column: "discontinued_at".to_string(),
        replaced: false,
        moved_to: None,
    }));
    assert!(drops.columns.contains(&DroppedColumn {
        table: public("products"),
        column: "price_cents".to_string(),
        replaced: true,
        moved_to: None,
    }));
    assert_eq!(
        drops.renamed_columns,
        vec![RenamedColumn {
            table: public("orders"),
            from: "notes".to_string(),
            to: "delivery_notes".to_string(),
        }]
    );
    assert_eq!(
        drops.indexes,
        vec![DroppedIndex {
            table: public("orders"),
            index: "orders_placed_at_idx".to_string(),
        }]
    );
    assert!(drops.tables.is_empty() && drops.schemas.is_empty());
    // A replaced column keeps its name: only what really stops resolving is looked for.
    assert_eq!(
        drops.vanishing_names(),
        vec!["discontinued_at", "notes", "orders_placed_at_idx"]
    );
}

#[test]
fn a_dropped_table_takes_its_indexes_and_an_additive_migration_drops_nothing() {
    let drops = planned_drops(
        r#"
        [[operations]]
        op = "drop_table"
        table = "order_items"
        "#,
    );
    assert_eq!(drops.tables, vec![public("order_items")]);
    let indexes: Vec<&str> = drops.indexes.iter().map(|i| i.index.as_str()).collect();
    assert_eq!(
        indexes,
        vec![
            "order_items_order_id_idx",
            "order_items_pkey",
            "order_items_product_id_idx"
        ]
    );

    let drops = planned_drops(
        r#"
        [[operations]]
        op = "add_column"
        table = "orders"
        column = { name = "status", type = "text" }
        "#,
    );
    assert!(drops.is_empty(), "{drops:?}");
}

/// split_table's moved columns are dropped from the old table but live on in the new one:
/// the drops say where, so the old-version gate can tell the new version's statements on
/// the new table from the old version's on the old one.
#[test]
fn a_split_table_records_where_each_moved_column_went() {
    let drops = planned_drops(
        r#"
        [[operations]]
        op = "split_table"
        table = "orders"
        new_table = "order_details"
        columns = ["notes"]

        [[operations]]
        op = "drop_column"
        table = "orders"
        column = "currency"
        "#,
    );
    let notes = drops
        .columns
        .iter()
        .find(|c| c.column == "notes")
        .expect("notes is dropped from orders");
    assert_eq!(notes.table, public("orders"));
    assert_eq!(notes.moved_to, Some(public("order_details")));
    let currency = drops
        .columns
        .iter()
        .find(|c| c.column == "currency")
        .expect("currency is dropped");
    assert_eq!(currency.moved_to, None, "a plain drop moves nothing");
    assert_eq!(
        drops.moved_columns(),
        vec![("notes", &public("orders"), &public("order_details"))]
    );
}
