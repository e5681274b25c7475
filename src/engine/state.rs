//! zdm's state in the target database, schema `zdm`: the migrations run (checksum, plan,
//! status, who, when), the steps done, backfill checkpoints and a history of commands.
//! Created on first use; everything here is written by the engine and read by status.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, Row};

use super::identity::Identity;
use super::{phase_name, Context, Error};
use crate::plan::{Phase, Plan};
pub use crate::protocol::Status;

/// Where zdm keeps its state in every target database.
pub const SCHEMA: &str = "zdm";

/// Version of the tables below, for future upgrades of the state format. Version 2 added
/// `zdm.backfill_ranges` (parallel backfill workers); the upgrade from 1 is creating it,
/// which [`ensure`] does on every start.
const STATE_VERSION: i32 = 2;

const CREATE: &str = "
CREATE SCHEMA IF NOT EXISTS zdm;
CREATE TABLE IF NOT EXISTS zdm.meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS zdm.migrations (
    name text PRIMARY KEY,
    checksum text NOT NULL,
    version_schema text NOT NULL,
    plan jsonb NOT NULL,
    status text NOT NULL,
    failed_during text,
    error text,
    started_at timestamptz NOT NULL DEFAULT now(),
    ready_at timestamptz,
    contract_started_at timestamptz,
    finished_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    started_by_os_user text NOT NULL,
    started_by_db_user text NOT NULL DEFAULT current_user,
    started_from_host text NOT NULL
);
CREATE TABLE IF NOT EXISTS zdm.steps (
    migration text NOT NULL REFERENCES zdm.migrations (name) ON DELETE CASCADE,
    phase text NOT NULL,
    position integer NOT NULL,
    description text NOT NULL,
    attempts integer NOT NULL,
    done_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration, phase, position)
);
CREATE TABLE IF NOT EXISTS zdm.backfill_progress (
    migration text NOT NULL REFERENCES zdm.migrations (name) ON DELETE CASCADE,
    phase text NOT NULL,
    position integer NOT NULL,
    last_key jsonb,
    rows_updated bigint NOT NULL DEFAULT 0,
    batches bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration, phase, position)
);
CREATE TABLE IF NOT EXISTS zdm.backfill_ranges (
    migration text NOT NULL,
    phase text NOT NULL,
    position integer NOT NULL,
    range integer NOT NULL,
    lower_key jsonb,
    upper_key jsonb,
    last_key jsonb,
    rows_updated bigint NOT NULL DEFAULT 0,
    batches bigint NOT NULL DEFAULT 0,
    done boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration, phase, position, range),
    FOREIGN KEY (migration, phase, position)
        REFERENCES zdm.backfill_progress (migration, phase, position) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS zdm.runs (
    id bigserial PRIMARY KEY,
    migration text NOT NULL,
    command text NOT NULL,
    confirmation text,
    os_user text NOT NULL,
    db_user text NOT NULL DEFAULT current_user,
    client_host text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome text
);
";

/// Progress of one phase: steps done out of planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhaseProgress {
    pub phase: Phase,
    pub done: u32,
    pub total: u32,
}

/// One migration as recorded in schema `zdm`.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationRecord {
    pub name: String,
    pub checksum: String,
    pub version_schema: String,
    pub status: Status,
    /// For a failed migration: what it was doing when it failed.
    pub failed_during: Option<Status>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ready_at: Option<DateTime<Utc>>,
    pub contract_started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub started_by_os_user: String,
    pub started_by_db_user: String,
    pub started_from_host: String,
    pub phases: Vec<PhaseProgress>,
    /// Set by [`list_live`] when the record says a phase is in progress but no session
    /// holds the run lock: the run stopped (it resumes with the same command), and why,
    /// as far as zdm could record it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// The plan the migration was started with: resume, complete and rollback run it.
    #[serde(skip)]
    pub plan: Plan,
}

impl MigrationRecord {
    /// What the migration is doing, looking through `failed` to what failed.
    pub fn activity(&self) -> Status {
        match (self.status, self.failed_during) {
            (Status::Failed, Some(during)) => during,
            (status, _) => status,
        }
    }
}

