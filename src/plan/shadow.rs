//! The shadow column: a column's new shape (change_type, drop_not_null) held in
//! `_zdm_new_<name>` until contract. Added at expand (catalog only), kept in step by the sync
//! trigger (`up` when the old version writes, `down` when the new one does), backfilled in
//! batches, its plain indexes and foreign keys rebuilt on it under temporary names; at
//! contract the old column is dropped and the shadow column, its indexes and constraints
//! are renamed into place (the table's final-shape step).
//!
//! A second change of the same column in one migration (two change_type, drop_not_null then
//! change_type) reuses the shadow column: its type becomes the last one, and the `up` and
//! `down` rules become one chain (`compose`): the later `up` applied to the earlier `up`'s
//! value, the earlier `down` applied to the later `down`'s value.
//!
//! The per-column `up`/`down` of add_check, add_unique, add_foreign_key and drop_constraint
//! (`Values`) move their columns to shadow columns of the same type the same way.

use std::collections::BTreeMap;

use crate::db::catalog::{Column, Constraint, ConstraintKind, Index, QualifiedName, Table};
use crate::db::quote_ident;
use crate::plan::error::Problem;
use crate::plan::names::{self, column_list, literal, regclass};
use crate::plan::ops::set_not_null::prove_not_null;
use crate::plan::ops::{
    add_constraint_sql, concurrent_index_step, physical_column_list, refuse_created,
    refuse_reshaped, validate_step,
};
use crate::plan::step::{Backfill, LockLevel, Phase, Step, StepAction};
use crate::plan::sync_trigger::SyncRule;
use crate::plan::workspace::{TableState, Workspace};

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

/// A column held in a shadow column by an earlier operation of this migration: what a later
/// change of the same column composes with, and where its steps are to rewrite them.
#[derive(Debug, Clone)]
pub(crate) struct Chain {
    /// The table, physically (its name until contract).
    pub table: QualifiedName,
    pub shadow: String,
    /// The old version's column, which `down` fills.
    pub old: String,
    /// The shadow column's type and physical default so far.
    pub data_type: String,
    pub default: Option<String>,
    /// The composed rules so far (old row → new value, new row → old value).
    pub up: String,
    pub down: String,
    /// Index in `Workspace::expand` of the step adding the shadow column, in
    /// `Workspace::expand_defaults` of the step setting its default, and in
    /// `Workspace::backfill` of its backfill.
    expand_step: usize,
    default_step: Option<usize>,
    backfill_step: usize,
}

/// The chain of the column (by its name in the new shape), if an earlier operation of this
/// migration put it in a shadow column.
fn chain_of(ws: &Workspace, table: &QualifiedName, column_name: &str) -> Option<usize> {
    let physical_table = ws.physical_table(table);
    let physical = ws.physical_column(table, column_name);
    ws.shadows
        .iter()
        .position(|c| c.table == physical_table && c.shadow == physical)
}

/// Checks that a column can be moved to a shadow column (`nullable`: the new nullability,
/// `None` keeps it).
pub(crate) fn validate(
    ws: &Workspace,
    table: &str,
    column_name: &str,
    nullable: Option<bool>,
) -> Result<(), Problem> {
    validate_except(ws, table, column_name, nullable, None)
}

