//! `zdm synth`: a scratch database shaped like the target (docs/rehearsal.md). The target
//! is only read (its catalogs and `pg_stats`, and its schema with pg_dump); the rows are
//! generated. The scratch database is a local throwaway server served until Ctrl-C, or
//! `--into URL`, an empty database of a staging server, left filled.

use std::io::Write;
use std::sync::Arc;

use crate::config::{self, Config};
use crate::db::DatabaseUrl;
use crate::localpg::{self, LocalPg};
use crate::synth::{self, Options, Progress, Report};

/// The database created on a local scratch server.
pub const DATABASE: &str = "synth";

/// Why `zdm synth` could not make its scratch database.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error("cannot start a throwaway PostgreSQL server for the scratch database: {0}")]
    LocalServer(#[from] localpg::Error),
    #[error("the local server's start failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("cannot create database {DATABASE} on the local server: {0}")]
    Create(#[source] sqlx::Error),
    #[error(transparent)]
    Synth(#[from] synth::Error),
}

/// A scratch database made on a local throwaway server: dropping it removes the server.
pub struct LocalScratch {
    pub server: LocalPg,
    pub url: DatabaseUrl,
    pub report: Report,
}

/// Progress on stderr: a line a second per table being loaded and one when it is done.
pub fn print_progress() -> Arc<dyn Fn(Progress) + Send + Sync> {
    Arc::new(|p: Progress| {
        let mut err = std::io::stderr();
        let _ = if p.done {
            writeln!(err, "{}: {} rows loaded", p.table, p.rows)
        } else {
            writeln!(err, "{}: {} of {} rows", p.table, p.rows, p.total)
        };
    })
}

/// Makes a scratch database shaped like `config`'s target on a new local server.
/// With `replica`, the server has a streaming replica, started before the load so that
/// it replays every row, as production's replicas do.
pub async fn on_local_server(
    config: &Config,
    options: &Options,
    replica: bool,
    progress: Arc<dyn Fn(Progress) + Send + Sync>,
) -> Result<LocalScratch, SynthError> {
    let target = config.database_url()?.clone();
    let server_options = localpg::Options {
        replica,
        ..localpg::Options::default()
    };
    let server = tokio::task::spawn_blocking(move || LocalPg::start(&server_options)).await??;
    server
        .wait_for_replica(std::time::Duration::from_secs(60))
        .await?;
    let mut admin = server.primary().connect("postgres").await?;
    sqlx::raw_sql(&format!("CREATE DATABASE {DATABASE}"))
        .execute(&mut admin)
        .await
        .map_err(SynthError::Create)?;
    drop(admin);
    let url = DatabaseUrl::new(server.primary().url(DATABASE));
    let report = synth::synthesize(&target, &url, server.binaries(), options, progress).await?;
    Ok(LocalScratch {
        server,
        url,
        report,
    })
}

/// Runs `zdm synth`: into `into` when given (then returns), else on a local server served
/// until a signal. The report goes to `out`, as text or JSON.
pub async fn run(
    config: &Config,
    options: &Options,
    into: Option<&str>,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), SynthError> {
    let progress = print_progress();
    match into {
        Some(into) => {
            let target = config.database_url()?.clone();
            let binaries = localpg::Binaries::locate()?;
            let scratch = DatabaseUrl::new(into.to_string());
            let report = synth::synthesize(&target, &scratch, &binaries, options, progress).await?;
            write_report(&report, json, out);
            let _ = writeln!(
                out,
                "{}scratch database: {}",
                if json { "" } else { "\n" },
                crate::db::redact_url(into)
            );
        }
        None => {
            let scratch = on_local_server(config, options, false, progress).await?;
            write_report(&scratch.report, json, out);
            let _ = writeln!(
                out,
                "\nscratch database: {} (a throwaway server: Ctrl-C stops and removes it)",
                scratch.url.expose()
            );
            let _ = out.flush();
            let signal = crate::signals::shutdown_requested().await;
            let _ = writeln!(out, "{signal}: removing the scratch server");
            drop(scratch);
        }
    }
    Ok(())
}

/// The report as text (or one JSON document).
pub fn write_report(report: &Report, json: bool, out: &mut dyn Write) {
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
        return;
    }
    let _ = writeln!(
        out,
        "generated at scale {} in {:.1} s (no row of the target was read):",
        report.scale, report.seconds
    );
    for table in &report.tables {
        let _ = writeln!(
            out,
            "  {}: {} rows (target: {:.0}), {:.1} s",
            table.name, table.rows, table.source_rows, table.seconds
        );
        for column in &table.columns {
            let _ = writeln!(
                out,
                "    {} {}: {}{}",
                column.name,
                column.sql_type,
                column.how,
                if column.real_values {
                    "; real values of the statistics"
                } else {
                    ""
                }
            );
        }
    }
    if report.real_values.is_empty() {
        let _ = writeln!(out, "real values: none (every value is generated)");
    } else {
        let _ = writeln!(
            out,
            "real values of the target's statistics appear in: {}{}",
            report.real_values.join(", "),
            if report.keep_values {
                " (--keep-values)"
            } else {
                " (numbers, dates and enum labels; text is generated unless --keep-values)"
            }
        );
    }
    for (check, rows) in &report.check_repairs {
        let _ = writeln!(
            out,
            "check {check}: {rows} generated rows it rejected took the checked columns of \
             rows it passes"
        );
    }
    for (key, rows) in &report.foreign_key_repairs {
        let _ = writeln!(
            out,
            "foreign key {key}: {rows} generated tuples without a parent took a parent's tuple"
        );
    }
    for (key, rows) in &report.duplicates_removed {
        let _ = writeln!(out, "unique key {key}: {rows} repeated rows removed");
    }
    for (key, rows) in &report.references_moved {
        let _ = writeln!(
            out,
            "foreign key {key}: {rows} rows referring to removed repeated rows now refer to the rows they repeated"
        );
    }
    for (key, rows) in &report.references_removed {
        let _ = writeln!(
            out,
            "foreign key {key}: {rows} rows referring to removed repeated rows removed with them (the key is one-to-one)"
        );
    }
    for warning in &report.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
}
