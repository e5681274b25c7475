//! zdm: zero-downtime PostgreSQL schema migrations that a person can watch and steer live.
//!
//! See `docs/architecture.md` for how the parts fit together.

pub mod app;
pub mod audit;
pub mod cli;
pub mod config;
pub mod control;
pub mod db;
pub mod demo;
pub mod engine;
pub mod format;
pub mod gates;
pub mod import;
pub mod ledger;
pub mod lint;
pub mod localpg;
pub mod logging;
pub mod migration;
pub mod monitor;
pub mod notify;
pub mod plan;
pub mod position;
pub mod protocol;
pub mod runner;
pub mod schedule;
pub mod settings;
pub mod signals;
pub mod suggest;
pub mod synth;
pub mod tui;
