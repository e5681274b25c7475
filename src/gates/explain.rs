//! Gate "explain": the queries a migration names in `[[verify]]` are planned (EXPLAIN
//! (FORMAT JSON), never ANALYZE: nothing runs) with the old version's search_path and with
//! the new one's. With the new version a query must use its `uses_index`, and must not
//! rely on an index contract drops. Both plans are shown.

use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::{Connection, PgConnection};

use super::{Context, Gate, GateReport, Observation, Verdict};
use crate::db::quote_ident;
use crate::migration::Verify;

pub struct ExplainVerified;

/// A plan in a few words: its nodes and the indexes it uses.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSummary {
    pub nodes: Vec<String>,
    pub indexes: Vec<String>,
}

impl Gate for ExplainVerified {
    fn name(&self) -> &'static str {
        "explain"
    }

    fn title(&self) -> &'static str {
        "the migration's [[verify]] queries use the new index and no index being dropped"
    }

    fn judge<'a>(&'a self, ctx: &'a mut Context, _: Observation) -> BoxFuture<'a, GateReport> {
        Box::pin(async move {
            let verify = match &ctx.verify {
                Ok(verify) => verify.clone(),
                Err(why) => {
                    return super::judged(
                        self,
                        Verdict::Unknown,
                        vec![format!(
                            "could not read the migration's [[verify]] queries: {why}"
                        )],
                    )
                }
            };
            if verify.is_empty() {
                return super::judged(
                    self,
                    Verdict::Pass,
                    vec![
                        "the migration names no [[verify]] query: no plan was checked (add \
                         queries to the file to have their plans verified)"
                            .to_string(),
                    ],
                );
            }
            let dropped: Vec<String> = ctx.drops.indexes.iter().map(|i| i.index.clone()).collect();
            let old = ctx.old_schema.clone();
            let new = ctx.record.version_schema.clone();
            let mut evidence = Vec::new();
            let mut verdict = Verdict::Pass;
            for (number, Verify { sql, uses_index }) in verify.iter().enumerate() {
                let before = explain(&mut ctx.conn, &old, sql).await;
                let after = explain(&mut ctx.conn, &new, sql).await;
                let mut lines = vec![format!(
                    "query {}: {}",
                    number + 1,
                    super::old_version::one_line(sql)
                )];
                match &before {
                    Ok(plan) => {
                        lines.push(format!("old version ({old}): {}", plan.nodes.join(" → ")))
                    }
                    Err(e) => lines.push(format!("old version ({old}): cannot plan: {e}")),
                }
                match &after {
                    Ok(plan) => {
                        lines.push(format!("new version ({new}): {}", plan.nodes.join(" → ")));
                        if let Some(wanted) = uses_index {
                            if plan.indexes.iter().any(|i| i == wanted) {
                                lines.push(format!("uses {wanted} as required"));
                            } else {
                                verdict = Verdict::Fail;
                                lines.push(format!(
                                    "does NOT use {wanted} (uses {}): the new index does not serve it",
                                    if plan.indexes.is_empty() { "no index".to_string() } else { plan.indexes.join(", ") }
                                ));
                            }
                        }
                        let relying: Vec<&String> = plan
                            .indexes
                            .iter()
                            .filter(|i| dropped.contains(i))
                            .collect();
                        if !relying.is_empty() {
                            verdict = Verdict::Fail;
                            lines.push(format!(
                                "relies on {} which contract drops",
                                relying
                                    .iter()
                                    .map(|s| s.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ));
                        }
                    }
                    Err(e) => {
                        if verdict == Verdict::Pass {
                            verdict = Verdict::Unknown;
                        }
                        lines.push(format!("new version ({new}): cannot plan: {e}"));
                    }
                }
                evidence.push(lines.join("\n"));
            }
            super::judged(self, verdict, evidence)
        })
    }
}

/// Plans `sql` with `search_path` set to `schema`, in a read-only transaction rolled back.
pub async fn explain(
    conn: &mut PgConnection,
    schema: &str,
    sql: &str,
) -> Result<PlanSummary, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("SET LOCAL search_path TO {}", quote_ident(schema)))
        .execute(&mut *tx)
        .await?;
    sqlx::query("SET LOCAL statement_timeout = '5s'")
        .execute(&mut *tx)
        .await?;
    // A prepared statement: one statement only, so nothing can be appended to the query.
    let plan: Value = sqlx::query_scalar(&format!("EXPLAIN (FORMAT JSON) {sql}"))
        .fetch_one(&mut *tx)
        .await?;
    tx.rollback().await?;
    Ok(summarize(&plan))
}

/// The nodes ("Index Scan using x on t") and indexes of an EXPLAIN (FORMAT JSON) result.
pub fn summarize(plan: &Value) -> PlanSummary {
    let mut summary = PlanSummary {
        nodes: Vec::new(),
        indexes: Vec::new(),
    };
    let root = plan.get(0).and_then(|p| p.get("Plan"));
    if let Some(root) = root {
        walk(root, &mut summary);
    }
    summary
}

fn walk(node: &Value, summary: &mut PlanSummary) {
    let kind = node.get("Node Type").and_then(Value::as_str).unwrap_or("?");
    let mut text = kind.to_string();
    if let Some(index) = node.get("Index Name").and_then(Value::as_str) {
        text.push_str(&format!(" using {index}"));
        summary.indexes.push(index.to_string());
    }
    if let Some(relation) = node.get("Relation Name").and_then(Value::as_str) {
        text.push_str(&format!(" on {relation}"));
    }
    summary.nodes.push(text);
    if let Some(children) = node.get("Plans").and_then(Value::as_array) {
        for child in children {
            walk(child, summary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_plan_reads_as_nodes_and_indexes() {
        let plan: Value = serde_json::from_str(
            r#"[{"Plan": {"Node Type": "Limit", "Plans": [
                {"Node Type": "Index Scan", "Index Name": "orders_customer_idx",
                 "Relation Name": "orders"}]}}]"#,
        )
        .expect("json");
        let summary = summarize(&plan);
        assert_eq!(summary.indexes, vec!["orders_customer_idx"]);
        assert_eq!(
            summary.nodes,
            vec!["Limit", "Index Scan using orders_customer_idx on orders"]
        );
    }
}
