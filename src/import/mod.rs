//! `zdm import --from TOOL DIR`: another tool's migrations (`sources`: Flyway,
//! golang-migrate, sqlx, dbmate, Liquibase formatted SQL, Alembic's offline SQL) written as
//! zdm migration files, in the tool's order: statements zdm understands as typed
//! operations (`convert`), the rest as `raw_sql` with the lint findings as comments, the
//! tool's down scripts as rollback SQL. Every file written is checked as `zdm validate`
//! checks it; the report says what became typed, what stayed raw and why.

pub mod convert;
pub mod sources;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::migration::operation::{Operation, RawSql, RawSqlPhase};
pub use convert::Converted;
pub use sources::{Source, Tool};

/// Why nothing was imported.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Read(#[from] sources::Error),
    #[error(
        "{path} exists already: zdm import writes new files only (import into an empty \
         directory, or move it away)"
    )]
    Exists { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {name} as TOML: {why}")]
    Toml { name: String, why: String },
}

/// One zdm file written, and what became of its statements.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub name: String,
    /// The other tool's version of it (what its history table records).
    pub version: String,
    /// The file written.
    pub path: PathBuf,
    pub origin: PathBuf,
    pub typed: Vec<String>,
    /// Statements kept as raw_sql, each with why.
    pub raw: Vec<(String, String)>,
    /// Statements left out (zdm does them itself), each with why.
    pub dropped: Vec<(String, String)>,
    /// What else a person should know (a down script not needed, kept whole, …).
    pub notes: Vec<String>,
    /// What `zdm validate` finds in the file written (empty: it validates).
    pub problems: Vec<String>,
}

/// The file as TOML: a description and the operations.
#[derive(Serialize)]
struct File<'a> {
    description: String,
    operations: &'a [Operation],
}

/// Imports every migration of `tool` in `from` into `into` (created when missing).
pub fn import(tool: Tool, from: &Path, into: &Path) -> Result<Vec<Imported>, Error> {
    let sources = sources::read(tool, from)?;
    let planned: Vec<(String, &Source)> = sources
        .iter()
        .enumerate()
        .map(|(index, source)| (file_stem(index + 1, &source.description), source))
        .collect();
    for (name, _) in &planned {
        let path = into.join(format!("{name}.toml"));
        if path.exists() {
            return Err(Error::Exists { path });
        }
    }
    std::fs::create_dir_all(into).map_err(|source| Error::Write {
        path: into.to_path_buf(),
        source,
    })?;
    let tool_name = Tool::NAMES[tool as usize];
    let mut imported = Vec::new();
    let mut types = convert::ColumnTypes::new();
    for (name, source) in planned {
        let (text, mut report) = render(tool_name, &name, source, &mut types)?;
        let path = into.join(format!("{name}.toml"));
        report.path = path.clone();
        std::fs::write(&path, &text).map_err(|e| Error::Write {
            path: path.clone(),
            source: e,
        })?;
        imported.push(report);
    }
    Ok(imported)
}

/// `0002_add_status` from the position and the description.
fn file_stem(position: usize, description: &str) -> String {
    let mut slug = String::new();
    for c in description.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('_') && !slug.is_empty() {
            slug.push('_');
        }
    }
    let slug = slug.trim_end_matches('_');
    let slug = if slug.is_empty() { "migration" } else { slug };
    format!("{position:04}_{}", &slug[..slug.len().min(50)])
}

