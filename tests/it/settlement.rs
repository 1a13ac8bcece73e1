//! Nightly settlement, on both backends.
//!
//! - Business date D holds the transfers *recorded* (tender's clock) from its midnight to the
//!   next in the business time zone. Its roll-forward, per currency, is opening (the card and
//!   customer balances before D) + activations + trade-in credits + adjustments − voids −
//!   spends + refunds − breakage − escheat − claw-backs (+ late lines) = closing, and closing
//!   equals the balances at the cut-off to the cent (difference 0). Recomputed here from the raw
//!   entries, it is exactly `roll_forward.csv`; redemptions only move value between liability
//!   accounts and show as a memo line.
//! - A closed day is never rewritten: a rerun gives byte-identical files (and writes them to the
//!   report directory again); an entry recorded after the cut-off whose effective time is in D
//!   (an offline sale) is a `late:D:activations` line of the day it was recorded in.
//! - Cut-off edges in America/New_York: one second before local midnight is the day before, one
//!   second after is the day; the day daylight saving time starts (23 hours) and the day it ends
//!   (25 hours) hold exactly their entries.
//! - No report runs a spreadsheet formula: retailer names, device models and payment references
//!   that begin with `=`, `+`, `-` or `@` get a leading single quote; amounts, negative ones
//!   too, stay plain numbers such as `-25.00`.
//! - `record-payment` credits the retailer's receivable against the bank, once per reference:
//!   the same reference and amount replays, another amount is `settle.payment_conflict`, an
//!   unknown retailer `settle.unknown_retailer`; the statement shows it in `payments` and
//!   `closing`.
//! - Refusals: before the cut-off plus the grace, `settle.too_early`; a day whose day before is
//!   not closed while an earlier one is, `settle.gap`; books that do not reconcile,
//!   `settle.unbalanced`, naming the account and the amount.
//! - `settle verify` checks the report directory against the signed manifest (`differs`,
//!   `missing`, `not_in_manifest`; a signature under another key is invalid); `settle export`
//!   and `GET /v1/settlements/{date}/files/{name}` (finance only) give the same stored bytes.
//! - A write transaction that outlasts the unit-of-work deadline fails at its commit with
//!   `store.deadline` and writes nothing.
//! - After every test `ledger check` finds no discrepancy and the audit trail verifies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use tender::app::App;
use tender::clock::Clock;
use tender::config::{BusinessTimeZone, Settings};
use tender::domain::{
    Actor, Batch, BusinessDate, CommissionRate, NewRetailer, RetailerName, Serial,
};
use tender::error::Classify;
use tender::keys::SealKey;
use tender::service::cards::{ActivateForm, PosForm, StoreForm, VoidForm};
use tender::service::ledger::{AdjustForm, Adjusted, RefundForm, SpendForm};
use tender::service::settlement::{
    PaymentForm, PaymentRecorded, SETTLEMENT_GRACE, SettleError, Settled,
};
use tender::service::tradein::{PostRun, ValuationForm};
use tender::store::{PgStore, RetailerRepo, SqliteStore, Store, StoreError, Tx};

use crate::helpers::http::{get_with, key as api_key, start};
use crate::helpers::{
    TestApp, actor, assert_whole, both_backends, card, open_account, query, shelf, tender_captured,
};

/// How long a `tender` process may take before the test gives up on it.
pub(crate) const PROCESS_GRACE: Duration = Duration::from_secs(60);

/// The report files, in manifest order.
const REPORTS: [&str; 5] = [
    "roll_forward.csv",
    "retailer_statements.csv",
    "journal.csv",
    "payments.csv",
    "trade_ins.csv",
];

pub(crate) fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

pub(crate) fn day(text: &str) -> BusinessDate {
    BusinessDate::parse(text).unwrap()
}

pub(crate) fn grace() -> TimeDelta {
    TimeDelta::from_std(SETTLEMENT_GRACE).unwrap()
}

fn new_york() -> Tz {
    BusinessTimeZone::parse("America/New_York").unwrap().get()
}

/// Minor units of a two-decimal currency as the reports write them and forms take them
/// (`-25.00`).
pub(crate) fn dec(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", minor.abs() / 100, minor.abs() % 100)
}

// ---------------------------------------------------------------------------------------------
// The shop

/// A retailer (2.5 % commission) with its Texas store `TX` and English store `GB`.
pub(crate) async fn retailer<S: Store>(env: &TestApp<S>, name: &str) {
    retailer_with(env, name, "2.5", &[("TX", "US-TX"), ("GB", "GB-ENG")]).await;
}

/// A retailer of `commission` percent with its stores, each `(store, jurisdiction)`.
pub(crate) async fn retailer_with<S: Store>(
    env: &TestApp<S>,
    name: &str,
    commission: &str,
    stores: &[(&str, &str)],
) {
    let services = env.app.services();
    services
        .retailers()
        .add(name, commission, &actor())
        .await
        .unwrap();
    for &(store, jurisdiction) in stores {
        let form = StoreForm {
            retailer: name.into(),
            store: store.into(),
            jurisdiction: jurisdiction.into(),
        };
        services.cards().add_store(&form, &actor()).await.unwrap();
    }
}

/// Acme with 20 USD cards and 3 GBP cards printed to expire a day after the request.
async fn acme<S: Store>(env: &TestApp<S>) -> (Batch, Batch) {
    retailer(env, "Acme").await;
    let usd = shelf(env, "Acme", "US", "USD", 20, 365).await;
    let gbp = shelf(env, "Acme", "GB", "GBP", 3, 1).await;
    (usd, gbp)
}

/// The seal key, and [`acme`]'s batches with the first `sold` USD cards sold in Texas at 10:00
/// on 2026-03-01 (UTC).
async fn day_one<S: Store>(env: &TestApp<S>, sold: u64) -> (SealKey, Batch, Batch) {
    let key = seal_key(env);
    let (usd, gbp) = acme(env).await;
    env.clock.set(at("2026-03-01T10:00:00Z"));
    for n in 0..sold {
        sell(env, "TX", &usd, n).await;
    }
    (key, usd, gbp)
}

/// Till 1 at `retailer`'s `store`, in POS transaction `txn`; offline, with the till's time,
/// when given.
pub(crate) fn pos(
    retailer: &str,
    store: &str,
    txn: String,
    pos_time: Option<DateTime<Utc>>,
) -> PosForm {
    PosForm {
        retailer: retailer.into(),
        store: store.into(),
        terminal: "till-1".into(),
        pos_txn: txn,
        pos_time,
    }
}

/// Sells card `n` of `batch` at `retailer`'s `store`; offline, with the till's time, when given.
async fn sell_at<S: Store>(
    env: &TestApp<S>,
    retailer: &str,
    store: &str,
    batch: &Batch,
    n: u64,
    pos_time: Option<DateTime<Utc>>,
) {
    let serial = card(batch, n);
    let form = ActivateForm {
        pos: pos(retailer, store, format!("sale-{serial}"), pos_time),
        serial: serial.to_string(),
        to_serial: None,
        value: None,
        purchaser_state: None,
    };
    let cards = env.app.services().cards();
    let answer = cards.activate(&form, &actor()).await.unwrap();
    assert_eq!(answer.cards[0].outcome, "activated", "{answer:?}");
}

async fn sell<S: Store>(env: &TestApp<S>, store: &str, batch: &Batch, n: u64) {
    sell_at(env, "Acme", store, batch, n, None).await;
}

async fn void<S: Store>(env: &TestApp<S>, retailer: &str, batch: &Batch, n: u64) {
    void_at(env, retailer, batch, n, None).await;
}

/// Voids the sale of card `n` of `batch` at `retailer`'s Texas store; offline, with the till's
/// time, when given.
async fn void_at<S: Store>(
    env: &TestApp<S>,
    retailer: &str,
    batch: &Batch,
    n: u64,
    pos_time: Option<DateTime<Utc>>,
) {
    let serial = card(batch, n);
    let form = VoidForm {
        pos: pos(retailer, "TX", format!("void-{serial}"), pos_time),
        serial: serial.to_string(),
    };
    let cards = env.app.services().cards();
    let answer = cards.void(&form, &actor()).await.unwrap();
    assert_eq!(answer.cards[0].outcome, "voided", "{answer:?}");
}

/// Every code of a batch, by serial, from its printer file.
pub(crate) fn printer_codes<S: Store>(env: &TestApp<S>, batch: &Batch) -> BTreeMap<Serial, String> {
    let mut reader = csv::Reader::from_path(env.export_file(batch.id)).unwrap();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (Serial::parse(&r[0]).unwrap(), r[1].to_string())
        })
        .collect()
}

/// The code the printer file holds for card `n` of `batch`.
fn code_of<S: Store>(env: &TestApp<S>, batch: &Batch, n: u64) -> String {
    let serial = card(batch, n);
    printer_codes(env, batch)
        .remove(&serial)
        .unwrap_or_else(|| panic!("{serial} is not in the printer file"))
}

