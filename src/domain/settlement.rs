//! Settlement's values: the business date a run closes and the instants that bound it, and
//! the rule that keeps report cells from running as spreadsheet formulas.

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;

use super::schedule::wall_clock_instant;

/// The earliest business date tender settles: before it no card was ever sold.
const FIRST_DATE: (i32, u32, u32) = (2000, 1, 1);
/// The latest: far enough for any real day, near enough that its midnight is representable.
const LAST_DATE: (i32, u32, u32) = (9998, 12, 31);

/// Why a business date was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a business date: write it as YYYY-MM-DD, from 2000-01-01 on")]
pub struct BusinessDateError(pub String);

/// A business day of the business time zone: what one settlement closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BusinessDate(NaiveDate);

impl BusinessDate {
    /// Parses `YYYY-MM-DD` (nothing else: no time, no week dates).
    pub fn parse(text: &str) -> Result<BusinessDate, BusinessDateError> {
        let bad = || BusinessDateError(text.chars().take(20).collect());
        let trimmed = text.trim();
        if trimmed.len() != 10 {
            return Err(bad());
        }
        let date = NaiveDate::parse_from_str(trimmed, "%Y-%m-%d").map_err(|_| bad())?;
        BusinessDate::new(date).ok_or_else(bad)
    }

    /// The date, where it is in tender's range.
    pub fn new(date: NaiveDate) -> Option<BusinessDate> {
        let (y, m, d) = FIRST_DATE;
        let (ly, lm, ld) = LAST_DATE;
        let first = NaiveDate::from_ymd_opt(y, m, d)?;
        let last = NaiveDate::from_ymd_opt(ly, lm, ld)?;
        (first..=last).contains(&date).then_some(BusinessDate(date))
    }

    /// The business date `at` falls in, in `zone`.
    pub fn of(at: DateTime<Utc>, zone: Tz) -> Option<BusinessDate> {
        BusinessDate::new(at.with_timezone(&zone).date_naive())
    }

    /// The calendar date.
    pub fn date(self) -> NaiveDate {
        self.0
    }

    /// The day before, where it is in range.
    pub fn previous(self) -> Option<BusinessDate> {
        self.0.pred_opt().and_then(BusinessDate::new)
    }

    /// The day after, where it is in range.
    pub fn next(self) -> Option<BusinessDate> {
        self.0.succ_opt().and_then(BusinessDate::new)
    }

    /// The instant the day starts in `zone`: its midnight, or where the clock skips midnight,
    /// the end of the gap (as schedules resolve a skipped time).
    pub fn start(self, zone: Tz) -> DateTime<Utc> {
        wall_clock_instant(zone, self.0.and_time(NaiveTime::MIN))
            .expect("a date in range has a midnight in every zone")
    }

    /// The day's cut-off: the start of the next day. Entries recorded from [`Self::start`] up
    /// to (not including) this instant belong to the day.
    pub fn cutoff(self, zone: Tz) -> DateTime<Utc> {
        let next = self.0.succ_opt().expect("a date in range has a next day");
        wall_clock_instant(zone, next.and_time(NaiveTime::MIN))
            .expect("a date in range has a midnight in every zone")
    }
}

impl serde::Serialize for BusinessDate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for BusinessDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

/// A report cell as a spreadsheet may safely open it: a plain decimal number
/// (`-?[0-9]+(\.[0-9]+)?`) stays as it is, so amounts, negative ones too, stay numbers; any
/// other text that a spreadsheet would read as a formula (it begins with `=`, `+`, `-`, `@`, a
/// tab or a carriage return) gets a leading single quote, which shows and runs nothing.
pub fn report_cell(text: &str) -> std::borrow::Cow<'_, str> {
    if is_plain_number(text) {
        return text.into();
    }
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}").into(),
        _ => text.into(),
    }
}

/// Whether `text` is `-?[0-9]+(\.[0-9]+)?`.
fn is_plain_number(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (digits, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    all_digits(whole) && fraction.is_none_or(all_digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_business_date_is_a_plain_calendar_date_in_range() {
        assert_eq!(
            BusinessDate::parse("2026-12-04").unwrap().to_string(),
            "2026-12-04"
        );
        for bad in [
            "",
            "2026-12-4",
            "2026-13-01",
            "2026-02-30",
            "1999-12-31",
            "2026-12-04T00:00:00Z",
            "04/12/2026",
            "+2026-12-04",
        ] {
            assert!(BusinessDate::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_day_runs_from_midnight_to_midnight_of_its_zone_across_daylight_saving() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let at = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
        // Spring forward: the day is 23 hours long.
        let spring = BusinessDate::parse("2026-03-08").unwrap();
        assert_eq!(spring.start(ny), at("2026-03-08T05:00:00Z"));
        assert_eq!(spring.cutoff(ny), at("2026-03-09T04:00:00Z"));
        // Fall back: 25 hours.
        let fall = BusinessDate::parse("2026-11-01").unwrap();
        assert_eq!(fall.start(ny), at("2026-11-01T04:00:00Z"));
        assert_eq!(fall.cutoff(ny), at("2026-11-02T05:00:00Z"));
        assert_eq!(BusinessDate::of(at("2026-11-02T04:59:59Z"), ny), Some(fall));
        // Where the clock skips midnight (Santiago), the day starts when the gap ends.
        let santiago: Tz = "America/Santiago".parse().unwrap();
        let skipped = BusinessDate::parse("2026-09-06").unwrap();
        assert_eq!(skipped.start(santiago), at("2026-09-06T04:00:00Z"));
        assert_eq!(
            skipped.previous().unwrap().cutoff(santiago),
            skipped.start(santiago)
        );
    }

    #[test]
    fn cells_that_a_spreadsheet_would_run_are_quoted_and_numbers_are_not() {
        for (cell, shown) in [
            ("12.50", "12.50"),
            ("-12.50", "-12.50"),
            ("0", "0"),
            ("-7", "-7"),
            ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"),
            ("+1+1", "'+1+1"),
            ("-1+1", "'-1+1"),
            ("-", "'-"),
            ("-.5", "'-.5"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("1e5", "1e5"),
            ("Acme = best", "Acme = best"),
            ("", ""),
        ] {
            assert_eq!(report_cell(cell), shown, "{cell:?}");
        }
    }
}
