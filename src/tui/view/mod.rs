//! Drawing the console from its state: the layout for small and large terminals, the
//! status bar and the footer. Views only read [`App`]; they never wait or query.

pub(crate) mod panes;
mod popups;
mod rehearsal;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Paragraph};
use ratatui::Frame;

use super::app::{App, Connection, Pane};
use super::keymap;
use super::theme::Theme;
use crate::format;

/// From this size on, every pane is shown at once.
const LARGE: (u16, u16) = (120, 32);

/// Draws the whole console.
pub fn draw(frame: &mut Frame, app: &App, theme: &Theme) {
    let [status, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_status_bar(frame, status, app, theme);
    if body.width >= LARGE.0 && body.height + 2 >= LARGE.1 {
        draw_large(frame, body, app, theme);
    } else {
        draw_small(frame, body, app, theme);
    }
    draw_footer(frame, footer, app, theme);
    popups::draw(frame, app, theme);
}

/// 80x24 and up: the migrations list beside one detail pane.
fn draw_small(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    // Wide enough for the longest name (plus the cursor and borders), at least 34 columns
    // and at most 48 % of the screen, so that the detail pane keeps most of the room.
    let longest = app
        .migrations
        .iter()
        .map(|m| m.name.chars().count())
        .max()
        .unwrap_or(0);
    let wanted = u16::try_from(longest + 4).unwrap_or(u16::MAX);
    let width = wanted.clamp(34, (area.width * 48 / 100).max(34));
    let [list, detail] =
        Layout::horizontal([Constraint::Length(width), Constraint::Min(20)]).areas(area);
    draw_pane(frame, list, Pane::Migrations, app, theme);
    // During a backfill, its pane and the health essentials are what a DBA watches: both
    // at once, whichever of the two is chosen.
    if app.backfill.is_some() && matches!(app.detail, Pane::Backfill | Pane::Health) {
        let [backfill, health] = Layout::vertical([
            Constraint::Length(backfill_rows(app, detail.width, theme)),
            Constraint::Min(5),
        ])
        .areas(detail);
        draw_pane(frame, backfill, Pane::Backfill, app, theme);
        draw_pane(frame, health, Pane::Health, app, theme);
    } else {
        draw_pane(frame, detail, app.detail, app, theme);
    }
}

/// The Backfill pane's height with its borders at `width` columns.
fn backfill_rows(app: &App, width: u16, theme: &Theme) -> u16 {
    panes::backfill_height(app, width.saturating_sub(2), theme).saturating_add(2)
}

/// Large terminals: every pane at once.
fn draw_large(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(42), Constraint::Percentage(58)]).areas(area);
    let [list, plan] =
        Layout::vertical([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(left);
    // Health gets a third of what the backfill leaves (at least its essentials), the log
    // the rest: a tall screen shows more of both.
    let backfill_height = backfill_rows(app, right.width, theme).max(9);
    let health_height = (right.height.saturating_sub(backfill_height) / 3).max(14);
    let [backfill, health, log] = Layout::vertical([
        Constraint::Length(backfill_height),
        Constraint::Length(health_height),
        Constraint::Min(5),
    ])
    .areas(right);
    draw_pane(frame, list, Pane::Migrations, app, theme);
    draw_pane(frame, plan, Pane::Plan, app, theme);
    draw_pane(frame, backfill, Pane::Backfill, app, theme);
    draw_pane(frame, health, Pane::Health, app, theme);
    draw_pane(frame, log, Pane::Log, app, theme);
}

fn draw_pane(frame: &mut Frame, area: Rect, pane: Pane, app: &App, theme: &Theme) {
    let focused = app.focus == pane;
    let title = match pane {
        Pane::Log if !app.log_filter.is_empty() => format!(" Log (filter: {}) ", app.log_filter),
        Pane::Backfill => match &app.backfill {
            Some(view) => format!(" Backfill {} ", view.table),
            None => " Backfill ".to_string(),
        },
        _ => format!(" {} ", pane.title()),
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        })
        .border_style(theme.border(focused))
        .title(Span::styled(title, theme.title()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    match pane {
        Pane::Migrations => panes::migrations(frame, inner, app, theme),
        Pane::Plan => panes::plan(frame, inner, app, theme),
        Pane::Backfill => panes::backfill(frame, inner, app, theme),
        Pane::Health => panes::health(frame, inner, app, theme),
        Pane::Log => panes::log(frame, inner, app, theme),
    }
}

fn draw_status_bar(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let connection = match &app.connection {
        Connection::Connecting => Span::styled("connecting…", theme.warning()),
        Connection::Connected => Span::styled("connected", theme.ok()),
        Connection::Failed(why) => Span::styled(format!("database error: {why}"), theme.danger()),
        Connection::NotResponding(for_how_long) => Span::styled(
            format!(
                "database not responding for {}",
                format::duration(*for_how_long)
            ),
            theme.danger(),
        ),
    };
    // The connection state comes before the target so that a narrow screen cuts the URL.
    let line = Line::from(vec![
        Span::styled(" zdm ", theme.title()),
        Span::styled("│ ", theme.muted()),
        connection,
        Span::styled(" │ ", theme.muted()),
        Span::styled(app.target.clone(), theme.text()),
    ]);
    frame.render_widget(Paragraph::new(line), area);
}

/// The notice for the last keystroke if there is one, else the keys that work now.
fn draw_footer(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    if let Some(notice) = &app.notice {
        let line = Line::from(vec![Span::styled(format!(" {notice}"), theme.info())]);
        frame.render_widget(Paragraph::new(line), area);
        return;
    }
    let mut spans = vec![Span::raw(" ")];
    let mut width = 1;
    for (key, hint) in keymap::hints().filter(|(_, hint)| app.hint_applies(*hint)) {
        let label = app.hint_label(hint);
        let needed = key.chars().count() + label.len() + 3;
        if width + needed > usize::from(area.width) {
            break;
        }
        width += needed;
        spans.push(Span::styled(key, theme.title()));
        spans.push(Span::styled(format!(" {label}  "), theme.muted()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
