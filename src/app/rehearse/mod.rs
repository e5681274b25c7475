//! `zdm rehearse NAME`: the migration run for real on scratch databases shaped like the
//! target (`zdm synth`, at each of `--scales`), under a synthetic workload, measured, and
//! each figure extrapolated to the target's size (docs/rehearsal.md).
//!
//! Each rehearsal: synth on a local throwaway server; the workload alone (the latency
//! before); `zdm start NAME` (the real binary, its events read as the JSON lines it prints,
//! as the benchmark does); a pause; `zdm complete NAME` with the gates at a short window
//! (when they refuse, that is reported and contract is run with them overridden, so that it
//! is measured too); then the sizes and the WAL written. The run's settings are the
//! target's configuration: the same zdm.toml, the same throttle. The workload aims at the
//! target's observed rate (its pg_stat_statements calls since their reset) at every scale,
//! with updates and inserts on the touched tables; with `--replica` the scratch server has
//! a streaming replica whose lag is sampled per phase. The report is kept beside the
//! migrations (`synth::rehearsal`) for the console.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, Row};
use tokio::io::AsyncBufReadExt;

use super::synth::SynthError;
use crate::config::Config;
use crate::db::{quote_ident, DatabaseUrl};
use crate::plan::{LockLevel, Phase, Plan, StepAction};

