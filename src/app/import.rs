//! `zdm import --from TOOL DIR [--into DIR] [--adopt]`: another tool's migrations written
//! as zdm files (`crate::import`) into the migrations directory, with the report of what
//! became typed and what stayed raw; with `--adopt`, the ones that tool's history table
//! records as applied on the database are recorded complete in zdm's state (nothing runs),
//! so zdm takes over from the next one.

use std::path::{Path, PathBuf};

use sqlx::{Connection, PgConnection};

use super::run::{connect, connect_plain, CommandError};
use crate::config::Config;
use crate::import::{self, Imported, Tool};
use crate::plan::{ContractDrops, Plan};

/// Why `zdm import` stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Import(#[from] import::Error),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("cannot read {table}, {tool}'s history of what it applied: {source}")]
    History {
        tool: &'static str,
        table: &'static str,
        source: sqlx::Error,
    },
    #[error(
        "{table} says the last migration golang-migrate ran ({version}) failed half way \
         (dirty): fix it with golang-migrate first (`migrate force`), then adopt"
    )]
    Dirty { table: &'static str, version: i64 },
    #[error("{path} does not validate, so it cannot be adopted: {why}")]
    Invalid { path: PathBuf, why: String },
}

/// Imports `from` into `into` (the configured migrations directory by default), then
/// adopts what the database applied when `adopt`; the report, and whether every file
/// written validates.
pub async fn run(
    config: &Config,
    tool: Tool,
    from: &Path,
    into: Option<&PathBuf>,
    adopt: bool,
) -> Result<(String, bool), ImportError> {
    let into = into.unwrap_or(&config.migrations_dir);
    let imported: Vec<Imported> = import::import(tool, from, into)?;
    let valid = imported.iter().all(|file| file.problems.is_empty());
    let mut report = import::render_report(&imported, into);
    if !valid {
        report.push_str(
            "some files do not validate (PROBLEM above): fix them by hand, then `zdm validate`\n",
        );
    }
    if adopt {
        report.push_str(&adopt_applied(config, tool, &imported).await?);
    }
    Ok((report, valid))
}

/// Records as complete every imported migration the tool's history says it applied.
async fn adopt_applied(
    config: &Config,
    tool: Tool,
    imported: &[Imported],
) -> Result<String, ImportError> {
    let mut conn = connect_plain(config).await?;
    let applied = applied(&mut conn, tool, imported).await;
    let _ = conn.close().await;
    let applied = applied?;
    let mut engine = connect(config).await?;
    let mut lines = Vec::new();
    for file in imported
        .iter()
        .filter(|file| applied.contains(&file.version))
    {
        let text = std::fs::read(&file.path).map_err(|e| ImportError::Invalid {
            path: file.path.clone(),
            why: e.to_string(),
        })?;
        let checked = crate::migration::check(&file.path, &text);
        let valid = checked.errors().next().is_none();
        let Some(migration) = checked.migration.filter(|_| valid) else {
            return Err(ImportError::Invalid {
                path: file.path.clone(),
                why: "`zdm validate` says why".to_string(),
            });
        };
        let plan = Plan {
            migration: migration.name.clone(),
            // Applied by the other tool: no version schema of zdm's shows it.
            version_schema: String::new(),
            steps: Vec::new(),
            drops: ContractDrops::default(),
        };
        let outcome = engine
            .adopt(&plan, &migration.checksum)
            .await
            .map_err(CommandError::from)?;
        lines.push(format!("adopted  {}: {outcome}", migration.name));
    }
    engine.close().await.map_err(CommandError::from)?;
    let count = lines.len();
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&format!(
        "{count} migration(s) {} applied recorded as complete in zdm's state; zdm takes \
         over from the next one\n",
        Tool::NAMES[tool as usize]
    ));
    Ok(out)
}

/// The versions `tool` recorded as applied on this database, in the terms of the imported
/// files' versions.
async fn applied(
    conn: &mut PgConnection,
    tool: Tool,
    imported: &[Imported],
) -> Result<Vec<String>, ImportError> {
    let name = Tool::NAMES[tool as usize];
    let (table, query) = match tool {
        Tool::Flyway => (
            "flyway_schema_history",
            "SELECT coalesce(version, 'R') FROM flyway_schema_history WHERE success",
        ),
        Tool::Sqlx => (
            "_sqlx_migrations",
            "SELECT version::text FROM _sqlx_migrations WHERE success",
        ),
        Tool::Dbmate => (
            "schema_migrations",
            "SELECT version::text FROM schema_migrations",
        ),
        Tool::LiquibaseSql => (
            "databasechangelog",
            "SELECT author || ':' || id FROM databasechangelog",
        ),
        Tool::GolangMigrate => (
            "schema_migrations",
            "SELECT version, dirty FROM schema_migrations",
        ),
        Tool::Alembic => ("alembic_version", "SELECT version_num FROM alembic_version"),
    };
    let history = |source| ImportError::History {
        tool: name,
        table,
        source,
    };
    Ok(match tool {
        // One row: the version it is at; everything up to it ran.
        Tool::GolangMigrate => {
            let row: Option<(i64, bool)> = sqlx::query_as(query)
                .fetch_optional(&mut *conn)
                .await
                .map_err(history)?;
            let Some((current, dirty)) = row else {
                return Ok(Vec::new());
            };
            if dirty {
                return Err(ImportError::Dirty {
                    table,
                    version: current,
                });
            }
            imported
                .iter()
                .filter(|file| file.version.parse::<i64>().is_ok_and(|v| v <= current))
                .map(|file| file.version.clone())
                .collect()
        }
        // One row: the revision it is at; the sections up to it ran, in order.
        Tool::Alembic => {
            let current: Option<String> = sqlx::query_scalar(query)
                .fetch_optional(&mut *conn)
                .await
                .map_err(history)?;
            let Some(current) = current else {
                return Ok(Vec::new());
            };
            match imported.iter().position(|file| file.version == current) {
                Some(at) => imported[..=at].iter().map(|f| f.version.clone()).collect(),
                None => Vec::new(),
            }
        }
        _ => {
            let versions: Vec<String> = sqlx::query_scalar(query)
                .fetch_all(&mut *conn)
                .await
                .map_err(history)?;
            // Flyway writes `2` or `2.0` as it was named; compare as version numbers.
            let same = |a: &str, b: &str| {
                let parts = |v: &str| -> Vec<String> {
                    let mut parts: Vec<String> = v
                        .split(['.', '_'])
                        .map(|p| p.trim_start_matches('0').to_string())
                        .collect();
                    while parts.last().is_some_and(|p| p.is_empty()) && parts.len() > 1 {
                        parts.pop();
                    }
                    parts
                };
                a == b || parts(a) == parts(b)
            };
            imported
                .iter()
                .filter(|file| versions.iter().any(|v| same(v, &file.version)))
                .map(|file| file.version.clone())
                .collect()
        }
    })
}
