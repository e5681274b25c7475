//! `zdm init [--schema S]`: the baseline version of a schema, so that the first
//! migration's old version is a schema of views like every later one.

use sqlx::Connection;

use super::run::{connect, connect_plain, CommandError};
use crate::config::Config;
use crate::db::catalog::Catalog;
use crate::db::quote_ident;
use crate::engine::Outcome;
use crate::plan;

/// `zdm init [--schema S]`: the baseline version, so that the first migration's old
/// version is a schema of views like every later one (docs/migrations.md, "Before the
/// first migration"). Idempotent; not needed (and said so) once a migration has run.
pub async fn run(config: &Config, schema: &str) -> Result<String, CommandError> {
    let mut conn = connect_plain(config).await?;
    let catalog = Catalog::load(&mut conn)
        .await
        .map_err(CommandError::Introspect)?;
    let _ = conn.close().await;
    if catalog.schema(schema).is_none() {
        return Err(CommandError::NoSuchSchema {
            schema: schema.to_string(),
        });
    }
    let versions: Vec<&str> = catalog
        .schemas
        .iter()
        .filter(|s| {
            s.comment
                .as_deref()
                .and_then(plan::names::parse_version_schema_comment)
                .is_some_and(|(base, migration)| base == schema && migration != plan::BASELINE)
        })
        .map(|s| s.name.as_str())
        .collect();
    if !versions.is_empty() {
        return Ok(format!(
            "not needed: migrations have already given {schema} version schemas ({}); \
             applications use the newest usable one (`zdm status` lists them)",
            versions.join(", ")
        ));
    }
    let baseline = plan::baseline(schema, &catalog);
    let mut engine = connect(config).await?;
    let outcome = engine.init(&baseline).await;
    let closed = engine.close().await;
    let outcome = outcome?;
    closed?;
    let search_path = quote_ident(&baseline.version_schema);
    let done = match outcome {
        Outcome::NothingToDo { .. } => "already there".to_string(),
        Outcome::Ran { .. } => "created".to_string(),
    };
    Ok(format!(
        "baseline version of {schema}: {} ({done}).\n\
         Point the application at it before the first migration, in every session:\n\
         \n    SET search_path TO {search_path}\n\n\
         (or `options=-csearch_path={}` in its connection string). It shows the tables as \
         they are now, so a migration's expand and rollback never change what the \
         application sees (prepared `SELECT *` keep working). The first migration's \
         contract drops it, once the application uses that migration's version.",
        baseline.version_schema, baseline.version_schema
    ))
}
