//! Cards at the point of sale, on both backends: what a store may do with a card and what it
//! can never do, whatever the network or a second caller does in between.
//!
//! - A card is activated by serial or by a contiguous range of one batch, by the retailer the
//!   batch was issued to, at one of its stores in the batch's country. The activation is one
//!   transfer: each card is credited its value, `receivable:{retailer}` is debited the value net
//!   of the commission and `commission` the commission (per card, rounded half up).
//! - A POS request is idempotent on (retailer, store, terminal, POS transaction, serials): any
//!   number of retries, concurrent or not, activate once and all get the first answer; the same
//!   key with a different request is a conflict. A range answers card by card.
//! - Every refusal has its own code and writes nothing; a single-card request that changes
//!   nothing leaves its key free, so a corrected retry is judged afresh.
//! - A void reverses its activation exactly and the card is never sold again. A blocked card can
//!   be neither activated nor voided until it is unblocked; a block racing a sale or a void
//!   gives one consistent outcome. Every block, unblock and exposure change is audited with its
//!   actor.
//! - An exposed card (its code was tried before the sale) is refused for a live sale; an offline
//!   sale from before the exposure is accepted and flagged for review.
//! - A card's funds-expiry is the later of its printed expiry and the sale plus its store's
//!   legal minimum; never where the law forbids expiry.
//! - `ledger check` proves every card's state against its entries; the support view shows a
//!   card's whole life but never its code.

use std::collections::BTreeMap;

use chrono::{DateTime, Months, TimeDelta, Utc};
use tender::codegen::CodeGenerator;
use tender::domain::{Actor, Batch, CardAction, CardState, Serial, TransferId};
use tender::error::Classify;
use tender::service::batches::BatchForm;
use tender::service::cards::{ActivateForm, CardError, PosForm, PosResult, StoreForm, VoidForm};
use tender::store::ledger::Discrepancy;
use tender::store::{DbPool, Store};

use crate::helpers::{TestApp, actor, both_backends, epoch, usd_form};

/// Acme's store in Texas, where every test sells unless it says otherwise.
const STORE: &str = "S1";
const TERMINAL: &str = "till-1";

fn alice() -> Actor {
    Actor::cli("alice", None).unwrap()
}

fn bob() -> Actor {
    Actor::cli("bob", None).unwrap()
}

/// Where a request comes from: a retailer's store, till 1, one POS transaction.
fn pos(retailer: &str, store: &str, txn: &str) -> PosForm {
    PosForm {
        retailer: retailer.into(),
        store: store.into(),
        terminal: TERMINAL.into(),
        pos_txn: txn.into(),
        pos_time: None,
    }
}

/// Acme sells one card at its Texas store, live.
fn sell(serial: Serial, txn: &str) -> ActivateForm {
    ActivateForm {
        pos: pos("Acme", STORE, txn),
        serial: serial.to_string(),
        to_serial: None,
        value: None,
        purchaser_state: None,
    }
}

/// Acme sells a box, `first` to `last`, at its Texas store, live.
fn sell_range(first: Serial, last: Serial, txn: &str) -> ActivateForm {
    ActivateForm {
        to_serial: Some(last.to_string()),
        ..sell(first, txn)
    }
}

/// Acme sells one card at a chosen value.
fn sell_at(serial: Serial, value: &str, txn: &str) -> ActivateForm {
    ActivateForm {
        value: Some(value.into()),
        ..sell(serial, txn)
    }
}

/// A sale entered offline at the till at `pos_time`, forwarded later.
fn offline(form: ActivateForm, pos_time: DateTime<Utc>) -> ActivateForm {
    ActivateForm {
        pos: PosForm {
            pos_time: Some(pos_time),
            ..form.pos
        },
        ..form
    }
}

/// Acme voids one card at its Texas store.
fn void_form(serial: Serial, txn: &str) -> VoidForm {
    VoidForm {
        pos: pos("Acme", STORE, txn),
        serial: serial.to_string(),
    }
}

async fn add_store<S: Store>(env: &TestApp<S>, retailer: &str, store: &str, jurisdiction: &str) {
    let form = StoreForm {
        retailer: retailer.into(),
        store: store.into(),
        jurisdiction: jurisdiction.into(),
    };
    env.app
        .services()
        .cards()
        .add_store(&form, &actor())
        .await
        .unwrap();
}

/// A generated batch, requested with `form` (retailer Acme, 2.5 % commission, is added first if
/// there is no retailer yet), and Acme's store S1 in US-TX.
async fn shelf_of<S: Store>(env: &TestApp<S>, form: BatchForm) -> Batch {
    if env.count("SELECT count(*) FROM retailer").await == 0 {
        env.app
            .services()
            .retailers()
            .add("Acme", "2.5", &actor())
            .await
            .unwrap();
    }
    let count = form.count;
    let batch = env
        .app
        .services()
        .batches()
        .request(&form, &actor())
        .await
        .unwrap();
    let batch = env
        .generate(batch.id, &mut CodeGenerator::from_os_rng(), count as usize)
        .await;
    if env
        .count("SELECT count(*) FROM retail_store WHERE store_code = 'S1'")
        .await
        == 0
    {
        add_store(env, "Acme", STORE, "US-TX").await;
    }
    batch
}

/// `count` generated 25.00 USD cards for the US, printed to expire in 365 days.
async fn shelf<S: Store>(env: &TestApp<S>, count: u64) -> Batch {
    shelf_of(env, usd_form(count)).await
}

/// `count` generated USD cards for the US that take a value from 10.00 to 500.00.
async fn variable_shelf<S: Store>(env: &TestApp<S>, count: u64) -> Batch {
    let form = BatchForm {
        value: None,
        min: Some("10.00".into()),
        max: Some("500.00".into()),
        ..usd_form(count)
    };
    shelf_of(env, form).await
}

/// The `n`th card of a batch, from 0.
fn card(batch: &Batch, n: u64) -> Serial {
    Serial::from_sequence(batch.first_serial.sequence() + n).unwrap()
}

/// The same serial with its check digit off by one.
fn misprinted(serial: Serial) -> String {
    let text = serial.to_string();
    let (body, check) = text.split_at(text.len() - 1);
    let check: u8 = check.parse().unwrap();
    format!("{body}{}", (check + 1) % 10)
}

async fn activate<S: Store>(env: &TestApp<S>, form: &ActivateForm) -> Result<PosResult, CardError> {
    env.app.services().cards().activate(form, &actor()).await
}

async fn void<S: Store>(env: &TestApp<S>, form: &VoidForm) -> Result<PosResult, CardError> {
    env.app.services().cards().void(form, &actor()).await
}

/// The code of a refusal.
fn code_of<T: std::fmt::Debug>(result: Result<T, CardError>) -> &'static str {
    result.expect_err("the request is refused").code()
}

/// What the first answer says, whether or not it is the first time it is given.
fn first_answer(result: &PosResult) -> PosResult {
    PosResult {
        replayed: false,
        ..result.clone()
    }
}

/// Sends `copies` copies of one POS request at once (`send` makes each); asserts that every
/// caller got the same answer, all but one of them as a replay, and returns that answer.
async fn one_answer_to_copies<F, Fut>(copies: usize, send: F) -> PosResult
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<PosResult, CardError>> + Send + 'static,
{
    let answers: Vec<PosResult> =
        futures::future::join_all((0..copies).map(|_| tokio::spawn(send())))
            .await
            .into_iter()
            .map(|a| a.unwrap().unwrap())
            .collect();
    assert_eq!(answers.iter().filter(|a| a.replayed).count(), copies - 1);
    let first = first_answer(&answers[0]);
    assert!(
        answers.iter().all(|a| first_answer(a) == first),
        "{answers:?}"
    );
    first
}

/// The outcome of each card of an answer, in order.
fn outcomes(result: &PosResult) -> Vec<(Serial, &str)> {
    result
        .cards
        .iter()
        .map(|c| (c.serial, c.outcome.as_str()))
        .collect()
}

/// The rows of every table a POS request or a card change can write, and the cards that are no
/// longer plain issued cards, counted behind the services' back.
async fn rows<S: Store>(env: &TestApp<S>) -> BTreeMap<&'static str, i64> {
    let mut counts = BTreeMap::new();
    for (name, sql) in [
        ("pos_request", "SELECT count(*) FROM pos_request"),
        ("card_activation", "SELECT count(*) FROM card_activation"),
        ("transfer", "SELECT count(*) FROM transfer"),
        ("entry", "SELECT count(*) FROM entry"),
        ("card_event", "SELECT count(*) FROM card_event"),
        ("audit_record", "SELECT count(*) FROM audit_record"),
        (
            "cards changed",
            "SELECT count(*) FROM card WHERE state <> 0 \
             OR blocked_reason IS NOT NULL OR exposed_ms IS NOT NULL",
        ),
    ] {
        counts.insert(name, env.count(sql).await);
    }
    counts
}

