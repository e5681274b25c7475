//! add_primary_key: never ADD PRIMARY KEY (it builds its index under ACCESS EXCLUSIVE and
//! scans for NULLs). The unique index is built concurrently at expand; a key column that
//! may be NULL gets `CHECK (col IS NOT NULL) NOT VALID`, validated at backfill; at contract,
//! in the table's final-shape step, `SET NOT NULL` skips its scan (the validated check
//! proves it) and `ADD CONSTRAINT ... PRIMARY KEY USING INDEX` attaches the index (catalog
//! only, brief). Rollback drops the index (and the checks, with the expand constraints).

use crate::db::catalog::{Constraint, ConstraintKind, Index};
use crate::db::quote_ident;
use crate::migration::operation::AddPrimaryKey;
use crate::plan::error::Problem;
use crate::plan::names::{self, regclass};
use crate::plan::ops::set_not_null::prove_not_null;
use crate::plan::ops::{
    add_constraint_sql, check_columns, concurrent_index_step, drop_index_concurrently_step,
    physical_column_list, refuse_reshaped, PlanOperation,
};
use crate::plan::step::{LockLevel, Phase, Step};
use crate::plan::workspace::{TableState, Workspace};

impl AddPrimaryKey {
    /// The constraint's and its index's name.
    fn key_name(&self, ws: &Workspace) -> Result<String, Problem> {
        let table = ws.existing_table(&self.table)?;
        Ok(self
            .name
            .clone()
            .unwrap_or_else(|| names::derived(&[table.name.as_str(), "pkey"])))
    }
}

impl PlanOperation for AddPrimaryKey {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        check_columns(ws, &table, &self.columns)?;
        if let Some(existing) = ws.table(&table)?.primary_key() {
            return Err(Problem::Refused(format!(
                "table {table} already has a primary key ({}): drop it first with drop_constraint",
                existing.name
            )));
        }
        for column in &self.columns {
            // The index is built on the physical column, which must be the key's for good.
            refuse_reshaped(ws, &table, column)?;
            let found = ws.existing_column(&table, column)?;
            if found.generated {
                return Err(Problem::Refused(format!(
                    "column {column} of {table} is generated: it cannot be part of a primary key"
                )));
            }
        }
        ws.check_name_free(&table.schema, &self.key_name(ws)?)
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        let name = self.key_name(ws)?;
        let physical_table = ws.physical_table(&table);
        if ws.is_created(&table) {
            return key_created_table(ws, self, &name);
        }
        let columns = physical_column_list(ws, &table, &self.columns);
        ws.push_expand(concurrent_index_step(
            format!(
                "build unique index {name} for the primary key of {physical_table} concurrently (reads and writes go on)"
            ),
            &physical_table,
            &name,
            true,
            &format!("({columns})"),
            true,
        ));
        ws.push_rollback(drop_index_concurrently_step(
            Phase::Rollback,
            &physical_table,
            &name,
        ));
        // A column that may hold NULL now: proven NOT NULL before contract. One made NOT
        // NULL by an earlier operation of this migration already has its proof.
        for column in &self.columns {
            let nullable = ws.existing_column(&table, column)?.nullable;
            if nullable {
                prove_not_null(ws, &table, column, column)?;
                if let Some(found) = ws.table_mut(&table)?.column_mut(column) {
                    found.nullable = false;
                }
            }
        }
        ws.state(&table)?.primary_key = Some(name.clone());
        simulate(ws, self, name)
    }
}

/// A table created by this migration (pgroll's create_table followed by create_constraint,
/// as `zdm import` writes them): it is empty and new, so the key is added at once, right
/// after the table (ACCESS EXCLUSIVE on a table nothing uses yet, nothing to scan); the
/// table's rollback drops it with the table.
fn key_created_table(ws: &mut Workspace, op: &AddPrimaryKey, name: &str) -> Result<(), Problem> {
    let table = ws.existing_table(&op.table)?;
    let columns = physical_column_list(ws, &table, &op.columns);
    ws.push_expand(Step::sql(
        Phase::Expand,
        format!("add primary key {name} to the new table {table} (empty: nothing to scan)"),
        add_constraint_sql(&table, name, &format!("PRIMARY KEY ({columns})")),
        LockLevel::AccessExclusive,
        vec![table.to_string()],
    ));
    for column in &op.columns {
        if let Some(found) = ws.table_mut(&table)?.column_mut(column) {
            found.nullable = false;
        }
    }
    simulate(ws, op, name.to_string())
}

/// The key and its index in the simulated catalog.
fn simulate(ws: &mut Workspace, op: &AddPrimaryKey, name: String) -> Result<(), Problem> {
    let table = ws.existing_table(&op.table)?;
    let found = ws.table_mut(&table)?;
    found.indexes.push(Index {
        name: name.clone(),
        columns: op.columns.iter().cloned().map(Some).collect(),
        unique: true,
        primary: true,
        valid: true,
        definition: String::new(),
    });
    found.constraints.push(Constraint {
        name: name.clone(),
        kind: ConstraintKind::PrimaryKey,
        columns: op.columns.clone(),
        definition: format!("PRIMARY KEY ({})", op.columns.join(", ")),
        validated: true,
        index: Some(name),
        references: None,
    });
    Ok(())
}

/// Contract: the statement of the table's final-shape step (`table` quoted) attaching the
/// index as the primary key, after the key columns' SET NOT NULL (so no scan); skipped
/// when a re-run finds the key there.
pub(crate) fn contract_sql(state: &TableState, table: &str) -> String {
    let Some(name) = &state.primary_key else {
        return String::new();
    };
    format!(
        "  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = {} AND contype = 'p') THEN\n    ALTER TABLE {table} ADD CONSTRAINT {} PRIMARY KEY USING INDEX {};\n  END IF;\n",
        regclass(table),
        quote_ident(name),
        quote_ident(name)
    )
}
