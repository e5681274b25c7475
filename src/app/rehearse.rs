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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
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

/// Extrapolates `measured` (scale, value) to scale 1: a power law through the two largest
/// scales (value ∝ scale^e), bracketed by the straight line through them; one scale only is
/// scaled linearly and said to be so.
pub fn forecast(figure: &str, unit: &str, measured: &[(f64, f64)]) -> Forecast {
    let mut points = measured.to_vec();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let make = |at: f64, low: f64, high: f64, growth: &str, exponent| Forecast {
        figure: figure.to_string(),
        unit: unit.to_string(),
        measured: points.clone(),
        at_full_size: at,
        low: low.min(high),
        high: high.max(low),
        growth: growth.to_string(),
        exponent,
    };
    match points.as_slice() {
        [] => make(0.0, 0.0, 0.0, "not measured", None),
        [.., (s, v)] if (*s - 1.0).abs() < 1e-9 => make(*v, *v, *v, "measured", None),
        [(s, v)] => {
            let at = v / s.max(1e-9);
            make(at, *v, at, "assumed linear (one scale)", None)
        }
        [.., (s1, v1), (s2, v2)] => {
            let linear = v2 + (v2 - v1) / (s2 - s1) * (1.0 - s2);
            if *v1 <= 0.0 || *v2 <= 0.0 {
                return make(
                    linear.max(0.0),
                    v2.min(linear),
                    v2.max(linear),
                    "linear",
                    None,
                );
            }
            let e = (v2 / v1).ln() / (s2 / s1).ln();
            let power = v2 * (1.0 / s2).powf(e);
            let growth = if e < 0.3 {
                "constant"
            } else if e < 0.8 {
                "slower than linear"
            } else if e <= 1.25 {
                "linear"
            } else {
                "faster than linear"
            };
            // The two models disagree by what the two points cannot tell apart; a single
            // pair of runs also carries their noise, ±25 % of the value at the larger scale
            // carried to full size.
            let noise = 0.25 * power;
            let low = power.min(linear.max(0.0)) - noise;
            let high = power.max(linear) + noise;
            make(power, low.max(0.0), high, growth, Some(e))
        }
    }
}

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

/// What a workload statement was.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Read,
    Update,
    Insert,
}

/// One statement of the workload: when it began (since the workload started), how long it
/// took, what it was and whether it succeeded.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    ms: f64,
    kind: Kind,
    ok: bool,
}

/// A touched table the workload writes to: its name, key and range, the columns an insert
/// copies, and the next key an insert takes (shared by the clients).
struct Keyed {
    table: String,
    key: String,
    lo: i64,
    hi: i64,
    copy_columns: Option<String>,
    next: std::sync::atomic::AtomicI64,
}

impl Keyed {
    /// An insert of a copy of a random row, under a new key: the copy satisfies the row's
    /// constraints as the original does, and fires the migration's triggers as any insert.
    fn insert(&self, rng: &mut impl Rng) -> Option<String> {
        let columns = self.copy_columns.as_ref()?;
        let id = rng.gen_range(self.lo..=self.hi);
        let new = self.next.fetch_add(1, Ordering::Relaxed);
        let (table, key) = (&self.table, &self.key);
        Some(if columns.is_empty() {
            format!("INSERT INTO {table} ({key}) OVERRIDING SYSTEM VALUE VALUES ({new})")
        } else {
            format!(
                "INSERT INTO {table} ({key}, {columns}) OVERRIDING SYSTEM VALUE \
                 SELECT {new}, {columns} FROM {table} WHERE {key} = {id}"
            )
        })
    }
}

