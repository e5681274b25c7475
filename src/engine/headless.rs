//! How the headless commands show a run: on a terminal, step lines and a one-line
//! progress bar redrawn in place (stderr); when stdout is not a terminal, one JSON object
//! per event on stdout (for runbooks and CI); and SIGINT/SIGTERM handling (first: stop
//! after the current batch, second: stop at once; the checkpoint holds either way).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

use super::backfill_control::BackfillControl;
use super::event::Event;
use super::phase_name;
use super::progress::{BackfillProgress, RunState};
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

/// One event as a JSON object; `event` names its kind. Durations are in milliseconds.
pub fn event_json(event: &Event) -> Value {
    let ms = |d: &Duration| d.as_millis() as u64;
    match event {
        Event::StepStarted {
            migration,
            phase,
            position,
            total,
            description,
        } => json!({"event": "step_started", "migration": migration,
            "phase": phase_name(*phase), "position": position + 1, "total": total,
            "description": description}),
        Event::StepDone {
            migration,
            phase,
            position,
        } => json!({"event": "step_done", "migration": migration,
            "phase": phase_name(*phase), "position": position + 1}),
        Event::LockWait {
            step,
            attempt,
            max_attempts,
            retry_in,
            blocked_by,
        } => json!({"event": "lock_wait", "step": step, "attempt": attempt,
            "max_attempts": max_attempts, "retry_in_ms": ms(retry_in), "blocked_by": blocked_by}),
        Event::BatchCommitted {
            step,
            batches,
            rows_updated,
            batch_rows,
            batch_size,
            took,
        } => json!({"event": "batch_committed", "step": step, "batches": batches,
            "rows_updated": rows_updated, "batch_rows": batch_rows, "batch_size": batch_size,
            "took_ms": ms(took)}),
        Event::BackfillProgress(progress) => {
            let mut value = serde_json::to_value(progress).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut value {
                map.insert("event".to_string(), json!("progress"));
            }
            value
        }
        Event::Throttled { step, reason } => {
            json!({"event": "throttled", "step": step, "reason": reason})
        }
        Event::ThrottleReleased { step, after } => {
            json!({"event": "throttle_released", "step": step, "after_ms": ms(after)})
        }
        Event::Paused { step, by } => json!({"event": "paused", "step": step, "by": by}),
        Event::Resumed { step } => json!({"event": "resumed", "step": step}),
        Event::CriticalLevel { step, reason } => {
            json!({"event": "critical_level", "step": step, "reason": reason})
        }
        Event::BackfillStopped {
            step,
            why,
            rows_updated,
        } => json!({"event": "backfill_stopped", "step": step, "why": why,
            "rows_updated": rows_updated}),
    }
}

/// The one-line progress bar: `[#####-----] 42% 1,234,567/2.9M rows  8,120 rows/s
/// ETA 3m 25s  batch 2,400 (190 ms)  throttled: replica lag 2.5 s above max 1.0 s`.
pub fn progress_line(progress: &BackfillProgress, width: usize) -> String {
    const BAR: usize = 20;
    let bar = match progress.fraction() {
        Some(fraction) => {
            let filled = (fraction * BAR as f64).round() as usize;
            format!(
                "[{}{}] {:>3.0}% ",
                "#".repeat(filled.min(BAR)),
                "-".repeat(BAR - filled.min(BAR)),
                fraction * 100.0
            )
        }
        None => String::new(),
    };
    let total = progress
        .rows_total_estimate
        .map(|t| format!("/~{}", thousands(t)))
        .unwrap_or_default();
    let eta = match progress.eta_seconds {
        Some(s) => duration(Duration::from_secs(s)),
        None => "TBD".to_string(),
    };
    let batch = match progress.last_batch_ms {
        Some(ms) => format!("batch {} ({ms} ms)", thousands(progress.batch_size)),
        None => format!("batch {}", thousands(progress.batch_size)),
    };
    let state = match &progress.state {
        RunState::Running => String::new(),
        RunState::Throttled { reason } => format!("  THROTTLED: {reason}"),
        RunState::Paused { by } => format!("  PAUSED: {by}"),
    };
    let line = format!(
        "{bar}{}{total} rows  {} rows/s  ETA {eta}  {batch}{state}",
        thousands(progress.rows_done),
        thousands(progress.rows_per_second_now.round() as u64),
    );
    // Cut to the terminal's width so the line never wraps (a wrapped line cannot be
    // redrawn in place).
    line.chars().take(width.max(20)).collect()
}