/// Why a rehearsal could not be made (as opposed to what it found).
#[derive(Debug, thiserror::Error)]
pub enum RehearseError {
    #[error(transparent)]
    Synth(#[from] SynthError),
    #[error("the scratch database: {0}")]
    Scratch(#[from] sqlx::Error),
    #[error("cannot plan {name} on the scratch database: {why}")]
    Plan { name: String, why: String },
    #[error("cannot run zdm {command}: {why}")]
    Run { command: String, why: String },
    #[error("zdm {command} failed on the scratch database at scale {scale}:\n{output}")]
    Failed {
        command: String,
        scale: f64,
        output: String,
    },
    #[error("cannot write the report to {path}: {source}")]
    Report {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How to rehearse.
#[derive(Debug, Clone)]
pub struct Options {
    /// Sizes relative to the target's; the forecast extrapolates from them to 1.
    pub scales: Vec<f64>,
    /// Between start and complete (the application runs on both versions meanwhile).
    pub pause: Duration,
    /// The gates' observation window at complete.
    pub window: Duration,
    /// The workload measured alone before start.
    pub baseline: Duration,
    /// Workload clients.
    pub clients: usize,
    /// Their statements per second in all; None: the target's observed rate (its
    /// pg_stat_statements calls over its stats_reset window).
    pub rate: Option<f64>,
    /// The share of the workload's statements that are writes (the rest are reads).
    pub write_share: f64,
    /// The share of the writes that are inserts (the rest are updates).
    pub insert_share: f64,
    /// A streaming replica of each scratch server, its lag measured.
    pub replica: bool,
    pub keep_values: bool,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            scales: vec![0.1, 0.3],
            pause: Duration::from_secs(5),
            window: Duration::from_secs(2),
            baseline: Duration::from_secs(3),
            clients: 2,
            rate: None,
            write_share: 0.2,
            insert_share: 0.5,
            replica: false,
            keep_values: false,
            seed: 19,
        }
    }
}

pub use crate::synth::rehearsal::{
    Forecast, Latency, Measured, Rate, Rehearsal, ReplicaLag, StepRun, Writes,
};

mod forecast;
mod render;
mod replica_lag;
mod workload;

pub use forecast::forecast;
pub use render::{markdown, text};
use replica_lag::LagSampler;
use workload::Workload;

/// Runs `zdm rehearse NAME`, writing the report to `out` (text or JSON) and, when asked, a
/// Markdown file.
pub async fn run(
    config: &Config,
    name: &str,
    options: &Options,
    json: bool,
    markdown: Option<&std::path::Path>,
    out: &mut dyn Write,
) -> Result<Rehearsal, RehearseError> {
    let mut runs = Vec::new();
    let mut real_values = Vec::new();
    let mut warnings = Vec::new();
    let queries = target_queries(config).await;
    let queries = match queries {
        Ok(queries) => queries,
        Err(why) => {
            warnings.push(format!(
                "the workload does not replay the target's queries ({why}): reads by key only"
            ));
            Vec::new()
        }
    };
    let rate = match options.rate {
        Some(per_s) => Rate {
            aimed_per_s: per_s,
            source: "--rate".to_string(),
        },
        None => match target_rate(config).await {
            Ok((calls, window)) if calls > 0.0 && window > 0.0 => Rate {
                aimed_per_s: calls / window,
                source: format!(
                    "the target's pg_stat_statements: {calls:.0} statements in the {} since its \
                     stats_reset",
                    crate::format::duration(Duration::from_secs_f64(window))
                ),
            },
            observed => {
                let why = match observed {
                    Ok(_) => "pg_stat_statements counted no statement since its reset".into(),
                    Err(why) => why,
                };
                warnings.push(format!(
                    "the target's rate is unknown ({why}): {DEFAULT_RATE}/s, give --rate"
                ));
                Rate {
                    aimed_per_s: DEFAULT_RATE,
                    source: "default (the target's rate is unknown)".to_string(),
                }
            }
        },
    };
    for &scale in &options.scales {
        let _ = writeln!(std::io::stderr(), "rehearsing {name} at scale {scale}");
        let synth_options = crate::synth::Options {
            scale,
            keep_values: options.keep_values,
            jobs: 2,
            seed: options.seed,
        };
        let quiet: Arc<dyn Fn(crate::synth::Progress) + Send + Sync> = Arc::new(|_| {});
        let scratch =
            super::synth::on_local_server(config, &synth_options, options.replica, quiet).await?;
        for column in &scratch.report.real_values {
            if !real_values.contains(column) {
                real_values.push(column.clone());
            }
        }
        for warning in &scratch.report.warnings {
            if !warnings.contains(warning) {
                warnings.push(warning.clone());
            }
        }
        let mut measured = once(
            config,
            &scratch.url,
            name,
            scale,
            options,
            rate.aimed_per_s,
            &queries,
        )
        .await?;
        measured.synth_s = scratch.report.seconds;
        runs.push(measured);
        drop(scratch);
    }
    let rehearsal = report(config, name, options, rate, runs, real_values, warnings);
    // Kept as the migration's last rehearsal (the console shows it beside the plan); a
    // directory that cannot be written to costs the copy, not the rehearsal's report.
    let kept = crate::synth::rehearsal::save(&config.migrations_dir, &rehearsal);
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&rehearsal).unwrap_or_default()
        );
    } else {
        let _ = write!(out, "{}", text(&rehearsal));
    }
    match kept {
        Ok(file) if !json => {
            let _ = writeln!(out, "\nkept as the last rehearsal: {}", file.display());
        }
        Ok(_) => {}
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "warning: cannot keep the rehearsal in {}: {e}",
                crate::synth::rehearsal::path(&config.migrations_dir, name).display()
            );
        }
    }
    if let Some(path) = markdown {
        std::fs::write(path, self::markdown(&rehearsal)).map_err(|source| {
            RehearseError::Report {
                path: path.to_path_buf(),
                source,
            }
        })?;
    }
    Ok(rehearsal)
}

/// The workload's rate when the target's is unknown and `--rate` is not given.
const DEFAULT_RATE: f64 = 50.0;

/// The target's statements and the seconds they were counted over (read only).
async fn target_rate(config: &Config) -> Result<(f64, f64), String> {
    let target = config.database_url().map_err(|e| e.to_string())?;
    let mut conn = crate::engine::identity::connect(target)
        .await
        .map_err(|e| e.to_string())?;
    let rate = crate::synth::replay::observed_rate(&mut conn).await;
    let _ = conn.close().await;
    rate
}

/// How many of the target's most called SELECTs the workload replays.
const TOP_QUERIES: i64 = 10;

/// The target's most called SELECTs from its pg_stat_statements (read only).
async fn target_queries(config: &Config) -> Result<Vec<(String, i64)>, String> {
    let target = config.database_url().map_err(|e| e.to_string())?;
    let mut conn = crate::engine::identity::connect(target)
        .await
        .map_err(|e| e.to_string())?;
    let queries = crate::synth::replay::top_queries(&mut conn, TOP_QUERIES).await;
    let _ = conn.close().await;
    queries
}

