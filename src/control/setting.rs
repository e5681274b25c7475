//! The live-tunable backfill and throttle settings as operators name them: their keys,
//! typed values and the `KEY=VALUE` text `zdm ctl set` takes (`200ms`, `1.5s`, `5000/s`,
//! `2x`, `80%`). The values in force (and their defaults) live in one place, the engine's
//! [`BackfillSettings`](crate::engine::BackfillSettings), read and changed key by key.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::suggest;

/// Why a setting was refused; each message names the key and shows a valid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("`{given}` is not KEY=VALUE: write it as e.g. `batch_target=200ms`")]
    NotAnAssignment { given: String },
    #[error("unknown setting `{given}`{hint}")]
    UnknownKey { given: String, hint: String },
    #[error("{key}: `{value}` is not {expected}")]
    BadValue {
        key: SettingKey,
        value: String,
        expected: String,
    },
    #[error("{key}: {reason}")]
    Conflict { key: SettingKey, reason: String },
}

/// Every setting that can be changed while a migration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SettingKey {
    BatchTarget,
    MinBatchRows,
    MaxBatchRows,
    MaxRate,
    NiceRatio,
    MaxReplicaLag,
    CriticalFactor,
    MaxLockWaiters,
    MaxActiveSessions,
    MaxCpu,
    MaxCanarySlowdown,
    ThrottleQuery,
    FlagFile,
}

impl SettingKey {
    /// All keys, in the order `zdm ctl status` lists them.
    pub const ALL: [SettingKey; 13] = [
        SettingKey::BatchTarget,
        SettingKey::MinBatchRows,
        SettingKey::MaxBatchRows,
        SettingKey::MaxRate,
        SettingKey::NiceRatio,
        SettingKey::MaxReplicaLag,
        SettingKey::CriticalFactor,
        SettingKey::MaxLockWaiters,
        SettingKey::MaxActiveSessions,
        SettingKey::MaxCpu,
        SettingKey::MaxCanarySlowdown,
        SettingKey::ThrottleQuery,
        SettingKey::FlagFile,
    ];

    /// The name used in `KEY=VALUE`, JSON and docs.
    pub fn name(self) -> &'static str {
        match self {
            SettingKey::BatchTarget => "batch_target",
            SettingKey::MinBatchRows => "min_batch_rows",
            SettingKey::MaxBatchRows => "max_batch_rows",
            SettingKey::MaxRate => "max_rate",
            SettingKey::NiceRatio => "nice_ratio",
            SettingKey::MaxReplicaLag => "max_replica_lag",
            SettingKey::CriticalFactor => "critical_factor",
            SettingKey::MaxLockWaiters => "max_lock_waiters",
            SettingKey::MaxActiveSessions => "max_active_sessions",
            SettingKey::MaxCpu => "max_cpu",
            SettingKey::MaxCanarySlowdown => "max_canary_slowdown",
            SettingKey::ThrottleQuery => "throttle_query",
            SettingKey::FlagFile => "flag_file",
        }
    }

    /// What a value of this key looks like, for error messages and help.
    pub fn expected(self) -> &'static str {
        match self {
            SettingKey::BatchTarget => "a duration from 10ms to 60s, e.g. `200ms` or `1.5s`",
            SettingKey::MinBatchRows | SettingKey::MaxBatchRows => {
                "a whole number of rows from 1 to 10000000, e.g. `1000`"
            }
            SettingKey::MaxRate => "rows per second, e.g. `5000/s`, or `none` for no ceiling",
            SettingKey::NiceRatio => {
                "a number from 0 to 100 (sleep this many times each batch's duration), e.g. `0.5`"
            }
            SettingKey::MaxReplicaLag => {
                "a duration from 10ms to 1h, e.g. `1s` or `500ms`, or `none` to turn it off"
            }
            SettingKey::CriticalFactor => {
                "a multiple of each throttle limit past which the backfill pauses and alerts, \
                 above 1 and up to 1000, e.g. `3x`, or `none` to turn it off"
            }
            SettingKey::MaxLockWaiters => {
                "a whole number of sessions from 0 to 10000, e.g. `5`, or `none`"
            }
            SettingKey::MaxActiveSessions => {
                "a multiple of the active sessions seen at start, from 1 to 100, e.g. `2x`, \
                 or `none`"
            }
            SettingKey::MaxCpu => "a percentage from 1 to 100, e.g. `80%`, or `none`",
            SettingKey::MaxCanarySlowdown => {
                "a multiple of the canary query's baseline latency, from 1 to 1000, e.g. `4x`, \
                 or `none`"
            }
            SettingKey::ThrottleQuery => {
                "an SQL query returning one number (> 0 throttles), or `none`"
            }
            SettingKey::FlagFile => "a file path (its existence throttles), or `none`",
        }
    }

    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|key| key.name()).collect()
    }
}