async fn adjust<S: Store>(env: &TestApp<S>, account: &str, amount: &str) {
    let form = AdjustForm {
        account: account.into(),
        amount: amount.into(),
        currency: "USD".into(),
        reason: "goodwill".into(),
    };
    let ledger = env.app.services().ledger();
    let adjusted = ledger.adjust(&form, &actor()).await.unwrap();
    assert!(matches!(adjusted, Adjusted::Posted { .. }), "{adjusted:?}");
}

/// Spends `amount` USD of `account` on `order` in the app store; placed at `effective_at`, when
/// given.
async fn spend<S: Store>(
    env: &TestApp<S>,
    account: &str,
    amount: &str,
    order: &str,
    effective_at: Option<DateTime<Utc>>,
) {
    let form = SpendForm {
        account: account.into(),
        amount: amount.into(),
        currency: "USD".into(),
        order: order.into(),
        service: "app-store".into(),
        effective_at,
    };
    let ledger = env.app.services().ledger();
    ledger.spend(&form, &actor()).await.unwrap();
}

/// A trade-in of a device of `model` valued at `value` USD, assessed at `assessed`, credited
/// to `account` by the posting job.
async fn trade_in<S: Store>(
    env: &TestApp<S>,
    id: &str,
    account: &str,
    model: &str,
    value: &str,
    assessed: DateTime<Utc>,
) {
    posted(env, valuation(id, account, model, value, assessed, false)).await;
}

/// A trade-in valued, or revalued, and posted by the posting job.
async fn posted<S: Store>(env: &TestApp<S>, form: ValuationForm) {
    submit(env, form).await;
    let run = post_queued(env).await;
    assert_eq!((run.posted, run.held), (1, 0));
}

/// The trade-in posting job's run over what is queued.
async fn post_queued<S: Store>(env: &TestApp<S>) -> PostRun {
    env.app
        .services()
        .trade_ins()
        .post_queued(&Actor::job("post-trade-ins"))
        .await
        .unwrap()
}

/// A valuation as the warehouse sends it, of a good device in its east warehouse; a
/// revaluation when `revaluation`.
fn valuation(
    id: &str,
    account: &str,
    model: &str,
    value: &str,
    assessed: DateTime<Utc>,
    revaluation: bool,
) -> ValuationForm {
    ValuationForm {
        trade_in_id: id.into(),
        account_id: account.into(),
        warehouse_id: "WH-EAST".into(),
        device_model: model.into(),
        device_id: format!("SN{}", id.replace('-', "")),
        grade: "good".into(),
        value: value.into(),
        currency: "USD".into(),
        assessed_at: assessed.to_rfc3339(),
        revaluation: if revaluation { "true" } else { "" }.into(),
        region: String::new(),
    }
}

/// Submits a valuation, queued for the posting job to credit.
async fn submit<S: Store>(env: &TestApp<S>, form: ValuationForm) {
    let trade_ins = env.app.services().trade_ins();
    let rows = trade_ins.submit(&[form], &actor()).await.unwrap();
    assert_eq!(rows[0].code, None, "{rows:?}");
}

async fn pay<S: Store>(
    app: &App<S>,
    retailer: &str,
    amount: &str,
    reference: &str,
) -> Result<PaymentRecorded, SettleError> {
    let form = PaymentForm::parse(retailer, amount, "USD", reference)?;
    app.services()
        .settlement()
        .record_payment(&form, &actor())
        .await
}

// ---------------------------------------------------------------------------------------------
// Settling and reading the reports

/// The app with the business day ending at midnight in `zone`.
pub(crate) async fn in_zone<S: Store>(env: &TestApp<S>, zone: &str) -> App<S> {
    let settings = Settings {
        business_time_zone: BusinessTimeZone::parse(zone).unwrap(),
        ..env.db.settings()
    };
    env.reopen(&settings).await
}

fn report_dir<S: Store>(env: &TestApp<S>) -> PathBuf {
    env.db.settings().report_dir()
}

/// Closes `date` through `app` with `key`.
async fn settle_on<S: Store>(
    app: &App<S>,
    env: &TestApp<S>,
    key: &SealKey,
    date: &str,
) -> Result<Settled, SettleError> {
    let settings = env.db.settings();
    app.services()
        .settlement()
        .settle(
            day(date),
            key,
            &settings.witness_file(),
            &settings.report_dir(),
            &actor(),
        )
        .await
}

/// Closes `date` in UTC, a grace period after its cut-off, expecting success.
async fn settle_utc<S: Store>(env: &TestApp<S>, key: &SealKey, date: &str) -> Settled {
    env.clock.set(day(date).cutoff(chrono_tz::UTC) + grace());
    settle_on(&env.app, env, key, date).await.unwrap()
}

/// A closed day's files as exported, by name.
async fn export<S: Store>(app: &App<S>, date: &str) -> BTreeMap<String, Vec<u8>> {
    app.services()
        .settlement()
        .export(day(date))
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// The files of `date` in the report directory, by name.
fn on_disk(dir: &Path, date: &str) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir.join(date))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// A CSV's rows after its header, as the csv crate reads them.
fn rows(bytes: &[u8]) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_reader(bytes);
    reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

/// A CSV's header.
fn header(bytes: &[u8]) -> Vec<String> {
    let mut reader = csv::Reader::from_reader(bytes);
    reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect()
}

/// A CSV's rows as maps from column to cell.
fn records(bytes: &[u8]) -> Vec<BTreeMap<String, String>> {
    let names = header(bytes);
    rows(bytes)
        .into_iter()
        .map(|row| names.iter().cloned().zip(row).collect())
        .collect()
}

/// One currency's roll-forward lines from `roll_forward.csv`: (line, amount).
fn roll_lines(bytes: &[u8], currency: &str) -> Vec<(String, String)> {
    rows(bytes)
        .into_iter()
        .filter(|r| r[1] == currency)
        .map(|r| (r[2].clone(), r[3].clone()))
        .collect()
}

/// A roll-forward line's amount.
fn roll_line(bytes: &[u8], currency: &str, line: &str) -> Option<String> {
    roll_lines(bytes, currency)
        .into_iter()
        .find(|(l, _)| l == line)
        .map(|(_, amount)| amount)
}

/// Per-currency sums of a `(currency, sum)` query.
async fn sums<S: Store>(env: &TestApp<S>, sql: String) -> BTreeMap<String, i64> {
    query::<S, (String, i64)>(env, sql)
        .await
        .into_iter()
        .collect()
}

/// A leg of a card or a customer account.
const LIABILITY: &str = "(e.serial IS NOT NULL OR e.account_id IS NOT NULL)";

/// The roll-forward lines a transfer kind's liability legs count under, in report order.
const MOVEMENTS: [(&str, &str); 11] = [
    ("activation", "activations"),
    ("trade_in", "trade_in_credits"),
    ("adjustment", "adjustments"),
    ("void", "voids"),
    ("spend", "spends"),
    ("refund", "refunds"),
    ("breakage", "breakage"),
    ("escheat", "escheat"),
    ("clawback", "clawbacks"),
    ("redemption", "redemptions"),
    ("payment", "payments"),
];

