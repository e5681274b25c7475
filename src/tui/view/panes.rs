//! The panes' contents: migrations list, plan, backfill progress, health and log.

use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;

use crate::format::{self, thousands};
use crate::monitor::Severity;
use crate::plan::{Phase, StepAction};
use crate::tui::app::{App, BackfillView, Connection, Level, MigrationState};
use crate::tui::health::SPARK_POINTS;
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
        // Without the database the files' state is unknown: say so, and list them.
        let unreachable = match &app.connection {
            Connection::Failed(_) => Some("The database is unreachable"),
            Connection::NotResponding(_) => Some("The database does not answer"),
            Connection::Connecting | Connection::Connected => None,
        };
        let lines = match unreachable {
            Some(why) if app.files_without_state.is_empty() => vec![Line::from(format!(
                "{why}: no valid migration file found either."
            ))],
            Some(why) => {
                let mut lines = vec![
                    Line::from(format!("{why}: the state of these files is unknown.")),
                    Line::from(""),
                ];
                lines.extend(
                    app.files_without_state
                        .iter()
                        .map(|name| Line::from(format!("  {name}"))),
                );
                lines
            }
            None if app.connection == Connection::Connecting => {
                vec![Line::from("Connecting to the database…")]
            }
            None => vec![Line::from("No migration files found.")],
        };
        let text = Paragraph::new(lines)
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
    lines.extend(super::rehearsal::lines(app, theme));
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
        if let Some(forecast) = super::rehearsal::step_forecast(app, step.phase, &step.description)
        {
            facts.push(Span::styled(format!(" · {forecast}"), theme.info()));
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

/// The backfill's facts, one a line: the bar with its percentage beside it (never over
/// it: a label drawn over a bar has half the contrast), rows, rate, ETA, batch, time and
/// state. The caller sizes the pane from [`backfill_height`].
pub fn backfill(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let Some(view) = &app.backfill else {
        frame.render_widget(
            Paragraph::new("No backfill running.").style(theme.muted()),
            area,
        );
        return;
    };
    frame.render_widget(
        Paragraph::new(backfill_lines(view, usize::from(area.width), theme))
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// Rows the Backfill pane needs inside its borders at `width` columns.
pub fn backfill_height(app: &App, width: u16, theme: &Theme) -> u16 {
    let width = usize::from(width).max(1);
    let rows: usize = match &app.backfill {
        None => 1,
        Some(view) => backfill_lines(view, width, theme)
            .iter()
            .map(|line| line.width().div_ceil(width).max(1))
            .sum(),
    };
    u16::try_from(rows).unwrap_or(u16::MAX)
}

fn backfill_lines(view: &BackfillView, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let ratio = if view.finished {
        1.0
    } else if view.rows_total == 0 {
        0.0
    } else {
        (view.rows_done as f64 / view.rows_total as f64).clamp(0.0, 1.0)
    };
    let percent = format!(" {:>5.1}%", ratio * 100.0);
    let bar_width = width.saturating_sub(percent.len()).max(1);
    // Floor, so that the bar is full only when the percentage says 100.
    let filled = ((ratio * bar_width as f64).floor() as usize).min(bar_width);
    let bar = Line::from(vec![
        Span::styled("█".repeat(filled), theme.gauge()),
        Span::styled("░".repeat(bar_width - filled), theme.muted()),
        Span::styled(percent, theme.text()),
    ]);
    let rows = if view.finished {
        format!("{} (all of them)", thousands(view.rows_done))
    } else {
        format!(
            "{} of ~{}",
            thousands(view.rows_done),
            thousands(view.rows_total)
        )
    };
    let rate = thousands(view.rows_per_second_average.max(0.0).round() as u64);
    let (rate, eta) = if view.finished {
        (
            format!("{rate} rows/s average while running"),
            Span::styled("done", theme.ok()),
        )
    } else if view.paused {
        (
            format!("none while paused ({rate} average)"),
            Span::styled("none while paused", theme.warning()),
        )
    } else {
        let eta = view.eta.map_or_else(
            || Span::styled("not yet known", theme.muted()),
            |eta| {
                let mut words = format::duration(eta);
                if view.throttle_reason.is_some() {
                    words.push_str(" once unthrottled");
                }
                Span::raw(words)
            },
        );
        (
            format!(
                "{} rows/s now, {rate} average",
                thousands(view.rows_per_second_now.max(0.0).round() as u64),
            ),
            eta,
        )
    };
    let mut time = vec![format!("{} running", format::duration(view.time_running))];
    if !view.time_throttled.is_zero() {
        time.push(format!(
            "{} throttled",
            format::duration(view.time_throttled)
        ));
    }
    // A paused run says how long it was paused on its state line.
    if !view.time_paused.is_zero() && !view.paused {
        time.push(format!("{} paused", format::duration(view.time_paused)));
    }
    let state = if view.finished {
        Span::styled("finished", theme.ok())
    } else if view.paused {
        Span::styled(
            format!(
                "PAUSED, {} in all (p resumes)",
                format::duration(view.time_paused)
            ),
            theme.warning(),
        )
    } else if let Some(reason) = &view.throttle_reason {
        Span::styled(format!("THROTTLED: {reason}"), theme.warning())
    } else {
        Span::styled("running", theme.ok())
    };
    let fact = |name: &'static str, value: Span<'static>| {
        Line::from(vec![Span::styled(name, theme.muted()), value])
    };
    vec![
        bar,
        fact("rows   ", Span::raw(rows)),
        fact("rate   ", Span::raw(rate)),
        fact("ETA    ", eta),
        fact(
            "batch  ",
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
        ),
        fact("time   ", Span::raw(time.join(", "))),
        fact("state  ", state),
    ]
}

/// The newest log lines that fit, each wrapped to the pane's width under its text (a
/// line is never cut: the end of a message is often the part that matters).
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
    // `23:41:02 info  `: the text starts after it, and so do its continuation rows.
    const INDENT: usize = 15;
    let text_width = usize::from(area.width).saturating_sub(INDENT).max(10);
    let mut shown: Vec<Line> = Vec::new();
    for line in lines[..end].iter().rev() {
        if shown.len() >= height {
            break;
        }
        let (word, style) = match line.level {
            Level::Debug => ("debug", theme.muted()),
            Level::Info => ("info ", theme.muted()),
            Level::Warning => ("WARN ", theme.warning()),
            Level::Error => ("ERROR", theme.danger()),
        };
        let mut rows = wrap(&line.text, text_width).into_iter();
        let mut block = vec![Line::from(vec![
            Span::styled(format!("{:<9}", line.at), theme.muted()),
            Span::styled(word, style),
            Span::raw(" "),
            Span::styled(rows.next().unwrap_or_default(), theme.text()),
        ])];
        block.extend(rows.map(|row| {
            Line::from(vec![
                Span::raw(" ".repeat(INDENT)),
                Span::styled(row, theme.text()),
            ])
        }));
        // Newest last: a message too long for what is left shows its start.
        let room = height - shown.len();
        block.truncate(room);
        shown.extend(block.into_iter().rev());
    }
    shown.reverse();
    frame.render_widget(Paragraph::new(shown), area);
}

/// `text` in rows of at most `width` characters, cut between words where it can.
pub(super) fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut rows = Vec::new();
    let mut row = String::new();
    for word in text.split(' ') {
        let mut word = word.to_string();
        loop {
            let used = row.chars().count();
            let needed = word.chars().count() + usize::from(used > 0);
            if used + needed <= width {
                if used > 0 {
                    row.push(' ');
                }
                row.push_str(&word);
                break;
            }
            if used > 0 {
                rows.push(std::mem::take(&mut row));
                continue;
            }
            // A word longer than a row: cut it.
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            rows.push(head);
            if word.is_empty() {
                break;
            }
        }
    }
    if !row.is_empty() || rows.is_empty() {
        rows.push(row);
    }
    rows
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

/// `text` cut to `width` characters, with an ellipsis when it was longer.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
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
    // Each metric on one line where the pane is wide, or too short for two lines each
    // (beside the Backfill pane at 80x24); else the sparkline gets a line of its own.
    let two_lines_rows = view.series.len() * 2 + 2 + view.locks.len() + view.alerts.len();
    let one_line = width >= 70 || two_lines_rows > usize::from(area.height);
    // label, value, severity: then the sparkline, as wide as the pane allows (the same
    // width on every line, so that time lines up), then the bands when they fit.
    const FIXED: usize = 13 + 10 + 5;
    let band_width = view
        .series
        .iter()
        .filter(|series| series.current.is_some())
        .filter_map(|series| series.band.as_ref())
        .map(|band| band.chars().count() + 2)
        .max()
        .unwrap_or(0);
    let show_bands = width >= FIXED + band_width + 16;
    let spark_width = width
        .saturating_sub(FIXED + if show_bands { band_width } else { 0 })
        .min(SPARK_POINTS);
    let mut lines = Vec::new();
    for series in &view.series {
        let mut head = vec![Span::styled(format!("{:<13}", series.label), theme.text())];
        let band = series
            .band
            .as_ref()
            .filter(|_| series.current.is_some())
            .map(|band| format!("  {band}"));
        if !one_line {
            match (&series.current, &series.problem) {
                (Some(current), _) => {
                    head.push(Span::styled(format!("{current:>9}"), theme.text()))
                }
                (None, Some(problem)) => {
                    head.push(Span::styled(format!("? {problem}"), theme.warning()))
                }
                (None, None) => head.push(Span::styled("?", theme.warning())),
            }
            if let Some(severity) = series.alert {
                head.push(Span::raw(" "));
                head.push(severity_word(severity, theme));
            }
            // The sparkline's line carries the band, so the first line rarely wraps.
            let band = band.unwrap_or_default();
            let spark_width = width.saturating_sub(2 + band.chars().count()).max(8);
            lines.push(Line::from(head));
            lines.push(Line::from(vec![
                Span::raw("  "),
                Span::styled(sparkline(&series.points, spark_width), theme.chart()),
                Span::styled(band, theme.muted()),
            ]));
            continue;
        }
        let Some(current) = &series.current else {
            let problem = series.problem.as_deref().unwrap_or("no value");
            head.push(Span::styled(
                fit(&format!("? {problem}"), width.saturating_sub(13)),
                theme.warning(),
            ));
            lines.push(Line::from(head));
            continue;
        };
        head.push(Span::styled(format!("{current:>9}"), theme.text()));
        head.push(match series.alert {
            Some(severity) => {
                let mut word = severity_word(severity, theme);
                word.content = format!(" {:<4}", word.content).into();
                word
            }
            None => Span::raw("     "),
        });
        head.push(Span::raw(" "));
        head.push(Span::styled(
            sparkline(&series.points, spark_width),
            theme.chart(),
        ));
        if let Some(band) = band.filter(|_| show_bands) {
            head.push(Span::styled(band, theme.muted()));
        }
        lines.push(Line::from(head));
    }
    let locks_heading = match (&view.locks_problem, view.locks.len()) {
        (Some(problem), _) => Span::styled(format!("Locks ? {problem}"), theme.warning()),
        (None, 0) => Span::styled("Locks: no session waits", theme.muted()),
        (None, n) => Span::styled(format!("Locks: {n} blocked/blocker pairs"), theme.title()),
    };
    lines.push(Line::from(locks_heading));
    for pair in &view.locks {
        if one_line {
            // Beside the Backfill pane: who waits on what, and for whom, in one line.
            let text = if pair.blocker_is_zdm {
                format!(
                    "  ZDM blocks {} {:.1} s on {}",
                    pair.waiter, pair.wait_seconds, pair.object
                )
            } else {
                format!(
                    "  {} waits {:.1} s on {} ← {}",
                    pair.waiter, pair.wait_seconds, pair.object, pair.blocker
                )
            };
            let style = if pair.blocker_is_zdm {
                theme.danger()
            } else {
                theme.text()
            };
            lines.push(Line::from(Span::styled(fit(&text, width), style)));
            continue;
        }
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
