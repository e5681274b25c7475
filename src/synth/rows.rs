//! Tables' generators: each table's row count (`reltuples × scale`) and a generator per
//! column built from its statistics (generate.rs), with the keys that tie tables together:
//! a unique column never repeats, a column referenced by a foreign key is never NULL, and a
//! foreign key's values are its parent's generated keys with the child's own skew.

use std::collections::HashMap;
use std::sync::Arc;

use rand::Rng;

use super::generate::{self, ColumnGen, Shape, Values};
use super::stats::{Column, ColumnStats, Table};
use super::Error;

/// How one column is filled, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ColumnNote {
    pub name: String,
    pub sql_type: String,
    /// In words: "statistics", "unique sequence", "foreign key to …", "NULL (…)", …
    pub how: String,
    /// Real values of the target's statistics appear in the generated rows.
    pub real_values: bool,
}

/// A table's rows to generate.
#[derive(Debug)]
pub struct TableGen {
    pub qualified: String,
    pub display: String,
    pub rows: u64,
    /// The quoted column list of the COPY (generated columns and defaults left out).
    pub copy_columns: Vec<String>,
    pub columns: Vec<ColumnGen>,
    pub notes: Vec<ColumnNote>,
    /// The tables whose keys this one's foreign keys take (itself left out).
    pub parents: Vec<String>,
    /// Unique column sets of several columns: duplicates are removed after the load.
    pub composite_unique: Vec<Vec<String>>,
    /// Single unique columns (a check constraint on them cannot be repaired by copying).
    pub unique_columns: Vec<String>,
    /// Foreign keys of several columns: after the load, each child tuple without a
    /// parent takes a generated parent tuple.
    pub composite_foreign_keys: Vec<super::stats::CompositeForeignKey>,
    /// The column whose order the rows' physical order follows most (|correlation| > 0.5),
    /// descending when negative: rows moved by a repair are put back in that order.
    pub order_by: Option<(String, bool)>,
}

impl TableGen {
    /// One row in COPY text format, with its newline.
    pub fn write_row(&mut self, rng: &mut impl Rng, out: &mut String) {
        for (i, column) in self.columns.iter_mut().enumerate() {
            if i > 0 {
                out.push('\t');
            }
            column.write(rng, out);
        }
        out.push('\n');
    }
}

