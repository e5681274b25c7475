//! split_table: some columns move to a new table keyed by the old one's primary key (its
//! columns renamed as `key` says; the new table also references the old one, ON DELETE
//! CASCADE). The new version sees the old table without them and the new table with them
//! (each under its new name and type); the old version keeps seeing the old table whole.
//! Two triggers keep them in step until contract: a write by the old version to the old
//! table is copied (upserted, through each column's `up`) into the new one, a write by the
//! new version to the new table is copied back (through each column's `down`). The backfill
//! touches every old row in batches, which copies it. Contract drops the moved columns from
//! the old table. Both triggers are dropped with the sync triggers (`sync_trigger`: in the
//! old table's final-shape step, first thing at rollback), their functions with the sync
//! functions.
//!
//! A moved column that is NOT NULL without a default: the new version inserts into the old
//! table without it, and can only give its value afterwards, in the new table (whose
//! foreign key needs the old row first). So while both versions run the old column's NOT
//! NULL is carried by a deferred constraint trigger instead: any transaction that would
//! commit a row of the old table with the column NULL fails at commit, after the new
//! table's row has had its chance to fill it. Rollback fills what the new table holds
//! (rows the new version wrote while the triggers were being dropped), restores NOT NULL
//! through a validated check (no blocking scan) and drops the check; contract drops the
//! column, so there is nothing to restore.

use std::collections::BTreeSet;

use crate::db::catalog::{
    Column, Constraint, ConstraintKind, ForeignKeyTarget, Index, QualifiedName, Table,
};
use crate::db::quote_ident;
use crate::migration::operation::{MovedColumn, SplitTable};
use crate::plan::error::Problem;
use crate::plan::names::{self, column_list, do_block, literal, regclass};
use crate::plan::ops::{refuse_created, refuse_reshaped, PlanOperation};
use crate::plan::step::{Backfill, LockLevel, Phase, PromiseKind, Step, StepAction};
use crate::plan::workspace::Workspace;
use crate::suggest::did_you_mean;

/// One moved column, resolved against the old table.
struct Move {
    /// Physical name in the old table.
    old: String,
    /// Name in the new table.
    new: String,
    /// The old column as the catalog has it.
    column: Column,
    /// The new table's column: type, NOT NULL, default.
    data_type: String,
    default: Option<String>,
    /// SQL over the old row, and over the new table's row.
    up: String,
    down: String,
}

impl Move {
    /// NOT NULL in the old table without a default: the new version's inserts leave it
    /// NULL until its new-table row fills it.
    fn relaxed(&self) -> bool {
        !self.column.nullable && self.column.default.is_none()
    }
}

/// The old table's primary key, as (physical name in the old table, name in the new one).
fn key_columns(ws: &Workspace, op: &SplitTable, table: &QualifiedName) -> Vec<(String, String)> {
    let key = ws
        .table(table)
        .ok()
        .and_then(|t| t.primary_key())
        .map(|pk| pk.columns.clone())
        .unwrap_or_default();
    key.iter()
        .map(|k| {
            let new = op.key.get(k).cloned().unwrap_or_else(|| k.clone());
            (ws.physical_column(table, k), new)
        })
        .collect()
}

fn resolve(ws: &Workspace, table: &QualifiedName, moved: &MovedColumn) -> Option<Move> {
    let column = ws.table(table).ok()?.column(&moved.column)?.clone();
    let old = ws.physical_column(table, &moved.column);
    let verbatim = moved.data_type.is_none() && moved.up.is_none();
    Some(Move {
        new: moved.new_name().to_string(),
        data_type: moved
            .data_type
            .clone()
            .unwrap_or_else(|| column.data_type.clone()),
        // The old default only fits a value moved as it is.
        default: moved
            .default
            .clone()
            .or_else(|| verbatim.then(|| column.default.clone()).flatten()),
        up: moved.up.clone().unwrap_or_else(|| quote_ident(&old)),
        down: moved
            .down
            .clone()
            .unwrap_or_else(|| quote_ident(moved.new_name())),
        old,
        column,
    })
}

