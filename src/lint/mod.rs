//! `zdm lint`: static safety rules for migration SQL, on PostgreSQL's own parse tree
//! (libpg_query): plain `.sql` migration files and the `raw_sql` operations of zdm's own
//! files. Each finding names its rule, `file:line:col`, the lock taken and on what, why
//! it hurts a live database and the zdm operation that does it safely (`rules`); the
//! checks are in `check`, the output formats (text, JSON, GitHub, GitLab, SARIF) in
//! `report`. Reads files only; never connects.

pub mod check;
pub mod report;
pub mod rules;

use std::path::{Path, PathBuf};

pub use check::{Context, Finding};
pub use rules::{Rule, Severity};

use crate::migration::operation::Operation;
use crate::position::LineIndex;

/// A finding at its place in a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    /// Where inside a zdm file's snippet, when the file position is the snippet's own
    /// (`line 3, column 1 of operation 2's up`).
    pub within: Option<String>,
    pub finding: Finding,
}

/// A file that could not be linted, and why (it does not parse, it cannot be read).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: PathBuf,
    pub position: Option<(usize, usize)>,
    pub message: String,
}

/// Everything one `zdm lint` found.
#[derive(Debug, Clone, Default)]
pub struct Linted {
    pub files: usize,
    pub findings: Vec<Located>,
    pub problems: Vec<Problem>,
}

impl Linted {
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.finding.rule.severity == severity)
            .count()
    }

    /// Whether the SQL may go to CI's next step: no error, no unreadable file (and no
    /// warning when they are denied).
    pub fn passed(&self, deny_warnings: bool) -> bool {
        self.problems.is_empty()
            && self.count(Severity::Error) == 0
            && (!deny_warnings || self.count(Severity::Warning) == 0)
    }
}

/// Lints every path: a `.sql` file, a zdm migration file, or a directory of them (not
/// recursive, in name order, as migration tools read them).
pub fn lint_paths(paths: &[PathBuf]) -> Linted {
    let mut linted = Linted::default();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
                Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
                Err(error) => {
                    linted.problems.push(Problem {
                        path: path.clone(),
                        position: None,
                        message: format!("cannot read the directory: {error}"),
                    });
                    continue;
                }
            };
            entries.sort();
            for entry in entries.iter().filter(|e| is_lintable(e)) {
                lint_file(entry, &mut linted);
            }
        } else {
            lint_file(path, &mut linted);
        }
    }
    linted
}

/// `.sql` files and zdm migration files.
fn is_lintable(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    path.is_file()
        && (name.ends_with(".sql") || crate::migration::directory::is_migration_file_name(name))
}

fn lint_file(path: &Path, linted: &mut Linted) {
    let problem = |message: String, position| Problem {
        path: path.to_path_buf(),
        position,
        message,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            linted
                .problems
                .push(problem(format!("cannot read the file: {error}"), None));
            return;
        }
    };
    linted.files += 1;
    if path.extension().is_some_and(|e| e == "sql") {
        let lines = LineIndex::new(&text);
        match check::check(&text, Context::SqlFile) {
            Ok(found) => linted.findings.extend(found.into_iter().map(|finding| {
                let (line, column) = lines.line_column(&text, finding.offset);
                Located {
                    path: path.to_path_buf(),
                    line,
                    column,
                    within: None,
                    finding,
                }
            })),
            Err(error) => linted.problems.push(problem(error.to_string(), None)),
        }
        return;
    }
    lint_migration(path, &text, linted);
}

/// The `raw_sql` operations of a zdm migration file (their `up` and `down`).
fn lint_migration(path: &Path, text: &str, linted: &mut Linted) {
    let checked = crate::migration::check(path, text.as_bytes());
    let (Some(migration), Some(source)) = (&checked.migration, &checked.source) else {
        linted.problems.push(Problem {
            path: path.to_path_buf(),
            position: None,
            message: "not a readable zdm migration file: `zdm validate` says why".to_string(),
        });
        return;
    };
    for (index, operation) in migration.operations.iter().enumerate() {
        let Operation::RawSql(raw) = operation else {
            continue;
        };
        let snippets = [("up", Some(&raw.up)), ("down", raw.down.as_ref())];
        for (key, sql) in snippets {
            let Some(sql) = sql else { continue };
            let at = source.value(index, &[key]).unwrap_or((1, 1));
            match check::check(sql, Context::RawSql) {
                Ok(found) => {
                    for finding in found {
                        let (line, column, within) =
                            in_file(text, at, sql, finding.offset, index, key);
                        linted.findings.push(Located {
                            path: path.to_path_buf(),
                            line,
                            column,
                            within,
                            finding,
                        });
                    }
                }
                Err(error) => linted.problems.push(Problem {
                    path: path.to_path_buf(),
                    position: Some(at),
                    message: format!("operation {}'s `{key}` {error}", index + 1),
                }),
            }
        }
    }
}

/// The file position of byte `offset` of snippet `sql`, whose value starts at `value` in
/// the file: exact for a TOML multi-line string or a snippet of one line; otherwise the
/// value's own position, with the place inside the snippet said in words.
fn in_file(
    text: &str,
    value: (usize, usize),
    sql: &str,
    offset: usize,
    index: usize,
    key: &str,
) -> (usize, usize, Option<String>) {
    let (line, column) = crate::position::line_column(sql, offset);
    let start = offset_of(text, value);
    let rest = &text[start..];
    let multi_line = ["\"\"\"\n", "'''\n", "\"\"\"\r\n", "'''\r\n"]
        .iter()
        .any(|opening| rest.starts_with(opening));
    if multi_line {
        return (value.0 + line, column, None);
    }
    let quoted = rest.starts_with('"') || rest.starts_with('\'');
    if quoted && !sql.contains('\n') && !rest.lines().next().unwrap_or("").contains('\\') {
        return (value.0, value.1 + column, None);
    }
    (
        value.0,
        value.1,
        Some(format!(
            "line {line}, column {column} of operation {}'s `{key}`",
            index + 1
        )),
    )
}

/// The byte offset of a 1-based line and column (in characters).
fn offset_of(text: &str, (line, column): (usize, usize)) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        text.match_indices('\n')
            .nth(line - 2)
            .map_or(text.len(), |(at, _)| at + 1)
    };
    text[line_start..]
        .char_indices()
        .nth(column.saturating_sub(1))
        .map_or(text.len(), |(at, _)| line_start + at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_sql_finding_points_into_the_toml_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0001_x.toml");
        std::fs::write(
            &path,
            "description = \"x\"\n\n[[operations]]\nop = \"raw_sql\"\nup = \"\"\"\n\
             SELECT 1;\n  CREATE INDEX i ON orders (a);\n\"\"\"\n\
             down = \"DROP INDEX i;\"\n",
        )
        .expect("write");
        let linted = lint_paths(&[path]);
        assert!(linted.problems.is_empty(), "{:?}", linted.problems);
        let found: Vec<(&str, usize, usize)> = linted
            .findings
            .iter()
            .map(|f| (f.finding.rule.id, f.line, f.column))
            .collect();
        assert_eq!(
            found,
            vec![
                ("require-concurrent-index-creation", 7, 3),
                ("require-concurrent-index-deletion", 9, 9),
            ]
        );
    }
}
