//! EXPLAIN against indexes that do not exist yet, or that are hidden, with the `hypopg`
//! extension: before hours are spent building an index (`zdm plan` of a create_index), and
//! before an index is dropped (the indexes-unused gate). Nothing is built or dropped:
//! hypopg's hypothetical and hidden indexes live in this session's memory only and are
//! reset after each use; queries are planned, never executed (EXPLAIN without ANALYZE, in
//! a read-only transaction rolled back, 5 s statement timeout).
//!
//! The queries are the migration's `[[verify]]` ones and the most frequent statements
//! pg_stat_statements counted on the table. Their texts carry `$1`-style parameters where
//! the application passed values: they are prepared and explained as the generic plan
//! (`plan_cache_mode = force_generic_plan`), which does not depend on the values.
//!
//! Without hypopg every check here says "not available" with what to install, and judges
//! nothing: the other gates still run, and no gate fails for a missing extension.

use serde_json::Value;
use sqlx::{Connection, PgConnection};

use super::matching::identifiers;
use super::old_version::one_line;
use crate::db::quote_ident;

/// A rise of the plan's total cost past this factor, without the index, is a worse plan…
pub const COST_FACTOR: f64 = 3.0;
/// …unless the plan stays this cheap (the planner's units: a few pages' reads).
pub const MIN_COST: f64 = 100.0;
/// How many of the table's most frequent statements are explained.
pub const TOP_STATEMENTS: i64 = 5;

/// Why hypopg cannot be used here, in words with what to do; `None` when it can.
pub async fn unavailable(conn: &mut PgConnection) -> Result<Option<String>, sqlx::Error> {
    let (version, created, available, database): (i32, bool, bool, String) = sqlx::query_as(
        "SELECT current_setting('server_version_num')::int, \
                EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'hypopg'), \
                EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg'), \
                current_database()::text",
    )
    .fetch_one(conn)
    .await?;
    Ok(match (created, available) {
        (true, _) => None,
        (false, true) => Some(format!(
            "not available: the hypopg extension is not created in database {database}: run \
             `CREATE EXTENSION hypopg;` there"
        )),
        (false, false) => Some(format!(
            "not available: install postgresql-{}-hypopg on the database server, then run \
             `CREATE EXTENSION hypopg;` in database {database}",
            version / 10000
        )),
    })
}

/// A plan in a few words, with what the checks compare.
#[derive(Debug, Clone, PartialEq)]
pub struct Costed {
    /// "Index Scan using x on t", depth first.
    pub nodes: Vec<String>,
    pub indexes: Vec<String>,
    /// Tables read with a sequential scan.
    pub seq_scans: Vec<String>,
    /// Each index used, with the conditions its node shows (`Index Cond`, `Recheck
    /// Cond`, `Filter`), as PostgreSQL prints them.
    pub conditions: Vec<(String, String)>,
    pub cost: f64,
}

impl Costed {
    /// `Index Scan using items_code_idx on items (cost 8.3)`.
    pub fn describe(&self) -> String {
        format!("{} (cost {:.1})", self.nodes.join(" → "), self.cost)
    }

    /// Whether the plan uses `index` (hypopg names a hypothetical one `<oid>btree_…`).
    pub fn uses(&self, index: &str) -> bool {
        self.indexes.iter().any(|i| i == index)
    }
}

/// Reads an EXPLAIN (FORMAT JSON) result.
pub fn costed(plan: &Value) -> Costed {
    let mut out = Costed {
        nodes: Vec::new(),
        indexes: Vec::new(),
        seq_scans: Vec::new(),
        conditions: Vec::new(),
        cost: 0.0,
    };
    if let Some(root) = plan.get(0).and_then(|p| p.get("Plan")) {
        out.cost = root
            .get("Total Cost")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        walk(root, &mut out);
    }
    out
}

fn walk(node: &Value, out: &mut Costed) {
    let kind = node.get("Node Type").and_then(Value::as_str).unwrap_or("?");
    let mut text = kind.to_string();
    if let Some(index) = node.get("Index Name").and_then(Value::as_str) {
        text.push_str(&format!(" using {index}"));
        out.indexes.push(index.to_string());
        let conditions: Vec<&str> = ["Index Cond", "Recheck Cond", "Filter"]
            .iter()
            .filter_map(|key| node.get(*key).and_then(Value::as_str))
            .collect();
        out.conditions
            .push((index.to_string(), conditions.join(" AND ")));
    }
    if let Some(relation) = node.get("Relation Name").and_then(Value::as_str) {
        text.push_str(&format!(" on {relation}"));
        if kind == "Seq Scan" {
            out.seq_scans.push(relation.to_string());
        }
    }
    out.nodes.push(text);
    if let Some(children) = node.get("Plans").and_then(Value::as_array) {
        for child in children {
            walk(child, out);
        }
    }
}

