//! The backfill loop: keyset batches over a table's key, each one short transaction that
//! updates its rows and saves its checkpoint together, so a crash never loses or
//! double-applies a row and a rerun resumes after the last committed batch.
//!
//! How big each batch is and how long to pause between batches is a [`Pacing`]
//! ([`FixedBatches`] here, `pacing::AdaptiveBatches` aimed at a target batch time).
//! Between batches the loop reads its [`Steering`]: the operator's [`BackfillControl`]
//! (pause, manual throttle, stop, new settings) and the [`Throttle`].

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
/// lock's connection from looking idle to a proxy); a running one checks every batch.
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

/// The SQL of one backfill, built once from the planned [`Backfill`]. The first batch
/// has no lower bound; later ones start after the checkpoint. They are separate
/// statements (not `$1 IS NULL OR ...`) so that every batch is an index range scan.
#[derive(Debug, Clone)]
struct BatchSql {
    /// `$1` = batch size: the first batch's upper key as jsonb, NULL for an empty table.
    first_upper_key: String,
    /// `$1` = last key (jsonb), `$2` = batch size: the next upper key, NULL at the end.
    next_upper_key: String,
    /// `$1` = upper key (inclusive).
    first_update: String,
    /// `$1` = lower key (exclusive), `$2` = upper key (inclusive).
    next_update: String,
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
        // The batch's upper key is the n-th key after the lower bound (OFFSET n - 1: one
        // key turned into jsonb, not n of them sorted for the largest), or, when fewer
        // than n are left, the table's last key (a backward index probe).
        let upper_key = |lower: &str, limit: &str| {
            format!(
                "SELECT COALESCE(\
                   (SELECT to_jsonb(b) FROM (SELECT {key_list} FROM {table}{lower} \
                      ORDER BY {key_list} OFFSET {limit} - 1 LIMIT 1) AS b), \
                   (SELECT to_jsonb(b) FROM (SELECT {key_list} FROM {table}{lower} \
                      ORDER BY {key_desc} LIMIT 1) AS b))"
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
        let update = |lower: &str, upper: &str| {
            format!(
                "UPDATE {table} SET {set} WHERE {lower}({key_list}) <= {}{predicate}",
                key_from(upper)
            )
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
            first_upper_key: upper_key("", "$1"),
            next_upper_key: upper_key(&format!(" WHERE ({key_list}) > {}", key_from("$1")), "$2"),
            first_update: update("", "$1"),
            next_update: update(&format!("({key_list}) > {} AND ", key_from("$1")), "$2"),
            table: table.clone(),
            lock: format!("LOCK TABLE {table} IN ROW EXCLUSIVE MODE"),
            flag,
            flag_value: crate::plan::backfill_flag(
                table,
                spec.assignments.iter().map(|(column, _)| column.as_str()),
            ),
        })
    }
}

