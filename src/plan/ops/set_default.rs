//! set_default: the new version gets the new default at once, on its view
//! (ALTER VIEW ... SET DEFAULT); the old version keeps the old one; the table's default
//! changes at contract (catalog only, brief).

use crate::migration::operation::SetDefault;
use crate::plan::error::Problem;
use crate::plan::ops::PlanOperation;
use crate::plan::workspace::Workspace;

impl PlanOperation for SetDefault {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        let column = ws.existing_column(&table, &self.column)?;
        if column.identity.is_some() || column.generated {
            return Err(Problem::Refused(format!(
                "column {} of {table} is an identity or generated column and has no default to set",
                self.column
            )));
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        let id = ws.column_id(&table, &self.column)?;
        let state = ws.state(&table)?;
        // An explicit NULL default on the view hides the table's default from the new version.
        state.view_defaults.push((
            id,
            self.default.clone().unwrap_or_else(|| "NULL".to_string()),
        ));
        state.defaults.push((id, self.default.clone()));
        if let Some(column) = ws.table_mut(&table)?.column_mut(&self.column) {
            column.default = self.default.clone();
        }
        Ok(())
    }
}
