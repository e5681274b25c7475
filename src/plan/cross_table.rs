//! Values from another table (add_column's `up`, drop_column's `down`, each with `from`):
//! the correlated subquery that computes a row's value from the matching row of the other
//! table, and the trigger on the other table that recomputes the changed table's rows when
//! the other one is written by the version the rule serves. When the other table is created
//! by this migration (a relation extracted into it, `create_table` with `up`), several of its
//! rows may match: the rule takes the first by its primary key. A NOT NULL column filled from
//! another table is relaxed while the migration is live ([`relax_not_null`]): the new version
//! writes its row before the other table's row exists.

use crate::db::catalog::QualifiedName;
use crate::db::quote_ident;
use crate::migration::operation::FromTable;
use crate::plan::error::Problem;
use crate::plan::names::{self, do_block};
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
    /// The primary key of `other` when this migration creates it: of several matching
    /// rows, the first by it (an existing table's `where` matching two rows is an error).
    pub first_by: Option<Vec<String>>,
}

/// Checks `from` for a rule on `changed` and resolves it. Both tables are named in the SQL
/// by their bare names, so neither may be renamed earlier in this migration, `changed` may
/// not be created by it (the other table may: a relation extracted into a new table), and
/// they must be two different tables with different names.
pub(crate) fn resolve(
    ws: &Workspace,
    changed: &QualifiedName,
    target: &str,
    value: &str,
    from: &FromTable,
) -> Result<CrossTable, Problem> {
    let other = ws.existing_table(&from.table)?;
    if ws.is_created(changed) {
        return Err(Problem::Refused(format!(
            "table {changed} is created by this migration: it has no old version to fill from another table"
        )));
    }
    for table in [changed, &other] {
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
    let first_by = match ws.is_created(&other) {
        true => Some(
            ws.table(&other)?
                .primary_key()
                .map(|key| key.columns.clone())
                .ok_or_else(|| {
                    Problem::Refused(format!(
                        "table {other} is created by this migration without a primary key: `from` takes, of several matching rows, the first by it"
                    ))
                })?,
        ),
        false => None,
    };
    Ok(CrossTable {
        changed: changed.clone(),
        other,
        target: target.to_string(),
        value: value.to_string(),
        condition: from.condition.clone(),
        first_by,
    })
}

impl CrossTable {
    /// The value for a row of the changed table in scope under its own name (the backfill's
    /// `UPDATE "schema"."changed"`, or `row` in a trigger): a scalar subquery, so a `where`
    /// matching two rows is an error rather than an arbitrary pick, and no match is NULL;
    /// in a table this migration creates, the first matching row by its key.
    fn value_sql(&self, row: Option<&str>) -> String {
        let joined = row
            .map(|row| format!(", (SELECT {row}.*) AS {}", quote_ident(&self.changed.name)))
            .unwrap_or_default();
        let other = quote_ident(&self.other.name);
        let first = self
            .first_by
            .as_ref()
            .map(|key| {
                let key: Vec<String> = key
                    .iter()
                    .map(|c| format!("{other}.{}", quote_ident(c)))
                    .collect();
                format!(" ORDER BY {} LIMIT 1", key.join(", "))
            })
            .unwrap_or_default();
        format!(
            "(SELECT ({}) FROM {} AS {other}{joined} WHERE ({}){first})",
            self.value,
            self.other.quoted(),
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
        let function = self.function_sql(&ws.version_schema, direction);
        install_after_row_trigger(ws, &self.other, &name, &description, function);
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

/// A NOT NULL column whose `down` comes from another table (drop_column with `from`): the new
/// version writes its row before the other table's row that gives the value (a user, then
/// its `user_accounts` row), so the column cannot stay NOT NULL while the migration is live.
/// Expand installs a guard that keeps NOT NULL for the old version's own writes (an INSERT
/// of NULL, an UPDATE setting it to NULL: refused with PostgreSQL's not-null error), then
/// drops the NOT NULL (catalog only, brief ACCESS EXCLUSIVE). The guard goes with the other
/// triggers at contract (the column with it) and at rollback, which then gives the NOT NULL
/// back without a blocking scan: CHECK NOT VALID, VALIDATE (reads and writes go on), SET NOT
/// NULL (skips its scan thanks to the check), drop the check. VALIDATE stops the rollback if
/// the new version left a row with no value there (no matching row in the other table):
/// give those rows a value and run rollback again.
pub(crate) fn relax_not_null(
    ws: &mut Workspace,
    table: &QualifiedName,
    column: &str,
) -> Result<(), Problem> {
    let name = names::derived(&["_zdm_notnull", &table.name, column]);
    let quoted_column = quote_ident(column);
    let body = format!(
        "BEGIN\n  IF NOT {} THEN\n    RAISE EXCEPTION USING ERRCODE = 'not_null_violation', MESSAGE = format('null value in column \"%s\" of relation \"%s\" violates not-null constraint', {}, {}), COLUMN = {}, TABLE = {}, SCHEMA = {};\n  END IF;\n  RETURN NEW;\nEND\n",
        names::new_version_writer(&ws.version_schema, &table.name),
        names::literal(column),
        names::literal(&table.name),
        names::literal(column),
        names::literal(&table.name),
        names::literal(&table.schema),
    );
    let tag = names::dollar_tag(&body);
    let label = Workspace::label(table);
    let description = format!("keep {table}.{column} NOT NULL for the old version's writes");
    ws.push_expand(Step::sql(
        Phase::Expand,
        format!("create the function that will {description}"),
        format!(
            "CREATE OR REPLACE FUNCTION {}.{}() RETURNS trigger LANGUAGE plpgsql AS {tag}\n{body}{tag}",
            quote_ident(&ws.version_schema),
            quote_ident(&name)
        ),
        LockLevel::None,
        Vec::new(),
    ));
    ws.push_expand(
        Step::sql(
            Phase::Expand,
            format!("install the trigger that will {description}"),
            format!(
                "CREATE OR REPLACE TRIGGER {} BEFORE INSERT OR UPDATE OF {quoted_column} ON {} FOR EACH ROW WHEN (NEW.{quoted_column} IS NULL) EXECUTE FUNCTION {}.{}()",
                quote_ident(&name),
                table.quoted(),
                quote_ident(&ws.version_schema),
                quote_ident(&name)
            ),
            LockLevel::ShareRowExclusive,
            vec![label.clone()],
        )
        .creating(PromiseKind::Trigger, table, &name, false),
    );
    ws.push_expand(Step::sql(
        Phase::Expand,
        format!(
            "drop NOT NULL from {table}.{column} while the migration is live (the new version's rows get it from another table, once that table's row is written)"
        ),
        format!(
            "ALTER TABLE {} ALTER COLUMN {quoted_column} DROP NOT NULL",
            table.quoted()
        ),
        LockLevel::AccessExclusive,
        vec![label.clone()],
    ));
    ws.extra_functions.push(name.clone());
    ws.state(table)?.extra_triggers.push((table.clone(), name));

    let check = names::not_null_check(&table.name, column);
    ws.push_rollback(Step::sql(
        Phase::Rollback,
        format!("prove {table}.{column} NOT NULL again: add check {check} (new rows only)"),
        do_block(&format!(
            "  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = {} AND conname = {}) THEN\n    ALTER TABLE {} ADD CONSTRAINT {} CHECK ({quoted_column} IS NOT NULL) NOT VALID;\n  END IF;\n",
            names::regclass(&table.quoted()),
            names::literal(&check),
            table.quoted(),
            quote_ident(&check)
        )),
        LockLevel::AccessExclusive,
        vec![label.clone()],
    ));
    ws.push_rollback(
        Step::sql(
            Phase::Rollback,
            format!(
                "validate check {check} on {table} (scans, reads and writes go on; fails if the new version left a row without {column})"
            ),
            format!(
                "ALTER TABLE {} VALIDATE CONSTRAINT {}",
                table.quoted(),
                quote_ident(&check)
            ),
            LockLevel::ShareUpdateExclusive,
            vec![label.clone()],
        )
        .scanning(),
    );
    ws.push_rollback(Step::sql(
        Phase::Rollback,
        format!("give {table}.{column} its NOT NULL back (no scan: the check proves it) and drop the check"),
        do_block(&format!(
            "  ALTER TABLE {0} ALTER COLUMN {quoted_column} SET NOT NULL;\n  ALTER TABLE {0} DROP CONSTRAINT IF EXISTS {1};\n",
            table.quoted(),
            quote_ident(&check)
        )),
        LockLevel::AccessExclusive,
        vec![label],
    ));
    Ok(())
}

/// Creates `function` (its name `name`, in the version schema) and an AFTER INSERT OR
/// UPDATE OR DELETE row trigger of the same name on `table` calling it: the trigger zdm
/// puts on a table whose writes another table follows. SHARE ROW EXCLUSIVE on `table`,
/// brief, with the usual lock_timeout and retries; its function goes with the version
/// schema.
pub(crate) fn install_after_row_trigger(
    ws: &mut Workspace,
    table: &QualifiedName,
    name: &str,
    description: &str,
    function: String,
) {
    ws.push_expand(Step::sql(
        Phase::Expand,
        format!("create the function that will {description}"),
        function,
        LockLevel::None,
        Vec::new(),
    ));
    ws.push_expand(
        Step::sql(
            Phase::Expand,
            format!("install the trigger that will {description}"),
            format!(
                "CREATE OR REPLACE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {}.{}()",
                quote_ident(name),
                table.quoted(),
                quote_ident(&ws.version_schema),
                quote_ident(name)
            ),
            LockLevel::ShareRowExclusive,
            vec![Workspace::label(table)],
        )
        .creating(PromiseKind::Trigger, table, name, false),
    );
    ws.extra_functions.push(name.to_string());
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
            first_by: None,
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
    fn in_a_created_table_the_first_matching_row_by_key_is_taken() {
        let mut created = rule();
        created.first_by = Some(vec!["user_id".to_string(), "account_id".to_string()]);
        assert_eq!(
            created.backfill_expression(),
            "(SELECT (users.email) FROM \"public\".\"users\" AS \"users\" WHERE (users.id = profiles.user_id) ORDER BY \"users\".\"user_id\", \"users\".\"account_id\" LIMIT 1)"
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
