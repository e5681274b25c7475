//! `zdm attach`: follow a run of the given database, printing its events for a person (or
//! one JSON object per line) until it ends or Ctrl-C; the run goes on either way.

use std::io::Write;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::control::address::{runtime_dir, Target};
use crate::control::client::Client;
use crate::control::discover::find;
use crate::control::error::Error;
use crate::engine::headless::Printer;
use crate::protocol::Stamped;

/// In readable `zdm attach` output, progress is printed at most this often (every batch
/// would scroll too fast to read; `--json` gets every event).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Runs `zdm attach`: prints events until the run ends (its socket closes) or Ctrl-C.
/// Either way the run goes on; attaching never changes it. Only runs of `target`.
pub async fn attach(
    migration: Option<&str>,
    json: bool,
    target: Option<&Target>,
    out: &mut impl Write,
) -> Result<(), Error> {
    // Listening for Ctrl-C before attaching: from the moment the run counts this client,
    // Ctrl-C must detach cleanly rather than kill the process mid-line.
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let run = find(&runtime_dir(), target, migration).await?;
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
        if json {
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
