//! Migrations as data: the file format, its typed operations, and reading a directory of them.
//!
//! A migration is one TOML (or JSON) file; its name is the file stem. [`load_dir`] reads a
//! directory in order and fails with every error found; [`check_dir`] also returns the
//! warnings (what `zdm validate` prints). See `docs/migrations.md` for the format.

pub mod checksum;
mod decode;
pub mod diagnostic;
pub mod directory;
mod node;
pub mod operation;
pub mod sql;
use crate::suggest;
mod validate;

use std::path::{Path, PathBuf};

pub use checksum::{checksum, verify as verify_checksum, ChecksumMismatch};
pub use diagnostic::{Diagnostic, LoadErrors, Severity};
pub use directory::{check_dir, load_checked, load_dir, DirCheck};
pub use operation::Operation;

use node::{Node, SyntaxError, Value};

/// One migration file, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    /// The file stem (`0003_orders_add_status`): the migration's identity.
    pub name: String,
    pub description: Option<String>,
    pub operations: Vec<Operation>,
    /// Queries whose plans the EXPLAIN gate checks (`[[verify]]`), in file order.
    pub verify: Vec<Verify>,
    /// SHA-256 of the file's bytes, hex: a file that ran must never change.
    pub checksum: String,
}

impl Migration {
    /// Refuses this file if it differs from the one that ran with checksum `recorded`.
    pub fn verify_checksum(&self, recorded: &str) -> Result<(), ChecksumMismatch> {
        checksum::verify(&self.name, recorded, &self.checksum)
    }
}

/// The keys a migration file may have at its top level.
const TOP_LEVEL_KEYS: [&str; 3] = ["description", "operations", "verify"];

/// A query of the application whose plan the EXPLAIN gate shows before and after
/// (`[[verify]]` in the file; see docs/migrations.md).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// One SELECT (or other explainable statement) as the application sends it, with
    /// constants in place of parameters. Only planned (`EXPLAIN`), never run.
    pub sql: String,
    /// An index the query must use with the new version (after expand).
    #[serde(default)]
    pub uses_index: Option<String>,
}

/// The two spellings of the same structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

impl Format {
    /// From the file's extension: `.json` is JSON, anything else TOML.
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|extension| extension.to_str()) {
            Some("json") => Format::Json,
            _ => Format::Toml,
        }
    }
}

/// Where each operation of a parsed file was written, so that later checks (the planner's
/// against the catalog, say) can point at `file:line:col` too.
#[derive(Debug, Clone)]
pub struct SourceMap {
    path: PathBuf,
    text: String,
    lines: crate::position::LineIndex,
    operations: Vec<Node>,
    verify: Vec<Node>,
}

impl SourceMap {
    /// The file these positions are in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Line and column of operation `index` (its `[[operations]]` table or `{`).
    pub fn operation(&self, index: usize) -> Option<(usize, usize)> {
        let node = self.operations.get(index)?;
        Some(self.line_column(node.span.start))
    }

    /// Line and column of a value inside operation `index`, following keys and array
    /// indexes (`&["column", "name"]`, `&["columns", "1"]`); the operation's own position
    /// when the path is absent from the file (an optional key left out, say).
    pub fn value(&self, index: usize, path: &[&str]) -> Option<(usize, usize)> {
        let node = self.operations.get(index)?;
        match node.find(path) {
            Some(found) => Some(self.line_column(found.span.start)),
            None => self.operation(index),
        }
    }

    /// Line and column of a value inside `[[verify]]` entry `index` (the entry's own
    /// position when the path is absent).
    pub fn verify(&self, index: usize, path: &[&str]) -> Option<(usize, usize)> {
        let node = self.verify.get(index)?;
        let found = node.find(path).unwrap_or(node);
        Some(self.line_column(found.span.start))
    }

    /// Like [`SourceMap::value`] but the position of the last key itself.
    pub fn key(&self, index: usize, path: &[&str]) -> Option<(usize, usize)> {
        let node = self.operations.get(index)?;
        match node.find_key_span(path) {
            Some(span) => Some(self.line_column(span.start)),
            None => self.operation(index),
        }
    }