/// Identifies one step of one migration in the state tables.
#[derive(Debug, Clone, Copy)]
pub struct StepKey<'a> {
    pub migration: &'a str,
    pub phase: Phase,
    /// 0-based position among the plan's steps of this phase.
    pub position: i32,
    pub description: &'a str,
}

/// Creates schema `zdm` and its tables when missing. Call while holding the run lock
/// (two sessions creating the same schema at once would collide).
pub async fn ensure(conn: &mut PgConnection) -> Result<(), Error> {
    sqlx::raw_sql(CREATE)
        .execute(&mut *conn)
        .await
        .context("creating zdm's state schema")?;
    sqlx::query(
        "INSERT INTO zdm.meta (key, value) VALUES ('state_version', $1) \
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value \
         WHERE zdm.meta.value ~ '^[0-9]+$' AND zdm.meta.value::int < EXCLUDED.value::int",
    )
    .bind(STATE_VERSION.to_string())
    .execute(conn)
    .await
    .context("recording zdm's state version")?;
    Ok(())
}

/// Whether zdm has ever run against this database.
pub async fn exists(conn: &mut PgConnection) -> Result<bool, Error> {
    sqlx::query_scalar("SELECT to_regclass('zdm.migrations') IS NOT NULL")
        .fetch_one(conn)
        .await
        .context("looking for zdm's state schema")
}

const SELECT_MIGRATIONS: &str = "SELECT name, checksum, version_schema, plan::text AS plan, \
    status, failed_during, error, started_at, ready_at, contract_started_at, finished_at, \
    updated_at, started_by_os_user, started_by_db_user, started_from_host FROM zdm.migrations";

