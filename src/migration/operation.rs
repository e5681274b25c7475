//! The typed operations a migration file is made of: the contract between the file
//! format (this module's parser) and the planner (`crate::plan`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One step of a migration, as written in its file (`op = "add_column"`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    CreateTable(CreateTable),
    DropTable(DropTable),
    RenameTable(RenameTable),
    AddColumn(AddColumn),
    DropColumn(DropColumn),
    RenameColumn(RenameColumn),
    ChangeType(ChangeType),
    SetNotNull(SetNotNull),
    DropNotNull(DropNotNull),
    SetDefault(SetDefault),
    AddCheck(AddCheck),
    AddUnique(AddUnique),
    AddForeignKey(AddForeignKey),
    DropConstraint(DropConstraint),
    RenameConstraint(RenameConstraint),
    CreateIndex(CreateIndex),
    DropIndex(DropIndex),
    SplitTable(SplitTable),
    CreateEnum(CreateEnum),
    DropEnum(DropEnum),
    AddEnumValue(AddEnumValue),
    RenameEnumValue(RenameEnumValue),
    RawSql(RawSql),
    SetReplicaIdentity(SetReplicaIdentity),
    SetComment(SetComment),
    AddPrimaryKey(AddPrimaryKey),
}

impl Operation {
    /// Every valid `op` value, for error messages ("did you mean ...").
    pub const NAMES: [&'static str; 26] = [
        "create_table",
        "drop_table",
        "rename_table",
        "add_column",
        "drop_column",
        "rename_column",
        "change_type",
        "set_not_null",
        "drop_not_null",
        "set_default",
        "add_check",
        "add_unique",
        "add_foreign_key",
        "drop_constraint",
        "rename_constraint",
        "create_index",
        "drop_index",
        "split_table",
        "create_enum",
        "drop_enum",
        "add_enum_value",
        "rename_enum_value",
        "raw_sql",
        "set_replica_identity",
        "set_comment",
        "add_primary_key",
    ];

    /// This operation's `op` value (`"add_column"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Operation::CreateTable(_) => "create_table",
            Operation::DropTable(_) => "drop_table",
            Operation::RenameTable(_) => "rename_table",
            Operation::AddColumn(_) => "add_column",
            Operation::DropColumn(_) => "drop_column",
            Operation::RenameColumn(_) => "rename_column",
            Operation::ChangeType(_) => "change_type",
            Operation::SetNotNull(_) => "set_not_null",
            Operation::DropNotNull(_) => "drop_not_null",
            Operation::SetDefault(_) => "set_default",
            Operation::AddCheck(_) => "add_check",
            Operation::AddUnique(_) => "add_unique",
            Operation::AddForeignKey(_) => "add_foreign_key",
            Operation::DropConstraint(_) => "drop_constraint",
            Operation::RenameConstraint(_) => "rename_constraint",
            Operation::CreateIndex(_) => "create_index",
            Operation::DropIndex(_) => "drop_index",
            Operation::SplitTable(_) => "split_table",
            Operation::CreateEnum(_) => "create_enum",
            Operation::DropEnum(_) => "drop_enum",
            Operation::AddEnumValue(_) => "add_enum_value",
            Operation::RenameEnumValue(_) => "rename_enum_value",
            Operation::RawSql(_) => "raw_sql",
            Operation::SetReplicaIdentity(_) => "set_replica_identity",
            Operation::SetComment(_) => "set_comment",
            Operation::AddPrimaryKey(_) => "add_primary_key",
        }
    }
}

/// A column as declared in `create_table` or `add_column`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    pub name: String,
    /// SQL type as PostgreSQL spells it (`text`, `bigint`, `numeric(12,2)`, ...).
    #[serde(rename = "type")]
    pub data_type: String,
    #[serde(default = "yes")]
    pub nullable: bool,
    /// SQL expression for the default (`'new'`, `now()`, ...).
    pub default: Option<String>,
    #[serde(default)]
    pub unique: bool,
    #[serde(default)]
    pub primary_key: bool,
    /// SQL boolean expression the column must satisfy.
    pub check: Option<String>,
    pub references: Option<Reference>,
    /// An identity column: `always` or `by_default` (`GENERATED ... AS IDENTITY`).
    pub identity: Option<IdentityKind>,
    /// The identity's sequence options (only with `identity`).
    pub sequence: Option<Box<SequenceOptions>>,
    /// A stored generated column: the SQL expression over the row it is computed from.
    pub generated: Option<String>,
    /// The column's comment (`COMMENT ON COLUMN`), set right after it is created.
    pub comment: Option<String>,
}

