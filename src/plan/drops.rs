//! What a plan's contract phase removes (tables, columns, indexes, constraints, the previous
//! version schema) and which names stop existing: computed once, when planning, from the
//! planner's own record of the migration; the contract safety gates read it.

use serde::{Deserialize, Serialize};

use crate::db::catalog::QualifiedName;
use crate::plan::names;
use crate::plan::version_view;
use crate::plan::workspace::{TableState, Workspace};

/// Everything the contract phase of one plan drops or renames away, by physical name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractDrops {
    /// Version schemas of earlier migrations (the old version the application may still use).
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(default)]
    pub tables: Vec<QualifiedName>,
    #[serde(default)]
    pub columns: Vec<DroppedColumn>,
    #[serde(default)]
    pub indexes: Vec<DroppedIndex>,
    #[serde(default)]
    pub constraints: Vec<DroppedConstraint>,
    /// Tables renamed at contract: their old name stops resolving.
    #[serde(default)]
    pub renamed_tables: Vec<Renamed<QualifiedName>>,
    /// Columns renamed at contract, as (table, old name → new name).
    #[serde(default)]
    pub renamed_columns: Vec<RenamedColumn>,
    /// Types dropped at contract (drop_enum). Absent from plans stored before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<QualifiedName>,
    /// Application views contract drops and recreates over the final shape (they read a
    /// column it replaces): no blocker of the drop.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recreated_views: Vec<QualifiedName>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedColumn {
    /// The physical table until contract.
    pub table: QualifiedName,
    pub column: String,
    /// The column is replaced by a shadow column that takes its name (change_type,
    /// drop_not_null): the name lives on, only the old physical column goes.
    pub replaced: bool,
    /// The table the column moved to under the same name (split_table: a table this
    /// migration creates, keyed by a foreign key to this one), where the new version reads
    /// and writes it. Absent from plans stored before it existed: those count every
    /// statement naming the column as the old version's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<QualifiedName>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedIndex {
    pub table: QualifiedName,
    /// In the table's schema.
    pub index: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedConstraint {
    pub table: QualifiedName,
    pub constraint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renamed<T> {
    pub from: T,
    pub to: T,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenamedColumn {
    pub table: QualifiedName,
    pub from: String,
    pub to: String,
}

impl ContractDrops {
    pub fn is_empty(&self) -> bool {
        self == &ContractDrops::default()
    }

    /// The dropped columns that live on in another table, as (column, old table, new table).
    pub fn moved_columns(&self) -> Vec<(&str, &QualifiedName, &QualifiedName)> {
        self.columns
            .iter()
            .filter_map(|c| Some((c.column.as_str(), &c.table, c.moved_to.as_ref()?)))
            .collect()
    }

    /// Names an application could still use that stop existing at contract (dropped or
    /// renamed away; a replaced column keeps its name and is not listed): what the "old
    /// version unused" gate looks for in queries.
    pub fn vanishing_names(&self) -> Vec<String> {
        let mut found: Vec<String> = self.names(true).map(str::to_string).collect();
        found.sort();
        found.dedup();
        found
    }

    /// Whether `name` stops existing for a reason other than a column moving to another
    /// table under that name (then every statement naming it counts, wherever it points).
    pub fn vanishes_besides_moving(&self, name: &str) -> bool {
        self.names(false).any(|n| n == name)
    }

    /// The vanishing names, with or without the moved columns'.
    fn names(&self, with_moved: bool) -> impl Iterator<Item = &str> {
        self.schemas
            .iter()
            .map(String::as_str)
            .chain(self.tables.iter().map(|t| t.name.as_str()))
            .chain(
                self.columns
                    .iter()
                    .filter(move |c| !c.replaced && (with_moved || c.moved_to.is_none()))
                    .map(|c| c.column.as_str()),
            )
            .chain(self.indexes.iter().map(|i| i.index.as_str()))
            .chain(self.renamed_tables.iter().map(|r| r.from.name.as_str()))
            .chain(self.renamed_columns.iter().map(|r| r.from.as_str()))
    }
}

impl Workspace<'_> {
    /// What this migration's contract removes, from the tables' transition states and the
    /// catalog before (`original`) and after (`catalog`).
    pub(crate) fn contract_drops(&self) -> ContractDrops {
        let mut drops = ContractDrops {
            schemas: version_view::previous_version_schemas(self)
                .iter()
                .map(|s| s.name.clone())
                .collect(),
            ..ContractDrops::default()
        };
        for state in self.tables.iter().filter(|state| !state.created) {
            if state.dropped {
                drops.tables.push(state.physical.clone());
                continue;
            }
            let after = self.catalog.table(&state.name);
            for column in &state.drop_columns {
                // Shadow columns and other zdm helpers are not the application's business.
                if column.starts_with(names::SHADOW_PREFIX) || column.starts_with("_zdm") {
                    continue;
                }
                drops.columns.push(DroppedColumn {
                    table: state.physical.clone(),
                    column: column.clone(),
                    replaced: after.is_some_and(|t| t.column(column).is_some()),
                    moved_to: self.moved_to(state, column),
                });
            }
            for constraint in &state.drop_constraints {
                drops.constraints.push(DroppedConstraint {
                    table: state.physical.clone(),
                    constraint: constraint.clone(),
                });
            }
            if state.physical != state.name {
                drops.renamed_tables.push(Renamed {
                    from: state.physical.clone(),
                    to: state.name.clone(),
                });
            }
            for column in &state.columns {
                let shadow = column.physical.starts_with(names::SHADOW_PREFIX);
                if column.physical != column.name && !shadow {
                    drops.renamed_columns.push(RenamedColumn {
                        table: state.physical.clone(),
                        from: column.physical.clone(),
                        to: column.name.clone(),
                    });
                }
            }
        }
        drops.recreated_views = crate::plan::app_views::recreated(self);
        // Types: the enums the migration drops (the simulated catalog no longer has them).
        for dropped in &self.original.enums {
            if self.catalog.enum_type(&dropped.name).is_none() {
                drops.types.push(dropped.name.clone());
            }
        }
        // Indexes: those of dropped tables, those the new shape lacks, and those over a
        // dropped physical column (a rebuilt index taking the same name is another index).
        for table in &self.original.tables {
            let state = self.tables.iter().find(|s| s.physical == table.name);
            let table_dropped = state.is_some_and(|s| s.dropped);
            let after_name = state.map_or(&table.name, |s| &s.name);
            let after = self.catalog.table(after_name);
            let dropped_columns: &[String] = state.map_or(&[], |s| s.drop_columns.as_slice());
            for index in &table.indexes {
                let over_dropped_column = index
                    .columns
                    .iter()
                    .flatten()
                    .any(|c| dropped_columns.contains(c));
                let gone = after.is_none_or(|t| t.indexes.iter().all(|i| i.name != index.name));
                if table_dropped || gone || over_dropped_column {
                    drops.indexes.push(DroppedIndex {
                        table: table.name.clone(),
                        index: index.name.clone(),
                    });
                }
            }
        }
        drops
    }

    /// The table this migration creates that column `column` of `state`'s table moves to:
    /// one with a column of that name and a foreign key to the old table (what split_table
    /// builds).
    fn moved_to(&self, state: &TableState, column: &str) -> Option<QualifiedName> {
        self.tables
            .iter()
            .filter(|other| other.created && !other.dropped)
            .filter_map(|other| self.catalog.table(&other.name))
            .find(|table| {
                table.column(column).is_some()
                    && table.constraints.iter().any(|constraint| {
                        constraint.references.as_ref().is_some_and(|target| {
                            target.table == state.name || target.table == state.physical
                        })
                    })
            })
            .map(|table| table.name.clone())
    }
}
