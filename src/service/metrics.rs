//! This process's counters, in the Prometheus text format: what operators graph and alarm on.
//! Each process counts its own; a scraper sums them. Counters only ever grow, so a restart
//! shows as a reset, which Prometheus' `rate()` handles.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Redemption attempts by outcome: `ok` or the refusal's stable code.
    redemptions: Mutex<BTreeMap<&'static str, u64>>,
    /// Attempts refused because their caller's window was full.
    callers_throttled: AtomicU64,
}

impl Metrics {
    /// Counts a redemption attempt's outcome.
    pub(crate) fn redemption(&self, outcome: &'static str) {
        let mut counts = self.redemptions.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(outcome).or_default() += 1;
    }

    /// Counts an attempt refused by its caller's window: the failure-rate alarm's metric.
    pub(crate) fn caller_throttled(&self) {
        self.callers_throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// Attempts so far with this outcome.
    pub fn redemptions(&self, outcome: &str) -> u64 {
        let counts = self.redemptions.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(outcome).copied().unwrap_or(0)
    }

    /// Attempts refused so far because their caller's window was full.
    pub fn callers_throttled(&self) -> u64 {
        self.callers_throttled.load(Ordering::Relaxed)
    }

    /// Every counter in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP tender_redemptions_total Redemption attempts by outcome.\n\
             # TYPE tender_redemptions_total counter\n",
        );
        let counts = self.redemptions.lock().unwrap_or_else(|e| e.into_inner());
        for (outcome, n) in counts.iter() {
            let _ = writeln!(out, "tender_redemptions_total{{outcome=\"{outcome}\"}} {n}");
        }
        drop(counts);
        let _ = write!(
            out,
            "# HELP tender_redeem_caller_throttled_total Redemption attempts refused because \
             their caller's window was full.\n\
             # TYPE tender_redeem_caller_throttled_total counter\n\
             tender_redeem_caller_throttled_total {}\n",
            self.callers_throttled()
        );
        out
    }
}
