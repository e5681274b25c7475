//! add_column: a new column, added so the old version keeps working. It is added nullable
//! (a NOT NULL column gets CHECK ... NOT VALID, validated after the backfill and turned into
//! NOT NULL at contract); a constant default is stored once (no rewrite), any other default
//! is set for new rows only and filled in by the backfill; `up` fills existing rows and rows
//! the old version writes (sync trigger); unique, check and references are built the safe
//! way (concurrent index, NOT VALID then VALIDATE). With `from`, `up` reads another table
//! (`plan::cross_table`: a subquery here, a trigger there). An identity is filled from a
//! sequence of zdm's until contract attaches it (`plan::identity`); a stored generated column
//! is refused (PostgreSQL cannot add one to a table with rows without a rewrite).

use crate::db::catalog::{Column, Constraint, ConstraintKind, ForeignKeyTarget, Index};
use crate::db::quote_ident;
use crate::migration::operation::{AddColumn, IdentityKind};
use crate::plan::cross_table::{self, Direction};
use crate::plan::error::Problem;
use crate::plan::identity;
use crate::plan::names::{self, is_constant_default};
use crate::plan::ops::set_comment;
use crate::plan::ops::set_not_null::prove_not_null;
use crate::plan::ops::{
    add_constraint_sql, check_columns, concurrent_index_step, on_delete_clause,
    physical_column_list, refuse_created, validate_step, PlanOperation,
};
use crate::plan::step::{Backfill, LockLevel, Phase, Step, StepAction};
use crate::plan::sync_trigger::SyncRule;
use crate::plan::workspace::Workspace;

