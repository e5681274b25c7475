//! A running backfill on a real PostgreSQL, steered live: pause, resume, new settings and
//! stop through `BackfillControl` take effect within one batch; the throttle engages on
//! real replica lag and on a real lock waiter, names why, and lets go after; adaptive
//! batches settle near their target duration on wide and on narrow rows.

mod common;
mod engine_support;

use std::time::Duration;

use common::until;
use engine_support::{backfill, engine, plan, quick_options};
use sqlx::{Connection, Executor, PgPool};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;
use zdm::engine::pacing::PacingSettings;
use zdm::engine::throttle::{Throttle, ThrottleSettings};
use zdm::engine::{BackfillSettings, Engine, EngineOptions, Error, Event, Events, Outcome};
use zdm::localpg::LocalPg;
use zdm::monitor::{Monitor, MonitorOptions};
use zdm::protocol::RunState;

/// A table of `rows` rows; `width` bytes of padding make the rows wide.
async fn table(pool: &PgPool, rows: i64, width: i32) {
    sqlx::raw_sql(&format!(
        "CREATE TABLE items (id bigint PRIMARY KEY, qty integer NOT NULL, pad text, \
                             touched integer NOT NULL DEFAULT 0, qty2 integer);
         INSERT INTO items (id, qty, pad) \
           SELECT g, g % 97, repeat('x', {width}) FROM generate_series(1, {rows}) AS g;
         ANALYZE items;"
    ))
    .execute(pool)
    .await
    .expect("items");
}

fn items_plan() -> zdm::plan::Plan {
    plan(
        "0001_items_qty2",
        vec![backfill(
            "\"public\".\"items\"",
            &["id"],
            &[("touched", "touched + 1"), ("qty2", "qty * 2")],
            None,
        )],
    )
}

fn adaptive(pacing: PacingSettings) -> EngineOptions {
    EngineOptions {
        batch_size: None,
        // One worker: these tests are about the pacing and steering of each batch
        // (tests/backfill_workers.rs runs several).
        backfill: BackfillSettings {
            pacing,
            throttle: ThrottleSettings::default(),
            workers: Some(1),
            ..BackfillSettings::default()
        },
        ..quick_options()
    }
}

/// A run on its own task: what it returns, and the engine to close.
type Running = JoinHandle<(Result<Outcome, Error>, Engine)>;

/// Starts `engine.start` on its own task with its events on a channel.
fn run(mut engine: Engine) -> (Running, UnboundedReceiver<Event>) {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    engine.set_events(Events::to(sender));
    let task = tokio::spawn(async move {
        let outcome = engine.start(&items_plan(), "sum").await;
        // Closes the channel: the event stream ends with the run.
        engine.set_events(Events::none());
        (outcome, engine)
    });
    (task, receiver)
}

/// Keys per committed batch, from consecutive events.
fn batches(events: &[Event]) -> Vec<(i64, Duration)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::BatchDone(batch) => Some((batch.rows_done as i64, batch.took)),
            _ => None,
        })
        .collect()
}

