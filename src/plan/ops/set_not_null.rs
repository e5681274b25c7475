//! set_not_null, in place and without a blocking scan: CHECK (col IS NOT NULL) NOT VALID at
//! expand (new rows only), `up` fills existing NULLs (backfill) and NULLs the old version
//! writes (sync trigger), VALIDATE after the backfill (no blocking), then at contract
//! SET NOT NULL (skips its scan thanks to the valid check) and the check is dropped.
//! Only rows that were NULL are written: no shadow copy of the column is needed.
//!
//! The same proof makes a NOT NULL column of add_column and of a shadow column
//! ([`prove_not_null`]).

use crate::db::catalog::QualifiedName;
use crate::db::quote_ident;
use crate::migration::operation::SetNotNull;
use crate::plan::error::Problem;
use crate::plan::names;
use crate::plan::ops::{
    add_constraint_sql, drop_constraint_step, refuse_created, refuse_reshaped, validate_step,
    PlanOperation,
};
use crate::plan::step::{Backfill, LockLevel, Phase, Step, StepAction};
use crate::plan::sync_trigger::SyncRule;
use crate::plan::workspace::{TableState, Workspace};

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
        if self.up.is_some() {
            ws.batch_key(&ws.physical_table(&table), &table.to_string())?;
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        let physical_table = ws.physical_table(&table);
        let label = physical_table.to_string();
        let physical = ws.physical_column(&table, &self.column);
        let quoted = quote_ident(&physical);

        let check = prove_not_null(ws, &table, &self.column, &self.column)?;
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
            let key = ws.batch_key(&physical_table, &label)?;
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
        if let Some(column) = ws.table_mut(&table)?.column_mut(&self.column) {
            column.nullable = false;
        }
        Ok(())
    }
}

/// Makes `column` of `table` (its name in the new shape, already in the workspace) NOT NULL
/// without a blocking scan: CHECK (col IS NOT NULL) NOT VALID at expand (among the expand
/// constraints, after the sync triggers that fill the column for the old version's writes),
/// VALIDATE after the backfill, and at contract SET NOT NULL and the check dropped
/// ([`contract_sql`]). `shown` names the column in the step's description. Returns the
/// check's name.
pub(crate) fn prove_not_null(
    ws: &mut Workspace,
    table: &QualifiedName,
    column: &str,
    shown: &str,
) -> Result<String, Problem> {
    let physical_table = ws.physical_table(table);
    let quoted = quote_ident(&ws.physical_column(table, column));
    let check = names::not_null_check(&physical_table.name, column);
    ws.push_expand_constraint(
        Step::sql(
            Phase::Expand,
            format!(
                "add CHECK ({shown} IS NOT NULL) NOT VALID on {} (new rows only, no scan)",
                physical_table
            ),
            add_constraint_sql(
                &physical_table,
                &check,
                &format!("CHECK ({quoted} IS NOT NULL) NOT VALID"),
            ),
            LockLevel::AccessExclusive,
            vec![physical_table.to_string()],
        ),
        &physical_table,
        &check,
        false,
    );
    ws.push_validate(validate_step(&physical_table, &check, None));
    let id = ws.column_id(table, column)?;
    ws.state(table)?.not_null.push((id, check.clone()));
    Ok(check)
}

/// Contract: the statements of the table's final-shape step (`table` quoted) that make each
/// proven column NOT NULL (its scan skipped: the validated check proves it) and drop the
/// check, under the column's final name.
pub(crate) fn contract_sql(state: &TableState, table: &str) -> String {
    state
        .not_null
        .iter()
        .filter_map(|(id, check)| {
            let column = state.column_name(*id)?;
            Some(format!(
                "  ALTER TABLE {table} ALTER COLUMN {} SET NOT NULL;\n  ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {};\n",
                quote_ident(column),
                quote_ident(check)
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_uses_the_final_column_name_and_drops_the_proof() {
        let mut state = TableState::for_test(&[("phone", "_zdm_new_phone")]);
        state.not_null.push((0, "_zdm_nn_t_phone".to_string()));
        assert_eq!(
            contract_sql(&state, "\"public\".\"t\""),
            "  ALTER TABLE \"public\".\"t\" ALTER COLUMN \"phone\" SET NOT NULL;\n  ALTER TABLE \"public\".\"t\" DROP CONSTRAINT IF EXISTS \"_zdm_nn_t_phone\";\n"
        );
    }
}
