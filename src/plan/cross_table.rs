//! Values from another table (add_column's `up`, drop_column's `down`, each with `from`):
//! the correlated subquery that computes a row's value from the matching row of the other
//! table, and the trigger on the other table that recomputes the changed table's rows when
//! the other one is written by the version the rule serves.

use crate::db::catalog::QualifiedName;
use crate::db::quote_ident;
use crate::migration::operation::FromTable;
use crate::plan::error::Problem;
use crate::plan::names;
use crate::plan::step::{LockLevel, Phase, PromiseKind, Step};
use crate::plan::workspace::Workspace;

/// Which version's writes a rule serves: `up` fills the new version's column from the old
/// version's writes, `down` the old version's column from the new version's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Up,
    Down,
}

/// One value from another table, resolved against the workspace.
#[derive(Debug, Clone)]
pub(crate) struct CrossTable {
    /// The table whose column the rule fills (physical; never renamed by this migration).
    pub changed: QualifiedName,
    /// The table the value comes from (physical; never renamed by this migration).
    pub other: QualifiedName,
    /// The physical column filled.
    pub target: String,
    /// The value, over both tables' rows qualified by their names.
    pub value: String,
    /// Which row of `other` goes with a row of `changed`.
    pub condition: String,
}

/// Checks `from` for a rule on `changed` and resolves it. Both tables are named in the SQL
/// by their bare names, so neither may be renamed earlier in this migration nor created by
/// it, and they must be two different tables with different names.
pub(crate) fn resolve(
    ws: &Workspace,
    changed: &QualifiedName,
    target: &str,
    value: &str,
    from: &FromTable,
) -> Result<CrossTable, Problem> {
    let other = ws.existing_table(&from.table)?;
    for table in [changed, &other] {
        if ws.is_created(table) {
            return Err(Problem::Refused(format!(
                "table {table} is created by this migration: `from` reads a table that both versions already have"
            )));
        }
        if &ws.physical_table(table) != table {
            return Err(Problem::Refused(format!(
                "table {table} is renamed earlier in this migration: `from` names tables as the database has them; rename it in a later migration"
            )));
        }
    }
    if other.name == changed.name {
        return Err(Problem::Refused(format!(
            "`from` names {other}, which has the same name as the changed table {changed}: `up`/`down` and `where` could not tell their columns apart"
        )));
    }
    if value.trim().is_empty() || from.condition.trim().is_empty() {
        return Err(Problem::Refused(
            "`from` needs a value (`up` or `down`) and a non-empty `where`".to_string(),
        ));
    }
    Ok(CrossTable {
        changed: changed.clone(),
        other,
        target: target.to_string(),
        value: value.to_string(),
        condition: from.condition.clone(),
    })
}

impl CrossTable {
    /// The value for a row of the changed table in scope under its own name (the backfill's
    /// `UPDATE "schema"."changed"`, or `row` in a trigger): a scalar subquery, so a `where`
    /// matching two rows is an error rather than an arbitrary pick, and no match is NULL.
    fn value_sql(&self, row: Option<&str>) -> String {
        let joined = row
            .map(|row| format!(", (SELECT {row}.*) AS {}", quote_ident(&self.changed.name)))
            .unwrap_or_default();
        format!(
            "(SELECT ({}) FROM {} AS {}{joined} WHERE ({}))",
            self.value,
            self.other.quoted(),
            quote_ident(&self.other.name),
            self.condition
        )
    }

    /// The expression of the changed table's sync rule (its row is the trigger's NEW).
    pub fn rule_expression(&self) -> String {
        self.value_sql(Some("NEW"))
    }

    /// The expression of the backfill's assignment (its row is the UPDATE's target).
    pub fn backfill_expression(&self) -> String {
        self.value_sql(None)
    }

    /// The name of the trigger on the other table, and of its function.
    pub fn trigger_name(&self) -> String {
        names::derived(&["_zdm_from", &self.changed.name, &self.target])
    }

