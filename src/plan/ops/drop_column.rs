//! drop_column: the new version stops seeing the column at once (its view leaves it out);
//! the old version keeps it, filled by `down` when the new version writes; the column is
//! dropped only at contract (catalog only, brief ACCESS EXCLUSIVE). With `from`, `down`
//! reads another table (`plan::cross_table`).

use crate::db::catalog::ConstraintKind;
use crate::migration::operation::DropColumn;
use crate::plan::cross_table::{self, Direction};
use crate::plan::error::Problem;
use crate::plan::ops::{refuse_created, refuse_reshaped, PlanOperation};
use crate::plan::sync_trigger::SyncRule;
use crate::plan::workspace::Workspace;

impl PlanOperation for DropColumn {
    fn tables(&self) -> Vec<&str> {
        let mut tables = vec![self.table.as_str()];
        tables.extend(self.from.as_ref().map(|from| from.table.as_str()));
        tables
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        refuse_created(ws, &table)?;
        let column = ws.existing_column(&table, &self.column)?;
        refuse_reshaped(ws, &table, &self.column)?;
        if ws.physical_column(&table, &self.column) != self.column
            && !ws
                .original
                .table(&ws.physical_table(&table))
                .is_some_and(|t| {
                    t.column(&ws.physical_column(&table, &self.column))
                        .is_some()
                })
        {
            return Err(Problem::Refused(format!(
                "column {} of {table} is added by this migration; drop it from the add_column instead",
                self.column
            )));
        }
        let found = ws.table(&table)?;
        if found
            .primary_key()
            .is_some_and(|pk| pk.columns.contains(&self.column))
        {
            return Err(Problem::Refused(format!(
                "column {} is part of the primary key of {table}",
                self.column
            )));
        }
        let referencing: Vec<String> = ws
            .catalog
            .tables
            .iter()
            .flat_map(|t| t.constraints.iter().map(move |c| (t, c)))
            .filter(|(_, c)| c.kind == ConstraintKind::ForeignKey)
            .filter(|(_, c)| {
                c.references
                    .as_ref()
                    .is_some_and(|r| r.table == table && r.columns.contains(&self.column))
            })
            .map(|(t, c)| format!("{} ({})", c.name, t.name))
            .collect();
        if !referencing.is_empty() {
            return Err(Problem::Refused(format!(
                "column {} of {table} is referenced by foreign key {}: drop that first",
                self.column,
                referencing.join(", ")
            )));
        }
        if !column.nullable
            && column.default.is_none()
            && column.identity.is_none()
            && self.down.is_none()
        {
            return Err(Problem::Refused(format!(
                "column {} is NOT NULL without a default, so the new version's inserts would fail: give `down` (its value for rows the new version writes)",
                self.column
            )));
        }
        if let Some(from) = &self.from {
            let down = self.down.as_deref().ok_or_else(|| {
                Problem::Refused(
                    "`from` names the table `down` reads: give `down` (the value, e.g. `profiles.email`)"
                        .to_string(),
                )
            })?;
            let physical = ws.physical_column(&table, &self.column);
            cross_table::resolve(ws, &table, &physical, down, from)?;
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        ws.lock_referenced_at_contract(&table, Some(&self.column), None)?;
        let physical = ws.physical_column(&table, &self.column);
        let nullable = ws.existing_column(&table, &self.column)?.nullable;
        let mut rule = self.down.clone();
        // A value from another table: a subquery here, and a trigger there.
        if let (Some(from), Some(down)) = (&self.from, &self.down) {
            let cross = cross_table::resolve(ws, &table, &physical, down, from)?;
            rule = Some(cross.rule_expression());
            cross.plan(ws, Direction::Down)?;
            if !nullable {
                cross_table::relax_not_null(ws, &cross.changed, &physical)?;
            }
        }
        if let Some(down) = rule {
            ws.state(&table)?.down.push(SyncRule {
                target: physical,
                expression: down,
                only_when_null: false,
            });
        }
        ws.remove_column(&table, &self.column)?;
        let found = ws.table_mut(&table)?;
        // Whatever involves the column goes with it at contract.
        found
            .constraints
            .retain(|c| !c.columns.contains(&self.column));
        found
            .indexes
            .retain(|i| !i.columns.iter().flatten().any(|c| c == &self.column));
        Ok(())
    }
}
