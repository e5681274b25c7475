//! The planner's working state for one migration: the simulated catalog (how the database
//! looks once the migration is complete, which later operations validate against), where
//! each table and column lives physically until contract and what the operations recorded
//! for it (sync rules, contract pieces), and the steps gathered per ordering slot until
//! `assemble` puts them in running order.

use crate::db::catalog::{Catalog, Column, EnumType, QualifiedName, Table};
use crate::plan::error::Problem;
use crate::plan::names;
use crate::plan::step::{PromiseKind, Step};
use crate::plan::sync_trigger::SyncRule;
use crate::suggest::did_you_mean;

/// The schema tables live in when an operation does not name one.
pub const DEFAULT_SCHEMA: &str = "public";

/// A column of a table's new shape and where its data lives until contract.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ColumnMap {
    pub id: usize,
    /// Its name in the new version (and after contract).
    pub name: String,
    /// The physical column holding it until contract.
    pub physical: String,
}

/// What a migration does to one table, beyond the final shape kept in the catalog.
#[derive(Debug, Clone)]
pub(crate) struct TableState {
    /// Name in the new version and after contract.
    pub name: QualifiedName,
    /// Physical name until contract.
    pub physical: QualifiedName,
    pub created: bool,
    pub dropped: bool,
    /// The new shape's columns in order.
    pub columns: Vec<ColumnMap>,
    next_id: usize,
    /// Physical columns before the migration: what the old version's rows are made of.
    pub old_columns: Vec<String>,
    /// Applied when the old version writes: fill the new shape (`sync_trigger`).
    pub up: Vec<SyncRule>,
    /// Applied when the new version writes: fill the old shape.
    pub down: Vec<SyncRule>,
    /// Column defaults the new version's view sets (by column id; `NULL` drops one), in the
    /// publish step (`version_view`).
    pub view_defaults: Vec<(usize, String)>,
    /// Physical columns dropped at contract (`final_shape`).
    pub drop_columns: Vec<String>,
    /// Columns made NOT NULL at contract (by id), with the CHECK that proves it
    /// (`ops::set_not_null`).
    pub not_null: Vec<(usize, String)>,
    /// Defaults set (or dropped) at contract, by column id (`ops::set_default`).
    pub defaults: Vec<(usize, Option<String>)>,
    /// Constraints dropped at contract (`ops::drop_constraint`).
    pub drop_constraints: Vec<String>,
    /// Triggers an operation installed beyond the sync trigger (split_table's), as
    /// (table, trigger): dropped in this table's contract step and first thing in a rollback.
    pub extra_triggers: Vec<(QualifiedName, String)>,
    /// Indexes and constraints rebuilt on a shadow column under a temporary name, renamed to
    /// their real name at contract (after the old column, and the originals, are dropped;
    /// `shadow`).
    pub rename_indexes: Vec<(String, String)>,
    pub rename_constraints: Vec<(String, String)>,
    /// Other tables the contract step locks: dropping a foreign key (alone, or with its
    /// column) takes ACCESS EXCLUSIVE on the referenced table too.
    pub also_locked: Vec<String>,
    /// Comments set at contract (`ops::set_comment`): the table's (`None`) or a column's
    /// (by id), `None` removing it.
    pub comments: Vec<(Option<usize>, Option<String>)>,
    /// The primary key attached at contract (`ops::add_primary_key`): its name, the same as
    /// the unique index built at expand.
    pub primary_key: Option<String>,
    /// Columns made identity columns at contract (`identity`, add_column with `identity`).
    pub identities: Vec<crate::plan::identity::Identity>,
}

