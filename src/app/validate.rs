//! `zdm validate`: parse and check every migration file of the directory and list every
//! finding (`file:line:col`); with a database, also plan each pending migration in order
//! against the live catalog (and the catalog each one leaves), report what the database
//! lacks (unknown table, column, constraint, index) at the operation's position, and
//! type-check the files' SQL expressions against the catalog (`crate::plan::typecheck`).
//! Reads the catalog and zdm's state; changes nothing. The caller turns the outcome into
//! the exit code.

use std::io::Write;

use sqlx::Connection;

use crate::config::{self, Config};
use crate::db::catalog::Catalog;
use crate::ledger::Ledger;
use crate::migration::{check_dir, Checked, Diagnostic, DirCheck, Severity};
use crate::plan::{plan_and_simulate, typecheck, PlanError, Problem};

/// Why `zdm validate` could not check the files against the database.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error("cannot connect to {url} to check the migrations against it: {reason}")]
    Connect { url: String, reason: sqlx::Error },
    #[error("cannot read the schema of {url}: {reason}")]
    Introspect { url: String, reason: sqlx::Error },
    #[error("cannot read zdm's state (schema zdm) on {url}: {reason}")]
    State {
        url: String,
        reason: Box<crate::engine::Error>,
    },
}

/// Runs `zdm validate`: offline without a database; with one (`--database-url`,
/// `DATABASE_URL` or `zdm.toml`), also against its catalog when every file parsed. With
/// `json`, one JSON object on `out` ([`json_report`]) instead of the text.
pub async fn run(
    config: &Config,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, ValidateError> {
    let checked = check_dir(&config.migrations_dir);
    let offline_errors = checked.error_count() > 0;
    let database = config.database_url().is_ok();
    let extra = match database {
        true if !offline_errors => against_database(config, &checked.files).await?,
        _ => Vec::new(),
    };
    // Planning builds each migration on the ones before: with one unreadable, the
    // database checks of all would be guesses.
    let skipped = (offline_errors && database).then(|| {
        let unreadable = checked.files.iter().filter(|f| f.errors().next().is_some());
        let names: Vec<String> = unreadable.map(|f| f.path.display().to_string()).collect();
        if names.is_empty() {
            "the migrations directory has errors".to_string()
        } else {
            format!("{} did not pass the offline check", names.join(", "))
        }
    });
    if json {
        let (value, outcome) = json_report(config, &checked, &extra, database, skipped);
        let _ = writeln!(out, "{value:#}");
        return Ok(outcome);
    }
    let outcome = report(config, &checked, &extra, out, err);
    if let Some(why) = skipped {
        let _ = writeln!(
            out,
            "database checks skipped: {why} (fix the errors above, then validate again)"
        );
    }
    Ok(outcome)
}

/// `zdm validate --json`: every finding (`path`, `line`, `column`, `severity`,
/// `message`), every valid migration, the counts, and whether the database was checked.
pub fn json_report(
    config: &Config,
    checked: &DirCheck,
    extra: &[Diagnostic],
    database: bool,
    skipped: Option<String>,
) -> (serde_json::Value, Outcome) {
    use serde_json::json;
    let diagnostics: Vec<_> = checked
        .all()
        .chain(extra)
        .map(|d| {
            json!({
                "path": d.path.display().to_string(),
                "line": d.position.map(|(line, _)| line),
                "column": d.position.map(|(_, column)| column),
                "severity": if d.is_error() { "error" } else { "warning" },
                "message": d.message,
            })
        })
        .collect();
    let valid: Vec<_> = checked
        .files
        .iter()
        .filter(|file| file.errors().next().is_none() && !extra.iter().any(|d| d.path == file.path))
        .filter_map(|file| file.migration.as_ref())
        .map(|m| {
            json!({
                "name": m.name,
                "operations": m.operations.len(),
                "description": m.description,
            })
        })
        .collect();
    let outcome = Outcome {
        migrations: valid.len(),
        errors: checked.error_count() + extra.iter().filter(|d| d.is_error()).count(),
        warnings: checked.warning_count() + extra.iter().filter(|d| !d.is_error()).count(),
    };
    let value = json!({
        "dir": config.migrations_dir.display().to_string(),
        "files": checked.files.len(),
        "valid": valid,
        "errors": outcome.errors,
        "warnings": outcome.warnings,
        "diagnostics": diagnostics,
        "database_checked": database && skipped.is_none(),
        "database_skipped": skipped,
    });
    (value, outcome)
}

/// How many findings `zdm validate` prints per file before it only counts the rest.
pub const MAX_SHOWN_PER_FILE: usize = 50;

/// What `zdm validate` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub migrations: usize,
    pub errors: usize,
    pub warnings: usize,
}

