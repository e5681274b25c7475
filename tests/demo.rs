//! `zdm demo --no-console` end to end: real servers, data, workload, clean shutdown on SIGINT.

mod common;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sqlx::{Connection, PgConnection};
use zdm::localpg::is_alive;

use common::demo_process::DemoProcess;

async fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(conn).await.expect(sql)
}

#[tokio::test]
async fn demo_comes_up_answers_queries_and_shuts_down_on_sigint() {
    let mut demo = DemoProcess::start(&["--scale", "0.01"]);
    assert_eq!(demo.pids.len(), 2, "primary and replica: {:?}", demo.output);
    // The load says how far it has come while it runs, then what it loaded.
    let loading = demo
        .output
        .iter()
        .position(|line| {
            line.contains("loading ")
                && ["customers", "products", "orders", "order_items"]
                    .iter()
                    .all(|table| line.contains(table))
        })
        .unwrap_or_else(|| panic!("no loading line: {:?}", demo.output));
    let loaded = demo
        .output
        .iter()
        .position(|line| line.contains("rows: 2,000 customers"))
        .unwrap_or_else(|| panic!("no rows line: {:?}", demo.output));
    assert!(loading < loaded, "{:?}", demo.output);

    let mut primary = PgConnection::connect(&demo.primary_url)
        .await
        .expect("primary");
    assert_eq!(
        count(&mut primary, "SELECT count(*) FROM customers").await,
        2_000
    );
    assert_eq!(
        count(&mut primary, "SELECT count(*) FROM products").await,
        50
    );
    assert!(count(&mut primary, "SELECT count(*) FROM orders").await >= 10_000);
    assert!(count(&mut primary, "SELECT count(*) FROM order_items").await >= 20_000);
    let foreign_keys = count(
        &mut primary,
        "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace",
    )
    .await;
    assert_eq!(foreign_keys, 3);
    let phone_nulls: f64 =
        sqlx::query_scalar("SELECT avg((phone IS NULL)::int)::float8 FROM customers")
            .fetch_one(&mut primary)
            .await
            .expect("null fraction");
    assert!(
        (0.2..0.5).contains(&phone_nulls),
        "realistic null fraction: {phone_nulls}"
    );

    // The application workload is connected and doing work.
    let deadline = Instant::now() + Duration::from_secs(30);
    let sessions = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shop-app'";
    while count(&mut primary, sessions).await != 4 {
        assert!(
            Instant::now() < deadline,
            "the workload's 4 sessions connect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let orders_at_start = count(&mut primary, "SELECT max(id) FROM orders").await;
    while count(&mut primary, "SELECT max(id) FROM orders").await == orders_at_start {
        assert!(Instant::now() < deadline, "the workload places new orders");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let replica_url = demo.replica_url.clone().expect("replica URL printed");
    let mut replica = PgConnection::connect(&replica_url).await.expect("replica");
    let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut replica)
        .await
        .expect("query");
    assert!(standby);
    assert_eq!(
        count(&mut replica, "SELECT count(*) FROM customers").await,
        2_000
    );
    drop((primary, replica));

    demo.signal(Signal::SIGINT);
    let status = demo.wait(Duration::from_secs(60));
    assert!(status.success(), "exit {status}: {:?}", demo.output);
    assert!(
        demo.output.iter().any(|line| line.starts_with("Stopped.")),
        "{:?}",
        demo.output
    );
    for pid in &demo.pids {
        assert!(
            !is_alive(*pid),
            "server {pid} still runs after the demo stopped"
        );
    }
    assert!(!demo.root.exists(), "{} still exists", demo.root.display());
}

#[test]
fn sigterm_also_stops_everything() {
    let mut demo = DemoProcess::start(&["--scale", "0.001", "--workload-sessions", "1"]);
    demo.signal(Signal::SIGTERM);
    assert!(
        demo.wait(Duration::from_secs(60)).success(),
        "{:?}",
        demo.output
    );
    assert!(demo.pids.iter().all(|pid| !is_alive(*pid)));
    assert!(!demo.root.exists());
}
