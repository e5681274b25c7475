//! Gate "indexes-unused": the indexes contract drops are not being used. Their `idx_scan`
//! must not move during the observation window, on the primary and on every configured
//! replica (each server counts its own scans), and no session may hold a lock on one now
//! (a query scanning it at this moment). With hypopg, the `[[verify]]` queries and the
//! table's most frequent statements are planned with each index hidden: a plan that gets
//! worse without it (a sequential scan where it was used, a cost past a factor) fails the
//! gate, naming the query (`hypothetical`).

use std::collections::HashMap;

use futures::future::BoxFuture;
use sqlx::PgConnection;

use super::hypothetical;
use super::old_version::one_line;
use super::{Context, Gate, GateReport, Observation, Verdict};
use crate::plan::drops::DroppedIndex;

pub struct IndexesUnused;

/// idx_scan per "schema.index" on one server, or why it could not be read.
type Scans = Result<HashMap<String, i64>, String>;

impl Gate for IndexesUnused {
    fn name(&self) -> &'static str {
        "indexes-unused"
    }

    fn title(&self) -> &'static str {
        "indexes about to be dropped are not used (primary and replicas)"
    }

    fn watches(&self) -> bool {
        true
    }

    fn observe<'a>(&'a self, ctx: &'a mut Context) -> BoxFuture<'a, Observation> {
        Box::pin(async move { Box::new(all_scans(ctx).await) as Observation })
    }

    fn judge<'a>(&'a self, ctx: &'a mut Context, first: Observation) -> BoxFuture<'a, GateReport> {
        Box::pin(async move {
            let indexes = ctx.drops.indexes.clone();
            if indexes.is_empty() {
                return super::judged(
                    self,
                    Verdict::Pass,
                    vec!["contract drops no index".to_string()],
                );
            }
            let listed: Vec<String> = indexes.iter().map(label).collect();
            let mut failures = Vec::new();
            let mut unknown = Vec::new();
            let mut checked = Vec::new();
            let before = first
                .downcast::<Vec<(String, Scans)>>()
                .map(|b| *b)
                .unwrap_or_default();
            let after = all_scans(ctx).await;
            for (server, now) in &after {
                let then = before
                    .iter()
                    .find(|(s, _)| s == server)
                    .map(|(_, scans)| scans);
                match (then, now) {
                    (Some(Ok(then)), Ok(now)) => {
                        for index in &listed {
                            match (then.get(index), now.get(index)) {
                                (Some(a), Some(b)) if b > a => failures.push(format!(
                                    "{index} was scanned {} time(s) on {server} during the window",
                                    b - a
                                )),
                                (Some(_), Some(_)) => {}
                                _ => unknown.push(format!("{index} has no statistics on {server}")),
                            }
                        }
                        checked.push(server.clone());
                    }
                    (_, Err(why)) | (Some(Err(why)), _) => unknown.push(format!("{server}: {why}")),
                    (None, Ok(_)) => unknown.push(format!("{server}: no first snapshot")),
                }
            }
            // Scans counted at a query's end are invisible while it runs: its lock is not.
            match holders(&mut ctx.conn, &indexes).await {
                Ok(rows) => {
                    for (index, pid, app, query) in rows {
                        failures.push(format!(
                            "{index} is in use now by session pid {pid} (application {app:?}): {}",
                            one_line(&query)
                        ));
                    }
                }
                Err(error) => unknown.push(format!("could not read pg_locks: {error}")),
            }
            // What the planner would do without them (hypopg): a query that needs one
            // fails the gate, even if it did not run during the window.
            let (worse, notes) = plans_without(ctx).await;
            failures.extend(worse);
            if !failures.is_empty() {
                failures.extend(unknown);
                failures.extend(notes);
                super::judged(self, Verdict::Fail, failures)
            } else if !unknown.is_empty() {
                unknown.push(format!(
                    "checked without finding a scan: {}",
                    checked.join(", ")
                ));
                unknown.extend(notes);
                super::judged(self, Verdict::Unknown, unknown)
            } else {
                let mut evidence = vec![format!(
                    "idx_scan of {} did not move during the {:.1} s window on {}; no session holds a lock on them",
                    listed.join(", "),
                    ctx.window.as_secs_f64(),
                    checked.join(", ")
                )];
                evidence.extend(notes);
                super::judged(self, Verdict::Pass, evidence)
            }
        })
    }
}