impl Outcome {
    /// Whether the command succeeded under the given flags.
    pub fn passed(&self, deny_warnings: bool) -> bool {
        self.errors == 0 && !(deny_warnings && self.warnings > 0)
    }
}

/// Prints what the files' check found plus `extra` findings (from planning against a
/// database): migrations without an error listed on `out`, every diagnostic on `err`.
pub fn report(
    config: &Config,
    checked: &DirCheck,
    extra: &[Diagnostic],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Outcome {
    let io = |result: std::io::Result<()>| result.unwrap_or(());
    // Each file's first findings are shown, then a count: a file with thousands of errors
    // is broken as a whole, and its first ones say how.
    let mut shown: std::collections::HashMap<&std::path::Path, usize> = Default::default();
    let mut order: Vec<&std::path::Path> = Vec::new();
    for diagnostic in checked.all().chain(extra) {
        let count = shown.entry(&diagnostic.path).or_insert_with(|| {
            order.push(&diagnostic.path);
            0
        });
        *count += 1;
        if *count <= MAX_SHOWN_PER_FILE {
            io(writeln!(err, "{diagnostic}"));
        }
    }
    for path in order {
        let count = shown.get(path).copied().unwrap_or(0);
        if count > MAX_SHOWN_PER_FILE {
            let hidden = count - MAX_SHOWN_PER_FILE;
            io(writeln!(
                err,
                "{}: {hidden} more finding{} not shown (the first {MAX_SHOWN_PER_FILE} are above)",
                path.display(),
                if hidden == 1 { "" } else { "s" }
            ));
        }
    }
    let mut migrations = 0;
    for file in &checked.files {
        // A file the database check flagged (an error, or not checked) is not listed valid.
        let flagged = extra.iter().any(|d| d.path == file.path);
        if let (Some(migration), None, false) = (&file.migration, file.errors().next(), flagged) {
            migrations += 1;
            let operations = migration.operations.len();
            io(writeln!(
                out,
                "{:<40} {operations:>2} operation{}  {}",
                migration.name,
                if operations == 1 { "" } else { "s" },
                migration.description.as_deref().unwrap_or("")
            ));
        }
    }
    let outcome = Outcome {
        migrations,
        errors: checked.error_count() + extra.iter().filter(|d| d.is_error()).count(),
        warnings: checked.warning_count() + extra.iter().filter(|d| !d.is_error()).count(),
    };
    io(writeln!(
        out,
        "{}: {} migration file{}, {} valid, {} error{}, {} warning{}",
        config.migrations_dir.display(),
        checked.files.len(),
        if checked.files.len() == 1 { "" } else { "s" },
        outcome.migrations,
        outcome.errors,
        if outcome.errors == 1 { "" } else { "s" },
        outcome.warnings,
        if outcome.warnings == 1 { "" } else { "s" },
    ));
    outcome
}

/// Plans every file that has not started, in order, against the database's catalog.
async fn against_database(
    config: &Config,
    files: &[Checked],
) -> Result<Vec<Diagnostic>, ValidateError> {
    let url = config.database_url()?;
    let connect = |reason| ValidateError::Connect {
        url: url.to_string(),
        reason,
    };
    let options = url.connect_options().map_err(connect)?;
    let mut conn = url.connect_with(&options).await.map_err(connect)?;
    let catalog = Catalog::load(&mut conn)
        .await
        .map_err(|reason| ValidateError::Introspect {
            url: url.to_string(),
            reason,
        })?;
    let migrations = files.iter().filter_map(|f| f.migration.clone()).collect();
    let ledger = Ledger::load(
        &mut conn,
        &config.migrations_dir,
        migrations,
        Some(&catalog),
    )
    .await
    .map_err(|reason| ValidateError::State {
        url: url.to_string(),
        reason: Box::new(reason),
    })?;
    let (mut found, pending) = plan_files(files, &catalog, &ledger);
    let typed = typecheck::check_files(&mut conn, &pending, config.lock_timeout)
        .await
        .map_err(|reason| ValidateError::Introspect {
            url: url.to_string(),
            reason,
        })?;
    let _ = conn.close().await;
    found.extend(typed);
    found.sort_by(|a, b| (&a.path, a.position).cmp(&(&b.path, b.position)));
    Ok(found)
}

/// The planner's findings for the files after the last started one, and those files.
/// Planning stops at the first migration that cannot be planned: the ones after it build
/// on its result.
pub fn plan_files<'f>(
    files: &'f [Checked],
    catalog: &Catalog,
    ledger: &Ledger,
) -> (Vec<Diagnostic>, Vec<&'f Checked>) {
    let not_started = ledger.not_started();
    let first = files
        .iter()
        .position(|file| {
            file.migration
                .as_ref()
                .is_some_and(|m| not_started.iter().any(|e| e.name == m.name))
        })
        .unwrap_or(files.len());
    let pending = &files[first..];
    let mut current = catalog.clone();
    let mut found = Vec::new();
    for (position, file) in pending.iter().enumerate() {
        let Some(migration) = &file.migration else {
            continue;
        };
        match plan_and_simulate(migration, &current) {
            Ok((_, after)) => current = after,
            Err(error) => {
                found.push(diagnostic(file, &error));
                if let Some(next) = pending.get(position + 1) {
                    found.push(Diagnostic {
                        path: next.path.clone(),
                        position: None,
                        severity: Severity::Warning,
                        message: format!(
                            "not checked against the database: it runs after {}, which \
                             cannot be planned",
                            migration.name
                        ),
                    });
                }
                break;
            }
        }
    }
    (found, pending.iter().collect())
}