/// A card's state as stored.
async fn state<S: Store>(env: &TestApp<S>, serial: Serial) -> CardState {
    let code = env
        .count(&format!(
            "SELECT CAST(state AS BIGINT) FROM card WHERE serial = {}",
            serial.sequence()
        ))
        .await;
    CardState::from_code(i16::try_from(code).unwrap()).unwrap()
}

/// Whether a card is blocked, as stored.
async fn blocked<S: Store>(env: &TestApp<S>, serial: Serial) -> bool {
    env.count(&format!(
        "SELECT count(*) FROM card WHERE serial = {} AND blocked_reason IS NOT NULL",
        serial.sequence()
    ))
    .await
        == 1
}

/// What a card's entries sum to: the value it carries.
async fn card_balance<S: Store>(env: &TestApp<S>, serial: Serial) -> i64 {
    env.count(&format!(
        "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM entry WHERE serial = {}",
        serial.sequence()
    ))
    .await
}

/// What a system account's entries sum to.
async fn account_sum<S: Store>(env: &TestApp<S>, account: &str) -> i64 {
    env.count(&format!(
        "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM entry \
         WHERE ledger_account = '{account}'"
    ))
    .await
}

/// A transfer's legs, in order: (ledger account, amount in minor units).
async fn legs<S: Store>(env: &TestApp<S>, transfer: TransferId) -> Vec<(String, i64)> {
    let sql = format!(
        "SELECT ledger_account, amount_minor FROM entry WHERE transfer_id = {} ORDER BY leg",
        transfer.0
    );
    let sql = sqlx::AssertSqlSafe(sql);
    match env.store().db_pool() {
        DbPool::Sqlite(pool) => sqlx::query_as(sql).fetch_all(&pool).await.unwrap(),
        DbPool::Postgres(pool) => sqlx::query_as(sql).fetch_all(&pool).await.unwrap(),
    }
}

/// Audit records of `action` about `subject` by `actor`.
async fn audited<S: Store>(env: &TestApp<S>, action: &str, subject: &str, actor: &Actor) -> i64 {
    env.count(&format!(
        "SELECT count(*) FROM audit_record WHERE action = '{action}' \
         AND subject = '{subject}' AND actor = '{actor}'"
    ))
    .await
}

/// Runs `ledger check` and expects the books to hold.
async fn assert_books_hold<S: Store>(env: &TestApp<S>) {
    let report = env.app.services().ledger().check().await.unwrap();
    assert_eq!(report.discrepancy, None, "{report:?}");
}

/// Verifies the audit trail: every record the card changes appended is intact and chained.
async fn assert_trail_intact<S: Store>(env: &TestApp<S>) {
    let report = env.verify().await;
    assert!(report.is_intact(), "{:?}", report.problem);
}

/// The first discrepancy `ledger check` reports.
async fn discrepancy<S: Store>(env: &TestApp<S>) -> Discrepancy {
    let report = env.app.services().ledger().check().await.unwrap();
    report
        .discrepancy
        .expect("ledger check finds the tampering")
}

/// The ledger account of what Acme owes for the cards it sold.
async fn receivable<S: Store>(env: &TestApp<S>) -> String {
    let id = env
        .count("SELECT retailer_id FROM retailer WHERE name = 'Acme'")
        .await;
    format!("receivable:{id}")
}

// ---------------------------------------------------------------------------------------------
// Idempotency: a POS request is answered once, however often it arrives.

/// Ten copies of one activation arrive at once (a till retrying after a network drop): the card
/// is activated once (one transfer, one activation row, one history line, one audit record) and
/// all ten callers get the same answer, nine of them marked as replays. The same holds for a
/// box of ten cards.
async fn concurrent_retries_activate_once<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 20).await;
    let one = card(&batch, 0);

    let first = one_answer_to_copies(10, || {
        let app = env.app.clone();
        let form = sell(one, "txn-1");
        async move { app.services().cards().activate(&form, &actor()).await }
    })
    .await;
    assert_eq!(outcomes(&first), [(one, "activated")]);
    assert!(first.request_id.is_some() && first.transfer_id.is_some());
    assert_eq!(state(&env, one).await, CardState::Active);
    assert_eq!(card_balance(&env, one).await, 2_500);
    assert_eq!(
        env.count("SELECT count(*) FROM transfer WHERE kind = 'activation'")
            .await,
        1
    );
    assert_eq!(env.count("SELECT count(*) FROM pos_request").await, 1);
    assert_eq!(env.count("SELECT count(*) FROM card_activation").await, 1);
    assert_eq!(env.count("SELECT count(*) FROM card_event").await, 1);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_record WHERE action = 'card.activated'")
            .await,
        1
    );

    let (first_card, last_card) = (card(&batch, 5), card(&batch, 14));
    let first = one_answer_to_copies(10, || {
        let app = env.app.clone();
        let form = sell_range(first_card, last_card, "txn-2");
        async move { app.services().cards().activate(&form, &actor()).await }
    })
    .await;
    let expected: Vec<(Serial, &str)> = (5..15).map(|n| (card(&batch, n), "activated")).collect();
    assert_eq!(outcomes(&first), expected);
    assert_eq!(
        env.count("SELECT count(*) FROM transfer WHERE kind = 'activation'")
            .await,
        2
    );
    assert_eq!(env.count("SELECT count(*) FROM pos_request").await, 2);
    assert_eq!(env.count("SELECT count(*) FROM card_activation").await, 11);
    assert_eq!(env.count("SELECT count(*) FROM card_event").await, 11);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_record WHERE action = 'card.activated'")
            .await,
        2
    );
    assert_eq!(
        env.count("SELECT count(*) FROM card WHERE state = 1").await,
        11
    );
    // The box's one transfer credits each card once.
    let box_legs = legs(&env, first.transfer_id.unwrap()).await;
    assert_eq!(box_legs.len(), 12, "{box_legs:?}");
    assert_books_hold(&env).await;
    assert_trail_intact(&env).await;
}
both_backends!(concurrent_retries, concurrent_retries_activate_once);

/// A box with one card already sold: the answer goes card by card (that card
/// `card.already_active`, the others activated by one transfer), and a retry of the box gets
/// the first answer. A box whose every card is refused writes nothing.
async fn a_range_answers_card_by_card<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 20).await;
    let sold = card(&batch, 3);
    let first_sale = activate(&env, &sell(sold, "txn-1")).await.unwrap();

    let answer = activate(&env, &sell_range(card(&batch, 0), card(&batch, 5), "txn-2"))
        .await
        .unwrap();
    assert!(!answer.replayed);
    let expected: Vec<(Serial, &str)> = (0..6)
        .map(|n| {
            let outcome = if n == 3 {
                "card.already_active"
            } else {
                "activated"
            };
            (card(&batch, n), outcome)
        })
        .collect();
    assert_eq!(outcomes(&answer), expected);
    let refused = &answer.cards[3];
    assert!(
        refused
            .message
            .as_deref()
            .unwrap()
            .contains("already active")
    );
    assert_eq!(refused.value, None);
    assert!(answer.cards[0].value.is_some());
    // The five cards were credited by the box's transfer; the sold card keeps its first sale.
    let box_legs = legs(&env, answer.transfer_id.unwrap()).await;
    assert_eq!(box_legs.len(), 2 + 5);
    assert!(!box_legs.iter().any(|(a, _)| *a == format!("card:{sold}")));
    assert_eq!(card_balance(&env, sold).await, 2_500);
    assert_eq!(
        env.count(&format!(
            "SELECT request_id FROM card_activation WHERE serial = {}",
            sold.sequence()
        ))
        .await,
        first_sale.request_id.unwrap()
    );

    let before = rows(&env).await;
    let retry = activate(&env, &sell_range(card(&batch, 0), card(&batch, 5), "txn-2"))
        .await
        .unwrap();
    assert!(retry.replayed);
    assert_eq!(first_answer(&retry), answer);
    assert_eq!(rows(&env).await, before);

    // Every card of this box is sold already: each is refused and nothing is written.
    let none = activate(&env, &sell_range(card(&batch, 0), card(&batch, 5), "txn-3"))
        .await
        .unwrap();
    assert_eq!((none.request_id, none.transfer_id), (None, None));
    assert!(
        none.cards
            .iter()
            .all(|c| c.outcome == "card.already_active")
    );
    assert_eq!(none.cards.len(), 6);
    assert_eq!(rows(&env).await, before);
    assert_books_hold(&env).await;
}
both_backends!(range_card_by_card, a_range_answers_card_by_card);