/// The synthetic application: clients reading rows (the target's top reads, else by key),
/// updating them by key (the update sets the key to itself, so the migration's triggers
/// fire as on any write) and inserting copies of them, at a total rate, each statement's
/// latency kept with when it ran.
struct Workload {
    started: Instant,
    stop: Arc<AtomicBool>,
    samples: Arc<std::sync::Mutex<Vec<Sample>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    async fn start(
        url: &DatabaseUrl,
        tables: &[Target],
        replays: Vec<crate::synth::replay::Replay>,
        options: &Options,
        rate: f64,
    ) -> Result<Workload, RehearseError> {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
        let keyed: Vec<Keyed> = tables
            .iter()
            .filter_map(|t| {
                t.key.as_ref().map(|(k, lo, hi)| Keyed {
                    table: t.name.clone(),
                    key: k.clone(),
                    lo: *lo,
                    hi: *hi,
                    copy_columns: t.copy_columns.clone(),
                    next: std::sync::atomic::AtomicI64::new(hi.saturating_add(1)),
                })
            })
            .collect();
        let mut tasks = Vec::new();
        if (keyed.is_empty() && replays.is_empty()) || options.clients == 0 || rate <= 0.0 {
            return Ok(Workload {
                started,
                stop,
                samples,
                tasks,
            });
        }
        let keyed = Arc::new(keyed);
        let total_calls: i64 = replays.iter().map(|r| r.calls.max(1)).sum();
        let replays = Arc::new(replays);
        let interval = Duration::from_secs_f64(options.clients as f64 / rate);
        for _ in 0..options.clients {
            let mut conn = url.connect_with(&url.connect_options()?).await?;
            let (stop, samples, keyed) = (stop.clone(), samples.clone(), keyed.clone());
            let replays = replays.clone();
            let write_share = options.write_share.clamp(0.0, 1.0);
            let insert_share = options.insert_share.clamp(0.0, 1.0);
            tasks.push(tokio::spawn(async move {
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let (kind, sql) = {
                        let mut rng = rand::thread_rng();
                        let write = !keyed.is_empty() && rng.gen_bool(write_share);
                        if write || replays.is_empty() {
                            let table = &keyed[rng.gen_range(0..keyed.len())];
                            let insert = if write && rng.gen_bool(insert_share) {
                                table.insert(&mut rng)
                            } else {
                                None
                            };
                            let id = rng.gen_range(table.lo..=table.hi);
                            let (t, key) = (&table.table, &table.key);
                            match insert {
                                Some(sql) => (Kind::Insert, sql),
                                None if write => (
                                    Kind::Update,
                                    format!("UPDATE {t} SET {key} = {key} WHERE {key} = {id}"),
                                ),
                                None => {
                                    (Kind::Read, format!("SELECT * FROM {t} WHERE {key} = {id}"))
                                }
                            }
                        } else {
                            // The target's reads, each as often as it is called there.
                            let mut pick = rng.gen_range(0..total_calls.max(1));
                            let replay = replays
                                .iter()
                                .find(|r| {
                                    pick -= r.calls.max(1);
                                    pick < 0
                                })
                                .unwrap_or(&replays[0]);
                            (Kind::Read, replay.statement(&mut rng))
                        }
                    };
                    let at = Instant::now();
                    // A statement that fails (a lock timeout, the migration's own DDL)
                    // is measured like any other: the application would have waited too.
                    // Not kept prepared: the values are in the text, each one new.
                    let ok = sqlx::query(&sql)
                        .persistent(false)
                        .execute(&mut conn)
                        .await
                        .is_ok();
                    let ms = at.elapsed().as_secs_f64() * 1000.0;
                    if let Ok(mut samples) = samples.lock() {
                        samples.push(Sample {
                            at: at.duration_since(started),
                            ms,
                            kind,
                            ok,
                        });
                    }
                    next += interval;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        tokio::time::sleep(wait).await;
                    } else {
                        next = Instant::now();
                    }
                }
                let _ = conn.close().await;
            }));
        }
        Ok(Workload {
            started,
            stop,
            samples,
            tasks,
        })
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The statements that began in `from..to` (since the workload started): their
    /// latencies, failures and the rate achieved.
    fn latency_between(&self, from: Duration, to: Duration) -> Latency {
        let (mut times, failed) = self
            .samples
            .lock()
            .map(|s| {
                let within: Vec<&Sample> = s.iter().filter(|x| x.at >= from && x.at < to).collect();
                (
                    within.iter().map(|x| x.ms).collect::<Vec<f64>>(),
                    within.iter().filter(|x| !x.ok).count(),
                )
            })
            .unwrap_or_default();
        times.sort_by(f64::total_cmp);
        let seconds = to.saturating_sub(from).as_secs_f64();
        Latency {
            statements: times.len(),
            per_s: if seconds > 0.0 {
                times.len() as f64 / seconds
            } else {
                0.0
            },
            failed,
            p50_ms: percentile(&times, 0.5),
            p99_ms: percentile(&times, 0.99),
        }
    }

    /// The writes so far, by kind.
    fn writes(&self) -> Writes {
        let samples = self.samples.lock().map(|s| s.clone()).unwrap_or_default();
        let count = |kind: Kind| samples.iter().filter(|s| s.kind == kind).count();
        Writes {
            updates: count(Kind::Update),
            inserts: count(Kind::Insert),
            failed: samples
                .iter()
                .filter(|s| s.kind != Kind::Read && !s.ok)
                .count(),
            not_inserted: Vec::new(),
        }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// How often the replica's lag is sampled.
const LAG_EVERY: Duration = Duration::from_millis(200);

/// The streaming replica's lag, sampled on the scratch primary's `pg_stat_replication`:
/// the WAL bytes sent or not, but not replayed yet, and `replay_lag`.
struct LagSampler {
    samples: Arc<std::sync::Mutex<Vec<(Duration, u64, f64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LagSampler {
    async fn start(url: &DatabaseUrl, since: Instant) -> Result<LagSampler, RehearseError> {
        let mut conn = url.connect_with(&url.connect_options()?).await?;
        let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                let lag: Result<Option<(i64, f64)>, _> = sqlx::query_as(
                    "SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::int8,                      coalesce(extract(epoch FROM replay_lag) * 1000, 0)::float8                      FROM pg_stat_replication ORDER BY replay_lsn NULLS FIRST LIMIT 1",
                )
                .fetch_optional(&mut conn)
                .await;
                match lag {
                    Ok(Some((bytes, ms))) => {
                        if let Ok(mut samples) = kept.lock() {
                            samples.push((since.elapsed(), bytes.max(0) as u64, ms));
                        }
                    }
                    Ok(None) => {}
                    // The server went away: the rehearsal is over.
                    Err(_) => break,
                }
                tokio::time::sleep(LAG_EVERY).await;
            }
        });
        Ok(LagSampler { samples, task })
    }

    /// The lag over `from..to`, its worst and its p95.
    fn over(&self, phase: &str, from: Duration, to: Duration) -> ReplicaLag {
        let within: Vec<(u64, f64)> = self
            .samples
            .lock()
            .map(|s| {
                s.iter()
                    .filter(|(at, ..)| *at >= from && *at < to)
                    .map(|(_, b, ms)| (*b, *ms))
                    .collect()
            })
            .unwrap_or_default();
        let mut bytes: Vec<f64> = within.iter().map(|(b, _)| *b as f64).collect();
        let mut ms: Vec<f64> = within.iter().map(|(_, m)| *m).collect();
        bytes.sort_by(f64::total_cmp);
        ms.sort_by(f64::total_cmp);
        ReplicaLag {
            phase: phase.to_string(),
            samples: within.len(),
            max_bytes: bytes.last().copied().unwrap_or(0.0) as u64,
            p95_bytes: percentile(&bytes, 0.95) as u64,
            max_ms: ms.last().copied().unwrap_or(0.0),
            p95_ms: percentile(&ms, 0.95),
        }
    }
}

