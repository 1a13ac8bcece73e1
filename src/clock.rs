//! The one place tender reads the time. Services take a [`Clock`], so tests can fix it; every
//! timestamp is truncated to whole microseconds, which both databases store exactly.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, to the microsecond.
    fn now(&self) -> DateTime<Utc>;
}

/// The shared handle services hold.
pub type SharedClock = Arc<dyn Clock>;

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// A shared system clock.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one call the lint points everyone else here for
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}

/// A clock that says what it is told: for tests of anything time decides.
#[derive(Debug, Clone)]
pub struct FixedClock(Arc<Mutex<DateTime<Utc>>>);

impl FixedClock {
    /// A clock stopped at `at` (truncated to microseconds).
    pub fn at(at: DateTime<Utc>) -> FixedClock {
        FixedClock(Arc::new(Mutex::new(at.trunc_subsecs(6))))
    }

    /// Moves the clock by `by`.
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.0.lock().expect("clock lock");
        *now += by;
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().expect("clock lock") = at.trunc_subsecs(6);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_clock_moves_only_when_told() {
        let start = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = FixedClock::at(start);
        assert_eq!(clock.now().timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(clock.now(), clock.now());
        clock.advance(TimeDelta::days(1));
        assert_eq!(clock.now() - start.trunc_subsecs(6), TimeDelta::days(1));
    }

    #[test]
    fn the_system_clock_keeps_whole_microseconds() {
        assert_eq!(SystemClock.now().timestamp_subsec_nanos() % 1_000, 0);
    }
}