    /// A finding about a value of operation `index`, positioned at that value.
    pub fn diagnostic(
        &self,
        index: usize,
        path: &[&str],
        severity: Severity,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            path: self.path.clone(),
            position: self.value(index, path),
            severity,
            message: message.into(),
        }
    }

    fn line_column(&self, offset: usize) -> (usize, usize) {
        self.lines.line_column(&self.text, offset)
    }
}

/// One file, checked: the migration when it could be read, and every finding.
#[derive(Debug, Clone)]
pub struct Checked {
    pub path: PathBuf,
    /// The migration when every operation decoded; the review may still have found errors
    /// in it (see `diagnostics`): [`parse`] and [`load_dir`] refuse those.
    pub migration: Option<Migration>,
    pub source: Option<SourceMap>,
    /// Errors and warnings, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| !d.is_error())
    }
}

/// Parses one migration's text (format from `path`'s extension, name from its stem) and
/// checks it offline. Fails with every error found; warnings are dropped (see [`check`]).
pub fn parse(path: &Path, text: &str) -> Result<Migration, LoadErrors> {
    let checked = check(path, text.as_bytes());
    match checked.migration {
        Some(migration) if checked.errors().next().is_none() => Ok(migration),
        _ => Err(LoadErrors {
            diagnostics: checked.errors().cloned().collect(),
        }),
    }
}

/// Parses and checks one file's bytes; never fails, every problem is a diagnostic.
pub fn check(path: &Path, bytes: &[u8]) -> Checked {
    let mut checked = Checked {
        path: path.to_path_buf(),
        migration: None,
        source: None,
        diagnostics: Vec::new(),
    };
    let at = |text: &str, offset: usize, severity, message: String| Diagnostic {
        path: path.to_path_buf(),
        position: Some(crate::position::line_column(text, offset)),
        severity,
        message,
    };
    // Positions of many findings in one file: lines indexed once, not counted per finding.
    let at_line =
        |lines: &crate::position::LineIndex, text: &str, offset: usize, message| Diagnostic {
            path: path.to_path_buf(),
            position: Some(lines.line_column(text, offset)),
            severity: Severity::Error,
            message,
        };
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let valid = String::from_utf8_lossy(&bytes[..error.valid_up_to()]).into_owned();
            checked.diagnostics.push(at(
                &valid,
                valid.len(),
                Severity::Error,
                "the file is not UTF-8 text".to_string(),
            ));
            return checked;
        }
    };
    // A byte-order mark (some Windows editors write one) is invisible: positions are
    // counted after it. The checksum still covers every byte.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(name) = path.file_stem().and_then(|stem| stem.to_str()) else {
        checked.diagnostics.push(Diagnostic {
            path: path.to_path_buf(),
            position: None,
            severity: Severity::Error,
            message: "the file name is not UTF-8; a migration's name is its file stem".to_string(),
        });
        return checked;
    };
    let parsed = match Format::of(path) {
        Format::Toml => node::from_toml(text),
        Format::Json => node::from_json(text),
    };
    let lines = crate::position::LineIndex::new(text);
    let root = match parsed {
        Ok(root) => root,
        Err(errors) => {
            checked.diagnostics = errors
                .into_iter()
                .map(|SyntaxError { span, message }| at_line(&lines, text, span.start, message))
                .collect();
            return checked;
        }
    };

    let mut errors: Vec<decode::DecodeError> = Vec::new();
    let (description, operation_nodes, verify_nodes) = top_level(&root, &mut errors);
    let mut verify = Vec::with_capacity(verify_nodes.len());
    let mut decoded_verify = Vec::with_capacity(verify_nodes.len());
    for node in verify_nodes {
        match decode::from_node::<Verify>(&node) {
            Ok(entry) if entry.sql.trim().is_empty() => errors.push(decode::DecodeError::at(
                node.span.clone(),
                "`sql` of a [[verify]] entry is empty: give the query to EXPLAIN",
            )),
            Ok(entry) => {
                verify.push(entry);
                decoded_verify.push(node);
            }
            Err(error) => errors.push(error),
        }
    }
    let mut operations = Vec::with_capacity(operation_nodes.len());
    let mut decoded_nodes = Vec::with_capacity(operation_nodes.len());
    for node in operation_nodes {
        match decode::operation(&node) {
            Ok(operation) => {
                operations.push(operation);
                decoded_nodes.push(node);
            }
            Err(found) => errors.extend(found),
        }
    }
    let decoded = errors.is_empty();
    checked.diagnostics = errors
        .into_iter()
        .map(|error| {
            let offset = error.span.map_or(0, |span| span.start);
            at_line(&lines, text, offset, error.message)
        })
        .collect();

    let migration = Migration {
        name: name.to_string(),
        description,
        operations,
        verify,
        checksum: checksum(bytes),
    };
    let source = SourceMap {
        path: path.to_path_buf(),
        text: text.to_string(),
        lines,
        operations: decoded_nodes,
        verify: decoded_verify,
    };
    // The operations that did decode are reviewed even when others did not, so that one
    // run lists every problem of the file; so is their SQL.
    if decoded || !migration.operations.is_empty() {
        checked
            .diagnostics
            .extend(validate::check(&migration, &source));
    }
    checked.diagnostics.extend(sql::check(&migration, &source));
    sort(&mut checked.diagnostics);
    if decoded {
        checked.migration = Some(migration);
        checked.source = Some(source);
    }
    checked
}