/// Every recorded migration, in name order (the order files run in).
pub async fn list(conn: &mut PgConnection) -> Result<Vec<MigrationRecord>, Error> {
    if !exists(conn).await? {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(&format!("{SELECT_MIGRATIONS} ORDER BY name"))
        .fetch_all(&mut *conn)
        .await
        .context("reading zdm.migrations")?;
    let mut records = Vec::with_capacity(rows.len());
    for row in rows {
        records.push(record_from_row(conn, &row).await?);
    }
    Ok(records)
}

/// One recorded migration, if it ever started.
pub async fn get(conn: &mut PgConnection, name: &str) -> Result<Option<MigrationRecord>, Error> {
    if !exists(conn).await? {
        return Ok(None);
    }
    let row = sqlx::query(&format!("{SELECT_MIGRATIONS} WHERE name = $1"))
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .context("reading zdm.migrations")?;
    match row {
        Some(row) => Ok(Some(record_from_row(conn, &row).await?)),
        None => Ok(None),
    }
}

async fn record_from_row(
    conn: &mut PgConnection,
    row: &sqlx::postgres::PgRow,
) -> Result<MigrationRecord, Error> {
    let read = |source| Error::Database {
        action: "reading zdm.migrations".to_string(),
        source,
    };
    let name: String = row.try_get("name").map_err(read)?;
    let plan_text: String = row.try_get("plan").map_err(read)?;
    let plan: Plan =
        serde_json::from_str(&plan_text).map_err(|source| Error::StoredPlanUnreadable {
            name: name.clone(),
            source,
        })?;
    let status_text: String = row.try_get("status").map_err(read)?;
    let failed_text: Option<String> = row.try_get("failed_during").map_err(read)?;
    let done = steps_done_per_phase(conn, &name).await?;
    let phases = [
        Phase::Expand,
        Phase::Backfill,
        Phase::Contract,
        Phase::Rollback,
    ]
    .into_iter()
    .map(|phase| PhaseProgress {
        phase,
        done: done.get(phase_name(phase)).copied().unwrap_or(0),
        total: u32::try_from(plan.phase(phase).count()).unwrap_or(u32::MAX),
    })
    .collect();
    Ok(MigrationRecord {
        checksum: row.try_get("checksum").map_err(read)?,
        version_schema: row.try_get("version_schema").map_err(read)?,
        // An unknown status can only come from a newer zdm; show it as failed rather
        // than guess what it may do.
        status: Status::from_key(&status_text).unwrap_or(Status::Failed),
        failed_during: failed_text.as_deref().and_then(Status::from_key),
        error: row.try_get("error").map_err(read)?,
        started_at: row.try_get("started_at").map_err(read)?,
        ready_at: row.try_get("ready_at").map_err(read)?,
        contract_started_at: row.try_get("contract_started_at").map_err(read)?,
        finished_at: row.try_get("finished_at").map_err(read)?,
        updated_at: row.try_get("updated_at").map_err(read)?,
        started_by_os_user: row.try_get("started_by_os_user").map_err(read)?,
        started_by_db_user: row.try_get("started_by_db_user").map_err(read)?,
        started_from_host: row.try_get("started_from_host").map_err(read)?,
        phases,
        stopped: None,
        plan,
        name,
    })
}

/// Every recorded migration as it truly stands: the one status read behind `zdm status`,
/// the console and a run's own status. A migration recorded in progress (expanding,
/// backfilling, contracting, rolling back) while no session holds the run lock is not
/// running, whatever the record says: its run was killed or lost its connection before
/// it could record that. It is marked [`MigrationRecord::stopped`] with the last thing
/// zdm recorded about it.
pub async fn list_live(conn: &mut PgConnection) -> Result<Vec<MigrationRecord>, Error> {
    let mut records = list(conn).await?;
    if !records.iter().any(|r| r.status.running_phase().is_some()) {
        return Ok(records);
    }
    if super::lock::holder(conn).await?.backend_pid.is_some() {
        return Ok(records);
    }
    for record in records
        .iter_mut()
        .filter(|r| r.status.running_phase().is_some())
    {
        record.stopped = Some(why_stopped(conn, record).await?);
    }
    Ok(records)
}

/// The last row of `zdm.runs` for a migration: command, pid, host, begun, outcome.
type LastRun = (String, i32, String, DateTime<Utc>, Option<String>);

/// What zdm last recorded about the run of a migration that is not running any more.
async fn why_stopped(conn: &mut PgConnection, record: &MigrationRecord) -> Result<String, Error> {
    let last: Option<LastRun> = sqlx::query_as(
        "SELECT command, pid, client_host, started_at, outcome FROM zdm.runs \
         WHERE migration = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(&record.name)
    .fetch_optional(conn)
    .await
    .context("reading zdm.runs")?;
    let mut why = match last {
        Some((command, pid, host, at, outcome)) => {
            let run = format!(
                "its last run (`zdm {command}`, zdm pid {pid} on host {host}, begun {})",
                at.format("%Y-%m-%d %H:%M:%S UTC")
            );
            match outcome {
                Some(outcome) => format!("{run} ended: {outcome}"),
                None => format!(
                    "{run} ended without recording why (killed, or it lost its connection \
                     to the database)"
                ),
            }
        }
        None => "no run of it is recorded".to_string(),
    };
    if let Some(error) = &record.error {
        why.push_str(&format!("; last error: {error}"));
    }
    Ok(why)
}

async fn steps_done_per_phase(
    conn: &mut PgConnection,
    name: &str,
) -> Result<BTreeMap<String, u32>, Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT phase, count(*) FROM zdm.steps WHERE migration = $1 GROUP BY phase")
            .bind(name)
            .fetch_all(conn)
            .await
            .context("counting the steps done")?;
    Ok(rows
        .into_iter()
        .map(|(phase, count)| (phase, u32::try_from(count).unwrap_or(u32::MAX)))
        .collect())
}

fn plan_json(plan: &Plan) -> Result<String, Error> {
    serde_json::to_string(plan).map_err(|source| Error::PlanNotStorable {
        name: plan.migration.clone(),
        source,
    })
}

/// Records a migration's first start (status expanding), with its plan and who started it.
pub async fn insert(
    conn: &mut PgConnection,
    plan: &Plan,
    checksum: &str,
    who: &Identity,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO zdm.migrations \
           (name, checksum, version_schema, plan, status, started_by_os_user, started_from_host) \
         VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)",
    )
    .bind(&plan.migration)
    .bind(checksum)
    .bind(&plan.version_schema)
    .bind(plan_json(plan)?)
    .bind(Status::Expanding.key())
    .bind(&who.os_user)
    .bind(&who.host)
    .execute(conn)
    .await
    .context("recording the migration's start")?;
    Ok(())
}

