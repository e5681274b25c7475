//! Alerts that reach people, on a real run: a webhook server the test starts on
//! 127.0.0.1 receives exactly one alert per incident with the documented JSON (after a
//! refused first try, retried), a command hook gets the same JSON on its stdin, and a
//! dead webhook (a closed port, and a server that accepts and never answers) never
//! slows a batch: batch timings are compared with a run without sinks, through events.

mod common;
mod engine_support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine_support::{backfill, engine, plan, quick_options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use zdm::config::Config;
use zdm::engine::{EngineOptions, Events};
use zdm::localpg::LocalPg;
use zdm::protocol::Event;
use zdm::runner::Served;

/// Bodies of the POSTs a test server received, with the status it answered.
type Received = Arc<Mutex<Vec<(u16, serde_json::Value)>>>;

/// An HTTP server on 127.0.0.1 that answers 503 to its first request and 200 after,
/// keeping every JSON body.
async fn webhook_server() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://127.0.0.1:{}/hooks/T000/SECRET-TOKEN",
        listener.local_addr().expect("addr").port()
    );
    let received = Received::default();
    let kept = received.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buffer = [0u8; 4096];
                // Headers, then Content-Length bytes of body.
                let body = loop {
                    let Ok(n) = stream.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&data).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    if data.len() >= end + 4 + length {
                        assert!(text.starts_with("POST /hooks/T000/SECRET-TOKEN "), "{text}");
                        break data[end + 4..end + 4 + length].to_vec();
                    }
                };
                let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
                let status = {
                    let mut kept = kept.lock().expect("lock");
                    let status = if kept.is_empty() { 503 } else { 200 };
                    kept.push((status, json));
                    status
                };
                let reply = format!(
                    "HTTP/1.1 {status} {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    if status == 200 {
                        "OK"
                    } else {
                        "Service Unavailable"
                    }
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    (url, received)
}

/// A server that accepts connections and never answers (nor reads); how many came.
async fn silent_server() -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://127.0.0.1:{}/hook",
        listener.local_addr().expect("addr").port()
    );
    let count = Arc::new(Mutex::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            *seen.lock().expect("lock") += 1;
            held.push(stream);
        }
    });
    (url, count)
}

/// A port on 127.0.0.1 nobody listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

async fn items(pg: &LocalPg, database: &str, rows: i64) {
    let pool = common::database(pg, database).await;
    sqlx::raw_sql(&format!(
        "CREATE TABLE items (id bigint PRIMARY KEY, qty integer NOT NULL, qty2 integer);
         INSERT INTO items (id, qty) SELECT g, g % 97 FROM generate_series(1, {rows}) AS g;
         ANALYZE items;"
    ))
    .execute(&pool)
    .await
    .expect("items");
}

fn config(dir: &Path, pg: &LocalPg, database: &str, alerts: &str) -> Config {
    let text = format!(
        "database_url = \"{}\"\n{alerts}",
        pg.primary().url(database)
    );
    Config::from_toml(&dir.join("zdm.toml"), &text).expect("config")
}

