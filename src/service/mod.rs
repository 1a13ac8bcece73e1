//! Use cases. Each opens its own transaction, calls repository steps on it, appends its audit
//! records and commits; a unit of work that fails as transient (the database busy, a
//! serialization failure) runs again whole. The HTTP API, the CLI and the jobs are thin callers
//! of these, and reads go through them too.

/// Runs a unit of work (a future returning a `Result` classified by `Classify`) again while
/// it fails as transient and runs remain; evaluates to its last outcome.
macro_rules! rerun {
    ($body:expr) => {{
        let mut rerun = $crate::service::Rerun::new();
        loop {
            match $body.await {
                Err(e) if rerun.after(&e).await => {}
                done => break done,
            }
        }
    }};
}

pub mod api_keys;
pub mod batches;
pub mod cards;
pub mod expiry;
pub mod generation;
pub mod idempotency;
pub mod keys;
pub mod ledger;
pub mod metrics;
pub mod printer_check;
pub mod redemption;
pub mod retailers;
pub mod schedules;
pub mod sessions;
pub mod settlement;
pub mod tradein;
pub mod trail;

use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::SharedClock;
use crate::config::{
    ApprovalThreshold, BusinessTimeZone, IssuerState, PublicUrl, RedeemLimits, TradeInDailyAmount,
};
use crate::domain::Jurisdiction;
use crate::error::{Classify, Kind};
use crate::store::{OutboxJob, Store};

/// Most runs of one unit of work while the database keeps answering "busy".
pub const UNIT_RUNS_MAX: u32 = 5;
/// The wait before the second run; it doubles for each further run, plus up to as much again
/// at random, so writers that collided do not collide again in step.
const UNIT_BACKOFF_FIRST: Duration = Duration::from_millis(20);

/// What the use cases share: the store, the clock and the key rings the process loaded.
#[derive(Debug, Clone)]
pub struct Services<S> {
    store: S,
    clock: SharedClock,
    keys: keys::Keychains,
    export_dir: PathBuf,
    approval_over: ApprovalThreshold,
    redeem_limits: RedeemLimits,
    redeem_generic: bool,
    business_zone: BusinessTimeZone,
    tradein_daily: TradeInDailyAmount,
    issuer_state: Jurisdiction,
    public_url: PublicUrl,
    metrics: std::sync::Arc<metrics::Metrics>,
}

impl<S: Store> Services<S> {
    /// Use cases over `store`, timed by `clock`, with the rings in `keys` (each transaction
    /// uses the keys the database names), writing printer files to `export_dir`.
    pub fn new(store: S, clock: SharedClock, keys: keys::Keychains, export_dir: PathBuf) -> Self {
        Services {
            store,
            clock,
            keys,
            export_dir,
            approval_over: ApprovalThreshold::default(),
            redeem_limits: RedeemLimits::default(),
            redeem_generic: false,
            business_zone: BusinessTimeZone::default(),
            tradein_daily: TradeInDailyAmount::default(),
            issuer_state: IssuerState::default().get().clone(),
            public_url: PublicUrl::default(),
            metrics: std::sync::Arc::default(),
        }
    }

    /// The same, with adjustments above `threshold` waiting for a second person.
    pub fn with_approval_over(mut self, threshold: ApprovalThreshold) -> Self {
        self.approval_over = threshold;
        self
    }

    /// The same, with `limits` on redemption attempts.
    pub fn with_redeem_limits(mut self, limits: RedeemLimits) -> Self {
        self.redeem_limits = limits;
        self
    }

    /// The same, answering every refusal a customer can meet with one generic code when
    /// `generic`.
    pub fn with_redeem_generic(mut self, generic: bool) -> Self {
        self.redeem_generic = generic;
        self
    }

    /// The same, counting per-day amounts in business days of `zone`, and holding a
    /// warehouse's trade-in credits past `daily` a business day for finance.
    pub fn with_trade_in_rules(
        mut self,
        zone: BusinessTimeZone,
        daily: TradeInDailyAmount,
    ) -> Self {
        self.business_zone = zone;
        self.tradein_daily = daily;
        self
    }

    /// The same, owing expired cards' funds to `state` (the issuer's state of incorporation)
    /// where the purchaser's state is unknown or claims none.
    pub fn with_issuer_state(mut self, state: Jurisdiction) -> Self {
        self.issuer_state = state;
        self
    }

    /// The same, building sign-in links on `url`.
    pub fn with_public_url(mut self, url: PublicUrl) -> Self {
        self.public_url = url;
        self
    }

