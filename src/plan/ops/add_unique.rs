//! add_unique: never ADD CONSTRAINT UNIQUE (it builds its index under a lock that blocks
//! writes). A unique index is built concurrently, then attached as the constraint with
//! ADD CONSTRAINT ... UNIQUE USING INDEX (brief, no scan). With per-column `up`/`down`
//! (`shadow::Values`) the columns are shadow columns first, and the index is built on them.

use crate::db::catalog::{Constraint, ConstraintKind, Index};
use crate::db::quote_ident;
use crate::migration::operation::AddUnique;
use crate::plan::error::Problem;
use crate::plan::ops::{
    add_constraint_sql, check_columns, concurrent_index_step, drop_constraint_step,
    drop_index_concurrently_step, physical_column_list, PlanOperation,
};
use crate::plan::shadow::Values;
use crate::plan::step::{LockLevel, Phase, Step};
use crate::plan::workspace::Workspace;

impl PlanOperation for AddUnique {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        check_columns(ws, &table, &self.columns)?;
        ws.check_name_free(&table.schema, &self.name)?;
        self.values()
            .validate(ws, &self.table, Some(&self.columns), None)
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        // Per-column `up`/`down`: the index is built on the new version's values.
        self.values().plan(ws, &self.table)?;
        let table = ws.existing_table(&self.table)?;
        let physical_table = ws.physical_table(&table);
        let label = physical_table.to_string();
        let columns = physical_column_list(ws, &table, &self.columns);
        ws.push_expand(concurrent_index_step(
            format!(
                "build unique index {} on {} concurrently (reads and writes go on)",
                self.name, physical_table
            ),
            &physical_table,
            &self.name,
            true,
            &format!("({columns})"),
            true,
        ));
        ws.push_expand_constraint(
            Step::sql(
                Phase::Expand,
                format!(
                    "turn index {} into a unique constraint (brief, no scan)",
                    self.name
                ),
                add_constraint_sql(
                    &physical_table,
                    &self.name,
                    &format!("UNIQUE USING INDEX {}", quote_ident(&self.name)),
                ),
                LockLevel::AccessExclusive,
                vec![label.clone()],
            ),
            &physical_table,
            &self.name,
            true,
        );
        // Undo, in order: the constraint (it owns the index once attached), then an index
        // left unattached.
        ws.push_rollback(drop_constraint_step(
            &physical_table,
            &self.name,
            vec![label],
        ));
        ws.push_rollback(drop_index_concurrently_step(
            Phase::Rollback,
            &physical_table,
            &self.name,
        ));
        let found = ws.table_mut(&table)?;
        found.indexes.push(Index {
            name: self.name.clone(),
            columns: self.columns.iter().cloned().map(Some).collect(),
            unique: true,
            primary: false,
            valid: true,
            definition: String::new(),
        });
        found.constraints.push(Constraint {
            name: self.name.clone(),
            kind: ConstraintKind::Unique,
            columns: self.columns.clone(),
            definition: format!("UNIQUE ({})", self.columns.join(", ")),
            validated: true,
            index: Some(self.name.clone()),
            references: None,
        });
        Ok(())
    }
}

impl AddUnique {
    fn values(&self) -> Values<'_> {
        Values {
            up: &self.up,
            down: &self.down,
        }
    }
}