/// The figures of every scale extrapolated, the riskiest step, the settings.
fn report(
    config: &Config,
    name: &str,
    options: &Options,
    rate: Rate,
    runs: Vec<Measured>,
    real_values: Vec<String>,
    warnings: Vec<String>,
) -> Rehearsal {
    let figure = |f: &dyn Fn(&Measured) -> f64| -> Vec<(f64, f64)> {
        runs.iter().map(|m| (m.scale, f(m))).collect()
    };
    let mut forecasts = vec![
        forecast(
            crate::synth::rehearsal::DURATION,
            "s",
            &figure(&|m| m.start_s + m.complete_s),
        ),
        forecast("expand", "s", &figure(&|m| m.expand_s)),
        forecast("backfill", "s", &figure(&|m| m.backfill_s)),
        forecast("contract", "s", &figure(&|m| m.contract_s)),
        forecast(
            "backfill rows",
            "rows",
            &figure(&|m| m.backfill_rows as f64),
        ),
        forecast("backfill rows/s", "rows/s", &figure(&|m| m.rows_per_s)),
        forecast("longest batch", "ms", &figure(&|m| m.batch_max_ms)),
        forecast("WAL written", "bytes", &figure(&|m| m.wal_bytes as f64)),
        forecast(
            "table growth",
            "bytes",
            &figure(&|m| m.table_growth_bytes as f64),
        ),
        forecast(
            "index growth",
            "bytes",
            &figure(&|m| m.index_growth_bytes as f64),
        ),
        forecast(
            "workload p99 during",
            "ms",
            &figure(&|m| m.latency_during.p99_ms),
        ),
    ];
    // The replica's lag per phase, when there was a replica: its worst and its p95.
    if let Some(first) = runs.first() {
        for lag in first.replica_lag.iter().filter(|l| l.samples > 0) {
            let of = |f: &dyn Fn(&ReplicaLag) -> f64| -> Vec<(f64, f64)> {
                runs.iter()
                    .filter_map(|m| {
                        let l = m.replica_lag.iter().find(|l2| l2.phase == lag.phase)?;
                        Some((m.scale, f(l)))
                    })
                    .collect()
            };
            let phase = &lag.phase;
            forecasts.push(forecast(
                &format!("replica lag max, {phase}"),
                "bytes",
                &of(&|l| l.max_bytes as f64),
            ));
            forecasts.push(forecast(
                &format!("replica lag p95, {phase}"),
                "bytes",
                &of(&|l| l.p95_bytes as f64),
            ));
            forecasts.push(forecast(
                &format!("replica replay lag max, {phase}"),
                "ms",
                &of(&|l| l.max_ms),
            ));
        }
    }
    // Each step's time, forecast the same way. The riskiest is the one whose forecast time
    // weighs most, a millisecond under a lock that blocks the application's writes weighing
    // as much as 50 of a step that lets them through (a backfill, a validation).
    let mut riskiest: Option<(f64, String, String)> = None;
    if let Some(first) = runs.first() {
        for (i, step) in first.steps.iter().enumerate() {
            let points: Vec<(f64, f64)> = runs
                .iter()
                .filter_map(|m| m.steps.get(i).map(|s| (m.scale, s.ms)))
                .collect();
            let figure = format!("{} step: {}", step.phase, step.description);
            let f = if step.grows_with_rows {
                forecast(&figure, "ms", &points)
            } else {
                // Catalog only: what the runs differ by is noise, not size.
                let most = points.iter().map(|p| p.1).fold(0.0, f64::max);
                Forecast {
                    figure,
                    unit: "ms".into(),
                    measured: points.clone(),
                    at_full_size: most,
                    low: points.iter().map(|p| p.1).fold(most, f64::min),
                    high: most,
                    growth: "constant (catalog only: no scan, no rewrite)".into(),
                    exponent: None,
                }
            };
            let weight = f.at_full_size * if step.blocks_writes { 50.0 } else { 1.0 };
            let retries: u32 = runs
                .iter()
                .filter_map(|m| m.steps.get(i))
                .map(|s| s.lock_retries)
                .sum();
            let why = format!(
                "{} ({} {}): {} ms at scale {}, forecast {:.0} ms at full size ({}){}{}",
                step.description,
                step.lock,
                step.locked.join(", "),
                points.last().map_or(0.0, |p| p.1).round(),
                points.last().map_or(0.0, |p| p.0),
                f.at_full_size,
                f.growth,
                if step.blocks_writes {
                    "; its lock blocks the application's writes while it runs"
                } else {
                    ""
                },
                if retries > 0 {
                    format!("; it waited for its lock {retries} times")
                } else {
                    String::new()
                }
            );
            let short = format!(
                "{} ({}, ~{})",
                step.description,
                step.lock,
                if f.at_full_size >= 1000.0 {
                    format!("{:.1} s", f.at_full_size / 1000.0)
                } else {
                    format!("{:.0} ms", f.at_full_size)
                }
            );
            if riskiest.as_ref().is_none_or(|(w, ..)| weight > *w) {
                riskiest = Some((weight, why, short));
            }
            if step.ms > 0.0 {
                forecasts.push(f);
            }
        }
    }
    let mut settings = vec![
        ("scales".to_string(), format!("{:?}", options.scales)),
        ("pause".to_string(), format!("{:?}", options.pause)),
        ("gates window".to_string(), format!("{:?}", options.window)),
        (
            "workload".to_string(),
            format!(
                "{} clients aiming at {:.1}/s ({}), {:.0} % writes ({:.0} % of them inserts \
                 of a copied row, the rest updates by key), the rest the target's top reads \
                 (else reads by key)",
                options.clients,
                rate.aimed_per_s,
                rate.source,
                options.write_share * 100.0,
                options.insert_share * 100.0
            ),
        ),
        (
            "replica".to_string(),
            if options.replica {
                "a local streaming replica of each scratch server".to_string()
            } else {
                "none (--replica measures a streaming replica's lag)".to_string()
            },
        ),
        (
            "lock_timeout".to_string(),
            format!("{:?}", config.lock_timeout),
        ),
        (
            "lock retries".to_string(),
            format!(
                "{} attempts, {:?} to {:?}",
                config.lock_retry_attempts, config.lock_retry_first, config.lock_retry_max
            ),
        ),
        (
            "config file".to_string(),
            config
                .config_file
                .as_ref()
                .map_or("none".to_string(), |p| p.display().to_string()),
        ),
    ];
    settings.push((
        "backfill and throttle".to_string(),
        "as in the config file (the same settings the real run reads)".to_string(),
    ));
    let (riskiest, riskiest_step) = match riskiest {
        Some((_, why, short)) => (Some(why), Some(short)),
        None => (None, None),
    };
    Rehearsal {
        migration: name.to_string(),
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        rate,
        runs,
        forecast: forecasts,
        riskiest,
        riskiest_step,
        settings,
        real_values,
        warnings,
    }
}

