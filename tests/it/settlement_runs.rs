//! Settlement runs, on both backends: how the nightly settlement behaves over many days, under
//! the scheduler, with several runners, and when a runner is killed.
//!
//! - A month of random activity settled day by day. Every business day (in New York time, so
//!   the month crosses the start of daylight saving time) has a random mix, from a fixed seed
//!   that the test prints, of activations (some offline, dated the day before), redemptions,
//!   spends, refunds, voids, support adjustments, trade-in credits and revaluations (down as
//!   claw-backs, past the balance as owed), expiries of cards sold in England with a printed
//!   expiry a few days out, and retailer payments; a few entries are recorded after the
//!   cut-off and before the run. After each cut-off plus the grace the day is settled, and:
//!   it closes; in every currency the roll-forward's closing is its movements from the opening
//!   and equals the balances at the cut-off, which the test also sums from the raw entries
//!   recorded before the cut-off; the day's movements are the liability legs recorded in it;
//!   closing(D) is opening(D+1) in every currency; each retailer statement's closing is the
//!   receivable's entries before the cut-off and closing(D) is opening(D+1); the files verify
//!   against the signed manifest. Afterwards every closed day rerun gives the same bytes (a
//!   rerun compares each file with the stored one of its name, and a currency first used
//!   after a day's cut-off is not that day's), the books check clean and the trail verifies.
//! - Three missed days caught up in order: the settle duty's scheduler, back three days after
//!   its last run, closes the three days in one pass, oldest first (each run as of its own
//!   tick closes the day before it; the seals taken after each close are in date order), and
//!   before that a day whose previous day is open after a closed one is refused as a gap.
//! - Two runners, one run per date: two schedulers over their own connections pass at the
//!   same instants, day after day and after a gap of several days, and two `tender work
//!   --drain` processes start at once: each date is closed once, with one settlement row, one
//!   job run per period and one `settlement.closed` audit record.
//! - A run killed with SIGKILL is completed by the next: a `tender work` whose settle run has
//!   stored the day and waits to seal the trail is killed; once its lease has run out a
//!   second `tender work` takes the run over (its second attempt), the rerun gives the same
//!   bytes, the day is sealed and its files written, and the day is closed exactly once and
//!   verifies. On PostgreSQL a run killed after its claim and before it stored anything (it
//!   waits on the settlement table the test holds locked) is completed the same way, the
//!   second attempt closing the day itself.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveTime, SecondsFormat, TimeDelta, Utc};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use tender::app::App;
use tender::clock::{Clock, SystemClock};
use tender::domain::{Batch, BusinessDate, PageRows, Serial};
use tender::error::{Classify, Kind};
use tender::jobs::Catalog;
use tender::jobs::schedule::{Pass, Scheduler};
use tender::jobs::seal_audit::SealAuditDuty;
use tender::jobs::settle::{SettleDuty, SettleOutputs};
use tender::keys::SealKey;
use tender::service::Services;
use tender::service::batches::BatchForm;
use tender::service::cards::{ActivateForm, PosForm, VoidForm};
use tender::service::ledger::{AdjustForm, Adjusted, LedgerError, RefundForm, SpendForm};
use tender::service::schedules::JobRun;
use tender::service::settlement::{PaymentForm, RollForward, Settled};
use tender::service::tradein::ValuationForm;
use tender::store::{DbPool, Store};

use crate::helpers::{
    Reaped, TestApp, actor, assert_whole, both_backends, generated, open_account, shelf,
    tender_command, tender_process,
};
use crate::schedules::edited;
use crate::settlement::{
    PROCESS_GRACE, at, day, dec, grace, in_zone, pos, printer_codes, retailer, retailer_with,
    seal_key,
};

/// The seal key, created in the test's key directory, and where a run writes.
fn outputs<S: Store>(env: &TestApp<S>) -> SettleOutputs {
    let settings = env.app.settings();
    SettleOutputs {
        key: Arc::new(seal_key(env)),
        witness: settings.witness_file(),
        report_dir: settings.report_dir(),
    }
}

/// Settles `date` now, as the scheduled run would.
async fn settle<S: Store>(
    services: &Services<S>,
    outputs: &SettleOutputs,
    date: BusinessDate,
) -> Result<Settled, tender::service::settlement::SettleError> {
    services
        .settlement()
        .settle(
            date,
            &outputs.key,
            &outputs.witness,
            &outputs.report_dir,
            &actor(),
        )
        .await
}

/// The settle duty's scheduler over `services`, as runner `runner`.
fn settle_scheduler<S: Store>(
    services: &Services<S>,
    outputs: &SettleOutputs,
    runner: &str,
) -> Scheduler<S, SettleDuty<S>> {
    let definition = Catalog::load(None).unwrap().settle;
    let duty = SettleDuty::new(services.clone(), definition, outputs.clone());
    Scheduler::new(services.clone(), duty, runner).unwrap()
}

/// The settle job's runs, oldest first.
async fn settle_runs<S: Store>(env: &TestApp<S>) -> Vec<JobRun> {
    let mut runs = env
        .app
        .services()
        .schedules()
        .runs(Some("settle"), PageRows::MAX)
        .await
        .unwrap();
    runs.reverse();
    runs
}

/// The business date a run's totals say it closed.
fn closed_by(run: &JobRun) -> String {
    run.totals.as_ref().unwrap()["business_date"]
        .as_str()
        .unwrap_or_else(|| panic!("{run:?}"))
        .to_string()
}

/// Closed days, oldest first, with their seal ids (-1 where none).
async fn settled_days<S: Store>(env: &TestApp<S>) -> Vec<(String, i64)> {
    const SQL: &str =
        "SELECT business_date, COALESCE(seal_id, -1) FROM settlement ORDER BY business_date";
    match env.store().db_pool() {
        DbPool::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(&pool).await.unwrap(),
        DbPool::Postgres(pool) => sqlx::query_as(SQL).fetch_all(&pool).await.unwrap(),
    }
}

/// `date` is closed exactly once: one settlement row, sealed, and one `settlement.closed`
/// audit record.
async fn assert_closed_once<S: Store>(env: &TestApp<S>, date: &str) {
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM settlement WHERE business_date = '{date}'"
        ))
        .await,
        1,
        "{date} has one settlement"
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM settlement WHERE business_date = '{date}' AND seal_id IS NULL"
        ))
        .await,
        0,
        "{date} is sealed"
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM audit_record WHERE action = 'settlement.closed' \
             AND subject = 'settlement:{date}'"
        ))
        .await,
        1,
        "{date} has one settlement.closed record"
    );
}

