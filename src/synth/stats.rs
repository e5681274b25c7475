//! What `zdm synth` reads of a target, and nothing more: its tables' estimated row counts
//! (`pg_class.reltuples`), their columns and types, the planner statistics of each column
//! (`pg_stats`), and the unique indexes and foreign keys the generated rows must satisfy.
//! No table row is ever read. Everything is read in one read-only transaction.

use sqlx::{Connection, PgConnection, Row};

use crate::db::quote_ident;

/// One column's planner statistics, as `pg_stats` shows them (values as text).
#[derive(Debug, Clone, Default)]
pub struct ColumnStats {
    pub null_frac: f64,
    /// Positive: the number of distinct values; negative: minus their fraction of the rows.
    pub n_distinct: f64,
    pub most_common_vals: Vec<String>,
    pub most_common_freqs: Vec<f64>,
    /// Equal-population bounds of the values that are not among the most common.
    pub histogram_bounds: Vec<String>,
    /// Between -1 and 1: how closely the physical row order follows the values' order.
    pub correlation: f64,
    /// Average stored width in bytes.
    pub avg_width: i32,
}

/// The type a column's values are generated as, its domain resolved to the base type.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Bool,
    Int {
        bits: u8,
    },
    Numeric {
        scale: Option<u32>,
    },
    Float,
    Text {
        max_chars: Option<usize>,
    },
    Bytea,
    Date,
    Timestamp {
        zone: bool,
    },
    Time,
    Uuid,
    Json {
        binary: bool,
    },
    Enum {
        labels: Vec<String>,
    },
    Array(Box<Kind>),
    /// A type zdm cannot generate, by its SQL name.
    Unsupported(String),
}

impl Kind {
    /// Whether values of this kind are free text whose real values are replaced by default.
    pub fn is_text_like(&self) -> bool {
        matches!(
            self,
            Kind::Text { .. } | Kind::Bytea | Kind::Json { .. } | Kind::Array(_)
        )
    }
}

/// A column of a table.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    /// `format_type`: the SQL type as written in the schema.
    pub sql_type: String,
    pub kind: Kind,
    pub not_null: bool,
    pub has_default: bool,
    /// `GENERATED ALWAYS AS (...) STORED`: computed by the server, never given.
    pub generated: bool,
    /// None when the table was never analyzed (or the role may not see its statistics).
    pub stats: Option<ColumnStats>,
}

/// A foreign key of one column to a unique column of a table.
#[derive(Debug, Clone)]
pub struct ForeignKey {
    pub name: String,
    pub column: String,
    pub parent: String,
    pub parent_column: String,
}

/// A foreign key of several columns to a unique column set of a table: generated as the
/// child's own columns, then each child tuple with no parent takes a parent's generated
/// tuple (load.rs, `repair_composite_key`).
#[derive(Debug, Clone)]
pub struct CompositeForeignKey {
    pub name: String,
    /// The child's columns, in the key's order.
    pub columns: Vec<String>,
    pub parent: String,
    /// The parent's columns, in the same order.
    pub parent_columns: Vec<String>,
    /// `MATCH FULL`: a tuple with some NULL columns must have all of them NULL.
    pub match_full: bool,
}

/// A table to fill.
#[derive(Debug, Clone)]
pub struct Table {
    /// Schema-qualified and quoted, as it is written in SQL.
    pub qualified: String,
    /// `schema.name`, for people.
    pub display: String,
    /// `reltuples`: -1 when never analyzed.
    pub reltuples: f64,
    pub columns: Vec<Column>,
    /// Unique indexes (primary key included) on plain columns, by column names.
    pub unique: Vec<Vec<String>>,
    pub foreign_keys: Vec<ForeignKey>,
    /// Foreign keys of several columns: repaired onto the parent's tuples after the load.
    pub composite_foreign_keys: Vec<CompositeForeignKey>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Whether `column` alone is unique (a one-column unique index or primary key).
    pub fn is_unique(&self, column: &str) -> bool {
        self.unique
            .iter()
            .any(|cols| cols.len() == 1 && cols[0] == column)
    }
}

const TABLES: &str = "
SELECT c.oid::int8 AS oid, n.nspname::text AS schema, c.relname::text AS name,
       c.reltuples::float8 AS reltuples
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'zdm')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 2, 3";