/// The tables a plan's steps lock, and its steps by phase.
fn touched(plan: &Plan) -> Vec<String> {
    let mut tables: Vec<String> = Vec::new();
    for step in &plan.steps {
        for name in &step.locked {
            if !tables.contains(name) {
                tables.push(name.clone());
            }
        }
    }
    tables
}

/// One rehearsal on the scratch database `url`.
async fn once(
    config: &Config,
    url: &DatabaseUrl,
    name: &str,
    scale: f64,
    options: &Options,
    rate: f64,
    queries: &[(String, i64)],
) -> Result<Measured, RehearseError> {
    let rehearsal = config.for_database(url.clone());
    let mut conn = url.connect_with(&url.connect_options()?).await?;
    let plan = super::start::load_and_plan(&rehearsal, &mut conn, Some(name))
        .await
        .map_err(|e| RehearseError::Plan {
            name: name.to_string(),
            why: e.to_string(),
        })?
        .plan;
    let tables = existing_tables(&mut conn, &touched(&plan)).await?;
    let mut rows = 0u64;
    for table in &tables {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", table.name))
            .fetch_one(&mut conn)
            .await?;
        rows += n as u64;
    }
    let sizes_before = sizes(&mut conn, &tables).await?;
    let wal_before: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&mut conn)
        .await?;

    let (replays, skipped) = crate::synth::replay::prepare(&mut conn, queries.to_vec()).await;
    let replayed = replays
        .iter()
        .map(|r| {
            format!(
                "{} ({} calls)",
                crate::synth::replay::shorten(&r.query),
                r.calls
            )
        })
        .collect();
    let not_inserted = tables
        .iter()
        .filter_map(|t| t.no_insert.as_ref().map(|why| format!("{}: {why}", t.name)))
        .collect();
    let workload = Workload::start(url, &tables, replays, options, rate).await?;
    let lag = if options.replica {
        Some(LagSampler::start(url, workload.started).await?)
    } else {
        None
    };
    tokio::time::sleep(options.baseline).await;
    let during_from = workload.elapsed();
    let latency_before = workload.latency_between(Duration::ZERO, during_from);

    let started = Instant::now();
    let start = zdm(config, url, &["start", name]).await?;
    let start_end = workload.elapsed();
    if !start.success {
        workload.stop().await;
        return Err(RehearseError::Failed {
            command: "start".into(),
            scale,
            output: start.stderr,
        });
    }
    let start_s = started.elapsed().as_secs_f64();
    let paused = Instant::now();
    tokio::time::sleep(options.pause).await;
    let pause_s = paused.elapsed().as_secs_f64();
    let pause_end = workload.elapsed();
    let window = format!("{}", options.window.as_secs_f64());
    let completing = Instant::now();
    let confirm = [
        "complete",
        name,
        "--confirm-contract",
        name,
        "--window",
        &window,
    ];
    let mut complete = zdm(config, url, &confirm).await?;
    let mut gates_refused = None;
    if !complete.success && !complete.events.iter().any(|e| e["event"] == "step_started") {
        // The gates refused (nothing of contract ran): say so, and measure contract anyway.
        gates_refused = Some(complete.stderr.trim().to_string());
        let mut args: Vec<&str> = confirm.to_vec();
        for gate in crate::gates::registry::names() {
            args.extend(["--override-gate", gate]);
        }
        complete = zdm(config, url, &args).await?;
    }
    let complete_s = completing.elapsed().as_secs_f64();
    let complete_end = workload.elapsed();
    let latency_during = workload.latency_between(during_from, complete_end);
    let mut writes = workload.writes();
    writes.not_inserted = not_inserted;
    workload.stop().await;
    let replica_lag = match lag {
        Some(lag) => {
            let phases = [
                ("before", Duration::ZERO, during_from),
                ("start", during_from, start_end),
                ("pause", start_end, pause_end),
                ("complete", pause_end, complete_end),
            ];
            let lags = phases
                .iter()
                .map(|(phase, from, to)| lag.over(phase, *from, *to))
                .collect();
            drop(lag);
            lags
        }
        None => Vec::new(),
    };
    if !complete.success {
        return Err(RehearseError::Failed {
            command: "complete".into(),
            scale,
            output: complete.stderr,
        });
    }
    let wal_bytes: i64 =
        sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::int8")
            .bind(&wal_before)
            .fetch_one(&mut conn)
            .await?;
    let sizes_after = sizes(&mut conn, &tables).await?;
    let _ = conn.close().await;

    let mut steps = steps(&plan, &start.events);
    steps.extend(steps_of(&plan, &complete.events, Phase::Contract));
    let phase_s = |phase: &str| -> f64 {
        steps
            .iter()
            .filter(|s| s.phase == phase)
            .map(|s| s.ms)
            .sum::<f64>()
            / 1000.0
    };
    let mut batch_ms: Vec<f64> = start
        .events
        .iter()
        .chain(&complete.events)
        .filter(|e| e["event"] == "batch_done")
        .filter_map(|e| e["took_ms"].as_f64())
        .collect();
    batch_ms.sort_by(f64::total_cmp);
    let backfill_rows = start
        .events
        .iter()
        .chain(&complete.events)
        .filter(|e| e["event"] == "batch_done")
        .filter_map(|e| e["rows_done"].as_u64())
        .max()
        .unwrap_or(0);
    let throttled_ms = start
        .events
        .iter()
        .filter(|e| e["event"] == "progress")
        .filter_map(|e| e["throttled_ms"].as_f64())
        .fold(0.0, f64::max);
    let backfill_s = phase_s("backfill");
    Ok(Measured {
        scale,
        rows,
        synth_s: 0.0,
        start_s,
        pause_s,
        complete_s,
        expand_s: phase_s("expand"),
        backfill_s,
        contract_s: phase_s("contract"),
        steps,
        batches: batch_ms.len(),
        batch_p50_ms: percentile(&batch_ms, 0.5),
        batch_max_ms: batch_ms.last().copied().unwrap_or(0.0),
        backfill_rows,
        rows_per_s: if backfill_s > 0.0 {
            backfill_rows as f64 / backfill_s
        } else {
            0.0
        },
        throttled_s: throttled_ms / 1000.0,
        latency_before,
        latency_during,
        writes,
        replica_lag,
        wal_bytes: wal_bytes.max(0) as u64,
        table_growth_bytes: sizes_after.0 - sizes_before.0,
        index_growth_bytes: sizes_after.1 - sizes_before.1,
        gates_refused,
        replayed,
        not_replayed: skipped,
    })
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The steps of expand and backfill as `zdm start` ran them.
fn steps(plan: &Plan, events: &[serde_json::Value]) -> Vec<StepRun> {
    let mut steps = steps_of(plan, events, Phase::Expand);
    steps.extend(steps_of(plan, events, Phase::Backfill));
    steps
}