impl fmt::Display for SettingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SettingKey {
    type Err = SettingError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let given = text.trim();
        // `max-rate` is accepted too: the CLI's own flags are kebab-case.
        let normalized = given.replace('-', "_");
        SettingKey::ALL
            .into_iter()
            .find(|key| key.name() == normalized)
            .ok_or_else(|| {
                let names = SettingKey::names();
                SettingError::UnknownKey {
                    given: given.to_string(),
                    hint: suggest::hint(&normalized, &names, &suggest::one_of(&names)),
                }
            })
    }
}

impl Serialize for SettingKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for SettingKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(D::Error::custom)
    }
}

/// One setting with its value.
#[derive(Debug, Clone, PartialEq)]
pub enum Setting {
    /// How long one backfill batch should take; batch sizes adapt to it.
    BatchTarget(Duration),
    /// The smallest batch, in rows.
    MinBatchRows(u64),
    /// The largest batch, in rows.
    MaxBatchRows(u64),
    /// A ceiling on rows per second, or none.
    MaxRate(Option<f64>),
    /// Sleep after each batch for this multiple of its duration.
    NiceRatio(f64),
    /// Throttle while a replica lags more than this (none: off).
    MaxReplicaLag(Option<Duration>),
    /// Pause and alert (instead of throttling) once an input passes this multiple of its
    /// limit (none: off).
    CriticalFactor(Option<f64>),
    /// Throttle while more sessions than this wait for a lock on the target table.
    MaxLockWaiters(Option<u64>),
    /// Throttle while active sessions exceed this multiple of the level at start.
    MaxActiveSessions(Option<f64>),
    /// Throttle while host CPU (when the server is local) is above this percentage.
    MaxCpu(Option<f64>),
    /// Throttle while the canary query is slower than this multiple of its baseline.
    MaxCanarySlowdown(Option<f64>),
    /// A query whose result > 0 throttles.
    ThrottleQuery(Option<String>),
    /// A file whose existence throttles.
    FlagFile(Option<PathBuf>),
}

impl Setting {
    pub fn key(&self) -> SettingKey {
        match self {
            Setting::BatchTarget(_) => SettingKey::BatchTarget,
            Setting::MinBatchRows(_) => SettingKey::MinBatchRows,
            Setting::MaxBatchRows(_) => SettingKey::MaxBatchRows,
            Setting::MaxRate(_) => SettingKey::MaxRate,
            Setting::NiceRatio(_) => SettingKey::NiceRatio,
            Setting::MaxReplicaLag(_) => SettingKey::MaxReplicaLag,
            Setting::CriticalFactor(_) => SettingKey::CriticalFactor,
            Setting::MaxLockWaiters(_) => SettingKey::MaxLockWaiters,
            Setting::MaxActiveSessions(_) => SettingKey::MaxActiveSessions,
            Setting::MaxCpu(_) => SettingKey::MaxCpu,
            Setting::MaxCanarySlowdown(_) => SettingKey::MaxCanarySlowdown,
            Setting::ThrottleQuery(_) => SettingKey::ThrottleQuery,
            Setting::FlagFile(_) => SettingKey::FlagFile,
        }
    }

    /// Parses `KEY=VALUE` as `zdm ctl set` takes it.
    pub fn parse(assignment: &str) -> Result<Setting, SettingError> {
        let Some((key, value)) = assignment.split_once('=') else {
            // A lone known key gets a better message than "not KEY=VALUE".
            return match assignment.trim().parse::<SettingKey>() {
                Ok(key) => Err(SettingError::BadValue {
                    key,
                    value: String::new(),
                    expected: key.expected().to_string(),
                }),
                Err(_) => Err(SettingError::NotAnAssignment {
                    given: assignment.to_string(),
                }),
            };
        };
        Setting::parse_value(key.parse()?, value)
    }