/// `tender settle verify` finds `date`'s files whole.
fn assert_verifies<S: Store>(env: &TestApp<S>, date: BusinessDate) {
    let out = tender_command(env, &["settle", "verify", "--date", &date.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A little activity now: Acme (2.5 %) at its Texas store sells `cards` 25.00 USD cards of a
/// new batch, one is redeemed into a new account and 10.00 of it spent.
async fn some_activity<S: Store>(env: &TestApp<S>, cards: u64, tag: &str) {
    let services = env.app.services();
    if env.count("SELECT count(*) FROM retailer").await == 0 {
        retailer(env, "Acme").await;
    }
    let batch = shelf(env, "Acme", "US", "USD", cards, 365).await;
    let sale = ActivateForm {
        pos: pos("Acme", "TX", format!("sale-{tag}"), None),
        serial: batch.first_serial.to_string(),
        to_serial: (cards > 1).then(|| batch.serial_at(cards - 1).to_string()),
        value: None,
        purchaser_state: None,
    };
    services.cards().activate(&sale, &actor()).await.unwrap();
    let codes = printer_codes(env, &batch);
    let account = open_account(env, "US", "USD").await;
    services
        .redemption()
        .redeem(&account, &codes[&batch.first_serial], None, &actor())
        .await
        .unwrap();
    let spend = SpendForm {
        account,
        amount: "10.00".into(),
        currency: "USD".into(),
        order: format!("order-{tag}"),
        service: "app-store".into(),
        effective_at: None,
    };
    services.ledger().spend(&spend, &actor()).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 1. A month of random activity

/// The month's random seed, fixed so a failure replays; printed by the test.
const SEED: u64 = 0x7e4d_e25e_7713_2026;
/// Runs the month with another seed (decimal or 0x-hex), to explore or to replay one.
const SEED_VAR: &str = "TENDER_MONTH_SEED";
/// Business days settled.
const DAYS: u64 = 30;
/// The business time zone of the month: it starts daylight saving time on 8 March.
const ZONE: &str = "America/New_York";
const WAREHOUSE: &str = "WH-EAST";

/// Where a shelf of cards is sold.
struct Shelf {
    batch: Batch,
    retailer: &'static str,
    store: &'static str,
    region: &'static str,
    currency: &'static str,
    codes: BTreeMap<Serial, String>,
    /// Cards sold so far, from the first.
    sold: u64,
    /// Sold no later than this (a UK shelf, before its printed expiry comes near).
    sell_until: Option<DateTime<Utc>>,
}

/// A card sold and not yet redeemed nor voided.
struct Active {
    shelf: usize,
    serial: Serial,
    funds_expire_at: Option<DateTime<Utc>>,
}

struct Customer {
    id: String,
    region: &'static str,
    currency: &'static str,
}

struct Order {
    account: usize,
    order: String,
    refundable: i64,
}

struct TradeIn {
    id: String,
    account: usize,
    device: String,
}

/// The month's state and its random choices.
struct Month<'a, S> {
    env: &'a TestApp<S>,
    app: App<S>,
    rng: ChaCha8Rng,
    shelves: Vec<Shelf>,
    active: Vec<Active>,
    accounts: Vec<Customer>,
    orders: Vec<Order>,
    trade_ins: Vec<TradeIn>,
    next_id: u64,
    /// Operations done, by kind.
    done: BTreeMap<&'static str, u64>,
    /// Business refusals met, by code.
    refused: BTreeMap<String, u64>,
}

impl<S: Store> Month<'_, S> {
    fn services(&self) -> &Services<S> {
        self.app.services()
    }

    fn now(&self) -> DateTime<Utc> {
        self.env.clock.now()
    }

    fn below(&mut self, n: usize) -> usize {
        assert!(n > 0);
        (self.rng.next_u64() % n as u64) as usize
    }

    fn between(&mut self, low: i64, high: i64) -> i64 {
        let span = u64::try_from(high - low + 1).unwrap();
        low + i64::try_from(self.rng.next_u64() % span).unwrap()
    }

    fn id(&mut self, what: &str) -> String {
        self.next_id += 1;
        format!("{what}-{}", self.next_id)
    }

    fn did(&mut self, what: &'static str) {
        *self.done.entry(what).or_default() += 1;
    }

    /// A refusal the request can meet in business (a conflict); anything else fails the test.
    fn refusal(&mut self, what: &str, error: &(impl Classify + std::fmt::Display)) {
        assert_eq!(
            error.kind(),
            Kind::Conflict,
            "{what} failed: {}: {error}",
            error.code()
        );
        *self.refused.entry(error.code().to_string()).or_default() += 1;
    }

    fn pos(&mut self, shelf: usize, pos_time: Option<DateTime<Utc>>) -> PosForm {
        let (retailer, store) = (self.shelves[shelf].retailer, self.shelves[shelf].store);
        pos(retailer, store, self.id("pos"), pos_time)
    }

    async fn balance(&self, account: usize) -> i64 {
        self.services()
            .ledger()
            .account(&self.accounts[account].id)
            .await
            .unwrap()
            .balance
            .minor()
    }

    /// A new shelf of `count` cards of `value` for `retailer`, generated now.
    #[allow(clippy::too_many_arguments)]
    async fn shelf(
        &mut self,
        retailer: &'static str,
        store: &'static str,
        (region, currency): (&'static str, &'static str),
        value: &str,
        count: u64,
        expires_in_days: u32,
        sell_for: Option<TimeDelta>,
    ) {
        let form = BatchForm {
            retailer: retailer.into(),
            count,
            value: Some(value.into()),
            currency: currency.into(),
            region: region.into(),
            expires_in_days: Some(expires_in_days),
            ..BatchForm::default()
        };
        let batch = generated(self.env, &form).await;
        let codes = printer_codes(self.env, &batch);
        let sell_until = sell_for.map(|d| self.now() + d);
        self.shelves.push(Shelf {
            batch,
            retailer,
            store,
            region,
            currency,
            codes,
            sold: 0,
            sell_until,
        });
    }

    /// One random operation.
    async fn step(&mut self) {
        match self.below(100) {
            0..25 => self.activate().await,
            25..40 => self.redeem().await,
            40..53 => self.spend().await,
            53..60 => self.refund().await,
            60..66 => self.void().await,
            66..76 => self.adjust().await,
            76..86 => self.trade_in().await,
            86..92 => self.revalue().await,
            _ => self.payment().await,
        }
    }

    /// Sells one to three cards of a shelf with cards left (a range of them), now or, one
    /// time in ten, offline at a till whose sale was made 20 hours ago.
    async fn activate(&mut self) {
        let now = self.now();
        let open: Vec<usize> = (0..self.shelves.len())
            .filter(|&i| {
                let s = &self.shelves[i];
                s.sold < s.batch.count && s.sell_until.is_none_or(|until| now < until)
            })
            .collect();
        if open.is_empty() {
            return;
        }
        let shelf = open[self.below(open.len())];
        let left = self.shelves[shelf].batch.count - self.shelves[shelf].sold;
        let count = (1 + self.below(3) as u64).min(left);
        let offline = self.below(10) == 0;
        let pos_time = offline.then(|| now - TimeDelta::hours(20));
        let first = self.shelves[shelf].sold;
        let batch = &self.shelves[shelf].batch;
        let (from, to) = (batch.serial_at(first), batch.serial_at(first + count - 1));
        let form = ActivateForm {
            pos: self.pos(shelf, pos_time),
            serial: from.to_string(),
            to_serial: (count > 1).then(|| to.to_string()),
            value: None,
            purchaser_state: None,
        };
        self.shelves[shelf].sold += count;
        match self.services().cards().activate(&form, &actor()).await {
            Ok(sold) => {
                for card in sold.cards {
                    assert_eq!(card.outcome, "activated", "{card:?}");
                    self.active.push(Active {
                        shelf,
                        serial: card.serial,
                        funds_expire_at: card.funds_expire_at,
                    });
                }
                self.did(if offline {
                    "activations (offline)"
                } else {
                    "activations"
                });
            }
            Err(e) => self.refusal("an activation", &e),
        }
    }

    /// A sold card, whose funds have not expired, of a shelf in `region` if given.
    fn pick_active(&mut self) -> Option<usize> {
        let now = self.now();
        let live: Vec<usize> = (0..self.active.len())
            .filter(|&i| self.active[i].funds_expire_at.is_none_or(|t| now < t))
            .collect();
        (!live.is_empty()).then(|| live[self.below(live.len())])
    }

    /// Redeems a sold card into an account of its region and currency.
    async fn redeem(&mut self) {
        let Some(i) = self.pick_active() else { return };
        let shelf = &self.shelves[self.active[i].shelf];
        let (region, currency) = (shelf.region, shelf.currency);
        let code = shelf.codes[&self.active[i].serial].clone();
        let fits: Vec<usize> = (0..self.accounts.len())
            .filter(|&a| self.accounts[a].region == region && self.accounts[a].currency == currency)
            .collect();
        let account = fits[self.below(fits.len())];
        let id = self.accounts[account].id.clone();
        match self
            .services()
            .redemption()
            .redeem(&id, &code, None, &actor())
            .await
        {
            Ok(_) => {
                self.active.swap_remove(i);
                self.did("redemptions");
            }
            Err(e) => self.refusal("a redemption", &e),
        }
    }

    /// Spends part of an account's balance.
    async fn spend(&mut self) {
        let account = self.below(self.accounts.len());
        let balance = self.balance(account).await;
        if balance == 0 {
            return;
        }
        let minor = self.between(1, balance.min(4_000));
        if let Err(e) = self.spend_of(account, minor).await {
            self.refusal("a spend", &e);
        }
    }

    /// Spends an account's whole balance.
    async fn spend_all(&mut self, account: usize) {
        let balance = self.balance(account).await;
        if balance == 0 {
            return;
        }
        self.spend_of(account, balance).await.unwrap();
    }

    /// Spends `minor` of an account's balance on a new order, refundable after.
    async fn spend_of(&mut self, account: usize, minor: i64) -> Result<(), LedgerError> {
        let order = self.id("order");
        let form = SpendForm {
            account: self.accounts[account].id.clone(),
            amount: dec(minor),
            currency: self.accounts[account].currency.into(),
            order: order.clone(),
            service: "app-store".into(),
            effective_at: None,
        };
        self.services().ledger().spend(&form, &actor()).await?;
        self.orders.push(Order {
            account,
            order,
            refundable: minor,
        });
        self.did("spends");
        Ok(())
    }

    /// Refunds part or all of what an order has left.
    async fn refund(&mut self) {
        let open: Vec<usize> = (0..self.orders.len())
            .filter(|&i| self.orders[i].refundable > 0)
            .collect();
        if open.is_empty() {
            return;
        }
        let i = open[self.below(open.len())];
        let minor = self.between(1, self.orders[i].refundable);
        let account = self.orders[i].account;
        let form = RefundForm {
            account: self.accounts[account].id.clone(),
            order: self.orders[i].order.clone(),
            refund: self.id("refund"),
            amount: dec(minor),
            currency: self.accounts[account].currency.into(),
            effective_at: None,
        };
        match self.services().ledger().refund(&form, &actor()).await {
            Ok(_) => {
                self.orders[i].refundable -= minor;
                self.did("refunds");
            }
            Err(e) => self.refusal("a refund", &e),
        }
    }

    /// Voids a sold card's sale at the store that sold it.
    async fn void(&mut self) {
        let Some(i) = self.pick_active() else { return };
        let shelf = self.active[i].shelf;
        let form = VoidForm {
            pos: self.pos(shelf, None),
            serial: self.active[i].serial.to_string(),
        };
        match self.services().cards().void(&form, &actor()).await {
            Ok(result) => {
                assert_eq!(result.cards[0].outcome, "voided", "{result:?}");
                self.active.swap_remove(i);
                self.did("voids");
            }
            Err(e) => self.refusal("a void", &e),
        }
    }

    /// A support adjustment of up to 50.00: a credit, or a debit the balance can take.
    async fn adjust(&mut self) {
        let account = self.below(self.accounts.len());
        let balance = self.balance(account).await;
        let minor = if self.below(3) == 0 && balance > 0 {
            -self.between(1, balance.min(5_000))
        } else {
            self.between(1, 5_000)
        };
        let form = AdjustForm {
            account: self.accounts[account].id.clone(),
            amount: dec(minor),
            currency: self.accounts[account].currency.into(),
            reason: "goodwill".into(),
        };
        match self.services().ledger().adjust(&form, &actor()).await {
            Ok(Adjusted::Posted { .. }) => self.did("adjustments"),
            Ok(pending) => panic!(
                "{} is under the approval threshold: {pending:?}",
                form.amount
            ),
            Err(e) => self.refusal("an adjustment", &e),
        }
    }

    /// A valuation as the warehouse sends it, assessed half an hour ago.
    fn valuation(&self, trade_in: &TradeIn, value: i64, revaluation: bool) -> ValuationForm {
        ValuationForm {
            trade_in_id: trade_in.id.clone(),
            account_id: self.accounts[trade_in.account].id.clone(),
            warehouse_id: WAREHOUSE.into(),
            device_model: "iPhone 13".into(),
            device_id: trade_in.device.clone(),
            grade: "good".into(),
            value: dec(value),
            currency: "USD".into(),
            assessed_at: (self.now() - TimeDelta::minutes(30))
                .to_rfc3339_opts(SecondsFormat::Secs, true),
            revaluation: if revaluation {
                "true".into()
            } else {
                String::new()
            },
            region: String::new(),
        }
    }

    /// Submits a valuation and posts what is queued.
    async fn post_valuation(&mut self, form: ValuationForm, what: &'static str) {
        let trade_ins = self.services().trade_ins();
        let row = trade_ins
            .submit(std::slice::from_ref(&form), &actor())
            .await
            .unwrap()
            .remove(0);
        assert!(row.code.is_none(), "{what}: {row:?}");
        let run = trade_ins
            .post_queued(&tender::domain::Actor::job("post-trade-ins"))
            .await
            .unwrap();
        assert_eq!(run.held, 0, "{what}: nothing here is held");
        self.did(what);
    }

    /// A new trade-in of 20.00 to 200.00, credited to a US account.
    async fn trade_in(&mut self) {
        let us: Vec<usize> = (0..self.accounts.len())
            .filter(|&a| self.accounts[a].currency == "USD")
            .collect();
        let account = us[self.below(us.len())];
        let trade_in = TradeIn {
            id: self.id("TI"),
            account,
            device: format!("SN{:010}", self.next_id),
        };
        let value = self.between(2_000, 20_000);
        let form = self.valuation(&trade_in, value, false);
        self.trade_ins.push(trade_in);
        self.post_valuation(form, "trade-in credits").await;
    }

    /// Revalues a trade-in to between nothing and 250.00: up is credited, down clawed back
    /// (what the balance cannot give is owed). Half the time the account has spent all it
    /// had first, so a claw-back is owed.
    async fn revalue(&mut self) {
        if self.trade_ins.is_empty() {
            return;
        }
        let i = self.below(self.trade_ins.len());
        if self.below(2) == 0 {
            self.spend_all(self.trade_ins[i].account).await;
        }
        let value = self.between(0, 25_000);
        let form = self.valuation(&self.trade_ins[i], value, true);
        self.post_valuation(form, "revaluations").await;
    }

    /// A retailer pays part of what it owes (or more).
    async fn payment(&mut self) {
        let (retailer, currency) =
            [("Acme", "USD"), ("Acme", "GBP"), ("Bolt", "USD")][self.below(3)];
        let minor = self.between(100, 10_000);
        let reference = self.id("PAY");
        let form = PaymentForm::parse(retailer, &dec(minor), currency, &reference).unwrap();
        let recorded = self
            .services()
            .settlement()
            .record_payment(&form, &actor())
            .await
            .unwrap();
        assert!(!recorded.replayed);
        self.did("payments");
    }

    /// Runs expiry as of now; drops the cards it expired.
    async fn expire(&mut self) {
        let now = self.now();
        self.services()
            .expiry()
            .run(now, 1_000, &actor())
            .await
            .unwrap();
        let before = self.active.len();
        self.active
            .retain(|card| card.funds_expire_at.is_none_or(|t| now < t));
        let expired = (before - self.active.len()) as u64;
        *self.done.entry("expiries (cards)").or_default() += expired;
    }
}

/// The liability (card and customer legs) in `currency` recorded from `from_ms` (inclusive)
/// to `until_ms` (exclusive), summed from the raw entries.
async fn liability_legs<S: Store>(
    env: &TestApp<S>,
    currency: &str,
    from_ms: i64,
    until_ms: i64,
) -> i64 {
    env.count(&format!(
        "SELECT CAST(COALESCE(SUM(e.amount_minor), 0) AS BIGINT) \
         FROM entry e JOIN transfer t ON t.transfer_id = e.transfer_id \
         WHERE t.currency = '{currency}' AND t.recorded_ms >= {from_ms} \
         AND t.recorded_ms < {until_ms} \
         AND (e.ledger_account LIKE 'card:%' OR e.ledger_account LIKE 'customer:%')"
    ))
    .await
}

/// What `retailer` owed in `currency` at `until_ms`, from the receivable's raw entries.
async fn receivable<S: Store>(
    env: &TestApp<S>,
    retailer: i64,
    currency: &str,
    until_ms: i64,
) -> i64 {
    env.count(&format!(
        "SELECT CAST(COALESCE(SUM(-e.amount_minor), 0) AS BIGINT) \
         FROM entry e JOIN transfer t ON t.transfer_id = e.transfer_id \
         WHERE t.currency = '{currency}' AND t.recorded_ms < {until_ms} \
         AND e.ledger_account = 'receivable:{retailer}'"
    ))
    .await
}

/// A day's closing in the currency of `roll` (another day's roll-forward); 0 where it had none.
fn closing_in(day: &Settled, roll: &RollForward) -> i64 {
    day.roll_forward
        .iter()
        .find(|r| r.currency == roll.currency)
        .and_then(|r| r.line("closing"))
        .unwrap_or(0)
}

/// Checks a day just settled against the raw entries and against the day before.
async fn check_day<S: Store>(
    env: &TestApp<S>,
    zone: chrono_tz::Tz,
    settled: &Settled,
    before: Option<&Settled>,
) {
    let date = settled.date;
    let (start_ms, cutoff_ms) = (
        date.start(zone).timestamp_millis(),
        date.cutoff(zone).timestamp_millis(),
    );
    assert!(settled.closed_now, "{date} closed by this run");
    for roll in &settled.roll_forward {
        let code = roll.currency.code();
        let line = |name: &str| {
            roll.line(name)
                .unwrap_or_else(|| panic!("{date} {code}: no {name} line in {roll:?}"))
        };
        let closing = line("closing");
        assert_eq!(
            closing,
            line("balances_at_cutoff"),
            "{date} {code}: {roll:?}"
        );
        assert_eq!(line("difference"), 0, "{date} {code}");
        let opening = line("opening");
        let at = roll.lines.iter().position(|l| l.line == "closing").unwrap();
        let moved: i64 = roll.lines[1..at].iter().map(|l| l.minor).sum();
        assert_eq!(
            opening + moved,
            closing,
            "{date} {code}: the lines add up: {roll:?}"
        );
        assert_eq!(
            liability_legs(env, code, 0, cutoff_ms).await,
            closing,
            "{date} {code}: the closing is the liability legs recorded before the cut-off"
        );
        assert_eq!(
            liability_legs(env, code, start_ms, cutoff_ms).await,
            moved,
            "{date} {code}: the movements are the liability legs recorded in the day"
        );
        if let Some(before) = before {
            assert_eq!(
                opening,
                closing_in(before, roll),
                "{date} {code}: opening is yesterday's closing"
            );
        }
    }
    if let Some(before) = before {
        for roll in &before.roll_forward {
            assert!(
                settled
                    .roll_forward
                    .iter()
                    .any(|r| r.currency == roll.currency),
                "{date}: {} carried forward",
                roll.currency.code()
            );
        }
        for old in &before.statements {
            let new = settled
                .statements
                .iter()
                .find(|s| s.retailer_id == old.retailer_id && s.currency == old.currency)
                .unwrap_or_else(|| panic!("{date}: no statement for {old:?}"));
            assert_eq!(new.opening, old.closing, "{date}: {new:?} opens at {old:?}");
        }
    }
    for s in &settled.statements {
        let code = s.currency.code();
        assert_eq!(
            s.closing,
            receivable(env, s.retailer_id, code, cutoff_ms).await,
            "{date}: {s:?} closes at the receivable's entries"
        );
        assert_eq!(s.closing, s.opening + s.net_due - s.payments, "{s:?}");
        assert_eq!(s.ageing.iter().sum::<i64>(), s.closing.max(0), "{s:?}");
    }
}

/// A month of random activity, settled day by day: every day reconciles to the cent.
async fn a_month_of_random_activity_reconciles_every_day<S: Store>(env: TestApp<S>) {
    let began = Instant::now();
    let zone: chrono_tz::Tz = ZONE.parse().unwrap();
    let app = in_zone(&env, ZONE).await;
    let outputs = outputs(&env);
    let seed = std::env::var(SEED_VAR).map_or(SEED, |text| {
        let hex = text.strip_prefix("0x");
        hex.map_or_else(|| text.parse(), |h| u64::from_str_radix(h, 16))
            .unwrap_or_else(|_| panic!("{SEED_VAR}={text:?} is not a seed"))
    });
    eprintln!("month: seed {seed:#x} ({SEED_VAR} replays another)");
    let mut month = Month {
        env: &env,
        app,
        rng: ChaCha8Rng::seed_from_u64(seed),
        shelves: Vec::new(),
        active: Vec::new(),
        accounts: Vec::new(),
        orders: Vec::new(),
        trade_ins: Vec::new(),
        next_id: 0,
        done: BTreeMap::new(),
        refused: BTreeMap::new(),
    };
    let services = month.services().clone();
    retailer(&env, "Acme").await;
    retailer_with(&env, "Bolt", "5", &[("TX", "US-TX")]).await;
    month
        .shelf("Acme", "TX", ("US", "USD"), "25.00", 120, 365, None)
        .await;
    month
        .shelf("Bolt", "TX", ("US", "USD"), "10.00", 80, 365, None)
        .await;
    // Six US accounts in USD and three UK ones in GBP.
    let us = std::iter::repeat_n(("US", "USD"), 6);
    for (region, currency) in us.chain(std::iter::repeat_n(("GB", "GBP"), 3)) {
        let id = open_account(&env, region, currency).await;
        month.accounts.push(Customer {
            id,
            region,
            currency,
        });
    }

    let mut date = day("2026-03-02");
    let mut before: Option<Settled> = None;
    // Each day's files as first issued.
    let mut issued = Vec::new();
    // Lines seen across the month: (late lines, days with claw-backs owed).
    let (mut late_lines, mut owed_days) = (0, 0);
    for n in 0..DAYS {
        let (start, cutoff) = (date.start(zone), date.cutoff(zone));
        env.clock
            .set(env.clock.now().max(start + TimeDelta::hours(7)));
        // Every fourth day a new box of UK cards, printed to expire in two days and sold
        // for one: their funds expire in the days that follow.
        if n % 4 == 0 {
            month
                .shelf(
                    "Acme",
                    "GB",
                    ("GB", "GBP"),
                    "20.00",
                    10,
                    2,
                    Some(TimeDelta::days(1)),
                )
                .await;
        }
        let ops = 8 + month.below(9);
        for _ in 0..ops {
            let step = TimeDelta::minutes(month.between(5, 70));
            let next = (env.clock.now() + step).min(cutoff - TimeDelta::minutes(20));
            env.clock.set(next);
            month.step().await;
        }
        env.clock.set(cutoff - TimeDelta::minutes(15));
        month.expire().await;
        // A few entries of the next day, recorded after the cut-off and before the run.
        env.clock
            .set(cutoff + TimeDelta::seconds(month.between(0, 240)));
        for _ in 0..month.below(3) {
            month.step().await;
        }
        env.clock
            .set(cutoff + grace() + TimeDelta::seconds(month.between(0, 60)));
        let settled = settle(&services, &outputs, date)
            .await
            .unwrap_or_else(|e| panic!("{date} (day {n}) did not settle: {}: {e}", e.code()));
        assert_eq!(settled.date, date);
        check_day(&env, zone, &settled, before.as_ref()).await;
        for roll in &settled.roll_forward {
            late_lines += roll
                .lines
                .iter()
                .filter(|l| l.line.starts_with("late:"))
                .count();
            owed_days += usize::from(roll.line("memo:owed_clawbacks").unwrap_or(0) > 0);
        }
        let verified = services
            .settlement()
            .verify(date, &outputs.key.public(), &outputs.report_dir)
            .await
            .unwrap();
        assert!(verified.ok(), "{verified:?}");
        issued.push((date, services.settlement().export(date).await.unwrap()));
        before = Some(settled);
        date = date.next().unwrap();
    }

    // Every closed day rerun at the month's end gives the same bytes: its files are unchanged.
    for (date, files) in &issued {
        let rerun = settle(&services, &outputs, *date)
            .await
            .unwrap_or_else(|e| panic!("the rerun of {date} failed: {}: {e}", e.code()));
        assert!(!rerun.closed_now);
        assert_eq!(
            &services.settlement().export(*date).await.unwrap(),
            files,
            "{date}"
        );
    }
    assert_eq!(
        env.count("SELECT count(*) FROM settlement").await,
        i64::try_from(DAYS).unwrap()
    );
    assert_whole(&env).await;
    let ops: u64 = month.done.values().sum();
    eprintln!(
        "month: {DAYS} days, {ops} operations {:?}, refusals {:?}, in {:.1?}",
        month.done,
        month.refused,
        began.elapsed()
    );
    for kind in [
        "activations",
        "redemptions",
        "spends",
        "refunds",
        "voids",
        "adjustments",
        "trade-in credits",
        "revaluations",
        "payments",
        "expiries (cards)",
        "activations (offline)",
    ] {
        assert!(
            month.done.get(kind).copied().unwrap_or(0) > 0,
            "the month had no {kind}: {:?}",
            month.done
        );
    }
    assert!(
        env.count("SELECT count(*) FROM transfer WHERE kind = 'clawback'")
            .await
            > 0,
        "the month had a claw-back"
    );
    assert!(late_lines > 0, "an offline sale showed as a late line");
    assert!(owed_days > 0, "a claw-back was owed on some day");
    eprintln!("month: {late_lines} late lines, {owed_days} days with claw-backs owed");
}
both_backends!(
    random_month,
    a_month_of_random_activity_reconciles_every_day
);

// ---------------------------------------------------------------------------------------------
// 2. Catch-up

/// The settle duty's scheduler first runs at 09:00 on 1 March (UTC) and closes 28 February.
/// Then nothing runs for three days of activity; a day whose previous day is open after a
/// closed one is refused as a gap. Back at 09:00 on 4 March, one pass runs the three missed
/// periods oldest first, each as of its own 00:30 tick, closing 1, 2 and 3 March in that
/// order; each day opens at the one before's closing.
async fn three_missed_days_are_closed_in_order<S: Store>(env: TestApp<S>) {
    let services = env.app.services();
    let outputs = outputs(&env);
    let scheduler = settle_scheduler(services, &outputs, "runner");
    scheduler.adopt().await.unwrap();
    assert_eq!(scheduler.pass().await.unwrap().succeeded, 1);
    let runs = settle_runs(&env).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].period, at("2026-03-01T00:30:00Z"));
    assert_eq!(closed_by(&runs[0]), "2026-02-28");

    for (n, noon) in [
        "2026-03-01T12:00:00Z",
        "2026-03-02T12:00:00Z",
        "2026-03-03T12:00:00Z",
    ]
    .into_iter()
    .enumerate()
    {
        env.clock.set(at(noon));
        some_activity(&env, 3 + n as u64, &format!("d{n}")).await;
    }
    env.clock.set(at("2026-03-04T09:00:00Z"));
    let gap = settle(services, &outputs, day("2026-03-03"))
        .await
        .unwrap_err();
    assert_eq!(gap.code(), "settle.gap", "{gap}");
    assert!(gap.to_string().contains("2026-03-02"), "{gap}");

    let pass = scheduler.pass().await.unwrap();
    assert_eq!((pass.ran, pass.succeeded), (3, 3), "{pass:?}");
    let runs = settle_runs(&env).await;
    let periods: Vec<_> = runs.iter().map(|r| r.period).collect();
    assert_eq!(
        periods,
        [
            at("2026-03-01T00:30:00Z"),
            at("2026-03-02T00:30:00Z"),
            at("2026-03-03T00:30:00Z"),
            at("2026-03-04T00:30:00Z"),
        ]
    );
    assert!(
        runs.iter()
            .all(|r| r.as_of == r.period && r.status == "succeeded")
    );
    assert!(
        runs.windows(2).all(|w| w[0].run_id < w[1].run_id),
        "claimed in order: {runs:?}"
    );
    let closed: Vec<String> = runs.iter().map(closed_by).collect();
    assert_eq!(
        closed,
        ["2026-02-28", "2026-03-01", "2026-03-02", "2026-03-03"]
    );
    assert!(
        runs[1..]
            .iter()
            .all(|r| r.totals.as_ref().unwrap()["closed_now"] == true)
    );
    // Each closed day was sealed after it closed: the seals are in date order.
    let days = settled_days(&env).await;
    assert_eq!(
        days.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>(),
        closed
    );
    assert!(
        days.windows(2).all(|w| 0 < w[0].1 && w[0].1 < w[1].1),
        "sealed oldest first: {days:?}"
    );
    // Each opens at the one before's closing.
    let mut before: Option<Settled> = None;
    for (date, _) in &days {
        let rerun = settle(services, &outputs, day(date)).await.unwrap();
        assert!(!rerun.closed_now);
        if let Some(before) = &before {
            for roll in &rerun.roll_forward {
                let previous = closing_in(before, roll);
                assert_eq!(roll.line("opening"), Some(previous), "{date}");
            }
        }
        before = Some(rerun);
        assert_closed_once(&env, date).await;
    }
    assert!(
        before.unwrap().roll_forward[0].line("closing").unwrap() > 0,
        "the days had activity"
    );
    assert_eq!(scheduler.pass().await.unwrap(), Pass::default());
    assert_whole(&env).await;
}
both_backends!(catch_up, three_missed_days_are_closed_in_order);

