//! create_index: CREATE [UNIQUE] INDEX CONCURRENTLY (SHARE UPDATE EXCLUSIVE: reads and
//! writes go on), outside a transaction, re-runnable after a failed build (the engine drops
//! the INVALID index it left). Rollback drops it concurrently.

use crate::db::catalog::Index;
use crate::db::quote_ident;
use crate::migration::operation::CreateIndex;
use crate::plan::error::Problem;
use crate::plan::ops::{concurrent_index_step, drop_index_concurrently_step, PlanOperation};
use crate::plan::step::Phase;
use crate::plan::workspace::Workspace;
use crate::suggest::did_you_mean;

impl PlanOperation for CreateIndex {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        ws.check_name_free(&table.schema, &self.name)?;
        if self.columns.is_empty() {
            return Err(Problem::Refused(format!(
                "index {} has no columns",
                self.name
            )));
        }
        let found = ws.table(&table)?;
        for key in &self.columns {
            if is_plain_name(key) && found.column(key).is_none() {
                return Err(Problem::NoColumn {
                    table: table.to_string(),
                    column: key.clone(),
                    hint: did_you_mean(key, found.columns.iter().map(|c| c.name.as_str())),
                });
            }
        }
        if let Some(method) = &self.method {
            if !is_plain_name(method) {
                return Err(Problem::Refused(format!(
                    "index method {method:?} is not a name such as btree, gin, gist, brin or hash"
                )));
            }
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        let physical_table = ws.physical_table(&table);
        let keys: Vec<String> = self
            .columns
            .iter()
            .map(|key| {
                if is_plain_name(key) {
                    quote_ident(&ws.physical_column(&table, key))
                } else {
                    // An expression (`lower(email)`), used as written.
                    format!("({key})")
                }
            })
            .collect();
        let mut rest = String::new();
        if let Some(method) = &self.method {
            rest.push_str(&format!("USING {} ", method.to_ascii_lowercase()));
        }
        rest.push_str(&format!("({})", keys.join(", ")));
        if let Some(predicate) = &self.predicate {
            rest.push_str(&format!(" WHERE {predicate}"));
        }
        ws.push_expand(concurrent_index_step(
            format!(
                "build {}index {} on {} concurrently (reads and writes go on)",
                if self.unique { "unique " } else { "" },
                self.name,
                physical_table
            ),
            &physical_table,
            &self.name,
            self.unique,
            &rest,
            true,
        ));
        ws.push_rollback(drop_index_concurrently_step(
            Phase::Rollback,
            &physical_table,
            &self.name,
        ));
        let definition = format!(
            "CREATE {}INDEX {} ON {} {rest}",
            if self.unique { "UNIQUE " } else { "" },
            self.name,
            physical_table
        );
        let columns = self
            .columns
            .iter()
            .map(|key| is_plain_name(key).then(|| key.clone()))
            .collect();
        ws.table_mut(&table)?.indexes.push(Index {
            name: self.name.clone(),
            columns,
            unique: self.unique,
            primary: false,
            valid: true,
            definition,
        });
        Ok(())
    }
}

/// A bare column name (as opposed to an expression).
fn is_plain_name(text: &str) -> bool {
    !text.is_empty()
        && text.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !text.starts_with(|c: char| c.is_ascii_digit())
}