/// The [[verify]] queries and the table's most frequent statements, planned with each
/// dropped index and with it hidden (hypopg): (why a plan gets worse, for the failures;
/// what was seen, for the evidence). Without hypopg nothing is judged: one note says what
/// to install, so a missing extension never fails the gate.
async fn plans_without(ctx: &mut Context) -> (Vec<String>, Vec<String>) {
    let mut worse = Vec::new();
    let mut notes = Vec::new();
    match hypothetical::unavailable(&mut ctx.conn).await {
        Ok(None) => {}
        Ok(Some(why)) => {
            return (
                worse,
                vec![format!("plans without the dropped indexes: {why}")],
            )
        }
        Err(error) => {
            return (
                worse,
                vec![format!(
                    "plans without the dropped indexes not checked: {error}"
                )],
            )
        }
    }
    // hypopg 1.4 hides an index from this session's planner; older ones cannot, and the
    // plan without it is then the plan without any index path, judged only when no other
    // index could stand in (so a stand-in never makes a false alarm).
    let exact = hypothetical::can_hide(&mut ctx.conn).await.unwrap_or(false);
    if !exact {
        notes.push(
            "this hypopg cannot hide an index (hypopg_hide_index came in 1.4): a query's plan \
             without a dropped index is judged only when no other index could serve it"
                .to_string(),
        );
    }
    let verify: Vec<String> = ctx
        .verify
        .as_ref()
        .map(|v| v.iter().map(|q| q.sql.clone()).collect())
        .unwrap_or_default();
    let new = ctx.record.version_schema.clone();
    let old = ctx.old_schema.clone();
    for index in ctx.drops.indexes.clone() {
        let table = index.table.name.clone();
        // The verify queries are the new version's; the statements counted are what the
        // applications ran, resolved as the old version resolves names.
        let mut queries: Vec<(String, String, Option<i64>)> = verify
            .iter()
            .map(|q| (q.clone(), new.clone(), None))
            .collect();
        match hypothetical::frequent_statements(&mut ctx.conn, &table).await {
            Ok(top) => queries.extend(
                top.into_iter()
                    .map(|(q, calls)| (q, old.clone(), Some(calls))),
            ),
            Err(why) => notes.push(format!("{}: {why}", label(&index))),
        }
        let leading =
            hypothetical::leading_column(&mut ctx.conn, &index.table.schema, &index.index)
                .await
                .ok()
                .flatten();
        let others = hypothetical::other_indexes(&mut ctx.conn, &index.table.schema, &index.index)
            .await
            .unwrap_or_default();
        let mut checked = 0;
        for (sql, schema, calls) in &queries {
            let named = match calls {
                Some(calls) => format!("{} (run {calls} time(s))", hypothetical::label(sql)),
                None => format!("[[verify]] {}", hypothetical::label(sql)),
            };
            let with = hypothetical::explain(&mut ctx.conn, Some(schema), sql).await;
            let Ok(with) = with else {
                continue;
            };
            if !with.uses(&index.index) {
                continue;
            }
            checked += 1;
            let without = if exact {
                let hidden =
                    hypothetical::hide(&mut ctx.conn, &index.table.schema, &index.index).await;
                let without = match hidden {
                    Ok(()) => hypothetical::explain(&mut ctx.conn, Some(schema), sql).await,
                    Err(error) => Err(error),
                };
                hypothetical::unhide_all(&mut ctx.conn).await;
                without
            } else if let Some(other) =
                hypothetical::stand_in(&with, &index.index, leading.as_deref(), &others)
            {
                notes.push(format!(
                    "without {}, {named} could be served by {other}: not judged (hypopg 1.4 \
                     or later plans it exactly)",
                    label(&index)
                ));
                continue;
            } else {
                hypothetical::explain_with(
                    &mut ctx.conn,
                    Some(schema),
                    sql,
                    hypothetical::Paths::NoIndexes,
                )
                .await
            };
            match without {
                Ok(without) => match hypothetical::worse(&with, &without, &table, exact) {
                    Some(why) => worse.push(format!(
                        "without {}, {named} {why}: it uses {} now ({}); without it: {}",
                        label(&index),
                        index.index,
                        with.describe(),
                        without.describe()
                    )),
                    None => notes.push(format!(
                        "without {}, {named} keeps a plan as good: {}",
                        label(&index),
                        without.describe()
                    )),
                },
                Err(error) => notes.push(format!(
                    "{named}: could not plan it with {} hidden: {error}",
                    label(&index)
                )),
            }
        }
        if checked == 0 {
            notes.push(format!(
                "no [[verify]] query and none of the {} most frequent statements on {table} uses {} (hypopg)",
                hypothetical::TOP_STATEMENTS,
                label(&index)
            ));
        }
    }
    (worse, notes)
}

