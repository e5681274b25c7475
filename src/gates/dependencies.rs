//! Gate "dependencies": nothing but zdm's own objects depends on what contract drops.
//! Read from pg_depend: views, functions (SQL-standard bodies), triggers, foreign keys of
//! other tables and row-level policies over a dropped table, column, index or constraint's
//! index, or over a view of the old version schema. Left out, because they are no
//! blocker: objects zdm manages (version schemas' views and functions, `_zdm*` triggers
//! and constraints); what PostgreSQL drops together with the dropped table or column
//! itself (the table's own indexes, including those over the dropped column, its own
//! constraints, defaults, rules, extended statistics and owned sequences); and what this
//! same contract drops too (a dropped foreign key, a constraint or table dropped with it).
//! A foreign key's own `conindid` is the referenced table's index, not the key's: only
//! primary key, unique and exclusion constraints take an index with them.

use futures::future::BoxFuture;

use super::{unknown_because, Context, Gate, GateReport, Observation, Verdict};

pub struct NothingDepends;

/// Objects in a version schema, or named `_zdm…`, are zdm's own. `$1..$3` are the dropped
/// objects (relation, column or '', a description); `$4, $5` the dropped constraints
/// (table, name), which are no blocker of each other.
const FIND: &str = "
WITH target AS (
    SELECT to_regclass(t.rel) AS rel, t.col, t.what
      FROM unnest($1::text[], $2::text[], $3::text[]) AS t(rel, col, what)
), dropped_table AS (
    SELECT rel FROM target WHERE col = '' AND what LIKE 'table %' AND rel IS NOT NULL
), dropped_constraint AS (
    SELECT c.oid
      FROM unnest($4::text[], $5::text[]) AS t(rel, name)
      JOIN pg_constraint c ON c.conrelid = to_regclass(t.rel) AND c.conname = t.name
), zdm_schema AS (
    SELECT oid FROM pg_namespace
     WHERE obj_description(oid, 'pg_namespace') LIKE 'zdm version schema; base=%'
), refs AS (
    SELECT tg.what, tg.rel, tg.col, d.classid, d.objid, d.objsubid, d.deptype
      FROM target tg
      JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = tg.rel
     WHERE tg.rel IS NOT NULL AND d.deptype IN ('n', 'a')
       AND (tg.col = '' OR d.refobjsubid = (SELECT attnum FROM pg_attribute
                                             WHERE attrelid = tg.rel AND attname = tg.col))
), described AS (
    SELECT r.what, r.rel, r.col, r.classid, r.objid,
           pg_describe_object(r.classid, r.objid, r.objsubid) AS object,
           CASE r.classid
             WHEN 'pg_rewrite'::regclass THEN (SELECT ev_class FROM pg_rewrite WHERE oid = r.objid)
             WHEN 'pg_constraint'::regclass THEN (SELECT conrelid FROM pg_constraint WHERE oid = r.objid)
             WHEN 'pg_trigger'::regclass THEN (SELECT tgrelid FROM pg_trigger WHERE oid = r.objid)
             WHEN 'pg_policy'::regclass THEN (SELECT polrelid FROM pg_policy WHERE oid = r.objid)
             WHEN 'pg_attrdef'::regclass THEN (SELECT adrelid FROM pg_attrdef WHERE oid = r.objid)
             WHEN 'pg_statistic_ext'::regclass THEN (SELECT stxrelid FROM pg_statistic_ext WHERE oid = r.objid)
             -- An index belongs to its table; a sequence owned by a column (auto) to the
             -- column's table: both go with it.
             WHEN 'pg_class'::regclass THEN coalesce(
               (SELECT indrelid FROM pg_index WHERE indexrelid = r.objid),
               (SELECT r.rel FROM pg_class s WHERE s.oid = r.objid AND s.relkind = 'S' AND r.deptype = 'a'),
               r.objid)
           END AS owner,
           CASE r.classid
             WHEN 'pg_constraint'::regclass THEN (SELECT conname::text FROM pg_constraint WHERE oid = r.objid)
             WHEN 'pg_trigger'::regclass THEN (SELECT tgname::text FROM pg_trigger WHERE oid = r.objid)
             ELSE ''
           END AS own_name,
           CASE r.classid
             WHEN 'pg_proc'::regclass THEN (SELECT pronamespace FROM pg_proc WHERE oid = r.objid)
           END AS function_schema
      FROM refs r
)
SELECT DISTINCT what, object
  FROM described d
 WHERE coalesce(own_name, '') NOT LIKE '\\_zdm%'
   AND (function_schema IS NULL OR function_schema NOT IN (SELECT oid FROM zdm_schema))
   AND (owner IS NULL OR (SELECT relnamespace FROM pg_class WHERE oid = d.owner)
                         NOT IN (SELECT oid FROM zdm_schema))
   -- what lives on the dropped table goes with it (indexes, its own constraints, defaults,
   -- its rules, statistics); so do the table's indexes and constraints over a dropped
   -- column. A trigger or policy over a dropped column is still reported.
   AND NOT (owner = rel AND (col = '' OR classid IN ('pg_class'::regclass,
                                                     'pg_constraint'::regclass,
                                                     'pg_attrdef'::regclass,
                                                     'pg_rewrite'::regclass,
                                                     'pg_statistic_ext'::regclass)))
   -- what this contract drops as well is no blocker.
   AND (owner IS NULL OR owner NOT IN (SELECT rel FROM dropped_table))
   AND NOT (classid = 'pg_constraint'::regclass AND objid IN (SELECT oid FROM dropped_constraint))
 ORDER BY 1, 2";

