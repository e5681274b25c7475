//! `zdm check [--dry-run]`: what CI runs on every pull request. `zdm validate` (offline,
//! and planned against the database when one is given), `zdm lint`, and with `--dry-run`
//! a rehearsal of every pending migration on a throwaway copy of the database's schema
//! (a local server; `pg_dump --schema-only` of the target plus zdm's own state): start,
//! rollback (which must leave the schema exactly as it found it), start again and complete,
//! in file order. The target is only read. The verdict says which kind of failure it was.

use std::io::Write;
use std::time::Duration;

use sqlx::Connection;

use super::complete::CompleteOptions;
use crate::config::{self, Config};
use crate::db::DatabaseUrl;
use crate::ledger::Ledger;
use crate::localpg::{self, LocalPg};
use crate::synth::{self, schema::pg_dump};

/// How `zdm check` ended, worst first; each has its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Passed,
    /// A pending migration failed its rehearsal, or its rollback left a difference.
    DryRunFailed,
    /// Lint errors: SQL that would lock or break the running application.
    Unsafe,
    /// A file does not parse or does not plan against the database.
    Invalid,
}

impl Verdict {
    /// The exit code: 0, then 5 (dry run failed), 6 (unsafe), 7 (invalid); documented in
    /// `zdm --help` and docs/ci.md (4 is `zdm gates`' own).
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Passed => 0,
            Verdict::DryRunFailed => 5,
            Verdict::Unsafe => 6,
            Verdict::Invalid => 7,
        }
    }
}

/// Why the check itself could not run (as opposed to what it found).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Validate(#[from] super::validate::ValidateError),
    #[error(
        "--dry-run rehearses the migrations on a copy of a database's schema: give the \
         database (--database-url, DATABASE_URL or database_url in zdm.toml)"
    )]
    NoDatabase,
    #[error("cannot start a throwaway PostgreSQL server for the dry run: {0}")]
    LocalServer(#[from] localpg::Error),
    #[error("cannot copy the schema of {url}: {why}")]
    Copy { url: String, why: String },
}

