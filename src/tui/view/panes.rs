//! The panes' contents: migrations list, plan, backfill progress, health and log.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Gauge, List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;

use crate::format::{self, thousands};
use crate::monitor::Severity;
use crate::plan::{Phase, StepAction};
use crate::tui::app::{App, Level, MigrationState};
use crate::tui::theme::Theme;

fn badge_style(state: MigrationState, theme: &Theme) -> Style {
    match state {
        MigrationState::Pending => theme.muted(),
        MigrationState::Expanding | MigrationState::Backfilling | MigrationState::Contracting => {
            theme.info()
        }
        MigrationState::Paused | MigrationState::Throttled => theme.warning(),
        MigrationState::ReadyToContract => theme.title(),
        MigrationState::Complete => theme.ok(),
        MigrationState::RollingBack => theme.warning(),
        MigrationState::RolledBack => theme.muted(),
        MigrationState::Failed => theme.danger(),
    }
}

pub fn migrations(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    if app.migrations.is_empty() {
        let text = Paragraph::new("No migration files found.")
            .style(theme.muted())
            .wrap(Wrap { trim: true });
        frame.render_widget(text, area);
        return;
    }
    let items: Vec<ListItem> = app
        .migrations
        .iter()
        .map(|row| {
            let mut badge = vec![
                Span::raw("  "),
                Span::styled(
                    format!("[{}]", row.badge()),
                    if row.stopped {
                        theme.warning()
                    } else {
                        badge_style(row.state, theme)
                    },
                ),
            ];
            if row.checksum_mismatch {
                badge.push(Span::styled(" CHANGED", theme.danger()));
            }
            ListItem::new(vec![
                Line::from(Span::styled(row.name.clone(), theme.text())),
                Line::from(badge),
            ])
        })
        .collect();
    let list = List::new(items)
        .highlight_style(theme.selection())
        .highlight_symbol("▶ ");
    let mut state = ListState::default().with_selected(Some(app.selected));
    frame.render_stateful_widget(list, area, &mut state);
}

