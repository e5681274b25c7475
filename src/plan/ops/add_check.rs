//! add_check: ADD CONSTRAINT ... CHECK NOT VALID at expand (a brief lock, no scan; new rows
//! are checked from then on, by both versions), VALIDATE after the backfill (scans without
//! blocking reads or writes). The expression reads the columns as the new version names
//! them: a column this migration holds in a shadow column (change_type, or this operation's
//! own per-column `up`/`down`, `shadow::Values`) is checked there, so the constraint binds
//! the new version's values and follows the shadow column into place at contract.

use crate::db::catalog::{Constraint, ConstraintKind, QualifiedName};
use crate::db::quote_ident;
use crate::migration::operation::AddCheck;
use crate::plan::error::Problem;
use crate::plan::ops::{add_constraint_sql, drop_constraint_step, validate_step, PlanOperation};
use crate::plan::shadow::Values;
use crate::plan::step::{LockLevel, Phase, Step};
use crate::plan::workspace::Workspace;

impl PlanOperation for AddCheck {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        ws.check_name_free(&table.schema, &self.name)?;
        if self.check.trim().is_empty() {
            return Err(Problem::Refused(
                "the check expression is empty".to_string(),
            ));
        }
        self.values().validate(ws, &self.table, None, None)
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        self.values().plan(ws, &self.table)?;
        let table = ws.existing_table(&self.table)?;
        let physical_table = ws.physical_table(&table);
        let label = physical_table.to_string();
        let check = physical_expression(ws, &table, &self.check)?;
        ws.push_expand_constraint(
            Step::sql(
                Phase::Expand,
                format!(
                    "add CHECK {} NOT VALID on {} (new rows only, no scan)",
                    self.name, physical_table
                ),
                add_constraint_sql(
                    &physical_table,
                    &self.name,
                    &format!("CHECK ({check}) NOT VALID"),
                ),
                LockLevel::AccessExclusive,
                vec![label.clone()],
            ),
            &physical_table,
            &self.name,
            true,
        );
        ws.push_validate(validate_step(&physical_table, &self.name, None));
        ws.push_rollback(drop_constraint_step(
            &physical_table,
            &self.name,
            vec![label],
        ));
        ws.table_mut(&table)?.constraints.push(Constraint {
            name: self.name.clone(),
            kind: ConstraintKind::Check,
            columns: Vec::new(),
            definition: format!("CHECK ({})", self.check),
            validated: true,
            index: None,
            references: None,
        });
        Ok(())
    }
}

impl AddCheck {
    fn values(&self) -> Values<'_> {
        Values {
            up: &self.up,
            down: &self.down,
        }
    }
}

/// The check expression with each column of the new shape named by its physical column
/// until contract (a shadow column, a renamed column's old name): every column reference
/// (PostgreSQL's parser finds them, so string literals, function names and other tables'
/// columns are left alone), bare or qualified by the table's name, is rewritten in place. A
/// name that is no column of the new shape (a physical name, as the expression could be
/// written before) stays as written.
fn physical_expression(
    ws: &Workspace,
    table: &QualifiedName,
    expression: &str,
) -> Result<String, Problem> {
    const BEFORE: &str = "SELECT (";
    let wrapped = format!("{BEFORE}{expression}\n)");
    let parsed = pg_query::parse(&wrapped, pg_query::ParserOptions::DEFAULT)
        .map_err(|e| Problem::Refused(format!("the check expression does not parse: {e}")))?;
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    for (node, ..) in parsed.protobuf.nodes() {
        let pg_query::NodeRef::ColumnRef(reference) = node else {
            continue;
        };
        let fields = crate::migration::sql::column_ref_fields(reference);
        if fields.contains(&"*") {
            continue; // `t.*`
        }
        let name = match fields.as_slice() {
            [name] => *name,
            [qualifier, name] if *qualifier == table.name => *name,
            _ => continue,
        };
        let Some(map) = ws.state_of(table) else {
            continue;
        };
        let Some(column) = map.column(name) else {
            continue;
        };
        if column.physical == column.name {
            continue;
        }
        let Ok(start) = usize::try_from(reference.location) else {
            continue;
        };
        // The reference's last identifier, as written (bare or quoted).
        let mut at = start;
        let mut last = start..start;
        for _ in 0..fields.len() {
            let end = identifier_end(&wrapped, at);
            last = at..end;
            at = end + 1; // past the `.`
        }
        edits.push((last, quote_ident(&column.physical)));
    }
    edits.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    let mut text = wrapped;
    for (range, replacement) in edits {
        if range.end <= text.len() && range.start < range.end {
            text.replace_range(range, &replacement);
        }
    }
    let inner = text
        .strip_prefix(BEFORE)
        .and_then(|t| t.strip_suffix("\n)"))
        .unwrap_or(expression);
    Ok(inner.to_string())
}

/// The end (exclusive byte offset) of the identifier starting at `start`: a quoted one up to
/// its closing quote (`""` inside it is a quote), a bare one up to its last letter, digit,
/// `_` or `$`.
fn identifier_end(text: &str, start: usize) -> usize {
    let bytes = text.as_bytes();
    if bytes.get(start) == Some(&b'"') {
        let mut i = start + 1;
        while i < bytes.len() {
            if bytes[i] == b'"' {
                if bytes.get(i + 1) == Some(&b'"') {
                    i += 2;
                    continue;
                }
                return i + 1;
            }
            i += 1;
        }
        return bytes.len();
    }
    text[start..]
        .char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '$'))
        .map(|(i, _)| start + i)
        .unwrap_or(text.len())
}