impl Gate for NothingDepends {
    fn name(&self) -> &'static str {
        "dependencies"
    }

    fn title(&self) -> &'static str {
        "nothing but zdm's own objects depends on what contract drops"
    }

    fn judge<'a>(&'a self, ctx: &'a mut Context, _: Observation) -> BoxFuture<'a, GateReport> {
        Box::pin(async move {
            let (mut rels, mut cols, mut whats) = (Vec::new(), Vec::new(), Vec::new());
            let drops = &ctx.drops;
            for table in &drops.tables {
                rels.push(table.quoted());
                cols.push(String::new());
                whats.push(format!("table {table}"));
            }
            for column in &drops.columns {
                rels.push(column.table.quoted());
                cols.push(column.column.clone());
                whats.push(format!("column {}.{}", column.table, column.column));
            }
            for index in &drops.indexes {
                rels.push(format!(
                    "{}.{}",
                    crate::db::quote_ident(&index.table.schema),
                    crate::db::quote_ident(&index.index)
                ));
                cols.push(String::new());
                whats.push(format!("index {}.{}", index.table.schema, index.index));
            }
            // A dropped unique, primary key or exclusion constraint takes its index, which
            // other tables' foreign keys depend on. A foreign key's `conindid` is the
            // referenced table's index: dropping the key leaves it.
            let (mut constraint_tables, mut constraint_names) = (Vec::new(), Vec::new());
            for constraint in &drops.constraints {
                constraint_tables.push(constraint.table.quoted());
                constraint_names.push(constraint.constraint.clone());
            }
            for constraint in &drops.constraints {
                let index: Result<Option<String>, sqlx::Error> = sqlx::query_scalar(
                    "SELECT quote_ident(n.nspname) || '.' || quote_ident(i.relname) \
                       FROM pg_constraint c JOIN pg_class i ON i.oid = c.conindid \
                       JOIN pg_namespace n ON n.oid = i.relnamespace \
                      WHERE c.conrelid = to_regclass($1) AND c.conname = $2 \
                        AND c.contype IN ('p', 'u', 'x')",
                )
                .bind(constraint.table.quoted())
                .bind(&constraint.constraint)
                .fetch_optional(&mut ctx.conn)
                .await;
                match index {
                    Ok(Some(index)) => {
                        rels.push(index);
                        cols.push(String::new());
                        whats.push(format!(
                            "constraint {} of {}",
                            constraint.constraint, constraint.table
                        ));
                    }
                    Ok(None) => {}
                    Err(error) => {
                        return unknown_because(self, "reading the dropped constraints", &error)
                    }
                }
            }
            // The old version schema's views go at contract: what else depends on them?
            let views: Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(
                "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) \
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                  WHERE n.nspname = ANY($1) ORDER BY 1",
            )
            .bind(&drops.schemas)
            .fetch_all(&mut ctx.conn)
            .await;
            match views {
                Ok(views) => {
                    for view in views {
                        whats.push(format!("old version view {view}"));
                        rels.push(view);
                        cols.push(String::new());
                    }
                }
                Err(error) => {
                    return unknown_because(self, "listing the old version's views", &error)
                }
            }
            if rels.is_empty() {
                return super::judged(
                    self,
                    Verdict::Pass,
                    vec!["contract drops no table, column, index or version schema".to_string()],
                );
            }
            let found: Result<Vec<(String, String)>, sqlx::Error> = sqlx::query_as(FIND)
                .bind(&rels)
                .bind(&cols)
                .bind(&whats)
                .bind(&constraint_tables)
                .bind(&constraint_names)
                .fetch_all(&mut ctx.conn)
                .await;
            match found {
                Err(error) => unknown_because(self, "reading pg_depend", &error),
                Ok(rows) if rows.is_empty() => super::judged(
                    self,
                    Verdict::Pass,
                    vec![format!(
                        "no view, function, trigger, foreign key or policy depends on: {}",
                        whats.join(", ")
                    )],
                ),
                Ok(rows) => super::judged(
                    self,
                    Verdict::Fail,
                    rows.into_iter()
                        .map(|(what, object)| {
                            format!("{object} depends on {what}: drop or change it first")
                        })
                        .collect(),
                ),
            }
        })
    }
}