impl PlanOperation for AddColumn {
    fn tables(&self) -> Vec<&str> {
        let mut tables = vec![self.table.as_str()];
        tables.extend(self.from.as_ref().map(|from| from.table.as_str()));
        tables
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        refuse_created(ws, &table)?;
        let column = &self.column;
        if ws.table(&table)?.column(&column.name).is_some() {
            return Err(Problem::ColumnExists {
                table: table.to_string(),
                column: column.name.clone(),
            });
        }
        let lower_type = column.data_type.trim().to_ascii_lowercase();
        if lower_type.contains("serial") {
            return Err(Problem::Refused(format!(
                "type {} rewrites the whole table under an exclusive lock; add a bigint column with `identity = \"by_default\"` instead (planned without a rewrite)",
                column.data_type
            )));
        }
        if column.generated.is_some() {
            return Err(Problem::Refused(format!(
                "column {}: a stored generated column cannot be added to a table with rows without rewriting the whole table under ACCESS EXCLUSIVE (PostgreSQL 15 cannot turn a filled column into a generated one either); add a plain column with `up` set to the expression instead (kept in step for the old version until contract, backfilled in batches), and keep it computed after contract with a trigger of your own (raw_sql), or declare it in create_table for a new table",
                column.name
            )));
        }
        if column.identity.is_some() {
            validate_identity(ws, self)?;
        }
        if column.primary_key {
            return Err(Problem::Refused(
                "add_column cannot add a primary key column: add the column, then a unique key, in separate operations".to_string(),
            ));
        }
        if !column.nullable && column.default.is_none() && self.up.is_none() {
            return Err(Problem::Refused(format!(
                "column {} is NOT NULL without a default: give `up` (its value for existing rows and for rows the old version writes) or a default",
                column.name
            )));
        }
        if column.check.is_some() && physical_name(ws, self)? != column.name {
            return Err(Problem::Refused(format!(
                "column {} still exists physically (dropped by this migration only at contract): add its check in a later migration",
                column.name
            )));
        }
        if let Some(reference) = &column.references {
            let target = ws.existing_table(&reference.table)?;
            check_columns(ws, &target, &reference.columns)?;
            on_delete_clause(reference.on_delete.as_deref())?;
            if reference.columns.len() != 1 {
                return Err(Problem::Refused(
                    "a column's references must name exactly one column".to_string(),
                ));
            }
        }
        if let Some(from) = &self.from {
            let up = self.up.as_deref().ok_or_else(|| {
                Problem::Refused(
                    "`from` names the table `up` reads: give `up` (the value, e.g. `users.email`)"
                        .to_string(),
                )
            })?;
            cross_table::resolve(ws, &table, &physical_name(ws, self)?, up, from)?;
        }
        let table_name = &table.name;
        if column.unique {
            ws.check_name_free(
                &table.schema,
                &names::derived(&[table_name, &column.name, "key"]),
            )?;
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        let physical_table = ws.physical_table(&table);
        let label = physical_table.to_string();
        let column = &self.column;
        let physical = physical_name(ws, self)?;
        let quoted = quote_ident(&physical);

        // Constant default without `up`: stored once for all rows, no backfill needed.
        // Otherwise the column starts empty and the backfill fills it.
        let fast_default =
            self.up.is_none() && column.default.as_deref().is_some_and(is_constant_default);
        // An identity: a plain column filled from zdm's sequence until contract (`identity`).
        let sequence = column
            .identity
            .map(|_| identity::sequence_name(&physical_table, &physical));
        if let Some(sequence) = &sequence {
            let options = column.sequence.as_deref().cloned().unwrap_or_default();
            ws.push_expand(identity::create_sequence_step(
                sequence,
                &column.data_type,
                &options,
            ));
        }
        let mut sql = format!(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {quoted} {}",
            physical_table.quoted(),
            column.data_type
        );
        // With `up`, the sync trigger fills the column for the old version's rows: its
        // default waits for the trigger (Workspace::push_expand_default).
        let mut later_default = None;
        match (&column.default, fast_default) {
            (Some(default), true) => sql.push_str(&format!(" DEFAULT {default}")),
            (Some(default), false) if self.up.is_some() => later_default = Some(default),
            (Some(default), false) => {
                sql.push_str(&format!(", ALTER COLUMN {quoted} SET DEFAULT {default}"))
            }
            (None, _) => {}
        }
        let shown = if physical == column.name {
            String::new()
        } else {
            format!(" as {physical}")
        };
        ws.push_expand(Step::sql(
            Phase::Expand,
            format!(
                "add column {}.{}{shown} (nullable for now; catalog only, no rewrite)",
                physical_table, column.name
            ),
            sql,
            LockLevel::AccessExclusive,
            vec![label.clone()],
        ));
        if let (Some(kind), Some(sequence)) = (column.identity, &sequence) {
            let descending = column
                .sequence
                .as_ref()
                .and_then(|options| options.increment)
                .is_some_and(|increment| increment < 0);
            identity::install(
                ws,
                &table,
                &physical_table,
                &physical,
                kind,
                sequence,
                descending,
            )?;
        }
        if let Some(default) = later_default {
            ws.push_expand_default(Step::sql(
                Phase::Expand,
                format!(
                    "set the default of {}.{}{shown} (catalog only), now that the sync trigger fills it for the old version",
                    physical_table, column.name
                ),
                format!(
                    "ALTER TABLE {} ALTER COLUMN {quoted} SET DEFAULT {default}",
                    physical_table.quoted()
                ),
                LockLevel::AccessExclusive,
                vec![label.clone()],
            ));
        }
        if let Some(comment) = &column.comment {
            ws.push_expand(set_comment::new_column_step(
                &physical_table,
                &physical,
                comment,
            ));
        }
        ws.push_rollback(Step::sql(
            Phase::Rollback,
            format!("drop column {}.{physical}", physical_table),
            format!(
                "ALTER TABLE {} DROP COLUMN IF EXISTS {quoted}",
                physical_table.quoted()
            ),
            LockLevel::AccessExclusive,
            vec![label.clone()],
        ));
        if let Some(sequence) = &sequence {
            ws.push_rollback(identity::drop_sequence_step(sequence));
        }

        // An identity column is NOT NULL, as PostgreSQL makes it.
        let nullable = column.nullable && column.identity.is_none();
        ws.add_column(
            &table,
            Column {
                name: column.name.clone(),
                data_type: column.data_type.clone(),
                nullable,
                default: column.default.clone(),
                identity: column.identity.map(|kind| {
                    match kind {
                        IdentityKind::Always => "always",
                        IdentityKind::ByDefault => "by default",
                    }
                    .to_string()
                }),
                generated: false,
            },
            &physical,
        )?;

        if !nullable {
            prove_not_null(ws, &table, &column.name, &column.name)?;
        }
        if let (Some(kind), Some(sequence)) = (column.identity, &sequence) {
            let id = ws.column_id(&table, &column.name)?;
            ws.state(&table)?.identities.push(identity::Identity {
                column: id,
                kind,
                options: column
                    .sequence
                    .as_ref()
                    .map(|options| options.sql())
                    .unwrap_or_default(),
                sequence: sequence.clone(),
            });
        }

        let mut fill = self
            .up
            .clone()
            .or_else(|| column.default.clone().filter(|_| !fast_default))
            .or_else(|| {
                sequence
                    .as_ref()
                    .map(|s| format!("nextval({}::regclass)", names::literal(&s.quoted())))
            });
        let mut rule = self.up.clone();
        // A value from another table: a correlated subquery here, and a trigger there.
        if let (Some(from), Some(up)) = (&self.from, &self.up) {
            let cross = cross_table::resolve(ws, &table, &physical, up, from)?;
            rule = Some(cross.rule_expression());
            fill = Some(cross.backfill_expression());
            cross.plan(ws, Direction::Up)?;
        }
        if let Some(up) = rule {
            ws.state(&table)?.up.push(SyncRule {
                target: physical.clone(),
                expression: up,
                only_when_null: false,
            });
        }
        if let Some(expression) = fill {
            let key = ws.batch_key(&physical_table, &physical_table.to_string())?;
            ws.push_backfill(Step {
                phase: Phase::Backfill,
                description: format!(
                    "fill {}.{} for existing rows, in batches",
                    physical_table, column.name
                ),
                action: StepAction::Backfill(Backfill {
                    table: physical_table.quoted(),
                    key_columns: key,
                    assignments: vec![(physical.clone(), expression)],
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

        let table_name = physical_table.name.clone();
        if column.unique {
            let name = names::derived(&[&table_name, &column.name, "key"]);
            ws.push_expand(concurrent_index_step(
                format!("build unique index {name} concurrently (writes go on)"),
                &physical_table,
                &name,
                true,
                &format!("({quoted})"),
                true,
            ));
            ws.push_expand_constraint(
                Step::sql(
                    Phase::Expand,
                    format!("turn index {name} into a unique constraint (brief, no scan)"),
                    add_constraint_sql(
                        &physical_table,
                        &name,
                        &format!("UNIQUE USING INDEX {}", quote_ident(&name)),
                    ),
                    LockLevel::AccessExclusive,
                    vec![label.clone()],
                ),
                &physical_table,
                &name,
                true,
            );
            let found = ws.table_mut(&table)?;
            found.indexes.push(Index {
                name: name.clone(),
                columns: vec![Some(column.name.clone())],
                unique: true,
                primary: false,
                valid: true,
                definition: String::new(),
            });
            found.constraints.push(Constraint {
                name: name.clone(),
                kind: ConstraintKind::Unique,
                columns: vec![column.name.clone()],
                definition: format!("UNIQUE ({})", column.name),
                validated: true,
                index: Some(name),
                references: None,
            });
        }
        if let Some(check) = &column.check {
            let name = names::derived(&[&table_name, &column.name, "check"]);
            ws.push_expand_constraint(
                Step::sql(
                    Phase::Expand,
                    format!("add CHECK {name} NOT VALID (new rows only, no scan)"),
                    add_constraint_sql(
                        &physical_table,
                        &name,
                        &format!("CHECK ({check}) NOT VALID"),
                    ),
                    LockLevel::AccessExclusive,
                    vec![label.clone()],
                ),
                &physical_table,
                &name,
                true,
            );
            ws.push_validate(validate_step(&physical_table, &name, None));
            ws.table_mut(&table)?.constraints.push(Constraint {
                name,
                kind: ConstraintKind::Check,
                columns: vec![column.name.clone()],
                definition: format!("CHECK ({check})"),
                validated: true,
                index: None,
                references: None,
            });
        }
        if let Some(reference) = &column.references {
            let name = names::derived(&[&table_name, &column.name, "fkey"]);
            let target = ws.existing_table(&reference.table)?;
            let physical_target = ws.physical_table(&target);
            let definition = format!(
                "FOREIGN KEY ({quoted}) REFERENCES {} ({}){} NOT VALID",
                physical_target.quoted(),
                physical_column_list(ws, &target, &reference.columns),
                on_delete_clause(reference.on_delete.as_deref())?
            );
            ws.push_expand_constraint(
                Step::sql(
                    Phase::Expand,
                    format!("add foreign key {name} NOT VALID (new rows only, no scan)"),
                    add_constraint_sql(&physical_table, &name, &definition),
                    LockLevel::ShareRowExclusive,
                    vec![label.clone(), physical_target.to_string()],
                ),
                &physical_table,
                &name,
                true,
            );
            ws.push_validate(validate_step(
                &physical_table,
                &name,
                Some(&physical_target),
            ));
            ws.table_mut(&table)?.constraints.push(Constraint {
                name,
                kind: ConstraintKind::ForeignKey,
                columns: vec![column.name.clone()],
                definition,
                validated: true,
                index: None,
                references: Some(ForeignKeyTarget {
                    table: target,
                    columns: reference.columns.clone(),
                }),
            });
        }
        Ok(())
    }
}

/// An identity column added to a table with rows (`plan::identity`): an integer type, filled
/// by its sequence (no `up`), under its own name (not one this migration drops at contract).
fn validate_identity(ws: &Workspace, op: &AddColumn) -> Result<(), Problem> {
    let column = &op.column;
    if !identity::is_identity_type(&column.data_type) {
        return Err(Problem::Refused(format!(
            "identity column {} must be smallint, integer or bigint, not {}",
            column.name, column.data_type
        )));
    }
    if op.up.is_some() || op.from.is_some() {
        return Err(Problem::Refused(format!(
            "identity column {}: its sequence fills existing rows and the old version's; leave `up` (and `from`) out",
            column.name
        )));
    }
    if physical_name(ws, op)? != column.name {
        return Err(Problem::Refused(format!(
            "column {} still exists physically (dropped by this migration only at contract): add the identity column in a later migration",
            column.name
        )));
    }
    if column.sequence.as_ref().and_then(|s| s.increment) == Some(0) {
        return Err(Problem::Refused(format!(
            "identity column {}: the sequence's increment cannot be 0",
            column.name
        )));
    }
    Ok(())
}

/// The column's physical name: its own, unless a column of that name still exists
/// physically (dropped by this migration at contract), then a shadow name.
fn physical_name(ws: &Workspace, op: &AddColumn) -> Result<String, Problem> {
    let table = ws.existing_table(&op.table)?;
    let physical_table = ws.physical_table(&table);
    let taken = ws
        .original
        .table(&physical_table)
        .is_some_and(|t| t.column(&op.column.name).is_some());
    Ok(if taken {
        names::shadow_column(&op.column.name)
    } else {
        op.column.name.clone()
    })
}
