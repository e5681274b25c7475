//! The console without a terminal: every screen rendered with ratatui's TestBackend
//! (snapshots at 80x24 and 140x40) and every key binding on the app state.

mod common;

use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use std::time::Duration;
use zdm::tui::app::{Action, App, Connection, GateRow, MigrationState, Pane, Popup, Verdict};
use zdm::tui::theme::Theme;
use zdm::tui::{keymap, view};

use common::console_fixture::busy_app;

fn render(app: &App, width: u16, height: u16) -> String {
    let theme = Theme::built_in("dark").expect("theme");
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
    terminal
        .draw(|frame| view::draw(frame, app, &theme))
        .expect("draw");
    terminal.backend().to_string()
}

fn key(code: KeyCode) -> Event {
    Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn press(app: &mut App, code: KeyCode) -> Option<Action> {
    app.handle_event(&key(code))
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        assert_eq!(press(app, KeyCode::Char(c)), None);
    }
}

fn select(app: &mut App, name: &str) {
    app.selected = app
        .migrations
        .iter()
        .position(|m| m.name == name)
        .expect(name);
}

fn gates(results: &[(&str, Verdict)]) -> Vec<GateRow> {
    results
        .iter()
        .map(|(name, result)| GateRow {
            name: name.to_string(),
            result: *result,
            evidence: "evidence".to_string(),
        })
        .collect()
}

// ---- snapshots -------------------------------------------------------------------------

#[test]
fn screens_at_80x24() {
    let mut app = busy_app();
    insta::assert_snapshot!("plan_80x24", render(&app, 80, 24));
    press(&mut app, KeyCode::Tab); // Plan
    press(&mut app, KeyCode::Tab); // Backfill
    insta::assert_snapshot!("backfill_80x24", render(&app, 80, 24));
    press(&mut app, KeyCode::Char('l'));
    insta::assert_snapshot!("log_80x24", render(&app, 80, 24));
}

#[test]
fn the_health_pane_at_80x24_and_140x40() {
    let mut app = busy_app();
    for _ in 0..3 {
        press(&mut app, KeyCode::Tab);
    }
    assert_eq!((app.focus, app.detail), (Pane::Health, Pane::Health));
    let small = render(&app, 80, 24);
    for words in [
        "remote host: not measured",
        "WARN",
        "? stale 4 s: canceling",
        "ZDM",
    ] {
        assert!(small.contains(words), "{words:?} missing:\n{small}");
    }
    insta::assert_snapshot!("health_80x24", small);
    insta::assert_snapshot!("health_140x40", render(&app, 140, 40));
}

#[test]
fn a_console_without_samples_says_it_waits_for_them() {
    let mut app = busy_app();
    app.health = None;
    app.detail = Pane::Health;
    let screen = render(&app, 80, 24);
    assert!(screen.contains("Waiting for the first sample"), "{screen}");
}

#[test]
fn every_pane_at_140x40() {
    insta::assert_snapshot!("all_140x40", render(&busy_app(), 140, 40));
}