// ---------------------------------------------------------------------------------------------
// 3. Two runners

/// Two runners of the settle duty, each over its own connections, pass at the same instants:
/// day after day, then after a gap of three days (passing again until nothing is due, as
/// their loops would). Each period has one run; each date is closed once, with one
/// `settlement.closed` record.
async fn two_runners_close_each_date_once<S: Store>(env: TestApp<S>) {
    let outputs = outputs(&env);
    let other = env.reopen(&env.db.settings()).await;
    let a = settle_scheduler(env.app.services(), &outputs, "runner-a");
    let b = settle_scheduler(other.services(), &outputs, "runner-b");
    a.adopt().await.unwrap();
    b.adopt().await.unwrap();
    for n in 0..3 {
        if n > 0 {
            env.clock.advance(TimeDelta::days(1));
        }
        some_activity(&env, 2, &format!("d{n}")).await;
        let (pa, pb) = tokio::join!(a.pass(), b.pass());
        let (pa, pb) = (pa.unwrap(), pb.unwrap());
        assert_eq!(
            (pa.ran + pb.ran, pa.succeeded + pb.succeeded),
            (1, 1),
            "day {n}: {pa:?} {pb:?}"
        );
    }
    for n in 3..6 {
        env.clock.advance(TimeDelta::days(1));
        some_activity(&env, 2, &format!("d{n}")).await;
    }
    let mut passes = 0;
    loop {
        let (pa, pb) = tokio::join!(a.pass(), b.pass());
        let (pa, pb) = (pa.unwrap(), pb.unwrap());
        assert_eq!(
            pa.ran + pb.ran,
            pa.succeeded + pb.succeeded,
            "{pa:?} {pb:?}"
        );
        if pa.ran + pb.ran == 0 {
            break;
        }
        passes += 1;
        assert!(passes <= 4, "the missed days took too many passes");
    }
    let runs = settle_runs(&env).await;
    assert_eq!(runs.len(), 6, "{runs:?}");
    assert!(
        runs.iter()
            .all(|r| r.status == "succeeded" && r.attempts == 1)
    );
    let closed: Vec<String> = runs.iter().map(closed_by).collect();
    assert_eq!(
        closed,
        [
            "2026-02-28",
            "2026-03-01",
            "2026-03-02",
            "2026-03-03",
            "2026-03-04",
            "2026-03-05"
        ]
    );
    assert_eq!(
        env.count("SELECT count(*) FROM job_run WHERE job = 'settle'")
            .await,
        env.count("SELECT count(DISTINCT period_ms) FROM job_run WHERE job = 'settle'")
            .await
    );
    assert_eq!(env.count("SELECT count(*) FROM settlement").await, 6);
    for date in &closed {
        assert_closed_once(&env, date).await;
    }
    assert_eq!(
        env.count("SELECT count(*) FROM audit_record WHERE action = 'settlement.closed'")
            .await,
        6
    );
    let runners: std::collections::BTreeSet<&str> =
        runs.iter().map(|r| r.runner.as_str()).collect();
    eprintln!("two runners: the runs went to {runners:?}");
    assert_whole(&env).await;
}
both_backends!(two_runners, two_runners_close_each_date_once);