/// Every row updated exactly once, with the right value.
async fn assert_every_row_once(pool: &PgPool, rows: i64) {
    let (right, wrong): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE touched = 1 AND qty2 = qty * 2), \
                count(*) FILTER (WHERE touched <> 1 OR qty2 IS DISTINCT FROM qty * 2) FROM items",
    )
    .fetch_one(pool)
    .await
    .expect("rows");
    assert_eq!((right, wrong), (rows, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_set_and_stop_take_effect_within_one_batch() {
    let pg = common::primary();
    let pool = common::database(&pg, "live_control").await;
    table(&pool, 30_000, 10).await;
    // A rows/s ceiling keeps the run going long enough to steer it.
    let engine = engine(
        &pg,
        "live_control",
        adaptive(PacingSettings {
            max_rows_per_second: Some(4000.0),
            ..PacingSettings::default()
        }),
    )
    .await;
    let control = engine.control();
    let (task, mut events) = run(engine);
    until(
        &mut events,
        Duration::from_secs(20),
        "three batches",
        |e| matches!(e, Event::BatchDone(b) if b.batch >= 3),
    )
    .await;

    // Pause: at most the batch in flight commits, then nothing until resumed.
    control.pause("test operator");
    let seen = until(&mut events, Duration::from_secs(10), "the pause", |e| {
        matches!(e, Event::Paused { .. })
    })
    .await;
    assert!(batches(&seen).len() <= 1, "{seen:#?}");
    let Some(Event::Paused { reason: by }) = seen.last() else {
        unreachable!()
    };
    assert_eq!(by, "test operator");
    let paused_at: i64 =
        sqlx::query_scalar("SELECT sum(rows_updated)::bigint FROM zdm.backfill_ranges")
            .fetch_one(&pool)
            .await
            .expect("checkpoint");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let still: i64 =
        sqlx::query_scalar("SELECT sum(rows_updated)::bigint FROM zdm.backfill_ranges")
            .fetch_one(&pool)
            .await
            .expect("checkpoint");
    assert_eq!(still, paused_at, "no batch while paused");
    // Progress keeps coming while paused, and counts the time paused.
    until(
        &mut events,
        Duration::from_secs(5),
        "paused progress",
        |e| {
            matches!(e, Event::Progress(p)
            if p.state == RunState::Paused && p.time_paused >= Duration::from_secs(1))
        },
    )
    .await;

    // New limits and resume: the very next batch obeys them.
    control.update(|s| s.pacing.max_rows = 25);
    control.resume();
    let seen = until(
        &mut events,
        Duration::from_secs(10),
        "a batch after resume",
        |e| matches!(e, Event::BatchDone(_)),
    )
    .await;
    assert!(
        seen.iter().any(|e| matches!(e, Event::Resumed { .. })),
        "{seen:#?}"
    );
    let Some(Event::BatchDone(batch)) = seen.last() else {
        unreachable!()
    };
    assert_eq!(
        batch.rows_done as i64,
        paused_at + 25,
        "the first batch after resume has 25 keys"
    );

    // A manual throttle holds it and is the reason shown.
    control.throttle("ctl throttle");
    let seen = until(
        &mut events,
        Duration::from_secs(10),
        "the manual throttle",
        |e| matches!(e, Event::ThrottleOn { .. }),
    )
    .await;
    assert!(batches(&seen).len() <= 1, "{seen:#?}");
    assert!(matches!(seen.last(), Some(Event::ThrottleOn { reason })
        if reason == "throttled by hand (ctl throttle)"));
    control.clear_throttle();
    until(&mut events, Duration::from_secs(10), "the release", |e| {
        matches!(e, Event::ThrottleOff { .. })
    })
    .await;

    // Stop: the run ends after its batch, the checkpoint holds, a rerun finishes.
    control.stop("test stop");
    let (outcome, engine) = task.await.expect("join");
    let error = outcome.expect_err("stopped");
    assert!(matches!(error, Error::Stopped { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("Run the same command again to resume"),
        "{error}"
    );
    engine.close().await.expect("close");
    let status: String = sqlx::query_scalar("SELECT status FROM zdm.migrations")
        .fetch_one(&pool)
        .await
        .expect("status");
    assert_eq!(status, "backfilling", "a stop is not a failure");
    let mut engine =
        engine_support::engine(&pg, "live_control", adaptive(PacingSettings::default())).await;
    engine.start(&items_plan(), "sum").await.expect("resumes");
    engine.close().await.expect("close");
    assert_every_row_once(&pool, 30_000).await;
}

/// Throttle settings with every input off, then `change`d.
fn only(change: impl FnOnce(&mut ThrottleSettings)) -> ThrottleSettings {
    let mut settings = ThrottleSettings {
        max_replica_lag: None,
        max_lock_waiters: None,
        max_active_sessions_factor: None,
        max_host_cpu_percent: None,
        max_canary_slowdown: None,
        ..ThrottleSettings::default()
    };
    change(&mut settings);
    settings
}

fn fast_monitor(pg: &LocalPg, database: &str) -> Monitor {
    let mut options = MonitorOptions::new(pg.primary().connect_options(database));
    options.interval = Duration::from_millis(300);
    options.target_tables = vec!["public.items".to_string()];
    Monitor::start(options)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_throttle_holds_on_real_replica_lag_and_lets_go_after() {
    let pg = common::primary_and_replica().await;
    let pool = common::database(&pg, "live_lag").await;
    table(&pool, 100_000, 10).await;
    let monitor = fast_monitor(&pg, "live_lag");
    let settings = only(|s| s.max_replica_lag = Some(Duration::from_secs(1)));
    let mut engine = engine(
        &pg,
        "live_lag",
        adaptive(PacingSettings {
            max_rows_per_second: Some(3000.0),
            ..PacingSettings::default()
        }),
    )
    .await;
    engine.set_throttle(Throttle::new(settings, monitor.subscribe(), None, false));
    let control = engine.control();
    let (task, mut events) = run(engine);
    until(
        &mut events,
        Duration::from_secs(20),
        "batches",
        |e| matches!(e, Event::BatchDone(b) if b.batch >= 3),
    )
    .await;

    let mut replica = pg
        .replica()
        .expect("replica")
        .connect("postgres")
        .await
        .expect("replica");
    replica
        .execute("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause replay");
    let seen = until(
        &mut events,
        Duration::from_secs(30),
        "a lag throttle",
        |e| matches!(e, Event::ThrottleOn { .. }),
    )
    .await;
    let Some(Event::ThrottleOn { reason }) = seen.last() else {
        unreachable!()
    };
    assert!(reason.starts_with("replica lag "), "{reason}");
    assert!(reason.contains("above max 1.0 s"), "{reason}");
    // While throttled, no batch commits.
    let held: i64 = sqlx::query_scalar("SELECT sum(batches)::bigint FROM zdm.backfill_ranges")
        .fetch_one(&pool)
        .await
        .expect("checkpoint");
    let seen = until(
        &mut events,
        Duration::from_secs(5),
        "throttled progress",
        |e| matches!(e, Event::Progress(p) if p.state == RunState::Throttled),
    )
    .await;
    assert!(batches(&seen).is_empty(), "{seen:#?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still: i64 = sqlx::query_scalar("SELECT sum(batches)::bigint FROM zdm.backfill_ranges")
        .fetch_one(&pool)
        .await
        .expect("checkpoint");
    assert_eq!(still, held);

    replica
        .execute("SELECT pg_wal_replay_resume()")
        .await
        .expect("resume replay");
    let seen = until(&mut events, Duration::from_secs(60), "the release", |e| {
        matches!(e, Event::ThrottleOff { .. })
    })
    .await;
    assert!(
        batches(&seen).is_empty(),
        "nothing ran before the release: {seen:#?}"
    );
    until(
        &mut events,
        Duration::from_secs(10),
        "a batch after the release",
        |e| matches!(e, Event::BatchDone(_)),
    )
    .await;
    control.stop("test done");
    let (outcome, engine) = task.await.expect("join");
    assert!(matches!(outcome, Err(Error::Stopped { .. })));
    engine.close().await.expect("close");
    monitor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_throttle_holds_while_a_session_waits_for_a_lock_on_the_table() {
    let pg = common::primary();
    let pool = common::database(&pg, "live_waiter").await;
    table(&pool, 100_000, 10).await;
    let monitor = fast_monitor(&pg, "live_waiter");
    let settings = only(|s| s.max_lock_waiters = Some(0));
    let mut engine = engine(
        &pg,
        "live_waiter",
        adaptive(PacingSettings {
            max_rows_per_second: Some(3000.0),
            ..PacingSettings::default()
        }),
    )
    .await;
    engine.set_throttle(Throttle::new(settings, monitor.subscribe(), None, false));
    let control = engine.control();
    let (task, mut events) = run(engine);
    until(
        &mut events,
        Duration::from_secs(20),
        "batches",
        |e| matches!(e, Event::BatchDone(b) if b.batch >= 3),
    )
    .await;

    // Two maintenance sessions: the first holds SHARE UPDATE EXCLUSIVE (which the
    // backfill's ROW EXCLUSIVE does not conflict with), the second queues behind it.
    let options = pg.primary().connect_options("live_waiter");
    let mut holder = sqlx::PgConnection::connect_with(&options)
        .await
        .expect("holder");
    holder.execute("BEGIN").await.expect("begin");
    holder
        .execute("LOCK TABLE items IN SHARE UPDATE EXCLUSIVE MODE")
        .await
        .expect("lock");
    let waiter = tokio::spawn(async move {
        let mut conn = sqlx::PgConnection::connect_with(&options)
            .await
            .expect("waiter");
        conn.execute("BEGIN; LOCK TABLE items IN SHARE UPDATE EXCLUSIVE MODE; COMMIT")
            .await
            .expect("the waiter gets its lock in the end");
    });
    let seen = until(
        &mut events,
        Duration::from_secs(20),
        "a waiter throttle",
        |e| matches!(e, Event::ThrottleOn { .. }),
    )
    .await;
    let Some(Event::ThrottleOn { reason }) = seen.last() else {
        unreachable!()
    };
    assert_eq!(
        reason,
        "1 sessions wait for a lock on the target table (max 0)"
    );

    holder.execute("COMMIT").await.expect("commit");
    waiter.await.expect("waiter");
    let seen = until(&mut events, Duration::from_secs(20), "the release", |e| {
        matches!(e, Event::ThrottleOff { .. })
    })
    .await;
    assert!(batches(&seen).is_empty(), "{seen:#?}");
    until(
        &mut events,
        Duration::from_secs(10),
        "a batch after the release",
        |e| matches!(e, Event::BatchDone(_)),
    )
    .await;
    control.stop("test done");
    let (outcome, engine) = task.await.expect("join");
    assert!(matches!(outcome, Err(Error::Stopped { .. })));
    engine.close().await.expect("close");
    monitor.stop().await;
}

/// Runs a whole backfill with adaptive batches aimed at `target` and returns each batch's
/// (keys, duration).
async fn converge(
    pg: &LocalPg,
    database: &str,
    rows: i64,
    width: i32,
    target: Duration,
) -> Vec<(i64, Duration)> {
    let pool = common::database(pg, database).await;
    table(&pool, rows, width).await;
    let engine = engine(
        pg,
        database,
        adaptive(PacingSettings {
            target,
            ..PacingSettings::default()
        }),
    )
    .await;
    let (task, mut events) = run(engine);
    let mut all = Vec::new();
    while let Some(event) = events.recv().await {
        all.push(event);
    }
    let (outcome, _) = task.await.expect("join");
    outcome.expect("backfill finishes");
    assert_every_row_once(&pool, rows).await;
    let mut previous = 0;
    batches(&all)
        .into_iter()
        .map(|(rows, took)| {
            let keys = rows - previous;
            previous = rows;
            (keys, took)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_sizes_settle_near_the_target_on_wide_and_on_narrow_rows() {
    let pg = common::primary();
    let target = Duration::from_millis(50);
    let wide = converge(&pg, "converge_wide", 60_000, 1000, target).await;
    let narrow = converge(&pg, "converge_narrow", 400_000, 4, target).await;
    for (name, batches) in [("wide", &wide), ("narrow", &narrow)] {
        // Skip the ramp-up and the last (short) batch; judge the rest by its median.
        assert!(batches.len() > 15, "{name}: {batches:?}");
        let settled = &batches[batches.len() - 11..batches.len() - 1];
        let mut took: Vec<Duration> = settled.iter().map(|(_, t)| *t).collect();
        took.sort();
        let median = took[took.len() / 2];
        assert!(
            median >= target.mul_f64(0.3) && median <= target.mul_f64(2.0),
            "{name}: median batch {median:?} is not near the {target:?} target: {settled:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_level_pauses_until_an_operator_resumes() {
    let pg = common::primary();
    let pool = common::database(&pg, "live_critical").await;
    table(&pool, 100_000, 10).await;
    let monitor = fast_monitor(&pg, "live_critical");
    // Any waiter throttles; more than 1.5 (so two) is critical.
    let settings = only(|s| {
        s.max_lock_waiters = Some(0);
        s.critical_factor = Some(1.5);
    });
    let mut engine = engine(
        &pg,
        "live_critical",
        adaptive(PacingSettings {
            max_rows_per_second: Some(3000.0),
            ..PacingSettings::default()
        }),
    )
    .await;
    engine.set_throttle(Throttle::new(settings, monitor.subscribe(), None, false));
    let control = engine.control();
    let (task, mut events) = run(engine);
    until(
        &mut events,
        Duration::from_secs(20),
        "batches",
        |e| matches!(e, Event::BatchDone(b) if b.batch >= 3),
    )
    .await;

    let options = pg.primary().connect_options("live_critical");
    let mut holder = sqlx::PgConnection::connect_with(&options)
        .await
        .expect("holder");
    holder.execute("BEGIN").await.expect("begin");
    holder
        .execute("LOCK TABLE items IN SHARE UPDATE EXCLUSIVE MODE")
        .await
        .expect("lock");
    let mut waiters = Vec::new();
    for _ in 0..2 {
        let options = options.clone();
        waiters.push(tokio::spawn(async move {
            let mut conn = sqlx::PgConnection::connect_with(&options)
                .await
                .expect("waiter");
            conn.execute("BEGIN; LOCK TABLE items IN SHARE UPDATE EXCLUSIVE MODE; COMMIT")
                .await
                .expect("the waiter gets its lock in the end");
        }));
    }
    let seen = until(
        &mut events,
        Duration::from_secs(20),
        "the critical level",
        |e| matches!(e, Event::CriticalLevel { .. }),
    )
    .await;
    let Some(Event::CriticalLevel { reason, .. }) = seen.last() else {
        unreachable!()
    };
    assert_eq!(reason, "lock waiters 2 is above its critical level 2");
    let seen = until(&mut events, Duration::from_secs(5), "the pause", |e| {
        matches!(e, Event::Paused { .. })
    })
    .await;
    assert!(
        matches!(seen.last(), Some(Event::Paused { reason: by }) if by.starts_with("critical level: "))
    );
    assert!(control.paused_by().is_some());

    // The waiters go away; the backfill stays paused until someone resumes it.
    holder.execute("COMMIT").await.expect("commit");
    for waiter in waiters {
        waiter.await.expect("waiter");
    }
    let held: i64 = sqlx::query_scalar("SELECT sum(batches)::bigint FROM zdm.backfill_ranges")
        .fetch_one(&pool)
        .await
        .expect("checkpoint");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still: i64 = sqlx::query_scalar("SELECT sum(batches)::bigint FROM zdm.backfill_ranges")
        .fetch_one(&pool)
        .await
        .expect("checkpoint");
    assert_eq!(still, held, "a critical pause waits for the operator");
    control.resume();
    until(
        &mut events,
        Duration::from_secs(20),
        "a batch after resume",
        |e| matches!(e, Event::BatchDone(_)),
    )
    .await;
    control.stop("test done");
    let (outcome, engine) = task.await.expect("join");
    assert!(matches!(outcome, Err(Error::Stopped { .. })));
    engine.close().await.expect("close");
    monitor.stop().await;
}
