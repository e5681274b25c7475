//! `zdm ctl` and `zdm attach`: find the run, send one command or follow its events, and
//! print what comes back for a person (or as raw JSON with `--json`).

use std::io::Write;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};

use super::address::{runtime_dir, RunInfo, Target};
use super::client::Client;
use super::discover::find;
use super::error::Error;
use super::setting::{Deprecated, Setting, SettingKey};
use crate::cli::{AttachArgs, CtlArgs, CtlCommand};
use crate::engine::headless::Printer;
use crate::protocol::{Command, Reply, RunStatus, Stamped};

/// In readable `zdm attach` output, progress is printed at most this often (every batch
/// would scroll too fast to read; `--json` gets every event).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Runs `zdm ctl`: `Ok(true)` when the run accepted the command, `Ok(false)` when it
/// answered with an error (printed to stderr, or to `out` as JSON with `--json`).
/// Only runs of `target` (the database the command was given) are reached.
pub async fn ctl(
    args: &CtlArgs,
    target: Option<&Target>,
    out: &mut impl Write,
) -> Result<bool, Error> {
    // Bad input is refused before looking for a run: it would be refused there too.
    let (command, deprecated) = command_of(&args.command)?;
    let run = find(&runtime_dir(), target, args.migration.as_deref()).await?;
    let mut client = Client::connect(&run.path).await?;
    let line = client
        .request(&super::request::Request::Run(command.clone()))
        .await?;
    let reply: Reply = serde_json::from_str(&line).map_err(|error| Error::Protocol {
        path: run.path.clone(),
        detail: error.to_string(),
    })?;
    // An old setting name works for one more release; the warning names the new one
    // (stderr, so that stdout stays the reply).
    if let Some(deprecated) = deprecated {
        eprintln!(
            "zdm ctl {}: warning: {deprecated}",
            command.name().replace('_', "-")
        );
    }
    if args.json {
        writeln!(out, "{line}").map_err(Error::Output)?;
        return Ok(reply.is_ok());
    }
    let text = match &reply {
        Reply::Done { message } => message.clone(),
        Reply::Value(setting) => setting.to_string(),
        Reply::Status(status) => describe_status(&run.info, status),
        Reply::Error(error) => {
            eprintln!("zdm ctl {}: {error}", command.name().replace('_', "-"));
            return Ok(false);
        }
    };
    writeln!(out, "{text}").map_err(Error::Output)?;
    Ok(true)
}

/// The typed command for a `zdm ctl` subcommand, and whether it named a setting by an
/// old name.
fn command_of(command: &CtlCommand) -> Result<(Command, Option<Deprecated>), Error> {
    let mut deprecated = None;
    let command = match command {
        CtlCommand::Status => Command::Status,
        CtlCommand::Pause => Command::Pause,
        CtlCommand::Resume => Command::Resume,
        CtlCommand::Set { assignment } => {
            let (setting, old) = Setting::parse_named(assignment)?;
            deprecated = old;
            Command::Set(setting)
        }
        CtlCommand::Get { key } => {
            let (key, old) = SettingKey::lookup_live(key)?;
            deprecated = old.map(Deprecated::from);
            Command::Get { key }
        }
        CtlCommand::Throttle => Command::Throttle,
        CtlCommand::NoThrottle => Command::NoThrottle,
        CtlCommand::Abort => Command::Abort,
    };
    Ok((command, deprecated))
}

/// `zdm ctl status` for a person.
pub fn describe_status(info: &RunInfo, status: &RunStatus) -> String {
    let mut lines = vec![info.describe()];
    let mut row = |label: &str, value: String| lines.push(format!("{label:<16}{value}"));
    row("status", status.status_words());
    if let Some(log) = &info.log {
        row("log", log.display().to_string());
    }
    if let Some(step) = &status.step {
        row("step", step.clone());
    }
    // The backfill's state; with no backfill running only a pause or throttle is news.
    let state = if status.paused {
        Some("paused".to_string())
    } else if !status.throttle_reasons.is_empty() {
        Some(format!("throttled: {}", status.throttle_reasons.join("; ")))
    } else {
        status
            .progress
            .as_ref()
            .map(|progress| progress.state.label().to_string())
    };
    if let Some(state) = state {
        row("state", state);
    }
    row(
        "manual throttle",
        if status.manual_throttle { "on" } else { "off" }.to_string(),
    );
    if let Some(progress) = &status.progress {
        row("backfill", progress.describe());
        row(
            "time",
            format!(
                "running {} · throttled {} · paused {}",
                crate::format::duration(progress.time_running),
                crate::format::duration(progress.time_throttled),
                crate::format::duration(progress.time_paused)
            ),
        );
    }
    for (i, setting) in status.settings.iter().enumerate() {
        row(if i == 0 { "settings" } else { "" }, setting.to_string());
    }
    lines.join("\n")
}

/// Runs `zdm attach`: prints events until the run ends (its socket closes) or Ctrl-C.
/// Either way the run goes on; attaching never changes it. Only runs of `target`.
pub async fn attach(
    args: &AttachArgs,
    target: Option<&Target>,
    out: &mut impl Write,
) -> Result<(), Error> {
    // Listening for Ctrl-C before attaching: from the moment the run counts this client,
    // Ctrl-C must detach cleanly rather than kill the process mid-line.
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let named = args.migration.as_deref().or(args.name.as_deref());
    let run = find(&runtime_dir(), target, named).await?;
    let (info, mut events) = Client::connect(&run.path).await?.attach().await?;
    // Messages about the stream go to stderr so that stdout stays pure event lines.
    eprintln!(
        "attached to {}; Ctrl-C detaches, the run goes on",
        info.describe()
    );
    let mut printer = Printer::attach(PROGRESS_EVERY);
    loop {
        let line = tokio::select! {
            _ = interrupted(&mut interrupt) => {
                eprintln!("detached; {} goes on", info.migration);
                return Ok(());
            }
            line = events.next_line() => line?,
        };
        let Some(line) = line else {
            eprintln!(
                "the run of {} ended (its control socket closed)",
                info.migration
            );
            return Ok(());
        };
        if args.json {
            writeln!(out, "{line}").map_err(Error::Output)?;
        } else {
            // An event this zdm does not know (the run is a newer version) is shown raw
            // rather than ending the stream.
            let Ok(stamped) = serde_json::from_str::<Stamped>(&line) else {
                writeln!(out, "{line}").map_err(Error::Output)?;
                out.flush().map_err(Error::Output)?;
                continue;
            };
            for text in printer.lines(&stamped) {
                writeln!(out, "{text}").map_err(Error::Output)?;
            }
        }
        out.flush().map_err(Error::Output)?;
    }
}

/// Resolves on the signal; never when it could not be listened for.
async fn interrupted(signal: &mut Option<Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}