/// The instant of the latest 00:30 UTC tick at or before `now`: the period a settle runner
/// that never ran claims first.
fn latest_tick(now: DateTime<Utc>) -> DateTime<Utc> {
    let today = now
        .date_naive()
        .and_time(NaiveTime::from_hms_opt(0, 30, 0).unwrap())
        .and_utc();
    if today <= now {
        today
    } else {
        today - TimeDelta::days(1)
    }
}

/// The day a settle runner started now closes first (the processes' business time zone is
/// UTC, and their clock the system's), with a little activity recorded in it by the test.
async fn day_of_the_processes<S: Store>(env: &TestApp<S>) -> (DateTime<Utc>, BusinessDate) {
    let mut now = SystemClock.now();
    // Not within a few seconds of a tick, so the processes see the same one.
    if (now - latest_tick(now)) < TimeDelta::seconds(5) {
        tokio::time::sleep(Duration::from_secs(6)).await;
        now = SystemClock.now();
    }
    let tick = latest_tick(now);
    let date = env
        .app
        .services()
        .settlement()
        .closable_as_of(tick)
        .unwrap();
    env.clock
        .set(date.start(chrono_tz::UTC) + TimeDelta::hours(10));
    some_activity(env, 4, "proc").await;
    env.clock.set(now);
    (tick, date)
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "--- {}\n{}",
        path.display(),
        lines[lines.len().saturating_sub(30)..].join("\n")
    )
}

