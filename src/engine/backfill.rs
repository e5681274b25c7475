//! The backfill loop: keyset batches over a table's key, each one short transaction that
//! updates its rows and saves its checkpoint together, so a crash never loses or
//! double-applies a row and a rerun resumes after the last committed batch.
//!
//! The key is cut into ranges once (`backfill_ranges`), each with its own checkpoint, so
//! that several workers (tokio tasks, a connection each) can walk disjoint ranges at
//! once; how many is `workers` (`workers::WorkerCount`, adaptive by default). One loop
//! here hands out the batches and is the one gate of them all: how big each batch is and
//! how long a worker pauses after it is a [`Pacing`] ([`FixedBatches`] here,
//! `pacing::AdaptiveBatches` aimed at a target batch time), and before any batch starts the
//! loop reads its [`Steering`]: the operator's [`BackfillControl`] (pause, manual
//! throttle, stop, new settings), the [`Throttle`] and the rows/s ceiling.

use std::time::{Duration, Instant};

use sqlx::{Acquire, Executor, PgConnection};

use super::backfill_control::{BackfillControl, Watcher};
use super::ddl::{self, LockPolicy, LockRetry};
use super::event::{Event, Events};
use super::lock::{Held, RunLock};
use super::pacing::PacingSettings;
use super::progress::{RunState, Tracker};
use super::state::{self, Checkpoint, StepKey};
use super::throttle::{Throttle, Verdict};
use super::{Error, Status};
use crate::db::quote_ident;
use crate::plan::{Backfill, LockLevel};
use crate::protocol::BatchDone;

/// What one committed batch did.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchReport {
    /// Rows the batch's UPDATE changed (rows in its key range matching the predicate).
    pub rows_updated: u64,
    /// The batch size asked for.
    pub batch_size: u64,
    /// Wall time of the batch's transaction, retries included.
    pub took: Duration,
}

/// Decides the size of the next batch and the pause after each one.
pub trait Pacing {
    /// Rows (keys) in the next batch; at least 1.
    fn batch_size(&self) -> u64;
    /// Learns from a committed batch; returns how long to wait before the next one.
    fn after_batch(&mut self, report: &BatchReport) -> Duration;
    /// Takes settings changed while the backfill runs (a fixed pacing ignores them).
    fn apply(&mut self, _settings: &PacingSettings) {}
}

/// What steers a backfill between batches: the operator's handle and the throttle.
#[derive(Debug, Default)]
pub struct Steering {
    pub control: BackfillControl,
    /// None: nothing throttles (library use, tests); `zdm start` always sets one.
    pub throttle: Option<Throttle>,
    /// `statement_timeout` of each batch; None: [`batch_timeout`] of the batch target.
    pub batch_timeout: Option<Duration>,
    /// Where the workers' connections are opened (the engine's server, its session
    /// settings and name). None: one worker on the engine's own connection (library use).
    pub connect: Option<sqlx::postgres::PgConnectOptions>,
}

/// The bound on one batch's statements when none is configured: far above the batch
/// target (a batch that takes 50 times its target is stuck on something, not slow), and
/// never below 10 s so that a short target on a busy server is not cut at once.
pub fn batch_timeout(pacing: &PacingSettings, configured: Option<Duration>) -> Duration {
    configured.unwrap_or_else(|| (pacing.target * 50).max(Duration::from_secs(10)))
}

/// A batch unanswered this long after its statement timeout is reported as stalled, and
/// then again this often.
const STALL_GRACE: Duration = Duration::from_secs(2);
const STALL_REPORT_EVERY: Duration = Duration::from_secs(5);

/// How many times in a row one batch may hit its statement timeout (halving its size
/// each time) before the backfill stops with the error.
const MAX_TIMEOUTS_PER_BATCH: u32 = 20;

/// How often progress is reported while batches commit, and while waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How often the table's row estimate is read again from its statistics.
const ESTIMATE_EVERY: Duration = Duration::from_secs(30);
/// How often a throttled or paused backfill looks again.
const WAIT_STEP: Duration = Duration::from_millis(250);
/// How often a throttled or paused backfill checks its run lock (which also keeps the
/// lock's connection from looking idle to a proxy); a running one checks before every batch.
const LOCK_CHECK_WHILE_WAITING: Duration = Duration::from_secs(30);

/// The same batch size every time, no pause: the simple, correct loop.
#[derive(Debug, Clone)]
pub struct FixedBatches {
    pub size: u64,
}

impl Pacing for FixedBatches {
    fn batch_size(&self) -> u64 {
        self.size.max(1)
    }

    fn after_batch(&mut self, _report: &BatchReport) -> Duration {
        Duration::ZERO
    }
}

/// The SQL of one backfill, built once from the planned [`Backfill`]. A batch walks one
/// key range `(lower, upper]` from its cursor (the range's checkpoint, or its lower
/// bound); a bound that is absent (the table's first or last key) has no condition at all,
/// so that every batch is an index range scan, and each variant is its own statement.
#[derive(Debug, Clone)]
struct BatchSql {
    /// The batch's upper key as jsonb: (the n-th key after the cursor, else the range's
    /// last key), both NULL when the range has no key left, by [`BatchSql::variant`];
    /// parameters: the cursor (when there is one), the range's upper bound (when it has
    /// one), then the batch size.
    upper_key: [String; 4],
    /// `UPDATE` of the keys in (cursor, upper]: `$1` = upper key without a cursor;
    /// `$1` = cursor, `$2` = upper key with one.
    update: [String; 2],
    /// The table, quoted.
    table: String,
    /// Run first in each batch's transaction, after its bounds: the table's lock, taken
    /// before the trigger check below reads the catalog (creating a trigger needs a lock
    /// this one excludes, so none appears between the check and the UPDATE).
    lock: String,
    /// `$1` = table, `$2` = flag value: sets the sync triggers' skip flag for this
    /// transaction when no other BEFORE UPDATE row trigger is on the table.
    flag: String,
    /// The value of [`crate::plan::BACKFILL_FLAG`] for this backfill's batches.
    flag_value: String,
}

