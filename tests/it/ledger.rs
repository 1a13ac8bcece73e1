//! The ledger through its services, on both backends: balances that concurrent callers can never
//! overdraw, orders that can never be refunded beyond what they spent, requests that are
//! idempotent by their own ids, refusals that write nothing, adjustments under four eyes,
//! history by cursor, erasure that keeps the books whole, and `ledger check`, which finds every
//! kind of tampering it names.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use tender::domain::{Actor, PageRows, TransferId, TransferKind};
use tender::error::Classify;
use tender::service::ledger::{
    AccountForm, AdjustForm, Adjusted, LedgerError, Posted, RefundForm, SpendForm,
};
use tender::store::Store;
use tender::store::ledger::{Discrepancy, SystemBalance};

use crate::helpers::{TestApp, actor, both_backends, epoch, open_account};

fn alice() -> Actor {
    Actor::cli("alice", None).unwrap()
}

fn bob() -> Actor {
    Actor::cli("bob", None).unwrap()
}

/// Opens an account in `currency` (region US) and returns its id as callers give it.
async fn open<S: Store>(env: &TestApp<S>, currency: &str) -> String {
    open_account(env, "US", currency).await
}

/// Credits `amount` to an account as a goodwill adjustment, approved by bob when it is above
/// the threshold.
async fn fund<S: Store>(env: &TestApp<S>, account: &str, amount: &str, currency: &str) -> Posted {
    let ledger = env.app.services().ledger();
    let form = AdjustForm {
        account: account.into(),
        amount: amount.into(),
        currency: currency.into(),
        reason: "goodwill".into(),
    };
    match ledger.adjust(&form, &alice()).await.unwrap() {
        Adjusted::Posted { posted, .. } => posted,
        Adjusted::Pending { adjustment_id } => ledger.approve(adjustment_id, &bob()).await.unwrap(),
    }
}

fn spend_form(account: &str, amount: &str, order: &str) -> SpendForm {
    SpendForm {
        account: account.into(),
        amount: amount.into(),
        currency: "USD".into(),
        order: order.into(),
        service: "app-store".into(),
        effective_at: None,
    }
}

fn refund_form(account: &str, order: &str, refund: &str, amount: &str) -> RefundForm {
    RefundForm {
        account: account.into(),
        order: order.into(),
        refund: refund.into(),
        amount: amount.into(),
        currency: "USD".into(),
        effective_at: None,
    }
}

fn adjust_form(account: &str, amount: &str) -> AdjustForm {
    AdjustForm {
        account: account.into(),
        amount: amount.into(),
        currency: "USD".into(),
        reason: "goodwill".into(),
    }
}

/// The rows of every table a ledger request can write, counted behind the services' back.
async fn rows<S: Store>(env: &TestApp<S>) -> BTreeMap<&'static str, i64> {
    let mut counts = BTreeMap::new();
    for table in [
        "transfer",
        "entry",
        "spend_order",
        "refund",
        "adjustment",
        "audit_record",
    ] {
        let n = env.count(&format!("SELECT count(*) FROM {table}")).await;
        counts.insert(table, n);
    }
    counts
}

/// An account's balance in minor units.
async fn balance<S: Store>(env: &TestApp<S>, account: &str) -> i64 {
    let account = env.app.services().ledger().account(account).await.unwrap();
    account.balance.minor()
}

/// Runs `ledger check` and expects the books to hold.
async fn assert_books_hold<S: Store>(env: &TestApp<S>) -> Vec<SystemBalance> {
    let report = env.app.services().ledger().check().await.unwrap();
    assert_eq!(report.discrepancy, None, "{report:?}");
    report.system_balances
}

/// The first discrepancy `ledger check` reports.
async fn discrepancy<S: Store>(env: &TestApp<S>) -> Discrepancy {
    let report = env.app.services().ledger().check().await.unwrap();
    report
        .discrepancy
        .expect("ledger check finds the tampering")
}

fn system(account: &str, currency: &str, balance_minor: i64) -> SystemBalance {
    SystemBalance {
        ledger_account: account.into(),
        currency: currency.into(),
        balance_minor,
    }
}

/// The code of a refusal.
fn code_of<T: std::fmt::Debug>(result: Result<T, LedgerError>) -> &'static str {
    result.expect_err("the request is refused").code()
}

// ---------------------------------------------------------------------------------------------
// Concurrency: a balance and an order's refundable remainder are guarded under any interleaving.

/// 50 spends race for one account whose balance covers exactly 10 of them: exactly 10 succeed,
/// every other is refused as insufficient funds, the balance ends at zero, exactly 10 spend
/// transfers exist and the books hold.
async fn concurrent_spends_never_overdraw_an_account<S: Store>(env: TestApp<S>) {
    let account = open(&env, "USD").await;
    fund(&env, &account, "50.00", "USD").await;
    let spends = (0..50).map(|i| {
        let app = env.app.clone();
        let form = spend_form(&account, "5.00", &format!("order-{i}"));
        tokio::spawn(async move { app.services().ledger().spend(&form, &actor()).await })
    });
    let outcomes = futures::future::join_all(spends).await;
    let mut succeeded = 0;
    for outcome in outcomes {
        match outcome.unwrap() {
            Ok(posted) => {
                assert!(!posted.replayed);
                succeeded += 1;
            }
            Err(e) => assert_eq!(e.code(), "ledger.insufficient_funds", "{e}"),
        }
    }
    assert_eq!(succeeded, 10);
    assert_eq!(balance(&env, &account).await, 0);
    assert_eq!(
        env.count("SELECT count(*) FROM transfer WHERE kind = 'spend'")
            .await,
        10
    );
    assert_eq!(env.count("SELECT count(*) FROM spend_order").await, 10);
    let system = assert_books_hold(&env).await;
    assert_eq!(
        system,
        [
            system_balance("adjustment", -5_000),
            system_balance("spent:app-store", 5_000)
        ]
    );
}
both_backends!(
    concurrent_spends,
    concurrent_spends_never_overdraw_an_account
);

fn system_balance(account: &str, minor: i64) -> SystemBalance {
    system(account, "USD", minor)
}