#[test]
fn dialogs_and_help_at_80x24() {
    let mut app = busy_app();
    press(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!("help_80x24", render(&app, 80, 24));
    press(&mut app, KeyCode::Esc);

    select(&mut app, "0002_customers_phone_not_null");
    press(&mut app, KeyCode::Char('c'));
    insta::assert_snapshot!("contract_checking_80x24", render(&app, 80, 24));
    app.set_gates(gates(&[
        ("backfill complete", Verdict::Pass),
        ("old version unused", Verdict::Unknown),
    ]));
    type_text(&mut app, "0002_customers");
    insta::assert_snapshot!("contract_gates_80x24", render(&app, 80, 24));
    press(&mut app, KeyCode::Esc);

    press(&mut app, KeyCode::Char('r'));
    insta::assert_snapshot!("rollback_80x24", render(&app, 80, 24));
    press(&mut app, KeyCode::Esc);

    press(&mut app, KeyCode::Char('q'));
    insta::assert_snapshot!("quit_80x24", render(&app, 80, 24));
}

#[test]
fn a_stalled_database_is_reported_in_the_status_bar() {
    let mut app = busy_app();
    app.connection = Connection::NotResponding(Duration::from_secs(14));
    let screen = render(&app, 80, 24);
    assert!(
        screen.contains("database not responding for 14.0 s"),
        "{screen}"
    );
}

#[test]
fn an_empty_console_says_so() {
    let app = App::new("postgres://postgres@127.0.0.1:5432/shop".to_string());
    insta::assert_snapshot!("empty_80x24", render(&app, 80, 24));
}

#[test]
fn the_throttle_reason_is_shown_in_words() {
    let mut app = busy_app();
    if let Some(backfill) = &mut app.backfill {
        backfill.throttle_reason = Some("replica lag 2.3 s > 1 s".to_string());
    }
    app.detail = Pane::Backfill;
    let screen = render(&app, 80, 24);
    assert!(
        screen.contains("THROTTLED: replica lag 2.3 s > 1 s"),
        "{screen}"
    );
}

// ---- keys --------------------------------------------------------------------------------

#[test]
fn navigation_keys_move_selection_focus_and_panes() {
    let mut app = busy_app();
    assert_eq!(
        press(&mut app, KeyCode::Char('j')),
        Some(Action::ShowPlan("0004_order_items_fk_products".to_string())),
        "a new selection asks for its plan"
    );
    assert_eq!(app.selected, 3);
    press(&mut app, KeyCode::Down);
    assert_eq!(press(&mut app, KeyCode::Down), None, "no move, no request");
    assert_eq!(app.selected, 4, "stops at the last migration");
    press(&mut app, KeyCode::Char('k'));
    press(&mut app, KeyCode::Up);
    assert_eq!(app.selected, 2);
    press(&mut app, KeyCode::Enter);
    assert_eq!((app.focus, app.detail), (Pane::Plan, Pane::Plan));
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.focus, Pane::Backfill);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.focus, Pane::Health);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.focus, Pane::Log);
    press(&mut app, KeyCode::BackTab);
    press(&mut app, KeyCode::BackTab);
    press(&mut app, KeyCode::BackTab);
    assert_eq!(app.focus, Pane::Plan);
    press(&mut app, KeyCode::Char('j'));
    assert_eq!(app.plan_scroll, 1, "j scrolls the focused plan");
    press(&mut app, KeyCode::Char('l'));
    assert_eq!((app.focus, app.detail), (Pane::Log, Pane::Log));
}

#[test]
fn start_asks_the_engine_only_for_a_pending_migration() {
    let mut app = busy_app();
    select(&mut app, "0004_order_items_fk_products");
    assert_eq!(
        press(&mut app, KeyCode::Char('s')),
        None,
        "another migration runs"
    );
    assert!(app
        .notice
        .as_deref()
        .unwrap_or("")
        .contains("one migration at a time"));

    app.migrations[2].state = MigrationState::ReadyToContract;
    assert_eq!(
        press(&mut app, KeyCode::Char('s')),
        Some(Action::Start("0004_order_items_fk_products".to_string()))
    );
    assert!(app.notice.is_some(), "immediate feedback");

    select(&mut app, "0005_orders_split_notes");
    assert_eq!(
        press(&mut app, KeyCode::Char('s')),
        None,
        "changed file refused"
    );
    select(&mut app, "0001_orders_add_status");
    assert_eq!(
        press(&mut app, KeyCode::Char('s')),
        None,
        "complete is not pending"
    );
}

#[test]
fn a_stopped_migration_is_resumed_with_s_and_quitting_does_not_ask() {
    let mut app = busy_app();
    app.migrations[2].stopped = true;
    app.migrations[2].start_refusal = None;
    assert!(app.running_migration().is_none(), "nobody runs it");
    select(&mut app, "0003_products_price_numeric");
    assert_eq!(
        press(&mut app, KeyCode::Char('s')),
        Some(Action::Start("0003_products_price_numeric".to_string()))
    );
    assert!(app.notice.as_deref().unwrap_or("").starts_with("resume of"));
    let screen = render(&app, 80, 24);
    assert!(screen.contains("[stopped: backfilling]"), "{screen}");
    assert!(!screen.contains("[backfilling]"), "{screen}");
    assert_eq!(press(&mut app, KeyCode::Char('q')), Some(Action::Quit));

    app.migrations[2].stopped = false;
    app.migrations[2].state = MigrationState::ReadyToContract;
    app.migrations[2].start_refusal = Some("0003 is ready to contract: contract it".into());
    assert_eq!(
        press(&mut app, KeyCode::Char('s')),
        None,
        "ready is not startable"
    );
}

