//! rename_column: the new version's view shows the column under its new name at once; the
//! physical column is renamed at contract (catalog only), so the old version never breaks.
//! Renamed and retyped in one migration: rename first, then change_type (one shadow column
//! under the new name, `up` over the old name, `down` over the new).

use crate::migration::operation::RenameColumn;
use crate::plan::error::Problem;
use crate::plan::ops::{refuse_created, PlanOperation};
use crate::plan::workspace::Workspace;

impl PlanOperation for RenameColumn {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        refuse_created(ws, &table)?;
        ws.existing_column(&table, &self.column)?;
        // The earlier change's `down` reads the new row by the column's name at that point:
        // renamed afterwards, that name would no longer exist in the new row.
        if ws.column_is_reshaped(&table, &self.column) {
            return Err(Problem::Refused(format!(
                "column {} of {table} changes shape in an earlier operation of this migration: put the rename_column first, then the change (its `up` reads the old name, its `down` the new one)",
                self.column
            )));
        }
        if ws.table(&table)?.column(&self.to).is_some() {
            return Err(Problem::ColumnExists {
                table: table.to_string(),
                column: self.to.clone(),
            });
        }
        // Physical renames happen at contract: a name still held physically (by a column
        // renamed or dropped earlier in this migration) cannot be taken before then.
        let physical_table = ws.physical_table(&table);
        if ws
            .original
            .table(&physical_table)
            .is_some_and(|t| t.column(&self.to).is_some())
        {
            return Err(Problem::Refused(format!(
                "column {} of {table} keeps existing physically until contract, so {} cannot be renamed to it in the same migration: do it in a later one",
                self.to, self.column
            )));
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        ws.rename_column(&table, &self.column, &self.to)
    }
}
