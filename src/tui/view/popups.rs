//! Dialogs drawn over the panes: help, contract confirmation, rollback, quit, log filter.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use crate::tui::app::{App, ContractDialog, Popup, Verdict};
use crate::tui::keymap::BINDINGS;
use crate::tui::theme::Theme;
use crate::tui::view::panes::wrap;

pub fn draw(frame: &mut Frame, app: &App, theme: &Theme) {
    let Some(popup) = &app.popup else {
        return;
    };
    match popup {
        Popup::Help => help(frame, theme),
        Popup::Contract(dialog) => contract(frame, dialog, theme),
        Popup::Rollback(name) => {
            let lines = vec![
                Line::from(format!("Roll back {name}?")),
                Line::from(""),
                Line::from("This drops everything its expand created (new columns, tables,"),
                Line::from("indexes, triggers and the new version's views) and the data"),
                Line::from("written only to them. The old version keeps working."),
                Line::from(""),
                keys_line(&[("y", "roll back"), ("n / Esc", "cancel")], theme),
            ];
            dialog(frame, " Rollback ", lines, 70, theme, true);
        }
        Popup::Quit => {
            let name = app
                .running_migration()
                .map_or("A migration", |m| m.name.as_str());
            // What it is doing, in the badge's word: a paused run is not "running".
            let doing = if app.is_paused() {
                "paused".to_string()
            } else {
                app.running_migration()
                    .filter(|m| m.state.is_running())
                    .map_or("running", |m| m.state.label())
                    .to_string()
            };
            let lines = if app.can_detach {
                vec![
                    Line::from(format!("{name} is {doing} in its runner process.")),
                    Line::from(""),
                    keys_line(
                        &[("d", "detach: it goes on (zdm attach, zdm ctl return to it)")],
                        theme,
                    ),
                    keys_line(&[("p", "pause it (it holds its place), then quit")], theme),
                    keys_line(&[("Esc", "stay")], theme),
                ]
            } else {
                vec![
                    Line::from(format!("{name} is {doing}.")),
                    Line::from(Span::styled(
                        "The demo's servers stop when the console quits: it cannot go on.",
                        theme.muted(),
                    )),
                    Line::from(""),
                    keys_line(
                        &[("s", "stop it after its current batch, then quit")],
                        theme,
                    ),
                    Line::from(Span::styled(
                        "   (its data goes with the demo's servers)",
                        theme.muted(),
                    )),
                    keys_line(&[("Esc", "stay")], theme),
                ]
            };
            dialog(frame, " Quit ", lines, 68, theme, false);
        }
        Popup::Filter(input) => {
            let lines = vec![
                Line::from(format!("Show log lines containing: {}", input.value())),
                keys_line(&[("Enter", "apply"), ("Esc", "clear the filter")], theme),
            ];
            dialog(frame, " Filter ", lines, 60, theme, false);
        }
    }
}

fn keys_line<'a>(keys: &[(&'a str, &'a str)], theme: &Theme) -> Line<'a> {
    let mut spans = Vec::new();
    for (key, action) in keys {
        spans.push(Span::styled(*key, theme.title()));
        spans.push(Span::styled(format!(" {action}   "), theme.text()));
    }
    Line::from(spans)
}

/// Every binding: its keys in a column, its action wrapped beside them (never under them).
fn help(frame: &mut Frame, theme: &Theme) {
    let keys_width = BINDINGS
        .iter()
        .map(|b| b.keys.chars().count())
        .max()
        .unwrap_or(10)
        + 2;
    let width = HELP_WIDTH.min(frame.area().width.saturating_sub(2));
    let action_width = usize::from(width.saturating_sub(2)).saturating_sub(keys_width);
    let mut lines = Vec::new();
    for binding in BINDINGS {
        for (row, text) in wrap(binding.action, action_width).into_iter().enumerate() {
            let keys = if row == 0 { binding.keys } else { "" };
            lines.push(Line::from(vec![
                Span::styled(format!("{keys:<keys_width$}"), theme.title()),
                Span::styled(text, theme.text()),
            ]));
        }
    }
    dialog(
        frame,
        " Keys (? or Esc closes) ",
        lines,
        width,
        theme,
        false,
    );
}

const HELP_WIDTH: u16 = 78;

/// The contract dialog's width (within the screen).
const CONTRACT_WIDTH: u16 = 76;