const COLUMNS: &str = "
SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS sql_type,
       a.attnotnull AS not_null, a.atthasdef OR a.attidentity <> '' AS has_default,
       a.attgenerated <> '' AS generated,
       b.typname::text AS base, b.typtype::text AS typtype, b.typcategory::text AS category,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END AS typmod,
       e.typname::text AS element, e.typtype::text AS element_typtype,
       ARRAY(SELECT enumlabel::text FROM pg_enum
             WHERE enumtypid = CASE WHEN b.typcategory = 'A' THEN e.oid ELSE b.oid END
             ORDER BY enumsortorder) AS labels,
       s.attname IS NOT NULL AS has_stats,
       s.null_frac::float8 AS null_frac, s.n_distinct::float8 AS n_distinct,
       CASE WHEN b.typcategory = 'A' THEN NULL ELSE s.most_common_vals::text::text[] END AS mcv,
       s.most_common_freqs::float8[] AS mcf,
       CASE WHEN b.typcategory = 'A' THEN NULL ELSE s.histogram_bounds::text::text[] END AS hist,
       s.correlation::float8 AS correlation, s.avg_width AS avg_width
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_type e ON e.oid = b.typelem AND b.typcategory = 'A'
LEFT JOIN pg_stats s ON s.schemaname = $2 AND s.tablename = $3 AND s.attname = a.attname
                    AND NOT s.inherited
WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum";

const UNIQUE: &str = "
SELECT ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, pos)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num
             ORDER BY k.pos) AS columns
FROM pg_index i
WHERE i.indrelid = $1::int8::oid AND i.indisunique AND i.indexprs IS NULL AND i.indpred IS NULL
  AND NOT (0 = ANY (i.indkey::int2[]))";

const FOREIGN_KEYS: &str = "
SELECT c.conname::text AS name, cardinality(c.conkey) AS width,
       (SELECT attname::text FROM pg_attribute WHERE attrelid = c.conrelid
        AND attnum = c.conkey[1]) AS column,
       pn.nspname::text AS parent_schema, p.relname::text AS parent_name,
       (SELECT attname::text FROM pg_attribute WHERE attrelid = c.confrelid
        AND attnum = c.confkey[1]) AS parent_column,
       ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(num, pos)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.num
             ORDER BY k.pos) AS columns,
       ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(num, pos)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.num
             ORDER BY k.pos) AS parent_columns,
       c.confmatchtype = 'f' AS match_full
FROM pg_constraint c
JOIN pg_class p ON p.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
WHERE c.conrelid = $1::int8::oid AND c.contype = 'f'
ORDER BY 1";

