//! The zdm binary: parse the command line and hand each subcommand to the library.

use anyhow::Result;
use clap::Parser;
use zdm::app::{self, run::CommandError};
use zdm::cli::{Cli, Command};
use zdm::config::Config;
use zdm::runner::Job;

fn main() -> Result<()> {
    let cli = Cli::parse();
    zdm::logging::init(cli.log.as_deref(), cli.log_file.as_deref())?;
    let runtime = tokio::runtime::Runtime::new()?;
    match &cli.command {
        Command::Demo(args) if args.no_console => runtime.block_on(zdm::demo::run(args.into()))?,
        Command::Demo(args) => {
            let theme = args.theme.theme()?;
            let demo = zdm::tui::event_loop::run_demo(args.into(), args.dir.clone(), theme);
            runtime.block_on(demo)?;
        }
        Command::Console(args) => {
            let config = Config::load(&args.target.overrides())?;
            let theme = args.theme.theme()?;
            runtime.block_on(zdm::tui::event_loop::run(config, theme))?;
        }
        Command::Validate(args) => {
            let config = Config::load(&args.target.overrides())?;
            let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
            let checked = app::validate::run(&config, &mut out, &mut err);
            let outcome = runtime.block_on(checked)?;
            if !outcome.passed(args.deny_warnings) {
                std::process::exit(1);
            }
        }
        Command::Check(args) => {
            let config = Config::load(&args.target.overrides())?;
            let mut out = std::io::stdout();
            let checked = app::check::run(&config, args.dry_run, &mut out);
            let verdict = runtime.block_on(checked)?;
            std::process::exit(verdict.exit_code());
        }
        Command::Import(args) => {
            let config = Config::load(&args.target.overrides())?;
            let imported = app::import::run(
                &config,
                args.tool,
                &args.source,
                args.into.as_ref(),
                args.adopt,
            );
            let (report, valid) = runtime.block_on(imported)?;
            print!("{report}");
            if !valid {
                std::process::exit(1);
            }
        }
        Command::Lint(args) => {
            let config = Config::load(&args.target.overrides())?;
            let format = if args.json {
                zdm::lint::report::Format::Json
            } else {
                args.format
            };
            let (linted, text) = app::lint::run(&config, &args.paths, format);
            print!("{text}");
            if !linted.passed(args.deny_warnings) {
                std::process::exit(1);
            }
        }
        Command::Start(args) if args.detach => {
            let config = Config::load(&args.target.overrides())?;
            let migration = args.name.clone().unwrap_or_default();
            detach(&runtime, &config, Job::Start { migration })?;
        }
        Command::Complete(args) if args.detach => {
            let config = Config::load(&args.target.overrides())?;
            let job = match &args.confirm_contract {
                None => Job::CompleteOnConfirmation {
                    migration: args.name.clone(),
                    window: args.window,
                },
                // Refused here too: a runner would only refuse it in its log.
                Some(given) if *given != args.name => {
                    anyhow::bail!(zdm::engine::Error::ConfirmationMismatch {
                        name: args.name.clone(),
                        given: given.clone(),
                    })
                }
                Some(_) => Job::Complete {
                    migration: args.name.clone(),
                    overrides: args.override_gate.clone(),
                    window: args.window,
                },
            };
            detach(&runtime, &config, job)?;
        }
        Command::Rollback(args) if args.detach => {
            let config = Config::load(&args.target.overrides())?;
            let migration = args.name.clone();
            detach(&runtime, &config, Job::Rollback { migration })?;
        }
        Command::Start(args) => {
            let config = Config::load(&args.target.overrides())?;
            let name = args.name.as_deref();
            println!(
                "{}",
                stopped_exits(runtime.block_on(app::start::run(&config, name)))?
            );
        }
        Command::Complete(args) => {
            let config = Config::load(&args.target.overrides())?;
            let options = app::complete::CompleteOptions {
                confirmation: args.confirm_contract.clone().unwrap_or_default(),
                await_confirmation: args.await_confirmation,
                overrides: args.override_gate.clone(),
                window: args.window,
            };
            let done = app::complete::run(&config, &args.name, &options);
            println!("{}", stopped_exits(runtime.block_on(done))?);
        }
        Command::Gates(args) => {
            let config = Config::load(&args.target.overrides())?;
            let report = app::gates::run(&config, &args.name, args.json, args.window);
            print!("{}", runtime.block_on(report)?);
        }
        Command::Audit(args) => {
            let config = Config::load(&args.target.overrides())?;
            let trail = app::audit::run(&config, args.migration.as_deref(), args.json);
            print!("{}", runtime.block_on(trail)?);
        }
        Command::Rollback(args) => {
            let config = Config::load(&args.target.overrides())?;
            println!(
                "{}",
                runtime.block_on(app::rollback::run(&config, &args.name))?
            );
        }
        Command::Init(args) => {
            let config = Config::load(&args.target.overrides())?;
            println!(
                "{}",
                runtime.block_on(app::init::run(&config, &args.schema))?
            );
        }
        Command::Status(args) => {
            let config = Config::load(&args.target.overrides())?;
            print!(
                "{}",
                runtime.block_on(app::status::run(&config, args.json))?
            );
        }
        Command::Top(args) => runtime.block_on(app::top::run(args.options()?))?,
        Command::Ctl(args) => {
            // Bad input is refused before looking for a run: it would be refused there too.
            let request = args.request()?;
            let target = run_target(&args.database)?;
            let ok = runtime.block_on(app::ctl::ctl(
                &request,
                target.as_ref(),
                &mut std::io::stdout(),
            ))?;
            if !ok {
                std::process::exit(1);
            }
        }
        Command::Attach(args) => {
            let target = run_target(&args.database)?;
            let migration = args.migration.as_deref().or(args.name.as_deref());
            runtime.block_on(app::attach::attach(
                migration,
                args.json,
                target.as_ref(),
                &mut std::io::stdout(),
            ))?
        }
        Command::Plan(args) => {
            let config = zdm::config::Config::load(&args.target.overrides())?;
            let output =
                runtime.block_on(app::plan::run(&config, args.name.as_deref(), args.json))?;
            print!("{output}");
        }
    }
    Ok(())
}