/// Waits for a process to end, within the time limit; its status.
async fn ended(child: &mut Reaped, log: &Path) -> std::process::ExitStatus {
    let deadline = Instant::now() + PROCESS_GRACE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "tender did not end\n{}",
            tail(log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two `tender work --drain` processes started at once on the system clock: the day they
/// close is closed once (one settle run, one settlement, one `settlement.closed` record), both
/// end cleanly, and the day verifies.
async fn two_drain_processes_close_the_day_once<S: Store>(env: TestApp<S>) {
    outputs(&env);
    let (tick, date) = day_of_the_processes(&env).await;
    let jobs = env.db.path().join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let logs = [env.db.path().join("a.log"), env.db.path().join("b.log")];
    let mut a = tender_process(&env, &["work", "--drain"], &jobs, &logs[0]);
    let mut b = tender_process(&env, &["work", "--drain"], &jobs, &logs[1]);
    for (child, log) in [(&mut a, &logs[0]), (&mut b, &logs[1])] {
        let status = ended(child, log).await;
        assert!(status.success(), "{status}\n{}", tail(log));
    }
    let runs = settle_runs(&env).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].period, tick);
    assert_eq!((&*runs[0].status, runs[0].attempts), ("succeeded", 1));
    assert_eq!(closed_by(&runs[0]), date.to_string());
    assert_eq!(env.count("SELECT count(*) FROM settlement").await, 1);
    assert_closed_once(&env, &date.to_string()).await;
    assert_verifies(&env, date);
    assert_whole(&env).await;
}
both_backends!(two_drain_processes, two_drain_processes_close_the_day_once);

