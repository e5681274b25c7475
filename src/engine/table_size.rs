//! The size of a table a migration rewrote: heap, indexes and TOAST in bytes, and its
//! live and dead tuples, measured when the backfill starts (the "before") and again after
//! the backfill and after contract. An in-place backfill writes a new version of every
//! row, so the table ends up about twice its size until VACUUM reuses the space or a
//! rebuild (`zdm repack`) returns it; the DBA is told, with the figures.
//!
//! The measures live in `zdm.table_sizes` (created here on first use: one row per
//! migration and table), so `zdm status` shows them for a finished migration. The first
//! "before" of a run is kept when its backfill resumes (the table is already partly
//! rewritten by then); a new run of the migration (started again after a rollback,
//! `zdm.migrations.started_at` later than the measure) measures again, and forgets the
//! tables the earlier run measured. Measuring never fails a run: a database error is
//! a warning, and the figures are only what PostgreSQL's size functions and statistics
//! say (dead tuples come from the statistics, which lag a second or so).

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use super::event::{Event, Events};
use crate::format::thousands;
use crate::plan::{Phase, Plan, StepAction};
use crate::protocol::Level;

/// One measure of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSize {
    /// The table's own pages (main fork, free space map, visibility map).
    pub heap_bytes: i64,
    /// Every index of the table.
    pub index_bytes: i64,
    /// The TOAST table and its index.
    pub toast_bytes: i64,
    pub live_tuples: i64,
    pub dead_tuples: i64,
}

impl TableSize {
    pub fn total_bytes(&self) -> i64 {
        self.heap_bytes + self.index_bytes + self.toast_bytes
    }

    /// `21.3 MiB (heap 15.0 MiB, indexes 6.3 MiB, TOAST 0 B), 100,000 dead tuples`.
    pub fn describe(&self) -> String {
        format!(
            "{} (heap {}, indexes {}, TOAST {}), {} live / {} dead tuples",
            bytes(self.total_bytes()),
            bytes(self.heap_bytes),
            bytes(self.index_bytes),
            bytes(self.toast_bytes),
            thousands(self.live_tuples.max(0).unsigned_abs()),
            thousands(self.dead_tuples.max(0).unsigned_abs()),
        )
    }
}

/// A table's size at two moments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comparison {
    /// `schema.name`, as people read it.
    pub table: String,
    pub before: TableSize,
    pub after: TableSize,
}

impl Comparison {
    /// The size after as a percentage of the size before (100: unchanged).
    pub fn percent_of_before(&self) -> Option<f64> {
        let before = self.before.total_bytes();
        (before > 0).then(|| self.after.total_bytes() as f64 * 100.0 / before as f64)
    }

    /// Whether the table grew by more than a fifth: worth a rebuild.
    pub fn bloated(&self) -> bool {
        self.percent_of_before().is_some_and(|p| p > 120.0)
    }

    /// `public.orders after the backfill: 21.3 MiB (…) against 11.0 MiB (…) before (194 %)`,
    /// with what to do about it when it grew.
    pub fn describe(&self, moment: &str) -> String {
        let mut line = format!(
            "{} {moment}: {} against {} before",
            self.table,
            self.after.describe(),
            self.before.describe()
        );
        if let Some(percent) = self.percent_of_before() {
            line.push_str(&format!(" ({percent:.0} % of its size before)"));
        }
        if self.bloated() {
            line.push_str(&format!(
                "; `zdm repack {}` rebuilds it online with pg_repack (or VACUUM lets new rows \
                 reuse the space)",
                self.table
            ));
        }
        line
    }
}

/// `1.5 GiB`, `12.0 MiB`, `512 B`.
pub fn bytes(value: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut amount = value.max(0) as f64;
    let mut unit = 0;
    while amount >= 1024.0 && unit + 1 < UNITS.len() {
        amount /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{} B", value.max(0))
    } else {
        format!("{amount:.1} {}", UNITS[unit])
    }
}

