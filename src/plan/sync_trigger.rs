//! The sync trigger of a table: its plpgsql function (the migration's `up` and `down` rules,
//! the writer's version told by its search path), installed at expand after the operations'
//! DDL, dropped in the table's final-shape step at contract and first thing at rollback.

use crate::db::catalog::QualifiedName;
use crate::db::quote_ident;
use crate::plan::names::{self, do_block, literal, regclass};
use crate::plan::step::{LockLevel, Phase, PromiseKind, Step};
use crate::plan::workspace::{TableState, Workspace};

/// One rule of a sync trigger: `target := expression` (or only when `target` is NULL).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyncRule {
    /// Physical column written.
    pub target: String,
    /// SQL over the writer's row, with columns named as that writer's version sees them.
    pub expression: String,
    pub only_when_null: bool,
}

/// The plpgsql function behind a table's sync trigger. The writer's version is told by its
/// search_path (`names::new_version_writer`): a session whose effective search path
/// includes this migration's version schema, once the new version is published, writes
/// through the new version's views; any other session (the old version, zdm's own
/// backfill, anyone before publication) is the old version.
fn function_sql(version_schema: &str, state: &TableState) -> String {
    let table = &state.physical;
    let declare = |names: &mut dyn Iterator<Item = (String, String)>| -> String {
        names
            .map(|(variable, physical)| {
                format!(
                    "      {} {}.{}%TYPE := NEW.{};\n",
                    quote_ident(&variable),
                    table.quoted(),
                    quote_ident(&physical),
                    quote_ident(&physical)
                )
            })
            .collect()
    };
    let assign = |rules: &[SyncRule]| -> String {
        rules
            .iter()
            .map(|rule| {
                let target = quote_ident(&rule.target);
                if rule.only_when_null {
                    format!(
                        "      IF NEW.{target} IS NULL THEN NEW.{target} := ({}); END IF;\n",
                        rule.expression
                    )
                } else {
                    format!("      NEW.{target} := ({});\n", rule.expression)
                }
            })
            .collect()
    };
    let old_variables = declare(&mut state.old_columns.iter().map(|c| (c.clone(), c.clone())));
    let new_variables = declare(
        &mut state
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.physical.clone())),
    );
    let mut body = String::from("#variable_conflict use_column\nBEGIN\n");
    let old_rules = if state.up.is_empty() {
        "    NULL;\n".to_string()
    } else {
        format!(
            "    DECLARE\n{old_variables}    BEGIN\n{}    END;\n",
            assign(&state.up)
        )
    };
    body.push_str(&format!(
        "  IF {} THEN\n",
        names::new_version_writer(version_schema, &state.name.name)
    ));
    body.push_str("    -- Written by the new version: fill the old version's columns.\n");
    if state.down.is_empty() {
        body.push_str("    NULL;\n");
    } else {
        body.push_str(&format!(
            "    DECLARE\n{new_variables}    BEGIN\n{}    END;\n",
            assign(&state.down)
        ));
    }
    body.push_str("  ELSE\n    -- Written by the old version (or the backfill): fill the new version's columns.\n");
    body.push_str(&old_rules);
    body.push_str("  END IF;\n");
    body.push_str("  RETURN NEW;\nEND\n");
    let tag = names::dollar_tag(&body);
    format!(
        "CREATE OR REPLACE FUNCTION {}.{}() RETURNS trigger LANGUAGE plpgsql AS {tag}\n{body}{tag}",
        quote_ident(version_schema),
        quote_ident(&names::sync_trigger(&table.name)),
    )
}

/// The tables whose versions need a sync trigger (a table this migration creates has no old
/// version to keep in step), in the order the migration touched them.
pub(crate) fn synced_tables(ws: &Workspace) -> Vec<TableState> {
    ws.tables
        .iter()
        .filter(|t| t.needs_sync() && !t.created)
        .cloned()
        .collect()
}

/// The transaction-local setting zdm's backfill batches set (`SET LOCAL`, so no other
/// transaction ever sees it) to say "this UPDATE already assigns what the sync trigger's
/// old-version branch would compute".
pub const BACKFILL_FLAG: &str = "zdm.backfilling";

/// The value of [`BACKFILL_FLAG`] for a batch of `table` (quoted, `"schema"."name"`)
/// assigning `columns` (physical names): the table and its assigned columns, sorted. A sync
/// trigger skips its function only when the value names its own table and exactly the
/// columns of its `up` rules, so a batch assigning only some of them (two operations on
/// one table, each with its own backfill) still fires it in full.
pub fn backfill_flag<'c>(table: &str, columns: impl IntoIterator<Item = &'c str>) -> String {
    let mut columns: Vec<String> = columns.into_iter().map(quote_ident).collect();
    columns.sort();
    columns.dedup();
    format!("{table}:{}", columns.join(","))
}