/// The steps of `phase`: the plan's, with the time each took and its lock waits from the
/// run's `step_started`, `lock_wait` and `step_finished` events.
fn steps_of(plan: &Plan, events: &[serde_json::Value], phase: Phase) -> Vec<StepRun> {
    let name = crate::protocol::event::phase_name(phase);
    let planned: Vec<_> = plan.steps.iter().filter(|s| s.phase == phase).collect();
    let mut runs: Vec<StepRun> = planned
        .iter()
        .map(|s| StepRun {
            phase: name.to_string(),
            description: s.description.clone(),
            lock: s.lock.sql_name().to_string(),
            locked: s.locked.clone(),
            blocks_writes: s.lock.conflicts_with(LockLevel::RowExclusive),
            grows_with_rows: s.scans || s.rewrites || matches!(s.action, StepAction::Backfill(_)),
            ms: 0.0,
            lock_retries: 0,
            lock_backoff_ms: 0.0,
        })
        .collect();
    let mut current: Option<usize> = None;
    for event in events {
        let index = event["index"].as_u64().map(|i| i as usize);
        match event["event"].as_str() {
            Some("step_started") if event["phase"] == name => current = index,
            Some("step_started") => current = None,
            Some("lock_wait") => {
                if let Some(run) = current.and_then(|i| runs.get_mut(i)) {
                    run.lock_retries += 1;
                    run.lock_backoff_ms += event["retry_in_ms"].as_f64().unwrap_or(0.0);
                }
            }
            Some("step_finished") if event["phase"] == name => {
                if let Some(run) = index.and_then(|i| runs.get_mut(i)) {
                    run.ms += event["took_ms"].as_f64().unwrap_or(0.0);
                }
            }
            _ => {}
        }
    }
    runs
}

