//! The planner's working state for one migration: the simulated catalog (how the database
//! looks once the migration is complete, which later operations validate against), where
//! each table and column lives physically until contract, the up/down rules of the sync
//! triggers, and the steps gathered per phase. It also writes the steps every migration
//! shares: the version schema and its views, the sync triggers, and each table's contract.

use crate::db::catalog::{Catalog, Column, QualifiedName, Schema, Table, View};
use crate::db::quote_ident;
use crate::plan::error::Problem;
use crate::plan::names::{self, do_block, literal, regclass};
use crate::plan::step::{LockLevel, Phase, Promise, PromiseKind, Step};
use crate::suggest::did_you_mean;

/// The schema tables live in when an operation does not name one.
pub const DEFAULT_SCHEMA: &str = "public";

/// One rule of a sync trigger: `target := expression` (or only when `target` is NULL).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyncRule {
    /// Physical column written.
    pub target: String,
    /// SQL over the writer's row, with columns named as that writer's version sees them.
    pub expression: String,
    pub only_when_null: bool,
}

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
    /// Applied when the old version writes: fill the new shape.
    pub up: Vec<SyncRule>,
    /// Applied when the new version writes: fill the old shape.
    pub down: Vec<SyncRule>,
    /// Column defaults the new version's view sets (by column id; `NULL` drops one).
    pub view_defaults: Vec<(usize, String)>,
    /// Physical columns dropped at contract.
    pub drop_columns: Vec<String>,
    /// Columns made NOT NULL at contract (by id), with the CHECK that proves it.
    pub not_null: Vec<(usize, String)>,
    /// Defaults set (or dropped) at contract, by column id.
    pub defaults: Vec<(usize, Option<String>)>,
    /// Constraints dropped at contract.
    pub drop_constraints: Vec<String>,
    /// Triggers an operation installed beyond the sync trigger (split_table's), as
    /// (table, trigger): dropped in this table's contract step and first thing in a rollback.
    pub extra_triggers: Vec<(QualifiedName, String)>,
    /// Indexes and constraints rebuilt on a shadow column under a temporary name, renamed to
    /// their real name at contract (after the old column, and the originals, are dropped).
    pub rename_indexes: Vec<(String, String)>,
    pub rename_constraints: Vec<(String, String)>,
    /// Other tables the contract step locks: dropping a foreign key (alone, or with its
    /// column) takes ACCESS EXCLUSIVE on the referenced table too.
    pub also_locked: Vec<String>,
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
        }
    }

    pub fn column(&self, name: &str) -> Option<&ColumnMap> {
        self.columns.iter().find(|c| c.name == name)
    }

    fn column_name(&self, id: usize) -> Option<&str> {
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

/// One view of a version schema: its columns as `(name, physical column)`, the table it
/// shows, and the columns whose default the view overrides.
struct VersionView {
    view: QualifiedName,
    columns: Vec<(String, String)>,
    source: QualifiedName,
    defaults: Vec<String>,
}

/// Everything the planner knows and has decided so far for one migration.
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
    pub(crate) backfill: Vec<Step>,
    pub(crate) validate: Vec<Step>,
    pub(crate) contract: Vec<Step>,
    /// Each operation's undo, in operation order (run in reverse).
    pub(crate) rollback: Vec<Vec<Step>>,
    /// Trigger functions operations put in the version schema beyond the sync functions.
    pub(crate) extra_functions: Vec<String>,
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
            backfill: Vec::new(),
            validate: Vec::new(),
            contract: Vec::new(),
            rollback: Vec::new(),
            extra_functions: Vec::new(),
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

    pub fn push_backfill(&mut self, step: Step) {
        self.backfill.push(step);
    }

    /// A VALIDATE step: runs after every data backfill of the migration.
    pub fn push_validate(&mut self, step: Step) {
        self.validate.push(step);
    }

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

    /// The views of the new version: one per table of the schema, in the new shape.
    fn version_views(&self, final_names: bool) -> Vec<VersionView> {
        self.catalog
            .tables
            .iter()
            .filter(|table| table.name.schema == self.schema)
            .map(|table| {
                let state = self.state_of(&table.name);
                let columns: Vec<(String, String)> = table
                    .columns
                    .iter()
                    .map(|column| {
                        let physical = if final_names {
                            column.name.clone()
                        } else {
                            self.physical_column(&table.name, &column.name)
                        };
                        (column.name.clone(), physical)
                    })
                    .collect();
                let source = if final_names {
                    table.name.clone()
                } else {
                    self.physical_table(&table.name)
                };
                let defaults = state
                    .map(|s| {
                        s.view_defaults
                            .iter()
                            .filter_map(|(id, _)| s.column_name(*id).map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                VersionView {
                    view: QualifiedName::new(&self.version_schema, &table.name.name),
                    columns,
                    source,
                    defaults,
                }
            })
            .collect()
    }

    /// The names of [`Workspace::previous_version_schemas`].
    pub(crate) fn previous_version_schemas_names(&self) -> Vec<String> {
        self.previous_version_schemas()
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }

    /// Version schemas of earlier migrations of this schema: dropped at contract.
    fn previous_version_schemas(&self) -> Vec<&Schema> {
        self.original
            .schemas
            .iter()
            .filter(|schema| schema.name != self.version_schema)
            .filter(|schema| {
                schema
                    .comment
                    .as_deref()
                    .and_then(names::parse_version_schema_comment)
                    .is_some_and(|(base, _)| base == self.schema)
            })
            .collect()
    }

    /// Assembles the plan's steps in running order and updates the simulated catalog with
    /// the version schema; returns the steps.
    pub(crate) fn finish(mut self) -> (Vec<Step>, Catalog) {
        let mut steps = Vec::new();
        let version = quote_ident(&self.version_schema);
        let comment = names::version_schema_comment(&self.schema, self.migration);

        // Expand: the version schema first (sync functions live in it), then the
        // operations' additive DDL, then the sync triggers (in their old-version-only form),
        // then the constraints that rely on the triggers' values. After each committed step
        // both versions can read and write (docs/planner.md).
        steps.push(Step::sql(
            Phase::Expand,
            format!(
                "create version schema {} (empty until the backfill is done)",
                self.version_schema
            ),
            do_block(&format!(
                "  CREATE SCHEMA IF NOT EXISTS {version};\n  COMMENT ON SCHEMA {version} IS {};\n",
                literal(&comment)
            )),
            LockLevel::None,
            Vec::new(),
        ));
        steps.append(&mut self.expand);
        let synced: Vec<TableState> = self
            .tables
            .iter()
            .filter(|t| t.needs_sync() && !t.created)
            .cloned()
            .collect();
        for state in &synced {
            steps.push(Step::sql(
                Phase::Expand,
                format!(
                    "create the function keeping old and new columns of {} in step",
                    state.physical
                ),
                sync_function_sql(&self.version_schema, state),
                LockLevel::None,
                Vec::new(),
            ));
            steps.push(Step::sql(
                Phase::Expand,
                format!("install the sync trigger on {}", state.physical),
                format!(
                    "CREATE OR REPLACE TRIGGER {} BEFORE INSERT OR UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {}.{}()",
                    quote_ident(&names::sync_trigger(&state.physical.name)),
                    state.physical.quoted(),
                    version,
                    quote_ident(&names::sync_trigger(&state.physical.name)),
                ),
                LockLevel::ShareRowExclusive,
                vec![Self::label(&state.physical)],
            )
            .creating(
                PromiseKind::Trigger,
                &state.physical,
                &names::sync_trigger(&state.physical.name),
                false,
            ));
        }
        // What rollback must drop first, before the triggers (the mirror of expand).
        let expand_constraints: Vec<Promise> = self
            .expand_constraints
            .iter()
            .flat_map(|step| step.creates.iter().cloned())
            .filter(|promise| promise.kind == PromiseKind::Constraint)
            .collect();
        let mut constraint_locks: Vec<String> = self
            .expand_constraints
            .iter()
            .flat_map(|step| step.locked.iter().cloned())
            .collect();
        constraint_locks.sort();
        constraint_locks.dedup();
        steps.append(&mut self.expand_constraints);

        // Backfill: data first, then the validations that need the data in place.
        steps.append(&mut self.backfill);
        steps.append(&mut self.validate);

        // Then the new version is published: only now is every row filled, so only now can
        // a client of the new version read and write without seeing (or deriving old
        // columns from) columns the backfill has not reached (docs/engine.md). Each table's
        // sync function treats writers as the new version only once its view exists, so
        // creating a view is what switches its table's `down` rules on, in one commit.
        let views = self.version_views(false);
        if let Some(step) = self.publish_step(&views) {
            steps.push(step);
        }

        // Contract.
        for previous in self.previous_version_schemas() {
            let previous_views: Vec<&View> = self
                .original
                .views
                .iter()
                .filter(|v| v.name.schema == previous.name)
                .collect();
            let quoted: Vec<String> = previous_views.iter().map(|v| v.name.quoted()).collect();
            let views: Vec<String> = previous_views.iter().map(|v| v.name.to_string()).collect();
            let mut body = String::new();
            if !quoted.is_empty() {
                body.push_str(&format!("  DROP VIEW IF EXISTS {};\n", quoted.join(", ")));
            }
            body.push_str(&format!(
                "  DROP SCHEMA IF EXISTS {};\n",
                quote_ident(&previous.name)
            ));
            steps.push(Step::sql(
                Phase::Contract,
                format!("drop the previous version schema {}", previous.name),
                do_block(&body),
                LockLevel::AccessExclusive,
                views,
            ));
        }
        for state in &self.tables {
            if let Some(step) = table_contract_step(state) {
                steps.push(step);
            }
        }
        steps.append(&mut self.contract);
        let functions: Vec<String> = synced
            .iter()
            .map(|s| names::sync_trigger(&s.physical.name))
            .chain(self.extra_functions.iter().cloned())
            .map(|name| format!("{version}.{}()", quote_ident(&name)))
            .collect();
        if !functions.is_empty() {
            steps.push(Step::sql(
                Phase::Contract,
                "drop the sync functions",
                format!("DROP FUNCTION IF EXISTS {}", functions.join(", ")),
                LockLevel::None,
                Vec::new(),
            ));
        }
        let final_views = self.version_views(true);
        for VersionView {
            view,
            columns,
            source,
            defaults,
        } in &final_views
        {
            let drop_defaults: String = defaults
                .iter()
                .map(|column| {
                    format!(
                        "  ALTER VIEW {} ALTER COLUMN {} DROP DEFAULT;\n",
                        view.quoted(),
                        quote_ident(column)
                    )
                })
                .collect();
            steps.push(view_step(
                Phase::Contract,
                format!("point view {view} at the final columns of {source}"),
                view,
                columns,
                source,
                &drop_defaults,
            ));
        }

        // Rollback: the constraints expand added after the triggers, then the triggers,
        // then the version schema, then each operation last first. Constraints go before
        // the triggers that fill their columns, or every old-version write between the two
        // steps would fail them (the expand invariant, in reverse).
        if !expand_constraints.is_empty() {
            let drops: String = expand_constraints
                .iter()
                .map(|promise| {
                    format!(
                        "  IF {} IS NOT NULL THEN\n    ALTER TABLE {} DROP CONSTRAINT IF EXISTS {};\n  END IF;\n",
                        regclass(&promise.table),
                        promise.table,
                        quote_ident(&promise.name)
                    )
                })
                .collect();
            steps.push(Step::sql(
                Phase::Rollback,
                format!(
                    "drop the constraints expand added ({}), before the triggers filling their columns",
                    expand_constraints
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                do_block(&drops),
                LockLevel::AccessExclusive,
                constraint_locks,
            ));
        }
        for state in &self.tables {
            let mut triggers = state.extra_triggers.clone();
            if state.needs_sync() && !state.created {
                triggers.insert(
                    0,
                    (
                        state.physical.clone(),
                        names::sync_trigger(&state.physical.name),
                    ),
                );
            }
            if triggers.is_empty() {
                continue;
            }
            let drops: String = triggers
                .iter()
                .map(|(table, trigger)| {
                    format!(
                        "  IF {} IS NOT NULL THEN\n    DROP TRIGGER IF EXISTS {} ON {};\n  END IF;\n",
                        regclass(&table.quoted()),
                        quote_ident(trigger),
                        table.quoted()
                    )
                })
                .collect();
            let mut locked: Vec<String> = triggers.iter().map(|(t, _)| t.to_string()).collect();
            locked.dedup();
            steps.push(Step::sql(
                Phase::Rollback,
                format!("drop the sync triggers on {}", locked.join(", ")),
                do_block(&drops),
                LockLevel::AccessExclusive,
                locked,
            ));
        }
        let mut body = String::new();
        let view_names: Vec<String> = views.iter().map(|v| v.view.quoted()).collect();
        if !view_names.is_empty() {
            body.push_str(&format!(
                "  DROP VIEW IF EXISTS {};\n",
                view_names.join(", ")
            ));
        }
        let view_labels: Vec<String> = views.iter().map(|v| v.view.to_string()).collect();
        for function in &functions {
            body.push_str(&format!("  DROP FUNCTION IF EXISTS {function};\n"));
        }
        body.push_str(&format!("  DROP SCHEMA IF EXISTS {version};\n"));
        steps.push(Step::sql(
            Phase::Rollback,
            format!("drop version schema {}", self.version_schema),
            do_block(&body),
            LockLevel::AccessExclusive,
            view_labels,
        ));
        for group in self.rollback.drain(..).rev() {
            steps.extend(group);
        }

        // The simulated catalog after contract: the previous versions are gone, this one's
        // views remain.
        let previous: Vec<String> = self
            .previous_version_schemas()
            .iter()
            .map(|s| s.name.clone())
            .collect();
        let mut catalog = self.catalog;
        catalog.schemas.retain(|s| !previous.contains(&s.name));
        catalog.views.retain(|v| !previous.contains(&v.name.schema));
        catalog.schemas.push(Schema {
            name: self.version_schema.clone(),
            comment: Some(comment),
            usage: self
                .original
                .schema(&self.schema)
                .map(|s| s.usage.clone())
                .unwrap_or_default(),
        });
        for VersionView {
            view,
            columns,
            source,
            ..
        } in final_views
        {
            catalog.views.push(View {
                columns: columns.iter().map(|(name, _)| name.clone()).collect(),
                definition: select_sql(&columns, &source),
                name: view,
            });
        }
        catalog.normalize();
        (steps, catalog)
    }

    /// The one step that makes the new version usable: every view of the version schema,
    /// its defaults and its grants, in one transaction, so the new version appears all at
    /// once (and, with its views, the sync functions' `down` rules: see
    /// `names::new_version_writer`).
    fn publish_step(&self, views: &[VersionView]) -> Option<Step> {
        let mut body = String::new();
        for VersionView {
            view,
            columns,
            source,
            defaults,
        } in views
        {
            body.push_str(&format!(
                "  CREATE OR REPLACE VIEW {} AS {};\n",
                view.quoted(),
                select_sql(columns, source)
            ));
            body.push_str(&self.view_default_sql(view, defaults));
        }
        body.push_str(&self.grant_sql(views));
        if body.is_empty() {
            return None;
        }
        let sources: Vec<String> = views.iter().map(|v| v.source.to_string()).collect();
        Some(Step::sql(
            Phase::Backfill,
            format!(
                "publish the new version: {} view{} in {}, granted like {} (every row is filled by now)",
                views.len(),
                if views.len() == 1 { "" } else { "s" },
                self.version_schema,
                self.schema
            ),
            do_block(&body),
            LockLevel::AccessShare,
            sources,
        ))
    }

    /// Grants the version schema and its views to the roles that use the base schema and
    /// its tables, so the application's role can switch its search_path to the new version.
    fn grant_sql(&self, views: &[VersionView]) -> String {
        let mut body = String::new();
        let usage = self
            .original
            .schema(&self.schema)
            .map(|s| s.usage.clone())
            .unwrap_or_default();
        if !usage.is_empty() {
            body.push_str(&format!(
                "  GRANT USAGE ON SCHEMA {} TO {};\n",
                quote_ident(&self.version_schema),
                grantees(&usage)
            ));
        }
        for view in views {
            let Some(table) = self
                .catalog
                .table(&QualifiedName::new(&self.schema, &view.view.name))
            else {
                continue;
            };
            let mut by_privilege: Vec<(&str, Vec<String>)> = Vec::new();
            for grant in &table.grants {
                if !matches!(
                    grant.privilege.as_str(),
                    "SELECT" | "INSERT" | "UPDATE" | "DELETE"
                ) {
                    continue;
                }
                match by_privilege.iter_mut().find(|(p, _)| *p == grant.privilege) {
                    Some((_, roles)) => roles.push(grant.grantee.clone()),
                    None => by_privilege.push((&grant.privilege, vec![grant.grantee.clone()])),
                }
            }
            for (privilege, roles) in by_privilege {
                body.push_str(&format!(
                    "  GRANT {privilege} ON {} TO {};\n",
                    view.view.quoted(),
                    grantees(&roles)
                ));
            }
        }
        body
    }

    fn view_default_sql(&self, view: &QualifiedName, defaults: &[String]) -> String {
        let Some(state) = self
            .tables
            .iter()
            .find(|t| t.name.schema == self.schema && t.name.name == view.name)
        else {
            return String::new();
        };
        defaults
            .iter()
            .filter_map(|column| {
                let id = state.column(column)?.id;
                let expression = state
                    .view_defaults
                    .iter()
                    .rev()
                    .find(|(candidate, _)| *candidate == id)?
                    .1
                    .clone();
                Some(format!(
                    "  ALTER VIEW {} ALTER COLUMN {} SET DEFAULT {expression};\n",
                    view.quoted(),
                    quote_ident(column)
                ))
            })
            .collect()
    }
}

/// Role names for GRANT: quoted, except the keyword PUBLIC.
fn grantees(roles: &[String]) -> String {
    roles
        .iter()
        .map(|role| {
            if role == "PUBLIC" {
                role.clone()
            } else {
                quote_ident(role)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `orders` → `public.orders`; `billing.orders` → `billing.orders`.
pub fn qualify(name: &str) -> QualifiedName {
    match name.split_once('.') {
        Some((schema, table)) => QualifiedName::new(schema, table),
        None => QualifiedName::new(DEFAULT_SCHEMA, name),
    }
}

/// `SELECT "physical" AS "name", ... FROM source` (the text stored for simulated views).
fn select_sql(columns: &[(String, String)], source: &QualifiedName) -> String {
    let list: Vec<String> = columns
        .iter()
        .map(|(name, physical)| {
            if name == physical {
                quote_ident(name)
            } else {
                format!("{} AS {}", quote_ident(physical), quote_ident(name))
            }
        })
        .collect();
    format!("SELECT {} FROM {}", list.join(", "), source.quoted())
}

/// A step creating (or replacing) one version view, plus `extra` plpgsql statements.
fn view_step(
    phase: Phase,
    description: String,
    view: &QualifiedName,
    columns: &[(String, String)],
    source: &QualifiedName,
    extra: &str,
) -> Step {
    let create = format!(
        "CREATE OR REPLACE VIEW {} AS {}",
        view.quoted(),
        select_sql(columns, source)
    );
    let sql = if extra.is_empty() {
        create
    } else {
        do_block(&format!("  {create};\n{extra}"))
    };
    Step::sql(
        phase,
        description,
        sql,
        LockLevel::AccessShare,
        vec![source.to_string()],
    )
}

/// The plpgsql function behind a table's sync trigger. The writer's version is told by its
/// search_path (`names::new_version_writer`): a session whose effective search path
/// includes this migration's version schema, once the new version is published, writes
/// through the new version's views; any other session (the old version, zdm's own
/// backfill, anyone before publication) is the old version.
pub(crate) fn sync_function_sql(version_schema: &str, state: &TableState) -> String {
    let table = &state.physical;
    let declare = |names: &mut dyn Iterator<Item = (String, String)>| -> String {
        names
            .map(|(variable, physical)| {
                format!(
                    "      {} {}.{}%TYPE := NEW.{};\n",
                    quote_ident(&variable),
                    table.quoted(),
                    quote_ident(&physical),
                    quote_ident(&physical)
                )
            })
            .collect()
    };
    let assign = |rules: &[SyncRule]| -> String {
        rules
            .iter()
            .map(|rule| {
                let target = quote_ident(&rule.target);
                if rule.only_when_null {
                    format!(
                        "      IF NEW.{target} IS NULL THEN NEW.{target} := ({}); END IF;\n",
                        rule.expression
                    )
                } else {
                    format!("      NEW.{target} := ({});\n", rule.expression)
                }
            })
            .collect()
    };
    let old_variables = declare(&mut state.old_columns.iter().map(|c| (c.clone(), c.clone())));
    let new_variables = declare(
        &mut state
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.physical.clone())),
    );
    let mut body = String::from("#variable_conflict use_column\nBEGIN\n");
    let old_rules = if state.up.is_empty() {
        "    NULL;\n".to_string()
    } else {
        format!(
            "    DECLARE\n{old_variables}    BEGIN\n{}    END;\n",
            assign(&state.up)
        )
    };
    body.push_str(&format!(
        "  IF {} THEN\n",
        names::new_version_writer(version_schema, &state.name.name)
    ));
    body.push_str("    -- Written by the new version: fill the old version's columns.\n");
    if state.down.is_empty() {
        body.push_str("    NULL;\n");
    } else {
        body.push_str(&format!(
            "    DECLARE\n{new_variables}    BEGIN\n{}    END;\n",
            assign(&state.down)
        ));
    }
    body.push_str("  ELSE\n    -- Written by the old version (or the backfill): fill the new version's columns.\n");
    body.push_str(&old_rules);
    body.push_str("  END IF;\n");
    body.push_str("  RETURN NEW;\nEND\n");
    let tag = names::dollar_tag(&body);
    format!(
        "CREATE OR REPLACE FUNCTION {}.{}() RETURNS trigger LANGUAGE plpgsql AS {tag}\n{body}{tag}",
        quote_ident(version_schema),
        quote_ident(&names::sync_trigger(&table.name)),
    )
}

/// The single atomic step that gives a table its final shape at contract: drop the sync
/// trigger, drop the old columns, rename the new ones into place, finalize NOT NULL and
/// defaults, drop constraints, rename the table. One transaction, so the new version never
/// sees a half-contracted table; every statement is guarded so a re-run is a no-op.
fn table_contract_step(state: &TableState) -> Option<Step> {
    if state.dropped {
        return None;
    }
    let table = state.physical.quoted();
    let mut body = String::new();
    if state.needs_sync() && !state.created {
        body.push_str(&format!(
            "  DROP TRIGGER IF EXISTS {} ON {table};\n",
            quote_ident(&names::sync_trigger(&state.physical.name))
        ));
    }
    for (on, trigger) in &state.extra_triggers {
        body.push_str(&format!(
            "  DROP TRIGGER IF EXISTS {} ON {};\n",
            quote_ident(trigger),
            on.quoted()
        ));
    }
    let renames = ordered_renames(state);
    for column in &state.drop_columns {
        // A dropped column whose name a renamed column takes over: drop it only while the
        // column that replaces it is still under its old name, so that a re-run after the
        // commit never drops the replacement.
        match renames.iter().find(|(_, to)| to == column) {
            Some((from, _)) => body.push_str(&format!(
                "  IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = {} AND attname = {} AND NOT attisdropped) THEN\n    ALTER TABLE {table} DROP COLUMN IF EXISTS {};\n  END IF;\n",
                regclass(&table),
                literal(from),
                quote_ident(column)
            )),
            None => body.push_str(&format!(
                "  ALTER TABLE {table} DROP COLUMN IF EXISTS {};\n",
                quote_ident(column)
            )),
        }
    }
    for (from, to) in renames {
        body.push_str(&format!(
            "  IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = {} AND attname = {} AND NOT attisdropped) THEN\n    ALTER TABLE {table} RENAME COLUMN {} TO {};\n  END IF;\n",
            regclass(&table),
            literal(&from),
            quote_ident(&from),
            quote_ident(&to)
        ));
    }
    for (from, to) in &state.rename_indexes {
        let index = QualifiedName::new(&state.physical.schema, from);
        body.push_str(&format!(
            "  IF {} IS NOT NULL THEN\n    ALTER INDEX {} RENAME TO {};\n  END IF;\n",
            regclass(&index.quoted()),
            index.quoted(),
            quote_ident(to)
        ));
    }
    for (from, to) in &state.rename_constraints {
        body.push_str(&format!(
            "  IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = {} AND conname = {}) THEN\n    ALTER TABLE {table} RENAME CONSTRAINT {} TO {};\n  END IF;\n",
            regclass(&table),
            literal(from),
            quote_ident(from),
            quote_ident(to)
        ));
    }
    for (id, check) in &state.not_null {
        if let Some(column) = state.column_name(*id) {
            body.push_str(&format!(
                "  ALTER TABLE {table} ALTER COLUMN {} SET NOT NULL;\n  ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {};\n",
                quote_ident(column),
                quote_ident(check)
            ));
        }
    }
    for (id, default) in &state.defaults {
        if let Some(column) = state.column_name(*id) {
            match default {
                Some(expression) => body.push_str(&format!(
                    "  ALTER TABLE {table} ALTER COLUMN {} SET DEFAULT {expression};\n",
                    quote_ident(column)
                )),
                None => body.push_str(&format!(
                    "  ALTER TABLE {table} ALTER COLUMN {} DROP DEFAULT;\n",
                    quote_ident(column)
                )),
            }
        }
    }
    for constraint in &state.drop_constraints {
        body.push_str(&format!(
            "  ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {};\n",
            quote_ident(constraint)
        ));
    }
    let renamed = state.physical != state.name;
    if renamed {
        body.push_str(&format!(
            "  ALTER TABLE {table} RENAME TO {};\n",
            quote_ident(&state.name.name)
        ));
    }
    if body.is_empty() {
        return None;
    }
    // A re-run after the table was renamed finds its work done.
    let body = if renamed {
        format!(
            "  IF {} IS NULL THEN\n    RETURN;\n  END IF;\n{body}",
            regclass(&table)
        )
    } else {
        body
    };
    let mut locked = vec![state.physical.to_string()];
    if renamed {
        locked.push(state.name.to_string());
    }
    let others = state
        .extra_triggers
        .iter()
        .map(|(on, _)| on.to_string())
        .chain(state.also_locked.iter().cloned());
    for other in others {
        if !locked.contains(&other) {
            locked.push(other);
        }
    }
    Some(Step::sql(
        Phase::Contract,
        format!("give {} its final shape", state.name),
        do_block(&body),
        LockLevel::AccessExclusive,
        locked,
    ))
}

/// Column renames at contract, ordered so that no rename targets a name still in use;
/// a cycle (a ↔ b) goes through a temporary name.
fn ordered_renames(state: &TableState) -> Vec<(String, String)> {
    let mut pending: Vec<(String, String)> = state
        .columns
        .iter()
        .filter(|c| c.physical != c.name)
        .map(|c| (c.physical.clone(), c.name.clone()))
        .collect();
    let mut ordered = Vec::new();
    let mut temporary = 0;
    while !pending.is_empty() {
        let free = pending
            .iter()
            .position(|(_, to)| !pending.iter().any(|(from, _)| from == to));
        match free {
            Some(index) => ordered.push(pending.remove(index)),
            None => {
                let (from, to) = pending.remove(0);
                let parked = names::fit_identifier(&format!("_zdm_tmp_{temporary}_{from}"));
                temporary += 1;
                ordered.push((from, parked.clone()));
                pending.push((parked, to));
            }
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(columns: &[(&str, &str)]) -> TableState {
        TableState {
            name: QualifiedName::new("public", "t"),
            physical: QualifiedName::new("public", "t"),
            created: false,
            dropped: false,
            columns: columns
                .iter()
                .enumerate()
                .map(|(id, (name, physical))| ColumnMap {
                    id,
                    name: name.to_string(),
                    physical: physical.to_string(),
                })
                .collect(),
            next_id: columns.len(),
            old_columns: Vec::new(),
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
        }
    }

    #[test]
    fn renames_never_collide() {
        let chain = state_with(&[("b", "a"), ("c", "b")]);
        assert_eq!(
            ordered_renames(&chain),
            vec![
                ("b".to_string(), "c".to_string()),
                ("a".to_string(), "b".to_string())
            ]
        );
        let swap = state_with(&[("b", "a"), ("a", "b")]);
        let renames = ordered_renames(&swap);
        assert_eq!(renames.len(), 3);
        assert_eq!(renames[0], ("a".to_string(), "_zdm_tmp_0_a".to_string()));
    }
}