/// Generators of every table, or the first column none can be made for.
pub fn plan(
    tables: &[Table],
    scale: f64,
    keep_values: bool,
    seed: u64,
    warnings: &mut Vec<String>,
) -> Result<Vec<TableGen>, Error> {
    let rows: HashMap<&str, u64> = tables
        .iter()
        .map(|t| {
            (
                t.qualified.as_str(),
                (t.reltuples.max(0.0) * scale).round() as u64,
            )
        })
        .collect();
    let referenced: Vec<(&str, &str)> = tables
        .iter()
        .flat_map(|t| &t.foreign_keys)
        .map(|fk| (fk.parent.as_str(), fk.parent_column.as_str()))
        .collect();
    // Every referenced key first: children take their values from them.
    let mut keys: HashMap<(String, String), Arc<Values>> = HashMap::new();
    for &(parent, column) in &referenced {
        let refuse = |why: String| Error::Unsupported {
            column: format!("{parent}.{column}"),
            why,
        };
        let table = tables
            .iter()
            .find(|t| t.qualified == parent)
            .ok_or_else(|| refuse("a foreign key refers to a table zdm does not fill".into()))?;
        let col = table
            .column(column)
            .ok_or_else(|| refuse("a foreign key refers to a column not found".into()))?;
        if !table.is_unique(column) {
            return Err(refuse(
                "a foreign key refers to it, but it has no one-column unique index".into(),
            ));
        }
        let stats = col.stats.clone().unwrap_or_else(no_stats);
        let count = rows[parent];
        let (values, _) = generate::values_for(
            col,
            &stats,
            true,
            count,
            keep_values,
            key(seed, parent, column),
        )
        .map_err(refuse)?;
        keys.insert((parent.to_string(), column.to_string()), Arc::new(values));
    }
    // The target's range of each referenced integer key, from its histogram.
    let mut key_ranges = HashMap::new();
    for &(parent, column) in &referenced {
        let bounds = tables
            .iter()
            .find(|t| t.qualified == parent)
            .and_then(|t| t.column(column))
            .and_then(|c| c.stats.as_ref())
            .map(|s| &s.histogram_bounds);
        let parse = |v: &String| v.parse::<f64>().ok();
        if let Some((Some(lo), Some(hi))) =
            bounds.map(|b| (b.first().and_then(parse), b.last().and_then(parse)))
        {
            key_ranges.insert(
                (parent.to_string(), column.to_string()),
                (lo, hi - lo + 1.0),
            );
        }
    }
    // The parents' column sets that foreign keys of several columns refer to: never NULL
    // (a parent tuple with a NULL cannot be referred to).
    let mut composite_referenced: Vec<(&str, &str)> = Vec::new();
    for table in tables {
        for fk in &table.composite_foreign_keys {
            let refuse = |why: String| Error::Unsupported {
                column: format!("{} (foreign key {})", table.display, fk.name),
                why,
            };
            let parent = tables
                .iter()
                .find(|t| t.qualified == fk.parent)
                .ok_or_else(|| refuse("it refers to a table zdm does not fill".into()))?;
            let mut wanted = fk.parent_columns.clone();
            wanted.sort();
            if !parent.unique.iter().any(|u| {
                let mut u = u.clone();
                u.sort();
                u == wanted
            }) {
                return Err(refuse(format!(
                    "no unique index of {} on exactly ({})",
                    parent.display,
                    fk.parent_columns.join(", ")
                )));
            }
            if let Some(column) = fk.columns.iter().find(|c| table.is_unique(c)) {
                return Err(refuse(format!(
                    "its column {column} is unique on its own: a tuple taken from the parent \
                     could repeat it"
                )));
            }
            for column in &fk.parent_columns {
                composite_referenced.push((parent.qualified.as_str(), column.as_str()));
            }
        }
    }
    let mut gens = Vec::new();
    for table in tables {
        let n = rows[table.qualified.as_str()];
        if table.reltuples < 0.0 {
            warnings.push(format!(
                "{}: never analyzed on the target (no row count): generated empty; run ANALYZE \
                 there first",
                table.display
            ));
        }
        let mut gen = TableGen {
            qualified: table.qualified.clone(),
            display: table.display.clone(),
            rows: n,
            copy_columns: Vec::new(),
            columns: Vec::new(),
            notes: Vec::new(),
            parents: Vec::new(),
            composite_unique: table
                .unique
                .iter()
                .filter(|u| u.len() > 1)
                .cloned()
                .collect(),
            unique_columns: table
                .unique
                .iter()
                .filter(|u| u.len() == 1)
                .map(|u| u[0].clone())
                .collect(),
            composite_foreign_keys: table.composite_foreign_keys.clone(),
            order_by: table
                .columns
                .iter()
                .filter(|c| !c.generated)
                .filter_map(|c| c.stats.as_ref().map(|s| (c, s.correlation)))
                .filter(|(_, corr)| corr.abs() > 0.5)
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .map(|(c, corr)| (c.name.clone(), corr < 0.0)),
        };
        let mut missing_stats = Vec::new();
        for column in &table.columns {
            if column.generated {
                continue;
            }
            let is_referenced = referenced
                .iter()
                .any(|&(p, c)| p == table.qualified && c == column.name);
            let in_composite_key = composite_referenced
                .iter()
                .any(|&(p, c)| p == table.qualified && c == column.name);
            if column.stats.is_none() && n > 0 {
                missing_stats.push(column.name.clone());
            }
            let key = key(seed, &table.qualified, &column.name);
            let built = column_gen(
                table,
                column,
                n,
                is_referenced,
                in_composite_key,
                keep_values,
                key,
                &keys,
                &rows,
                &key_ranges,
            );
            match built {
                Ok((shape, mut note)) => {
                    if let Some(fk) = table
                        .composite_foreign_keys
                        .iter()
                        .find(|fk| fk.columns.contains(&column.name))
                    {
                        note.how = format!(
                            "{}; foreign key {} to {} ({}): tuples without a parent take a \
                             parent's",
                            note.how,
                            fk.name,
                            fk.parent,
                            fk.parent_columns.join(", ")
                        );
                    }
                    gen.copy_columns.push(crate::db::quote_ident(&column.name));
                    gen.columns.push(shape.into_gen());
                    gen.notes.push(note);
                }
                Err(why) if column.has_default => {
                    warnings.push(format!(
                        "{}.{} ({}): {why}; left to its default",
                        table.display, column.name, column.sql_type
                    ));
                    gen.notes
                        .push(note(column, format!("its default ({why})"), false));
                }
                Err(why) if !column.not_null => {
                    warnings.push(format!(
                        "{}.{} ({}): {why}; left NULL",
                        table.display, column.name, column.sql_type
                    ));
                    gen.notes.push(note(column, format!("NULL ({why})"), false));
                }
                Err(why) => {
                    return Err(Error::Unsupported {
                        column: format!("{}.{}", table.display, column.name),
                        why: format!("{why} ({}, NOT NULL, no default)", column.sql_type),
                    })
                }
            }
        }
        if !missing_stats.is_empty() {
            warnings.push(format!(
                "{}: no statistics for {} (never analyzed, or the role may not read them: it \
                 needs SELECT on the table or pg_read_all_stats): generated all distinct, no NULLs",
                table.display,
                missing_stats.join(", ")
            ));
        }
        let parents = table.foreign_keys.iter().map(|fk| &fk.parent);
        let composite_parents = table.composite_foreign_keys.iter().map(|fk| &fk.parent);
        for parent in parents.chain(composite_parents) {
            if *parent != table.qualified && !gen.parents.contains(parent) {
                gen.parents.push(parent.clone());
            }
        }
        gens.push(gen);
    }
    Ok(gens)
}

