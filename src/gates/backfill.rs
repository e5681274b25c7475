//! Gate "backfill": every backfill step of the stored plan is recorded done in schema
//! `zdm`, every NOT VALID constraint on the tables the migration touches is validated, and
//! none of their indexes is INVALID.

use futures::future::BoxFuture;

use super::{unknown_because, Context, Gate, GateReport, Observation, Verdict};
use crate::engine::state;
use crate::plan::Phase;

pub struct BackfillComplete;

impl Gate for BackfillComplete {
    fn name(&self) -> &'static str {
        "backfill"
    }

    fn title(&self) -> &'static str {
        "backfill complete and constraints valid"
    }

    fn judge<'a>(&'a self, ctx: &'a mut Context, _: Observation) -> BoxFuture<'a, GateReport> {
        Box::pin(async move {
            let mut failures = Vec::new();
            let backfill: Vec<_> = ctx.record.plan.phase(Phase::Backfill).collect();
            let done = match state::done_positions(&mut ctx.conn, &ctx.record.name, Phase::Backfill)
                .await
            {
                Ok(done) => done,
                Err(error) => {
                    return super::judged(
                        self,
                        Verdict::Unknown,
                        vec![format!(
                            "could not read the steps done in zdm.steps: {error}"
                        )],
                    )
                }
            };
            for (position, step) in backfill.iter().enumerate() {
                let recorded = i32::try_from(position).is_ok_and(|p| done.contains(&p));
                if !recorded {
                    failures.push(format!(
                        "backfill step {} of {} not done: {}",
                        position + 1,
                        backfill.len(),
                        step.description
                    ));
                }
            }
            let tables = involved_tables(ctx);
            let problems: Result<Vec<(String, String, String)>, sqlx::Error> = sqlx::query_as(
                "WITH t AS (SELECT c.oid AS rel FROM pg_class c \
                   JOIN pg_namespace n ON n.oid = c.relnamespace \
                  WHERE (n.nspname::text, c.relname::text) IN \
                        (SELECT * FROM unnest($1::text[], $2::text[]))) \
                 SELECT c.conrelid::regclass::text, c.conname::text, 'constraint' \
                   FROM pg_constraint c JOIN t ON c.conrelid = t.rel WHERE NOT c.convalidated \
                 UNION ALL \
                 SELECT i.indrelid::regclass::text, i.indexrelid::regclass::text, 'index' \
                   FROM pg_index i JOIN t ON i.indrelid = t.rel WHERE NOT i.indisvalid \
                 ORDER BY 1, 2",
            )
            .bind(
                tables
                    .iter()
                    .map(|(schema, _)| schema.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                tables
                    .iter()
                    .map(|(_, name)| name.as_str())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&mut ctx.conn)
            .await;
            let problems = match problems {
                Ok(rows) => rows,
                Err(error) => {
                    return unknown_because(self, "reading constraints and indexes", &error)
                }
            };
            for (table, name, kind) in problems {
                failures.push(if kind == "constraint" {
                    format!("constraint {name} on {table} is NOT VALID (run the backfill again: it validates)")
                } else {
                    format!("index {name} on {table} is INVALID (a failed concurrent build): drop it and rebuild")
                });
            }
            if failures.is_empty() {
                super::judged(
                    self,
                    Verdict::Pass,
                    vec![format!(
                        "{}; no NOT VALID constraint and no INVALID index on {}",
                        match backfill.len() {
                            0 => "the plan has no backfill step".to_string(),
                            n => format!("all {n} backfill step(s) done"),
                        },
                        if tables.is_empty() {
                            "the tables involved".to_string()
                        } else {
                            tables
                                .iter()
                                .map(|(schema, name)| format!("{schema}.{name}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    )],
                )
            } else {
                super::judged(self, Verdict::Fail, failures)
            }
        })
    }
}

/// The relations the plan's steps lock, as (schema, name): `Step::locked` holds them as
/// `schema.name` (unquoted, for people); labels of another form (raw SQL's) are skipped.
fn involved_tables(ctx: &Context) -> Vec<(String, String)> {
    let mut tables: Vec<(String, String)> = ctx
        .record
        .plan
        .steps
        .iter()
        .flat_map(|s| s.locked.iter())
        .filter_map(|label| label.split_once('.'))
        .filter(|(schema, _)| *schema != ctx.record.version_schema)
        .map(|(schema, name)| (schema.to_string(), name.to_string()))
        .collect();
    tables.sort();
    tables.dedup();
    tables
}
