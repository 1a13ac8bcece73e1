//! How many rows a listing may return: a user supplies it, so it has a ceiling.

use serde::Serialize;

use crate::error::{Classify, Kind};

/// Most rows one listing or page returns: bounds the memory and time of any read a caller can
/// ask for, and is far more than a person reads.
pub const PAGE_ROWS_MAX: u32 = 5_000;

/// A row count for one page: 1 to [`PAGE_ROWS_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PageRows(u32);

/// Why a row count was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a page holds 1 to {PAGE_ROWS_MAX} rows; {0} were asked for")]
pub struct PageRowsError(pub u64);

impl PageRows {
    /// The largest page.
    pub const MAX: PageRows = PageRows(PAGE_ROWS_MAX);

    /// Parses a requested row count.
    pub fn new(rows: u64) -> Result<PageRows, PageRowsError> {
        match u32::try_from(rows) {
            Ok(n @ 1..=PAGE_ROWS_MAX) => Ok(PageRows(n)),
            _ => Err(PageRowsError(rows)),
        }
    }

    /// The count.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Classify for PageRowsError {
    fn code(&self) -> &'static str {
        "page.bad_rows"
    }

    fn kind(&self) -> Kind {
        Kind::Invalid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_holds_one_to_the_maximum_rows() {
        assert_eq!(PageRows::new(1).unwrap().get(), 1);
        assert_eq!(PageRows::new(5_000).unwrap(), PageRows::MAX);
        for rows in [0, 5_001, u64::MAX] {
            assert_eq!(PageRows::new(rows), Err(PageRowsError(rows)));
        }
    }
}
