//! Dialogs drawn over the panes: help, contract confirmation, rollback, quit, log filter.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use crate::tui::app::{App, ContractDialog, Popup, Verdict};
use crate::tui::keymap::BINDINGS;
use crate::tui::theme::Theme;

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
            let lines = if app.can_detach {
                vec![
                    Line::from(format!("{name} is running in its runner process.")),
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
                    Line::from(format!("{name} is running.")),
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
                        "   (resumable: its checkpoint holds)",
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

fn help(frame: &mut Frame, theme: &Theme) {
    let width = BINDINGS
        .iter()
        .map(|b| b.keys.chars().count())
        .max()
        .unwrap_or(10)
        + 2;
    let lines: Vec<Line> = BINDINGS
        .iter()
        .map(|binding| {
            Line::from(vec![
                Span::styled(format!("{:<width$}", binding.keys), theme.title()),
                Span::styled(binding.action, theme.text()),
            ])
        })
        .collect();
    dialog(frame, " Keys (? or Esc closes) ", lines, 78, theme, false);
}

fn contract(frame: &mut Frame, dialog_state: &ContractDialog, theme: &Theme) {
    let mut lines = vec![
        Line::from(vec![
            Span::raw("Contract "),
            Span::styled(dialog_state.migration.clone(), theme.title()),
            Span::styled(": cannot be undone.", theme.danger()),
        ]),
        Line::from(""),
    ];
    match &dialog_state.gates {
        None => lines.push(Line::from(Span::styled(
            "checking the safety gates…",
            theme.muted(),
        ))),
        Some(gates) if gates.is_empty() => {
            lines.push(Line::from(Span::styled(
                "no safety gates apply",
                theme.muted(),
            )));
        }
        Some(gates) => {
            for gate in gates {
                let (word, style) = match gate.result {
                    Verdict::Pass => ("PASS   ", theme.ok()),
                    Verdict::Fail => ("FAIL   ", theme.danger()),
                    Verdict::Unknown => ("UNKNOWN", theme.warning()),
                };
                lines.push(Line::from(vec![
                    Span::styled(word, style),
                    Span::raw(" "),
                    Span::styled(gate.name.clone(), theme.text()),
                    Span::styled(format!(": {}", gate.evidence), theme.muted()),
                ]));
            }
        }
    }
    lines.push(Line::from(""));
    let prompt = if dialog_state.overriding {
        format!(
            "Gates not passed: {}. Type override to contract anyway (recorded):",
            dialog_state.blocking_gates().join(", ")
        )
    } else {
        "Type the migration's name to confirm:".to_string()
    };
    lines.push(Line::from(Span::styled(prompt, theme.text())));
    lines.push(Line::from(vec![
        Span::styled("> ", theme.title()),
        Span::styled(dialog_state.input.value().to_string(), theme.text()),
        Span::styled("█", theme.title()),
    ]));
    if let Some(error) = &dialog_state.error {
        lines.push(Line::from(Span::styled(error.clone(), theme.danger())));
    }
    lines.push(keys_line(&[("Enter", "confirm"), ("Esc", "cancel")], theme));
    dialog(frame, " Contract ", lines, 76, theme, true);
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
