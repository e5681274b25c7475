//! Gate "indexes-unused": the indexes contract drops are not being used. Their `idx_scan`
//! must not move during the observation window, on the primary and on every configured
//! replica (each server counts its own scans), and no session may hold a lock on one now
//! (a query scanning it at this moment).

use std::collections::HashMap;

use futures::future::BoxFuture;
use sqlx::PgConnection;

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
            if !failures.is_empty() {
                failures.extend(unknown);
                super::judged(self, Verdict::Fail, failures)
            } else if !unknown.is_empty() {
                unknown.push(format!(
                    "checked without finding a scan: {}",
                    checked.join(", ")
                ));
                super::judged(self, Verdict::Unknown, unknown)
            } else {
                super::judged(
                    self,
                    Verdict::Pass,
                    vec![format!(
                        "idx_scan of {} did not move during the {:.1} s window on {}; no session holds a lock on them",
                        listed.join(", "),
                        ctx.window.as_secs_f64(),
                        checked.join(", ")
                    )],
                )
            }
        })
    }
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