impl BatchSql {
    fn new(spec: &Backfill) -> Result<Self, String> {
        if spec.key_columns.is_empty() {
            return Err("the backfill has no key columns to cut batches on".to_string());
        }
        if spec.assignments.is_empty() {
            return Err("the backfill assigns no columns".to_string());
        }
        let table = &spec.table;
        let keys: Vec<String> = spec.key_columns.iter().map(|c| quote_ident(c)).collect();
        let key_list = keys.join(", ");
        let key_desc = keys
            .iter()
            .map(|k| format!("{k} DESC"))
            .collect::<Vec<_>>()
            .join(", ");
        // A key row from jsonb, typed by the table's own row type.
        let key_from = |param: &str| {
            format!("(SELECT {key_list} FROM jsonb_populate_record(NULL::{table}, {param}::jsonb))")
        };
        // The WHERE of keys after `lower` and up to `upper` (parameters, either absent).
        let within = |lower: Option<&str>, upper: Option<&str>| {
            let mut conditions = Vec::new();
            if let Some(lower) = lower {
                conditions.push(format!("({key_list}) > {}", key_from(lower)));
            }
            if let Some(upper) = upper {
                conditions.push(format!("({key_list}) <= {}", key_from(upper)));
            }
            match conditions.is_empty() {
                true => String::new(),
                false => format!(" WHERE {}", conditions.join(" AND ")),
            }
        };
        // The batch's upper key is the n-th key after the cursor (OFFSET n - 1: one key
        // turned into jsonb, not n of them sorted for the largest), or, when fewer than n
        // are left in the range, the range's last key (a backward index probe).
        let upper_key = |lower: Option<&str>, upper: Option<&str>, limit: &str| {
            let range = within(lower, upper);
            format!(
                "SELECT n.k, CASE WHEN n.k IS NULL THEN \
                   (SELECT to_jsonb(b) FROM (SELECT {key_list} FROM {table}{range} \
                      ORDER BY {key_desc} LIMIT 1) AS b) END \
                 FROM (SELECT (SELECT to_jsonb(b) FROM (SELECT {key_list} FROM {table}{range} \
                      ORDER BY {key_list} OFFSET {limit} - 1 LIMIT 1) AS b) AS k) AS n"
            )
        };
        let set = spec
            .assignments
            .iter()
            .map(|(column, expression)| format!("{} = ({expression})", quote_ident(column)))
            .collect::<Vec<_>>()
            .join(", ");
        let predicate = spec
            .predicate
            .as_ref()
            .map(|p| format!(" AND ({p})"))
            .unwrap_or_default();
        let update = |lower: Option<&str>, upper: &str| {
            let range = within(lower, Some(upper));
            format!("UPDATE {table} SET {set}{range}{predicate}")
        };
        // The sync trigger's own name is `_zdm_sync_…`; any other BEFORE ROW UPDATE
        // trigger (tgtype bits ROW 1, BEFORE 2, UPDATE 16), enabled or not, keeps the sync
        // trigger running in full: it could change a column the sync rules read.
        let flag = format!(
            "SELECT set_config({}, CASE WHEN EXISTS (\
               SELECT 1 FROM pg_trigger t WHERE t.tgrelid = $1::regclass AND NOT t.tgisinternal \
                 AND t.tgtype & 19 = 19 AND t.tgname NOT LIKE '\\_zdm\\_sync\\_%') \
             THEN '' ELSE $2 END, true)",
            crate::plan::names::literal(crate::plan::BACKFILL_FLAG)
        );
        Ok(BatchSql {
            upper_key: [
                upper_key(None, None, "$1"),
                upper_key(Some("$1"), None, "$2"),
                upper_key(None, Some("$1"), "$2"),
                upper_key(Some("$1"), Some("$2"), "$3"),
            ],
            update: [update(None, "$1"), update(Some("$1"), "$2")],
            table: table.clone(),
            lock: format!("LOCK TABLE {table} IN ROW EXCLUSIVE MODE"),
            flag,
            flag_value: crate::plan::backfill_flag(
                table,
                spec.assignments.iter().map(|(column, _)| column.as_str()),
            ),
        })
    }

    /// Which [`BatchSql::upper_key`] fits a cursor and a range's upper bound.
    fn variant(cursor: bool, upper: bool) -> usize {
        usize::from(cursor) | (usize::from(upper) << 1)
    }
}

/// Everything a batch needs that stays the same for the whole backfill, shared by the
/// workers (a worker task owns its connection and a handle on this).
#[derive(Debug)]
struct Shared {
    sql: BatchSql,
    migration: String,
    phase: crate::plan::Phase,
    position: i32,
    description: String,
    label: String,
    table: String,
    policy: LockPolicy,
    search_path: String,
    events: Events,
    /// Where a batch waiting for a lock asks whom it waits for (its own connection is
    /// busy waiting): a connection of its own, opened the first time it is needed with
    /// `connect`. None: not asked (library use), the blockers are found after the wait.
    probe: Option<(
        sqlx::postgres::PgConnectOptions,
        tokio::sync::Mutex<Option<PgConnection>>,
    )>,
}

impl Shared {
    /// The sessions server process `pid` waits for, asked on the probe connection.
    async fn blocking(&self, pid: i32) -> Vec<ddl::Blocker> {
        let Some((connect, probe)) = &self.probe else {
            return Vec::new();
        };
        let mut probe = probe.lock().await;
        if probe.is_none() {
            match crate::db::connect_within(
                connect,
                Some(crate::db::conninfo::DEFAULT_CONNECT_TIMEOUT),
            )
            .await
            {
                Ok(conn) => *probe = Some(conn),
                Err(error) => {
                    tracing::debug!(%error, "could not open a connection to ask whom the batch waits for");
                    return Vec::new();
                }
            }
        }
        let Some(conn) = probe.as_mut() else {
            return Vec::new();
        };
        match ddl::blocking(conn, pid, &self.table).await {
            Ok(blockers) => blockers,
            Err(error) => {
                tracing::debug!(%error, "could not ask whom the batch waits for");
                // Opened again next time.
                *probe = None;
                Vec::new()
            }
        }
    }
}

impl Shared {
    fn key(&self) -> StepKey<'_> {
        StepKey {
            migration: &self.migration,
            phase: self.phase,
            position: self.position,
            description: &self.description,
        }
    }
}

/// One batch to run: which range, from where, how many keys.
#[derive(Debug, Clone)]
struct Job {
    /// Index in the run's ranges.
    index: usize,
    range: i32,
    upper: Option<serde_json::Value>,
    /// Where the batch starts: the range's checkpoint, or its lower bound.
    cursor: Option<serde_json::Value>,
    checkpoint: Checkpoint,
    batch_size: u64,
    timeout: Duration,
}

/// What a worker hands back after a batch.
#[derive(Debug)]
struct Done {
    index: usize,
    /// Which worker (slot) ran it, for its share of the rows.
    worker: usize,
    outcome: Result<Batch, Error>,
    /// The keys asked for in the end (halved after statement timeouts).
    batch_size: u64,
    /// Whether statement timeouts cut the size.
    shrunk: bool,
    started: Instant,
    took: Duration,
}