/// Runs a backfill step to its end from its last checkpoint, marking the step done in
/// the transaction of its final (empty) batch. Between batches it obeys `steering`: a stop
/// request ends it with [`Error::Stopped`] (the checkpoint holds), a pause or throttle
/// waits, new settings apply to the next batch.
///
/// Every batch first makes sure the run still holds `lock` (None: no run lock, library
/// use): a lost lock is taken again and the checkpoint read again before the batch, or
/// the backfill stops when another session took it. Each batch also checks, in its own
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
    let mut checkpoint = state::open_checkpoint(conn, key).await?;
    let backend: Option<i32> = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *conn)
        .await
        .ok();
    let search_path = old_version_search_path(conn)
        .await
        .map_err(|source| Error::StepFailed {
            step: label.to_string(),
            source,
        })?;
    if checkpoint.batches > 0 {
        tracing::info!(
            step = label,
            batches = checkpoint.batches,
            rows = checkpoint.rows_updated,
            "resuming the backfill after its last committed batch"
        );
    }
    let mut tracker = Tracker::new(
        label,
        &spec.table,
        Instant::now(),
        u64::try_from(checkpoint.rows_updated).unwrap_or(0),
        u64::try_from(checkpoint.batches).unwrap_or(0),
    );
    let table = table_statistics(conn, &spec.table).await;
    tracker.set_estimate(table.as_ref().and_then(|t| t.estimate));
    if let (Some(throttle), Some(table)) = (steering.throttle.as_mut(), &table) {
        throttle.watch_table(&table.name);
    }
    let mut estimated_at = Instant::now();
    let mut reported_at: Option<Instant> = None;
    let mut watcher = steering.control.watcher();
    // The size a statement timeout cut batches down to; it doubles back after each
    // committed batch until the pacing's own size is allowed again.
    let mut shrunk: Option<u64> = None;
    let mut repeats = Repeats::default();
    let mut repeats_stalled = Repeats::default();
    // When the next batch may start (the pause after the last one), and whether the run
    // lock was taken again since the last batch.
    let mut next_batch_at: Option<Instant> = None;
    let mut retaken = false;
    loop {
        retaken |= wait_until_allowed(
            key.migration,
            label,
            &checkpoint,
            steering,
            &mut watcher,
            &mut tracker,
            events,
            lock.as_deref_mut(),
            &mut repeats,
        )
        .await?;
        // A pause woken early (any change from the operator wakes it, so that a pause or
        // a stop is seen at once) is slept to its end: the rows/s ceiling holds.
        if let Some(left) = next_batch_at.and_then(|at| at.checked_duration_since(Instant::now())) {
            if !left.is_zero() {
                watcher.sleep(left).await;
                continue;
            }
        }
        if let Some(lock) = lock.as_deref_mut() {
            retaken |= lock.hold().await? == Held::Retaken;
        }
        if retaken {
            checkpoint = checkpoint_after_retake(conn, key, label, checkpoint).await?;
            retaken = false;
        }
        let settings = watcher.settings();
        pacing.apply(&settings.pacing);
        let timeout = batch_timeout(&settings.pacing, steering.batch_timeout);
        let mut batch_size = match shrunk {
            Some(cap) => pacing.batch_size().min(cap),
            None => pacing.batch_size(),
        };
        let mut timeouts = 0;
        tracker.set_batch_size(batch_size);
        let started = Instant::now();
        let mut retry =
            LockRetry::new(policy, label.to_string(), LockLevel::RowExclusive).with_events(events);
        let outcome = loop {
            let attempts = retry.begin_attempt();
            // Whom the batch waits for is asked while it still waits (after the wait the
            // answer is gone), on the run lock's idle connection; not at all when the
            // batch is quick.
            let done = tokio::sync::Notify::new();
            let batch = async {
                let result = try_batch(
                    conn,
                    key,
                    &sql,
                    policy,
                    timeout,
                    &search_path,
                    &checkpoint,
                    batch_size,
                    attempts,
                )
                .await;
                done.notify_one();
                result
            };
            let probe = async {
                let blockers = match (lock.as_deref_mut(), backend) {
                    (Some(lock), Some(pid)) => tokio::select! {
                        _ = tokio::time::sleep(policy.lock_timeout / 2) => {
                            lock.blocking(pid, &spec.table).await
                        }
                        _ = done.notified() => return Vec::new(),
                    },
                    _ => Vec::new(),
                };
                // A batch still unanswered well past its own statement timeout means a
                // stalled server (a stopped or swapped-out backend cannot even cancel
                // itself): shown as a throttle reason, in `zdm ctl status` and the console,
                // until the answer comes.
                let started = Instant::now();
                let mut stalled = false;
                let mut next_report = timeout + STALL_GRACE;
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
                        crate::format::duration(timeout)
                    );
                    if repeats_stalled.should_log(&reason, Instant::now()) {
                        tracing::warn!(step = label, "{reason}");
                    }
                    events.emit(Event::ThrottleOn { reason });
                    next_report += STALL_REPORT_EVERY;
                }
                if stalled {
                    events.emit(Event::ThrottleOff {
                        reason: "the database answered the batch again".to_string(),
                        throttled_for: started.elapsed(),
                    });
                }
                blockers
            };
            let (result, waited_for) = tokio::join!(batch, probe);
            match result {
                Ok(outcome) => break outcome,
                Err(error)
                    if ddl::is_statement_timeout(&error) && timeouts < MAX_TIMEOUTS_PER_BATCH =>
                {
                    // Too big a batch for the time allowed (a slow trigger, a cold
                    // cache, a role's timeout): smaller, not failed.
                    timeouts += 1;
                    let smaller = (batch_size / 2).max(1);
                    tracing::warn!(
                        step = label,
                        keys = batch_size,
                        next_keys = smaller,
                        timeout_ms = timeout.as_millis() as u64,
                        "backfill batch cancelled by its statement timeout; retrying smaller"
                    );
                    batch_size = smaller;
                    shrunk = Some(smaller);
                    tracker.set_batch_size(batch_size);
                }
                Err(error) if ddl::is_lock_timeout(&error) => {
                    let mut blockers = waited_for;
                    if blockers.is_empty() {
                        blockers = ddl::blockers(
                            conn,
                            std::slice::from_ref(&spec.table),
                            LockLevel::RowExclusive,
                        )
                        .await
                        .unwrap_or_default();
                    }
                    retry.back_off(&error, blockers).await?
                }
                Err(source) => {
                    return Err(Error::StepFailed {
                        step: label.to_string(),
                        source,
                    })
                }
            }
        };
        let next = match outcome {
            Batch::Committed(next) => next,
            Batch::Finished => {
                tracing::info!(
                    step = label,
                    batches = checkpoint.batches,
                    rows = checkpoint.rows_updated,
                    "backfill done"
                );
                tracker.finished();
                let target = watcher.settings().pacing.target;
                events.emit(tracker.report(Instant::now()).event(key.migration, target));
                return Ok(checkpoint);
            }
            Batch::StatusChanged { found } => {
                return Err(Error::StatusChanged {
                    name: key.migration.to_string(),
                    expected: Status::during(key.phase).to_string(),
                    found: found.to_string(),
                });
            }
            Batch::CheckpointMoved { found } => {
                return Err(Error::BadStep {
                    step: label.to_string(),
                    problem: format!(
                        "its checkpoint moved under this run (batch {found} recorded, this run \
                         was at batch {}): another run is backfilling the same step. Stopped \
                         so that no row is updated twice; run the command again to resume",
                        checkpoint.batches
                    ),
                });
            }
        };
        let report = BatchReport {
            rows_updated: u64::try_from(next.rows_updated - checkpoint.rows_updated).unwrap_or(0),
            batch_size,
            took: started.elapsed(),
        };
        tracing::debug!(
            step = label,
            batch = next.batches,
            rows = report.rows_updated,
            keys = report.batch_size,
            took_ms = report.took.as_millis() as u64,
            "backfill batch committed"
        );
        events.emit(Event::BatchDone(BatchDone {
            batch: u64::try_from(next.batches).unwrap_or(0),
            rows: report.rows_updated,
            size: batch_size,
            took: report.took,
            rows_done: u64::try_from(next.rows_updated).unwrap_or(0),
        }));
        checkpoint = next;
        shrunk = shrunk
            .map(|cap| cap.saturating_mul(2))
            .filter(|cap| *cap < pacing.batch_size());
        let now = Instant::now();
        // The last batch may hold fewer keys than asked; the rows it updated are a floor.
        tracker.batch(now, batch_size, report.rows_updated, report.took);
        // The rows/s ceiling holds whatever the pacing (a fixed batch size too), from the
        // first batch: each batch and its pause last at least rows / ceiling.
        let pause = pacing.after_batch(&report).max(ceiling_pause(
            &report,
            watcher.settings().pacing.max_rows_per_second,
        ));
        next_batch_at = Some(now + pause);
        tracker.set_batch_size(pacing.batch_size());
        if now.duration_since(estimated_at) >= ESTIMATE_EVERY {
            estimated_at = now;
            if let Some(statistics) = table_statistics(conn, &spec.table).await {
                tracker.set_estimate(statistics.estimate);
            }
        }
        if reported_at.is_none_or(|at| now.duration_since(at) >= PROGRESS_EVERY) {
            reported_at = Some(now);
            let target = watcher.settings().pacing.target;
            events.emit(tracker.report(now).event(key.migration, target));
        }
        if !pause.is_zero() {
            // Woken early by any change from the operator, who should not wait a long
            // nice-ratio sleep for a pause or a stop to take effect.
            watcher.sleep(pause).await;
        }
    }
}

