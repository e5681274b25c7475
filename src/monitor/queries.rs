//! The catalog and statistics queries the sampler runs, each returning typed rows.
//!
//! Every query carries the `zdm-monitor` marker so that pg_stat_statements figures can
//! leave the monitor's own work out. All of them work with the `pg_monitor` role.

use std::time::Instant;

use sqlx::postgres::{PgConnection, PgRow};
use sqlx::Row;

use super::metrics::{
    IndexProgress, LockWait, LongTransaction, RelationName, Replica, Replication, SessionRef,
    Sessions, Slot, TableStats, VacuumProgress,
};
use crate::db::quote_ident;

/// The comment every monitor query carries.
pub const MARKER: &str = "zdm-monitor";

/// Facts read once per connection.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    pub version_num: i32,
    pub backend_pid: i32,
    pub in_recovery: bool,
    /// The schema of the pg_stat_statements extension in this database, when installed.
    pub statements_schema: Option<String>,
}

pub async fn server_facts(conn: &mut PgConnection) -> Result<ServerFacts, sqlx::Error> {
    let row = sqlx::query(
        "SELECT /* zdm-monitor */ current_setting('server_version_num')::int4, \
                pg_backend_pid(), pg_is_in_recovery(), \
                (SELECT n.nspname::text FROM pg_extension e \
                   JOIN pg_namespace n ON n.oid = e.extnamespace \
                  WHERE e.extname = 'pg_stat_statements')",
    )
    .fetch_one(conn)
    .await?;
    Ok(ServerFacts {
        version_num: row.try_get(0)?,
        backend_pid: row.try_get(1)?,
        in_recovery: row.try_get(2)?,
        statements_schema: row.try_get(3)?,
    })
}

/// Cumulative counters of the current database (`pg_stat_database`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseCounters {
    pub commits: i64,
    pub rollbacks: i64,
    pub inserted: i64,
    pub updated: i64,
    pub deleted: i64,
}

