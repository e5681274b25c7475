//! `zdm status`: every migration recorded on a database (status, steps done per phase,
//! version schema) and the `search_path` that selects each live version, for a person
//! or as JSON, together with the migration files not started yet and any file that
//! changed since it ran. Reads only; takes no lock and creates nothing.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use sqlx::{Connection, PgConnection};

use super::run::{connect_plain, CommandError};
use crate::config::Config;
use crate::db::quote_ident;
use crate::engine::promises;
use crate::engine::state::{self, MigrationRecord};
use crate::engine::{phase_name, Context, Error, Status};
use crate::ledger::{self, Ledger, Standing};
use crate::migration::{LoadErrors, Migration};
use crate::plan::Phase;

/// What `zdm status` prints, and the migrations directory's problem when it is missing
/// (the database's state is still shown; the command then exits non-zero).
#[derive(Debug)]
pub struct StatusOutput {
    pub text: String,
    pub missing_dir: Option<super::run::MissingDir>,
}

/// `zdm status [--json]`.
pub async fn run(config: &Config, json: bool) -> Result<StatusOutput, CommandError> {
    let missing_dir = super::run::require_migrations_dir(config).err();
    let url = config.database_url()?;
    let mut conn = connect_plain(config).await?;
    let report = report(&mut conn, url.to_string()).await?;
    let _ = conn.close().await;
    let report = report.with_files(
        &config.migrations_dir,
        crate::migration::load_dir(&config.migrations_dir),
    );
    let text = if json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.render()
    };
    Ok(StatusOutput { text, missing_dir })
}

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
    /// Where it stands (the ledger's word): a run recorded in progress that no zdm runs is
    /// `stopped`, whatever its recorded status.
    pub standing: Standing,
    pub version_schema_exists: bool,
    /// Whether its new version is published (its views exist): clients may use it. Until
    /// its backfill is done it is not (docs/engine.md, "The new version during a backfill").
    pub version_published: bool,
    /// While not published: how far its backfill is, as a person reads it.
    pub backfill_note: Option<String>,
    /// What its plan promised and the database lacks (checked once it is ready to
    /// contract or complete; `engine::promises`): should be empty.
    pub broken_promises: Vec<String>,
    /// The checksum of its file now, when the file is there and differs from the recorded
    /// one: a migration that ran must not change (`zdm start` refuses it).
    pub file_checksum_changed: Option<String>,
    /// The tables it rewrote, their size against before its backfill, as last measured
    /// (after the backfill, after contract, or by `zdm repack`): shown once it is ready to
    /// contract or complete (`engine::table_size`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub table_sizes: Vec<crate::engine::table_size::Comparison>,
}

/// One application version and how a client chooses it.
#[derive(Debug, Clone, Serialize)]
pub struct Version {
    /// The migration that introduced it, or `None` for the physical tables.
    pub migration: Option<String>,
    pub search_path: String,
    /// Whether a client may use it now. A migration's new version is usable only once its
    /// backfill is done; until then `not_yet` says why.
    pub usable: bool,
    /// Why it is not usable yet ("backfilling, 41 % done").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_yet: Option<String>,
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
        let published = exists && published(conn, &record.version_schema).await?;
        let backfill_note = if published || matches!(record.status, Status::RolledBack) {
            None
        } else {
            Some(backfill_note(conn, &record).await?)
        };
        let due = match record.status {
            Status::ReadyToContract => promises::due_after(&record.plan, Phase::Backfill),
            Status::Complete => promises::due_after(&record.plan, Phase::Contract),
            _ => Vec::new(),
        };
        let broken_promises = promises::broken(conn, &due)
            .await
            .context("checking what the plans promised")?;
        let standing = Standing::of(&record);
        let table_sizes = if matches!(record.status, Status::ReadyToContract | Status::Complete) {
            crate::engine::table_size::recorded(conn, &record.name)
                .await
                .context("reading the tables' sizes")?
        } else {
            Vec::new()
        };
        migrations.push(MigrationStatus {
            table_sizes,
            standing,
            record,
            version_schema_exists: exists,
            version_published: published,
            backfill_note,
            broken_promises,
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
    pub fn with_files(mut self, dir: &Path, files: Result<Vec<Migration>, LoadErrors>) -> Self {
        let files = match files {
            Ok(files) => files,
            Err(errors) => {
                self.files_unreadable = Some(errors.to_string());
                return self;
            }
        };
        let records = self.migrations.iter().map(|m| m.record.clone()).collect();
        let ledger = Ledger::join(dir, files, records);
        for entry in ledger.files() {
            match entry.standing() {
                Standing::Pending | Standing::RolledBack => {
                    if let Some(file) = &entry.file {
                        self.pending
                            .push(pending(file, entry.standing() == Standing::RolledBack));
                    }
                }
                _ => {
                    if let Some(m) = self
                        .migrations
                        .iter_mut()
                        .find(|m| m.record.name == entry.name)
                    {
                        m.file_checksum_changed = entry.checksum_changed().map(str::to_string);
                    }
                }
            }
        }
        self
    }
}

/// Whether a version schema holds its views: the new version is published.
async fn published(conn: &mut PgConnection, version_schema: &str) -> Result<bool, Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE n.nspname = $1 AND c.relkind = 'v')",
    )
    .bind(version_schema)
    .fetch_one(&mut *conn)
    .await
    .context("looking for the views of version schemas")
}

