//! drop_enum: the type is dropped at contract, after every table's final shape and every
//! dropped table (so a column that stops using it in the same migration is gone first).
//! Refused while a column of the new shape uses it or casts to it in its default (kept by
//! a change_type away from the enum); at contract the step checks again and
//! names any column that uses it by then, and `DROP TYPE` without CASCADE refuses while a
//! function or domain does: nothing that depends on the type is dropped with it.

use crate::db::catalog::QualifiedName;
use crate::migration::operation::DropEnum;
use crate::plan::error::Problem;
use crate::plan::names::{do_block, literal};
use crate::plan::ops::create_enum::to_regtype;
use crate::plan::ops::PlanOperation;
use crate::plan::step::{LockLevel, Phase, Step};
use crate::plan::workspace::Workspace;

impl PlanOperation for DropEnum {
    fn tables(&self) -> Vec<&str> {
        vec![&self.name]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let name = ws.existing_enum(&self.name)?.name.clone();
        let users = ws.columns_of_type(&name);
        if !users.is_empty() {
            return Err(Problem::Refused(format!(
                "enum type {name} is still used by column {}: drop those columns or change their type first (in this migration or an earlier one)",
                users.join(", ")
            )));
        }
        let defaults: Vec<String> = ws
            .catalog
            .tables
            .iter()
            .flat_map(|t| t.columns.iter().map(move |c| (t, c)))
            .filter(|(_, c)| {
                c.default
                    .as_deref()
                    .is_some_and(|d| sql_uses_type(d, false, &name.schema, &name.name))
            })
            .map(|(t, c)| format!("{}.{}", t.name, c.name))
            .collect();
        if !defaults.is_empty() {
            return Err(Problem::Refused(format!(
                "enum type {name} is still used by the default of column {}: give it a default of its new type (set_default) or drop it first, or DROP TYPE would fail at contract",
                defaults.join(", ")
            )));
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let name = ws.existing_enum(&self.name)?.name.clone();
        ws.contract_types.push(Step::sql(
            Phase::Contract,
            format!("drop enum type {name} (refused while a column, function or domain uses it)"),
            drop_unused_sql(&name),
            LockLevel::None,
            Vec::new(),
        ));
        ws.catalog.enums.retain(|e| e.name != name);
        Ok(())
    }
}

/// Drops the type unless a column uses it (then raises, naming them); a re-run after the
/// drop does nothing.
fn drop_unused_sql(name: &QualifiedName) -> String {
    do_block(&format!(
        "  IF {regtype} IS NULL THEN\n    RETURN;\n  END IF;\n  IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.atttypid = {regtype} AND a.attnum > 0 AND NOT a.attisdropped) THEN\n    RAISE EXCEPTION 'enum type % is still used by column %', {label}, (SELECT string_agg(a.attrelid::regclass::text || '.' || quote_ident(a.attname), ', ') FROM pg_attribute a WHERE a.atttypid = {regtype} AND a.attnum > 0 AND NOT a.attisdropped);\n  END IF;\n  DROP TYPE {quoted};\n",
        regtype = to_regtype(name),
        label = literal(&name.to_string()),
        quoted = name.quoted(),
    ))
}

/// Whether SQL text (a function body, a column default) casts to type `schema.name` (`::name`, `::schema.name`,
/// `CAST(… AS name)`) or, in PL/pgSQL, declares a variable of it (`v name;` before the
/// first BEGIN), read with PostgreSQL's lexer so that a column or string that merely
/// contains the name is not a use. A body the lexer refuses counts as a use: better a
/// question than a function broken silently.
pub fn sql_uses_type(source: &str, plpgsql: bool, schema: &str, name: &str) -> bool {
    use pg_query::protobuf::Token;
    let Ok(scanned) = pg_query::scan(source) else {
        return true;
    };
    let text = |t: &pg_query::protobuf::ScanToken| -> String {
        let raw = source
            .get(t.start as usize..t.end as usize)
            .unwrap_or_default();
        match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            Some(quoted) => quoted.replace("\"\"", "\""),
            None => raw.to_lowercase(),
        }
    };
    let tokens = &scanned.tokens;
    let mut declaring = plpgsql;
    for (i, token) in tokens.iter().enumerate() {
        if token.token == Token::BeginP as i32 {
            declaring = false;
        }
        if text(token) != name {
            continue;
        }
        // `schema.name`: look before the schema.
        let mut before = i;
        if i >= 2 && tokens[i - 1].token == Token::Ascii46 as i32 {
            if text(&tokens[i - 2]) != schema {
                continue;
            }
            before = i - 2;
        }
        let Some(previous) = before.checked_sub(1).map(|p| &tokens[p]) else {
            continue;
        };
        let cast = previous.token == Token::Typecast as i32 || previous.token == Token::As as i32;
        let declared = declaring && previous.token == Token::Ident as i32;
        if cast || declared {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::sql_uses_type;

    #[test]
    fn a_body_uses_a_type_by_casting_or_declaring_not_by_naming_a_column_or_string() {
        let uses = |source: &str, plpgsql| sql_uses_type(source, plpgsql, "public", "priority");
        assert!(uses("SELECT 'low'::priority", false));
        assert!(uses("SELECT 'low'::public.priority", false));
        assert!(uses("SELECT CAST(x AS \"priority\") FROM t", false));
        assert!(uses("DECLARE p priority; BEGIN RETURN 1; END", true));
        assert!(!uses(
            "SELECT priority FROM orders WHERE priority = 'low'",
            false
        ));
        assert!(!uses("SELECT 'priority'::text", false));
        assert!(!uses("SELECT 'low'::other.priority", false));
        assert!(!uses(
            "DECLARE n int; BEGIN SELECT priority INTO n FROM t; RETURN n; END",
            true
        ));
        assert!(!uses("SELECT x AS prio FROM t", false));
    }
}