pub fn plan(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let Some((plan, current)) = &app.plan else {
        let text = app
            .plan_problem
            .as_deref()
            .unwrap_or("Select a migration and press Enter to see its plan.");
        let hint = Paragraph::new(text)
            .style(theme.muted())
            .wrap(Wrap { trim: true });
        frame.render_widget(hint, area);
        return;
    };
    let mut lines = vec![Line::from(vec![
        Span::styled("new version: ", theme.muted()),
        Span::styled(plan.version_schema.clone(), theme.text()),
    ])];
    // A file not started yet is planned as `zdm plan` plans it; say when `s` cannot start
    // it now, and why, rather than hide the plan.
    if let Some(row) = app.selected_migration().filter(|row| {
        matches!(
            row.state,
            MigrationState::Pending | MigrationState::RolledBack
        )
    }) {
        if let Some(why) = &row.start_refusal {
            lines.push(Line::from(Span::styled(
                format!("cannot start now: {why}"),
                theme.warning(),
            )));
        }
    }
    let mut phase = None;
    for (index, step) in plan.steps.iter().enumerate() {
        if phase != Some(step.phase) {
            phase = Some(step.phase);
            let heading = match step.phase {
                Phase::Expand => "EXPAND",
                Phase::Backfill => "BACKFILL",
                Phase::Contract => "CONTRACT (irreversible)",
                Phase::Rollback => "ROLLBACK (only if asked)",
            };
            lines.push(Line::from(Span::styled(heading, theme.title())));
        }
        let (marker, style) = match current {
            Some(now) if index < *now => ("✓ ", theme.ok()),
            Some(now) if index == *now => ("▶ ", theme.info().add_modifier(Modifier::BOLD)),
            _ => ("· ", theme.text()),
        };
        lines.push(Line::from(vec![
            Span::styled(marker, style),
            Span::styled(step.description.clone(), style),
        ]));
        let mut facts = vec![Span::styled(
            format!("  lock {}", step.lock.sql_name()),
            if step.lock.blocks_reads() {
                theme.warning()
            } else {
                theme.muted()
            },
        )];
        if !step.locked.is_empty() {
            facts.push(Span::styled(
                format!(" on {}", step.locked.join(", ")),
                theme.muted(),
            ));
        }
        if step.rewrites {
            facts.push(Span::styled(" · REWRITES", theme.danger()));
        }
        if step.scans {
            facts.push(Span::styled(" · scans", theme.muted()));
        }
        if step.unchecked {
            facts.push(Span::styled(" · UNSAFE raw SQL", theme.danger()));
        }
        lines.push(Line::from(facts));
        let sql = match &step.action {
            StepAction::Sql { sql, .. } => sql.clone(),
            StepAction::Backfill(backfill) => format!(
                "batched UPDATE {} SET {}",
                backfill.table,
                backfill
                    .assignments
                    .iter()
                    .map(|(column, expr)| format!("{column} = {expr}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        for sql_line in sql.lines().filter(|l| !l.trim().is_empty()) {
            lines.push(Line::from(Span::styled(
                format!("    {}", sql_line.trim_end()),
                theme.muted(),
            )));
        }
    }
    let scroll = u16::try_from(app.plan_scroll.min(lines.len().saturating_sub(1))).unwrap_or(0);
    let paragraph = Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .scroll((scroll, 0));
    frame.render_widget(paragraph, area);
}

pub fn backfill(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let Some(view) = &app.backfill else {
        frame.render_widget(
            Paragraph::new("No backfill running.").style(theme.muted()),
            area,
        );
        return;
    };
    let [gauge_area, facts_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    let ratio = if view.rows_total == 0 {
        0.0
    } else {
        (view.rows_done as f64 / view.rows_total as f64).clamp(0.0, 1.0)
    };
    let gauge = Gauge::default()
        .gauge_style(theme.gauge())
        .ratio(ratio)
        .label(format!(
            "{:.1}%  {} / {} rows",
            ratio * 100.0,
            thousands(view.rows_done),
            thousands(view.rows_total)
        ));
    frame.render_widget(gauge, gauge_area);

    let state = if view.finished {
        Span::styled("finished", theme.ok())
    } else if view.paused {
        Span::styled("PAUSED", theme.warning())
    } else if let Some(reason) = &view.throttle_reason {
        Span::styled(format!("THROTTLED: {reason}"), theme.warning())
    } else {
        Span::styled("running", theme.ok())
    };
    let eta = view
        .eta
        .map_or("not yet known".to_string(), format::duration);
    let lines = vec![
        Line::from(vec![
            Span::styled("table  ", theme.muted()),
            Span::raw(view.table.clone()),
        ]),
        Line::from(vec![
            Span::styled("rate   ", theme.muted()),
            Span::raw(format!(
                "{} rows/s now, {} average",
                thousands(view.rows_per_second_now.round() as u64),
                thousands(view.rows_per_second_average.round() as u64)
            )),
        ]),
        Line::from(vec![Span::styled("ETA    ", theme.muted()), Span::raw(eta)]),
        Line::from(vec![
            Span::styled("batch  ", theme.muted()),
            Span::raw(format!(
                "{} rows in {} ({})",
                thousands(view.batch_size),
                format::duration(view.last_batch),
                view.batch_target
                    .map_or("fixed size".to_string(), |target| format!(
                        "target {}",
                        format::duration(target)
                    ))
            )),
        ]),
        Line::from(vec![Span::styled("state  ", theme.muted()), state]),
    ];
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), facts_area);
}

pub fn log(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let lines: Vec<_> = app.filtered_log().collect();
    if lines.is_empty() {
        let text = if app.log_filter.is_empty() {
            "Nothing logged yet."
        } else {
            "No line matches the filter."
        };
        frame.render_widget(Paragraph::new(text).style(theme.muted()), area);
        return;
    }
    let height = usize::from(area.height);
    let end = lines
        .len()
        .saturating_sub(app.log_scroll.min(lines.len().saturating_sub(1)));
    let start = end.saturating_sub(height);
    let shown: Vec<Line> = lines[start..end]
        .iter()
        .map(|line| {
            let (word, style) = match line.level {
                Level::Debug => ("debug", theme.muted()),
                Level::Info => ("info ", theme.muted()),
                Level::Warning => ("WARN ", theme.warning()),
                Level::Error => ("ERROR", theme.danger()),
            };
            Line::from(vec![
                Span::styled(format!("{} ", line.at), theme.muted()),
                Span::styled(word, style),
                Span::raw(" "),
                Span::styled(line.text.clone(), theme.text()),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(shown), area);
}

/// Eight heights of a one-line sparkline.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` points as bars scaled from zero to their maximum.
fn sparkline(points: &[f64], width: usize) -> String {
    let shown = &points[points.len().saturating_sub(width)..];
    let max = shown.iter().copied().fold(0.0_f64, f64::max);
    let bars: String = shown
        .iter()
        .map(|value| {
            if max <= 0.0 {
                BARS[0]
            } else {
                let level = (value.max(0.0) / max * 7.0).round() as usize;
                BARS[level.min(7)]
            }
        })
        .collect();
    format!("{bars:<width$}")
}

fn severity_word(severity: Severity, theme: &Theme) -> Span<'static> {
    match severity {
        Severity::Warning => Span::styled("WARN", theme.warning()),
        Severity::Critical => Span::styled("CRIT", theme.danger()),
    }
}

pub fn health(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let Some(view) = &app.health else {
        frame.render_widget(
            Paragraph::new("Waiting for the first sample of the database…").style(theme.muted()),
            area,
        );
        return;
    };
    let width = usize::from(area.width);
    // Wide panes put each metric on one line; narrow ones give the sparkline its own.
    let one_line = width >= 70;
    let mut lines = Vec::new();
    for series in &view.series {
        let mut head = vec![Span::styled(format!("{:<13}", series.label), theme.text())];
        if one_line {
            head.push(Span::styled(
                sparkline(&series.points, 30) + " ",
                theme.chart(),
            ));
        }
        match (&series.current, &series.problem) {
            (Some(current), _) => head.push(Span::styled(format!("{current:>9}"), theme.text())),
            (None, Some(problem)) => {
                head.push(Span::styled(format!("? {problem}"), theme.warning()))
            }
            (None, None) => head.push(Span::styled("?", theme.warning())),
        }
        if let Some(severity) = series.alert {
            head.push(Span::raw(" "));
            head.push(severity_word(severity, theme));
        }
        let band = series
            .band
            .as_ref()
            .filter(|_| series.current.is_some())
            .map(|band| format!("  {band}"));
        if one_line {
            if let Some(band) = band {
                head.push(Span::styled(band, theme.muted()));
            }
            lines.push(Line::from(head));
        } else {
            // The sparkline's line carries the band, so the first line rarely wraps.
            let band = band.unwrap_or_default();
            let spark_width = width.saturating_sub(2 + band.chars().count()).max(8);
            lines.push(Line::from(head));
            lines.push(Line::from(vec![
                Span::raw("  "),
                Span::styled(sparkline(&series.points, spark_width), theme.chart()),
                Span::styled(band, theme.muted()),
            ]));
        }
    }
    let locks_heading = match (&view.locks_problem, view.locks.len()) {
        (Some(problem), _) => Span::styled(format!("Locks ? {problem}"), theme.warning()),
        (None, 0) => Span::styled("Locks: no session waits", theme.muted()),
        (None, n) => Span::styled(format!("Locks: {n} blocked/blocker pairs"), theme.title()),
    };
    lines.push(Line::from(locks_heading));
    for pair in &view.locks {
        let mut spans = vec![
            Span::styled(
                format!(
                    "  {} waits {:.1} s for {} on {}",
                    pair.waiter, pair.wait_seconds, pair.waiter_mode, pair.object
                ),
                theme.text(),
            ),
            Span::styled(" ← ", theme.muted()),
        ];
        if pair.blocker_is_zdm {
            spans.push(Span::styled("ZDM ", theme.danger()));
        }
        spans.push(Span::styled(
            format!("{} holds {}", pair.blocker, pair.blocker_mode),
            theme.text(),
        ));
        lines.push(Line::from(spans));
    }
    if view.alerts.is_empty() {
        lines.push(Line::from(Span::styled("Alerts: none", theme.muted())));
    } else {
        lines.push(Line::from(Span::styled("Alerts:", theme.title())));
        for alert in &view.alerts {
            lines.push(Line::from(vec![
                Span::raw("  "),
                severity_word(alert.severity, theme),
                Span::raw(" "),
                Span::styled(alert.message.clone(), theme.text()),
            ]));
        }
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}
