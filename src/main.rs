//! The zdm binary: parse the command line and hand each subcommand to the library.

use anyhow::Result;
use clap::Parser;
use zdm::cli::{Cli, Command};
use zdm::config::Config;
use zdm::engine::commands;

fn main() -> Result<()> {
    let cli = Cli::parse();
    zdm::logging::init(cli.log.as_deref(), cli.log_file.as_deref())?;
    let runtime = tokio::runtime::Runtime::new()?;
    match &cli.command {
        Command::Demo(args) => runtime.block_on(zdm::demo::run(args.into()))?,
        Command::Validate(args) => {
            let outcome =
                zdm::migration::command::run(args, &mut std::io::stdout(), &mut std::io::stderr())?;
            if !outcome.passed(args.deny_warnings) {
                std::process::exit(1);
            }
        }
        Command::Start(args) => {
            let config = Config::load(&args.target.overrides())?;
            let name = args.name.as_deref();
            println!(
                "{}",
                stopped_exits(runtime.block_on(commands::start(&config, name)))?
            );
        }
        Command::Complete(args) => {
            let config = Config::load(&args.target.overrides())?;
            let confirmation = &args.confirm_contract;
            let done = commands::complete(&config, &args.name, confirmation);
            println!("{}", stopped_exits(runtime.block_on(done))?);
        }
        Command::Rollback(args) => {
            let config = Config::load(&args.target.overrides())?;
            println!(
                "{}",
                runtime.block_on(commands::rollback(&config, &args.name))?
            );
        }
        Command::Status(args) => {
            let config = Config::load(&args.target.overrides())?;
            print!(
                "{}",
                runtime.block_on(commands::status(&config, args.json))?
            );
        }
        Command::Top(args) => runtime.block_on(zdm::monitor::top::run(args.options()?))?,
    }
    Ok(())
}

/// A run stopped on request (a signal, an abort) is not a failure: it says how to resume
/// and exits with its own code, so a runbook can tell it from an error.
fn stopped_exits(
    result: Result<String, commands::CommandError>,
) -> Result<String, commands::CommandError> {
    use zdm::engine::{headless, Error};
    if let Err(commands::CommandError::Engine(
        error @ (Error::Stopped { .. } | Error::StoppedBetweenSteps { .. }),
    )) = &result
    {
        eprintln!("{error}");
        std::process::exit(headless::EXIT_STOPPED);
    }
    result
}
