//! The command line: every subcommand and flag, with the help text a DBA reads.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::app::ctl::CtlRequest;
use crate::app::top::TopOptions;
use crate::config::{Config, Overrides};
use crate::demo::{DemoOptions, WorkloadOptions};
use crate::protocol::Command as RunCommand;
use crate::settings::{Deprecated, Setting, SettingError, SettingKey};

/// Zero-downtime PostgreSQL schema migrations: expand, backfill and contract, watched and
/// steered live.
#[derive(Debug, Parser)]
#[command(
    name = "zdm",
    version,
    propagate_version = true,
    arg_required_else_help = true,
    after_help = AFTER_HELP
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

/// The end of `zdm --help` (and of the man page): where to start, and every exit code.
pub const AFTER_HELP: &str = "\
Start with `zdm demo`: a throwaway local PostgreSQL with sample data and a live workload.

Exit codes:
  0    done (a command whose output was closed, as by `| head`, also exits 0, quietly)
  1    error: nothing more was done (the message says what and what to do)
  2    usage: a flag or argument was wrong (nothing was done)
  3    stopped by the operator (Ctrl-C, SIGTERM, `zdm ctl abort`) or by a database that
       stayed unreachable past reconnect_budget_s: every committed batch is checkpointed
       and the command printed resumes
  4    `zdm gates`: a gate did not pass (or could not be evaluated)
  5    `zdm check`: a migration failed its dry run
  6    `zdm check`: unsafe SQL (a lint error)
  7    `zdm check`: invalid migrations
  130  stopped at once by a second Ctrl-C: the batch in flight was rolled back by the
       server, the checkpoint holds; the same command resumes";

/// What zdm can do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run zdm on a throwaway local PostgreSQL (primary and streaming replica) holding a
    /// shop database under a live application workload; everything is removed on exit
    Demo(DemoArgs),

    /// Open the console: migrations, plans, backfill progress, database health and the
    /// log, live; start, contract and roll back migrations from it
    Console(ConsoleArgs),

    /// Parse and check every migration file (no database needed): every error and warning
    /// as file:line:col; with a database, also plan the pending ones against its catalog
    /// (changes nothing); exits 1 when any error is found
    Validate(ValidateArgs),

    /// Check migration SQL against safety rules (no database needed): plain .sql files and
    /// the raw_sql of zdm files; each finding with its rule, file:line:col, the lock it takes,
    /// why it hurts and the zdm operation that does it safely; exits 1 on an error
    Lint(LintArgs),

    /// For CI: validate, lint, and with --dry-run rehearse every pending migration (start,
    /// rollback, start, complete) on a throwaway copy of the database's schema; exits 5
    /// when a dry run failed, 6 on unsafe SQL, 7 on invalid migrations
    Check(CheckArgs),

    /// Build a scratch database shaped like the target: its schema, and rows generated to
    /// its planner statistics (pg_stats; no row of the target is read) at --scale of its
    /// row counts, on a local throwaway server served until Ctrl-C, or --into an empty
    /// database
    Synth(SynthArgs),

    /// Rehearse a migration at production volume: on scratch databases made by `zdm synth`
    /// at each of --scales, run start, a pause and complete under a synthetic workload,
    /// measure every phase, and forecast each figure at the target's full size
    Rehearse(RehearseArgs),

    /// Write another tool's migrations (flyway, golang-migrate, sqlx, dbmate, liquibase-sql,
    /// alembic) as zdm files: what zdm understands as typed operations, the rest as
    /// raw_sql with the tool's down scripts as rollback; exits 1 if a file written does
    /// not validate
    Import(ImportArgs),

    /// Give the application a version schema before the first migration (the baseline: a
    /// view per table of the current shape) and print the search_path to point it at, so
    /// the first migration's expand and rollback never change what it sees
    Init(InitArgs),

    /// Start a migration: expand, then backfill (resumes where a killed run stopped)
    Start(StartArgs),

    /// Contract a started migration: drop the old shape. Irreversible: needs
    /// --confirm-contract with the migration's name
    Complete(CompleteArgs),

    /// Undo a started migration's expand and backfill (refused once contract has started)
    Rollback(RollbackArgs),

    /// Rebuild a table online with pg_repack (after a backfill doubled it): throttled,
    /// under the lock retry budget, stopped cleanly by Ctrl-C; --vacuum runs plain VACUUM
    /// instead when pg_repack is not installed
    Repack(RepackArgs),

    /// Evaluate the contract safety gates of a started migration (old version unused,
    /// indexes unused, dependencies, old transactions, EXPLAIN of its [[verify]] queries)
    /// over an observation window; `zdm complete` runs the same before contract
    Gates(GatesArgs),

    /// Show the audit trail (zdm.audit): starts, pauses, resumes, throttle changes, gate
    /// overrides, contract confirmations and rollbacks, with who and when
    Audit(AuditArgs),

    /// Show every migration on the database: status, steps done, version schema, and the
    /// search_path of each live version
    Status(StatusArgs),

    /// Show the target database's live metrics (replication lag, locks, sessions, throughput,
    /// latency, progress, host) without a migration: one line per sample, or JSON lines
    Top(TopArgs),

    /// Steer a running migration from another terminal: status, pause, resume, set
    /// KEY=VALUE, get KEY, throttle, no-throttle, abort
    Ctl(CtlArgs),
    /// Follow a running migration's events (progress, throttle, steps, log) until it ends
    /// or Ctrl-C; the run goes on either way
    Attach(AttachArgs),

    /// Print what migrations will do, phase by phase: each step's SQL, the lock it takes and
    /// on what, whether it scans or rewrites a table, and raw SQL zdm did not check
    Plan(PlanArgs),

    /// Print a shell completion script: `zdm completions bash > /etc/bash_completion.d/zdm`
    Completions(CompletionsArgs),

    /// Print the man page (roff), generated from these same definitions:
    /// `zdm man | man -l -`
    Man,
}

