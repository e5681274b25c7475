//! A rehearsal's report as text for the terminal and as Markdown for a change ticket.

use super::{Forecast, Rehearsal};

/// Bytes in the nearest binary unit: `12.3 MiB`.
fn bytes(n: f64) -> String {
    let mut v = n;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if v.abs() < 1024.0 {
            return format!("{v:.1} {unit}");
        }
        v /= 1024.0;
    }
    format!("{v:.1} TiB")
}

fn value(f: &Forecast, v: f64) -> String {
    match f.unit.as_str() {
        "bytes" => bytes(v),
        "s" => format!("{v:.1} s"),
        "ms" => format!("{v:.0} ms"),
        unit => format!("{v:.0} {unit}"),
    }
}

/// The report for the terminal.
pub fn text(r: &Rehearsal) -> String {
    let mut s = format!("rehearsal of {} on synthetic data\n", r.migration);
    s.push_str(&format!(
        "workload rate aimed at: {:.1} statements/s ({})\n",
        r.rate.aimed_per_s, r.rate.source
    ));
    for m in &r.runs {
        s.push_str(&format!(
            "\nscale {} ({} rows in the touched tables; synth {:.1} s)\n",
            m.scale, m.rows, m.synth_s
        ));
        s.push_str(&format!(
            "  start {:.1} s (expand {:.1} s, backfill {:.1} s), pause {:.1} s, complete {:.1} s \
             (contract {:.1} s)\n",
            m.start_s, m.expand_s, m.backfill_s, m.pause_s, m.complete_s, m.contract_s
        ));
        for step in &m.steps {
            s.push_str(&format!(
                "    {:<8} {:>8.0} ms  {} on {}{}  {}\n",
                step.phase,
                step.ms,
                step.lock,
                if step.locked.is_empty() {
                    "-".to_string()
                } else {
                    step.locked.join(", ")
                },
                if step.lock_retries > 0 {
                    format!(
                        " ({} lock waits, {:.0} ms backoff)",
                        step.lock_retries, step.lock_backoff_ms
                    )
                } else {
                    String::new()
                },
                step.description
            ));
        }
        s.push_str(&format!(
            "  backfill: {} rows in {} batches (p50 {:.0} ms, longest {:.0} ms), {:.0} rows/s, \
             throttled {:.1} s\n",
            m.backfill_rows, m.batches, m.batch_p50_ms, m.batch_max_ms, m.rows_per_s, m.throttled_s
        ));
        s.push_str(&format!(
            "  workload: before p50 {:.1} ms p99 {:.1} ms ({} statements); during p50 {:.1} ms \
             p99 {:.1} ms ({} statements)\n",
            m.latency_before.p50_ms,
            m.latency_before.p99_ms,
            m.latency_before.statements,
            m.latency_during.p50_ms,
            m.latency_during.p99_ms,
            m.latency_during.statements
        ));
        s.push_str(&format!(
            "  rate: aimed at {:.1}/s, achieved {:.1}/s before and {:.1}/s during{}\n",
            r.rate.aimed_per_s,
            m.latency_before.per_s,
            m.latency_during.per_s,
            if m.latency_during.per_s < 0.9 * r.rate.aimed_per_s {
                " (short of the aim: the statements waited, or give more --clients)"
            } else {
                ""
            }
        ));
        s.push_str(&format!(
            "  writes: {} updates, {} inserts, {} failed; statements failed: {} before, {} \
             during\n",
            m.writes.updates,
            m.writes.inserts,
            m.writes.failed,
            m.latency_before.failed,
            m.latency_during.failed
        ));
        for why in &m.writes.not_inserted {
            s.push_str(&format!("    no inserts into {why}\n"));
        }
        for lag in &m.replica_lag {
            s.push_str(&format!(
                "  replica lag {:<8} max {} p95 {} (replay lag max {:.0} ms, p95 {:.0} ms; {} \
                 samples)\n",
                lag.phase,
                bytes(lag.max_bytes as f64),
                bytes(lag.p95_bytes as f64),
                lag.max_ms,
                lag.p95_ms,
                lag.samples
            ));
        }
        s.push_str(&format!(
            "  WAL {}, table growth {}, index growth {}\n",
            bytes(m.wal_bytes as f64),
            bytes(m.table_growth_bytes as f64),
            bytes(m.index_growth_bytes as f64)
        ));
        if !m.replayed.is_empty() {
            s.push_str("  replayed from the target's pg_stat_statements:\n");
            for q in &m.replayed {
                s.push_str(&format!("    {q}\n"));
            }
        }
        for q in &m.not_replayed {
            s.push_str(&format!("  not replayed: {q}\n"));
        }
        if let Some(refused) = &m.gates_refused {
            s.push_str(&format!(
                "  the gates refused contract (then overridden to measure it): {refused}\n"
            ));
        }
    }
    s.push_str("\nforecast at full size (scale 1):\n");
    for f in &r.forecast {
        s.push_str(&format!(
            "  {:<40} {:>12}  ({} to {}; {})\n",
            f.figure,
            value(f, f.at_full_size),
            value(f, f.low),
            value(f, f.high),
            f.growth
        ));
    }
    if let Some(risk) = &r.riskiest {
        s.push_str(&format!("\nriskiest step: {risk}\n"));
    }
    s.push_str("\nsettings:\n");
    for (k, v) in &r.settings {
        s.push_str(&format!("  {k}: {v}\n"));
    }
    if !r.real_values.is_empty() {
        s.push_str(&format!(
            "real values of the target's statistics in the scratch data: {}\n",
            r.real_values.join(", ")
        ));
    }
    for w in &r.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    s
}