/// The highest `$n` parameter in `sql` (0: none), outside literals and comments only
/// roughly: a `$1` inside a string literal makes PREPARE infer one parameter too many,
/// which it refuses, and the query is then said not to plan.
fn parameters(sql: &str) -> usize {
    let bytes = sql.as_bytes();
    let mut highest = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let digits: String = sql[i + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(n) = digits.parse::<usize>() {
                highest = highest.max(n);
            }
            i += 1 + digits.len();
        } else {
            i += 1;
        }
    }
    highest
}

/// How a query is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paths {
    /// As the planner chooses.
    All,
    /// Without any index path (`enable_indexscan`, `enable_indexonlyscan`,
    /// `enable_bitmapscan` off): the plan of a table with no usable index.
    NoIndexes,
}

/// Plans `sql` with `search_path` (when given), in a read-only transaction rolled back;
/// a text with parameters is planned generically through a prepared statement.
pub async fn explain(
    conn: &mut PgConnection,
    search_path: Option<&str>,
    sql: &str,
) -> Result<Costed, sqlx::Error> {
    explain_with(conn, search_path, sql, Paths::All).await
}

/// [`explain`], with the index paths `paths` allows.
pub async fn explain_with(
    conn: &mut PgConnection,
    search_path: Option<&str>,
    sql: &str,
    paths: Paths,
) -> Result<Costed, sqlx::Error> {
    let count = parameters(sql);
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await?;
    if let Some(schema) = search_path {
        sqlx::query(&format!("SET LOCAL search_path TO {}", quote_ident(schema)))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("SET LOCAL statement_timeout = '5s'")
        .execute(&mut *tx)
        .await?;
    if paths == Paths::NoIndexes {
        for setting in [
            "enable_indexscan",
            "enable_indexonlyscan",
            "enable_bitmapscan",
        ] {
            sqlx::query(&format!("SET LOCAL {setting} = off"))
                .execute(&mut *tx)
                .await?;
        }
    }
    let plan: Result<Value, sqlx::Error> = if count == 0 {
        // One statement only (a prepared statement): nothing can be appended to the query.
        sqlx::query_scalar(&format!("EXPLAIN (FORMAT JSON) {sql}"))
            .fetch_one(&mut *tx)
            .await
    } else {
        sqlx::query("SET LOCAL plan_cache_mode = force_generic_plan")
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("PREPARE _zdm_hypothetical AS {sql}"))
            .execute(&mut *tx)
            .await?;
        let nulls = vec!["NULL"; count].join(", ");
        let plan = sqlx::query_scalar(&format!(
            "EXPLAIN (FORMAT JSON) EXECUTE _zdm_hypothetical({nulls})"
        ))
        .fetch_one(&mut *tx)
        .await;
        // A prepared statement outlives the transaction: never leave one behind.
        if plan.is_ok() {
            sqlx::query("DEALLOCATE _zdm_hypothetical")
                .execute(&mut *tx)
                .await?;
        }
        plan
    };
    let _ = tx.rollback().await;
    if plan.is_err() && count > 0 {
        // The failed transaction may have prepared it before failing: PREPARE is not
        // undone by a rollback.
        let _ = sqlx::query("DEALLOCATE _zdm_hypothetical")
            .execute(&mut *conn)
            .await;
    }
    Ok(costed(&plan?))
}

/// Creates a hypothetical index from `create` (a `CREATE [UNIQUE] INDEX … ON …` statement,
/// without CONCURRENTLY) and returns the name plans give it.
pub async fn create_hypothetical(
    conn: &mut PgConnection,
    create: &str,
) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT indexname::text FROM hypopg_create_index($1)")
        .bind(create)
        .fetch_one(conn)
        .await
}

/// Forgets every hypothetical index of this session.
pub async fn reset(conn: &mut PgConnection) {
    let _ = sqlx::query("SELECT hypopg_reset()").execute(conn).await;
}

/// Shows every index this session hid again (hypopg 1.4 and later).
pub async fn unhide_all(conn: &mut PgConnection) {
    let _ = sqlx::query("SELECT hypopg_unhide_all_indexes()")
        .execute(conn)
        .await;
}