/// What one run of the zdm binary said.
struct ZdmRun {
    success: bool,
    events: Vec<serde_json::Value>,
    stderr: String,
}

/// Runs this zdm binary on the scratch database, its events read from the JSON lines it
/// prints on stdout (not a terminal), as `zdm attach --json` shows them.
async fn zdm(config: &Config, url: &DatabaseUrl, args: &[&str]) -> Result<ZdmRun, RehearseError> {
    let fail = |why: String| RehearseError::Run {
        command: args.first().copied().unwrap_or("").to_string(),
        why,
    };
    let exe = std::env::current_exe().map_err(|e| fail(e.to_string()))?;
    let mut command = tokio::process::Command::new(exe);
    command
        .args(args)
        .arg("--database-url")
        .arg(url.expose())
        .arg("--dir")
        .arg(&config.migrations_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(file) = &config.config_file {
        command.arg("--config").arg(file);
    }
    let mut child = command.spawn().map_err(|e| fail(e.to_string()))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let read_events = async move {
        let mut events = Vec::new();
        if let Some(stdout) = stdout {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                    events.push(value);
                }
            }
        }
        events
    };
    let read_stderr = async move {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
        }
        text
    };
    let (events, stderr, status) = tokio::join!(read_events, read_stderr, child.wait());
    let status = status.map_err(|e| fail(e.to_string()))?;
    Ok(ZdmRun {
        success: status.success(),
        events,
        stderr,
    })
}