    /// Parses the value of one key.
    pub fn parse_value(key: SettingKey, value: &str) -> Result<Setting, SettingError> {
        let text = value.trim();
        let bad = || SettingError::BadValue {
            key,
            value: text.to_string(),
            expected: key.expected().to_string(),
        };
        let setting = match key {
            SettingKey::BatchTarget => Setting::BatchTarget(
                parse_duration(text)
                    .filter(|d| within(*d, 10, 60_000))
                    .ok_or_else(bad)?,
            ),
            SettingKey::MinBatchRows => Setting::MinBatchRows(parse_rows(text).ok_or_else(bad)?),
            SettingKey::MaxBatchRows => Setting::MaxBatchRows(parse_rows(text).ok_or_else(bad)?),
            SettingKey::MaxRate => Setting::MaxRate(match none_or(text) {
                None => None,
                Some(rate) => Some(
                    parse_number(rate.strip_suffix("/s").unwrap_or(rate))
                        .filter(|r| *r > 0.0 && *r <= 1e9)
                        .ok_or_else(bad)?,
                ),
            }),
            SettingKey::NiceRatio => Setting::NiceRatio(
                parse_number(text)
                    .filter(|r| (0.0..=100.0).contains(r))
                    .ok_or_else(bad)?,
            ),
            SettingKey::MaxReplicaLag => Setting::MaxReplicaLag(match none_or(text) {
                None => None,
                Some(lag) => Some(
                    parse_duration(lag)
                        .filter(|d| within(*d, 10, 3_600_000))
                        .ok_or_else(bad)?,
                ),
            }),
            SettingKey::CriticalFactor => Setting::CriticalFactor(match none_or(text) {
                None => None,
                Some(factor) => Some(
                    parse_factor(factor, 1000.0)
                        .filter(|f| *f > 1.0)
                        .ok_or_else(bad)?,
                ),
            }),
            SettingKey::MaxLockWaiters => Setting::MaxLockWaiters(match none_or(text) {
                None => None,
                Some(count) => Some(
                    count
                        .parse::<u64>()
                        .ok()
                        .filter(|n| *n <= 10_000)
                        .ok_or_else(bad)?,
                ),
            }),
            SettingKey::MaxActiveSessions => Setting::MaxActiveSessions(match none_or(text) {
                None => None,
                Some(factor) => Some(parse_factor(factor, 100.0).ok_or_else(bad)?),
            }),
            SettingKey::MaxCpu => Setting::MaxCpu(match none_or(text) {
                None => None,
                Some(cpu) => Some(
                    parse_number(cpu.strip_suffix('%').unwrap_or(cpu).trim_end())
                        .filter(|p| (1.0..=100.0).contains(p))
                        .ok_or_else(bad)?,
                ),
            }),
            SettingKey::MaxCanarySlowdown => Setting::MaxCanarySlowdown(match none_or(text) {
                None => None,
                Some(factor) => Some(parse_factor(factor, 1000.0).ok_or_else(bad)?),
            }),
            SettingKey::ThrottleQuery => Setting::ThrottleQuery(none_or(text).map(str::to_string)),
            SettingKey::FlagFile => Setting::FlagFile(none_or(text).map(PathBuf::from)),
        };
        Ok(setting)
    }

    /// The value in the form `set` accepts back (`200ms`, `5000/s`, `none`).
    pub fn value_text(&self) -> String {
        match self {
            Setting::BatchTarget(d) => duration_text(*d),
            Setting::MaxReplicaLag(d) => d.map_or_else(|| "none".to_string(), duration_text),
            Setting::MinBatchRows(n) | Setting::MaxBatchRows(n) => n.to_string(),
            Setting::MaxRate(rate) => rate.map_or_else(|| "none".to_string(), |r| format!("{r}/s")),
            Setting::NiceRatio(r) => r.to_string(),
            Setting::MaxLockWaiters(n) => n.map_or_else(|| "none".to_string(), |n| n.to_string()),
            Setting::CriticalFactor(f)
            | Setting::MaxActiveSessions(f)
            | Setting::MaxCanarySlowdown(f) => {
                f.map_or_else(|| "none".to_string(), |f| format!("{f}x"))
            }
            Setting::MaxCpu(p) => p.map_or_else(|| "none".to_string(), |p| format!("{p}%")),
            Setting::ThrottleQuery(q) => q.clone().unwrap_or_else(|| "none".to_string()),
            Setting::FlagFile(p) => p
                .as_ref()
                .map_or_else(|| "none".to_string(), |p| p.display().to_string()),
        }
    }
}

