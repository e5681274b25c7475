//! change_type: never ALTER COLUMN TYPE (a rewrite under ACCESS EXCLUSIVE). A shadow column
//! of the new type is added, kept in step by the sync trigger (`up` when the old version
//! writes, `down` when the new one does), backfilled in batches, and renamed into place at
//! contract, where the old column is dropped.

use crate::db::catalog::Column;
use crate::db::quote_ident;
use crate::migration::operation::ChangeType;
use crate::plan::error::Problem;
use crate::plan::names;
use crate::plan::ops::add_column::no_batch_key;
use crate::plan::ops::{
    add_constraint_sql, refuse_created, refuse_reshaped, validate_step, PlanOperation,
};
use crate::plan::step::{Backfill, LockLevel, Phase, Step, StepAction};
use crate::plan::workspace::{SyncRule, Workspace};

impl PlanOperation for ChangeType {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        validate_shadow(ws, &self.table, &self.column)
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        plan_shadow(
            ws,
            &self.table,
            &self.column,
            &Shadow {
                data_type: &self.data_type,
                up: &self.up,
                down: &self.down,
                nullable: None,
            },
        )
    }
}

/// The new shape of a column kept in a shadow column until contract.
pub(crate) struct Shadow<'a> {
    pub data_type: &'a str,
    /// Old row → new value.
    pub up: &'a str,
    /// New row → old value.
    pub down: &'a str,
    /// The new nullability; `None` keeps the old one.
    pub nullable: Option<bool>,
}

/// Checks that a column can be moved to a shadow column.
pub(crate) fn validate_shadow(
    ws: &Workspace,
    table: &str,
    column_name: &str,
) -> Result<(), Problem> {
    {
        let table = ws.existing_table(table)?;
        refuse_created(ws, &table)?;
        let column = ws.existing_column(&table, column_name)?;
        refuse_reshaped(ws, &table, column_name)?;
        if column.identity.is_some() || column.generated {
            return Err(Problem::Refused(format!(
                "column {column_name} of {table} is an identity or generated column; zdm cannot reshape it yet"
            )));
        }
        let found = ws.table(&table)?;
        let dependents = found.dependents_of(column_name);
        if !dependents.is_empty() {
            return Err(Problem::Refused(format!(
                "column {column_name} of {table} is used by {}; zdm does not rebuild those on the reshaped column yet: drop them first, recreate them after",
                dependents.join(", ")
            )));
        }
        let physical_table = ws.physical_table(&table);
        if ws
            .original
            .table(&physical_table)
            .and_then(|t| t.batch_key())
            .is_none()
        {
            return Err(no_batch_key(&physical_table.to_string()));
        }
        Ok(())
    }
}

/// Adds the shadow column, its sync rules, NOT NULL check, backfill and rollback.
pub(crate) fn plan_shadow(
    ws: &mut Workspace,
    table: &str,
    column_name: &str,
    shadow_of: &Shadow,
) -> Result<(), Problem> {
    {
        let table = ws.existing_table(table)?;
        let physical_table = ws.physical_table(&table);
        let label = physical_table.to_string();
        let old = ws.existing_column(&table, column_name)?.clone();
        let old_physical = ws.physical_column(&table, column_name);
        let shadow = names::shadow_column(column_name);
        let nullable = shadow_of.nullable.unwrap_or(old.nullable);
        let data_type = shadow_of.data_type;
        let quoted = quote_ident(&shadow);

        let mut sql = format!(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {quoted} {}",
            physical_table.quoted(),
            data_type
        );
        // The old default, converted, for rows the new version inserts without the column.
        let default = old
            .default
            .as_ref()
            .map(|default| format!("({default})::{}", data_type));
        if let Some(default) = &default {
            sql.push_str(&format!(", ALTER COLUMN {quoted} SET DEFAULT {default}"));
        }
        ws.push_expand(Step::sql(
            Phase::Expand,
            format!(
                "add shadow column {}.{shadow} of type {} (catalog only, no rewrite)",
                physical_table, data_type
            ),
            sql,
            LockLevel::AccessExclusive,
            vec![label.clone()],
        ));
        ws.push_rollback(Step::sql(
            Phase::Rollback,
            format!("drop shadow column {}.{shadow}", physical_table),
            format!(
                "ALTER TABLE {} DROP COLUMN IF EXISTS {quoted}",
                physical_table.quoted()
            ),
            LockLevel::AccessExclusive,
            vec![label.clone()],
        ));

        {
            let state = ws.state(&table)?;
            state.up.push(SyncRule {
                target: shadow.clone(),
                expression: shadow_of.up.to_string(),
                only_when_null: false,
            });
            state.down.push(SyncRule {
                target: old_physical,
                expression: shadow_of.down.to_string(),
                only_when_null: false,
            });
        }
        ws.remove_column(&table, column_name)?;
        let id = ws.add_column(
            &table,
            Column {
                name: column_name.to_string(),
                data_type: data_type.to_string(),
                nullable,
                default,
                identity: None,
                generated: false,
            },
            &shadow,
        )?;

        if !nullable {
            let check = names::not_null_check(&physical_table.name, column_name);
            ws.push_expand(Step::sql(
                Phase::Expand,
                format!(
                    "add CHECK ({shadow} IS NOT NULL) NOT VALID on {} (new rows only, no scan)",
                    physical_table
                ),
                add_constraint_sql(
                    &physical_table,
                    &check,
                    &format!("CHECK ({quoted} IS NOT NULL) NOT VALID"),
                ),
                LockLevel::AccessExclusive,
                vec![label.clone()],
            ));
            ws.push_validate(validate_step(&physical_table, &check, None));
            ws.state(&table)?.not_null.push((id, check));
        }

        let key = ws
            .original
            .table(&physical_table)
            .and_then(|t| t.batch_key())
            .ok_or_else(|| no_batch_key(&label))?;
        ws.push_backfill(Step {
            phase: Phase::Backfill,
            description: format!(
                "fill {}.{shadow} from {} for existing rows, in batches",
                physical_table, column_name
            ),
            action: StepAction::Backfill(Backfill {
                table: physical_table.quoted(),
                key_columns: key,
                assignments: vec![(shadow.clone(), shadow_of.up.to_string())],
                predicate: Some(format!("{quoted} IS NULL")),
            }),
            lock: LockLevel::RowExclusive,
            locked: vec![label],
            rewrites: false,
            scans: true,
            unchecked: false,
            guard: None,
        });
        Ok(())
    }
}
