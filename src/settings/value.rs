//! What a setting's value may be ([`Kind`]: its unit and range) and the text it is written
//! in, the same in `zdm.toml`, `zdm ctl set` and on the wire: `200ms`, `1.5s`, `5000/s`,
//! `2x`, `80%`, and `none` for an input switched off.

use std::path::PathBuf;
use std::time::Duration;

/// The unit and range of a setting. Every range is checked the same way wherever a value
/// comes from; nothing is clamped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A duration with its unit, within `min..=max`.
    Duration {
        min: Duration,
        max: Duration,
        off: bool,
    },
    /// A whole number of `unit` (rows, sessions, samples) within `min..=max`.
    Count {
        unit: &'static str,
        min: u64,
        max: u64,
        off: bool,
    },
    /// Rows per second, above 0 and at most `max`.
    Rate { max: f64, off: bool },
    /// A plain number within `min..=max`.
    Number { min: f64, max: f64 },
    /// A multiple (`2x`) within `min..=max`; above `min` only when `above_min`.
    Factor {
        min: f64,
        above_min: bool,
        max: f64,
        off: bool,
    },
    /// A percentage (`80%`) within `min..=max`.
    Percent { min: f64, max: f64, off: bool },
    /// A number of workers within `1..=max`, or `auto` (the engine decides).
    Workers { max: u64 },
    /// An SQL query.
    Query,
    /// A file path.
    Path,
    /// Low-traffic windows (`crate::schedule`), `;`-separated.
    Windows,
    /// An IANA time zone name, or `local`.
    TimeZone,
    /// `on` or `off`.
    Switch,
}

/// A setting's value, typed by its [`Kind`]; `None` is "switched off" (or "unset").
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Duration(Option<Duration>),
    Count(Option<u64>),
    Number(Option<f64>),
    Text(Option<String>),
    Path(Option<PathBuf>),
    Switch(bool),
}

impl Kind {
    /// Whether `none` is a valid value.
    pub fn can_be_off(self) -> bool {
        match self {
            Kind::Duration { off, .. }
            | Kind::Count { off, .. }
            | Kind::Rate { off, .. }
            | Kind::Factor { off, .. }
            | Kind::Percent { off, .. } => off,
            Kind::Number { .. } | Kind::Workers { .. } | Kind::TimeZone | Kind::Switch => false,
            Kind::Query | Kind::Path | Kind::Windows => true,
        }
    }

