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

/// The system's clock, moved ahead by however far its owner has advanced it: for the demo,
/// which shows what happens once a card's printed expiry has passed without waiting a day for
/// it. Time runs on as usual between advances.
#[derive(Debug, Clone, Default)]
pub struct AdvancedClock(Arc<Mutex<TimeDelta>>);

impl AdvancedClock {
    /// Moves the clock (and every copy of it) ahead by `by`; never back, so the records it
    /// times stay in order.
    pub fn advance(&self, by: std::time::Duration) {
        let by = TimeDelta::from_std(by).expect("an advance within chrono's range");
        *self.0.lock().expect("clock lock") += by;
    }
}

impl Clock for AdvancedClock {
    fn now(&self) -> DateTime<Utc> {
        SystemClock.now() + *self.0.lock().expect("clock lock")
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
    fn an_advanced_clock_runs_ahead_of_the_system_clock_by_what_it_was_told() {
        let clock = AdvancedClock::default();
        let copy = clock.clone();
        clock.advance(std::time::Duration::from_secs(25 * 3_600));
        // Read before the system clock, so it can only be a little less than 25 hours ahead.
        let ahead = copy.now() - SystemClock.now();
        assert!(
            ahead > TimeDelta::hours(25) - TimeDelta::seconds(5),
            "{ahead}"
        );
        assert!(ahead <= TimeDelta::hours(25), "{ahead}");
    }

    #[test]
    fn the_system_clock_keeps_whole_microseconds() {
        assert_eq!(SystemClock.now().timestamp_subsec_nanos() % 1_000, 0);
    }
}
