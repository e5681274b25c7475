//! Helpers for the engine's integration tests: hand-built plans (the planner is tested
//! on its own) and engines on a test database.
#![allow(dead_code)] // each test binary uses only part of these

use std::time::Duration;

use zdm::engine::ddl::LockPolicy;
use zdm::engine::{Engine, EngineOptions, Error};
use zdm::localpg::LocalPg;
use zdm::plan::workspace::qualify;
use zdm::plan::{Backfill, LockLevel, Phase, Plan, PromiseKind, Step, StepAction};

/// A step of plain SQL.
pub fn sql(phase: Phase, description: &str, sql: &str, lock: LockLevel, on: &str) -> Step {
    Step {
        phase,
        description: description.to_string(),
        action: StepAction::Sql {
            sql: sql.to_string(),
            transactional: true,
        },
        lock,
        locked: vec![on.to_string()],
        rewrites: false,
        scans: false,
        unchecked: false,
        creates: Vec::new(),
    }
}

/// A CREATE INDEX CONCURRENTLY step building `index` on `on`, described as the planner
/// describes one: outside a transaction, promising the index (`Step::concurrent_index`,
/// which tells the engine what to clean up after an interrupted build). Not kept: a test
/// plan may drop it at contract.
pub fn concurrent(phase: Phase, description: &str, statement: &str, on: &str, index: &str) -> Step {
    Step {
        action: StepAction::Sql {
            sql: statement.to_string(),
            transactional: false,
        },
        ..sql(
            phase,
            description,
            statement,
            LockLevel::ShareUpdateExclusive,
            on,
        )
    }
    .creating(PromiseKind::Index, &qualify(on), index, false)
}

/// A backfill step.
pub fn backfill(
    table: &str,
    keys: &[&str],
    assignments: &[(&str, &str)],
    predicate: Option<&str>,
) -> Step {
    Step {
        phase: Phase::Backfill,
        description: format!("backfill {table}"),
        action: StepAction::Backfill(Backfill {
            table: table.to_string(),
            key_columns: keys.iter().map(|k| k.to_string()).collect(),
            assignments: assignments
                .iter()
                .map(|(c, e)| (c.to_string(), e.to_string()))
                .collect(),
            predicate: predicate.map(str::to_string),
        }),
        lock: LockLevel::RowExclusive,
        locked: vec![table.to_string()],
        rewrites: false,
        scans: true,
        unchecked: false,
        creates: Vec::new(),
    }
}

pub fn plan(name: &str, steps: Vec<Step>) -> Plan {
    Plan {
        migration: name.to_string(),
        version_schema: format!("public_{name}"),
        steps,
        drops: Default::default(),
    }
}

/// Fast retries so tests do not wait long.
pub fn quick_options() -> EngineOptions {
    EngineOptions {
        ddl: LockPolicy {
            lock_timeout: Duration::from_millis(200),
            statement_timeout: None,
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(400),
            max_attempts: 200,
        },
        batch_size: Some(1000),
        batch_timeout: None,
        reconnect_budget: Duration::from_secs(120),
        failover: Vec::new(),
        backfill: Default::default(),
    }
}

pub async fn engine(pg: &LocalPg, database: &str, options: EngineOptions) -> Engine {
    Engine::connect_with(pg.primary().connect_options(database), options)
        .await
        .expect("engine connects and takes the run lock")
}

/// An engine, waiting for the run lock of a just-killed run to be released by the server.
pub async fn engine_after_crash(pg: &LocalPg, database: &str, options: EngineOptions) -> Engine {
    for _ in 0..100 {
        match Engine::connect_with(pg.primary().connect_options(database), options.clone()).await {
            Ok(engine) => return engine,
            Err(Error::Locked { .. }) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(other) => panic!("engine connects: {other}"),
        }
    }
    panic!("the killed run's lock was never released");
}