/// A plan error at the operation's position (at the offending value when known).
fn diagnostic(file: &Checked, error: &PlanError) -> Diagnostic {
    let position = match (error, &file.source) {
        (
            PlanError::Operation {
                number, problem, ..
            },
            Some(source),
        ) => {
            let index = number.saturating_sub(1);
            match offending_value(problem) {
                Some((key, name)) if holds(file, index, key, name) => source.value(index, &[key]),
                _ => source.operation(index),
            }
        }
        _ => None,
    };
    Diagnostic {
        path: file.path.clone(),
        position,
        severity: Severity::Error,
        message: error.to_string(),
    }
}

/// The key a problem is probably about, and the name it complains of.
fn offending_value(problem: &Problem) -> Option<(&'static str, &str)> {
    match problem {
        Problem::NoTable { table, .. } | Problem::TableExists(table) => Some(("table", table)),
        Problem::NoColumn { column, .. } | Problem::ColumnExists { column, .. } => {
            Some(("column", column))
        }
        Problem::NoConstraint { name, .. }
        | Problem::NoIndex { name, .. }
        | Problem::NoEnum { name, .. }
        | Problem::NameTaken { name, .. } => Some(("name", name)),
        Problem::Refused(_) => None,
    }
}

/// Whether operation `index` has `key` as a plain string naming `name` (schema-qualified
/// or not): then the problem is about that value, not, say, a referenced table.
fn holds(file: &Checked, index: usize, key: &str, name: &str) -> bool {
    let Some(operation) = file
        .migration
        .as_ref()
        .and_then(|m| m.operations.get(index))
    else {
        return false;
    };
    let value = serde_json::to_value(operation).ok();
    let Some(written) = value
        .as_ref()
        .and_then(|v| v.get(key))
        .and_then(|v| v.as_str())
    else {
        return false;
    };
    let bare = |qualified: &str| qualified.rsplit('.').next().unwrap_or("").to_string();
    written == name || bare(written) == bare(name)
}
