//! `zdm status`: every migration recorded on a database (status, steps done per phase,
//! version schema) and the `search_path` that selects each live version, for a person
//! or as JSON, together with the migration files not started yet and any file that
//! changed since it ran. Reads only; takes no lock and creates nothing.

use std::fmt::Write as _;

use serde::Serialize;
use sqlx::PgConnection;

use super::state::{self, MigrationRecord};
use super::{phase_name, Context, Error, Status};
use crate::db::quote_ident;
use crate::migration::{LoadErrors, Migration};

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
    /// Migration files of the configured directory that have not started (or were rolled
    /// back), in the order they run; empty when the files could not be read.
    pub pending: Vec<PendingFile>,
    /// Why the migration files are not listed, when the directory could not be read or a
    /// file has errors (`zdm validate` shows them all).
    pub files_unreadable: Option<String>,
}

/// A migration file that has not run (yet).
#[derive(Debug, Clone, Serialize)]
pub struct PendingFile {
    pub name: String,
    pub description: Option<String>,
    /// SHA-256 of the file, hex.
    pub checksum: String,
    /// It was started once and rolled back (it may have changed since: allowed).
    pub rolled_back: bool,
}

/// One migration and whether its version schema is there.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationStatus {
    #[serde(flatten)]
    pub record: MigrationRecord,
    pub version_schema_exists: bool,
    /// The checksum of its file now, when the file is there and differs from the recorded
    /// one: a migration that ran must not change (`zdm start` refuses it).
    pub file_checksum_changed: Option<String>,
}

/// One application version and how a client chooses it.
#[derive(Debug, Clone, Serialize)]
pub struct Version {
    /// The migration that introduced it, or `None` for the physical tables.
    pub migration: Option<String>,
    pub search_path: String,
}

/// The command that resumes migration `name` stopped in `status`.
fn resume_command(status: Status, name: &str) -> String {
    match status {
        Status::Contracting => format!("zdm complete {name} --confirm-contract {name}"),
        Status::RollingBack => format!("zdm rollback {name}"),
        _ => format!("zdm start {name}"),
    }
}

/// Reads the state of the database `conn` is connected to (`database` names it, redacted).
pub async fn report(conn: &mut PgConnection, database: String) -> Result<StatusReport, Error> {
    let records = state::list_live(conn).await?;
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
            file_checksum_changed: None,
        });
    }
    let versions = versions(&migrations);
    Ok(StatusReport {
        database,
        migrations,
        versions,
        pending: Vec::new(),
        files_unreadable: None,
    })
}

impl StatusReport {
    /// Adds what the migration files say: the ones not started (or rolled back) as
    /// pending, and a changed checksum on the ones that ran.
    pub fn with_files(mut self, files: Result<Vec<Migration>, LoadErrors>) -> Self {
        let files = match files {
            Ok(files) => files,
            Err(errors) => {
                self.files_unreadable = Some(errors.to_string());
                return self;
            }
        };
        for file in &files {
            let recorded = self
                .migrations
                .iter_mut()
                .find(|m| m.record.name == file.name);
            match recorded {
                Some(m) if m.record.status == Status::RolledBack => {
                    self.pending.push(pending(file, true));
                }
                Some(m) => {
                    if m.record.checksum != file.checksum {
                        m.file_checksum_changed = Some(file.checksum.clone());
                    }
                }
                None => self.pending.push(pending(file, false)),
            }
        }
        self
    }
}

fn pending(file: &Migration, rolled_back: bool) -> PendingFile {
    PendingFile {
        name: file.name.clone(),
        description: file.description.clone(),
        checksum: file.checksum.clone(),
        rolled_back,
    }
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
            if let Some(why) = &r.stopped {
                let _ = writeln!(
                    out,
                    "  STOPPED:        no zdm is running it ({why}); `{}` resumes it",
                    resume_command(r.status, &r.name)
                );
            }
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
            if let Some(file) = &m.file_checksum_changed {
                let _ = writeln!(
                    out,
                    "  FILE CHANGED:   recorded checksum {}, the file now has {file}; a \
                     migration that ran must not change",
                    r.checksum
                );
            }
        }
        match (&self.files_unreadable, self.pending.is_empty()) {
            (Some(why), _) => {
                let _ = writeln!(out, "\nMigration files not listed: {why}");
            }
            (None, true) => out.push_str("\nNo pending migration files.\n"),
            (None, false) => {
                out.push_str("\nPending migration files (run in this order):\n");
                for file in &self.pending {
                    let note = if file.rolled_back {
                        " (rolled back)"
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        out,
                        "  {}{note}  {}",
                        file.name,
                        file.description.as_deref().unwrap_or("")
                    );
                }
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
