//! Expiry of cards into breakage or a state's escheat payable, on both backends.
//!
//! - An active card whose funds-expiry (fixed at activation from its store's jurisdiction) is at
//!   or before the run's instant becomes `expired`, and in the same transaction its value moves
//!   off it: one transfer per currency and destination debits each card its value and credits
//!   the total to `breakage` (kind `breakage`) or to `escheat_payable:{state}` (kind `escheat`),
//!   with one `card.expired` audit record per transfer naming the cards as serial runs and never
//!   a code. A run works in chunks, earliest funds-expiry first, each chunk one transaction.
//! - Where the law forbids expiry (US-CA, CA-ON) a card has no funds-expiry and never expires;
//!   in the rest of the US its funds last at least five years from the sale; where no rule
//!   applies (GB-ENG) the printed expiry stands, to the second.
//! - Escheat, for cards sold in a US jurisdiction only: the state of the purchaser's address
//!   captured at the sale if its law claims expired gift card funds (`ESCHEAT_LAW`: US-DE,
//!   US-NJ, US-NY), else the issuer's state of incorporation (`TENDER_ISSUER_STATE`, default
//!   US-DE) if its law does, else breakage. A card sold outside the US: breakage.
//! - Each card expires once: a run again as of the same or a later instant expires and posts
//!   nothing; a run killed mid-way leaves whole chunks and the next run finishes the rest.
//!   Redeemed and voided cards are never touched (a blocked card expires all the same); an
//!   expired card is refused redemption (`redeem.expired`) and a void. Customer balances never
//!   expire.
//! - A dry run shows per currency and destination what the run then does, and writes nothing;
//!   so does the outlook of the cards due in the next N days (1 to 366). A run as of a time to
//!   come is refused (`expiry.future`). `--as-of` takes an RFC 3339 instant or a date, the end
//!   of that business day in the business time zone.
//! - After every test `ledger check` finds no discrepancy (it proves a card is expired exactly
//!   when a breakage or escheat transfer took its funds) and the audit trail verifies.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use chrono::{DateTime, Months, TimeDelta, Utc};
use tender::clock::{Clock, SystemClock};
use tender::config::{BusinessTimeZone, IssuerState};
use tender::domain::{Batch, CardState, Currency, Money, Serial};
use tender::error::Classify;
use tender::service::cards::{ActivateForm, PosForm, PosResult, StoreForm, VoidForm};
use tender::service::expiry::{
    EXPIRY_CHUNK_MAX, ExpiryLine, ExpiryReport, OutlookLine, parse_as_of,
};
use tender::store::Store;

use crate::helpers::printed_code as code_of;
use crate::helpers::{
    TestApp, actor, assert_whole, both_backends, card, epoch, open_account, query, shelf,
    tender_captured,
};

/// Cards per transaction in the library-level runs.
const CHUNK: usize = 1_000;
/// How long a `tender` process may take before the test gives up on it.
const GRACE: Duration = Duration::from_secs(60);

/// Acme's stores, each under its own id: one per jurisdiction the tests sell in.
const STORES: [(&str, &str); 4] = [
    ("TX", "US-TX"),
    ("CA", "US-CA"),
    ("ON", "CA-ON"),
    ("GB", "GB-ENG"),
];

/// Retailer Acme (2.5 % commission) and its stores.
async fn setup<S: Store>(env: &TestApp<S>) {
    let services = env.app.services();
    services
        .retailers()
        .add("Acme", "2.5", &actor())
        .await
        .unwrap();
    for (store, jurisdiction) in STORES {
        let form = StoreForm {
            retailer: "Acme".into(),
            store: store.into(),
            jurisdiction: jurisdiction.into(),
        };
        services.cards().add_store(&form, &actor()).await.unwrap();
    }
}

/// US cards in USD.
async fn us<S: Store>(env: &TestApp<S>, count: u64, days: u32) -> Batch {
    shelf(env, "Acme", "US", "USD", count, days).await
}

/// UK cards in GBP.
async fn gb<S: Store>(env: &TestApp<S>, count: u64, days: u32) -> Batch {
    shelf(env, "Acme", "GB", "GBP", count, days).await
}

/// Every serial of cards `from` to `to` (from 0) of a batch.
fn serials(batch: &Batch, from: u64, to: u64) -> Vec<Serial> {
    (from..=to).map(|n| card(batch, n)).collect()
}

/// Acme's till 1 at `store`, live, in a POS transaction named after the cards.
fn pos(store: &str, txn: String) -> PosForm {
    PosForm {
        retailer: "Acme".into(),
        store: store.into(),
        terminal: "till-1".into(),
        pos_txn: txn,
        pos_time: None,
    }
}

/// Sells cards `from` to `to` (from 0) of `batch` at `store`, with the purchaser's address
/// state where the till captured one; every card is activated.
async fn sell<S: Store>(
    env: &TestApp<S>,
    store: &str,
    batch: &Batch,
    from: u64,
    to: u64,
    purchaser: Option<&str>,
) -> PosResult {
    let (first, last) = (card(batch, from), card(batch, to));
    let form = ActivateForm {
        pos: pos(store, format!("sale-{first}-{last}")),
        serial: first.to_string(),
        to_serial: (to != from).then(|| last.to_string()),
        value: None,
        purchaser_state: purchaser.map(Into::into),
    };
    let answer = env
        .app
        .services()
        .cards()
        .activate(&form, &actor())
        .await
        .unwrap();
    assert!(
        answer.cards.iter().all(|c| c.outcome == "activated"),
        "{answer:?}"
    );
    answer
}

