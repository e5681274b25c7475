//! `zdm status`: every migration recorded on a database (status, steps done per phase,
//! version schema) and the `search_path` that selects each live version, for a person
//! or as JSON. Reads only; takes no lock and creates nothing.

use std::fmt::Write as _;

use serde::Serialize;
use sqlx::PgConnection;

use super::state::{self, MigrationRecord};
use super::{phase_name, Context, Error, Status};
use crate::db::quote_ident;

/// The schema holding the physical tables: what the application sees before any
/// migration has a version schema.
pub const BASE_SCHEMA: &str = "public";

/// Everything `zdm status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// The target database, password redacted.
    pub database: String,
    pub migrations: Vec<MigrationStatus>,
    /// The application versions that work right now, oldest first.
    pub versions: Vec<Version>,
}

/// One migration and whether its version schema is there.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationStatus {
    #[serde(flatten)]
    pub record: MigrationRecord,
    pub version_schema_exists: bool,
}

/// One application version and how a client chooses it.
#[derive(Debug, Clone, Serialize)]
pub struct Version {
    /// The migration that introduced it, or `None` for the physical tables.
    pub migration: Option<String>,
    pub search_path: String,
}

/// Reads the state of the database `conn` is connected to (`database` names it, redacted).
pub async fn report(conn: &mut PgConnection, database: String) -> Result<StatusReport, Error> {
    let records = state::list(conn).await?;
    let mut migrations = Vec::with_capacity(records.len());
    for record in records {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(&record.version_schema)
                .fetch_one(&mut *conn)
                .await
                .context("looking for version schemas")?;
        migrations.push(MigrationStatus {
            record,
            version_schema_exists: exists,
        });
    }
    let versions = versions(&migrations);
    Ok(StatusReport {
        database,
        migrations,
        versions,
    })
}

/// The live versions: the physical tables until a migration completes, then the newest
/// completed migration's views, plus every version schema of a migration in flight.
fn versions(migrations: &[MigrationStatus]) -> Vec<Version> {
    let live: Vec<&MigrationStatus> = migrations
        .iter()
        .filter(|m| m.version_schema_exists && m.record.status != Status::RolledBack)
        .collect();
    let newest_complete = live
        .iter()
        .rposition(|m| m.record.status == Status::Complete);
    let mut versions = Vec::new();
    let from = match newest_complete {
        Some(index) => index,
        None => {
            versions.push(Version {
                migration: None,
                search_path: BASE_SCHEMA.to_string(),
            });
            0
        }
    };
    versions.extend(live[from..].iter().map(|m| Version {
        migration: Some(m.record.name.clone()),
        search_path: quote_ident(&m.record.version_schema),
    }));
    versions
}

impl StatusReport {
    /// The report as a person reads it.
    pub fn render(&self) -> String {
        let mut out = format!("Database: {}\n", self.database);
        if self.migrations.is_empty() {
            out.push_str("\nNo migration has been started on this database.\n");
        }
        for m in &self.migrations {
            let r = &m.record;
            let status = match (r.status, r.failed_during) {
                (Status::Failed, Some(during)) => format!("failed while {during}"),
                (status, _) => status.to_string(),
            };
            let _ = writeln!(out, "\n{}  {}", r.name, status);
            let progress: Vec<String> = r
                .phases
                .iter()
                .filter(|p| p.total > 0)
                .map(|p| format!("{} {}/{}", phase_name(p.phase), p.done, p.total))
                .collect();
            if !progress.is_empty() {
                let _ = writeln!(out, "  steps:          {}", progress.join(", "));
            }
            let schema_note = if m.version_schema_exists {
                ""
            } else {
                " (not present)"
            };
            let _ = writeln!(out, "  version schema: {}{schema_note}", r.version_schema);
            let _ = writeln!(
                out,
                "  started:        {} by {}@{} (database user {})",
                r.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                r.started_by_os_user,
                r.started_from_host,
                r.started_by_db_user
            );
            if let Some(at) = r.finished_at {
                let _ = writeln!(
                    out,
                    "  finished:       {}",
                    at.format("%Y-%m-%d %H:%M:%S UTC")
                );
            }
            if let Some(error) = &r.error {
                let _ = writeln!(out, "  error:          {error}");
            }
        }
        out.push_str("\nVersions (an application chooses one with search_path):\n");
        for v in &self.versions {
            let label = v.migration.as_deref().unwrap_or("physical tables");
            let _ = writeln!(out, "  {label}: SET search_path TO {}", v.search_path);
        }
        out
    }
}
