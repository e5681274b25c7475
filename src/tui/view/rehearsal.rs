//! The selected migration's last rehearsal (`zdm rehearse`), shown at the head of its
//! plan: when it ran and at which scales, the forecast duration at full size with its
//! range, the riskiest step, the workload's latency and rate, and each step's forecast
//! time beside the step. A migration never rehearsed says so and names the command.

use ratatui::text::{Line, Span};

use crate::plan::Phase;
use crate::synth::rehearsal::{Forecast, Rehearsal, DURATION};
use crate::tui::app::{App, LastRehearsal};
use crate::tui::theme::Theme;

/// The rehearsal's lines; none before the console has looked for one.
pub fn lines(app: &App, theme: &Theme) -> Vec<Line<'static>> {
    let label = |text: &str| Span::styled(text.to_string(), theme.muted());
    match &app.rehearsal {
        None => Vec::new(),
        Some(LastRehearsal::Never { command }) => vec![Line::from(vec![
            label("not rehearsed: "),
            Span::styled(command.clone(), theme.text()),
        ])],
        Some(LastRehearsal::Unreadable(why)) => vec![Line::from(vec![
            label("rehearsal: "),
            Span::styled(why.clone(), theme.warning()),
        ])],
        Some(LastRehearsal::Found(r)) => found(r, theme),
    }
}

fn found(r: &Rehearsal, theme: &Theme) -> Vec<Line<'static>> {
    let label = |text: &str| Span::styled(text.to_string(), theme.muted());
    let scales = r
        .runs
        .iter()
        .map(|m| m.scale.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut lines = vec![Line::from(vec![
        label("rehearsed "),
        Span::styled(when(&r.at), theme.text()),
        label(&format!(" ({scales})")),
    ])];
    if let Some(f) = r.forecast_of(DURATION) {
        lines.push(Line::from(vec![
            label("  forecast "),
            Span::styled(seconds(f.at_full_size), theme.text()),
            label(&format!(
                " ({} to {}), {}",
                seconds(f.low),
                seconds(f.high),
                f.growth
            )),
        ]));
    }
    if let Some(step) = &r.riskiest_step {
        lines.push(Line::from(vec![
            label("  riskiest: "),
            Span::styled(step.clone(), theme.warning()),
        ]));
    }
    if let Some(m) = r.runs.last() {
        lines.push(Line::from(label(&format!(
            "  p99 {:.1} ms during ({:.1} before), {:.0} of {:.0}/s",
            m.latency_during.p99_ms,
            m.latency_before.p99_ms,
            m.latency_during.per_s,
            r.rate.aimed_per_s
        ))));
        if m.gates_refused.is_some() {
            lines.push(Line::from(Span::styled(
                "  the gates refused contract in the rehearsal",
                theme.danger(),
            )));
        }
    }
    lines
}

/// A step's forecast time at full size, when the last rehearsal forecast it.
pub fn step_forecast(app: &App, phase: Phase, description: &str) -> Option<String> {
    let Some(LastRehearsal::Found(r)) = &app.rehearsal else {
        return None;
    };
    let figure = format!(
        "{} step: {description}",
        crate::protocol::event::phase_name(phase)
    );
    r.forecast_of(&figure)
        .map(|f: &Forecast| match f.unit.as_str() {
            "ms" => format!("forecast ~{}", seconds(f.at_full_size / 1000.0)),
            _ => format!("forecast ~{:.0} {}", f.at_full_size, f.unit),
        })
}

/// `2026-12-01T22:50:13Z` as `2026-12-01 22:50 UTC`.
fn when(at: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(at)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or_else(|_| at.to_string())
}

fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.1} s")
    } else {
        crate::format::duration(std::time::Duration::from_secs_f64(s))
    }
}