/// Sells one card; when its funds expire.
async fn sell_one<S: Store>(
    env: &TestApp<S>,
    store: &str,
    batch: &Batch,
    n: u64,
    purchaser: Option<&str>,
) -> Option<DateTime<Utc>> {
    sell(env, store, batch, n, n, purchaser).await.cards[0].funds_expire_at
}

/// Runs expiry as of the clock's now.
async fn expire<S: Store>(env: &TestApp<S>, chunk: usize) -> ExpiryReport {
    let now = env.clock.now();
    env.app
        .services()
        .expiry()
        .run(now, chunk, &actor())
        .await
        .unwrap()
}

/// A card's state, as stored.
async fn state<S: Store>(env: &TestApp<S>, serial: Serial) -> CardState {
    let code = env
        .count(&format!(
            "SELECT CAST(state AS BIGINT) FROM card WHERE serial = {}",
            serial.sequence()
        ))
        .await;
    CardState::from_code(i16::try_from(code).unwrap()).unwrap()
}

/// What a card's entries sum to: the value it carries.
async fn card_balance<S: Store>(env: &TestApp<S>, serial: Serial) -> i64 {
    env.count(&format!(
        "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM entry WHERE serial = {}",
        serial.sequence()
    ))
    .await
}

/// Cards in state expired.
async fn expired_cards<S: Store>(env: &TestApp<S>) -> i64 {
    env.count(&format!(
        "SELECT count(*) FROM card WHERE state = {}",
        CardState::Expired.code()
    ))
    .await
}

/// The rows an expiry run writes: transfers, entries, audit records, expired cards.
async fn written<S: Store>(env: &TestApp<S>) -> [i64; 4] {
    [
        env.count("SELECT count(*) FROM transfer").await,
        env.count("SELECT count(*) FROM entry").await,
        env.count("SELECT count(*) FROM audit_record").await,
        expired_cards(env).await,
    ]
}

/// The breakage and escheat transfers, in order: (id, kind).
async fn expiry_transfers<S: Store>(env: &TestApp<S>) -> Vec<(i64, String)> {
    query(
        env,
        "SELECT transfer_id, kind FROM transfer WHERE kind IN ('breakage', 'escheat') \
         ORDER BY transfer_id"
            .into(),
    )
    .await
}

/// A transfer's legs, in order: (ledger account, amount in minor units).
async fn legs<S: Store>(env: &TestApp<S>, transfer_id: i64) -> Vec<(String, i64)> {
    query(
        env,
        format!(
            "SELECT ledger_account, amount_minor FROM entry WHERE transfer_id = {transfer_id} \
             ORDER BY leg"
        ),
    )
    .await
}

/// The `card.expired` audit records: (subject, details).
async fn expiry_records<S: Store>(env: &TestApp<S>) -> Vec<(String, String)> {
    query(
        env,
        "SELECT subject, details FROM audit_record WHERE action = 'card.expired' \
         ORDER BY recorded_at, chain, seq"
            .into(),
    )
    .await
}

/// A report line.
fn line(currency: &str, destination: &str, cards: u64, amount: &str) -> ExpiryLine {
    let currency = Currency::parse(currency).unwrap();
    ExpiryLine {
        currency,
        destination: destination.into(),
        cards,
        amount: Money::parse(amount, currency).unwrap(),
    }
}

// ---------------------------------------------------------------------------------------------
// When funds expire.

/// In England the printed expiry stands, to the second: a second before it the card stays
/// active (and a dry run sees nothing), at a second after it the card is expired, its value
/// moved in one breakage transfer (the card debited, `breakage` credited) and its balance 0.
async fn a_card_expires_the_second_its_funds_expire<S: Store>(env: TestApp<S>) {
    setup(&env).await;
    let batch = gb(&env, 3, 30).await;
    let serial = card(&batch, 0);
    let expires = sell_one(&env, "GB", &batch, 0, None).await.unwrap();
    assert_eq!(Some(expires), batch.expires_at, "the printed expiry stands");
    let before = written(&env).await;

    env.clock.set(expires - TimeDelta::seconds(1));
    let report = expire(&env, CHUNK).await;
    assert_eq!((report.cards, report.transfers), (0, 0), "{report:?}");
    assert!(report.lines.is_empty());
    assert_eq!(
        env.app
            .services()
            .expiry()
            .preview(env.clock.now())
            .await
            .unwrap()
            .cards,
        0
    );
    assert_eq!(state(&env, serial).await, CardState::Active);
    assert_eq!(card_balance(&env, serial).await, 2_500);
    assert_eq!(
        written(&env).await,
        before,
        "a run that finds nothing writes nothing"
    );

    env.clock.set(expires + TimeDelta::seconds(1));
    let report = expire(&env, CHUNK).await;
    assert_eq!(report.as_of, env.clock.now());
    assert!(!report.dry_run);
    assert_eq!((report.cards, report.transfers), (1, 1), "{report:?}");
    assert_eq!(report.lines, [line("GBP", "breakage", 1, "25.00")]);
    assert_eq!(state(&env, serial).await, CardState::Expired);
    assert_eq!(card_balance(&env, serial).await, 0);
    let transfers = expiry_transfers(&env).await;
    assert_eq!(transfers.len(), 1);
    assert_eq!(transfers[0].1, "breakage");
    assert_eq!(
        legs(&env, transfers[0].0).await,
        [
            (format!("card:{serial}"), -2_500),
            ("breakage".to_string(), 2_500)
        ]
    );
    // The transfer is effective as of the run's instant.
    assert_eq!(
        env.count(&format!(
            "SELECT effective_ms FROM transfer WHERE transfer_id = {}",
            transfers[0].0
        ))
        .await,
        report.as_of.timestamp_millis()
    );
    let records = expiry_records(&env).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].0, format!("transfer:{}", transfers[0].0));
    // The cards not sold stay on the shelf.
    assert_eq!(state(&env, card(&batch, 1)).await, CardState::Issued);
    assert_whole(&env).await;
}
both_backends!(to_the_second, a_card_expires_the_second_its_funds_expire);

