//! Every backfill and throttle setting, declared once: its one name (the same in
//! `zdm.toml`, in `zdm ctl set/get`, on the wire and in the docs), its `zdm.toml` table,
//! its unit and range ([`Kind`]), its default, whether it can change while a run goes on,
//! and one doc line. Parsing, defaults, the `zdm.toml` reading (`config`), `zdm ctl`
//! (`control::setting`), the engine's values (`engine::BackfillSettings`) and the docs
//! table (`docs/control.md`, checked by a test) all derive from [`SPECS`].
//!
//! Names that an earlier release used are [`OLD_NAMES`]: they keep working for one
//! release, with a warning that names the new one.

mod setting;
mod value;

use std::fmt;
use std::time::Duration;

pub use setting::{Deprecated, Setting, SettingError};
pub use value::{Kind, Value};

/// Every declared setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SettingKey {
    BatchTarget,
    StartBatchRows,
    MinBatchRows,
    MaxBatchRows,
    FixedBatchRows,
    BatchTimeout,
    MaxRowsPerSecond,
    NiceRatio,
    Workers,
    VacuumDeadPercent,
    MaxReplicaLag,
    CriticalFactor,
    MaxLockWaiters,
    MaxActiveSessionsFactor,
    MaxHostCpuPercent,
    MaxCanarySlowdown,
    ThrottleQuery,
    FlagFile,
    ReleaseSamples,
    ReleaseRatio,
    StaleAfter,
    Windows,
    TimeZone,
    Window,
}

/// The `zdm.toml` table a setting is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Backfill,
    Throttle,
    Schedule,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Backfill => "backfill",
            Table::Throttle => "throttle",
            Table::Schedule => "schedule",
        }
    }
}

/// The declaration of one setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub key: SettingKey,
    /// The one name: `zdm.toml`, `zdm ctl`, the wire and the docs.
    pub name: &'static str,
    pub table: Table,
    pub kind: Kind,
    pub default: Value,
    /// What the default means when it is `none` and `none` is not "off" (e.g. "derived").
    pub default_note: &'static str,
    /// Whether `zdm ctl set` may change it while a run goes on (else: read at start).
    pub live: bool,
    /// A valid value, shown in error messages.
    pub example: &'static str,
    /// One line for the docs table.
    pub doc: &'static str,
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const ROWS: Kind = Kind::Count {
    unit: "rows",
    min: 1,
    max: 10_000_000,
    off: false,
};