    /// The unit, for the docs table.
    pub fn unit(self) -> &'static str {
        match self {
            Kind::Duration { .. } => "duration",
            Kind::Count { unit, .. } => unit,
            Kind::Rate { .. } => "rows/s",
            Kind::Number { .. } => "number",
            Kind::Factor { .. } => "multiple",
            Kind::Percent { .. } => "percent",
            Kind::Workers { .. } => "workers",
            Kind::Query => "SQL",
            Kind::Path => "path",
            Kind::Windows => "windows",
            Kind::TimeZone => "time zone",
            Kind::Switch => "on/off",
        }
    }

    /// The range in words, for the docs table and error messages: `10ms–60s`.
    pub fn range(self) -> String {
        let range = match self {
            Kind::Duration { min, max, .. } => {
                format!("{}–{}", duration_text(min), duration_text(max))
            }
            Kind::Count { min, max, .. } => {
                format!(
                    "{}–{}",
                    crate::format::thousands(min),
                    crate::format::thousands(max)
                )
            }
            Kind::Rate { max, .. } => format!("above 0, up to {}", number_text(max)),
            Kind::Number { min, max } => format!("{}–{}", number_text(min), number_text(max)),
            Kind::Factor {
                min,
                above_min,
                max,
                ..
            } => {
                if above_min {
                    format!("above {}x, up to {}x", number_text(min), number_text(max))
                } else {
                    format!("{}x–{}x", number_text(min), number_text(max))
                }
            }
            Kind::Percent { min, max, .. } => {
                format!("{}%–{}%", number_text(min), number_text(max))
            }
            Kind::Workers { max } => format!("1–{max}, or `auto`"),
            Kind::Query => "a query returning one number".to_string(),
            Kind::Path => "a file path".to_string(),
            Kind::Windows => "`DAYS HH:MM-HH:MM`, several separated by `;`".to_string(),
            Kind::TimeZone => "an IANA name, or `local`".to_string(),
            Kind::Switch => "`on` or `off`".to_string(),
        };
        if self.can_be_off() {
            format!("{range}, or `none`")
        } else {
            range
        }
    }

    /// What a value looks like, for "`x` is not ..." messages; `example` is the setting's.
    pub fn expected(self, example: &str) -> String {
        let what = match self {
            Kind::Duration { .. } => "a duration".to_string(),
            Kind::Count { unit, .. } => format!("a whole number of {unit}"),
            Kind::Rate { .. } => "rows per second".to_string(),
            Kind::Number { .. } => "a number".to_string(),
            Kind::Factor { .. } => "a multiple".to_string(),
            Kind::Percent { .. } => "a percentage".to_string(),
            Kind::Workers { .. } => "a number of workers".to_string(),
            Kind::Query => "an SQL query returning one number (> 0 throttles)".to_string(),
            Kind::Path => "a file path (its existence throttles)".to_string(),
            Kind::Windows => format!("low-traffic windows: {}", crate::schedule::FORM),
            Kind::TimeZone => "an IANA time zone name or `local`".to_string(),
            Kind::Switch => "`on` or `off`".to_string(),
        };
        let range = match self {
            Kind::Query | Kind::Path | Kind::Windows | Kind::TimeZone | Kind::Switch => {
                String::new()
            }
            Kind::Workers { max } => format!(" (1–{max}, or `auto`)"),
            _ => {
                let range = self.range();
                format!(" ({})", range.strip_suffix(", or `none`").unwrap_or(&range))
            }
        };
        let off = if self.can_be_off() {
            ", or `none` to turn it off"
        } else {
            ""
        };
        format!("{what}{range}, e.g. `{example}`{off}")
    }

    /// Reads a value from its text; None when it is not of this kind or out of range.
    pub fn parse(self, text: &str) -> Option<Value> {
        let text = text.trim();
        if let Kind::Workers { max } = self {
            // `auto` is a value of its own here, not "off": the engine chooses the count.
            return Some(Value::Count(match text.eq_ignore_ascii_case("auto") {
                true => None,
                false => Some(parse_count(text).filter(|n| (1..=max).contains(n))?),
            }));
        }
        match self {
            Kind::TimeZone => {
                return Some(Value::Text(match is_local(text) {
                    true => None,
                    false => Some(crate::schedule::canonical_name(text).ok()?),
                }))
            }
            Kind::Switch => return parse_switch(text).map(Value::Switch),
            _ => {}
        }
        let off = is_none(text);
        if off && !self.can_be_off() {
            return None;
        }
        Some(match self {
            Kind::Duration { min, max, .. } => Value::Duration(match off {
                true => None,
                false => Some(parse_duration(text).filter(|d| (min..=max).contains(d))?),
            }),
            Kind::Count { min, max, .. } => Value::Count(match off {
                true => None,
                false => Some(parse_count(text).filter(|n| (min..=max).contains(n))?),
            }),
            Kind::Rate { max, .. } => Value::Number(match off {
                true => None,
                false => Some(
                    parse_number(text.strip_suffix("/s").unwrap_or(text))
                        .filter(|r| *r > 0.0 && *r <= max)?,
                ),
            }),
            Kind::Number { min, max } => Value::Number(Some(
                parse_number(text).filter(|r| (min..=max).contains(r))?,
            )),
            Kind::Factor {
                min,
                above_min,
                max,
                ..
            } => Value::Number(match off {
                true => None,
                false => {
                    let number = text
                        .strip_suffix(['x', 'X', '×'])
                        .unwrap_or(text)
                        .trim_end();
                    Some(
                        parse_number(number)
                            .filter(|f| (min..=max).contains(f) && !(above_min && *f <= min))?,
                    )
                }
            }),
            Kind::Percent { min, max, .. } => Value::Number(match off {
                true => None,
                false => Some(
                    parse_number(text.strip_suffix('%').unwrap_or(text).trim_end())
                        .filter(|p| (min..=max).contains(p))?,
                ),
            }),
            Kind::Query => Value::Text((!off).then(|| text.to_string())),
            Kind::Path => Value::Path((!off).then(|| PathBuf::from(text))),
            Kind::Windows => Value::Text(match off {
                true => None,
                false => Some(crate::schedule::windows_text(
                    &crate::schedule::parse_windows(text).ok()?,
                )),
            }),
            // Read above, before `none` means anything.
            Kind::Workers { .. } | Kind::TimeZone | Kind::Switch => return None,
        })
    }

    /// The text of a value of this kind, in the form [`Kind::parse`] reads back.
    pub fn text(self, value: &Value) -> String {
        let none = || "none".to_string();
        match (self, value) {
            (Kind::TimeZone, Value::Text(t)) => t.clone().unwrap_or_else(|| "local".to_string()),
            (_, Value::Switch(on)) => if *on { "on" } else { "off" }.to_string(),
            (Kind::Workers { .. }, Value::Count(n)) => {
                n.map_or_else(|| "auto".to_string(), |n| n.to_string())
            }
            (_, Value::Duration(d)) => d.map_or_else(none, duration_text),
            (_, Value::Count(n)) => n.map_or_else(none, |n| n.to_string()),
            (Kind::Rate { .. }, Value::Number(r)) => r.map_or_else(none, |r| format!("{r}/s")),
            (Kind::Factor { .. }, Value::Number(f)) => f.map_or_else(none, |f| format!("{f}x")),
            (Kind::Percent { .. }, Value::Number(p)) => p.map_or_else(none, |p| format!("{p}%")),
            (_, Value::Number(r)) => r.map_or_else(none, |r| r.to_string()),
            (_, Value::Text(t)) => t.clone().unwrap_or_else(none),
            (_, Value::Path(p)) => p.as_ref().map_or_else(none, |p| p.display().to_string()),
        }
    }
}

