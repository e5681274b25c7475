//! rename_constraint: the old version may name the constraint (`ON CONFLICT ON CONSTRAINT`,
//! error handling), so both versions keep the old name until contract, which renames it
//! (catalog only, brief) in the table's final-shape step. PostgreSQL renames the index
//! behind a unique or primary-key constraint with it.

use crate::migration::operation::RenameConstraint;
use crate::plan::error::Problem;
use crate::plan::ops::PlanOperation;
use crate::plan::workspace::Workspace;
use crate::suggest::did_you_mean;

impl PlanOperation for RenameConstraint {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        let found = ws.table(&table)?;
        if found.constraint(&self.from).is_none() {
            return Err(Problem::NoConstraint {
                table: table.to_string(),
                name: self.from.clone(),
                hint: did_you_mean(
                    &self.from,
                    found.constraints.iter().map(|c| c.name.as_str()),
                ),
            });
        }
        // The name must be free now and stay free: nothing else may take it before contract.
        ws.check_name_free(&table.schema, &self.to)?;
        if ws.state_of(&table).is_some_and(|state| {
            state
                .rename_constraints
                .iter()
                .any(|(_, to)| *to == self.from)
        }) {
            return Err(Problem::Refused(format!(
                "constraint {} of {table} is itself renamed by an earlier operation of this migration: rename it once",
                self.from
            )));
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        ws.state(&table)?
            .rename_constraints
            .push((self.from.clone(), self.to.clone()));
        let found = ws.table_mut(&table)?;
        let mut index = None;
        if let Some(constraint) = found.constraints.iter_mut().find(|c| c.name == self.from) {
            constraint.name.clone_from(&self.to);
            index = constraint.index.clone();
            if index.is_some() {
                constraint.index = Some(self.to.clone());
            }
        }
        if let Some(index) =
            index.and_then(|name| found.indexes.iter_mut().find(|i| i.name == name))
        {
            index.name.clone_from(&self.to);
        }
        Ok(())
    }
}
