//! add_check: ADD CONSTRAINT ... CHECK NOT VALID at expand (a brief lock, no scan; new rows
//! are checked from then on, by both versions), VALIDATE after the backfill (scans without
//! blocking reads or writes). The expression is SQL over the table's physical columns.

use crate::db::catalog::{Constraint, ConstraintKind};
use crate::migration::operation::AddCheck;
use crate::plan::error::Problem;
use crate::plan::ops::{add_constraint_sql, drop_constraint_step, validate_step, PlanOperation};
use crate::plan::step::{LockLevel, Phase, Step};
use crate::plan::workspace::Workspace;

impl PlanOperation for AddCheck {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        ws.check_name_free(&table.schema, &self.name)?;
        if self.check.trim().is_empty() {
            return Err(Problem::Refused(
                "the check expression is empty".to_string(),
            ));
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        let physical_table = ws.physical_table(&table);
        let label = physical_table.to_string();
        ws.push_expand_constraint(
            Step::sql(
                Phase::Expand,
                format!(
                    "add CHECK {} NOT VALID on {} (new rows only, no scan)",
                    self.name, physical_table
                ),
                add_constraint_sql(
                    &physical_table,
                    &self.name,
                    &format!("CHECK ({}) NOT VALID", self.check),
                ),
                LockLevel::AccessExclusive,
                vec![label.clone()],
            ),
            &physical_table,
            &self.name,
            true,
        );
        ws.push_validate(validate_step(&physical_table, &self.name, None));
        ws.push_rollback(drop_constraint_step(
            &physical_table,
            &self.name,
            vec![label],
        ));
        ws.table_mut(&table)?.constraints.push(Constraint {
            name: self.name.clone(),
            kind: ConstraintKind::Check,
            columns: Vec::new(),
            definition: format!("CHECK ({})", self.check),
            validated: true,
            index: None,
            references: None,
        });
        Ok(())
    }
}