/// The largest box a request may name, 1,000 cards, is one request on both backends (within
/// each database's limit of bound parameters): one transfer of 1,002 legs, one history line
/// and one activation per card sold, the one blocked card in it refused, the books whole.
async fn the_largest_box_is_one_request<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 1_000).await;
    let frozen = card(&batch, 500);
    env.app
        .services()
        .cards()
        .block(&frozen.to_string(), "fraud", &alice())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let answer = activate(
        &env,
        &sell_range(card(&batch, 0), card(&batch, 999), "case"),
    )
    .await
    .unwrap();
    eprintln!("a 1,000-card box activated in {:?}", started.elapsed());
    assert_eq!(answer.cards.len(), 1_000);
    let refused: Vec<(Serial, &str)> = outcomes(&answer)
        .into_iter()
        .filter(|(_, outcome)| *outcome != "activated")
        .collect();
    assert_eq!(refused, [(frozen, "card.blocked")]);
    assert_eq!(legs(&env, answer.transfer_id.unwrap()).await.len(), 2 + 999);
    assert_eq!(env.count("SELECT count(*) FROM card_activation").await, 999);
    assert_eq!(env.count("SELECT count(*) FROM card_event").await, 1 + 999);
    assert_eq!(
        account_sum(&env, "commission").await,
        -999 * 63,
        "the commission is rounded per card"
    );
    let retry = activate(
        &env,
        &sell_range(card(&batch, 0), card(&batch, 999), "case"),
    )
    .await
    .unwrap();
    assert!(retry.replayed);
    assert_eq!(first_answer(&retry), answer);
    assert_books_hold(&env).await;
}
both_backends!(largest_box, the_largest_box_is_one_request);

/// The same key (retailer, store, terminal, POS transaction, serials) with a different value,
/// POS time or operation is refused as a conflict and writes nothing; the same request again is
/// answered as the first time. Another range under the same POS transaction is another key.
async fn a_conflicting_retry_is_refused<S: Store>(env: TestApp<S>) {
    let batch = variable_shelf(&env, 20).await;
    let one = card(&batch, 0);
    let first = activate(&env, &sell_at(one, "50.00", "txn-1"))
        .await
        .unwrap();

    let before = rows(&env).await;
    let other_value = activate(&env, &sell_at(one, "60.00", "txn-1")).await;
    assert_eq!(code_of(other_value), "pos.request_conflict");
    let later = offline(
        sell_at(one, "50.00", "txn-1"),
        epoch() - TimeDelta::hours(1),
    );
    let other_time = activate(&env, &later).await;
    assert_eq!(code_of(other_time), "pos.request_conflict");
    let void_same_key = void(&env, &void_form(one, "txn-1")).await;
    assert_eq!(code_of(void_same_key), "pos.request_conflict");
    assert_eq!(rows(&env).await, before);
    assert_eq!(card_balance(&env, one).await, 5_000);

    let retry = activate(&env, &sell_at(one, "50.00", "txn-1"))
        .await
        .unwrap();
    assert!(retry.replayed);
    assert_eq!(first_answer(&retry), first);
    assert_eq!(rows(&env).await, before);

    // A box under its own key, then a longer box under the same POS transaction: a new key.
    let (a, b, c) = (card(&batch, 1), card(&batch, 3), card(&batch, 4));
    let box_of_three = ActivateForm {
        to_serial: Some(b.to_string()),
        ..sell_at(a, "20.00", "txn-2")
    };
    activate(&env, &box_of_three).await.unwrap();
    let box_of_four = ActivateForm {
        to_serial: Some(c.to_string()),
        ..sell_at(a, "20.00", "txn-2")
    };
    let answer = activate(&env, &box_of_four).await.unwrap();
    assert!(!answer.replayed);
    assert_eq!(
        outcomes(&answer),
        [
            (a, "card.already_active"),
            (card(&batch, 2), "card.already_active"),
            (b, "card.already_active"),
            (c, "activated"),
        ]
    );
    assert_books_hold(&env).await;
}
both_backends!(conflicting_retry, a_conflicting_retry_is_refused);

/// The key is kept forever, so a till that retries a store-and-forward sale (or a void) after
/// its POS time has aged past the seven days a new sale may lag gets the first answer, not
/// `pos.time_stale`: the sale is recorded and must not be entered again. A new request with
/// that POS time is still refused.
async fn a_retry_is_answered_after_the_offline_window<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 20).await;
    let (one, two) = (card(&batch, 0), card(&batch, 1));
    let at_the_till = epoch() - TimeDelta::days(6);
    let sale = offline(sell(one, "sale-1"), at_the_till);
    let first = activate(&env, &sale).await.unwrap();
    activate(&env, &sell(two, "sale-2")).await.unwrap();
    let void_at_the_till = VoidForm {
        pos: PosForm {
            pos_time: Some(epoch()),
            ..pos("Acme", STORE, "void-2")
        },
        ..void_form(two, "void-2")
    };
    let voided = void(&env, &void_at_the_till).await.unwrap();

    env.clock.advance(TimeDelta::days(8));
    let before = rows(&env).await;
    let retry = activate(&env, &sale).await.unwrap();
    assert!(retry.replayed);
    assert_eq!(first_answer(&retry), first);
    let retry = void(&env, &void_at_the_till).await.unwrap();
    assert!(retry.replayed);
    assert_eq!(first_answer(&retry), voided);
    assert_eq!(rows(&env).await, before);

    let new_sale = offline(sell(card(&batch, 2), "sale-3"), at_the_till);
    assert_eq!(code_of(activate(&env, &new_sale).await), "pos.time_stale");
    assert_eq!(rows(&env).await, before);
}
both_backends!(
    retry_after_offline_window,
    a_retry_is_answered_after_the_offline_window
);

// ---------------------------------------------------------------------------------------------
// Refusals: each with its own code, none writing anything.