/// Runs one batch to its end: retried after a lock timeout (with backoff, within the
/// policy's tries) and, halved, after a statement timeout. A batch the database leaves
/// unanswered past its timeout is reported as stalled while it waits.
async fn run_job(
    conn: &mut PgConnection,
    backend: Option<i32>,
    shared: &Shared,
    job: &Job,
    worker: usize,
) -> Done {
    let started = Instant::now();
    let key = shared.key();
    let mut batch_size = job.batch_size;
    let mut shrunk = false;
    let mut timeouts = 0;
    let mut retry = LockRetry::new(
        &shared.policy,
        shared.label.clone(),
        LockLevel::RowExclusive,
    )
    .with_events(&shared.events);
    let mut repeats_stalled = Repeats::default();
    let outcome: Result<Batch, Error> = loop {
        let attempts = retry.begin_attempt();
        let done = tokio::sync::Notify::new();
        let batch = async {
            let result = try_batch(conn, &key, shared, job, batch_size, attempts).await;
            done.notify_one();
            result
        };
        // Whom the batch waits for is asked while it still waits (after the wait the
        // answer is gone); not at all when the batch is quick.
        let probe = async {
            let blockers = match backend {
                Some(pid) if shared.probe.is_some() => tokio::select! {
                    _ = tokio::time::sleep(shared.policy.lock_timeout / 2) => shared.blocking(pid).await,
                    _ = done.notified() => return Vec::new(),
                },
                _ => Vec::new(),
            };
            // A batch still unanswered well past its own statement timeout means a stalled
            // server (a stopped or swapped-out backend cannot even cancel itself): shown
            // as a throttle reason, in `zdm ctl status` and the console, until the answer
            // comes.
            let started = Instant::now();
            let mut stalled = false;
            let mut next_report = job.timeout + STALL_GRACE;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(next_report.saturating_sub(started.elapsed())) => {}
                    _ = done.notified() => break,
                }
                stalled = true;
                let reason = format!(
                    "the database has not answered this batch for {} (server process {}; \
                     its statement timeout is {}): the server is stalled",
                    crate::format::duration(started.elapsed()),
                    backend.map_or_else(|| "unknown".to_string(), |pid| pid.to_string()),
                    crate::format::duration(job.timeout)
                );
                if repeats_stalled.should_log(&reason, Instant::now()) {
                    tracing::warn!(step = shared.label, "{reason}");
                }
                shared.events.emit(Event::ThrottleOn { reason });
                next_report += STALL_REPORT_EVERY;
            }
            if stalled {
                shared.events.emit(Event::ThrottleOff {
                    reason: "the database answered the batch again".to_string(),
                    throttled_for: started.elapsed(),
                });
            }
            blockers
        };
        let (result, waited_for) = tokio::join!(batch, probe);
        match result {
            Ok(outcome) => break Ok(outcome),
            Err(error)
                if ddl::is_statement_timeout(&error) && timeouts < MAX_TIMEOUTS_PER_BATCH =>
            {
                // Too big a batch for the time allowed (a slow trigger, a cold cache, a
                // role's timeout): smaller, not failed.
                timeouts += 1;
                let smaller = (batch_size / 2).max(1);
                tracing::warn!(
                    step = shared.label,
                    keys = batch_size,
                    next_keys = smaller,
                    timeout_ms = job.timeout.as_millis() as u64,
                    "backfill batch cancelled by its statement timeout; retrying smaller"
                );
                batch_size = smaller;
                shrunk = true;
            }
            Err(error) if ddl::is_lock_timeout(&error) => {
                // Who held it, as seen during the wait; else who holds a conflicting
                // table lock now.
                let mut blockers = waited_for;
                if blockers.is_empty() {
                    blockers = ddl::blockers(
                        conn,
                        std::slice::from_ref(&shared.table),
                        LockLevel::RowExclusive,
                    )
                    .await
                    .unwrap_or_default();
                }
                if let Err(error) = retry.back_off(&error, blockers).await {
                    break Err(error);
                }
            }
            Err(source) => {
                break Err(Error::StepFailed {
                    step: shared.label.clone(),
                    source,
                })
            }
        }
    };
    // A batch that found the record changed ends the backfill: said here, where the
    // step and the range are known.
    let outcome = match outcome {
        Ok(Batch::StatusChanged { found }) => Err(Error::StatusChanged {
            name: shared.migration.clone(),
            expected: Status::during(shared.phase).to_string(),
            found: found.to_string(),
        }),
        Ok(Batch::CheckpointMoved { found }) => Err(Error::BadStep {
            step: shared.label.clone(),
            problem: format!(
                "its checkpoint moved under this run (batch {found} of key range {} \
                 recorded, this run was at batch {}): another run is backfilling the same \
                 step. Stopped so that no row is updated twice; run the command again to \
                 resume",
                job.range, job.checkpoint.batches
            ),
        }),
        other => other,
    };
    Done {
        index: job.index,
        worker,
        outcome,
        batch_size,
        shrunk,
        started,
        took: started.elapsed(),
    }
}

/// A worker's connection and its server process.
struct Worker {
    conn: PgConnection,
    backend: Option<i32>,
}

/// Where the backfill's batches run.
// One per backfill: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Workers {
    /// The engine's own connection, one batch at a time (library use: no way to open more).
    Inline,
    /// Worker tasks, each with its own connection opened with `connect`.
    Tasks {
        connect: sqlx::postgres::PgConnectOptions,
        /// Connections not running a batch, with the worker each belongs to and when it
        /// may run its next batch (after its nice-ratio pause).
        idle: Vec<(usize, Worker, Instant)>,
        running: tokio::task::JoinSet<(usize, Worker, Done)>,
        /// Workers (connections) open, idle or running.
        open: usize,
        /// The next worker number.
        next_id: usize,
        /// After a connection could not be opened: no new one before this.
        open_again_at: Option<Instant>,
    },
}

