//! The run's Prometheus endpoint on a real backfill: its output parses as the
//! Prometheus text exposition format (a strict parser below), it carries the backfill's
//! series, the throttle state and reason as labels, the batch histogram and every
//! monitor metric, and its rows counter matches the database while the backfill is
//! paused and at the end; across a database that goes away and comes back it keeps
//! answering, says the monitor lost it (its stale series left out) and then that it is
//! back, and the run's alerts say the loss once.

mod common;
mod engine_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use engine_support::{backfill, engine, plan, quick_options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zdm::config::Config;
use zdm::engine::Events;
use zdm::monitor::{Monitor, MonitorOptions};
use zdm::protocol::{Event, RunState};
use zdm::runner::Served;

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict reader of the text exposition format (version 0.0.4): every line is a
/// `# HELP`, a `# TYPE` (once per family, before its samples) or a sample whose name
/// belongs to the family last typed; names and label names are valid; label values are
/// quoted with only `\\`, `\"` and `\n` escapes; no series twice; histogram buckets are
/// cumulative with `+Inf` equal to `_count`; counters end in `_total`.
fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let mut seen = BTreeSet::new();
    let mut samples = Vec::new();
    if !text.ends_with('\n') {
        return Err("the exposition must end with a newline".to_string());
    }
    for (i, line) in text.lines().enumerate() {
        let at = |why: String| format!("line {}: {why}: {line:?}", i + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let rest = parts.next().unwrap_or("");
            if !valid_name(name) {
                return Err(at("bad metric name".to_string()));
            }
            match keyword {
                "HELP" => {}
                "TYPE" => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&rest) {
                        return Err(at(format!("unknown type {rest}")));
                    }
                    if types.insert(name.to_string(), rest.to_string()).is_some() {
                        return Err(at("a family typed twice".to_string()));
                    }
                    if rest == "counter" && !name.ends_with("_total") {
                        return Err(at("a counter's name must end in _total".to_string()));
                    }
                    current = Some((name.to_string(), rest.to_string()));
                }
                _ => return Err(at("a comment that is neither HELP nor TYPE".to_string())),
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            return Err(at("stray line".to_string()));
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => return Err(at("no value".to_string())),
        };
        if !valid_name(name) {
            return Err(at("bad sample name".to_string()));
        }
        let Some((family, kind)) = &current else {
            return Err(at("a sample before any TYPE".to_string()));
        };
        let belongs = match kind.as_str() {
            "histogram" => [
                format!("{family}_bucket"),
                format!("{family}_sum"),
                format!("{family}_count"),
            ]
            .contains(&name.to_string()),
            _ => name == family,
        };
        if !belongs {
            return Err(at(format!("a sample outside its family {family}")));
        }
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(after) = rest.strip_prefix('{') {
            let mut chars = after.char_indices().peekable();
            let end;
            loop {
                // label name
                let start = chars
                    .peek()
                    .map(|(i, _)| *i)
                    .ok_or_else(|| at("unterminated labels".into()))?;
                if after[start..].starts_with('}') {
                    end = start + 1;
                    break;
                }
                let eq = after[start..]
                    .find('=')
                    .ok_or_else(|| at("a label without =".into()))?;
                let label = &after[start..start + eq];
                if !valid_name(label) || label.contains(':') {
                    return Err(at(format!("bad label name {label:?}")));
                }
                for _ in 0..=eq {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(at("a label value must be quoted".into()));
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return Err(at("unterminated label value".into())),
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next().map(|(_, c)| c) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            other => return Err(at(format!("bad escape {other:?}"))),
                        },
                        Some((_, '\n')) => return Err(at("a raw newline in a label".into())),
                        Some((_, c)) => value.push(c),
                    }
                }
                if labels.insert(label.to_string(), value).is_some() {
                    return Err(at("a label given twice".into()));
                }
                match chars.next().map(|(_, c)| c) {
                    Some(',') => continue,
                    Some('}') => {
                        end = chars.peek().map_or(after.len(), |(i, _)| *i);
                        break;
                    }
                    other => {
                        return Err(at(format!("expected , or }} after a label, got {other:?}")))
                    }
                }
            }
            rest = &after[end..];
        }
        let mut fields = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value".into()))?
            .split(' ');
        let value = fields.next().unwrap_or("");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| at(format!("bad value {v:?}")))?,
        };
        if let Some(timestamp) = fields.next() {
            timestamp
                .parse::<i64>()
                .map_err(|_| at("bad timestamp".into()))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let key = format!("{name}{labels:?}");
        if !seen.insert(key) {
            return Err(at("a series given twice".into()));
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    // Histograms: cumulative buckets ending in +Inf == _count.
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let buckets: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
            .collect();
        let mut last = 0.0;
        for bucket in &buckets {
            if bucket.value < last {
                return Err(format!("{family}: buckets are not cumulative"));
            }
            last = bucket.value;
        }
        let inf = buckets
            .iter()
            .find(|b| b.labels.get("le").map(String::as_str) == Some("+Inf"))
            .ok_or(format!("{family}: no +Inf bucket"))?;
        let count = samples
            .iter()
            .find(|s| s.name == format!("{family}_count"))
            .ok_or(format!("{family}: no _count"))?;
        if inf.value != count.value {
            return Err(format!("{family}: +Inf bucket differs from _count"));
        }
    }
    Ok(samples)
}

