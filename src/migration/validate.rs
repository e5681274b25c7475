//! Offline review of a parsed migration, as a DBA would read it before it goes near a
//! database: names PostgreSQL would refuse or truncate, operations that cannot be filled
//! or undone, contradictions inside the file. The catalog checks are the planner's.

use std::collections::HashSet;

use super::operation::SplitTable;
use super::operation::{
    ColumnDef, CreateTable, CreateTableUp, FromTable, Operation, RawSqlPhase, Reference,
    ReplicaIdentityKind,
};
use super::{Diagnostic, Migration, Severity, SourceMap};

/// PostgreSQL's NAMEDATALEN - 1: longer identifiers are silently truncated.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The `on_delete` actions PostgreSQL knows.
const ON_DELETE: [&str; 5] = [
    "no action",
    "restrict",
    "cascade",
    "set null",
    "set default",
];

/// Index access methods built into PostgreSQL; others come from extensions.
const BUILTIN_INDEX_METHODS: [&str; 6] = ["btree", "hash", "gist", "spgist", "gin", "brin"];

/// Every finding about `migration`, positioned with `source`.
pub(crate) fn check(migration: &Migration, source: &SourceMap) -> Vec<Diagnostic> {
    let mut review = Review {
        source,
        index: 0,
        op: "",
        found: Vec::new(),
        keyed: migration
            .operations
            .iter()
            .filter_map(|operation| match operation {
                Operation::AddPrimaryKey(op) => Some(normalize_table(&op.table)),
                _ => None,
            })
            .collect(),
    };
    if migration.operations.is_empty() {
        review.found.push(Diagnostic {
            path: source.path().to_path_buf(),
            position: Some((1, 1)),
            severity: Severity::Error,
            message: "no operations: a migration needs at least one [[operations]] table"
                .to_string(),
        });
    }
    if !migration
        .name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        review.found.push(Diagnostic {
            path: source.path().to_path_buf(),
            position: None,
            severity: Severity::Warning,
            message: format!(
                "the migration name `{}` (the file stem) has characters other than letters, \
                 digits, `_` and `-`; it becomes part of a schema name and is typed to confirm \
                 the contract, so keep it plain",
                migration.name
            ),
        });
    }
    let mut created = Names::default();
    for (index, operation) in migration.operations.iter().enumerate() {
        review.index = index;
        review.op = operation.name();
        review.operation(operation, &mut created);
    }
    review.found
}

/// Names an earlier operation of the same migration already creates.
#[derive(Default)]
struct Names {
    tables: HashSet<String>,
    indexes: HashSet<String>,
    constraints: HashSet<(String, String)>,
}

struct Review<'s> {
    source: &'s SourceMap,
    index: usize,
    /// The `op` of the operation under review, which starts each message.
    op: &'static str,
    found: Vec<Diagnostic>,
    /// Tables an add_primary_key of this migration gives a key (normalized names).
    keyed: HashSet<String>,
}

