//! set_comment: a table's or a column's comment (pgroll's `set_comment`, `comment` of
//! alter_column). A comment is documentation of the schema the migration leads to, and both
//! versions read the same physical table: it is set at contract, under the column's and
//! the table's final names, in the table's final-shape step (catalog only, brief), so a
//! rollback has nothing to undo and the old version's schema never shows the new text.

use crate::db::catalog::QualifiedName;
use crate::db::quote_ident;
use crate::migration::operation::SetComment;
use crate::plan::error::Problem;
use crate::plan::names::literal;
use crate::plan::ops::PlanOperation;
use crate::plan::step::{LockLevel, Phase, Step};
use crate::plan::workspace::{TableState, Workspace};

impl PlanOperation for SetComment {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        if let Some(column) = &self.column {
            ws.existing_column(&table, column)?;
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        let id = match &self.column {
            Some(column) => Some(ws.column_id(&table, column)?),
            None => None,
        };
        let comment = self.comment.clone().filter(|c| !c.is_empty());
        let state = ws.state(&table)?;
        // A later comment of the same object replaces an earlier one.
        state.comments.retain(|(other, _)| *other != id);
        state.comments.push((id, comment));
        Ok(())
    }
}

/// Expand: the comment of a column created by this migration (add_column, create_table),
/// right after it: the column is new, so a rollback drops its comment with it. COMMENT takes
/// SHARE UPDATE EXCLUSIVE (reads and writes go on), catalog only.
pub(crate) fn new_column_step(table: &QualifiedName, column: &str, comment: &str) -> Step {
    let text = if comment.is_empty() {
        "NULL".to_string()
    } else {
        literal(comment)
    };
    Step::sql(
        Phase::Expand,
        format!("comment column {table}.{column}"),
        format!(
            "COMMENT ON COLUMN {}.{} IS {text}",
            table.quoted(),
            quote_ident(column)
        ),
        LockLevel::ShareUpdateExclusive,
        vec![table.to_string()],
    )
}

/// Contract: the statements of the table's final-shape step (`table` quoted, before the
/// table's rename) setting the comments, on the columns' final names; a column dropped
/// later in the migration has none to set.
pub(crate) fn contract_sql(state: &TableState, table: &str) -> String {
    state
        .comments
        .iter()
        .filter_map(|(id, comment)| {
            let text = comment.as_deref().map_or("NULL".to_string(), literal);
            match id {
                None => Some(format!("  COMMENT ON TABLE {table} IS {text};\n")),
                Some(id) => state.column_name(*id).map(|column| {
                    format!(
                        "  COMMENT ON COLUMN {table}.{} IS {text};\n",
                        quote_ident(column)
                    )
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_use_the_final_column_name_and_quote_the_text() {
        let mut state = TableState::for_test(&[("phone", "_zdm_new_phone"), ("gone", "gone")]);
        state
            .comments
            .push((Some(0), Some("it's E.164".to_string())));
        state.comments.push((None, None));
        state.columns.retain(|c| c.name != "gone");
        state.comments.push((Some(1), Some("dropped".to_string())));
        assert_eq!(
            contract_sql(&state, "\"public\".\"t\""),
            "  COMMENT ON COLUMN \"public\".\"t\".\"phone\" IS 'it''s E.164';\n  COMMENT ON TABLE \"public\".\"t\" IS NULL;\n"
        );
    }
}