// ---------------------------------------------------------------------------------------------
// 4. A killed run

/// A jobs directory whose settle definition renews a 2-second lease every second.
fn fast_settle_jobs<S: Store>(env: &TestApp<S>) -> std::path::PathBuf {
    let jobs = env.db.path().join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    std::fs::write(
        jobs.join("settle.toml"),
        edited(
            tender::jobs::settle::SOURCE.builtin,
            &[
                ("heartbeat_secs = 10", "heartbeat_secs = 1"),
                ("missed_heartbeats = 3", "missed_heartbeats = 2"),
                ("poll_interval_ms = 30000", "poll_interval_ms = 200"),
            ],
        ),
    )
    .unwrap();
    jobs
}

/// Runs today's seal-audit period here, so a `tender work` started now has only its settle
/// run to seal the trail.
async fn seal_audit_done<S: Store>(env: &TestApp<S>, outputs: &SettleOutputs) {
    let services = env.app.services();
    let seal_audit = Scheduler::new(
        services.clone(),
        SealAuditDuty::new(
            services.clone(),
            Catalog::load(None).unwrap().seal_audit,
            SealKey::load(&env.app.settings().key_dir()).unwrap(),
            outputs.witness.clone(),
        ),
        "test",
    )
    .unwrap();
    seal_audit.adopt().await.unwrap();
    seal_audit.pass().await.unwrap();
}