/// Every malformed or forbidden request is refused with its own code and writes nothing: no
/// POS request, activation, transfer, entry, history line or audit record, no card changed.
/// A refused single card leaves its key free: the corrected request succeeds under it.
async fn every_refusal_has_its_code_and_writes_nothing<S: Store>(env: TestApp<S>) {
    let fixed = shelf(&env, 20).await;
    let variable = variable_shelf(&env, 20).await;
    env.app
        .services()
        .retailers()
        .add("Beta", "3", &actor())
        .await
        .unwrap();
    add_store(&env, "Beta", "B1", "US-TX").await;
    add_store(&env, "Acme", "ON1", "CA-ON").await;
    let issued = card(&fixed, 0);
    let sold = card(&fixed, 1);
    activate(&env, &sell(sold, "txn-sold")).await.unwrap();
    let beyond = Serial::from_sequence(card(&variable, 19).sequence() + 1).unwrap();

    let before = rows(&env).await;
    let cases: Vec<(&str, ActivateForm, &str)> = vec![
        (
            "a foreign retailer's activation",
            ActivateForm {
                pos: pos("Beta", "B1", "txn-x"),
                ..sell(issued, "txn-x")
            },
            "card.foreign_retailer",
        ),
        (
            "a store the retailer does not have",
            ActivateForm {
                pos: pos("Acme", "B1", "txn-x"),
                ..sell(issued, "txn-x")
            },
            "pos.unknown_store",
        ),
        (
            "an unknown retailer",
            ActivateForm {
                pos: pos("Gamma", STORE, "txn-x"),
                ..sell(issued, "txn-x")
            },
            "store.unknown_retailer",
        ),
        (
            "a value below a variable batch's range",
            sell_at(card(&variable, 0), "9.99", "txn-x"),
            "activation.value_out_of_range",
        ),
        (
            "a value above a variable batch's range",
            sell_at(card(&variable, 0), "500.01", "txn-x"),
            "activation.value_out_of_range",
        ),
        (
            "no value for a variable batch",
            sell(card(&variable, 0), "txn-x"),
            "activation.value_required",
        ),
        (
            "a value other than a fixed batch's",
            sell_at(issued, "30.00", "txn-x"),
            "activation.value_fixed",
        ),
        (
            "a range over the limit",
            sell_range(
                issued,
                Serial::from_sequence(issued.sequence() + 1_000).unwrap(),
                "txn-x",
            ),
            "pos.range_too_large",
        ),
        (
            "a range that runs backwards",
            sell_range(card(&fixed, 5), card(&fixed, 2), "txn-x"),
            "pos.range_inverted",
        ),
        (
            "a range crossing from one batch into the next",
            sell_range(card(&fixed, 15), card(&variable, 2), "txn-x"),
            "activation.range_spans_batches",
        ),
        (
            "a serial with a wrong check digit",
            ActivateForm {
                serial: misprinted(issued),
                ..sell(issued, "txn-x")
            },
            "serial.check_digit",
        ),
        (
            "a range whose last serial has a wrong check digit",
            ActivateForm {
                to_serial: Some(misprinted(card(&fixed, 4))),
                ..sell(issued, "txn-x")
            },
            "serial.check_digit",
        ),
        (
            "a serial no batch holds",
            sell(beyond, "txn-x"),
            "card.not_found",
        ),
        (
            "a POS time six minutes ahead",
            offline(sell(issued, "txn-x"), epoch() + TimeDelta::minutes(6)),
            "pos.time_ahead",
        ),
        (
            "a POS time eight days old",
            offline(sell(issued, "txn-x"), epoch() - TimeDelta::days(8)),
            "pos.time_stale",
        ),
        (
            "a store in another country than the batch's",
            ActivateForm {
                pos: pos("Acme", "ON1", "txn-x"),
                ..sell(issued, "txn-x")
            },
            "card.wrong_region",
        ),
        (
            "a bad terminal id",
            ActivateForm {
                pos: PosForm {
                    terminal: "till 1".into(),
                    ..pos("Acme", STORE, "txn-x")
                },
                ..sell(issued, "txn-x")
            },
            "pos.bad_id",
        ),
        (
            "a card already sold",
            sell(sold, "txn-x"),
            "card.already_active",
        ),
    ];
    for (what, form, code) in cases {
        let refused = activate(&env, &form).await;
        assert_eq!(code_of(refused), code, "{what}");
        assert_eq!(rows(&env).await, before, "{what} wrote something");
    }

    let voids: Vec<(&str, VoidForm, &str)> = vec![
        (
            "a foreign retailer's void",
            VoidForm {
                pos: pos("Beta", "B1", "txn-y"),
                ..void_form(sold, "txn-y")
            },
            "card.foreign_retailer",
        ),
        (
            "a void at a store the retailer does not have",
            VoidForm {
                pos: pos("Acme", "B1", "txn-y"),
                ..void_form(sold, "txn-y")
            },
            "pos.unknown_store",
        ),
        (
            "a void of a serial with a wrong check digit",
            VoidForm {
                serial: misprinted(sold),
                ..void_form(sold, "txn-y")
            },
            "serial.check_digit",
        ),
        (
            "a void with a POS time six minutes ahead",
            VoidForm {
                pos: PosForm {
                    pos_time: Some(epoch() + TimeDelta::minutes(6)),
                    ..pos("Acme", STORE, "txn-y")
                },
                ..void_form(sold, "txn-y")
            },
            "pos.time_ahead",
        ),
    ];
    for (what, form, code) in voids {
        let refused = void(&env, &form).await;
        assert_eq!(code_of(refused), code, "{what}");
        assert_eq!(rows(&env).await, before, "{what} wrote something");
    }
    assert_eq!(state(&env, issued).await, CardState::Issued);
    assert_eq!(state(&env, sold).await, CardState::Active);

    // The refused requests took no key: the same POS transaction, corrected, goes through.
    let fixed_up = activate(&env, &sell(issued, "txn-x")).await.unwrap();
    assert!(!fixed_up.replayed);
    assert_eq!(outcomes(&fixed_up), [(issued, "activated")]);
    let chosen = activate(&env, &sell_at(card(&variable, 0), "10.00", "txn-x"))
        .await
        .unwrap();
    assert!(!chosen.replayed);
    assert_books_hold(&env).await;
}
both_backends!(refusals, every_refusal_has_its_code_and_writes_nothing);

// ---------------------------------------------------------------------------------------------
// Void: the activation reversed, once.

/// A void reverses its activation exactly: its transfer's legs are the sale's, negated, so the
/// card, the retailer's receivable and the commission all sum back to zero, and the card is
/// voided for good. A retry of the void is a replay; a void of an issued, voided or blocked
/// card is refused with its code, and a voided card is never activated again.
async fn a_void_reverses_its_activation_exactly<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 20).await;
    let one = card(&batch, 0);
    let sale = activate(&env, &sell(one, "sale-1")).await.unwrap();
    let sale_legs = legs(&env, sale.transfer_id.unwrap()).await;
    assert_eq!(
        sale_legs,
        [
            (receivable(&env).await, -2_437),
            ("commission".to_string(), -63),
            (format!("card:{one}"), 2_500),
        ]
    );

    // The retailer's rate changes before the card comes back: the void gives back what the sale
    // took, not what a sale would take now.
    env.exec("UPDATE retailer SET commission_bp = 1000").await;
    let voided = void(&env, &void_form(one, "void-1")).await.unwrap();
    assert!(!voided.replayed);
    assert_eq!(outcomes(&voided), [(one, "voided")]);
    let void_transfer = voided.transfer_id.unwrap();
    assert_ne!(void_transfer, sale.transfer_id.unwrap());
    let mut mirrored: Vec<(String, i64)> = legs(&env, void_transfer)
        .await
        .into_iter()
        .map(|(account, amount)| (account, -amount))
        .collect();
    mirrored.sort();
    let mut sold = sale_legs.clone();
    sold.sort();
    assert_eq!(mirrored, sold);
    assert_eq!(card_balance(&env, one).await, 0);
    assert_eq!(account_sum(&env, &receivable(&env).await).await, 0);
    assert_eq!(account_sum(&env, "commission").await, 0);
    assert_eq!(state(&env, one).await, CardState::Voided);
    assert_eq!(
        env.count(&format!(
            "SELECT void_request_id FROM card_activation WHERE serial = {}",
            one.sequence()
        ))
        .await,
        voided.request_id.unwrap()
    );
    assert_eq!(
        audited(&env, "card.voided", &format!("card:{one}"), &actor()).await,
        1
    );

    let before = rows(&env).await;
    let retry = void(&env, &void_form(one, "void-1")).await.unwrap();
    assert!(retry.replayed);
    assert_eq!(first_answer(&retry), voided);
    assert_eq!(rows(&env).await, before);

    assert_eq!(
        code_of(void(&env, &void_form(one, "void-2")).await),
        "card.voided"
    );
    assert_eq!(
        code_of(activate(&env, &sell(one, "sale-2")).await),
        "card.voided"
    );
    let in_a_box = activate(&env, &sell_range(one, card(&batch, 1), "sale-3"))
        .await
        .unwrap();
    assert_eq!(
        outcomes(&in_a_box),
        [(one, "card.voided"), (card(&batch, 1), "activated")]
    );
    let before = rows(&env).await;
    assert_eq!(
        code_of(void(&env, &void_form(card(&batch, 2), "void-3")).await),
        "card.not_active"
    );
    assert_eq!(rows(&env).await, before);

    let frozen = card(&batch, 3);
    activate(&env, &sell(frozen, "sale-4")).await.unwrap();
    let cards = env.app.services().cards();
    cards
        .block(&frozen.to_string(), "fraud", &alice())
        .await
        .unwrap();
    let before = rows(&env).await;
    assert_eq!(
        code_of(void(&env, &void_form(frozen, "void-4")).await),
        "card.blocked"
    );
    assert_eq!(rows(&env).await, before);
    assert_eq!(state(&env, frozen).await, CardState::Active);
    assert_eq!(card_balance(&env, frozen).await, 2_500);
    assert_books_hold(&env).await;
}
both_backends!(void_reverses, a_void_reverses_its_activation_exactly);

