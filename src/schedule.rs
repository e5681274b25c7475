//! Low-traffic windows: `Mon-Fri 01:00-05:00`, `Sat,Sun 22:00-06:00` (crossing
//! midnight), `daily 00:00-24:00`, read once and judged in an IANA time zone (DST
//! included: a window is wall-clock time where the database's users live). Pure, apart
//! from [`Clock`], which a test sets by hand so no test ever waits for a real window.
//!
//! The throttle (`engine::throttle`) asks [`Schedule::hold`] before each batch: outside
//! every window it says why and when the next one opens.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// The form of a window, for every error message.
pub const FORM: &str = "the form is `DAYS HH:MM-HH:MM`, e.g. `Mon-Fri 01:00-05:00` or \
                        `Sat,Sun 22:00-06:00` (DAYS: Mon Tue Wed Thu Fri Sat Sun, a range \
                        `Mon-Fri`, a list `Sat,Sun`, or `daily`; an end before the start \
                        crosses midnight; `24:00` ends at midnight)";

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Why a window or a time zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("window `{window}`: {reason}; {FORM}")]
    Window { window: String, reason: String },
    #[error("`{given}` is not an IANA time zone name{hint}")]
    TimeZone { given: String, hint: String },
}

/// One low-traffic window: the days it opens on and its wall-clock times, in minutes
/// after midnight; `end <= start` ends on the next day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Monday first.
    days: [bool; 7],
    start: u16,
    end: u16,
}

impl Window {
    /// Reads `DAYS HH:MM-HH:MM`.
    pub fn parse(text: &str) -> Result<Window, ScheduleError> {
        let text = text.trim();
        let fail = |reason: String| ScheduleError::Window {
            window: text.to_string(),
            reason,
        };
        let (days, times) = match text.rsplit_once(char::is_whitespace) {
            Some((days, times)) => (days.trim(), times.trim()),
            None => return Err(fail("days and times are missing".to_string())),
        };
        let days = parse_days(days).map_err(fail)?;
        let Some((start, end)) = times.split_once('-') else {
            return Err(fail(format!("`{times}` is not a time range `HH:MM-HH:MM`")));
        };
        let start = parse_time(start).map_err(fail)?;
        let end = parse_time(end).map_err(fail)?;
        if start == 24 * 60 {
            return Err(fail("a window cannot start at 24:00".to_string()));
        }
        if start == end {
            return Err(fail(
                "it starts and ends at the same time (a whole day is `00:00-24:00`)".to_string(),
            ));
        }
        Ok(Window { days, start, end })
    }

    fn crosses_midnight(&self) -> bool {
        self.end < self.start
    }

    /// Whether the window is open at `minute` of a day whose weekday is `day` (Monday 0).
    fn open_at(&self, day: usize, minute: u16) -> bool {
        let yesterday = (day + 6) % 7;
        if self.crosses_midnight() {
            (self.days[day] && minute >= self.start) || (self.days[yesterday] && minute < self.end)
        } else {
            self.days[day] && minute >= self.start && minute < self.end
        }
    }
}

/// Reads `Mon-Fri`, `Sat,Sun`, `Mon,Wed-Fri`, `daily`.
fn parse_days(text: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    if text.eq_ignore_ascii_case("daily") || text == "*" {
        return Ok([true; 7]);
    }
    for part in text.split(',').map(str::trim) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (day(a.trim())?, day(b.trim())?),
            None => (day(part)?, day(part)?),
        };
        // `Fri-Mon` wraps over the weekend.
        let mut d = first;
        loop {
            days[d] = true;
            if d == last {
                break;
            }
            d = (d + 1) % 7;
        }
    }
    Ok(days)
}

fn day(text: &str) -> Result<usize, String> {
    let lower = text.to_ascii_lowercase();
    if lower.len() >= 3 {
        if let Some(i) = DAYS
            .iter()
            .position(|d| lower.starts_with(&d.to_ascii_lowercase()))
        {
            // `Monday` and `Mon` alike, but not `Monkey`.
            let full = [
                "monday",
                "tuesday",
                "wednesday",
                "thursday",
                "friday",
                "saturday",
                "sunday",
            ];
            if lower.len() == 3 || full[i] == lower {
                return Ok(i);
            }
        }
    }
    Err(format!("`{text}` is not a day"))
}