/// Hides the real index `schema.index` from this session's planner.
pub async fn hide(conn: &mut PgConnection, schema: &str, index: &str) -> Result<(), sqlx::Error> {
    let name = format!("{}.{}", quote_ident(schema), quote_ident(index));
    let hidden: Option<bool> = sqlx::query_scalar("SELECT hypopg_hide_index(to_regclass($1)::oid)")
        .bind(&name)
        .fetch_one(conn)
        .await?;
    if hidden == Some(true) {
        Ok(())
    } else {
        Err(sqlx::Error::RowNotFound)
    }
}

/// Whether this hypopg can hide a real index (`hypopg_hide_index`, hypopg 1.4 and later).
pub async fn can_hide(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'hypopg_hide_index')")
        .fetch_one(conn)
        .await
}

/// The other valid indexes of `schema.index`'s table with their leading column (`None`
/// for an expression): the ones that could stand in for it.
pub async fn other_indexes(
    conn: &mut PgConnection,
    schema: &str,
    index: &str,
) -> Result<Vec<(String, Option<String>)>, sqlx::Error> {
    let name = format!("{}.{}", quote_ident(schema), quote_ident(index));
    sqlx::query_as(
        "SELECT c.relname::text, a.attname::text FROM pg_index i \
           JOIN pg_class c ON c.oid = i.indexrelid \
           LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
          WHERE i.indrelid = (SELECT indrelid FROM pg_index WHERE indexrelid = to_regclass($1)) \
            AND i.indexrelid <> to_regclass($1) AND i.indisvalid \
          ORDER BY 1",
    )
    .bind(&name)
    .fetch_all(conn)
    .await
}

/// The leading column of `schema.index` (`None`: an expression).
pub async fn leading_column(
    conn: &mut PgConnection,
    schema: &str,
    index: &str,
) -> Result<Option<String>, sqlx::Error> {
    let name = format!("{}.{}", quote_ident(schema), quote_ident(index));
    sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i \
           LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
          WHERE i.indexrelid = to_regclass($1)",
    )
    .bind(&name)
    .fetch_optional(conn)
    .await
    .map(Option::flatten)
}

/// Without `hypopg_hide_index`, which other index could serve a query that uses `index`
/// now: one leading with a column the index's conditions name or with the index's own
/// leading column, or an expression index (it might). `None`: none could, so the plan
/// without the index is the plan with no index path at all.
pub fn stand_in(
    with: &Costed,
    index: &str,
    leading: Option<&str>,
    others: &[(String, Option<String>)],
) -> Option<String> {
    let mut columns: Vec<String> = with
        .conditions
        .iter()
        .filter(|(used, _)| used == index)
        .flat_map(|(_, condition)| identifiers(condition))
        .collect();
    columns.extend(leading.map(str::to_string));
    others
        .iter()
        .find(|(_, first)| first.as_ref().is_none_or(|column| columns.contains(column)))
        .map(|(name, _)| name.clone())
}

/// A `CREATE INDEX CONCURRENTLY IF NOT EXISTS …` statement as hypopg takes it: plain
/// `CREATE [UNIQUE] INDEX name ON …`.
pub fn plain_create(sql: &str) -> String {
    let mut words: Vec<&str> = Vec::new();
    let mut rest = sql.trim();
    // Only the head, up to ON: the index's own definition is left as written.
    while let Some((word, tail)) = rest.split_once(char::is_whitespace) {
        if word.eq_ignore_ascii_case("ON") {
            break;
        }
        words.push(word);
        rest = tail.trim_start();
    }
    let mut head: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = words[i];
        if word.eq_ignore_ascii_case("CONCURRENTLY") {
            i += 1;
            continue;
        }
        if word.eq_ignore_ascii_case("IF")
            && words
                .get(i + 1)
                .is_some_and(|w| w.eq_ignore_ascii_case("NOT"))
            && words
                .get(i + 2)
                .is_some_and(|w| w.eq_ignore_ascii_case("EXISTS"))
        {
            i += 3;
            continue;
        }
        head.push(word);
        i += 1;
    }
    format!("{} {}", head.join(" "), rest.trim_end_matches(';'))
}