/// The table `table` (any text `regclass` reads: `"public"."orders"`, `public.orders`) as
/// `schema.name` with its size now; `None` when there is no such table.
pub async fn measure(
    conn: &mut PgConnection,
    table: &str,
) -> Result<Option<(String, TableSize)>, sqlx::Error> {
    let row: Option<(String, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT n.nspname::text || '.' || c.relname::text, \
                pg_table_size(c.oid) - COALESCE(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0), \
                pg_indexes_size(c.oid), \
                COALESCE(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0), \
                COALESCE(s.n_live_tup, 0), COALESCE(s.n_dead_tup, 0) \
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
           LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid \
          WHERE c.oid = to_regclass($1)",
    )
    .bind(table)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(name, heap, index, toast, live, dead)| {
        (
            name,
            TableSize {
                heap_bytes: heap,
                index_bytes: index,
                toast_bytes: toast,
                live_tuples: live,
                dead_tuples: dead,
            },
        )
    }))
}

const CREATE: &str = "CREATE TABLE IF NOT EXISTS zdm.table_sizes ( \
        migration text NOT NULL, \
        table_name text NOT NULL, \
        before jsonb NOT NULL, \
        measured_before timestamptz NOT NULL DEFAULT now(), \
        after jsonb, \
        measured_after timestamptz, \
        PRIMARY KEY (migration, table_name))";

/// Records the size of each of `tables` before `migration`'s backfill, keeping a "before"
/// this run already recorded (a resumed backfill's table is already partly rewritten)
/// and dropping what an earlier run of the migration recorded (measured before the
/// migration's record was last started).
pub async fn record_before(
    conn: &mut PgConnection,
    migration: &str,
    tables: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query(CREATE).execute(&mut *conn).await?;
    // An earlier run's measures: the run that starts now measures its own "before". A
    // migration zdm has no record of (library use) keeps what is there.
    sqlx::query(
        "DELETE FROM zdm.table_sizes s USING zdm.migrations m \
          WHERE s.migration = $1 AND m.name = s.migration \
            AND s.measured_before < m.started_at",
    )
    .bind(migration)
    .execute(&mut *conn)
    .await?;
    for table in tables {
        let Some((name, size)) = measure(conn, table).await? else {
            continue;
        };
        sqlx::query(
            "INSERT INTO zdm.table_sizes (migration, table_name, before) VALUES ($1, $2, $3) \
             ON CONFLICT (migration, table_name) DO NOTHING",
        )
        .bind(migration)
        .bind(&name)
        .bind(sqlx::types::Json(size))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Measures each table recorded for `migration` now, records it as its "after" and
/// returns the comparisons (none when no "before" was recorded).
pub async fn record_after(
    conn: &mut PgConnection,
    migration: &str,
) -> Result<Vec<Comparison>, sqlx::Error> {
    sqlx::query(CREATE).execute(&mut *conn).await?;
    let recorded = recorded(conn, migration).await?;
    let mut out = Vec::new();
    for comparison in recorded {
        let Some((_, after)) = measure(conn, &comparison.table).await? else {
            continue;
        };
        sqlx::query(
            "UPDATE zdm.table_sizes SET after = $3, measured_after = now() \
              WHERE migration = $1 AND table_name = $2",
        )
        .bind(migration)
        .bind(&comparison.table)
        .bind(sqlx::types::Json(after))
        .execute(&mut *conn)
        .await?;
        out.push(Comparison {
            after,
            ..comparison
        });
    }
    Ok(out)
}

/// A table's size after a rebuild (`zdm repack`) becomes the last measure of every
/// migration that recorded it, so `zdm status` shows where it stands now. Nothing to do
/// when zdm never measured it.
pub async fn record_rebuilt(
    conn: &mut PgConnection,
    comparison: &Comparison,
) -> Result<(), sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('zdm.table_sizes') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(());
    }
    sqlx::query(
        "UPDATE zdm.table_sizes SET after = $2, measured_after = now() WHERE table_name = $1",
    )
    .bind(&comparison.table)
    .bind(sqlx::types::Json(comparison.after))
    .execute(conn)
    .await?;
    Ok(())
}