/// Reads every user table of the target (schema `zdm`, the catalogs and extensions' own
/// tables left out) with its columns, statistics and keys, in a read-only transaction.
pub async fn read(conn: &mut PgConnection) -> Result<Vec<Table>, sqlx::Error> {
    // Values are read back as text: ISO dates and UTC times parse the same on every server.
    sqlx::raw_sql(
        "SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; SET IntervalStyle = 'postgres'; \
         SET extra_float_digits = 1",
    )
    .execute(&mut *conn)
    .await?;
    let mut tx = conn.begin().await?;
    sqlx::raw_sql("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await?;
    let mut tables = Vec::new();
    for row in sqlx::query(TABLES).fetch_all(&mut *tx).await? {
        let oid: i64 = row.try_get("oid")?;
        let schema: String = row.try_get("schema")?;
        let name: String = row.try_get("name")?;
        let mut columns = Vec::new();
        for c in sqlx::query(COLUMNS)
            .bind(oid)
            .bind(&schema)
            .bind(&name)
            .fetch_all(&mut *tx)
            .await?
        {
            columns.push(column(&c)?);
        }
        let unique: Vec<Vec<String>> = sqlx::query_scalar(UNIQUE)
            .bind(oid)
            .fetch_all(&mut *tx)
            .await?;
        let mut foreign_keys = Vec::new();
        let mut composite_foreign_keys = Vec::new();
        for fk in sqlx::query(FOREIGN_KEYS)
            .bind(oid)
            .fetch_all(&mut *tx)
            .await?
        {
            let fk_name: String = fk.try_get("name")?;
            let width: i32 = fk.try_get("width")?;
            let parent = format!(
                "{}.{}",
                quote_ident(&fk.try_get::<String, _>("parent_schema")?),
                quote_ident(&fk.try_get::<String, _>("parent_name")?)
            );
            if width != 1 {
                composite_foreign_keys.push(CompositeForeignKey {
                    name: fk_name,
                    columns: fk.try_get("columns")?,
                    parent,
                    parent_columns: fk.try_get("parent_columns")?,
                    match_full: fk.try_get("match_full")?,
                });
                continue;
            }
            foreign_keys.push(ForeignKey {
                name: fk_name,
                column: fk.try_get("column")?,
                parent,
                parent_column: fk.try_get("parent_column")?,
            });
        }
        tables.push(Table {
            qualified: format!("{}.{}", quote_ident(&schema), quote_ident(&name)),
            display: format!("{schema}.{name}"),
            reltuples: row.try_get("reltuples")?,
            columns,
            unique,
            foreign_keys,
            composite_foreign_keys,
        });
    }
    tx.rollback().await?;
    Ok(tables)
}

fn column(row: &sqlx::postgres::PgRow) -> Result<Column, sqlx::Error> {
    let sql_type: String = row.try_get("sql_type")?;
    let base: String = row.try_get("base")?;
    let typtype: String = row.try_get("typtype")?;
    let category: String = row.try_get("category")?;
    let typmod: i32 = row.try_get("typmod")?;
    let labels: Vec<String> = row.try_get("labels")?;
    let kind = if category == "A" {
        let element: Option<String> = row.try_get("element")?;
        let element_typtype: Option<String> = row.try_get("element_typtype")?;
        let element = element.unwrap_or_default();
        let element_kind = kind_of(
            &element,
            element_typtype.as_deref().unwrap_or(""),
            -1,
            labels,
        );
        match element_kind {
            Kind::Unsupported(_) | Kind::Array(_) => Kind::Unsupported(sql_type.clone()),
            kind => Kind::Array(Box::new(kind)),
        }
    } else {
        match kind_of(&base, &typtype, typmod, labels) {
            Kind::Unsupported(_) => Kind::Unsupported(sql_type.clone()),
            kind => kind,
        }
    };
    let has_stats: bool = row.try_get("has_stats")?;
    let stats = if has_stats {
        Some(ColumnStats {
            null_frac: row.try_get::<Option<f64>, _>("null_frac")?.unwrap_or(0.0),
            n_distinct: row.try_get::<Option<f64>, _>("n_distinct")?.unwrap_or(0.0),
            most_common_vals: row
                .try_get::<Option<Vec<String>>, _>("mcv")?
                .unwrap_or_default(),
            most_common_freqs: row
                .try_get::<Option<Vec<f64>>, _>("mcf")?
                .unwrap_or_default(),
            histogram_bounds: row
                .try_get::<Option<Vec<String>>, _>("hist")?
                .unwrap_or_default(),
            correlation: row.try_get::<Option<f64>, _>("correlation")?.unwrap_or(0.0),
            avg_width: row.try_get::<Option<i32>, _>("avg_width")?.unwrap_or(8),
        })
    } else {
        None
    };
    Ok(Column {
        name: row.try_get("name")?,
        sql_type,
        kind,
        not_null: row.try_get("not_null")?,
        has_default: row.try_get("has_default")?,
        generated: row.try_get("generated")?,
        stats,
    })
}

/// The kind of a (base, non-array) type by its `pg_type` name.
fn kind_of(name: &str, typtype: &str, typmod: i32, labels: Vec<String>) -> Kind {
    if typtype == "e" {
        return Kind::Enum { labels };
    }
    match name {
        "bool" => Kind::Bool,
        "int2" => Kind::Int { bits: 16 },
        "int4" => Kind::Int { bits: 32 },
        "int8" => Kind::Int { bits: 64 },
        "numeric" => Kind::Numeric {
            // typmod = ((precision << 16) | scale) + 4
            scale: (typmod >= 4).then(|| ((typmod - 4) & 0xffff) as u32),
        },
        "float4" | "float8" => Kind::Float,
        "text" | "citext" | "name" => Kind::Text { max_chars: None },
        "varchar" | "bpchar" => Kind::Text {
            max_chars: (typmod >= 4).then(|| (typmod - 4) as usize),
        },
        "bytea" => Kind::Bytea,
        "date" => Kind::Date,
        "timestamp" => Kind::Timestamp { zone: false },
        "timestamptz" => Kind::Timestamp { zone: true },
        "time" => Kind::Time,
        "uuid" => Kind::Uuid,
        "json" => Kind::Json { binary: false },
        "jsonb" => Kind::Json { binary: true },
        other => Kind::Unsupported(other.to_string()),
    }
}
