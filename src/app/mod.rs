//! The application commands: one file per subcommand, each wiring the configuration, the
//! connection, the engine, the monitor, the run's control socket and the printing for the
//! binary and the console. Below this layer, modules take a connection, a catalog, a plan
//! and settings, never command-line arguments or the whole configuration.

pub mod attach;
pub mod audit;
pub mod check;
pub mod complete;
pub mod ctl;
pub mod gates;
pub mod import;
pub mod init;
pub mod lint;
pub mod plan;
pub mod rehearse;
pub mod repack;
pub mod rollback;
pub mod run;
pub mod start;
pub mod status;
pub mod synth;
pub mod top;
pub mod validate;
