//! What every gate works from: connections to the primary and the replicas, the migration's
//! record in schema `zdm` (stored plan, what contract drops, timestamps), its `[[verify]]`
//! queries, and the settings of the window.

use std::time::Duration;

use sqlx::{Connection, PgConnection};

use std::path::PathBuf;

use crate::db::DatabaseUrl;
use crate::engine::identity::connect;
use crate::engine::state::{self, MigrationRecord};
use crate::migration::{self, Verify};
use crate::plan::names::parse_version_schema_comment;
use crate::plan::ContractDrops;

use super::Error;

/// A replica as the gates see it: its redacted address and a connection, or why there is
/// none (the gates say "unknown" for it).
pub struct Replica {
    pub label: String,
    pub conn: Result<PgConnection, String>,
}

/// What an evaluation is given (zdm.toml gives it: `crate::config::Config::gate_inputs`).
#[derive(Debug, Clone)]
pub struct Inputs {
    pub url: DatabaseUrl,
    /// Where the migration's file is, for its `[[verify]]` queries.
    pub migrations_dir: PathBuf,
    /// Replicas whose index scans are checked too.
    pub replica_urls: Vec<DatabaseUrl>,
    /// How long statement counts and index scans are watched.
    pub window: Duration,
    /// Replication lag above which "nothing old still running" fails.
    pub max_replication_lag: Duration,
}

/// Inputs of one evaluation.
pub struct Context {
    pub conn: PgConnection,
    pub replicas: Vec<Replica>,
    pub record: MigrationRecord,
    pub drops: ContractDrops,
    /// `Err` when the file could not be read: the EXPLAIN gate says unknown.
    pub verify: Result<Vec<Verify>, String>,
    /// The schema the migration versions (`public`).
    pub base_schema: String,
    /// The schema the old version resolves names in: the previous version schema, or the
    /// base schema when there is none (the first migration: the physical tables).
    pub old_schema: String,
    pub window: Duration,
    pub max_replication_lag: Duration,
}

impl Context {
    /// Connects and reads what the gates need about migration `name`.
    pub async fn load(inputs: &Inputs, name: &str) -> Result<Context, Error> {
        let url = &inputs.url;
        let mut conn = connect(url).await.map_err(|source| {
            Error::Engine(crate::engine::Error::Connect {
                url: url.to_string(),
                source,
            })
        })?;
        let record = if state::exists(&mut conn).await? {
            state::get(&mut conn, name).await?
        } else {
            None
        };
        let record = record.ok_or_else(|| Error::NotStarted {
            name: name.to_string(),
        })?;
        let drops = record.plan.drops.clone();
        let verify = migration::load_dir(&inputs.migrations_dir)
            .map_err(|e| e.to_string())
            .and_then(|all| {
                all.into_iter()
                    .find(|m| m.name == name)
                    .map(|m| m.verify)
                    .ok_or_else(|| {
                        format!(
                            "migration file {name} is not in {}",
                            inputs.migrations_dir.display()
                        )
                    })
            });
        let comment: Option<String> = sqlx::query_scalar(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1",
        )
        .bind(&record.version_schema)
        .fetch_optional(&mut conn)
        .await
        .map_err(|source| crate::engine::Error::Database {
            action: "reading the version schema's comment".to_string(),
            source,
        })?
        .flatten();
        let base_schema = comment
            .as_deref()
            .and_then(parse_version_schema_comment)
            .map_or_else(|| "public".to_string(), |(base, _)| base.to_string());
        let old_schema = drops
            .schemas
            .last()
            .cloned()
            .unwrap_or_else(|| base_schema.clone());
        let mut replicas = Vec::new();
        for replica_url in &inputs.replica_urls {
            replicas.push(Replica {
                label: replica_url.to_string(),
                conn: connect(replica_url).await.map_err(|e| e.to_string()),
            });
        }
        Ok(Context {
            conn,
            replicas,
            record,
            drops,
            verify,
            base_schema,
            old_schema,
            window: inputs.window,
            max_replication_lag: inputs.max_replication_lag,
        })
    }

    /// Closes every connection.
    pub async fn close(self) {
        let _ = self.conn.close().await;
        for replica in self.replicas {
            if let Ok(conn) = replica.conn {
                let _ = conn.close().await;
            }
        }
    }
}
