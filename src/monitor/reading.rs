//! `Reading<T>`: one metric's last good value, when it was read, and why it is not current.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A metric as the sampler last saw it.
///
/// A failed read keeps the previous value (so a screen can still show it, marked stale) and
/// records why it is not current. Consumers that decide something (the throttle) should use
/// [`Reading::current`], which is `None` unless the last read succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading<T> {
    /// The last value read successfully, if any ever was.
    pub value: Option<T>,
    /// When `value` was read.
    pub as_of: Option<DateTime<Utc>>,
    /// Why `value` is not current (stale or unavailable); `None` when the last read succeeded.
    pub problem: Option<String>,
}

impl<T> Default for Reading<T> {
    fn default() -> Self {
        Reading {
            value: None,
            as_of: None,
            problem: Some("not read yet".to_string()),
        }
    }
}

impl<T> Reading<T> {
    /// A value read successfully at `at`.
    pub fn fresh(value: T, at: DateTime<Utc>) -> Self {
        Reading {
            value: Some(value),
            as_of: Some(at),
            problem: None,
        }
    }

    /// A metric that has no value for a reason that is not a failure (e.g. the extension
    /// is not installed, or a rate needs a second sample).
    pub fn unavailable(why: impl Into<String>) -> Self {
        Reading {
            value: None,
            as_of: None,
            problem: Some(why.into()),
        }
    }

    /// The value, only when the last read succeeded.
    pub fn current(&self) -> Option<&T> {
        match self.problem {
            None => self.value.as_ref(),
            Some(_) => None,
        }
    }

    /// True when the last read succeeded.
    pub fn is_fresh(&self) -> bool {
        self.problem.is_none() && self.value.is_some()
    }

    /// Keeps the last good value but marks it stale, saying why.
    pub fn mark_stale(&mut self, why: impl Into<String>) {
        self.problem = Some(why.into());
    }

    /// Seconds since the value was read (None when never read).
    pub fn age_seconds(&self, now: DateTime<Utc>) -> Option<f64> {
        self.as_of
            .map(|at| (now - at).num_milliseconds().max(0) as f64 / 1000.0)
    }

    /// Applies `f` to the value, keeping time and problem.
    pub fn map<U>(&self, f: impl FnOnce(&T) -> U) -> Reading<U> {
        Reading {
            value: self.value.as_ref().map(f),
            as_of: self.as_of,
            problem: self.problem.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_reading_keeps_its_value_but_is_not_current() {
        let at = Utc::now();
        let mut reading = Reading::fresh(42_u64, at);
        assert_eq!(reading.current(), Some(&42));
        reading.mark_stale("connection lost");
        assert_eq!(reading.current(), None);
        assert_eq!(reading.value, Some(42));
        assert_eq!(reading.as_of, Some(at));
        assert!(!reading.is_fresh());
    }

    #[test]
    fn a_reading_never_taken_says_so() {
        let reading: Reading<u64> = Reading::default();
        assert_eq!(reading.problem.as_deref(), Some("not read yet"));
        assert_eq!(reading.age_seconds(Utc::now()), None);
    }
}