/// `HH:MM` (or `H:MM`), 00:00 to 24:00, in minutes.
fn parse_time(text: &str) -> Result<u16, String> {
    let text = text.trim();
    let bad = || format!("`{text}` is not a time `HH:MM` (00:00–24:00)");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl fmt::Display for Window {
    /// The canonical text [`Window::parse`] reads back: `Mon-Fri 01:00-05:00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = if self.days == [true; 7] {
            "daily".to_string()
        } else {
            let mut runs: Vec<String> = Vec::new();
            let mut i = 0;
            while i < 7 {
                if !self.days[i] {
                    i += 1;
                    continue;
                }
                let first = i;
                while i + 1 < 7 && self.days[i + 1] {
                    i += 1;
                }
                runs.push(match i - first {
                    0 => DAYS[first].to_string(),
                    1 => format!("{},{}", DAYS[first], DAYS[i]),
                    _ => format!("{}-{}", DAYS[first], DAYS[i]),
                });
                i += 1;
            }
            runs.join(",")
        };
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{days} {}-{}", hm(self.start), hm(self.end))
    }
}

/// Several windows as one text (`zdm ctl set windows=...`): separated by `;` (a day
/// list already uses `,`).
pub fn parse_windows(text: &str) -> Result<Vec<Window>, ScheduleError> {
    text.split(';')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(Window::parse)
        .collect()
}