impl Setting {
    /// `batch_target` scaled by `factor` from `current` (the console's faster/slower
    /// keys), kept within the range `set` accepts.
    pub fn batch_target_scaled(current: Duration, factor: f64) -> Setting {
        let (min, max) = (0.010, 60.0);
        let scaled = if factor.is_finite() && factor > 0.0 {
            current.as_secs_f64() * factor
        } else {
            current.as_secs_f64()
        };
        // Whole milliseconds: the value prints back as `set` text without a fraction.
        let millis = (scaled.clamp(min, max) * 1000.0).round() as u64;
        Setting::BatchTarget(Duration::from_millis(millis))
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key(), self.value_text())
    }
}

impl FromStr for Setting {
    type Err = SettingError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Setting::parse(text)
    }
}

/// On the wire a setting is `{"key": "batch_target", "value": "200ms"}`: the value is
/// the same text `zdm ctl set` takes (a JSON number is read as its text).
impl Serialize for Setting {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("key", self.key().name())?;
        map.serialize_entry("value", &self.value_text())?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Setting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            Text(String),
            Number(serde_json::Number),
        }
        #[derive(Deserialize)]
        struct Wire {
            key: SettingKey,
            value: Text,
        }
        let wire = Wire::deserialize(deserializer)?;
        let value = match wire.value {
            Text::Text(text) => text,
            Text::Number(number) => number.to_string(),
        };
        Setting::parse_value(wire.key, &value).map_err(D::Error::custom)
    }
}

/// `none`, `off` and `unlimited` (any case) mean "no value"; anything else is returned.
fn none_or(text: &str) -> Option<&str> {
    let none = ["none", "off", "unlimited"];
    if text.is_empty() || none.iter().any(|word| text.eq_ignore_ascii_case(word)) {
        None
    } else {
        Some(text)
    }
}

fn parse_number(text: &str) -> Option<f64> {
    let value: f64 = text.trim().replace('_', "").parse().ok()?;
    value.is_finite().then_some(value)
}

/// A row count: digits, optionally grouped with `_` or `,` (`100_000`).
fn parse_rows(text: &str) -> Option<u64> {
    let digits: String = text.chars().filter(|c| *c != '_' && *c != ',').collect();
    digits
        .parse::<u64>()
        .ok()
        .filter(|n| (1..=10_000_000).contains(n))
}

/// `2x`, `2` or `1.5×`: a multiple from 1 up to `max`.
fn parse_factor(text: &str, max: f64) -> Option<f64> {
    let number = text
        .strip_suffix(['x', 'X', '×'])
        .unwrap_or(text)
        .trim_end();
    parse_number(number).filter(|f| (1.0..=max).contains(f))
}

/// `200ms`, `1.5s`, `2m`, `1h` (a space before the unit is fine). A bare number is
/// refused: "500" could mean milliseconds or seconds, and guessing wrong at night hurts.
fn parse_duration(text: &str) -> Option<Duration> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number = parse_number(number).filter(|n| *n >= 0.0)?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" | "sec" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

fn within(d: Duration, min_ms: u64, max_ms: u64) -> bool {
    d >= Duration::from_millis(min_ms) && d <= Duration::from_millis(max_ms)
}