/// Which writes may give an identity column a value of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    /// `GENERATED ALWAYS AS IDENTITY`: an INSERT giving a value is refused.
    Always,
    /// `GENERATED BY DEFAULT AS IDENTITY`: an INSERT may give a value.
    ByDefault,
}

/// The sequence options of an identity column (PostgreSQL's defaults where absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceOptions {
    pub start: Option<i64>,
    pub increment: Option<i64>,
    pub min_value: Option<i64>,
    pub max_value: Option<i64>,
    pub cache: Option<i64>,
    #[serde(default)]
    pub cycle: bool,
}

impl SequenceOptions {
    /// `START WITH 1000 INCREMENT BY 1 ...`: the options given, in SQL; empty when none is.
    pub fn sql(&self) -> String {
        let mut parts = Vec::new();
        let mut add = |keyword: &str, value: Option<i64>| {
            if let Some(value) = value {
                parts.push(format!("{keyword} {value}"));
            }
        };
        add("START WITH", self.start);
        add("INCREMENT BY", self.increment);
        add("MINVALUE", self.min_value);
        add("MAXVALUE", self.max_value);
        add("CACHE", self.cache);
        if self.cycle {
            parts.push("CYCLE".to_string());
        }
        parts.join(" ")
    }
}

impl ColumnDef {
    /// The column's `GENERATED ...` clause (identity or stored expression), or empty.
    pub fn generated_sql(&self) -> String {
        if let Some(expression) = &self.generated {
            return format!(" GENERATED ALWAYS AS ({expression}) STORED");
        }
        let Some(kind) = self.identity else {
            return String::new();
        };
        let kind = match kind {
            IdentityKind::Always => "ALWAYS",
            IdentityKind::ByDefault => "BY DEFAULT",
        };
        let options = self
            .sequence
            .as_ref()
            .map(|options| options.sql())
            .unwrap_or_default();
        if options.is_empty() {
            format!(" GENERATED {kind} AS IDENTITY")
        } else {
            format!(" GENERATED {kind} AS IDENTITY ({options})")
        }
    }
}

fn yes() -> bool {
    true
}

/// The target of a foreign key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    /// Referenced table, optionally schema-qualified (`public.customers`).
    pub table: String,
    pub columns: Vec<String>,
    /// `no action` (default), `restrict`, `cascade`, `set null` or `set default`.
    pub on_delete: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTable {
    pub table: String,
    pub columns: Vec<ColumnDef>,
    /// A primary key over several columns (a single one can say `primary_key = true`).
    pub primary_key: Option<Vec<String>>,
    /// Fills the new table from an existing one and keeps both in step until contract
    /// (extract a relation into a new table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up: Option<CreateTableUp>,
}