/// The declaration, in the order of the docs table and of `zdm ctl status`.
pub static SPECS: [Spec; 24] = [
    Spec {
        key: SettingKey::BatchTarget,
        name: "batch_target",
        table: Table::Backfill,
        kind: Kind::Duration {
            min: ms(10),
            max: ms(60_000),
            off: false,
        },
        default: Value::Duration(Some(ms(200))),
        default_note: "",
        live: true,
        example: "200ms",
        doc: "how long one backfill batch should take; batch sizes adapt to it",
    },
    Spec {
        key: SettingKey::StartBatchRows,
        name: "start_batch_rows",
        table: Table::Backfill,
        kind: ROWS,
        default: Value::Count(Some(100)),
        default_note: "",
        live: false,
        example: "100",
        doc: "the first batch's size (small: the table's speed is not known yet)",
    },
    Spec {
        key: SettingKey::MinBatchRows,
        name: "min_batch_rows",
        table: Table::Backfill,
        kind: ROWS,
        default: Value::Count(Some(10)),
        default_note: "",
        live: true,
        example: "1000",
        doc: "smallest batch (must not exceed `max_batch_rows`)",
    },
    Spec {
        key: SettingKey::MaxBatchRows,
        name: "max_batch_rows",
        table: Table::Backfill,
        kind: ROWS,
        default: Value::Count(Some(100_000)),
        default_note: "",
        live: true,
        example: "1000",
        doc: "largest batch",
    },
    Spec {
        key: SettingKey::FixedBatchRows,
        name: "fixed_batch_rows",
        table: Table::Backfill,
        kind: Kind::Count {
            unit: "rows",
            min: 1,
            max: 10_000_000,
            off: true,
        },
        default: Value::Count(None),
        default_note: "adaptive",
        live: false,
        example: "1000",
        doc: "a fixed number of keys per batch instead of adaptive batches",
    },
    Spec {
        key: SettingKey::BatchTimeout,
        name: "batch_timeout",
        table: Table::Backfill,
        kind: Kind::Duration {
            min: ms(10),
            max: ms(3_600_000),
            off: true,
        },
        default: Value::Duration(None),
        default_note: "50 × `batch_target`, at least 10s",
        live: false,
        example: "30s",
        doc: "`statement_timeout` of each batch; a batch cut by it is retried with half the keys",
    },
    Spec {
        key: SettingKey::MaxRowsPerSecond,
        name: "max_rows_per_second",
        table: Table::Backfill,
        kind: Kind::Rate {
            max: 1e9,
            off: true,
        },
        default: Value::Number(None),
        default_note: "",
        live: true,
        example: "5000/s",
        doc: "ceiling on the backfill's rate, sleeps included",
    },
    Spec {
        key: SettingKey::NiceRatio,
        name: "nice_ratio",
        table: Table::Backfill,
        kind: Kind::Number {
            min: 0.0,
            max: 100.0,
        },
        default: Value::Number(Some(0.0)),
        default_note: "",
        live: true,
        example: "0.5",
        doc: "after each batch, sleep this many times its duration (`0.5`: ≤ 2/3 duty)",
    },
    Spec {
        key: SettingKey::Workers,
        name: "workers",
        table: Table::Backfill,
        kind: Kind::Workers { max: 64 },
        default: Value::Count(None),
        default_note: "",
        live: true,
        example: "4",
        doc: "backfill workers on disjoint key ranges; `auto`: from 1, one more while the throttle stays calm and it pays, up to the server's cores (at most 8)",
    },
    Spec {
        key: SettingKey::VacuumDeadPercent,
        name: "vacuum_dead_percent",
        table: Table::Backfill,
        kind: Kind::Percent {
            min: 1.0,
            max: 1000.0,
            off: true,
        },
        default: Value::Number(Some(20.0)),
        default_note: "",
        live: true,
        example: "20%",
        doc: "between batches, plain VACUUM (never FULL) of the table once its dead rows pass this share of its rows",
    },
    Spec {
        key: SettingKey::MaxReplicaLag,
        name: "max_replica_lag",
        table: Table::Throttle,
        kind: Kind::Duration {
            min: ms(10),
            max: ms(3_600_000),
            off: true,
        },
        default: Value::Duration(Some(ms(1000))),
        default_note: "",
        live: true,
        example: "1s",
        doc: "throttle while any replica's replay lag is above it",
    },
    Spec {
        key: SettingKey::CriticalFactor,
        name: "critical_factor",
        table: Table::Throttle,
        kind: Kind::Factor {
            min: 1.0,
            above_min: true,
            max: 1000.0,
            off: true,
        },
        default: Value::Number(None),
        default_note: "",
        live: true,
        example: "3x",
        doc: "an input past this multiple of its limit pauses the backfill and alerts instead of throttling",
    },
    Spec {
        key: SettingKey::MaxLockWaiters,
        name: "max_lock_waiters",
        table: Table::Throttle,
        kind: Kind::Count {
            unit: "sessions",
            min: 0,
            max: 10_000,
            off: true,
        },
        default: Value::Count(Some(0)),
        default_note: "",
        live: true,
        example: "5",
        doc: "throttle while more sessions than this (zdm's own not counted) wait for a lock on the backfilled table",
    },
    Spec {
        key: SettingKey::MaxActiveSessionsFactor,
        name: "max_active_sessions_factor",
        table: Table::Throttle,
        kind: Kind::Factor {
            min: 1.0,
            above_min: false,
            max: 100.0,
            off: true,
        },
        default: Value::Number(Some(2.0)),
        default_note: "",
        live: true,
        example: "2x",
        doc: "throttle while active sessions exceed max(level at start × this, level at start + 5)",
    },
    Spec {
        key: SettingKey::MaxHostCpuPercent,
        name: "max_host_cpu_percent",
        table: Table::Throttle,
        kind: Kind::Percent {
            min: 1.0,
            max: 100.0,
            off: true,
        },
        default: Value::Number(Some(90.0)),
        default_note: "",
        live: true,
        example: "80%",
        doc: "throttle while host CPU is above it (only when the server runs on this machine)",
    },
    Spec {
        key: SettingKey::MaxCanarySlowdown,
        name: "max_canary_slowdown",
        table: Table::Throttle,
        kind: Kind::Factor {
            min: 1.0,
            above_min: false,
            max: 1000.0,
            off: true,
        },
        default: Value::Number(Some(4.0)),
        default_note: "",
        live: true,
        example: "4x",
        doc: "throttle while the canary query is slower than max(baseline × this, 5 ms); baseline: median of its first 3 samples",
    },
    Spec {
        key: SettingKey::ThrottleQuery,
        name: "throttle_query",
        table: Table::Throttle,
        kind: Kind::Query,
        default: Value::Text(None),
        default_note: "",
        live: true,
        example: "SELECT count(*) FROM jobs WHERE busy",
        doc: "throttle while this query returns a number above 0",
    },
    Spec {
        key: SettingKey::FlagFile,
        name: "flag_file",
        table: Table::Throttle,
        kind: Kind::Path,
        default: Value::Path(None),
        default_note: "",
        live: true,
        example: "/run/zdm.pause",
        doc: "throttle while this file exists",
    },
    Spec {
        key: SettingKey::ReleaseSamples,
        name: "release_samples",
        table: Table::Throttle,
        kind: Kind::Count {
            unit: "samples",
            min: 1,
            max: 100,
            off: false,
        },
        default: Value::Count(Some(3)),
        default_note: "",
        live: false,
        example: "3",
        doc: "consecutive calm samples before a throttling input lets go",
    },
    Spec {
        key: SettingKey::ReleaseRatio,
        name: "release_ratio",
        table: Table::Throttle,
        kind: Kind::Number { min: 0.0, max: 1.0 },
        default: Value::Number(Some(0.8)),
        default_note: "",
        live: false,
        example: "0.8",
        doc: "a measurement is calm below this × its limit; counts (waiters, query, flag) at their limit",
    },
    Spec {
        key: SettingKey::StaleAfter,
        name: "stale_after",
        table: Table::Throttle,
        kind: Kind::Duration {
            min: ms(100),
            max: ms(3_600_000),
            off: false,
        },
        default: Value::Duration(Some(ms(5000))),
        default_note: "",
        live: false,
        example: "5s",
        doc: "a monitor sample older than this is stale: the throttle holds",
    },
    Spec {
        key: SettingKey::Windows,
        name: "windows",
        table: Table::Schedule,
        kind: Kind::Windows,
        default: Value::Text(None),
        default_note: "none: any time",
        live: true,
        example: "Mon-Fri 01:00-05:00; Sat,Sun 00:00-08:00",
        doc: "low-traffic windows: outside every one the backfill holds after its batch and goes on when one opens (in zdm.toml a list of strings)",
    },
    Spec {
        key: SettingKey::TimeZone,
        name: "tz",
        table: Table::Schedule,
        kind: Kind::TimeZone,
        default: Value::Text(None),
        default_note: "`local`: the system's",
        live: true,
        example: "Europe/Zurich",
        doc: "the IANA time zone the windows are wall-clock times of (daylight saving included)",
    },
    Spec {
        key: SettingKey::Window,
        name: "window",
        table: Table::Schedule,
        kind: Kind::Switch,
        default: Value::Switch(true),
        default_note: "",
        live: true,
        example: "off",
        doc: "`off`: the windows are ignored and the backfill runs now (an operator's decision, audited)",
    },
];

