//! Why a migration cannot be planned: each error names the migration, the operation (by
//! position and kind) and what is wrong, in words a DBA acts on.

/// A migration that cannot be planned against this database.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("{migration}: operation {number} ({op}): {problem}")]
    Operation {
        migration: String,
        /// 1-based position of the operation in its file.
        number: usize,
        op: &'static str,
        problem: Box<Problem>,
    },
    #[error(
        "{migration}: its operations change tables in several schemas ({schemas}); \
         one migration versions one schema, so split it"
    )]
    MixedSchemas { migration: String, schemas: String },
}

/// What is wrong with one operation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("table {table} does not exist{hint}")]
    NoTable { table: String, hint: String },
    #[error("table {0} already exists")]
    TableExists(String),
    #[error("column {column} does not exist in table {table}{hint}")]
    NoColumn {
        table: String,
        column: String,
        hint: String,
    },
    #[error("column {column} already exists in table {table}")]
    ColumnExists { table: String, column: String },
    #[error("constraint {name} does not exist on table {table}{hint}")]
    NoConstraint {
        table: String,
        name: String,
        hint: String,
    },
    #[error("a constraint or index named {name} already exists in schema {schema}")]
    NameTaken { schema: String, name: String },
    #[error("index {name} does not exist in schema {schema}{hint}")]
    NoIndex {
        schema: String,
        name: String,
        hint: String,
    },
    #[error("enum type {name} does not exist{hint}")]
    NoEnum { name: String, hint: String },
    #[error("{0}")]
    Refused(String),
}
