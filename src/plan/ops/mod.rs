//! One file per operation, all behind one trait, and the registry that maps each
//! [`Operation`] to its planner. Adding an operation means one new file and one line here.

mod add_check;
pub(super) mod add_column;
mod add_enum_value;
mod add_foreign_key;
pub(super) mod add_primary_key;
mod add_unique;
mod change_type;
mod create_enum;
mod create_index;
mod create_table;
mod drop_column;
pub(super) mod drop_constraint;
pub(crate) mod drop_enum;
mod drop_index;
mod drop_not_null;
mod drop_table;
mod raw_sql;
mod rename_column;
mod rename_constraint;
mod rename_enum_value;
pub(super) mod rename_table;
pub(super) mod set_comment;
pub(super) mod set_default;
pub(super) mod set_not_null;
mod set_replica_identity;
mod split_table;

use crate::db::catalog::QualifiedName;
use crate::db::quote_ident;
use crate::migration::Operation;
use crate::plan::error::Problem;
use crate::plan::names::{do_block, literal, regclass};
use crate::plan::step::{LockLevel, Phase, PromiseKind, Step};
use crate::plan::workspace::Workspace;

/// What every operation does: check itself against the new shape so far, then add its
/// steps (expand, backfill, contract, rollback) and update the simulated catalog.
pub(crate) trait PlanOperation {
    /// The tables it changes, as written (`orders`, `billing.orders`).
    fn tables(&self) -> Vec<&str>;
    /// Checks the operation against the catalog as earlier operations left it.
    fn validate(&self, ws: &Workspace) -> Result<(), Problem>;
    /// Adds its steps; called only after `validate` passed.
    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem>;
}

/// The registry: the planner of each operation.
pub(crate) fn planner(operation: &Operation) -> &dyn PlanOperation {
    match operation {
        Operation::CreateTable(op) => op,
        Operation::DropTable(op) => op,
        Operation::RenameTable(op) => op,
        Operation::AddColumn(op) => op,
        Operation::DropColumn(op) => op,
        Operation::RenameColumn(op) => op,
        Operation::ChangeType(op) => op,
        Operation::SetNotNull(op) => op,
        Operation::DropNotNull(op) => op,
        Operation::SetDefault(op) => op,
        Operation::AddCheck(op) => op,
        Operation::AddUnique(op) => op,
        Operation::AddForeignKey(op) => op,
        Operation::DropConstraint(op) => op,
        Operation::RenameConstraint(op) => op,
        Operation::CreateIndex(op) => op,
        Operation::DropIndex(op) => op,
        Operation::SplitTable(op) => op,
        Operation::CreateEnum(op) => op,
        Operation::DropEnum(op) => op,
        Operation::AddEnumValue(op) => op,
        Operation::RenameEnumValue(op) => op,
        Operation::RawSql(op) => op,
        Operation::SetReplicaIdentity(op) => op,
        Operation::SetComment(op) => op,
        Operation::AddPrimaryKey(op) => op,
    }
}

/// `ALTER TABLE t ADD CONSTRAINT name <definition>` unless a constraint of that name exists.
pub(super) fn add_constraint_sql(table: &QualifiedName, name: &str, definition: &str) -> String {
    do_block(&format!(
        "  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = {} AND conname = {}) THEN\n    ALTER TABLE {} ADD CONSTRAINT {} {definition};\n  END IF;\n",
        regclass(&table.quoted()),
        literal(name),
        table.quoted(),
        quote_ident(name),
    ))
}

/// VALIDATE CONSTRAINT: scans the table under SHARE UPDATE EXCLUSIVE (reads and writes go
/// on); validating a valid constraint again does nothing.
pub(super) fn validate_step(
    table: &QualifiedName,
    name: &str,
    also_locked: Option<&QualifiedName>,
) -> Step {
    let mut locked = vec![table.to_string()];
    if let Some(other) = also_locked {
        locked.push(other.to_string());
    }
    Step::sql(
        Phase::Backfill,
        format!("validate constraint {name} on {table} (scans, reads and writes go on)"),
        format!(
            "ALTER TABLE {} VALIDATE CONSTRAINT {}",
            table.quoted(),
            quote_ident(name)
        ),
        LockLevel::ShareUpdateExclusive,
        locked,
    )
    .scanning()
}

/// `DROP CONSTRAINT IF EXISTS`, for rollbacks.
fn drop_constraint_step(table: &QualifiedName, name: &str, locked: Vec<String>) -> Step {
    Step::sql(
        Phase::Rollback,
        format!("drop constraint {name} from {table}"),
        format!(
            "ALTER TABLE IF EXISTS {} DROP CONSTRAINT IF EXISTS {}",
            table.quoted(),
            quote_ident(name)
        ),
        LockLevel::AccessExclusive,
        locked,
    )
}

/// CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS, run outside a transaction and promising
/// the index: what `Step::concurrent_index` reads. Re-runnable: before each try the engine
/// drops an INVALID index of this name that a failed or interrupted build left, so `IF NOT
/// EXISTS` never mistakes it for a built one.
pub(super) fn concurrent_index_step(
    description: String,
    table: &QualifiedName,
    index: &str,
    unique: bool,
    keys_and_rest: &str,
    kept: bool,
) -> Step {
    Step::sql(
        Phase::Expand,
        description,
        format!(
            "CREATE {}INDEX CONCURRENTLY IF NOT EXISTS {} ON {} {keys_and_rest}",
            if unique { "UNIQUE " } else { "" },
            quote_ident(index),
            table.quoted(),
        ),
        LockLevel::ShareUpdateExclusive,
        vec![table.to_string()],
    )
    .outside_transaction()
    .scanning()
    .creating(PromiseKind::Index, table, index, kept)
}

/// DROP INDEX CONCURRENTLY IF EXISTS (outside a transaction, SHARE UPDATE EXCLUSIVE).
fn drop_index_concurrently_step(phase: Phase, table: &QualifiedName, index: &str) -> Step {
    Step::sql(
        phase,
        format!("drop index {}.{index} concurrently", table.schema),
        format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}",
            QualifiedName::new(&table.schema, index).quoted()
        ),
        LockLevel::ShareUpdateExclusive,
        vec![table.to_string()],
    )
    .outside_transaction()
}

/// Refuses shape changes of tables this migration creates: declare them in create_table.
pub(super) fn refuse_created(ws: &Workspace, table: &QualifiedName) -> Result<(), Problem> {
    if ws.is_created(table) {
        return Err(Problem::Refused(format!(
            "table {table} is created by this migration: declare its final columns in create_table instead"
        )));
    }
    Ok(())
}

/// Refuses a second shape change of a column within one migration.
pub(super) fn refuse_reshaped(
    ws: &Workspace,
    table: &QualifiedName,
    column: &str,
) -> Result<(), Problem> {
    if ws.column_is_reshaped(table, column) {
        return Err(Problem::Refused(format!(
            "column {column} of {table} already changes shape in an earlier operation of this migration; change it again in a later migration"
        )));
    }
    Ok(())
}

/// Checks that every listed column exists in the new shape of the table.
fn check_columns(ws: &Workspace, table: &QualifiedName, columns: &[String]) -> Result<(), Problem> {
    if columns.is_empty() {
        return Err(Problem::Refused("the column list is empty".to_string()));
    }
    for column in columns {
        ws.existing_column(table, column)?;
    }
    Ok(())
}

/// Physical names of columns of the new shape, quoted and comma-separated.
pub(super) fn physical_column_list(
    ws: &Workspace,
    table: &QualifiedName,
    columns: &[String],
) -> String {
    columns
        .iter()
        .map(|c| quote_ident(&ws.physical_column(table, c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `ON DELETE` clause of a foreign key, checked.
fn on_delete_clause(on_delete: Option<&str>) -> Result<String, Problem> {
    let Some(action) = on_delete else {
        return Ok(String::new());
    };
    let normalized = action.trim().to_ascii_lowercase();
    match normalized.as_str() {
        "no action" | "restrict" | "cascade" | "set null" | "set default" => {
            Ok(format!(" ON DELETE {}", normalized.to_ascii_uppercase()))
        }
        _ => Err(Problem::Refused(format!(
            "on_delete = {action:?} is not one of: no action, restrict, cascade, set null, set default"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_concurrent_build_tells_the_engine_which_index_it_builds() {
        let table = QualifiedName::new("shop", "orders");
        let build = concurrent_index_step(
            "build".to_string(),
            &table,
            "Orders_Placed",
            false,
            "(\"placed_at\")",
            true,
        );
        let index = build
            .concurrent_index()
            .map(|p| (p.schema.as_str(), p.name.as_str()));
        assert_eq!(index, Some(("shop", "Orders_Placed")));
        let drop = drop_index_concurrently_step(Phase::Rollback, &table, "Orders_Placed");
        assert!(drop.concurrent_index().is_none());
        // Raw SQL that happens to read like an index build is not one zdm planned.
        let raw = Step::sql(
            Phase::Expand,
            "raw SQL",
            "CREATE INDEX CONCURRENTLY x ON t (a)",
            LockLevel::AccessExclusive,
            Vec::new(),
        );
        assert!(raw.concurrent_index().is_none());
    }
}