impl PlanOperation for SplitTable {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table, &self.new_table]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        refuse_created(ws, &table)?;
        let new_table = ws.qualify(&self.new_table);
        if ws.catalog.relation_exists(&new_table) || ws.original.relation_exists(&new_table) {
            return Err(Problem::TableExists(new_table.to_string()));
        }
        let found = ws.table(&table)?;
        let key = found
            .primary_key()
            .map(|pk| pk.columns.clone())
            .ok_or_else(|| {
                Problem::Refused(format!(
                    "table {table} has no primary key to key the new table {new_table} by"
                ))
            })?;
        for renamed in self.key.keys() {
            if !key.contains(renamed) {
                return Err(Problem::Refused(format!(
                    "`key` renames {renamed}, which is not a column of the primary key of {table} ({})",
                    key.join(", ")
                )));
            }
        }
        if self.columns.is_empty() {
            return Err(Problem::Refused("split_table moves no columns".to_string()));
        }
        let mut new_names: BTreeSet<String> = BTreeSet::new();
        for (_, new) in key_columns(ws, self, &table) {
            if !new_names.insert(new.clone()) {
                return Err(Problem::Refused(format!(
                    "two key columns of {new_table} would be named {new}"
                )));
            }
        }
        for moved in &self.columns {
            let name = &moved.column;
            let column = found.column(name).ok_or_else(|| Problem::NoColumn {
                table: table.to_string(),
                column: name.clone(),
                hint: did_you_mean(name, found.columns.iter().map(|c| c.name.as_str())),
            })?;
            refuse_reshaped(ws, &table, name)?;
            if key.contains(name) {
                return Err(Problem::Refused(format!(
                    "column {name} is part of the primary key of {table}, which stays"
                )));
            }
            if column.generated || column.identity.is_some() {
                return Err(Problem::Refused(format!(
                    "column {name} of {table} is {}: the new version's values could not be copied back into it; make it a plain column first",
                    if column.generated { "generated" } else { "an identity column" }
                )));
            }
            let dependents = found.dependents_of(name);
            if !dependents.is_empty() {
                return Err(Problem::Refused(format!(
                    "column {name} of {table} is used by {}; drop them first, recreate them on {new_table} after",
                    dependents.join(", ")
                )));
            }
            if !new_names.insert(moved.new_name().to_string()) {
                return Err(Problem::Refused(format!(
                    "{new_table} would have two columns named {}",
                    moved.new_name()
                )));
            }
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        let physical = ws.physical_table(&table);
        let new_table = ws.qualify(&self.new_table);
        let version = quote_ident(&ws.version_schema);
        let found = ws.table(&table)?.clone();
        let key = key_columns(ws, self, &table);
        let physical_key: Vec<String> = key.iter().map(|(old, _)| old.clone()).collect();
        let new_key: Vec<String> = key.iter().map(|(_, new)| new.clone()).collect();
        let moves: Vec<Move> = self
            .columns
            .iter()
            .filter_map(|moved| resolve(ws, &table, moved))
            .collect();

        // The new table: the key (same types), the moved columns, keyed and referencing.
        let mut lines: Vec<String> = key
            .iter()
            .filter_map(|(old, new)| found.column(old).map(|c| (c, new)))
            .map(|(c, new)| format!("{} {} NOT NULL", quote_ident(new), c.data_type))
            .collect();
        for moved in &moves {
            let mut line = format!("{} {}", quote_ident(&moved.new), moved.data_type);
            if !moved.column.nullable {
                line.push_str(" NOT NULL");
            }
            if let Some(default) = &moved.default {
                line.push_str(&format!(" DEFAULT {default}"));
            }
            lines.push(line);
        }
        let pkey = names::fit_identifier(&format!("{}_pkey", new_table.name));
        let fkey = names::fit_identifier(&format!("{}_{}_fkey", new_table.name, table.name));
        lines.push(format!(
            "CONSTRAINT {} PRIMARY KEY ({})",
            quote_ident(&pkey),
            column_list(&new_key)
        ));
        lines.push(format!(
            "CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE CASCADE",
            quote_ident(&fkey),
            column_list(&new_key),
            physical.quoted(),
            column_list(&physical_key)
        ));
        ws.push_expand(Step::sql(
            Phase::Expand,
            format!("create table {new_table} for the columns moving out of {table}"),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (\n  {}\n)",
                new_table.quoted(),
                lines.join(",\n  ")
            ),
            LockLevel::ShareRowExclusive,
            vec![new_table.to_string(), physical.to_string()],
        ));

        // Who is the new version (once it is published): see names::new_version_writer.
        let is_new_on_old = names::new_version_writer(&ws.version_schema, &table.name);
        let is_new_on_new = names::new_version_writer(&ws.version_schema, &new_table.name);
        // Old version → new table. `up` reads the old row's columns by name, bare or
        // qualified by the table's name: the row, under that name, is the only relation in
        // scope of its SELECT.
        let old_function = names::fit_identifier(&format!("_zdm_split_{}", physical.name));
        let new_columns: Vec<String> = new_key
            .iter()
            .chain(moves.iter().map(|m| &m.new))
            .cloned()
            .collect();
        let old_values: Vec<String> = physical_key
            .iter()
            .map(|k| quote_ident(k))
            .chain(moves.iter().map(|m| format!("({})", m.up)))
            .collect();
        let updates: Vec<String> = moves
            .iter()
            .map(|m| format!("{0} = EXCLUDED.{0}", quote_ident(&m.new)))
            .collect();
        let body = format!(
            "#variable_conflict use_column\nBEGIN\n  IF NOT ({is_new_on_old}) THEN\n    INSERT INTO {} ({})\n    SELECT {} FROM (SELECT NEW.*) AS {}\n    ON CONFLICT ({}) DO UPDATE SET {};\n  END IF;\n  RETURN NULL;\nEND\n",
            new_table.quoted(),
            column_list(&new_columns),
            old_values.join(", "),
            quote_ident(&physical.name),
            column_list(&new_key),
            updates.join(", ")
        );
        // New version → old table: `down` reads the new table's row the same way (under the
        // new table's name), in a subquery of its own: the old table's columns may share
        // its names.
        let new_function = names::fit_identifier(&format!("_zdm_split_{}", new_table.name));
        let computed: Vec<String> = new_key
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{} AS _zdm_k{i}", quote_ident(k)))
            .chain(
                moves
                    .iter()
                    .enumerate()
                    .map(|(i, m)| format!("({}) AS _zdm_v{i}", m.down)),
            )
            .collect();
        let assignments: Vec<String> = moves
            .iter()
            .enumerate()
            .map(|(i, m)| format!("{} = _zdm_new_row._zdm_v{i}", quote_ident(&m.old)))
            .collect();
        let matches: Vec<String> = physical_key
            .iter()
            .enumerate()
            .map(|(i, k)| format!("_zdm_target.{} = _zdm_new_row._zdm_k{i}", quote_ident(k)))
            .collect();
        let back_body = format!(
            "#variable_conflict use_column\nBEGIN\n  IF {is_new_on_new} THEN\n    UPDATE {} AS _zdm_target SET {}\n    FROM (SELECT {} FROM (SELECT NEW.*) AS {}) AS _zdm_new_row\n    WHERE {};\n  END IF;\n  RETURN NULL;\nEND\n",
            physical.quoted(),
            assignments.join(", "),
            computed.join(", "),
            quote_ident(&new_table.name),
            matches.join(" AND ")
        );
        for (function, body, on, description) in [
            (
                &old_function,
                body,
                &physical,
                format!("copy the old version's writes to {table} into {new_table}"),
            ),
            (
                &new_function,
                back_body,
                &new_table,
                format!("copy the new version's writes to {new_table} back into {table}"),
            ),
        ] {
            ws.push_expand(function_step(&version, function, &body, &description));
            ws.push_expand(
                Step::sql(
                    Phase::Expand,
                    format!("install the trigger that will {description}"),
                    format!(
                        "CREATE OR REPLACE TRIGGER {} AFTER INSERT OR UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {version}.{}()",
                        quote_ident(function),
                        on.quoted(),
                        quote_ident(function)
                    ),
                    LockLevel::ShareRowExclusive,
                    vec![on.to_string()],
                )
                .creating(PromiseKind::Trigger, on, function, false),
            );
            ws.extra_functions.push(function.clone());
        }
        let relaxed: Vec<&Move> = moves.iter().filter(|m| m.relaxed()).collect();
        let check_trigger = (!relaxed.is_empty())
            .then(|| relax_not_null(ws, &table, &physical, &new_table, &physical_key, &relaxed));
        ws.push_backfill(Step {
            phase: Phase::Backfill,
            description: format!(
                "copy the existing rows of {table} into {new_table}, in batches (each touched row is copied by the trigger)"
            ),
            action: StepAction::Backfill(Backfill {
                table: physical.quoted(),
                key_columns: physical_key.clone(),
                assignments: vec![(physical_key[0].clone(), quote_ident(&physical_key[0]))],
                predicate: None,
            }),
            lock: LockLevel::RowExclusive,
            locked: vec![physical.to_string(), new_table.to_string()],
            rewrites: false,
            scans: true,
            unchecked: false,
            creates: Vec::new(),
        });
        if !relaxed.is_empty() {
            restore_not_null_steps(ws, &physical, &new_table, &key, &relaxed);
        }
        // Rollback: the triggers go first (generic), then this table.
        ws.push_rollback(Step::sql(
            Phase::Rollback,
            format!("drop table {new_table}"),
            format!("DROP TABLE IF EXISTS {}", new_table.quoted()),
            LockLevel::AccessExclusive,
            // Its foreign key goes with it, which locks the old table too.
            vec![new_table.to_string(), physical.to_string()],
        ));

        // The simulated catalog: the new table, and the old one without the moved columns.
        let mut columns: Vec<Column> = key
            .iter()
            .filter_map(|(old, new)| found.column(old).cloned().map(|c| (c, new)))
            .map(|(mut c, new)| {
                c.name = new.clone();
                c.identity = None;
                c.default = None;
                c.nullable = false;
                c
            })
            .collect();
        columns.extend(moves.iter().map(|m| Column {
            name: m.new.clone(),
            data_type: m.data_type.clone(),
            nullable: m.column.nullable,
            default: m.default.clone(),
            identity: None,
            generated: false,
        }));
        ws.catalog.tables.push(Table {
            name: new_table.clone(),
            columns,
            constraints: vec![
                Constraint {
                    name: pkey.clone(),
                    kind: ConstraintKind::PrimaryKey,
                    columns: new_key.clone(),
                    definition: String::new(),
                    validated: true,
                    index: Some(pkey.clone()),
                    references: None,
                },
                Constraint {
                    name: fkey,
                    kind: ConstraintKind::ForeignKey,
                    columns: new_key.clone(),
                    definition: String::new(),
                    validated: true,
                    index: None,
                    references: Some(ForeignKeyTarget {
                        table: table.clone(),
                        columns: physical_key.clone(),
                    }),
                },
            ],
            indexes: vec![Index {
                name: pkey,
                columns: new_key.iter().cloned().map(Some).collect(),
                unique: true,
                primary: true,
                valid: true,
                definition: String::new(),
            }],
            triggers: Vec::new(),
            grants: found.grants.clone(),
        });
        ws.catalog.normalize();
        ws.created_table(&new_table)?;
        // The triggers go in the old table's contract step, in the same transaction as the
        // column drops, so no write ever fires a trigger naming a dropped column.
        let state = ws.state(&table)?;
        state.extra_triggers.push((physical.clone(), old_function));
        state.extra_triggers.push((new_table.clone(), new_function));
        if let Some(check_trigger) = check_trigger {
            state.extra_triggers.push((physical.clone(), check_trigger));
        }
        for moved in &self.columns {
            ws.remove_column(&table, &moved.column)?;
        }
        Ok(())
    }
}