/// `validate`, not counting constraint `except` among what uses the column (the constraint
/// drop_constraint drops: it stays on the old column, and the shadow column goes without).
fn validate_except(
    ws: &Workspace,
    table: &str,
    column_name: &str,
    nullable: Option<bool>,
    except: Option<&str>,
) -> Result<(), Problem> {
    {
        let table = ws.existing_table(table)?;
        refuse_created(ws, &table)?;
        let column = ws.existing_column(&table, column_name)?;
        if chain_of(ws, &table, column_name).is_some() {
            // The NOT NULL proof of the earlier change (a CHECK validated at backfill, SET
            // NOT NULL at contract) stays: a later change may keep it, not drop it.
            if nullable.is_some_and(|n| n != column.nullable) {
                return Err(Problem::Refused(format!(
                    "column {column_name} of {table} changes type in an earlier operation of this migration: put the drop_not_null first, then the change_type (one shadow column)"
                )));
            }
            return Ok(());
        }
        refuse_reshaped(ws, &table, column_name)?;
        if column.identity.is_some() || column.generated {
            return Err(Problem::Refused(format!(
                "column {column_name} of {table} is an identity or generated column; zdm cannot reshape it yet"
            )));
        }
        let mut found = ws.table(&table)?.clone();
        if let Some(except) = except {
            let index = found.constraint(except).and_then(|c| c.index.clone());
            found.constraints.retain(|c| c.name != except);
            found.indexes.retain(|i| Some(&i.name) != index.as_ref());
        }
        let (_, _, unsupported) = rebuildable(&found, column_name);
        if !unsupported.is_empty() {
            return Err(Problem::Refused(format!(
                "column {column_name} of {table} is used by {}; zdm rebuilds plain indexes and its own foreign keys on the reshaped column, not those: drop them first, recreate them after",
                unsupported.join(", ")
            )));
        }
        let referencing: Vec<String> = ws
            .catalog
            .tables
            .iter()
            .flat_map(|t| t.constraints.iter().map(move |c| (t, c)))
            .filter(|(_, c)| {
                c.references
                    .as_ref()
                    .is_some_and(|r| r.table == table && r.columns.iter().any(|n| n == column_name))
            })
            .map(|(t, c)| format!("{} ({})", c.name, t.name))
            .collect();
        if !referencing.is_empty() {
            return Err(Problem::Refused(format!(
                "column {column_name} of {table} is referenced by foreign key {}: drop it first, recreate it after",
                referencing.join(", ")
            )));
        }
        let physical_table = ws.physical_table(&table);
        ws.batch_key(&physical_table, &physical_table.to_string())?;
        Ok(())
    }
}

/// The per-column `up`/`down` of a constraint operation (pgroll's create_constraint and
/// drop_multicolumn_constraint): every column named in either moves to a shadow column of
/// its own type (composed into an earlier change of it, one chain), `up` (default: the
/// column as it is) filling it from the old row, `down` (default: the column as it is) the
/// old column from the new row. The constraint added is then built on the shadow columns
/// (the new version's values), the one dropped stays on the old columns (the old version's).
pub(crate) struct Values<'a> {
    pub up: &'a BTreeMap<String, String>,
    pub down: &'a BTreeMap<String, String>,
}

impl Values<'_> {
    /// The columns named, each once, in order.
    fn columns(&self) -> Vec<&str> {
        let mut columns: Vec<&str> = self
            .up
            .keys()
            .chain(self.down.keys())
            .map(String::as_str)
            .collect();
        columns.sort_unstable();
        columns.dedup();
        columns
    }

    /// Checks each column: of the table, among `allowed` (the constraint's columns, when it
    /// lists them), movable to a shadow column (`except`: the constraint being dropped does
    /// not count as a use).
    pub fn validate(
        &self,
        ws: &Workspace,
        table: &str,
        allowed: Option<&[String]>,
        except: Option<&str>,
    ) -> Result<(), Problem> {
        for column in self.columns() {
            if let Some(allowed) = allowed {
                if !allowed.iter().any(|c| c == column) {
                    return Err(Problem::Refused(format!(
                        "`up`/`down` name column {column}, which is not one of the constraint's columns ({})",
                        allowed.join(", ")
                    )));
                }
            }
            for (key, rules) in [("up", self.up), ("down", self.down)] {
                if rules.get(column).is_some_and(|e| e.trim().is_empty()) {
                    return Err(Problem::Refused(format!(
                        "`{key}` of column {column} is empty"
                    )));
                }
            }
            validate_except(ws, table, column, None, except)?;
        }
        Ok(())
    }

    /// Moves each column to its shadow column (or composes into the one it has).
    pub fn plan(&self, ws: &mut Workspace, table: &str) -> Result<(), Problem> {
        let qualified = ws.existing_table(table)?;
        for column in self.columns() {
            let data_type = ws.existing_column(&qualified, column)?.data_type.clone();
            // The old row's column: by its physical name, or, composed into an earlier
            // change, by its name (bound to the earlier `up`'s value).
            let old_name = if chain_of(ws, &qualified, column).is_some() {
                column.to_string()
            } else {
                ws.physical_column(&qualified, column)
            };
            let up = self
                .up
                .get(column)
                .cloned()
                .unwrap_or_else(|| quote_ident(&old_name));
            let down = self
                .down
                .get(column)
                .cloned()
                .unwrap_or_else(|| quote_ident(column));
            plan(
                ws,
                table,
                column,
                &Shadow {
                    data_type: &data_type,
                    up: &up,
                    down: &down,
                    nullable: None,
                },
            )?;
        }
        Ok(())
    }
}