fn label(index: &DroppedIndex) -> String {
    format!("{}.{}", index.table.schema, index.index)
}

/// Scans on the primary and on each replica, named for people.
async fn all_scans(ctx: &mut Context) -> Vec<(String, Scans)> {
    let indexes = ctx.drops.indexes.clone();
    if indexes.is_empty() {
        return Vec::new();
    }
    let mut out = vec![(
        "the primary".to_string(),
        scans(&mut ctx.conn, &indexes).await,
    )];
    for replica in &mut ctx.replicas {
        let name = format!("replica {}", replica.label);
        let result = match &mut replica.conn {
            Ok(conn) => scans(conn, &indexes).await,
            Err(why) => Err(format!("cannot reach it ({why})")),
        };
        out.push((name, result));
    }
    out
}

async fn scans(conn: &mut PgConnection, indexes: &[DroppedIndex]) -> Scans {
    let schemas: Vec<&str> = indexes.iter().map(|i| i.table.schema.as_str()).collect();
    let names: Vec<&str> = indexes.iter().map(|i| i.index.as_str()).collect();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT schemaname || '.' || indexrelname, idx_scan FROM pg_stat_user_indexes \
          WHERE (schemaname::text, indexrelname::text) IN \
                (SELECT * FROM unnest($1::text[], $2::text[]))",
    )
    .bind(&schemas)
    .bind(&names)
    .fetch_all(conn)
    .await
    .map_err(|e| format!("could not read pg_stat_user_indexes: {e}"))?;
    Ok(rows.into_iter().collect())
}

/// Other sessions holding a lock on one of the indexes: (index, pid, application, query).
async fn holders(
    conn: &mut PgConnection,
    indexes: &[DroppedIndex],
) -> Result<Vec<(String, i32, String, String)>, sqlx::Error> {
    let schemas: Vec<&str> = indexes.iter().map(|i| i.table.schema.as_str()).collect();
    let names: Vec<&str> = indexes.iter().map(|i| i.index.as_str()).collect();
    sqlx::query_as(
        "SELECT DISTINCT n.nspname || '.' || c.relname, l.pid, \
                coalesce(a.application_name, ''), coalesce(a.query, '') \
           FROM pg_locks l \
           JOIN pg_class c ON c.oid = l.relation \
           JOIN pg_namespace n ON n.oid = c.relnamespace \
           LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
          WHERE l.pid <> pg_backend_pid() AND l.database = \
                (SELECT oid FROM pg_database WHERE datname = current_database()) \
            AND (n.nspname::text, c.relname::text) IN (SELECT * FROM unnest($1::text[], $2::text[])) \
          ORDER BY 1, 2",
    )
    .bind(&schemas)
    .bind(&names)
    .fetch_all(conn)
    .await
}
