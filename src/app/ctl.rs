//! `zdm ctl`: find the run of the given database, send it one command and print its reply
//! for a person (or as raw JSON with `--json`).

use std::io::Write;

use crate::control::address::{runtime_dir, RunInfo, Target};
use crate::control::client::Client;
use crate::control::discover::find;
use crate::control::error::Error;
use crate::control::request::Request;
use crate::protocol::{Command, Reply, RunStatus};
use crate::settings::Deprecated;

/// What `zdm ctl` was asked, already checked: bad input is refused before looking for a
/// run (it would be refused there too).
#[derive(Debug, Clone)]
pub struct CtlRequest {
    pub command: Command,
    /// The command named a setting by an old name: the warning to print.
    pub deprecated: Option<Deprecated>,
    /// The run to talk to; `None`: the only one of the database.
    pub migration: Option<String>,
    /// Print the reply as raw JSON.
    pub json: bool,
}

/// Runs `zdm ctl`: `Ok(true)` when the run accepted the command, `Ok(false)` when it
/// answered with an error (printed to stderr, or to `out` as JSON with `--json`).
/// Only runs of `target` (the database the command was given) are reached.
pub async fn ctl(
    request: &CtlRequest,
    target: Option<&Target>,
    out: &mut impl Write,
) -> Result<bool, Error> {
    let CtlRequest {
        command,
        deprecated,
        migration,
        json,
    } = request;
    let run = find(&runtime_dir(), target, migration.as_deref()).await?;
    let mut client = Client::connect(&run.path).await?;
    let line = client.request(&Request::Run(command.clone())).await?;
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
    if *json {
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