/// Runs `zdm check`, writing what it finds to `out` (and the rehearsal's run output to
/// stderr, as `zdm start` prints it).
pub async fn run(
    config: &Config,
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<Verdict, CheckError> {
    let mut verdict = Verdict::Passed;
    let _ = writeln!(out, "== validate");
    let validated = super::validate::run(config, false, out, &mut std::io::stderr()).await?;
    if validated.errors > 0 {
        verdict = verdict.max(Verdict::Invalid);
    }
    let _ = writeln!(out, "\n== lint");
    let (linted, text) = super::lint::run(config, &[], crate::lint::report::Format::Text);
    let _ = write!(out, "{text}");
    if !linted.passed(false) {
        verdict = verdict.max(Verdict::Unsafe);
    }
    if dry_run {
        let _ = writeln!(out, "\n== dry run");
        if verdict == Verdict::Invalid {
            let _ = writeln!(out, "not rehearsed: the files do not validate (see above)");
        } else if !rehearse(config, out).await? {
            verdict = verdict.max(Verdict::DryRunFailed);
        }
    }
    let _ = writeln!(
        out,
        "\n{}",
        match verdict {
            Verdict::Passed => "check passed",
            Verdict::DryRunFailed => "check FAILED: a migration failed its dry run (exit 5)",
            Verdict::Unsafe => "check FAILED: unsafe SQL (exit 6)",
            Verdict::Invalid => "check FAILED: invalid migrations (exit 7)",
        }
    );
    Ok(verdict)
}

/// Rehearses every pending migration on a throwaway copy; false when one failed.
async fn rehearse(config: &Config, out: &mut dyn Write) -> Result<bool, CheckError> {
    let target = config
        .database_url()
        .map_err(|_| CheckError::NoDatabase)?
        .clone();
    let local = tokio::task::spawn_blocking(|| LocalPg::start(&localpg::Options::default()))
        .await
        .map_err(|e| CheckError::Copy {
            url: crate::db::redact_url(target.expose()),
            why: format!("the server's start failed: {e}"),
        })??;
    let copy_url = local.primary().url("zdm_check");
    let copy = DatabaseUrl::new(copy_url.clone());
    copy_schema(&local, &target, &copy_url).await?;
    let _ = writeln!(
        out,
        "schema of {} copied to a throwaway server (127.0.0.1:{})",
        crate::db::redact_url(target.expose()),
        local.primary().port()
    );
    let mut rehearsal = config.for_database(copy.clone());
    // Nothing uses the copy: the gates judge at once, and the throttle has nothing to
    // protect (the copy has no rows to backfill beyond zdm's own state).
    rehearsal.gates.window = Duration::ZERO;
    let throttle = &mut rehearsal.backfill.throttle;
    throttle.max_replica_lag = None;
    throttle.max_lock_waiters = None;
    throttle.max_active_sessions_factor = None;
    throttle.max_host_cpu_percent = None;
    throttle.max_canary_slowdown = None;
    throttle.query = None;
    throttle.flag_file = None;
    let pending = pending(&rehearsal).await?;
    if pending.is_empty() {
        let _ = writeln!(out, "no pending migration to rehearse");
    }
    let binaries = local.binaries().clone();
    let mut ok = true;
    for name in pending {
        let before = schema(&binaries, &copy_url)?;
        let steps = rehearse_one(&rehearsal, &name, &binaries, &copy_url, &before).await;
        match steps {
            Ok(()) => {
                let _ = writeln!(out, "{name}: start, rollback (clean), start, complete: ok");
            }
            Err(why) => {
                let _ = writeln!(out, "{name}: FAILED: {why}");
                ok = false;
                // The later ones build on this one: rehearsing them would only guess.
                break;
            }
        }
    }
    drop(local);
    Ok(ok)
}

/// One migration's rehearsal: start → rollback (the schema as before) → start → complete.
async fn rehearse_one(
    config: &Config,
    name: &str,
    binaries: &localpg::Binaries,
    copy_url: &str,
    before: &str,
) -> Result<(), String> {
    let step = |what: &str, error: super::run::CommandError| format!("{what} failed: {error}");
    super::start::run(config, Some(name))
        .await
        .map_err(|e| step("start", e))?;
    super::rollback::run(config, name)
        .await
        .map_err(|e| step("rollback", e))?;
    let after = schema(binaries, copy_url).map_err(|e| e.to_string())?;
    if after != before {
        return Err(format!(
            "rollback left the schema different from before start:\n{}",
            difference(before, &after)
        ));
    }
    super::start::run(config, Some(name))
        .await
        .map_err(|e| step("start after rollback", e))?;
    let options = CompleteOptions {
        confirmation: name.to_string(),
        // A rehearsal on an unused copy: every gate is overridden (and recorded there).
        overrides: crate::gates::registry::names()
            .into_iter()
            .map(str::to_string)
            .collect(),
        window: Some(Duration::ZERO),
        ..CompleteOptions::default()
    };
    super::complete::run(config, name, &options)
        .await
        .map_err(|e| step("complete", e))?;
    Ok(())
}

/// The migrations of the directory the copy has not started, in file order.
async fn pending(config: &Config) -> Result<Vec<String>, CheckError> {
    let copy_error = |why: String| CheckError::Copy {
        url: "the throwaway copy".to_string(),
        why,
    };
    let files = crate::migration::load_dir(&config.migrations_dir)
        .map_err(|e| copy_error(e.to_string()))?;
    let url = config.database_url()?;
    let mut conn = crate::engine::identity::connect(url)
        .await
        .map_err(|e| copy_error(e.to_string()))?;
    let ledger = Ledger::load(&mut conn, &config.migrations_dir, files, None).await;
    let _ = conn.close().await;
    let ledger = ledger.map_err(|e| copy_error(e.to_string()))?;
    Ok(ledger
        .not_started()
        .iter()
        .filter(|entry| entry.file.is_some())
        .map(|entry| entry.name.clone())
        .collect())
}

/// Copies the target's schema, and zdm's own state with its rows (what ran, what is in
/// progress), into database `zdm_check` of the local server.
async fn copy_schema(
    local: &LocalPg,
    target: &DatabaseUrl,
    copy_url: &str,
) -> Result<(), CheckError> {
    let fail = |why: String| CheckError::Copy {
        url: crate::db::redact_url(target.expose()),
        why,
    };
    let mut admin = local.primary().connect("postgres").await?;
    sqlx::raw_sql("CREATE DATABASE zdm_check")
        .execute(&mut admin)
        .await
        .map_err(|e| fail(format!("cannot create the copy's database: {e}")))?;
    let _ = admin.close().await;
    let binaries = local.binaries();
    let mut dump = pg_dump(binaries, target.expose(), &["--schema-only"]).map_err(fail)?;
    dump.push_str(
        &synth::schema::state_rows(binaries, target)
            .await
            .map_err(fail)?,
    );
    synth::schema::restore(binaries, copy_url, &dump).map_err(fail)
}

/// The copy's schema as `pg_dump --schema-only` prints it, zdm's own state left out (a
/// run records itself there) and `\restrict` lines (a random key per dump) dropped.
fn schema(binaries: &localpg::Binaries, url: &str) -> Result<String, CheckError> {
    let dump =
        pg_dump(binaries, url, &["--schema-only", "--exclude-schema=zdm"]).map_err(|why| {
            CheckError::Copy {
                url: "the throwaway copy".to_string(),
                why,
            }
        })?;
    Ok(dump
        .lines()
        .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The lines only one of two schema dumps has, marked `-` (before) and `+` (after).
fn difference(before: &str, after: &str) -> String {
    let old: Vec<&str> = before.lines().collect();
    let new: Vec<&str> = after.lines().collect();
    let mut lines: Vec<String> = old
        .iter()
        .filter(|line| !new.contains(line) && !line.trim().is_empty())
        .map(|line| format!("  - {line}"))
        .collect();
    lines.extend(
        new.iter()
            .filter(|line| !old.contains(line) && !line.trim().is_empty())
            .map(|line| format!("  + {line}")),
    );
    lines.truncate(40);
    lines.join("\n")
}
