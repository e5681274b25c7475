//! Gate "old-transactions": no transaction open since before the migration started (it may
//! still hold a snapshot, or prepared plans, of the old shape), and every replica's replay
//! lag under `[gates] max_replication_lag_ms` (a lagging replica still serves the old
//! shape to its readers).

use futures::future::BoxFuture;

use super::old_version::one_line;
use super::{Context, Gate, GateReport, Observation, Verdict};

pub struct NothingOldRunning;

type OldTransaction = (i32, String, String, String, f64, String);

impl Gate for NothingOldRunning {
    fn name(&self) -> &'static str {
        "old-transactions"
    }

    fn title(&self) -> &'static str {
        "no transaction older than the migration's start; replication lag under its limit"
    }

    fn judge<'a>(&'a self, ctx: &'a mut Context, _: Observation) -> BoxFuture<'a, GateReport> {
        Box::pin(async move {
            let mut failures = Vec::new();
            let mut unknown = Vec::new();
            let started = ctx.record.started_at;
            let old: Result<Vec<OldTransaction>, sqlx::Error> = sqlx::query_as(
                "SELECT pid, coalesce(usename::text, ''), coalesce(application_name, ''), \
                        coalesce(state, ''), extract(epoch FROM now() - xact_start)::float8, \
                        coalesce(query, '') \
                   FROM pg_stat_activity \
                  WHERE xact_start < $1 AND pid <> pg_backend_pid() \
                    AND backend_type = 'client backend' \
                    AND datname = current_database() \
                    AND coalesce(application_name, '') NOT LIKE 'zdm pid=%' \
                  ORDER BY xact_start",
            )
            .bind(started)
            .fetch_all(&mut ctx.conn)
            .await;
            match old {
                Ok(rows) => {
                    for (pid, user, app, state, age, query) in rows {
                        failures.push(format!(
                            "session pid {pid} (user {user}, application {app:?}, {state}) has had a \
                             transaction open for {age:.0} s, since before the migration started: {}",
                            one_line(&query)
                        ));
                    }
                }
                Err(error) => unknown.push(format!("could not read pg_stat_activity: {error}")),
            }
            let lag: Result<Vec<(String, Option<f64>)>, sqlx::Error> = sqlx::query_as(
                "SELECT coalesce(application_name, '') || ' ' || coalesce(client_addr::text, 'local'), \
                        extract(epoch FROM replay_lag)::float8 FROM pg_stat_replication",
            )
            .fetch_all(&mut ctx.conn)
            .await;
            let limit = ctx.max_replication_lag.as_secs_f64();
            let mut replicas = 0;
            match lag {
                Ok(rows) => {
                    replicas = rows.len();
                    for (replica, seconds) in rows {
                        if let Some(seconds) = seconds.filter(|s| *s > limit) {
                            failures.push(format!(
                                "replica {replica} replays {seconds:.1} s behind (limit {limit:.1} s)"
                            ));
                        }
                    }
                }
                Err(error) => unknown.push(format!("could not read pg_stat_replication: {error}")),
            }
            if !failures.is_empty() {
                failures.extend(unknown);
                super::judged(self, Verdict::Fail, failures)
            } else if !unknown.is_empty() {
                super::judged(self, Verdict::Unknown, unknown)
            } else {
                super::judged(
                    self,
                    Verdict::Pass,
                    vec![format!(
                        "no transaction open since before {} (the migration's start); {replicas} \
                         streaming replica(s), none replaying more than {limit:.1} s behind",
                        started.format("%Y-%m-%d %H:%M:%S UTC")
                    )],
                )
            }
        })
    }
}