/// Runs the backfill plan of `items` through a served run (as `zdm start` does), and
/// returns every event the run published, stamped.
async fn served_run(
    pg: &LocalPg,
    database: &str,
    config: &Config,
    options: EngineOptions,
) -> Vec<zdm::protocol::Stamped> {
    let mut engine = engine(pg, database, options).await;
    let migration = "0001_items_qty2";
    let (served, events) = Served::start(config, "start", migration, None, engine.control()).await;
    let mut published = served.subscribe();
    let collected = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Ok(stamped) = published.recv().await {
            let last = matches!(stamped.event, Event::Finished { .. });
            all.push(stamped);
            if last {
                break;
            }
        }
        all
    });
    engine.set_events(Events::to(events));
    let the_plan = plan(
        migration,
        vec![backfill(
            "\"public\".\"items\"",
            &["id"],
            &[("qty2", "qty * 2")],
            None,
        )],
    );
    let outcome = engine.start(&the_plan, "sum").await.expect("the run");
    engine.set_events(Events::none());
    engine.close().await.expect("close");
    served.finish(Ok(&outcome)).await;
    collected.await.expect("events")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_gets_one_alert_per_incident_with_the_documented_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::env::set_var("XDG_RUNTIME_DIR", dir.path());
    let pg = common::primary();
    items(&pg, "alerts_webhook", 2000).await;
    let (url, received) = webhook_server().await;
    let hook_out = dir.path().join("hook.jsonl");
    let alerts = format!(
        "[[alerts.webhook]]\nurl = \"{url}\"\ntimeout_s = 2\n\
         [[alerts.command]]\nrun = [\"sh\", \"-c\", \"cat >> {}\"]\n",
        hook_out.display()
    );
    let config = config(dir.path(), &pg, "alerts_webhook", &alerts);
    assert!(
        !format!("{config:?}").contains("SECRET-TOKEN"),
        "the webhook's token is never in the config's Debug"
    );
    let events = served_run(&pg, "alerts_webhook", &config, quick_options()).await;
    assert!(matches!(
        events.last().map(|s| &s.event),
        Some(Event::Finished { ok: true, .. })
    ));

    let received = received.lock().expect("lock").clone();
    // The first try was refused (503) and retried: the same body again.
    assert_eq!(received[0].0, 503);
    assert_eq!(received[1].1["incident"], received[0].1["incident"]);
    let accepted: Vec<&serde_json::Value> = received
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
        .collect();
    let incidents: Vec<&str> = accepted
        .iter()
        .map(|b| b["incident"].as_str().expect("incident"))
        .collect();
    assert_eq!(
        incidents,
        ["status:backfilling", "status:ready to contract", "finished"],
        "{accepted:#?}"
    );
    for body in &accepted {
        for field in [
            "text",
            "source",
            "kind",
            "severity",
            "migration",
            "database",
            "host",
            "incident",
            "summary",
            "at",
            "repeats",
        ] {
            assert!(body.get(field).is_some(), "{field} missing: {body}");
        }
        assert_eq!(body["source"], "zdm");
        assert_eq!(body["migration"], "0001_items_qty2");
        assert_eq!(body["repeats"], 0);
        let text = body["text"].as_str().expect("text");
        assert!(text.starts_with("[zdm info] "), "{text}");
        assert!(
            chrono::DateTime::parse_from_rfc3339(body["at"].as_str().expect("at")).is_ok(),
            "{body}"
        );
    }
    assert_eq!(accepted[0]["kind"], "phase");
    assert_eq!(accepted[0]["summary"], "0001_items_qty2 is now backfilling");
    assert_eq!(accepted[2]["kind"], "run_finished");
    assert!(accepted[2]["database"]
        .as_str()
        .is_some_and(|d| d.contains("127.0.0.1") && d.contains("alerts_webhook")));

    // The command hook got the same notices, one JSON object per line on its stdin.
    let lines = std::fs::read_to_string(&hook_out).expect("the hook ran");
    let hooked: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let hooked: Vec<&str> = hooked
        .iter()
        .map(|b| b["incident"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(hooked, incidents);
}

/// The median of the durations between consecutive batches and of the batches' own time.
fn batch_timings(events: &[zdm::protocol::Stamped]) -> (Duration, Duration, usize) {
    let batches: Vec<(chrono::DateTime<chrono::Utc>, Duration)> = events
        .iter()
        .filter_map(|s| match &s.event {
            Event::BatchDone(b) => Some((s.at, b.took)),
            _ => None,
        })
        .collect();
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    let gaps = batches
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).to_std().unwrap_or_default())
        .collect();
    let took = batches.iter().map(|(_, took)| *took).collect();
    (median(gaps), median(took), batches.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_webhook_never_slows_a_batch() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::env::set_var("XDG_RUNTIME_DIR", dir.path());
    let pg = common::primary();
    let rows = 30_000;
    items(&pg, "alerts_none", rows).await;
    items(&pg, "alerts_dead", rows).await;
    let options = || EngineOptions {
        batch_size: Some(500),
        ..quick_options()
    };

    let plain = config(dir.path(), &pg, "alerts_none", "");
    let without = served_run(&pg, "alerts_none", &plain, options()).await;

    let (silent, connections) = silent_server().await;
    let closed = closed_port().await;
    let alerts = format!(
        "[[alerts.webhook]]\nurl = \"{silent}\"\ntimeout_s = 30\nretries = 5\n\
         [[alerts.webhook]]\nurl = \"http://127.0.0.1:{closed}/hook\"\n"
    );
    let dead = config(dir.path(), &pg, "alerts_dead", &alerts);
    let with = served_run(&pg, "alerts_dead", &dead, options()).await;

    let (gap_without, took_without, n_without) = batch_timings(&without);
    let (gap_with, took_with, n_with) = batch_timings(&with);
    assert_eq!(n_without, n_with);
    assert!(n_with >= 50, "{n_with} batches");
    // The silent server held the first alert's connection during the whole backfill.
    assert!(*connections.lock().expect("lock") >= 1);
    // A sink that held the run would add its 30 s timeout (or the closed port's
    // retries) between batches; the same batches take about the same time either way
    // (a generous factor: the machine is shared).
    eprintln!(
        "median gap between batches {gap_without:?} without sinks, {gap_with:?} with dead ones; \
         median batch {took_without:?} / {took_with:?}"
    );
    assert!(
        gap_with <= gap_without * 3 + Duration::from_millis(50),
        "{gap_with:?} vs {gap_without:?}"
    );
    assert!(
        took_with <= took_without * 3 + Duration::from_millis(50),
        "{took_with:?} vs {took_without:?}"
    );
}