/// Ten partial refunds of one 10.00 order race, 3.00 each under its own refund id: only the
/// three that fit succeed, the rest are refused as exceeding the order, and the balance, the
/// order's remainder and `ledger check` agree.
async fn concurrent_refunds_never_exceed_their_order<S: Store>(env: TestApp<S>) {
    let account = open(&env, "USD").await;
    fund(&env, &account, "10.00", "USD").await;
    let ledger = env.app.services().ledger();
    ledger
        .spend(&spend_form(&account, "10.00", "order-1"), &actor())
        .await
        .unwrap();
    let refunds = (0..10).map(|i| {
        let app = env.app.clone();
        let form = refund_form(&account, "order-1", &format!("refund-{i}"), "3.00");
        tokio::spawn(async move { app.services().ledger().refund(&form, &actor()).await })
    });
    let mut succeeded = 0;
    for outcome in futures::future::join_all(refunds).await {
        match outcome.unwrap() {
            Ok(posted) => {
                assert!(!posted.replayed);
                succeeded += 1;
            }
            Err(e) => assert_eq!(e.code(), "ledger.refund_exceeds_order", "{e}"),
        }
    }
    assert_eq!(succeeded, 3);
    assert_eq!(balance(&env, &account).await, 900);
    assert_eq!(
        env.count("SELECT refundable_minor FROM spend_order").await,
        100
    );
    assert_eq!(env.count("SELECT count(*) FROM refund").await, 3);
    assert_eq!(
        env.count("SELECT count(*) FROM transfer WHERE kind = 'refund'")
            .await,
        3
    );
    let system = assert_books_hold(&env).await;
    assert_eq!(
        system,
        [
            system_balance("adjustment", -1_000),
            system_balance("spent:app-store", 100)
        ]
    );
}
both_backends!(
    concurrent_refunds,
    concurrent_refunds_never_exceed_their_order
);

/// Ten copies of one spend (a client retrying before the first answer came) race for an account
/// that can pay for it once: every copy is answered with the one transfer, exactly one of them
/// as the first, and the account pays once.
async fn concurrent_copies_of_one_spend_pay_once<S: Store>(env: TestApp<S>) {
    let account = open(&env, "USD").await;
    fund(&env, &account, "7.00", "USD").await;
    let form = spend_form(&account, "7.00", "order-1");
    let copies = (0..10).map(|_| {
        let app = env.app.clone();
        let form = form.clone();
        tokio::spawn(async move { app.services().ledger().spend(&form, &actor()).await })
    });
    let mut answers = Vec::new();
    for outcome in futures::future::join_all(copies).await {
        answers.push(
            outcome
                .unwrap()
                .expect("every copy is answered as the first"),
        );
    }
    assert_eq!(answers.iter().filter(|p| !p.replayed).count(), 1);
    assert!(
        answers
            .iter()
            .all(|p| p.transfer_id == answers[0].transfer_id)
    );
    assert!(answers.iter().all(|p| p.balance_after.minor() == 0));
    assert_eq!(balance(&env, &account).await, 0);
    assert_eq!(
        env.count("SELECT count(*) FROM transfer WHERE kind = 'spend'")
            .await,
        1
    );
    assert_books_hold(&env).await;
}
both_backends!(
    concurrent_spend_copies,
    concurrent_copies_of_one_spend_pay_once
);

/// Ten copies of one refund of a whole order race: every copy is answered with the one
/// transfer, exactly one of them as the first (none is told the order has nothing left), and the
/// order is refunded once.
async fn concurrent_copies_of_one_refund_refund_once<S: Store>(env: TestApp<S>) {
    let account = open(&env, "USD").await;
    fund(&env, &account, "10.00", "USD").await;
    env.app
        .services()
        .ledger()
        .spend(&spend_form(&account, "10.00", "order-1"), &actor())
        .await
        .unwrap();
    let form = refund_form(&account, "order-1", "refund-1", "10.00");
    let copies = (0..10).map(|_| {
        let app = env.app.clone();
        let form = form.clone();
        tokio::spawn(async move { app.services().ledger().refund(&form, &actor()).await })
    });
    let mut answers = Vec::new();
    for outcome in futures::future::join_all(copies).await {
        answers.push(
            outcome
                .unwrap()
                .expect("every copy is answered as the first"),
        );
    }
    assert_eq!(answers.iter().filter(|p| !p.replayed).count(), 1);
    assert!(
        answers
            .iter()
            .all(|p| p.transfer_id == answers[0].transfer_id)
    );
    assert_eq!(balance(&env, &account).await, 1_000);
    assert_eq!(env.count("SELECT count(*) FROM refund").await, 1);
    assert_books_hold(&env).await;
}
both_backends!(
    concurrent_refund_copies,
    concurrent_copies_of_one_refund_refund_once
);

/// Two people approve one pending adjustment at the same moment, for a credit and for a debit
/// the balance covers once: it posts once, and the other approver is told it is no longer
/// pending.
async fn concurrent_approvals_post_an_adjustment_once<S: Store>(env: TestApp<S>) {
    let account = open(&env, "USD").await;
    fund(&env, &account, "100.00", "USD").await;
    let ledger = env.app.services().ledger();
    for (amount, after) in [("150.00", 25_000), ("-150.00", 10_000)] {
        let Adjusted::Pending { adjustment_id } = ledger
            .adjust(&adjust_form(&account, amount), &alice())
            .await
            .unwrap()
        else {
            panic!("{amount} waits for approval");
        };
        let approvals = ["bob", "carol", "dave", "erin"].map(|name| {
            let app = env.app.clone();
            let approver = Actor::cli(name, None).unwrap();
            tokio::spawn(async move {
                app.services()
                    .ledger()
                    .approve(adjustment_id, &approver)
                    .await
            })
        });
        let mut posted = 0;
        for outcome in futures::future::join_all(approvals).await {
            match outcome.unwrap() {
                Ok(p) => {
                    assert_eq!(p.balance_after.minor(), after);
                    posted += 1;
                }
                Err(e) => assert_eq!(e.code(), "adjustment.not_pending", "{amount}: {e}"),
            }
        }
        assert_eq!(posted, 1, "{amount}");
        assert_eq!(balance(&env, &account).await, after);
    }
    assert_eq!(
        env.count("SELECT count(*) FROM transfer WHERE kind = 'adjustment'")
            .await,
        3
    );
    assert_books_hold(&env).await;
}
both_backends!(
    concurrent_approvals,
    concurrent_approvals_post_an_adjustment_once
);

/// What one worker of the bank test did that moved money.
#[derive(Default)]
struct Moved {
    /// Net minor units into each account (refunds in, spends out).
    net: BTreeMap<usize, i64>,
    spends: u32,
    refunds: u32,
    refusals: u32,
}

