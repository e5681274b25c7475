//! Gate "dependencies": nothing but zdm's own objects depends on what contract drops.
//! Read from pg_depend: views, functions (SQL-standard bodies), triggers, foreign keys of
//! other tables and row-level policies over a dropped table, column, index or constraint's
//! index, or over a view of the old version schema. Left out, because they are no
//! blocker: objects zdm manages (version schemas' views and functions, `_zdm*` triggers
//! and constraints); what PostgreSQL drops together with the dropped table or column
//! itself (the table's own indexes, including those over the dropped column, its own
//! constraints, defaults, rules, extended statistics and owned sequences); and what this
//! same contract drops too (a dropped foreign key, a constraint or table dropped with it,
//! an application view it drops and recreates over the final shape: `plan::app_views`).
//! A foreign key's own `conindid` is the referenced table's index, not the key's: only
//! primary key, unique and exclusion constraints take an index with them.
//!
//! A type contract drops (drop_enum) is looked up the same way, from the type and its
//! array type: a column of any table, a view, a function's argument or return type or
//! SQL-standard body, a domain, another type (a composite's attribute, a range), a
//! default, check or index expression. PL/pgSQL and SQL bodies are not in pg_depend
//! (PostgreSQL lets `DROP TYPE` break them silently): their text is read with
//! PostgreSQL's own lexer for a cast to the type or a variable declared of it. Left out:
//! what this contract drops first (a column, with what goes with it, or a table) and
//! zdm's own objects.

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
   -- an application view contract drops and recreates over the final shape
   AND NOT (classid = 'pg_rewrite'::regclass
            AND owner IN (SELECT to_regclass(v) FROM unnest($6::text[]) AS v))
 ORDER BY 1, 2";