fn contract(frame: &mut Frame, dialog_state: &ContractDialog, theme: &Theme) {
    let screen = frame.area();
    let width = CONTRACT_WIDTH.min(screen.width.saturating_sub(2)).max(20);
    // One row per gate (its first finding, cut to the width), so the prompt and the key
    // line always fit below them.
    let inner = usize::from(width.saturating_sub(2));
    let header = vec![
        Line::from(vec![
            Span::raw("Contract "),
            Span::styled(dialog_state.migration.clone(), theme.title()),
            Span::styled(": cannot be undone.", theme.danger()),
        ]),
        Line::from(""),
        Line::from(Span::styled(gates_state(dialog_state), theme.text())),
    ];
    let mut gates: Vec<Line> = dialog_state
        .gates
        .iter()
        .map(|gate| {
            let (word, style) = match gate.result {
                Verdict::Pass => ("PASS   ", theme.ok()),
                Verdict::Fail => ("FAIL   ", theme.danger()),
                Verdict::Unknown => ("UNKNOWN", theme.warning()),
            };
            let finding = gate.evidence.lines().next().unwrap_or_default();
            let text = cut(
                &format!(": {finding}"),
                inner.saturating_sub(9 + gate.name.len()),
            );
            Line::from(vec![
                Span::styled(word, style),
                Span::raw(" "),
                Span::styled(gate.name.clone(), theme.text()),
                Span::styled(text, theme.muted()),
            ])
        })
        .collect();
    gates.extend(dialog_state.watching.iter().map(|name| {
        Line::from(vec![
            Span::styled("…      ", theme.muted()),
            Span::raw(" "),
            Span::styled(name.clone(), theme.text()),
            Span::styled(": watching the database over the window", theme.muted()),
        ])
    }));
    let mut footer = vec![Line::from("")];
    if dialog_state.awaiting {
        let prompt = if dialog_state.sent {
            "Confirmation sent: waiting for the run's answer…".to_string()
        } else if dialog_state.overriding {
            format!(
                "{} gate(s) did not pass. Type override to contract anyway (recorded):",
                dialog_state.blocking_gates().len()
            )
        } else {
            "Type the migration's name to confirm:".to_string()
        };
        footer.push(Line::from(Span::styled(cut(&prompt, inner), theme.text())));
        footer.push(Line::from(vec![
            Span::styled("> ", theme.title()),
            Span::styled(dialog_state.input.value().to_string(), theme.text()),
            Span::styled("█", theme.title()),
        ]));
    } else {
        footer.push(Line::from(Span::styled(
            "The name can be typed once every gate has judged.",
            theme.muted(),
        )));
    }
    if let Some(error) = &dialog_state.error {
        footer.push(Line::from(Span::styled(error.clone(), theme.danger())));
    }
    footer.push(keys_line(&[("Enter", "confirm"), ("Esc", "cancel")], theme));
    // Rows left for the gates inside the border: the rest is always shown.
    let error_rows = dialog_state.error.as_ref().map_or(0, |error| {
        error.chars().count().div_ceil(inner.max(1)).max(1)
    });
    let fixed = header.len() + footer.len() + error_rows.saturating_sub(1) + 2;
    let room = usize::from(screen.height).saturating_sub(fixed);
    if gates.len() > room {
        // One row says what is above and below; the gates scroll (↑ / ↓) in the rest.
        let shown = room.saturating_sub(1).max(1);
        let first = dialog_state
            .gate_scroll
            .min(gates.len().saturating_sub(shown));
        let below = gates.len() - first - shown.min(gates.len() - first);
        gates = gates.into_iter().skip(first).take(shown).collect();
        gates.push(Line::from(Span::styled(
            format!("… {first} above, {below} below: ↑ / ↓ scroll"),
            theme.muted(),
        )));
    }
    let lines: Vec<Line> = header.into_iter().chain(gates).chain(footer).collect();
    dialog(frame, " Contract ", lines, width, theme, true);
}

/// Where the gates are: starting, counting down, or judged.
fn gates_state(dialog: &ContractDialog) -> String {
    match dialog.countdown {
        None if dialog.awaiting => "Safety gates: all judged".to_string(),
        None => "Starting the run that checks the safety gates…".to_string(),
        Some((left, window)) if !left.is_zero() && !dialog.awaiting => format!(
            "Safety gates: watching the database, {} s left of {} s",
            left.as_secs_f64().ceil() as u64,
            window.as_secs_f64().round() as u64
        ),
        Some(_) if !dialog.watching.is_empty() => "Safety gates: judging…".to_string(),
        Some((_, window)) => format!(
            "Safety gates: all judged over {} s",
            window.as_secs_f64().round() as u64
        ),
    }
}

/// `text` cut to `width` characters, with an ellipsis when cut.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A bordered box centred on the screen, as wide as asked (within the screen) and as tall
/// as its lines.
fn dialog(
    frame: &mut Frame,
    title: &str,
    lines: Vec<Line>,
    width: u16,
    theme: &Theme,
    danger: bool,
) {
    let screen = frame.area();
    let width = width.min(screen.width.saturating_sub(2)).max(20);
    let inner_width = usize::from(width.saturating_sub(2)).max(1);
    let wrapped: usize = lines
        .iter()
        .map(|line| line.width().div_ceil(inner_width).max(1))
        .sum();
    let height = u16::try_from(wrapped + 2)
        .unwrap_or(u16::MAX)
        .min(screen.height);
    let area = centered(screen, width, height);
    let border = if danger {
        theme.danger()
    } else {
        theme.border(true)
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Double)
        .border_style(border)
        .title(Span::styled(title.to_string(), theme.title()));
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(height)])
        .flex(Flex::Center)
        .areas(area);
    let [cell] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(row);
    cell
}