/// Every change is refused with its own code from every state it is not allowed from, and the
/// refusal writes nothing: a sale of a card that is active, redeemed, voided or expired; a void
/// of one that is issued, redeemed, voided or expired; a block of one that is redeemed, voided
/// or expired. (Redemption and expiry come later; the cards are moved there by hand, as those
/// jobs will.)
async fn every_state_refuses_what_it_does_not_allow<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 10).await;
    let (issued, active, redeemed, voided, expired) = (
        card(&batch, 0),
        card(&batch, 1),
        card(&batch, 2),
        card(&batch, 3),
        card(&batch, 4),
    );
    activate(&env, &sell_range(active, expired, "box"))
        .await
        .unwrap();
    void(&env, &void_form(voided, "void-0")).await.unwrap();
    for (serial, state) in [
        (redeemed, CardState::Redeemed),
        (expired, CardState::Expired),
    ] {
        env.exec(&format!(
            "UPDATE card SET state = {} WHERE serial = {}",
            state.code(),
            serial.sequence()
        ))
        .await;
    }
    let cards = env.app.services().cards();
    let before = rows(&env).await;
    let expected = [
        (issued, None, Some("card.not_active"), None),
        (active, Some("card.already_active"), None, None),
        (
            redeemed,
            Some("card.already_redeemed"),
            Some("card.already_redeemed"),
            Some("card.already_redeemed"),
        ),
        (
            voided,
            Some("card.voided"),
            Some("card.voided"),
            Some("card.voided"),
        ),
        (
            expired,
            Some("card.expired"),
            Some("card.expired"),
            Some("card.expired"),
        ),
    ];
    for (serial, on_sale, on_void, on_block) in expected {
        if let Some(code) = on_sale {
            let refused = activate(&env, &sell(serial, &format!("sale-{serial}"))).await;
            assert_eq!(code_of(refused), code, "a sale of {serial}");
        }
        if let Some(code) = on_void {
            let refused = void(&env, &void_form(serial, &format!("void-{serial}"))).await;
            assert_eq!(code_of(refused), code, "a void of {serial}");
        }
        if let Some(code) = on_block {
            let refused = cards.block(&serial.to_string(), "fraud", &alice()).await;
            assert_eq!(code_of(refused), code, "a block of {serial}");
        }
        let refused = cards
            .unblock(&serial.to_string(), "cleared", &alice())
            .await;
        assert_eq!(
            code_of(refused),
            "card.not_blocked",
            "an unblock of {serial}"
        );
        assert_eq!(
            rows(&env).await,
            before,
            "a refusal about {serial} wrote something"
        );
    }
}
both_backends!(state_refusals, every_state_refuses_what_it_does_not_allow);

// ---------------------------------------------------------------------------------------------
// Block and unblock.

/// A blocked card can be neither activated nor voided; unblocking restores it. Blocking twice
/// is `card.already_blocked`, unblocking an unblocked card `card.not_blocked`, blocking a voided
/// card `card.voided`; each block and unblock is audited with its actor and kept in the card's
/// history with its reason.
async fn a_blocked_card_is_frozen_until_unblocked<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 20).await;
    let one = card(&batch, 0);
    let subject = format!("card:{one}");
    let cards = env.app.services().cards();

    let status = cards
        .block(&one.to_string(), "suspected_fraud", &alice())
        .await
        .unwrap();
    assert_eq!(status.blocked_reason.as_deref(), Some("suspected_fraud"));
    assert_eq!(status.state, CardState::Issued);
    let before = rows(&env).await;
    assert_eq!(
        code_of(cards.block(&one.to_string(), "again", &alice()).await),
        "card.already_blocked"
    );
    assert_eq!(
        code_of(activate(&env, &sell(one, "sale-1")).await),
        "card.blocked"
    );
    assert_eq!(
        code_of(
            cards
                .block(&one.to_string(), "Not A Reason", &alice())
                .await
        ),
        "ledger.bad_name"
    );
    assert_eq!(rows(&env).await, before);

    // A box around the blocked card sells the others.
    let around = activate(
        &env,
        &sell_range(card(&batch, 0), card(&batch, 2), "sale-box"),
    )
    .await
    .unwrap();
    assert_eq!(
        outcomes(&around),
        [
            (one, "card.blocked"),
            (card(&batch, 1), "activated"),
            (card(&batch, 2), "activated"),
        ]
    );

    let status = cards
        .unblock(&one.to_string(), "cleared", &bob())
        .await
        .unwrap();
    assert_eq!(status.blocked_reason, None);
    assert_eq!(
        code_of(cards.unblock(&one.to_string(), "cleared", &bob()).await),
        "card.not_blocked"
    );
    activate(&env, &sell(one, "sale-1")).await.unwrap();
    assert_eq!(state(&env, one).await, CardState::Active);

    cards
        .block(&one.to_string(), "chargeback", &alice())
        .await
        .unwrap();
    assert_eq!(
        code_of(void(&env, &void_form(one, "void-1")).await),
        "card.blocked"
    );
    cards
        .unblock(&one.to_string(), "cleared", &bob())
        .await
        .unwrap();
    void(&env, &void_form(one, "void-1")).await.unwrap();
    let before = rows(&env).await;
    assert_eq!(
        code_of(cards.block(&one.to_string(), "fraud", &alice()).await),
        "card.voided"
    );
    assert_eq!(rows(&env).await, before);

    assert_eq!(audited(&env, "card.blocked", &subject, &alice()).await, 2);
    assert_eq!(audited(&env, "card.unblocked", &subject, &bob()).await, 2);
    let history = cards.show(&one.to_string()).await.unwrap().history;
    let lines: Vec<(CardAction, Option<&str>, &str)> = history
        .iter()
        .map(|h| (h.action, h.reason.as_deref(), h.actor.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (CardAction::Blocked, Some("suspected_fraud"), "cli:alice"),
            (CardAction::Unblocked, Some("cleared"), "cli:bob"),
            (CardAction::Activated, None, "cli:test"),
            (CardAction::Blocked, Some("chargeback"), "cli:alice"),
            (CardAction::Unblocked, Some("cleared"), "cli:bob"),
            (CardAction::Voided, None, "cli:test"),
        ]
    );
    assert_books_hold(&env).await;
    assert_trail_intact(&env).await;
}
both_backends!(block_unblock, a_blocked_card_is_frozen_until_unblocked);

// ---------------------------------------------------------------------------------------------
// Races: a block against a sale or a void, each on a fresh card.

const ROUNDS: u64 = 20;

/// A sale and a block of the same card, sent at the same moment, twenty times over: the block
/// always lands (an issued and an active card may both be blocked), and the sale either went
/// first (the card is active, blocked, and carries its value) or was refused `card.blocked`
/// (the card is issued, blocked, with no activation and nothing written for the sale). The books
/// hold at the end.
async fn a_sale_racing_a_block_has_one_outcome<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, ROUNDS).await;
    let mut sold_first = 0;
    for n in 0..ROUNDS {
        let serial = card(&batch, n);
        let txn = format!("race-{n}");
        let (app_a, app_b) = (env.app.clone(), env.app.clone());
        let form = sell(serial, &txn);
        let sale =
            tokio::spawn(async move { app_a.services().cards().activate(&form, &actor()).await });
        let block = tokio::spawn(async move {
            app_b
                .services()
                .cards()
                .block(&serial.to_string(), "fraud", &alice())
                .await
        });
        let (sale, block) = (sale.await.unwrap(), block.await.unwrap());
        block.expect("a block lands on an issued or an active card");
        assert!(blocked(&env, serial).await);
        let activations = env
            .count(&format!(
                "SELECT count(*) FROM card_activation WHERE serial = {}",
                serial.sequence()
            ))
            .await;
        let requests = env
            .count(&format!(
                "SELECT count(*) FROM pos_request WHERE pos_txn = '{txn}'"
            ))
            .await;
        match sale {
            Ok(answer) => {
                sold_first += 1;
                assert_eq!(outcomes(&answer), [(serial, "activated")]);
                assert_eq!(state(&env, serial).await, CardState::Active);
                assert_eq!(card_balance(&env, serial).await, 2_500);
                assert_eq!((activations, requests), (1, 1));
            }
            Err(e) => {
                assert_eq!(e.code(), "card.blocked", "{e}");
                assert_eq!(state(&env, serial).await, CardState::Issued);
                assert_eq!(card_balance(&env, serial).await, 0);
                assert_eq!((activations, requests), (0, 0));
            }
        }
    }
    eprintln!("the sale went first in {sold_first} of {ROUNDS} rounds");
    assert_eq!(
        env.count("SELECT count(*) FROM audit_record WHERE action = 'card.blocked'")
            .await,
        i64::try_from(ROUNDS).unwrap()
    );
    assert_books_hold(&env).await;
    assert_trail_intact(&env).await;
}
both_backends!(sale_racing_block, a_sale_racing_a_block_has_one_outcome);