/// Starts a rolled-back migration over: new checksum and plan, no steps done.
pub async fn restart(
    conn: &mut PgConnection,
    plan: &Plan,
    checksum: &str,
    who: &Identity,
) -> Result<(), Error> {
    let action = "recording the migration's new start";
    let mut tx = sqlx::Connection::begin(&mut *conn).await.context(action)?;
    // Only a start over a record still rolled back (compare-and-set, see [`set_status`]).
    for table in ["zdm.steps", "zdm.backfill_ranges", "zdm.backfill_progress"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE migration = $1"))
            .bind(&plan.migration)
            .execute(&mut *tx)
            .await
            .context(action)?;
    }
    let updated = sqlx::query(
        "UPDATE zdm.migrations SET checksum = $2, version_schema = $3, plan = $4::jsonb, \
           status = $5, failed_during = NULL, error = NULL, started_at = now(), \
           ready_at = NULL, contract_started_at = NULL, finished_at = NULL, updated_at = now(), \
           started_by_os_user = $6, started_by_db_user = current_user, started_from_host = $7 \
         WHERE name = $1 AND status = 'rolled_back'",
    )
    .bind(&plan.migration)
    .bind(checksum)
    .bind(&plan.version_schema)
    .bind(plan_json(plan)?)
    .bind(Status::Expanding.key())
    .bind(&who.os_user)
    .bind(&who.host)
    .execute(&mut *tx)
    .await
    .context(action)?
    .rows_affected();
    if updated == 0 {
        drop(tx);
        return Err(changed_under(conn, &plan.migration, Status::RolledBack).await);
    }
    tx.commit().await.context(action)
}

/// Moves a migration from `from` to `status`, clearing any earlier error and stamping
/// the time the status stands for (ready, contract started, finished). Compare-and-set:
/// when the record no longer says `from` (another command changed it while this run had
/// lost its lock), nothing is written and the answer is [`Error::StatusChanged`].
pub async fn set_status(
    conn: &mut PgConnection,
    name: &str,
    from: Status,
    status: Status,
) -> Result<(), Error> {
    let updated = sqlx::query(
        "UPDATE zdm.migrations SET status = $2, failed_during = NULL, error = NULL, \
           updated_at = now(), \
           ready_at = CASE WHEN $2 = 'ready_to_contract' THEN coalesce(ready_at, now()) \
                           ELSE ready_at END, \
           contract_started_at = CASE WHEN $2 = 'contracting' \
                           THEN coalesce(contract_started_at, now()) \
                           ELSE contract_started_at END, \
           finished_at = CASE WHEN $2 IN ('complete', 'rolled_back') THEN now() \
                           ELSE finished_at END \
         WHERE name = $1 AND status = $3",
    )
    .bind(name)
    .bind(status.key())
    .bind(from.key())
    .execute(&mut *conn)
    .await
    .context("recording the migration's status")?
    .rows_affected();
    if updated == 0 {
        return Err(changed_under(conn, name, from).await);
    }
    Ok(())
}

/// Records that a migration stopped with an error while doing `during`; compare-and-set
/// on `from` like [`set_status`].
pub async fn set_failed(
    conn: &mut PgConnection,
    name: &str,
    from: Status,
    during: Status,
    error: &str,
) -> Result<(), Error> {
    let updated = sqlx::query(
        "UPDATE zdm.migrations SET status = 'failed', failed_during = $2, error = $3, \
           updated_at = now() WHERE name = $1 AND status = $4",
    )
    .bind(name)
    .bind(during.key())
    .bind(error)
    .bind(from.key())
    .execute(&mut *conn)
    .await
    .context("recording the migration's failure")?
    .rows_affected();
    if updated == 0 {
        return Err(changed_under(conn, name, from).await);
    }
    Ok(())
}

/// The error for a compare-and-set that found the record changed: says what it found.
async fn changed_under(conn: &mut PgConnection, name: &str, expected: Status) -> Error {
    let found: Option<String> =
        sqlx::query_scalar("SELECT status FROM zdm.migrations WHERE name = $1")
            .bind(name)
            .fetch_optional(conn)
            .await
            .ok()
            .flatten();
    Error::StatusChanged {
        name: name.to_string(),
        expected: expected.to_string(),
        found: match found.as_deref().and_then(Status::from_key) {
            Some(status) => status.to_string(),
            None => found.unwrap_or_else(|| "not recorded at all".to_string()),
        },
    }
}