/// The statements pg_stat_statements counted most often on `table` (by calls) in this
/// database: queries only, not zdm's own, not DDL or maintenance. Empty without the
/// extension (then `Err` says so).
pub async fn frequent_statements(
    conn: &mut PgConnection,
    table: &str,
) -> Result<Vec<(String, i64)>, String> {
    let schema: Option<String> = sqlx::query_scalar(
        "SELECT extnamespace::regnamespace::text FROM pg_extension \
          WHERE extname = 'pg_stat_statements'",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| e.to_string())?;
    let Some(schema) = schema else {
        return Err(
            "pg_stat_statements is not installed in this database: only the \
                    [[verify]] queries were planned"
                .to_string(),
        );
    };
    let sql = format!(
        "SELECT query, calls FROM {schema}.pg_stat_statements \
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
            AND query IS NOT NULL \
          ORDER BY calls DESC LIMIT 500"
    );
    let rows: Vec<(String, i64)> = sqlx::query_as(&sql)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| e.to_string())?;
    let wanted = [table.to_string()];
    let mut out: Vec<(String, i64)> = Vec::new();
    for (query, calls) in rows {
        if out.len() >= usize::try_from(TOP_STATEMENTS).unwrap_or(5) {
            break;
        }
        // The same text counted apart (another user, nested and top-level): once.
        if is_query(&query)
            && !is_zdms(&query)
            && !super::matching::mentioned(&query, &wanted).is_empty()
            && !out.iter().any(|(seen, _)| *seen == query)
        {
            out.push((query, calls));
        }
    }
    Ok(out)
}

/// SELECT, WITH, INSERT, UPDATE, DELETE: what an application's plan is made of.
fn is_query(query: &str) -> bool {
    const FIRST: [&str; 5] = ["select", "with", "insert", "update", "delete"];
    identifiers(query)
        .first()
        .is_some_and(|word| FIRST.contains(&word.as_str()))
}

/// zdm's own statements (its monitor, gates and batches mark or name themselves).
fn is_zdms(query: &str) -> bool {
    query.contains("zdm-monitor")
        || query.contains("_zdm")
        || query.contains("zdm.")
        || query.contains("EXPLAIN")
        || query.contains("pg_stat_")
}

/// How a plan without the index compares with the plan with it, for a query that used
/// it: `Some(why)` when worse (a sequential scan of the index's table where the index was
/// used, or the cost past [`COST_FACTOR`]). Not `exact` (planned with no index path at all,
/// which also slows the other tables of a join): only a sequential scan of the table whose
/// cost rises past the factor counts.
pub fn worse(with: &Costed, without: &Costed, table: &str, exact: bool) -> Option<String> {
    let rose = without.cost > with.cost * COST_FACTOR && without.cost > MIN_COST;
    let new_seq_scan =
        without.seq_scans.iter().any(|t| t == table) && !with.seq_scans.iter().any(|t| t == table);
    if !exact {
        return (new_seq_scan && rose).then(|| {
            format!(
                "would read {table} with a sequential scan (cost {:.1} → {:.1})",
                with.cost, without.cost
            )
        });
    }
    if new_seq_scan {
        return Some(format!(
            "would read {table} with a sequential scan (cost {:.1} → {:.1})",
            with.cost, without.cost
        ));
    }
    if rose {
        return Some(format!(
            "its cost would rise {:.1}× ({:.1} → {:.1})",
            without.cost / with.cost.max(0.01),
            with.cost,
            without.cost
        ));
    }
    None
}

/// A query as evidence names it.
pub fn label(sql: &str) -> String {
    one_line(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_concurrent_build_reads_as_a_plain_create_for_hypopg() {
        assert_eq!(
            plain_create(
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS \"a_idx\" ON \"public\".\"t\" (\"x\") WHERE x > 0;"
            ),
            "CREATE UNIQUE INDEX \"a_idx\" ON \"public\".\"t\" (\"x\") WHERE x > 0"
        );
    }

    #[test]
    fn parameters_are_counted_and_worse_plans_named() {
        assert_eq!(parameters("SELECT 1 WHERE a = $1 AND b = $12"), 12);
        assert_eq!(parameters("SELECT 1"), 0);
        let plan = |seq: bool, cost: f64| Costed {
            nodes: vec![],
            indexes: vec![],
            seq_scans: if seq {
                vec!["items".to_string()]
            } else {
                vec![]
            },
            conditions: vec![],
            cost,
        };
        assert!(worse(&plan(false, 8.0), &plan(true, 1800.0), "items", true)
            .is_some_and(|w| w.contains("sequential scan")));
        assert!(worse(&plan(false, 8.0), &plan(false, 20.0), "items", true).is_none());
        assert!(
            worse(&plan(false, 80.0), &plan(false, 900.0), "items", true)
                .is_some_and(|w| w.contains("rise"))
        );
        // Without hiding: a cheap sequential scan, or a rise elsewhere, is no alarm.
        assert!(worse(&plan(false, 8.0), &plan(true, 20.0), "items", false).is_none());
        assert!(worse(&plan(false, 80.0), &plan(false, 900.0), "items", false).is_none());
        assert!(worse(&plan(false, 8.0), &plan(true, 1800.0), "items", false).is_some());
    }
}
