//! When a scheduled job is due: a six-field cron expression read on the wall clock of an IANA
//! time zone, and the periods it defines.
//!
//! The cron crate, asked for ticks in a zone with daylight saving time, skips a wall-clock time
//! that does not exist on the spring-forward day and yields one twice on the fall-back day. A
//! period here is a wall-clock tick instead: ticks are computed on the naive local clock and
//! each resolved to one instant, the earlier one where the clock repeats, and the same time an
//! hour on where the clock skipped it (02:30 becomes 03:30 when clocks jump from 02:00 to
//! 03:00). Ticks that resolve to the same instant are one period, so a daily job fires once on
//! a 23-hour and on a 25-hour day, and an hourly one 23 times on the short day and 24 on the
//! long one (the repeated hour is one period of the wall clock).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The most periods one pass of the scheduler catches up: a year of a daily job. A runner down
/// longer than that is a problem for an operator, not a loop of thousands of runs.
pub const CATCH_UP_PERIODS_MAX: usize = 366;

/// What a scheduled job does about periods missed while no runner was up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Runs every missed period in order, oldest first, each as of its own tick (settlement:
    /// every business day is closed).
    Each,
    /// Runs once, as of now (expiry, purge, seal: the newest run covers the missed ones).
    Latest,
}

impl CatchUp {
    /// The name definitions use.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Each => "each",
            CatchUp::Latest => "latest",
        }
    }
}

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not a six- or seven-field cron expression.
    #[error(
        "{0:?} is not a cron expression of six fields, seconds first, such as \"0 30 1 * * *\""
    )]
    Cron(String),
    /// Not an IANA time zone name.
    #[error("{0:?} is not an IANA time zone such as \"America/New_York\"")]
    TimeZone(String),
}

/// A cron expression on the wall clock of a time zone.
#[derive(Clone)]
pub struct Schedule {
    cron: cron::Schedule,
    zone: Tz,
    text: String,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({} in {})", self.text, self.zone)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.zone == other.zone
    }
}

impl Eq for Schedule {}

impl Schedule {
    /// Parses a cron expression (six fields, seconds first) and an IANA zone name.
    pub fn parse(cron: &str, zone: &str) -> Result<Schedule, ScheduleError> {
        let text = cron.trim().to_string();
        Ok(Schedule {
            cron: cron::Schedule::from_str(&text).map_err(|_| ScheduleError::Cron(text.clone()))?,
            zone: Tz::from_str(zone.trim()).map_err(|_| ScheduleError::TimeZone(zone.into()))?,
            text,
        })
    }

    /// The time zone its wall clock is read in.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The periods whose instant is after `after` and at or before `until`, oldest first; at
    /// most `limit` of them, the newest ones when there are more. Walks back from `until`, so
    /// the work is bounded by `limit` however long ago `after` was.
    pub fn periods(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut found: Vec<_> = self
            .instants_back_from(until)
            .take_while(|at| *at > after)
            .take(limit)
            .collect();
        found.reverse();
        found
    }

    /// The newest period at or before `until`.
    pub fn latest(&self, until: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.instants_back_from(until).next()
    }

    /// The first period after `after`.
    pub fn next(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Start a few hours early on the naive clock: around a transition the naive time of
        // `after` can sit an hour away from the ticks that resolve just after it.
        let start = after.with_timezone(&self.zone).naive_local() - TimeDelta::hours(3);
        self.cron
            .after(&start.and_utc())
            .filter_map(|naive| wall_clock_instant(self.zone, naive.naive_utc()))
            .find(|at| *at > after)
    }

    /// The period instants at or before `until`, newest first, each once.
    fn instants_back_from(&self, until: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        // Start a few hours late on the naive clock, for the same reason as [`Schedule::next`].
        let start = until.with_timezone(&self.zone).naive_local() + TimeDelta::hours(3);
        let mut newer: Option<DateTime<Utc>> = None;
        self.cron
            .after(&start.and_utc())
            .rev()
            .filter_map(move |naive| {
                let at = wall_clock_instant(self.zone, naive.naive_utc())?;
                // Two wall-clock ticks on one instant (a skipped hour) are one period.
                let fresh = at <= until && newer.is_none_or(|n| at < n);
                fresh.then(|| {
                    newer = Some(at);
                    at
                })
            })
    }

    /// `at` on this schedule's wall clock, for people: `2026-11-01 01:30 EDT`.
    pub fn local(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.zone)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.text, self.zone)
    }
}

