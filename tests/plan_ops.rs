//! The planner without a database: each operation's steps, phases and locks, its errors,
//! and the simulated catalog later operations see. The catalog is the demo schema as
//! introspected (tests/fixtures/demo_catalog.json, checked against a live database by
//! tests/plan_catalog.rs).

use zdm::db::catalog::{Catalog, QualifiedName};
use zdm::migration::{Migration, Operation};
use zdm::plan::{plan, plan_and_simulate, LockLevel, Phase, Plan, PlanError, Step, StepAction};

fn demo() -> Catalog {
    serde_json::from_str(include_str!("fixtures/demo_catalog.json")).expect("fixture")
}

fn migration(toml_text: &str) -> Migration {
    #[derive(serde::Deserialize)]
    struct File {
        operations: Vec<Operation>,
    }
    let file: File = toml::from_str(toml_text).expect("valid operations");
    Migration {
        name: "0042_test".to_string(),
        description: None,
        operations: file.operations,
        verify: Vec::new(),
        checksum: String::new(),
    }
}

fn planned(toml_text: &str) -> Plan {
    plan(&migration(toml_text), &demo()).unwrap_or_else(|e| panic!("{e}"))
}

fn refused(toml_text: &str) -> String {
    plan(&migration(toml_text), &demo())
        .expect_err("refused")
        .to_string()
}

fn sql(step: &Step) -> &str {
    step.sql_text().unwrap_or("")
}

/// Steps of a phase whose description contains `text`.
fn find<'a>(plan: &'a Plan, phase: Phase, text: &str) -> Vec<&'a Step> {
    plan.phase(phase)
        .filter(|s| s.description.contains(text))
        .collect()
}