/// Prints events as `output` says until the channel closes.
pub fn print_events(output: Output, mut events: UnboundedReceiver<Event>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut bar_shown = false;
        let mut last_plain: Option<Instant> = None;
        while let Some(event) = events.recv().await {
            if output.json {
                println!("{}", event_json(&event));
            }
            let width =
                crossterm::terminal::size().map_or(100, |(w, _)| (w as usize).saturating_sub(1));
            let mut stderr = std::io::stderr().lock();
            if let (true, Event::BackfillProgress(progress)) = (output.bar, &event) {
                let _ = write!(stderr, "\r\x1b[K{}", progress_line(progress, width));
                let _ = stderr.flush();
                bar_shown = true;
                continue;
            }
            let line = match &event {
                Event::BackfillProgress(progress) => {
                    if last_plain.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
                        None
                    } else {
                        last_plain = Some(Instant::now());
                        Some(format!("  {}", progress_line(progress, 400)))
                    }
                }
                other => plain_line(other),
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

/// The human line for an event (None: shown only in the bar or in JSON).
fn plain_line(event: &Event) -> Option<String> {
    Some(match event {
        Event::StepStarted {
            phase,
            position,
            total,
            description,
            ..
        } => format!(
            "{} {}/{total}: {description}",
            phase_name(*phase),
            position + 1
        ),
        Event::LockWait {
            attempt,
            max_attempts,
            retry_in,
            blocked_by,
            ..
        } => format!(
            "  lock not granted within lock_timeout (try {attempt} of {max_attempts}), gave up \
             so the application is not queued; retrying in {:.1} s; {blocked_by}",
            retry_in.as_secs_f64()
        ),
        Event::Throttled { reason, .. } => format!("  backfill throttled: {reason}"),
        Event::ThrottleReleased { after, .. } => {
            format!("  throttle released after {}", duration(*after))
        }
        Event::Paused { by, .. } => format!("  backfill paused ({by})"),
        Event::Resumed { .. } => "  backfill resumed".to_string(),
        Event::CriticalLevel { reason, .. } => {
            format!("  ALERT: critical level reached, backfill paused until resumed: {reason}")
        }
        Event::BackfillStopped { why, .. } => {
            format!("  backfill stopped after its last committed batch ({why})")
        }
        Event::StepDone { .. } | Event::BatchCommitted { .. } | Event::BackfillProgress(_) => {
            return None
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

    fn progress(state: RunState) -> BackfillProgress {
        BackfillProgress {
            step: "backfill step 1 of 1 (backfill orders)".to_string(),
            table: "public.orders".to_string(),
            rows_done: 420_000,
            rows_updated: 420_000,
            rows_total_estimate: Some(1_000_000),
            batches: 84,
            batch_size: 5000,
            last_batch_ms: Some(190),
            rows_per_second_now: 8123.4,
            rows_per_second_average: 7000.0,
            eta_seconds: Some(83),
            state,
            running_seconds: 60.0,
            throttled_seconds: 0.0,
            paused_seconds: 0.0,
        }
    }

    #[test]
    fn the_bar_shows_rate_eta_batch_and_the_throttle_reason() {
        let line = progress_line(
            &progress(RunState::Throttled {
                reason: "replica lag 2.5 s above max 1.0 s".to_string(),
            }),
            200,
        );
        assert_eq!(
            line,
            "[########------------]  42% 420,000/~1,000,000 rows  8,123 rows/s  ETA 1m 23s  \
             batch 5,000 (190 ms)  THROTTLED: replica lag 2.5 s above max 1.0 s"
        );
        assert_eq!(
            progress_line(&progress(RunState::Running), 30)
                .chars()
                .count(),
            30
        );
    }

    #[test]
    fn progress_in_json_is_flat_and_names_its_state() {
        let value = event_json(&Event::BackfillProgress(progress(RunState::Paused {
            by: "operator".to_string(),
        })));
        assert_eq!(value["event"], "progress");
        assert_eq!(value["state"], "paused");
        assert_eq!(value["by"], "operator");
        assert_eq!(value["rows_done"], 420_000);
        assert_eq!(value["eta_seconds"], 83);
    }
}
