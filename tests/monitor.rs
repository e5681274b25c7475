//! The monitor against real PostgreSQL: least privilege, replication lag, lock pairs,
//! lost connections, stopped and frozen servers, sampler overhead, and `zdm top`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};
use tokio::sync::watch;
use zdm::localpg::LocalPg;
use zdm::monitor::{Metrics, Monitor, MonitorOptions};

/// Monitor options for tests: fast samples and short timeouts.
fn fast_options(connect: PgConnectOptions) -> MonitorOptions {
    let mut options = MonitorOptions::new(connect);
    options.interval = Duration::from_millis(200);
    options.query_timeout = Duration::from_millis(300);
    options.answer_grace = Duration::from_millis(300);
    options.connect_timeout = Duration::from_secs(1);
    options
}

/// Waits (at most `timeout`) for a snapshot satisfying `wanted`; panics with the last one.
async fn wait_for(
    samples: &mut watch::Receiver<Arc<Metrics>>,
    timeout: Duration,
    what: &str,
    wanted: impl Fn(&Metrics) -> bool,
) -> Arc<Metrics> {
    let deadline = Instant::now() + timeout;
    loop {
        let latest = samples.borrow_and_update().clone();
        if latest.sequence > 0 && wanted(&latest) {
            return latest;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || tokio::time::timeout(left, samples.changed()).await.is_err() {
            panic!("no sample showed {what} within {timeout:?}; the last was {latest:#?}");
        }
    }
}

/// A table with a primary key and some rows in database `db`.
async fn orders_table(pg: &LocalPg, db: &str) -> sqlx::PgPool {
    let pool = common::database(pg, db).await;
    pool.execute(
        "CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text);
         INSERT INTO orders (note) SELECT 'n' || g FROM generate_series(1, 1000) g;",
    )
    .await
    .expect("create orders");
    pool
}

/// One connection to `db` with the given application_name.
async fn session(pg: &LocalPg, db: &str, application_name: &str) -> PgConnection {
    PgConnection::connect_with(
        &pg.primary()
            .connect_options(db)
            .application_name(application_name),
    )
    .await
    .expect("connect")
}

async fn backend_pid(conn: &mut PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .expect("pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_is_read_with_only_pg_monitor_and_select_on_the_target() {
    let pg = common::primary();
    let pool = orders_table(&pg, "least").await;
    pool.execute(
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
         CREATE ROLE watcher LOGIN IN ROLE pg_monitor;
         GRANT SELECT ON orders TO watcher;",
    )
    .await
    .expect("role");
    let mut options = fast_options(pg.primary().connect_options("least").username("watcher"));
    options.target_tables = vec!["orders".to_string()];
    let monitor = Monitor::start(options);
    let mut samples = monitor.subscribe();

    // The rate and statement readings need a second sample; wait for both to be current.
    let first = wait_for(&mut samples, Duration::from_secs(10), "fresh rates", |m| {
        m.throughput.is_fresh() && m.statements.is_fresh()
    })
    .await;
    for (name, problem) in [
        ("replication", &first.replication.problem),
        ("locks", &first.locks.problem),
        ("sessions", &first.sessions.problem),
        ("tables", &first.tables.problem),
        ("canary", &first.canary.problem),
        ("progress", &first.progress.problem),
    ] {
        assert_eq!(problem, &None, "{name} should read fine as watcher");
    }
    assert!(first.sampler.connected);
    assert_eq!(first.max_replay_lag_bytes(), Some(0), "no replicas");
    let canary = first.canary.current().expect("canary");
    assert_eq!(canary.description, "primary-key lookup on public.orders");
    let tables = first.tables.current().expect("tables");
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].table.to_string(), "public.orders");
    let host = first
        .host
        .current()
        .expect("a local server's host is measured");
    assert!(host.memory_total_bytes > 0);

    // An idle database shows (almost) no commits: the sampler leaves out its own
    // dozen statements per sample.
    let idle = wait_for(
        &mut samples,
        Duration::from_secs(5),
        "a later sample",
        |m| m.sequence >= first.sequence + 2 && m.throughput.is_fresh(),
    )
    .await;
    let idle_commits = idle.throughput.current().expect("rates").commits_per_second;
    let own_per_second = f64::from(idle.sampler.queries) / 0.2;
    assert!(
        idle_commits < own_per_second / 4.0,
        "idle commits/s {idle_commits} vs the sampler's own {own_per_second}/s"
    );

    // A replication slot nobody consumes retains the WAL written after it.
    pool.execute("SELECT pg_create_physical_replication_slot('zdm_test_slot', true)")
        .await
        .expect("slot");
    pool.execute("INSERT INTO orders (note) SELECT repeat('w', 500) FROM generate_series(1, 2000)")
        .await
        .expect("write WAL");
    let retained = wait_for(
        &mut samples,
        Duration::from_secs(5),
        "WAL retained by the slot",
        |m| m.max_slot_retained_bytes().is_some_and(|b| b > 1_000_000),
    )
    .await;
    let slot = &retained.replication.current().expect("replication").slots[0];
    assert_eq!(
        (slot.name.as_str(), slot.slot_type.as_str()),
        ("zdm_test_slot", "physical")
    );
    assert!(!slot.active);
    assert_eq!(slot.wal_status.as_deref(), Some("reserved"));

    // Work done between two samples shows as rates and as a statement's mean time.
    let writer = pool.clone();
    let work = tokio::spawn(async move {
        for _ in 0..40 {
            sqlx::query(
                "INSERT INTO orders (note) SELECT 'burst' FROM generate_series(1, 50) AS burst(g)",
            )
            .execute(&writer)
            .await
            .expect("insert");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    // pg_stat_statements counts each statement at once...
    wait_for(
        &mut samples,
        Duration::from_secs(10),
        "the burst's statement",
        |m| {
            m.statements.current().is_some_and(|s| {
                s.iter()
                    .any(|s| s.query.contains("AS burst(g)") && s.calls > 0 && s.mean_ms > 0.0)
            })
        },
    )
    .await;
    // ...while a backend publishes its row and commit counts at most once a second, and
    // up to 10 s later when it goes idle right after a burst.
    let busy = wait_for(
        &mut samples,
        Duration::from_secs(20),
        "the burst's rows",
        |m| {
            m.throughput
                .current()
                .is_some_and(|t| t.inserted_per_second > 100.0)
        },
    )
    .await;
    assert!(busy.throughput.current().expect("rates").commits_per_second >= 1.0);
    work.await.expect("work");
    monitor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_lag_grows_while_replay_is_paused_and_recovers_after_resume() {
    let pg = common::primary_and_replica().await;
    let pool = orders_table(&pg, "lag").await;
    let monitor = Monitor::start(fast_options(pg.primary().connect_options("lag")));
    let mut samples = monitor.subscribe();
    wait_for(
        &mut samples,
        Duration::from_secs(10),
        "a streaming replica",
        |m| {
            m.replication
                .current()
                .is_some_and(|r| r.replicas.iter().any(|r| r.state == "streaming"))
        },
    )
    .await;

    let mut replica = pg
        .replica()
        .expect("replica")
        .connect("postgres")
        .await
        .expect("connect to the replica");
    replica
        .execute("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause replay");
    let writer = pool.clone();
    let (stop_writing, mut stopped) = watch::channel(false);
    let writes = tokio::spawn(async move {
        while !*stopped.borrow_and_update() {
            sqlx::query(
                "INSERT INTO orders (note) SELECT repeat('x', 200) FROM generate_series(1, 200)",
            )
            .execute(&writer)
            .await
            .expect("insert");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    let early = wait_for(
        &mut samples,
        Duration::from_secs(10),
        "some replay lag",
        |m| m.max_replay_lag_bytes().is_some_and(|b| b > 0),
    )
    .await;
    let early_bytes = early.max_replay_lag_bytes().expect("bytes");
    let late = wait_for(
        &mut samples,
        Duration::from_secs(20),
        "lag growing past 2 s",
        |m| {
            m.max_replay_lag_seconds().is_some_and(|s| s > 2.0)
                && m.max_replay_lag_bytes().is_some_and(|b| b > early_bytes)
        },
    )
    .await;
    let replica_row = &late.replication.current().expect("replication").replicas[0];
    assert_eq!(replica_row.state, "streaming");
    // Replay is paused, not receipt: the replica keeps writing and flushing WAL.
    assert!(
        replica_row.replay_lag_bytes > replica_row.flush_lag_bytes,
        "{replica_row:?}"
    );
    let peak_seconds = late.max_replay_lag_seconds().expect("seconds");

    replica
        .execute("SELECT pg_wal_replay_resume()")
        .await
        .expect("resume replay");
    stop_writing.send_replace(true);
    writes.await.expect("writes");
    let recovered = wait_for(
        &mut samples,
        Duration::from_secs(30),
        "the replica caught up",
        |m| m.max_replay_lag_bytes() == Some(0),
    )
    .await;
    assert!(
        recovered.max_replay_lag_seconds().expect("seconds") < peak_seconds,
        "lag in seconds falls back once replay resumes"
    );
    monitor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_holder_and_its_waiter_show_as_a_pair() {
    let pg = common::primary();
    let _pool = orders_table(&pg, "locks").await;
    let mut options = fast_options(pg.primary().connect_options("locks"));
    options.target_tables = vec!["orders".to_string()];
    let monitor = Monitor::start(options);
    let mut samples = monitor.subscribe();

    // zdm's DDL session holds ACCESS EXCLUSIVE; the application's read waits behind it.
    let mut holder = session(&pg, "locks", "zdm-engine").await;
    let holder_pid = backend_pid(&mut holder).await;
    holder
        .execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let mut waiter = session(&pg, "locks", "shop-app").await;
    let waiter_pid = backend_pid(&mut waiter).await;
    let read = tokio::spawn(async move {
        sqlx::query("SELECT count(*) FROM orders")
            .execute(&mut waiter)
            .await
            .expect("read after the lock is gone");
        waiter
    });

    let seen = wait_for(
        &mut samples,
        Duration::from_secs(10),
        "the waiter for over 1 s",
        |m| {
            m.locks.current().is_some_and(|l| {
                l.waits
                    .iter()
                    .any(|w| w.waiter.pid == waiter_pid && w.wait_seconds > 1.0)
            })
        },
    )
    .await;
    let locks = seen.locks.current().expect("locks");
    assert_eq!(locks.waits.len(), 1, "{locks:#?}");
    let wait = &locks.waits[0];
    assert_eq!(wait.blocker.pid, holder_pid);
    assert_eq!(wait.lock_type, "relation");
    assert_eq!(
        wait.relation.as_ref().map(|r| r.to_string()).as_deref(),
        Some("public.orders")
    );
    assert_eq!(wait.waiter_mode, "AccessShareLock");
    assert_eq!(wait.blocker_mode.as_deref(), Some("AccessExclusiveLock"));
    assert!(wait.blocker_granted);
    assert!(wait.blocker.is_zdm && !wait.waiter.is_zdm);
    assert!(wait.waiter.query.contains("SELECT count(*) FROM orders"));
    assert_eq!(locks.waiters, 1);
    assert!(locks.longest_wait_seconds > 1.0);
    assert_eq!(seen.lock_waiters_on("orders"), Some(1));
    assert_eq!(seen.lock_waiters_on("public.orders"), Some(1));
    assert_eq!(seen.lock_waiters_on("customers"), Some(0));
    assert_eq!(seen.waits_blocked_by_zdm().len(), 1);
    assert!(seen.sessions.current().expect("sessions").waiting >= 1);
    // The canary queues behind the lock too, and says why it has no fresh latency.
    assert!(
        seen.canary
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("lock timeout")),
        "{:?}",
        seen.canary
    );

    holder.execute("COMMIT").await.expect("release");
    let mut waiter = read.await.expect("read");
    wait_for(
        &mut samples,
        Duration::from_secs(10),
        "no more waits",
        |m| m.locks.current().is_some_and(|l| l.waits.is_empty()) && m.canary.is_fresh(),
    )
    .await;

    // A row lock: the second UPDATE waits on the first one's transaction id, and the
    // monitor still names the table.
    holder
        .execute("BEGIN; UPDATE orders SET note = 'held' WHERE id = 1")
        .await
        .expect("hold a row");
    let update = tokio::spawn(async move {
        sqlx::query("UPDATE orders SET note = 'waited' WHERE id = 1")
            .execute(&mut waiter)
            .await
            .expect("update after the row is free");
    });
    let seen = wait_for(
        &mut samples,
        Duration::from_secs(10),
        "a row-lock wait",
        |m| m.locks.current().is_some_and(|l| !l.waits.is_empty()),
    )
    .await;
    let wait = &seen.locks.current().expect("locks").waits[0];
    assert_eq!(wait.lock_type, "transactionid");
    assert_eq!(wait.waiter_mode, "ShareLock");
    assert_eq!(wait.blocker_mode.as_deref(), Some("ExclusiveLock"));
    assert_eq!(
        (wait.waiter.pid, wait.blocker.pid),
        (waiter_pid, holder_pid)
    );
    assert_eq!(
        wait.relation.as_ref().map(|r| r.to_string()).as_deref(),
        Some("public.orders")
    );
    holder.execute("COMMIT").await.expect("release the row");
    update.await.expect("update");
    monitor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_query_marks_only_its_own_metric_stale() {
    let pg = common::primary();
    let pool = common::database(&pg, "canary").await;
    pool.close().await;
    let mut options = fast_options(pg.primary().connect_options("canary"));
    // Longer than the 300 ms statement timeout: the server cancels it every time.
    options.canary_query = Some("SELECT pg_sleep(1)".to_string());
    let monitor = Monitor::start(options);
    let mut samples = monitor.subscribe();
    let first = wait_for(
        &mut samples,
        Duration::from_secs(10),
        "a connected sample",
        |m| m.sampler.connected,
    )
    .await;
    let seen = wait_for(
        &mut samples,
        Duration::from_secs(10),
        "three more samples",
        |m| m.sequence >= first.sequence + 3,
    )
    .await;
    assert_eq!(
        seen.canary.problem.as_deref(),
        Some("canceling statement due to statement timeout (SQLSTATE 57014)")
    );
    assert!(
        seen.sampler.connected,
        "the connection survives a cancelled statement"
    );
    assert_eq!(
        seen.sampler.backend_pid, first.sampler.backend_pid,
        "no reconnection was needed"
    );
    for (name, fresh) in [
        ("replication", seen.replication.is_fresh()),
        ("locks", seen.locks.is_fresh()),
        ("sessions", seen.sessions.is_fresh()),
        ("throughput", seen.throughput.is_fresh()),
        ("progress", seen.progress.is_fresh()),
    ] {
        assert!(fresh, "{name} stays fresh while the canary fails");
    }
    // The cancelled canaries are the monitor's own rollbacks: not the application's.
    assert_eq!(
        seen.throughput
            .current()
            .expect("rates")
            .rollbacks_per_second,
        0.0
    );
    monitor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_build_waiting_for_writers_shows_in_progress_and_locks() {
    let pg = common::primary();
    let _pool = orders_table(&pg, "progress").await;
    let mut options = fast_options(pg.primary().connect_options("progress"));
    options.target_tables = vec!["orders".to_string()];
    options.long_transaction = Duration::from_secs(1);
    let monitor = Monitor::start(options);
    let mut samples = monitor.subscribe();

    // An application transaction that wrote to the table and stays open: CREATE INDEX
    // CONCURRENTLY must wait for it before building.
    let mut writer = session(&pg, "progress", "shop-app").await;
    let writer_pid = backend_pid(&mut writer).await;
    writer
        .execute("BEGIN; INSERT INTO orders (note) VALUES ('open')")
        .await
        .expect("open transaction");
    let mut builder = session(&pg, "progress", "zdm-engine").await;
    let builder_pid = backend_pid(&mut builder).await;
    let build = tokio::spawn(async move {
        builder
            .execute("CREATE INDEX CONCURRENTLY orders_note_idx ON orders (note)")
            .await
            .expect("index build");
    });

    let seen = wait_for(
        &mut samples,
        Duration::from_secs(10),
        "the waiting index build",
        |m| {
            m.progress.current().is_some_and(|p| {
                p.create_index
                    .iter()
                    .any(|i| i.phase.starts_with("waiting for writers"))
            }) && m
                .sessions
                .current()
                .is_some_and(|s| s.long_transactions.iter().any(|t| t.pid == writer_pid))
        },
    )
    .await;
    let progress = &seen.progress.current().expect("progress").create_index[0];
    assert_eq!(progress.pid, builder_pid);
    assert_eq!(progress.command, "CREATE INDEX CONCURRENTLY");
    assert_eq!(
        progress.table.as_ref().map(|t| t.to_string()).as_deref(),
        Some("public.orders")
    );
    let locks = seen.locks.current().expect("locks");
    let wait = locks
        .waits
        .iter()
        .find(|w| w.waiter.pid == builder_pid)
        .expect("the build waits on the writer");
    assert_eq!(wait.blocker.pid, writer_pid);
    assert_eq!(wait.lock_type, "virtualxid");
    assert!(wait.waiter.is_zdm && !wait.blocker.is_zdm);
    assert!(
        seen.waits_blocked_by_zdm().is_empty(),
        "zdm waits, it blocks nobody"
    );
    let sessions = seen.sessions.current().expect("sessions");
    assert!(sessions.idle_in_transaction >= 1);
    assert!(sessions
        .oldest_idle_in_transaction_seconds
        .is_some_and(|s| s > 1.0));

    writer.execute("COMMIT").await.expect("commit");
    build.await.expect("build");
    wait_for(
        &mut samples,
        Duration::from_secs(10),
        "the build finished",
        |m| {
            m.progress
                .current()
                .is_some_and(|p| p.create_index.is_empty())
                && m.locks.current().is_some_and(|l| l.waits.is_empty())
        },
    )
    .await;
    monitor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_goes_stale_with_its_reason_and_the_sampler_reconnects() {
    let pg = common::primary();
    let _pool = common::database(&pg, "killed").await;
    let mut options = fast_options(pg.primary().connect_options("killed"));
    // A long pause between samples: the kill lands while the connection is idle, so the
    // next sample's first query meets it and every reading goes stale.
    options.interval = Duration::from_secs(2);
    let monitor = Monitor::start(options);
    let mut samples = monitor.subscribe();
    let before = wait_for(
        &mut samples,
        Duration::from_secs(10),
        "a connected sample",
        |m| m.sampler.connected && m.locks.is_fresh(),
    )
    .await;
    let old_pid = before.sampler.backend_pid.expect("pid");

    let mut admin = pg.primary().connect("postgres").await.expect("admin");
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(old_pid)
        .fetch_one(&mut admin)
        .await
        .expect("terminate");
    assert!(terminated);

    let stale = wait_for(&mut samples, Duration::from_secs(10), "the loss", |m| {
        !m.sampler.connected
    })
    .await;
    let problem = stale.sampler.problem.clone().expect("a reason");
    assert!(
        problem.starts_with("connection lost: terminating connection due to administrator command"),
        "{problem}"
    );
    for (name, reading_problem) in [
        ("throughput", &stale.throughput.problem),
        ("replication", &stale.replication.problem),
        ("locks", &stale.locks.problem),
        ("sessions", &stale.sessions.problem),
        ("canary", &stale.canary.problem),
        ("progress", &stale.progress.problem),
    ] {
        assert_eq!(reading_problem.as_deref(), Some(problem.as_str()), "{name}");
    }
    assert!(stale.locks.value.is_some(), "the last good value is kept");
    assert_eq!(stale.locks.as_of, Some(before.taken_at));
    assert!(stale
        .alerts
        .iter()
        .any(|a| a.message.contains("the monitor cannot read the database")));

    let back = wait_for(
        &mut samples,
        Duration::from_secs(10),
        "a new connection",
        |m| m.sampler.connected && m.locks.is_fresh() && m.sessions.is_fresh(),
    )
    .await;
    assert_ne!(back.sampler.backend_pid, Some(old_pid));
    monitor.stop().await;
}

/// Runs `pg_ctl` on the primary as the servers' own user.
fn pg_ctl(pg: &LocalPg, args: &[&str]) {
    let data_dir = pg.primary().data_dir().to_path_buf();
    let log_file = pg.primary().log_file().to_path_buf();
    let status = pg
        .service_user()
        .command(&pg.binaries().tool("pg_ctl"), pg.root())
        .args(args)
        .arg("--pgdata")
        .arg(&data_dir)
        .arg("--log")
        .arg(&log_file)
        .args(["--wait", "--silent"])
        .stdin(std::process::Stdio::null())
        .status()
        .expect("run pg_ctl");
    assert!(status.success(), "pg_ctl {args:?}: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_goes_stale_and_the_sampler_recovers_when_it_is_back() {
    let pg = common::primary();
    let pool = common::database(&pg, "stopped").await;
    pool.close().await;
    let monitor = Monitor::start(fast_options(pg.primary().connect_options("stopped")));
    let mut samples = monitor.subscribe();
    wait_for(
        &mut samples,
        Duration::from_secs(10),
        "a connected sample",
        |m| m.sampler.connected && m.sessions.is_fresh(),
    )
    .await;

    let stopping = Instant::now();
    tokio::task::block_in_place(|| pg_ctl(&pg, &["stop", "--mode=fast"]));
    let down = wait_for(
        &mut samples,
        Duration::from_secs(10),
        "cannot connect",
        |m| {
            m.sampler
                .problem
                .as_deref()
                .is_some_and(|p| p.starts_with("cannot connect"))
        },
    )
    .await;
    let problem = down.sampler.problem.as_deref().expect("reason");
    assert!(problem.contains("refused"), "{problem}");
    assert!(!down.sessions.is_fresh());
    // Samples keep coming while the server is away: the sampler never blocks.
    let later = wait_for(&mut samples, Duration::from_secs(5), "more samples", |m| {
        m.sequence >= down.sequence + 3
    })
    .await;
    assert!(!later.sampler.connected);
    let stale_for = later.sessions.age_seconds(later.taken_at).expect("age");
    assert!(stale_for > 0.0);
    eprintln!("server down for {:?} so far", stopping.elapsed());

    tokio::task::block_in_place(|| pg_ctl(&pg, &["start"]));
    wait_for(
        &mut samples,
        Duration::from_secs(10),
        "fresh readings again",
        |m| m.sampler.connected && m.sessions.is_fresh() && m.locks.is_fresh(),
    )
    .await;
    monitor.stop().await;
}

/// The postmaster and every process it started (its backends and workers).
fn server_processes(postmaster: i32) -> Vec<Pid> {
    let mut pids = vec![Pid::from_raw(postmaster)];
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<i32>().ok());
        if parent == Some(postmaster) {
            pids.push(Pid::from_raw(pid));
        }
    }
    pids
}

/// Freezes a server with SIGSTOP; thaws it with SIGCONT when dropped (even on panic).
struct Frozen(Vec<Pid>);

impl Frozen {
    fn freeze(postmaster: i32) -> Self {
        let pids = server_processes(postmaster);
        for pid in &pids {
            let _ = kill(*pid, Signal::SIGSTOP);
        }
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = kill(*pid, Signal::SIGCONT);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_times_out_without_blocking_the_sampler_and_recovers() {
    let pg = common::primary();
    let pool = common::database(&pg, "frozen").await;
    pool.close().await;
    let mut options = fast_options(pg.primary().connect_options("frozen"));
    // Freeze between two samples, so that the next one's first query meets it.
    options.interval = Duration::from_secs(1);
    let monitor = Monitor::start(options);
    let mut samples = monitor.subscribe();
    let before = wait_for(
        &mut samples,
        Duration::from_secs(10),
        "a connected sample",
        |m| m.sampler.connected && m.sessions.is_fresh(),
    )
    .await;

    let frozen = Frozen::freeze(pg.primary().pid().expect("postmaster pid"));
    let hung = wait_for(&mut samples, Duration::from_secs(10), "no answer", |m| {
        m.sampler
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("did not answer within 600 ms"))
    })
    .await;
    assert!(hung.sequence > before.sequence);
    assert!(!hung.sessions.is_fresh());
    // Reconnecting to a frozen server times out too, and samples keep coming.
    let reconnecting = wait_for(
        &mut samples,
        Duration::from_secs(10),
        "a connect timeout",
        |m| m.sampler.problem.as_deref() == Some("cannot connect: no answer within 1000 ms"),
    )
    .await;
    assert!(reconnecting.sequence > hung.sequence);
    drop(frozen);

    wait_for(
        &mut samples,
        Duration::from_secs(15),
        "fresh readings after thawing",
        |m| m.sampler.connected && m.sessions.is_fresh() && m.locks.is_fresh(),
    )
    .await;
    monitor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampler_overhead_is_measured() {
    let pg = common::primary_and_replica().await;
    let pool = orders_table(&pg, "overhead").await;
    pool.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .expect("pg_stat_statements");
    let mut options = fast_options(pg.primary().connect_options("overhead"));
    options.target_tables = vec!["orders".to_string()];
    let monitor = Monitor::start(options);
    let mut samples = monitor.subscribe();
    let first = wait_for(
        &mut samples,
        Duration::from_secs(10),
        "a complete sample",
        |m| m.statements.is_fresh() && m.throughput.is_fresh(),
    )
    .await;
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(&pool)
        .await
        .expect("reset");
    let start_sequence = first.sequence + 1;
    let mut durations = Vec::new();
    let mut queries = Vec::new();
    let measured = 20;
    while durations.len() < measured {
        let m = wait_for(
            &mut samples,
            Duration::from_secs(10),
            "the next sample",
            |m| m.sequence >= start_sequence + durations.len() as u64,
        )
        .await;
        assert!(m.sampler.connected, "{:?}", m.sampler.problem);
        durations.push(m.sampler.duration_ms);
        queries.push(m.sampler.queries);
    }
    let server_ms: f64 = sqlx::query_scalar(
        "SELECT coalesce(sum(total_exec_time), 0)::float8 FROM pg_stat_statements \
          WHERE query LIKE '%zdm-monitor%'",
    )
    .fetch_one(&pool)
    .await
    .expect("server time");
    monitor.stop().await;

    durations.sort_by(f64::total_cmp);
    let mean = durations.iter().sum::<f64>() / durations.len() as f64;
    let median = durations[durations.len() / 2];
    let max = durations[durations.len() - 1];
    // Every sample sends the same statements: counters, replication (2), locks, sessions
    // (2), tables, canary, statements, progress (2) and the statistics flush.
    assert!(queries.iter().all(|&q| q == 12), "{queries:?}");
    println!(
        "sampler overhead over {measured} samples (primary + replica, pg_stat_statements, \
         one target table): {} queries/sample; wall time per sample mean {mean:.1} ms, \
         median {median:.1} ms, max {max:.1} ms; server execution time (pg_stat_statements, \
         about {} samples) {:.2} ms/sample",
        queries[0],
        measured + 1,
        server_ms / (measured + 1) as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zdm_top_prints_lines_and_json_then_ends_by_itself() {
    let pg = common::primary();
    let pool = orders_table(&pg, "top").await;
    pool.close().await;
    let url = pg.primary().url("top");
    let run = |args: &[&str]| {
        let output = std::process::Command::new(common::zdm_binary())
            .args([
                "top",
                "--database-url",
                &url,
                "--interval",
                "0.2",
                "--table",
                "orders",
            ])
            .args(args)
            .env("ZDM_LOG_FILE", pg.root().join("zdm-top.log"))
            .output()
            .expect("run zdm top");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).expect("utf-8")
    };
    let json = tokio::task::block_in_place(|| run(&["--count", "3", "--json"]));
    let samples: Vec<serde_json::Value> = json
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(samples.len(), 3, "{json}");
    for (i, sample) in samples.iter().enumerate() {
        assert_eq!(sample["sequence"], i as u64 + 1);
        assert_eq!(sample["sampler"]["connected"], true);
    }
    assert_eq!(
        samples[2]["tables"]["value"][0]["table"]["name"], "orders",
        "{}",
        samples[2]
    );
    assert_eq!(
        samples[0]["throughput"]["problem"],
        "rates need two samples"
    );
    assert!(samples[2]["throughput"]["value"]["commits_per_second"].is_number());

    let missing =
        tokio::task::block_in_place(|| run(&["--count", "1", "--json", "--table", "nosuch"]));
    let missing: serde_json::Value = serde_json::from_str(missing.trim()).expect("JSON");
    let problem = missing["tables"]["problem"].as_str().unwrap_or_default();
    assert!(problem.starts_with("no statistics for nosuch"), "{problem}");

    let text = tokio::task::block_in_place(|| run(&["--count", "2"]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[1].contains("commit "), "{}", lines[1]);
    assert!(lines[1].contains("locks: no waits"), "{}", lines[1]);
    assert!(lines[1].contains("replicas: none"), "{}", lines[1]);
    assert!(lines[1].contains("public.orders dead 0"), "{}", lines[1]);
    assert!(lines[1].contains("cpu "), "{}", lines[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zdm_top_without_a_database_says_how_to_give_one() {
    let output = tokio::task::block_in_place(|| {
        let mut command = std::process::Command::new(common::zdm_binary());
        for name in common::DATABASE_ENV {
            command.env_remove(name);
        }
        command
            .args(["top", "--count", "1"])
            .env(
                "ZDM_LOG_FILE",
                std::env::temp_dir().join("zdm-top-test.log"),
            )
            .current_dir(std::env::temp_dir())
            .output()
            .expect("run zdm top")
    });
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no database to work on"), "{stderr}");
}
