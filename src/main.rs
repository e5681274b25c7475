//! The zdm binary: parse the command line, hand each subcommand to the library, and turn
//! its outcome into output and an exit code (listed in `zdm --help`, [`zdm::cli::AFTER_HELP`]).
//! Output goes through [`emit`]: a closed stdout (`zdm plan | head -1`) ends the command
//! quietly, never a panic; SIGPIPE stays ignored so a run is never killed by its output.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use zdm::app::{self, run::CommandError};
use zdm::cli::{Cli, Command, TargetArgs};
use zdm::config::Config;
use zdm::runner::Job;

/// `zdm gates`: a gate did not pass.
const EXIT_GATES_NOT_PASSED: u8 = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(error) if closed_output(&error) => ExitCode::SUCCESS,
        Err(error) => {
            report(&error);
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode> {
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
            let mut out = Quiet(std::io::stdout());
            let mut err = std::io::stderr();
            let checked = app::validate::run(&config, args.json, &mut out, &mut err);
            let outcome = runtime.block_on(checked)?;
            if !outcome.passed(args.deny_warnings) {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Check(args) => {
            let config = Config::load(&args.target.overrides())?;
            let mut out = std::io::stdout();
            let checked = app::check::run(&config, args.dry_run, &mut out);
            let verdict = runtime.block_on(checked)?;
            std::process::exit(verdict.exit_code());
        }
        Command::Synth(args) => {
            let config = Config::load(&args.target.overrides())?;
            let options = zdm::synth::Options {
                scale: args.scale,
                keep_values: args.keep_values,
                jobs: args.jobs,
                seed: args.seed,
            };
            let mut out = Quiet(std::io::stdout());
            let made =
                app::synth::run(&config, &options, args.into.as_deref(), args.json, &mut out);
            runtime.block_on(made)?;
        }
        Command::Rehearse(args) => {
            let config = Config::load(&args.target.overrides())?;
            let options = app::rehearse::Options {
                scales: args.scales.clone(),
                pause: args.pause,
                window: args.window,
                baseline: args.baseline,
                clients: args.clients,
                rate: args.rate,
                write_share: args.write_share,
                insert_share: args.insert_share,
                replica: args.replica,
                keep_values: args.keep_values,
                ..app::rehearse::Options::default()
            };
            let mut out = Quiet(std::io::stdout());
            let report = args.report.as_deref();
            let done =
                app::rehearse::run(&config, &args.name, &options, args.json, report, &mut out);
            runtime.block_on(done)?;
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
            let config =
                Config::load(&args.target.overrides())?.with_metrics_listen(args.metrics_listen);
            let migration = args.name.clone().unwrap_or_default();
            detach(&runtime, &config, Job::Start { migration })?;
        }
        Command::Complete(args) if args.detach => {
            let config =
                Config::load(&args.target.overrides())?.with_metrics_listen(args.metrics_listen);
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
            let config =
                Config::load(&args.target.overrides())?.with_metrics_listen(args.metrics_listen);
            let done = runtime.block_on(app::start::run(&config, args.name.as_deref()));
            let resume = |name: &str| resume_command("start", name, &args.target);
            emit(&format!("{}\n", stopped_exits(done, resume)?));
        }
        Command::Complete(args) => {
            let config =
                Config::load(&args.target.overrides())?.with_metrics_listen(args.metrics_listen);
            let options = app::complete::CompleteOptions {
                confirmation: args.confirm_contract.clone().unwrap_or_default(),
                await_confirmation: args.await_confirmation,
                overrides: args.override_gate.clone(),
                window: args.window,
            };
            let done = runtime.block_on(app::complete::run(&config, &args.name, &options));
            let resume = |name: &str| resume_command("complete", name, &args.target);
            emit(&format!("{}\n", stopped_exits(done, resume)?));
            if args.repack {
                emit(&runtime.block_on(app::repack::after_contract(&config, &args.name)));
            }
        }
        Command::Repack(args) => {
            let config = Config::load(&args.target.overrides())?;
            let request = app::repack::Request {
                table: args.table.clone(),
                vacuum: args.vacuum,
                client: args.pg_repack.clone(),
                wait_timeout: args.wait_timeout,
                json: args.json,
                migration: None,
            };
            match runtime.block_on(app::repack::run(&config, &request)) {
                Ok(text) => emit(&text),
                // Stopped by the operator (Ctrl-C, SIGTERM) or a critical level, cleanly:
                // not a failure, the runs' exit code for a stop.
                Err(app::repack::CommandError::Repack(
                    error @ (zdm::engine::repack::Error::Aborted { .. }
                    | zdm::engine::repack::Error::NotStarted { .. }),
                )) => {
                    let _ = writeln!(std::io::stderr(), "{error}");
                    std::process::exit(zdm::engine::headless::EXIT_STOPPED);
                }
                Err(error) => return Err(error.into()),
            }
        }
        Command::Gates(args) => {
            let config = Config::load(&args.target.overrides())?;
            let report = app::gates::run(&config, &args.name, args.json, args.window);
            let report = runtime.block_on(report)?;
            emit(&report.text);
            if !report.passed {
                return Ok(ExitCode::from(EXIT_GATES_NOT_PASSED));
            }
        }
        Command::Audit(args) => {
            let config = Config::load(&args.target.overrides())?;
            let trail = app::audit::run(&config, args.migration.as_deref(), args.json);
            emit(&runtime.block_on(trail)?);
        }
        Command::Rollback(args) => {
            let config = Config::load(&args.target.overrides())?;
            let done = runtime.block_on(app::rollback::run(&config, &args.name));
            let resume = |name: &str| resume_command("rollback", name, &args.target);
            emit(&format!("{}\n", stopped_exits(done, resume)?));
        }
        Command::Init(args) => {
            let config = Config::load(&args.target.overrides())?;
            let done = runtime.block_on(app::init::run(&config, &args.schema))?;
            emit(&format!("{done}\n"));
        }
        Command::Status(args) => {
            let config = Config::load(&args.target.overrides())?;
            let status = runtime.block_on(app::status::run(&config, args.json))?;
            emit(&status.text);
            // A directory the operator named (--dir, migrations_dir) must be there; the
            // default ./migrations missing only leaves the files unlisted.
            let named = args.target.dir.is_some()
                || config.migrations_dir != Config::default().migrations_dir;
            if let (Some(missing), true) = (status.missing_dir, named) {
                return Err(missing.into());
            }
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
                return Ok(ExitCode::FAILURE);
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
            emit(&output);
        }
        Command::Completions(args) => emit(&zdm::cli::completions(args.shell)),
        Command::Man => emit(&zdm::cli::man_page()?),
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to stdout. A reader that went away (`| head -1`) is not an error: the
/// rest is dropped silently, as grep does, and the command ends as it would have.
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// A writer whose failures are dropped ([`emit`]'s rule for `zdm validate`'s lines).
struct Quiet<W>(W);

impl<W: Write> Write for Quiet<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(self.0.write(buf).unwrap_or(buf.len()))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

/// Whether `error` is only stdout closing under a command that streams to it (`zdm
/// attach`, `zdm ctl`): not worth a word.
fn closed_output(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Prints `error` and its causes, each once: a cause whose text its parent already
/// includes (a thiserror message that embeds its source) is not repeated, and a driver's
/// text that reads as Rust internals is said in words ([`zdm::db::advice`]).
fn report(error: &anyhow::Error) {
    let mut said: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if said.iter().any(|earlier| earlier.contains(text.trim())) {
            continue;
        }
        said.push(text);
    }
    let mut err = std::io::stderr().lock();
    for (index, text) in said.iter().enumerate() {
        let text = zdm::db::advice::advise(text).unwrap_or_else(|| text.clone());
        let _ = if index == 0 {
            writeln!(err, "error: {text}")
        } else {
            writeln!(err, "  because: {text}")
        };
    }
}

/// Starts `job` in a detached runner and says how to follow and steer it.
fn detach(runtime: &tokio::runtime::Runtime, config: &Config, job: Job) -> Result<()> {
    let detached = runtime.block_on(zdm::runner::spawn(config, &job))?;
    emit(&format!("{}\n", detached.describe(job.command())));
    Ok(())
}

/// The command that resumes `command` of `name`, with the flags that chose its files and
/// settings (never the database URL: it may hold a password).
fn resume_command(command: &str, name: &str, target: &TargetArgs) -> String {
    let mut line = match command {
        "complete" => format!("zdm complete {name} --confirm-contract {name}"),
        other => format!("zdm {other} {name}"),
    };
    if let Some(dir) = &target.dir {
        line.push_str(&format!(
            " --dir {}",
            shell_word(&dir.display().to_string())
        ));
    }
    if let Some(config) = &target.config {
        line.push_str(&format!(
            " --config {}",
            shell_word(&config.display().to_string())
        ));
    }
    line
}

/// `word` as the shell reads it back: bare when safe, else single-quoted.
fn shell_word(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A run stopped on request (a signal, an abort), or because the database stayed
/// unreachable past the reconnect budget, is not a failure: it says so once, with the
/// command that resumes it, and exits with its own code so a runbook can tell it from an
/// error.
fn stopped_exits(
    result: Result<String, CommandError>,
    resume: impl Fn(&str) -> String,
) -> Result<String, CommandError> {
    use zdm::engine::{headless, Error};
    let said = match &result {
        Err(CommandError::Stopped { migration, .. }) => Some(format!(
            "{}; resume with `{}`",
            result
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default(),
            resume(migration)
        )),
        Err(CommandError::Engine(
            error @ (Error::Stopped { .. }
            | Error::StoppedBetweenSteps { .. }
            | Error::Unreachable { .. }),
        )) => Some(error.to_string()),
        _ => None,
    };
    match said {
        Some(text) => {
            let _ = writeln!(std::io::stderr(), "{text}");
            std::process::exit(headless::EXIT_STOPPED);
        }
        None => result,
    }
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