/// The report as Markdown, for a change ticket.
pub fn markdown(r: &Rehearsal) -> String {
    let mut s = format!("# Rehearsal of `{}`\n\n", r.migration);
    s.push_str(&format!(
        "Rehearsed {}; the workload aimed at {:.1} statements/s ({}).\n\n",
        r.at, r.rate.aimed_per_s, r.rate.source
    ));
    s.push_str(
        "Run on scratch databases generated by `zdm synth` from the target's statistics \
         (no production row read).\n\n## Phases\n\n| scale | rows | start | expand | backfill \
         | pause | complete | contract | rows/s | p99 before | p99 during | achieved rate \
         | WAL |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- \
         | --- |\n",
    );
    for m in &r.runs {
        s.push_str(&format!(
            "| {} | {} | {:.1} s | {:.1} s | {:.1} s | {:.1} s | {:.1} s | {:.1} s | {:.0} | \
             {:.1} ms | {:.1} ms | {:.1}/s | {} |\n",
            m.scale,
            m.rows,
            m.start_s,
            m.expand_s,
            m.backfill_s,
            m.pause_s,
            m.complete_s,
            m.contract_s,
            m.rows_per_s,
            m.latency_before.p99_ms,
            m.latency_during.p99_ms,
            m.latency_during.per_s,
            bytes(m.wal_bytes as f64)
        ));
    }
    if r.runs.iter().any(|m| !m.replica_lag.is_empty()) {
        s.push_str(
            "\n## Replica lag\n\n| scale | phase | max | p95 | replay lag max | p95 |\n| --- \
             | --- | --- | --- | --- | --- |\n",
        );
        for m in &r.runs {
            for lag in &m.replica_lag {
                s.push_str(&format!(
                    "| {} | {} | {} | {} | {:.0} ms | {:.0} ms |\n",
                    m.scale,
                    lag.phase,
                    bytes(lag.max_bytes as f64),
                    bytes(lag.p95_bytes as f64),
                    lag.max_ms,
                    lag.p95_ms
                ));
            }
        }
    }
    if let Some(m) = r.runs.last() {
        s.push_str(&format!(
            "\n## Steps (scale {})\n\n| phase | step | lock | on | ms | lock waits |\n| --- | \
             --- | --- | --- | --- | --- |\n",
            m.scale
        ));
        for step in &m.steps {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {:.0} | {} |\n",
                step.phase,
                step.description.replace('|', "\\|"),
                step.lock,
                step.locked.join(", "),
                step.ms,
                step.lock_retries
            ));
        }
    }
    s.push_str(
        "\n## Forecast at full size\n\n| figure | forecast | range | growth |\n| --- | --- | \
         --- | --- |\n",
    );
    for f in &r.forecast {
        s.push_str(&format!(
            "| {} | {} | {} to {} | {} |\n",
            f.figure.replace('|', "\\|"),
            value(f, f.at_full_size),
            value(f, f.low),
            value(f, f.high),
            f.growth
        ));
    }
    if let Some(risk) = &r.riskiest {
        s.push_str(&format!("\n## Riskiest step\n\n{risk}\n"));
    }
    s.push_str("\n## Settings\n\n");
    for (k, v) in &r.settings {
        s.push_str(&format!("- {k}: {v}\n"));
    }
    if !r.real_values.is_empty() {
        s.push_str(&format!(
            "\nReal values of the target's statistics in the scratch data: {}\n",
            r.real_values.join(", ")
        ));
    }
    s
}