/// Where the law forbids expiry (California, Ontario) a card sold with a printed expiry has no
/// funds-expiry and is still active fifty years on. In Texas the funds last five years from the
/// sale, whatever is printed: nothing expires four years on, nor a second before five, and the
/// card expires a second after.
async fn the_law_decides_whether_and_when_funds_expire<S: Store>(env: TestApp<S>) {
    setup(&env).await;
    let dollars = us(&env, 5, 30).await;
    let canadian = shelf(&env, "Acme", "CA", "CAD", 2, 30).await;
    let sold = env.clock.now();
    assert_eq!(sell_one(&env, "CA", &dollars, 0, None).await, None);
    assert_eq!(sell_one(&env, "ON", &canadian, 0, None).await, None);
    let texas = sell_one(&env, "TX", &dollars, 1, None).await.unwrap();
    assert_eq!(texas, sold.checked_add_months(Months::new(60)).unwrap());
    assert!(texas > dollars.expires_at.unwrap());

    for at in [
        sold.checked_add_months(Months::new(48)).unwrap(),
        texas - TimeDelta::seconds(1),
    ] {
        env.clock.set(at);
        let report = expire(&env, CHUNK).await;
        assert_eq!(report.cards, 0, "as of {at}: {report:?}");
    }
    assert_eq!(state(&env, card(&dollars, 1)).await, CardState::Active);

    env.clock.set(texas + TimeDelta::seconds(1));
    let report = expire(&env, CHUNK).await;
    assert_eq!(report.cards, 1, "{report:?}");
    assert_eq!(state(&env, card(&dollars, 1)).await, CardState::Expired);

    env.clock
        .set(sold.checked_add_months(Months::new(12 * 50)).unwrap());
    let report = expire(&env, CHUNK).await;
    assert_eq!(report.cards, 0, "{report:?}");
    let preview = env
        .app
        .services()
        .expiry()
        .preview(env.clock.now())
        .await
        .unwrap();
    assert_eq!(preview.cards, 0, "{preview:?}");
    for serial in [card(&dollars, 0), card(&canadian, 0)] {
        assert_eq!(state(&env, serial).await, CardState::Active);
        assert_eq!(card_balance(&env, serial).await, 2_500);
    }
    assert_whole(&env).await;
}
both_backends!(
    by_jurisdiction,
    the_law_decides_whether_and_when_funds_expire
);

// ---------------------------------------------------------------------------------------------
// Where expired funds go.

/// Cards sold in Texas expire into the escheat payable of the purchaser's state where its law
/// claims them (New York), else of the issuer's state (Delaware by default) — also when the
/// purchaser's state claims nothing (Texas) or the address is not a US state's (Alberta). A UK
/// card is breakage whatever the purchaser's address. With the issuer incorporated in Nevada,
/// which claims nothing, a card with no purchaser state is breakage while a New Jersey
/// purchaser's still escheats to New Jersey. `ledger check` shows each account's sum.
async fn expired_funds_go_to_the_state_that_claims_them<S: Store>(env: TestApp<S>) {
    setup(&env).await;
    let dollars = us(&env, 10, 30).await;
    let pounds = gb(&env, 2, 30).await;
    let sold = env.clock.now();
    let new_york = sell_one(&env, "TX", &dollars, 0, Some("US-NY")).await;
    sell_one(&env, "TX", &dollars, 1, Some("US-TX")).await;
    sell_one(&env, "TX", &dollars, 2, None).await;
    sell_one(&env, "TX", &dollars, 3, Some("CA-AB")).await;
    sell_one(&env, "GB", &pounds, 0, Some("US-NY")).await;
    // A day later, cards the issuer will have reincorporated in Nevada for.
    env.clock.advance(TimeDelta::days(1));
    let later = sell_one(&env, "TX", &dollars, 4, None).await;
    sell_one(&env, "TX", &dollars, 5, Some("US-NJ")).await;
    assert_eq!(
        new_york,
        Some(sold.checked_add_months(Months::new(60)).unwrap())
    );

    // Under the default issuer state, Delaware; the later cards are not due yet.
    env.clock.set(new_york.unwrap() + TimeDelta::seconds(1));
    let report = expire(&env, CHUNK).await;
    assert_eq!(
        report.lines,
        [
            line("GBP", "breakage", 1, "25.00"),
            line("USD", "escheat_payable:US-DE", 3, "75.00"),
            line("USD", "escheat_payable:US-NY", 1, "25.00"),
        ],
        "{report:?}"
    );
    assert_eq!((report.cards, report.transfers), (5, 3));
    assert_eq!(state(&env, card(&dollars, 4)).await, CardState::Active);

    // The issuer now in Nevada.
    env.clock.set(later.unwrap() + TimeDelta::seconds(1));
    let mut settings = env.db.settings();
    settings.issuer_state = IssuerState::parse("US-NV").unwrap();
    let nevada = env.reopen(&settings).await;
    let report = nevada
        .services()
        .expiry()
        .run(env.clock.now(), CHUNK, &actor())
        .await
        .unwrap();
    assert_eq!(
        report.lines,
        [
            line("USD", "breakage", 1, "25.00"),
            line("USD", "escheat_payable:US-NJ", 1, "25.00"),
        ],
        "{report:?}"
    );

    // Each transfer's kind follows its destination, and each card's leg is in the right one.
    let transfers = expiry_transfers(&env).await;
    assert_eq!(transfers.len(), 5);
    let mut seen = Vec::new();
    for (id, kind) in &transfers {
        let legs = legs(&env, *id).await;
        let (to, total) = legs.last().unwrap().clone();
        let cards: Vec<String> = legs[..legs.len() - 1]
            .iter()
            .map(|(account, amount)| {
                assert_eq!(*amount, -2_500);
                account.clone()
            })
            .collect();
        assert_eq!(total, 2_500 * i64::try_from(cards.len()).unwrap());
        let expected = if to == "breakage" {
            "breakage"
        } else {
            "escheat"
        };
        assert_eq!(kind, expected, "{to}");
        seen.push((to, cards));
    }
    seen.sort();
    let c = |batch: &Batch, n| format!("card:{}", card(batch, n));
    let mut expected = vec![
        ("breakage".to_string(), vec![c(&pounds, 0)]),
        ("breakage".to_string(), vec![c(&dollars, 4)]),
        (
            "escheat_payable:US-DE".to_string(),
            vec![c(&dollars, 1), c(&dollars, 2), c(&dollars, 3)],
        ),
        ("escheat_payable:US-NJ".to_string(), vec![c(&dollars, 5)]),
        ("escheat_payable:US-NY".to_string(), vec![c(&dollars, 0)]),
    ];
    expected.sort();
    assert_eq!(seen, expected);

    let check = env.app.services().ledger().check().await.unwrap();
    assert_eq!(check.discrepancy, None, "{check:?}");
    let balance = |account: &str, currency: &str| {
        check
            .system_balances
            .iter()
            .find(|b| b.ledger_account == account && b.currency == currency)
            .map(|b| b.balance_minor)
    };
    assert_eq!(balance("breakage", "GBP"), Some(2_500));
    assert_eq!(balance("breakage", "USD"), Some(2_500));
    assert_eq!(balance("escheat_payable:US-DE", "USD"), Some(7_500));
    assert_eq!(balance("escheat_payable:US-NY", "USD"), Some(2_500));
    assert_eq!(balance("escheat_payable:US-NJ", "USD"), Some(2_500));
    assert_eq!(balance("escheat_payable:US-NY", "GBP"), None);
    // Every card sold has expired: together they carry nothing.
    assert_eq!(balance("card:*", "USD"), Some(0));
    assert_eq!(balance("card:*", "GBP"), Some(0));
    assert_whole(&env).await;
}
both_backends!(escheat, expired_funds_go_to_the_state_that_claims_them);

