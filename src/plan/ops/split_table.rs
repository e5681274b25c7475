//! split_table: some columns move to a new table keyed by the old one's primary key (which
//! also references it, ON DELETE CASCADE). The new version sees the old table without them
//! and the new table with them; the old version keeps seeing the old table whole. Two
//! triggers keep them in step until contract: a write by the old version to the old table
//! is copied (upserted) into the new one, a write by the new version to the new table is
//! copied back. The backfill touches every old row in batches, which copies it. Contract
//! drops the moved columns from the old table. Both triggers are dropped with the sync
//! triggers (`sync_trigger`: in the old table's final-shape step, first thing at rollback),
//! their functions with the sync functions.

use crate::db::catalog::{Column, Constraint, ConstraintKind, ForeignKeyTarget, Index, Table};
use crate::db::quote_ident;
use crate::migration::operation::SplitTable;
use crate::plan::error::Problem;
use crate::plan::names::{self, column_list};
use crate::plan::ops::{refuse_created, refuse_reshaped, PlanOperation};
use crate::plan::step::{Backfill, LockLevel, Phase, PromiseKind, Step, StepAction};
use crate::plan::workspace::Workspace;
use crate::suggest::did_you_mean;

impl PlanOperation for SplitTable {
    fn tables(&self) -> Vec<&str> {
        vec![&self.table, &self.new_table]
    }