/// "backfilling, about 41 % done" (rows written against the tables' estimated sizes), or
/// what the migration is doing instead, for a version that is not published yet.
async fn backfill_note(conn: &mut PgConnection, record: &MigrationRecord) -> Result<String, Error> {
    let activity = record.activity();
    let doing = match record.status {
        Status::Failed => format!("failed while {activity}"),
        status => status.to_string(),
    };
    if activity != Status::Backfilling {
        return Ok(format!("{doing}; published once its backfill is done"));
    }
    // The ranges' checkpoints are the truth (each batch saves its own in its transaction);
    // the step's total row only catches up with them now and then, and not at all after a
    // kill -9, so the larger of the two is shown (a step of an older state has no ranges).
    let rows: Vec<(i32, i64, f64)> = sqlx::query_as(
        "SELECT p.position, greatest(p.rows_updated, coalesce((SELECT sum(r.rows_updated) \
                  FROM zdm.backfill_ranges r WHERE r.migration = p.migration \
                   AND r.phase = p.phase AND r.position = p.position), 0))::bigint, \
                greatest(coalesce(c.reltuples, 0), 0)::float8 \
           FROM zdm.backfill_progress p \
           LEFT JOIN zdm.steps s ON s.migration = p.migration AND s.phase = p.phase \
                AND s.position = p.position \
           LEFT JOIN pg_class c ON c.oid = to_regclass(($2::jsonb -> p.position ->> 'table')) \
          WHERE p.migration = $1 AND p.phase = 'backfill' AND s.position IS NULL",
    )
    .bind(&record.name)
    .bind(serde_json::Value::Array(backfill_tables(record)))
    .fetch_all(&mut *conn)
    .await
    .context("reading backfill progress")?;
    // Positions (in the backfill phase) of the steps that copy data.
    let copies: Vec<i32> = record
        .plan
        .phase(crate::plan::Phase::Backfill)
        .enumerate()
        .filter(|(_, s)| matches!(s.action, crate::plan::StepAction::Backfill(_)))
        .map(|(i, _)| i32::try_from(i).unwrap_or(i32::MAX))
        .collect();
    let current = match rows.first() {
        Some((position, written, estimate)) => {
            let ordinal = copies.iter().position(|p| p == position).unwrap_or(0) + 1;
            let share = if *estimate > 0.0 {
                let percent = (*written as f64 / estimate * 100.0).clamp(0.0, 99.0);
                format!("about {percent:.0} % of its rows written")
            } else {
                format!("{written} rows written")
            };
            format!(" (copy {ordinal} of {}: {share})", copies.len())
        }
        None => String::new(),
    };
    Ok(format!(
        "{doing}{current}; published once its backfill is done"
    ))
}

/// For each backfill-phase position, the table it writes (`{"table": ...}`), or null.
fn backfill_tables(record: &MigrationRecord) -> Vec<serde_json::Value> {
    record
        .plan
        .phase(crate::plan::Phase::Backfill)
        .map(|step| match &step.action {
            crate::plan::StepAction::Backfill(b) => serde_json::json!({ "table": b.table }),
            _ => serde_json::Value::Null,
        })
        .collect()
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
    // In the order they started (the baseline of `zdm init` first), not by name.
    let mut live: Vec<&MigrationStatus> = migrations
        .iter()
        .filter(|m| m.version_schema_exists && m.record.status != Status::RolledBack)
        .collect();
    live.sort_by(|a, b| {
        (a.record.started_at, &a.record.name).cmp(&(b.record.started_at, &b.record.name))
    });
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
                usable: true,
                not_yet: None,
            });
            0
        }
    };
    versions.extend(live[from..].iter().map(|m| Version {
        migration: Some(m.record.name.clone()),
        search_path: quote_ident(&m.record.version_schema),
        usable: m.version_published,
        not_yet: (!m.version_published).then(|| {
            m.backfill_note
                .clone()
                .unwrap_or_else(|| "not published yet".to_string())
        }),
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
            let resumable = match m.standing {
                Standing::Stopped { .. } => " (resumable)",
                _ => "",
            };
            let _ = writeln!(out, "\n{}  {}{resumable}", r.name, m.standing.label());
            if let Some(why) = &r.stopped {
                let _ = writeln!(
                    out,
                    "  STOPPED:        no zdm is running it ({why}); `{}` resumes it",
                    ledger::resume_command(r)
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
            for size in &m.table_sizes {
                let _ = writeln!(
                    out,
                    "  table size:     {}",
                    size.describe("as last measured")
                );
            }
            for broken in &m.broken_promises {
                let _ = writeln!(out, "  NOT AS PLANNED: {broken}");
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
            match &v.not_yet {
                None => {
                    let _ = writeln!(out, "  {label}: SET search_path TO {}", v.search_path);
                }
                Some(why) => {
                    let _ = writeln!(out, "  {label}: not yet: {why}");
                }
            }
        }
        out
    }
}
