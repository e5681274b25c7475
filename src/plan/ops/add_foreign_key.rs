//! add_foreign_key: ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID at expand (SHARE ROW
//! EXCLUSIVE on both tables, brief, no scan; new rows are checked from then on), VALIDATE
//! after the backfill (SHARE UPDATE EXCLUSIVE: reads and writes go on). With per-column
//! `up`/`down` (`shadow::Values`) the key is on shadow columns holding the new version's
//! values.

use crate::db::catalog::{Constraint, ConstraintKind, ForeignKeyTarget};
use crate::migration::operation::AddForeignKey;
use crate::plan::error::Problem;
use crate::plan::ops::{
    add_constraint_sql, check_columns, drop_constraint_step, on_delete_clause,
    physical_column_list, validate_step, PlanOperation,
};
use crate::plan::shadow::Values;
use crate::plan::step::{LockLevel, Phase, Step};
use crate::plan::workspace::Workspace;

impl PlanOperation for AddForeignKey {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        check_columns(ws, &table, &self.columns)?;
        ws.check_name_free(&table.schema, &self.name)?;
        let target = ws.existing_table(&self.references.table)?;
        check_columns(ws, &target, &self.references.columns)?;
        on_delete_clause(self.references.on_delete.as_deref())?;
        if self.columns.len() != self.references.columns.len() {
            return Err(Problem::Refused(format!(
                "foreign key {} has {} columns but references {}",
                self.name,
                self.columns.len(),
                self.references.columns.len()
            )));
        }
        let keyed = ws.table(&target)?.constraints.iter().any(|c| {
            matches!(c.kind, ConstraintKind::PrimaryKey | ConstraintKind::Unique)
                && c.columns.len() == self.references.columns.len()
                && self
                    .references
                    .columns
                    .iter()
                    .all(|r| c.columns.contains(r))
        });
        if !keyed {
            return Err(Problem::Refused(format!(
                "{target} ({}) is not a primary key or unique constraint, which a foreign key must reference",
                self.references.columns.join(", ")
            )));
        }
        self.values()
            .validate(ws, &self.table, Some(&self.columns), None)
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        // Per-column `up`/`down`: the key binds the new version's values.
        self.values().plan(ws, &self.table)?;
        let table = ws.existing_table(&self.table)?;
        let physical_table = ws.physical_table(&table);
        let target = ws.existing_table(&self.references.table)?;
        let physical_target = ws.physical_table(&target);
        let definition = format!(
            "FOREIGN KEY ({}) REFERENCES {} ({}){} NOT VALID",
            physical_column_list(ws, &table, &self.columns),
            physical_target.quoted(),
            physical_column_list(ws, &target, &self.references.columns),
            on_delete_clause(self.references.on_delete.as_deref())?
        );
        let locked = vec![physical_table.to_string(), physical_target.to_string()];
        ws.push_expand_constraint(
            Step::sql(
                Phase::Expand,
                format!(
                    "add foreign key {} NOT VALID from {} to {} (new rows only, no scan)",
                    self.name, physical_table, physical_target
                ),
                add_constraint_sql(&physical_table, &self.name, &definition),
                LockLevel::ShareRowExclusive,
                locked.clone(),
            ),
            &physical_table,
            &self.name,
            true,
        );
        ws.push_validate(validate_step(
            &physical_table,
            &self.name,
            Some(&physical_target),
        ));
        ws.push_rollback(drop_constraint_step(&physical_table, &self.name, locked));
        ws.table_mut(&table)?.constraints.push(Constraint {
            name: self.name.clone(),
            kind: ConstraintKind::ForeignKey,
            columns: self.columns.clone(),
            definition,
            validated: true,
            index: None,
            references: Some(ForeignKeyTarget {
                table: target,
                columns: self.references.columns.clone(),
            }),
        });
        Ok(())
    }
}

impl AddForeignKey {
    fn values(&self) -> Values<'_> {
        Values {
            up: &self.up,
            down: &self.down,
        }
    }
}