/// The pause after a batch that keeps `max_rows_per_second`: the batch plus its pause
/// take `rows / ceiling`.
fn ceiling_pause(report: &BatchReport, max_rows_per_second: Option<f64>) -> Duration {
    match max_rows_per_second {
        Some(rate) if rate > 0.0 => {
            let total = (report.rows_updated as f64 / rate).min(86_400.0);
            Duration::from_secs_f64(total).saturating_sub(report.took)
        }
        _ => Duration::ZERO,
    }
}

/// After the run lock was taken again: the checkpoint must be where this run left it
/// (another run may have backfilled while the lock was free), else the backfill stops.
async fn checkpoint_after_retake(
    conn: &mut PgConnection,
    key: &StepKey<'_>,
    label: &str,
    checkpoint: Checkpoint,
) -> Result<Checkpoint, Error> {
    let recorded = state::open_checkpoint(conn, key).await?;
    if recorded != checkpoint {
        return Err(Error::BadStep {
            step: label.to_string(),
            problem: format!(
                "its checkpoint moved while this run's lock was lost (batch {} recorded, \
                 this run was at batch {}): another run backfilled meanwhile. Stopped so \
                 that no row is updated twice; run the command again to resume",
                recorded.batches, checkpoint.batches
            ),
        });
    }
    tracing::info!(
        step = label,
        batches = checkpoint.batches,
        "the run lock was taken again; the checkpoint is where this run left it"
    );
    Ok(checkpoint)
}

