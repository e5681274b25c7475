//! The target's own read queries, replayed on a scratch database: the most called
//! read-only statements of the target's `pg_stat_statements` (normalised, `$1` for each
//! constant), each parameter drawn from the generated values of the column it is compared
//! with (`WHERE customer_id = $1`, `IN ($1, $2)`), `LIMIT $n` and `OFFSET $n` given 10 and
//! 0. A statement that is not a plain SELECT of user tables, or with a parameter whose
//! column cannot be found, is not replayed and the reason is kept for the report.

use rand::Rng;
use sqlx::PgConnection;

use crate::migration::sql::last_name;
use pg_query::{NodeEnum, NodeRef};

/// A statement to replay with drawn parameters.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The normalised text, `$n` where each parameter goes.
    pub query: String,
    /// Calls on the target: the statement's weight in the workload.
    pub calls: i64,
    /// Per parameter number (1-based, index 0 unused), the values to draw from.
    params: Vec<Vec<String>>,
}

impl Replay {
    /// The statement with each parameter replaced by a drawn value, as a quoted literal
    /// (untyped, so PostgreSQL gives it the type the comparison needs).
    pub fn statement(&self, rng: &mut impl Rng) -> String {
        let mut sql = self.query.clone();
        // Highest number first: `$1` must not replace the start of `$12`.
        for n in (1..self.params.len()).rev() {
            let values = &self.params[n];
            let value = &values[rng.gen_range(0..values.len())];
            let literal = format!("'{}'", value.replace('\'', "''"));
            sql = sql.replace(&format!("${n}"), &literal);
        }
        sql
    }
}

/// Nothing when pg_stat_statements is installed on the target, else why not.
async fn installed(target: &mut PgConnection) -> Result<(), String> {
    let installed: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')",
    )
    .fetch_one(&mut *target)
    .await
    .map_err(|e| e.to_string())?;
    if installed {
        Ok(())
    } else {
        Err("pg_stat_statements is not installed on the target".to_string())
    }
}

