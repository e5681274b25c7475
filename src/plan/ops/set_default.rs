//! set_default: the new version gets the new default at once, on its view
//! (ALTER VIEW ... SET DEFAULT); the old version keeps the old one; the table's default
//! changes at contract (catalog only, brief), in the table's final-shape step, and the view
//! drops its own default then (`version_view::repoint_steps`).

use crate::db::quote_ident;
use crate::migration::operation::SetDefault;
use crate::plan::error::Problem;
use crate::plan::ops::PlanOperation;
use crate::plan::workspace::{TableState, Workspace};

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

/// Contract: the statements of the table's final-shape step (`table` quoted) that set (or
/// drop) each changed default, under the column's final name.
pub(crate) fn contract_sql(state: &TableState, table: &str) -> String {
    state
        .defaults
        .iter()
        .filter_map(|(id, default)| {
            let column = quote_ident(state.column_name(*id)?);
            Some(match default {
                Some(expression) => {
                    format!(
                        "  ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT {expression};\n"
                    )
                }
                None => format!("  ALTER TABLE {table} ALTER COLUMN {column} DROP DEFAULT;\n"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_sets_or_drops_each_default() {
        let mut state = TableState::for_test(&[("status", "status"), ("note", "note")]);
        state.defaults.push((0, Some("'new'".to_string())));
        state.defaults.push((1, None));
        assert_eq!(
            contract_sql(&state, "\"public\".\"t\""),
            "  ALTER TABLE \"public\".\"t\" ALTER COLUMN \"status\" SET DEFAULT 'new';\n  ALTER TABLE \"public\".\"t\" ALTER COLUMN \"note\" DROP DEFAULT;\n"
        );
    }
}
