//! create_table: a new, empty table, created whole at expand (nothing reads it yet, so its
//! constraints cost nothing; a foreign key briefly takes SHARE ROW EXCLUSIVE on the
//! referenced table). Visible to both versions; rollback drops it.
//!
//! With `up` (extract a relation into a new table), its rows come from an existing table:
//! one per row `filter` admits, computed by `values`. An AFTER trigger on the existing table
//! carries the old version's inserts, updates and deletes into the new table; the backfill
//! walks the existing table in key order and has that trigger copy each row not copied yet.
//! The other direction (the new version's writes to the new table, back into the existing
//! table's columns) is drop_column's `down` with `from` (`plan::cross_table`).

use std::collections::BTreeSet;

use crate::db::catalog::QualifiedName;
use crate::db::catalog::{Column, Constraint, ConstraintKind, ForeignKeyTarget, Index, Table};
use crate::db::quote_ident;
use crate::migration::operation::{CreateTable, CreateTableUp, IdentityKind};
use crate::plan::error::Problem;
use crate::plan::names::{self, column_list};
use crate::plan::ops::set_comment;
use crate::plan::ops::{check_columns, on_delete_clause, physical_column_list, PlanOperation};
use crate::plan::step::{Backfill, LockLevel, Phase, Step, StepAction};
use crate::plan::workspace::Workspace;

