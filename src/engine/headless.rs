//! How a run shows on a terminal, from the same events the control socket sends: the
//! one [`Printer`] of run events (the headless commands and `zdm attach` both use it):
//! event lines and a one-line progress bar redrawn in place; when stdout is not a
//! terminal, one JSON object per event on stdout (for runbooks and CI); and SIGINT/SIGTERM
//! handling (first: stop after the current batch, second: stop at once; the checkpoint
//! holds either way).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::backfill_control::BackfillControl;
use crate::format::{duration, thousands};
use crate::monitor::alerts::{self, AlertChange};
use crate::monitor::{Alert, Metrics};
use crate::protocol::{Event, Progress, RunState, Stamped};

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

/// How run events read on a terminal: the one printer of `zdm start`, `zdm complete`,
/// `zdm rollback` (on stderr) and `zdm attach` (on stdout). Calm by design: per-batch
/// events are skipped (progress carries their figures), progress is printed at most every
/// `progress_every` (or redrawn in place as a bar), and the run's metrics show as the
/// alerts they raise or clear plus a health line at most every [`HEALTH_EVERY`].
#[derive(Debug)]
pub struct Printer {
    /// Progress as a bar redrawn in place (the output is a terminal).
    bar: bool,
    /// Lines start with the event's local time (`zdm attach`); progress then reads as
    /// [`Progress::describe`] rather than the bar's figures.
    timestamps: bool,
    progress_every: Duration,
    last_progress: Option<Instant>,
    last_health: Option<Instant>,
    alerts: Vec<Alert>,
    bar_shown: bool,
    /// The gates' countdown last printed: how many had settled, and when.
    last_gates: Option<(usize, Instant)>,
    /// When "waits for its confirmation" was last printed.
    last_awaiting: Option<Instant>,
}

/// The gates' countdown (and a contract waiting for its confirmation) is printed again at
/// most this often, unless a gate settles.
pub const GATES_EVERY: Duration = Duration::from_secs(10);

/// A health line (from the run's metrics) is printed at most this often.
pub const HEALTH_EVERY: Duration = Duration::from_secs(60);

impl Printer {
    /// The headless commands' printer: a bar when `bar`, else plain progress lines at
    /// most once a second.
    pub fn headless(bar: bool) -> Self {
        Printer::new(bar, false, Duration::from_secs(1))
    }

    /// `zdm attach`'s: timestamped lines, progress at most every `progress_every`.
    pub fn attach(progress_every: Duration) -> Self {
        Printer::new(false, true, progress_every)
    }

    fn new(bar: bool, timestamps: bool, progress_every: Duration) -> Self {
        Printer {
            bar,
            timestamps,
            progress_every,
            last_progress: None,
            last_health: None,
            alerts: Vec::new(),
            bar_shown: false,
            last_gates: None,
            last_awaiting: None,
        }
    }

    /// The lines `stamped` reads as now (often none).
    pub fn lines(&mut self, stamped: &Stamped) -> Vec<String> {
        let now = Instant::now();
        let event = &stamped.event;
        let text = match event {
            // Per batch is too fast to read; the progress line carries the figures.
            Event::BatchDone(_) => return Vec::new(),
            Event::Progress(progress) => {
                if self
                    .last_progress
                    .is_some_and(|at| now.duration_since(at) < self.progress_every)
                {
                    return Vec::new();
                }
                self.last_progress = Some(now);
                if self.timestamps {
                    progress.describe()
                } else {
                    format!("  {}", progress_line(progress, 400))
                }
            }
            Event::Metrics(metrics) => return self.metrics_lines(stamped, metrics, now),
            Event::GatesObserving(observing) => {
                let settled = observing.settled.len();
                let due = self.last_gates.is_none_or(|(shown, at)| {
                    shown != settled || now.duration_since(at) >= GATES_EVERY
                });
                if !due {
                    return Vec::new();
                }
                self.last_gates = Some((settled, now));
                observing.describe()
            }
            Event::AwaitingConfirmation { .. } => {
                // Once a minute is enough to remind; the first says what to type.
                if self
                    .last_awaiting
                    .is_some_and(|at| now.duration_since(at) < GATES_EVERY * 6)
                {
                    return Vec::new();
                }
                self.last_awaiting = Some(now);
                event.describe()
            }
            // A headless command says how it ended itself, once (its outcome, or the stop
            // with the command that resumes it): the run's own words would repeat it.
            Event::Finished { .. } | Event::BackfillStopped { .. } if !self.timestamps => {
                return Vec::new()
            }
            other => other.describe(),
        };
        vec![self.stamp(stamped, text)]
    }

    /// Alerts raised and cleared, and a health line now and then.
    fn metrics_lines(&mut self, stamped: &Stamped, metrics: &Metrics, now: Instant) -> Vec<String> {
        let mut lines: Vec<String> = alerts::changes(&self.alerts, &metrics.alerts)
            .into_iter()
            .map(|change| match change {
                AlertChange::Raised(alert) => format!("alert: {}", alert.message),
                AlertChange::Cleared { subject, .. } => format!("alert cleared: {subject}"),
            })
            .collect();
        self.alerts = metrics.alerts.clone();
        if self
            .last_health
            .is_none_or(|at| now.duration_since(at) >= HEALTH_EVERY)
        {
            self.last_health = Some(now);
            lines.push(stamped.event.describe());
        }
        lines
            .into_iter()
            .map(|line| self.stamp(stamped, line))
            .collect()
    }