    /// The function of the other table's trigger: when the version `direction` serves
    /// writes a row of the other table, every row of the changed table that matched it
    /// before (UPDATE, DELETE) or matches it now (INSERT, UPDATE) gets its value again (the
    /// changed table's own sync trigger computes the same value on that UPDATE).
    fn function_sql(&self, version_schema: &str, direction: Direction) -> String {
        let writer = names::new_version_writer(version_schema, &self.other.name);
        let serves = match direction {
            Direction::Up => format!("NOT {writer}"),
            Direction::Down => writer,
        };
        let other_alias = quote_ident(&self.other.name);
        let matches = |row: &str| {
            format!(
                "EXISTS (SELECT FROM (SELECT {row}.*) AS {other_alias} WHERE ({}))",
                self.condition
            )
        };
        let update = |condition: String| {
            format!(
                "UPDATE {} SET {} = {} WHERE {condition};",
                self.changed.quoted(),
                quote_ident(&self.target),
                self.value_sql(None)
            )
        };
        let body = format!(
            "BEGIN\n  IF NOT ({serves}) THEN\n    RETURN NULL;\n  END IF;\n  IF TG_OP = 'INSERT' THEN\n    {}\n  ELSIF TG_OP = 'DELETE' THEN\n    {}\n  ELSIF OLD IS DISTINCT FROM NEW THEN\n    {}\n  END IF;\n  RETURN NULL;\nEND\n",
            update(matches("NEW")),
            update(matches("OLD")),
            update(format!("{} OR {}", matches("OLD"), matches("NEW"))),
        );
        let tag = names::dollar_tag(&body);
        format!(
            "CREATE OR REPLACE FUNCTION {}.{}() RETURNS trigger LANGUAGE plpgsql AS {tag}\n{body}{tag}",
            quote_ident(version_schema),
            quote_ident(&self.trigger_name())
        )
    }

    /// Expand (after the changed table's column exists): the other table's function and
    /// trigger, locked like every trigger zdm installs (lock_timeout and retry); the
    /// trigger is dropped with the sync triggers at contract and first thing at rollback,
    /// its function with the sync functions. Recorded on both tables, so whichever table's
    /// final-shape step comes first drops every trigger that reads the other's columns.
    pub fn plan(&self, ws: &mut Workspace, direction: Direction) -> Result<(), Problem> {
        let name = self.trigger_name();
        let described = match direction {
            Direction::Up => "the old version's",
            Direction::Down => "the new version's",
        };
        let description = format!(
            "recompute {}.{} when {described} writes to {} change it",
            self.changed, self.target, self.other
        );
        ws.push_expand(Step::sql(
            Phase::Expand,
            format!("create the function that will {description}"),
            self.function_sql(&ws.version_schema, direction),
            LockLevel::None,
            Vec::new(),
        ));
        ws.push_expand(
            Step::sql(
                Phase::Expand,
                format!("install the trigger that will {description}"),
                format!(
                    "CREATE OR REPLACE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {}.{}()",
                    quote_ident(&name),
                    self.other.quoted(),
                    quote_ident(&ws.version_schema),
                    quote_ident(&name)
                ),
                LockLevel::ShareRowExclusive,
                vec![Workspace::label(&self.other)],
            )
            .creating(PromiseKind::Trigger, &self.other, &name, false),
        );
        ws.extra_functions.push(name.clone());
        let on_other = (self.other.clone(), name);
        let changed_sync = (
            self.changed.clone(),
            names::sync_trigger(&self.changed.name),
        );
        ws.state(&self.changed)?
            .extra_triggers
            .push(on_other.clone());
        let other = ws.state(&self.other)?;
        for trigger in [on_other, changed_sync] {
            if !other.extra_triggers.contains(&trigger) {
                other.extra_triggers.push(trigger);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> CrossTable {
        CrossTable {
            changed: QualifiedName {
                schema: "public".to_string(),
                name: "profiles".to_string(),
            },
            other: QualifiedName {
                schema: "public".to_string(),
                name: "users".to_string(),
            },
            target: "email".to_string(),
            value: "users.email".to_string(),
            condition: "users.id = profiles.user_id".to_string(),
        }
    }

    #[test]
    fn the_value_is_a_scalar_subquery_over_the_other_table() {
        assert_eq!(
            rule().backfill_expression(),
            "(SELECT (users.email) FROM \"public\".\"users\" AS \"users\" WHERE (users.id = profiles.user_id))"
        );
        assert_eq!(
            rule().rule_expression(),
            "(SELECT (users.email) FROM \"public\".\"users\" AS \"users\", (SELECT NEW.*) AS \"profiles\" WHERE (users.id = profiles.user_id))"
        );
    }

    #[test]
    fn the_other_tables_function_serves_one_version_and_every_kind_of_write() {
        let up = rule().function_sql("public_v2", Direction::Up);
        assert!(up.contains("IF NOT (NOT (CASE WHEN 'public_v2'"), "{up}");
        assert!(up.contains("TG_OP = 'INSERT'"), "{up}");
        assert!(up.contains("TG_OP = 'DELETE'"), "{up}");
        assert!(
            up.contains("UPDATE \"public\".\"profiles\" SET \"email\" = (SELECT"),
            "{up}"
        );
        assert!(
            up.contains("(SELECT OLD.*) AS \"users\" WHERE (users.id = profiles.user_id))"),
            "{up}"
        );
        let down = rule().function_sql("public_v2", Direction::Down);
        assert!(down.contains("IF NOT ((CASE WHEN 'public_v2'"), "{down}");
    }
}