/// Where an old name was accepted in `zdm.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldPlace {
    /// At the top level of the file.
    Top,
    /// In this table.
    In(Table),
}

/// A name an earlier release used, accepted for one more release with a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OldName {
    pub name: &'static str,
    pub key: SettingKey,
    /// Where `zdm.toml` had it (it is also accepted by `zdm ctl set/get`).
    pub place: OldPlace,
    /// The old value was a bare number of milliseconds (`target_batch_ms = 500`), and a
    /// negative one switched the input off.
    pub millis: bool,
}

/// Every old name: removed in the release after the one that renamed them.
pub static OLD_NAMES: [OldName; 10] = [
    OldName {
        name: "target_batch_ms",
        key: SettingKey::BatchTarget,
        place: OldPlace::In(Table::Backfill),
        millis: true,
    },
    OldName {
        name: "backfill_batch_size",
        key: SettingKey::FixedBatchRows,
        place: OldPlace::Top,
        millis: false,
    },
    OldName {
        name: "batch_timeout_ms",
        key: SettingKey::BatchTimeout,
        place: OldPlace::In(Table::Backfill),
        millis: true,
    },
    OldName {
        name: "max_rate",
        key: SettingKey::MaxRowsPerSecond,
        place: OldPlace::In(Table::Backfill),
        millis: false,
    },
    OldName {
        name: "max_replica_lag_ms",
        key: SettingKey::MaxReplicaLag,
        place: OldPlace::In(Table::Throttle),
        millis: true,
    },
    OldName {
        name: "max_active_sessions",
        key: SettingKey::MaxActiveSessionsFactor,
        place: OldPlace::In(Table::Throttle),
        millis: false,
    },
    OldName {
        name: "max_cpu",
        key: SettingKey::MaxHostCpuPercent,
        place: OldPlace::In(Table::Throttle),
        millis: false,
    },
    OldName {
        name: "max_canary_factor",
        key: SettingKey::MaxCanarySlowdown,
        place: OldPlace::In(Table::Throttle),
        millis: false,
    },
    OldName {
        name: "query",
        key: SettingKey::ThrottleQuery,
        place: OldPlace::In(Table::Throttle),
        millis: false,
    },
    OldName {
        name: "stale_after_ms",
        key: SettingKey::StaleAfter,
        place: OldPlace::In(Table::Throttle),
        millis: true,
    },
];