/// `date`'s roll-forward in `zone` recomputed from the raw entries, as the rows of
/// `roll_forward.csv` (date, currency, line, amount). The balances at the cut-off are the
/// customer balances and the cards' entries as they are now, less what was recorded since.
async fn recomputed<S: Store>(env: &TestApp<S>, zone: Tz, date: &str) -> Vec<Vec<String>> {
    let (start, end) = (
        day(date).start(zone).timestamp_millis(),
        day(date).cutoff(zone).timestamp_millis(),
    );
    let legs = "FROM transfer t JOIN entry e ON e.transfer_id = t.transfer_id";
    let opening = sums(
        env,
        format!(
            "SELECT t.currency, CAST(SUM(e.amount_minor) AS BIGINT) {legs} \
             WHERE t.recorded_ms < {start} AND {LIABILITY} GROUP BY t.currency"
        ),
    )
    .await;
    let moved: Vec<(String, String, i64)> = query(
        env,
        format!(
            "SELECT t.currency, t.kind, CAST(SUM(e.amount_minor) AS BIGINT) {legs} \
             WHERE t.recorded_ms >= {start} AND t.recorded_ms < {end} \
             AND t.effective_ms >= {start} AND {LIABILITY} GROUP BY t.currency, t.kind"
        ),
    )
    .await;
    let late: Vec<(String, String, i64, i64)> = query(
        env,
        format!(
            "SELECT t.currency, t.kind, t.effective_ms, CAST(e.amount_minor AS BIGINT) {legs} \
             WHERE t.recorded_ms >= {start} AND t.recorded_ms < {end} \
             AND t.effective_ms < {start} AND {LIABILITY}"
        ),
    )
    .await;
    let redeemed = sums(
        env,
        format!(
            "SELECT t.currency, CAST(SUM(e.amount_minor) AS BIGINT) {legs} \
             WHERE t.recorded_ms >= {start} AND t.recorded_ms < {end} \
             AND t.kind = 'redemption' AND e.account_id IS NOT NULL GROUP BY t.currency"
        ),
    )
    .await;
    let mut at_cutoff = sums(
        env,
        "SELECT currency, CAST(SUM(balance_minor) AS BIGINT) FROM account GROUP BY currency".into(),
    )
    .await;
    let cards = sums(
        env,
        format!(
            "SELECT t.currency, CAST(SUM(e.amount_minor) AS BIGINT) {legs} \
             WHERE e.serial IS NOT NULL GROUP BY t.currency"
        ),
    )
    .await;
    let since = sums(
        env,
        format!(
            "SELECT t.currency, CAST(SUM(e.amount_minor) AS BIGINT) {legs} \
             WHERE t.recorded_ms >= {end} AND {LIABILITY} GROUP BY t.currency"
        ),
    )
    .await;
    for (currency, minor) in cards {
        *at_cutoff.entry(currency).or_default() += minor;
    }
    for (currency, minor) in since {
        *at_cutoff.entry(currency).or_default() -= minor;
    }
    // A currency with nothing at the cut-off (an account opened since, say) is not the day's.
    at_cutoff.retain(|_, minor| *minor != 0);
    let pending = sums(
        env,
        "SELECT currency, CAST(SUM(value_minor - credited_minor) AS BIGINT) FROM trade_in \
         WHERE state IN ('queued', 'held') GROUP BY currency"
            .into(),
    )
    .await;
    let owed = sums(
        env,
        "SELECT currency, CAST(SUM(owed_minor) AS BIGINT) FROM trade_in WHERE owed_minor > 0 \
         GROUP BY currency"
            .into(),
    )
    .await;
    let currencies: BTreeSet<String> = opening
        .keys()
        .chain(at_cutoff.keys())
        .chain(moved.iter().map(|m| &m.0))
        .cloned()
        .collect();
    let mut out = Vec::new();
    for currency in currencies {
        let mut lines: Vec<(String, i64)> = Vec::new();
        let opening = opening.get(&currency).copied().unwrap_or(0);
        lines.push(("opening".into(), opening));
        let mut closing = opening;
        for (kind, line) in MOVEMENTS {
            let minor: i64 = moved
                .iter()
                .filter(|m| m.0 == currency && m.1 == kind)
                .map(|m| m.2)
                .sum();
            if (kind == "redemption" || kind == "payment") && minor == 0 {
                continue;
            }
            closing += minor;
            lines.push((line.into(), minor));
        }
        let mut late_lines: BTreeMap<(BusinessDate, &str), i64> = BTreeMap::new();
        for (c, kind, effective_ms, minor) in &late {
            if *c != currency {
                continue;
            }
            let effective = DateTime::from_timestamp_millis(*effective_ms).unwrap();
            let line = MOVEMENTS.iter().find(|m| m.0 == kind).unwrap().1;
            *late_lines
                .entry((BusinessDate::of(effective, zone).unwrap(), line))
                .or_default() += minor;
        }
        for ((day, line), minor) in late_lines {
            closing += minor;
            lines.push((format!("late:{day}:{line}"), minor));
        }
        let at_cutoff = at_cutoff.get(&currency).copied().unwrap_or(0);
        lines.push(("closing".into(), closing));
        lines.push(("balances_at_cutoff".into(), at_cutoff));
        lines.push(("difference".into(), at_cutoff - closing));
        for (line, memo) in [
            ("memo:redeemed_into_accounts", &redeemed),
            ("memo:pending_valuations", &pending),
            ("memo:owed_clawbacks", &owed),
        ] {
            lines.push((line.into(), memo.get(&currency).copied().unwrap_or(0)));
        }
        out.extend(
            lines
                .into_iter()
                .map(|(line, minor)| vec![date.to_string(), currency.clone(), line, dec(minor)]),
        );
    }
    out
}

/// What a retailer's USD receivable entries recorded before `date`'s cut-off add up to, as
/// owed (debits positive), in minor units.
async fn owed_by<S: Store>(env: &TestApp<S>, retailer: &str, zone: Tz, date: &str) -> i64 {
    let id = retailer_id(env, retailer).await;
    -env.count(&format!(
        "SELECT CAST(COALESCE(SUM(e.amount_minor), 0) AS BIGINT) FROM entry e \
         JOIN transfer t ON t.transfer_id = e.transfer_id \
         WHERE e.ledger_account = 'receivable:{id}' AND t.currency = 'USD' \
         AND t.recorded_ms < {}",
        day(date).cutoff(zone).timestamp_millis()
    ))
    .await
}

async fn retailer_id<S: Store>(env: &TestApp<S>, name: &str) -> i64 {
    let name = name.replace('\'', "''");
    env.count(&format!(
        "SELECT retailer_id FROM retailer WHERE name = '{name}'"
    ))
    .await
}