#[test]
fn a_console_without_live_control_says_so() {
    let mut app = busy_app();
    app.live_control = false;
    let screen = render(&app, 80, 24);
    assert!(!screen.contains("pause/resume"), "not offered: {screen}");
    assert!(!screen.contains("throttle "), "not offered: {screen}");
    for key in ['p', 't', '+', '-'] {
        assert_eq!(press(&mut app, KeyCode::Char(key)), None, "{key}");
        let notice = app.notice.clone().unwrap_or_default();
        assert!(notice.contains("steers a backfill"), "{key}: {notice}");
    }
    assert!(
        !app.manual_throttle,
        "no optimistic toggle without a run to ask"
    );
}

#[test]
fn the_demo_quit_dialog_stops_the_run_instead_of_detaching() {
    let mut app = busy_app();
    app.can_detach = false;
    press(&mut app, KeyCode::Char('q'));
    let screen = render(&app, 80, 24);
    insta::assert_snapshot!("quit_demo_80x24", screen);
    assert!(screen.contains("cannot go on"), "{screen}");
    assert!(
        screen.contains("stop it after its current batch"),
        "{screen}"
    );
    assert!(!screen.contains("detach"), "{screen}");
    for key in ['d', 'p'] {
        assert_eq!(
            press(&mut app, KeyCode::Char(key)),
            None,
            "{key} is not offered"
        );
        assert!(matches!(app.popup, Some(Popup::Quit)), "the dialog stays");
    }
    assert_eq!(
        press(&mut app, KeyCode::Char('s')),
        Some(Action::StopAndQuit)
    );
    assert!(app.popup.is_none());
}

#[test]
fn pause_resume_throttle_and_batch_target() {
    let mut app = busy_app();
    assert_eq!(press(&mut app, KeyCode::Char('p')), Some(Action::Pause));
    app.migrations[2].state = MigrationState::Paused;
    assert_eq!(press(&mut app, KeyCode::Char('p')), Some(Action::Resume));
    app.migrations[2].state = MigrationState::Backfilling;
    if let Some(backfill) = &mut app.backfill {
        backfill.paused = true;
    }
    assert_eq!(
        press(&mut app, KeyCode::Char('p')),
        Some(Action::Resume),
        "the run's progress says paused before the badge does"
    );
    assert_eq!(
        press(&mut app, KeyCode::Char('t')),
        Some(Action::ThrottleOn)
    );
    assert!(app.manual_throttle, "shown at once, corrected by the reply");
    assert_eq!(
        press(&mut app, KeyCode::Char('t')),
        Some(Action::ThrottleOff)
    );
    assert_eq!(
        press(&mut app, KeyCode::Char('+')),
        Some(Action::ScaleBatchTarget(1.5))
    );
    assert_eq!(
        press(&mut app, KeyCode::Char('-')),
        Some(Action::ScaleBatchTarget(1.0 / 1.5))
    );

    app.migrations[2].state = MigrationState::Complete;
    app.backfill = None;
    assert_eq!(press(&mut app, KeyCode::Char('p')), None);
    assert_eq!(press(&mut app, KeyCode::Char('t')), None);
    assert_eq!(press(&mut app, KeyCode::Char('+')), None);
}

#[test]
fn contract_refuses_a_wrong_name_and_never_runs_on_one_key() {
    let mut app = busy_app();
    select(&mut app, "0002_customers_phone_not_null");
    assert_eq!(
        press(&mut app, KeyCode::Char('c')),
        Some(Action::EvaluateGates(
            "0002_customers_phone_not_null".to_string()
        )),
        "c opens the dialog and asks for the gates, nothing more"
    );
    assert!(matches!(app.popup, Some(Popup::Contract(_))));
    // Gates not evaluated yet: even the right name waits.
    type_text(&mut app, "0002_customers_phone_not_null");
    assert_eq!(press(&mut app, KeyCode::Enter), None);
    app.set_gates(gates(&[("backfill complete", Verdict::Pass)]));

    // The dialog kept the typed text; a wrong name is refused and cleared.
    let Some(Popup::Contract(dialog)) = &mut app.popup else {
        panic!("dialog open")
    };
    dialog.input.reset();
    type_text(&mut app, "0002_customers_phone");
    assert_eq!(press(&mut app, KeyCode::Enter), None);
    let Some(Popup::Contract(dialog)) = &app.popup else {
        panic!("still open")
    };
    assert!(dialog
        .error
        .as_deref()
        .unwrap_or("")
        .contains("does not match"));

    type_text(&mut app, "0002_customers_phone_not_null");
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        Some(Action::Contract {
            migration: "0002_customers_phone_not_null".to_string(),
            overrides: Vec::new(),
        })
    );
    assert!(app.popup.is_none());
}