impl PlanOperation for CreateTable {
    fn tables(&self) -> Vec<&str> {
        let mut tables = vec![self.table.as_str()];
        tables.extend(self.up.as_ref().map(|up| up.table.as_str()));
        tables
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.qualify(&self.table);
        if ws.catalog.relation_exists(&table) || ws.original.relation_exists(&table) {
            return Err(Problem::TableExists(table.to_string()));
        }
        if self.columns.is_empty() {
            return Err(Problem::Refused(format!("table {table} has no columns")));
        }
        let mut seen = BTreeSet::new();
        for column in &self.columns {
            if !seen.insert(column.name.as_str()) {
                return Err(Problem::ColumnExists {
                    table: table.to_string(),
                    column: column.name.clone(),
                });
            }
            if let Some(reference) = &column.references {
                let target = ws.existing_table(&reference.table)?;
                check_columns(ws, &target, &reference.columns)?;
                on_delete_clause(reference.on_delete.as_deref())?;
            }
            check_generated(column)?;
        }
        let inline_keys = self.columns.iter().filter(|c| c.primary_key).count();
        if let Some(key) = &self.primary_key {
            if inline_keys > 0 {
                return Err(Problem::Refused(
                    "give the primary key either as primary_key = [...] or on columns, not both"
                        .to_string(),
                ));
            }
            for name in key {
                if !seen.contains(name.as_str()) {
                    return Err(Problem::NoColumn {
                        table: table.to_string(),
                        column: name.clone(),
                        hint: crate::suggest::did_you_mean(name, seen.iter().copied()),
                    });
                }
            }
        } else if inline_keys > 1 {
            return Err(Problem::Refused(
                "several columns say primary_key = true: use primary_key = [...] for a composite key"
                    .to_string(),
            ));
        }
        if let Some(up) = &self.up {
            Extract::resolve(ws, self, &table, up)?;
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let table = ws.qualify(&self.table);
        let key: Vec<String> = match &self.primary_key {
            Some(key) => key.clone(),
            None => self
                .columns
                .iter()
                .filter(|c| c.primary_key)
                .map(|c| c.name.clone())
                .collect(),
        };
        let mut lines = Vec::new();
        let mut constraints = Vec::new();
        let mut indexes = Vec::new();
        let mut locked = vec![table.to_string()];
        for column in &self.columns {
            let mut line = format!("{} {}", quote_ident(&column.name), column.data_type);
            if !column.nullable || key.contains(&column.name) {
                line.push_str(" NOT NULL");
            }
            if let Some(default) = &column.default {
                line.push_str(&format!(" DEFAULT {default}"));
            }
            // The table is new and empty: an identity or stored generated column costs
            // nothing here (on a filled table it would rewrite it).
            line.push_str(&column.generated_sql());
            lines.push(line);
            if column.unique {
                let name = names::derived(&[&table.name, &column.name, "key"]);
                lines.push(format!(
                    "CONSTRAINT {} UNIQUE ({})",
                    quote_ident(&name),
                    quote_ident(&column.name)
                ));
                indexes.push(unique_index(&name, vec![column.name.clone()]));
                constraints.push(constraint(
                    &name,
                    ConstraintKind::Unique,
                    vec![column.name.clone()],
                    Some(name.clone()),
                ));
            }
            if let Some(check) = &column.check {
                let name = names::derived(&[&table.name, &column.name, "check"]);
                lines.push(format!("CONSTRAINT {} CHECK ({check})", quote_ident(&name)));
                constraints.push(constraint(
                    &name,
                    ConstraintKind::Check,
                    vec![column.name.clone()],
                    None,
                ));
            }
            if let Some(reference) = &column.references {
                let name = names::derived(&[&table.name, &column.name, "fkey"]);
                let target = ws.existing_table(&reference.table)?;
                let physical_target = ws.physical_table(&target);
                lines.push(format!(
                    "CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}){}",
                    quote_ident(&name),
                    quote_ident(&column.name),
                    physical_target.quoted(),
                    physical_column_list(ws, &target, &reference.columns),
                    on_delete_clause(reference.on_delete.as_deref())?
                ));
                locked.push(physical_target.to_string());
                let mut fk = constraint(
                    &name,
                    ConstraintKind::ForeignKey,
                    vec![column.name.clone()],
                    None,
                );
                fk.references = Some(ForeignKeyTarget {
                    table: target,
                    columns: reference.columns.clone(),
                });
                constraints.push(fk);
            }
        }
        if !key.is_empty() {
            let name = names::derived(&[&table.name, "pkey"]);
            lines.push(format!(
                "CONSTRAINT {} PRIMARY KEY ({})",
                quote_ident(&name),
                column_list(&key)
            ));
            let mut index = unique_index(&name, key.clone());
            index.primary = true;
            indexes.push(index);
            constraints.push(constraint(
                &name,
                ConstraintKind::PrimaryKey,
                key.clone(),
                Some(name.clone()),
            ));
        }
        let lock = if locked.len() > 1 {
            LockLevel::ShareRowExclusive
        } else {
            LockLevel::None
        };
        ws.push_expand(Step::sql(
            Phase::Expand,
            format!("create table {table} (new and empty)"),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (\n  {}\n)",
                table.quoted(),
                lines.join(",\n  ")
            ),
            lock,
            locked.clone(),
        ));
        for column in &self.columns {
            if let Some(comment) = &column.comment {
                ws.push_expand(set_comment::new_column_step(&table, &column.name, comment));
            }
        }
        // Its foreign keys go with it, which locks the tables they reference too.
        ws.push_rollback(Step::sql(
            Phase::Rollback,
            format!("drop table {table}"),
            format!("DROP TABLE IF EXISTS {}", table.quoted()),
            LockLevel::AccessExclusive,
            locked,
        ));
        ws.catalog.tables.push(Table {
            name: table.clone(),
            columns: self
                .columns
                .iter()
                .map(|c| Column {
                    name: c.name.clone(),
                    data_type: c.data_type.clone(),
                    nullable: c.nullable && !key.contains(&c.name),
                    default: c.default.clone(),
                    identity: c.identity.map(|kind| {
                        match kind {
                            IdentityKind::Always => "always",
                            IdentityKind::ByDefault => "by default",
                        }
                        .to_string()
                    }),
                    generated: c.generated.is_some(),
                })
                .collect(),
            constraints,
            indexes,
            triggers: Vec::new(),
            grants: Vec::new(),
        });
        ws.catalog.normalize();
        ws.created_table(&table)?;
        if let Some(up) = &self.up {
            Extract::resolve(ws, self, &table, up)?.plan(ws)?;
        }
        Ok(())
    }
}

/// The primary key of a table being created, as declared.
fn declared_key(op: &CreateTable) -> Vec<String> {
    match &op.primary_key {
        Some(key) => key.clone(),
        None => op
            .columns
            .iter()
            .filter(|c| c.primary_key)
            .map(|c| c.name.clone())
            .collect(),
    }
}

/// A new table filled from an existing one, resolved against the workspace.
#[derive(Debug, Clone)]
struct Extract {
    /// The existing table (physical: neither created nor renamed by this migration).
    source: QualifiedName,
    /// The key the backfill walks the existing table by.
    source_key: Vec<String>,
    /// The new table.
    target: QualifiedName,
    /// Its primary key: of several rows of one existing row, the old version's writes
    /// change the first by it (the one its `down` values show).
    key: Vec<String>,
    /// `(new column, value over the existing row)`, in the new table's column order.
    values: Vec<(String, String)>,
    condition: String,
    filter: Option<String>,
}