/// Adds the shadow column, its sync rules, NOT NULL check, backfill and rollback.
pub(crate) fn plan(
    ws: &mut Workspace,
    table: &str,
    column_name: &str,
    shadow_of: &Shadow,
) -> Result<(), Problem> {
    {
        let table = ws.existing_table(table)?;
        if let Some(chain) = chain_of(ws, &table, column_name) {
            return compose_into(ws, &table, column_name, chain, shadow_of);
        }
        let physical_table = ws.physical_table(&table);
        let label = physical_table.to_string();
        let old = ws.existing_column(&table, column_name)?.clone();
        let old_physical = ws.physical_column(&table, column_name);
        let shadow = names::shadow_column(column_name);
        let nullable = shadow_of.nullable.unwrap_or(old.nullable);
        let data_type = shadow_of.data_type;
        let quoted = quote_ident(&shadow);

        // The old default, converted, for rows the new version inserts without the column.
        let default = old
            .default
            .as_ref()
            .map(|default| format!("({default})::{}", data_type));
        let expand_step = ws.expand.len();
        ws.push_expand(add_shadow_step(&physical_table, &shadow, data_type));
        // Once the sync trigger fills the shadow for the old version's rows: set with the
        // column, an old-version insert before the trigger exists would keep it.
        let default_step = default.as_deref().map(|default| {
            ws.push_expand_default(shadow_default_step(&physical_table, &shadow, default));
            ws.expand_defaults.len() - 1
        });
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

        rebuild_dependents(ws, &table, column_name, &shadow)?;
        ws.lock_referenced_at_contract(&table, Some(column_name), None)?;

        {
            let state = ws.state(&table)?;
            state.up.push(SyncRule {
                target: shadow.clone(),
                expression: shadow_of.up.to_string(),
                only_when_null: false,
            });
            state.down.push(SyncRule {
                target: old_physical.clone(),
                expression: shadow_of.down.to_string(),
                only_when_null: false,
            });
        }
        ws.remove_column(&table, column_name)?;
        ws.add_column(
            &table,
            Column {
                name: column_name.to_string(),
                data_type: data_type.to_string(),
                nullable,
                default: default.clone(),
                identity: None,
                generated: false,
            },
            &shadow,
        )?;

        if !nullable {
            prove_not_null(ws, &table, column_name, &shadow)?;
        }

        let key = ws.batch_key(&physical_table, &label)?;
        ws.shadows.push(Chain {
            table: physical_table.clone(),
            shadow: shadow.clone(),
            old: old_physical,
            data_type: data_type.to_string(),
            default: default.clone(),
            up: shadow_of.up.to_string(),
            down: shadow_of.down.to_string(),
            expand_step,
            default_step,
            backfill_step: ws.backfill.len(),
        });
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
            creates: Vec::new(),
        });
        Ok(())
    }
}