#[test]
fn the_parser_refuses_what_the_format_refuses() {
    let good = "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"v \\\"q\\\"\"} 3\n";
    assert_eq!(parse(good).expect("valid")[0].labels["l"], "v \"q\"");
    for bad in [
        "# TYPE a counter\na 1\n",
        "# TYPE a_total counter\na_total 1",
        "a 1\n",
        "# TYPE a gauge\na{l=v} 1\n",
        "# TYPE a gauge\na{l=\"v\"} one\n",
        "# TYPE a gauge\na 1\na 2\n",
        "# TYPE a gauge\nb 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
    ] {
        assert!(parse(bad).is_err(), "accepted: {bad:?}");
    }
}

/// One runtime directory (the runs' sockets) for the whole binary: the tests run at once.
fn runtime_dir() {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"));
    std::env::set_var("XDG_RUNTIME_DIR", dir.path());
}

/// A free port on 127.0.0.1, as `host:port`.
fn free_address() -> String {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    format!("127.0.0.1:{}", probe.local_addr().expect("addr").port())
}

async fn scrape(address: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_string()
}

fn value(samples: &[Sample], name: &str) -> Option<f64> {
    samples.iter().find(|s| s.name == name).map(|s| s.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_parses_and_its_rows_counter_matches_the_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    runtime_dir();
    let pg = common::primary();
    let database = "metrics_endpoint";
    let pool = common::database(&pg, database).await;
    let rows: i64 = 20_000;
    sqlx::raw_sql(&format!(
        "CREATE TABLE items (id bigint PRIMARY KEY, qty integer NOT NULL, qty2 integer);
         INSERT INTO items (id, qty) SELECT g, g % 97 FROM generate_series(1, {rows}) AS g;
         ANALYZE items;"
    ))
    .execute(&pool)
    .await
    .expect("items");
    let address = free_address();
    let text = format!(
        "database_url = \"{}\"\nmetrics_listen = \"{address}\"\n",
        pg.primary().url(database)
    );
    let config = Config::from_toml(&dir.path().join("zdm.toml"), &text).expect("config");

    let mut options = quick_options();
    options.batch_size = Some(500);
    options.backfill.pacing.max_rows_per_second = Some(4000.0);
    let mut engine = engine(&pg, database, options).await;
    let control = engine.control();
    let migration = "0001_items_qty2";
    let (mut served, events) =
        Served::start(&config, "start", migration, None, engine.control()).await;
    let monitor = Monitor::start({
        let mut options = MonitorOptions::new(pg.primary().connect_options(database));
        options.interval = Duration::from_millis(300);
        options
    });
    served.stream_metrics(&monitor);
    let mut published = common::events_of(served.subscribe());
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
    let run = tokio::spawn(async move {
        let outcome = engine.start(&the_plan, "sum").await;
        engine.set_events(Events::none());
        (outcome, engine)
    });

    // A few batches, then a pause: the counter must equal what the table holds.
    common::until(
        &mut published,
        Duration::from_secs(30),
        "four batches",
        |e| matches!(e, Event::BatchDone(b) if b.batch >= 4),
    )
    .await;
    control.pause("metrics test");
    common::until(
        &mut published,
        Duration::from_secs(30),
        "the pause",
        |e| matches!(e, Event::Progress(p) if p.state == RunState::Paused),
    )
    .await;
    let in_table: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE qty2 IS NOT NULL")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert!(in_table > 0 && in_table < rows, "{in_table}");
    // The endpoint reads the same events: once it has seen the monitor's first sample
    // too, every series is there.
    let mut samples = Vec::new();
    for _ in 0..50 {
        let body = scrape(&address).await;
        samples = parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
        if value(&samples, "zdm_sessions_active").is_some()
            && value(&samples, "zdm_backfill_rows_total") == Some(in_table as f64)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        value(&samples, "zdm_backfill_rows_total"),
        Some(in_table as f64),
        "{samples:#?}"
    );
    let state = samples
        .iter()
        .find(|s| s.name == "zdm_backfill_state")
        .expect("state");
    assert_eq!(state.labels["state"], "paused");
    assert_eq!(state.labels["reason"], "metrics test");
    assert_eq!(state.labels["migration"], migration);
    for name in [
        "zdm_migration_status",
        "zdm_backfill_rows_per_second",
        "zdm_backfill_workers",
        "zdm_backfill_batch_duration_seconds_count",
        "zdm_backfill_paused_seconds_total",
        "zdm_sessions_active",
        "zdm_commits_per_second",
        "zdm_canary_latency_seconds",
        "zdm_alerts_raised_total",
    ] {
        assert!(
            value(&samples, name).is_some(),
            "{name} missing: {samples:#?}"
        );
    }
    assert!(value(&samples, "zdm_backfill_batch_duration_seconds_count").unwrap_or(0.0) >= 4.0);

    // Resumed to the end: the counter is every row.
    control.resume();
    let (outcome, engine) = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the backfill ends")
        .expect("join");
    let outcome = outcome.expect("the run");
    engine.close().await.expect("close");
    let mut last = Vec::new();
    for _ in 0..50 {
        last = parse(&scrape(&address).await).expect("valid");
        if value(&last, "zdm_backfill_rows_total") == Some(rows as f64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(value(&last, "zdm_backfill_rows_total"), Some(rows as f64));
    let not_found = {
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("request");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("answer");
        answer
    };
    assert!(not_found.starts_with("HTTP/1.1 404"), "{not_found}");
    served.finish(Ok(&outcome)).await;
    monitor.stop().await;
}

/// Scrapes until `done` holds for the parsed samples (the endpoint must answer every
/// time); panics with the last body after `timeout`.
async fn scrape_until(
    address: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let body = scrape(address).await;
        let samples = parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
        if done(&samples) {
            return samples;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {what} within {timeout:?}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn connected(samples: &[Sample]) -> Option<(f64, String)> {
    samples
        .iter()
        .find(|s| s.name == "zdm_monitor_connected")
        .map(|s| (s.value, s.labels["problem"].clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_keeps_serving_across_a_lost_database_and_says_the_monitor_is_stale() {
    runtime_dir();
    let pg = common::primary();
    let database = "metrics_lost";
    let pool = common::database(&pg, database).await;
    pool.close().await;
    let address = free_address();
    let dir = tempfile::tempdir().expect("temp dir");
    // Every notice of the run, one JSON line each, through a command hook.
    let notices = dir.path().join("notices.jsonl");
    let text = format!(
        "database_url = \"{}\"\nmetrics_listen = \"{address}\"\n\
         [[alerts.command]]\nrun = [\"sh\", \"-c\", \"cat >> '{}'\"]\n",
        pg.primary().url(database),
        notices.display()
    );
    let config = Config::from_toml(&dir.path().join("zdm.toml"), &text).expect("config");
    let control = zdm::engine::BackfillControl::default();
    let (mut served, events) = Served::start(&config, "start", "0001_lost", None, control).await;
    let monitor = Monitor::start({
        let mut options = MonitorOptions::new(pg.primary().connect_options(database));
        options.interval = Duration::from_millis(300);
        options
    });
    served.stream_metrics(&monitor);

    let samples = scrape_until(
        &address,
        Duration::from_secs(30),
        "a connected monitor",
        |s| {
            connected(s).is_some_and(|(v, _)| v == 1.0) && value(s, "zdm_sessions_active").is_some()
        },
    )
    .await;
    assert_eq!(connected(&samples), Some((1.0, String::new())));
    assert!(value(&samples, "zdm_monitor_sample_timestamp_seconds").is_some_and(|t| t > 1.7e9));

    // The server goes away: the endpoint answers on, the monitor said to be stale and
    // its database series gone (a stale reading is never served as current).
    tokio::task::block_in_place(|| common::pg_ctl(&pg, &["stop", "--mode=fast"]));
    let samples = scrape_until(&address, Duration::from_secs(30), "a stale monitor", |s| {
        connected(s).is_some_and(|(v, _)| v == 0.0)
    })
    .await;
    let (_, problem) = connected(&samples).expect("the gauge");
    assert!(!problem.is_empty(), "the reason is said");
    assert_eq!(value(&samples, "zdm_sessions_active"), None, "{samples:#?}");

    // Back: the monitor reconnects by itself and says so.
    tokio::task::block_in_place(|| common::pg_ctl(&pg, &["start"]));
    scrape_until(&address, Duration::from_secs(60), "the monitor back", |s| {
        connected(s).is_some_and(|(v, _)| v == 1.0) && value(s, "zdm_sessions_active").is_some()
    })
    .await;
    drop(events);
    monitor.stop().await;
    served.finish(Err("test over".to_string())).await;
    // The loss was said once, with its reason, however many stale samples it lasted.
    let said = std::fs::read_to_string(&notices).unwrap_or_default();
    let lost: Vec<serde_json::Value> = said
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|notice| notice["kind"] == "monitor_lost")
        .collect();
    assert_eq!(lost.len(), 1, "{said}");
    assert_eq!(lost[0]["incident"], "monitor:database", "{said}");
}