/// A table the workload uses: its quoted name and integer key range, and how to insert a
/// row into it (or why not).
struct Target {
    name: String,
    key: Option<(String, i64, i64)>,
    /// The other columns an insert copies from an existing row (generated ones left to
    /// the server), quoted and joined.
    copy_columns: Option<String>,
    /// Why the workload does not insert into it.
    no_insert: Option<String>,
}

async fn existing_tables(
    conn: &mut PgConnection,
    names: &[String],
) -> Result<Vec<Target>, RehearseError> {
    let mut tables = Vec::new();
    for name in names {
        let row = sqlx::query(
            "SELECT c.oid::regclass::text AS name, \
             (SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = \
              i.indrelid AND a.attnum = i.indkey[0] WHERE i.indrelid = c.oid AND \
              i.indisprimary AND i.indnatts = 1 AND a.atttypid IN ('int2'::regtype, \
              'int4'::regtype, 'int8'::regtype)) AS key, \
             (SELECT string_agg(i.indexrelid::regclass::text, ', ') FROM pg_index i \
              WHERE i.indrelid = c.oid AND i.indisunique AND NOT i.indisprimary) AS other_unique \
             FROM pg_class c WHERE c.oid = to_regclass($1) AND c.relkind = 'r'",
        )
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { continue };
        let table: String = row.try_get("name")?;
        let key_name: Option<String> = row.try_get("key")?;
        let other_unique: Option<String> = row.try_get("other_unique")?;
        let key = match &key_name {
            Some(column) => {
                let column = quote_ident(column);
                let range: (Option<i64>, Option<i64>) = sqlx::query_as(&format!(
                    "SELECT min({column})::int8, max({column})::int8 FROM {table}"
                ))
                .fetch_one(&mut *conn)
                .await?;
                match range {
                    (Some(lo), Some(hi)) => Some((column, lo, hi)),
                    _ => None,
                }
            }
            None => None,
        };
        // An insert copies an existing row but for a new key above the generated ones: the
        // copy passes every check, NOT NULL and foreign key the original passes. Another
        // unique key would be repeated by the copy, so such a table gets no inserts.
        let (copy_columns, no_insert) = match (&key, key_name, other_unique) {
            (None, ..) => (
                None,
                Some("no one-column integer primary key with rows".to_string()),
            ),
            (_, _, Some(unique)) => (
                None,
                Some(format!(
                    "unique index {unique} besides the primary key: a copied row would repeat it"
                )),
            ),
            (Some(_), Some(key_name), None) => {
                let columns: Option<String> = sqlx::query_scalar(
                    "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) \
                     FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 \
                     AND NOT attisdropped AND attgenerated = '' AND attname <> $2",
                )
                .bind(&table)
                .bind(&key_name)
                .fetch_one(&mut *conn)
                .await?;
                (Some(columns.unwrap_or_default()), None)
            }
            (Some(_), None, None) => (None, Some("no key".to_string())),
        };
        tables.push(Target {
            name: table,
            key,
            copy_columns,
            no_insert,
        });
    }
    Ok(tables)
}

/// Heap (with TOAST) and index bytes of `tables`.
async fn sizes(conn: &mut PgConnection, tables: &[Target]) -> Result<(i64, i64), RehearseError> {
    let mut heap = 0;
    let mut index = 0;
    for table in tables {
        let (h, i): (i64, i64) =
            sqlx::query_as("SELECT pg_table_size($1::regclass), pg_indexes_size($1::regclass)")
                .bind(&table.name)
                .fetch_one(&mut *conn)
                .await?;
        heap += h;
        index += i;
    }
    Ok((heap, index))
}
