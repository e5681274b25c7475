//! rename_table: the new version's view carries the new name at once; the physical table is
//! renamed at contract (catalog only, brief), so the old version never breaks.

use crate::db::catalog::QualifiedName;
use crate::migration::operation::RenameTable;
use crate::plan::error::Problem;
use crate::plan::ops::{refuse_created, PlanOperation};
use crate::plan::workspace::Workspace;

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