/// The instant a wall-clock time of `zone` stands for: the earlier where the clock repeats it,
/// and where the clock skipped it, the instant it would be under the offset before the gap.
pub fn wall_clock_instant(zone: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(at) => Some(at.to_utc()),
        LocalResult::Ambiguous(earlier, _) => Some(earlier.to_utc()),
        LocalResult::None => {
            // No gap lasts three hours; the offset then is the one the gap interrupted.
            let before = zone
                .from_local_datetime(&(naive - TimeDelta::hours(3)))
                .earliest()?;
            let offset = i64::from(before.offset().fix().local_minus_utc());
            Some((naive - TimeDelta::seconds(offset)).and_utc())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn local(schedule: &Schedule, from: &str, to: &str) -> Vec<String> {
        schedule
            .periods(at(from), at(to), 1000)
            .into_iter()
            .map(|t| schedule.local(t))
            .collect()
    }

    #[test]
    fn a_nightly_job_fires_once_on_the_23_and_the_25_hour_day() {
        // 2026 in New York: clocks spring forward on 8 March, fall back on 1 November.
        let nightly = Schedule::parse("0 30 2 * * *", "America/New_York").unwrap();
        assert_eq!(
            local(&nightly, "2026-03-07T12:00:00Z", "2026-03-09T12:00:00Z"),
            ["2026-03-08 03:30:00 EDT", "2026-03-09 02:30:00 EDT"],
            "02:30 does not exist on 8 March: it runs at 03:30, once"
        );
        let early = Schedule::parse("0 30 1 * * *", "America/New_York").unwrap();
        assert_eq!(
            local(&early, "2026-10-31T12:00:00Z", "2026-11-02T12:00:00Z"),
            ["2026-11-01 01:30:00 EDT", "2026-11-02 01:30:00 EST"],
            "01:30 happens twice on 1 November: it runs at the first, once"
        );
    }

    #[test]
    fn an_hourly_job_fires_once_per_wall_clock_hour_on_the_short_and_long_days() {
        let hourly = Schedule::parse("0 0 * * * *", "Europe/Berlin").unwrap();
        // Local midnight to midnight: 29 March 2026 (CET to CEST), 25 October (back).
        let spring = hourly.periods(at("2026-03-28T23:00:00Z"), at("2026-03-29T22:00:00Z"), 100);
        assert_eq!(spring.len(), 23);
        let autumn = hourly.periods(at("2026-10-24T22:00:00Z"), at("2026-10-25T23:00:00Z"), 100);
        assert_eq!(
            autumn.len(),
            24,
            "02:00 local is one period, though the hour repeats"
        );
        assert!(autumn.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn periods_are_oldest_first_and_the_limit_keeps_the_newest() {
        let daily = Schedule::parse("0 0 6 * * *", "UTC").unwrap();
        let all = daily.periods(at("2026-01-01T00:00:00Z"), at("2026-01-05T12:00:00Z"), 10);
        assert_eq!(all.len(), 5);
        assert_eq!(all[0], at("2026-01-01T06:00:00Z"));
        let newest = daily.periods(at("2026-01-01T00:00:00Z"), at("2026-01-05T12:00:00Z"), 2);
        assert_eq!(
            newest,
            [at("2026-01-04T06:00:00Z"), at("2026-01-05T06:00:00Z")]
        );
        // A period exactly at `after` is not after it; one exactly at `until` is due.
        let edge = daily.periods(at("2026-01-01T06:00:00Z"), at("2026-01-02T06:00:00Z"), 10);
        assert_eq!(edge, [at("2026-01-02T06:00:00Z")]);
        assert_eq!(
            daily.next(at("2026-01-02T06:00:00Z")),
            Some(at("2026-01-03T06:00:00Z"))
        );
        assert_eq!(
            daily.latest(at("2026-01-02T05:59:59Z")),
            Some(at("2026-01-01T06:00:00Z"))
        );
        // Years of a per-second schedule cost no more than the limit.
        let every_second = Schedule::parse("* * * * * *", "UTC").unwrap();
        let recent =
            every_second.periods(at("2000-01-01T00:00:00Z"), at("2026-01-01T00:00:00Z"), 3);
        assert_eq!(recent.last(), Some(&at("2026-01-01T00:00:00Z")));
        assert_eq!(recent.len(), 3);
    }

    #[test]
    fn five_fields_and_unknown_zones_are_refused() {
        assert!(matches!(
            Schedule::parse("0 2 * * *", "UTC"),
            Err(ScheduleError::Cron(_))
        ));
        assert!(matches!(
            Schedule::parse("0 0 2 * * *", "Mars/Olympus"),
            Err(ScheduleError::TimeZone(_))
        ));
    }
}
