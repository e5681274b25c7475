//! `zdm synth`: a scratch database with a target's schema and generated rows shaped like
//! the target's, from its planner statistics only (docs/rehearsal.md). No row of the target
//! is read: `stats` reads the catalogs and `pg_stats`, `schema` copies the schema with
//! pg_dump, `rows` turns each column's statistics into a generator (`generate`), `load`
//! streams them in with COPY, parallel per table in foreign-key order, and makes the rows
//! satisfy the constraints, which are built once after the data. `replay` gives
//! `zdm rehearse` the target's own read queries with parameters drawn from those rows;
//! `rehearsal` holds what a rehearsal measured and keeps the last one of each migration.

pub mod generate;
pub mod load;
pub mod rehearsal;
pub mod replay;
pub mod rows;
pub mod schema;
pub mod stats;

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use crate::db::DatabaseUrl;
use crate::localpg::Binaries;
pub use load::Progress;
pub use rows::ColumnNote;

/// What can stop `zdm synth`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the target's statistics: {0}")]
    Source(#[source] sqlx::Error),
    #[error("cannot copy the target's schema: {0}")]
    Schema(String),
    #[error("the scratch database: {what}: {source}")]
    Scratch {
        what: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot generate {column}: {why}")]
    Unsupported { column: String, why: String },
    #[error(
        "check constraint {constraint} of {table} rejects {rows} generated rows: {why} \
         (the statistics of single columns cannot reproduce this rule between them)"
    )]
    Check {
        table: String,
        constraint: String,
        rows: u64,
        why: String,
    },
    #[error(
        "the scratch database is not empty (it has {tables}): give an empty database, \
         synth never writes over existing tables"
    )]
    NotEmpty { tables: String },
    #[error("a table's load failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// How much to generate and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Row counts relative to the target's (`reltuples`): 1.0 is production's size.
    pub scale: f64,
    /// Keep the real text values of the statistics (common values, histogram bounds)
    /// instead of generated stand-ins.
    pub keep_values: bool,
    /// Tables loaded at once.
    pub jobs: usize,
    /// The same seed generates the same rows.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            scale: 1.0,
            keep_values: false,
            jobs: 2,
            seed: 19,
        }
    }
}

/// One table as generated.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableReport {
    pub name: String,
    /// The target's estimate (`reltuples`).
    pub source_rows: f64,
    pub rows: u64,
    pub seconds: f64,
    pub columns: Vec<ColumnNote>,
}

/// What `zdm synth` made.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub scale: f64,
    pub keep_values: bool,
    pub tables: Vec<TableReport>,
    /// `table.column` of every column whose generated rows hold real values of the
    /// target's statistics (numbers, dates, enum labels; text only with --keep-values).
    pub real_values: Vec<String>,
    /// Rows a check constraint rejected, repaired, by constraint.
    pub check_repairs: Vec<(String, u64)>,
    /// Rows removed because they repeated a composite unique key, by table.
    pub duplicates_removed: Vec<(String, u64)>,
    /// Rows whose single-column foreign key referred to a removed repeated row, moved to
    /// the row it repeated, by key.
    pub references_moved: Vec<(String, u64)>,
    /// Rows whose single-column foreign key, unique in their table (one-to-one), referred
    /// to a removed repeated row: removed with it, by key.
    pub references_removed: Vec<(String, u64)>,
    /// Rows whose tuple of a foreign key of several columns took a parent's, by key.
    pub foreign_key_repairs: Vec<(String, u64)>,
    pub warnings: Vec<String>,
    pub seconds: f64,
}