/// Expand: the shadow column, catalog only (nullable, no rewrite).
fn add_shadow_step(physical_table: &QualifiedName, shadow: &str, data_type: &str) -> Step {
    let quoted = quote_ident(shadow);
    let sql = format!(
        "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {quoted} {data_type}",
        physical_table.quoted(),
    );
    Step::sql(
        Phase::Expand,
        format!(
            "add shadow column {physical_table}.{shadow} of type {data_type} (catalog only, no rewrite)"
        ),
        sql,
        LockLevel::AccessExclusive,
        vec![physical_table.to_string()],
    )
}

/// Expand, after the sync triggers: the shadow column's default, the old one converted, for
/// rows the new version inserts without the column.
fn shadow_default_step(physical_table: &QualifiedName, shadow: &str, default: &str) -> Step {
    Step::sql(
        Phase::Expand,
        format!(
            "set the default of shadow column {physical_table}.{shadow} (catalog only), now that the sync trigger fills it for the old version"
        ),
        format!(
            "ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {default}",
            physical_table.quoted(),
            quote_ident(shadow)
        ),
        LockLevel::AccessExclusive,
        vec![physical_table.to_string()],
    )
}

/// A later change of a column already in a shadow column: the shadow column takes the new
/// type (its expand step rewritten: nothing has run yet), `up` and `down` become one chain,
/// the backfill assigns the composed `up`. Its rebuilt indexes and foreign keys, its NOT
/// NULL proof and its rollback stay as the first change planned them.
fn compose_into(
    ws: &mut Workspace,
    table: &QualifiedName,
    column_name: &str,
    chain: usize,
    shadow_of: &Shadow,
) -> Result<(), Problem> {
    let mut link = ws.shadows[chain].clone();
    let current = ws.existing_column(table, column_name)?.clone();
    // The later `up` reads the column as the earlier `up` left it, by its name before the
    // migration (as every `up` reads the old row) and by its name now, after a rename.
    let mut up_names = vec![link.old.as_str(), column_name];
    up_names.dedup();
    refuse_qualified(column_name, "up", shadow_of.up, &up_names)?;
    refuse_qualified(column_name, "down", &link.down, &[column_name])?;
    let up = compose(&link.up, &link.data_type, &up_names, shadow_of.up);
    // The earlier `down` reads the column as the later `down` left it (the column cannot
    // be renamed after a change: its name in the new row is the same for both).
    let down = compose(shadow_of.down, &link.data_type, &[column_name], &link.down);
    let data_type = shadow_of.data_type.to_string();
    // The shadow column's own default (the old one, converted) is converted again; a
    // set_default between the changes is the new version's and stays as it set it.
    let default = link
        .default
        .as_ref()
        .map(|default| format!("({default})::{data_type}"));
    let catalog_default = if current.default == link.default {
        default.clone()
    } else {
        current.default.clone()
    };
    ws.expand[link.expand_step] = add_shadow_step(&link.table, &link.shadow, &data_type);
    if let (Some(step), Some(default)) = (link.default_step, &default) {
        ws.expand_defaults[step] = shadow_default_step(&link.table, &link.shadow, default);
    }
    if let StepAction::Backfill(backfill) = &mut ws.backfill[link.backfill_step].action {
        for (target, expression) in &mut backfill.assignments {
            if *target == link.shadow {
                *expression = up.clone();
            }
        }
    }
    {
        let state = ws.state(table)?;
        for rule in &mut state.up {
            if rule.target == link.shadow {
                rule.expression = up.clone();
            }
        }
        for rule in &mut state.down {
            if rule.target == link.old {
                rule.expression = down.clone();
            }
        }
    }
    let nullable = shadow_of.nullable.unwrap_or(current.nullable);
    if let Some(column) = ws.table_mut(table)?.column_mut(column_name) {
        column.data_type = data_type.clone();
        column.default = catalog_default;
        column.nullable = nullable;
    }
    link.data_type = data_type;
    link.default = default;
    link.up = up;
    link.down = down;
    ws.shadows[chain] = link;
    Ok(())
}