/// A void and a block of the same sold card, sent at the same moment, twenty times over:
/// exactly one of them succeeds. Either the card is voided (nothing on it, not blocked) and the
/// block refused `card.voided`, or it is blocked (still active, still carrying its value) and
/// the void refused `card.blocked`. The books hold at the end.
async fn a_void_racing_a_block_has_one_outcome<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, ROUNDS).await;
    activate(
        &env,
        &sell_range(card(&batch, 0), card(&batch, ROUNDS - 1), "box"),
    )
    .await
    .unwrap();
    let mut voided_first = 0;
    for n in 0..ROUNDS {
        let serial = card(&batch, n);
        let (app_a, app_b) = (env.app.clone(), env.app.clone());
        let form = void_form(serial, &format!("void-{n}"));
        let voiding = async move { app_a.services().cards().void(&form, &actor()).await };
        let blocking = async move {
            app_b
                .services()
                .cards()
                .block(&serial.to_string(), "fraud", &alice())
                .await
        };
        // Alternate which is sent first.
        let (void, block) = if n % 2 == 0 {
            let v = tokio::spawn(voiding);
            let b = tokio::spawn(blocking);
            (v.await.unwrap(), b.await.unwrap())
        } else {
            let b = tokio::spawn(blocking);
            let v = tokio::spawn(voiding);
            (v.await.unwrap(), b.await.unwrap())
        };
        match (void, block) {
            (Ok(answer), Err(refused)) => {
                voided_first += 1;
                assert_eq!(outcomes(&answer), [(serial, "voided")]);
                assert_eq!(refused.code(), "card.voided", "{refused}");
                assert_eq!(state(&env, serial).await, CardState::Voided);
                assert!(!blocked(&env, serial).await);
                assert_eq!(card_balance(&env, serial).await, 0);
            }
            (Err(refused), Ok(_)) => {
                assert_eq!(refused.code(), "card.blocked", "{refused}");
                assert_eq!(state(&env, serial).await, CardState::Active);
                assert!(blocked(&env, serial).await);
                assert_eq!(card_balance(&env, serial).await, 2_500);
            }
            other => panic!("round {n}: not exactly one of the void and the block: {other:?}"),
        }
    }
    eprintln!("the void went first in {voided_first} of {ROUNDS} rounds");
    let voids = env
        .count("SELECT count(*) FROM transfer WHERE kind = 'void'")
        .await;
    assert_eq!(voids, voided_first);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_record WHERE action = 'card.blocked'")
            .await,
        i64::try_from(ROUNDS).unwrap() - voided_first
    );
    assert_books_hold(&env).await;
    assert_trail_intact(&env).await;
}
both_backends!(void_racing_block, a_void_racing_a_block_has_one_outcome);

// ---------------------------------------------------------------------------------------------
// Exposure.

/// A card whose code was tried before its sale is refused for a live sale, and for a sale at
/// the till after the attempt, with a message telling the store to take it off the shelf; an
/// offline sale from before the attempt is accepted and flagged `exposed_before_sale`. Clearing
/// the exposure is audited, after which a live sale goes through. Exposing twice and clearing a
/// card that is not exposed are refused with their codes.
async fn an_exposed_card_is_taken_off_the_shelf<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 20).await;
    let cards = env.app.services().cards();
    let (one, two) = (card(&batch, 0), card(&batch, 1));
    let exposed_at = epoch();
    cards
        .expose(&one.to_string(), "code_tried", &alice())
        .await
        .unwrap();
    assert_eq!(
        audited(&env, "card.exposed", &format!("card:{one}"), &alice()).await,
        1
    );
    env.clock.advance(TimeDelta::hours(1));

    let before = rows(&env).await;
    let live = activate(&env, &sell(one, "sale-1")).await.unwrap_err();
    assert_eq!(live.code(), "card.exposed");
    assert!(live.to_string().contains("take it off the shelf"), "{live}");
    let after_attempt = offline(sell(one, "sale-2"), exposed_at + TimeDelta::minutes(1));
    assert_eq!(
        code_of(activate(&env, &after_attempt).await),
        "card.exposed"
    );
    assert_eq!(
        code_of(cards.expose(&one.to_string(), "code_tried", &alice()).await),
        "card.already_exposed"
    );
    assert_eq!(
        code_of(
            cards
                .clear_exposure(&two.to_string(), "checked", &bob())
                .await
        ),
        "card.not_exposed"
    );
    assert_eq!(rows(&env).await, before);

    // Sold offline before anyone tried the code: accepted, and flagged for a person.
    let earlier = offline(sell(one, "sale-3"), exposed_at - TimeDelta::minutes(30));
    let accepted = activate(&env, &earlier).await.unwrap();
    assert_eq!(outcomes(&accepted), [(one, "activated")]);
    assert_eq!(
        accepted.cards[0].review.as_deref(),
        Some("exposed_before_sale")
    );
    assert_eq!(
        env.count("SELECT count(*) FROM card_activation WHERE review = 'exposed_before_sale'")
            .await,
        1
    );
    let view = cards.show(&one.to_string()).await.unwrap();
    assert_eq!(view.exposed_at, Some(exposed_at));
    let sale = view.activation.unwrap();
    assert_eq!(sale.review.as_deref(), Some("exposed_before_sale"));
    assert_eq!(sale.activated_at, exposed_at - TimeDelta::minutes(30));

    // Looked into and cleared: audited, and the card sells live again.
    cards
        .expose(&two.to_string(), "code_tried", &alice())
        .await
        .unwrap();
    assert_eq!(
        code_of(activate(&env, &sell(two, "sale-4")).await),
        "card.exposed"
    );
    cards
        .clear_exposure(&two.to_string(), "looked_into", &bob())
        .await
        .unwrap();
    assert_eq!(
        audited(
            &env,
            "card.exposure_cleared",
            &format!("card:{two}"),
            &bob()
        )
        .await,
        1
    );
    let cleared = activate(&env, &sell(two, "sale-4")).await.unwrap();
    assert_eq!(outcomes(&cleared), [(two, "activated")]);
    assert_eq!(cleared.cards[0].review, None);
    let history = cards.show(&two.to_string()).await.unwrap().history;
    let lines: Vec<(CardAction, Option<&str>, &str)> = history
        .iter()
        .map(|h| (h.action, h.reason.as_deref(), h.actor.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (CardAction::Exposed, Some("code_tried"), "cli:alice"),
            (CardAction::ExposureCleared, Some("looked_into"), "cli:bob"),
            (CardAction::Activated, None, "cli:test"),
        ]
    );

    // A live box with an exposed card in it sells the others.
    let middle = card(&batch, 3);
    cards
        .expose(&middle.to_string(), "code_tried", &alice())
        .await
        .unwrap();
    let around = activate(
        &env,
        &sell_range(card(&batch, 2), card(&batch, 4), "sale-box"),
    )
    .await
    .unwrap();
    assert_eq!(
        outcomes(&around),
        [
            (card(&batch, 2), "activated"),
            (middle, "card.exposed"),
            (card(&batch, 4), "activated"),
        ]
    );
    assert!(
        around.cards[1]
            .message
            .as_deref()
            .unwrap()
            .contains("off the shelf")
    );
    assert_eq!(state(&env, middle).await, CardState::Issued);
    assert_books_hold(&env).await;
}
both_backends!(exposure, an_exposed_card_is_taken_off_the_shelf);

// ---------------------------------------------------------------------------------------------
// Funds-expiry.