/// Waits between batches while the backfill is paused or throttled, reporting each change
/// of state and, every second, the progress; returns when the next batch may run (true
/// when the run lock had to be taken again meanwhile), or [`Error::Stopped`] when a stop
/// was asked for. A long wait checks the run lock now and then (see
/// [`LOCK_CHECK_WHILE_WAITING`]).
#[allow(clippy::too_many_arguments)]
async fn wait_until_allowed(
    migration: &str,
    label: &str,
    checkpoint: &Checkpoint,
    steering: &mut Steering,
    watcher: &mut Watcher,
    tracker: &mut Tracker,
    events: &Events,
    mut lock: Option<&mut RunLock>,
    repeats: &mut Repeats,
) -> Result<bool, Error> {
    let mut reported_at: Option<Instant> = None;
    let mut throttled_since: Option<Instant> = None;
    let mut lock_checked_at = Instant::now();
    let mut retaken = false;
    loop {
        if let Some(why) = watcher.stop_requested() {
            events.emit(Event::BackfillStopped {
                step: label.to_string(),
                why: why.clone(),
                rows_done: u64::try_from(checkpoint.rows_updated).unwrap_or(0),
            });
            return Err(Error::Stopped {
                step: label.to_string(),
                why,
                rows: crate::format::thousands(u64::try_from(checkpoint.rows_updated).unwrap_or(0)),
            });
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
                &mut throttled_since,
                now,
                events,
                repeats,
            );
        }
        if state == RunState::Running {
            return Ok(retaken);
        }
        if now.duration_since(lock_checked_at) >= LOCK_CHECK_WHILE_WAITING {
            lock_checked_at = now;
            if let Some(lock) = lock.as_deref_mut() {
                if lock.hold().await? == Held::Retaken {
                    retaken = true;
                }
            }
        }
        if reported_at.is_none_or(|at| now.duration_since(at) >= PROGRESS_EVERY) {
            reported_at = Some(now);
            let target = settings.pacing.target;
            events.emit(tracker.report(now).event(migration, target));
        }
        watcher.sleep(WAIT_STEP).await;
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
        RunState::Throttled { .. } if !matches!(state, RunState::Throttled { .. }) => {
            let after = throttled_since.take().map_or(Duration::ZERO, |t| now - t);
            if repeats.should_log("throttle released", now) {
                tracing::info!(
                    step = label,
                    after_ms = after.as_millis() as u64,
                    "throttle released"
                );
            }
            events.emit(Event::ThrottleOff {
                reason: "every throttle input is back below its limit".to_string(),
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
    /// Rows updated and checkpoint saved.
    Committed(Checkpoint),
    /// No rows were left: the step is recorded as done.
    Finished,
    /// The checkpoint is not where this run left it; nothing was changed.
    CheckpointMoved { found: i64 },
    /// The migration is no longer in this backfill's phase (`found`); nothing was changed.
    StatusChanged { found: Status },
}

/// One batch in one transaction: lock the checkpoint, find the batch's upper key, update
/// the rows in (last key, upper key], save the checkpoint.
#[allow(clippy::too_many_arguments)]
async fn try_batch(
    conn: &mut PgConnection,
    key: &StepKey<'_>,
    sql: &BatchSql,
    policy: &LockPolicy,
    statement_timeout: Duration,
    search_path: &str,
    checkpoint: &Checkpoint,
    batch_size: u64,
    attempts: u32,
) -> Result<Batch, sqlx::Error> {
    let mut tx = conn.begin().await?;
    // The sync triggers tell the versions apart by search_path: the backfill writes as
    // the old version, whatever the role's default path says.
    let settings = format!(
        "SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}; \
         SET LOCAL search_path = {search_path}",
        policy.lock_timeout.as_millis().max(1),
        statement_timeout.as_millis().max(1)
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
    let Some(claim) = state::claim_checkpoint(&mut tx, key).await? else {
        return Ok(Batch::CheckpointMoved { found: -1 });
    };
    if claim.activity != Status::during(key.phase) {
        return Ok(Batch::StatusChanged {
            found: claim.activity,
        });
    }
    if claim.batches != checkpoint.batches {
        return Ok(Batch::CheckpointMoved {
            found: claim.batches,
        });
    }
    let limit = i64::try_from(batch_size).unwrap_or(i64::MAX);
    let upper: Option<serde_json::Value> = match &checkpoint.last_key {
        None => {
            sqlx::query_scalar(&sql.first_upper_key)
                .bind(limit)
                .fetch_one(&mut *tx)
                .await?
        }
        Some(last) => {
            sqlx::query_scalar(&sql.next_upper_key)
                .bind(last)
                .bind(limit)
                .fetch_one(&mut *tx)
                .await?
        }
    };
    let Some(upper) = upper else {
        state::mark_step_done(&mut tx, key, attempts).await?;
        tx.commit().await?;
        return Ok(Batch::Finished);
    };
    let updated = match &checkpoint.last_key {
        None => sqlx::query(&sql.first_update).bind(&upper),
        Some(last) => sqlx::query(&sql.next_update).bind(last).bind(&upper),
    }
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let next = Checkpoint {
        last_key: Some(upper),
        rows_updated: checkpoint.rows_updated + i64::try_from(updated).unwrap_or(i64::MAX),
        batches: checkpoint.batches + 1,
    };
    state::save_checkpoint(&mut tx, key, &next).await?;
    tx.commit().await?;
    Ok(Batch::Committed(next))
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
    fn batch_sql_quotes_columns_and_keeps_the_predicate() {
        let spec = Backfill {
            table: "\"public\".\"orders\"".to_string(),
            key_columns: vec!["tenant".to_string(), "id".to_string()],
            assignments: vec![("status".to_string(), "'new'".to_string())],
            predicate: Some("\"status\" IS NULL".to_string()),
        };
        let sql = BatchSql::new(&spec).expect("valid");
        assert!(
            sql.next_update.starts_with(
                "UPDATE \"public\".\"orders\" SET \"status\" = ('new') \
                 WHERE (\"tenant\", \"id\") > (SELECT \"tenant\", \"id\" FROM \
                 jsonb_populate_record(NULL::\"public\".\"orders\", $1::jsonb))"
            ),
            "{}",
            sql.next_update
        );
        assert!(
            sql.next_update.ends_with(" AND (\"status\" IS NULL)"),
            "{}",
            sql.next_update
        );
        assert!(!sql.first_update.contains("$2"), "{}", sql.first_update);
        assert!(
            sql.first_upper_key
                .contains("ORDER BY \"tenant\", \"id\" OFFSET $1 - 1 LIMIT 1"),
            "{}",
            sql.first_upper_key
        );
        assert!(sql
            .first_upper_key
            .contains("ORDER BY \"tenant\" DESC, \"id\" DESC LIMIT 1"));
        assert_eq!(sql.flag_value, "\"public\".\"orders\":\"status\"");
        let no_key = Backfill {
            key_columns: Vec::new(),
            ..spec
        };
        assert!(BatchSql::new(&no_key).is_err());
    }
}