impl SettingKey {
    /// Every key, in declaration order.
    pub fn all() -> impl Iterator<Item = SettingKey> {
        SPECS.iter().map(|spec| spec.key)
    }

    /// The keys `zdm ctl set` can change while a run goes on, in `zdm ctl status` order.
    pub fn live() -> impl Iterator<Item = SettingKey> {
        SPECS.iter().filter(|spec| spec.live).map(|spec| spec.key)
    }

    /// This key's declaration.
    pub fn spec(self) -> &'static Spec {
        // SPECS is in enum order (a test checks it), so this is an index, never a miss.
        &SPECS[self as usize]
    }

    /// The one name.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// What a value of this key looks like, for error messages and help.
    pub fn expected(self) -> String {
        let spec = self.spec();
        spec.kind.expected(spec.example)
    }

    /// The key a name means: its one name, or an old name (then `Some` old name, for a
    /// warning). `-` may stand for `_` (the CLI's own flags are kebab-case).
    pub fn lookup(text: &str) -> Result<(SettingKey, Option<&'static OldName>), SettingError> {
        let given = text.trim();
        let normalized = given.replace('-', "_");
        if let Some(spec) = SPECS.iter().find(|spec| spec.name == normalized) {
            return Ok((spec.key, None));
        }
        if let Some(old) = OLD_NAMES.iter().find(|old| old.name == normalized) {
            return Ok((old.key, Some(old)));
        }
        let names = names();
        Err(SettingError::UnknownKey {
            given: given.to_string(),
            hint: crate::suggest::hint(&normalized, &names, &crate::suggest::one_of(&names)),
        })
    }
}

/// Every setting's one name, in declaration order.
pub fn names() -> Vec<&'static str> {
    SPECS.iter().map(|spec| spec.name).collect()
}