/// The target's `limit` most called SELECTs, with their calls (catalog reads left out, as
/// in [`observed_rate`]: tools', zdm's own); nothing (and why) when `pg_stat_statements`
/// is not installed or not readable.
pub async fn top_queries(
    target: &mut PgConnection,
    limit: i64,
) -> Result<Vec<(String, i64)>, String> {
    installed(target).await?;
    sqlx::query_as(
        "SELECT query, calls::int8 FROM pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND query ~* '^\\s*select' AND query !~* '(\\mpg_[a-z_]+|information_schema)' \
         ORDER BY calls DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&mut *target)
    .await
    .map_err(|e| format!("cannot read pg_stat_statements: {e}"))
}

/// The target's rate: its statements (reads and writes of this database, in
/// `pg_stat_statements`) per second since its statistics were last reset
/// (`pg_stat_statements_info.stats_reset`, PostgreSQL 14 and later). Statements that read
/// the catalogs (`pg_…`, `information_schema`: monitoring, tools, zdm itself) are not the
/// application's and are left out. Returns the calls and the window in seconds; the rate
/// is their ratio. Nothing (and why) when it cannot be read.
pub async fn observed_rate(target: &mut PgConnection) -> Result<(f64, f64), String> {
    installed(target).await?;
    sqlx::query_as(
        "SELECT (SELECT coalesce(sum(calls), 0)::float8 FROM pg_stat_statements \
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND query ~* '^\\s*(select|insert|update|delete|with)' \
                 AND query !~* '(\\mpg_[a-z_]+|information_schema)'), \
                extract(epoch FROM now() - stats_reset)::float8 \
         FROM pg_stat_statements_info",
    )
    .fetch_one(&mut *target)
    .await
    .map_err(|e| format!("cannot read pg_stat_statements_info (PostgreSQL 14 or later): {e}"))
}

/// How many generated values of a column a parameter draws from.
const SAMPLE: i64 = 200;

/// The queries that can be replayed on `scratch`, and for the others why not.
pub async fn prepare(
    scratch: &mut PgConnection,
    queries: Vec<(String, i64)>,
) -> (Vec<Replay>, Vec<String>) {
    let mut replays = Vec::new();
    let mut skipped = Vec::new();
    for (query, calls) in queries {
        match prepare_one(scratch, &query, calls).await {
            Ok(replay) => replays.push(replay),
            Err(why) => skipped.push(format!("{}: {why}", shorten(&query))),
        }
    }
    (replays, skipped)
}

/// The first line of a statement, at most 80 characters, for the report.
pub fn shorten(query: &str) -> String {
    let line = query.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

async fn prepare_one(
    scratch: &mut PgConnection,
    query: &str,
    calls: i64,
) -> Result<Replay, String> {
    let parsed = pg_query::parse(query, pg_query::ParserOptions::DEFAULT)
        .map_err(|e| format!("does not parse: {e}"))?;
    let statements = &parsed.protobuf.stmts;
    let [statement] = statements.as_slice() else {
        return Err("not a single statement".into());
    };
    let Some(NodeEnum::SelectStmt(select)) = statement.stmt.as_ref().and_then(|s| s.node.as_ref())
    else {
        return Err("not a SELECT".into());
    };
    if !select.locking_clause.is_empty() || select.into_clause.is_some() {
        return Err("locks or writes rows (FOR UPDATE, INTO)".into());
    }
    let nodes = parsed.protobuf.nodes();
    let mut relations: Vec<String> = Vec::new();
    let mut compared: Vec<(i32, String)> = Vec::new();
    let mut limits: Vec<(i32, &str)> = Vec::new();
    let param = |node: &Option<Box<pg_query::protobuf::Node>>| match node.as_deref() {
        Some(pg_query::protobuf::Node {
            node: Some(NodeEnum::ParamRef(p)),
        }) => Some(p.number),
        _ => None,
    };
    for (node, ..) in &nodes {
        match node {
            NodeRef::RangeVar(range) => {
                if matches!(
                    range.schemaname.as_str(),
                    "pg_catalog" | "information_schema" | "zdm"
                ) || range.relname.starts_with("pg_")
                {
                    return Err(format!("reads {}, not a user table", range.relname));
                }
                relations.push(range.relname.clone());
            }
            NodeRef::SelectStmt(s) => {
                if let Some(n) = param(&s.limit_count) {
                    limits.push((n, "10"));
                }
                if let Some(n) = param(&s.limit_offset) {
                    limits.push((n, "0"));
                }
            }
            NodeRef::AExpr(e) => {
                let column = |node: &Option<Box<pg_query::protobuf::Node>>| match node
                    .as_deref()
                    .and_then(|n| n.node.as_ref())
                {
                    Some(NodeEnum::ColumnRef(_)) => node.as_deref().map(last_name),
                    _ => None,
                };
                let sides = [(&e.lexpr, &e.rexpr), (&e.rexpr, &e.lexpr)];
                for (col, other) in sides {
                    let Some(name) = column(col) else { continue };
                    if let Some(n) = param(other) {
                        compared.push((n, name.clone()));
                    }
                    // `col IN ($1, $2)`: the right side is a list of parameters.
                    if let Some(NodeEnum::List(list)) =
                        other.as_deref().and_then(|n| n.node.as_ref())
                    {
                        for item in &list.items {
                            if let Some(NodeEnum::ParamRef(p)) = item.node.as_ref() {
                                compared.push((p.number, name.clone()));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if relations.is_empty() {
        return Err("reads no table".into());
    }
    let highest = nodes
        .iter()
        .filter_map(|(node, ..)| match node {
            NodeRef::ParamRef(p) => Some(p.number),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let mut params: Vec<Vec<String>> = vec![Vec::new(); highest as usize + 1];
    for (n, value) in limits {
        params[n as usize] = vec![value.to_string()];
    }
    for (n, column) in compared {
        if !params[n as usize].is_empty() {
            continue;
        }
        params[n as usize] = sample(scratch, &relations, &column).await?;
    }
    if let Some(n) = (1..params.len()).find(|n| params[*n].is_empty()) {
        return Err(format!(
            "parameter ${n} is compared with no column of its tables"
        ));
    }
    // It must run on the scratch database as it would on the target.
    let replay = Replay {
        query: query.to_string(),
        calls,
        params,
    };
    let statement = replay.statement(&mut rand::thread_rng());
    sqlx::raw_sql(&format!("EXPLAIN {statement}"))
        .execute(&mut *scratch)
        .await
        .map_err(|e| format!("does not run on the scratch database: {e}"))?;
    Ok(replay)
}

/// Up to [`SAMPLE`] generated values of `column` in the first of `relations` that has it.
async fn sample(
    scratch: &mut PgConnection,
    relations: &[String],
    column: &str,
) -> Result<Vec<String>, String> {
    let table: Option<String> = sqlx::query_scalar(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid \
         WHERE c.relname = ANY ($1) AND a.attname = $2 AND NOT a.attisdropped \
         AND c.relkind IN ('r', 'p', 'v', 'm') AND c.relnamespace::regnamespace::text \
         NOT IN ('pg_catalog', 'information_schema', 'zdm') LIMIT 1",
    )
    .bind(relations.to_vec())
    .bind(column)
    .fetch_optional(&mut *scratch)
    .await
    .map_err(|e| e.to_string())?;
    let Some(table) = table else {
        return Err(format!("no table of the query has a column {column}"));
    };
    let column = crate::db::quote_ident(column);
    // A sample of pages, not a scan: the scratch table may have production's size.
    let sql = |from: &str| {
        format!(
            "SELECT DISTINCT {column}::text FROM {from} WHERE {column} IS NOT NULL LIMIT {SAMPLE}"
        )
    };
    let mut values: Vec<String> =
        sqlx::query_scalar(&sql(&format!("{table} TABLESAMPLE SYSTEM (5)")))
            .fetch_all(&mut *scratch)
            .await
            .unwrap_or_default();
    if values.is_empty() {
        values = sqlx::query_scalar(&sql(&table))
            .fetch_all(&mut *scratch)
            .await
            .map_err(|e| e.to_string())?;
    }
    if values.is_empty() {
        return Err(format!("{table}.{column} has no generated values"));
    }
    Ok(values)
}