/// The seal key, in the test's key directory.
pub(crate) fn seal_key<S: Store>(env: &TestApp<S>) -> SealKey {
    SealKey::create_files(&env.db.settings().key_dir()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. The roll-forward reconciles to the cent

/// Day 1 sells four USD cards and one GBP card; day 2 sells two more, redeems one into an
/// account, spends from it and refunds part, adjusts it, voids a day-1 card, credits a
/// trade-in and claws part of it back, leaves another claw-back owed, expires the GBP card
/// into breakage and records a payment. Each day's
/// `roll_forward.csv` is, row for row, the roll-forward recomputed from the raw entries;
/// closing equals the balances at the cut-off with a difference of 0, and the hand-counted
/// totals agree. Acme's statement closes at what its receivable entries say it owes, with the
/// payment in `payments`; the journal nets to zero per currency.
async fn the_roll_forward_recomputed_from_the_entries_is_the_report<S: Store>(env: TestApp<S>) {
    // Day 1.
    let (key, usd, gbp) = day_one(&env, 4).await;
    sell(&env, "GB", &gbp, 0).await;
    let alice = open_account(&env, "US", "USD").await;
    let utc = chrono_tz::UTC;
    let first = settle_utc(&env, &key, "2026-03-01").await;
    assert!(first.closed_now);
    let bytes = std::fs::read(report_dir(&env).join("2026-03-01/roll_forward.csv")).unwrap();
    assert_eq!(rows(&bytes), recomputed(&env, utc, "2026-03-01").await);
    assert_eq!(
        roll_line(&bytes, "USD", "closing").as_deref(),
        Some("100.00")
    );

    // Day 2.
    let services = env.app.services();
    env.clock.set(at("2026-03-02T09:00:00Z"));
    sell(&env, "TX", &usd, 4).await;
    sell(&env, "TX", &usd, 5).await;
    env.clock.set(at("2026-03-02T09:10:00Z"));
    services
        .redemption()
        .redeem(&alice, &code_of(&env, &usd, 1), None, &actor())
        .await
        .unwrap();
    env.clock.set(at("2026-03-02T09:20:00Z"));
    spend(&env, &alice, "10.00", "order-1", None).await;
    env.clock.set(at("2026-03-02T09:30:00Z"));
    let refund = RefundForm {
        account: alice.clone(),
        order: "order-1".into(),
        refund: "refund-1".into(),
        amount: "4.00".into(),
        currency: "USD".into(),
        effective_at: None,
    };
    services.ledger().refund(&refund, &actor()).await.unwrap();
    env.clock.set(at("2026-03-02T09:40:00Z"));
    adjust(&env, &alice, "5.00").await;
    env.clock.set(at("2026-03-02T09:50:00Z"));
    void(&env, "Acme", &usd, 2).await;
    env.clock.set(at("2026-03-02T10:00:00Z"));
    trade_in(
        &env,
        "TI-1",
        &alice,
        "iPhone 13",
        "120.00",
        at("2026-03-02T09:55:00Z"),
    )
    .await;
    // Revalued down: a claw-back. Bob's trade-in, spent and then revalued down, is owed.
    env.clock.set(at("2026-03-02T10:05:00Z"));
    let assessed = at("2026-03-02T09:55:00Z");
    posted(
        &env,
        valuation("TI-1", &alice, "iPhone 13", "100.00", assessed, true),
    )
    .await;
    let bob = open_account(&env, "US", "USD").await;
    trade_in(&env, "TI-2", &bob, "iPhone 13", "30.00", assessed).await;
    spend(&env, &bob, "30.00", "order-2", None).await;
    posted(
        &env,
        valuation("TI-2", &bob, "iPhone 13", "10.00", assessed, true),
    )
    .await;
    env.clock.set(at("2026-03-02T12:00:00Z"));
    assert!(gbp.expires_at.unwrap() < env.clock.now());
    let expired = services
        .expiry()
        .run(env.clock.now(), 1_000, &actor())
        .await
        .unwrap();
    assert_eq!(expired.cards, 1, "{expired:?}");
    env.clock.set(at("2026-03-02T12:10:00Z"));
    pay(&env.app, "Acme", "50.00", "ACH-1").await.unwrap();

    let second = settle_utc(&env, &key, "2026-03-02").await;
    assert!(second.closed_now);
    let files = on_disk(&report_dir(&env), "2026-03-02");
    let roll = &files["roll_forward.csv"];
    assert_eq!(
        header(roll),
        ["business_date", "currency", "line", "amount"]
    );
    let expected = recomputed(&env, utc, "2026-03-02").await;
    assert_eq!(rows(roll), expected, "{}", String::from_utf8_lossy(roll));
    // The recomputation agrees with the hand count.
    assert_eq!(
        roll_lines(roll, "USD"),
        [
            ("opening", "100.00"),
            ("activations", "50.00"),
            ("trade_in_credits", "150.00"),
            ("adjustments", "5.00"),
            ("voids", "-25.00"),
            ("spends", "-40.00"),
            ("refunds", "4.00"),
            ("breakage", "0.00"),
            ("escheat", "0.00"),
            ("clawbacks", "-20.00"),
            ("closing", "224.00"),
            ("balances_at_cutoff", "224.00"),
            ("difference", "0.00"),
            ("memo:redeemed_into_accounts", "25.00"),
            ("memo:pending_valuations", "0.00"),
            ("memo:owed_clawbacks", "20.00"),
        ]
        .map(|(l, a)| (l.to_string(), a.to_string()))
    );
    assert_eq!(
        roll_line(roll, "GBP", "breakage").as_deref(),
        Some("-25.00")
    );
    assert_eq!(roll_line(roll, "GBP", "closing").as_deref(), Some("0.00"));
    assert_eq!(
        roll_line(roll, "GBP", "difference").as_deref(),
        Some("0.00")
    );
    // The run's own answer says the same.
    for r in &second.roll_forward {
        assert_eq!(r.line("difference"), Some(0), "{r:?}");
        assert_eq!(r.line("closing"), r.line("balances_at_cutoff"));
    }

    // Acme's statement: what its receivable entries say, the payment in `payments`.
    let statements = records(&files["retailer_statements.csv"]);
    let acme = statements
        .iter()
        .find(|s| s["retailer"] == "Acme" && s["currency"] == "USD")
        .unwrap();
    assert_eq!(acme["activated_cards"], "2");
    assert_eq!(acme["activated_gross"], "50.00");
    assert_eq!(acme["voided_cards"], "1");
    assert_eq!(acme["voided_gross"], "25.00");
    assert_eq!(acme["payments"], "50.00");
    assert_eq!(
        acme["opening"],
        dec(owed_by(&env, "Acme", utc, "2026-03-01").await)
    );
    assert_eq!(
        acme["closing"],
        dec(owed_by(&env, "Acme", utc, "2026-03-02").await)
    );
    let payments = records(&files["payments.csv"]);
    assert_eq!(payments.len(), 1);
    assert_eq!(
        (
            payments[0]["reference"].as_str(),
            payments[0]["amount"].as_str()
        ),
        ("ACH-1", "50.00")
    );
    let trade_ins = records(&files["trade_ins.csv"]);
    assert_eq!(trade_ins.len(), 1);
    assert_eq!(
        (
            trade_ins[0]["postings"].as_str(),
            trade_ins[0]["credited"].as_str(),
            trade_ins[0]["clawed_back"].as_str()
        ),
        ("3", "150.00", "20.00")
    );
    // The journal nets to zero per currency: every transfer balances.
    let mut net: BTreeMap<String, i64> = BTreeMap::new();
    for line in records(&files["journal.csv"]) {
        let cents: i64 = line["net_credit"].replace('.', "").parse().unwrap();
        *net.entry(line["currency"].clone()).or_default() += cents;
    }
    assert!(net.values().all(|n| *n == 0), "{net:?}");
    assert_eq!(net.keys().collect::<Vec<_>>(), ["GBP", "USD"]);
    assert_whole(&env).await;
}
both_backends!(
    roll_forward,
    the_roll_forward_recomputed_from_the_entries_is_the_report
);

// ---------------------------------------------------------------------------------------------
// 2. and 3. A closed day is never rewritten

/// A rerun of a closed day is `closed_now: false` and gives byte-identical files, stored and
/// written, though a valuation pending at the close (a memo line) has since been credited and
/// an account opened in a new currency: a report changed on disk in between is written back as
/// issued. A stored report
/// changed behind settlement's back makes the rerun fail `settle.changed`, naming it.
async fn a_rerun_gives_the_same_bytes<S: Store>(env: TestApp<S>) {
    let (key, usd, _) = day_one(&env, 2).await;
    void(&env, "Acme", &usd, 1).await;
    // A valuation queued, not yet credited: a memo line, as it stood when the day closed.
    let alice = open_account(&env, "US", "USD").await;
    let assessed = at("2026-03-01T09:30:00Z");
    submit(
        &env,
        valuation("TI-Q", &alice, "iPhone 13", "40.00", assessed, false),
    )
    .await;
    let first = settle_utc(&env, &key, "2026-03-01").await;
    assert!(first.closed_now);
    assert_eq!(
        first.roll_forward[0].line("memo:pending_valuations"),
        Some(4_000)
    );
    let dir = report_dir(&env);
    let exported = export(&env.app, "2026-03-01").await;
    let written = on_disk(&dir, "2026-03-01");
    assert_eq!(written, exported, "the files written are the files stored");
    assert_eq!(
        exported.keys().cloned().collect::<BTreeSet<_>>(),
        REPORTS
            .iter()
            .chain(&["manifest.json", "manifest.sig"])
            .map(|s| s.to_string())
            .collect()
    );
    let manifest: serde_json::Value = serde_json::from_slice(&exported["manifest.json"]).unwrap();
    let listed: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, REPORTS);

    // Later activity (the queued valuation credited, a late line of 03-02), and a report
    // edited on disk.
    env.clock.set(at("2026-03-02T11:00:00Z"));
    sell(&env, "TX", &usd, 2).await;
    assert_eq!(post_queued(&env).await.posted, 1);
    open_account(&env, "GB", "GBP").await;
    std::fs::write(dir.join("2026-03-01/roll_forward.csv"), b"edited\n").unwrap();

    let again = settle_on(&env.app, &env, &key, "2026-03-01").await.unwrap();
    assert!(!again.closed_now);
    assert_eq!(again.roll_forward, first.roll_forward);
    assert_eq!(again.statements, first.statements);
    assert_eq!(again.files, first.files);
    assert_eq!(again.seal_id, first.seal_id);
    assert_eq!(export(&env.app, "2026-03-01").await, exported);
    assert_eq!(on_disk(&dir, "2026-03-01"), exported, "rewritten as issued");
    assert_eq!(env.count("SELECT count(*) FROM settlement").await, 1);

    // A stored report that no longer matches what the day recomputes to is named.
    let edited = env.blob(b"edited\n");
    env.exec(&format!(
        "UPDATE settlement_file SET content = {edited} \
         WHERE business_date = '2026-03-01' AND name = 'journal.csv'"
    ))
    .await;
    let changed = settle_on(&env.app, &env, &key, "2026-03-01")
        .await
        .unwrap_err();
    assert_eq!(changed.code(), "settle.changed", "{changed}");
    assert!(changed.to_string().contains("journal.csv"), "{changed}");
    assert_whole(&env).await;
}
both_backends!(rerun, a_rerun_gives_the_same_bytes);

/// In New York: D (2026-03-02) sells a card and credits an account. After its cut-off, but
/// before D closes, a till that was offline sends a sale it made at 23:55 on D: D closes
/// without it. Once D is closed come another offline sale of 23:50 on D, a void made offline
/// at 23:58 on D, a spend placed at 23:45 on D and a trade-in assessed at 23:40 on D. Each is
/// a `late:2026-03-02:…` line of D+1 (not one of D+1's own movements), in name order after the
/// movements and before the closing, and D+1 still reconciles from D's closing. The retailer's
/// statement counts the sales and the void on D+1, when they were recorded. D's files, exported
/// and rerun, do not change.
async fn a_late_entry_is_an_adjustment_line_of_the_day_it_was_recorded<S: Store>(env: TestApp<S>) {
    let key = seal_key(&env);
    let (usd, _) = acme(&env).await;
    let alice = open_account(&env, "US", "USD").await;
    let ny = new_york();
    let app = in_zone(&env, "America/New_York").await;
    let d = day("2026-03-02");
    // 23:MM in New York on D is 04:MM UTC the next day.
    let on_d = |minute: u32| at(&format!("2026-03-03T04:{minute:02}:00Z"));
    assert_eq!(BusinessDate::of(on_d(59), ny), Some(d));
    env.clock.set(at("2026-03-02T15:00:00Z"));
    sell(&env, "TX", &usd, 0).await;
    adjust(&env, &alice, "20.00").await;

    // Recorded after the cut-off, within the grace: not D's.
    env.clock.set(d.cutoff(ny) + TimeDelta::minutes(2));
    sell_at(&env, "Acme", "TX", &usd, 1, Some(on_d(55))).await;
    env.clock.set(d.cutoff(ny) + grace());
    let closed = settle_on(&app, &env, &key, "2026-03-02").await.unwrap();
    assert!(closed.closed_now);
    let before = export(&app, "2026-03-02").await;
    let roll = &before["roll_forward.csv"];
    assert_eq!(rows(roll), recomputed(&env, ny, "2026-03-02").await);
    assert_eq!(
        roll_line(roll, "USD", "activations").as_deref(),
        Some("25.00")
    );
    assert_eq!(roll_line(roll, "USD", "closing").as_deref(), Some("45.00"));

    // Recorded after D closed.
    env.clock
        .set(d.cutoff(ny) + grace() + TimeDelta::minutes(1));
    sell_at(&env, "Acme", "TX", &usd, 2, Some(on_d(50))).await;
    void_at(&env, "Acme", &usd, 0, Some(on_d(58))).await;
    spend(&env, &alice, "3.00", "order-late", Some(on_d(45))).await;
    trade_in(&env, "TI-9", &alice, "iPhone 13", "30.00", on_d(40)).await;

    let next = "2026-03-03";
    env.clock.set(day(next).cutoff(ny) + grace());
    let settled = settle_on(&app, &env, &key, next).await.unwrap();
    assert!(settled.closed_now);
    let files = export(&app, next).await;
    let roll = &files["roll_forward.csv"];
    assert_eq!(rows(roll), recomputed(&env, ny, next).await);
    assert_eq!(
        roll_lines(roll, "USD"),
        [
            ("opening", "45.00"),
            ("activations", "0.00"),
            ("trade_in_credits", "0.00"),
            ("adjustments", "0.00"),
            ("voids", "0.00"),
            ("spends", "0.00"),
            ("refunds", "0.00"),
            ("breakage", "0.00"),
            ("escheat", "0.00"),
            ("clawbacks", "0.00"),
            ("late:2026-03-02:activations", "50.00"),
            ("late:2026-03-02:spends", "-3.00"),
            ("late:2026-03-02:trade_in_credits", "30.00"),
            ("late:2026-03-02:voids", "-25.00"),
            ("closing", "97.00"),
            ("balances_at_cutoff", "97.00"),
            ("difference", "0.00"),
            ("memo:redeemed_into_accounts", "0.00"),
            ("memo:pending_valuations", "0.00"),
            ("memo:owed_clawbacks", "0.00"),
        ]
        .map(|(l, a)| (l.to_string(), a.to_string()))
    );
    // The retailer sold and voided them on D+1's books: its statement counts them.
    let statement = &records(&files["retailer_statements.csv"])[0];
    assert_eq!(statement["activated_cards"], "2");
    assert_eq!(statement["voided_cards"], "1");
    assert_eq!(records(&files["trade_ins.csv"])[0]["credited"], "30.00");

    // D is never rewritten.
    assert_eq!(export(&app, "2026-03-02").await, before);
    let rerun = settle_on(&app, &env, &key, "2026-03-02").await.unwrap();
    assert!(!rerun.closed_now);
    assert_eq!(export(&app, "2026-03-02").await, before);
    assert_eq!(on_disk(&report_dir(&env), "2026-03-02"), before);
    assert_whole(&env).await;
}
both_backends!(
    late_entry,
    a_late_entry_is_an_adjustment_line_of_the_day_it_was_recorded
);

// ---------------------------------------------------------------------------------------------
// 4. Cut-off edges in the business time zone

/// Posts an adjustment of `amount` to `account` at `instant`.
async fn adjust_at<S: Store>(env: &TestApp<S>, account: &str, instant: &str, amount: &str) {
    env.clock.set(at(instant));
    adjust(env, account, amount).await;
}

/// Closes each of `days` in order in New York, a grace after its cut-off; each day's
/// `adjustments` line.
async fn adjustments_by_day<S: Store>(
    env: &TestApp<S>,
    app: &App<S>,
    key: &SealKey,
    days: &[&str],
) -> Vec<String> {
    let mut out = Vec::new();
    for date in days {
        env.clock.set(day(date).cutoff(new_york()) + grace());
        let settled = settle_on(app, env, key, date).await.unwrap();
        assert!(settled.closed_now);
        let roll = &export(app, date).await["roll_forward.csv"];
        assert_eq!(rows(roll), recomputed(env, new_york(), date).await);
        assert_eq!(
            roll_line(roll, "USD", "difference").as_deref(),
            Some("0.00")
        );
        out.push(roll_line(roll, "USD", "adjustments").unwrap());
    }
    out
}

/// Spring forward: 2026-03-08 in New York runs from 05:00 UTC to 04:00 UTC the next day (23
/// hours). Adjustments of 1, 2, 4, 8 and 16 dollars at a second before and after each local
/// midnight and half an hour into 03-09 (which a 24-hour day would have counted in 03-08), and
/// of 32 at 03-08's midnight itself, land in 03-07 (1), 03-08 (32 + 2 + 4) and 03-09 (8 + 16).
async fn the_day_daylight_saving_starts_holds_its_23_hours<S: Store>(env: TestApp<S>) {
    let key = seal_key(&env);
    let app = in_zone(&env, "America/New_York").await;
    let alice = open_account(&env, "US", "USD").await;
    assert_eq!(
        day("2026-03-09").start(new_york()) - day("2026-03-08").start(new_york()),
        TimeDelta::hours(23)
    );
    adjust_at(&env, &alice, "2026-03-08T04:59:59Z", "1.00").await; // 03-07 23:59:59 EST
    adjust_at(&env, &alice, "2026-03-08T05:00:00Z", "32.00").await; // 03-08 00:00:00 EST
    adjust_at(&env, &alice, "2026-03-08T05:00:01Z", "2.00").await; // 03-08 00:00:01 EST
    adjust_at(&env, &alice, "2026-03-09T03:59:59Z", "4.00").await; // 03-08 23:59:59 EDT
    adjust_at(&env, &alice, "2026-03-09T04:00:01Z", "8.00").await; // 03-09 00:00:01 EDT
    adjust_at(&env, &alice, "2026-03-09T04:30:00Z", "16.00").await; // 03-09 00:30 EDT
    let lines = adjustments_by_day(
        &env,
        &app,
        &key,
        &["2026-03-07", "2026-03-08", "2026-03-09"],
    )
    .await;
    assert_eq!(lines, ["1.00", "38.00", "24.00"]);
    assert_whole(&env).await;
}
both_backends!(
    spring_forward,
    the_day_daylight_saving_starts_holds_its_23_hours
);

/// Fall back: 2026-11-01 in New York runs from 04:00 UTC to 05:00 UTC the next day (25
/// hours). Adjustments at a second before and after each local midnight and at 23:30 EST on
/// 11-01 (which a 24-hour day would have counted in 11-02) land in 10-31 (1), 11-01 (2 + 4 +
/// 8) and 11-02 (16).
async fn the_day_daylight_saving_ends_holds_its_25_hours<S: Store>(env: TestApp<S>) {
    let key = seal_key(&env);
    let app = in_zone(&env, "America/New_York").await;
    let alice = open_account(&env, "US", "USD").await;
    assert_eq!(
        day("2026-11-02").start(new_york()) - day("2026-11-01").start(new_york()),
        TimeDelta::hours(25)
    );
    adjust_at(&env, &alice, "2026-11-01T03:59:59Z", "1.00").await; // 10-31 23:59:59 EDT
    adjust_at(&env, &alice, "2026-11-01T04:00:01Z", "2.00").await; // 11-01 00:00:01 EDT
    adjust_at(&env, &alice, "2026-11-02T04:30:00Z", "4.00").await; // 11-01 23:30 EST
    adjust_at(&env, &alice, "2026-11-02T04:59:59Z", "8.00").await; // 11-01 23:59:59 EST
    adjust_at(&env, &alice, "2026-11-02T05:00:01Z", "16.00").await; // 11-02 00:00:01 EST
    let lines = adjustments_by_day(
        &env,
        &app,
        &key,
        &["2026-10-31", "2026-11-01", "2026-11-02"],
    )
    .await;
    assert_eq!(lines, ["1.00", "14.00", "16.00"]);
    assert_whole(&env).await;
}
both_backends!(fall_back, the_day_daylight_saving_ends_holds_its_25_hours);

// ---------------------------------------------------------------------------------------------
// 5. No report runs a formula

/// Retailers named `=HYPERLINK("x")`, `@evil` and `+1` each sell a card (one voids it); devices
/// of models `=cmd|' /C calc'!A0` and `@SUM(A1)` are traded in; payments come with references
/// `-cmd` and `-12`. In the CSV every such name, model and reference starts with a single quote,
/// except `-12`, a plain number; every amount is a plain number, the negative void and spend
/// too (`-25.00`, `-10.00`), and no cell anywhere begins with a formula character unquoted.
async fn formula_looking_cells_are_quoted_and_amounts_stay_numbers<S: Store>(env: TestApp<S>) {
    let key = seal_key(&env);
    let names = ["=HYPERLINK(\"x\")", "@evil", "+1"];
    env.clock.set(at("2026-03-01T10:00:00Z"));
    for name in names {
        retailer(&env, name).await;
        let batch = shelf(&env, name, "US", "USD", 2, 365).await;
        sell_at(&env, name, "TX", &batch, 0, None).await;
        sell_at(&env, name, "TX", &batch, 1, None).await;
        if name == "@evil" {
            void(&env, name, &batch, 1).await;
        }
    }
    let alice = open_account(&env, "US", "USD").await;
    env.clock.set(at("2026-03-01T11:00:00Z"));
    trade_in(
        &env,
        "TI-1",
        &alice,
        "=cmd|' /C calc'!A0",
        "100.00",
        at("2026-03-01T10:30:00Z"),
    )
    .await;
    trade_in(
        &env,
        "TI-2",
        &alice,
        "@SUM(A1)",
        "50.00",
        at("2026-03-01T10:30:00Z"),
    )
    .await;
    spend(&env, &alice, "10.00", "order-1", None).await;
    pay(&env.app, "+1", "10.00", "-cmd").await.unwrap();
    pay(&env.app, "@evil", "5.00", "-12").await.unwrap();
    settle_utc(&env, &key, "2026-03-01").await;
    let files = on_disk(&report_dir(&env), "2026-03-01");

    let statements = records(&files["retailer_statements.csv"]);
    let shown: BTreeSet<&str> = statements.iter().map(|s| s["retailer"].as_str()).collect();
    assert_eq!(
        shown,
        ["'=HYPERLINK(\"x\")", "'@evil", "'+1"]
            .into_iter()
            .collect()
    );
    let evil = statements
        .iter()
        .find(|s| s["retailer"] == "'@evil")
        .unwrap();
    assert_eq!(evil["voided_gross"], "25.00");
    assert_eq!(evil["payments"], "5.00");
    // The raw bytes: the quote is inside the CSV field, not a CSV quoting artefact.
    let raw = String::from_utf8(files["retailer_statements.csv"].clone()).unwrap();
    assert!(raw.contains(",\"'=HYPERLINK(\"\"x\"\")\","), "{raw}");
    assert!(raw.contains(",'@evil,"), "{raw}");
    assert!(raw.contains(",'+1,"), "{raw}");

    let models: BTreeSet<String> = records(&files["trade_ins.csv"])
        .iter()
        .map(|t| t["device_model"].clone())
        .collect();
    assert_eq!(
        models,
        ["'=cmd|' /C calc'!A0", "'@SUM(A1)"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    let payments = records(&files["payments.csv"]);
    let references: BTreeMap<&str, &str> = payments
        .iter()
        .map(|p| (p["retailer"].as_str(), p["reference"].as_str()))
        .collect();
    assert_eq!(
        references,
        [("'+1", "'-cmd"), ("'@evil", "-12")].into_iter().collect()
    );

    let roll = &files["roll_forward.csv"];
    assert_eq!(roll_line(roll, "USD", "voids").as_deref(), Some("-25.00"));
    assert_eq!(roll_line(roll, "USD", "spends").as_deref(), Some("-10.00"));
    assert!(String::from_utf8_lossy(roll).contains(",voids,-25.00\n"));
    // Every cell: a plain number, or text that does not begin with a formula character.
    let number = |cell: &str| {
        let digits = cell.strip_prefix('-').unwrap_or(cell);
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
        !whole.is_empty()
            && !fraction.is_empty()
            && whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
    };
    for name in REPORTS {
        for row in rows(&files[name]) {
            for cell in row {
                assert!(
                    number(&cell) || !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "{name}: {cell:?}"
                );
            }
        }
    }
    // Every amount column is a plain number.
    for (name, columns) in [
        ("roll_forward.csv", &["amount"][..]),
        (
            "retailer_statements.csv",
            &[
                "opening",
                "activated_gross",
                "net_due",
                "payments",
                "closing",
            ][..],
        ),
        ("journal.csv", &["debits", "credits", "net_credit"][..]),
        ("payments.csv", &["amount"][..]),
        ("trade_ins.csv", &["credited", "clawed_back"][..]),
    ] {
        for record in records(&files[name]) {
            for column in columns {
                assert!(number(&record[*column]), "{name} {column}: {record:?}");
            }
        }
    }
    let journal = records(&files["journal.csv"]);
    assert!(
        journal.iter().any(|j| j["net_credit"].starts_with('-')),
        "some account is debited on net: {journal:?}"
    );
    assert_whole(&env).await;
}
both_backends!(
    formulas,
    formula_looking_cells_are_quoted_and_amounts_stay_numbers
);

// ---------------------------------------------------------------------------------------------
// 6. Payments

/// A payment posts one transfer, the bank debited and Acme's receivable credited; the same
/// reference and amount again is a replay of it; the same reference with another amount is
/// `settle.payment_conflict`, an unknown retailer `settle.unknown_retailer`; neither writes.
/// The day's statement shows the payment in `payments` and takes it off `closing`.
async fn a_payment_is_recorded_once_per_reference<S: Store>(env: TestApp<S>) {
    let (key, _, _) = day_one(&env, 4).await;
    let acme_id = retailer_id(&env, "Acme").await;
    let recorded = pay(&env.app, "Acme", "50.00", "ACH-1").await.unwrap();
    assert!(!recorded.replayed);
    let legs: Vec<(String, i64)> = query(
        &env,
        format!(
            "SELECT ledger_account, amount_minor FROM entry WHERE transfer_id = {} ORDER BY leg",
            recorded.transfer_id
        ),
    )
    .await;
    assert_eq!(
        legs,
        [
            ("bank".to_string(), -5_000),
            (format!("receivable:{acme_id}"), 5_000)
        ]
    );
    let before = payment_rows(&env).await;
    assert_eq!(before[..2], [1, 1]);

    let again = pay(&env.app, "Acme", "50.00", "ACH-1").await.unwrap();
    assert_eq!(
        (again.replayed, again.transfer_id),
        (true, recorded.transfer_id)
    );
    let conflict = pay(&env.app, "Acme", "50.01", "ACH-1").await.unwrap_err();
    assert_eq!(conflict.code(), "settle.payment_conflict", "{conflict}");
    let unknown = pay(&env.app, "Nobody", "50.00", "ACH-2").await.unwrap_err();
    assert_eq!(unknown.code(), "settle.unknown_retailer", "{unknown}");
    let bad = pay(&env.app, "Acme", "50.00", "ACH 3").await.unwrap_err();
    assert_eq!(bad.code(), "ledger.bad_reference", "{bad}");
    assert_eq!(
        payment_rows(&env).await,
        before,
        "replays and refusals write nothing"
    );

    let settled = settle_utc(&env, &key, "2026-03-01").await;
    let statement = settled
        .statements
        .iter()
        .find(|s| s.retailer == "Acme")
        .unwrap();
    assert_eq!(statement.payments, 5_000);
    assert_eq!(
        statement.closing,
        statement.opening + statement.net_due - statement.payments
    );
    let owed = owed_by(&env, "Acme", chrono_tz::UTC, "2026-03-01").await;
    assert_eq!(statement.closing, owed);
    assert_eq!(
        statement.net_due,
        statement.activated_gross - statement.commission
    );
    let file = &export(&env.app, "2026-03-01").await["retailer_statements.csv"];
    let row = &records(file)[0];
    assert_eq!(row["payments"], "50.00");
    assert_eq!(row["closing"], dec(owed));
    assert_eq!(row["due_0_30_days"], dec(owed));
    assert_whole(&env).await;
}
both_backends!(payments, a_payment_is_recorded_once_per_reference);

/// What Acme owes ages by the days that made it up, payments paying the oldest first. Day 1
/// (03-01) sells four cards; every day after closes with Acme's statement carrying it (opening
/// = closing, nothing sold); on 03-31 (30 days on) it is all 0–30 days old. On 04-01 Acme pays
/// 10.00 and sells one more card: its closing is the day-1 dues less the payment, 31–60 days
/// old, plus the new dues, 0–30 days old.
async fn what_a_retailer_owes_ages_by_the_days_that_made_it_up<S: Store>(env: TestApp<S>) {
    let (key, usd, _) = day_one(&env, 4).await;
    let first = settle_utc(&env, &key, "2026-03-01").await;
    let owed = first.statements[0].closing;
    assert_eq!(owed, first.statements[0].net_due);
    assert!(owed > 1_000);
    let mut date = day("2026-03-02");
    while date <= day("2026-03-31") {
        let settled = settle_utc(&env, &key, &date.to_string()).await;
        let statement = &settled.statements[..];
        assert_eq!(statement.len(), 1, "{date}: {statement:?}");
        let s = &statement[0];
        assert_eq!(
            (s.opening, s.activated_cards, s.payments, s.closing),
            (owed, 0, 0, owed),
            "{date}"
        );
        assert_eq!(s.ageing, [owed, 0, 0, 0], "{date}");
        date = date.next().unwrap();
    }

    env.clock.set(at("2026-04-01T10:00:00Z"));
    sell(&env, "TX", &usd, 4).await;
    pay(&env.app, "Acme", "10.00", "ACH-APRIL").await.unwrap();
    let settled = settle_utc(&env, &key, "2026-04-01").await;
    let s = &settled.statements[0];
    assert_eq!((s.activated_cards, s.payments), (1, 1_000));
    assert_eq!(s.closing, owed - 1_000 + s.net_due);
    assert_eq!(s.ageing, [s.net_due, owed - 1_000, 0, 0]);
    let file = &export(&env.app, "2026-04-01").await["retailer_statements.csv"];
    let row = &records(file)[0];
    assert_eq!(
        [
            &row["due_0_30_days"],
            &row["due_31_60_days"],
            &row["due_61_90_days"],
            &row["due_over_90_days"]
        ],
        [&dec(s.net_due), &dec(owed - 1_000), "0.00", "0.00"]
    );
    assert_eq!(
        owed_by(&env, "Acme", chrono_tz::UTC, "2026-04-01").await,
        s.closing
    );
    assert_whole(&env).await;
}
both_backends!(
    ageing,
    what_a_retailer_owes_ages_by_the_days_that_made_it_up
);

// ---------------------------------------------------------------------------------------------
// 7. Refusals

/// A day closes no earlier than its cut-off plus the grace (a second before: `too_early`,
/// nothing stored). With 03-01 closed, 03-03 cannot close before 03-02 (`gap`). A customer
/// balance changed behind the ledger's back fails the run as `unbalanced`, naming the account
/// and the amount, and stores nothing; so does a sold card marked voided without its entries.
/// Put back, the day closes.
async fn settlement_refuses_what_it_cannot_close<S: Store>(env: TestApp<S>) {
    let (key, usd, _) = day_one(&env, 1).await;
    let alice = open_account(&env, "US", "USD").await;
    adjust(&env, &alice, "10.00").await;

    env.clock
        .set(day("2026-03-01").cutoff(chrono_tz::UTC) + grace() - TimeDelta::seconds(1));
    let early = settle_on(&env.app, &env, &key, "2026-03-01")
        .await
        .unwrap_err();
    assert_eq!(early.code(), "settle.too_early", "{early}");
    assert_eq!(env.count("SELECT count(*) FROM settlement").await, 0);
    settle_utc(&env, &key, "2026-03-01").await;

    env.clock.set(at("2026-03-02T10:00:00Z"));
    adjust(&env, &alice, "1.00").await;
    env.clock
        .set(day("2026-03-03").cutoff(chrono_tz::UTC) + grace());
    let gap = settle_on(&env.app, &env, &key, "2026-03-03")
        .await
        .unwrap_err();
    assert_eq!(gap.code(), "settle.gap", "{gap}");
    assert!(gap.to_string().contains("2026-03-02"), "{gap}");

    let tampered = env
        .exec(&format!(
            "UPDATE account SET balance_minor = balance_minor + 1 WHERE account_id = {alice}"
        ))
        .await;
    assert_eq!(tampered, 1);
    let unbalanced = settle_on(&env.app, &env, &key, "2026-03-02")
        .await
        .unwrap_err();
    assert_eq!(unbalanced.code(), "settle.unbalanced", "{unbalanced}");
    let message = unbalanced.to_string();
    assert!(message.contains(&format!("customer:{alice}")), "{message}");
    assert!(message.contains("0.01 USD"), "{message}");
    assert_eq!(env.count("SELECT count(*) FROM settlement").await, 1);
    assert!(!report_dir(&env).join("2026-03-02").exists());

    env.exec(&format!(
        "UPDATE account SET balance_minor = balance_minor - 1 WHERE account_id = {alice}"
    ))
    .await;
    // A sold card marked voided behind the ledger's back: its 25.00 is named.
    let serial = card(&usd, 0);
    let voided = tender::domain::CardState::Voided.code();
    let set_state = |state: i16| {
        format!(
            "UPDATE card SET state = {state} WHERE serial = {}",
            serial.sequence()
        )
    };
    assert_eq!(env.exec(&set_state(voided)).await, 1);
    let unbalanced = settle_on(&env.app, &env, &key, "2026-03-02")
        .await
        .unwrap_err();
    assert_eq!(unbalanced.code(), "settle.unbalanced", "{unbalanced}");
    let message = unbalanced.to_string();
    assert!(
        message.contains(&format!("card:{serial} by -25.00 USD")),
        "{message}"
    );
    env.exec(&set_state(tender::domain::CardState::Active.code()))
        .await;
    let settled = settle_on(&env.app, &env, &key, "2026-03-02").await.unwrap();
    assert!(settled.closed_now);
    assert!(
        settle_on(&env.app, &env, &key, "2026-03-03")
            .await
            .unwrap()
            .closed_now
    );
    assert_whole(&env).await;
}
both_backends!(refusals, settlement_refuses_what_it_cannot_close);

// ---------------------------------------------------------------------------------------------
// 8. Verify, export and the HTTP route

/// After settling, `verify` finds every file `ok` and the signature valid. A report changed on
/// disk is `differs`, a deleted one `missing`, a stray file `not_in_manifest`; checked against
/// another seal key the signature is invalid. `export` and `GET
/// /v1/settlements/{date}/files/{name}` with a finance key give the same bytes for every file;
/// a support key is 403, an unknown file or a day not closed (or out of range) 404, a bad date
/// 400.
async fn verify_export_and_http_agree<S: Store>(env: TestApp<S>) {
    let (key, _, _) = day_one(&env, 1).await;
    settle_utc(&env, &key, "2026-03-01").await;
    let settlement = env.app.services().settlement();
    let dir = report_dir(&env);
    let date = day("2026-03-01");

    let verified = settlement.verify(date, &key.public(), &dir).await.unwrap();
    assert!(verified.ok(), "{verified:?}");
    assert!(verified.signature_ok && verified.manifest_ok);
    assert_eq!(
        verified
            .files
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        REPORTS
    );
    let other = SealKey::generate();
    let forged = settlement
        .verify(date, &other.public(), &dir)
        .await
        .unwrap();
    assert!(!forged.signature_ok && !forged.ok(), "{forged:?}");

    let day_dir = dir.join("2026-03-01");
    let mut journal = std::fs::read(day_dir.join("journal.csv")).unwrap();
    journal.push(b'\n');
    std::fs::write(day_dir.join("journal.csv"), journal).unwrap();
    std::fs::remove_file(day_dir.join("payments.csv")).unwrap();
    std::fs::write(day_dir.join("extra.csv"), b"x\n").unwrap();
    let verified = settlement.verify(date, &key.public(), &dir).await.unwrap();
    assert!(!verified.ok());
    assert!(verified.signature_ok && verified.manifest_ok);
    let statuses: BTreeMap<&str, &str> = verified
        .files
        .iter()
        .map(|f| (f.name.as_str(), f.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("roll_forward.csv", "ok"),
            ("retailer_statements.csv", "ok"),
            ("journal.csv", "differs"),
            ("payments.csv", "missing"),
            ("trade_ins.csv", "ok"),
            ("extra.csv", "not_in_manifest"),
        ]
        .into_iter()
        .collect()
    );
    std::fs::write(day_dir.join("manifest.json"), b"{}\n").unwrap();
    let verified = settlement.verify(date, &key.public(), &dir).await.unwrap();
    assert!(!verified.manifest_ok);

    // Export and HTTP: the stored bytes, whatever the directory holds now.
    let exported = export(&env.app, "2026-03-01").await;
    assert_eq!(exported.len(), REPORTS.len() + 2);
    for (name, bytes) in &exported {
        let file = settlement.file(date, name).await.unwrap();
        assert_eq!(&file, bytes, "{name}");
    }
    let missing = settlement.file(date, "nope.csv").await.unwrap_err();
    assert_eq!(missing.code(), "settle.no_file");
    let not_closed = settlement.export(day("2026-03-02")).await.unwrap_err();
    assert_eq!(not_closed.code(), "settle.not_settled");

    let finance = api_key(&env, "books", "finance").await;
    let support = api_key(&env, "help", "support").await;
    let (addr, stop, server) = start(&env).await;
    for (name, bytes) in &exported {
        let path = format!("/v1/settlements/2026-03-01/files/{name}");
        let reply = get_with(addr, &path, Some(&finance)).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.text);
        assert_eq!(reply.text.as_bytes(), bytes.as_slice(), "{name}");
        if name.ends_with(".csv") {
            assert_eq!(
                reply.header("content-type"),
                Some("text/csv; charset=utf-8")
            );
        }
    }
    let path = "/v1/settlements/2026-03-01/files/roll_forward.csv";
    assert_eq!(get_with(addr, path, Some(&support)).await.status, 403);
    assert_eq!(get_with(addr, path, None).await.status, 401);
    for (path, status, code) in [
        (
            "/v1/settlements/2026-03-01/files/nope.csv",
            404,
            "settle.no_file",
        ),
        (
            "/v1/settlements/2026-03-02/files/roll_forward.csv",
            404,
            "settle.not_settled",
        ),
        (
            "/v1/settlements/2026-13-01/files/roll_forward.csv",
            400,
            "api.bad_date",
        ),
        (
            "/v1/settlements/yesterday/files/roll_forward.csv",
            400,
            "api.bad_date",
        ),
        (
            "/v1/settlements/1999-12-31/files/roll_forward.csv",
            404,
            "settle.not_settled",
        ),
        (
            "/v1/settlements/2026-03-01/files/ROLL_FORWARD.CSV",
            400,
            "api.bad_file_name",
        ),
    ] {
        let reply = get_with(addr, path, Some(&finance)).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.text);
        assert_eq!(reply.body["error"]["code"], code, "{path}: {}", reply.text);
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert_whole(&env).await;
}
both_backends!(verify_export_http, verify_export_and_http_agree);

/// The rows a payment writes: payment transfers, payment records, entries.
async fn payment_rows<S: Store>(env: &TestApp<S>) -> [i64; 3] {
    [
        env.count("SELECT count(*) FROM transfer WHERE kind = 'payment'")
            .await,
        env.count("SELECT count(*) FROM retailer_payment").await,
        env.count("SELECT count(*) FROM entry").await,
    ]
}

// ---------------------------------------------------------------------------------------------
// 9. The unit-of-work deadline

/// A store whose write transactions roll back past a deadline of the test's choosing.
trait Deadlined: Store {
    fn deadlined(&self, deadline: Duration) -> Self;
}

impl Deadlined for SqliteStore {
    fn deadlined(&self, deadline: Duration) -> Self {
        self.clone().with_unit_deadline(deadline)
    }
}

impl Deadlined for PgStore {
    fn deadlined(&self, deadline: Duration) -> Self {
        self.clone().with_unit_deadline(deadline)
    }
}

fn new_retailer(name: &str) -> NewRetailer {
    NewRetailer {
        name: RetailerName::parse(name).unwrap(),
        commission: CommissionRate::parse_percent("1").unwrap(),
    }
}

/// Under a 200 ms deadline, a write transaction held for 300 ms fails at its commit with
/// `store.deadline` (transient) and what it wrote is not there; the same write within its
/// deadline commits, and the store takes writes after.
async fn a_unit_of_work_past_its_deadline_rolls_back<S: Deadlined>(env: TestApp<S>) {
    let store = env.store().deadlined(Duration::from_millis(200));
    let now = env.clock.now();

    let mut tx = store.begin().await.unwrap();
    tx.insert_retailer(&new_retailer("Slowpoke"), now)
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = tx.commit().await.unwrap_err();
    assert!(matches!(late, StoreError::Deadline), "{late}");
    assert_eq!(late.code(), "store.deadline");
    assert_eq!(late.kind(), tender::error::Kind::Transient);
    assert_eq!(
        env.count("SELECT count(*) FROM retailer WHERE name = 'Slowpoke'")
            .await,
        0,
        "nothing was written"
    );

    // The same write well within a deadline (generous, for a loaded machine) commits.
    let mut tx = env
        .store()
        .deadlined(Duration::from_secs(30))
        .begin()
        .await
        .unwrap();
    tx.insert_retailer(&new_retailer("Quick"), now)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        env.count("SELECT count(*) FROM retailer WHERE name = 'Quick'")
            .await,
        1
    );
    // The store is not left locked: the app writes after it.
    let retailers = env.app.services().retailers();
    retailers.add("Acme", "2.5", &actor()).await.unwrap();
    assert_whole(&env).await;
}
both_backends!(deadline, a_unit_of_work_past_its_deadline_rolls_back);

// ---------------------------------------------------------------------------------------------
// 10. The `tender settle` commands

/// Runs `tender` to its end: (exit code, stdout bytes, stderr).
async fn run_tender<S: Store>(env: &TestApp<S>, args: &[&str]) -> (Option<i32>, Vec<u8>, String) {
    let child = tender_captured(env, args).spawn().unwrap();
    let out = tokio::time::timeout(PROCESS_GRACE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("tender {args:?} did not finish"))
        .unwrap();
    (
        out.status.code(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `tender` and expects success; its stdout.
async fn tender_ok<S: Store>(env: &TestApp<S>, args: &[&str]) -> Vec<u8> {
    let (code, stdout, stderr) = run_tender(env, args).await;
    assert_eq!(code, Some(0), "tender {args:?} failed: {stderr}");
    stdout
}

/// Runs `tender` and expects it refused with `code`: exit 1, the code at the end of stderr.
async fn tender_refused<S: Store>(env: &TestApp<S>, args: &[&str], code: &str) -> String {
    let (status, _, stderr) = run_tender(env, args).await;
    assert_eq!(status, Some(1), "tender {args:?}: {stderr}");
    assert!(stderr.ends_with(&format!("[{code}]\n")), "{stderr}");
    stderr
}

/// Over real processes on the wall clock (months past the test's day): `tender settle --date`
/// closes the day and prints its roll-forward; `settle verify` finds it whole (and, with a
/// report changed on disk, exits 1 `settle.verify_failed`); `settle export --file` writes the
/// stored bytes to stdout and `--out` every file to a directory; `settle record-payment`
/// records, replays and refuses a conflict. A bad date, a day not closed and an unknown
/// retailer are refused with their codes, and so is `tender settle` without a date (the latest
/// day past its grace on the wall clock) while days before it are open (`settle.gap`).
async fn the_settle_commands<S: Store>(env: TestApp<S>) {
    day_one(&env, 2).await;

    let stdout = tender_ok(&env, &["settle", "--date", "2026-03-01"]).await;
    let stdout = String::from_utf8(stdout).unwrap();
    let first = stdout.lines().next().unwrap();
    assert!(
        first.starts_with("2026-03-01 closed; reports in "),
        "{stdout}"
    );
    assert!(stdout.contains("roll-forward, USD:"), "{stdout}");
    let activations: Vec<&str> = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("activations"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(activations, ["activations", "50.00", "USD"], "{stdout}");
    assert_eq!(env.count("SELECT count(*) FROM settlement").await, 1);
    assert!(
        env.count("SELECT count(*) FROM settlement WHERE seal_id IS NOT NULL")
            .await
            == 1
    );

    let again = tender_ok(&env, &["settle", "--date", "2026-03-01"]).await;
    assert!(
        String::from_utf8(again)
            .unwrap()
            .starts_with("2026-03-01 was closed; the rerun gave the same bytes"),
    );

    let verified = tender_ok(&env, &["settle", "verify", "--date", "2026-03-01"]).await;
    let verified = String::from_utf8(verified).unwrap();
    assert!(
        verified.starts_with("2026-03-01: manifest signature valid, manifest file matches"),
        "{verified}"
    );
    for name in REPORTS {
        assert!(
            verified
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [name, "ok"]),
            "{verified}"
        );
    }

    let stored = export(&env.app, "2026-03-01").await;
    let export_args = |date, flag, value| ["settle", "export", "--date", date, flag, value];
    let roll = tender_ok(
        &env,
        &export_args("2026-03-01", "--file", "roll_forward.csv"),
    )
    .await;
    assert_eq!(roll, stored["roll_forward.csv"]);
    let out = env.db.path().join("exported");
    let out_arg = out.display().to_string();
    tender_ok(&env, &export_args("2026-03-01", "--out", &out_arg)).await;
    assert_eq!(on_disk(env.db.path(), "exported"), stored);

    let payment = |amount: &'static str, retailer: &'static str| {
        [
            "settle",
            "record-payment",
            "--retailer",
            retailer,
            "--amount",
            amount,
            "--currency",
            "USD",
            "--reference",
            "-R1",
        ]
    };
    let paid = tender_ok(&env, &payment("10.00", "Acme")).await;
    let paid = String::from_utf8(paid).unwrap();
    assert!(
        paid.starts_with("recorded payment -R1 of 10.00 USD from Acme (transfer "),
        "{paid}"
    );
    let replayed = tender_ok(&env, &payment("10.00", "Acme")).await;
    let replayed = String::from_utf8(replayed).unwrap();
    assert!(
        replayed.starts_with("payment -R1 of 10.00 USD was recorded before (transfer "),
        "{replayed}"
    );
    assert_eq!(env.count("SELECT count(*) FROM retailer_payment").await, 1);
    tender_refused(&env, &payment("11.00", "Acme"), "settle.payment_conflict").await;
    tender_refused(&env, &payment("10.00", "Nobody"), "settle.unknown_retailer").await;
    assert_eq!(
        env.count("SELECT count(*) FROM transfer WHERE kind = 'payment'")
            .await,
        1
    );

    tender_refused(&env, &["settle", "--date", "2026-02-30"], "settle.bad_date").await;
    // Without a date: the latest day past its grace on the wall clock, months after 03-01.
    tender_refused(&env, &["settle"], "settle.gap").await;
    tender_refused(
        &env,
        &export_args("2026-03-05", "--file", "roll_forward.csv"),
        "settle.not_settled",
    )
    .await;
    tender_refused(
        &env,
        &["settle", "verify", "--date", "2026-03-05"],
        "settle.not_settled",
    )
    .await;
    let day_dir = report_dir(&env).join("2026-03-01");
    std::fs::write(day_dir.join("roll_forward.csv"), b"edited\n").unwrap();
    tender_refused(
        &env,
        &["settle", "verify", "--date", "2026-03-01"],
        "settle.verify_failed",
    )
    .await;
    assert_whole(&env).await;
}
both_backends!(command, the_settle_commands);