/// Who uses a type contract drops. `$1, $2`: the types (`regtype` input, label); `$3, $4`
/// the dropped columns (relation, column); `$5` the dropped tables.
const TYPE_USERS: &str = "
WITH dropped AS (
    SELECT t.oid, t.typarray, d.label
      FROM unnest($1::text[], $2::text[]) AS d(name, label)
      JOIN pg_type t ON t.oid = to_regtype(d.name)
), used AS (
    SELECT oid, label FROM dropped
    UNION ALL SELECT typarray, label FROM dropped WHERE typarray <> 0
), dropped_column AS (
    SELECT a.attrelid AS rel, a.attnum
      FROM unnest($3::text[], $4::text[]) AS t(rel, col)
      JOIN pg_attribute a ON a.attrelid = to_regclass(t.rel) AND a.attname = t.col
), dropped_table AS (
    SELECT to_regclass(t.rel) AS rel FROM unnest($5::text[]) AS t(rel)
), zdm_schema AS (
    SELECT oid FROM pg_namespace
     WHERE obj_description(oid, 'pg_namespace') LIKE 'zdm version schema; base=%'
), refs AS (
    SELECT DISTINCT u.label, d.classid, d.objid, d.objsubid
      FROM used u
      JOIN pg_depend d ON d.refclassid = 'pg_type'::regclass AND d.refobjid = u.oid
     WHERE d.deptype = 'n'
), owned AS (
    SELECT r.*,
           CASE r.classid
             WHEN 'pg_class'::regclass THEN coalesce(
               (SELECT indrelid FROM pg_index WHERE indexrelid = r.objid), r.objid)
             WHEN 'pg_rewrite'::regclass THEN (SELECT ev_class FROM pg_rewrite WHERE oid = r.objid)
             WHEN 'pg_attrdef'::regclass THEN (SELECT adrelid FROM pg_attrdef WHERE oid = r.objid)
             WHEN 'pg_constraint'::regclass THEN (SELECT nullif(conrelid, 0) FROM pg_constraint WHERE oid = r.objid)
             WHEN 'pg_trigger'::regclass THEN (SELECT tgrelid FROM pg_trigger WHERE oid = r.objid)
             WHEN 'pg_policy'::regclass THEN (SELECT polrelid FROM pg_policy WHERE oid = r.objid)
             WHEN 'pg_statistic_ext'::regclass THEN (SELECT stxrelid FROM pg_statistic_ext WHERE oid = r.objid)
           END AS rel,
           CASE r.classid
             WHEN 'pg_proc'::regclass THEN (SELECT pronamespace FROM pg_proc WHERE oid = r.objid)
             WHEN 'pg_type'::regclass THEN (SELECT typnamespace FROM pg_type WHERE oid = r.objid)
           END AS namespace,
           CASE r.classid
             WHEN 'pg_proc'::regclass THEN (SELECT proname::text FROM pg_proc WHERE oid = r.objid)
             WHEN 'pg_constraint'::regclass THEN (SELECT conname::text FROM pg_constraint WHERE oid = r.objid)
             WHEN 'pg_trigger'::regclass THEN (SELECT tgname::text FROM pg_trigger WHERE oid = r.objid)
             WHEN 'pg_class'::regclass THEN (SELECT attname::text FROM pg_attribute
                                              WHERE attrelid = r.objid AND attnum = r.objsubid)
           END AS own_name
      FROM refs r
)
SELECT DISTINCT o.label,
       CASE
         WHEN o.classid = 'pg_class'::regclass AND o.objsubid > 0 THEN
           CASE c.relkind
             WHEN 'c' THEN 'type ' || n.nspname || '.' || c.relname || ' (attribute ' || o.own_name || ')'
             WHEN 'v' THEN 'view ' || n.nspname || '.' || c.relname || ' (column ' || o.own_name || ')'
             WHEN 'm' THEN 'materialized view ' || n.nspname || '.' || c.relname || ' (column ' || o.own_name || ')'
             ELSE 'column ' || n.nspname || '.' || c.relname || '.' || o.own_name
           END
         WHEN o.classid = 'pg_rewrite'::regclass THEN
           CASE c.relkind WHEN 'm' THEN 'materialized view ' ELSE 'view ' END
             || n.nspname || '.' || c.relname
         WHEN o.classid = 'pg_proc'::regclass THEN
           (SELECT CASE p.prokind WHEN 'p' THEN 'procedure ' ELSE 'function ' END
                   || pn.nspname || '.' || p.proname
                   || '(' || pg_get_function_identity_arguments(p.oid) || ')'
              FROM pg_proc p JOIN pg_namespace pn ON pn.oid = p.pronamespace WHERE p.oid = o.objid)
         WHEN o.classid = 'pg_type'::regclass THEN
           (SELECT CASE t.typtype WHEN 'd' THEN 'domain ' ELSE 'type ' END || tn.nspname || '.' || t.typname
              FROM pg_type t JOIN pg_namespace tn ON tn.oid = t.typnamespace WHERE t.oid = o.objid)
         ELSE pg_describe_object(o.classid, o.objid, o.objsubid)
       END AS object
  FROM owned o
  LEFT JOIN pg_class c ON c.oid = o.rel
  LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE coalesce(o.own_name, '') NOT LIKE '\\_zdm%'
   AND (o.namespace IS NULL OR o.namespace NOT IN (SELECT oid FROM zdm_schema))
   AND (c.oid IS NULL OR c.relnamespace NOT IN (SELECT oid FROM zdm_schema))
   -- an array type is the type's own (it goes with it)
   AND NOT (o.classid = 'pg_type'::regclass
            AND o.objid IN (SELECT typarray FROM dropped))
   -- what this contract drops first is no user by then: a dropped table, a dropped column
   -- and what PostgreSQL drops with it (its default, an index or check over it)
   AND (o.rel IS NULL OR o.rel NOT IN (SELECT rel FROM dropped_table WHERE rel IS NOT NULL))
   AND NOT (o.classid = 'pg_class'::regclass AND o.objsubid > 0
            AND (o.objid, o.objsubid::int2) IN (SELECT rel, attnum FROM dropped_column))
   AND NOT EXISTS (SELECT 1 FROM pg_depend x
                    WHERE x.classid = o.classid AND x.objid = o.objid AND x.deptype = 'a'
                      AND x.refclassid = 'pg_class'::regclass
                      AND (x.refobjid, x.refobjsubid::int2) IN (SELECT rel, attnum FROM dropped_column))
 ORDER BY 1, 2";

