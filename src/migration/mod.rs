//! Migrations as data: the file format, its typed operations, and reading a directory of them.

pub mod operation;

pub use operation::Operation;

/// One migration file, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    /// The file stem (`0003_orders_add_status`): the migration's identity.
    pub name: String,
    pub description: Option<String>,
    pub operations: Vec<Operation>,
    /// SHA-256 of the file's bytes, hex: a file that ran must never change.
    pub checksum: String,
}
