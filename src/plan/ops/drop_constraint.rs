//! drop_constraint: both versions obey the constraint until contract, which drops it
//! (catalog only, brief) in the table's final-shape step, so expand stays reversible without
//! re-validating anything. With per-column `up`/`down` (pgroll's
//! drop_multicolumn_constraint, `shadow::Values`) the new version's columns are shadow
//! columns free of it from expand on, while the old version's keep it.

use crate::db::catalog::ConstraintKind;
use crate::db::quote_ident;
use crate::migration::operation::DropConstraint;
use crate::plan::error::Problem;
use crate::plan::ops::PlanOperation;
use crate::plan::shadow::Values;
use crate::plan::workspace::{TableState, Workspace};
use crate::suggest::did_you_mean;

impl PlanOperation for DropConstraint {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        let found = ws.table(&table)?;
        let Some(constraint) = found.constraint(&self.name) else {
            return Err(Problem::NoConstraint {
                table: table.to_string(),
                name: self.name.clone(),
                hint: did_you_mean(
                    &self.name,
                    found.constraints.iter().map(|c| c.name.as_str()),
                ),
            });
        };
        if constraint.kind == ConstraintKind::PrimaryKey {
            return Err(Problem::Refused(format!(
                "{} is the primary key of {table}; zdm does not drop primary keys",
                self.name
            )));
        }
        let allowed = (!constraint.columns.is_empty()).then_some(constraint.columns.as_slice());
        self.values()
            .validate(ws, &self.table, allowed, Some(&self.name))
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        ws.lock_referenced_at_contract(&table, None, Some(&self.name))?;
        ws.state(&table)?.drop_constraints.push(self.name.clone());
        let found = ws.table_mut(&table)?;
        let index = found.constraint(&self.name).and_then(|c| c.index.clone());
        found.constraints.retain(|c| c.name != self.name);
        if let Some(index) = index {
            found.indexes.retain(|i| i.name != index);
        }
        // Per-column `up`/`down`: the new version's columns are shadow columns free of the
        // constraint, which stays on the old columns (and goes with them at contract).
        self.values().plan(ws, &self.table)
    }
}

impl DropConstraint {
    fn values(&self) -> Values<'_> {
        Values {
            up: &self.up,
            down: &self.down,
        }
    }
}

/// Contract: the statements of the table's final-shape step (`table` quoted) that drop the
/// constraints this migration drops.
pub(crate) fn contract_sql(state: &TableState, table: &str) -> String {
    state
        .drop_constraints
        .iter()
        .map(|constraint| {
            format!(
                "  ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {};\n",
                quote_ident(constraint)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_drops_each_constraint_if_it_exists() {
        let mut state = TableState::for_test(&[("id", "id")]);
        state.drop_constraints.push("t_fkey".to_string());
        assert_eq!(
            contract_sql(&state, "\"public\".\"t\""),
            "  ALTER TABLE \"public\".\"t\" DROP CONSTRAINT IF EXISTS \"t_fkey\";\n"
        );
    }
}