/// Flags of `zdm completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell the script is for
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The shells `zdm completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// The completion script of `shell` for this command line.
pub fn completions(shell: Shell) -> String {
    use clap::CommandFactory;
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(generator, &mut Cli::command(), "zdm", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The man page of zdm (section 1, roff): the synopsis, every global option, the
/// subcommands with what each does (`zdm CMD --help` has their flags) and the exit codes.
pub fn man_page() -> Result<String, std::io::Error> {
    use clap::CommandFactory;
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Flags of `zdm console`.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub theme: ThemeArgs,
}

/// The console's colours.
#[derive(Debug, Clone, Args)]
pub struct ThemeArgs {
    /// Colour theme: dark, light, high-contrast, monochrome, or the path of a .toml theme
    /// (NO_COLOR set in the environment always means monochrome)
    #[arg(long, env = "ZDM_THEME", value_name = "NAME|PATH")]
    pub theme: Option<String>,
}

impl ThemeArgs {
    /// The theme chosen, honouring NO_COLOR.
    pub fn theme(&self) -> Result<crate::tui::theme::Theme, crate::tui::theme::Error> {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        crate::tui::theme::Theme::select(self.theme.as_deref(), no_color)
    }
}

/// Flags of `zdm init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The schema whose tables the application uses
    #[arg(long, default_value = "public", value_name = "SCHEMA")]
    pub schema: String,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Flags of `zdm start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The migration (file stem, e.g. 0003_orders_add_status) [default: the next one]
    pub name: Option<String>,
    /// Run it in the background, detached from this terminal (it survives an SSH drop);
    /// follow it with `zdm attach` and steer it with `zdm ctl`. Needs the NAME
    #[arg(long, requires = "name")]
    pub detach: bool,
    /// Serve Prometheus metrics of the run on ADDR (`GET /metrics`), e.g. 127.0.0.1:9187
    /// [default: metrics_listen in zdm.toml; none]
    #[arg(long, value_name = "ADDR", env = "ZDM_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Flags of `zdm complete`.
#[derive(Debug, Args)]
pub struct CompleteArgs {
    /// The migration to contract
    pub name: String,
    /// The migration's name again: contract is irreversible and runs only when this matches
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present = "await_confirmation"
    )]
    pub confirm_contract: Option<String>,
    /// Contract even though this gate did not pass (repeat for several); recorded in
    /// zdm.audit with the gate's evidence
    #[arg(long = "override-gate", value_name = "GATE")]
    pub override_gate: Vec<String>,
    /// Evaluate the gates, then wait (up to 15 min) for the confirmation over the run's
    /// socket: `zdm ctl confirm-contract NAME [--override-gate GATE]...` or the console's
    /// contract dialog; contract runs at once when it comes, `zdm ctl abort` cancels
    #[arg(long, conflicts_with_all = ["confirm_contract", "override_gate"])]
    pub await_confirmation: bool,
    /// Seconds the gates watch statements and index scans [default: [gates] window_s, 60]
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub window: Option<Duration>,
    /// Run it in the background, detached from this terminal (it survives an SSH drop);
    /// follow it with `zdm attach` and steer it with `zdm ctl`
    #[arg(long)]
    pub detach: bool,
    /// After contract, rebuild with pg_repack each table the backfill rewrote in place and
    /// that grew past 120 % of its size before (`zdm repack`)
    #[arg(long, conflicts_with = "detach")]
    pub repack: bool,
    /// Serve Prometheus metrics of the run on ADDR (`GET /metrics`), e.g. 127.0.0.1:9187
    /// [default: metrics_listen in zdm.toml; none]
    #[arg(long, value_name = "ADDR", env = "ZDM_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Flags of `zdm repack`.
#[derive(Debug, Args)]
pub struct RepackArgs {
    /// The table to rebuild (`orders`, `public.orders`)
    #[arg(value_name = "TABLE")]
    pub table: String,
    /// Run plain VACUUM (ANALYZE) instead of pg_repack (never VACUUM FULL): the file keeps
    /// its size, but new rows reuse the dead space
    #[arg(long)]
    pub vacuum: bool,
    /// The pg_repack client to run [default: /usr/lib/postgresql/<server major>/bin, then
    /// ZDM_PG_BINDIR, then PATH]
    #[arg(long = "pg-repack", value_name = "PATH", conflicts_with = "vacuum")]
    pub pg_repack: Option<PathBuf>,
    /// Seconds pg_repack may try for its brief ACCESS EXCLUSIVE locks before giving up
    /// without cancelling anyone [default: zdm's lock retry budget]
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub wait_timeout: Option<Duration>,
    /// JSON lines on stdout, even on a terminal
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Flags of `zdm gates`.
#[derive(Debug, Args)]
pub struct GatesArgs {
    /// The migration whose contract is checked
    pub name: String,
    /// Print JSON for machines instead of text
    #[arg(long)]
    pub json: bool,
    /// Seconds the gates watch statements and index scans [default: [gates] window_s, 60]
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub window: Option<Duration>,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Flags of `zdm audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this migration's entries
    #[arg(long, value_name = "NAME")]
    pub migration: Option<String>,
    /// Print JSON for machines instead of text
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// A number of seconds (fractions allowed), zero or more.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("{text}: the window must be zero or more seconds"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Flags of `zdm rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The migration to roll back
    pub name: String,
    /// Run it in the background, detached from this terminal (it survives an SSH drop);
    /// follow it with `zdm attach` and steer it with `zdm ctl`
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Flags of `zdm status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON for machines instead of text
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: TargetArgs,
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

/// The database whose runs `zdm ctl` and `zdm attach` reach: the same flags, variable and
/// `zdm.toml` key as every other command. Only its host, port and database name are used
/// (no connection is made), so a URL without a password is enough.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Config file [default: ./zdm.toml when it exists]
    #[arg(long, env = "ZDM_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// The database whose run to reach, e.g. postgres://host:5432/db (no password needed)
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

impl DatabaseArgs {
    /// These flags as overrides of the config file.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config_file: self.config.clone(),
            database_url: self.database_url.clone(),
            migrations_dir: None,
        }
    }
}

/// Flags of `zdm validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Fail (exit 1) on warnings too, e.g. in CI
    #[arg(long)]
    pub deny_warnings: bool,

    /// Print every finding and valid migration as one JSON object, for machines
    #[arg(long)]
    pub json: bool,
}