/// The zdm file of one source and its report.
fn render(
    tool: &str,
    name: &str,
    source: &Source,
    types: &mut convert::ColumnTypes,
) -> Result<(String, Imported), Error> {
    let mut report = Imported {
        name: name.to_string(),
        version: source.version.clone(),
        path: PathBuf::new(),
        origin: source.origin.clone(),
        typed: Vec::new(),
        raw: Vec::new(),
        dropped: Vec::new(),
        notes: Vec::new(),
        problems: Vec::new(),
    };
    let origin = source
        .origin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let statements = match convert::statements(&source.up, types) {
        Ok(statements) => statements,
        Err(why) => {
            report
                .notes
                .push(format!("its SQL does not parse ({why}): kept as written"));
            vec![Converted::Raw {
                sql: source.up.trim().to_string(),
                why: "does not parse".to_string(),
            }]
        }
    };
    for statement in &statements {
        match statement {
            Converted::Typed { operation, .. } => report.typed.push(describe(operation)),
            Converted::Raw { sql, why } => report.raw.push((one_line(sql), why.clone())),
            Converted::Dropped { sql, why } => report.dropped.push((one_line(sql), why.clone())),
        }
    }
    let has_raw = !report.raw.is_empty();
    let down = source.down.as_deref().map(without_transaction_control);
    let operations = if source.repeatable {
        report.notes.push(
            "a Flyway repeatable: Flyway runs it again whenever it changes; zdm runs each \
             file once, so a later change is a new migration"
                .to_string(),
        );
        whole(&statements, None)
    } else if has_raw && down.is_some() {
        // The down script undoes the whole migration, typed statements included: it can
        // only be the rollback of the whole, so the whole stays one raw_sql.
        report.notes.push(
            "kept as one raw_sql with its down script as rollback: the script undoes all of \
             it, so its statements cannot be split into typed operations"
                .to_string(),
        );
        report.raw.extend(
            report
                .typed
                .drain(..)
                .map(|t| (t, "rolled back by the down script".to_string())),
        );
        whole(&statements, down)
    } else {
        if down.is_some() {
            report.notes.push(
                "its down script is not needed: zdm rolls typed operations back itself".to_string(),
            );
        }
        if has_raw {
            report.notes.push(
                "its raw_sql has no down (the tool had none): rolling back stops there".to_string(),
            );
        }
        convert::operations(&statements, None)
    };
    if operations.is_empty() {
        report
            .notes
            .push("nothing left to run (only transaction control and timeouts)".to_string());
    }
    let description = format!("{tool} {}: {}", source.version, source.description);
    let body = toml::to_string(&File {
        description,
        operations: &operations,
    })
    .map_err(|e| Error::Toml {
        name: name.to_string(),
        why: e.to_string(),
    })?;
    let mut text = format!("# Imported by `zdm import --from {tool}` from {origin}.\n");
    for operation in &operations {
        if let Operation::RawSql(raw) = operation {
            if let Ok(found) = crate::lint::check::check(&raw.up, crate::lint::Context::RawSql) {
                for finding in found {
                    text.push_str(&format!(
                        "# zdm lint: {}[{}]: {} (instead: {})\n",
                        finding.rule.severity.word(),
                        finding.rule.id,
                        finding.detail,
                        finding.rule.instead
                    ));
                }
            }
        }
    }
    text.push('\n');
    text.push_str(&body);
    let checked = crate::migration::check(Path::new(&format!("{name}.toml")), text.as_bytes());
    report.problems = checked
        .errors()
        .map(|diagnostic| diagnostic.to_string())
        .collect();
    Ok((text, report))
}

/// Every statement of `statements` but transaction control, as written, as one raw_sql.
fn whole(statements: &[Converted], down: Option<String>) -> Vec<Operation> {
    let up: Vec<&str> = statements
        .iter()
        .filter_map(|statement| match statement {
            Converted::Raw { sql, .. } | Converted::Typed { sql, .. } => Some(sql.as_str()),
            Converted::Dropped { .. } => None,
        })
        .collect();
    if up.is_empty() {
        return Vec::new();
    }
    vec![Operation::RawSql(RawSql {
        up: up.join("\n"),
        down,
        phase: RawSqlPhase::Expand,
    })]
}