/// What is recorded for `migration` (its "after" as last measured; the "before" again
/// when none was measured yet). Empty when zdm never measured (an older zdm, no backfill).
pub async fn recorded(
    conn: &mut PgConnection,
    migration: &str,
) -> Result<Vec<Comparison>, sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('zdm.table_sizes') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows: Vec<(
        String,
        sqlx::types::Json<TableSize>,
        Option<sqlx::types::Json<TableSize>>,
    )> = sqlx::query_as(
        "SELECT table_name, before, after FROM zdm.table_sizes WHERE migration = $1 \
          ORDER BY table_name",
    )
    .bind(migration)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(table, before, after)| Comparison {
            table,
            before: before.0,
            after: after.map_or(before.0, |a| a.0),
        })
        .collect())
}

/// The tables `plan` backfills (as its steps name them), each once.
pub fn backfilled_tables(plan: &Plan) -> Vec<String> {
    let mut tables: Vec<String> = Vec::new();
    for step in &plan.steps {
        if let StepAction::Backfill(spec) = &step.action {
            if !tables.contains(&spec.table) {
                tables.push(spec.table.clone());
            }
        }
    }
    tables
}

/// The engine's call as a backfill phase begins: the "before" of every table it rewrites.
/// Never fails the run; a database error is logged.
pub async fn before_backfill(conn: &mut PgConnection, plan: &Plan) {
    let tables = backfilled_tables(plan);
    if tables.is_empty() {
        return;
    }
    if let Err(error) = record_before(conn, &plan.migration, &tables).await {
        tracing::warn!(%error, "could not measure the tables before the backfill");
    }
}

/// The engine's call after the backfill and after contract: each rewritten table's size
/// against before, as an event every front-end shows (a warning when it grew past a fifth).
/// Never fails the run.
pub async fn report(conn: &mut PgConnection, events: &Events, plan: &Plan, phase: Phase) {
    if backfilled_tables(plan).is_empty() {
        return;
    }
    let moment = match phase {
        Phase::Contract => "after contract",
        _ => "after the backfill",
    };
    match record_after(conn, &plan.migration).await {
        Ok(comparisons) => {
            for comparison in comparisons {
                let level = if comparison.bloated() {
                    Level::Warning
                } else {
                    Level::Info
                };
                let text = comparison.describe(moment);
                tracing::info!(migration = %plan.migration, "{text}");
                events.emit(Event::Log { level, text });
            }
        }
        Err(error) => tracing::warn!(%error, "could not measure the tables {moment}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(heap: i64, dead: i64) -> TableSize {
        TableSize {
            heap_bytes: heap,
            index_bytes: heap / 4,
            toast_bytes: 0,
            live_tuples: 1000,
            dead_tuples: dead,
        }
    }

    #[test]
    fn a_doubled_table_is_said_with_its_figures_and_the_way_back() {
        let comparison = Comparison {
            table: "public.orders".to_string(),
            before: size(8 * 1024 * 1024, 0),
            after: size(16 * 1024 * 1024, 1000),
        };
        let text = comparison.describe("after the backfill");
        assert!(
            text.starts_with("public.orders after the backfill: 20.0 MiB (heap 16.0 MiB, indexes 4.0 MiB, TOAST 0 B), 1,000 live / 1,000 dead tuples against 10.0 MiB"),
            "{text}"
        );
        assert!(text.contains("(200 % of its size before)"), "{text}");
        assert!(text.contains("`zdm repack public.orders`"), "{text}");
    }

    #[test]
    fn a_table_about_its_old_size_needs_nothing() {
        let comparison = Comparison {
            table: "public.orders".to_string(),
            before: size(1000, 0),
            after: size(1100, 0),
        };
        assert!(!comparison.bloated());
        assert!(!comparison.describe("after").contains("repack"));
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
