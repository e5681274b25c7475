//! drop_not_null: the new version may write NULL, the old one must never read one. The
//! column moves to a nullable shadow column (same type) kept in step by the sync trigger:
//! the old version's writes are copied as they are, the new version's NULLs reach the old
//! column as `down`. At contract the shadow column replaces the old one.

use crate::db::quote_ident;
use crate::migration::operation::DropNotNull;
use crate::plan::error::Problem;
use crate::plan::ops::PlanOperation;
use crate::plan::shadow::{self, Shadow};
use crate::plan::workspace::Workspace;

impl PlanOperation for DropNotNull {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        let column = ws.existing_column(&table, &self.column)?;
        if column.nullable {
            return Err(Problem::Refused(format!(
                "column {} of {table} is already nullable",
                self.column
            )));
        }
        if self.down.is_none() {
            return Err(Problem::Refused(format!(
                "give `down`: the value the old version sees (its column stays NOT NULL) when the new version writes NULL into {}",
                self.column
            )));
        }
        shadow::validate(ws, &self.table, &self.column, Some(true))
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        let data_type = ws.existing_column(&table, &self.column)?.data_type.clone();
        // `up` reads the old row: the column by its name before the migration (a rename
        // earlier in it happens physically only at contract).
        let up = quote_ident(&ws.physical_column(&table, &self.column));
        let column = quote_ident(&self.column);
        let down = match &self.down {
            Some(down) => format!("coalesce({column}, {down})"),
            None => column.clone(),
        };
        shadow::plan(
            ws,
            &self.table,
            &self.column,
            &Shadow {
                data_type: &data_type,
                up: &up,
                down: &down,
                nullable: Some(true),
            },
        )
    }
}