#[test]
fn failing_gates_need_a_second_typed_override() {
    let mut app = busy_app();
    select(&mut app, "0002_customers_phone_not_null");
    press(&mut app, KeyCode::Char('c'));
    app.set_gates(gates(&[
        ("old version unused", Verdict::Fail),
        ("indexes unused", Verdict::Unknown),
        ("backfill complete", Verdict::Pass),
    ]));
    type_text(&mut app, "0002_customers_phone_not_null");
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        None,
        "the name alone is not enough"
    );
    type_text(&mut app, "yes");
    assert_eq!(press(&mut app, KeyCode::Enter), None);
    type_text(&mut app, "override");
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        Some(Action::Contract {
            migration: "0002_customers_phone_not_null".to_string(),
            overrides: vec![
                "old version unused".to_string(),
                "indexes unused".to_string()
            ],
        })
    );
}

#[test]
fn contract_is_only_offered_when_ready_and_esc_cancels() {
    let mut app = busy_app();
    select(&mut app, "0004_order_items_fk_products");
    press(&mut app, KeyCode::Char('c'));
    assert!(
        app.popup.is_none(),
        "pending migrations cannot be contracted"
    );
    select(&mut app, "0002_customers_phone_not_null");
    press(&mut app, KeyCode::Char('c'));
    assert_eq!(press(&mut app, KeyCode::Esc), None);
    assert!(app.popup.is_none());
}

#[test]
fn rollback_needs_a_confirmation_and_is_refused_after_contract() {
    let mut app = busy_app();
    select(&mut app, "0003_products_price_numeric");
    assert_eq!(
        press(&mut app, KeyCode::Char('r')),
        None,
        "r alone does nothing"
    );
    assert_eq!(
        press(&mut app, KeyCode::Char('x')),
        None,
        "other keys keep the dialog"
    );
    assert!(matches!(app.popup, Some(Popup::Rollback(_))));
    assert_eq!(
        press(&mut app, KeyCode::Char('y')),
        Some(Action::Rollback("0003_products_price_numeric".to_string()))
    );

    select(&mut app, "0001_orders_add_status");
    assert_eq!(press(&mut app, KeyCode::Char('r')), None);
    assert!(app.popup.is_none(), "no rollback after contract");
    assert!(app
        .notice
        .as_deref()
        .unwrap_or("")
        .contains("only possible before contract"));
    app.migrations[0].state = MigrationState::Contracting;
    press(&mut app, KeyCode::Char('r'));
    assert!(app.popup.is_none(), "nor while contracting");
}

#[test]
fn quitting_while_running_asks_to_detach_or_pause() {
    let mut app = busy_app();
    assert_eq!(press(&mut app, KeyCode::Char('q')), None);
    assert!(matches!(app.popup, Some(Popup::Quit)));
    let screen = render(&app, 80, 24);
    assert!(screen.contains("d detach: it goes on"), "{screen}");
    assert!(
        screen.contains("p pause it (it holds its place)"),
        "{screen}"
    );
    assert_eq!(
        press(&mut app, KeyCode::Char('x')),
        None,
        "other keys keep it"
    );
    assert!(matches!(app.popup, Some(Popup::Quit)));
    assert_eq!(press(&mut app, KeyCode::Char('s')), None, "s is the demo's");
    assert!(matches!(app.popup, Some(Popup::Quit)));
    assert_eq!(press(&mut app, KeyCode::Esc), None);
    assert!(app.popup.is_none(), "Esc stays in the console");
    assert_eq!(app.notice.as_deref(), Some("quit cancelled"));
    assert_eq!(
        app.handle_event(&Event::Key(KeyEvent::new(
            KeyCode::Char('c'),
            KeyModifiers::CONTROL
        ))),
        None,
        "Ctrl-C asks too"
    );
    assert_eq!(press(&mut app, KeyCode::Char('d')), Some(Action::Detach));
    assert!(app.popup.is_none());
    press(&mut app, KeyCode::Char('q'));
    assert_eq!(
        press(&mut app, KeyCode::Char('p')),
        Some(Action::PauseAndQuit)
    );

    app.migrations[2].state = MigrationState::ReadyToContract;
    assert_eq!(press(&mut app, KeyCode::Char('q')), Some(Action::Quit));

    // A contract runner evaluating its gates is recorded as ready to contract, but the
    // console follows it: quitting asks.
    app.following = Some("0002_customers_phone_not_null".to_string());
    assert_eq!(press(&mut app, KeyCode::Char('q')), None);
    assert!(matches!(app.popup, Some(Popup::Quit)));
    let screen = render(&app, 80, 24);
    assert!(
        screen.contains("0002_customers_phone_not_null is running"),
        "{screen}"
    );
}