impl Extract {
    fn resolve(
        ws: &Workspace,
        op: &CreateTable,
        target: &QualifiedName,
        up: &CreateTableUp,
    ) -> Result<Extract, Problem> {
        let source = ws.existing_table(&up.table)?;
        if ws.is_created(&source) {
            return Err(Problem::Refused(format!(
                "`up` reads {source}, which this migration creates: a new table is filled from a table both versions already have"
            )));
        }
        if ws.physical_table(&source) != source {
            return Err(Problem::Refused(format!(
                "table {source} is renamed earlier in this migration: `up` names tables as the database has them; rename it in a later migration"
            )));
        }
        if source.name == target.name {
            return Err(Problem::Refused(format!(
                "`up` reads {source}, which has the same name as the new table: `values` and `where` could not tell their columns apart"
            )));
        }
        let source_key = ws.batch_key(&source, &source.to_string())?;
        let key = declared_key(op);
        if key.is_empty() {
            return Err(Problem::Refused(format!(
                "table {target} is filled from {source} but has no primary key: give it one (the old version's writes update its rows by it)"
            )));
        }
        for (column, value) in &up.values {
            let Some(declared) = op.columns.iter().find(|c| &c.name == column) else {
                return Err(Problem::NoColumn {
                    table: target.to_string(),
                    column: column.clone(),
                    hint: crate::suggest::did_you_mean(
                        column,
                        op.columns.iter().map(|c| c.name.as_str()),
                    ),
                });
            };
            if declared.generated.is_some() || declared.identity == Some(IdentityKind::Always) {
                return Err(Problem::Refused(format!(
                    "column {column} of {target} is generated or `identity = \"always\"`: it cannot take a value from `up`"
                )));
            }
            if value.trim().is_empty() {
                return Err(Problem::Refused(format!("`up.values.{column}` is empty")));
            }
        }
        for column in &op.columns {
            let required = !column.nullable || key.contains(&column.name);
            let filled = column.default.is_some()
                || column.identity.is_some()
                || column.generated.is_some()
                || up.values.contains_key(&column.name);
            if required && !filled {
                return Err(Problem::Refused(format!(
                    "column {} of {target} is NOT NULL without a default: give its value in `up.values`",
                    column.name
                )));
            }
        }
        if up.condition.trim().is_empty() {
            return Err(Problem::Refused(
                "`up.where` is empty: say which rows of the new table go with a row of the existing one"
                    .to_string(),
            ));
        }
        let values = op
            .columns
            .iter()
            .filter_map(|c| {
                up.values
                    .get(&c.name)
                    .map(|value| (c.name.clone(), value.clone()))
            })
            .collect();
        Ok(Extract {
            source,
            source_key,
            target: target.clone(),
            key,
            values,
            condition: up.condition.clone(),
            filter: up.filter.clone(),
        })
    }

    /// The trigger on the existing table (and its function).
    fn trigger_name(&self) -> String {
        names::derived(&["_zdm_extract", &self.source.name, &self.target.name])
    }

    /// The existing table's row `row` (NEW or OLD) in scope under the table's name.
    fn row(&self, row: &str) -> String {
        format!("(SELECT {row}.*) AS {}", quote_ident(&self.source.name))
    }