/// Runs a backfill step to its end from its checkpoints, then marks the step done.
///
/// The key is cut into ranges once, when the step first runs (stored in
/// `zdm.backfill_ranges`); then up to `workers` batches run at once, each on its own
/// connection and in its own range, each one transaction that updates its rows and saves
/// its range's checkpoint together. Between batches it obeys `steering`: a stop request
/// ends it with [`Error::Stopped`] once the batches running have committed (the
/// checkpoints hold), a pause or throttle holds every new batch (and, with `workers=auto`,
/// takes a worker away), new settings apply to the next batch. `max_rows_per_second` is
/// the total of all workers; the nice ratio is each worker's pause.
///
/// Every batch first makes sure the run still holds `lock` (None: no run lock, library
/// use): a lost lock is taken again and the checkpoints read again before the next batch,
/// or the backfill stops when another session took it. Each batch also checks, in its own
/// transaction, that the migration is still in this phase, so a batch never runs after
/// a rollback that ran while the lock was lost.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    conn: &mut PgConnection,
    mut lock: Option<&mut RunLock>,
    key: &StepKey<'_>,
    label: &str,
    spec: &Backfill,
    policy: &LockPolicy,
    pacing: &mut (dyn Pacing + Send),
    events: &Events,
    steering: &mut Steering,
) -> Result<Checkpoint, Error> {
    let sql = BatchSql::new(spec).map_err(|problem| Error::BadStep {
        step: label.to_string(),
        problem,
    })?;
    let failed = |source| Error::StepFailed {
        step: label.to_string(),
        source,
    };
    let step = state::open_checkpoint(conn, key).await?;
    let mut ranges = state::key_ranges(conn, key).await?;
    if ranges.is_empty() {
        // A checkpoint without ranges was left by a zdm that ran one worker: the ranges
        // start after it, and the first carries its count.
        let bounds = super::backfill_ranges::plan(conn, spec, step.last_key.as_ref())
            .await
            .map_err(failed)?;
        state::plan_key_ranges(conn, key, &bounds, &step).await?;
        ranges = state::key_ranges(conn, key).await?;
        tracing::info!(
            step = label,
            ranges = ranges.len(),
            "backfill key cut into ranges"
        );
    }
    let search_path = old_version_search_path(conn).await.map_err(failed)?;
    let total = |ranges: &[state::KeyRange]| Checkpoint {
        last_key: None,
        rows_updated: ranges.iter().map(|r| r.checkpoint.rows_updated).sum(),
        batches: ranges.iter().map(|r| r.checkpoint.batches).sum(),
    };
    let started_from = total(&ranges);
    if started_from.batches > 0 {
        tracing::info!(
            step = label,
            batches = started_from.batches,
            rows = started_from.rows_updated,
            "resuming the backfill after its last committed batches"
        );
    }
    let mut tracker = Tracker::new(
        label,
        &spec.table,
        Instant::now(),
        u64::try_from(started_from.rows_updated).unwrap_or(0),
        u64::try_from(started_from.batches).unwrap_or(0),
    );
    let table = table_statistics(conn, &spec.table).await;
    tracker.set_estimate(table.as_ref().and_then(|t| t.estimate));
    if let (Some(throttle), Some(table)) = (steering.throttle.as_mut(), &table) {
        throttle.watch_table(&table.name);
    }
    let shared = std::sync::Arc::new(Shared {
        sql,
        migration: key.migration.to_string(),
        phase: key.phase,
        position: key.position,
        description: key.description.to_string(),
        label: label.to_string(),
        table: spec.table.clone(),
        policy: policy.clone(),
        search_path,
        events: events.clone(),
        probe: steering
            .connect
            .clone()
            .map(|connect| (connect, tokio::sync::Mutex::new(None))),
    });
    let mut workers = match steering.connect.clone() {
        Some(connect) => Workers::Tasks {
            connect,
            idle: Vec::new(),
            running: tokio::task::JoinSet::new(),
            open: 0,
            next_id: 0,
            open_again_at: None,
        },
        None => Workers::Inline,
    };
    let limit = match &workers {
        Workers::Inline => 1,
        Workers::Tasks { connect, .. } => worker_limit(conn, connect).await,
    };
    let mut watcher = steering.control.watcher();
    let count = super::workers::WorkerCount::new(watcher.settings().workers, limit, Instant::now());
    let mut estimated_at = Instant::now();
    let mut reported_at: Option<Instant> = None;
    let mut look = Look::default();
    // The pause of the inline worker after its last batch.
    let mut inline_ready_at = Instant::now();
    let mut vacuum = Vacuum::new();
    let mut retaken = false;
    let mut lock_checked_at = Instant::now();
    let mut tally = Tally {
        busy: vec![false; ranges.len()],
        ranges,
        tracker,
        count,
        shares: Vec::new(),
        shrunk: None,
        ceiling_at: Instant::now(),
        ending: None,
    };
    loop {
        let now = Instant::now();
        let settings = watcher.settings();
        pacing.apply(&settings.pacing);
        tally.count.set(settings.workers, now);
        let running = workers.running();
        if running == 0 {
            if let Some(end) = tally.ending.take() {
                workers.close().await;
                return match end {
                    Ok(()) => Err(stopped(
                        label,
                        &look.stop_why,
                        &total(&tally.ranges),
                        events,
                    )),
                    Err(error) => Err(error),
                };
            }
            if retaken {
                retaken = false;
                if let Err(error) = ranges_after_retake(conn, key, label, &tally.ranges).await {
                    tally.ending = Some(Err(error));
                    continue;
                }
            }
            if tally.ranges.iter().all(|r| r.done) {
                workers.close().await;
                finish(conn, key, label, &total(&tally.ranges)).await?;
                tally.tracker.finished();
                tracker_workers(&mut tally.tracker, tally.count.target(), &tally.shares);
                events.emit(
                    tally
                        .tracker
                        .report(Instant::now())
                        .event(key.migration, settings.pacing.target),
                );
                return Ok(total(&tally.ranges));
            }
        }
        // Start a batch when a range is free, a worker may run and the steering allows.
        let free = (0..tally.ranges.len()).find(|&i| !tally.ranges[i].done && !tally.busy[i]);
        let mut launched = false;
        let mut held = false;
        if let (Some(index), None, false) = (free, &tally.ending, retaken) {
            let ready_at = workers.ready_at(tally.count.target(), inline_ready_at, now);
            if let Some(ready_at) = ready_at.map(|at| at.max(tally.ceiling_at)) {
                if ready_at <= now {
                    match look
                        .state(label, steering, &mut watcher, &mut tally.tracker, events)
                        .await
                    {
                        LookState::Stop => tally.ending = Some(Ok(())),
                        LookState::Held => {
                            held = true;
                            if matches!(tally.tracker.state(), RunState::Throttled { .. }) {
                                tally.count.throttled(now);
                            }
                            // A long wait checks the run lock now and then (which also
                            // keeps its connection from looking idle to a proxy).
                            if now.duration_since(lock_checked_at) >= LOCK_CHECK_WHILE_WAITING {
                                lock_checked_at = now;
                                if let Some(lock) = lock.as_deref_mut() {
                                    match lock.hold().await {
                                        Ok(Held::Retaken) => retaken = true,
                                        Ok(_) => {}
                                        Err(error) => tally.ending = Some(Err(error)),
                                    }
                                }
                            }
                        }
                        LookState::Running => {
                            lock_checked_at = now;
                            if let Some(lock) = lock.as_deref_mut() {
                                match lock.hold().await {
                                    Ok(Held::Retaken) => retaken = true,
                                    Ok(_) => {}
                                    Err(error) => tally.ending = Some(Err(error)),
                                }
                            }
                            if !retaken && tally.ending.is_none() {
                                let timeout =
                                    batch_timeout(&settings.pacing, steering.batch_timeout);
                                let batch_size = match tally.shrunk {
                                    Some(cap) => pacing.batch_size().min(cap),
                                    None => pacing.batch_size(),
                                };
                                tally.tracker.set_batch_size(batch_size);
                                let range = &tally.ranges[index];
                                let job = Job {
                                    index,
                                    range: range.range,
                                    upper: range.upper.clone(),
                                    cursor: range
                                        .checkpoint
                                        .last_key
                                        .clone()
                                        .or_else(|| range.lower.clone()),
                                    checkpoint: range.checkpoint.clone(),
                                    batch_size,
                                    timeout,
                                };
                                tally.busy[index] = true;
                                launched = true;
                                match &mut workers {
                                    Workers::Inline => {
                                        let done = run_job(conn, None, &shared, &job, 0).await;
                                        let pause =
                                            tally.take(done, pacing, &settings, events, label);
                                        inline_ready_at = Instant::now() + pause;
                                    }
                                    Workers::Tasks { .. } => {
                                        if let Err(error) = workers.spawn(&shared, job).await {
                                            tally.busy[index] = false;
                                            launched = false;
                                            if workers.running() == 0 && workers.open() == 0 {
                                                tally.ending = Some(Err(error));
                                            } else {
                                                // Fewer workers than asked: the others go on.
                                                tracing::warn!(step = label, %error, "could not open another backfill worker's connection; trying again later");
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let now = Instant::now();
        if tally.count.tick(now) {
            tracker_workers(&mut tally.tracker, tally.count.target(), &tally.shares);
        }
        if now.duration_since(estimated_at) >= ESTIMATE_EVERY {
            estimated_at = now;
            if let Some(statistics) = table_statistics(conn, &spec.table).await {
                tally.tracker.set_estimate(statistics.estimate);
            }
        }
        vacuum
            .maybe(
                conn,
                steering.connect.as_ref(),
                &spec.table,
                settings.vacuum_dead_percent,
                label,
            )
            .await;
        if reported_at.is_none_or(|at| now.duration_since(at) >= PROGRESS_EVERY) {
            reported_at = Some(now);
            tracker_workers(&mut tally.tracker, tally.count.target(), &tally.shares);
            events.emit(
                tally
                    .tracker
                    .report(now)
                    .event(key.migration, settings.pacing.target),
            );
            // The total in `zdm.backfill_progress`, for `zdm status`; the ranges are the
            // checkpoints.
            if let Err(error) = state::save_backfill_total(conn, key).await {
                tracing::debug!(%error, "could not record the backfill's total");
            }
        }
        if launched {
            continue;
        }
        // Wait for a batch to come back, for the next start, or for the operator.
        let wait = workers
            .ready_at(tally.count.target(), inline_ready_at, now)
            .map(|at| at.max(tally.ceiling_at).saturating_duration_since(now))
            .unwrap_or(WAIT_STEP)
            .clamp(Duration::from_millis(1), WAIT_STEP);
        let wait = if held || (free.is_none() && workers.running() > 0) {
            WAIT_STEP
        } else {
            wait
        };
        let done = match &mut workers {
            Workers::Tasks { running, .. } if !running.is_empty() => tokio::select! {
                joined = running.join_next() => joined,
                _ = watcher.sleep(wait) => None,
            },
            _ => {
                watcher.sleep(wait).await;
                None
            }
        };
        if let Some(joined) = done {
            match joined {
                Ok((worker, worker_conn, done)) => {
                    let pause = tally.take(done, pacing, &settings, events, label);
                    workers
                        .give_back(
                            worker,
                            worker_conn,
                            Instant::now() + pause,
                            tally.count.target(),
                        )
                        .await;
                }
                Err(error) => {
                    // A worker task panicked or was cancelled: its batch either committed
                    // with its checkpoint or rolled back; the checkpoints read again on the
                    // rerun tell which.
                    tally.ending = Some(Err(Error::BadStep {
                        step: label.to_string(),
                        problem: format!("a backfill worker stopped unexpectedly ({error}); run the command again to resume"),
                    }));
                    if let Workers::Tasks { open, .. } = &mut workers {
                        *open = open.saturating_sub(1);
                    }
                }
            }
        }
    }
}

/// What the backfill's batches have added up to so far, kept by its loop: the ranges and
/// their checkpoints, which are being worked on, the progress, the worker count and each
/// worker's share, the pacing's caps, and why the backfill ends (once its batches are back).
struct Tally {
    ranges: Vec<state::KeyRange>,
    busy: Vec<bool>,
    tracker: Tracker,
    count: super::workers::WorkerCount,
    /// Rows each worker committed in this run: its share.
    shares: Vec<u64>,
    /// The size a statement timeout cut batches down to; it doubles back after each
    /// committed batch until the pacing's own size is allowed again.
    shrunk: Option<u64>,
    /// The rows/s ceiling's clock: no batch starts before it; each committed batch moves
    /// it on by its rows / ceiling (a total over the workers).
    ceiling_at: Instant,
    /// Why the backfill ends once its running batches are back: a stop, or an error.
    ending: Option<Result<(), Error>>,
}

impl Tally {
    /// Takes a batch's result into the run: its range's checkpoint, the progress, the
    /// pacing and the worker count; returns the worker's pause before its next batch (the
    /// pacing's: the nice ratio). An error or a moved checkpoint ends the backfill once the
    /// other running batches are back.
    fn take(
        &mut self,
        done: Done,
        pacing: &mut (dyn Pacing + Send),
        settings: &super::BackfillSettings,
        events: &Events,
        label: &str,
    ) -> Duration {
        let Tally {
            ranges,
            busy,
            tracker,
            count,
            shares,
            shrunk,
            ceiling_at,
            ending,
        } = self;
        busy[done.index] = false;
        if done.shrunk {
            *shrunk = Some(done.batch_size);
        }
        let range = &mut ranges[done.index];
        let (next, short) = match done.outcome {
            Ok(Batch::Committed {
                next,
                short,
                ends_range,
            }) => {
                range.done |= ends_range;
                (next, short)
            }
            Ok(Batch::RangeDone) => {
                range.done = true;
                tracing::debug!(step = label, range = range.range, "backfill range done");
                return Duration::ZERO;
            }
            // Turned into errors by `run_job`.
            Ok(Batch::StatusChanged { .. } | Batch::CheckpointMoved { .. }) => {
                return Duration::ZERO
            }
            Err(error) => {
                ending.get_or_insert(Err(error));
                return Duration::ZERO;
            }
        };
        let report = BatchReport {
            rows_updated: u64::try_from(next.rows_updated - range.checkpoint.rows_updated)
                .unwrap_or(0),
            batch_size: done.batch_size,
            took: done.took,
        };
        tracing::debug!(
            step = label,
            range = range.range,
            batch = next.batches,
            rows = report.rows_updated,
            keys = report.batch_size,
            took_ms = report.took.as_millis() as u64,
            "backfill batch committed"
        );
        range.checkpoint = next;
        let now = Instant::now();
        // Keys walked: as asked, except for a batch that found fewer left (at the end of its
        // range: the rows it updated are a floor).
        let keys = match short {
            true => report.rows_updated,
            false => done.batch_size,
        };
        tracker.batch(now, keys, report.rows_updated, report.took);
        let progress = tracker.report(now);
        events.emit(Event::BatchDone(BatchDone {
            batch: progress.batches,
            rows: report.rows_updated,
            size: done.batch_size,
            took: report.took,
            rows_done: progress.rows_done,
        }));
        if shares.len() <= done.worker {
            shares.resize(done.worker + 1, 0);
        }
        shares[done.worker] += report.rows_updated;
        count.batch(report.rows_updated);
        // A batch that found fewer keys than asked: its time per key says nothing true about
        // the table, so the pacing does not learn from it.
        let pause = match short {
            true => Duration::ZERO,
            false => pacing.after_batch(&report),
        };
        *shrunk = shrunk
            .map(|cap| cap.saturating_mul(2))
            .filter(|cap| *cap < pacing.batch_size());
        tracker.set_batch_size(pacing.batch_size());
        // The rows/s ceiling holds whatever the pacing (a fixed batch size too), from the
        // first batch, over all the workers together: each batch's rows move the clock on.
        if let Some(rate) = settings.pacing.max_rows_per_second.filter(|r| *r > 0.0) {
            let cost = Duration::from_secs_f64((report.rows_updated as f64 / rate).min(86_400.0));
            *ceiling_at = (*ceiling_at).max(done.started) + cost;
        }
        pause
    }
}

/// The worker count the backfill runs at, and each worker's share, into the progress the
/// front-ends see.
fn tracker_workers(tracker: &mut Tracker, workers: usize, shares: &[u64]) {
    tracker.set_workers(u32::try_from(workers).unwrap_or(u32::MAX), shares.to_vec());
}

impl Workers {
    fn running(&self) -> usize {
        match self {
            Workers::Inline => 0,
            Workers::Tasks { running, .. } => running.len(),
        }
    }

    fn open(&self) -> usize {
        match self {
            Workers::Inline => 1,
            Workers::Tasks { open, .. } => *open,
        }
    }

    /// When a worker may start a batch with `target` workers wanted: the earliest idle
    /// one's pause end, now when another may be opened, None when all `target` run.
    fn ready_at(&self, target: usize, inline_ready_at: Instant, now: Instant) -> Option<Instant> {
        match self {
            Workers::Inline => Some(inline_ready_at),
            Workers::Tasks {
                idle,
                running,
                open_again_at,
                ..
            } => {
                if running.len() >= target {
                    return None;
                }
                let may_open =
                    idle.len() + running.len() < target && open_again_at.is_none_or(|at| at <= now);
                let earliest = idle.iter().map(|(_, _, at)| *at).min();
                match (may_open, earliest) {
                    (true, _) => Some(now),
                    (false, earliest) => earliest,
                }
            }
        }
    }

    /// Starts `job` on an idle worker whose pause is over, or on a new one.
    async fn spawn(&mut self, shared: &std::sync::Arc<Shared>, job: Job) -> Result<(), Error> {
        let Workers::Tasks {
            connect,
            idle,
            running,
            open,
            next_id,
            open_again_at,
        } = self
        else {
            return Ok(());
        };
        let now = Instant::now();
        let (worker, mut worker_conn) = match idle.iter().position(|(_, _, at)| *at <= now) {
            Some(i) => {
                let (worker, conn, _) = idle.swap_remove(i);
                (worker, conn)
            }
            None => {
                let mut conn = crate::db::connect_within(
                    connect,
                    Some(crate::db::conninfo::DEFAULT_CONNECT_TIMEOUT),
                )
                .await
                .map_err(|source| {
                    *open_again_at = Some(now + OPEN_AGAIN_AFTER);
                    Error::Connect {
                        url: super::lock::target(connect),
                        source,
                    }
                })?;
                super::executor::prepare_session(&mut conn).await;
                let backend = sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(&mut conn)
                    .await
                    .ok();
                *open += 1;
                *next_id += 1;
                (*next_id - 1, Worker { conn, backend })
            }
        };
        let shared = shared.clone();
        running.spawn(async move {
            let backend = worker_conn.backend;
            let done = run_job(&mut worker_conn.conn, backend, &shared, &job, worker).await;
            (worker, worker_conn, done)
        });
        Ok(())
    }

    /// A worker's connection back after its batch: kept for the next, or closed when
    /// fewer workers are wanted now.
    async fn give_back(&mut self, worker: usize, conn: Worker, ready_at: Instant, target: usize) {
        if let Workers::Tasks {
            idle,
            running,
            open,
            ..
        } = self
        {
            if idle.len() + running.len() >= target {
                *open = open.saturating_sub(1);
                let _ = sqlx::Connection::close(conn.conn).await;
            } else {
                idle.push((worker, conn, ready_at));
            }
        }
    }

    /// Closes every worker's connection (none is running a batch).
    async fn close(&mut self) {
        if let Workers::Tasks { idle, open, .. } = self {
            for (_, worker, _) in idle.drain(..) {
                let _ = sqlx::Connection::close(worker.conn).await;
            }
            *open = 0;
        }
    }
}

/// After a worker's connection could not be opened, the wait before the next try.
const OPEN_AGAIN_AFTER: Duration = Duration::from_secs(30);

/// The most workers `auto` runs: the server's cores when it runs on this machine, else
/// its `max_worker_processes` (what it is sized for), at most [`super::workers::AUTO_CAP`].
async fn worker_limit(
    conn: &mut PgConnection,
    connect: &sqlx::postgres::PgConnectOptions,
) -> usize {
    if crate::monitor::host::is_local(connect) {
        return std::thread::available_parallelism().map_or(1, |n| n.get());
    }
    let configured: Result<String, sqlx::Error> = sqlx::query_scalar("SHOW max_worker_processes")
        .fetch_one(&mut *conn)
        .await;
    configured
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok())
        .unwrap_or(1)
}

/// The step is done once every range is: recorded in one transaction that checks the
/// migration is still in this phase.
async fn finish(
    conn: &mut PgConnection,
    key: &StepKey<'_>,
    label: &str,
    total: &Checkpoint,
) -> Result<(), Error> {
    let failed = |source| Error::StepFailed {
        step: label.to_string(),
        source,
    };
    let mut tx = conn.begin().await.map_err(failed)?;
    let claim = state::claim_checkpoint(&mut tx, key)
        .await
        .map_err(failed)?;
    if let Some(claim) = claim.filter(|c| c.activity != Status::during(key.phase)) {
        return Err(Error::StatusChanged {
            name: key.migration.to_string(),
            expected: Status::during(key.phase).to_string(),
            found: claim.activity.to_string(),
        });
    }
    state::save_backfill_total(&mut tx, key)
        .await
        .map_err(failed)?;
    state::mark_step_done(&mut tx, key, 1)
        .await
        .map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    tracing::info!(
        step = label,
        batches = total.batches,
        rows = total.rows_updated,
        "backfill done"
    );
    Ok(())
}

/// The stop the operator asked for, reported, as the error that ends the command.
fn stopped(label: &str, why: &str, total: &Checkpoint, events: &Events) -> Error {
    let rows = u64::try_from(total.rows_updated).unwrap_or(0);
    events.emit(Event::BackfillStopped {
        step: label.to_string(),
        why: why.to_string(),
        rows_done: rows,
    });
    Error::Stopped {
        step: label.to_string(),
        why: why.to_string(),
        rows: crate::format::thousands(rows),
    }
}

/// After the run lock was taken again: every range's checkpoint must be where this run
/// left it (another run may have backfilled while the lock was free), else the backfill
/// stops.
async fn ranges_after_retake(
    conn: &mut PgConnection,
    key: &StepKey<'_>,
    label: &str,
    ranges: &[state::KeyRange],
) -> Result<(), Error> {
    let recorded = state::key_ranges(conn, key).await?;
    let moved = recorded
        .iter()
        .zip(ranges)
        .find(|(r, mine)| r.checkpoint != mine.checkpoint || r.done != mine.done);
    if let Some((recorded, mine)) = moved.or(if recorded.len() != ranges.len() {
        recorded.first().zip(ranges.first())
    } else {
        None
    }) {
        return Err(Error::BadStep {
            step: label.to_string(),
            problem: format!(
                "its checkpoint moved while this run's lock was lost (batch {} of key range {} \
                 recorded, this run was at batch {}): another run backfilled meanwhile. \
                 Stopped so that no row is updated twice; run the command again to resume",
                recorded.checkpoint.batches, recorded.range, mine.checkpoint.batches
            ),
        });
    }
    tracing::info!(
        step = label,
        "the run lock was taken again; the checkpoints are where this run left them"
    );
    Ok(())
}

/// Plain VACUUM of the backfilled table between batches (never FULL, never inside a
/// batch's transaction), once its dead rows pass `vacuum_dead_percent` of its rows: the
/// backfill rewrites every row, and without it the table can double on disk before
/// autovacuum comes. It runs on a connection of its own when one can be opened (the
/// batches go on meanwhile: VACUUM's lock does not conflict with theirs).
struct Vacuum {
    checked_at: Instant,
    running: Option<tokio::task::JoinHandle<()>>,
}

/// How often the table's dead rows are looked at.
const VACUUM_CHECK_EVERY: Duration = Duration::from_secs(2);
/// Fewer dead rows than this never call for a VACUUM.
const VACUUM_MIN_DEAD: f64 = 1000.0;

impl Vacuum {
    fn new() -> Self {
        Vacuum {
            checked_at: Instant::now(),
            running: None,
        }
    }

    async fn maybe(
        &mut self,
        conn: &mut PgConnection,
        connect: Option<&sqlx::postgres::PgConnectOptions>,
        table: &str,
        percent: Option<f64>,
        label: &str,
    ) {
        let Some(percent) = percent else { return };
        if self.checked_at.elapsed() < VACUUM_CHECK_EVERY
            || self
                .running
                .as_ref()
                .is_some_and(|task| !task.is_finished())
        {
            return;
        }
        self.checked_at = Instant::now();
        let dead: Result<Option<(f64, f64)>, sqlx::Error> = sqlx::query_as(
            "SELECT n_dead_tup::float8, GREATEST(n_live_tup, 0)::float8 \
             FROM pg_stat_user_tables WHERE relid = to_regclass($1)",
        )
        .bind(table)
        .fetch_optional(&mut *conn)
        .await;
        let (dead, live) = match dead {
            Ok(Some(counts)) => counts,
            Ok(None) => return,
            Err(error) => {
                tracing::debug!(%error, "could not read the table's dead rows");
                return;
            }
        };
        if dead < VACUUM_MIN_DEAD || dead < live * percent / 100.0 {
            return;
        }
        // SKIP_LOCKED: another VACUUM (autovacuum) already at it is as good.
        let sql = format!("VACUUM (SKIP_LOCKED) {table}");
        tracing::info!(
            step = label,
            dead_rows = dead as u64,
            live_rows = live as u64,
            "vacuuming the backfilled table"
        );
        match connect {
            Some(connect) => {
                let connect = connect.clone();
                let label = label.to_string();
                self.running = Some(tokio::spawn(async move {
                    let result = async {
                        let mut conn = crate::db::connect_within(
                            &connect,
                            Some(crate::db::conninfo::DEFAULT_CONNECT_TIMEOUT),
                        )
                        .await?;
                        // A VACUUM takes as long as the table needs; the session's
                        // statement timeout is for the engine's DDL.
                        conn.execute("SET statement_timeout = 0").await?;
                        conn.execute(sql.as_str()).await?;
                        sqlx::Connection::close(conn).await
                    }
                    .await;
                    if let Err(error) = result {
                        tracing::warn!(step = label, %error, "the backfill's VACUUM failed; the backfill goes on");
                    }
                }));
            }
            None => {
                if let Err(error) = conn.execute(sql.as_str()).await {
                    tracing::warn!(step = label, %error, "the backfill's VACUUM failed; the backfill goes on");
                }
            }
        }
    }
}

/// What the steering said at the last look, and the state behind its reports.
#[derive(Debug, Default)]
struct Look {
    throttled_since: Option<Instant>,
    repeats: Repeats,
    /// Why a stop was asked for (once [`LookState::Stop`] was answered).
    stop_why: String,
}

/// The steering's answer: may a batch start now?
#[derive(Debug, PartialEq)]
enum LookState {
    Running,
    /// Paused or throttled (reported): no batch starts.
    Held,
    Stop,
}

impl Look {
    /// Reads the steering (stop, pause, manual throttle, the throttle's verdict),
    /// reporting each change of state.
    async fn state(
        &mut self,
        label: &str,
        steering: &mut Steering,
        watcher: &mut Watcher,
        tracker: &mut Tracker,
        events: &Events,
    ) -> LookState {
        if let Some(why) = watcher.stop_requested() {
            self.stop_why = why;
            return LookState::Stop;
        }
        let settings = watcher.settings();
        if let Some(throttle) = steering.throttle.as_mut() {
            throttle.apply(&settings.throttle);
        }
        let state = if let Some(by) = watcher.paused_by() {
            RunState::Paused { by }
        } else if let Some(by) = watcher.manual_throttle() {
            RunState::Throttled {
                reason: format!("throttled by hand ({by})"),
            }
        } else if let Some(throttle) = steering.throttle.as_mut() {
            match throttle.check().await {
                Verdict::Run => RunState::Running,
                Verdict::Throttle { reason } => RunState::Throttled { reason },
                Verdict::Critical { reason } => {
                    tracing::error!(step = label, %reason, "critical throttle level: backfill paused");
                    events.emit(Event::CriticalLevel {
                        step: label.to_string(),
                        reason: reason.clone(),
                    });
                    let by = format!("critical level: {reason}; resume when it is safe");
                    steering.control.pause(&by);
                    // Seen by the watcher on the next turn.
                    RunState::Paused { by }
                }
            }
        } else {
            RunState::Running
        };
        let now = Instant::now();
        let previous = tracker.state().clone();
        let previous_for = tracker.in_state_for(now);
        if tracker.set_state(now, state.clone()) {
            report_change(
                label,
                (&previous, previous_for),
                &state,
                &mut self.throttled_since,
                now,
                events,
                &mut self.repeats,
            );
        }
        match state {
            RunState::Running => LookState::Running,
            _ => LookState::Held,
        }
    }
}

/// Log lines of throttle reasons seen before: a reason that comes back (the same words,
/// whatever its numbers) is logged again only after an interval that doubles each time,
/// from 1 s up to 10 min, so that a throttle flapping or holding all night leaves a
/// bounded log. Events still go out on every change: front-ends show the current state.
#[derive(Debug, Default)]
struct Repeats {
    /// Reason with its numbers masked → (last logged, interval before the next).
    seen: std::collections::HashMap<String, (Instant, Duration)>,
}

impl Repeats {
    const FIRST: Duration = Duration::from_secs(1);
    const LONGEST: Duration = Duration::from_secs(600);

    /// Whether to log `line` now.
    fn should_log(&mut self, line: &str, now: Instant) -> bool {
        // Every number (`9`, `10`, `2.5`, `13,600`) becomes one `#`.
        let mut shape = String::with_capacity(line.len());
        for c in line.chars() {
            let in_number = shape.ends_with('#');
            if c.is_ascii_digit() || (in_number && matches!(c, '.' | ',')) {
                if !in_number {
                    shape.push('#');
                }
            } else {
                shape.push(c);
            }
        }
        match self.seen.get_mut(&shape) {
            None => {
                self.seen.insert(shape, (now, Self::FIRST));
                true
            }
            Some((at, interval)) if now.duration_since(*at) >= *interval => {
                *at = now;
                *interval = (*interval * 2).min(Self::LONGEST);
                true
            }
            Some(_) => false,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn report_change(
    label: &str,
    (previous, previous_for): (&RunState, Duration),
    state: &RunState,
    throttled_since: &mut Option<Instant>,
    now: Instant,
    events: &Events,
    repeats: &mut Repeats,
) {
    match previous {
        RunState::Paused { .. } if !matches!(state, RunState::Paused { .. }) => {
            tracing::info!(step = label, "backfill resumed");
            events.emit(Event::Resumed {
                paused_for: previous_for,
            });
        }
        RunState::Throttled { reason: held } if !matches!(state, RunState::Throttled { .. }) => {
            let after = throttled_since.take().map_or(Duration::ZERO, |t| now - t);
            if repeats.should_log("throttle released", now) {
                tracing::info!(
                    step = label,
                    after_ms = after.as_millis() as u64,
                    "throttle released"
                );
            }
            // Said as what changed: a window that opened (or windows turned off) is not an
            // input that came back below its limit.
            let reason = match crate::schedule::Schedule::holds(held) {
                true => "the low-traffic window no longer holds the backfill; every throttle input is below its limit",
                false => "every throttle input is back below its limit",
            };
            events.emit(Event::ThrottleOff {
                reason: reason.to_string(),
                throttled_for: after,
            });
        }
        _ => {}
    }
    match state {
        RunState::Running => {}
        RunState::Throttled { reason } => {
            throttled_since.get_or_insert(now);
            if repeats.should_log(reason, now) {
                tracing::info!(step = label, %reason, "backfill throttled");
            }
            events.emit(Event::ThrottleOn {
                reason: reason.clone(),
            });
        }
        RunState::Paused { by } => {
            tracing::info!(step = label, by = %by, "backfill paused");
            events.emit(Event::Paused { reason: by.clone() });
        }
    }
}

/// The session's effective search path without any zdm version schema, ready to follow
/// `SET search_path =` (`''` when nothing is left): the path the old version uses, which
/// the sync triggers read as "written by the old version". A role whose default path
/// names a version schema (an application role switched to the new version, reused by
/// zdm) would otherwise make the backfill write as the new version.
async fn old_version_search_path(conn: &mut PgConnection) -> Result<String, sqlx::Error> {
    let path: Option<String> = sqlx::query_scalar(
        "SELECT string_agg(quote_ident(s.name), ', ' ORDER BY s.position) \
         FROM unnest(current_schemas(false)) WITH ORDINALITY AS s(name, position) \
         WHERE s.name NOT IN (SELECT version_schema FROM zdm.migrations)",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(path.unwrap_or_else(|| "''".to_string()))
}

/// A backfilled table as the statistics see it.
#[derive(Debug, Clone)]
struct TableStatistics {
    /// `schema.name`, unquoted (how the monitor names relations).
    name: String,
    /// `pg_class.reltuples`, or `n_live_tup` when the table was never analysed.
    estimate: Option<i64>,
}

/// Reads the table's row estimate; for progress only, so a failure is logged and ignored.
async fn table_statistics(conn: &mut PgConnection, table: &str) -> Option<TableStatistics> {
    let row: Result<Option<(String, f64, Option<i64>)>, sqlx::Error> = sqlx::query_as(
        "SELECT n.nspname::text || '.' || c.relname::text, c.reltuples::float8, s.n_live_tup \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
         WHERE c.oid = to_regclass($1)",
    )
    .bind(table)
    .fetch_optional(&mut *conn)
    .await;
    match row {
        Ok(Some((name, reltuples, live))) => Some(TableStatistics {
            name,
            estimate: if reltuples >= 0.0 {
                Some(reltuples as i64)
            } else {
                live
            },
        }),
        Ok(None) => None,
        Err(error) => {
            tracing::debug!(%error, "could not read the table's row estimate");
            None
        }
    }
}

/// What one try of a batch did.
#[derive(Debug)]
enum Batch {
    /// Rows updated and the range's checkpoint saved (the range done when it `ends_range`);
    /// `short`: fewer keys were left than asked for.
    Committed {
        next: Checkpoint,
        short: bool,
        ends_range: bool,
    },
    /// No key was left in the range: recorded as done.
    RangeDone,
    /// The range's checkpoint is not where this run left it; nothing was changed.
    CheckpointMoved { found: i64 },
    /// The migration is no longer in this backfill's phase (`found`); nothing was changed.
    StatusChanged { found: Status },
}

/// One batch in one transaction: lock the range's checkpoint, find the batch's upper key
/// within the range, update the rows in (cursor, upper key], save the checkpoint.
async fn try_batch(
    conn: &mut PgConnection,
    key: &StepKey<'_>,
    shared: &Shared,
    job: &Job,
    batch_size: u64,
    _attempts: u32,
) -> Result<Batch, sqlx::Error> {
    let sql = &shared.sql;
    let policy = &shared.policy;
    let mut tx = conn.begin().await?;
    // The sync triggers tell the versions apart by search_path: the backfill writes as
    // the old version, whatever the role's default path says.
    let settings = format!(
        "SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}; \
         SET LOCAL search_path = {}",
        policy.lock_timeout.as_millis().max(1),
        job.timeout.as_millis().max(1),
        shared.search_path
    );
    (&mut *tx)
        .execute(sqlx::raw_sql(&format!("{settings}; {}", sql.lock)))
        .await?;
    // This batch's UPDATE assigns what the sync trigger would compute for its rows: the
    // flag lets the trigger skip that work for them only (see plan::sync_trigger).
    sqlx::query(&sql.flag)
        .bind(&sql.table)
        .bind(&sql.flag_value)
        .execute(&mut *tx)
        .await?;
    let Some(claim) = state::claim_key_range(&mut tx, key, job.range).await? else {
        return Ok(Batch::CheckpointMoved { found: -1 });
    };
    if claim.activity != Status::during(key.phase) {
        return Ok(Batch::StatusChanged {
            found: claim.activity,
        });
    }
    if claim.batches != job.checkpoint.batches {
        return Ok(Batch::CheckpointMoved {
            found: claim.batches,
        });
    }
    let limit = i64::try_from(batch_size).unwrap_or(i64::MAX);
    let variant = BatchSql::variant(job.cursor.is_some(), job.upper.is_some());
    let mut probe = sqlx::query_as(&sql.upper_key[variant]);
    if let Some(cursor) = &job.cursor {
        probe = probe.bind(cursor);
    }
    if let Some(upper) = &job.upper {
        probe = probe.bind(upper);
    }
    let (nth, last): (Option<serde_json::Value>, Option<serde_json::Value>) =
        probe.bind(limit).fetch_one(&mut *tx).await?;
    // Fewer than n keys left: this batch ends a bounded range, and says so with its
    // checkpoint (no empty batch after it). The last range, open at the table's end,
    // ends only on an empty batch.
    let (upper, short, ends_range) = match (nth, last) {
        (Some(nth), _) => (nth, false, false),
        (None, Some(last)) => (last, true, job.upper.is_some()),
        (None, None) => {
            state::save_key_range(&mut tx, key, job.range, &job.checkpoint, true).await?;
            tx.commit().await?;
            return Ok(Batch::RangeDone);
        }
    };
    let updated = match &job.cursor {
        None => sqlx::query(&sql.update[0]).bind(&upper),
        Some(cursor) => sqlx::query(&sql.update[1]).bind(cursor).bind(&upper),
    }
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let next = Checkpoint {
        last_key: Some(upper),
        rows_updated: job.checkpoint.rows_updated + i64::try_from(updated).unwrap_or(i64::MAX),
        batches: job.checkpoint.batches + 1,
    };
    state::save_key_range(&mut tx, key, job.range, &next, ends_range).await?;
    tx.commit().await?;
    Ok(Batch::Committed {
        next,
        short,
        ends_range,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_reason_is_logged_at_a_slowing_interval() {
        let mut repeats = Repeats::default();
        let start = Instant::now();
        let reason = |lag: u32| format!("replica lag {lag} s above max 1 s");
        // One check a second for an hour, the lag changing every time.
        let logged = (0..3600u32)
            .filter(|s| repeats.should_log(&reason(*s), start + Duration::from_secs(u64::from(*s))))
            .count();
        // 0, 1, 3, 7, 15, … s, then every 10 min: about a dozen lines, not 3,600.
        assert!((8..=16).contains(&logged), "{logged} lines");
        assert!(
            repeats.should_log("lock waiters 3 above max 0", start),
            "a new reason is logged at once"
        );
    }

    #[test]
    fn batch_sql_quotes_columns_bounds_the_range_and_keeps_the_predicate() {
        let spec = Backfill {
            table: "\"public\".\"orders\"".to_string(),
            key_columns: vec!["tenant".to_string(), "id".to_string()],
            assignments: vec![("status".to_string(), "'new'".to_string())],
            predicate: Some("\"status\" IS NULL".to_string()),
        };
        let sql = BatchSql::new(&spec).expect("valid");
        let from = |p: &str| {
            format!(
                "(SELECT \"tenant\", \"id\" FROM \
                 jsonb_populate_record(NULL::\"public\".\"orders\", {p}::jsonb))"
            )
        };
        assert_eq!(
            sql.update[1],
            format!(
                "UPDATE \"public\".\"orders\" SET \"status\" = ('new') WHERE \
                 (\"tenant\", \"id\") > {} AND (\"tenant\", \"id\") <= {} AND (\"status\" IS NULL)",
                from("$1"),
                from("$2")
            )
        );
        assert!(!sql.update[0].contains("$2"), "{}", sql.update[0]);
        let first = &sql.upper_key[BatchSql::variant(false, false)];
        assert!(!first.contains("WHERE"), "no bound, no condition: {first}");
        assert!(
            first.contains("ORDER BY \"tenant\", \"id\" OFFSET $1 - 1 LIMIT 1"),
            "{first}"
        );
        assert!(first.contains("ORDER BY \"tenant\" DESC, \"id\" DESC LIMIT 1"));
        let bounded = &sql.upper_key[BatchSql::variant(true, true)];
        assert!(
            bounded.contains(&format!(
                "WHERE (\"tenant\", \"id\") > {} AND (\"tenant\", \"id\") <= {} ORDER BY",
                from("$1"),
                from("$2")
            )),
            "{bounded}"
        );
        assert!(bounded.contains("OFFSET $3 - 1"), "{bounded}");
        let capped = &sql.upper_key[BatchSql::variant(false, true)];
        assert!(capped.contains(&format!("<= {}", from("$1"))) && capped.contains("OFFSET $2 - 1"));
        assert_eq!(sql.flag_value, "\"public\".\"orders\":\"status\"");
        let no_key = Backfill {
            key_columns: Vec::new(),
            ..spec
        };
        assert!(BatchSql::new(&no_key).is_err());
    }
}