impl fmt::Display for SettingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl OldName {
    /// The text of a value written under this old name, in the new name's form: a bare
    /// number of milliseconds becomes `500ms`, a negative one `none`.
    pub fn value_text(&self, text: &str) -> String {
        let trimmed = text.trim();
        match value::parse_number(trimmed) {
            Some(n) if self.millis && n < 0.0 => "none".to_string(),
            Some(_) if self.millis => format!("{trimmed}ms"),
            _ => trimmed.to_string(),
        }
    }
}

/// The docs table of every setting, generated from [`SPECS`]; `docs/control.md` holds it
/// exactly (a test checks).
pub fn docs_table() -> String {
    let mut out = String::from(
        "| name | `zdm.toml` table | unit | range | default | changed live | meaning |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for spec in &SPECS {
        let default = spec.kind.text(&spec.default);
        let default = if spec.default_note.is_empty() {
            format!("`{default}`")
        } else {
            spec.default_note.to_string()
        };
        out.push_str(&format!(
            "| `{}` | `[{}]` | {} | {} | {} | {} | {} |\n",
            spec.name,
            spec.table.name(),
            spec.kind.unit(),
            spec.kind.range(),
            default,
            if spec.live { "yes" } else { "no" },
            spec.doc,
        ));
    }
    out.push_str(
        "\nOld names, accepted for one more release (in `zdm.toml` and by `zdm ctl`) with a \
         warning that names the new one:\n\n",
    );
    for old in &OLD_NAMES {
        let place = match old.place {
            OldPlace::Top => " (at the top level of `zdm.toml`)",
            OldPlace::In(_) => "",
        };
        let millis = if old.millis {
            " (a number of milliseconds; negative: `none`)"
        } else {
            ""
        };
        out.push_str(&format!(
            "* `{}`{place} → `{}`{millis}\n",
            old.name,
            old.key.name()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declaration_is_in_enum_order_with_unique_names() {
        for (i, spec) in SPECS.iter().enumerate() {
            assert_eq!(spec.key as usize, i, "{}", spec.name);
        }
        let mut all: Vec<&str> = names();
        all.extend(OLD_NAMES.iter().map(|old| old.name));
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "a name is declared twice");
    }

    #[test]
    fn every_default_and_example_is_a_valid_value() {
        for spec in &SPECS {
            let default = spec.kind.text(&spec.default);
            assert_eq!(
                spec.kind.parse(&default).as_ref(),
                Some(&spec.default),
                "{}: default `{default}`",
                spec.name
            );
            assert!(
                Setting::from_value(spec.key, spec.default.clone()).is_some(),
                "{}: the default is not of its kind",
                spec.name
            );
            let example = spec
                .kind
                .parse(spec.example)
                .unwrap_or_else(|| panic!("{}: example `{}`", spec.name, spec.example));
            assert!(
                Setting::from_value(spec.key, example).is_some(),
                "{}",
                spec.name
            );
        }
    }

    #[test]
    fn old_names_find_their_new_key_and_milliseconds_get_their_unit() {
        let (key, old) = SettingKey::lookup("max-rate").expect("old name");
        assert_eq!(key, SettingKey::MaxRowsPerSecond);
        let old = old.expect("marked old");
        assert_eq!(old.name, "max_rate");
        let (_, old) = SettingKey::lookup("target_batch_ms").expect("old name");
        let old = old.expect("marked old");
        assert_eq!(old.value_text("500"), "500ms");
        assert_eq!(old.value_text("-1"), "none");
        assert_eq!(old.value_text("1.5s"), "1.5s");
        assert_eq!(
            SettingKey::lookup("max_rows_per_second").expect("new"),
            (SettingKey::MaxRowsPerSecond, None)
        );
    }

    /// The one docs table is the declaration's: regenerate it from `docs_table()` when a
    /// setting changes (the failure prints it).
    #[test]
    fn the_docs_hold_the_table_of_every_setting() {
        let docs = include_str!("../../docs/control.md");
        let table = docs_table();
        assert!(
            docs.contains(&table),
            "docs/control.md must contain exactly this table:\n\n{table}"
        );
    }
}
