//! Gate "old-version-unused": nobody still uses what contract removes. Sessions whose
//! current or last query (pg_stat_activity) names the old version schema or a table,
//! column or index that contract drops or renames away; and, with pg_stat_statements,
//! statements naming them that ran during the observation window (calls delta between two
//! snapshots), shown with their text.
//!
//! Left out: a column that split_table moves keeps its name in the new table, so a
//! statement whose every use of that name is of the new table (the new version's
//! `INSERT INTO book_notes (id, notes)`, a join on `n.notes`) is not the old version;
//! a statement that could be reading the old table's column still counts. DDL and
//! maintenance sessions (`CREATE`, `ANALYZE`, ...) are not an application's reads; nor
//! are the statements of zdm's own trigger functions (`_zdm*`, which keep both versions in
//! step and so name the old columns), which pg_stat_statements counts when it tracks
//! nested statements.

use std::collections::HashMap;

use futures::future::BoxFuture;
use sqlx::PgConnection;

use super::matching::{identifiers, mentioned, only_new_home};
use super::{Context, Gate, GateReport, Observation, Verdict};
use crate::plan::ContractDrops;

pub struct OldVersionUnused;

/// How to get pg_stat_statements, for the "unknown" verdict.
pub const ENABLE_PG_STAT_STATEMENTS: &str = "pg_stat_statements is not installed in this \
     database: statements run by the old version cannot be counted. To enable it, add it to \
     shared_preload_libraries in postgresql.conf (shared_preload_libraries = \
     'pg_stat_statements', then restart the server) and run CREATE EXTENSION \
     pg_stat_statements; in this database";

/// A row of pg_stat_activity: pid, user, application, client, state, query.
type Session = (
    i32,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Calls per (queryid, userid), and the texts, from one snapshot.
type Snapshot = HashMap<(i64, String), (i64, String)>;

impl Gate for OldVersionUnused {
    fn name(&self) -> &'static str {
        "old-version-unused"
    }

    fn title(&self) -> &'static str {
        "no session or recent statement uses the old version or what contract drops"
    }

    fn watches(&self) -> bool {
        true
    }

    fn observe<'a>(&'a self, ctx: &'a mut Context) -> BoxFuture<'a, Observation> {
        Box::pin(async move { Box::new(statements(&mut ctx.conn).await) as Observation })
    }

    fn judge<'a>(&'a self, ctx: &'a mut Context, first: Observation) -> BoxFuture<'a, GateReport> {
        Box::pin(async move {
            let names = ctx.drops.vanishing_names();
            if names.is_empty() {
                return super::judged(
                    self,
                    Verdict::Pass,
                    vec![
                        "contract drops or renames nothing an application can name (no old \
                         version schema, table, column or index goes away)"
                            .to_string(),
                    ],
                );
            }
            let mut failures = Vec::new();
            let mut unknown = Vec::new();
            let sessions: Result<Vec<Session>, sqlx::Error> = sqlx::query_as(
                "SELECT pid, usename::text, application_name, client_addr::text, state, query \
                       FROM pg_stat_activity \
                      WHERE datname = current_database() AND pid <> pg_backend_pid() \
                        AND backend_type = 'client backend' \
                        AND application_name NOT LIKE 'zdm pid=%' ORDER BY pid",
            )
            .fetch_all(&mut ctx.conn)
            .await;
            match sessions {
                Ok(rows) => {
                    for (pid, user, app, client, state, query) in rows {
                        let query = query.unwrap_or_default();
                        if is_maintenance(&query) {
                            continue;
                        }
                        let found = old_names(&query, &names, &ctx.drops);
                        if !found.is_empty() {
                            failures.push(format!(
                                "session pid {pid} (user {}, application {:?}, client {}, {}) \
                                 last ran a query naming {}: {}",
                                user.unwrap_or_default(),
                                app.unwrap_or_default(),
                                client.unwrap_or_else(|| "local".to_string()),
                                state.unwrap_or_default(),
                                found.join(", "),
                                one_line(&query)
                            ));
                        }
                    }
                }
                Err(error) => unknown.push(format!("could not read pg_stat_activity: {error}")),
            }
            let first = first.downcast::<Result<Option<Snapshot>, String>>();
            let last = statements(&mut ctx.conn).await;
            let own: Vec<Vec<String>> = match zdm_function_bodies(&mut ctx.conn).await {
                Ok(bodies) => bodies,
                Err(error) => {
                    unknown.push(format!("could not read zdm's trigger functions: {error}"));
                    Vec::new()
                }
            };
            match (first.map(|b| *b), last) {
                (Ok(Ok(Some(before))), Ok(Some(after))) => {
                    for ((queryid, user), (calls, query)) in &after {
                        let earlier = before.get(&(*queryid, user.clone())).map_or(0, |(c, _)| *c);
                        let delta = calls - earlier;
                        if delta <= 0 || own.iter().any(|body| contains_run(body, query)) {
                            continue;
                        }
                        let found = old_names(query, &names, &ctx.drops);
                        if !found.is_empty() {
                            failures.push(format!(
                                "statement run {delta} time(s) during the window by {user}, naming {}: {}",
                                found.join(", "),
                                one_line(query)
                            ));
                        }
                    }
                }
                (_, Ok(None)) | (Ok(Ok(None)), _) => {
                    unknown.push(ENABLE_PG_STAT_STATEMENTS.to_string())
                }
                (Ok(Err(error)), _) | (_, Err(error)) => {
                    unknown.push(format!("could not read pg_stat_statements: {error}"))
                }
                (Err(_), _) => unknown.push("internal: the first snapshot was lost".to_string()),
            }
            let looked_for = format!("looked for: {}", names.join(", "));
            if !failures.is_empty() {
                failures.extend(unknown);
                failures.push(looked_for);
                super::judged(self, Verdict::Fail, failures)
            } else if !unknown.is_empty() {
                unknown.push(format!(
                    "no session's current or last query names them ({looked_for})"
                ));
                super::judged(self, Verdict::Unknown, unknown)
            } else {
                super::judged(
                    self,
                    Verdict::Pass,
                    vec![
                        format!(
                            "no session's query and no statement run during the {:.1} s window \
                             names them",
                            ctx.window.as_secs_f64()
                        ),
                        looked_for,
                    ],
                )
            }
        })
    }
}

