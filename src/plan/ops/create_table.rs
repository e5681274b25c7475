//! create_table: a new, empty table, created whole at expand (nothing reads it yet, so its
//! constraints cost nothing; a foreign key briefly takes SHARE ROW EXCLUSIVE on the
//! referenced table). Visible to both versions; rollback drops it.

use std::collections::BTreeSet;

use crate::db::catalog::{Column, Constraint, ConstraintKind, ForeignKeyTarget, Index, Table};
use crate::db::quote_ident;
use crate::migration::operation::{CreateTable, IdentityKind};
use crate::plan::error::Problem;
use crate::plan::names::{self, column_list};
use crate::plan::ops::set_comment;
use crate::plan::ops::{check_columns, on_delete_clause, physical_column_list, PlanOperation};
use crate::plan::step::{LockLevel, Phase, Step};
use crate::plan::workspace::Workspace;

impl PlanOperation for CreateTable {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table]
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
        ws.created_table(&table)
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