impl TableState {
    fn from_table(table: &Table, created: bool) -> Self {
        let columns: Vec<ColumnMap> = table
            .columns
            .iter()
            .enumerate()
            .map(|(id, column)| ColumnMap {
                id,
                name: column.name.clone(),
                physical: column.name.clone(),
            })
            .collect();
        TableState {
            name: table.name.clone(),
            physical: table.name.clone(),
            created,
            dropped: false,
            next_id: columns.len(),
            columns,
            old_columns: if created {
                Vec::new()
            } else {
                table.columns.iter().map(|c| c.name.clone()).collect()
            },
            up: Vec::new(),
            down: Vec::new(),
            view_defaults: Vec::new(),
            drop_columns: Vec::new(),
            not_null: Vec::new(),
            defaults: Vec::new(),
            drop_constraints: Vec::new(),
            extra_triggers: Vec::new(),
            rename_indexes: Vec::new(),
            rename_constraints: Vec::new(),
            also_locked: Vec::new(),
            comments: Vec::new(),
            primary_key: None,
            identities: Vec::new(),
        }
    }

    pub fn column(&self, name: &str) -> Option<&ColumnMap> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The name (in the new shape) of the column with this id, if it is still there.
    pub(crate) fn column_name(&self, id: usize) -> Option<&str> {
        self.columns
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.name.as_str())
    }

    /// Whether the old and new versions need a trigger to keep each other's columns filled.
    pub fn needs_sync(&self) -> bool {
        !self.up.is_empty() || !self.down.is_empty()
    }
}

/// Everything the planner knows and has decided so far for one migration. The step lists
/// are ordering slots: `assemble` runs them in the order docs/planner.md gives.
#[derive(Debug)]
pub struct Workspace<'a> {
    pub migration: &'a str,
    /// The schema this migration versions.
    pub schema: String,
    pub version_schema: String,
    /// The database before the migration.
    pub original: &'a Catalog,
    /// The database as it will be after contract.
    pub catalog: Catalog,
    pub(crate) tables: Vec<TableState>,
    pub(crate) expand: Vec<Step>,
    /// Constraints added at expand: they run after the sync triggers, so that every row
    /// the old version writes already has the values they require.
    pub(crate) expand_constraints: Vec<Step>,
    /// Defaults of columns a sync rule fills: set once the sync triggers are installed.
    /// Set with the column, a row the old version inserts before the trigger exists keeps
    /// the default, and the backfill (which fills the column's NULLs) never sees it.
    pub(crate) expand_defaults: Vec<Step>,
    pub(crate) backfill: Vec<Step>,
    pub(crate) validate: Vec<Step>,
    pub(crate) contract: Vec<Step>,
    /// Types dropped at contract (drop_enum): after every other contract step, once the
    /// columns and tables that used them are gone.
    pub(crate) contract_types: Vec<Step>,
    /// Each operation's undo, in operation order (run in reverse).
    pub(crate) rollback: Vec<Vec<Step>>,
    /// Trigger functions operations put in the version schema beyond the sync functions.
    pub(crate) extra_functions: Vec<String>,
    /// The shadow columns planned so far, which a later change of the same column composes
    /// with (`shadow::Chain`).
    pub(crate) shadows: Vec<crate::plan::shadow::Chain>,
}

impl<'a> Workspace<'a> {
    pub fn new(migration: &'a str, schema: &str, original: &'a Catalog) -> Self {
        Workspace {
            migration,
            schema: schema.to_string(),
            version_schema: names::version_schema(schema, migration),
            original,
            catalog: original.clone(),
            tables: Vec::new(),
            expand: Vec::new(),
            expand_constraints: Vec::new(),
            expand_defaults: Vec::new(),
            backfill: Vec::new(),
            validate: Vec::new(),
            contract: Vec::new(),
            contract_types: Vec::new(),
            rollback: Vec::new(),
            extra_functions: Vec::new(),
            shadows: Vec::new(),
        }
    }

    /// `orders` or `billing.orders` as a qualified name (no check that it exists).
    pub fn qualify(&self, name: &str) -> QualifiedName {
        qualify(name)
    }

    /// The table `name` names in the new shape, or an error with a "did you mean".
    pub fn existing_table(&self, name: &str) -> Result<QualifiedName, Problem> {
        let qualified = self.qualify(name);
        if self.catalog.table(&qualified).is_some() {
            return Ok(qualified);
        }
        let candidates = self
            .catalog
            .tables
            .iter()
            .filter(|t| t.name.schema == qualified.schema)
            .map(|t| t.name.name.as_str());
        Err(Problem::NoTable {
            hint: did_you_mean(&qualified.name, candidates),
            table: qualified.to_string(),
        })
    }