/// `none`, `off` and `unlimited` (any case), or nothing at all, mean "no value".
pub(crate) fn is_none(text: &str) -> bool {
    let none = ["none", "off", "unlimited"];
    text.is_empty() || none.iter().any(|word| text.eq_ignore_ascii_case(word))
}

/// `local` (or nothing, or `system`): the system's time zone.
pub(crate) fn is_local(text: &str) -> bool {
    text.is_empty()
        || ["local", "system"]
            .iter()
            .any(|w| text.eq_ignore_ascii_case(w))
}

fn parse_switch(text: &str) -> Option<bool> {
    let on = ["on", "true", "yes"];
    let off = ["off", "false", "no"];
    if on.iter().any(|w| text.eq_ignore_ascii_case(w)) {
        Some(true)
    } else if off.iter().any(|w| text.eq_ignore_ascii_case(w)) {
        Some(false)
    } else {
        None
    }
}

pub(crate) fn parse_number(text: &str) -> Option<f64> {
    let value: f64 = text.trim().replace('_', "").parse().ok()?;
    value.is_finite().then_some(value)
}

/// A whole number: digits, optionally grouped with `_` or `,` (`100_000`).
fn parse_count(text: &str) -> Option<u64> {
    let digits: String = text.chars().filter(|c| *c != '_' && *c != ',').collect();
    digits.parse::<u64>().ok()
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

/// The shortest exact text `parse_duration` reads back: `200ms`, `1.5s`, `2m`.
pub(crate) fn duration_text(d: Duration) -> String {
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

/// A number as people write it in a range: `1000000000`, `0.5`.
fn number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() >= 10_000.0 {
        crate::format::thousands(n as u64)
    } else {
        n.to_string()
    }
}
