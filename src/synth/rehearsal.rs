//! What `zdm rehearse` measured and forecast, and where the last rehearsal of each
//! migration is kept: `<migrations dir>/.zdm/rehearsals/NAME.json`, beside the migration
//! files (a DBA commits or attaches it with them; the console reads it without asking the
//! database). The figures are measured by the rehearse command; this is their one home.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One step as it ran.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepRun {
    pub phase: String,
    pub description: String,
    /// The strongest lock it takes, and on what.
    pub lock: String,
    pub locked: Vec<String>,
    /// Whether its lock blocks the application's writes.
    pub blocks_writes: bool,
    /// Whether its time can grow with the rows: it scans or rewrites a table, or is a
    /// backfill; the others change the catalog only, whatever the size.
    pub grows_with_rows: bool,
    /// How long it ran (its lock is held at most this long).
    pub ms: f64,
    /// Times it gave up waiting for its lock, and the backoff waited between tries.
    pub lock_retries: u32,
    pub lock_backoff_ms: f64,
}

/// The workload's statements over a stretch of the rehearsal.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub statements: usize,
    /// Statements per second achieved over the stretch (the aimed rate is the
    /// rehearsal's [`Rate`]).
    pub per_s: f64,
    /// Statements that failed (a lock timeout, a column the contract removed).
    pub failed: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The lag of the scratch server's streaming replica over one phase, sampled from the
/// primary's `pg_stat_replication` (bytes of WAL not replayed yet, and `replay_lag`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReplicaLag {
    /// "before" (the workload alone), "start", "pause", "complete".
    pub phase: String,
    pub samples: usize,
    pub max_bytes: u64,
    pub p95_bytes: u64,
    pub max_ms: f64,
    pub p95_ms: f64,
}

/// The workload's writes at one scale.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Writes {
    pub updates: usize,
    pub inserts: usize,
    /// Writes that failed, of either kind.
    pub failed: usize,
    /// Touched tables that get no inserts, with why.
    pub not_inserted: Vec<String>,
}

/// One rehearsal at one scale.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Measured {
    pub scale: f64,
    /// Rows of the tables the migration touches.
    pub rows: u64,
    pub synth_s: f64,
    pub start_s: f64,
    pub pause_s: f64,
    pub complete_s: f64,
    pub expand_s: f64,
    pub backfill_s: f64,
    pub contract_s: f64,
    pub steps: Vec<StepRun>,
    pub batches: usize,
    pub batch_p50_ms: f64,
    pub batch_max_ms: f64,
    pub backfill_rows: u64,
    pub rows_per_s: f64,
    pub throttled_s: f64,
    pub latency_before: Latency,
    pub latency_during: Latency,
    pub writes: Writes,
    /// Per phase, when the rehearsal ran with a replica (`--replica`).
    pub replica_lag: Vec<ReplicaLag>,
    pub wal_bytes: u64,
    pub table_growth_bytes: i64,
    pub index_growth_bytes: i64,
    /// What the gates said at complete, when they refused.
    pub gates_refused: Option<String>,
    /// The target's queries the workload replayed (with their calls there), and the
    /// others with why not.
    pub replayed: Vec<String>,
    pub not_replayed: Vec<String>,
}

/// A figure at the target's size, from the measured ones.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Forecast {
    pub figure: String,
    pub unit: String,
    /// (scale, value) as measured.
    pub measured: Vec<(f64, f64)>,
    pub at_full_size: f64,
    pub low: f64,
    pub high: f64,
    /// "linear", "constant", "faster than linear", "slower than linear", or "measured".
    pub growth: String,
    /// The exponent of value ∝ scale^e between the two largest scales.
    pub exponent: Option<f64>,
}

/// The workload's rate, aimed at on every scale.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Rate {
    pub aimed_per_s: f64,
    /// Where it comes from: the target's pg_stat_statements over its stats_reset window,
    /// or `--rate`.
    pub source: String,
}

/// Everything `zdm rehearse` found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Rehearsal {
    pub migration: String,
    /// When it ended (UTC, RFC 3339).
    pub at: String,
    pub rate: Rate,
    pub runs: Vec<Measured>,
    pub forecast: Vec<Forecast>,
    /// The step most likely to hurt at full size, and why.
    pub riskiest: Option<String>,
    /// The same step in a few words: its description, lock and forecast time.
    pub riskiest_step: Option<String>,
    pub settings: Vec<(String, String)>,
    /// Columns of the scratch databases holding real values of the target's statistics.
    pub real_values: Vec<String>,
    pub warnings: Vec<String>,
}

impl Rehearsal {
    /// The forecast of `figure`, if made.
    pub fn forecast_of(&self, figure: &str) -> Option<&Forecast> {
        self.forecast.iter().find(|f| f.figure == figure)
    }
}

/// The figure every rehearsal forecasts first: the migration's time, start to contract.
pub const DURATION: &str = "duration, start to contract";

/// Where the last rehearsal of `migration` is kept.
pub fn path(migrations_dir: &Path, migration: &str) -> PathBuf {
    migrations_dir
        .join(".zdm")
        .join("rehearsals")
        .join(format!("{migration}.json"))
}

/// Keeps `rehearsal` as its migration's last; returns the file written.
pub fn save(migrations_dir: &Path, rehearsal: &Rehearsal) -> std::io::Result<PathBuf> {
    let file = path(migrations_dir, &rehearsal.migration);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let json = serde_json::to_string_pretty(rehearsal).map_err(std::io::Error::other)?;
    // Written beside and renamed: a console reading it never sees half a file.
    let partial = file.with_extension("json.partial");
    std::fs::write(&partial, json)?;
    std::fs::rename(&partial, &file)?;
    Ok(file)
}

/// The last rehearsal of `migration`: None when it was never rehearsed, an error (in
/// words) when the file cannot be read or is not a rehearsal.
pub fn last(migrations_dir: &Path, migration: &str) -> Result<Option<Rehearsal>, String> {
    let file = path(migrations_dir, migration);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("{} is not a rehearsal report: {e}", file.display()))
}