impl Drop for LagSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bytes in the nearest binary unit: `12.3 MiB`.
fn bytes(n: f64) -> String {
    let mut v = n;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if v.abs() < 1024.0 {
            return format!("{v:.1} {unit}");
        }
        v /= 1024.0;
    }
    format!("{v:.1} TiB")
}

fn value(f: &Forecast, v: f64) -> String {
    match f.unit.as_str() {
        "bytes" => bytes(v),
        "s" => format!("{v:.1} s"),
        "ms" => format!("{v:.0} ms"),
        unit => format!("{v:.0} {unit}"),
    }
}

/// The report for the terminal.
pub fn text(r: &Rehearsal) -> String {
    let mut s = format!("rehearsal of {} on synthetic data\n", r.migration);
    s.push_str(&format!(
        "workload rate aimed at: {:.1} statements/s ({})\n",
        r.rate.aimed_per_s, r.rate.source
    ));
    for m in &r.runs {
        s.push_str(&format!(
            "\nscale {} ({} rows in the touched tables; synth {:.1} s)\n",
            m.scale, m.rows, m.synth_s
        ));
        s.push_str(&format!(
            "  start {:.1} s (expand {:.1} s, backfill {:.1} s), pause {:.1} s, complete {:.1} s \
             (contract {:.1} s)\n",
            m.start_s, m.expand_s, m.backfill_s, m.pause_s, m.complete_s, m.contract_s
        ));
        for step in &m.steps {
            s.push_str(&format!(
                "    {:<8} {:>8.0} ms  {} on {}{}  {}\n",
                step.phase,
                step.ms,
                step.lock,
                if step.locked.is_empty() {
                    "-".to_string()
                } else {
                    step.locked.join(", ")
                },
                if step.lock_retries > 0 {
                    format!(
                        " ({} lock waits, {:.0} ms backoff)",
                        step.lock_retries, step.lock_backoff_ms
                    )
                } else {
                    String::new()
                },
                step.description
            ));
        }
        s.push_str(&format!(
            "  backfill: {} rows in {} batches (p50 {:.0} ms, longest {:.0} ms), {:.0} rows/s, \
             throttled {:.1} s\n",
            m.backfill_rows, m.batches, m.batch_p50_ms, m.batch_max_ms, m.rows_per_s, m.throttled_s
        ));
        s.push_str(&format!(
            "  workload: before p50 {:.1} ms p99 {:.1} ms ({} statements); during p50 {:.1} ms \
             p99 {:.1} ms ({} statements)\n",
            m.latency_before.p50_ms,
            m.latency_before.p99_ms,
            m.latency_before.statements,
            m.latency_during.p50_ms,
            m.latency_during.p99_ms,
            m.latency_during.statements
        ));
        s.push_str(&format!(
            "  rate: aimed at {:.1}/s, achieved {:.1}/s before and {:.1}/s during{}\n",
            r.rate.aimed_per_s,
            m.latency_before.per_s,
            m.latency_during.per_s,
            if m.latency_during.per_s < 0.9 * r.rate.aimed_per_s {
                " (short of the aim: the statements waited, or give more --clients)"
            } else {
                ""
            }
        ));
        s.push_str(&format!(
            "  writes: {} updates, {} inserts, {} failed; statements failed: {} before, {} \
             during\n",
            m.writes.updates,
            m.writes.inserts,
            m.writes.failed,
            m.latency_before.failed,
            m.latency_during.failed
        ));
        for why in &m.writes.not_inserted {
            s.push_str(&format!("    no inserts into {why}\n"));
        }
        for lag in &m.replica_lag {
            s.push_str(&format!(
                "  replica lag {:<8} max {} p95 {} (replay lag max {:.0} ms, p95 {:.0} ms; {} \
                 samples)\n",
                lag.phase,
                bytes(lag.max_bytes as f64),
                bytes(lag.p95_bytes as f64),
                lag.max_ms,
                lag.p95_ms,
                lag.samples
            ));
        }
        s.push_str(&format!(
            "  WAL {}, table growth {}, index growth {}\n",
            bytes(m.wal_bytes as f64),
            bytes(m.table_growth_bytes as f64),
            bytes(m.index_growth_bytes as f64)
        ));
        if !m.replayed.is_empty() {
            s.push_str("  replayed from the target's pg_stat_statements:\n");
            for q in &m.replayed {
                s.push_str(&format!("    {q}\n"));
            }
        }
        for q in &m.not_replayed {
            s.push_str(&format!("  not replayed: {q}\n"));
        }
        if let Some(refused) = &m.gates_refused {
            s.push_str(&format!(
                "  the gates refused contract (then overridden to measure it): {refused}\n"
            ));
        }
    }
    s.push_str("\nforecast at full size (scale 1):\n");
    for f in &r.forecast {
        s.push_str(&format!(
            "  {:<40} {:>12}  ({} to {}; {})\n",
            f.figure,
            value(f, f.at_full_size),
            value(f, f.low),
            value(f, f.high),
            f.growth
        ));
    }
    if let Some(risk) = &r.riskiest {
        s.push_str(&format!("\nriskiest step: {risk}\n"));
    }
    s.push_str("\nsettings:\n");
    for (k, v) in &r.settings {
        s.push_str(&format!("  {k}: {v}\n"));
    }
    if !r.real_values.is_empty() {
        s.push_str(&format!(
            "real values of the target's statistics in the scratch data: {}\n",
            r.real_values.join(", ")
        ));
    }
    for w in &r.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    s
}

