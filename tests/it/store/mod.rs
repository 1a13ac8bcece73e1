//! Contract suites, one per repository trait: what each step promises, run on both backends
//! through the `Store` seam, with no service in between.

mod audit;
mod batch;
mod card;
mod outbox;
mod retailer;

use chrono::{DateTime, Utc};
use tender::domain::{CommissionRate, NewRetailer, RetailerName};

fn acme() -> NewRetailer {
    NewRetailer {
        name: RetailerName::parse("Acme").unwrap(),
        commission: CommissionRate::parse_percent("2.5").unwrap(),
    }
}

fn at() -> DateTime<Utc> {
    crate::helpers::epoch()
}

fn rows(n: u64) -> tender::domain::PageRows {
    tender::domain::PageRows::new(n).unwrap()
}