/// `then` applied to what `first` gives: one SQL expression. `first`'s value, as
/// `first_type`, is bound to the column's `names` in a subquery, so `then` reads it there
/// (a bare name resolves to the nearest scope: the subquery's column, before the writer's
/// row or the trigger's variable of the same name, which `#variable_conflict use_column`
/// makes the column too); every other name `then` reads is the writer's row as before.
/// `first` is evaluated once, also when bound to two names.
fn compose(first: &str, first_type: &str, names: &[&str], then: &str) -> String {
    let Some((name, others)) = names.split_first() else {
        return then.to_string();
    };
    let quoted = quote_ident(name);
    let value = format!("(SELECT ({first})::{first_type} AS {quoted}) AS \"_zdm_value\"");
    let bound = if others.is_empty() {
        value
    } else {
        let aliases: String = others
            .iter()
            .map(|other| format!(", {quoted} AS {}", quote_ident(other)))
            .collect();
        format!("(SELECT {quoted}{aliases} FROM {value}) AS \"_zdm_values\"")
    };
    format!("(SELECT ({then}) FROM {bound})")
}

/// Refuses an `up` or `down` of a chain that names the chained column qualified
/// (`orders.amount`): [`compose`] binds the earlier link's value to the bare name only, so a
/// qualified reference would silently read the writer's row, before the earlier link.
fn refuse_qualified(
    column: &str,
    which: &str,
    expression: &str,
    names: &[&str],
) -> Result<(), Problem> {
    let Ok(parsed) = pg_query::parse(
        &format!("SELECT ({expression})"),
        pg_query::ParserOptions::DEFAULT,
    ) else {
        return Ok(()); // the file's SQL check reports what does not parse
    };
    let qualified = parsed.protobuf.nodes().into_iter().find_map(|(node, ..)| {
        let pg_query::NodeRef::ColumnRef(reference) = node else {
            return None;
        };
        let fields = crate::migration::sql::column_ref_fields(reference);
        match fields.as_slice() {
            [_, .., last] if names.contains(last) => Some(fields.join(".")),
            _ => None,
        }
    });
    match qualified {
        Some(reference) => Err(Problem::Refused(format!(
            "column {column} is changed more than once in this migration, and the `{which}` of one of its \
             links names it qualified ({reference}): each link reads the value the one \
             before it gives by the column's bare name, so write it unqualified"
        ))),
        None => Ok(()),
    }
}

/// Splits what uses a column into the indexes and foreign keys zdm rebuilds on its shadow
/// column, and the rest (described), which it refuses.
fn rebuildable<'t>(
    table: &'t Table,
    column: &str,
) -> (Vec<&'t Index>, Vec<&'t Constraint>, Vec<String>) {
    let mut indexes = Vec::new();
    let mut foreign_keys = Vec::new();
    let mut unsupported = Vec::new();
    for constraint in &table.constraints {
        if !constraint.columns.iter().any(|c| c == column) {
            continue;
        }
        if constraint.kind == ConstraintKind::ForeignKey && constraint.references.is_some() {
            foreign_keys.push(constraint);
        } else {
            unsupported.push(format!("constraint {}", constraint.name));
        }
    }
    for index in &table.indexes {
        let uses = index.columns.iter().any(|k| k.as_deref() == Some(column))
            || ((index.columns.iter().any(Option::is_none)
                || index.definition.contains(" WHERE "))
                && index.definition.contains(column));
        if !uses {
            continue;
        }
        let backs_constraint = table
            .constraints
            .iter()
            .any(|c| c.index.as_deref() == Some(index.name.as_str()));
        if backs_constraint {
            continue; // reported through its constraint
        }
        if index.columns.iter().all(Option::is_some) && !index.definition.contains(" WHERE ") {
            indexes.push(index);
        } else {
            unsupported.push(format!("index {} (expression or partial)", index.name));
        }
    }
    (indexes, foreign_keys, unsupported)
}