/// Functions written in SQL or PL/pgSQL whose body (not in pg_depend) may name a type
/// contract drops: each one's label, language and source, for `crate::plan::sql_uses_type`.
const BODIES: &str = "
SELECT CASE p.prokind WHEN 'p' THEN 'procedure ' ELSE 'function ' END
       || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       l.lanname::text, p.prosrc
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_language l ON l.oid = p.prolang
 WHERE l.lanname IN ('sql', 'plpgsql') AND p.prosqlbody IS NULL
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'zdm')
   AND coalesce(obj_description(n.oid, 'pg_namespace'), '') NOT LIKE 'zdm version schema; base=%'
   AND p.proname NOT LIKE '\\_zdm%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                                                AND d.objid = p.oid AND d.deptype = 'e')
   AND p.prosrc ILIKE ANY ($1::text[])
 ORDER BY 1";

/// What still uses a type contract drops, as gate evidence (`column public.orders.priority
/// uses type order_priority: …`).
async fn type_users(ctx: &mut Context) -> Result<Vec<String>, sqlx::Error> {
    let drops = &ctx.drops;
    if drops.types.is_empty() {
        return Ok(Vec::new());
    }
    let label = |t: &crate::db::catalog::QualifiedName| {
        if t.schema == ctx.base_schema {
            t.name.clone()
        } else {
            t.to_string()
        }
    };
    let names: Vec<String> = drops.types.iter().map(|t| t.quoted()).collect();
    let labels: Vec<String> = drops.types.iter().map(label).collect();
    let columns: Vec<String> = drops.columns.iter().map(|c| c.table.quoted()).collect();
    let column_names: Vec<String> = drops.columns.iter().map(|c| c.column.clone()).collect();
    let tables: Vec<String> = drops.tables.iter().map(|t| t.quoted()).collect();
    let mut found: std::collections::BTreeSet<(String, String)> = sqlx::query_as(TYPE_USERS)
        .bind(&names)
        .bind(&labels)
        .bind(&columns)
        .bind(&column_names)
        .bind(&tables)
        .fetch_all(&mut ctx.conn)
        .await?
        .into_iter()
        .collect();
    let patterns: Vec<String> = drops
        .types
        .iter()
        .map(|t| {
            format!(
                "%{}%",
                t.name
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            )
        })
        .collect();
    let bodies: Vec<(String, String, String)> = sqlx::query_as(BODIES)
        .bind(&patterns)
        .fetch_all(&mut ctx.conn)
        .await?;
    for (function, language, source) in bodies {
        for (dropped, label) in drops.types.iter().zip(&labels) {
            if crate::plan::sql_uses_type(
                &source,
                language == "plpgsql",
                &dropped.schema,
                &dropped.name,
            ) {
                found.insert((label.clone(), format!("{function} (in its body)")));
            }
        }
    }
    Ok(found
        .into_iter()
        .map(|(label, object)| {
            format!(
                "{object} uses type {label}: drop it or change it to another type first (drop_enum runs at contract)"
            )
        })
        .collect())
}

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
            let type_users = match type_users(ctx).await {
                Ok(found) => found,
                Err(error) => {
                    return unknown_because(self, "reading what uses the dropped types", &error)
                }
            };
            for dropped in &ctx.drops.types {
                whats.push(format!("type {dropped}"));
            }
            if rels.is_empty() && type_users.is_empty() {
                return super::judged(
                    self,
                    Verdict::Pass,
                    vec![
                        "contract drops no table, column, index, type or version schema"
                            .to_string(),
                    ],
                );
            }
            let recreated: Vec<String> = ctx
                .drops
                .recreated_views
                .iter()
                .map(|v| v.quoted())
                .collect();
            let found: Result<Vec<(String, String)>, sqlx::Error> = if rels.is_empty() {
                Ok(Vec::new())
            } else {
                sqlx::query_as(FIND)
                    .bind(&rels)
                    .bind(&cols)
                    .bind(&whats[..rels.len()])
                    .bind(&constraint_tables)
                    .bind(&constraint_names)
                    .bind(&recreated)
                    .fetch_all(&mut ctx.conn)
                    .await
            };
            match found {
                Err(error) => unknown_because(self, "reading pg_depend", &error),
                Ok(rows) if rows.is_empty() && type_users.is_empty() => super::judged(
                    self,
                    Verdict::Pass,
                    vec![format!(
                        "no view, function, trigger, foreign key, policy, column or type depends on: {}",
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
                        .chain(type_users)
                        .collect(),
                ),
            }
        })
    }
}