    fn validate(&self, ws: &Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        refuse_created(ws, &table)?;
        let new_table = ws.qualify(&self.new_table);
        if ws.catalog.relation_exists(&new_table) || ws.original.relation_exists(&new_table) {
            return Err(Problem::TableExists(new_table.to_string()));
        }
        let found = ws.table(&table)?;
        let key = found
            .primary_key()
            .map(|pk| pk.columns.clone())
            .ok_or_else(|| {
                Problem::Refused(format!(
                    "table {table} has no primary key to key the new table {new_table} by"
                ))
            })?;
        if self.columns.is_empty() {
            return Err(Problem::Refused("split_table moves no columns".to_string()));
        }
        for name in &self.columns {
            let column = found.column(name).ok_or_else(|| Problem::NoColumn {
                table: table.to_string(),
                column: name.clone(),
                hint: did_you_mean(name, found.columns.iter().map(|c| c.name.as_str())),
            })?;
            refuse_reshaped(ws, &table, name)?;
            if key.contains(name) {
                return Err(Problem::Refused(format!(
                    "column {name} is part of the primary key of {table}, which stays"
                )));
            }
            if !column.nullable && column.default.is_none() {
                return Err(Problem::Refused(format!(
                    "column {name} of {table} is NOT NULL without a default, so the new version could not insert into {table} without it: make it nullable or give it a default first"
                )));
            }
            let dependents = found.dependents_of(name);
            if !dependents.is_empty() {
                return Err(Problem::Refused(format!(
                    "column {name} of {table} is used by {}; drop them first, recreate them on {new_table} after",
                    dependents.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn plan(&self, ws: &mut Workspace) -> Result<(), Problem> {
        let table = ws.existing_table(&self.table)?;
        let physical = ws.physical_table(&table);
        let new_table = ws.qualify(&self.new_table);
        let version = quote_ident(&ws.version_schema);
        let found = ws.table(&table)?.clone();
        let key: Vec<String> = found
            .primary_key()
            .map(|pk| pk.columns.clone())
            .unwrap_or_default();
        let physical_key: Vec<String> = key.iter().map(|k| ws.physical_column(&table, k)).collect();
        let moved: Vec<Column> = self
            .columns
            .iter()
            .filter_map(|name| found.column(name).cloned())
            .collect();
        let physical_moved: Vec<String> = self
            .columns
            .iter()
            .map(|c| ws.physical_column(&table, c))
            .collect();

        // The new table: the key (same types), the moved columns, keyed and referencing.
        let mut lines: Vec<String> = key
            .iter()
            .filter_map(|k| found.column(k))
            .map(|c| format!("{} {} NOT NULL", quote_ident(&c.name), c.data_type))
            .collect();
        for column in &moved {
            let mut line = format!("{} {}", quote_ident(&column.name), column.data_type);
            if !column.nullable {
                line.push_str(" NOT NULL");
            }
            if let Some(default) = &column.default {
                line.push_str(&format!(" DEFAULT {default}"));
            }
            lines.push(line);
        }
        let pkey = names::fit_identifier(&format!("{}_pkey", new_table.name));
        let fkey = names::fit_identifier(&format!("{}_{}_fkey", new_table.name, table.name));
        lines.push(format!(
            "CONSTRAINT {} PRIMARY KEY ({})",
            quote_ident(&pkey),
            column_list(&key)
        ));
        lines.push(format!(
            "CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE CASCADE",
            quote_ident(&fkey),
            column_list(&key),
            physical.quoted(),
            column_list(&physical_key)
        ));
        ws.push_expand(Step::sql(
            Phase::Expand,
            format!("create table {new_table} for the columns moving out of {table}"),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (\n  {}\n)",
                new_table.quoted(),
                lines.join(",\n  ")
            ),
            LockLevel::ShareRowExclusive,
            vec![new_table.to_string(), physical.to_string()],
        ));

        // Old version → new table.
        // Who is the new version (once it is published): see names::new_version_writer.
        let is_new_on_old = names::new_version_writer(&ws.version_schema, &table.name);
        let is_new_on_new = names::new_version_writer(&ws.version_schema, &new_table.name);
        let old_function = names::fit_identifier(&format!("_zdm_split_{}", physical.name));
        let new_columns: Vec<String> = key.iter().chain(self.columns.iter()).cloned().collect();
        let old_values: Vec<String> = physical_key
            .iter()
            .chain(physical_moved.iter())
            .map(|c| format!("NEW.{}", quote_ident(c)))
            .collect();
        let updates: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
            .collect();
        let body = format!(
            "BEGIN\n  IF NOT ({is_new_on_old}) THEN\n    INSERT INTO {} ({}) VALUES ({})\n    ON CONFLICT ({}) DO UPDATE SET {};\n  END IF;\n  RETURN NULL;\nEND\n",
            new_table.quoted(),
            column_list(&new_columns),
            old_values.join(", "),
            column_list(&key),
            updates.join(", ")
        );
        // New version → old table.
        let new_function = names::fit_identifier(&format!("_zdm_split_{}", new_table.name));
        let assignments: Vec<String> = physical_moved
            .iter()
            .zip(self.columns.iter())
            .map(|(physical_column, name)| {
                format!(
                    "{} = NEW.{}",
                    quote_ident(physical_column),
                    quote_ident(name)
                )
            })
            .collect();
        let matches: Vec<String> = physical_key
            .iter()
            .zip(key.iter())
            .map(|(physical_column, name)| {
                format!(
                    "{} = NEW.{}",
                    quote_ident(physical_column),
                    quote_ident(name)
                )
            })
            .collect();
        let back_body = format!(
            "BEGIN\n  IF {is_new_on_new} THEN\n    UPDATE {} SET {} WHERE {};\n  END IF;\n  RETURN NULL;\nEND\n",
            physical.quoted(),
            assignments.join(", "),
            matches.join(" AND ")
        );
        for (function, body, on, description) in [
            (
                &old_function,
                body,
                &physical,
                format!("copy the old version's writes to {table} into {new_table}"),
            ),
            (
                &new_function,
                back_body,
                &new_table,
                format!("copy the new version's writes to {new_table} back into {table}"),
            ),
        ] {
            let tag = names::dollar_tag(&body);
            ws.push_expand(Step::sql(
                Phase::Expand,
                format!("create the function that will {description}"),
                format!(
                    "CREATE OR REPLACE FUNCTION {version}.{}() RETURNS trigger LANGUAGE plpgsql AS {tag}\n{body}{tag}",
                    quote_ident(function)
                ),
                LockLevel::None,
                Vec::new(),
            ));
            ws.push_expand(Step::sql(
                Phase::Expand,
                format!("install the trigger that will {description}"),
                format!(
                    "CREATE OR REPLACE TRIGGER {} AFTER INSERT OR UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {version}.{}()",
                    quote_ident(function),
                    on.quoted(),
                    quote_ident(function)
                ),
                LockLevel::ShareRowExclusive,
                vec![on.to_string()],
            )
            .creating(PromiseKind::Trigger, on, function, false));
            ws.extra_functions.push(function.clone());
        }
        ws.push_backfill(Step {
            phase: Phase::Backfill,
            description: format!(
                "copy the existing rows of {table} into {new_table}, in batches (each touched row is copied by the trigger)"
            ),
            action: StepAction::Backfill(Backfill {
                table: physical.quoted(),
                key_columns: physical_key.clone(),
                assignments: vec![(physical_key[0].clone(), quote_ident(&physical_key[0]))],
                predicate: None,
            }),
            lock: LockLevel::RowExclusive,
            locked: vec![physical.to_string(), new_table.to_string()],
            rewrites: false,
            scans: true,
            unchecked: false,
            creates: Vec::new(),
        });
        // Rollback: the triggers go first (generic), then this table.
        ws.push_rollback(Step::sql(
            Phase::Rollback,
            format!("drop table {new_table}"),
            format!("DROP TABLE IF EXISTS {}", new_table.quoted()),
            LockLevel::AccessExclusive,
            // Its foreign key goes with it, which locks the old table too.
            vec![new_table.to_string(), physical.to_string()],
        ));

        // The simulated catalog: the new table, and the old one without the moved columns.
        let mut key_columns: Vec<Column> = key
            .iter()
            .filter_map(|k| found.column(k).cloned())
            .map(|mut c| {
                c.identity = None;
                c.default = None;
                c.nullable = false;
                c
            })
            .collect();
        key_columns.extend(moved.iter().cloned());
        ws.catalog.tables.push(Table {
            name: new_table.clone(),
            columns: key_columns,
            constraints: vec![
                Constraint {
                    name: pkey.clone(),
                    kind: ConstraintKind::PrimaryKey,
                    columns: key.clone(),
                    definition: String::new(),
                    validated: true,
                    index: Some(pkey.clone()),
                    references: None,
                },
                Constraint {
                    name: fkey,
                    kind: ConstraintKind::ForeignKey,
                    columns: key.clone(),
                    definition: String::new(),
                    validated: true,
                    index: None,
                    references: Some(ForeignKeyTarget {
                        table: table.clone(),
                        columns: key.clone(),
                    }),
                },
            ],
            indexes: vec![Index {
                name: pkey,
                columns: key.iter().cloned().map(Some).collect(),
                unique: true,
                primary: true,
                valid: true,
                definition: String::new(),
            }],
            triggers: Vec::new(),
            grants: found.grants.clone(),
        });
        ws.catalog.normalize();
        ws.created_table(&new_table)?;
        // Both triggers go in the old table's contract step, in the same transaction as the
        // column drops, so no write ever fires a trigger naming a dropped column.
        let state = ws.state(&table)?;
        state.extra_triggers.push((physical.clone(), old_function));
        state.extra_triggers.push((new_table.clone(), new_function));
        for name in &self.columns {
            ws.remove_column(&table, name)?;
        }
        Ok(())
    }
}
