//! Low-traffic windows on a real backfill, with the time of day injected (never waited
//! for): a window that closes mid-backfill holds the next batch with the reason and the
//! next opening, the backfill goes on by itself when the window opens again, and
//! `window=off` (as `zdm ctl set` sends it) lets it run outside the windows.

mod common;
mod engine_support;

use std::time::Duration;

use common::until;
use engine_support::{backfill, engine, plan, quick_options};
use zdm::engine::pacing::PacingSettings;
use zdm::engine::throttle::{Throttle, ThrottleSettings};
use zdm::engine::{BackfillSettings, EngineOptions, Error, Event, Events};
use zdm::protocol::RunState;
use zdm::schedule::{parse_windows, Clock};
use zdm::settings::Setting;

fn batch_count(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::BatchDone(_)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_that_closes_mid_backfill_holds_and_its_opening_resumes_it() {
    let pg = common::primary();
    let pool = common::database(&pg, "schedule_window").await;
    let rows = 20_000;
    sqlx::raw_sql(&format!(
        "CREATE TABLE items (id bigint PRIMARY KEY, qty integer NOT NULL, qty2 integer);
         INSERT INTO items (id, qty) SELECT g, g % 97 FROM generate_series(1, {rows}) AS g;
         ANALYZE items;"
    ))
    .execute(&pool)
    .await
    .expect("items");

    // Only the windows throttle: no metric input (the host is busy with other builds).
    let settings = ThrottleSettings {
        max_replica_lag: None,
        max_lock_waiters: None,
        max_active_sessions_factor: None,
        max_host_cpu_percent: None,
        max_canary_slowdown: None,
        windows: parse_windows("Mon-Fri 01:00-05:00; Sat,Sun 00:00-08:00").expect("windows"),
        tz: Some("Europe/Zurich".to_string()),
        ..ThrottleSettings::default()
    };
    let options = EngineOptions {
        batch_size: None,
        backfill: BackfillSettings {
            pacing: PacingSettings {
                max_rows_per_second: Some(2500.0),
                ..PacingSettings::default()
            },
            throttle: settings.clone(),
            workers: Some(1),
            ..BackfillSettings::default()
        },
        ..quick_options()
    };
    let mut engine = engine(&pg, "schedule_window", options).await;
    // Tuesday 1 December 2026, 04:59 in Zurich: one minute of the window left.
    let clock = Clock::manual(common::zurich("2026-12-01T04:59:00"));
    let mut throttle = Throttle::without_monitor(settings, "no monitor in this test".to_string());
    throttle.set_clock(clock.clone());
    engine.set_throttle(throttle);
    let control = engine.control();
    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
    engine.set_events(Events::to(sender));
    let the_plan = plan(
        "0001_items_qty2",
        vec![backfill(
            "\"public\".\"items\"",
            &["id"],
            &[("qty2", "qty * 2")],
            None,
        )],
    );
    let task = tokio::spawn(async move {
        let outcome = engine.start(&the_plan, "sum").await;
        engine.set_events(Events::none());
        (outcome, engine)
    });

    until(
        &mut events,
        Duration::from_secs(30),
        "batches inside the window",
        |e| matches!(e, Event::BatchDone(b) if b.batch >= 3),
    )
    .await;

    // The window closes while the backfill runs: at most the batch in flight commits.
    clock.set(common::zurich("2026-12-01T05:00:30"));
    let seen = until(&mut events, Duration::from_secs(10), "the hold", |e| {
        matches!(e, Event::ThrottleOn { .. })
    })
    .await;
    assert!(batch_count(&seen) <= 1, "{seen:#?}");
    let Some(Event::ThrottleOn { reason }) = seen.last() else {
        unreachable!()
    };
    assert_eq!(
        reason,
        "outside the low-traffic window; next opens Wed 01:00 (in 20 h)"
    );
    let held = common::rows_checkpointed(&pool).await;
    // Progress keeps coming, throttled, and no batch commits.
    let seen = until(
        &mut events,
        Duration::from_secs(5),
        "throttled progress",
        |e| matches!(e, Event::Progress(p) if p.state == RunState::Throttled),
    )
    .await;
    assert_eq!(batch_count(&seen), 0, "{seen:#?}");
    // Time passes (by hand): the countdown follows.
    clock.set(common::zurich("2026-12-01T21:48:00"));
    until(&mut events, Duration::from_secs(10), "the countdown", |e| {
        matches!(e, Event::ThrottleOn { reason }
            if reason == "outside the low-traffic window; next opens Wed 01:00 (in 3 h 12 min)")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        common::rows_checkpointed(&pool).await,
        held,
        "no batch outside the window"
    );

    // The next window opens: the backfill goes on by itself.
    clock.set(common::zurich("2026-12-02T01:00:00"));
    let seen = until(&mut events, Duration::from_secs(10), "the release", |e| {
        matches!(e, Event::ThrottleOff { reason, .. } if reason.starts_with("the low-traffic window no longer holds"))
    })
    .await;
    assert_eq!(batch_count(&seen), 0, "nothing ran before the release");
    until(
        &mut events,
        Duration::from_secs(10),
        "a batch in the new window",
        |e| matches!(e, Event::BatchDone(_)),
    )
    .await;
    assert!(common::rows_checkpointed(&pool).await > held);

    // Closed again; then the operator decides to run anyway (`zdm ctl set window=off`).
    clock.set(common::zurich("2026-12-02T06:00:00"));
    until(&mut events, Duration::from_secs(10), "the second hold", |e| {
        matches!(e, Event::ThrottleOn { reason } if reason.starts_with("outside the low-traffic window"))
    })
    .await;
    let off = Setting::parse("window=off").expect("a live setting");
    control.update(|s| s.apply(off).expect("applies"));
    until(
        &mut events,
        Duration::from_secs(10),
        "the release by hand",
        |e| matches!(e, Event::ThrottleOff { .. }),
    )
    .await;

    let (outcome, engine) = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the backfill finishes outside the window once the windows are off")
        .expect("join");
    if let Err(error) = &outcome {
        assert!(!matches!(error, Error::Stopped { .. }), "{error}");
        panic!("{error}");
    }
    engine.close().await.expect("close");
    let (right, wrong): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE qty2 = qty * 2), \
                count(*) FILTER (WHERE qty2 IS DISTINCT FROM qty * 2) FROM items",
    )
    .fetch_one(&pool)
    .await
    .expect("rows");
    assert_eq!((right, wrong), (rows, 0));
}