/// The statements of the publish step (backfill phase) that create and set up `view`
/// (`public_0042_test.orders`): its CREATE OR REPLACE VIEW and ALTER VIEW lines.
fn published_view(plan: &Plan, view: &str) -> String {
    let (schema, name) = view.split_once('.').expect("schema.view");
    let quoted = format!("\"{schema}\".\"{name}\"");
    let publish = find(plan, Phase::Backfill, "publish the new version");
    assert_eq!(publish.len(), 1, "one publish step: {:?}", plan.steps);
    sql(publish[0])
        .lines()
        .map(str::trim)
        .filter(|line| {
            line.starts_with(&format!("CREATE OR REPLACE VIEW {quoted} "))
                || line.starts_with(&format!("ALTER VIEW {quoted} "))
        })
        .map(|line| line.trim_end_matches(';'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Rules every plan obeys, whatever the operation.
fn assert_safe(plan: &Plan) {
    for step in &plan.steps {
        assert!(!step.rewrites, "no step rewrites a table: {step:?}");
        if step.scans {
            assert!(
                !step.lock.blocks_writes(),
                "a scanning step must not block writes: {step:?}"
            );
        }
        if let StepAction::Sql { sql, transactional } = &step.action {
            if sql.contains("CONCURRENTLY") {
                assert!(
                    !transactional,
                    "concurrent DDL runs outside a transaction: {sql}"
                );
            }
            assert!(
                !sql.contains("ALTER COLUMN") || !sql.contains(" TYPE "),
                "no ALTER TYPE: {sql}"
            );
        }
    }
    // After every committed expand step the old version can still write: a constraint
    // comes only after the sync triggers that fill the columns it constrains.
    let expand: Vec<&Step> = plan.phase(Phase::Expand).collect();
    let last_trigger = expand
        .iter()
        .rposition(|s| s.description.starts_with("install the sync trigger"));
    if let Some(last_trigger) = last_trigger {
        for (index, step) in expand.iter().enumerate() {
            if sql(step).contains("ADD CONSTRAINT") {
                assert!(
                    index > last_trigger,
                    "constraint before the sync trigger: {:?}",
                    step.description
                );
            }
        }
    }
    // The new version is published once, after every backfill and validation.
    let backfill: Vec<&Step> = plan.phase(Phase::Backfill).collect();
    if let Some(publish) = backfill
        .iter()
        .position(|s| s.description.starts_with("publish the new version"))
    {
        assert_eq!(
            publish,
            backfill.len() - 1,
            "publish is the last backfill step"
        );
    }
    assert!(
        !plan
            .phase(Phase::Expand)
            .any(|s| sql(s).contains("CREATE OR REPLACE VIEW")),
        "no view of the new version before its backfill is done"
    );
    let phases: Vec<Phase> = plan.steps.iter().map(|s| s.phase).collect();
    let mut sorted = phases.clone();
    sorted.sort();
    assert_eq!(phases, sorted, "steps run phase after phase");
    assert!(
        plan.phase(Phase::Rollback)
            .any(|s| sql(s).contains("DROP SCHEMA IF EXISTS")),
        "rollback drops the version schema"
    );
}

#[test]
fn add_column_not_null_uses_check_then_validate_then_set_not_null() {
    let plan = planned(
        r#"
[[operations]]
op = "add_column"
table = "orders"
column = { name = "status", type = "text", nullable = false, default = "'new'" }
up = "CASE WHEN shipped_at IS NULL THEN 'new' ELSE 'shipped' END"
"#,
    );
    assert_safe(&plan);
    assert_eq!(plan.version_schema, "public_0042_test");
    let add = find(&plan, Phase::Expand, "add column public.orders.status");
    assert_eq!(add.len(), 1);
    assert_eq!(add[0].lock, LockLevel::AccessExclusive);
    // With `up`, the default applies to new rows only: existing rows are backfilled. It is
    // set once the sync trigger fills the column for the old version's inserts (set with
    // the column, an insert in between would keep it and the backfill would skip it).
    assert!(
        sql(add[0]).ends_with("ADD COLUMN IF NOT EXISTS \"status\" text"),
        "{}",
        sql(add[0])
    );
    let expand: Vec<&Step> = plan.phase(Phase::Expand).collect();
    let position = |needle: &str| {
        expand
            .iter()
            .position(|s| s.description.contains(needle) || sql(s).contains(needle))
            .unwrap_or_else(|| panic!("no expand step with {needle}"))
    };
    assert!(
        position("install the sync trigger")
            < position("ALTER COLUMN \"status\" SET DEFAULT 'new'"),
        "the default after the trigger: {expand:?}"
    );
    assert!(sql(add[0]).contains("IF NOT EXISTS"));
    let check = find(&plan, Phase::Expand, "IS NOT NULL) NOT VALID");
    assert!(sql(check[0]).contains("NOT VALID"));
    let trigger = find(&plan, Phase::Expand, "sync trigger");
    assert_eq!(trigger[0].lock, LockLevel::ShareRowExclusive);
    let function = find(&plan, Phase::Expand, "keeping old and new columns");
    assert!(sql(function[0]).contains("NEW.\"status\" := (CASE WHEN shipped_at IS NULL"));
    let backfill: Vec<_> = plan
        .phase(Phase::Backfill)
        .filter_map(|s| match &s.action {
            StepAction::Backfill(b) => Some(b),
            _ => None,
        })
        .collect();
    assert_eq!(backfill.len(), 1);
    assert_eq!(backfill[0].key_columns, ["id"]);
    assert_eq!(backfill[0].table, "\"public\".\"orders\"");
    let validate = find(&plan, Phase::Backfill, "validate constraint");
    assert_eq!(validate[0].lock, LockLevel::ShareUpdateExclusive);
    let contract = find(&plan, Phase::Contract, "final shape");
    assert!(sql(contract[0]).contains("ALTER COLUMN \"status\" SET NOT NULL"));
    assert!(sql(contract[0]).contains("DROP CONSTRAINT IF EXISTS \"_zdm_nn_orders_status\""));
    let view = published_view(&plan, "public_0042_test.orders");
    assert!(view.contains("\"status\" FROM \"public\".\"orders\""));
    assert!(plan
        .phase(Phase::Rollback)
        .any(|s| sql(s).contains("DROP COLUMN IF EXISTS \"status\"")));
}

#[test]
fn derived_names_are_fitted_to_63_bytes_and_stay_distinct() {
    let long = "d".repeat(50);
    let plan = planned(&format!(
        "[[operations]]\nop = \"add_column\"\ntable = \"orders\"\ncolumn = {{ name = \"{long}_one\", type = \"int\", check = \"{long}_one > 0\", unique = true }}\n\n[[operations]]\nop = \"add_column\"\ntable = \"orders\"\ncolumn = {{ name = \"{long}_two\", type = \"int\", check = \"{long}_two > 0\" }}\n"
    ));
    assert_safe(&plan);
    let names: Vec<String> = plan
        .phase(Phase::Expand)
        .filter_map(|s| {
            let sql = sql(s);
            let at = sql.find("ADD CONSTRAINT \"")? + "ADD CONSTRAINT \"".len();
            Some(sql[at..].split('"').next()?.to_string())
        })
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for name in &names {
        assert!(name.len() <= 63, "{name} is {} bytes", name.len());
    }
    let mut distinct = names.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), names.len(), "{names:?}");
}

#[test]
fn add_column_with_a_constant_default_needs_no_backfill() {
    let plan = planned(
        "[[operations]]\nop = \"add_column\"\ntable = \"orders\"\ncolumn = { name = \"priority\", type = \"int\", default = \"0\" }\n",
    );
    assert_safe(&plan);
    assert!(
        sql(find(&plan, Phase::Expand, "add column")[0]).ends_with("\"priority\" int DEFAULT 0")
    );
    assert!(!plan
        .steps
        .iter()
        .any(|s| matches!(s.action, StepAction::Backfill(_))));
    assert!(
        find(&plan, Phase::Expand, "sync").is_empty(),
        "nothing to keep in step"
    );
    // A volatile default is set for new rows only and backfilled.
    let plan = planned(
        "[[operations]]\nop = \"add_column\"\ntable = \"orders\"\ncolumn = { name = \"token\", type = \"uuid\", default = \"gen_random_uuid()\" }\n",
    );
    assert!(
        sql(find(&plan, Phase::Expand, "add column")[0]).contains("SET DEFAULT gen_random_uuid()")
    );
    assert!(plan.steps.iter().any(|s| matches!(&s.action, StepAction::Backfill(b) if b.assignments[0].1 == "gen_random_uuid()")));
}

#[test]
fn add_column_refusals_say_what_to_do() {
    let message = refused("[[operations]]\nop = \"add_column\"\ntable = \"ordrs\"\ncolumn = { name = \"x\", type = \"int\" }\n");
    assert_eq!(message, "0042_test: operation 1 (add_column): table public.ordrs does not exist (did you mean orders?)");
    let message = refused("[[operations]]\nop = \"add_column\"\ntable = \"orders\"\ncolumn = { name = \"x\", type = \"int\", nullable = false }\n");
    assert!(
        message.contains("NOT NULL without a default: give `up`"),
        "{message}"
    );
    let message = refused("[[operations]]\nop = \"add_column\"\ntable = \"orders\"\ncolumn = { name = \"x\", type = \"bigserial\" }\n");
    assert!(message.contains("rewrites the whole table"), "{message}");
    let message = refused("[[operations]]\nop = \"add_column\"\ntable = \"orders\"\ncolumn = { name = \"notes\", type = \"int\" }\n");
    assert!(
        message.contains("column notes already exists in table public.orders"),
        "{message}"
    );
}

#[test]
fn drop_column_waits_for_contract_and_fills_the_old_version() {
    let plan = planned("[[operations]]\nop = \"drop_column\"\ntable = \"customers\"\ncolumn = \"country\"\ndown = \"'ZZ'\"\n");
    assert_safe(&plan);
    let view = published_view(&plan, "public_0042_test.customers");
    assert!(!view.contains("country"), "{view}");
    let function = sql(find(&plan, Phase::Expand, "keeping old and new")[0]);
    assert!(function.contains("NEW.\"country\" := ('ZZ')"));
    let contract = sql(find(&plan, Phase::Contract, "final shape")[0]);
    assert!(contract.contains("DROP COLUMN IF EXISTS \"country\""));
    assert!(
        contract.find("DROP TRIGGER").unwrap_or(usize::MAX)
            < contract.find("DROP COLUMN").unwrap_or(0)
    );
    assert!(!plan
        .phase(Phase::Expand)
        .any(|s| sql(s).contains("DROP COLUMN")));

    let message = refused(
        "[[operations]]\nop = \"drop_column\"\ntable = \"customers\"\ncolumn = \"country\"\n",
    );
    assert!(message.contains("NOT NULL without a default"), "{message}");
    let message =
        refused("[[operations]]\nop = \"drop_column\"\ntable = \"customers\"\ncolumn = \"id\"\n");
    assert!(message.contains("primary key"), "{message}");
    let message = refused(
        "[[operations]]\nop = \"drop_column\"\ntable = \"customers\"\ncolumn = \"emial\"\n",
    );
    assert!(
        message.ends_with(
            "column emial does not exist in table public.customers (did you mean email?)"
        ),
        "{message}"
    );
}

#[test]
fn rename_column_is_a_view_alias_until_contract() {
    let plan = planned("[[operations]]\nop = \"rename_column\"\ntable = \"customers\"\ncolumn = \"full_name\"\nto = \"name\"\n");
    assert_safe(&plan);
    assert!(
        published_view(&plan, "public_0042_test.customers").contains("\"full_name\" AS \"name\"")
    );
    assert!(!plan.phase(Phase::Expand).any(|s| sql(s).contains("RENAME")));
    assert!(sql(find(&plan, Phase::Contract, "final shape")[0])
        .contains("RENAME COLUMN \"full_name\" TO \"name\""));
    assert!(find(&plan, Phase::Expand, "sync").is_empty());
    let message = refused("[[operations]]\nop = \"rename_column\"\ntable = \"customers\"\ncolumn = \"full_name\"\nto = \"email\"\n");
    assert!(message.contains("column email already exists"), "{message}");
}

#[test]
fn change_type_never_alters_the_type_in_place() {
    let plan = planned(
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
    assert_safe(&plan);
    assert!(sql(find(&plan, Phase::Expand, "add shadow column")[0])
        .contains("ADD COLUMN IF NOT EXISTS \"_zdm_new_price_cents\" numeric(12,2)"));
    let function = sql(find(&plan, Phase::Expand, "keeping old and new")[0]);
    assert!(function.contains("NEW.\"_zdm_new_price_cents\" := (price_cents::numeric / 100)"));
    assert!(function.contains("NEW.\"price_cents\" := ((price_cents * 100)::integer)"));
    assert!(function.contains("'public_0042_test' = ANY (current_schemas(false))"));
    assert!(published_view(&plan, "public_0042_test.products")
        .contains("\"_zdm_new_price_cents\" AS \"price_cents\""));
    let contract = sql(find(&plan, Phase::Contract, "final shape")[0]);
    let drop = contract
        .find("DROP COLUMN IF EXISTS \"price_cents\"")
        .expect("drop old");
    let rename = contract
        .find("RENAME COLUMN \"_zdm_new_price_cents\" TO \"price_cents\"")
        .expect("rename");
    assert!(drop < rename);
    assert!(contract.contains("SET NOT NULL"), "the column was NOT NULL");
    // Plain indexes and the column's foreign keys are rebuilt on the shadow column.
    let plan = planned("[[operations]]\nop = \"change_type\"\ntable = \"orders\"\ncolumn = \"customer_id\"\ntype = \"int\"\nup = \"customer_id::int\"\ndown = \"customer_id::bigint\"\n");
    assert_safe(&plan);
    let index = find(&plan, Phase::Expand, "rebuild index orders_customer_id_idx")[0];
    assert_eq!(sql(index), "CREATE INDEX CONCURRENTLY IF NOT EXISTS \"_zdm_new_orders_customer_id_idx\" ON \"public\".\"orders\" USING btree (\"_zdm_new_customer_id\")");
    let fk = find(
        &plan,
        Phase::Expand,
        "rebuild foreign key orders_customer_id_fkey",
    )[0];
    assert!(sql(fk).contains("FOREIGN KEY (\"_zdm_new_customer_id\") REFERENCES \"public\".\"customers\" (\"id\") NOT VALID"), "{}", sql(fk));
    assert!(!find(
        &plan,
        Phase::Backfill,
        "validate constraint _zdm_new_orders_customer_id_fkey"
    )
    .is_empty());
    let contract = sql(find(&plan, Phase::Contract, "final shape")[0]);
    assert!(contract.contains("ALTER INDEX \"public\".\"_zdm_new_orders_customer_id_idx\" RENAME TO \"orders_customer_id_idx\""));
    assert!(contract.contains(
        "RENAME CONSTRAINT \"_zdm_new_orders_customer_id_fkey\" TO \"orders_customer_id_fkey\""
    ));
    // Partial and expression indexes, other constraints and incoming foreign keys are refused.
    let message = refused("[[operations]]\nop = \"create_index\"\ntable = \"orders\"\nname = \"orders_noted\"\ncolumns = [\"shipped_at\"]\npredicate = \"notes IS NOT NULL\"\n\n[[operations]]\nop = \"change_type\"\ntable = \"orders\"\ncolumn = \"notes\"\ntype = \"varchar(100)\"\nup = \"notes\"\ndown = \"notes\"\n");
    assert!(
        message.contains("index orders_noted (expression or partial)"),
        "{message}"
    );
    let message = refused("[[operations]]\nop = \"change_type\"\ntable = \"order_items\"\ncolumn = \"order_id\"\ntype = \"int\"\nup = \"order_id::int\"\ndown = \"order_id\"\n\n[[operations]]\nop = \"change_type\"\ntable = \"orders\"\ncolumn = \"total_cents\"\ntype = \"int\"\nup = \"total_cents::int\"\ndown = \"total_cents\"\n\n[[operations]]\nop = \"add_unique\"\ntable = \"products\"\nname = \"products_price_unique\"\ncolumns = [\"price_cents\"]\n\n[[operations]]\nop = \"change_type\"\ntable = \"products\"\ncolumn = \"price_cents\"\ntype = \"bigint\"\nup = \"price_cents\"\ndown = \"price_cents::int\"\n");
    assert!(
        message.contains("operation 4 (change_type)")
            && message.contains("constraint products_price_unique"),
        "{message}"
    );
}

#[test]
fn set_not_null_checks_validates_then_sets() {
    let plan = planned("[[operations]]\nop = \"set_not_null\"\ntable = \"customers\"\ncolumn = \"phone\"\nup = \"'unknown'\"\n");
    assert_safe(&plan);
    assert!(sql(find(&plan, Phase::Expand, "NOT VALID")[0])
        .contains("CHECK (\"phone\" IS NOT NULL) NOT VALID"));
    let function = sql(find(&plan, Phase::Expand, "keeping old and new")[0]);
    assert!(
        function.contains("IF NEW.\"phone\" IS NULL THEN NEW.\"phone\" := ('unknown'); END IF;")
    );
    assert!(plan.phase(Phase::Backfill).any(|s| matches!(&s.action, StepAction::Backfill(b) if b.predicate.as_deref() == Some("\"phone\" IS NULL"))));
    let order: Vec<&str> = plan
        .phase(Phase::Backfill)
        .map(|s| s.description.as_str())
        .collect();
    assert!(
        order.iter().position(|d| d.starts_with("validate"))
            > order.iter().position(|d| d.starts_with("fill"))
            && order
                .last()
                .is_some_and(|d| d.starts_with("publish the new version")),
        "validation after the data, the new version published last: {order:?}"
    );
    let contract = sql(find(&plan, Phase::Contract, "final shape")[0]);
    assert!(contract.contains("ALTER COLUMN \"phone\" SET NOT NULL"));
    assert!(plan
        .phase(Phase::Rollback)
        .any(|s| sql(s).contains("DROP CONSTRAINT IF EXISTS \"_zdm_nn_customers_phone\"")));
    let message = refused(
        "[[operations]]\nop = \"set_not_null\"\ntable = \"customers\"\ncolumn = \"email\"\n",
    );
    assert!(message.contains("already NOT NULL"), "{message}");
}

#[test]
fn indexes_are_built_and_dropped_concurrently() {
    let plan = planned("[[operations]]\nop = \"create_index\"\ntable = \"orders\"\nname = \"orders_lower_notes\"\ncolumns = [\"lower(notes)\", \"shipped_at\"]\nmethod = \"btree\"\npredicate = \"notes IS NOT NULL\"\n");
    assert_safe(&plan);
    let build = find(&plan, Phase::Expand, "orders_lower_notes")[0];
    assert_eq!(build.lock, LockLevel::ShareUpdateExclusive);
    assert!(build.scans);
    assert_eq!(
        sql(build),
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS \"orders_lower_notes\" ON \"public\".\"orders\" USING btree ((lower(notes)), \"shipped_at\") WHERE notes IS NOT NULL"
    );
    // The engine finds the index by this name to drop an INVALID leftover before a retry.
    assert_eq!(
        build.concurrent_index().map(|index| index.name.as_str()),
        Some("orders_lower_notes")
    );
    assert!(plan
        .phase(Phase::Rollback)
        .any(|s| sql(s) == "DROP INDEX CONCURRENTLY IF EXISTS \"public\".\"orders_lower_notes\""));

    let plan = planned("[[operations]]\nop = \"drop_index\"\nname = \"orders_placed_at_idx\"\n");
    assert_safe(&plan);
    let drop = plan
        .phase(Phase::Contract)
        .find(|s| sql(s).contains("DROP INDEX"))
        .expect("drop at contract");
    assert_eq!(
        sql(drop),
        "DROP INDEX CONCURRENTLY IF EXISTS \"public\".\"orders_placed_at_idx\""
    );
    assert!(!plan
        .phase(Phase::Expand)
        .any(|s| sql(s).contains("DROP INDEX")));

    let message = refused("[[operations]]\nop = \"drop_index\"\nname = \"orders_placed_idx\"\n");
    assert!(message.contains("index orders_placed_idx does not exist in schema public (did you mean orders_placed_at_idx?)"), "{message}");
    let message = refused("[[operations]]\nop = \"drop_index\"\nname = \"orders_pkey\"\n");
    assert!(
        message.contains("backs constraint orders_pkey"),
        "{message}"
    );
    let message = refused("[[operations]]\nop = \"create_index\"\ntable = \"orders\"\nname = \"orders_pkey\"\ncolumns = [\"id\"]\n");
    assert!(
        message.contains("named orders_pkey already exists"),
        "{message}"
    );
    let message = refused("[[operations]]\nop = \"create_index\"\ntable = \"orders\"\nname = \"x\"\ncolumns = [\"shiped_at\"]\n");
    assert!(message.contains("(did you mean shipped_at?)"), "{message}");
}

#[test]
fn constraints_are_added_not_valid_then_validated() {
    let plan = planned(
        r#"
[[operations]]
op = "add_foreign_key"
table = "order_items"
name = "order_items_order_fk"
columns = ["order_id"]
references = { table = "orders", columns = ["id"], on_delete = "cascade" }

[[operations]]
op = "add_check"
table = "products"
name = "products_price_positive"
check = "price_cents > 0"

[[operations]]
op = "add_unique"
table = "products"
name = "products_name_unique"
columns = ["name"]
"#,
    );
    assert_safe(&plan);
    let fk = find(&plan, Phase::Expand, "foreign key order_items_order_fk")[0];
    assert_eq!(fk.lock, LockLevel::ShareRowExclusive);
    assert_eq!(fk.locked, ["public.order_items", "public.orders"]);
    assert!(sql(fk).contains("FOREIGN KEY (\"order_id\") REFERENCES \"public\".\"orders\" (\"id\") ON DELETE CASCADE NOT VALID"));
    assert!(sql(fk).contains("IF NOT EXISTS (SELECT 1 FROM pg_constraint"));
    assert!(
        sql(find(&plan, Phase::Expand, "CHECK products_price_positive")[0])
            .contains("CHECK (price_cents > 0) NOT VALID")
    );
    let validations = find(&plan, Phase::Backfill, "validate constraint");
    assert_eq!(validations.len(), 2);
    let unique = find(&plan, Phase::Expand, "unique index products_name_unique")[0];
    assert!(sql(unique).starts_with("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS"));
    let attach = find(&plan, Phase::Expand, "into a unique constraint")[0];
    assert!(sql(attach).contains("UNIQUE USING INDEX \"products_name_unique\""));
    // The shared first rollback step drops every constraint expand added (before the
    // triggers); the operations' own undo steps follow, last operation first.
    let shared = find(&plan, Phase::Rollback, "drop the constraints expand added");
    assert_eq!(shared.len(), 1);
    for name in [
        "products_name_unique",
        "products_price_positive",
        "order_items_order_fk",
    ] {
        assert!(sql(shared[0]).contains(&format!("DROP CONSTRAINT IF EXISTS \"{name}\"")));
    }
    let rollback: Vec<&str> = plan
        .phase(Phase::Rollback)
        .filter(|s| {
            !s.description
                .starts_with("drop the constraints expand added")
        })
        .map(sql)
        .collect();
    let position = |text: &str| {
        rollback
            .iter()
            .position(|s| s.contains(text))
            .unwrap_or_else(|| panic!("{text} in {rollback:?}"))
    };
    // Operations are undone last first.
    assert!(position("\"products_name_unique\"") < position("\"products_price_positive\""));
    assert!(position("\"products_price_positive\"") < position("\"order_items_order_fk\""));

    let message = refused("[[operations]]\nop = \"add_foreign_key\"\ntable = \"orders\"\nname = \"fk\"\ncolumns = [\"customer_id\"]\nreferences = { table = \"customers\", columns = [\"email\"] }\n");
    assert!(
        message.contains("is not a primary key or unique constraint"),
        "{message}"
    );
    let message = refused("[[operations]]\nop = \"add_foreign_key\"\ntable = \"orders\"\nname = \"fk\"\ncolumns = [\"customer_id\"]\nreferences = { table = \"customers\", columns = [\"id\"], on_delete = \"explode\" }\n");
    assert!(message.contains("not one of: no action"), "{message}");
    let message = refused("[[operations]]\nop = \"add_unique\"\ntable = \"products\"\nname = \"u\"\ncolumns = [\"nam\"]\n");
    assert!(message.contains("(did you mean name?)"), "{message}");
}

#[test]
fn later_operations_see_earlier_ones() {
    let (plan, after) = plan_and_simulate(
        &migration(
            r#"
[[operations]]
op = "add_column"
table = "orders"
column = { name = "status", type = "text" }

[[operations]]
op = "create_index"
table = "orders"
name = "orders_status_idx"
columns = ["status"]

[[operations]]
op = "rename_column"
table = "orders"
column = "notes"
to = "remarks"

[[operations]]
op = "set_not_null"
table = "orders"
column = "remarks"
up = "''"

[[operations]]
op = "rename_table"
table = "orders"
to = "purchases"

[[operations]]
op = "add_check"
table = "purchases"
name = "purchases_total_positive"
check = "total_cents >= 0"
"#,
        ),
        &demo(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_safe(&plan);
    // Physical names are used until contract.
    assert!(plan
        .steps
        .iter()
        .any(|s| sql(s).contains("CHECK (\"notes\" IS NOT NULL) NOT VALID")));
    assert!(plan.steps.iter().any(|s| sql(s).contains(
        "ALTER TABLE \"public\".\"orders\" ADD CONSTRAINT \"purchases_total_positive\""
    )));
    let view = published_view(&plan, "public_0042_test.purchases");
    assert!(
        view.contains("\"notes\" AS \"remarks\"") && view.ends_with("FROM \"public\".\"orders\""),
        "{view}"
    );
    let contract = sql(find(&plan, Phase::Contract, "final shape")[0]);
    assert!(contract.contains("RENAME COLUMN \"notes\" TO \"remarks\""));
    assert!(contract.contains("ALTER COLUMN \"remarks\" SET NOT NULL"));
    assert!(
        contract
            .trim_end()
            .ends_with("RENAME TO \"purchases\";\nEND\n$zdm$")
            || contract.contains("RENAME TO \"purchases\";\nEND"),
        "{contract}"
    );
    // The simulated catalog is the database after contract.
    let purchases = after
        .table(&QualifiedName::new("public", "purchases"))
        .expect("renamed");
    assert!(!purchases.column("remarks").expect("remarks").nullable);
    assert!(purchases.column("status").is_some());
    assert!(purchases
        .indexes
        .iter()
        .any(|i| i.name == "orders_status_idx"));
    assert!(after
        .table(&QualifiedName::new("public", "orders"))
        .is_none());
    assert!(after.schema("public_0042_test").is_some());

    // An operation naming the old name after a rename is told so.
    let message = refused("[[operations]]\nop = \"rename_column\"\ntable = \"orders\"\ncolumn = \"notes\"\nto = \"remarks\"\n\n[[operations]]\nop = \"drop_column\"\ntable = \"orders\"\ncolumn = \"notes\"\n");
    assert!(
        message.starts_with("0042_test: operation 2 (drop_column): column notes does not exist"),
        "{message}"
    );
    // A second shape change of one column waits for a later migration.
    let message = refused("[[operations]]\nop = \"add_column\"\ntable = \"orders\"\ncolumn = { name = \"n\", type = \"int\" }\n\n[[operations]]\nop = \"change_type\"\ntable = \"orders\"\ncolumn = \"notes\"\ntype = \"varchar(10)\"\nup = \"notes\"\ndown = \"notes\"\n\n[[operations]]\nop = \"drop_not_null\"\ntable = \"orders\"\ncolumn = \"notes\"\ndown = \"''\"\n");
    assert!(message.contains("operation 3 (drop_not_null)"), "{message}");
}

#[test]
fn a_migration_versions_one_schema() {
    let error = plan(
        &migration("[[operations]]\nop = \"drop_table\"\ntable = \"billing.invoices\"\n\n[[operations]]\nop = \"drop_column\"\ntable = \"orders\"\ncolumn = \"notes\"\n"),
        &demo(),
    )
    .expect_err("two schemas");
    assert!(matches!(error, PlanError::MixedSchemas { .. }));
    assert!(error.to_string().contains("billing, public"), "{error}");
}

#[test]
fn long_migration_names_fit_the_identifier_limit() {
    let mut m =
        migration("[[operations]]\nop = \"drop_column\"\ntable = \"orders\"\ncolumn = \"notes\"\n");
    m.name = format!("0001_{}", "a_very_long_description_of_the_change".repeat(3));
    let plan = plan(&m, &demo()).expect("plans");
    assert!(plan.version_schema.len() <= 63);
    assert!(plan.version_schema.starts_with("public_0001_a_very_long"));
}

#[test]
fn raw_sql_is_marked_unsafe_and_undone_only_by_its_down() {
    let plan = planned("[[operations]]\nop = \"raw_sql\"\nup = \"UPDATE orders SET notes = NULL\"\n\n[[operations]]\nop = \"raw_sql\"\nup = \"VACUUM orders\"\nphase = \"contract\"\n");
    let expand = find(&plan, Phase::Expand, "raw SQL")[0];
    assert!(expand.unchecked);
    assert_eq!(expand.lock, LockLevel::AccessExclusive);
    assert!(find(&plan, Phase::Contract, "raw SQL")[0].unchecked);
    let undo = find(&plan, Phase::Rollback, "raw SQL")[0];
    assert!(sql(undo).contains("RAISE EXCEPTION") && sql(undo).contains("has no down"));
}

#[test]
fn the_remaining_operations_plan_safely() {
    let plan = planned(
        r#"
[[operations]]
op = "create_table"
table = "shipments"
columns = [
  { name = "id", type = "bigint", primary_key = true },
  { name = "order_id", type = "bigint", nullable = false, references = { table = "orders", columns = ["id"] } },
]

[[operations]]
op = "set_default"
table = "orders"
column = "currency"
default = "'USD'"

[[operations]]
op = "drop_not_null"
table = "customers"
column = "country"
down = "'ZZ'"

[[operations]]
op = "drop_constraint"
table = "order_items"
name = "order_items_product_id_fkey"

[[operations]]
op = "drop_table"
table = "products"
"#,
    );
    assert_safe(&plan);
    let create = sql(find(&plan, Phase::Expand, "create table public.shipments")[0]);
    assert!(create.starts_with("CREATE TABLE IF NOT EXISTS \"public\".\"shipments\""));
    assert!(create.contains("CONSTRAINT \"shipments_pkey\" PRIMARY KEY (\"id\")"));
    let orders_view = published_view(&plan, "public_0042_test.orders");
    assert!(orders_view.contains(
        "ALTER VIEW \"public_0042_test\".\"orders\" ALTER COLUMN \"currency\" SET DEFAULT 'USD'"
    ));
    assert!(plan.steps.iter().any(|s| s.phase == Phase::Contract
        && sql(s).contains("ALTER COLUMN \"currency\" SET DEFAULT 'USD'")));
    let function = sql(find(&plan, Phase::Expand, "customers in step")[0]);
    assert!(
        function.contains("NEW.\"country\" := (coalesce(\"country\", 'ZZ'))"),
        "{function}"
    );
    assert!(plan.steps.iter().any(|s| s.phase == Phase::Contract
        && sql(s).contains("DROP CONSTRAINT IF EXISTS \"order_items_product_id_fkey\"")));
    assert!(published_view(&plan, "public_0042_test.products").is_empty());
    assert!(plan
        .phase(Phase::Contract)
        .any(|s| sql(s) == "DROP TABLE IF EXISTS \"public\".\"products\""));
    assert!(plan
        .phase(Phase::Rollback)
        .any(|s| sql(s) == "DROP TABLE IF EXISTS \"public\".\"shipments\""));

    let message = refused("[[operations]]\nop = \"drop_table\"\ntable = \"orders\"\n");
    assert!(
        message.contains("referenced by foreign key order_items_order_id_fkey"),
        "{message}"
    );
    let message = refused("[[operations]]\nop = \"split_table\"\ntable = \"orders\"\nnew_table = \"order_notes\"\nkey = { customer_id = \"order_id\" }\ncolumns = [\"notes\"]\n");
    assert!(
        message.contains("`key` renames customer_id, which is not a column of the primary key of public.orders (id)"),
        "{message}"
    );
    let message = refused("[[operations]]\nop = \"drop_constraint\"\ntable = \"orders\"\nname = \"orders_customer_fkey\"\n");
    assert!(
        message.contains("(did you mean orders_customer_id_fkey?)"),
        "{message}"
    );
    let message = refused("[[operations]]\nop = \"create_table\"\ntable = \"orders\"\ncolumns = [{ name = \"id\", type = \"int\" }]\n");
    assert!(
        message.contains("table public.orders already exists"),
        "{message}"
    );
}

#[test]
fn contract_re_runs_never_drop_a_column_that_replaced_another() {
    let plan = planned("[[operations]]\nop = \"change_type\"\ntable = \"orders\"\ncolumn = \"notes\"\ntype = \"varchar(200)\"\nup = \"notes\"\ndown = \"notes\"\n");
    let contract = sql(find(&plan, Phase::Contract, "final shape")[0]);
    assert!(
        contract.contains("attname = '_zdm_new_notes' AND NOT attisdropped) THEN\n    ALTER TABLE \"public\".\"orders\" DROP COLUMN IF EXISTS \"notes\";"),
        "{contract}"
    );
    let message = refused("[[operations]]\nop = \"rename_column\"\ntable = \"orders\"\ncolumn = \"notes\"\nto = \"remarks\"\n\n[[operations]]\nop = \"rename_column\"\ntable = \"orders\"\ncolumn = \"currency\"\nto = \"notes\"\n");
    assert!(
        message.contains("keeps existing physically until contract"),
        "{message}"
    );
}

#[test]
fn split_table_keeps_both_tables_in_step_until_contract() {
    let (plan, after) = plan_and_simulate(
        &migration("[[operations]]\nop = \"split_table\"\ntable = \"orders\"\nnew_table = \"order_details\"\ncolumns = [\"notes\", \"currency\"]\n"),
        &demo(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_safe(&plan);
    let create = sql(find(&plan, Phase::Expand, "create table public.order_details")[0]);
    assert!(
        create.contains("\"currency\" text NOT NULL DEFAULT 'EUR'::text"),
        "{create}"
    );
    assert!(create.contains("REFERENCES \"public\".\"orders\" (\"id\") ON DELETE CASCADE"));
    let copy = sql(find(
        &plan,
        Phase::Expand,
        "create the function that will copy the old version",
    )[0]);
    assert!(
        copy.contains("ON CONFLICT (\"id\") DO UPDATE SET \"notes\" = EXCLUDED.\"notes\""),
        "{copy}"
    );
    let back = sql(find(
        &plan,
        Phase::Expand,
        "create the function that will copy the new version",
    )[0]);
    assert!(
        back.contains(
            "UPDATE \"public\".\"orders\" AS _zdm_target SET \"notes\" = _zdm_new_row._zdm_v0"
        ),
        "{back}"
    );
    let orders_view = published_view(&plan, "public_0042_test.orders");
    assert!(
        !orders_view.contains("notes") && !orders_view.contains("currency"),
        "{orders_view}"
    );
    assert!(!published_view(&plan, "public_0042_test.order_details").is_empty());
    let contract = sql(find(&plan, Phase::Contract, "public.orders its final shape")[0]);
    assert!(contract.contains(
        "DROP TRIGGER IF EXISTS \"_zdm_split_order_details\" ON \"public\".\"order_details\""
    ));
    assert!(contract.contains("DROP COLUMN IF EXISTS \"notes\""));
    assert!(plan
        .phase(Phase::Rollback)
        .any(|s| sql(s) == "DROP TABLE IF EXISTS \"public\".\"order_details\""));
    let details = after
        .table(&QualifiedName::new("public", "order_details"))
        .expect("new table");
    assert_eq!(
        details
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["id", "notes", "currency"]
    );
    assert!(after
        .table(&QualifiedName::new("public", "orders"))
        .expect("orders")
        .column("notes")
        .is_none());
}

/// A moved NOT NULL column without a default: a deferred constraint trigger carries its NOT
/// NULL (installed before NOT NULL is dropped), contract drops the trigger with the column,
/// and rollback fills, proves and restores NOT NULL before the new table goes.
#[test]
fn split_table_carries_a_moved_not_null_column_in_a_deferred_trigger() {
    let plan = planned("[[operations]]\nop = \"split_table\"\ntable = \"orders\"\nnew_table = \"order_totals\"\nkey = { id = \"order_id\" }\ncolumns = [{ column = \"total_cents\", to = \"total\", type = \"numeric(12,2)\", up = \"total_cents / 100.0\", down = \"(total * 100)::bigint\" }]\n");
    assert_safe(&plan);
    let expand: Vec<&str> = plan.phase(Phase::Expand).map(sql).collect();
    let deferred = expand
        .iter()
        .position(|s| s.contains("CREATE CONSTRAINT TRIGGER \"_zdm_split_nn_orders\" AFTER INSERT OR UPDATE ON \"public\".\"orders\" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.\"total_cents\" IS NULL)"))
        .expect("the deferred trigger");
    let relaxed = expand
        .iter()
        .position(|s| {
            *s == "ALTER TABLE \"public\".\"orders\" ALTER COLUMN \"total_cents\" DROP NOT NULL"
        })
        .expect("NOT NULL dropped");
    assert!(
        deferred < relaxed,
        "the trigger holds NOT NULL before it is dropped"
    );
    let create = expand
        .iter()
        .find(|s| s.starts_with("CREATE TABLE IF NOT EXISTS \"public\".\"order_totals\""))
        .expect("new table");
    assert!(create.contains("\"order_id\" bigint NOT NULL"), "{create}");
    assert!(
        create.contains("\"total\" numeric(12,2) NOT NULL,"),
        "{create}"
    );
    assert!(
        create.contains("FOREIGN KEY (\"order_id\") REFERENCES \"public\".\"orders\" (\"id\")"),
        "{create}"
    );
    let copy = expand
        .iter()
        .find(|s| s.contains("_zdm_split_orders\"() RETURNS trigger"))
        .expect("copy function");
    assert!(
        copy.contains("SELECT \"id\", (total_cents / 100.0) FROM (SELECT NEW.*)"),
        "{copy}"
    );
    let contract = sql(find(&plan, Phase::Contract, "public.orders its final shape")[0]);
    let trigger_drop = contract
        .find("DROP TRIGGER IF EXISTS \"_zdm_split_nn_orders\"")
        .expect("trigger dropped at contract");
    assert!(
        trigger_drop
            < contract
                .find("DROP COLUMN IF EXISTS \"total_cents\"")
                .expect("column dropped")
    );
    let rollback: Vec<&str> = plan.phase(Phase::Rollback).map(sql).collect();
    let at = |text: &str| {
        rollback
            .iter()
            .position(|s| s.contains(text))
            .unwrap_or_else(|| panic!("no rollback step with {text}: {rollback:#?}"))
    };
    let order = [
        at("DROP TRIGGER IF EXISTS \"_zdm_split_nn_orders\""),
        at("DROP SCHEMA IF EXISTS"),
        at("SET \"total_cents\" = coalesce(_zdm_target.\"total_cents\", _zdm_new_row._zdm_v0)"),
        at("CHECK (\"total_cents\" IS NOT NULL) NOT VALID"),
        at("VALIDATE CONSTRAINT \"_zdm_nn_orders_total_cents\""),
        at("ALTER COLUMN \"total_cents\" SET NOT NULL"),
        at("DROP TABLE IF EXISTS \"public\".\"order_totals\""),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "{order:?}: {rollback:#?}"
    );
}

#[test]
fn enum_operations_take_no_table_lock_and_add_values_in_their_own_step() {
    let plan = planned(
        "[[operations]]\nop = \"create_enum\"\nname = \"order_state\"\nvalues = [\"placed\", \"shipped\"]\n\n[[operations]]\nop = \"add_enum_value\"\nname = \"order_state\"\nvalue = \"packed\"\nbefore = \"shipped\"\n\n[[operations]]\nop = \"add_column\"\ntable = \"orders\"\ncolumn = { name = \"state\", type = \"order_state\" }\n",
    );
    assert_safe(&plan);
    let create = find(&plan, Phase::Expand, "create enum type public.order_state");
    assert_eq!(create.len(), 1);
    assert!(sql(create[0])
        .contains("CREATE TYPE \"public\".\"order_state\" AS ENUM ('placed', 'shipped')"));
    assert_eq!(create[0].lock, LockLevel::None);
    let add = find(&plan, Phase::Expand, "add value \"packed\"");
    assert_eq!(add.len(), 1);
    assert_eq!(
        add[0].action,
        StepAction::Sql {
            sql: "ALTER TYPE \"public\".\"order_state\" ADD VALUE IF NOT EXISTS 'packed' BEFORE 'shipped'".to_string(),
            transactional: false
        }
    );
    assert!(add[0].concurrent_index().is_none(), "not an index build");
    // Rollback drops the column before the type (last operation first).
    let rollback: Vec<&str> = plan.phase(Phase::Rollback).map(sql).collect();
    let column = rollback
        .iter()
        .position(|s| s.contains("DROP COLUMN IF EXISTS \"state\""));
    let type_ = rollback
        .iter()
        .position(|s| s.contains("DROP TYPE IF EXISTS \"public\".\"order_state\""));
    assert!(column.is_some() && column < type_, "{rollback:#?}");
    // Later migrations see the type with its values in order.
    let (_, after) = plan_and_simulate(
        &migration("[[operations]]\nop = \"create_enum\"\nname = \"order_state\"\nvalues = [\"placed\", \"shipped\"]\n\n[[operations]]\nop = \"add_enum_value\"\nname = \"order_state\"\nvalue = \"packed\"\nafter = \"placed\"\n\n[[operations]]\nop = \"rename_enum_value\"\nname = \"order_state\"\nfrom = \"shipped\"\nto = \"sent\"\n"),
        &demo(),
    )
    .expect("plans");
    let state = after
        .enum_type(&QualifiedName::new("public", "order_state"))
        .expect("simulated");
    assert_eq!(state.values, ["placed", "packed", "sent"]);
}

#[test]
fn drop_enum_waits_for_the_columns_that_use_it() {
    let create = "[[operations]]\nop = \"create_enum\"\nname = \"mood\"\nvalues = [\"ok\"]\n\n[[operations]]\nop = \"add_column\"\ntable = \"orders\"\ncolumn = { name = \"mood\", type = \"public.mood[]\" }\n\n";
    let message = refused(&format!(
        "{create}[[operations]]\nop = \"drop_enum\"\nname = \"mood\"\n"
    ));
    assert!(
        message.contains("still used by column public.orders.mood"),
        "{message}"
    );
    let message = refused(&format!("{create}[[operations]]\nop = \"rename_enum_value\"\nname = \"mood\"\nfrom = \"ok\"\nto = \"fine\"\n"));
    assert!(
        message.contains("used by column public.orders.mood") && message.contains("add_enum_value"),
        "{message}"
    );
    // Dropped with its column, in one migration: the type goes after the table's final shape.
    let plan = planned(&format!("{create}[[operations]]\nop = \"drop_table\"\ntable = \"order_items\"\n\n[[operations]]\nop = \"drop_column\"\ntable = \"orders\"\ncolumn = \"mood\"\n\n[[operations]]\nop = \"drop_enum\"\nname = \"mood\"\n"));
    let contract: Vec<&Step> = plan.phase(Phase::Contract).collect();
    let shape = contract
        .iter()
        .position(|s| s.description.contains("final shape"));
    let table = contract
        .iter()
        .position(|s| s.description.contains("drop table"));
    let type_ = contract
        .iter()
        .position(|s| s.description.contains("drop enum type public.mood"));
    assert!(shape < type_ && table < type_, "{contract:#?}");
    assert!(sql(contract[type_.expect("the type is dropped")]).contains("still used by column"));
    let message = refused("[[operations]]\nop = \"drop_enum\"\nname = \"moood\"\n");
    assert!(
        message.contains("enum type public.moood does not exist"),
        "{message}"
    );
    let message =
        refused("[[operations]]\nop = \"create_enum\"\nname = \"orders\"\nvalues = [\"a\"]\n");
    assert!(message.contains("row type"), "{message}");
    let message = refused("[[operations]]\nop = \"create_enum\"\nname = \"e\"\nvalues = [\"a\"]\n\n[[operations]]\nop = \"add_enum_value\"\nname = \"e\"\nvalue = \"b\"\nafter = \"z\"\n");
    assert!(message.contains("has no value \"z\""), "{message}");
}

#[test]
fn identity_and_generated_columns_are_declared_keys() {
    let plan = planned("[[operations]]\nop = \"create_table\"\ntable = \"invoices\"\ncolumns = [\n  { name = \"id\", type = \"bigint\", primary_key = true, identity = \"by_default\", sequence = { start = 5, cache = 20, cycle = true } },\n  { name = \"net\", type = \"int\" },\n  { name = \"gross\", type = \"int\", generated = \"net * 2\" },\n]\n");
    let create = find(&plan, Phase::Expand, "create table public.invoices");
    let text = sql(create[0]);
    assert!(
        text.contains(
            "\"id\" bigint NOT NULL GENERATED BY DEFAULT AS IDENTITY (START WITH 5 CACHE 20 CYCLE)"
        ),
        "{text}"
    );
    assert!(
        text.contains("\"gross\" int GENERATED ALWAYS AS (net * 2) STORED"),
        "{text}"
    );
    // add_column: an identity without a rewrite (plan::identity), a generated column refused.
    let plan = planned("[[operations]]\nop = \"add_column\"\ntable = \"orders\"\ncolumn = { name = \"n\", type = \"bigint\", identity = \"always\", sequence = { start = 10 } }\n");
    let all: Vec<&str> = plan.steps.iter().map(sql).collect();
    let at = |text: &str| {
        all.iter()
            .position(|s| s.contains(text))
            .unwrap_or_else(|| panic!("no step with {text}: {all:#?}"))
    };
    assert!(all[at("CREATE SEQUENCE")].contains("AS bigint START WITH 10"));
    assert!(!all[at("ADD COLUMN IF NOT EXISTS \"n\"")].contains("GENERATED"));
    assert!(at("CREATE SEQUENCE") < at("ADD COLUMN IF NOT EXISTS \"n\""));
    assert!(
        at("CREATE OR REPLACE TRIGGER \"_zdm_identity_orders_n\"")
            < at("CHECK (\"n\" IS NOT NULL) NOT VALID")
    );
    let contract = all[at("ADD GENERATED ALWAYS AS IDENTITY (START WITH 10)")];
    assert!(
        contract.find("SET NOT NULL") < contract.find("ADD GENERATED"),
        "{contract}"
    );
    assert!(contract.contains("RESTART WITH"), "{contract}");
    let message = refused("[[operations]]\nop = \"add_column\"\ntable = \"orders\"\ncolumn = { name = \"n\", type = \"text\", identity = \"always\" }\n");
    assert!(message.contains("smallint, integer or bigint"), "{message}");
    let message = refused("[[operations]]\nop = \"add_column\"\ntable = \"orders\"\ncolumn = { name = \"n\", type = \"bigint\", identity = \"always\" }\nup = \"id\"\n");
    assert!(message.contains("leave `up`"), "{message}");
    let message = refused("[[operations]]\nop = \"add_column\"\ntable = \"orders\"\ncolumn = { name = \"n\", type = \"bigint\", generated = \"total_cents * 2\" }\n");
    assert!(message.contains("rewriting the whole table"), "{message}");
    assert!(message.contains("`up` set to the expression"), "{message}");
    let message = refused("[[operations]]\nop = \"create_table\"\ntable = \"t\"\ncolumns = [{ name = \"id\", type = \"bigint\", identity = \"always\", generated = \"1\" }]\n");
    assert!(message.contains("both"), "{message}");
}

#[test]
fn a_column_is_renamed_before_it_changes_shape() {
    planned("[[operations]]\nop = \"rename_column\"\ntable = \"orders\"\ncolumn = \"notes\"\nto = \"remarks\"\n\n[[operations]]\nop = \"change_type\"\ntable = \"orders\"\ncolumn = \"remarks\"\ntype = \"varchar(500)\"\nup = \"notes\"\ndown = \"remarks\"\n");
    let message = refused("[[operations]]\nop = \"change_type\"\ntable = \"orders\"\ncolumn = \"notes\"\ntype = \"varchar(500)\"\nup = \"notes\"\ndown = \"notes\"\n\n[[operations]]\nop = \"rename_column\"\ntable = \"orders\"\ncolumn = \"notes\"\nto = \"remarks\"\n");
    assert!(message.contains("put the rename_column first"), "{message}");
}

#[test]
fn rename_constraint_waits_for_contract() {
    let plan = planned("[[operations]]\nop = \"rename_constraint\"\ntable = \"orders\"\nfrom = \"orders_customer_id_fkey\"\nto = \"orders_customer_fk\"\n");
    assert_safe(&plan);
    assert!(plan
        .phase(Phase::Expand)
        .all(|s| !sql(s).contains("RENAME CONSTRAINT")));
    let contract: Vec<&str> = plan.phase(Phase::Contract).map(sql).collect();
    assert!(
        contract.iter().any(|s| s
            .contains("RENAME CONSTRAINT \"orders_customer_id_fkey\" TO \"orders_customer_fk\"")),
        "{contract:#?}"
    );
    let message = refused("[[operations]]\nop = \"rename_constraint\"\ntable = \"orders\"\nfrom = \"orders_customer_id_fky\"\nto = \"x\"\n");
    assert!(
        message.contains("did you mean orders_customer_id_fkey"),
        "{message}"
    );
    let message = refused("[[operations]]\nop = \"rename_constraint\"\ntable = \"orders\"\nfrom = \"orders_customer_id_fkey\"\nto = \"orders_pkey\"\n");
    assert!(message.contains("already exists"), "{message}");
}

// ---- Several changes to one column in one migration.

#[test]
fn two_changes_of_one_column_compose_into_one_shadow_column() {
    let (plan, after) = plan_and_simulate(
        &migration(
            r#"
[[operations]]
op = "change_type"
table = "orders"
column = "currency"
type = "varchar(3)"
up = "currency::varchar(3)"
down = "currency::text"

[[operations]]
op = "change_type"
table = "orders"
column = "currency"
type = "char(3)"
up = "upper(currency)::char(3)"
down = "lower(currency)::varchar(3)"
"#,
        ),
        &demo(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_safe(&plan);
    // One shadow column, of the last type, with the default converted twice.
    let added = find(&plan, Phase::Expand, "add shadow column");
    assert_eq!(added.len(), 1, "{:?}", plan.steps);
    assert!(
        sql(added[0]).contains("ADD COLUMN IF NOT EXISTS \"_zdm_new_currency\" char(3)"),
        "{}",
        sql(added[0])
    );
    let default = find(&plan, Phase::Expand, "set the default of shadow column");
    assert_eq!(default.len(), 1, "{:?}", plan.steps);
    assert!(
        sql(default[0]).contains("SET DEFAULT (('EUR'::text)::varchar(3))::char(3)"),
        "{}",
        sql(default[0])
    );
    // The later `up` over the earlier one's value, the earlier `down` over the later one's.
    let up = "(SELECT (upper(currency)::char(3)) FROM (SELECT (currency::varchar(3))::varchar(3) AS \"currency\") AS \"_zdm_value\")";
    let down = "(SELECT (currency::text) FROM (SELECT (lower(currency)::varchar(3))::varchar(3) AS \"currency\") AS \"_zdm_value\")";
    let function = sql(find(&plan, Phase::Expand, "keeping old and new")[0]);
    assert!(
        function.contains(&format!("NEW.\"_zdm_new_currency\" := ({up});")),
        "{function}"
    );
    assert!(
        function.contains(&format!("NEW.\"currency\" := ({down});")),
        "{function}"
    );
    let backfills: Vec<_> = plan
        .phase(Phase::Backfill)
        .filter_map(|s| match &s.action {
            StepAction::Backfill(b) => Some(b),
            _ => None,
        })
        .collect();
    assert_eq!(backfills.len(), 1);
    assert_eq!(
        backfills[0].assignments,
        vec![("_zdm_new_currency".to_string(), up.to_string())]
    );
    // NOT NULL is proven once, the shadow column dropped once at rollback.
    assert_eq!(find(&plan, Phase::Expand, "IS NOT NULL").len(), 1);
    assert_eq!(find(&plan, Phase::Rollback, "drop shadow column").len(), 1);
    let currency = after
        .table(&QualifiedName::new("public", "orders"))
        .and_then(|t| t.column("currency"))
        .expect("currency");
    assert_eq!(currency.data_type, "char(3)");
    assert!(!currency.nullable);

    // A set_default between the changes is the new version's: it stays as it was set.
    let (plan, after) = plan_and_simulate(
        &migration("[[operations]]\nop = \"change_type\"\ntable = \"orders\"\ncolumn = \"currency\"\ntype = \"varchar(3)\"\nup = \"currency\"\ndown = \"currency\"\n\n[[operations]]\nop = \"set_default\"\ntable = \"orders\"\ncolumn = \"currency\"\ndefault = \"'USD'\"\n\n[[operations]]\nop = \"change_type\"\ntable = \"orders\"\ncolumn = \"currency\"\ntype = \"char(3)\"\nup = \"currency\"\ndown = \"currency\"\n"),
        &demo(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        sql(find(&plan, Phase::Expand, "set the default of shadow column")[0])
            .contains("SET DEFAULT (('EUR'::text)::varchar(3))::char(3)")
    );
    let currency = after
        .table(&QualifiedName::new("public", "orders"))
        .and_then(|t| t.column("currency"))
        .expect("currency");
    assert_eq!(currency.default.as_deref(), Some("'USD'"));

    // After a rename, the later `up` reads the column by either name.
    let plan = planned("[[operations]]\nop = \"rename_column\"\ntable = \"orders\"\ncolumn = \"currency\"\nto = \"cur\"\n\n[[operations]]\nop = \"change_type\"\ntable = \"orders\"\ncolumn = \"cur\"\ntype = \"varchar(3)\"\nup = \"currency::varchar(3)\"\ndown = \"cur::text\"\n\n[[operations]]\nop = \"change_type\"\ntable = \"orders\"\ncolumn = \"cur\"\ntype = \"char(3)\"\nup = \"cur::char(3)\"\ndown = \"cur::varchar(3)\"\n");
    let function = sql(find(&plan, Phase::Expand, "keeping old and new")[0]);
    assert!(function.contains("(SELECT (cur::char(3)) FROM (SELECT \"currency\", \"currency\" AS \"cur\" FROM (SELECT (currency::varchar(3))::varchar(3) AS \"currency\") AS \"_zdm_value\") AS \"_zdm_values\")"), "{function}");

    // NOT NULL dropped after a type change would leave the earlier change's proof behind:
    // refused, naming the order that works.
    let message = refused("[[operations]]\nop = \"change_type\"\ntable = \"orders\"\ncolumn = \"currency\"\ntype = \"varchar(3)\"\nup = \"currency\"\ndown = \"currency\"\n\n[[operations]]\nop = \"drop_not_null\"\ntable = \"orders\"\ncolumn = \"currency\"\ndown = \"'EUR'\"\n");
    assert!(
        message.contains("operation 2 (drop_not_null)")
            && message.contains("put the drop_not_null first"),
        "{message}"
    );
    // drop_not_null then change_type: one nullable shadow column, no NOT NULL proof.
    let plan = planned("[[operations]]\nop = \"drop_not_null\"\ntable = \"orders\"\ncolumn = \"currency\"\ndown = \"'EUR'\"\n\n[[operations]]\nop = \"change_type\"\ntable = \"orders\"\ncolumn = \"currency\"\ntype = \"varchar(3)\"\nup = \"currency\"\ndown = \"currency\"\n");
    assert_eq!(find(&plan, Phase::Expand, "add shadow column").len(), 1);
    assert!(find(&plan, Phase::Expand, "IS NOT NULL").is_empty());
    let function = sql(find(&plan, Phase::Expand, "keeping old and new")[0]);
    assert!(function.contains("NEW.\"currency\" := ((SELECT (coalesce(\"currency\", 'EUR')) FROM (SELECT (currency)::text AS \"currency\") AS \"_zdm_value\"));"), "{function}");

    // A later link that names the column qualified would read the writer's row, not the
    // earlier link's value: refused, saying to write it bare.
    let message = refused("[[operations]]\nop = \"change_type\"\ntable = \"orders\"\ncolumn = \"total_cents\"\ntype = \"bigint\"\nup = \"total_cents * 10\"\ndown = \"(total_cents / 10)::integer\"\n\n[[operations]]\nop = \"change_type\"\ntable = \"orders\"\ncolumn = \"total_cents\"\ntype = \"numeric\"\nup = \"orders.total_cents / 1000.0\"\ndown = \"(total_cents * 1000)::bigint\"\n");
    assert!(
        message.contains("the `up` of one of its links names it qualified (orders.total_cents)")
            && message.contains("unqualified"),
        "{message}"
    );
    let message = refused("[[operations]]\nop = \"change_type\"\ntable = \"orders\"\ncolumn = \"total_cents\"\ntype = \"bigint\"\nup = \"total_cents * 10\"\ndown = \"(orders.total_cents / 10)::integer\"\n\n[[operations]]\nop = \"change_type\"\ntable = \"orders\"\ncolumn = \"total_cents\"\ntype = \"numeric\"\nup = \"total_cents / 1000.0\"\ndown = \"(total_cents * 1000)::bigint\"\n");
    assert!(message.contains("(orders.total_cents)"), "{message}");
}

// ---- pgroll's remaining operations.

#[test]
fn set_replica_identity_is_set_at_expand_and_restored_by_rollback() {
    let plan = planned("[[operations]]\nop = \"set_replica_identity\"\ntable = \"orders\"\nidentity = \"full\"\n\n[[operations]]\nop = \"set_replica_identity\"\ntable = \"orders\"\nidentity = \"nothing\"\n");
    assert_safe(&plan);
    let set: Vec<&str> = find(&plan, Phase::Expand, "replica identity")
        .into_iter()
        .map(sql)
        .collect();
    assert_eq!(
        set,
        [
            "ALTER TABLE IF EXISTS \"public\".\"orders\" REPLICA IDENTITY FULL",
            "ALTER TABLE IF EXISTS \"public\".\"orders\" REPLICA IDENTITY NOTHING"
        ]
    );
    // Undone last first: back to FULL, then to the default the table had.
    let undo: Vec<&str> = find(&plan, Phase::Rollback, "replica identity")
        .into_iter()
        .map(sql)
        .collect();
    assert_eq!(
        undo,
        [
            "ALTER TABLE IF EXISTS \"public\".\"orders\" REPLICA IDENTITY FULL",
            "ALTER TABLE IF EXISTS \"public\".\"orders\" REPLICA IDENTITY DEFAULT"
        ]
    );
    assert!(find(&plan, Phase::Expand, "replica identity")
        .iter()
        .all(|s| s.lock == LockLevel::AccessExclusive && !s.scans));
    let message = refused("[[operations]]\nop = \"set_replica_identity\"\ntable = \"orders\"\nidentity = \"index\"\nindex = \"orders_placed_at_idx\"\n");
    assert!(
        message.contains("cannot be the replica identity"),
        "{message}"
    );
    let message = refused("[[operations]]\nop = \"set_replica_identity\"\ntable = \"orders\"\nidentity = \"index\"\nindex = \"orders_pkee\"\n");
    assert!(message.contains("did you mean"), "{message}");
}

#[test]
fn the_replica_identity_index_is_not_dropped_while_it_is_the_identity() {
    // The demo's orders with a unique index over NOT NULL columns as its replica identity.
    let mut catalog = serde_json::to_value(demo()).expect("catalog as JSON");
    let orders = catalog["tables"]
        .as_array_mut()
        .and_then(|tables| tables.iter_mut().find(|t| t["name"]["name"] == "orders"))
        .expect("orders");
    orders["indexes"].as_array_mut().expect("indexes").push(serde_json::json!({
        "name": "orders_customer_placed_key",
        "columns": ["customer_id", "placed_at"],
        "unique": true,
        "primary": false,
        "valid": true,
        "definition": "CREATE UNIQUE INDEX orders_customer_placed_key ON public.orders USING btree (customer_id, placed_at)"
    }));
    catalog["replica_identities"] = serde_json::json!([{
        "table": { "schema": "public", "name": "orders" },
        "identity": "index",
        "index": "orders_customer_placed_key"
    }]);
    let catalog: Catalog = serde_json::from_value(catalog).expect("catalog");
    let drop = "[[operations]]\nop = \"drop_index\"\nname = \"orders_customer_placed_key\"\n";
    let message = plan(&migration(drop), &catalog)
        .expect_err("refused")
        .to_string();
    assert!(
        message
            .contains("index orders_customer_placed_key is the replica identity of public.orders")
            && message.contains("set_replica_identity"),
        "{message}"
    );
    // Given another identity first, the index may go.
    let plan = plan(
        &migration(&format!(
            "[[operations]]\nop = \"set_replica_identity\"\ntable = \"orders\"\nidentity = \"default\"\n\n{drop}"
        )),
        &catalog,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(plan.phase(Phase::Contract).any(|s| sql(s)
        .contains("DROP INDEX CONCURRENTLY IF EXISTS \"public\".\"orders_customer_placed_key\"")));
    // Another index of the same table is no concern.
    assert!(zdm::plan::plan(
        &migration("[[operations]]\nop = \"drop_index\"\nname = \"orders_placed_at_idx\"\n"),
        &catalog
    )
    .is_ok());
}

#[test]
fn set_comment_is_set_at_contract_under_the_final_names() {
    let plan = planned("[[operations]]\nop = \"rename_column\"\ntable = \"orders\"\ncolumn = \"notes\"\nto = \"remarks\"\n\n[[operations]]\nop = \"set_comment\"\ntable = \"orders\"\ncolumn = \"remarks\"\ncomment = \"Free text; don't parse it\"\n\n[[operations]]\nop = \"rename_table\"\ntable = \"orders\"\nto = \"purchases\"\n\n[[operations]]\nop = \"set_comment\"\ntable = \"purchases\"\n");
    assert_safe(&plan);
    assert!(!plan
        .phase(Phase::Expand)
        .chain(plan.phase(Phase::Backfill))
        .chain(plan.phase(Phase::Rollback))
        .any(|s| sql(s).contains("COMMENT ON COLUMN") || sql(s).contains("COMMENT ON TABLE")));
    let contract = sql(find(&plan, Phase::Contract, "final shape")[0]);
    let comment = contract
        .find(
            "COMMENT ON COLUMN \"public\".\"orders\".\"remarks\" IS 'Free text; don''t parse it';",
        )
        .expect("the column's comment, by its final name");
    let rename_column = contract
        .find("RENAME COLUMN \"notes\" TO \"remarks\"")
        .expect("rename");
    let rename_table = contract
        .find("RENAME TO \"purchases\"")
        .expect("table rename");
    assert!(
        rename_column < comment && comment < rename_table,
        "{contract}"
    );
    assert!(contract.contains("COMMENT ON TABLE \"public\".\"orders\" IS NULL;"));
    // A new column's comment comes with it, at expand.
    let plan = planned("[[operations]]\nop = \"create_table\"\ntable = \"notes\"\ncolumns = [{ name = \"id\", type = \"bigint\", primary_key = true, comment = \"Surrogate key\" }]\n\n[[operations]]\nop = \"add_column\"\ntable = \"orders\"\ncolumn = { name = \"channel\", type = \"text\", comment = \"web or shop\" }\n");
    let comments: Vec<&str> = find(&plan, Phase::Expand, "comment column")
        .into_iter()
        .map(sql)
        .collect();
    assert_eq!(
        comments,
        [
            "COMMENT ON COLUMN \"public\".\"notes\".\"id\" IS 'Surrogate key'",
            "COMMENT ON COLUMN \"public\".\"orders\".\"channel\" IS 'web or shop'"
        ]
    );
    let message = refused("[[operations]]\nop = \"set_comment\"\ntable = \"orders\"\ncolumn = \"note\"\ncomment = \"x\"\n");
    assert!(message.contains("column note does not exist"), "{message}");
}

#[test]
fn add_primary_key_builds_concurrently_and_attaches_at_contract() {
    // A table without a key: the demo's order_items without its key.
    let mut without_key = demo();
    let order_items = without_key
        .table_mut(&QualifiedName::new("public", "order_items"))
        .expect("order_items");
    order_items
        .constraints
        .retain(|c| c.name != "order_items_pkey");
    order_items.indexes.retain(|i| i.name != "order_items_pkey");
    let m = migration("[[operations]]\nop = \"add_primary_key\"\ntable = \"order_items\"\ncolumns = [\"order_id\", \"id\"]\nname = \"order_items_key\"\n");
    let (plan, after) = plan_and_simulate(&m, &without_key).unwrap_or_else(|e| panic!("{e}"));
    assert_safe(&plan);
    let build = find(&plan, Phase::Expand, "build unique index order_items_key")[0];
    assert_eq!(sql(build), "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS \"order_items_key\" ON \"public\".\"order_items\" (\"order_id\", \"id\")");
    // Both columns are NOT NULL already: no check to prove it.
    assert!(find(&plan, Phase::Expand, "IS NOT NULL").is_empty());
    let contract = sql(find(&plan, Phase::Contract, "final shape")[0]);
    assert!(
        contract.contains(
            "ADD CONSTRAINT \"order_items_key\" PRIMARY KEY USING INDEX \"order_items_key\""
        ),
        "{contract}"
    );
    assert!(!find(
        &plan,
        Phase::Rollback,
        "drop index public.order_items_key concurrently"
    )
    .is_empty());
    let table = after
        .table(&QualifiedName::new("public", "order_items"))
        .expect("order_items");
    assert_eq!(
        table.batch_key(),
        Some(vec!["order_id".to_string(), "id".to_string()])
    );

    // A key on a table that has one is refused.
    let message = refused(
        "[[operations]]\nop = \"add_primary_key\"\ntable = \"orders\"\ncolumns = [\"id\"]\n",
    );
    assert!(
        message.contains("already has a primary key (orders_pkey)"),
        "{message}"
    );
}

/// add_check reads the columns as the new version names them: after a change_type of the
/// column the check binds the shadow column (and follows it into place at contract; before,
/// it bound the old column and went with it). Per-column `up`/`down` of the constraint
/// operations move their columns to shadow columns of the same type, composed into an
/// earlier change of the column.
#[test]
fn constraints_with_per_column_values_bind_the_new_versions_columns() {
    let plan = planned("[[operations]]\nop = \"change_type\"\ntable = \"products\"\ncolumn = \"price_cents\"\ntype = \"bigint\"\nup = \"price_cents::bigint\"\ndown = \"price_cents::integer\"\n\n[[operations]]\nop = \"add_check\"\ntable = \"products\"\nname = \"products_price_positive\"\ncheck = \"price_cents > 0 AND products.price_cents < length('price_cents') * 1000\"\n");
    let check = find(&plan, Phase::Expand, "add CHECK products_price_positive");
    assert!(
        sql(check[0]).contains("CHECK (\"_zdm_new_price_cents\" > 0 AND products.\"_zdm_new_price_cents\" < length('price_cents') * 1000) NOT VALID"),
        "{}",
        sql(check[0])
    );

    let plan = planned("[[operations]]\nop = \"add_unique\"\ntable = \"orders\"\nname = \"orders_customer_notes_key\"\ncolumns = [\"customer_id\", \"notes\"]\nup = { notes = \"coalesce(notes, id::text)\" }\n");
    let all: Vec<&str> = plan.steps.iter().map(sql).collect();
    assert!(
        all.iter()
            .any(|s| s.contains("ADD COLUMN IF NOT EXISTS \"_zdm_new_notes\" text")),
        "{all:#?}"
    );
    assert!(all.iter().any(|s| s.contains("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS \"orders_customer_notes_key\" ON \"public\".\"orders\" (\"customer_id\", \"_zdm_new_notes\")")), "{all:#?}");
    assert!(
        !all.iter().any(|s| s.contains("_zdm_new_customer_id")),
        "{all:#?}"
    );

    // Two changes of one column: one shadow column, one chain.
    let plan = planned("[[operations]]\nop = \"change_type\"\ntable = \"products\"\ncolumn = \"price_cents\"\ntype = \"bigint\"\nup = \"price_cents::bigint\"\ndown = \"price_cents::integer\"\n\n[[operations]]\nop = \"add_foreign_key\"\ntable = \"products\"\nname = \"products_price_fkey\"\ncolumns = [\"price_cents\"]\nreferences = { table = \"orders\", columns = [\"id\"] }\nup = { price_cents = \"1\" }\n");
    let shadows = plan
        .steps
        .iter()
        .filter(|s| sql(s).contains("ADD COLUMN IF NOT EXISTS \"_zdm_new_price_cents\""))
        .count();
    assert_eq!(shadows, 1);

    let message = refused("[[operations]]\nop = \"add_unique\"\ntable = \"orders\"\nname = \"k\"\ncolumns = [\"customer_id\"]\nup = { notes = \"''\" }\n");
    assert!(
        message.contains("not one of the constraint's columns"),
        "{message}"
    );

    // drop_constraint with `down`: the dropped constraint does not stop the shadow column
    // (another constraint on the column still does).
    let plan = planned("[[operations]]\nop = \"drop_constraint\"\ntable = \"orders\"\nname = \"orders_customer_id_fkey\"\ndown = { customer_id = \"1\" }\n");
    let all: Vec<&str> = plan.steps.iter().map(sql).collect();
    assert!(
        all.iter()
            .any(|s| s.contains("\"_zdm_new_customer_id\" bigint")),
        "{all:#?}"
    );
    assert!(
        !all.iter()
            .any(|s| s.contains("orders_customer_id_fkey") && s.contains("NOT VALID")),
        "the dropped key is not rebuilt: {all:#?}"
    );
}
