//! Shared test harness: real local PostgreSQL servers (never mocks) and the zdm binary.
#![allow(dead_code)] // each test binary uses only part of the harness

pub mod console_fixture;
pub mod demo_process;
pub mod tmux;

use std::path::PathBuf;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use zdm::localpg::{LocalPg, Options};

/// A primary of its own for one test (a second or less: the initdb template is reused).
pub fn primary() -> LocalPg {
    LocalPg::start(&Options::default()).expect("start a local PostgreSQL")
}

/// A primary with a streaming replica, for tests where lag matters.
pub async fn primary_and_replica() -> LocalPg {
    let pg = tokio::task::spawn_blocking(|| {
        LocalPg::start(&Options {
            replica: true,
            ..Default::default()
        })
    })
    .await
    .expect("join")
    .expect("start a local primary and replica");
    pg.wait_for_replica(Duration::from_secs(30))
        .await
        .expect("replica streams");
    pg
}

/// A pool on a fresh, empty database `name` of the primary.
pub async fn database(pg: &LocalPg, name: &str) -> PgPool {
    let mut admin = pg.primary().connect("postgres").await.expect("connect");
    sqlx::query(&format!("CREATE DATABASE {}", zdm::db::quote_ident(name)))
        .execute(&mut admin)
        .await
        .expect("create database");
    PgPoolOptions::new()
        .max_connections(8)
        .connect_with(pg.primary().connect_options(name))
        .await
        .expect("connect to the test database")
}

/// Every variable through which zdm may find a database (its own, and libpq's as `psql`
/// reads them): a test expecting "no database" removes them all, not only DATABASE_URL,
/// so that a machine with PGHOST or PGSERVICE set does not reach one.
pub const DATABASE_ENV: [&str; 18] = [
    "DATABASE_URL",
    "ZDM_CONFIG",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGAPPNAME",
    "PGCONNECT_TIMEOUT",
    "PGOPTIONS",
];

/// The zdm binary built for these tests.
pub fn zdm_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zdm"))
}