fn key(seed: u64, table: &str, column: &str) -> u64 {
    let mut h = generate::mix(seed);
    for b in table.bytes().chain([0]).chain(column.bytes()) {
        h = generate::mix(h ^ b as u64);
    }
    h
}

/// Statistics assumed for a column that has none: no NULLs, every value distinct.
fn no_stats() -> ColumnStats {
    ColumnStats {
        n_distinct: -1.0,
        avg_width: 8,
        ..ColumnStats::default()
    }
}

fn note(column: &Column, how: String, real_values: bool) -> ColumnNote {
    ColumnNote {
        name: column.name.clone(),
        sql_type: column.sql_type.clone(),
        how,
        real_values,
    }
}

#[allow(clippy::too_many_arguments)]
fn column_gen(
    table: &Table,
    column: &Column,
    rows: u64,
    is_referenced: bool,
    in_composite_key: bool,
    keep_values: bool,
    key: u64,
    keys: &HashMap<(String, String), Arc<Values>>,
    row_counts: &HashMap<&str, u64>,
    key_ranges: &HashMap<(String, String), (f64, f64)>,
) -> Result<(Shape, ColumnNote), String> {
    let stats = column.stats.clone().unwrap_or_else(no_stats);
    let unique = table.is_unique(&column.name);
    let null_frac = if column.not_null || is_referenced || in_composite_key {
        0.0
    } else {
        stats.null_frac.clamp(0.0, 1.0)
    };
    let non_null = ((1.0 - null_frac) * rows as f64).round() as u64;
    let fk = table
        .foreign_keys
        .iter()
        .find(|fk| fk.column == column.name);
    // A unique column has no common values; others keep theirs, as real values or stand-ins.
    let (common_real, common_freqs) = if unique {
        (Vec::new(), Vec::new())
    } else {
        (
            stats.most_common_vals.clone(),
            stats.most_common_freqs.clone(),
        )
    };
    let common_total: f64 = common_freqs.iter().sum();
    let rest_rows = if unique {
        rows
    } else {
        ((1.0 - null_frac - common_total).max(0.0) * rows as f64).round() as u64
    };
    let distinct_all = if unique {
        non_null
    } else if stats.n_distinct < 0.0 {
        (-stats.n_distinct * rows as f64).round() as u64
    } else {
        (stats.n_distinct.round() as u64).min(non_null)
    };
    let distinct = distinct_all
        .saturating_sub(common_real.len() as u64)
        .clamp(1, rest_rows.max(1));
    let (values, common, how, real) = if let Some(fk) = fk {
        let parent = keys
            .get(&(fk.parent.clone(), fk.parent_column.clone()))
            .cloned()
            .ok_or_else(|| format!("its parent key {} is not generated", fk.parent))?;
        let parent_rows = row_counts.get(fk.parent.as_str()).copied().unwrap_or(0);
        if parent_rows == 0 && null_frac < 1.0 && rows > 0 {
            return Err(format!(
                "foreign key {} to {}, which gets no rows",
                fk.name, fk.parent
            ));
        }
        if unique && rows > parent_rows {
            return Err(format!(
                "a unique foreign key {} with more rows ({rows}) than its parent {} ({parent_rows})",
                fk.name, fk.parent
            ));
        }
        // The child's own histogram repeats parents; a unique key (one-to-one) must not.
        if let Some((shape, note)) = (!unique)
            .then(|| {
                rescaled(
                    column,
                    &stats,
                    &parent,
                    parent_rows,
                    null_frac,
                    rest_rows,
                    distinct,
                    fk,
                    key,
                    key_ranges,
                )
            })
            .flatten()
        {
            return Ok((shape, note));
        }
        let parent_key = key ^ 0x5eed;
        let n_common = (common_real.len() as u64).min(parent_rows);
        let common = (0..n_common)
            .map(|i| {
                let mut value = String::new();
                parent.write(
                    generate::permute(i, parent_rows, parent_key),
                    parent_rows,
                    &mut value,
                );
                (value, common_freqs[i as usize])
            })
            .collect();
        let distinct = distinct.min(parent_rows.saturating_sub(n_common).max(1));
        let values = Values::Parent {
            parent,
            parent_rows,
            offset: n_common,
            distinct,
            key: parent_key,
        };
        let how = format!(
            "foreign key to {}.{}, {n_common} common parents",
            fk.parent, fk.parent_column
        );
        return Ok((
            Shape {
                null_frac,
                common,
                count: rest_rows,
                distinct,
                correlation: stats.correlation,
                values: Arc::new(values),
                key,
            },
            note(column, how, false),
        ));
    } else if unique && is_referenced {
        let values = keys
            .get(&(table.qualified.clone(), column.name.clone()))
            .cloned()
            .ok_or_else(|| "its key is not generated".to_string())?;
        (
            values,
            Vec::new(),
            "unique key, referenced".to_string(),
            false,
        )
    } else {
        let (values, real) = generate::values_for(column, &stats, unique, rows, keep_values, key)?;
        let text_like = column.kind.is_text_like();
        let common = common_real
            .iter()
            .zip(&common_freqs)
            .enumerate()
            .map(|(i, (value, freq))| {
                let shown = if text_like && !keep_values {
                    generate::stand_in(&column.kind, value, i, key)
                } else {
                    let mut escaped = String::new();
                    generate::escape(value, &mut escaped);
                    escaped
                };
                (shown, *freq)
            })
            .collect::<Vec<_>>();
        let real = real || (!common_real.is_empty() && (keep_values || !text_like));
        let how = if unique {
            "unique sequence".to_string()
        } else if column.stats.is_none() {
            "no statistics: all distinct".to_string()
        } else {
            format!(
                "statistics: {} common, {} other distinct",
                common_real.len(),
                distinct
            )
        };
        (Arc::new(values), common, how, real)
    };
    let real = real && !matches!(column.kind, super::stats::Kind::Bool);
    Ok((
        Shape {
            null_frac,
            common,
            count: rest_rows,
            distinct: if unique { rows.max(1) } else { distinct },
            correlation: stats.correlation,
            values,
            key,
        },
        note(column, how, real),
    ))
}

