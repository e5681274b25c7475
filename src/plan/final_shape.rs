//! Each table's one atomic contract step, its final shape: drop its triggers, drop the old
//! columns, rename the new ones into place, finalize NOT NULL, identities and defaults, drop
//! constraints, rename the table, in that order, from what the operations recorded. One
//! transaction, so the new version never sees a half-contracted table; every statement is
//! guarded so a re-run is a no-op.

use crate::db::quote_ident;
use crate::plan::identity;
use crate::plan::names::{self, do_block, literal, regclass};
use crate::plan::ops::{
    add_primary_key, drop_constraint, rename_table, set_comment, set_default, set_not_null,
};
use crate::plan::shadow;
use crate::plan::step::{LockLevel, Phase, Step};
use crate::plan::sync_trigger;
use crate::plan::workspace::TableState;

/// The table's final-shape step, or None when contract has nothing to change on it (or
/// drops it whole).
pub(crate) fn step(state: &TableState) -> Option<Step> {
    if state.dropped {
        return None;
    }
    let table = state.physical.quoted();
    let renames = ordered_renames(state);
    let body = [
        sync_trigger::contract_drop_sql(state),
        drop_columns_sql(state, &table, &renames),
        rename_columns_sql(&table, &renames),
        shadow::rename_rebuilt_sql(state, &table),
        set_not_null::contract_sql(state, &table),
        identity::contract_sql(state, &table),
        add_primary_key::contract_sql(state, &table),
        set_default::contract_sql(state, &table),
        drop_constraint::contract_sql(state, &table),
        set_comment::contract_sql(state, &table),
        rename_table::contract_sql(state, &table),
    ]
    .concat();
    if body.is_empty() {
        return None;
    }
    let body = rename_table::rerun_guard(state, &table, body);
    Some(Step::sql(
        Phase::Contract,
        format!("give {} its final shape", state.name),
        do_block(&body),
        LockLevel::AccessExclusive,
        locked(state),
    ))
}

/// The table (under both names when renamed), the other tables its triggers are on, and
/// those its dropped foreign keys reference.
fn locked(state: &TableState) -> Vec<String> {
    let mut locked = vec![state.physical.to_string()];
    if state.physical != state.name {
        locked.push(state.name.to_string());
    }
    let others = state
        .extra_triggers
        .iter()
        .map(|(on, _)| on.to_string())
        .chain(state.also_locked.iter().cloned());
    for other in others {
        if !locked.contains(&other) {
            locked.push(other);
        }
    }
    locked
}

/// The physical columns the new shape no longer has (dropped, replaced by a shadow column,
/// moved to another table). A dropped column whose name a renamed column takes over is
/// dropped only while the column that replaces it is still under its old name, so that a
/// re-run after the commit never drops the replacement.
fn drop_columns_sql(state: &TableState, table: &str, renames: &[(String, String)]) -> String {
    state
        .drop_columns
        .iter()
        .map(|column| match renames.iter().find(|(_, to)| to == column) {
            Some((from, _)) => format!(
                "  IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = {} AND attname = {} AND NOT attisdropped) THEN\n    ALTER TABLE {table} DROP COLUMN IF EXISTS {};\n  END IF;\n",
                regclass(table),
                literal(from),
                quote_ident(column)
            ),
            None => format!(
                "  ALTER TABLE {table} DROP COLUMN IF EXISTS {};\n",
                quote_ident(column)
            ),
        })
        .collect()
}

/// Shadow columns and renamed columns (rename_column) take their final names, each only
/// while it still has its old one.
fn rename_columns_sql(table: &str, renames: &[(String, String)]) -> String {
    renames
        .iter()
        .map(|(from, to)| {
            format!(
                "  IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = {} AND attname = {} AND NOT attisdropped) THEN\n    ALTER TABLE {table} RENAME COLUMN {} TO {};\n  END IF;\n",
                regclass(table),
                literal(from),
                quote_ident(from),
                quote_ident(to)
            )
        })
        .collect()
}

/// Column renames at contract, ordered so that no rename targets a name still in use;
/// a cycle (a ↔ b) goes through a temporary name.
fn ordered_renames(state: &TableState) -> Vec<(String, String)> {
    let mut pending: Vec<(String, String)> = state
        .columns
        .iter()
        .filter(|c| c.physical != c.name)
        .map(|c| (c.physical.clone(), c.name.clone()))
        .collect();
    let mut ordered = Vec::new();
    let mut temporary = 0;
    while !pending.is_empty() {
        let free = pending
            .iter()
            .position(|(_, to)| !pending.iter().any(|(from, _)| from == to));
        match free {
            Some(index) => ordered.push(pending.remove(index)),
            None => {
                let (from, to) = pending.remove(0);
                let parked = names::fit_identifier(&format!("_zdm_tmp_{temporary}_{from}"));
                temporary += 1;
                ordered.push((from, parked.clone()));
                pending.push((parked, to));
            }
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::catalog::QualifiedName;

    #[test]
    fn renames_never_collide() {
        let chain = TableState::for_test(&[("b", "a"), ("c", "b")]);
        assert_eq!(
            ordered_renames(&chain),
            vec![
                ("b".to_string(), "c".to_string()),
                ("a".to_string(), "b".to_string())
            ]
        );
        let swap = TableState::for_test(&[("b", "a"), ("a", "b")]);
        let renames = ordered_renames(&swap);
        assert_eq!(renames.len(), 3);
        assert_eq!(renames[0], ("a".to_string(), "_zdm_tmp_0_a".to_string()));
    }

    #[test]
    fn a_replaced_column_is_dropped_only_while_its_replacement_waits() {
        let mut state = TableState::for_test(&[("price", "_zdm_new_price")]);
        state.drop_columns.push("price".to_string());
        let sql = step(&state).and_then(|s| s.sql_text().map(str::to_string));
        let sql = sql.unwrap_or_default();
        let drop = sql.find("DROP COLUMN IF EXISTS \"price\"");
        let rename = sql.find("RENAME COLUMN \"_zdm_new_price\" TO \"price\"");
        assert!(drop.is_some() && rename.is_some() && drop < rename, "{sql}");
        assert!(sql.contains("attname = '_zdm_new_price'"), "{sql}");
    }

    #[test]
    fn nothing_to_change_means_no_step_and_a_renamed_table_locks_both_names() {
        let mut state = TableState::for_test(&[("id", "id")]);
        assert!(step(&state).is_none());
        state.name = QualifiedName::new("public", "u");
        let renamed = step(&state).map(|s| s.locked).unwrap_or_default();
        assert_eq!(
            renamed,
            vec!["public.t".to_string(), "public.u".to_string()]
        );
    }
}
