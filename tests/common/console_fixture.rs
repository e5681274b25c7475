//! A console state with fixed, realistic data (no database, no clock) for view and key tests.

use std::time::Duration;

use zdm::monitor::Severity;
use zdm::plan::{Backfill, LockLevel, Phase, Plan, Step, StepAction};
use zdm::tui::app::{App, BackfillView, Connection, Level, LogLine, MigrationRow, MigrationState};
use zdm::tui::health::{AlertLine, HealthView, LockPair, SeriesView};

fn row(name: &str, state: MigrationState) -> MigrationRow {
    MigrationRow {
        name: name.to_string(),
        description: None,
        state,
        checksum_mismatch: false,
        stopped: false,
        // What the ledger would say of a migration recorded in `state` (`s` starts only a
        // pending one here; tests that need another answer set it).
        start_refusal: (state != MigrationState::Pending)
            .then(|| format!("{name} is {}: nothing for `s` to do", state.label())),
    }
}

fn sql_step(phase: Phase, description: &str, sql: &str, lock: LockLevel, table: &str) -> Step {
    Step {
        phase,
        description: description.to_string(),
        action: StepAction::Sql {
            sql: sql.to_string(),
            transactional: true,
        },
        lock,
        locked: vec![table.to_string()],
        rewrites: false,
        scans: false,
        unchecked: false,
        creates: Vec::new(),
    }
}

/// The plan of a type change on products.price_cents, as the planner would show it.
pub fn price_plan() -> Plan {
    let mut validate = sql_step(
        Phase::Contract,
        "validate products_price_not_null",
        "ALTER TABLE public.products VALIDATE CONSTRAINT products_price_not_null",
        LockLevel::ShareUpdateExclusive,
        "public.products",
    );
    validate.scans = true;
    Plan {
        migration: "0003_products_price_numeric".to_string(),
        version_schema: "public_0003_products_price_numeric".to_string(),
        steps: vec![
            sql_step(
                Phase::Expand,
                "add hidden column products._zdm_new_price",
                "ALTER TABLE public.products ADD COLUMN _zdm_new_price numeric(12,2)",
                LockLevel::AccessExclusive,
                "public.products",
            ),
            sql_step(
                Phase::Expand,
                "keep price and price_cents in step (triggers)",
                "CREATE TRIGGER _zdm_sync_price BEFORE INSERT OR UPDATE ON public.products\nFOR EACH ROW EXECUTE FUNCTION zdm.sync_0003()",
                LockLevel::ShareRowExclusive,
                "public.products",
            ),
            Step {
                phase: Phase::Backfill,
                description: "fill _zdm_new_price from price_cents".to_string(),
                action: StepAction::Backfill(Backfill {
                    table: "public.products".to_string(),
                    key_columns: vec!["id".to_string()],
                    assignments: vec![(
                        "_zdm_new_price".to_string(),
                        "price_cents::numeric / 100".to_string(),
                    )],
                    predicate: Some("_zdm_new_price IS NULL".to_string()),
                }),
                lock: LockLevel::RowExclusive,
                locked: vec!["public.products".to_string()],
                rewrites: false,
                scans: true,
                unchecked: false,
                creates: Vec::new(),
            },
            validate,
            sql_step(
                Phase::Contract,
                "drop the old column price_cents",
                "ALTER TABLE public.products DROP COLUMN price_cents",
                LockLevel::AccessExclusive,
                "public.products",
            ),
        ],
        drops: Default::default(),
    }
}

fn series(
    label: &str,
    points: &[f64],
    current: Option<&str>,
    band: Option<&str>,
    problem: Option<&str>,
    alert: Option<Severity>,
) -> SeriesView {
    SeriesView {
        label: label.to_string(),
        points: points.to_vec(),
        current: current.map(str::to_string),
        band: band.map(str::to_string),
        problem: problem.map(str::to_string),
        alert,
    }
}