/// File order: by position, errors before warnings at the same place.
fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by_key(|d| (d.position, d.severity));
}

/// The description, the operation tables and the `[[verify]]` tables, reporting unknown or
/// mistyped top-level keys.
fn top_level(
    root: &Node,
    errors: &mut Vec<decode::DecodeError>,
) -> (Option<String>, Vec<Node>, Vec<Node>) {
    let Some(entries) = root.entries() else {
        errors.push(decode::DecodeError::at(
            root.span.clone(),
            format!(
                "expected a table with `description` and `operations`, found {}",
                root.kind()
            ),
        ));
        return (None, Vec::new(), Vec::new());
    };
    let mut description = None;
    let mut operations = None;
    let mut verify = Vec::new();
    for entry in entries {
        match (entry.key.as_str(), &entry.value.value) {
            ("description", Value::String(text)) => description = Some(text.clone()),
            ("operations", Value::Array(items)) => operations = Some(items.clone()),
            ("verify", Value::Array(items)) => verify = items.clone(),
            ("verify", _) => errors.push(decode::DecodeError::at(
                entry.value.span.clone(),
                format!(
                    "`verify` must be an array of tables (`[[verify]]` with `sql` and \
                     `uses_index`), found {}",
                    entry.value.kind()
                ),
            )),
            ("description", _) => errors.push(decode::DecodeError::at(
                entry.value.span.clone(),
                format!(
                    "`description` must be a string, found {}",
                    entry.value.kind()
                ),
            )),
            ("operations", _) => {
                errors.push(decode::DecodeError::at(
                    entry.value.span.clone(),
                    format!(
                        "`operations` must be an array of tables (`[[operations]]`), found {}",
                        entry.value.kind()
                    ),
                ));
                operations = Some(Vec::new());
            }
            (key, _) => errors.push(decode::DecodeError::at(
                entry.key_span.clone(),
                format!(
                    "unknown top-level key `{key}`{} (each operation goes in its own \
                     [[operations]] table)",
                    suggest::hint(key, &TOP_LEVEL_KEYS, &suggest::one_of(&TOP_LEVEL_KEYS))
                ),
            )),
        }
    }
    let operations = operations.unwrap_or_else(|| {
        errors.push(decode::DecodeError::at(
            root.span.start..root.span.start,
            "no operations: a migration needs at least one [[operations]] table",
        ));
        Vec::new()
    });
    (description, operations, verify)
}