/// Money is conserved: eight accounts in two currencies, funded by adjustments, take many
/// concurrent random spends, replays and refunds (some of unknown orders, some too large). At the
/// end every balance is what the successful requests say, none is negative, customer balances and
/// system balances sum to zero in each currency, and the books hold.
async fn money_is_conserved_under_concurrent_random_traffic<S: Store>(env: TestApp<S>) {
    const WORKERS: u64 = 8;
    const OPS: u32 = 40;
    let currencies = ["USD", "USD", "USD", "USD", "EUR", "EUR", "EUR", "EUR"];
    let mut accounts = Vec::new();
    for currency in currencies {
        let account = open(&env, currency).await;
        fund(&env, &account, "100.00", currency).await;
        fund(&env, &account, "60.00", currency).await;
        accounts.push(account);
    }
    let accounts = Arc::new(accounts);
    // Orders that were spent, for refunds to pick from: (account index, order id, amount).
    let spent: Arc<Mutex<Vec<(usize, String, i64)>>> = Arc::default();
    let workers = (0..WORKERS).map(|w| {
        let app = env.app.clone();
        let accounts = Arc::clone(&accounts);
        let spent = Arc::clone(&spent);
        tokio::spawn(async move {
            let ledger = app.services().ledger();
            let mut rng = ChaCha8Rng::seed_from_u64(0x7e4d_e000 + w);
            let mut moved = Moved::default();
            let mut mine: Vec<SpendForm> = Vec::new();
            for i in 0..OPS {
                let roll = rng.next_u32() % 100;
                let outcome = if roll < 50 || (roll < 60 && mine.is_empty()) {
                    let a = (rng.next_u32() % 8) as usize;
                    let minor = i64::from(100 + rng.next_u32() % 2_900);
                    let form = SpendForm {
                        currency: currencies[a].into(),
                        ..spend_form(&accounts[a], &cents(minor), &format!("w{w}-o{i}"))
                    };
                    mine.push(form.clone());
                    match ledger.spend(&form, &actor()).await {
                        Ok(posted) => {
                            assert!(!posted.replayed, "a new order is not a replay");
                            spent.lock().unwrap().push((a, form.order.clone(), minor));
                            *moved.net.entry(a).or_default() -= minor;
                            moved.spends += 1;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                } else if roll < 60 {
                    // A retry of one of this worker's spends: a replay if it went through; a
                    // new attempt if it was refused.
                    let form = mine[(rng.next_u32() as usize) % mine.len()].clone();
                    let a = accounts.iter().position(|x| *x == form.account).unwrap();
                    let minor = minor_of(&form.amount);
                    let done_before = spent
                        .lock()
                        .unwrap()
                        .iter()
                        .any(|(_, order, _)| *order == form.order);
                    match ledger.spend(&form, &actor()).await {
                        Ok(posted) => {
                            assert_eq!(posted.replayed, done_before, "{}", form.order);
                            if !posted.replayed {
                                spent.lock().unwrap().push((a, form.order.clone(), minor));
                                *moved.net.entry(a).or_default() -= minor;
                                moved.spends += 1;
                            }
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                } else if roll < 95 {
                    let picked = {
                        let spent = spent.lock().unwrap();
                        (!spent.is_empty())
                            .then(|| spent[(rng.next_u32() as usize) % spent.len()].clone())
                    };
                    let (a, order, minor) = picked.unwrap_or((0, format!("w{w}-nothing-yet"), 100));
                    let amount = 1 + i64::from(rng.next_u32()) % minor;
                    let form = RefundForm {
                        currency: currencies[a].into(),
                        ..refund_form(&accounts[a], &order, &format!("w{w}-r{i}"), &cents(amount))
                    };
                    match ledger.refund(&form, &actor()).await {
                        Ok(posted) => {
                            assert!(!posted.replayed);
                            *moved.net.entry(a).or_default() += amount;
                            moved.refunds += 1;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                } else {
                    let a = (rng.next_u32() % 8) as usize;
                    let form = RefundForm {
                        currency: currencies[a].into(),
                        ..refund_form(&accounts[a], "no-such-order", &format!("w{w}-x{i}"), "1.00")
                    };
                    ledger.refund(&form, &actor()).await.map(|_| ())
                };
                if let Err(e) = outcome {
                    let expected = [
                        "ledger.insufficient_funds",
                        "ledger.refund_exceeds_order",
                        "ledger.unknown_order",
                    ];
                    assert!(expected.contains(&e.code()), "unexpected refusal: {e}");
                    moved.refusals += 1;
                }
            }
            moved
        })
    });
    let mut expected: Vec<i64> = vec![16_000; accounts.len()];
    let (mut spends, mut refunds, mut refusals) = (0, 0, 0);
    for moved in futures::future::join_all(workers).await {
        let moved = moved.unwrap();
        for (a, net) in moved.net {
            expected[a] += net;
        }
        spends += moved.spends;
        refunds += moved.refunds;
        refusals += moved.refusals;
    }
    assert!(
        spends > 20 && refunds > 10 && refusals > 0,
        "{spends} {refunds} {refusals}"
    );
    let mut customer: BTreeMap<&str, i64> = BTreeMap::new();
    for (a, account) in accounts.iter().enumerate() {
        let held = balance(&env, account).await;
        assert!(held >= 0, "account {account} is negative: {held}");
        assert_eq!(held, expected[a], "account {account}");
        *customer.entry(currencies[a]).or_default() += held;
    }
    let system = assert_books_hold(&env).await;
    for currency in ["EUR", "USD"] {
        let held_by_system: i64 = system
            .iter()
            .filter(|b| b.currency == currency)
            .map(|b| b.balance_minor)
            .sum();
        assert_eq!(customer[currency] + held_by_system, 0, "{currency}");
        assert_eq!(
            system_of(&system, "adjustment", currency),
            -4 * 16_000,
            "{currency}"
        );
    }
    assert_eq!(
        env.count("SELECT count(*) FROM transfer WHERE kind = 'spend'")
            .await,
        i64::from(spends)
    );
    assert_eq!(
        env.count("SELECT count(*) FROM transfer WHERE kind = 'refund'")
            .await,
        i64::from(refunds)
    );
}
both_backends!(
    money_is_conserved,
    money_is_conserved_under_concurrent_random_traffic
);

fn system_of(balances: &[SystemBalance], account: &str, currency: &str) -> i64 {
    balances
        .iter()
        .find(|b| b.ledger_account == account && b.currency == currency)
        .map_or(0, |b| b.balance_minor)
}

/// Minor units of a 2-decimal currency as text: 1234 is `12.34`.
fn cents(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

fn minor_of(text: &str) -> i64 {
    let (whole, fraction) = text.split_once('.').unwrap();
    whole.parse::<i64>().unwrap() * 100 + fraction.parse::<i64>().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Idempotency and refusals: a replay answers as the first request did; a refusal writes nothing.

/// A spend repeated under its order id with the same fields is a replay: the first transfer,
/// `replayed: true`, nothing written. With another amount or service it is an order conflict,
/// and nothing is written either.
async fn a_repeated_order_is_a_replay_or_a_conflict<S: Store>(env: TestApp<S>) {
    let account = open(&env, "USD").await;
    fund(&env, &account, "50.00", "USD").await;
    let ledger = env.app.services().ledger();
    let form = spend_form(&account, "10.00", "order-1");
    let first = ledger.spend(&form, &actor()).await.unwrap();
    assert!(!first.replayed);
    assert_eq!(first.balance_after.minor(), 4_000);
    let before = rows(&env).await;
    let again = ledger.spend(&form, &actor()).await.unwrap();
    assert_eq!(
        again,
        Posted {
            replayed: true,
            ..first
        }
    );
    assert_eq!(rows(&env).await, before);
    let other_amount = spend_form(&account, "10.01", "order-1");
    let refused = ledger.spend(&other_amount, &actor()).await.unwrap_err();
    assert_eq!(refused.code(), "ledger.order_conflict");
    assert!(refused.to_string().contains("amount"), "{refused}");
    let other_service = SpendForm {
        service: "icloud".into(),
        ..form.clone()
    };
    let refused = ledger.spend(&other_service, &actor()).await.unwrap_err();
    assert_eq!(refused.code(), "ledger.order_conflict");
    assert!(refused.to_string().contains("service"), "{refused}");
    assert_eq!(rows(&env).await, before);
    // A replay is answered even when the balance could no longer pay for it.
    ledger
        .spend(&spend_form(&account, "40.00", "order-2"), &actor())
        .await
        .unwrap();
    let before = rows(&env).await;
    let late = ledger.spend(&form, &actor()).await.unwrap();
    assert_eq!(late.transfer_id, first.transfer_id);
    assert!(late.replayed);
    assert_eq!(rows(&env).await, before);
    assert_eq!(balance(&env, &account).await, 0);
    assert_books_hold(&env).await;
}
both_backends!(repeated_order, a_repeated_order_is_a_replay_or_a_conflict);

/// A refund repeated under its refund id with the same fields is a replay; with another amount
/// or against another order it is a refund conflict. Neither writes anything.
async fn a_repeated_refund_is_a_replay_or_a_conflict<S: Store>(env: TestApp<S>) {
    let account = open(&env, "USD").await;
    fund(&env, &account, "50.00", "USD").await;
    let ledger = env.app.services().ledger();
    for order in ["order-1", "order-2"] {
        ledger
            .spend(&spend_form(&account, "10.00", order), &actor())
            .await
            .unwrap();
    }
    let form = refund_form(&account, "order-1", "refund-1", "4.00");
    let first = ledger.refund(&form, &actor()).await.unwrap();
    assert!(!first.replayed);
    assert_eq!(first.balance_after.minor(), 3_400);
    let before = rows(&env).await;
    let again = ledger.refund(&form, &actor()).await.unwrap();
    assert_eq!(
        again,
        Posted {
            replayed: true,
            ..first
        }
    );
    assert_eq!(rows(&env).await, before);
    for (order, amount, field) in [("order-1", "5.00", "amount"), ("order-2", "4.00", "order")] {
        let other = refund_form(&account, order, "refund-1", amount);
        let refused = ledger.refund(&other, &actor()).await.unwrap_err();
        assert_eq!(refused.code(), "ledger.refund_conflict");
        assert!(refused.to_string().contains(field), "{refused}");
    }
    assert_eq!(rows(&env).await, before);
    assert_eq!(balance(&env, &account).await, 3_400);
    assert_books_hold(&env).await;
}
both_backends!(repeated_refund, a_repeated_refund_is_a_replay_or_a_conflict);

/// A refund larger than what the order has left, and a refund of an order the account never
/// placed, are refused and write nothing.
async fn a_refund_beyond_its_order_or_of_no_order_is_refused<S: Store>(env: TestApp<S>) {
    let account = open(&env, "USD").await;
    fund(&env, &account, "50.00", "USD").await;
    let other = open(&env, "USD").await;
    let ledger = env.app.services().ledger();
    ledger
        .spend(&spend_form(&account, "10.00", "order-1"), &actor())
        .await
        .unwrap();
    let before = rows(&env).await;
    let too_much = refund_form(&account, "order-1", "refund-1", "10.01");
    let refused = ledger.refund(&too_much, &actor()).await.unwrap_err();
    assert_eq!(refused.code(), "ledger.refund_exceeds_order");
    assert!(refused.to_string().contains("10.00 USD"), "{refused}");
    let unknown = refund_form(&account, "order-2", "refund-1", "1.00");
    assert_eq!(
        code_of(ledger.refund(&unknown, &actor()).await),
        "ledger.unknown_order"
    );
    // An order belongs to the account that placed it.
    let elsewhere = refund_form(&other, "order-1", "refund-1", "1.00");
    assert_eq!(
        code_of(ledger.refund(&elsewhere, &actor()).await),
        "ledger.unknown_order"
    );
    assert_eq!(rows(&env).await, before);
    // What is left can still be refunded, in parts, and then nothing more.
    ledger
        .refund(
            &refund_form(&account, "order-1", "refund-1", "6.00"),
            &actor(),
        )
        .await
        .unwrap();
    let before = rows(&env).await;
    let refused = ledger
        .refund(
            &refund_form(&account, "order-1", "refund-2", "4.01"),
            &actor(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "ledger.refund_exceeds_order");
    assert!(refused.to_string().contains("4.00 USD"), "{refused}");
    assert_eq!(rows(&env).await, before);
    ledger
        .refund(
            &refund_form(&account, "order-1", "refund-2", "4.00"),
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(balance(&env, &account).await, 5_000);
    assert_books_hold(&env).await;
}
both_backends!(
    refund_beyond_order,
    a_refund_beyond_its_order_or_of_no_order_is_refused
);

/// A frozen account neither spends nor receives a refund; both refusals write nothing, and once
/// unfrozen it does both again.
async fn a_frozen_account_neither_spends_nor_receives<S: Store>(env: TestApp<S>) {
    let account = open(&env, "USD").await;
    fund(&env, &account, "50.00", "USD").await;
    let ledger = env.app.services().ledger();
    ledger
        .spend(&spend_form(&account, "10.00", "order-1"), &actor())
        .await
        .unwrap();
    let frozen = ledger
        .freeze(&account, true, "fraud-review", &actor())
        .await
        .unwrap();
    assert_eq!(frozen.frozen_reason.as_deref(), Some("fraud-review"));
    let before = rows(&env).await;
    assert_eq!(
        code_of(
            ledger
                .spend(&spend_form(&account, "1.00", "order-2"), &actor())
                .await
        ),
        "account.frozen"
    );
    assert_eq!(
        code_of(
            ledger
                .refund(
                    &refund_form(&account, "order-1", "refund-1", "1.00"),
                    &actor()
                )
                .await
        ),
        "account.frozen"
    );
    assert_eq!(
        code_of(
            ledger
                .adjust(&adjust_form(&account, "5.00"), &alice())
                .await
        ),
        "account.frozen"
    );
    assert_eq!(rows(&env).await, before);
    assert_eq!(
        env.count("SELECT refundable_minor FROM spend_order").await,
        1_000,
        "the refused refund took nothing off the order"
    );
    ledger
        .freeze(&account, false, "cleared", &actor())
        .await
        .unwrap();
    ledger
        .spend(&spend_form(&account, "1.00", "order-2"), &actor())
        .await
        .unwrap();
    ledger
        .refund(
            &refund_form(&account, "order-1", "refund-1", "1.00"),
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(balance(&env, &account).await, 4_000);
    assert_books_hold(&env).await;
}
both_backends!(frozen_account, a_frozen_account_neither_spends_nor_receives);

/// An adjustment above the threshold waits for a second person: its requester cannot approve
/// it, not even under another note after the same name; someone else can, and it posts once.
async fn an_adjustment_above_the_threshold_needs_a_second_person<S: Store>(env: TestApp<S>) {
    let account = open(&env, "USD").await;
    let ledger = env.app.services().ledger();
    let requester = Actor::cli("alice", Some("t-1")).unwrap();
    // At the threshold it posts at once.
    let at = ledger
        .adjust(&adjust_form(&account, "100.00"), &requester)
        .await
        .unwrap();
    assert!(matches!(at, Adjusted::Posted { .. }), "{at:?}");
    let Adjusted::Pending { adjustment_id } = ledger
        .adjust(&adjust_form(&account, "100.01"), &requester)
        .await
        .unwrap()
    else {
        panic!("an adjustment above the threshold waits");
    };
    assert_eq!(balance(&env, &account).await, 10_000);
    let before = rows(&env).await;
    for same_person in [
        requester.clone(),
        Actor::cli("alice", Some("t-2")).unwrap(),
        alice(),
    ] {
        assert_eq!(
            code_of(ledger.approve(adjustment_id, &same_person).await),
            "adjustment.self_approval",
            "{same_person}"
        );
    }
    assert_eq!(rows(&env).await, before);
    assert_eq!(balance(&env, &account).await, 10_000);
    let posted = ledger.approve(adjustment_id, &bob()).await.unwrap();
    assert_eq!(posted.balance_after.minor(), 20_001);
    assert_eq!(balance(&env, &account).await, 20_001);
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM adjustment WHERE adjustment_id = {adjustment_id} \
             AND state = 'posted' AND requested_by = 'cli:alice' AND decided_by = 'cli:bob' \
             AND transfer_id = {}",
            posted.transfer_id
        ))
        .await,
        1
    );
    let before = rows(&env).await;
    for approver in [bob(), Actor::cli("carol", None).unwrap()] {
        assert_eq!(
            code_of(ledger.approve(adjustment_id, &approver).await),
            "adjustment.not_pending"
        );
    }
    assert_eq!(
        code_of(ledger.approve(adjustment_id + 100, &bob()).await),
        "adjustment.not_found"
    );
    assert_eq!(rows(&env).await, before);
    assert_eq!(balance(&env, &account).await, 20_001);
    assert_books_hold(&env).await;
}
both_backends!(
    four_eyes,
    an_adjustment_above_the_threshold_needs_a_second_person
);

/// A debit adjustment larger than the balance is refused as insufficient funds and writes
/// nothing, whether it is asked for or, above the threshold, approved; it then stays pending.
/// One the balance covers posts.
async fn a_debit_adjustment_cannot_overdraw<S: Store>(env: TestApp<S>) {
    let account = open(&env, "USD").await;
    fund(&env, &account, "20.00", "USD").await;
    let ledger = env.app.services().ledger();
    let Adjusted::Pending { adjustment_id } = ledger
        .adjust(&adjust_form(&account, "-150.00"), &alice())
        .await
        .unwrap()
    else {
        panic!("a debit above the threshold waits");
    };
    let before = rows(&env).await;
    assert_eq!(
        code_of(
            ledger
                .adjust(&adjust_form(&account, "-20.01"), &alice())
                .await
        ),
        "ledger.insufficient_funds"
    );
    assert_eq!(
        code_of(ledger.approve(adjustment_id, &bob()).await),
        "ledger.insufficient_funds"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM adjustment WHERE state = 'pending'")
            .await,
        1
    );
    assert_eq!(rows(&env).await, before);
    let debit = ledger
        .adjust(&adjust_form(&account, "-20.00"), &alice())
        .await
        .unwrap();
    let Adjusted::Posted { posted, .. } = debit else {
        panic!("{debit:?}");
    };
    assert_eq!(posted.balance_after.minor(), 0);
    let system = assert_books_hold(&env).await;
    assert_eq!(system, [system_balance("adjustment", 0)]);
}
both_backends!(debit_adjustment, a_debit_adjustment_cannot_overdraw);

// ---------------------------------------------------------------------------------------------
// Bad input: each refused with its own code, before anything is written.

/// Every malformed or out-of-range input is refused with its specific code, and no transfer,
/// entry, order, refund, adjustment or audit record is written. The accounts hold enough that
/// any input let through would have moved money.
async fn bad_input_is_refused_with_its_code_and_writes_nothing<S: Store>(env: TestApp<S>) {
    let usd = open(&env, "USD").await;
    let jpy = open(&env, "JPY").await;
    fund(&env, &usd, "100.00", "USD").await;
    fund(&env, &jpy, "100", "JPY").await;
    let ledger = env.app.services().ledger();
    ledger
        .spend(&spend_form(&usd, "10.00", "order-1"), &actor())
        .await
        .unwrap();
    let spend = |amount: &str, currency: &str| SpendForm {
        currency: currency.into(),
        ..spend_form(&usd, amount, "order-2")
    };
    let long = "x".repeat(65);
    let spends: Vec<(SpendForm, &str)> = vec![
        (spend("-5.00", "USD"), "amount.not_positive"),
        (spend("0", "USD"), "amount.not_positive"),
        (spend("0.00", "USD"), "amount.not_positive"),
        (spend("-0", "USD"), "amount.not_positive"),
        (spend("10.001", "USD"), "money.too_precise"),
        (
            SpendForm {
                account: jpy.clone(),
                ..spend("1.5", "JPY")
            },
            "money.too_precise",
        ),
        (spend("50000.01", "USD"), "amount.too_large"),
        (
            SpendForm {
                account: jpy.clone(),
                ..spend("5000001", "JPY")
            },
            "amount.too_large",
        ),
        (spend("99999999999999999999", "USD"), "money.out_of_range"),
        (spend("1e3", "USD"), "money.malformed"),
        (spend("1,000.00", "USD"), "money.malformed"),
        (spend("$10", "USD"), "money.malformed"),
        (spend("NaN", "USD"), "money.malformed"),
        (spend("", "USD"), "money.malformed"),
        (spend(" 1.00", "USD"), "money.malformed"),
        (spend("+1.00", "USD"), "money.malformed"),
        (spend(".5", "USD"), "money.malformed"),
        (spend("1.", "USD"), "money.malformed"),
        (spend("1.00", "XYZ"), "money.unknown_currency"),
        (spend("1.00", ""), "money.unknown_currency"),
        (spend("1.00", "EUR"), "ledger.wrong_currency"),
        (
            SpendForm {
                account: jpy.clone(),
                ..spend("1.00", "USD")
            },
            "ledger.wrong_currency",
        ),
        (
            SpendForm {
                account: "999".into(),
                ..spend("1.00", "USD")
            },
            "account.not_found",
        ),
        (
            SpendForm {
                account: "abc".into(),
                ..spend("1.00", "USD")
            },
            "account.bad_id",
        ),
        (
            SpendForm {
                account: "0".into(),
                ..spend("1.00", "USD")
            },
            "account.bad_id",
        ),
        (
            SpendForm {
                account: "-1".into(),
                ..spend("1.00", "USD")
            },
            "account.bad_id",
        ),
        (
            SpendForm {
                order: "order 2".into(),
                ..spend("1.00", "USD")
            },
            "ledger.bad_reference",
        ),
        (
            SpendForm {
                order: String::new(),
                ..spend("1.00", "USD")
            },
            "ledger.bad_reference",
        ),
        (
            SpendForm {
                order: long.clone(),
                ..spend("1.00", "USD")
            },
            "ledger.bad_reference",
        ),
        (
            SpendForm {
                order: "ordre-\u{e9}".into(),
                ..spend("1.00", "USD")
            },
            "ledger.bad_reference",
        ),
        (
            SpendForm {
                service: "App Store".into(),
                ..spend("1.00", "USD")
            },
            "ledger.bad_name",
        ),
        (
            SpendForm {
                service: String::new(),
                ..spend("1.00", "USD")
            },
            "ledger.bad_name",
        ),
        (
            SpendForm {
                service: "spent:x".into(),
                ..spend("1.00", "USD")
            },
            "ledger.bad_name",
        ),
    ];
    let refund = |amount: &str, currency: &str| RefundForm {
        currency: currency.into(),
        ..refund_form(&usd, "order-1", "refund-1", amount)
    };
    let refunds: Vec<(RefundForm, &str)> = vec![
        (refund("-3.00", "USD"), "amount.not_positive"),
        (refund("0", "USD"), "amount.not_positive"),
        (refund("1.001", "USD"), "money.too_precise"),
        (refund("1e3", "USD"), "money.malformed"),
        (refund("1.00", "XYZ"), "money.unknown_currency"),
        (refund("1.00", "EUR"), "ledger.wrong_currency"),
        (
            RefundForm {
                account: "999".into(),
                ..refund("1.00", "USD")
            },
            "account.not_found",
        ),
        (
            RefundForm {
                account: "x".into(),
                ..refund("1.00", "USD")
            },
            "account.bad_id",
        ),
        (
            RefundForm {
                refund: "refund 1".into(),
                ..refund("1.00", "USD")
            },
            "ledger.bad_reference",
        ),
        (
            RefundForm {
                order: long.clone(),
                ..refund("1.00", "USD")
            },
            "ledger.bad_reference",
        ),
    ];
    let adjust = |amount: &str, currency: &str| AdjustForm {
        currency: currency.into(),
        ..adjust_form(&usd, amount)
    };
    let adjustments: Vec<(AdjustForm, &str)> = vec![
        (adjust("0", "USD"), "amount.not_positive"),
        (adjust("-0.00", "USD"), "amount.not_positive"),
        (adjust("1.001", "USD"), "money.too_precise"),
        (adjust("50000.01", "USD"), "amount.too_large"),
        (adjust("-50000.01", "USD"), "amount.too_large"),
        (adjust("1e3", "USD"), "money.malformed"),
        (adjust("--5.00", "USD"), "money.malformed"),
        (adjust("+-5.00", "USD"), "money.malformed"),
        (adjust("5.00", "XYZ"), "money.unknown_currency"),
        (adjust("5.00", "EUR"), "ledger.wrong_currency"),
        (
            AdjustForm {
                account: "999".into(),
                ..adjust("5.00", "USD")
            },
            "account.not_found",
        ),
        (
            AdjustForm {
                account: "1.5".into(),
                ..adjust("5.00", "USD")
            },
            "account.bad_id",
        ),
        (
            AdjustForm {
                reason: "Goodwill!".into(),
                ..adjust("5.00", "USD")
            },
            "ledger.bad_name",
        ),
    ];
    let before = rows(&env).await;
    for (form, code) in &spends {
        let refused = ledger.spend(form, &actor()).await.unwrap_err();
        assert_eq!(refused.code(), *code, "spend {form:?}: {refused}");
    }
    for (form, code) in &refunds {
        let refused = ledger.refund(form, &actor()).await.unwrap_err();
        assert_eq!(refused.code(), *code, "refund {form:?}: {refused}");
    }
    for (form, code) in &adjustments {
        let refused = ledger.adjust(form, &alice()).await.unwrap_err();
        assert_eq!(refused.code(), *code, "adjust {form:?}: {refused}");
    }
    let account = |region: &str, currency: &str, external: Option<&str>| AccountForm {
        region: region.into(),
        currency: currency.into(),
        external_id: external.map(Into::into),
    };
    for (form, code) in [
        (account("US", "XYZ", None), "money.unknown_currency"),
        (account("US", "USD", Some("cust 1")), "ledger.bad_reference"),
    ] {
        let refused = ledger.create_account(&form, &actor()).await.unwrap_err();
        assert_eq!(refused.code(), code, "{form:?}");
    }
    assert!(
        ledger
            .create_account(&account("USA", "USD", None), &actor())
            .await
            .is_err()
    );
    assert_eq!(rows(&env).await, before);
    assert_eq!(env.count("SELECT count(*) FROM account").await, 2);
    assert_eq!(balance(&env, &usd).await, 9_000);
    assert_eq!(balance(&env, &jpy).await, 100);
    assert_books_hold(&env).await;
}
both_backends!(
    bad_input,
    bad_input_is_refused_with_its_code_and_writes_nothing
);

// ---------------------------------------------------------------------------------------------
// `ledger check`: the books hold, or the first discrepancy is named.

/// Books to check: a USD account funded 50.00 that spent 20.00 on order-1 and had 5.00 of it
/// refunded, and a EUR account funded 30.00. Returns the USD account and the spend's transfer.
async fn books<S: Store>(env: &TestApp<S>) -> (String, TransferId) {
    let usd = open(env, "USD").await;
    let eur = open(env, "EUR").await;
    fund(env, &usd, "50.00", "USD").await;
    fund(env, &eur, "30.00", "EUR").await;
    let ledger = env.app.services().ledger();
    let spent = ledger
        .spend(&spend_form(&usd, "20.00", "order-1"), &actor())
        .await
        .unwrap();
    ledger
        .refund(&refund_form(&usd, "order-1", "refund-1", "5.00"), &actor())
        .await
        .unwrap();
    (usd, spent.transfer_id)
}

/// Healthy books check clean, with every count and every system account's balance: what was
/// spent less what was refunded at the service, and what adjustments credited, negated.
async fn healthy_books_check_clean_with_their_system_balances<S: Store>(env: TestApp<S>) {
    let empty = env.app.services().ledger().check().await.unwrap();
    assert_eq!((empty.transfers, empty.entries, empty.accounts), (0, 0, 0));
    assert_eq!(empty.discrepancy, None);
    books(&env).await;
    let report = env.app.services().ledger().check().await.unwrap();
    assert_eq!(report.discrepancy, None);
    assert_eq!(
        (report.transfers, report.entries, report.accounts),
        (4, 8, 2)
    );
    assert_eq!(
        report.system_balances,
        [
            system("adjustment", "EUR", -3_000),
            system("adjustment", "USD", -5_000),
            system("spent:app-store", "USD", 1_500),
        ]
    );
}
both_backends!(
    healthy_books,
    healthy_books_check_clean_with_their_system_balances
);

/// A stored balance altered behind the ledger's back is a balance drift naming the account,
/// what it stores and what its entries sum to.
async fn check_finds_a_balance_altered_behind_its_back<S: Store>(env: TestApp<S>) {
    let (usd, _) = books(&env).await;
    env.exec(&format!(
        "UPDATE account SET balance_minor = balance_minor + 1 WHERE account_id = {usd}"
    ))
    .await;
    let Discrepancy::BalanceDrift {
        account_id,
        stored_minor,
        summed_minor,
    } = discrepancy(&env).await
    else {
        panic!("a balance drift");
    };
    assert_eq!(account_id.to_string(), usd);
    assert_eq!((stored_minor, summed_minor), (3_501, 3_500));
}
both_backends!(
    check_balance_drift,
    check_finds_a_balance_altered_behind_its_back
);

/// A transfer whose entries do not sum to zero, inserted by hand, is named as unbalanced.
async fn check_finds_a_transfer_that_does_not_balance<S: Store>(env: TestApp<S>) {
    books(&env).await;
    // Timestamps are copied from a real transfer: each backend stores them its own way.
    let forged = env
        .count(
            "INSERT INTO transfer \
             (kind, currency, reference, effective_at, recorded_at, effective_ms, recorded_ms) \
             SELECT 'adjustment', currency, 'forged', effective_at, recorded_at, effective_ms, \
             recorded_ms FROM transfer WHERE transfer_id = 1 RETURNING transfer_id",
        )
        .await;
    env.exec(&format!(
        "INSERT INTO entry \
         (transfer_id, leg, ledger_account, account_id, amount_minor, balance_after) \
         VALUES ({forged}, 0, 'adjustment', NULL, -500, NULL), \
         ({forged}, 1, 'spent:app-store', NULL, 400, NULL)"
    ))
    .await;
    assert_eq!(
        discrepancy(&env).await,
        Discrepancy::Unbalanced {
            transfer_id: TransferId(forged),
            sum_minor: -100,
            entries: 2,
        }
    );
}
both_backends!(
    check_unbalanced,
    check_finds_a_transfer_that_does_not_balance
);

/// A transfer left with a single leg (the other entry deleted by hand) is unbalanced too.
async fn check_finds_a_transfer_with_one_leg<S: Store>(env: TestApp<S>) {
    books(&env).await;
    env.exec("DELETE FROM entry WHERE transfer_id = 1 AND leg = 0")
        .await;
    let Discrepancy::Unbalanced {
        transfer_id,
        entries,
        ..
    } = discrepancy(&env).await
    else {
        panic!("an unbalanced transfer");
    };
    assert_eq!((transfer_id, entries), (TransferId(1), 1));
}
both_backends!(check_one_leg, check_finds_a_transfer_with_one_leg);

/// An entry's balance-after altered is a history drift naming the account and the transfer.
async fn check_finds_a_history_line_altered<S: Store>(env: TestApp<S>) {
    let (usd, spend) = books(&env).await;
    env.exec(&format!(
        "UPDATE entry SET balance_after = balance_after + 1 \
         WHERE transfer_id = {spend} AND account_id = {usd}"
    ))
    .await;
    let Discrepancy::HistoryDrift {
        account_id,
        transfer_id,
    } = discrepancy(&env).await
    else {
        panic!("a history drift");
    };
    assert_eq!((account_id.to_string(), transfer_id), (usd, spend));
}
both_backends!(check_history_drift, check_finds_a_history_line_altered);

/// An order's refundable remainder altered is a refundable drift naming the account and order.
async fn check_finds_a_refundable_remainder_altered<S: Store>(env: TestApp<S>) {
    let (usd, _) = books(&env).await;
    env.exec("UPDATE spend_order SET refundable_minor = refundable_minor + 1")
        .await;
    let Discrepancy::RefundableDrift {
        account_id,
        order_ref,
    } = discrepancy(&env).await
    else {
        panic!("a refundable drift");
    };
    assert_eq!(
        (account_id.to_string(), order_ref.as_str()),
        (usd, "order-1")
    );
}
both_backends!(
    check_refundable_drift,
    check_finds_a_refundable_remainder_altered
);

/// A transfer relabelled into another currency than its customer's account holds is a currency
/// mismatch naming both.
async fn check_finds_a_transfer_in_another_currency<S: Store>(env: TestApp<S>) {
    let (usd, spend) = books(&env).await;
    env.exec(&format!(
        "UPDATE transfer SET currency = 'EUR' WHERE transfer_id = {spend}"
    ))
    .await;
    let Discrepancy::CurrencyMismatch {
        transfer_id,
        account_id,
    } = discrepancy(&env).await
    else {
        panic!("a currency mismatch");
    };
    assert_eq!((account_id.to_string(), transfer_id), (usd, spend));
}
both_backends!(
    check_currency_mismatch,
    check_finds_a_transfer_in_another_currency
);

// ---------------------------------------------------------------------------------------------
// History and erasure.

/// History is newest first, each line with the balance after it; pages follow the cursor (the
/// last transfer id of the page before) without overlap or gap, and hold only the account's own
/// lines. An unknown account is not found.
async fn history_pages_newest_first_by_cursor<S: Store>(env: TestApp<S>) {
    let account = open(&env, "USD").await;
    let other = open(&env, "USD").await;
    let ledger = env.app.services().ledger();
    fund(&env, &account, "60.00", "USD").await;
    let placed = epoch() - chrono::Duration::days(1);
    for i in 1..=5 {
        fund(&env, &other, "1.00", "USD").await;
        let form = SpendForm {
            effective_at: Some(placed),
            ..spend_form(&account, &format!("{i}.00"), &format!("order-{i}"))
        };
        ledger.spend(&form, &actor()).await.unwrap();
    }
    ledger
        .refund(
            &refund_form(&account, "order-5", "refund-1", "2.50"),
            &actor(),
        )
        .await
        .unwrap();
    let whole = ledger.history(&account, None, PageRows::MAX).await.unwrap();
    assert_eq!(whole.len(), 7);
    let kinds: Vec<TransferKind> = whole.iter().map(|l| l.kind).collect();
    assert_eq!(kinds[0], TransferKind::Refund);
    assert_eq!(kinds[6], TransferKind::Adjustment);
    assert!(kinds[1..6].iter().all(|k| *k == TransferKind::Spend));
    assert_eq!(
        whole[0].balance_after.minor(),
        balance(&env, &account).await
    );
    assert_eq!(whole[0].amount.minor(), 250);
    assert_eq!(whole[0].reference.as_deref(), Some("refund-1"));
    assert_eq!(whole[1].amount.minor(), -500);
    assert_eq!(whole[1].reference.as_deref(), Some("order-5"));
    assert_eq!(whole[1].effective_at, placed);
    for pair in whole.windows(2) {
        assert!(pair[0].transfer_id > pair[1].transfer_id, "newest first");
        assert_eq!(
            pair[0].balance_after.minor() - pair[0].amount.minor(),
            pair[1].balance_after.minor(),
            "each line's balance follows from the one before"
        );
    }
    let oldest = whole.last().unwrap();
    assert_eq!(oldest.balance_after.minor(), oldest.amount.minor());
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = ledger
            .history(&account, after, PageRows::new(3).unwrap())
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = Some(page.last().unwrap().transfer_id);
        paged.extend(page);
    }
    assert_eq!(paged, whole);
    let others = ledger.history(&other, None, PageRows::MAX).await.unwrap();
    assert_eq!(others.len(), 5);
    assert!(others.iter().all(|l| !whole.contains(l)));
    for (id, code) in [("999", "account.not_found"), ("me", "account.bad_id")] {
        let refused = ledger.history(id, None, PageRows::MAX).await.unwrap_err();
        assert_eq!(refused.code(), code);
    }
}
both_backends!(history_paging, history_pages_newest_first_by_cursor);

/// Erasing an account blanks its external id, which a new account may then take; its history
/// and the books stay whole, the audit trail still verifies, and no audit record ever held the
/// external id.
async fn erasure_blanks_the_external_id_and_keeps_the_books_whole<S: Store>(env: TestApp<S>) {
    let ledger = env.app.services().ledger();
    let form = AccountForm {
        region: "US".into(),
        currency: "USD".into(),
        external_id: Some("cust-4242".into()),
    };
    let account = ledger.create_account(&form, &actor()).await.unwrap();
    assert_eq!(account.external_id.as_deref(), Some("cust-4242"));
    let id = account.id.to_string();
    assert_eq!(
        code_of(ledger.create_account(&form, &actor()).await),
        "account.external_id_taken"
    );
    fund(&env, &id, "30.00", "USD").await;
    ledger
        .spend(&spend_form(&id, "12.00", "order-1"), &actor())
        .await
        .unwrap();
    ledger
        .refund(&refund_form(&id, "order-1", "refund-1", "2.00"), &actor())
        .await
        .unwrap();
    let history = ledger.history(&id, None, PageRows::MAX).await.unwrap();
    let erased = ledger.erase(&id, &actor()).await.unwrap();
    assert_eq!(erased.external_id, None);
    assert!(erased.erased_at.is_some());
    assert_eq!(erased.balance.minor(), 2_000);
    assert_eq!(
        env.count("SELECT count(*) FROM account WHERE external_id IS NOT NULL")
            .await,
        0
    );
    assert_eq!(
        ledger.history(&id, None, PageRows::MAX).await.unwrap(),
        history
    );
    let again = ledger.create_account(&form, &actor()).await.unwrap();
    assert_ne!(again.id, account.id);
    assert_eq!(again.external_id.as_deref(), Some("cust-4242"));
    assert_eq!(
        code_of(ledger.erase("999", &actor()).await),
        "account.not_found"
    );
    assert_books_hold(&env).await;
    assert!(env.verify().await.is_intact());
    assert_eq!(
        env.count(
            "SELECT count(*) FROM audit_record WHERE details LIKE '%cust-4242%' \
             OR subject LIKE '%cust-4242%' OR actor LIKE '%cust-4242%'"
        )
        .await,
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_record WHERE action = 'account.erased'")
            .await,
        1
    );
}
both_backends!(
    erasure,
    erasure_blanks_the_external_id_and_keeps_the_books_whole
);