/// An integer foreign key to a key generated as consecutive integers, drawn from the
/// child's own common values and histogram moved onto the generated key range; None when
/// either side is not so (then the keys are drawn by row number instead).
#[allow(clippy::too_many_arguments)]
fn rescaled(
    column: &Column,
    stats: &ColumnStats,
    parent: &Values,
    parent_rows: u64,
    null_frac: f64,
    rest_rows: u64,
    distinct: u64,
    fk: &super::stats::ForeignKey,
    key: u64,
    key_ranges: &HashMap<(String, String), (f64, f64)>,
) -> Option<(Shape, ColumnNote)> {
    let Values::Sequence {
        base,
        step,
        render: generate::Render::Int { .. },
        ..
    } = parent
    else {
        return None;
    };
    let (lo, span) = *key_ranges.get(&(fk.parent.clone(), fk.parent_column.clone()))?;
    let bounds: Vec<f64> = stats
        .histogram_bounds
        .iter()
        .map(|v| v.parse::<f64>().ok())
        .collect::<Option<_>>()?;
    if *step != 1.0 || bounds.len() < 2 || !matches!(column.kind, super::stats::Kind::Int { .. }) {
        return None;
    }
    let common = stats
        .most_common_vals
        .iter()
        .zip(&stats.most_common_freqs)
        .filter_map(|(v, f)| {
            let v = v.parse::<f64>().ok()?;
            Some((
                generate::rescale(v, lo, span, *base, parent_rows).to_string(),
                *f,
            ))
        })
        .collect::<Vec<_>>();
    let how = format!(
        "foreign key to {}.{}, the child's own skew ({} common parents, histogram)",
        fk.parent,
        fk.parent_column,
        common.len()
    );
    Some((
        Shape {
            null_frac,
            common,
            count: rest_rows,
            distinct,
            correlation: stats.correlation,
            values: Arc::new(Values::Rescaled {
                bounds,
                lo,
                span,
                base: *base,
                rows: parent_rows,
            }),
            key,
        },
        note(column, how, true),
    ))
}