/// Flags of `zdm check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also rehearse each pending migration on a local throwaway copy of the database's
    /// schema and zdm's state: start, rollback (must leave the schema as it was), start,
    /// complete. Only reads the database
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub target: TargetArgs,
}

/// Flags of `zdm synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Row counts relative to the target's (its reltuples): 1 is production's size
    #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
    pub scale: f64,

    /// Fill this empty database (e.g. on a staging server) instead of a local throwaway
    /// server; it is left filled
    #[arg(long, value_name = "URL")]
    pub into: Option<String>,

    /// Keep the real text values of the statistics (most common values, histogram bounds)
    /// instead of generated stand-ins of the same length and frequency
    #[arg(long)]
    pub keep_values: bool,

    /// Tables loaded at once
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub jobs: usize,

    /// The same seed generates the same rows
    #[arg(long, default_value_t = 19)]
    pub seed: u64,

    /// The report as JSON
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub target: TargetArgs,
}

/// Flags of `zdm rehearse`.
#[derive(Debug, Args)]
pub struct RehearseArgs {
    /// The migration to rehearse
    pub name: String,

    /// The sizes rehearsed, relative to the target's row counts, comma-separated; the
    /// forecast extrapolates from them to 1
    #[arg(
        long,
        value_name = "FACTORS",
        default_value = "0.1,0.3",
        value_delimiter = ','
    )]
    pub scales: Vec<f64>,

    /// Seconds between start and complete
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub pause: Duration,

    /// Seconds the gates watch at complete
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = parse_seconds)]
    pub window: Duration,

    /// Seconds of workload measured alone before start
    #[arg(long, value_name = "SECONDS", default_value = "3", value_parser = parse_seconds)]
    pub baseline: Duration,

    /// Workload clients
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub clients: usize,

    /// Workload statements per second, all clients together [default: the target's, from
    /// its pg_stat_statements calls since their stats_reset; else 50]
    #[arg(long, value_name = "OPS")]
    pub rate: Option<f64>,

    /// Share of the workload's statements that are writes (the rest are reads)
    #[arg(long, value_name = "FRACTION", default_value_t = 0.2)]
    pub write_share: f64,

    /// Share of the writes that are inserts (copies of a row under a new key; the rest are
    /// updates by key)
    #[arg(long, value_name = "FRACTION", default_value_t = 0.5)]
    pub insert_share: f64,

    /// Give each scratch server a local streaming replica and measure its lag per phase
    #[arg(long)]
    pub replica: bool,

    /// Keep the real text values of the statistics in the scratch data (see zdm synth)
    #[arg(long)]
    pub keep_values: bool,

    /// The report as JSON
    #[arg(long)]
    pub json: bool,

    /// Also write the report as Markdown to this file (for the change ticket)
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    #[command(flatten)]
    pub target: TargetArgs,
}