#[test]
fn the_log_filter_is_typed_applied_and_cleared() {
    let mut app = busy_app();
    press(&mut app, KeyCode::Char('/'));
    type_text(&mut app, "THROTTLE");
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.log_filter, "THROTTLE");
    let shown: Vec<_> = app.filtered_log().map(|l| l.text.clone()).collect();
    assert_eq!(shown.len(), 2, "case-insensitive: {shown:?}");
    press(&mut app, KeyCode::Char('/'));
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.filtered_log().count(), 5);
}

#[test]
fn help_opens_and_closes() {
    let mut app = busy_app();
    press(&mut app, KeyCode::Char('?'));
    assert!(matches!(app.popup, Some(Popup::Help)));
    assert_eq!(
        press(&mut app, KeyCode::Char('s')),
        None,
        "keys do not leak through help"
    );
    press(&mut app, KeyCode::Char('?'));
    assert!(app.popup.is_none());
}

#[test]
fn docs_keybindings_match_the_keymap() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/keybindings.md"))
        .expect("docs/keybindings.md");
    assert!(
        docs.contains(&keymap::markdown_table()),
        "docs/keybindings.md is out of date; paste:\n{}",
        keymap::markdown_table()
    );
}

#[test]
fn long_migration_names_fit_at_80x24() {
    let mut app = App::new("postgres://postgres@127.0.0.1:5432/shop".to_string());
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sample-migrations");
    let mut names: Vec<String> = zdm::migration::load_dir(std::path::Path::new(dir))
        .expect("samples")
        .into_iter()
        .map(|m| m.name)
        .collect();
    // The longest names first, so that they are on screen.
    names.sort_by_key(|name| std::cmp::Reverse(name.len()));
    app.migrations = names
        .iter()
        .take(5)
        .map(|name| zdm::tui::app::MigrationRow {
            name: name.clone(),
            description: None,
            state: MigrationState::Pending,
            checksum_mismatch: false,
            stopped: false,
            start_refusal: None,
        })
        .collect();
    let screen = render(&app, 80, 24);
    for name in names.iter().take(5) {
        assert!(screen.contains(name.as_str()), "{name} is cut:\n{screen}");
    }
}

#[test]
fn the_backfill_pane_shows_the_runs_own_progress() {
    use zdm::control::{Progress, RunState};
    use zdm::tui::app::BackfillView;
    let progress = Progress {
        migration: "0003_products_price_numeric".to_string(),
        table: "public.products".to_string(),
        rows_done: 1_200,
        // Statistics ran short: the gauge never passes what is done.
        rows_total_estimate: Some(1_000),
        rows_per_second_now: 410.0,
        rows_per_second_average: 380.0,
        eta: None,
        batch_size: 150,
        last_batch: Some(Duration::from_millis(290)),
        batch_target: Duration::from_millis(300),
        state: RunState::Throttled,
        reason: Some("manual throttle (operator)".to_string()),
        time_running: Duration::from_secs(3),
        time_throttled: Duration::from_secs(1),
        time_paused: Duration::ZERO,
        workers: 1,
        worker_rows: Vec::new(),
    };
    let view = BackfillView::from_progress(&progress);
    assert_eq!((view.rows_done, view.rows_total), (1_200, 1_200));
    assert_eq!(view.batch_target, Some(Duration::from_millis(300)));
    assert_eq!(
        view.throttle_reason.as_deref(),
        Some("manual throttle (operator)")
    );
    assert!(!view.paused && !view.finished);

    let mut app = busy_app();
    app.backfill = Some(view);
    app.detail = Pane::Backfill;
    let screen = render(&app, 80, 24);
    for words in [
        "150 rows in 290 ms (target 300 ms)",
        "THROTTLED: manual throttle",
        "410 rows/s now, 380 average",
        "ETA    not yet known",
    ] {
        assert!(screen.contains(words), "{words:?} missing:\n{screen}");
    }

    let paused = Progress {
        state: RunState::Paused,
        reason: Some("operator".to_string()),
        ..progress
    };
    let view = BackfillView::from_progress(&paused);
    assert!(view.paused && view.throttle_reason.is_none());
}