/// The shortest exact text `parse_duration` reads back: `200ms`, `1.5s`, `2m`.
fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    if d.subsec_nanos() % 1_000_000 != 0 {
        format!("{}s", d.as_secs_f64())
    } else if ms < 1000 {
        format!("{ms}ms")
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Setting {
        Setting::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn error(text: &str) -> String {
        match Setting::parse(text) {
            Ok(setting) => panic!("{text} was accepted as {setting:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn durations_take_their_units() {
        assert_eq!(
            parse("batch_target=200ms"),
            Setting::BatchTarget(Duration::from_millis(200))
        );
        assert_eq!(
            parse("batch_target=1.5s"),
            Setting::BatchTarget(Duration::from_millis(1500))
        );
        assert_eq!(
            parse(" max_replica_lag = 2 s "),
            Setting::MaxReplicaLag(Some(Duration::from_secs(2)))
        );
        assert_eq!(parse("max_replica_lag=off"), Setting::MaxReplicaLag(None));
        assert_eq!(
            parse("critical_factor=3x"),
            Setting::CriticalFactor(Some(3.0))
        );
        assert_eq!(parse("critical_factor=none"), Setting::CriticalFactor(None));
    }

    #[test]
    fn a_duration_without_a_unit_is_refused_with_an_example() {
        let message = error("batch_target=200");
        assert!(
            message.contains("batch_target: `200` is not a duration"),
            "{message}"
        );
        assert!(message.contains("`200ms`"), "{message}");
    }

    #[test]
    fn rates_counts_ratios_factors_and_percentages() {
        assert_eq!(parse("max_rate=5000/s"), Setting::MaxRate(Some(5000.0)));
        assert_eq!(parse("max_rate=2500"), Setting::MaxRate(Some(2500.0)));
        assert_eq!(parse("max_rate=none"), Setting::MaxRate(None));
        assert_eq!(
            parse("max_batch_rows=100_000"),
            Setting::MaxBatchRows(100_000)
        );
        assert_eq!(parse("nice_ratio=0.5"), Setting::NiceRatio(0.5));
        assert_eq!(
            parse("max_active_sessions=1.5x"),
            Setting::MaxActiveSessions(Some(1.5))
        );
        assert_eq!(
            parse("max_canary_slowdown=4"),
            Setting::MaxCanarySlowdown(Some(4.0))
        );
        assert_eq!(parse("max_cpu=80%"), Setting::MaxCpu(Some(80.0)));
        assert_eq!(
            parse("max_lock_waiters=0"),
            Setting::MaxLockWaiters(Some(0))
        );
        assert_eq!(
            parse("max_lock_waiters=none"),
            Setting::MaxLockWaiters(None)
        );
        assert_eq!(parse("max-rate=10/s"), Setting::MaxRate(Some(10.0)));
    }

    #[test]
    fn text_values_keep_everything_after_the_first_equals_sign() {
        assert_eq!(
            parse("throttle_query=SELECT count(*) FROM jobs WHERE state = 'busy'"),
            Setting::ThrottleQuery(Some(
                "SELECT count(*) FROM jobs WHERE state = 'busy'".to_string()
            ))
        );
        assert_eq!(
            parse("flag_file=/tmp/zdm.pause"),
            Setting::FlagFile(Some(PathBuf::from("/tmp/zdm.pause")))
        );
        assert_eq!(parse("flag_file=none"), Setting::FlagFile(None));
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for text in [
            "batch_target=5ms",
            "batch_target=2m",
            "max_rate=0",
            "max_rate=-5/s",
            "nice_ratio=-1",
            "nice_ratio=NaN",
            "min_batch_rows=0",
            "max_batch_rows=1.5",
            "max_active_sessions=0.5x",
            "max_cpu=150%",
            "max_lock_waiters=-1",
            "critical_factor=1x",
        ] {
            let message = error(text);
            let key = text.split('=').next().unwrap_or_default().replace('-', "_");
            assert!(
                message.starts_with(&format!("{key}: ")),
                "{text}: {message}"
            );
        }
    }

    #[test]
    fn unknown_keys_suggest_the_nearest_and_list_all() {
        let message = error("batch_traget=200ms");
        assert!(
            message.starts_with("unknown setting `batch_traget`; did you mean `batch_target`?"),
            "{message}"
        );
        for key in SettingKey::ALL {
            assert!(
                message.contains(&format!("`{key}`")),
                "{key} missing: {message}"
            );
        }
        let message = error("speed=fast");
        assert!(
            message.starts_with("unknown setting `speed`; expected "),
            "{message}"
        );
    }

    #[test]
    fn missing_equals_sign_is_explained() {
        assert!(error("batch_target").contains("batch_target: `` is not a duration"));
        assert!(error("fast please").contains("is not KEY=VALUE"));
    }

    #[test]
    fn a_setting_on_the_wire_accepts_numbers_and_reports_bad_values() {
        let setting: Setting =
            serde_json::from_str(r#"{"key":"max_rate","value":5000}"#).expect("number");
        assert_eq!(setting, Setting::MaxRate(Some(5000.0)));
        let error = serde_json::from_str::<Setting>(r#"{"key":"max_rate","value":"fast"}"#)
            .expect_err("bad value")
            .to_string();
        assert!(
            error.contains("max_rate: `fast` is not rows per second"),
            "{error}"
        );
    }

    #[test]
    fn the_batch_target_scales_within_its_range() {
        let current = Duration::from_millis(200);
        assert_eq!(
            Setting::batch_target_scaled(current, 1.5),
            Setting::BatchTarget(Duration::from_millis(300))
        );
        assert_eq!(
            Setting::batch_target_scaled(current, 0.001),
            Setting::BatchTarget(Duration::from_millis(10))
        );
        assert_eq!(
            Setting::batch_target_scaled(Duration::from_secs(50), 2.0),
            Setting::BatchTarget(Duration::from_secs(60))
        );
        assert_eq!(
            Setting::batch_target_scaled(current, f64::NAN),
            Setting::BatchTarget(current)
        );
    }
}