/// Flags of `zdm import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The tool whose directory it is: flyway, golang-migrate, sqlx, dbmate, liquibase-sql
    /// (formatted SQL changelogs) or alembic (the output of `alembic upgrade --sql`, saved
    /// as .sql files)
    #[arg(long = "from", value_name = "TOOL")]
    pub tool: crate::import::Tool,

    /// The other tool's migrations directory
    #[arg(value_name = "DIR")]
    pub source: PathBuf,

    /// Where the zdm files go [default: the migrations directory]; existing files are
    /// never overwritten
    #[arg(long, value_name = "DIR")]
    pub into: Option<PathBuf>,

    /// Also record, on the database (--database-url), the migrations the tool's history
    /// table says it applied as complete in zdm's state (nothing runs): zdm takes over from
    /// the next one
    #[arg(long)]
    pub adopt: bool,

    #[command(flatten)]
    pub target: TargetArgs,
}

/// Flags of `zdm lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// .sql files, zdm migration files or directories of them [default: the migrations
    /// directory]
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Output: text, json, github (workflow annotations), gitlab (code quality report) or
    /// sarif
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub format: crate::lint::report::Format,

    /// The same as --format json
    #[arg(long, conflicts_with = "format")]
    pub json: bool,

    /// Fail (exit 1) on warnings too
    #[arg(long)]
    pub deny_warnings: bool,

    #[command(flatten)]
    pub target: TargetArgs,
}

/// Flags of `zdm ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The running migration to talk to [default: the only one running]
    #[arg(long, value_name = "NAME")]
    pub migration: Option<String>,

    /// Print the run's reply as raw JSON
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(subcommand)]
    pub command: CtlCommand,
}

impl CtlArgs {
    /// The typed request for the run, and whether it named a setting by an old name.
    pub fn request(&self) -> Result<CtlRequest, SettingError> {
        let mut deprecated = None;
        let command = match &self.command {
            CtlCommand::Status => RunCommand::Status,
            CtlCommand::Pause => RunCommand::Pause,
            CtlCommand::Resume => RunCommand::Resume,
            CtlCommand::Set { assignment } => {
                let (setting, old) = Setting::parse_named(assignment)?;
                deprecated = old;
                RunCommand::Set(setting)
            }
            CtlCommand::Get { key } => {
                let (key, old) = SettingKey::lookup_live(key)?;
                deprecated = old.map(Deprecated::from);
                RunCommand::Get { key }
            }
            CtlCommand::Throttle => RunCommand::Throttle,
            CtlCommand::NoThrottle => RunCommand::NoThrottle,
            CtlCommand::Abort => RunCommand::Abort,
            CtlCommand::ConfirmContract { name, overrides } => RunCommand::ConfirmContract {
                confirmation: name.clone(),
                overrides: overrides.clone(),
            },
        };
        // A confirmation names its run: the run of that migration is the one to reach.
        let named = match &self.command {
            CtlCommand::ConfirmContract { name, .. } => Some(name.clone()),
            _ => None,
        };
        Ok(CtlRequest {
            command,
            deprecated,
            migration: self.migration.clone().or(named),
            json: self.json,
        })
    }
}