    /// A table of the new shape (the caller checked it exists).
    pub fn table(&self, name: &QualifiedName) -> Result<&Table, Problem> {
        self.catalog.table(name).ok_or_else(|| Problem::NoTable {
            table: name.to_string(),
            hint: String::new(),
        })
    }

    pub fn table_mut(&mut self, name: &QualifiedName) -> Result<&mut Table, Problem> {
        self.catalog
            .table_mut(name)
            .ok_or_else(|| Problem::NoTable {
                table: name.to_string(),
                hint: String::new(),
            })
    }

    /// A column of the new shape, or an error with a "did you mean".
    pub fn existing_column(&self, table: &QualifiedName, column: &str) -> Result<&Column, Problem> {
        let found = self.table(table)?;
        found.column(column).ok_or_else(|| Problem::NoColumn {
            table: table.to_string(),
            column: column.to_string(),
            hint: did_you_mean(column, found.columns.iter().map(|c| c.name.as_str())),
        })
    }

    /// The enum type `name` names in the new shape, or an error with a "did you mean".
    pub fn existing_enum(&self, name: &str) -> Result<&EnumType, Problem> {
        let qualified = self.qualify(name);
        if let Some(found) = self.catalog.enum_type(&qualified) {
            return Ok(found);
        }
        let candidates = self
            .catalog
            .enums
            .iter()
            .filter(|e| e.name.schema == qualified.schema)
            .map(|e| e.name.name.as_str());
        Err(Problem::NoEnum {
            hint: did_you_mean(&qualified.name, candidates),
            name: qualified.to_string(),
        })
    }

    /// The columns of the new shape whose type is the enum `name` or an array of it, as
    /// `table.column`.
    pub fn columns_of_type(&self, name: &QualifiedName) -> Vec<String> {
        self.catalog
            .tables
            .iter()
            .flat_map(|t| t.columns.iter().map(move |c| (t, c)))
            .filter(|(t, c)| names::is_type(&c.data_type, name, &t.name.schema))
            .map(|(t, c)| format!("{}.{}", t.name, c.name))
            .collect()
    }

    /// Fails when a new constraint or index name would collide with an existing relation,
    /// index or constraint of the schema.
    pub fn check_name_free(&self, schema: &str, name: &str) -> Result<(), Problem> {
        let taken = self
            .catalog
            .relation_exists(&QualifiedName::new(schema, name))
            || self.catalog.index_owner(schema, name).is_some()
            || self
                .catalog
                .tables
                .iter()
                .filter(|t| t.name.schema == schema)
                .any(|t| t.constraint(name).is_some());
        if taken {
            Err(Problem::NameTaken {
                schema: schema.to_string(),
                name: name.to_string(),
            })
        } else {
            Ok(())
        }
    }

    /// The transition state of a table, created on first use.
    pub(crate) fn state(&mut self, table: &QualifiedName) -> Result<&mut TableState, Problem> {
        if let Some(index) = self.tables.iter().position(|t| &t.name == table) {
            return Ok(&mut self.tables[index]);
        }
        let found = self.table(table)?;
        let mut state = TableState::from_table(found, false);
        // The old version's row is the table as it was before this migration.
        if let Some(before) = self.original.table(table) {
            state.old_columns = before.columns.iter().map(|c| c.name.clone()).collect();
        }
        self.tables.push(state);
        let last = self.tables.len() - 1;
        Ok(&mut self.tables[last])
    }

    /// The transition state of a table if the migration touched it.
    pub(crate) fn state_of(&self, table: &QualifiedName) -> Option<&TableState> {
        self.tables.iter().find(|t| &t.name == table)
    }

    /// The key a backfill of `physical` walks (its primary key, or a unique NOT NULL
    /// key), as the table was before this migration; refused, naming `label`, without one.
    pub fn batch_key(&self, physical: &QualifiedName, label: &str) -> Result<Vec<String>, Problem> {
        self.original
            .table(physical)
            .and_then(|t| t.batch_key())
            .ok_or_else(|| {
                Problem::Refused(format!(
                    "table {label} has no primary key or unique NOT NULL key, so zdm cannot \
                     backfill it in batches"
                ))
            })
    }