/// A card's funds expire at the later of its printed expiry and its sale plus its store's legal
/// minimum: in Texas (federal law, five years) five years after the sale (the till's time for an
/// offline sale) unless the printed date is later; in New York nine years; never in California;
/// and at the printed date where no rule applies (Alberta). The jurisdiction is recorded on the
/// activation.
async fn funds_expire_by_the_stores_law<S: Store>(env: TestApp<S>) {
    let short = shelf(&env, 10).await;
    let long = shelf_of(
        &env,
        BatchForm {
            expires_in_days: Some(3_650),
            ..usd_form(5)
        },
    )
    .await;
    let canadian = shelf_of(
        &env,
        BatchForm {
            currency: "CAD".into(),
            region: "CA".into(),
            ..usd_form(5)
        },
    )
    .await;
    add_store(&env, "Acme", "CA1", "US-CA").await;
    add_store(&env, "Acme", "NY1", "US-NY").await;
    add_store(&env, "Acme", "AB1", "CA-AB").await;
    let printed = short.expires_at.unwrap();
    assert_eq!(printed, epoch() + TimeDelta::days(365));
    let years = |at: DateTime<Utc>, n: u32| at.checked_add_months(Months::new(12 * n)).unwrap();
    let at = |store: &str, form: ActivateForm| ActivateForm {
        pos: PosForm {
            store: store.into(),
            ..form.pos
        },
        ..form
    };

    let sold_at = epoch() - TimeDelta::days(2);
    let cases: Vec<(&str, ActivateForm, Option<DateTime<Utc>>, &str)> = vec![
        (
            "a live sale in Texas",
            sell(card(&short, 0), "t-1"),
            Some(years(epoch(), 5)),
            "US-TX",
        ),
        (
            "an offline sale in Texas",
            offline(sell(card(&short, 1), "t-2"), sold_at),
            Some(years(sold_at, 5)),
            "US-TX",
        ),
        (
            "a sale in Texas of a card printed to last ten years",
            sell(card(&long, 0), "t-3"),
            long.expires_at,
            "US-TX",
        ),
        (
            "a sale in New York",
            at("NY1", sell(card(&short, 2), "t-4")),
            Some(years(epoch(), 9)),
            "US-NY",
        ),
        (
            "a sale in California",
            at("CA1", sell(card(&short, 3), "t-5")),
            None,
            "US-CA",
        ),
        (
            "a sale in Alberta",
            at("AB1", sell(card(&canadian, 0), "t-6")),
            canadian.expires_at,
            "CA-AB",
        ),
    ];
    for (what, form, expected, jurisdiction) in cases {
        let answer = activate(&env, &form).await.unwrap();
        assert_eq!(answer.cards[0].outcome, "activated", "{what}");
        assert_eq!(answer.cards[0].funds_expire_at, expected, "{what}");
        let view = env.app.services().cards().show(&form.serial).await.unwrap();
        let sale = view.activation.unwrap();
        assert_eq!(sale.funds_expire_at, expected, "{what}");
        assert_eq!(sale.jurisdiction, jurisdiction, "{what}");
        // The card's own row carries it too, for a redemption's guarded update.
        let on_the_card = env
            .count(&format!(
                "SELECT COALESCE(funds_expire_ms, -1) FROM card WHERE serial = {}",
                view.serial.sequence()
            ))
            .await;
        assert_eq!(
            on_the_card,
            expected.map_or(-1, |t| t.timestamp_millis()),
            "{what}"
        );
    }
    assert_ne!(years(epoch(), 5), printed);
    assert!(long.expires_at.unwrap() > years(epoch(), 5));
    assert_books_hold(&env).await;
}
both_backends!(funds_expiry, funds_expire_by_the_stores_law);

// ---------------------------------------------------------------------------------------------
// Accounting, and `ledger check` of every card against its entries.

/// A box of three 25.00 cards at 2.5 % commission is one transfer: each card credited 25.00,
/// commission 0.63 per card (0.625 rounded half up, per card: 1.89, not 1.88 for the box), the
/// retailer's receivable the rest. A 10.20 card costs 0.26 (0.255 rounded half up).
async fn an_activation_credits_cards_and_debits_the_retailer<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 10).await;
    let variable = variable_shelf(&env, 5).await;
    let (a, b, c) = (card(&batch, 0), card(&batch, 1), card(&batch, 2));
    let answer = activate(&env, &sell_range(a, c, "box")).await.unwrap();
    assert_eq!(
        legs(&env, answer.transfer_id.unwrap()).await,
        [
            (receivable(&env).await, -(7_500 - 189)),
            ("commission".to_string(), -189),
            (format!("card:{a}"), 2_500),
            (format!("card:{b}"), 2_500),
            (format!("card:{c}"), 2_500),
        ]
    );
    let chosen = card(&variable, 0);
    let answer = activate(&env, &sell_at(chosen, "10.20", "one"))
        .await
        .unwrap();
    assert_eq!(
        legs(&env, answer.transfer_id.unwrap()).await,
        [
            (receivable(&env).await, -994),
            ("commission".to_string(), -26),
            (format!("card:{chosen}"), 1_020),
        ]
    );
    assert_eq!(
        env.count(&format!(
            "SELECT commission_minor FROM card_activation WHERE serial = {}",
            chosen.sequence()
        ))
        .await,
        26
    );
    let report = env.app.services().ledger().check().await.unwrap();
    assert_eq!(report.discrepancy, None, "{report:?}");
    let balance = |account: &str| {
        report
            .system_balances
            .iter()
            .find(|b| b.ledger_account == account)
            .map(|b| b.balance_minor)
    };
    assert_eq!(balance(&receivable(&env).await), Some(-(7_311 + 994)));
    assert_eq!(balance("commission"), Some(-(189 + 26)));
}
both_backends!(
    activation_accounting,
    an_activation_credits_cards_and_debits_the_retailer
);

/// `ledger check` finds a card whose state no longer agrees with its entries: one set back to
/// issued, one marked voided with no void, one whose credit was shifted onto its neighbour
/// inside the same (still balanced) transfer, and an issued card marked active with no sale.
async fn check_finds_a_card_altered_behind_its_back<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 10).await;
    let (a, b, c) = (card(&batch, 0), card(&batch, 1), card(&batch, 2));
    activate(&env, &sell_range(a, c, "box")).await.unwrap();
    assert_books_hold(&env).await;

    let set_state = |serial: Serial, state: CardState| {
        format!(
            "UPDATE card SET state = {} WHERE serial = {}",
            state.code(),
            serial.sequence()
        )
    };
    env.exec(&set_state(a, CardState::Issued)).await;
    assert_eq!(
        discrepancy(&env).await,
        Discrepancy::CardDrift {
            serial: a,
            state: CardState::Issued,
            summed_minor: 2_500
        }
    );
    env.exec(&set_state(a, CardState::Voided)).await;
    assert_eq!(
        discrepancy(&env).await,
        Discrepancy::CardDrift {
            serial: a,
            state: CardState::Voided,
            summed_minor: 2_500
        }
    );
    env.exec(&set_state(a, CardState::Active)).await;
    assert_books_hold(&env).await;

    let shift = |serial: Serial, by: i64| {
        format!(
            "UPDATE entry SET amount_minor = amount_minor + {by} WHERE serial = {}",
            serial.sequence()
        )
    };
    assert_eq!(env.exec(&shift(b, 100)).await, 1);
    assert_eq!(env.exec(&shift(c, -100)).await, 1);
    assert_eq!(
        discrepancy(&env).await,
        Discrepancy::CardDrift {
            serial: b,
            state: CardState::Active,
            summed_minor: 2_600
        }
    );
    env.exec(&shift(b, -100)).await;
    env.exec(&shift(c, 100)).await;
    assert_books_hold(&env).await;

    let unsold = card(&batch, 5);
    env.exec(&set_state(unsold, CardState::Active)).await;
    assert_eq!(
        discrepancy(&env).await,
        Discrepancy::CardWithoutActivation { serial: unsold }
    );
}
both_backends!(check_card_drift, check_finds_a_card_altered_behind_its_back);

// ---------------------------------------------------------------------------------------------
// Stores, and the support view.

/// A store is added once per retailer and code, with a real ISO 3166-2 jurisdiction, and its
/// addition is audited; stores are listed by retailer.
async fn stores_are_added_once_with_their_jurisdiction<S: Store>(env: TestApp<S>) {
    shelf(&env, 1).await;
    let cards = env.app.services().cards();
    let form = |retailer: &str, store: &str, jurisdiction: &str| StoreForm {
        retailer: retailer.into(),
        store: store.into(),
        jurisdiction: jurisdiction.into(),
    };
    let before = rows(&env).await;
    for (what, bad, code) in [
        (
            "a store twice",
            form("Acme", STORE, "US-CA"),
            "pos.store_exists",
        ),
        (
            "an unknown retailer",
            form("Gamma", "G1", "US-CA"),
            "store.unknown_retailer",
        ),
        (
            "no subdivision",
            form("Acme", "S2", "US"),
            "jurisdiction.malformed",
        ),
        (
            "an unknown state",
            form("Acme", "S2", "US-XX"),
            "jurisdiction.unknown_subdivision",
        ),
        (
            "an unknown country",
            form("Acme", "S2", "XX-CA"),
            "jurisdiction.unknown_country",
        ),
        ("a bad store id", form("Acme", "S 2", "US-CA"), "pos.bad_id"),
    ] {
        assert_eq!(
            code_of(cards.add_store(&bad, &actor()).await),
            code,
            "{what}"
        );
    }
    assert_eq!(rows(&env).await, before);
    let added = cards
        .add_store(&form("Acme", "S2", " us-ca "), &actor())
        .await
        .unwrap();
    assert_eq!(added.jurisdiction.to_string(), "US-CA");
    let page = tender::domain::PageRows::new(10).unwrap();
    let listed: Vec<(String, String)> = cards
        .stores(Some("Acme"), page)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.code.to_string(), s.jurisdiction.to_string()))
        .collect();
    assert_eq!(
        listed,
        [
            (STORE.to_string(), "US-TX".to_string()),
            ("S2".to_string(), "US-CA".to_string())
        ]
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_record WHERE action = 'store.added'")
            .await,
        2
    );
}
both_backends!(stores, stores_are_added_once_with_their_jurisdiction);