/// The database during the backfill: remote host, replica lag rising past its band, one
/// session blocked behind zdm, the canary stale.
pub fn busy_health() -> HealthView {
    let lag: Vec<f64> = (0..40)
        .map(|i| {
            if i < 30 {
                0.2
            } else {
                0.2 + f64::from(i - 29) * 0.5
            }
        })
        .collect();
    let tps: Vec<f64> = (0..40).map(|i| 50.0 + f64::from(i % 7) * 3.0).collect();
    HealthView {
        series: vec![
            series(
                "CPU",
                &[],
                None,
                None,
                Some("remote host: not measured"),
                None,
            ),
            series(
                "replica lag",
                &lag,
                Some("5.7 s"),
                Some("normal 0.0–1.2 s"),
                None,
                Some(Severity::Warning),
            ),
            series(
                "lock waiters",
                &[0.0, 0.0, 1.0, 1.0, 1.0],
                Some("1"),
                Some("normal 0–2"),
                None,
                None,
            ),
            series(
                "canary",
                &[0.3, 0.4, 0.3, 0.5],
                None,
                Some("normal 0.20–0.90 ms"),
                Some("stale 4 s: canceling statement due to lock timeout"),
                None,
            ),
            series(
                "TPS",
                &tps,
                Some("62.0/s"),
                Some("normal 40.1–70.3/s"),
                None,
                None,
            ),
        ],
        locks: vec![LockPair {
            waiter: "pid 4711 shop-app".to_string(),
            waiter_mode: "RowExclusiveLock".to_string(),
            object: "public.products".to_string(),
            blocker: "pid 4700 zdm pid=812 host=bastion".to_string(),
            blocker_mode: "AccessExclusiveLock".to_string(),
            wait_seconds: 0.4,
            blocker_is_zdm: true,
        }],
        locks_problem: None,
        alerts: vec![AlertLine {
            severity: Severity::Warning,
            message: "replica replay lag (s) is 5.7 (limit 5)".to_string(),
        }],
    }
}

/// A console in the middle of a night's work.
pub fn busy_app() -> App {
    let mut app = App::new("postgres://app:***@db.internal:5432/shop".to_string());
    app.connection = Connection::Connected;
    // Following a backfilling run (live control) in `zdm console` (detach offered).
    app.live_control = true;
    app.can_detach = true;
    let mut changed = row("0005_orders_split_notes", MigrationState::Pending);
    changed.checksum_mismatch = true;
    app.migrations = vec![
        row("0001_orders_add_status", MigrationState::Complete),
        row(
            "0002_customers_phone_not_null",
            MigrationState::ReadyToContract,
        ),
        row("0003_products_price_numeric", MigrationState::Backfilling),
        row("0004_order_items_fk_products", MigrationState::Pending),
        changed,
    ];
    app.selected = 2;
    app.health = Some(busy_health());
    app.plan = Some((price_plan(), Some(2)));
    app.backfill = Some(BackfillView {
        table: "public.products".to_string(),
        rows_done: 421_000,
        rows_total: 1_000_000,
        rows_per_second_now: 5_230.4,
        rows_per_second_average: 4_911.0,
        eta: Some(Duration::from_secs(112)),
        batch_size: 2_000,
        last_batch: Duration::from_millis(183),
        batch_target: Some(Duration::from_millis(200)),
        throttle_reason: None,
        paused: false,
        finished: false,
        time_running: Duration::from_secs(86),
        time_throttled: Duration::from_secs(4),
        time_paused: Duration::ZERO,
    });
    for (at, level, text) in [
        (
            "23:41:02",
            Level::Info,
            "expand of 0003_products_price_numeric finished (2 steps)",
        ),
        (
            "23:41:03",
            Level::Info,
            "backfill of public.products started: about 1,000,000 rows",
        ),
        (
            "23:41:40",
            Level::Warning,
            "throttled: replica lag 1.4 s > 1 s",
        ),
        (
            "23:41:44",
            Level::Info,
            "throttle released: replica lag 0.2 s",
        ),
        (
            "23:42:10",
            Level::Error,
            "batch 212 failed (connection reset); retrying",
        ),
    ] {
        app.push_log(LogLine {
            at: at.to_string(),
            level,
            text: text.to_string(),
        });
    }
    app
}