/// Waits, within the time limit, until `done` while `runner` runs; `runner` ending first fails
/// the test, and so does the limit passing, saying `what` did not happen, with the `logs`.
async fn wait_for(
    runner: &mut Reaped,
    mut done: impl AsyncFnMut() -> bool,
    what: &str,
    logs: &dyn Fn() -> String,
) {
    let deadline = Instant::now() + PROCESS_GRACE;
    while !done().await {
        assert!(
            runner.try_wait().unwrap().is_none(),
            "tender work ended\n{}",
            logs()
        );
        assert!(Instant::now() < deadline, "{what}\n{}", logs());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Where the settle job's running run is.
const RUNNING: &str = "FROM job_run WHERE job = 'settle' AND status = 'running'";

/// Waits until the settle run is done (succeeded, or failed on a second attempt) while
/// `runner` runs, then stops it with SIGTERM; it must end cleanly.
async fn until_settled<S: Store>(env: &TestApp<S>, runner: &mut Reaped, log: &Path) {
    let done = "SELECT count(*) FROM job_run WHERE job = 'settle' \
                AND (status = 'succeeded' OR attempts >= 2 AND status = 'failed')";
    wait_for(
        runner,
        async || env.count(done).await > 0,
        "the killed run was not taken over",
        &|| tail(log),
    )
    .await;
    rustix::process::kill_process(
        rustix::process::Pid::from_child(runner),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = ended(runner, log).await;
    assert!(status.success(), "{status}\n{}", tail(log));
}

/// The killed run is still running. Once its lease has run out, the next `tender work` (not
/// --drain: that would wait for the batch job the killed one held to be handed back) takes it
/// over, and is stopped with SIGTERM once it is done. The settle job's one run: for `tick`, as
/// of it, succeeded on its second attempt, closing `date`.
async fn taken_over<S: Store>(
    env: &TestApp<S>,
    jobs: &Path,
    (tick, date): (DateTime<Utc>, BusinessDate),
    survivor_log: &Path,
    logs: &dyn Fn() -> String,
) -> JobRun {
    assert_eq!(
        env.count(&format!("SELECT count(*) {RUNNING}")).await,
        1,
        "the kill left its run running\n{}",
        logs()
    );
    let lease_until_ms = env.count(&format!("SELECT lease_until_ms {RUNNING}")).await;
    while SystemClock.now().timestamp_millis() <= lease_until_ms {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut survivor = tender_process(env, &["work"], jobs, survivor_log);
    until_settled(env, &mut survivor, survivor_log).await;
    let mut runs = settle_runs(env).await;
    assert_eq!(runs.len(), 1, "{runs:?}\n{}", logs());
    let run = runs.remove(0);
    assert_eq!((run.period, run.as_of), (tick, tick));
    assert_eq!(
        (&*run.status, run.attempts),
        ("succeeded", 2),
        "{run:?}\n{}",
        logs()
    );
    assert_eq!(closed_by(&run), date.to_string());
    run
}

/// `tender work` (a settle definition renewing a 2-second lease every second) claims the day
/// and stores it, then waits to seal the trail (the test holds the witness file's lock), and
/// is killed with SIGKILL. The run is left running, the day stored but not sealed. Once the
/// lease has run out, the next `tender work` takes the run over as its second attempt: the
/// rerun reproduces the stored bytes, seals the day and writes its files. The day is closed
/// exactly once and `tender settle verify` passes.
async fn a_killed_settle_run_is_completed_by_the_next<S: Store>(env: TestApp<S>) {
    let began = Instant::now();
    let outputs = outputs(&env);
    let (tick, date) = day_of_the_processes(&env).await;
    let services = env.app.services();
    let jobs = fast_settle_jobs(&env);
    seal_audit_done(&env, &outputs).await;
    let seals = env.count("SELECT count(*) FROM audit_seal").await;

    let witness = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&outputs.witness)
        .unwrap();
    witness.lock().unwrap();
    let (victim_log, survivor_log) = (
        env.db.path().join("victim.log"),
        env.db.path().join("survivor.log"),
    );
    let logs = || format!("{}\n{}", tail(&victim_log), tail(&survivor_log));
    let mut victim = tender_process(&env, &["work"], &jobs, &victim_log);
    let stored = format!("SELECT count(*) FROM settlement WHERE business_date = '{date}'");
    let running = format!("SELECT count(*) {RUNNING}");
    let done = async || env.count(&stored).await > 0 && env.count(&running).await > 0;
    wait_for(&mut victim, done, "the day was not stored", &logs).await;
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();
    let killed_at = began.elapsed();
    drop(witness);
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM settlement WHERE business_date = '{date}' AND seal_id IS NULL"
        ))
        .await,
        1,
        "the killed run stored the day and did not seal it"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_seal").await,
        seals,
        "nothing sealed"
    );

    let run = taken_over(&env, &jobs, (tick, date), &survivor_log, &logs).await;
    assert_eq!(
        run.totals.as_ref().unwrap()["closed_now"],
        false,
        "the killed run had closed it"
    );
    assert_closed_once(&env, &date.to_string()).await;
    assert_verifies(&env, date);
    // The files written are the bytes stored.
    for (name, bytes) in services.settlement().export(date).await.unwrap() {
        let path = outputs.report_dir.join(date.to_string()).join(&name);
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name}");
    }
    eprintln!(
        "killed settle: killed at {killed_at:.1?}, completed by the next at {:.1?}",
        began.elapsed()
    );
    assert_whole(&env).await;
}
both_backends!(killed_run, a_killed_settle_run_is_completed_by_the_next);