/// Records a step as done; in the step's own transaction where it has one.
pub async fn mark_step_done(
    conn: &mut PgConnection,
    key: &StepKey<'_>,
    attempts: u32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO zdm.steps (migration, phase, position, description, attempts) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (migration, phase, position) \
         DO UPDATE SET attempts = EXCLUDED.attempts, done_at = now()",
    )
    .bind(key.migration)
    .bind(phase_name(key.phase))
    .bind(key.position)
    .bind(key.description)
    .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE zdm.migrations SET updated_at = now() WHERE name = $1")
        .bind(key.migration)
        .execute(conn)
        .await?;
    Ok(())
}

/// Positions of the steps of `phase` already done.
pub async fn done_positions(
    conn: &mut PgConnection,
    name: &str,
    phase: Phase,
) -> Result<HashSet<i32>, Error> {
    let positions: Vec<i32> =
        sqlx::query_scalar("SELECT position FROM zdm.steps WHERE migration = $1 AND phase = $2")
            .bind(name)
            .bind(phase_name(phase))
            .fetch_all(conn)
            .await
            .context("reading the steps done")?;
    Ok(positions.into_iter().collect())
}

/// Where a backfill stands: the last key of the last committed batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    /// The key row as JSON (`{"id": 1000}`), `None` before the first batch.
    pub last_key: Option<serde_json::Value>,
    pub rows_updated: i64,
    pub batches: i64,
}

/// The checkpoint of a backfill step, creating an empty one when it never ran (so that
/// every batch can lock the row, see [`claim_checkpoint`]).
pub async fn open_checkpoint(
    conn: &mut PgConnection,
    key: &StepKey<'_>,
) -> Result<Checkpoint, Error> {
    sqlx::query(
        "INSERT INTO zdm.backfill_progress (migration, phase, position) VALUES ($1, $2, $3) \
         ON CONFLICT (migration, phase, position) DO NOTHING",
    )
    .bind(key.migration)
    .bind(phase_name(key.phase))
    .bind(key.position)
    .execute(&mut *conn)
    .await
    .context("creating the backfill checkpoint")?;
    let (last_key, rows_updated, batches): (Option<serde_json::Value>, i64, i64) = sqlx::query_as(
        "SELECT last_key, rows_updated, batches FROM zdm.backfill_progress \
             WHERE migration = $1 AND phase = $2 AND position = $3",
    )
    .bind(key.migration)
    .bind(phase_name(key.phase))
    .bind(key.position)
    .fetch_one(conn)
    .await
    .context("reading the backfill checkpoint")?;
    Ok(Checkpoint {
        last_key,
        rows_updated,
        batches,
    })
}

/// What a batch finds when it locks its checkpoint: see [`claim_checkpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The batch count recorded.
    pub batches: i64,
    /// The migration's status, looking through `failed` to what failed.
    pub activity: Status,
}

/// Locks a backfill's checkpoint row for the batch's transaction (and the migration's row
/// against a change of status) and returns its batch count and the migration's activity:
/// a batch proceeds only if that is still the count it started from and the migration is
/// not being (or was not) rolled back or contracted, so two runs can never apply the same
/// batch and a batch never runs after a rollback (even if the run lock was somehow lost).
pub async fn claim_checkpoint(
    conn: &mut PgConnection,
    key: &StepKey<'_>,
) -> Result<Option<Claim>, sqlx::Error> {
    let row: Option<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT p.batches, m.status, m.failed_during \
         FROM zdm.backfill_progress p JOIN zdm.migrations m ON m.name = p.migration \
         WHERE p.migration = $1 AND p.phase = $2 AND p.position = $3 \
         FOR UPDATE OF p FOR SHARE OF m",
    )
    .bind(key.migration)
    .bind(phase_name(key.phase))
    .bind(key.position)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(batches, status, failed_during)| Claim {
        batches,
        activity: activity_of(&status, failed_during.as_deref()),
    }))
}

/// What a migration recorded as `status` (and `failed_during`) is doing, looking through
/// `failed` to what failed.
fn activity_of(status: &str, failed_during: Option<&str>) -> Status {
    let status = Status::from_key(status).unwrap_or(Status::Failed);
    match (status, failed_during.and_then(Status::from_key)) {
        (Status::Failed, Some(during)) => during,
        (status, _) => status,
    }
}