/// The report as Markdown, for a change ticket.
pub fn markdown(r: &Rehearsal) -> String {
    let mut s = format!("# Rehearsal of `{}`\n\n", r.migration);
    s.push_str(&format!(
        "Rehearsed {}; the workload aimed at {:.1} statements/s ({}).\n\n",
        r.at, r.rate.aimed_per_s, r.rate.source
    ));
    s.push_str(
        "Run on scratch databases generated by `zdm synth` from the target's statistics \
         (no production row read).\n\n## Phases\n\n| scale | rows | start | expand | backfill \
         | pause | complete | contract | rows/s | p99 before | p99 during | achieved rate \
         | WAL |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- \
         | --- |\n",
    );
    for m in &r.runs {
        s.push_str(&format!(
            "| {} | {} | {:.1} s | {:.1} s | {:.1} s | {:.1} s | {:.1} s | {:.1} s | {:.0} | \
             {:.1} ms | {:.1} ms | {:.1}/s | {} |\n",
            m.scale,
            m.rows,
            m.start_s,
            m.expand_s,
            m.backfill_s,
            m.pause_s,
            m.complete_s,
            m.contract_s,
            m.rows_per_s,
            m.latency_before.p99_ms,
            m.latency_during.p99_ms,
            m.latency_during.per_s,
            bytes(m.wal_bytes as f64)
        ));
    }
    if r.runs.iter().any(|m| !m.replica_lag.is_empty()) {
        s.push_str(
            "\n## Replica lag\n\n| scale | phase | max | p95 | replay lag max | p95 |\n| --- \
             | --- | --- | --- | --- | --- |\n",
        );
        for m in &r.runs {
            for lag in &m.replica_lag {
                s.push_str(&format!(
                    "| {} | {} | {} | {} | {:.0} ms | {:.0} ms |\n",
                    m.scale,
                    lag.phase,
                    bytes(lag.max_bytes as f64),
                    bytes(lag.p95_bytes as f64),
                    lag.max_ms,
                    lag.p95_ms
                ));
            }
        }
    }
    if let Some(m) = r.runs.last() {
        s.push_str(&format!(
            "\n## Steps (scale {})\n\n| phase | step | lock | on | ms | lock waits |\n| --- | \
             --- | --- | --- | --- | --- |\n",
            m.scale
        ));
        for step in &m.steps {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {:.0} | {} |\n",
                step.phase,
                step.description.replace('|', "\\|"),
                step.lock,
                step.locked.join(", "),
                step.ms,
                step.lock_retries
            ));
        }
    }
    s.push_str(
        "\n## Forecast at full size\n\n| figure | forecast | range | growth |\n| --- | --- | \
         --- | --- |\n",
    );
    for f in &r.forecast {
        s.push_str(&format!(
            "| {} | {} | {} to {} | {} |\n",
            f.figure.replace('|', "\\|"),
            value(f, f.at_full_size),
            value(f, f.low),
            value(f, f.high),
            f.growth
        ));
    }
    if let Some(risk) = &r.riskiest {
        s.push_str(&format!("\n## Riskiest step\n\n{risk}\n"));
    }
    s.push_str("\n## Settings\n\n");
    for (k, v) in &r.settings {
        s.push_str(&format!("- {k}: {v}\n"));
    }
    if !r.real_values.is_empty() {
        s.push_str(&format!(
            "\nReal values of the target's statistics in the scratch data: {}\n",
            r.real_values.join(", ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::forecast;

    #[test]
    fn a_linear_figure_is_forecast_linear_and_a_constant_one_constant() {
        let linear = forecast("backfill", "s", &[(0.1, 1.0), (0.3, 3.0)]);
        assert_eq!(linear.growth, "linear");
        assert!((linear.at_full_size - 10.0).abs() < 1e-6);
        assert!(linear.low <= 10.0 && linear.high >= 10.0);
        let constant = forecast("expand", "s", &[(0.1, 0.5), (0.3, 0.52)]);
        assert_eq!(constant.growth, "constant");
        assert!(constant.at_full_size < 0.6);
        let faster = forecast("index", "s", &[(0.1, 1.0), (0.3, 9.0)]);
        assert_eq!(faster.growth, "faster than linear");
        assert!(faster.at_full_size > 50.0);
        let measured = forecast("x", "s", &[(1.0, 4.0)]);
        assert_eq!(
            (measured.growth.as_str(), measured.at_full_size),
            ("measured", 4.0)
        );
    }
}
