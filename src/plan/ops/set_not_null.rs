//! set_not_null, in place and without a blocking scan: CHECK (col IS NOT NULL) NOT VALID at
//! expand (new rows only), `up` fills existing NULLs (backfill) and NULLs the old version
//! writes (sync trigger), VALIDATE after the backfill (no blocking), then at contract
//! SET NOT NULL (skips its scan thanks to the valid check) and the check is dropped.
//! Only rows that were NULL are written: no shadow copy of the column is needed.

use crate::db::quote_ident;
use crate::migration::operation::SetNotNull;
use crate::plan::error::Problem;
use crate::plan::names;
use crate::plan::ops::add_column::no_batch_key;
use crate::plan::ops::{
    add_constraint_sql, drop_constraint_step, refuse_created, refuse_reshaped, validate_step,
    PlanOperation,
};
use crate::plan::step::{Backfill, LockLevel, Phase, Step, StepAction};
use crate::plan::workspace::{SyncRule, Workspace};

impl PlanOperation for SetNotNull {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        refuse_created(ws, &table)?;
        let column = ws.existing_column(&table, &self.column)?;
        refuse_reshaped(ws, &table, &self.column)?;
        if !column.nullable {
            return Err(Problem::Refused(format!(
                "column {} of {table} is already NOT NULL",
                self.column
            )));
        }
        if self.up.is_some()
            && ws
                .original
                .table(&ws.physical_table(&table))
                .and_then(|t| t.batch_key())
                .is_none()
        {
            return Err(no_batch_key(&table.to_string()));
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        let physical_table = ws.physical_table(&table);
        let label = physical_table.to_string();
        let physical = ws.physical_column(&table, &self.column);
        let quoted = quote_ident(&physical);
        let check = names::not_null_check(&physical_table.name, &self.column);

        ws.push_expand_constraint(
            Step::sql(
                Phase::Expand,
                format!(
                    "add CHECK ({} IS NOT NULL) NOT VALID on {} (new rows only, no scan)",
                    self.column, physical_table
                ),
                add_constraint_sql(
                    &physical_table,
                    &check,
                    &format!("CHECK ({quoted} IS NOT NULL) NOT VALID"),
                ),
                LockLevel::AccessExclusive,
                vec![label.clone()],
            ),
            &physical_table,
            &check,
            false,
        );
        ws.push_rollback(drop_constraint_step(
            &physical_table,
            &check,
            vec![label.clone()],
        ));
        if let Some(up) = &self.up {
            ws.state(&table)?.up.push(SyncRule {
                target: physical.clone(),
                expression: up.clone(),
                only_when_null: true,
            });
            let key = ws
                .original
                .table(&physical_table)
                .and_then(|t| t.batch_key())
                .ok_or_else(|| no_batch_key(&label))?;
            ws.push_backfill(Step {
                phase: Phase::Backfill,
                description: format!(
                    "fill the NULLs of {}.{} with `up`, in batches (these values stay after a rollback)",
                    physical_table, self.column
                ),
                action: StepAction::Backfill(Backfill {
                    table: physical_table.quoted(),
                    key_columns: key,
                    assignments: vec![(physical.clone(), up.clone())],
                    predicate: Some(format!("{quoted} IS NULL")),
                }),
                lock: LockLevel::RowExclusive,
                locked: vec![label.clone()],
                rewrites: false,
                scans: true,
                unchecked: false,
                creates: Vec::new(),
            });
        }
        ws.push_validate(validate_step(&physical_table, &check, None));
        let id = ws.column_id(&table, &self.column)?;
        ws.state(&table)?.not_null.push((id, check));
        if let Some(column) = ws.table_mut(&table)?.column_mut(&self.column) {
            column.nullable = false;
        }
        Ok(())
    }
}
