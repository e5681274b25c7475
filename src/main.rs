//! The zdm binary: parse the command line and hand each subcommand to the library.

use anyhow::Result;
use clap::Parser;
use zdm::cli::{Cli, Command};

fn main() -> Result<()> {
    let cli = Cli::parse();
    zdm::logging::init(cli.log.as_deref(), cli.log_file.as_deref())?;
    let runtime = tokio::runtime::Runtime::new()?;
    match &cli.command {
        Command::Demo(args) => runtime.block_on(zdm::demo::run(args.into()))?,
        Command::Plan(args) => {
            let config = zdm::config::Config::load(&args.target.overrides())?;
            let output = runtime.block_on(zdm::plan::command::run(
                &config,
                args.name.as_deref(),
                args.json,
            ))?;
            print!("{output}");
        }
    }
    Ok(())
}
