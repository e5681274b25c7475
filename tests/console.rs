//! The console without a terminal: every screen rendered with ratatui's TestBackend
//! (snapshots at 80x24, 120x32, 140x40 and 200x50) and every key binding on the app state.

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

/// The contract run of `migration` reported its gates judged and waits for the
/// confirmation (as its `gates_evaluated` and `awaiting_confirmation` events say).
fn gates_judged(app: &mut App, migration: &str, rows: Vec<GateRow>) {
    app.set_gates_of(migration, rows);
    app.set_awaiting_confirmation(migration);
}

/// The contract run of `migration` counting down its gates' window.
fn gates_watching(app: &mut App, migration: &str, left: u64, settled: &[(&str, Verdict)]) {
    let observing = zdm::protocol::Observing {
        migration: migration.to_string(),
        window: Duration::from_secs(60),
        remaining: Duration::from_secs(left),
        settled: settled
            .iter()
            .map(|(name, verdict)| zdm::protocol::GateReport {
                name: name.to_string(),
                title: format!("{name} title"),
                verdict: *verdict,
                evidence: vec!["evidence".to_string()],
            })
            .collect(),
        watching: vec![
            "old-version-unused".to_string(),
            "indexes-unused".to_string(),
        ],
    };
    app.set_gates_observing(&observing);
}

// ---- snapshots -------------------------------------------------------------------------