// ---------------------------------------------------------------------------------------------
// Once, and only active cards.

/// A card's state and how many entries name it.
async fn footprint<S: Store>(env: &TestApp<S>, serial: Serial) -> (CardState, i64) {
    let entries = env
        .count(&format!(
            "SELECT count(*) FROM entry WHERE serial = {}",
            serial.sequence()
        ))
        .await;
    (state(env, serial).await, entries)
}

/// Of five cards sold in England, one is redeemed, one voided, one blocked. Past their expiry
/// the run takes the two active ones and the blocked one; the redeemed and voided cards keep
/// their state and entries. Running again as of the same instant, and a year later, expires and
/// posts nothing. An expired card's code is refused `redeem.expired`, and its void
/// `card.expired`.
async fn a_card_expires_once_and_only_from_active<S: Store>(env: TestApp<S>) {
    setup(&env).await;
    let batch = gb(&env, 5, 30).await;
    let expires = sell(&env, "GB", &batch, 0, 4, None).await.cards[0]
        .funds_expire_at
        .unwrap();
    let services = env.app.services();
    let account = open_account(&env, "GB", "GBP").await;
    services
        .redemption()
        .redeem(
            &account,
            &code_of(&env, &batch, card(&batch, 0)),
            None,
            &actor(),
        )
        .await
        .unwrap();
    let void = VoidForm {
        pos: pos("GB", "void-1".into()),
        serial: card(&batch, 1).to_string(),
    };
    services.cards().void(&void, &actor()).await.unwrap();
    services
        .cards()
        .block(&card(&batch, 2).to_string(), "fraud", &actor())
        .await
        .unwrap();
    let redeemed = footprint(&env, card(&batch, 0)).await;
    let voided = footprint(&env, card(&batch, 1)).await;
    assert_eq!(redeemed.0, CardState::Redeemed);
    assert_eq!(voided.0, CardState::Voided);

    env.clock.set(expires);
    let report = expire(&env, CHUNK).await;
    assert_eq!((report.cards, report.transfers), (3, 1), "{report:?}");
    for n in 2..5 {
        assert_eq!(state(&env, card(&batch, n)).await, CardState::Expired);
    }
    assert_eq!(footprint(&env, card(&batch, 0)).await, redeemed);
    assert_eq!(footprint(&env, card(&batch, 1)).await, voided);

    let after = written(&env).await;
    for later in [TimeDelta::zero(), TimeDelta::days(365)] {
        env.clock.set(expires + later);
        let again = expire(&env, CHUNK).await;
        assert_eq!((again.cards, again.transfers), (0, 0), "{again:?}");
        assert_eq!(written(&env).await, after);
    }

    let other = open_account(&env, "GB", "GBP").await;
    let refused = services
        .redemption()
        .redeem(
            &other,
            &code_of(&env, &batch, card(&batch, 3)),
            None,
            &actor(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "redeem.expired");
    let void = VoidForm {
        pos: pos("GB", "void-2".into()),
        serial: card(&batch, 4).to_string(),
    };
    let refused = services.cards().void(&void, &actor()).await.unwrap_err();
    assert_eq!(refused.code(), "card.expired");
    assert_eq!(
        services.ledger().account(&other).await.unwrap().balance,
        Money::parse("0.00", Currency::Gbp).unwrap()
    );
    assert_eq!(state(&env, card(&batch, 3)).await, CardState::Expired);
    assert_whole(&env).await;
}
both_backends!(once, a_card_expires_once_and_only_from_active);

/// Customer balances never expire: a balance funded by redeeming a card, and the card it came
/// from, are untouched by a run years after the card's funds would have expired, while another
/// card of the same sale expires.
async fn account_balances_never_expire<S: Store>(env: TestApp<S>) {
    setup(&env).await;
    let batch = us(&env, 2, 30).await;
    let expires = sell(&env, "TX", &batch, 0, 1, None).await.cards[0]
        .funds_expire_at
        .unwrap();
    let account = open_account(&env, "US", "USD").await;
    let services = env.app.services();
    let redeemed = services
        .redemption()
        .redeem(
            &account,
            &code_of(&env, &batch, card(&batch, 0)),
            None,
            &actor(),
        )
        .await
        .unwrap();
    let entries = format!(
        "SELECT count(*) FROM entry WHERE account_id = {}",
        redeemed.account_id.0
    );
    let before = env.count(&entries).await;

    env.clock
        .set(expires.checked_add_months(Months::new(60)).unwrap());
    let report = expire(&env, CHUNK).await;
    assert_eq!(report.cards, 1, "{report:?}");
    assert_eq!(state(&env, card(&batch, 1)).await, CardState::Expired);
    assert_eq!(state(&env, card(&batch, 0)).await, CardState::Redeemed);
    let held = services.ledger().account(&account).await.unwrap();
    assert_eq!(held.balance, Money::parse("25.00", Currency::Usd).unwrap());
    assert_eq!(env.count(&entries).await, before);
    assert_eq!(
        env.count(
            "SELECT count(*) FROM entry e JOIN transfer t ON t.transfer_id = e.transfer_id \
             WHERE e.account_id IS NOT NULL AND t.kind IN ('breakage', 'escheat')"
        )
        .await,
        0
    );
    assert_whole(&env).await;
}
both_backends!(balances, account_balances_never_expire);

// ---------------------------------------------------------------------------------------------
// Chunks.

/// Every code of a batch's printer file, bare and in the printed (grouped) form.
fn printed_codes<S: Store>(env: &TestApp<S>, batch: &Batch) -> Vec<String> {
    let mut reader = csv::Reader::from_path(env.export_file(batch.id)).unwrap();
    let mut codes = Vec::new();
    for record in reader.records() {
        let printed = record.unwrap()[1].to_string();
        let bare: String = printed
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        codes.push(printed);
        codes.push(bare);
    }
    codes
}

/// 2,500 due cards in three batches (expiring 10, 20 and 30 days on), expired 1,000 per
/// transaction: three chunks, earliest expiry first, each one transfer with its one
/// `card.expired` record, whose details name the transfer, the destination, the amount and
/// the cards as serial runs, and no code. Every card is expired once.
async fn a_run_expires_in_chunks_earliest_first<S: Store>(env: TestApp<S>) {
    setup(&env).await;
    let batches = [
        gb(&env, 1_000, 30).await,
        gb(&env, 1_000, 10).await,
        gb(&env, 500, 20).await,
    ];
    for batch in &batches {
        sell(&env, "GB", batch, 0, batch.count - 1, None).await;
    }
    env.clock.advance(TimeDelta::days(31));
    let report = expire(&env, CHUNK).await;
    assert_eq!((report.cards, report.transfers), (2_500, 3), "{report:?}");
    assert_eq!(report.lines, [line("GBP", "breakage", 2_500, "62500.00")]);
    assert_eq!(expired_cards(&env).await, 2_500);

    // Earliest first: the 10-day batch, then the 20-day one and half of the 30-day one.
    let transfers = expiry_transfers(&env).await;
    assert_eq!(transfers.len(), 3);
    let mut chunks: Vec<BTreeSet<Serial>> = Vec::new();
    for (id, _) in &transfers {
        let legs = legs(&env, *id).await;
        chunks.push(
            legs[..legs.len() - 1]
                .iter()
                .map(|(account, _)| Serial::parse(account.strip_prefix("card:").unwrap()).unwrap())
                .collect(),
        );
    }
    let [thirty, ten, twenty] = &batches;
    assert_eq!(
        chunks[0],
        serials(ten, 0, 999).into_iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(
        chunks[1],
        serials(twenty, 0, 499)
            .into_iter()
            .chain(serials(thirty, 0, 499))
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(
        chunks[2],
        serials(thirty, 500, 999)
            .into_iter()
            .collect::<BTreeSet<_>>()
    );

    // One audit record per transfer, naming its cards as runs, and no code.
    let records = expiry_records(&env).await;
    assert_eq!(records.len(), 3);
    let codes: Vec<String> = batches
        .iter()
        .flat_map(|b| printed_codes(&env, b))
        .collect();
    let mut named = Vec::new();
    for (subject, details) in &records {
        let details: serde_json::Value = serde_json::from_str(details).unwrap();
        let transfer = details["transfer_id"].as_i64().unwrap();
        assert_eq!(*subject, format!("transfer:{transfer}"));
        assert_eq!(details["destination"], "breakage");
        let mut cards = BTreeSet::new();
        for run in details["cards"].as_array().unwrap() {
            let first = Serial::parse(run[0].as_str().unwrap()).unwrap();
            let last = Serial::parse(run[1].as_str().unwrap()).unwrap();
            for seq in first.sequence()..=last.sequence() {
                cards.insert(Serial::from_sequence(seq).unwrap());
            }
        }
        let chunk = transfers
            .iter()
            .position(|(id, _)| *id == transfer)
            .unwrap();
        assert_eq!(
            cards, chunks[chunk],
            "the record names its transfer's cards"
        );
        assert_eq!(
            details["cards"].as_array().unwrap().len(),
            if chunk == 1 { 2 } else { 1 },
            "consecutive serials are one run"
        );
        let text = details.to_string();
        assert!(
            !codes.iter().any(|code| text.contains(code.as_str())),
            "a card.expired record holds a code"
        );
        named.push(transfer);
    }
    named.sort_unstable();
    assert_eq!(
        named,
        transfers.iter().map(|(id, _)| *id).collect::<Vec<_>>()
    );
    let again = expire(&env, CHUNK).await;
    assert_eq!(again.cards, 0);
    assert_whole(&env).await;
}
both_backends!(chunks, a_run_expires_in_chunks_earliest_first);

/// The largest chunk, 3,500 cards, is one transaction: one transfer of 3,501 legs, within
/// SQLite's bound parameters; one more card per chunk is refused `expiry.bad_chunk`.
async fn the_largest_chunk_is_one_transfer<S: Store>(env: TestApp<S>) {
    setup(&env).await;
    let max = u64::try_from(EXPIRY_CHUNK_MAX).unwrap();
    let batch = gb(&env, max, 10).await;
    for from in (0..max).step_by(500) {
        sell(&env, "GB", &batch, from, from + 499, None).await;
    }
    env.clock.advance(TimeDelta::days(10));
    let now = env.clock.now();
    let expiry = env.app.services().expiry();
    assert_eq!(
        expiry
            .run(now, EXPIRY_CHUNK_MAX + 1, &actor())
            .await
            .unwrap_err()
            .code(),
        "expiry.bad_chunk"
    );
    let report = expiry.run(now, EXPIRY_CHUNK_MAX, &actor()).await.unwrap();
    assert_eq!((report.cards, report.transfers), (max, 1), "{report:?}");
    let transfers = expiry_transfers(&env).await;
    assert_eq!(legs(&env, transfers[0].0).await.len(), EXPIRY_CHUNK_MAX + 1);
    assert_whole(&env).await;
}
both_backends!(largest_chunk, the_largest_chunk_is_one_transfer);

// ---------------------------------------------------------------------------------------------
// Dry run, outlook, and what is refused.

/// A dry run as of five years and a day on shows per currency and destination what the run
/// then does, and writes nothing; a run as of that instant while it is still to come is refused
/// `expiry.future` and writes nothing. The 30-day outlook lists only the cards due in the next
/// 30 days, per batch, jurisdiction, currency and destination, soonest first; 0 and 367 days
/// are refused. `--as-of` text is a date (the end of that business day) or an RFC 3339 instant.
async fn a_dry_run_and_the_outlook_show_and_write_nothing<S: Store>(env: TestApp<S>) {
    setup(&env).await;
    let soon = gb(&env, 4, 10).await;
    let sooner = gb(&env, 2, 5).await;
    let later = gb(&env, 2, 60).await;
    let dollars = us(&env, 6, 30).await;
    sell(&env, "GB", &soon, 0, 2, None).await;
    sell(&env, "GB", &sooner, 0, 1, Some("US-NY")).await;
    sell(&env, "GB", &later, 0, 1, None).await;
    sell(&env, "TX", &dollars, 0, 1, Some("US-NY")).await;
    sell(&env, "TX", &dollars, 2, 2, Some("US-TX")).await;
    sell(&env, "TX", &dollars, 3, 3, None).await;
    sell(&env, "CA", &dollars, 4, 4, None).await;
    let expiry = env.app.services().expiry();
    let before = written(&env).await;

    // The outlook: only the two batches due within 30 days, soonest first.
    let now = env.clock.now();
    let outlook = expiry.outlook(30).await.unwrap();
    let gbp = |amount: &str| Money::parse(amount, Currency::Gbp).unwrap();
    assert_eq!(
        outlook,
        [
            OutlookLine {
                batch_id: sooner.id.0,
                jurisdiction: "GB-ENG".into(),
                cards: 2,
                amount: gbp("50.00"),
                first_expiry: now + TimeDelta::days(5),
                destination: "breakage".into(),
            },
            OutlookLine {
                batch_id: soon.id.0,
                jurisdiction: "GB-ENG".into(),
                cards: 3,
                amount: gbp("75.00"),
                first_expiry: now + TimeDelta::days(10),
                destination: "breakage".into(),
            },
        ]
    );
    let year = expiry.outlook(366).await.unwrap();
    assert_eq!(year.len(), 3, "{year:?}");
    for days in [0, 367] {
        assert_eq!(
            expiry.outlook(days).await.unwrap_err().code(),
            "expiry.bad_days"
        );
    }
    // Ten days before the Texas cards' funds expire: one line per destination, the purchasers'
    // states that claim nothing and the unknown one merged into Delaware's; the UK cards, due
    // long ago but not yet expired, are not to come.
    let texas = now.checked_add_months(Months::new(60)).unwrap();
    env.clock.set(texas - TimeDelta::days(10));
    // Lines that tie on their first expiry and batch come in one order on both databases.
    let outlook = expiry.outlook(30).await.unwrap();
    let usd = |amount: &str| Money::parse(amount, Currency::Usd).unwrap();
    let texan = |destination: &str| OutlookLine {
        batch_id: dollars.id.0,
        jurisdiction: "US-TX".into(),
        cards: 2,
        amount: usd("50.00"),
        first_expiry: texas,
        destination: destination.into(),
    };
    assert_eq!(
        outlook,
        [
            texan("escheat_payable:US-DE"),
            texan("escheat_payable:US-NY")
        ]
    );
    env.clock.set(now);

    // A dry run five years and a day on, while that is still to come.
    let as_of = now.checked_add_months(Months::new(60)).unwrap() + TimeDelta::days(1);
    let preview = expiry.preview(as_of).await.unwrap();
    assert!(preview.dry_run);
    assert_eq!(preview.as_of, as_of);
    assert_eq!(
        preview.lines,
        [
            line("GBP", "breakage", 7, "175.00"),
            line("USD", "escheat_payable:US-DE", 2, "50.00"),
            line("USD", "escheat_payable:US-NY", 2, "50.00"),
        ],
        "{preview:?}"
    );
    assert_eq!(preview.cards, 11);
    let refused = expiry.run(as_of, CHUNK, &actor()).await.unwrap_err();
    assert_eq!(refused.code(), "expiry.future");
    assert_eq!(
        written(&env).await,
        before,
        "a preview and a refusal write nothing"
    );

    // Then, at that instant, the run does what the dry run showed.
    env.clock.set(as_of);
    let report = env
        .app
        .services()
        .expiry()
        .run(as_of, CHUNK, &actor())
        .await
        .unwrap();
    assert_eq!(report.lines, preview.lines);
    assert_eq!(report.cards, preview.cards);
    assert_eq!(report.transfers, 3);
    assert_eq!(expired_cards(&env).await, 11);
    assert_eq!(state(&env, card(&dollars, 4)).await, CardState::Active);

    // --as-of: a date is the end of that business day.
    let utc = BusinessTimeZone::default();
    let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().to_utc();
    assert_eq!(
        parse_as_of("2026-12-31", utc).unwrap(),
        at("2027-01-01T00:00:00Z")
    );
    let new_york = BusinessTimeZone::parse("America/New_York").unwrap();
    assert_eq!(
        parse_as_of("2026-12-31", new_york).unwrap(),
        at("2027-01-01T05:00:00Z")
    );
    assert_eq!(
        parse_as_of("2026-07-04", new_york).unwrap(),
        at("2026-07-05T04:00:00Z")
    );
    // Where the clock skips midnight (Chile moves from 00:00 to 01:00 on 6 September 2026), the
    // next day starts when the gap ends.
    let santiago = BusinessTimeZone::parse("America/Santiago").unwrap();
    assert_eq!(
        parse_as_of("2026-09-05", santiago).unwrap(),
        at("2026-09-06T04:00:00Z")
    );
    assert_eq!(
        parse_as_of(" 2026-12-31T23:00:00+01:00 ", utc).unwrap(),
        at("2026-12-31T22:00:00Z")
    );
    for bad in [
        "",
        "tomorrow",
        "2026-13-01",
        "2026-02-30",
        "31/12/2026",
        "2026-12-31 23:00",
    ] {
        assert_eq!(
            parse_as_of(bad, utc).unwrap_err().code(),
            "expiry.bad_as_of",
            "{bad:?}"
        );
    }
    assert_eq!(
        expiry.run(as_of, 0, &actor()).await.unwrap_err().code(),
        "expiry.bad_chunk"
    );
    assert_whole(&env).await;
}
both_backends!(
    dry_run_and_outlook,
    a_dry_run_and_the_outlook_show_and_write_nothing
);

// ---------------------------------------------------------------------------------------------
// The `tender expire` process, on the wall clock.

/// Runs `tender` to its end: (exit status, stdout, stderr).
async fn run_tender<S: Store>(
    env: &TestApp<S>,
    args: &[&str],
) -> (std::process::ExitStatus, String, String) {
    let child = tender_captured(env, args).spawn().unwrap();
    let out = tokio::time::timeout(GRACE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("tender {args:?} did not finish"))
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `tender` and expects success; its stdout.
async fn tender_ok<S: Store>(env: &TestApp<S>, args: &[&str]) -> String {
    let (status, stdout, stderr) = run_tender(env, args).await;
    assert!(status.success(), "tender {args:?} failed: {stderr}");
    stdout
}

/// Runs `tender` and expects it refused with `code`, exit 1, one line on stderr.
async fn tender_refused<S: Store>(env: &TestApp<S>, args: &[&str], code: &str) {
    let (status, _, stderr) = run_tender(env, args).await;
    assert_eq!(status.code(), Some(1), "tender {args:?}: {stderr}");
    assert!(stderr.ends_with(&format!("[{code}]\n")), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// The cards due on the wall clock: sold on the test's clock (months behind the wall clock),
/// printed to expire a day later, in England.
const DUE_DAYS: u32 = 1;

/// 10,000 due cards (ten sales of 1,000); `tender expire` is killed with SIGKILL once some but
/// not all are expired (it moves 2,000 per transaction); a second `tender expire` expires the
/// rest. Every card is expired exactly once: each has exactly one leg in a breakage transfer,
/// each transfer its one `card.expired` record, the second run reports just the rest; the books
/// check and the trail verifies.
async fn a_killed_run_is_finished_by_the_next<S: Store>(env: TestApp<S>) {
    const CARDS: i64 = 10_000;
    let began = Instant::now();
    setup(&env).await;
    let batch = gb(&env, CARDS.unsigned_abs(), DUE_DAYS).await;
    for from in (0..CARDS.unsigned_abs()).step_by(1_000) {
        sell(&env, "GB", &batch, from, from + 999, None).await;
    }
    assert!(batch.expires_at.unwrap() < SystemClock.now());
    let prepared = began.elapsed();

    let mut victim = tender_captured(&env, &["expire"]).spawn().unwrap();
    let deadline = Instant::now() + GRACE;
    loop {
        let done = expired_cards(&env).await;
        assert!(
            done < CARDS,
            "every card was expired before the run could be killed"
        );
        if done > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the run expired nothing");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    victim.start_kill().unwrap(); // SIGKILL
    let status = tokio::time::timeout(GRACE, victim.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the run was killed, not finished: {status}"
    );
    let at_kill = expired_cards(&env).await;
    assert!(
        0 < at_kill && at_kill < CARDS,
        "{at_kill} of {CARDS} expired at the kill"
    );
    assert_eq!(at_kill % 2_000, 0, "a killed run leaves whole chunks");
    let stdout = tender_ok(&env, &["expire"]).await;
    eprintln!(
        "expiry kill: prepared in {prepared:.1?}, {at_kill} expired at the kill, done at {:.1?}",
        began.elapsed()
    );
    assert!(
        stdout.starts_with(&format!("expired {} cards as of ", CARDS - at_kill)),
        "{stdout}"
    );

    assert_eq!(expired_cards(&env).await, CARDS);
    let legs_per_card: Vec<(i64, i64)> = query(
        &env,
        "SELECT e.serial, count(*) FROM entry e JOIN transfer t ON t.transfer_id = e.transfer_id \
         WHERE t.kind = 'breakage' AND e.serial IS NOT NULL GROUP BY e.serial ORDER BY e.serial"
            .into(),
    )
    .await;
    assert_eq!(
        legs_per_card,
        serials(&batch, 0, CARDS.unsigned_abs() - 1)
            .iter()
            .map(|s| (i64::try_from(s.sequence()).unwrap(), 1))
            .collect::<Vec<_>>(),
        "each card has exactly one leg in a breakage transfer"
    );
    let transfers = expiry_transfers(&env).await;
    assert_eq!(
        transfers.len(),
        5,
        "five chunks of 2,000, one transfer each"
    );
    assert_eq!(expiry_records(&env).await.len(), transfers.len());
    assert_eq!(
        env.count(
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM entry \
             WHERE ledger_account = 'breakage'"
        )
        .await,
        CARDS * 2_500
    );
    assert_whole(&env).await;
}
both_backends!(killed_run, a_killed_run_is_finished_by_the_next);

/// Over real processes: `tender expire --dry-run --as-of DATE` prints what would expire per
/// currency and destination and writes nothing; `tender expire outlook --days 30` prints the
/// batches due in the next 30 days; `--as-of` a date to come without `--dry-run`, bad text and
/// 0 days are refused with their codes; `tender expire` then expires what is due.
async fn the_expire_command_prints_its_tables<S: Store>(env: TestApp<S>) {
    setup(&env).await;
    // Due now on the wall clock; due in about ten days; five years after the sale.
    let due = gb(&env, 2, DUE_DAYS).await;
    let wall = SystemClock.now();
    let days = (wall - env.clock.now()).num_days() + 10;
    let soon = gb(&env, 3, u32::try_from(days).unwrap()).await;
    let dollars = us(&env, 3, 30).await;
    sell(&env, "GB", &due, 0, 1, None).await;
    sell(&env, "GB", &soon, 0, 2, None).await;
    sell(&env, "TX", &dollars, 0, 1, Some("US-NY")).await;
    let before = written(&env).await;

    let stdout = tender_ok(&env, &["expire", "--dry-run", "--as-of", "2031-12-31"]).await;
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec![
                "would",
                "expire",
                "7",
                "cards",
                "as",
                "of",
                "2032-01-01T00:00:00Z"
            ],
            vec!["currency", "to", "cards", "amount"],
            vec!["GBP", "breakage", "5", "125.00", "GBP"],
            vec!["USD", "escheat_payable:US-NY", "2", "50.00", "USD"],
        ],
        "{stdout}"
    );

    let stdout = tender_ok(&env, &["expire", "outlook", "--days", "30"]).await;
    let first = soon.expires_at.unwrap();
    let lines: Vec<Vec<String>> = stdout
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    let expected: Vec<Vec<String>> = [
        vec![
            "batch",
            "jurisdiction",
            "cards",
            "amount",
            "first",
            "expires",
            "to",
        ],
        vec![
            &soon.id.0.to_string(),
            "GB-ENG",
            "3",
            "75.00",
            "GBP",
            &first.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "breakage",
        ],
    ]
    .iter()
    .map(|l| l.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(lines, expected, "{stdout}");

    tender_refused(&env, &["expire", "--as-of", "2031-12-31"], "expiry.future").await;
    tender_refused(&env, &["expire", "--as-of", "soon"], "expiry.bad_as_of").await;
    tender_refused(
        &env,
        &["expire", "outlook", "--days", "0"],
        "expiry.bad_days",
    )
    .await;
    assert_eq!(
        written(&env).await,
        before,
        "the previews and refusals write nothing"
    );

    let stdout = tender_ok(&env, &["expire"]).await;
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0][..3], ["expired", "2", "cards"], "{stdout}");
    assert!(
        stdout.lines().next().unwrap().ends_with(" in 1 transfers"),
        "{stdout}"
    );
    assert_eq!(
        lines[2],
        ["GBP", "breakage", "2", "50.00", "GBP"],
        "{stdout}"
    );
    assert_eq!(expired_cards(&env).await, 2);
    assert_eq!(state(&env, card(&due, 0)).await, CardState::Expired);
    assert_eq!(state(&env, card(&soon, 0)).await, CardState::Active);
    // The audit trail names the person who ran it.
    assert_eq!(
        env.count(
            "SELECT count(*) FROM audit_record WHERE action = 'card.expired' \
             AND actor LIKE 'cli:%'"
        )
        .await,
        1
    );
    assert_whole(&env).await;
}
both_backends!(command, the_expire_command_prints_its_tables);

/// The process tests sell on the test's clock, which starts months behind the wall clock: cards
/// printed to expire a day after its start are due on the wall clock.
#[test]
fn the_wall_clock_is_past_the_test_epoch() {
    assert!(SystemClock.now() > epoch() + TimeDelta::days(i64::from(DUE_DAYS)));
}