/// `sql` without BEGIN/COMMIT: zdm runs a raw_sql in its own transaction, and a COMMIT in
/// it would end that transaction early.
fn without_transaction_control(sql: &str) -> String {
    match convert::statements(sql, &mut convert::ColumnTypes::new()) {
        Ok(statements) => statements
            .into_iter()
            .filter_map(|statement| match statement {
                Converted::Raw { sql, .. } | Converted::Typed { sql, .. } => Some(sql),
                Converted::Dropped { .. } => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(_) => sql.trim().to_string(),
    }
}

fn one_line(sql: &str) -> String {
    let line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 80 {
        format!("{}…", line.chars().take(79).collect::<String>())
    } else {
        line
    }
}

/// `add_column orders.status`.
fn describe(operation: &Operation) -> String {
    use Operation as O;
    let what = match operation {
        O::CreateTable(o) => o.table.clone(),
        O::DropTable(o) => o.table.clone(),
        O::RenameTable(o) => format!("{} → {}", o.table, o.to),
        O::AddColumn(o) => format!("{}.{}", o.table, o.column.name),
        O::DropColumn(o) => format!("{}.{}", o.table, o.column),
        O::RenameColumn(o) => format!("{}.{} → {}", o.table, o.column, o.to),
        O::ChangeType(o) => format!("{}.{}", o.table, o.column),
        O::SetNotNull(o) => format!("{}.{}", o.table, o.column),
        O::DropNotNull(o) => format!("{}.{}", o.table, o.column),
        O::SetDefault(o) => format!("{}.{}", o.table, o.column),
        O::AddCheck(o) => format!("{} on {}", o.name, o.table),
        O::AddUnique(o) => format!("{} on {}", o.name, o.table),
        O::AddForeignKey(o) => format!("{} on {}", o.name, o.table),
        O::DropConstraint(o) => format!("{} on {}", o.name, o.table),
        O::RenameConstraint(o) => format!("{} → {} on {}", o.from, o.to, o.table),
        O::CreateIndex(o) => format!("{} on {}", o.name, o.table),
        O::DropIndex(o) => o.name.clone(),
        O::SplitTable(o) => format!("{} → {}", o.table, o.new_table),
        O::CreateEnum(o) => o.name.clone(),
        O::DropEnum(o) => o.name.clone(),
        O::AddEnumValue(o) => format!("{} {}", o.name, o.value),
        O::RenameEnumValue(o) => format!("{} {} → {}", o.name, o.from, o.to),
        O::RawSql(_) => String::new(),
        O::SetReplicaIdentity(o) => o.table.clone(),
        O::AddPrimaryKey(o) => format!("{} ({})", o.table, o.columns.join(", ")),
        O::SetComment(o) => match &o.column {
            Some(column) => format!("{}.{column}", o.table),
            None => o.table.clone(),
        },
    };
    format!("{} {what}", operation.name())
}

/// The report `zdm import` prints.
pub fn render_report(imported: &[Imported], into: &Path) -> String {
    let mut out = String::new();
    for file in imported {
        out.push_str(&format!(
            "{}/{}.toml  ← {}\n",
            into.display(),
            file.name,
            file.origin.display()
        ));
        for typed in &file.typed {
            out.push_str(&format!("    typed    {typed}\n"));
        }
        for (sql, why) in &file.raw {
            out.push_str(&format!("    raw_sql  {sql}  ({why})\n"));
        }
        for (sql, why) in &file.dropped {
            out.push_str(&format!("    left out {sql}  ({why})\n"));
        }
        for note in &file.notes {
            out.push_str(&format!("    note     {note}\n"));
        }
        for problem in &file.problems {
            out.push_str(&format!("    PROBLEM  {problem}\n"));
        }
    }
    let typed: usize = imported.iter().map(|f| f.typed.len()).sum();
    let raw: usize = imported.iter().map(|f| f.raw.len()).sum();
    let problems: usize = imported.iter().map(|f| f.problems.len()).sum();
    out.push_str(&format!(
        "{} migration(s) imported: {typed} typed operation(s), {raw} statement(s) kept as \
         raw_sql, {problems} problem(s)\n",
        imported.len()
    ));
    out
}