#[test]
fn screens_at_80x24() {
    let mut app = busy_app();
    insta::assert_snapshot!("plan_80x24", render(&app, 80, 24));
    press(&mut app, KeyCode::Tab); // Plan
    press(&mut app, KeyCode::Tab); // Backfill
    insta::assert_snapshot!("backfill_80x24", render(&app, 80, 24));
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
fn every_pane_at_120x32_140x40_and_200x50() {
    let app = busy_app();
    insta::assert_snapshot!("all_120x32", render(&app, 120, 32));
    insta::assert_snapshot!("all_140x40", render(&app, 140, 40));
    let large = render(&app, 200, 50);
    // A wider health pane draws longer sparklines (more of the history).
    let bars = |screen: &str| {
        screen
            .lines()
            .find(|line| line.contains("TPS"))
            .map_or(0, |line| {
                line.chars().filter(|c| ('▁'..='█').contains(c)).count()
            })
    };
    assert!(bars(&large) > bars(&render(&app, 120, 32)), "{large}");
    insta::assert_snapshot!("all_200x50", large);
}

/// What a DBA watches during a backfill, at 80x24 without pressing Tab: the bar with its
/// percentage beside it, rows, rate, ETA, throttle state and reason, and the health
/// essentials (replica lag, lock waiters, CPU, canary) one line each.
#[test]
fn the_backfill_and_the_health_essentials_share_80x24() {
    let mut app = busy_app();
    app.detail = Pane::Backfill;
    if let Some(backfill) = &mut app.backfill {
        backfill.throttle_reason = Some("replica lag 1.4 s above max 1 s".to_string());
    }
    let screen = render(&app, 80, 24);
    for words in [
        "42.1%",
        "Backfill public.products",
        "421,000 of ~1,000,000",
        "5,230 rows/s now",
        "ETA    1m 52s",
        "THROTTLED: replica lag 1.4 s above",
        "replica lag",
        "lock waiters",
        "CPU",
        "canary",
        "4.0 s throttled",
        "+/- batch",
    ] {
        assert!(screen.contains(words), "{words:?} missing:\n{screen}");
    }
    // The percentage is beside the bar, not drawn over it.
    let bar = screen
        .lines()
        .find(|line| line.contains("42.1%"))
        .unwrap_or_default();
    assert!(bar.contains("█░") && bar.contains("░  42.1%"), "{bar}");
    insta::assert_snapshot!("backfill_throttled_80x24", screen);
}

#[test]
fn a_paused_backfill_has_no_eta_and_a_done_one_says_done() {
    let mut app = busy_app();
    app.detail = Pane::Backfill;
    if let Some(backfill) = &mut app.backfill {
        backfill.paused = true;
        backfill.rows_per_second_now = 0.0;
        backfill.eta = None;
        backfill.time_paused = Duration::from_secs(125);
    }
    app.migrations[2].state = MigrationState::Paused;
    let paused = render(&app, 80, 24);
    assert!(paused.contains("ETA    none while paused"), "{paused}");
    assert!(paused.contains("PAUSED"), "{paused}");
    assert!(paused.contains("PAUSED, 2m 05s in all"), "{paused}");
    assert!(
        paused.contains("p resume"),
        "the footer offers resume: {paused}"
    );
    insta::assert_snapshot!("backfill_paused_80x24", paused);
    press(&mut app, KeyCode::Char('q'));
    let quit = render(&app, 80, 24);
    assert!(quit.contains("is paused in its runner process"), "{quit}");
    press(&mut app, KeyCode::Esc);

    app.migrations[2].state = MigrationState::ReadyToContract;
    if let Some(backfill) = &mut app.backfill {
        backfill.paused = false;
        backfill.finished = true;
        backfill.rows_done = 1_000_000;
        backfill.rows_total = 1_000_000;
    }
    let done = render(&app, 80, 24);
    for words in [
        "100.0%",
        "1,000,000 (all of them)",
        "ETA    done",
        "finished",
    ] {
        assert!(done.contains(words), "{words:?} missing:\n{done}");
    }
    assert!(!done.contains("not yet known"), "{done}");
}

/// Gates past the screen's height scroll; the prompt and `Enter confirm  Esc cancel` stay.
#[test]
fn the_contract_dialog_keeps_its_keys_when_the_gates_do_not_fit() {
    let mut app = busy_app();
    select(&mut app, "0002_customers_phone_not_null");
    press(&mut app, KeyCode::Char('c'));
    let names: Vec<String> = (1..=20).map(|n| format!("gate number {n}")).collect();
    let many: Vec<(&str, Verdict)> = names
        .iter()
        .map(|name| (name.as_str(), Verdict::Pass))
        .collect();
    gates_judged(&mut app, "0002_customers_phone_not_null", gates(&many));
    let screen = render(&app, 80, 24);
    assert!(screen.contains("Enter confirm"), "{screen}");
    assert!(screen.contains("Type the migration's name"), "{screen}");
    assert!(screen.contains("gate number 1:"), "{screen}");
    assert!(screen.contains("below: ↑ / ↓ scroll"), "{screen}");
    insta::assert_snapshot!("contract_many_gates_80x24", screen);
    for _ in 0..20 {
        press(&mut app, KeyCode::Down);
    }
    let scrolled = render(&app, 80, 24);
    assert!(scrolled.contains("gate number 20:"), "{scrolled}");
    assert!(scrolled.contains("Enter confirm"), "{scrolled}");
    assert!(!scrolled.contains("gate number 1:"), "{scrolled}");
}

#[test]
fn the_help_wraps_an_action_beside_its_keys() {
    let mut app = busy_app();
    press(&mut app, KeyCode::Char('?'));
    let screen = render(&app, 80, 24);
    // Every row of the overlay starts with a binding's keys or the key column's blank.
    let column = keymap::BINDINGS
        .iter()
        .map(|b| b.keys.chars().count())
        .max()
        .unwrap_or(0)
        + 2;
    let rows: Vec<&str> = screen
        .lines()
        .filter_map(|line| line.split('║').nth(1))
        .collect();
    assert!(rows.len() > keymap::BINDINGS.len(), "{screen}");
    for row in rows {
        let under_keys = row.starts_with(&" ".repeat(column))
            || keymap::BINDINGS.iter().any(|b| row.starts_with(b.keys));
        assert!(
            under_keys,
            "an action wrapped under the keys: {row:?}\n{screen}"
        );
    }
}

#[test]
fn log_lines_wrap_to_the_pane_instead_of_being_cut() {
    let mut app = busy_app();
    let long = "0003_products_price_numeric: throttled: host CPU 93 % above max 90 % \
                (3 of 3 hot samples); the backfill waits until it is below 72 %";
    app.push_log(zdm::tui::app::LogLine {
        at: "23:43:00".to_string(),
        level: zdm::tui::app::Level::Warning,
        text: long.to_string(),
    });
    press(&mut app, KeyCode::Char('l'));
    let screen = render(&app, 80, 24);
    for word in ["0003_products_price_numeric:", "samples);", "72 %"] {
        assert!(screen.contains(word), "{word:?} missing:\n{screen}");
    }
    insta::assert_snapshot!("log_80x24", screen);
    let wide = render(&app, 120, 32);
    assert!(wide.contains("72 %"), "{wide}");
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
    gates_watching(
        &mut app,
        "0002_customers_phone_not_null",
        42,
        &[("backfill", Verdict::Pass), ("explain", Verdict::Unknown)],
    );
    insta::assert_snapshot!("contract_countdown_80x24", render(&app, 80, 24));
    gates_judged(
        &mut app,
        "0002_customers_phone_not_null",
        gates(&[
            ("backfill complete", Verdict::Pass),
            ("old version unused", Verdict::Unknown),
        ]),
    );
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
fn the_contract_dialog_keeps_its_prompt_and_keys_with_every_gate_and_an_error_at_80x24() {
    let mut app = busy_app();
    select(&mut app, "0002_customers_phone_not_null");
    press(&mut app, KeyCode::Char('c'));
    let long = "statement `SELECT id, phone FROM public_0001.customers WHERE id = $1` ran 41 \
                time(s) in the window\nmore lines";
    let rows = zdm::gates::registry::names()
        .into_iter()
        .map(|name| GateRow {
            name: name.to_string(),
            result: Verdict::Fail,
            evidence: long.to_string(),
        })
        .collect();
    gates_judged(&mut app, "0002_customers_phone_not_null", rows);
    type_text(&mut app, "0002_customers_phone_not_null");
    press(&mut app, KeyCode::Enter);
    type_text(&mut app, "yes");
    press(&mut app, KeyCode::Enter);
    let screen = render(&app, 80, 24);
    assert!(screen.contains("Enter confirm   Esc cancel"), "{screen}");
    assert!(screen.contains("type override to contract"), "{screen}");
    insta::assert_snapshot!("contract_every_gate_failed_80x24", screen);
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
fn an_unreachable_database_is_said_with_the_files_found() {
    let mut app = App::new("postgres://postgres@127.0.0.1:1/shop".to_string());
    app.connection = Connection::Failed("connection refused (127.0.0.1:1)".to_string());
    app.files_without_state = vec![
        "0001_orders_add_status".to_string(),
        "0002_customers_phone_not_null".to_string(),
    ];
    let screen = render(&app, 80, 24);
    assert!(!screen.contains("No migration files found"), "{screen}");
    for words in [
        "The database is unreachable",
        "0001_orders_add_status",
        "0002_customers_phone_not_null",
    ] {
        assert!(screen.contains(words), "{words:?} missing:\n{screen}");
    }
    app.files_without_state.clear();
    let screen = render(&app, 80, 24);
    assert!(
        screen.contains("found") && screen.contains("either"),
        "{screen}"
    );
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
        Some(Action::PrepareContract(
            "0002_customers_phone_not_null".to_string()
        )),
        "c opens the dialog and starts the run that checks the gates, nothing more"
    );
    assert!(matches!(app.popup, Some(Popup::Contract(_))));
    // Gates still watching: even the right name waits, and the dialog says how long.
    gates_watching(&mut app, "0002_customers_phone_not_null", 42, &[]);
    type_text(&mut app, "0002_customers_phone_not_null");
    assert_eq!(press(&mut app, KeyCode::Enter), None);
    let Some(Popup::Contract(dialog)) = &app.popup else {
        panic!("dialog open")
    };
    assert!(
        dialog.error.as_deref().unwrap_or("").contains("42 s left"),
        "{:?}",
        dialog.error
    );
    gates_judged(
        &mut app,
        "0002_customers_phone_not_null",
        gates(&[("backfill complete", Verdict::Pass)]),
    );

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
    // Sent to the run: the dialog waits for its answer, and a second Enter sends nothing.
    assert!(matches!(&app.popup, Some(Popup::Contract(d)) if d.sent));
    assert_eq!(press(&mut app, KeyCode::Enter), None);
    // The run refused (say, a gate it judged failed since): said in the dialog, which asks again.
    app.contract_answered(
        "0002_customers_phone_not_null",
        Some("gate(s) explain did not pass".to_string()),
    );
    let Some(Popup::Contract(dialog)) = &app.popup else {
        panic!("still open after a refusal")
    };
    assert!(!dialog.sent);
    assert_eq!(
        dialog.error.as_deref(),
        Some("gate(s) explain did not pass")
    );
    type_text(&mut app, "0002_customers_phone_not_null");
    assert!(press(&mut app, KeyCode::Enter).is_some());
    app.contract_answered("0002_customers_phone_not_null", None);
    assert!(
        app.popup.is_none(),
        "accepted: contract runs, the dialog closes"
    );
}

#[test]
fn failing_gates_need_a_second_typed_override() {
    let mut app = busy_app();
    select(&mut app, "0002_customers_phone_not_null");
    press(&mut app, KeyCode::Char('c'));
    gates_judged(
        &mut app,
        "0002_customers_phone_not_null",
        gates(&[
            ("old version unused", Verdict::Fail),
            ("indexes unused", Verdict::Unknown),
            ("backfill complete", Verdict::Pass),
        ]),
    );
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
    assert_eq!(
        press(&mut app, KeyCode::Esc),
        Some(Action::CancelContract(
            "0002_customers_phone_not_null".to_string()
        )),
        "Esc cancels the run that checks the gates: nothing is contracted"
    );
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
        screen.contains("0002_customers_phone_not_null is running in its runner"),
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

/// The screens in the README's "The console" section are copied from the snapshot files:
/// each drawn block's lines are a run of lines of one snapshot (trailing blanks aside).
#[test]
fn the_readme_console_screens_are_real_snapshots() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let start = readme.find("### The console").expect("the console section");
    let section = &readme[start..];
    let section = &section[..section[4..]
        .find("\n### ")
        .map_or(section.len(), |end| end + 4)];
    let snapshots: Vec<Vec<String>> = std::fs::read_dir(root.join("tests/snapshots"))
        .expect("snapshots")
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("console__"))
        .map(|entry| {
            let text = std::fs::read_to_string(entry.path()).expect("snapshot");
            text.lines()
                .filter(|line| line.starts_with('"') && line.ends_with('"') && line.len() > 1)
                .map(|line| line[1..line.len() - 1].trim_end().to_string())
                .collect()
        })
        .collect();
    let blocks: Vec<Vec<String>> = section
        .split("```")
        .skip(1)
        .step_by(2)
        .map(|block| {
            block
                .lines()
                .skip(1)
                .map(|line| line.trim_end().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|lines| {
            lines
                .iter()
                .any(|line| line.contains('│') || line.contains('┃'))
        })
        .collect();
    assert!(blocks.len() >= 3, "the section's screens: {}", blocks.len());
    for block in blocks {
        let copied = snapshots
            .iter()
            .any(|snapshot| snapshot.windows(block.len()).any(|window| window == block));
        assert!(copied, "not a snapshot's lines:\n{}", block.join("\n"));
    }
}

// ---- the last rehearsal beside the plan --------------------------------------------------

/// A rehearsal of the price migration at 0.1 and 0.3, as `zdm rehearse` keeps it.
fn price_rehearsal() -> zdm::synth::rehearsal::Rehearsal {
    use zdm::synth::rehearsal::{
        Forecast, Latency, Measured, Rate, Rehearsal, StepRun, Writes, DURATION,
    };
    let step = |phase: &str, description: &str, lock: &str, ms: f64| StepRun {
        phase: phase.to_string(),
        description: description.to_string(),
        lock: lock.to_string(),
        locked: vec!["public.products".to_string()],
        blocks_writes: lock == "ACCESS EXCLUSIVE",
        grows_with_rows: phase == "backfill",
        ms,
        lock_retries: 0,
        lock_backoff_ms: 0.0,
    };
    let forecast = |figure: &str, unit: &str, at: f64, growth: &str| Forecast {
        figure: figure.to_string(),
        unit: unit.to_string(),
        measured: vec![(0.1, at / 10.0), (0.3, at * 0.3)],
        at_full_size: at,
        low: at * 0.7,
        high: at * 1.3,
        growth: growth.to_string(),
        exponent: Some(1.0),
    };
    let run = |scale: f64| Measured {
        scale,
        rows: (1_000_000.0 * scale) as u64,
        synth_s: 4.0,
        start_s: 30.0 * scale,
        pause_s: 5.0,
        complete_s: 2.0,
        expand_s: 0.02,
        backfill_s: 29.0 * scale,
        contract_s: 0.4,
        steps: vec![
            step(
                "expand",
                "add hidden column products._zdm_new_price",
                "ACCESS EXCLUSIVE",
                6.0,
            ),
            step(
                "backfill",
                "fill _zdm_new_price from price_cents",
                "ROW EXCLUSIVE",
                29_000.0 * scale,
            ),
        ],
        batches: 50,
        batch_p50_ms: 180.0,
        batch_max_ms: 420.0,
        backfill_rows: (1_000_000.0 * scale) as u64,
        rows_per_s: 34_000.0,
        throttled_s: 0.0,
        latency_before: Latency {
            statements: 150,
            per_s: 49.8,
            failed: 0,
            p50_ms: 0.4,
            p99_ms: 1.2,
        },
        latency_during: Latency {
            statements: 1500,
            per_s: 48.1,
            failed: 0,
            p50_ms: 0.6,
            p99_ms: 4.1,
        },
        writes: Writes {
            updates: 160,
            inserts: 150,
            failed: 0,
            not_inserted: Vec::new(),
        },
        replica_lag: Vec::new(),
        wal_bytes: 90_000_000,
        table_growth_bytes: 40_000_000,
        index_growth_bytes: 0,
        gates_refused: None,
        replayed: Vec::new(),
        not_replayed: Vec::new(),
    };
    Rehearsal {
        migration: "0003_products_price_numeric".to_string(),
        at: "2026-12-01T22:50:13Z".to_string(),
        rate: Rate {
            aimed_per_s: 50.0,
            source: "the target's pg_stat_statements".to_string(),
        },
        runs: vec![run(0.1), run(0.3)],
        forecast: vec![
            forecast(DURATION, "s", 96.0, "linear"),
            forecast(
                "backfill step: fill _zdm_new_price from price_cents",
                "ms",
                97_000.0,
                "linear",
            ),
            forecast(
                "expand step: add hidden column products._zdm_new_price",
                "ms",
                6.0,
                "constant (catalog only: no scan, no rewrite)",
            ),
        ],
        riskiest: Some("fill _zdm_new_price from price_cents …".to_string()),
        riskiest_step: Some(
            "fill _zdm_new_price from price_cents (ROW EXCLUSIVE, ~97.0 s)".to_string(),
        ),
        settings: Vec::new(),
        real_values: Vec::new(),
        warnings: Vec::new(),
    }
}

#[test]
fn the_plan_shows_its_last_rehearsal_at_80x24_and_120x32() {
    let mut app = busy_app();
    app.rehearsal = Some(zdm::tui::app::LastRehearsal::Found(Box::new(
        price_rehearsal(),
    )));
    let small = render(&app, 80, 24);
    for shown in [
        "rehearsed 2026-12-01 22:50 UTC",
        "forecast 96.0 s",
        "riskiest:",
    ] {
        assert!(small.contains(shown), "{shown:?} missing:\n{small}");
    }
    insta::assert_snapshot!("plan_rehearsed_80x24", small);
    insta::assert_snapshot!("plan_rehearsed_120x32", render(&app, 120, 32));
}

#[test]
fn a_plan_never_rehearsed_names_the_command() {
    let mut app = busy_app();
    app.rehearsal = Some(zdm::tui::app::LastRehearsal::Never {
        command: "zdm rehearse 0003_products_price_numeric".to_string(),
    });
    let screen = render(&app, 80, 24);
    assert!(
        screen.contains("not rehearsed: zdm rehearse"),
        "the command is named:\n{screen}"
    );
    insta::assert_snapshot!("plan_not_rehearsed_80x24", screen);
}

#[test]
fn the_last_rehearsal_is_read_from_beside_the_migrations() {
    use zdm::tui::app::LastRehearsal;
    let dir = tempfile::tempdir().expect("tempdir");
    let name = "0003_products_price_numeric";
    assert_eq!(
        LastRehearsal::of(dir.path(), name),
        LastRehearsal::Never {
            command: format!("zdm rehearse {name}")
        }
    );
    let kept = zdm::synth::rehearsal::save(dir.path(), &price_rehearsal()).expect("save");
    assert!(kept.ends_with(".zdm/rehearsals/0003_products_price_numeric.json"));
    // (JSON's decimals need not give back the last bit of every float: the fields.)
    let LastRehearsal::Found(read) = LastRehearsal::of(dir.path(), name) else {
        panic!("the kept rehearsal is not read back");
    };
    let kept_one = price_rehearsal();
    assert_eq!(
        (
            &read.migration,
            &read.at,
            read.runs.len(),
            &read.riskiest_step
        ),
        (
            &kept_one.migration,
            &kept_one.at,
            2,
            &kept_one.riskiest_step
        )
    );
    let duration = |r: &zdm::synth::rehearsal::Rehearsal| {
        r.forecast_of(zdm::synth::rehearsal::DURATION)
            .map(|f| f.at_full_size)
    };
    assert_eq!(duration(&read), duration(&kept_one));
    std::fs::write(&kept, "{ not json").expect("write");
    assert!(matches!(
        LastRehearsal::of(dir.path(), name),
        LastRehearsal::Unreadable(why) if why.contains("not a rehearsal report")
    ));
}

#[test]
fn the_rehearsal_beside_the_plan_has_no_colour_under_no_color() {
    let mut app = busy_app();
    app.rehearsal = Some(zdm::tui::app::LastRehearsal::Found(Box::new(
        price_rehearsal(),
    )));
    let theme = Theme::select(None, true).expect("the NO_COLOR theme");
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    terminal
        .draw(|frame| view::draw(frame, &app, &theme))
        .expect("draw");
    let buffer = terminal.backend().buffer();
    let screen = terminal.backend().to_string();
    assert!(screen.contains("riskiest:"), "{screen}");
    let coloured: Vec<(u16, u16)> = buffer
        .content
        .iter()
        .enumerate()
        .filter(|(_, cell)| {
            cell.fg != ratatui::style::Color::Reset || cell.bg != ratatui::style::Color::Reset
        })
        .map(|(i, _)| buffer.pos_of(i))
        .collect();
    assert!(coloured.is_empty(), "coloured cells at {coloured:?}");
}