    fn stamp(&self, stamped: &Stamped, text: String) -> String {
        if self.timestamps {
            let local = stamped.at.with_timezone(&chrono::Local);
            format!("{}  {text}", local.format("%H:%M:%S"))
        } else {
            text
        }
    }

    /// Writes what `stamped` reads as to `out` (the bar redrawn in place when this
    /// printer draws one, `width` columns wide).
    pub fn write(&mut self, stamped: &Stamped, width: usize, out: &mut impl Write) {
        if let (true, Event::Progress(progress)) = (self.bar, &stamped.event) {
            let _ = write!(out, "\r\x1b[K{}", progress_line(progress, width));
            let _ = out.flush();
            self.bar_shown = true;
            return;
        }
        for line in self.lines(stamped) {
            if self.bar_shown {
                let _ = write!(out, "\r\x1b[K");
                self.bar_shown = false;
            }
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }

    /// Ends a bar left on screen with its line.
    pub fn end(&mut self, out: &mut impl Write) {
        if self.bar_shown {
            let _ = writeln!(out);
            self.bar_shown = false;
        }
    }
}

/// Prints the run's events (the same [`Event`]s every front-end reads) as
/// `output` says until the stream ends: JSON lines on stdout (each as `zdm attach --json`
/// prints it; the metrics samples only there), and on stderr the progress bar or plain
/// lines ([`Printer`]).
pub fn print_events(output: Output, mut events: broadcast::Receiver<Stamped>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut printer = Printer::headless(output.bar);
        loop {
            let stamped = match events.recv().await {
                Ok(stamped) => stamped,
                Err(broadcast::error::RecvError::Lagged(count)) => {
                    Stamped::now(Event::Missed { count })
                }
                Err(broadcast::error::RecvError::Closed) => break,
            };
            // Every event but the run's metrics samples: a sample a second, several KiB
            // each, would swamp a runbook's log (and block a pipe nobody reads); they
            // are on the socket (`zdm attach --json`), and on stderr as alerts and a
            // health line now and then.
            // A closed stdout (`zdm start | head -1`) drops the lines, never the run: the
            // migration goes on to its end, said on stderr, and its outcome decides the
            // exit code.
            if output.json && !matches!(stamped.event, Event::Metrics(_)) {
                if let Ok(line) = serde_json::to_string(&stamped) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
                }
            }
            let width =
                crossterm::terminal::size().map_or(100, |(w, _)| (w as usize).saturating_sub(1));
            printer.write(&stamped, width, &mut std::io::stderr().lock());
        }
        printer.end(&mut std::io::stderr().lock());
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
                let _ = writeln!(
                    std::io::stderr(),
                    "\n{name} received: stopping after the current batch and its checkpoint \
                     (send it again to stop at once; the checkpoint holds either way)"
                );
                control.stop(&format!("{name} received"));
            } else {
                tracing::warn!("{name} again: stopping at once");
                let _ = writeln!(
                    std::io::stderr(),
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
            workers: 1,
            worker_rows: Vec::new(),
        }
    }

    fn alert(subject: &str) -> Alert {
        Alert {
            severity: crate::monitor::Severity::Warning,
            metric: None,
            subject: subject.to_string(),
            message: format!("{subject} is high"),
            value: None,
            baseline: None,
        }
    }

    #[test]
    fn the_printer_is_calm_batches_skipped_progress_and_health_at_most_so_often() {
        let mut printer = Printer::attach(Duration::from_secs(5));
        let batch = Stamped::now(Event::BatchDone(crate::protocol::BatchDone {
            batch: 1,
            rows: 10,
            size: 10,
            took: Duration::from_millis(5),
            rows_done: 10,
        }));
        assert!(printer.lines(&batch).is_empty());
        let progress = Stamped::now(Event::Progress(progress(RunState::Running, None)));
        assert_eq!(printer.lines(&progress).len(), 1);
        assert!(
            printer.lines(&progress).is_empty(),
            "within 5 s of the last"
        );

        let mut metrics = Metrics {
            sequence: 1,
            ..Metrics::default()
        };
        let sample = |metrics: &Metrics| Stamped::now(Event::Metrics(Box::new(metrics.clone())));
        let first = printer.lines(&sample(&metrics));
        assert_eq!(first.len(), 1, "the first sample's health line: {first:?}");
        assert!(first[0].contains("health: "), "{first:?}");
        metrics.sequence = 2;
        assert!(
            printer.lines(&sample(&metrics)).is_empty(),
            "not every sample is a line"
        );
        metrics.sequence = 3;
        metrics.alerts = vec![alert("replica lag")];
        let raised = printer.lines(&sample(&metrics));
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert!(
            raised[0].ends_with("alert: replica lag is high"),
            "{raised:?}"
        );
        assert!(printer.lines(&sample(&metrics)).is_empty(), "said once");
        metrics.alerts.clear();
        let cleared = printer.lines(&sample(&metrics));
        assert!(
            cleared[0].ends_with("alert cleared: replica lag"),
            "{cleared:?}"
        );

        // The headless printer: no timestamps, the bar's figures on plain lines.
        let mut headless = Printer::headless(false);
        let lines = headless.lines(&progress);
        assert!(lines[0].starts_with("  [########"), "{lines:?}");
        let status = Stamped::now(Event::StatusChanged {
            migration: "m".to_string(),
            status: crate::protocol::Status::ReadyToContract,
        });
        assert_eq!(headless.lines(&status), vec!["m: now ready to contract"]);
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
