//! Cutting a backfill's key into ranges for parallel workers, once, when the backfill
//! starts: a sample of the table's keys (`TABLESAMPLE SYSTEM`, about [`SAMPLE_ROWS`]
//! keys whatever the table's size) is sorted and cut into [`MAX_RANGES`] tiles of equal
//! count. The cuts only balance the work: the ranges `(start, c1], (c1, c2], …, (cN, end)`
//! cover every key whatever the sample saw (the last one is open, so keys inserted later
//! at the end are in it), so a poor sample costs speed, never a row.

use sqlx::PgConnection;

use crate::db::quote_ident;
use crate::plan::Backfill;

/// Ranges cut per backfill: several per worker, so that a worker done with its range
/// takes another and the ranges' different speeds even out.
pub const MAX_RANGES: i64 = 32;
/// About this many keys are sampled to cut the ranges.
const SAMPLE_ROWS: f64 = 20_000.0;
/// Never more keys read than this, whatever the statistics said.
const SAMPLE_LIMIT: i64 = 200_000;
/// At least about this many rows per range (a small table gets fewer ranges): a range
/// much smaller than a batch would cut every batch short at its end.
const MIN_RANGE_ROWS: f64 = 20_000.0;

/// One range: keys in `(lower, upper]` as jsonb key rows; None: the table's first key
/// (lower) or its last (upper).
pub type Bounds = (Option<serde_json::Value>, Option<serde_json::Value>);

/// The ranges of a backfill starting after `start` (None: from the first key), in key
/// order; at least one.
pub async fn plan(
    conn: &mut PgConnection,
    spec: &Backfill,
    start: Option<&serde_json::Value>,
) -> Result<Vec<Bounds>, sqlx::Error> {
    let cuts = sample_cuts(conn, spec, start).await?;
    let mut bounds = Vec::with_capacity(cuts.len() + 1);
    let mut lower = start.cloned();
    for cut in cuts {
        bounds.push((lower, Some(cut.clone())));
        lower = Some(cut);
    }
    bounds.push((lower, None));
    Ok(bounds)
}

/// The sampled keys that end each tile but the last, in key order, distinct.
async fn sample_cuts(
    conn: &mut PgConnection,
    spec: &Backfill,
    start: Option<&serde_json::Value>,
) -> Result<Vec<serde_json::Value>, sqlx::Error> {
    let table = &spec.table;
    let keys: Vec<String> = spec.key_columns.iter().map(|c| quote_ident(c)).collect();
    let key_list = keys.join(", ");
    let key_desc = keys
        .iter()
        .map(|k| format!("{k} DESC"))
        .collect::<Vec<_>>()
        .join(", ");
    // A sample scan reads pages, not the index: the optional lower bound costs nothing.
    let after = format!(
        " WHERE $3::jsonb IS NULL OR ({key_list}) > (SELECT {key_list} \
           FROM jsonb_populate_record(NULL::{table}, $3::jsonb))"
    );
    // The sampled share of the table's pages: from its row estimate when it has one,
    // else from its size in pages (at a guess of 100 rows a page).
    let percent: f64 = sqlx::query_scalar(
        "SELECT LEAST(100.0, GREATEST(0.001, CASE \
           WHEN c.reltuples > 0 THEN 100.0 * $2 / c.reltuples \
           ELSE 100.0 * ($2 / 100.0) / GREATEST(pg_relation_size(c.oid) \
                / current_setting('block_size')::float8, 1.0) END))::float8 \
         FROM pg_class c WHERE c.oid = $1::regclass",
    )
    .bind(table)
    .bind(SAMPLE_ROWS)
    .fetch_one(&mut *conn)
    .await?;
    // Tiles of equal count over the sorted sample; each tile's largest key is a cut.
    let sql = format!(
        "WITH s AS (SELECT {key_list} FROM {table} TABLESAMPLE SYSTEM ($1){after} LIMIT $2), \
         t AS (SELECT s.*, ntile(GREATEST(LEAST($4::bigint, (SELECT count(*) FROM s) / $5), 1)::int) \
                 OVER (ORDER BY {key_list}) AS zdm_tile FROM s), \
         c AS (SELECT DISTINCT ON (zdm_tile) {key_list}, zdm_tile FROM t \
                 ORDER BY zdm_tile, {key_desc}) \
         SELECT to_jsonb(k) FROM (SELECT {key_list} FROM c \
           WHERE zdm_tile < (SELECT max(zdm_tile) FROM c) ORDER BY {key_list}) AS k"
    );
    let query = sqlx::query_scalar(&sql)
        .bind(percent)
        .bind(SAMPLE_LIMIT)
        .bind(start)
        .bind(MAX_RANGES)
        // Sampled keys per range: `percent` of the table's keys were sampled.
        .bind(((MIN_RANGE_ROWS * percent / 100.0).ceil() as i64).max(1));
    let mut cuts: Vec<serde_json::Value> = query.fetch_all(&mut *conn).await?;
    // Distinct in key order (a key is unique; this only guards an odd sample).
    cuts.dedup();
    Ok(cuts)
}