/// Saves a backfill checkpoint; call inside the batch's transaction.
pub async fn save_checkpoint(
    conn: &mut PgConnection,
    key: &StepKey<'_>,
    checkpoint: &Checkpoint,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO zdm.backfill_progress \
           (migration, phase, position, last_key, rows_updated, batches) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (migration, phase, position) DO UPDATE SET \
           last_key = EXCLUDED.last_key, rows_updated = EXCLUDED.rows_updated, \
           batches = EXCLUDED.batches, updated_at = now()",
    )
    .bind(key.migration)
    .bind(phase_name(key.phase))
    .bind(key.position)
    .bind(&checkpoint.last_key)
    .bind(checkpoint.rows_updated)
    .bind(checkpoint.batches)
    .execute(conn)
    .await?;
    Ok(())
}

/// One key range of a parallel backfill: keys in `(lower, upper]` (None: from the table's
/// first key, to its last), walked by one worker at a time from its own checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRange {
    pub range: i32,
    pub lower: Option<serde_json::Value>,
    pub upper: Option<serde_json::Value>,
    /// `last_key` None: nothing of this range done yet (the walk starts after `lower`).
    pub checkpoint: Checkpoint,
    pub done: bool,
}

/// The key ranges of a backfill step, in key order; empty before they are planned.
pub async fn key_ranges(
    conn: &mut PgConnection,
    key: &StepKey<'_>,
) -> Result<Vec<KeyRange>, Error> {
    type Row = (
        i32,
        Option<serde_json::Value>,
        Option<serde_json::Value>,
        Option<serde_json::Value>,
        i64,
        i64,
        bool,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT range, lower_key, upper_key, last_key, rows_updated, batches, done \
         FROM zdm.backfill_ranges WHERE migration = $1 AND phase = $2 AND position = $3 \
         ORDER BY range",
    )
    .bind(key.migration)
    .bind(phase_name(key.phase))
    .bind(key.position)
    .fetch_all(conn)
    .await
    .context("reading the backfill's key ranges")?;
    Ok(rows
        .into_iter()
        .map(
            |(range, lower, upper, last_key, rows_updated, batches, done)| KeyRange {
                range,
                lower,
                upper,
                checkpoint: Checkpoint {
                    last_key,
                    rows_updated,
                    batches,
                },
                done,
            },
        )
        .collect())
}

/// Records the key ranges of a backfill step, once: `bounds` are the ranges' `(lower,
/// upper]` in key order; the first range starts with `first` (a checkpoint an earlier,
/// single-worker zdm left, carried over). Ranges already recorded (another run planned
/// them first) are kept as they are.
pub async fn plan_key_ranges(
    conn: &mut PgConnection,
    key: &StepKey<'_>,
    bounds: &[(Option<serde_json::Value>, Option<serde_json::Value>)],
    first: &Checkpoint,
) -> Result<(), Error> {
    let action = "recording the backfill's key ranges";
    let mut tx = sqlx::Connection::begin(&mut *conn).await.context(action)?;
    let planned: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM zdm.backfill_ranges \
         WHERE migration = $1 AND phase = $2 AND position = $3)",
    )
    .bind(key.migration)
    .bind(phase_name(key.phase))
    .bind(key.position)
    .fetch_one(&mut *tx)
    .await
    .context(action)?;
    if planned {
        return Ok(());
    }
    for (i, (lower, upper)) in bounds.iter().enumerate() {
        let carried = if i == 0 {
            first.clone()
        } else {
            Checkpoint::default()
        };
        sqlx::query(
            "INSERT INTO zdm.backfill_ranges \
               (migration, phase, position, range, lower_key, upper_key, last_key, \
                rows_updated, batches) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(key.migration)
        .bind(phase_name(key.phase))
        .bind(key.position)
        .bind(i32::try_from(i).unwrap_or(i32::MAX))
        .bind(lower)
        .bind(upper)
        .bind(&carried.last_key)
        .bind(carried.rows_updated)
        .bind(carried.batches)
        .execute(&mut *tx)
        .await
        .context(action)?;
    }
    tx.commit().await.context(action)
}

