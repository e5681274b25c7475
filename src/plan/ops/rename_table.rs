//! rename_table: the new version's view carries the new name at once; the physical table is
//! renamed at contract (catalog only, brief), last in the table's final-shape step, so the
//! old version never breaks.

use crate::db::catalog::QualifiedName;
use crate::db::quote_ident;
use crate::migration::operation::RenameTable;
use crate::plan::error::Problem;
use crate::plan::names::regclass;
use crate::plan::ops::{refuse_created, PlanOperation};
use crate::plan::workspace::{TableState, Workspace};

impl PlanOperation for RenameTable {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        refuse_created(ws, &table)?;
        let to = target(&table, &self.to)?;
        if ws.catalog.relation_exists(&to) || ws.original.relation_exists(&to) {
            return Err(Problem::TableExists(to.to_string()));
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        let to = target(&table, &self.to)?;
        ws.state(&table)?.name = to.clone();
        ws.table_mut(&table)?.name = to.clone();
        for other in &mut ws.catalog.tables {
            for constraint in &mut other.constraints {
                if let Some(reference) = &mut constraint.references {
                    if reference.table == table {
                        reference.table = to.clone();
                    }
                }
            }
        }
        for identity in &mut ws.catalog.replica_identities {
            if identity.table == table {
                identity.table = to.clone();
            }
        }
        ws.catalog.normalize();
        Ok(())
    }
}

/// The new name, in the table's schema (a rename never moves a table to another schema).
fn target(table: &QualifiedName, to: &str) -> Result<QualifiedName, Problem> {
    match to.split_once('.') {
        Some((schema, _)) if schema != table.schema => Err(Problem::Refused(format!(
            "rename_table cannot move {table} to schema {schema}"
        ))),
        Some((_, name)) => Ok(QualifiedName::new(&table.schema, name)),
        None => Ok(QualifiedName::new(&table.schema, to)),
    }
}

/// Contract: the last statement of the table's final-shape step (`table` quoted), when the
/// migration renames it.
pub(crate) fn contract_sql(state: &TableState, table: &str) -> String {
    if state.physical == state.name {
        return String::new();
    }
    format!(
        "  ALTER TABLE {table} RENAME TO {};\n",
        quote_ident(&state.name.name)
    )
}

/// The final-shape step's `body` guarded for a renamed table: a re-run after the rename
/// committed finds the old name gone and its work done.
pub(crate) fn rerun_guard(state: &TableState, table: &str, body: String) -> String {
    if state.physical == state.name {
        return body;
    }
    format!(
        "  IF {} IS NULL THEN\n    RETURN;\n  END IF;\n{body}",
        regclass(table)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renamed_table_is_renamed_last_and_a_rerun_returns_early() {
        let mut state = TableState::for_test(&[("id", "id")]);
        let table = state.physical.quoted();
        assert_eq!(contract_sql(&state, &table), "");
        assert_eq!(rerun_guard(&state, &table, "body".to_string()), "body");
        state.name = QualifiedName::new("public", "u");
        assert_eq!(
            contract_sql(&state, &table),
            "  ALTER TABLE \"public\".\"t\" RENAME TO \"u\";\n"
        );
        assert!(rerun_guard(&state, &table, String::new())
            .starts_with("  IF to_regclass('\"public\".\"t\"') IS NULL THEN\n    RETURN;"));
    }
}