/// The text [`parse_windows`] reads back.
pub fn windows_text(windows: &[Window]) -> String {
    windows
        .iter()
        .map(Window::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// An IANA time zone by name (from the database bundled into zdm, so a server without
/// /usr/share/zoneinfo works the same), or why not with the nearest names.
pub fn time_zone(name: &str) -> Result<TimeZone, ScheduleError> {
    let name = name.trim();
    jiff::tz::db().get(name).map_err(|_| {
        let names: Vec<String> = jiff::tz::db().available().map(|n| n.to_string()).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let hint = match crate::suggest::closest(name, &refs) {
            Some(near) => format!("; did you mean `{near}`?"),
            None => "; e.g. `Europe/Zurich`, `America/New_York`, `UTC`".to_string(),
        };
        ScheduleError::TimeZone {
            given: name.to_string(),
            hint,
        }
    })
}

/// The name of a time zone as the database spells it (`europe/zurich` → `Europe/Zurich`).
pub fn canonical_name(name: &str) -> Result<String, ScheduleError> {
    let tz = time_zone(name)?;
    Ok(tz.iana_name().unwrap_or(name.trim()).to_string())
}

/// The windows in a time zone: when the backfill may run.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub windows: Vec<Window>,
    pub tz: TimeZone,
}

impl Schedule {
    /// Whether some window is open at `now`.
    pub fn is_open(&self, now: Timestamp) -> bool {
        let local = now.to_zoned_datetime(self.tz.clone());
        let day = local.weekday().to_monday_zero_offset() as usize;
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        self.windows.iter().any(|w| w.open_at(day, minute))
    }

    /// When the next window opens after `now` (None: no windows at all).
    pub fn next_opening(&self, now: Timestamp) -> Option<Timestamp> {
        let local = now.to_zoned_datetime(self.tz.clone());
        let mut date: Date = local.date();
        let mut best: Option<Timestamp> = None;
        // Every window opens at least once a week; a day more covers one that opens
        // later today a week from now.
        for _ in 0..9 {
            let day = date.weekday().to_monday_zero_offset() as usize;
            for window in &self.windows {
                if !window.days[day] {
                    continue;
                }
                let (h, m) = ((window.start / 60) as i8, (window.start % 60) as i8);
                // A start inside a DST gap opens at the first instant after it.
                let Ok(at) = date.at(h, m, 0, 0).to_zoned_datetime(self.tz.clone()) else {
                    continue;
                };
                let at = at.timestamp();
                if at > now && best.is_none_or(|b| at < b) {
                    best = Some(at);
                }
            }
            if best.is_some() {
                break;
            }
            let Ok(next) = date.tomorrow() else { break };
            date = next;
        }
        best
    }

    /// Whether a throttle reason is (or begins with) this hold.
    pub fn holds(reason: &str) -> bool {
        reason.starts_with(OUTSIDE)
    }

    /// Outside every window: why the backfill holds and when it goes on, e.g. "outside
    /// the low-traffic window; next opens Tue 01:00 (in 3 h 12 min)". None: open.
    pub fn hold(&self, now: Timestamp) -> Option<String> {
        if self.windows.is_empty() || self.is_open(now) {
            return None;
        }
        Some(match self.next_opening(now) {
            Some(at) => {
                let local = at.to_zoned_datetime(self.tz.clone());
                let day = DAYS[local.weekday().to_monday_zero_offset() as usize];
                let wait = Duration::try_from(now.duration_until(at)).unwrap_or_default();
                format!(
                    "{OUTSIDE}; next opens {day} {:02}:{:02} (in {})",
                    local.hour(),
                    local.minute(),
                    wait_text(wait)
                )
            }
            None => OUTSIDE.to_string(),
        })
    }
}

/// How every hold's reason begins (front-ends and the release of the hold look for it).
const OUTSIDE: &str = "outside the low-traffic window";

/// `3 h 12 min`, `45 min`, `2 d 3 h`: minutes rounded up, so a wait is never "0 min".
pub fn wait_text(wait: Duration) -> String {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    let (d, h, m) = (minutes / 1440, minutes % 1440 / 60, minutes % 60);
    match (d, h) {
        (0, 0) => format!("{m} min"),
        (0, _) if m == 0 => format!("{h} h"),
        (0, _) => format!("{h} h {m} min"),
        _ if h == 0 => format!("{d} d"),
        _ => format!("{d} d {h} h"),
    }
}

/// Where "now" comes from: the system clock, or a time a test sets and moves by hand.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<Mutex<Timestamp>>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that stands at `at` until [`Clock::set`] or [`Clock::advance`] moves it
    /// (its clones move with it).
    pub fn manual(at: Timestamp) -> Clock {
        Clock {
            manual: Some(Arc::new(Mutex::new(at))),
        }
    }

    pub fn now(&self) -> Timestamp {
        match &self.manual {
            None => Timestamp::now(),
            Some(at) => *at.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
        }
    }

    /// Moves a manual clock to `at` (the system clock cannot be moved).
    pub fn set(&self, at: Timestamp) {
        if let Some(clock) = &self.manual {
            *clock
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = at;
        }
    }

    pub fn advance(&self, by: Duration) {
        self.set(self.now() + by);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zurich() -> TimeZone {
        time_zone("Europe/Zurich").expect("bundled")
    }

    fn at(text: &str) -> Timestamp {
        // Civil time in Zurich.
        let dt: jiff::civil::DateTime = text.parse().expect("datetime");
        dt.to_zoned_datetime(zurich()).expect("zoned").timestamp()
    }

    fn schedule(windows: &str) -> Schedule {
        Schedule {
            windows: parse_windows(windows).expect("windows"),
            tz: zurich(),
        }
    }

    #[test]
    fn windows_read_and_print_back() {
        for (text, canonical) in [
            ("Mon-Fri 01:00-05:00", "Mon-Fri 01:00-05:00"),
            ("sat,sun 0:00-8:00", "Sat,Sun 00:00-08:00"),
            ("daily 22:00-06:00", "daily 22:00-06:00"),
            ("Fri-Mon 00:00-24:00", "Mon,Fri-Sun 00:00-24:00"),
            ("Monday,Wed-Thu 02:30-03:45", "Mon,Wed,Thu 02:30-03:45"),
        ] {
            let window = Window::parse(text).expect(text);
            assert_eq!(window.to_string(), canonical);
            assert_eq!(Window::parse(canonical), Ok(window));
        }
        let list = parse_windows("Mon-Fri 01:00-05:00; Sat,Sun 00:00-08:00").expect("two");
        assert_eq!(
            windows_text(&list),
            "Mon-Fri 01:00-05:00; Sat,Sun 00:00-08:00"
        );
    }

    #[test]
    fn a_bad_window_says_what_is_wrong_and_the_form() {
        for (text, reason) in [
            ("Mon-Fry 01:00-05:00", "`Fry` is not a day"),
            ("Mon-Fri 1-5", "`1` is not a time `HH:MM`"),
            ("Mon-Fri 01:00-25:00", "`25:00` is not a time"),
            ("Mon-Fri 01:00", "`01:00` is not a time range"),
            ("01:00-05:00", "days and times are missing"),
            ("Mon 03:00-03:00", "it starts and ends at the same time"),
            ("Monkey 03:00-04:00", "`Monkey` is not a day"),
        ] {
            let message = Window::parse(text).expect_err(text).to_string();
            assert!(
                message.starts_with(&format!("window `{text}`: {reason}")),
                "{message}"
            );
            assert!(message.contains("`DAYS HH:MM-HH:MM`"), "{message}");
        }
    }

    #[test]
    fn a_bad_time_zone_suggests_the_nearest_name() {
        assert!(time_zone("Europe/Zurich").is_ok());
        assert!(time_zone("UTC").is_ok());
        // Names are read in any case and written back as the database spells them.
        assert_eq!(
            canonical_name("europe/zurich").as_deref(),
            Ok("Europe/Zurich")
        );
        let message = time_zone("Europe/Zurch").expect_err("typo").to_string();
        assert!(message.contains("`Europe/Zurich`"), "{message}");
        let message = time_zone("CEST+1").expect_err("no such").to_string();
        assert!(message.starts_with("`CEST+1` is not an IANA time zone name"));
    }

    #[test]
    fn open_and_closed_with_the_next_opening() {
        let s = schedule("Mon-Fri 01:00-05:00; Sat,Sun 00:00-08:00");
        // 2026-12-01 is a Tuesday.
        assert!(s.is_open(at("2026-12-01T01:00")));
        assert!(s.is_open(at("2026-12-01T04:59")));
        assert!(!s.is_open(at("2026-12-01T05:00")));
        assert_eq!(
            s.hold(at("2026-12-01T21:48")).as_deref(),
            Some("outside the low-traffic window; next opens Wed 01:00 (in 3 h 12 min)")
        );
        // Friday after the window: Saturday at midnight.
        assert_eq!(
            s.hold(at("2026-12-04T06:00")).as_deref(),
            Some("outside the low-traffic window; next opens Sat 00:00 (in 18 h)")
        );
        // Sunday after its window: Monday 01:00.
        assert_eq!(
            s.hold(at("2026-12-06T08:00")).as_deref(),
            Some("outside the low-traffic window; next opens Mon 01:00 (in 17 h)")
        );
        assert_eq!(s.hold(at("2026-12-06T07:59")), None);
        // No windows: always open.
        assert_eq!(schedule("").hold(at("2026-12-01T12:00")), None);
    }

    #[test]
    fn a_window_crossing_midnight_belongs_to_the_day_it_opens() {
        let s = schedule("Fri 22:00-06:00");
        assert!(s.is_open(at("2026-12-04T22:00")), "Friday night");
        assert!(s.is_open(at("2026-12-05T05:59")), "Saturday morning");
        assert!(!s.is_open(at("2026-12-05T06:00")));
        assert!(
            !s.is_open(at("2026-12-04T05:00")),
            "Friday morning: Thursday's"
        );
        assert_eq!(
            s.hold(at("2026-12-05T06:00")).as_deref(),
            Some("outside the low-traffic window; next opens Fri 22:00 (in 6 d 16 h)")
        );
    }

    #[test]
    fn waits_count_real_time_across_dst_changes() {
        let s = schedule("daily 04:00-05:00");
        // 2026-03-29: Zurich skips 02:00-03:00; from 23:00 the evening before to 04:00
        // is 4 hours, not 5.
        assert_eq!(
            s.hold(at("2026-03-28T23:00")).as_deref(),
            Some("outside the low-traffic window; next opens Sun 04:00 (in 4 h)")
        );
        // 2026-10-25: 02:00-03:00 happens twice: 6 hours.
        assert_eq!(
            s.hold(at("2026-10-24T23:00")).as_deref(),
            Some("outside the low-traffic window; next opens Sun 04:00 (in 6 h)")
        );
        // The window is wall-clock time on both sides of the change.
        assert!(s.is_open(at("2026-03-29T04:30")));
        assert!(s.is_open(at("2026-10-25T04:30")));
        // A window starting inside the skipped hour opens when the clock jumps past it.
        let gap = schedule("Sun 02:30-04:00");
        assert_eq!(
            gap.hold(at("2026-03-29T00:00")).as_deref(),
            Some("outside the low-traffic window; next opens Sun 03:30 (in 2 h 30 min)")
        );
    }

    #[test]
    fn waits_are_rounded_up_to_the_minute() {
        assert_eq!(wait_text(Duration::from_secs(5)), "1 min");
        assert_eq!(wait_text(Duration::from_secs(3600)), "1 h");
        assert_eq!(wait_text(Duration::from_secs(3600 + 61)), "1 h 2 min");
        assert_eq!(wait_text(Duration::from_secs(86_400 * 2 + 3600)), "2 d 1 h");
    }

    #[test]
    fn a_manual_clock_moves_only_by_hand() {
        let start = at("2026-12-01T12:00");
        let clock = Clock::manual(start);
        let other = clock.clone();
        other.advance(Duration::from_secs(60));
        assert_eq!(clock.now(), start + Duration::from_secs(60));
    }
}