/// Fills the empty database `scratch` with `source`'s schema and rows generated to its
/// statistics; `progress` hears of each table's load.
pub async fn synthesize(
    source: &DatabaseUrl,
    scratch: &DatabaseUrl,
    binaries: &Binaries,
    options: &Options,
    progress: Arc<dyn Fn(Progress) + Send + Sync>,
) -> Result<Report, Error> {
    let started = Instant::now();
    let tables = {
        let mut conn = connect(source).await.map_err(Error::Source)?;
        let read = stats::read(&mut conn).await.map_err(Error::Source);
        load::close(conn).await;
        read?
    };
    let mut warnings = Vec::new();
    let gens = rows::plan(
        &tables,
        options.scale,
        options.keep_values,
        options.seed,
        &mut warnings,
    )?;

    let mut conn = connect(scratch).await.map_err(|source| Error::Scratch {
        what: "connecting".into(),
        source,
    })?;
    let existing = load::existing_tables(&mut conn).await?;
    if !existing.is_empty() {
        return Err(Error::NotEmpty {
            tables: existing.join(", "),
        });
    }
    // Tables, types, functions, sequences and views first; zdm's own state with its rows.
    let mut pre = schema::pg_dump(
        binaries,
        source.expose(),
        &["--schema-only", "--section=pre-data"],
    )
    .map_err(Error::Schema)?;
    pre.push_str(
        &schema::state_rows(binaries, source)
            .await
            .map_err(Error::Schema)?,
    );
    schema::restore(binaries, scratch.expose(), &pre).map_err(Error::Schema)?;
    let mut checks = Vec::new();
    for gen in &gens {
        checks.push(load::take_checks(&mut conn, &gen.qualified).await?);
    }

    // The rows, parents before children, the tables of one level at once.
    let mut reports: Vec<TableReport> = Vec::new();
    let mut keys = Vec::new();
    let mut composite_keys = Vec::new();
    for (gen, table) in gens.iter().zip(&tables) {
        composite_keys.push(gen.composite_foreign_keys.clone());
        keys.push((
            gen.qualified.clone(),
            gen.unique_columns.clone(),
            gen.composite_unique.clone(),
            (gen.copy_columns.clone(), gen.order_by.clone()),
        ));
        reports.push(TableReport {
            name: gen.display.clone(),
            source_rows: table.reltuples.max(0.0),
            rows: gen.rows,
            seconds: 0.0,
            columns: gen.notes.clone(),
        });
    }
    let levels = levels(gens);
    let level_order: Vec<usize> = levels.iter().flatten().map(|(index, _)| *index).collect();
    for level in levels {
        let loads = level.into_iter().map(|(index, gen)| {
            let scratch = scratch.clone();
            let progress = progress.clone();
            let seed = generate::mix(options.seed ^ index as u64);
            tokio::spawn(async move {
                let mut conn = connect(&scratch).await.map_err(|source| Error::Scratch {
                    what: format!("connecting to load {}", gen.display),
                    source,
                })?;
                let filled = load::fill(&mut conn, gen, seed, progress.as_ref()).await;
                load::close(conn).await;
                filled.map(|done| (index, done))
            })
        });
        let mut running = futures::stream::iter(loads).buffer_unordered(options.jobs.max(1));
        while let Some(done) = running.next().await {
            let (index, (rows, seconds)) = done??;
            reports[index].rows = rows;
            reports[index].seconds = seconds;
        }
    }

    // The repairs draw with random(): seeded, so that the same seed gives the same rows.
    load::seed_random(&mut conn, options.seed).await?;
    let mut check_repairs = Vec::new();
    let mut removals = Removals::default();
    for (index, ((table, unique, composite, (columns, order)), checks)) in
        keys.iter().zip(&checks).enumerate()
    {
        let repaired = load::restore_checks(&mut conn, checks, unique).await?;
        if let (false, Some((column, descending))) = (repaired.is_empty(), order) {
            load::reorder(&mut conn, table, columns, column, *descending).await?;
        }
        check_repairs.extend(repaired);
        remove_repeated_keys(
            &mut conn,
            &tables,
            index,
            composite,
            &mut reports,
            &mut removals,
        )
        .await?;
    }

    // Tuples of foreign keys of several columns onto their parents' tuples, parents first
    // (a parent's tuples are final before its children take them); a repaired tuple can
    // repeat a composite unique key of the child, removed again.
    let mut foreign_key_repairs = Vec::new();
    for index in level_order {
        let (table, _, composite, _) = &keys[index];
        if composite_keys[index].is_empty() {
            continue;
        }
        for fk in &composite_keys[index] {
            let repaired = load::repair_composite_key(&mut conn, table, fk).await?;
            foreign_key_repairs.push((fk.name.clone(), repaired));
        }
        remove_repeated_keys(
            &mut conn,
            &tables,
            index,
            composite,
            &mut reports,
            &mut removals,
        )
        .await?;
    }

    // Indexes, keys (validated once, over the rows), triggers.
    let post = schema::pg_dump(
        binaries,
        source.expose(),
        &["--schema-only", "--section=post-data"],
    )
    .map_err(Error::Schema)?;
    schema::restore(binaries, scratch.expose(), &post).map_err(Error::Schema)?;
    load::advance_sequences(&mut conn).await?;
    load::analyze(&mut conn).await?;
    load::close(conn).await;

    let real_values = reports
        .iter()
        .flat_map(|t| {
            t.columns
                .iter()
                .filter(|c| c.real_values)
                .map(move |c| format!("{}.{}", t.name, c.name))
        })
        .collect();
    Ok(Report {
        scale: options.scale,
        keep_values: options.keep_values,
        tables: reports,
        real_values,
        check_repairs,
        duplicates_removed: removals.duplicates,
        references_moved: removals.references_moved,
        references_removed: removals.references_removed,
        foreign_key_repairs,
        warnings,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What removing repeated rows did, for the report.
#[derive(Default)]
struct Removals {
    duplicates: Vec<(String, u64)>,
    references_moved: Vec<(String, u64)>,
    references_removed: Vec<(String, u64)>,
}

/// Removes the rows that repeat one of the composite unique keys of `tables[index]`,
/// counting them off its report; the rows of other tables referring to them by a
/// single-column foreign key move to the rows they repeated, or go with them where that
/// column is unique (one-to-one). Each is counted in `removals`.
async fn remove_repeated_keys(
    conn: &mut sqlx::PgConnection,
    tables: &[stats::Table],
    index: usize,
    composite: &[Vec<String>],
    reports: &mut [TableReport],
    removals: &mut Removals,
) -> Result<(), Error> {
    let table = &tables[index].qualified;
    // The single-column foreign keys onto this table (composite ones are repaired onto
    // the rows that stay, after this).
    let referrers: Vec<(usize, load::Referrer)> = tables
        .iter()
        .enumerate()
        .flat_map(|(child, t)| {
            t.foreign_keys
                .iter()
                .filter(|fk| &fk.parent == table)
                .map(move |fk| {
                    let referrer = load::Referrer {
                        name: fk.name.clone(),
                        child: t.qualified.clone(),
                        column: fk.column.clone(),
                        parent_column: fk.parent_column.clone(),
                        unique: t
                            .unique
                            .iter()
                            .any(|u| u == std::slice::from_ref(&fk.column)),
                    };
                    (child, referrer)
                })
        })
        .collect();
    let settle: Vec<load::Referrer> = referrers.iter().map(|(_, r)| r.clone()).collect();
    for columns in composite {
        let (n, settled) = load::remove_duplicates(conn, table, columns, &settle).await?;
        if n > 0 {
            let report = &mut reports[index];
            report.rows = report.rows.saturating_sub(n);
            removals
                .duplicates
                .push((format!("{} ({})", report.name, columns.join(", ")), n));
        }
        for ((child, referrer), n) in referrers.iter().zip(settled) {
            if n == 0 {
                continue;
            }
            if referrer.unique {
                let report = &mut reports[*child];
                report.rows = report.rows.saturating_sub(n);
                removals.references_removed.push((referrer.name.clone(), n));
            } else {
                removals.references_moved.push((referrer.name.clone(), n));
            }
        }
    }
    Ok(())
}

/// The tables in foreign-key levels: each level's parents are in earlier ones (a cycle's
/// tables all go in the last level: their keys are generated, not read, so any order works).
fn levels(gens: Vec<rows::TableGen>) -> Vec<Vec<(usize, rows::TableGen)>> {
    let mut waiting: Vec<(usize, rows::TableGen)> = gens.into_iter().enumerate().collect();
    let mut placed: Vec<String> = Vec::new();
    let mut levels = Vec::new();
    while !waiting.is_empty() {
        let (ready, rest): (Vec<_>, Vec<_>) = waiting
            .into_iter()
            .partition(|(_, g)| g.parents.iter().all(|p| placed.contains(p)));
        if ready.is_empty() {
            levels.push(rest);
            break;
        }
        placed.extend(ready.iter().map(|(_, g)| g.qualified.clone()));
        levels.push(ready);
        waiting = rest;
    }
    levels
}

async fn connect(url: &DatabaseUrl) -> Result<sqlx::PgConnection, sqlx::Error> {
    let options = url.connect_options()?.application_name("zdm synth");
    url.connect_with(&options).await
}
