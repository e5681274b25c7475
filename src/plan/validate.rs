//! `zdm validate` with a database: besides the offline check of every file, plan each
//! pending migration in order against the live catalog (and the catalog each one leaves)
//! and report what the database lacks (unknown table, column, constraint, index) at the
//! operation's `file:line:col`; then type-check their SQL expressions against the catalog
//! (`super::typecheck`). Reads the catalog and zdm's state; changes nothing.

use std::io::Write;

use sqlx::Connection;

use super::command::Started;
use super::{plan_and_simulate, typecheck, PlanError, Problem};
use crate::cli::ValidateArgs;
use crate::config::{self, Config};
use crate::db::catalog::Catalog;
use crate::engine::state;
use crate::migration::command::{report, Outcome};
use crate::migration::{check_dir, Checked, Diagnostic, Severity};

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
/// `DATABASE_URL` or `zdm.toml`), also against its catalog when every file parsed.
pub async fn run(
    args: &ValidateArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, ValidateError> {
    let config = Config::load(&args.target.overrides())?;
    let checked = check_dir(&config.migrations_dir);
    let offline_errors = checked.error_count() > 0;
    let extra = match config.database_url() {
        Ok(_) if !offline_errors => against_database(&config, &checked.files).await?,
        _ => Vec::new(),
    };
    let outcome = report(&config, &checked, &extra, out, err);
    if offline_errors && config.database_url().is_ok() {
        // Planning builds each migration on the ones before: with one unreadable, the
        // database checks of all would be guesses.
        let unreadable = checked.files.iter().filter(|f| f.errors().next().is_some());
        let names: Vec<String> = unreadable.map(|f| f.path.display().to_string()).collect();
        let _ = writeln!(
            out,
            "database checks skipped: {} (fix the errors above, then validate again)",
            if names.is_empty() {
                "the migrations directory has errors".to_string()
            } else {
                format!("{} did not pass the offline check", names.join(", "))
            }
        );
    }
    Ok(outcome)
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
    let mut conn = sqlx::postgres::PgConnection::connect_with(&options)
        .await
        .map_err(connect)?;
    let catalog = Catalog::load(&mut conn)
        .await
        .map_err(|reason| ValidateError::Introspect {
            url: url.to_string(),
            reason,
        })?;
    let state_error = |reason| ValidateError::State {
        url: url.to_string(),
        reason: Box::new(reason),
    };
    let recorded = if state::exists(&mut conn).await.map_err(state_error)? {
        Some(state::list(&mut conn).await.map_err(state_error)?)
    } else {
        None
    };
    let started = Started::find(recorded.as_deref(), &catalog);
    let (mut found, pending) = plan_files(files, &catalog, &started);
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
    started: &[Started],
) -> (Vec<Diagnostic>, Vec<&'f Checked>) {
    let last_started = files.iter().rposition(|file| {
        file.migration
            .as_ref()
            .is_some_and(|m| started.iter().any(|s| s.name == m.name))
    });
    let mut current = catalog.clone();
    let mut found = Vec::new();
    let pending = &files[last_started.map_or(0, |index| index + 1)..];
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