/// PostgreSQL only (SQLite cannot hold a reader back while letting the claim's write through):
/// the test holds the settlement table locked, so `tender work` claims the day's run and then
/// waits to read; it is killed with SIGKILL before it has stored anything. Once its lease has
/// run out, the next `tender work` takes the run over as its second attempt and closes the
/// day itself, exactly once, and `tender settle verify` passes.
async fn a_settle_run_killed_before_it_stored_the_day_is_completed_by_the_next(
    env: TestApp<tender::store::PgStore>,
) {
    let outputs = outputs(&env);
    let (tick, date) = day_of_the_processes(&env).await;
    let jobs = fast_settle_jobs(&env);
    seal_audit_done(&env, &outputs).await;
    let DbPool::Postgres(pool) = env.store().db_pool() else {
        unreachable!("a PostgreSQL test")
    };
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE settlement IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let (victim_log, survivor_log) = (
        env.db.path().join("victim.log"),
        env.db.path().join("survivor.log"),
    );
    let logs = || format!("{}\n{}", tail(&victim_log), tail(&survivor_log));
    let mut victim = tender_process(&env, &["work"], &jobs, &victim_log);
    let running = format!("SELECT count(*) {RUNNING}");
    let waiting = "SELECT count(*) FROM pg_locks \
                   WHERE NOT granted AND relation = 'settlement'::regclass";
    let done = async || env.count(&running).await > 0 && env.count(waiting).await > 0;
    let what = "the run did not wait for the settlement table";
    wait_for(&mut victim, done, what, &logs).await;
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();
    lock.rollback().await.unwrap();
    assert_eq!(env.count("SELECT count(*) FROM settlement").await, 0);

    let run = taken_over(&env, &jobs, (tick, date), &survivor_log, &logs).await;
    assert_eq!(run.totals.as_ref().unwrap()["closed_now"], true);
    assert_closed_once(&env, &date.to_string()).await;
    assert_verifies(&env, date);
    assert_whole(&env).await;
}

mod killed_before_store {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let db = crate::helpers::TestDb::postgres().await;
        super::a_settle_run_killed_before_it_stored_the_day_is_completed_by_the_next(
            crate::helpers::TestApp::new(db).await,
        )
        .await;
    }
}