/// Starts `job` in a detached runner and says how to follow and steer it.
fn detach(runtime: &tokio::runtime::Runtime, config: &Config, job: Job) -> Result<()> {
    let detached = runtime.block_on(zdm::runner::spawn(config, &job))?;
    println!("{}", detached.describe(job.command()));
    Ok(())
}

/// A run stopped on request (a signal, an abort), or because the database stayed
/// unreachable past the reconnect budget, is not a failure: it says how to resume and
/// exits with its own code, so a runbook can tell it from an error.
fn stopped_exits(result: Result<String, CommandError>) -> Result<String, CommandError> {
    use zdm::engine::{headless, Error};
    if let Err(CommandError::Engine(
        error @ (Error::Stopped { .. }
        | Error::StoppedBetweenSteps { .. }
        | Error::Unreachable { .. }),
    )) = &result
    {
        eprintln!("{error}");
        std::process::exit(headless::EXIT_STOPPED);
    }
    result
}

/// The database whose runs `zdm ctl` / `zdm attach` may reach, from the same flags,
/// environment and `zdm.toml` as every other command; None when none is given (the command
/// then refuses and says how to give one).
fn run_target(database: &zdm::cli::DatabaseArgs) -> Result<Option<zdm::control::Target>> {
    let config = Config::load(&database.overrides())?;
    match config.database_url() {
        Ok(url) => Ok(Some(zdm::control::Target::from_url(url).map_err(
            |error| {
                anyhow::anyhow!(
                    "cannot read the database URL {}: {error}",
                    zdm::db::redact_url(url.expose())
                )
            },
        )?)),
        Err(_) => Ok(None),
    }
}