/// The vanishing `names` that `query` uses as the old version would: each one it mentions,
/// less a moved column whose every use in it is of its new table.
fn old_names<'n>(query: &str, names: &'n [String], drops: &ContractDrops) -> Vec<&'n str> {
    let moved = drops.moved_columns();
    mentioned(query, names)
        .into_iter()
        .filter(|name| {
            let moves: Vec<_> = moved.iter().filter(|(c, ..)| c == name).collect();
            moves.is_empty()
                || drops.vanishes_besides_moving(name)
                || !moves
                    .iter()
                    .all(|(column, old, new)| only_new_home(query, column, &old.name, &new.name))
        })
        .collect()
}

/// The identifiers of each of zdm's own functions' bodies (sync and split triggers).
async fn zdm_function_bodies(conn: &mut PgConnection) -> Result<Vec<Vec<String>>, sqlx::Error> {
    let bodies: Vec<String> =
        sqlx::query_scalar("SELECT prosrc FROM pg_proc WHERE proname LIKE '\\_zdm%'")
            .fetch_all(&mut *conn)
            .await?;
    Ok(bodies.iter().map(|body| identifiers(body)).collect())
}

/// Whether `query`'s identifiers appear, in order and together, in `body`'s: the statement
/// is one of that function's (pg_stat_statements replaces constants, never identifiers).
fn contains_run(body: &[String], query: &str) -> bool {
    let wanted = identifiers(query);
    !wanted.is_empty() && body.windows(wanted.len()).any(|window| window == wanted)
}

/// The statements of this database as pg_stat_statements counts them; `None` when the
/// extension is not installed here (or not preloaded).
async fn statements(conn: &mut PgConnection) -> Result<Option<Snapshot>, String> {
    let schema: Option<String> = sqlx::query_scalar(
        "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_stat_statements'",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| e.to_string())?;
    let Some(schema) = schema else {
        return Ok(None);
    };
    let preloaded: Option<String> =
        sqlx::query_scalar("SELECT current_setting('shared_preload_libraries', true)")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| e.to_string())?;
    if !preloaded.unwrap_or_default().contains("pg_stat_statements") {
        return Ok(None);
    }
    let sql = format!(
        "SELECT queryid, userid::regrole::text, calls, query FROM {}.pg_stat_statements \
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
            AND queryid IS NOT NULL AND query IS NOT NULL",
        // regnamespace::text is already quoted where needed.
        schema
    );
    let rows: Vec<(i64, String, i64, String)> = sqlx::query_as(&sql)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(
        rows.into_iter()
            .map(|(id, user, calls, query)| ((id, user), (calls, query)))
            .collect(),
    ))
}

/// DDL and maintenance (a DBA's session that created or analyzed the table) says nothing
/// about which version an application reads: only queries count.
fn is_maintenance(query: &str) -> bool {
    const KEYWORDS: [&str; 9] = [
        "create", "alter", "drop", "comment", "grant", "revoke", "analyze", "vacuum", "reindex",
    ];
    let first = identifiers(query).into_iter().next();
    first.is_some_and(|word| KEYWORDS.contains(&word.as_str()))
}

/// A query on one line, cut to a readable length.
pub(crate) fn one_line(query: &str) -> String {
    let flat: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 300 {
        format!("{}…", flat.chars().take(300).collect::<String>())
    } else {
        flat
    }
}