/// Rebuilds the column's plain indexes (concurrently) and foreign keys (NOT VALID, then
/// validated) on the shadow column under temporary names, renamed at contract.
fn rebuild_dependents(
    ws: &mut Workspace,
    table: &QualifiedName,
    column: &str,
    shadow: &str,
) -> Result<(), Problem> {
    let found = ws.table(table)?.clone();
    let physical_table = ws.physical_table(table);
    let (indexes, foreign_keys, _) = rebuildable(&found, column);
    let mut renamed_indexes = Vec::new();
    for index in indexes {
        let temporary = names::fit_identifier(&format!("{}{}", names::SHADOW_PREFIX, index.name));
        let keys: Vec<String> = index
            .columns
            .iter()
            .flatten()
            .map(|key| {
                if key == column {
                    quote_ident(shadow)
                } else {
                    quote_ident(&ws.physical_column(table, key))
                }
            })
            .collect();
        let method = index
            .definition
            .split(" USING ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .filter(|m| m.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or("btree");
        ws.push_expand(concurrent_index_step(
            format!(
                "rebuild index {} on the shadow column as {temporary}, concurrently",
                index.name
            ),
            &physical_table,
            &temporary,
            index.unique,
            &format!("USING {method} ({})", keys.join(", ")),
            false,
        ));
        renamed_indexes.push((temporary, index.name.clone()));
    }
    let mut renamed_constraints = Vec::new();
    for constraint in foreign_keys {
        let Some(reference) = &constraint.references else {
            continue;
        };
        let temporary =
            names::fit_identifier(&format!("{}{}", names::SHADOW_PREFIX, constraint.name));
        // ON DELETE / ON UPDATE / MATCH / DEFERRABLE as PostgreSQL printed them.
        let tail = constraint
            .definition
            .split_once("REFERENCES ")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(_, tail)| tail.replace(" NOT VALID", ""))
            .unwrap_or_default();
        let physical_target = ws.physical_table(&reference.table);
        let columns: Vec<String> = constraint
            .columns
            .iter()
            .map(|c| {
                if c == column {
                    shadow.to_string()
                } else {
                    ws.physical_column(table, c)
                }
            })
            .collect();
        let definition = format!(
            "FOREIGN KEY ({}) REFERENCES {} ({}){} NOT VALID",
            column_list(&columns),
            physical_target.quoted(),
            physical_column_list(ws, &reference.table, &reference.columns),
            tail.trim_end()
        );
        ws.push_expand_constraint(
            Step::sql(
                Phase::Expand,
                format!(
                    "rebuild foreign key {} on the shadow column as {temporary}, NOT VALID",
                    constraint.name
                ),
                add_constraint_sql(&physical_table, &temporary, &definition),
                LockLevel::ShareRowExclusive,
                vec![physical_table.to_string(), physical_target.to_string()],
            ),
            &physical_table,
            &temporary,
            false,
        );
        ws.push_validate(validate_step(
            &physical_table,
            &temporary,
            Some(&physical_target),
        ));
        renamed_constraints.push((temporary, constraint.name.clone()));
    }
    let state = ws.state(table)?;
    state.rename_indexes.extend(renamed_indexes);
    state.rename_constraints.extend(renamed_constraints);
    Ok(())
}

/// Contract: the statements of the table's final-shape step (`table` quoted) that give the
/// indexes and constraints rebuilt on shadow columns their real names (the old column, and
/// with it the originals, is dropped earlier in the same step).
pub(crate) fn rename_rebuilt_sql(state: &TableState, table: &str) -> String {
    let mut body = String::new();
    for (from, to) in &state.rename_indexes {
        let index = QualifiedName::new(&state.physical.schema, from);
        body.push_str(&format!(
            "  IF {} IS NOT NULL THEN\n    ALTER INDEX {} RENAME TO {};\n  END IF;\n",
            regclass(&index.quoted()),
            index.quoted(),
            quote_ident(to)
        ));
    }
    for (from, to) in &state.rename_constraints {
        body.push_str(&format!(
            "  IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = {} AND conname = {}) THEN\n    ALTER TABLE {table} RENAME CONSTRAINT {} TO {};\n  END IF;\n",
            regclass(table),
            literal(from),
            quote_ident(from),
            quote_ident(to)
        ));
    }
    body
}