    /// This process's counters, for the metrics endpoint and tests.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.metrics
    }

    /// Every metric in the Prometheus text format, for `GET /metrics`: this process's
    /// counters, and the database pool's use and the job runner's backlog as they are now.
    pub async fn scrape(&self) -> String {
        metrics::scrape(&self.metrics, &self.store).await
    }

    /// Redeeming codes into account balances, and the attempt log.
    pub fn redemption(&self) -> redemption::Redemption<'_, S> {
        redemption::Redemption(self)
    }

    /// Sign-in links and the customer page's sessions.
    pub fn sessions(&self) -> sessions::Sessions<'_, S> {
        sessions::Sessions(self)
    }

    /// Accounts, spends, refunds, adjustments, history and `ledger check`.
    pub fn ledger(&self) -> ledger::Ledger<'_, S> {
        ledger::Ledger(self)
    }

    /// Trade-in valuations: intake by row and by file, posting, approvals and reports.
    pub fn trade_ins(&self) -> tradein::TradeIns<'_, S> {
        tradein::TradeIns(self)
    }

    /// Stores, and cards at the point of sale: activation, void, block, exposure, support view.
    pub fn cards(&self) -> cards::Cards<'_, S> {
        cards::Cards(self)
    }

    /// Creating, listing, revoking and authenticating API keys.
    pub fn api_keys(&self) -> api_keys::ApiKeys<'_, S> {
        api_keys::ApiKeys(self)
    }

    /// The HTTP API's idempotency records: claims, stored answers, purges.
    pub fn idempotency(&self) -> idempotency::Idempotency<'_, S> {
        idempotency::Idempotency(self)
    }

    /// Adding and listing retailers.
    pub fn retailers(&self) -> retailers::Retailers<'_, S> {
        retailers::Retailers(self)
    }

    /// Requesting and reading batches.
    pub fn batches(&self) -> batches::Batches<'_, S> {
        batches::Batches(self)
    }

    /// Generating a batch's cards: the generation job's body.
    pub fn generation(&self) -> generation::Generation<'_, S> {
        generation::Generation(self)
    }

    /// Checking a printer file against the stored digests.
    pub fn printer_check(&self) -> printer_check::PrinterCheck<'_, S> {
        printer_check::PrinterCheck(self)
    }

    /// Expiring cards whose funds-expiry passed, and what will expire.
    pub fn expiry(&self) -> expiry::Expiry<'_, S> {
        expiry::Expiry(self)
    }

    /// Scheduled job runs: the definition in force, period claims, leases and the record.
    pub fn schedules(&self) -> schedules::Schedules<'_, S> {
        schedules::Schedules(self)
    }

    /// Closing business days: reconciliation, retailer statements, signed reports; and the
    /// payments retailers make.
    pub fn settlement(&self) -> settlement::Settlement<'_, S> {
        settlement::Settlement(self)
    }

    /// Verifying and sealing the audit trail.
    pub fn trail(&self) -> trail::Trail<'_, S> {
        trail::Trail(self)
    }

    /// The store underneath.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The clock every use case reads.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

/// A job's payload: ids only, written to the outbox in the transaction that causes the job.
pub trait JobPayload: Serialize + DeserializeOwned {
    /// The job's name, as in `jobs/<name>.toml`.
    const JOB: &'static str;

    /// The payload as an outbox row.
    fn outbox(&self) -> OutboxJob {
        OutboxJob {
            job: Self::JOB,
            payload: serde_json::to_string(self).expect("job payloads serialise to JSON"),
        }
    }
}

/// Decides whether a failed unit of work runs again, and waits before it does.
#[derive(Debug)]
pub(crate) struct Rerun {
    runs: u32,
}

impl Rerun {
    pub(crate) fn new() -> Rerun {
        Rerun { runs: 1 }
    }

    /// After a failed run: `true` (once the backoff has passed) if `error` is transient and
    /// runs remain.
    pub(crate) async fn after(&mut self, error: &impl Classify) -> bool {
        if error.kind() != Kind::Transient || self.runs >= UNIT_RUNS_MAX {
            return false;
        }
        let base = UNIT_BACKOFF_FIRST * 2u32.pow(self.runs - 1);
        let jitter = RandomState::new().hash_one(self.runs) % (base.as_micros() as u64 + 1);
        tracing::debug!(
            code = error.code(),
            run = self.runs,
            "unit of work failed; running it again"
        );
        tokio::time::sleep(base + Duration::from_micros(jitter)).await;
        self.runs += 1;
        true
    }
}