    /// Where a table lives physically until contract.
    pub fn physical_table(&self, table: &QualifiedName) -> QualifiedName {
        self.state_of(table)
            .map_or_else(|| table.clone(), |state| state.physical.clone())
    }

    /// Where a column of the new shape lives physically until contract.
    pub fn physical_column(&self, table: &QualifiedName, column: &str) -> String {
        self.state_of(table)
            .and_then(|state| state.column(column))
            .map_or_else(|| column.to_string(), |c| c.physical.clone())
    }

    /// Whether a column already changes shape in this migration (added, shadowed), so that
    /// a second shape change of it in the same migration is refused.
    pub fn column_is_reshaped(&self, table: &QualifiedName, column: &str) -> bool {
        self.state_of(table)
            .and_then(|state| state.column(column))
            .is_some_and(|c| c.physical != c.name && c.physical.starts_with(names::SHADOW_PREFIX))
    }

    /// Whether the table is created by this migration.
    pub fn is_created(&self, table: &QualifiedName) -> bool {
        self.state_of(table).is_some_and(|state| state.created)
    }

    /// Notes that the table's contract step also locks the tables its dropped foreign keys
    /// reference (those involving `column`, or the constraint `name`).
    pub(crate) fn lock_referenced_at_contract(
        &mut self,
        table: &QualifiedName,
        column: Option<&str>,
        constraint: Option<&str>,
    ) -> Result<(), Problem> {
        let referenced: Vec<String> = self
            .table(table)?
            .constraints
            .iter()
            .filter(|c| {
                column.is_some_and(|col| c.columns.iter().any(|n| n == col))
                    || constraint.is_some_and(|name| c.name == name)
            })
            .filter_map(|c| c.references.as_ref())
            .map(|r| self.physical_table(&r.table).to_string())
            .collect();
        let state = self.state(table)?;
        for other in referenced {
            if !state.also_locked.contains(&other) {
                state.also_locked.push(other);
            }
        }
        Ok(())
    }

    /// Records a table created by this migration (already in the simulated catalog).
    pub(crate) fn created_table(&mut self, table: &QualifiedName) -> Result<(), Problem> {
        let found = self.table(table)?;
        let state = TableState::from_table(found, true);
        self.tables.push(state);
        Ok(())
    }

    /// Adds a column to the new shape, stored in `physical` until contract.
    pub(crate) fn add_column(
        &mut self,
        table: &QualifiedName,
        column: Column,
        physical: &str,
    ) -> Result<usize, Problem> {
        let name = column.name.clone();
        // The transition state must be taken before the catalog changes.
        self.state(table)?;
        self.table_mut(table)?.columns.push(column);
        let state = self.state(table)?;
        let id = state.next_id;
        state.next_id += 1;
        state.columns.push(ColumnMap {
            id,
            name,
            physical: physical.to_string(),
        });
        Ok(id)
    }

    /// Removes a column from the new shape; its physical column is dropped at contract.
    pub(crate) fn remove_column(
        &mut self,
        table: &QualifiedName,
        column: &str,
    ) -> Result<(), Problem> {
        self.state(table)?;
        self.table_mut(table)?.columns.retain(|c| c.name != column);
        let state = self.state(table)?;
        if let Some(position) = state.columns.iter().position(|c| c.name == column) {
            let removed = state.columns.remove(position);
            state.drop_columns.push(removed.physical);
        }
        Ok(())
    }

    /// Renames a column of the new shape (the physical rename happens at contract).
    pub(crate) fn rename_column(
        &mut self,
        table: &QualifiedName,
        from: &str,
        to: &str,
    ) -> Result<(), Problem> {
        self.state(table)?;
        let found = self.table_mut(table)?;
        if let Some(column) = found.column_mut(from) {
            column.name = to.to_string();
        }
        for constraint in &mut found.constraints {
            for name in &mut constraint.columns {
                if name == from {
                    *name = to.to_string();
                }
            }
        }
        for index in &mut found.indexes {
            for key in index.columns.iter_mut().flatten() {
                if key == from {
                    *key = to.to_string();
                }
            }
        }
        let state = self.state(table)?;
        if let Some(column) = state.columns.iter_mut().find(|c| c.name == from) {
            column.name = to.to_string();
        }
        Ok(())
    }