impl Review<'_> {
    fn error(&mut self, path: &[&str], message: String) {
        let diagnostic = self.source.diagnostic(
            self.index,
            path,
            Severity::Error,
            format!("{}: {message}", self.op),
        );
        self.found.push(diagnostic);
    }

    fn warn(&mut self, path: &[&str], message: String) {
        let diagnostic = self.source.diagnostic(
            self.index,
            path,
            Severity::Warning,
            format!("{}: {message}", self.op),
        );
        self.found.push(diagnostic);
    }

    fn operation(&mut self, operation: &Operation, created: &mut Names) {
        match operation {
            Operation::CreateTable(op) => {
                self.table(&["table"], &op.table);
                if !created.tables.insert(normalize_table(&op.table)) {
                    self.error(
                        &["table"],
                        format!("table `{}` is created twice in this migration", op.table),
                    );
                }
                let keyed = self.keyed.contains(&normalize_table(&op.table));
                self.create_table_columns(&op.columns, op.primary_key.as_deref(), keyed);
                if let Some(up) = &op.up {
                    self.create_table_up(op, up);
                }
            }
            Operation::DropTable(op) => self.table(&["table"], &op.table),
            Operation::RenameTable(op) => {
                self.table(&["table"], &op.table);
                self.table(&["to"], &op.to);
                let (from_schema, from_name) = split_table(&op.table);
                let (to_schema, to_name) = split_table(&op.to);
                if to_schema.is_some() && to_schema != from_schema {
                    self.error(
                        &["to"],
                        format!(
                            "rename_table renames within a schema: `to` is in schema `{}` but \
                             `{}` is in `{}`; give the bare new name",
                            to_schema.unwrap_or("public"),
                            op.table,
                            from_schema.unwrap_or("public")
                        ),
                    );
                } else if from_name == to_name {
                    self.error(
                        &["to"],
                        format!("`to` is the table's current name `{to_name}`"),
                    );
                }
            }
            Operation::AddColumn(op) => {
                self.table(&["table"], &op.table);
                self.column_def(&["column"], &op.column);
                self.non_empty(&["up"], "up", op.up.as_deref());
                self.check_from(op.from.as_ref(), "up", op.up.is_some());
                if op.column.primary_key {
                    self.error(
                        &["column", "primary_key"],
                        "add_column cannot make a primary key: an existing table keeps its key \
                         (create a new table, or add a unique constraint)"
                            .to_string(),
                    );
                }
                if !op.column.nullable && op.column.default.is_none() && op.up.is_none() {
                    self.error(
                        &["column", "nullable"],
                        format!(
                            "column `{}` is NOT NULL with no `default` and no `up`: existing rows \
                             cannot be filled, and the old version's INSERTs (which do not know \
                             the column) would fail; give a `default`, an `up` expression, or \
                             make it nullable",
                            op.column.name
                        ),
                    );
                }
            }
            Operation::DropColumn(op) => {
                self.table(&["table"], &op.table);
                self.column(&["column"], &op.column);
                self.non_empty(&["down"], "down", op.down.as_deref());
                self.check_from(op.from.as_ref(), "down", op.down.is_some());
                if op.down.is_none() {
                    self.warn(
                        &["column"],
                        format!(
                            "no `down`: while both versions run, rows the new version writes \
                             leave `{}` NULL (or its default) for the old version, and if it is \
                             NOT NULL without a default those INSERTs fail; give `down` to fill it",
                            op.column
                        ),
                    );
                }
            }
            Operation::RenameColumn(op) => {
                self.table(&["table"], &op.table);
                self.column(&["column"], &op.column);
                self.column(&["to"], &op.to);
                if op.column == op.to {
                    self.error(
                        &["to"],
                        format!("`to` is the column's current name `{}`", op.to),
                    );
                }
            }
            Operation::ChangeType(op) => {
                self.table(&["table"], &op.table);
                self.column(&["column"], &op.column);
                self.non_empty(&["type"], "type", Some(&op.data_type));
                self.non_empty(&["up"], "up", Some(&op.up));
                self.non_empty(&["down"], "down", Some(&op.down));
            }
            Operation::SetNotNull(op) => {
                self.table(&["table"], &op.table);
                self.column(&["column"], &op.column);
                self.non_empty(&["up"], "up", op.up.as_deref());
                if op.up.is_none() {
                    self.warn(
                        &["column"],
                        format!(
                            "no `up`: if any row holds NULL in `{}`, validating the constraint \
                             fails and the migration stops (nothing is lost, it can be rolled \
                             back); give `up`, e.g. coalesce({}, ...), to fill them",
                            op.column, op.column
                        ),
                    );
                }
            }
            Operation::DropNotNull(op) => {
                self.table(&["table"], &op.table);
                self.column(&["column"], &op.column);
                self.non_empty(&["down"], "down", op.down.as_deref());
            }
            Operation::SetDefault(op) => {
                self.table(&["table"], &op.table);
                self.column(&["column"], &op.column);
                self.non_empty(&["default"], "default", op.default.as_deref());
            }
            Operation::AddCheck(op) => {
                self.table(&["table"], &op.table);
                self.constraint(created, &op.table, &op.name);
                self.non_empty(&["check"], "check", Some(&op.check));
            }
            Operation::AddUnique(op) => {
                self.table(&["table"], &op.table);
                self.constraint(created, &op.table, &op.name);
                self.column_list(&["columns"], &op.columns);
            }
            Operation::AddForeignKey(op) => {
                self.table(&["table"], &op.table);
                self.constraint(created, &op.table, &op.name);
                self.column_list(&["columns"], &op.columns);
                self.reference(&["references"], &op.references, Some(op.columns.len()));
            }
            Operation::DropConstraint(op) => {
                self.table(&["table"], &op.table);
                self.identifier(&["name"], "constraint name", &op.name);
            }
            Operation::RenameConstraint(op) => {
                self.table(&["table"], &op.table);
                self.identifier(&["from"], "constraint name", &op.from);
                self.identifier(&["to"], "constraint name", &op.to);
                if op.from == op.to {
                    self.error(
                        &["to"],
                        format!("`to` is the constraint's current name `{}`", op.to),
                    );
                }
            }
            Operation::CreateIndex(op) => {
                self.table(&["table"], &op.table);
                self.identifier(&["name"], "index name", &op.name);
                if op.name.contains('.') {
                    self.error(
                        &["name"],
                        "an index is created in its table's schema: give the bare index name"
                            .to_string(),
                    );
                }
                let (schema, _) = split_table(&op.table);
                let qualified = format!("{}.{}", schema.unwrap_or("public"), op.name);
                if !created.indexes.insert(qualified) {
                    self.error(
                        &["name"],
                        format!("index `{}` is created twice in this migration", op.name),
                    );
                }
                if op.columns.is_empty() {
                    self.error(
                        &["columns"],
                        "an index needs at least one column".to_string(),
                    );
                }
                for (i, column) in op.columns.iter().enumerate() {
                    let position = i.to_string();
                    // Entries may be expressions (`lower(email)`): only emptiness is certain.
                    self.non_empty(&["columns", &position], "column", Some(column));
                }
                self.non_empty(&["predicate"], "predicate", op.predicate.as_deref());
                if let Some(method) = &op.method {
                    let method = method.to_ascii_lowercase();
                    if op.unique && method != "btree" {
                        self.error(
                            &["method"],
                            format!("only btree indexes can be unique in PostgreSQL, not {method}"),
                        );
                    } else if !BUILTIN_INDEX_METHODS.contains(&method.as_str()) {
                        self.warn(
                            &["method"],
                            format!(
                                "`{method}` is not a built-in index method (those are {}); \
                                 it must come from an installed extension",
                                BUILTIN_INDEX_METHODS.join(", ")
                            ),
                        );
                    }
                }
            }
            Operation::DropIndex(op) => self.table(&["name"], &op.name),
            Operation::SplitTable(op) => {
                self.table(&["table"], &op.table);
                self.table(&["new_table"], &op.new_table);
                if normalize_table(&op.table) == normalize_table(&op.new_table) {
                    self.error(
                        &["new_table"],
                        "`new_table` must differ from `table`".to_string(),
                    );
                }
                if !created.tables.insert(normalize_table(&op.new_table)) {
                    self.error(
                        &["new_table"],
                        format!(
                            "table `{}` is created twice in this migration",
                            op.new_table
                        ),
                    );
                }
                self.column_list(&["columns"], &op.column_names());
                self.split_table_columns(op);
            }
            Operation::CreateEnum(op) => {
                self.table(&["name"], &op.name);
                if op.values.is_empty() {
                    self.error(&["values"], "an enum needs at least one value".to_string());
                }
                let mut seen = HashSet::new();
                for (i, value) in op.values.iter().enumerate() {
                    self.enum_label(&["values", &i.to_string()], value);
                    if !seen.insert(value.as_str()) {
                        self.error(
                            &["values", &i.to_string()],
                            format!("value `{value}` is listed twice"),
                        );
                    }
                }
            }
            Operation::DropEnum(op) => self.table(&["name"], &op.name),
            Operation::AddEnumValue(op) => {
                self.table(&["name"], &op.name);
                self.enum_label(&["value"], &op.value);
                if op.before.is_some() && op.after.is_some() {
                    self.error(&["after"], "give `before` or `after`, not both".to_string());
                }
                for (key, neighbour) in [("before", &op.before), ("after", &op.after)] {
                    if neighbour.as_deref() == Some(op.value.as_str()) {
                        self.error(
                            &[key],
                            format!("`{key}` names the new value `{}` itself", op.value),
                        );
                    }
                }
            }
            Operation::RenameEnumValue(op) => {
                self.table(&["name"], &op.name);
                self.enum_label(&["from"], &op.from);
                self.enum_label(&["to"], &op.to);
                if op.from == op.to {
                    self.error(
                        &["to"],
                        format!("`to` is the value's current label `{}`", op.to),
                    );
                }
            }
            Operation::RawSql(op) => {
                self.non_empty(&["up"], "up", Some(&op.up));
                self.non_empty(&["down"], "down", op.down.as_deref());
                match (op.phase, &op.down) {
                    (RawSqlPhase::Expand, None) => self.warn(
                        &["up"],
                        "irreversible: this raw_sql has no `down`, so a rollback cannot undo \
                         it; give `down` with the SQL that reverses `up`"
                            .to_string(),
                    ),
                    (RawSqlPhase::Contract, Some(_)) => self.warn(
                        &["down"],
                        "`down` is never run: this raw_sql runs in the contract phase, which \
                         is not rolled back"
                            .to_string(),
                    ),
                    _ => {}
                }
            }
            Operation::SetReplicaIdentity(op) => {
                self.table(&["table"], &op.table);
                match (op.identity, &op.index) {
                    (ReplicaIdentityKind::Index, None) => self.error(
                        &["identity"],
                        "`identity = \"index\"` needs `index`: the unique index whose columns identify a row".to_string(),
                    ),
                    (ReplicaIdentityKind::Index, Some(index)) => {
                        self.identifier(&["index"], "index name", index);
                    }
                    (_, Some(_)) => self.error(
                        &["index"],
                        "`index` is only for `identity = \"index\"`".to_string(),
                    ),
                    (_, None) => {}
                }
            }
            Operation::SetComment(op) => {
                self.table(&["table"], &op.table);
                if let Some(column) = &op.column {
                    self.column(&["column"], column);
                }
            }
            Operation::AddPrimaryKey(op) => {
                self.table(&["table"], &op.table);
                self.column_list(&["columns"], &op.columns);
                if let Some(name) = &op.name {
                    self.constraint(created, &op.table, name);
                }
            }
        }
    }

    /// `keyed`: an add_primary_key of the migration gives the table its key.
    fn create_table_columns(
        &mut self,
        columns: &[ColumnDef],
        primary_key: Option<&[String]>,
        keyed: bool,
    ) {
        if columns.is_empty() {
            self.error(
                &["columns"],
                "a table needs at least one column".to_string(),
            );
        }
        let mut seen = HashSet::new();
        for (i, column) in columns.iter().enumerate() {
            let position = i.to_string();
            self.column_def(&["columns", &position], column);
            if !seen.insert(column.name.as_str()) {
                self.error(
                    &["columns", &position, "name"],
                    format!("column `{}` is declared twice", column.name),
                );
            }
        }
        let column_keys: Vec<usize> = columns
            .iter()
            .enumerate()
            .filter(|(_, column)| column.primary_key)
            .map(|(i, _)| i)
            .collect();
        match (primary_key, column_keys.as_slice()) {
            (Some(_), [first, ..]) => {
                let position = first.to_string();
                self.error(
                    &["columns", &position, "primary_key"],
                    "the primary key is given twice: both `primary_key = true` on a column and \
                     a table-level `primary_key` list; keep one"
                        .to_string(),
                );
            }
            (None, [_, second, ..]) => {
                let position = second.to_string();
                self.error(
                    &["columns", &position, "primary_key"],
                    "several columns say `primary_key = true`; a key over several columns is \
                     written `primary_key = [\"a\", \"b\"]` at the table level"
                        .to_string(),
                );
            }
            (None, []) if keyed => {}
            (None, []) => self.warn(
                &["table"],
                "no primary key: zdm's backfills and split_table work by primary key, and \
                 logical replication needs one; give a column `primary_key = true` or a \
                 table-level `primary_key`"
                    .to_string(),
            ),
            _ => {}
        }
        if let Some(key) = primary_key {
            self.column_list(&["primary_key"], key);
            for (i, name) in key.iter().enumerate() {
                if !columns.iter().any(|column| &column.name == name) {
                    let position = i.to_string();
                    self.error(
                        &["primary_key", &position],
                        format!("primary key column `{name}` is not a column of this table"),
                    );
                }
            }
        }
    }

    fn column_def(&mut self, path: &[&str], column: &ColumnDef) {
        let at = |key: &'static str| [path, &[key]].concat();
        self.column(&at("name"), &column.name);
        self.non_empty(&at("type"), "type", Some(&column.data_type));
        self.non_empty(&at("default"), "default", column.default.as_deref());
        self.non_empty(&at("check"), "check", column.check.as_deref());
        self.non_empty(&at("generated"), "generated", column.generated.as_deref());
        if let Some(reference) = &column.references {
            self.reference(&at("references"), reference, Some(1));
        }
        if column.identity.is_some() && column.generated.is_some() {
            self.error(
                &at("generated"),
                "a column is an `identity` or `generated`, not both".to_string(),
            );
        }
        if column.sequence.is_some() && column.identity.is_none() {
            self.error(
                &at("sequence"),
                "`sequence` options belong to an `identity` column".to_string(),
            );
        }
        if column.default.is_some() && (column.identity.is_some() || column.generated.is_some()) {
            self.error(
                &at("default"),
                "an identity or generated column has no `default` of its own".to_string(),
            );
        }
    }

    fn reference(&mut self, path: &[&str], reference: &Reference, columns: Option<usize>) {
        let at = |key: &'static str| [path, &[key]].concat();
        self.table(&at("table"), &reference.table);
        self.column_list(&at("columns"), &reference.columns);
        if let Some(expected) = columns {
            if !reference.columns.is_empty() && reference.columns.len() != expected {
                self.error(
                    &at("columns"),
                    format!(
                        "the foreign key has {expected} referencing column(s) but references {}",
                        reference.columns.len()
                    ),
                );
            }
        }
        if let Some(action) = &reference.on_delete {
            if !ON_DELETE.contains(&action.to_ascii_lowercase().as_str()) {
                self.error(
                    &at("on_delete"),
                    format!(
                        "unknown on_delete action `{action}`{}",
                        crate::suggest::hint(
                            action,
                            &ON_DELETE,
                            &crate::suggest::one_of(&ON_DELETE)
                        )
                    ),
                );
            }
        }
    }

    fn constraint(&mut self, created: &mut Names, table: &str, name: &str) {
        self.identifier(&["name"], "constraint name", name);
        if !created
            .constraints
            .insert((normalize_table(table), name.to_string()))
        {
            self.error(
                &["name"],
                format!("constraint `{name}` on `{table}` is added twice in this migration"),
            );
        }
    }

    /// A non-empty list of distinct column names.
    /// split_table's key renames and moved columns: names, the `up`/`down` pair (a new type
    /// needs both), and no two columns of the new table under one name.
    fn split_table_columns(&mut self, op: &SplitTable) {
        let mut names: HashSet<&str> = HashSet::new();
        for (from, to) in &op.key {
            self.column(&["key", from], from);
            self.column(&["key", from], to);
            if !names.insert(to.as_str()) {
                self.error(
                    &["key", from],
                    format!(
                        "two key columns of `{}` would be named `{to}`",
                        op.new_table
                    ),
                );
            }
        }
        for (i, moved) in op.columns.iter().enumerate() {
            let position = i.to_string();
            let at = |key: &'static str| -> Vec<&str> {
                if key.is_empty() {
                    vec!["columns", position.as_str()]
                } else {
                    vec!["columns", position.as_str(), key]
                }
            };
            if let Some(to) = &moved.to {
                self.column(&at("to"), to);
            }
            self.non_empty(&at("type"), "type", moved.data_type.as_deref());
            self.non_empty(&at("up"), "up", moved.up.as_deref());
            self.non_empty(&at("down"), "down", moved.down.as_deref());
            self.non_empty(&at("default"), "default", moved.default.as_deref());
            match (&moved.up, &moved.down) {
                (Some(_), None) => self.error(
                    &at("up"),
                    format!(
                        "`up` without `down`: give `down` too (the new table's value back to the old column `{}`, for the old version)",
                        moved.column
                    ),
                ),
                (None, Some(_)) => self.error(
                    &at("down"),
                    format!(
                        "`down` without `up`: give `up` too (the old row's value for the new table's `{}`)",
                        moved.new_name()
                    ),
                ),
                (None, None) if moved.data_type.is_some() => self.error(
                    &at("type"),
                    format!(
                        "column `{}` changes type: give `up` (old row → new value) and `down` (new value → old column)",
                        moved.column
                    ),
                ),
                _ => {}
            }
            if !names.insert(moved.new_name()) {
                self.error(
                    &at(if moved.to.is_some() { "to" } else { "" }),
                    format!(
                        "`{}` would have two columns named `{}`",
                        op.new_table,
                        moved.new_name()
                    ),
                );
            }
        }
    }

    fn column_list(&mut self, path: &[&str], columns: &[String]) {
        if columns.is_empty() {
            self.error(path, "give at least one column".to_string());
        }
        let mut seen = HashSet::new();
        for (i, column) in columns.iter().enumerate() {
            let position = i.to_string();
            let at = [path, &[position.as_str()]].concat();
            self.column(&at, column);
            if !seen.insert(column.as_str()) {
                self.error(&at, format!("column `{column}` is listed twice"));
            }
        }
    }

    /// A column name: a bare identifier.
    fn column(&mut self, path: &[&str], name: &str) {
        if self.identifier(path, "column name", name) && name.contains('.') {
            self.error(
                path,
                format!(
                    "column name `{name}` contains a dot: give the bare column name (the table \
                     is named by `table`)"
                ),
            );
        }
    }

    /// A table name, `name` or `schema.name` (the schema defaults to `public`).
    fn table(&mut self, path: &[&str], name: &str) {
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() > 2 {
            self.error(
                path,
                format!("`{name}` is not a table name: write `table` or `schema.table`"),
            );
            return;
        }
        for part in parts {
            if !self.identifier(path, "name", part) {
                return;
            }
        }
    }

    /// Checks one identifier; false when it is unusable (so callers skip further checks).
    fn identifier(&mut self, path: &[&str], what: &str, name: &str) -> bool {
        if name.is_empty() {
            self.error(path, format!("the {what} is empty"));
            return false;
        }
        if name.len() > MAX_IDENTIFIER_BYTES {
            self.error(
                path,
                format!(
                    "{what} `{name}` is {} bytes long; PostgreSQL identifiers are at most {} \
                     bytes (it would silently cut the name, and two names could collide)",
                    name.len(),
                    MAX_IDENTIFIER_BYTES
                ),
            );
            return false;
        }
        if name.chars().any(char::is_control) {
            self.error(
                path,
                format!("{what} {name:?} contains a control character"),
            );
            return false;
        }
        if name.trim() != name {
            self.error(
                path,
                format!("{what} `{name}` starts or ends with a space; zdm quotes names as written"),
            );
            return false;
        }
        if name.chars().any(|c| c.is_ascii_uppercase()) {
            self.warn(
                path,
                format!(
                    "{what} `{name}` has upper-case letters: zdm quotes every name, so this is \
                     exactly \"{name}\", a different name from unquoted {name} (which PostgreSQL \
                     folds to `{}`)",
                    name.to_ascii_lowercase()
                ),
            );
        }
        true
    }

    /// An optional SQL text that, when given, must say something.
    /// An enum label: not empty, at most 63 bytes (PostgreSQL's NAMEDATALEN - 1).
    fn enum_label(&mut self, path: &[&str], label: &str) {
        if label.is_empty() {
            self.error(path, "an enum value cannot be empty".to_string());
        } else if label.len() > MAX_IDENTIFIER_BYTES {
            self.error(
                path,
                format!(
                    "enum value `{label}` is {} bytes long; PostgreSQL allows at most {}",
                    label.len(),
                    MAX_IDENTIFIER_BYTES
                ),
            );
        }
    }

    fn non_empty(&mut self, path: &[&str], key: &str, text: Option<&str>) {
        if text.is_some_and(|text| text.trim().is_empty()) {
            self.error(
                path,
                format!(
                    "`{key}` is empty: give the SQL (or, where the key is optional, leave it out)"
                ),
            );
        }
    }

    /// A new table filled from an existing one: the table, a value for columns of the new
    /// table only, a non-empty `where`, and a key to tell the new table's rows apart.
    fn create_table_up(&mut self, op: &CreateTable, up: &CreateTableUp) {
        self.table(&["up", "table"], &up.table);
        if normalize_table(&up.table) == normalize_table(&op.table) {
            self.error(
                &["up", "table"],
                "`up.table` is the table being created: name the existing table its rows come from"
                    .to_string(),
            );
        }
        if up.values.is_empty() {
            self.error(
                &["up", "values"],
                "`up.values` is empty: give each new column's value over the existing row \
                 (e.g. `user_id = \"users.id\"`)"
                    .to_string(),
            );
        }
        for (column, value) in &up.values {
            if !op.columns.iter().any(|c| &c.name == column) {
                let hint = crate::suggest::did_you_mean(
                    column,
                    op.columns.iter().map(|c| c.name.as_str()),
                );
                self.error(
                    &["up", "values", column],
                    format!("`{column}` is not a column of `{}`{hint}", op.table),
                );
            }
            self.non_empty(&["up", "values", column], column, Some(value));
        }
        self.non_empty(&["up", "where"], "where", Some(&up.condition));
        self.non_empty(&["up", "filter"], "filter", up.filter.as_deref());
        let keyed = op.primary_key.is_some() || op.columns.iter().any(|c| c.primary_key);
        if !keyed {
            self.error(
                &["up"],
                "a table filled from another needs a primary key (it tells apart the rows the \
                 old version's writes update)"
                    .to_string(),
            );
        }
    }

    /// A `from` (the other table an `up`/`down` reads): a table name, a `where`, and the
    /// value it is for.
    fn check_from(&mut self, from: Option<&FromTable>, value_key: &str, has_value: bool) {
        let Some(from) = from else {
            return;
        };
        self.table(&["from", "table"], &from.table);
        self.non_empty(&["from", "where"], "where", Some(&from.condition));
        if !has_value {
            self.error(
                &["from"],
                format!(
                    "`from` names the table `{value_key}` reads, but there is no `{value_key}`: \
                     give the value (e.g. `{}.<column>`)",
                    split_table(&from.table).1
                ),
            );
        }
    }
}

/// `(schema, name)` of `name` or `schema.name`.
fn split_table(name: &str) -> (Option<&str>, &str) {
    match name.split_once('.') {
        Some((schema, table)) => (Some(schema), table),
        None => (None, name),
    }
}

/// `public.orders` and `orders` are the same table.
fn normalize_table(name: &str) -> String {
    let (schema, table) = split_table(name);
    format!("{}.{table}", schema.unwrap_or("public"))
}