    /// The values' select list over the row in scope.
    fn value_list(&self) -> String {
        self.values
            .iter()
            .map(|(_, value)| format!("({value})"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether the existing row `row` has a row in the new table (its `filter`).
    fn admits(&self, row: &str) -> String {
        match &self.filter {
            Some(filter) => format!(
                "coalesce((SELECT ({filter}) FROM {}), false)",
                self.row(row)
            ),
            None => "true".to_string(),
        }
    }

    /// The new table's rows that go with the existing row `row` (a FROM ... WHERE ...).
    fn matching(&self, row: &str) -> String {
        format!(
            "FROM {} AS {}, {} WHERE ({})",
            self.target.quoted(),
            quote_ident(&self.target.name),
            self.row(row),
            self.condition
        )
    }

    fn insert_sql(&self) -> String {
        let columns: Vec<&String> = self.values.iter().map(|(c, _)| c).collect();
        format!(
            "INSERT INTO {} ({}) SELECT {} FROM {};",
            self.target.quoted(),
            column_list(&columns),
            self.value_list(),
            self.row("NEW")
        )
    }

    fn delete_sql(&self) -> String {
        format!(
            "DELETE FROM {} AS {} USING {} WHERE ({});",
            self.target.quoted(),
            quote_ident(&self.target.name),
            self.row("OLD"),
            self.condition
        )
    }

    /// The old version's update of an existing row changes the first of its rows in the new
    /// table (by key): the one the old version's `down` values show.
    fn update_sql(&self) -> String {
        let target = quote_ident(&self.target.name);
        let values = "\"_zdm_values\"";
        let set: Vec<String> = self
            .values
            .iter()
            .map(|(column, _)| format!("{0} = {values}.{0}", quote_ident(column)))
            .collect();
        let named: Vec<String> = self
            .values
            .iter()
            .map(|(column, value)| format!("({value}) AS {}", quote_ident(column)))
            .collect();
        let key: Vec<String> = self
            .key
            .iter()
            .map(|c| format!("{target}.{}", quote_ident(c)))
            .collect();
        let key = key.join(", ");
        format!(
            "UPDATE {} AS {target} SET {} FROM (SELECT {} FROM {}) AS {values} WHERE ({key}) = (SELECT {key} {} ORDER BY {key} LIMIT 1);",
            self.target.quoted(),
            set.join(", "),
            named.join(", "),
            self.row("NEW"),
            self.matching("OLD"),
        )
    }

    /// The function of the existing table's trigger: serves the old version's writes (and
    /// the backfill's, which writes as the old version).
    fn function_sql(&self, version_schema: &str) -> String {
        let new_writer = names::new_version_writer(version_schema, &self.source.name);
        let changed = format!(
            "EXISTS (SELECT {list} FROM {new} EXCEPT SELECT {list} FROM {old})",
            list = self.value_list(),
            new = self.row("NEW"),
            old = self.row("OLD"),
        );
        let body = format!(
            "BEGIN\n  IF {new_writer} THEN\n    RETURN NULL;\n  END IF;\n  IF TG_OP = 'DELETE' THEN\n    {delete}\n  ELSIF TG_OP = 'UPDATE' AND EXISTS (SELECT {old_rows}) THEN\n    IF NOT {admits} THEN\n      {delete}\n    ELSIF {changed} THEN\n      {update}\n    END IF;\n  ELSIF {admits} THEN\n    {insert}\n  END IF;\n  RETURN NULL;\nEND\n",
            delete = self.delete_sql(),
            old_rows = self.matching("OLD"),
            admits = self.admits("NEW"),
            update = self.update_sql(),
            insert = self.insert_sql(),
        );
        let tag = names::dollar_tag(&body);
        format!(
            "CREATE OR REPLACE FUNCTION {}.{}() RETURNS trigger LANGUAGE plpgsql AS {tag}\n{body}{tag}",
            quote_ident(version_schema),
            quote_ident(&self.trigger_name())
        )
    }

    /// Expand: the trigger on the existing table; backfill: the existing rows, in batches
    /// by its key, each row not yet in the new table touched (a no-op update) so the trigger
    /// copies it in the batch's transaction. The trigger goes at contract (with the existing
    /// table's final shape, or the new table's) and first thing at rollback.
    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let name = self.trigger_name();
        let description = format!(
            "carry the old version's writes to {} into {}",
            self.source, self.target
        );
        let function = self.function_sql(&ws.version_schema);
        crate::plan::cross_table::install_after_row_trigger(
            ws,
            &self.source,
            &name,
            &description,
            function,
        );
        let first = quote_ident(&self.source_key[0]);
        let mut predicate = format!("NOT EXISTS (SELECT {})", self.matching_in_scope());
        if let Some(filter) = &self.filter {
            predicate = format!("({filter}) AND {predicate}");
        }
        ws.push_backfill(Step {
            phase: Phase::Backfill,
            description: format!(
                "fill {} from the existing rows of {}, in batches by its key (each row not copied yet is touched, and its trigger copies it)",
                self.target, self.source
            ),
            action: StepAction::Backfill(Backfill {
                table: self.source.quoted(),
                key_columns: self.source_key.clone(),
                assignments: vec![(self.source_key[0].clone(), first)],
                predicate: Some(predicate),
            }),
            lock: LockLevel::RowExclusive,
            locked: vec![self.source.to_string(), self.target.to_string()],
            rewrites: false,
            scans: true,
            unchecked: false,
            creates: Vec::new(),
        });
        let trigger = (self.source.clone(), name);
        ws.state(&self.source)?.extra_triggers.push(trigger.clone());
        ws.state(&self.target)?.extra_triggers.push(trigger);
        Ok(())
    }

    /// The new table's rows that go with the backfill's row (the UPDATE's target, in scope
    /// under the existing table's own name).
    fn matching_in_scope(&self) -> String {
        format!(
            "FROM {} AS {} WHERE ({})",
            self.target.quoted(),
            quote_ident(&self.target.name),
            self.condition
        )
    }
}

fn constraint(
    name: &str,
    kind: ConstraintKind,
    columns: Vec<String>,
    index: Option<String>,
) -> Constraint {
    Constraint {
        name: name.to_string(),
        kind,
        columns,
        definition: String::new(),
        validated: true,
        index,
        references: None,
    }
}

fn unique_index(name: &str, columns: Vec<String>) -> Index {
    Index {
        name: name.to_string(),
        columns: columns.into_iter().map(Some).collect(),
        unique: true,
        primary: false,
        valid: true,
        definition: String::new(),
    }
}

/// The combinations PostgreSQL refuses, said before anything runs.
pub(super) fn check_generated(
    column: &crate::migration::operation::ColumnDef,
) -> Result<(), Problem> {
    let name = &column.name;
    if column.identity.is_some() && column.generated.is_some() {
        return Err(Problem::Refused(format!(
            "column {name} cannot be both an identity and a generated column"
        )));
    }
    if column.sequence.is_some() && column.identity.is_none() {
        return Err(Problem::Refused(format!(
            "column {name} has `sequence` options but no `identity`"
        )));
    }
    if column.default.is_some() && (column.identity.is_some() || column.generated.is_some()) {
        return Err(Problem::Refused(format!(
            "column {name} is an identity or generated column: it cannot also have a `default`"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract() -> Extract {
        let table = |name: &str| QualifiedName {
            schema: "public".to_string(),
            name: name.to_string(),
        };
        Extract {
            source: table("users"),
            source_key: vec!["id".to_string()],
            target: table("user_accounts"),
            key: vec!["user_id".to_string(), "account_id".to_string()],
            values: vec![
                ("user_id".to_string(), "users.id".to_string()),
                ("account_id".to_string(), "users.account_id".to_string()),
            ],
            condition: "user_accounts.user_id = users.id".to_string(),
            filter: Some("users.account_id IS NOT NULL".to_string()),
        }
    }

    #[test]
    fn the_trigger_serves_the_old_version_and_every_kind_of_write() {
        let sql = extract().function_sql("public_v2");
        assert!(sql.contains("IF (CASE WHEN 'public_v2'"), "{sql}");
        assert!(
            sql.contains("DELETE FROM \"public\".\"user_accounts\" AS \"user_accounts\" USING (SELECT OLD.*) AS \"users\" WHERE (user_accounts.user_id = users.id);"),
            "{sql}"
        );
        assert!(
            sql.contains("INSERT INTO \"public\".\"user_accounts\" (\"user_id\", \"account_id\") SELECT (users.id), (users.account_id) FROM (SELECT NEW.*) AS \"users\";"),
            "{sql}"
        );
        assert!(
            sql.contains("coalesce((SELECT (users.account_id IS NOT NULL) FROM (SELECT NEW.*) AS \"users\"), false)"),
            "{sql}"
        );
    }

    #[test]
    fn an_old_version_update_changes_the_first_row_by_key_only_when_the_values_change() {
        let sql = extract().function_sql("public_v2");
        assert!(
            sql.contains("EXISTS (SELECT (users.id), (users.account_id) FROM (SELECT NEW.*) AS \"users\" EXCEPT SELECT (users.id), (users.account_id) FROM (SELECT OLD.*) AS \"users\")"),
            "{sql}"
        );
        assert!(
            sql.contains("WHERE (\"user_accounts\".\"user_id\", \"user_accounts\".\"account_id\") = (SELECT \"user_accounts\".\"user_id\", \"user_accounts\".\"account_id\" FROM \"public\".\"user_accounts\" AS \"user_accounts\", (SELECT OLD.*) AS \"users\" WHERE (user_accounts.user_id = users.id) ORDER BY \"user_accounts\".\"user_id\", \"user_accounts\".\"account_id\" LIMIT 1);"),
            "{sql}"
        );
    }
}