/// [`claim_checkpoint`] for one key range: locks the range's row (only this range: the
/// workers of other ranges never wait for it) and the migration's row against a change
/// of status; returns the range's batch count and the migration's activity.
pub async fn claim_key_range(
    conn: &mut PgConnection,
    key: &StepKey<'_>,
    range: i32,
) -> Result<Option<Claim>, sqlx::Error> {
    let row: Option<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT r.batches, m.status, m.failed_during \
         FROM zdm.backfill_ranges r JOIN zdm.migrations m ON m.name = r.migration \
         WHERE r.migration = $1 AND r.phase = $2 AND r.position = $3 AND r.range = $4 \
         FOR UPDATE OF r FOR SHARE OF m",
    )
    .bind(key.migration)
    .bind(phase_name(key.phase))
    .bind(key.position)
    .bind(range)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(batches, status, failed_during)| Claim {
        batches,
        activity: activity_of(&status, failed_during.as_deref()),
    }))
}

/// Saves one key range's checkpoint (and whether it is done); call inside its batch's
/// transaction, after [`claim_key_range`].
pub async fn save_key_range(
    conn: &mut PgConnection,
    key: &StepKey<'_>,
    range: i32,
    checkpoint: &Checkpoint,
    done: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE zdm.backfill_ranges SET last_key = $5, rows_updated = $6, batches = $7, \
           done = $8, updated_at = now() \
         WHERE migration = $1 AND phase = $2 AND position = $3 AND range = $4",
    )
    .bind(key.migration)
    .bind(phase_name(key.phase))
    .bind(key.position)
    .bind(range)
    .bind(&checkpoint.last_key)
    .bind(checkpoint.rows_updated)
    .bind(checkpoint.batches)
    .bind(done)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes the sum of a step's ranges into its `zdm.backfill_progress` row (what `zdm
/// status` reads). Not a checkpoint: the ranges are; this only keeps the total in view.
pub async fn save_backfill_total(
    conn: &mut PgConnection,
    key: &StepKey<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE zdm.backfill_progress p SET rows_updated = r.rows, batches = r.batches, \
           updated_at = now() \
         FROM (SELECT coalesce(sum(rows_updated), 0)::bigint AS rows, \
                      coalesce(sum(batches), 0)::bigint AS batches \
                 FROM zdm.backfill_ranges \
                WHERE migration = $1 AND phase = $2 AND position = $3) r \
         WHERE p.migration = $1 AND p.phase = $2 AND p.position = $3",
    )
    .bind(key.migration)
    .bind(phase_name(key.phase))
    .bind(key.position)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a command being run (who, from where, with which confirmation); returns its id.
pub async fn begin_run(
    conn: &mut PgConnection,
    migration: &str,
    command: &str,
    confirmation: Option<&str>,
    who: &Identity,
) -> Result<i64, Error> {
    sqlx::query_scalar(
        "INSERT INTO zdm.runs (migration, command, confirmation, os_user, client_host, pid) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(migration)
    .bind(command)
    .bind(confirmation)
    .bind(&who.os_user)
    .bind(&who.host)
    .bind(i32::try_from(who.pid).unwrap_or(i32::MAX))
    .fetch_one(conn)
    .await
    .context("recording the command in zdm.runs")
}

/// Records how a command ended.
pub async fn finish_run(conn: &mut PgConnection, id: i64, outcome: &str) -> Result<(), Error> {
    sqlx::query("UPDATE zdm.runs SET finished_at = now(), outcome = $2 WHERE id = $1")
        .bind(id)
        .bind(outcome)
        .execute(conn)
        .await
        .context("recording the command's outcome in zdm.runs")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_phase_runs_under_its_own_status_and_back() {
        for phase in [
            Phase::Expand,
            Phase::Backfill,
            Phase::Contract,
            Phase::Rollback,
        ] {
            assert_eq!(Status::during(phase).running_phase(), Some(phase));
        }
        assert_eq!(Status::ReadyToContract.running_phase(), None);
        assert_eq!(Status::during(Phase::Rollback).key(), "rolling_back");
    }

    #[test]
    fn statuses_round_trip_and_read_as_words() {
        for status in Status::ALL {
            assert_eq!(Status::from_key(status.key()), Some(status));
        }
        assert_eq!(Status::ReadyToContract.to_string(), "ready to contract");
        assert_eq!(Status::from_key("exploded"), None);
    }
}
