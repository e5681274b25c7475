//! `zdm plan [NAME] [--json]`: reads the migration files, introspects the target database
//! and prints what each pending migration will do, phase by phase; a migration that has
//! started shows the plan recorded when it started (the one resume, complete and rollback
//! run). A migration that creates an index also shows, with hypopg, the plans of its
//! `[[verify]]` queries and of the table's most frequent statements against the index as
//! a hypothetical one (`gates::hypothetical`), before it is built.

use std::path::PathBuf;

use sqlx::Connection;

use crate::config::{self, Config};
use crate::db::catalog::Catalog;
use crate::db::{quote_ident, DatabaseUrl};
use crate::gates::hypothetical;
use crate::ledger::{Ledger, PlanOrRefusal};
use crate::migration::{self, LoadErrors, Migration, Operation};
use crate::plan::{render, Phase, Plan};
use crate::suggest::did_you_mean;

/// Why `zdm plan` could not print a plan.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: sqlx::Error },
    #[error("cannot read the schema of {url}: {reason}")]
    Introspect { url: String, reason: sqlx::Error },
    #[error("the migration files have errors:\n{0}")]
    Load(#[from] LoadErrors),
    #[error("no migration named {name} in {dir}{hint}")]
    UnknownMigration {
        name: String,
        dir: PathBuf,
        hint: String,
    },
    #[error("cannot read zdm's state (schema zdm) on {url}: {reason}")]
    State {
        url: String,
        reason: Box<crate::engine::Error>,
    },
    #[error(transparent)]
    Plan(#[from] PlanOrRefusal),
    #[error("cannot write the plan as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Runs `zdm plan` and returns what to print.
pub async fn run(config: &Config, name: Option<&str>, json: bool) -> Result<String, CommandError> {
    let migrations = migration::load_dir(&config.migrations_dir)?;
    if let Some(name) = name {
        if !migrations.iter().any(|m| m.name == name) {
            return Err(CommandError::UnknownMigration {
                name: name.to_string(),
                dir: config.migrations_dir.clone(),
                hint: did_you_mean(name, migrations.iter().map(|m| m.name.as_str())),
            });
        }
    }
    let url = config.database_url()?;
    let connect = |reason| CommandError::Connect {
        url: url.to_string(),
        reason,
    };
    let options = url.connect_options().map_err(connect)?;
    let mut conn = url.connect_with(&options).await.map_err(connect)?;
    let catalog = Catalog::load(&mut conn)
        .await
        .map_err(|reason| CommandError::Introspect {
            url: url.to_string(),
            reason,
        })?;
    let files = migrations.clone();
    let ledger = Ledger::load(
        &mut conn,
        &config.migrations_dir,
        migrations,
        Some(&catalog),
    )
    .await
    .map_err(|reason| CommandError::State {
        url: url.to_string(),
        reason: Box::new(reason),
    })?;
    let _ = conn.close().await;
    let planned = ledger.plans(&catalog, name)?;
    if json {
        return Ok(match name {
            Some(_) => serde_json::to_string_pretty(&planned.first().map(|(plan, _)| plan))?,
            None => serde_json::to_string_pretty(
                &planned.iter().map(|(plan, _)| plan).collect::<Vec<_>>(),
            )?,
        } + "\n");
    }
    if planned.is_empty() {
        return Ok(format!(
            "Nothing to plan: every migration in {} has started.\n",
            config.migrations_dir.display()
        ));
    }
    let mut texts = Vec::with_capacity(planned.len());
    for (plan, description) in &planned {
        let mut text = render::render(plan, description.as_deref());
        if let Some(file) = files.iter().find(|m| m.name == plan.migration) {
            text.push_str(&hypothetical_section(url, plan, file).await);
        }
        texts.push(text);
    }
    Ok(texts.join("\n"))
}

/// The indexes a migration's create_index operations build: (name, table, the plan's
/// statement as hypopg takes it, `"schema"."name"` of the index).
fn new_indexes(plan: &Plan, file: &Migration) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for operation in &file.operations {
        let Operation::CreateIndex(index) = operation else {
            continue;
        };
        let step = plan.steps.iter().find(|step| {
            step.phase == Phase::Expand
                && step
                    .concurrent_index()
                    .is_some_and(|promise| promise.name == index.name)
        });
        let promise = step.and_then(|step| step.concurrent_index());
        if let (Some(sql), Some(promise)) = (step.and_then(|step| step.sql_text()), promise) {
            out.push((
                index.name.clone(),
                index.table.clone(),
                hypothetical::plain_create(sql),
                format!(
                    "{}.{}",
                    quote_ident(&promise.schema),
                    quote_ident(&promise.name)
                ),
            ));
        }
    }
    out
}

/// `zdm plan`'s hypopg section for a migration that creates indexes: its `[[verify]]`
/// queries and the table's most frequent statements explained now and against each new
/// index as a hypothetical one, before hours are spent building it. Empty when the
/// migration creates none; "not available" with what to install without hypopg.
async fn hypothetical_section(url: &DatabaseUrl, plan: &Plan, file: &Migration) -> String {
    let indexes = new_indexes(plan, file);
    if indexes.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\nEXPLAIN before the build (hypopg, hypothetical indexes; nothing is built):\n",
    );
    let connected = match url.connect_options() {
        Ok(options) => url.connect_with(&options).await,
        Err(error) => Err(error),
    };
    let mut conn = match connected {
        Ok(conn) => conn,
        Err(error) => {
            out.push_str(&format!("  not checked: cannot connect: {error}\n"));
            return out;
        }
    };
    match hypothetical::unavailable(&mut conn).await {
        Ok(None) => {}
        Ok(Some(why)) => {
            out.push_str(&format!("  {why}\n"));
            let _ = conn.close().await;
            return out;
        }
        Err(error) => {
            out.push_str(&format!("  not checked: {error}\n"));
            let _ = conn.close().await;
            return out;
        }
    }
    for (name, table, create, qualified) in &indexes {
        out.push_str(&format!("  index {name} on {table}:\n"));
        // A migration already started shows its recorded plan: its index may be built.
        let built: Result<bool, sqlx::Error> =
            sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(qualified)
                .fetch_one(&mut conn)
                .await;
        if built.unwrap_or(false) {
            out.push_str(
                "    built already: its plans are the explain gate's (`zdm gates NAME`)\n",
            );
            continue;
        }
        let mut queries: Vec<(String, Option<&str>, Option<i64>)> = file
            .verify
            .iter()
            .map(|v| (v.sql.clone(), v.uses_index.as_deref(), None))
            .collect();
        let bare = table.rsplit('.').next().unwrap_or(table).to_string();
        match hypothetical::frequent_statements(&mut conn, &bare).await {
            Ok(top) => queries.extend(top.into_iter().map(|(q, calls)| (q, None, Some(calls)))),
            Err(why) => out.push_str(&format!("    {why}\n")),
        }
        if queries.is_empty() {
            out.push_str(
                "    no [[verify]] query and no statement counted on the table: add [[verify]] \
                 queries to see their plans\n",
            );
            continue;
        }
        let mut left_out = 0;
        for (sql, uses_index, calls) in &queries {
            let named = match calls {
                Some(calls) => format!("{} (run {calls} time(s))", hypothetical::label(sql)),
                None => format!("[[verify]] {}", hypothetical::label(sql)),
            };
            let now = hypothetical::explain(&mut conn, None, sql).await;
            if now.is_err() && calls.is_some() {
                // A counted statement that does not plan generically (a DBA's one-off
                // with untyped parameters) says nothing about the index: left out.
                left_out += 1;
                continue;
            }
            out.push_str(&format!("    {named}\n"));
            let hypothetical_name = hypothetical::create_hypothetical(&mut conn, create).await;
            let with = match &hypothetical_name {
                Ok(_) => hypothetical::explain(&mut conn, None, sql).await,
                Err(error) => Err(sqlx::Error::Protocol(format!(
                    "hypopg could not simulate the index: {error}"
                ))),
            };
            hypothetical::reset(&mut conn).await;
            match &now {
                Ok(plan) => out.push_str(&format!("      now:            {}\n", plan.describe())),
                Err(error) => {
                    out.push_str(&format!("      now:            cannot plan: {error}\n"))
                }
            }
            match (&with, &hypothetical_name) {
                (Ok(plan), Ok(hypothetical)) => {
                    out.push_str(&format!("      with the index: {}\n", plan.describe()));
                    let used = plan.uses(hypothetical);
                    let required = uses_index.is_some_and(|wanted| wanted == name);
                    match (used, required) {
                        (true, _) => out.push_str(&format!("      → would use {name}\n")),
                        (false, true) => out.push_str(&format!(
                            "      → would NOT use {name}, which its [[verify]] requires: the \
                             explain gate will fail after the build; check the index matches \
                             the query's predicate and order before building it\n"
                        )),
                        (false, false) => out.push_str(&format!("      → would not use {name}\n")),
                    }
                }
                (Err(error), _) | (_, Err(error)) => {
                    out.push_str(&format!("      with the index: cannot plan: {error}\n"))
                }
            }
        }
        if left_out > 0 {
            out.push_str(&format!(
                "    {left_out} counted statement(s) on the table could not be planned \
                 generically and were left out\n"
            ));
        }
    }
    let _ = conn.close().await;
    out
}
