//! How the headless commands show a run, from the same events the control socket sends:
//! on a terminal, event lines and a one-line progress bar redrawn in place (stderr);
//! when stdout is not a terminal, one JSON object per event on stdout (for runbooks and
//! CI); and SIGINT/SIGTERM handling (first: stop after the current batch, second: stop
//! at once; the checkpoint holds either way).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::backfill_control::BackfillControl;
use crate::control::{Event, Progress, RunState, Stamped};
use crate::format::{duration, thousands};

/// Exit code of a run stopped on request (a signal, an abort) after its checkpoint.
pub const EXIT_STOPPED: i32 = 3;
/// Exit code after a second signal: stopped at once, without waiting for the batch.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Where the run's progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// JSON lines on stdout.
    pub json: bool,
    /// A progress bar redrawn in place on stderr (else plain lines, at most one a second).
    pub bar: bool,
}

impl Output {
    /// JSON when stdout is not a terminal; a bar when stderr is one.
    pub fn detect() -> Self {
        Output {
            json: !std::io::stdout().is_terminal(),
            bar: std::io::stderr().is_terminal(),
        }
    }

    /// The outcome as the last line of stdout: text, or a JSON object in JSON mode.
    pub fn outcome(&self, text: &str) -> String {
        if self.json {
            json!({"event": "outcome", "text": text}).to_string()
        } else {
            text.to_string()
        }
    }
}

/// The one-line progress bar: `[#####-----] 42% 1,234,567/~2,900,000 rows  8,120 rows/s
/// ETA 3m 25s  batch 2,400 (190 ms)  THROTTLED: replica lag 2.5 s above max 1.0 s`.
pub fn progress_line(progress: &Progress, width: usize) -> String {
    const BAR: usize = 20;
    let bar = match progress.percent() {
        Some(percent) => {
            let filled = ((percent / 100.0) * BAR as f64).round() as usize;
            format!(
                "[{}{}] {:>3.0}% ",
                "#".repeat(filled.min(BAR)),
                "-".repeat(BAR - filled.min(BAR)),
                percent
            )
        }
        None => String::new(),
    };
    let total = progress
        .rows_total_estimate
        .map(|t| format!("/~{}", thousands(t)))
        .unwrap_or_default();
    let eta = match progress.eta {
        Some(eta) => duration(eta),
        None => "TBD".to_string(),
    };
    let batch = match progress.last_batch {
        Some(took) => format!(
            "batch {} ({} ms)",
            thousands(progress.batch_size),
            took.as_millis()
        ),
        None => format!("batch {}", thousands(progress.batch_size)),
    };
    let reason = progress.reason.as_deref().unwrap_or("");
    let state = match progress.state {
        RunState::Running => String::new(),
        RunState::Throttled => format!("  THROTTLED: {reason}"),
        RunState::Paused => format!("  PAUSED: {reason}"),
    };
    let line = format!(
        "{bar}{}{total} rows  {} rows/s  ETA {eta}  {batch}{state}",
        thousands(progress.rows_done),
        thousands(progress.rows_per_second_now.max(0.0).round() as u64),
    );
    // Cut to the terminal's width so the line never wraps (a wrapped line cannot be
    // redrawn in place).
    line.chars().take(width.max(20)).collect()
}

/// Prints the run's events (the same [`Event`]s every front-end reads) as
/// `output` says until the stream ends: JSON lines on stdout (each as `zdm attach --json`
/// prints it), and on stderr the progress bar or plain lines.
pub fn print_events(output: Output, mut events: broadcast::Receiver<Stamped>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut bar_shown = false;
        let mut last_plain: Option<Instant> = None;
        loop {
            let stamped = match events.recv().await {
                Ok(stamped) => stamped,
                Err(broadcast::error::RecvError::Lagged(count)) => {
                    Stamped::now(Event::Missed { count })
                }
                Err(broadcast::error::RecvError::Closed) => break,
            };
            if output.json {
                if let Ok(line) = serde_json::to_string(&stamped) {
                    println!("{line}");
                }
            }
            let event = &stamped.event;
            let width =
                crossterm::terminal::size().map_or(100, |(w, _)| (w as usize).saturating_sub(1));
            let mut stderr = std::io::stderr().lock();
            if let (true, Event::Progress(progress)) = (output.bar, event) {
                let _ = write!(stderr, "\r\x1b[K{}", progress_line(progress, width));
                let _ = stderr.flush();
                bar_shown = true;
                continue;
            }
            let line = match event {
                Event::Progress(progress) => {
                    if last_plain.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
                        None
                    } else {
                        last_plain = Some(Instant::now());
                        Some(format!("  {}", progress_line(progress, 400)))
                    }
                }
                // Per batch is too fast to read; the progress line carries the figures.
                Event::BatchDone(_) => None,
                other => Some(other.describe()),
            };
            if let Some(line) = line {
                if bar_shown {
                    let _ = write!(stderr, "\r\x1b[K");
                    bar_shown = false;
                }
                let _ = writeln!(stderr, "{line}");
            }
        }
        if bar_shown {
            let _ = writeln!(std::io::stderr());
        }
    })
}

/// The first SIGINT or SIGTERM asks `control` to stop after the current batch; a second
/// one exits at once (the open batch is rolled back by the server, the checkpoint holds).
pub fn stop_on_signals(control: BackfillControl) -> JoinHandle<()> {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::warn!("cannot listen for SIGINT/SIGTERM");
            return;
        };
        let mut received = 0;
        loop {
            let name = tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            };
            received += 1;
            if received == 1 {
                tracing::warn!("{name}: stopping after the current batch");
                eprintln!(
                    "\n{name} received: stopping after the current batch and its checkpoint \
                     (send it again to stop at once; the checkpoint holds either way)"
                );
                control.stop(&format!("{name} received"));
            } else {
                tracing::warn!("{name} again: stopping at once");
                eprintln!(
                    "\n{name} again: stopped at once. The batch in flight is rolled back by \
                     the server; every committed batch is checkpointed. Run the same command \
                     again to resume"
                );
                std::process::exit(EXIT_INTERRUPTED);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(state: RunState, reason: Option<&str>) -> Progress {
        Progress {
            migration: "0001_orders".to_string(),
            table: "public.orders".to_string(),
            rows_done: 420_000,
            rows_total_estimate: Some(1_000_000),
            rows_per_second_now: 8123.4,
            rows_per_second_average: 7000.0,
            eta: Some(Duration::from_secs(83)),
            batch_size: 5000,
            last_batch: Some(Duration::from_millis(190)),
            batch_target: Duration::from_millis(200),
            state,
            reason: reason.map(str::to_string),
            time_running: Duration::from_secs(60),
            time_throttled: Duration::ZERO,
            time_paused: Duration::ZERO,
        }
    }

    #[test]
    fn the_bar_shows_rate_eta_batch_and_the_throttle_reason() {
        let line = progress_line(
            &progress(
                RunState::Throttled,
                Some("replica lag 2.5 s above max 1.0 s"),
            ),
            200,
        );
        assert_eq!(
            line,
            "[########------------]  42% 420,000/~1,000,000 rows  8,123 rows/s  ETA 1m 23s  \
             batch 5,000 (190 ms)  THROTTLED: replica lag 2.5 s above max 1.0 s"
        );
        assert_eq!(
            progress_line(&progress(RunState::Running, None), 30)
                .chars()
                .count(),
            30
        );
    }
}