/// A new table's rows taken from an existing table (Reshape's create_table `up`): one row
/// per row of `table` that `filter` admits, its columns computed by `values` over that row.
/// `up = { table = "users", values = { user_id = "users.id", account_id = "users.account_id" },
/// where = "user_accounts.user_id = users.id", filter = "users.account_id IS NOT NULL" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTableUp {
    /// The existing table the rows come from, optionally schema-qualified.
    pub table: String,
    /// New column -> SQL expression over the existing table's row (named by its table).
    pub values: std::collections::BTreeMap<String, String>,
    /// SQL boolean over both rows (each named by its table): which rows of the new table
    /// belong to a row of the existing one.
    #[serde(rename = "where")]
    pub condition: String,
    /// SQL boolean over the existing table's row: which of its rows have a row in the new
    /// table (absent: every row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropTable {
    pub table: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameTable {
    pub table: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddColumn {
    pub table: String,
    pub column: ColumnDef,
    /// SQL expression over the old row that fills the column for existing rows and for
    /// rows written by the old version.
    pub up: Option<String>,
    /// The other table `up` reads (its value comes from the matching row there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<FromTable>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropColumn {
    pub table: String,
    pub column: String,
    /// SQL expression over the new row that fills the column for the old version while
    /// the new one writes.
    pub down: Option<String>,
    /// The other table `down` reads (its value comes from the matching row there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<FromTable>,
}

/// Another table an `up` or `down` reads, and which of its rows goes with a row of the
/// changed table (Reshape's "complex" up/down): `up = "users.email"` with
/// `from = { table = "users", where = "users.id = profiles.user_id" }`. In `up`/`down`
/// and `where` both tables' columns are qualified by their table's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FromTable {
    /// The other table, optionally schema-qualified.
    pub table: String,
    /// SQL boolean over both rows: which row of `table` goes with a row of the changed
    /// table (at most one may match).
    #[serde(rename = "where")]
    pub condition: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameColumn {
    pub table: String,
    pub column: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeType {
    pub table: String,
    pub column: String,
    #[serde(rename = "type")]
    pub data_type: String,
    /// Old value → new type (e.g. `price_cents::numeric / 100`).
    pub up: String,
    /// New value → old type, for the old version.
    pub down: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetNotNull {
    pub table: String,
    pub column: String,
    /// Fills existing NULLs (and NULLs written by the old version), e.g. `coalesce(phone, '')`.
    pub up: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropNotNull {
    pub table: String,
    pub column: String,
    /// What the old version sees when the new one writes NULL.
    pub down: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetDefault {
    pub table: String,
    pub column: String,
    /// The new default expression; absent drops the default.
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddCheck {
    pub table: String,
    pub name: String,
    /// SQL boolean expression.
    pub check: String,
    /// Per column, its value in the new version from the old row (pgroll's `up`): each
    /// column named here or in `down` moves to a shadow column of its own type until
    /// contract, so rows that violate the constraint are fixed in the new version only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub up: BTreeMap<String, String>,
    /// Per column, its value in the old version from the new row (pgroll's `down`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub down: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddUnique {
    pub table: String,
    pub name: String,
    pub columns: Vec<String>,
    /// Per column, its value in the new version from the old row (pgroll's `up`): each
    /// column named here or in `down` moves to a shadow column of its own type until
    /// contract, so rows that violate the constraint are fixed in the new version only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub up: BTreeMap<String, String>,
    /// Per column, its value in the old version from the new row (pgroll's `down`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub down: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddForeignKey {
    pub table: String,
    pub name: String,
    pub columns: Vec<String>,
    pub references: Reference,
    /// Per column, its value in the new version from the old row (pgroll's `up`): each
    /// column named here or in `down` moves to a shadow column of its own type until
    /// contract, so rows that violate the constraint are fixed in the new version only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub up: BTreeMap<String, String>,
    /// Per column, its value in the old version from the new row (pgroll's `down`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub down: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropConstraint {
    pub table: String,
    pub name: String,
    /// Per column, its value in the new version from the old row (pgroll's
    /// drop_multicolumn_constraint `up`; the column itself when absent): each column named
    /// here or in `down` moves to a shadow column, free of the constraint, until contract.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub up: BTreeMap<String, String>,
    /// Per column, its value in the old version (still bound by the constraint) from the
    /// new row.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub down: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameConstraint {
    pub table: String,
    /// The constraint's current name.
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIndex {
    pub table: String,
    pub name: String,
    /// Columns or expressions, in order.
    pub columns: Vec<String>,
    #[serde(default)]
    pub unique: bool,
    /// Access method (`btree` when absent, `gin`, `brin`, ...).
    pub method: Option<String>,
    /// A partial index's `WHERE` predicate.
    pub predicate: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropIndex {
    /// The index, optionally schema-qualified.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitTable {
    pub table: String,
    /// The new table, keyed by the old one's primary key.
    pub new_table: String,
    /// Columns that move to the new table: a name (moved as it is) or a table saying how.
    #[serde(with = "moved_columns")]
    pub columns: Vec<MovedColumn>,
    /// New names of the primary key's columns in the new table (`{ id = "customer_id" }`);
    /// a key column not named here keeps its name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub key: BTreeMap<String, String>,
}

impl SplitTable {
    /// The moved columns' names in the old table, in order.
    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.column.clone()).collect()
    }
}

/// One column split_table moves. In a file either its name alone (`"marketing_opt_in"`:
/// same name, type and values in the new table) or a table
/// `{ column = "marketing_opt_in", to = "opt_in", type = "text", up = "...", down = "..." }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovedColumn {
    /// The column in the old table.
    pub column: String,
    /// Its name in the new table (absent: the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Its type in the new table (absent: the same; given: `up` and `down` are required).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
    /// SQL over the old table's row (its columns by name): the new table's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up: Option<String>,
    /// SQL over the new table's row (its columns by their new names): the old column's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<String>,
    /// The new table column's default (absent: the old column's, when the value moves as
    /// it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

impl MovedColumn {
    /// Its name in the new table.
    pub fn new_name(&self) -> &str {
        self.to.as_deref().unwrap_or(&self.column)
    }

    /// Whether it moves as it is (no rename, type, transformation or default of its own).
    pub fn is_plain(&self) -> bool {
        self.to.is_none()
            && self.data_type.is_none()
            && self.up.is_none()
            && self.down.is_none()
            && self.default.is_none()
    }
}

/// split_table's `columns`: each a name or a table. The name alone is what split_table files
/// said before columns could be renamed or transformed, and still means the same; a column
/// moved as it is is written back as its name.
mod moved_columns {
    use std::fmt;

    use serde::de::{self, MapAccess, SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::MovedColumn;

    pub fn serialize<S: Serializer>(columns: &[MovedColumn], out: S) -> Result<S::Ok, S::Error> {
        let mut seq = out.serialize_seq(Some(columns.len()))?;
        for column in columns {
            if column.is_plain() {
                seq.serialize_element(&column.column)?;
            } else {
                seq.serialize_element(column)?;
            }
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<Vec<MovedColumn>, D::Error> {
        input.deserialize_seq(Columns)
    }

    struct Columns;

    impl<'de> Visitor<'de> for Columns {
        type Value = Vec<MovedColumn>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Self::Value, A::Error> {
            let mut columns = Vec::new();
            while let Some(column) = items.next_element::<OneColumn>()? {
                columns.push(column.0);
            }
            Ok(columns)
        }
    }

    struct OneColumn(MovedColumn);

    impl<'de> Deserialize<'de> for OneColumn {
        fn deserialize<D: Deserializer<'de>>(input: D) -> Result<Self, D::Error> {
            input.deserialize_any(One).map(OneColumn)
        }
    }

    struct One;

    impl<'de> Visitor<'de> for One {
        type Value = MovedColumn;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a column name or a table `{ column = ..., to, type, up, down, default }`")
        }

        fn visit_str<E: de::Error>(self, name: &str) -> Result<MovedColumn, E> {
            Ok(MovedColumn {
                column: name.to_string(),
                to: None,
                data_type: None,
                up: None,
                down: None,
                default: None,
            })
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MovedColumn, A::Error> {
            MovedColumn::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEnum {
    /// The type, optionally schema-qualified (`public.order_status`).
    pub name: String,
    /// Its labels, in sort order.
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropEnum {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddEnumValue {
    /// The enum type.
    pub name: String,
    /// The new label.
    pub value: String,
    /// Sorts the new label just before this one (at most one of `before` and `after`).
    pub before: Option<String>,
    /// Sorts the new label just after this one (absent both: last).
    pub after: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameEnumValue {
    /// The enum type.
    pub name: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSql {
    pub up: String,
    /// Undo of `up`; without it the migration cannot be rolled back past this step.
    pub down: Option<String>,
    /// The phase `up` runs in.
    #[serde(default)]
    pub phase: RawSqlPhase,
}

/// Where a `raw_sql` operation's `up` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawSqlPhase {
    #[default]
    Expand,
    Contract,
}

/// What logical decoding writes of a row's old version on UPDATE and DELETE
/// (`ALTER TABLE ... REPLICA IDENTITY`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetReplicaIdentity {
    pub table: String,
    pub identity: ReplicaIdentityKind,
    /// The unique index whose columns identify a row (only with `identity = "index"`).
    pub index: Option<String>,
}

/// PostgreSQL's replica identities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaIdentityKind {
    /// The primary key's columns (PostgreSQL's default).
    Default,
    /// Every column.
    Full,
    /// Nothing: UPDATE and DELETE cannot be published.
    Nothing,
    /// The columns of a unique index (`index`).
    Index,
}

/// A table's or a column's comment (`COMMENT ON`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetComment {
    pub table: String,
    /// The column; absent: the table's own comment.
    pub column: Option<String>,
    /// The new comment; absent (or empty) removes it.
    pub comment: Option<String>,
}

/// A primary key on a table that has none, from a unique index built concurrently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddPrimaryKey {
    pub table: String,
    /// The key's columns, in order.
    pub columns: Vec<String>,
    /// The constraint's (and its index's) name; `<table>_pkey` when absent.
    pub name: Option<String>,
}