/// What `zdm ctl` asks of the run.
#[derive(Debug, Clone, Subcommand)]
pub enum CtlCommand {
    /// Where the run is: status, step, progress, throttle, every setting
    Status,
    /// Stop the backfill after the current batch (its checkpoint commits)
    Pause,
    /// Continue a paused backfill
    Resume,
    /// Change a setting from the next batch on, e.g. batch_target=500ms, max_rows_per_second=5000/s,
    /// nice_ratio=0.5, max_replica_lag=2s (see docs/control.md for every key)
    Set {
        #[arg(value_name = "KEY=VALUE")]
        assignment: String,
    },
    /// Print one setting's value
    Get {
        #[arg(value_name = "KEY")]
        key: String,
    },
    /// Throttle the backfill now, by hand, until `no-throttle`
    Throttle,
    /// Clear the manual throttle (automatic throttling still applies)
    NoThrottle,
    /// Stop the backfill after the current batch; `zdm start` resumes it later. A contract
    /// waiting for its confirmation is cancelled
    Abort,
    /// Confirm the contract of a run waiting for it (`zdm complete NAME
    /// --await-confirmation`): its gates' verdicts are final, contract runs at once
    ConfirmContract {
        /// The migration's name, typed again
        #[arg(value_name = "NAME")]
        name: String,
        /// Accept this gate that did not pass (repeat for several); recorded in zdm.audit
        #[arg(long = "override-gate", value_name = "GATE")]
        overrides: Vec<String>,
    },
}

/// Flags of `zdm attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The running migration to follow [default: the only one running]
    #[arg(long, value_name = "NAME")]
    pub migration: Option<String>,

    /// The same as --migration: `zdm attach NAME`, as the console and `--detach` say
    #[arg(value_name = "NAME", conflicts_with = "migration")]
    pub name: Option<String>,

    /// Print every event as one JSON object per line
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Flags of `zdm demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Data size relative to the default of 200k customers, 1M orders and 2M order items
    /// (0.01 loads in a second or two)
    #[arg(long, value_name = "FACTOR", default_value_t = 1.0, value_parser = parse_scale, allow_negative_numbers = true)]
    pub scale: f64,

    /// Do not open the console: print the connection URLs and keep the servers up until
    /// Ctrl-C, so that another terminal can run zdm against them
    #[arg(long)]
    pub no_console: bool,

    /// The migrations the console offers on the demo database
    #[arg(long, value_name = "DIR", default_value = "sample-migrations")]
    pub dir: PathBuf,

    #[command(flatten)]
    pub theme: ThemeArgs,

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

/// Flags of `zdm top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Seconds between samples [default: 1, or interval_ms in zdm.toml's [monitor]]
    #[arg(long, value_name = "SECONDS", value_parser = parse_interval)]
    pub interval: Option<f64>,

    /// Stop after this many samples [default: run until Ctrl-C]
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,

    /// Print each sample as one JSON object per line
    #[arg(long)]
    pub json: bool,

    /// A table to watch closely (statistics, progress, default canary); repeatable,
    /// `name` or `schema.name`
    #[arg(long = "table", value_name = "TABLE")]
    pub tables: Vec<String>,

    /// The canary query whose latency is shown [default: a primary-key lookup on the first
    /// --table, else SELECT 1]
    #[arg(long, value_name = "SQL")]
    pub canary: Option<String>,
}

impl TopArgs {
    /// The monitor's options: zdm.toml and the environment, overridden by these flags.
    pub fn options(&self) -> Result<TopOptions, crate::config::Error> {
        let config = Config::load(&self.target.overrides())?;
        let mut monitor = config.monitor_options()?;
        if let Some(seconds) = self.interval {
            monitor.interval = Duration::from_secs_f64(seconds);
        }
        monitor.target_tables = self.tables.clone();
        if let Some(canary) = &self.canary {
            monitor.canary_query = Some(canary.clone());
        }
        Ok(TopOptions {
            monitor,
            json: self.json,
            count: self.count,
        })
    }
}

fn parse_interval(text: &str) -> Result<f64, String> {
    parse_bounded(text, 0.1, 3600.0)
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