/// `CREATE OR REPLACE FUNCTION` of one of split_table's trigger functions (each body says
/// `#variable_conflict use_column`: a column named like a plpgsql variable, `found`, is
/// the column).
fn function_step(version: &str, function: &str, body: &str, description: &str) -> Step {
    let tag = names::dollar_tag(body);
    Step::sql(
        Phase::Expand,
        format!("create the function that will {description}"),
        format!(
            "CREATE OR REPLACE FUNCTION {version}.{}() RETURNS trigger LANGUAGE plpgsql AS {tag}\n{body}{tag}",
            quote_ident(function)
        ),
        LockLevel::None,
        Vec::new(),
    )
}

/// Expand, for the moved NOT NULL columns without a default: the deferred constraint
/// trigger that carries their NOT NULL while both versions run (installed first), then
/// the NOT NULL dropped. Returns the trigger's name (also its function's).
fn relax_not_null(
    ws: &mut Workspace,
    table: &QualifiedName,
    physical: &QualifiedName,
    new_table: &QualifiedName,
    physical_key: &[String],
    relaxed: &[&Move],
) -> String {
    let version = quote_ident(&ws.version_schema);
    let trigger = names::fit_identifier(&format!("_zdm_split_nn_{}", physical.name));
    let any_null = |row: &str| -> String {
        relaxed
            .iter()
            .map(|m| format!("{row}{} IS NULL", quote_ident(&m.old)))
            .collect::<Vec<_>>()
            .join(" OR ")
    };
    let same_key: Vec<String> = physical_key
        .iter()
        .map(|k| format!("_zdm_row.{0} = NEW.{0}", quote_ident(k)))
        .collect();
    let key_text: Vec<String> = physical_key
        .iter()
        .map(|k| format!("NEW.{}", quote_ident(k)))
        .collect();
    let columns: Vec<&str> = relaxed.iter().map(|m| m.old.as_str()).collect();
    let message = format!(
        "a row of {table} would be committed without a value in {}, which the old version has NOT NULL",
        columns.join(", ")
    );
    let detail = format!(
        "zdm is moving {} to {new_table} (migration {}); while both versions run, a row the new version inserts into {table} gets {} from its {new_table} row, which must be written in the same transaction",
        columns.join(", "),
        ws.migration,
        if columns.len() == 1 { "it" } else { "them" }
    );
    // Re-read at commit: the new table's row (written after the old one) has filled the
    // column by then, or never will.
    let body = format!(
        "#variable_conflict use_column\nBEGIN\n  IF EXISTS (SELECT 1 FROM {} AS _zdm_row WHERE {} AND ({})) THEN\n    RAISE EXCEPTION USING ERRCODE = 'not_null_violation', MESSAGE = {}, DETAIL = {} || ' (key ' || ROW({})::text || ')', HINT = {};\n  END IF;\n  RETURN NULL;\nEND\n",
        physical.quoted(),
        same_key.join(" AND "),
        any_null("_zdm_row."),
        literal(&message),
        literal(&detail),
        key_text.join(", "),
        literal(&format!("insert the {new_table} row in the same transaction as the {table} row"))
    );
    ws.push_expand(function_step(
        &version,
        &trigger,
        &body,
        &format!(
            "refuse to commit a row of {table} without {} (the old version's NOT NULL)",
            columns.join(", ")
        ),
    ));
    // No CREATE OR REPLACE for constraint triggers: guarded, so a re-run skips it.
    ws.push_expand(
        Step::sql(
            Phase::Expand,
            format!(
                "install the deferred trigger that keeps {} of {table} NOT NULL for the old version at commit",
                columns.join(", ")
            ),
            do_block(&format!(
                "  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = {} AND tgname = {}) THEN\n    CREATE CONSTRAINT TRIGGER {} AFTER INSERT OR UPDATE ON {} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN ({}) EXECUTE FUNCTION {version}.{}();\n  END IF;\n",
                regclass(&physical.quoted()),
                literal(&trigger),
                quote_ident(&trigger),
                physical.quoted(),
                any_null("NEW."),
                quote_ident(&trigger)
            )),
            LockLevel::ShareRowExclusive,
            vec![physical.to_string()],
        )
        .creating(PromiseKind::Trigger, physical, &trigger, false),
    );
    ws.extra_functions.push(trigger.clone());
    let drops: Vec<String> = relaxed
        .iter()
        .map(|m| format!("ALTER COLUMN {} DROP NOT NULL", quote_ident(&m.old)))
        .collect();
    ws.push_expand(Step::sql(
        Phase::Expand,
        format!(
            "drop NOT NULL from {} of {table} (the deferred trigger holds it at commit; no scan)",
            columns.join(", ")
        ),
        format!("ALTER TABLE {} {}", physical.quoted(), drops.join(", ")),
        LockLevel::AccessExclusive,
        vec![physical.to_string()],
    ));
    trigger
}