pub async fn database_counters(conn: &mut PgConnection) -> Result<DatabaseCounters, sqlx::Error> {
    let row = sqlx::query(
        "SELECT /* zdm-monitor */ xact_commit, xact_rollback, tup_inserted, tup_updated, \
                tup_deleted \
           FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(conn)
    .await?;
    Ok(DatabaseCounters {
        commits: row.try_get(0)?,
        rollbacks: row.try_get(1)?,
        inserted: row.try_get(2)?,
        updated: row.try_get(3)?,
        deleted: row.try_get(4)?,
    })
}

/// The WAL position replicas are compared with: the primary's current insert position, or
/// on a standby the position it has received.
const REFERENCE_LSN: &str = "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() \
                             ELSE pg_current_wal_lsn() END";

pub async fn replication(conn: &mut PgConnection) -> Result<Replication, sqlx::Error> {
    let replicas = sqlx::query(&format!(
        "SELECT /* zdm-monitor */ pid, coalesce(application_name, ''), client_addr::text, \
                coalesce(state, ''), coalesce(sync_state, ''), \
                pg_wal_lsn_diff(r.ref, write_lsn)::int8, \
                pg_wal_lsn_diff(r.ref, flush_lsn)::int8, \
                pg_wal_lsn_diff(r.ref, replay_lsn)::int8, \
                extract(epoch FROM write_lag)::float8, \
                extract(epoch FROM flush_lag)::float8, \
                extract(epoch FROM replay_lag)::float8 \
           FROM pg_stat_replication, (SELECT {REFERENCE_LSN} AS ref) r \
          ORDER BY application_name, pid"
    ))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        Ok(Replica {
            pid: row.try_get(0)?,
            application_name: row.try_get(1)?,
            client_addr: row.try_get(2)?,
            state: row.try_get(3)?,
            sync_state: row.try_get(4)?,
            write_lag_bytes: row.try_get(5)?,
            flush_lag_bytes: row.try_get(6)?,
            replay_lag_bytes: row.try_get(7)?,
            write_lag_seconds: row.try_get(8)?,
            flush_lag_seconds: row.try_get(9)?,
            replay_lag_seconds: row.try_get(10)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let slots = sqlx::query(&format!(
        "SELECT /* zdm-monitor */ slot_name::text, slot_type, active, \
                pg_wal_lsn_diff(r.ref, restart_lsn)::int8, wal_status \
           FROM pg_replication_slots, (SELECT {REFERENCE_LSN} AS ref) r \
          ORDER BY slot_name"
    ))
    .fetch_all(conn)
    .await?
    .iter()
    .map(|row| {
        Ok(Slot {
            name: row.try_get(0)?,
            slot_type: row.try_get(1)?,
            active: row.try_get(2)?,
            retained_bytes: row.try_get(3)?,
            wal_status: row.try_get(4)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Replication { replicas, slots })
}

/// Every (waiter, blocker) pair. `pg_locks` is read once (it briefly locks the whole lock
/// table) and `pg_blocking_pids` is called only for sessions that wait.
pub async fn lock_waits(
    conn: &mut PgConnection,
    version_num: i32,
    query_chars: i32,
) -> Result<Vec<LockWait>, sqlx::Error> {
    // pg_locks.waitstart exists from PostgreSQL 14; before, the waiting query's start
    // is the closest known moment.
    let wait_start = if version_num >= 140_000 {
        "coalesce(wl.waitstart, w.query_start)"
    } else {
        "w.query_start"
    };
    let sql = format!(
        "WITH locks AS MATERIALIZED (SELECT * FROM pg_locks) \
         SELECT /* zdm-monitor */ \
                w.pid, coalesce(w.application_name, ''), w.usename::text, w.state, \
                left(coalesce(w.query, ''), $1), \
                bp.pid, coalesce(b.application_name, CASE WHEN bp.pid = 0 THEN 'prepared transaction' ELSE '' END), \
                b.usename::text, b.state, left(coalesce(b.query, ''), $1), \
                wl.locktype, wl.mode, bl.mode, coalesce(bl.granted, false), \
                n.nspname::text, c.relname::text, \
                greatest(extract(epoch FROM now() - {wait_start}), 0)::float8 \
           FROM locks wl \
           JOIN pg_stat_activity w ON w.pid = wl.pid \
           CROSS JOIN LATERAL unnest(pg_blocking_pids(wl.pid)) AS bp(pid) \
           LEFT JOIN pg_stat_activity b ON b.pid = bp.pid \
           LEFT JOIN LATERAL ( \
                SELECT l.mode, l.granted FROM locks l \
                 WHERE l.pid = bp.pid AND l.locktype = wl.locktype \
                   AND l.database IS NOT DISTINCT FROM wl.database \
                   AND l.relation IS NOT DISTINCT FROM wl.relation \
                   AND l.page IS NOT DISTINCT FROM wl.page \
                   AND l.tuple IS NOT DISTINCT FROM wl.tuple \
                   AND l.virtualxid IS NOT DISTINCT FROM wl.virtualxid \
                   AND l.transactionid IS NOT DISTINCT FROM wl.transactionid \
                   AND l.classid IS NOT DISTINCT FROM wl.classid \
                   AND l.objid IS NOT DISTINCT FROM wl.objid \
                   AND l.objsubid IS NOT DISTINCT FROM wl.objsubid \
                 ORDER BY l.granted DESC LIMIT 1) bl ON true \
           LEFT JOIN LATERAL ( \
                SELECT t.database, t.relation FROM locks t \
                 WHERE t.pid = wl.pid AND t.locktype = 'tuple' AND t.granted LIMIT 1) tl \
                ON wl.relation IS NULL \
           LEFT JOIN pg_class c ON c.oid = coalesce(wl.relation, tl.relation) \
                AND coalesce(wl.database, tl.database) = \
                    (SELECT oid FROM pg_database WHERE datname = current_database()) \
           LEFT JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE NOT wl.granted AND wl.pid IS NOT NULL \
          ORDER BY 17 DESC, w.pid, bp.pid"
    );
    sqlx::query(&sql)
        .bind(query_chars)
        .fetch_all(conn)
        .await?
        .iter()
        .map(|row| {
            let waiter = session_ref(row, 0)?;
            let blocker = session_ref(row, 5)?;
            Ok(LockWait {
                waiter,
                blocker,
                lock_type: row.try_get(10)?,
                waiter_mode: row.try_get(11)?,
                blocker_mode: row.try_get(12)?,
                blocker_granted: row.try_get(13)?,
                relation: relation_name(row, 14)?,
                wait_seconds: row.try_get(16)?,
            })
        })
        .collect()
}

/// Reads pid, application_name, user, state and query from five columns starting at `at`.
fn session_ref(row: &PgRow, at: usize) -> Result<SessionRef, sqlx::Error> {
    let application_name: String = row.try_get(at + 1)?;
    Ok(SessionRef {
        pid: row.try_get(at)?,
        is_zdm: super::metrics::is_zdm_application(&application_name),
        application_name,
        user: row.try_get(at + 2)?,
        state: row.try_get(at + 3)?,
        query: row.try_get(at + 4)?,
    })
}

/// A schema and a name in two columns starting at `at`, when both are there.
fn relation_name(row: &PgRow, at: usize) -> Result<Option<RelationName>, sqlx::Error> {
    let schema: Option<String> = row.try_get(at)?;
    let name: Option<String> = row.try_get(at + 1)?;
    Ok(schema
        .zip(name)
        .map(|(schema, name)| RelationName { schema, name }))
}

/// Client sessions of the whole server, and transactions open longer than `long_seconds`.
pub async fn sessions(
    conn: &mut PgConnection,
    long_seconds: f64,
    query_chars: i32,
) -> Result<Sessions, sqlx::Error> {
    const IDLE_IN_TRANSACTION: &str =
        "state IN ('idle in transaction', 'idle in transaction (aborted)')";
    let row = sqlx::query(&format!(
        "SELECT /* zdm-monitor */ count(*)::int8, \
                count(*) FILTER (WHERE state = 'active')::int8, \
                count(*) FILTER (WHERE state = 'idle')::int8, \
                count(*) FILTER (WHERE {IDLE_IN_TRANSACTION})::int8, \
                count(*) FILTER (WHERE wait_event_type = 'Lock')::int8, \
                extract(epoch FROM now() - min(xact_start) FILTER (WHERE {IDLE_IN_TRANSACTION}))::float8 \
           FROM pg_stat_activity \
          WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    ))
    .fetch_one(&mut *conn)
    .await?;
    let long_transactions = sqlx::query(
        "SELECT /* zdm-monitor */ pid, coalesce(application_name, ''), state, \
                extract(epoch FROM now() - xact_start)::float8, left(coalesce(query, ''), $2) \
           FROM pg_stat_activity \
          WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
            AND xact_start < now() - make_interval(secs => $1) \
          ORDER BY xact_start LIMIT 20",
    )
    .bind(long_seconds)
    .bind(query_chars)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|row| {
        let application_name: String = row.try_get(1)?;
        Ok(LongTransaction {
            pid: row.try_get(0)?,
            is_zdm: super::metrics::is_zdm_application(&application_name),
            application_name,
            state: row.try_get(2)?,
            seconds: row.try_get(3)?,
            query: row.try_get(4)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Sessions {
        total: row.try_get(0)?,
        active: row.try_get(1)?,
        idle: row.try_get(2)?,
        idle_in_transaction: row.try_get(3)?,
        waiting: row.try_get(4)?,
        oldest_idle_in_transaction_seconds: row.try_get(5)?,
        long_transactions,
    })
}

/// Statistics of the named tables; names that match no table are returned in `missing`.
pub async fn tables(
    conn: &mut PgConnection,
    names: &[String],
) -> Result<(Vec<TableStats>, Vec<String>), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT /* zdm-monitor */ t.name, s.schemaname::text, s.relname::text, \
                coalesce(s.n_live_tup, 0), coalesce(s.n_dead_tup, 0), \
                s.last_autovacuum, s.last_autoanalyze, coalesce(s.autovacuum_count, 0), \
                EXISTS (SELECT 1 FROM pg_stat_progress_vacuum v WHERE v.relid = s.relid) \
           FROM unnest($1::text[]) WITH ORDINALITY AS t(name, position) \
           LEFT JOIN pg_stat_user_tables s ON s.relid = to_regclass(t.name) \
          ORDER BY t.position",
    )
    .bind(names)
    .fetch_all(conn)
    .await?;
    let mut stats = Vec::new();
    let mut missing = Vec::new();
    for row in &rows {
        match relation_name(row, 1)? {
            Some(table) => stats.push(TableStats {
                table,
                live_tuples: row.try_get(3)?,
                dead_tuples: row.try_get(4)?,
                last_autovacuum: row.try_get(5)?,
                last_autoanalyze: row.try_get(6)?,
                autovacuum_count: row.try_get(7)?,
                vacuum_running: row.try_get(8)?,
            }),
            None => missing.push(row.try_get(0)?),
        }
    }
    Ok((stats, missing))
}

/// The default canary for `table`: a lookup of its highest primary key, which reads the
/// index's hottest page and the row itself. None when the table has no single-column key.
pub async fn default_canary(
    conn: &mut PgConnection,
    table: &str,
) -> Result<Option<(String, String)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT /* zdm-monitor */ n.nspname::text, c.relname::text, a.attname::text \
           FROM pg_index i \
           JOIN pg_class c ON c.oid = i.indrelid \
           JOIN pg_namespace n ON n.oid = c.relnamespace \
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
          WHERE i.indrelid = to_regclass($1) AND i.indisprimary AND i.indnkeyatts = 1",
    )
    .bind(table)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (schema, name, key): (String, String, String) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    let qualified = format!("{}.{}", quote_ident(&schema), quote_ident(&name));
    let key = quote_ident(&key);
    let sql = format!(
        "SELECT /* zdm-monitor canary */ ctid FROM {qualified} \
          WHERE {key} = (SELECT max({key}) FROM {qualified})"
    );
    let description = format!("primary-key lookup on {schema}.{name}");
    Ok(Some((sql, description)))
}

/// Runs a canary query and returns its latency in milliseconds.
pub async fn canary(
    conn: &mut PgConnection,
    sql: &str,
    prepared: bool,
) -> Result<f64, sqlx::Error> {
    let started = Instant::now();
    if prepared {
        sqlx::query(sql).fetch_all(conn).await?;
    } else {
        // A configured canary may be anything (even several statements): send it as is.
        sqlx::Executor::fetch_all(conn, sql).await?;
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// Cumulative pg_stat_statements figures of one statement.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementCounters {
    pub queryid: i64,
    pub query: String,
    pub calls: i64,
    pub total_ms: f64,
}

/// The 500 statements of this database with the most total time (the monitor's excluded).
pub async fn statement_counters(
    conn: &mut PgConnection,
    schema: &str,
    query_chars: i32,
) -> Result<Vec<StatementCounters>, sqlx::Error> {
    let sql = format!(
        "SELECT /* zdm-monitor */ queryid, left(min(query), $1), sum(calls)::int8, \
                sum(total_exec_time)::float8 \
           FROM {}.pg_stat_statements \
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
            AND queryid IS NOT NULL AND query NOT LIKE '%{MARKER}%' \
          GROUP BY queryid ORDER BY 4 DESC LIMIT 500",
        quote_ident(schema)
    );
    sqlx::query(&sql)
        .bind(query_chars)
        .fetch_all(conn)
        .await?
        .iter()
        .map(|row| {
            Ok(StatementCounters {
                queryid: row.try_get(0)?,
                query: row.try_get(1)?,
                calls: row.try_get(2)?,
                total_ms: row.try_get(3)?,
            })
        })
        .collect()
}

/// The filter "on one of the target tables, or any table when none were given".
const ON_TARGETS: &str = "(cardinality($1::text[]) = 0 \
     OR p.relid = ANY (ARRAY(SELECT to_regclass(t)::oid FROM unnest($1::text[]) AS t)))";

pub async fn index_progress(
    conn: &mut PgConnection,
    targets: &[String],
) -> Result<Vec<IndexProgress>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT /* zdm-monitor */ p.pid, n.nspname::text, c.relname::text, \
                nullif(p.index_relid, 0)::regclass::text, p.command, p.phase, \
                p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total \
           FROM pg_stat_progress_create_index p \
           LEFT JOIN pg_class c ON c.oid = p.relid \
           LEFT JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE p.datname = current_database() AND {ON_TARGETS} \
          ORDER BY p.pid"
    ))
    .bind(targets)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|row| {
        Ok(IndexProgress {
            pid: row.try_get(0)?,
            table: relation_name(row, 1)?,
            index: row.try_get(3)?,
            command: row.try_get(4)?,
            phase: row.try_get(5)?,
            blocks_done: row.try_get(6)?,
            blocks_total: row.try_get(7)?,
            tuples_done: row.try_get(8)?,
            tuples_total: row.try_get(9)?,
        })
    })
    .collect()
}

pub async fn vacuum_progress(
    conn: &mut PgConnection,
    targets: &[String],
) -> Result<Vec<VacuumProgress>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT /* zdm-monitor */ p.pid, n.nspname::text, c.relname::text, p.phase, \
                p.heap_blks_total, p.heap_blks_scanned, p.heap_blks_vacuumed, \
                p.index_vacuum_count \
           FROM pg_stat_progress_vacuum p \
           LEFT JOIN pg_class c ON c.oid = p.relid \
           LEFT JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE p.datname = current_database() AND {ON_TARGETS} \
          ORDER BY p.pid"
    ))
    .bind(targets)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|row| {
        Ok(VacuumProgress {
            pid: row.try_get(0)?,
            table: relation_name(row, 1)?,
            phase: row.try_get(3)?,
            heap_blocks_total: row.try_get(4)?,
            heap_blocks_scanned: row.try_get(5)?,
            heap_blocks_vacuumed: row.try_get(6)?,
            index_vacuum_count: row.try_get(7)?,
        })
    })
    .collect()
}

/// Asks the server to publish this session's statistics as soon as it is idle
/// (PostgreSQL 15+), so that the next sample can subtract exactly the monitor's own
/// transactions from the database's commit count.
pub async fn flush_own_statistics(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT /* zdm-monitor */ pg_stat_force_next_flush()")
        .execute(conn)
        .await?;
    Ok(())
}