/// The code the printer file holds for `serial`, as printed and as its digits.
fn printed_code<S: Store>(env: &TestApp<S>, batch: &Batch, serial: Serial) -> (String, String) {
    let mut reader = csv::Reader::from_path(env.export_file(batch.id)).unwrap();
    for record in reader.records() {
        let record = record.unwrap();
        if Serial::parse(&record[0]).unwrap() == serial {
            let printed = record[1].to_string();
            let digits = tender::domain::Code::parse(&printed)
                .unwrap()
                .expose_secret()
                .to_string();
            return (printed, digits);
        }
    }
    panic!("{serial} is not in the printer file");
}

/// The support view shows a card's whole life (state, batch, retailer, the sale with its store,
/// terminal, transaction, value, commission and funds-expiry, the void, exposure and review,
/// and every change with its actor and reason) and never the card's code.
async fn the_support_view_shows_everything_but_the_code<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 10).await;
    let cards = env.app.services().cards();
    let (returned, flagged, shelved) = (card(&batch, 0), card(&batch, 1), card(&batch, 2));

    let sale = activate(&env, &sell(returned, "sale-1")).await.unwrap();
    cards
        .block(&returned.to_string(), "fraud_check", &alice())
        .await
        .unwrap();
    cards
        .unblock(&returned.to_string(), "cleared", &bob())
        .await
        .unwrap();
    let voided = void(&env, &void_form(returned, "void-1")).await.unwrap();
    let view = cards.show(&returned.to_string()).await.unwrap();
    assert_eq!(view.serial, returned);
    assert_eq!(view.state, CardState::Voided);
    assert_eq!((view.blocked.as_deref(), view.exposed_at), (None, None));
    assert_eq!(view.batch.id, batch.id);
    assert_eq!(view.retailer.name.to_string(), "Acme");
    let activation = view.activation.as_ref().unwrap();
    assert_eq!(activation.store, STORE);
    assert_eq!(activation.jurisdiction, "US-TX");
    assert_eq!(activation.terminal, TERMINAL);
    assert_eq!(activation.pos_txn, "sale-1");
    assert_eq!(activation.activated_at, epoch());
    assert_eq!(activation.value.minor(), 2_500);
    assert_eq!(activation.commission.minor(), 63);
    assert_eq!(activation.funds_expire_at, sale.cards[0].funds_expire_at);
    assert!(activation.funds_expire_at.is_some());
    assert_eq!(activation.transfer_id, sale.transfer_id.unwrap());
    assert_eq!(activation.review, None);
    assert_eq!(activation.void_pos_txn.as_deref(), Some("void-1"));
    assert_eq!(activation.void_transfer_id, voided.transfer_id);
    let lines: Vec<(CardAction, &str, Option<i64>)> = view
        .history
        .iter()
        .map(|h| (h.action, h.actor.as_str(), h.request_id))
        .collect();
    assert_eq!(
        lines,
        [
            (CardAction::Activated, "cli:test", sale.request_id),
            (CardAction::Blocked, "cli:alice", None),
            (CardAction::Unblocked, "cli:bob", None),
            (CardAction::Voided, "cli:test", voided.request_id),
        ]
    );

    cards
        .expose(&flagged.to_string(), "code_tried", &alice())
        .await
        .unwrap();
    env.clock.advance(TimeDelta::minutes(10));
    activate(
        &env,
        &offline(sell(flagged, "sale-2"), epoch() - TimeDelta::hours(1)),
    )
    .await
    .unwrap();
    cards
        .block(&flagged.to_string(), "fraud_check", &alice())
        .await
        .unwrap();
    let view = cards.show(&flagged.to_string()).await.unwrap();
    assert_eq!(view.state, CardState::Active);
    assert_eq!(view.blocked.as_deref(), Some("fraud_check"));
    assert_eq!(view.exposed_at, Some(epoch()));
    let activation = view.activation.as_ref().unwrap();
    assert_eq!(activation.review.as_deref(), Some("exposed_before_sale"));
    assert_eq!(activation.activated_at, epoch() - TimeDelta::hours(1));
    assert_eq!(
        (
            activation.void_pos_txn.as_ref(),
            activation.void_transfer_id
        ),
        (None, None)
    );

    let view = cards.show(&shelved.to_string()).await.unwrap();
    assert_eq!(view.state, CardState::Issued);
    assert!(view.activation.is_none() && view.history.is_empty());

    for serial in [returned, flagged, shelved] {
        let view = cards.show(&serial.to_string()).await.unwrap();
        let json = serde_json::to_string(&view).unwrap();
        assert!(json.contains(&serial.to_string()), "{json}");
        let (printed, digits) = printed_code(&env, &batch, serial);
        assert!(
            !json.contains(&printed),
            "the view of {serial} shows its code"
        );
        assert!(
            !json.contains(&digits),
            "the view of {serial} shows its code"
        );
        let debug = format!("{view:?}");
        assert!(!debug.contains(&printed) && !debug.contains(&digits));
    }
    assert_eq!(
        code_of(cards.show(&misprinted(shelved)).await),
        "serial.check_digit"
    );
    let beyond = Serial::from_sequence(card(&batch, 9).sequence() + 1).unwrap();
    assert_eq!(
        code_of(cards.show(&beyond.to_string()).await),
        "card.not_found"
    );
    assert_eq!(
        code_of(cards.block(&beyond.to_string(), "fraud", &alice()).await),
        "card.not_found"
    );
}
both_backends!(support_view, the_support_view_shows_everything_but_the_code);

/// Eight tills sell overlapping boxes of the same twenty cards at once, each under its own POS
/// transaction: every card is sold exactly once (one activation row, one credit), each box
/// answers card by card, a card sold by another box is `card.already_active`. Then eight tills
/// void the same card at once: one void, seven `card.voided`; and one till's void arrives eight
/// times at once: one void, seven replays.
async fn overlapping_sales_and_voids_move_each_card_once<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 20).await;
    let boxes = (0..8).map(|i| {
        let app = env.app.clone();
        let form = sell_range(
            card(&batch, 2 * i),
            card(&batch, 2 * i + 5),
            &format!("box-{i}"),
        );
        tokio::spawn(async move { app.services().cards().activate(&form, &actor()).await })
    });
    let answers: Vec<PosResult> = futures::future::join_all(boxes)
        .await
        .into_iter()
        .map(|a| a.unwrap().unwrap())
        .collect();
    let mut sold: Vec<Serial> = Vec::new();
    for answer in &answers {
        assert_eq!(answer.cards.len(), 6);
        for result in &answer.cards {
            match result.outcome.as_str() {
                "activated" => sold.push(result.serial),
                "card.already_active" => {}
                other => panic!("{other}"),
            }
        }
    }
    sold.sort();
    let every: Vec<Serial> = (0..20).map(|n| card(&batch, n)).collect();
    assert_eq!(sold, every);
    assert_eq!(env.count("SELECT count(*) FROM card_activation").await, 20);
    for serial in &every {
        assert_eq!(card_balance(&env, *serial).await, 2_500);
    }

    let one = card(&batch, 7);
    let voids = (0..8).map(|i| {
        let app = env.app.clone();
        let form = void_form(one, &format!("void-{i}"));
        tokio::spawn(async move { app.services().cards().void(&form, &actor()).await })
    });
    let mut voided = 0;
    for outcome in futures::future::join_all(voids).await {
        match outcome.unwrap() {
            Ok(answer) => {
                assert_eq!(outcomes(&answer), [(one, "voided")]);
                voided += 1;
            }
            Err(e) => assert_eq!(e.code(), "card.voided", "{e}"),
        }
    }
    assert_eq!(voided, 1);

    // Eight copies of one void (one till retrying): one void, seven replays of its answer.
    let other = card(&batch, 8);
    let first = one_answer_to_copies(8, || {
        let app = env.app.clone();
        let form = void_form(other, "void-again");
        async move { app.services().cards().void(&form, &actor()).await }
    })
    .await;
    assert_eq!(outcomes(&first), [(other, "voided")]);
    assert_eq!(
        env.count("SELECT count(*) FROM transfer WHERE kind = 'void'")
            .await,
        2
    );
    assert_eq!(card_balance(&env, one).await, 0);
    assert_eq!(card_balance(&env, other).await, 0);
    assert_books_hold(&env).await;
    assert_trail_intact(&env).await;
}
both_backends!(
    overlapping_sales,
    overlapping_sales_and_voids_move_each_card_once
);
