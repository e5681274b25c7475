//! The command line: every subcommand and flag, with the help text a DBA reads.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;
use crate::demo::{DemoOptions, WorkloadOptions};

/// Zero-downtime PostgreSQL schema migrations: expand, backfill and contract, watched and
/// steered live.
#[derive(Debug, Parser)]
#[command(
    name = "zdm",
    version,
    propagate_version = true,
    arg_required_else_help = true,
    after_help = "Start with `zdm demo`: a throwaway local PostgreSQL with sample data and a live workload."
)]
pub struct Cli {
    /// Log level or filter: error, warn, info, debug, trace, or e.g. `zdm=debug,sqlx=warn`
    #[arg(long, global = true, env = "ZDM_LOG", value_name = "LEVEL")]
    pub log: Option<String>,

    /// Log file [default: $XDG_STATE_HOME/zdm/zdm.log or ~/.local/state/zdm/zdm.log]
    #[arg(long, global = true, env = "ZDM_LOG_FILE", value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// What zdm can do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run zdm on a throwaway local PostgreSQL (primary and streaming replica) holding a
    /// shop database under a live application workload; everything is removed on exit
    Demo(DemoArgs),

    /// Print what migrations will do, phase by phase: each step's SQL, the lock it takes and
    /// on what, whether it scans or rewrites a table, and raw SQL zdm did not check
    Plan(PlanArgs),
}

/// Flags of `zdm plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The migration to plan (its file name without extension) [default: every migration
    /// that has not started, in order]
    #[arg(value_name = "NAME")]
    pub name: Option<String>,

    /// Print the plan as JSON, for machines
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub target: TargetArgs,
}

/// Where the target database and the migration files are: flattened into every
/// subcommand that works on a database.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Config file [default: ./zdm.toml when it exists]
    #[arg(long, env = "ZDM_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// The target database, e.g. postgres://user@host:5432/db (the password is never printed)
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Directory of migration files [default: migrations, or migrations_dir in zdm.toml]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

impl TargetArgs {
    /// These flags as overrides of the config file.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config_file: self.config.clone(),
            database_url: self.database_url.clone(),
            migrations_dir: self.dir.clone(),
        }
    }
}

/// Flags of `zdm demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Data size relative to the default of 200k customers, 1M orders and 2M order items
    /// (0.01 loads in a second or two)
    #[arg(long, value_name = "FACTOR", default_value_t = 1.0, value_parser = parse_scale)]
    pub scale: f64,

    /// Do not open the console: print the connection URLs and keep the servers up until
    /// Ctrl-C, so that another terminal can run zdm against them (until the console is
    /// built, the demo always works this way)
    #[arg(long)]
    pub no_console: bool,

    /// Start only a primary, without the streaming replica
    #[arg(long)]
    pub no_replica: bool,

    /// Sessions of the simulated application (0 turns it off)
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(0..=64))]
    pub workload_sessions: u16,

    /// Operations per second of the simulated application, over all its sessions
    #[arg(long, value_name = "OPS", default_value_t = 40.0, value_parser = parse_rate)]
    pub workload_rate: f64,
}

impl From<&DemoArgs> for DemoOptions {
    fn from(args: &DemoArgs) -> Self {
        DemoOptions {
            scale: args.scale,
            replica: !args.no_replica,
            workload: WorkloadOptions {
                connections: usize::from(args.workload_sessions),
                ops_per_second: args.workload_rate,
            },
        }
    }
}

fn parse_scale(text: &str) -> Result<f64, String> {
    parse_bounded(text, 0.0001, 100.0)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    parse_bounded(text, 0.1, 10_000.0)
}

fn parse_bounded(text: &str, min: f64, max: f64) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("expected a number from {min} to {max}, e.g. 0.5"))?;
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(format!("must be from {min} to {max}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn scales_out_of_range_are_refused() {
        assert!(parse_scale("0.01").is_ok());
        assert!(parse_scale("0").is_err());
        assert!(parse_scale("-1").is_err());
        assert!(parse_scale("NaN").is_err());
        assert!(parse_scale("1e9").is_err());
        assert!(parse_scale("lots").is_err());
    }
}