/// The trigger's `WHEN` condition: fire unless this is the top-level UPDATE of one of zdm's
/// backfill batches that assigns every column the old-version branch fills (the batch's
/// SET already computed them from the same `up` rules: running them again per row costs as
/// much as the UPDATE itself). `pg_trigger_depth() > 0` keeps every write made by another
/// trigger inside a batch (a user trigger updating rows of this table) fully synced; the
/// backfill also sets the flag only when the table has no other BEFORE UPDATE row trigger
/// (which could change a column the rules read), see `engine::backfill`. None: the table
/// has no `up` rule, so there is nothing to skip.
fn when_condition(state: &TableState) -> Option<String> {
    if state.up.is_empty() {
        return None;
    }
    let flag = backfill_flag(
        &state.physical.quoted(),
        state.up.iter().map(|rule| rule.target.as_str()),
    );
    Some(format!(
        "pg_trigger_depth() > 0 OR current_setting({}, true) IS DISTINCT FROM {}",
        literal(BACKFILL_FLAG),
        literal(&flag)
    ))
}

/// Expand: the table's sync function, then its trigger (promised: checked after expand).
pub(crate) fn install_steps(version_schema: &str, state: &TableState) -> [Step; 2] {
    let trigger = names::sync_trigger(&state.physical.name);
    let when = when_condition(state)
        .map(|condition| format!(" WHEN ({condition})"))
        .unwrap_or_default();
    [
        Step::sql(
            Phase::Expand,
            format!(
                "create the function keeping old and new columns of {} in step",
                state.physical
            ),
            function_sql(version_schema, state),
            LockLevel::None,
            Vec::new(),
        ),
        Step::sql(
            Phase::Expand,
            format!("install the sync trigger on {}", state.physical),
            format!(
                "CREATE OR REPLACE TRIGGER {} BEFORE INSERT OR UPDATE ON {} FOR EACH ROW{when} EXECUTE FUNCTION {}.{}()",
                quote_ident(&trigger),
                state.physical.quoted(),
                quote_ident(version_schema),
                quote_ident(&trigger),
            ),
            LockLevel::ShareRowExclusive,
            vec![Workspace::label(&state.physical)],
        )
        .creating(PromiseKind::Trigger, &state.physical, &trigger, false),
    ]
}

/// The triggers keeping a table's versions in step, as (table, trigger): its sync trigger
/// (when it has one) first, then those an operation installed beyond it (split_table's).
fn triggers(state: &TableState) -> Vec<(QualifiedName, String)> {
    let mut triggers = state.extra_triggers.clone();
    if state.needs_sync() && !state.created {
        triggers.insert(
            0,
            (
                state.physical.clone(),
                names::sync_trigger(&state.physical.name),
            ),
        );
    }
    triggers
}

/// Contract: the statements of the table's final-shape step that drop its triggers (first,
/// in the same transaction as the column drops, so no write fires a trigger naming a
/// dropped column).
pub(crate) fn contract_drop_sql(state: &TableState) -> String {
    triggers(state)
        .iter()
        .map(|(on, trigger)| {
            format!(
                "  DROP TRIGGER IF EXISTS {} ON {};\n",
                quote_ident(trigger),
                on.quoted()
            )
        })
        .collect()
}

/// Rollback: the step dropping a table's triggers, if it has any (each guarded: its table
/// may be gone already).
pub(crate) fn rollback_step(state: &TableState) -> Option<Step> {
    let triggers = triggers(state);
    if triggers.is_empty() {
        return None;
    }
    let drops: String = triggers
        .iter()
        .map(|(table, trigger)| {
            format!(
                "  IF {} IS NOT NULL THEN\n    DROP TRIGGER IF EXISTS {} ON {};\n  END IF;\n",
                regclass(&table.quoted()),
                quote_ident(trigger),
                table.quoted()
            )
        })
        .collect();
    // Each table once, in first-seen order (triggers of two tables may interleave).
    let mut locked: Vec<String> = Vec::new();
    for (table, _) in &triggers {
        if !locked.contains(&table.to_string()) {
            locked.push(table.to_string());
        }
    }
    Some(Step::sql(
        Phase::Rollback,
        format!("drop the sync triggers on {}", locked.join(", ")),
        do_block(&drops),
        LockLevel::AccessExclusive,
        locked,
    ))
}

/// The trigger functions in the version schema, as `"schema"."name"()` for DROP FUNCTION:
/// the sync functions of `synced`, then those operations added (`Workspace::extra_functions`).
pub(crate) fn functions(ws: &Workspace, synced: &[TableState]) -> Vec<String> {
    let version = quote_ident(&ws.version_schema);
    synced
        .iter()
        .map(|s| names::sync_trigger(&s.physical.name))
        .chain(ws.extra_functions.iter().cloned())
        .map(|name| format!("{version}.{}()", quote_ident(&name)))
        .collect()
}

/// Contract: drop the trigger functions, once the final-shape steps dropped their triggers.
pub(crate) fn contract_drop_functions_step(functions: &[String]) -> Option<Step> {
    (!functions.is_empty()).then(|| {
        Step::sql(
            Phase::Contract,
            "drop the sync functions",
            format!("DROP FUNCTION IF EXISTS {}", functions.join(", ")),
            LockLevel::None,
            Vec::new(),
        )
    })
}