/// Rollback (after the triggers and the version schema are gone, before the new table is
/// dropped): fill the relaxed columns from the new table where a row the new version wrote
/// while the triggers were being dropped left them NULL, prove NOT NULL with a check
/// validated without blocking, then SET NOT NULL (no scan: the valid check proves it) and
/// drop the check. A row left NULL with no new-table row to fill it stops rollback at the
/// validation, naming the check: nothing is lost, and it can run again once that row has
/// its value.
fn restore_not_null_steps(
    ws: &mut Workspace,
    physical: &QualifiedName,
    new_table: &QualifiedName,
    key: &[(String, String)],
    relaxed: &[&Move],
) {
    let label = physical.to_string();
    let quoted = physical.quoted();
    let checks: Vec<(String, &Move)> = relaxed
        .iter()
        .map(|m| (names::derived(&["_zdm_nn", &physical.name, &m.old]), *m))
        .collect();
    let computed: Vec<String> = key
        .iter()
        .enumerate()
        .map(|(i, (_, new))| format!("{} AS _zdm_k{i}", quote_ident(new)))
        .chain(
            relaxed
                .iter()
                .enumerate()
                .map(|(i, m)| format!("({}) AS _zdm_v{i}", m.down)),
        )
        .collect();
    let fills: Vec<String> = relaxed
        .iter()
        .enumerate()
        .map(|(i, m)| {
            format!(
                "{0} = coalesce(_zdm_target.{0}, _zdm_new_row._zdm_v{i})",
                quote_ident(&m.old)
            )
        })
        .collect();
    let matches: Vec<String> = key
        .iter()
        .enumerate()
        .map(|(i, (old, _))| format!("_zdm_target.{} = _zdm_new_row._zdm_k{i}", quote_ident(old)))
        .collect();
    let nulls: Vec<String> = relaxed
        .iter()
        .map(|m| format!("_zdm_target.{} IS NULL", quote_ident(&m.old)))
        .collect();
    ws.push_rollback(Step::sql(
        Phase::Rollback,
        format!("fill NULLs the new version left in {physical} from {new_table}"),
        do_block(&format!(
            "  IF {} IS NOT NULL AND {} IS NOT NULL THEN\n    UPDATE {quoted} AS _zdm_target SET {}\n    FROM (SELECT {} FROM {} AS {}) AS _zdm_new_row\n    WHERE {} AND ({});\n  END IF;\n",
            regclass(&quoted),
            regclass(&new_table.quoted()),
            fills.join(", "),
            computed.join(", "),
            new_table.quoted(),
            quote_ident(&new_table.name),
            matches.join(" AND "),
            nulls.join(" OR ")
        )),
        LockLevel::RowExclusive,
        vec![label.clone(), new_table.to_string()],
    ));
    let adds: String = checks
        .iter()
        .map(|(check, m)| {
            format!(
                "  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = {} AND conname = {}) THEN\n    ALTER TABLE {quoted} ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID;\n  END IF;\n",
                regclass(&quoted),
                literal(check),
                quote_ident(check),
                quote_ident(&m.old)
            )
        })
        .collect();
    ws.push_rollback(Step::sql(
        Phase::Rollback,
        format!("add NOT VALID checks that prove NOT NULL of the moved columns of {physical}"),
        do_block(&adds),
        LockLevel::AccessExclusive,
        vec![label.clone()],
    ));
    for (check, m) in &checks {
        ws.push_rollback(
            Step::sql(
                Phase::Rollback,
                format!(
                    "validate check {check} on {physical}: {} has a value in every row (scans, reads and writes go on)",
                    m.old
                ),
                format!(
                    "ALTER TABLE {quoted} VALIDATE CONSTRAINT {}",
                    quote_ident(check)
                ),
                LockLevel::ShareUpdateExclusive,
                vec![label.clone()],
            )
            .scanning(),
        );
    }
    let restores: String = checks
        .iter()
        .map(|(check, m)| {
            format!(
                "  ALTER TABLE {quoted} ALTER COLUMN {} SET NOT NULL;\n  ALTER TABLE {quoted} DROP CONSTRAINT IF EXISTS {};\n",
                quote_ident(&m.old),
                quote_ident(check)
            )
        })
        .collect();
    ws.push_rollback(Step::sql(
        Phase::Rollback,
        format!("restore NOT NULL of the moved columns of {physical} (no scan: the checks prove it) and drop the checks"),
        do_block(&restores),
        LockLevel::AccessExclusive,
        vec![label],
    ));
}