    /// The id of a column of the new shape.
    pub(crate) fn column_id(
        &mut self,
        table: &QualifiedName,
        column: &str,
    ) -> Result<usize, Problem> {
        let state = self.state(table)?;
        state
            .column(column)
            .map(|c| c.id)
            .ok_or_else(|| Problem::NoColumn {
                table: table.to_string(),
                column: column.to_string(),
                hint: String::new(),
            })
    }

    /// Locked-relation label for a step (`public.orders`).
    pub fn label(table: &QualifiedName) -> String {
        table.to_string()
    }

    /// An operation's additive DDL: runs after the version schema is created and before the
    /// sync triggers are installed.
    pub fn push_expand(&mut self, step: Step) {
        self.expand.push(step);
    }

    /// An expand step adding a constraint (CHECK / FOREIGN KEY NOT VALID, UNIQUE USING
    /// INDEX): it runs after the sync triggers are installed. Were it committed first, every
    /// old-version write would fail it until the trigger filling the column exists, and for
    /// good if the run stopped in between.
    /// The step promises constraint `name` on `table` (checked after expand; `kept`:
    /// still there after contract).
    pub fn push_expand_constraint(
        &mut self,
        step: Step,
        table: &QualifiedName,
        name: &str,
        kept: bool,
    ) {
        self.expand_constraints
            .push(step.creating(PromiseKind::Constraint, table, name, kept));
    }

    /// `ALTER COLUMN ... SET DEFAULT` of a column a sync rule fills: it runs after the sync
    /// triggers are installed (see [`Workspace::expand_defaults`]).
    pub fn push_expand_default(&mut self, step: Step) {
        self.expand_defaults.push(step);
    }

    /// A data copy: backfill runs them first, in operation order.
    pub fn push_backfill(&mut self, step: Step) {
        self.backfill.push(step);
    }

    /// A VALIDATE step: runs after every data backfill of the migration.
    pub fn push_validate(&mut self, step: Step) {
        self.validate.push(step);
    }

    /// An operation's own contract step (a table or index dropped, raw SQL): after every
    /// table's final-shape step, before the trigger functions are dropped.
    pub fn push_contract(&mut self, step: Step) {
        self.contract.push(step);
    }

    /// Undo of this operation's expand; operations are undone last first.
    pub fn push_rollback(&mut self, step: Step) {
        if let Some(group) = self.rollback.last_mut() {
            group.push(step);
        }
    }

    /// Opens the rollback group of the next operation.
    pub(crate) fn begin_operation(&mut self) {
        self.rollback.push(Vec::new());
    }
}

/// `orders` → `public.orders`; `billing.orders` → `billing.orders`.
pub fn qualify(name: &str) -> QualifiedName {
    match name.split_once('.') {
        Some((schema, table)) => QualifiedName::new(schema, table),
        None => QualifiedName::new(DEFAULT_SCHEMA, name),
    }
}

#[cfg(test)]
impl TableState {
    /// `public.t` with `(name, physical)` columns, nothing recorded yet: for unit tests of
    /// the pieces that read a table's state.
    pub(crate) fn for_test(columns: &[(&str, &str)]) -> TableState {
        let table = Table {
            name: QualifiedName::new("public", "t"),
            columns: Vec::new(),
            constraints: Vec::new(),
            indexes: Vec::new(),
            triggers: Vec::new(),
            grants: Vec::new(),
        };
        let mut state = TableState::from_table(&table, false);
        state.columns = columns
            .iter()
            .enumerate()
            .map(|(id, (name, physical))| ColumnMap {
                id,
                name: name.to_string(),
                physical: physical.to_string(),
            })
            .collect();
        state.next_id = columns.len();
        state
    }
}
