//! Redeeming a code into an account balance, on both backends.
//!
//! - A code redeems its card's whole value into an account once: the card is debited, the
//!   account credited, the card moves to redeemed, and the history shows the card masked but
//!   for its last 4 digits. `ledger check` and `audit verify` hold afterwards.
//! - Every refusal has its code; a code tried on a card never sold (or voided) marks the card
//!   exposed, so a live sale of it is refused `card.exposed`.
//! - However many callers race for one code, one account gets the value; one account retrying
//!   with one idempotency key is credited once and always answered with the first success.
//! - Guessing limits: with the default 5 an hour per account, 50 parallel wrong codes give
//!   exactly 5 `not_found` and 45 `rate_limited`, and a valid code is refused too until the
//!   window ends. A malformed code takes no slot and writes nothing.

use chrono::TimeDelta;
use tender::clock::Clock;
use tender::codegen::CodeGenerator;
use tender::config::{RedeemLimits, Settings, WindowLimits};
use tender::domain::{Batch, CardState, Serial};
use tender::error::Classify;
use tender::service::cards::{ActivateForm, PosForm, StoreForm, VoidForm};
use tender::service::redemption::{GENERIC_REFUSAL_FLOOR, RedeemError, Redeemed};
use tender::store::Store;
use tender::store::ledger::Discrepancy;

use crate::helpers::printed_code as code_of;
use crate::helpers::{TestApp, actor, both_backends, open_account as account, usd_form};

/// Acme's store in Texas, where every card here is sold.
const STORE: &str = "S1";

fn pos(txn: &str) -> PosForm {
    PosForm {
        retailer: "Acme".into(),
        store: STORE.into(),
        terminal: "till-1".into(),
        pos_txn: txn.into(),
        pos_time: None,
    }
}

/// `count` generated 25.00 USD cards for the US, with Acme and its Texas store.
async fn shelf<S: Store>(env: &TestApp<S>, count: u64) -> Batch {
    let services = env.app.services();
    services
        .retailers()
        .add("Acme", "2.5", &actor())
        .await
        .unwrap();
    let batch = services
        .batches()
        .request(&usd_form(count), &actor())
        .await
        .unwrap();
    let batch = env
        .generate(batch.id, &mut CodeGenerator::from_os_rng(), count as usize)
        .await;
    let store = StoreForm {
        retailer: "Acme".into(),
        store: STORE.into(),
        jurisdiction: "US-TX".into(),
    };
    services.cards().add_store(&store, &actor()).await.unwrap();
    batch
}

/// The `n`th card of a batch, from 0.
fn card(batch: &Batch, n: u64) -> Serial {
    Serial::from_sequence(batch.first_serial.sequence() + n).unwrap()
}

async fn sell<S: Store>(env: &TestApp<S>, serial: Serial) {
    let form = ActivateForm {
        pos: pos(&format!("sale-{serial}")),
        serial: serial.to_string(),
        to_serial: None,
        value: None,
        purchaser_state: None,
    };
    env.app
        .services()
        .cards()
        .activate(&form, &actor())
        .await
        .unwrap();
}

async fn redeem<S: Store>(
    env: &TestApp<S>,
    account: &str,
    code: &str,
    key: Option<&str>,
) -> Result<Redeemed, RedeemError> {
    env.app
        .services()
        .redemption()
        .redeem(account, code, key, &actor())
        .await
}

fn refusal<T: std::fmt::Debug>(result: Result<T, RedeemError>) -> &'static str {
    result.expect_err("the redemption is refused").code()
}

async fn assert_books_hold<S: Store>(env: &TestApp<S>) {
    let report = env.app.services().ledger().check().await.unwrap();
    assert_eq!(report.discrepancy, None);
    let report = env.verify().await;
    assert!(report.is_intact(), "{:?}", report.problem);
}

async fn balance<S: Store>(env: &TestApp<S>, account: &str) -> String {
    let account = env.app.services().ledger().account(account).await.unwrap();
    account.balance.to_string()
}

/// Every outcome with its code, on cards in each state. The success credits the whole value and
/// reads as a history line with the card masked; a retry with its key replays it, the same key
/// with another code conflicts. Each refusal comes from its own account, so none runs into the
/// hourly limit.
async fn every_outcome_has_its_code<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 10).await;
    for n in [0, 1, 3, 4, 5, 6] {
        sell(&env, card(&batch, n)).await;
    }
    let services = env.app.services();
    let alice = account(&env, "US", "USD").await;

    let first = redeem(
        &env,
        &alice,
        &code_of(&env, &batch, card(&batch, 0)),
        Some("k-1"),
    )
    .await
    .unwrap();
    assert_eq!(first.amount.to_string(), "25.00 USD");
    assert_eq!(first.balance_after.to_string(), "25.00 USD");
    assert!(!first.replayed);
    let last4 = &card(&batch, 0).to_string()[8..];
    assert_eq!(first.card, format!("••••••••{last4}"));
    let history = services
        .ledger()
        .history(&alice, None, tender::domain::PageRows::new(10).unwrap())
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].reference.as_deref(), Some(first.card.as_str()));
    assert_eq!(history[0].amount.to_string(), "25.00 USD");
    let shown = services
        .cards()
        .show(&card(&batch, 0).to_string())
        .await
        .unwrap();
    assert_eq!(shown.state, CardState::Redeemed);

    // The same key and code: the first success, nothing new. The same key, another code: a
    // conflict, and that card stays active.
    let again = redeem(
        &env,
        &alice,
        &code_of(&env, &batch, card(&batch, 0)),
        Some("k-1"),
    )
    .await
    .unwrap();
    assert_eq!(
        Redeemed {
            replayed: false,
            ..again.clone()
        },
        first
    );
    assert!(again.replayed);
    let other = code_of(&env, &batch, card(&batch, 1));
    assert_eq!(
        refusal(redeem(&env, &alice, &other, Some("k-1")).await),
        "redeem.key_conflict"
    );
    assert_eq!(balance(&env, &alice).await, "25.00 USD");

    // Another account, the redeemed card: already redeemed.
    let bob = account(&env, "US", "USD").await;
    let redeemed = code_of(&env, &batch, card(&batch, 0));
    assert_eq!(
        refusal(redeem(&env, &bob, &redeemed, None).await),
        "redeem.already_redeemed"
    );

    // A code no card has.
    let carol = account(&env, "US", "USD").await;
    assert_eq!(
        refusal(redeem(&env, &carol, "7000 0000 0000 0001", None).await),
        "redeem.not_found"
    );

    // A card never sold, and a voided one: not activated, and marked exposed.
    let dave = account(&env, "US", "USD").await;
    let unsold = card(&batch, 2);
    assert_eq!(
        refusal(redeem(&env, &dave, &code_of(&env, &batch, unsold), None).await),
        "redeem.not_activated"
    );
    let view = services.cards().show(&unsold.to_string()).await.unwrap();
    assert!(view.exposed_at.is_some());
    let voided = card(&batch, 3);
    let void = VoidForm {
        pos: pos("void-1"),
        serial: voided.to_string(),
    };
    services.cards().void(&void, &actor()).await.unwrap();
    let erin = account(&env, "US", "USD").await;
    assert_eq!(
        refusal(redeem(&env, &erin, &code_of(&env, &batch, voided), None).await),
        "redeem.not_activated"
    );

    // A blocked card.
    services
        .cards()
        .block(&card(&batch, 4).to_string(), "fraud", &actor())
        .await
        .unwrap();
    let frank = account(&env, "US", "USD").await;
    let blocked = code_of(&env, &batch, card(&batch, 4));
    assert_eq!(
        refusal(redeem(&env, &frank, &blocked, None).await),
        "redeem.blocked"
    );

    // An active card whose funds expired a millisecond ago, before any job marked it: the
    // guarded update compares its funds-expiry with the clock.
    let now_ms = env.clock.now().timestamp_millis();
    let expired = card(&batch, 5);
    env.exec(&format!(
        "UPDATE card SET funds_expire_ms = {} WHERE serial = {}",
        now_ms - 1,
        expired.sequence()
    ))
    .await;
    let gina = account(&env, "US", "USD").await;
    assert_eq!(
        refusal(redeem(&env, &gina, &code_of(&env, &batch, expired), None).await),
        "redeem.expired"
    );
    env.exec(&format!(
        "UPDATE card SET funds_expire_ms = {} WHERE serial = {}",
        now_ms + 1,
        expired.sequence()
    ))
    .await;

    // The card's storefront or currency against the account's; a frozen account.
    let live = code_of(&env, &batch, card(&batch, 6));
    let canada = account(&env, "CA", "USD").await;
    assert_eq!(
        refusal(redeem(&env, &canada, &live, None).await),
        "redeem.region_mismatch"
    );
    let euros = account(&env, "US", "EUR").await;
    assert_eq!(
        refusal(redeem(&env, &euros, &live, None).await),
        "redeem.currency_mismatch"
    );
    let frozen = account(&env, "US", "USD").await;
    services
        .ledger()
        .freeze(&frozen, true, "fraud", &actor())
        .await
        .unwrap();
    assert_eq!(
        refusal(redeem(&env, &frozen, &live, None).await),
        "redeem.account_frozen"
    );

    // Every refusal is in the attempt log with its real reason; none holds a code.
    let rows = tender::domain::PageRows::new(100).unwrap();
    let logged = services
        .redemption()
        .attempts(Some(&dave), None, rows)
        .await
        .unwrap();
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].outcome, "redeem.not_activated");
    assert_eq!(logged[0].serial, Some(unsold));
    let by_card = services
        .redemption()
        .attempts(None, Some(&card(&batch, 6).to_string()), rows)
        .await
        .unwrap();
    let mut outcomes: Vec<_> = by_card.iter().map(|a| a.outcome.as_str()).collect();
    outcomes.sort_unstable();
    assert_eq!(
        outcomes,
        ["redeem.currency_mismatch", "redeem.region_mismatch"]
    );
    // Key conflict, already redeemed, not found, not activated twice, blocked, expired,
    // region, currency, frozen.
    assert_eq!(env.count("SELECT count(*) FROM redeem_attempt").await, 10);
    // The card still expiring later is redeemable into the right account.
    let henry = account(&env, "US", "USD").await;
    redeem(&env, &henry, &live, None).await.unwrap();
    assert_books_hold(&env).await;
}
both_backends!(outcomes, every_outcome_has_its_code);

/// The app again over the same database, with `limits` on redemption attempts.
async fn with_limits<S: Store>(env: &TestApp<S>, limits: RedeemLimits) -> tender::app::App<S> {
    env.reopen(&Settings {
        redeem_limits: limits,
        ..env.db.settings()
    })
    .await
}

/// 50 accounts race for one code: one gets its value, 49 are told it is already redeemed, and
/// the books balance. Each account makes one attempt, so each has its own hourly headroom.
async fn fifty_accounts_race_for_one_code<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 1).await;
    let serial = card(&batch, 0);
    sell(&env, serial).await;
    let code = code_of(&env, &batch, serial);
    let mut accounts = Vec::new();
    for _ in 0..50 {
        accounts.push(account(&env, "US", "USD").await);
    }
    let mut tasks = Vec::new();
    for account in &accounts {
        let app = env.app.clone();
        let (account, code) = (account.clone(), code.clone());
        tasks.push(tokio::spawn(async move {
            app.services()
                .redemption()
                .redeem(&account, &code, None, &actor())
                .await
        }));
    }
    let mut won = Vec::new();
    let mut refused = Vec::new();
    for (task, account) in tasks.into_iter().zip(&accounts) {
        match task.await.unwrap() {
            Ok(redeemed) => won.push((account.clone(), redeemed)),
            Err(error) => refused.push(error.code()),
        }
    }
    assert_eq!(won.len(), 1, "{refused:?}");
    assert!(
        refused.iter().all(|c| *c == "redeem.already_redeemed"),
        "{refused:?}"
    );
    assert_eq!(refused.len(), 49);
    let (winner, redeemed) = &won[0];
    assert_eq!(redeemed.balance_after.to_string(), "25.00 USD");
    for account in &accounts {
        let expected = if account == winner {
            "25.00 USD"
        } else {
            "0.00 USD"
        };
        assert_eq!(balance(&env, account).await, expected);
    }
    assert_eq!(
        env.count("SELECT count(*) FROM transfer WHERE kind = 'redemption'")
            .await,
        1
    );
    assert_books_hold(&env).await;
}
both_backends!(fifty_accounts, fifty_accounts_race_for_one_code);

/// One account sends the same redemption 20 times at once under one key: one credit, and 20
/// identical successes (the first, and 19 answers replaying it). Concurrent first attempts each
/// take a slot until one has committed, so the account is given room for 20 here.
async fn one_key_twenty_times_credits_once<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 1).await;
    let serial = card(&batch, 0);
    sell(&env, serial).await;
    let code = code_of(&env, &batch, serial);
    let alice = account(&env, "US", "USD").await;
    let app = with_limits(
        &env,
        RedeemLimits {
            account: WindowLimits { hour: 20, day: 20 },
            ..RedeemLimits::default()
        },
    )
    .await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let app = app.clone();
        let (alice, code) = (alice.clone(), code.clone());
        tasks.push(tokio::spawn(async move {
            app.services()
                .redemption()
                .redeem(&alice, &code, Some("order-7"), &actor())
                .await
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap().expect("every copy succeeds"));
    }
    assert_eq!(answers.iter().filter(|a| !a.replayed).count(), 1);
    let first = Redeemed {
        replayed: false,
        ..answers[0].clone()
    };
    for answer in &answers {
        assert_eq!(
            Redeemed {
                replayed: false,
                ..answer.clone()
            },
            first
        );
    }
    assert_eq!(balance(&env, &alice).await, "25.00 USD");
    assert_eq!(
        env.count("SELECT count(*) FROM transfer WHERE kind = 'redemption'")
            .await,
        1
    );
    // Every slot given back: a success does not count against the account.
    assert_eq!(
        env.count("SELECT CAST(COALESCE(SUM(used - given), 0) AS BIGINT) FROM redeem_window")
            .await,
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_record WHERE action = 'card.redeemed'")
            .await,
        1
    );
    assert_books_hold(&env).await;

    // `ledger check` proves a redeemed card by its redemption: without it, the card drifts.
    env.exec("DELETE FROM redemption").await;
    let report = env.app.services().ledger().check().await.unwrap();
    assert_eq!(
        report.discrepancy,
        Some(Discrepancy::CardDrift {
            serial,
            state: CardState::Redeemed,
            summed_minor: 0,
        })
    );
}
both_backends!(one_key, one_key_twenty_times_credits_once);

/// With the default 5 an hour per account, 50 parallel wrong codes from one account evaluate
/// exactly 5 codes; the sixth counted attempt within the hour is refused even for a valid code,
/// with the time the window ends; once it has ended the valid code redeems.
async fn guessing_is_limited_per_account<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 1).await;
    let serial = card(&batch, 0);
    sell(&env, serial).await;
    let alice = account(&env, "US", "USD").await;
    let mut tasks = Vec::new();
    for n in 0..50 {
        let app = env.app.clone();
        let alice = alice.clone();
        tasks.push(tokio::spawn(async move {
            let guess = format!("70000000000{n:05}");
            app.services()
                .redemption()
                .redeem(&alice, &guess, None, &actor())
                .await
        }));
    }
    let mut not_found = 0;
    let mut limited = 0;
    for task in tasks {
        match task.await.unwrap().unwrap_err().code() {
            "redeem.not_found" => not_found += 1,
            "redeem.rate_limited" => limited += 1,
            other => panic!("{other}"),
        }
    }
    assert_eq!((not_found, limited), (5, 45));

    let valid = code_of(&env, &batch, serial);
    let error = redeem(&env, &alice, &valid, None).await.unwrap_err();
    let RedeemError::RateLimited {
        retry_at,
        retry_after_secs,
    } = error
    else {
        panic!("{error}");
    };
    // The epoch is 09:00: the hour's window ends at 10:00.
    assert_eq!(retry_at, crate::helpers::epoch() + TimeDelta::hours(1));
    assert_eq!(retry_after_secs, 3_600);
    assert_eq!(
        env.count("SELECT count(*) FROM card WHERE state = 1").await,
        1,
        "the valid code was not evaluated"
    );
    let logged = env
        .app
        .services()
        .redemption()
        .attempts(
            Some(&alice),
            None,
            tender::domain::PageRows::new(100).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(logged.len(), 51);

    env.clock.advance(TimeDelta::hours(1));
    let redeemed = redeem(&env, &alice, &valid, None).await.unwrap();
    assert_eq!(redeemed.balance_after.to_string(), "25.00 USD");
    assert_books_hold(&env).await;

    // A day on, the first attempt clears the windows that ended: only today's hour and day
    // remain, for the account and for the caller.
    assert_eq!(env.count("SELECT count(*) FROM redeem_window").await, 6);
    env.clock.advance(TimeDelta::days(1));
    assert_eq!(
        refusal(redeem(&env, &alice, "7000 0000 0000 0001", None).await),
        "redeem.not_found"
    );
    assert_eq!(env.count("SELECT count(*) FROM redeem_window").await, 4);
}
both_backends!(guessing, guessing_is_limited_per_account);

/// Characters that are not ASCII whitespace, a digit or a separator, yet cannot be seen or
/// pass for a space: what a copy from a web page or a chat brings along.
const INVISIBLE: &[char] = &[
    '\u{0}',    // NUL
    '\u{b}',    // vertical tab: not ASCII whitespace to Rust, so not trimmed
    '\u{85}',   // next line
    '\u{a0}',   // no-break space
    '\u{ad}',   // soft hyphen
    '\u{61c}',  // Arabic letter mark
    '\u{180e}', // Mongolian vowel separator
    '\u{2007}', // figure space
    '\u{2009}', // thin space
    '\u{200b}', // zero-width space
    '\u{200c}', // zero-width non-joiner
    '\u{200d}', // zero-width joiner
    '\u{200e}', // left-to-right mark
    '\u{200f}', // right-to-left mark
    '\u{2028}', // line separator
    '\u{2029}', // paragraph separator
    '\u{202a}', // left-to-right embedding
    '\u{202e}', // right-to-left override
    '\u{202f}', // narrow no-break space
    '\u{2060}', // word joiner
    '\u{2066}', // left-to-right isolate
    '\u{2069}', // pop directional isolate
    '\u{3000}', // ideographic space
    '\u{3164}', // Hangul filler
    '\u{feff}', // byte order mark
];

/// Letters and signs a person or a scanner may take for digits: Latin, Cyrillic and Greek O,
/// l and I, S, B, Z, b, G, g, q, Cyrillic Ze and i, a bar.
const LOOKALIKES: &[char] = &[
    'O', 'o', 'О', 'о', 'Ο', 'ο', 'D', 'l', 'I', 'i', '|', 'ı', 'і', 'S', 's', 'B', 'Z', 'z', 'З',
    'b', 'G', 'g', 'q',
];

/// Characters that look like the hyphen or the space between groups but are not ASCII's.
const OTHER_SEPARATORS: &[char] = &[
    '.', '/', '_', ',', ':', '\t', '\n', '\r', '\u{c}', '\u{2010}', '\u{2011}', '\u{2012}',
    '\u{2013}', '\u{2014}', '\u{2212}', '\u{fe63}', '\u{ff0d}', '\u{2e3a}',
];

/// The zero of every Unicode script's decimal digits other than ASCII's (general category Nd,
/// which Unicode encodes as runs of ten from 0 to 9): full-width, Arabic-Indic, Extended
/// Arabic-Indic, Devanagari, Bengali, Thai, the mathematical alphabets and the rest.
fn digit_zeros() -> Vec<u32> {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    let decimal =
        |c: char| !c.is_ascii_digit() && c.general_category() == GeneralCategory::DecimalNumber;
    let mut zeros = Vec::new();
    let mut run = 0;
    for c in (0..=0x10_ffff).filter_map(char::from_u32) {
        if !decimal(c) {
            run = 0;
            continue;
        }
        if run % 10 == 0 {
            zeros.push(u32::from(c));
        }
        run += 1;
    }
    zeros
}

/// Every text that is not `code` in one of its documented forms, built from `code` itself so
/// that a parser that let one through would redeem a real card. Each comes with what it is.
fn malformed_forms_of(code: &str) -> Vec<(String, String)> {
    let grouped = |sep: &str| {
        let groups: Vec<&str> = (0..4).map(|g| &code[g * 4..g * 4 + 4]).collect();
        groups.join(sep)
    };
    let (head, last) = code.split_at(15);
    let mut bad: Vec<(String, String)> = Vec::new();
    let mut add = |what: &str, text: String| bad.push((what.to_string(), text));

    // Digits of every other script, for the whole code; and every numeric character Unicode
    // has (digits, superscripts, circled and fraction forms, Roman numerals...) for the last.
    let zeros = digit_zeros();
    for must in [0xff10, 0x0660, 0x06f0, 0x0966, 0x09e6, 0x0e50, 0x1d7ce] {
        assert!(
            zeros.contains(&must),
            "U+{must:04X} is among the digit zeros"
        );
    }
    for zero in &zeros {
        let text: String = code
            .bytes()
            .map(|b| char::from_u32(zero + u32::from(b - b'0')).unwrap())
            .collect();
        add(&format!("the digits from U+{zero:04X}"), text);
    }
    let mut numeric = 0;
    for c in (0..=0x10_ffff).filter_map(char::from_u32) {
        if c.is_numeric() && !c.is_ascii_digit() {
            numeric += 1;
            add(
                &format!("U+{:04X} for the last digit", u32::from(c)),
                format!("{head}{c}"),
            );
        }
    }
    assert!(numeric > 1_500, "{numeric} numeric characters");

    for c in LOOKALIKES {
        add(&format!("{c:?} for the last digit"), format!("{head}{c}"));
        add(
            &format!("{c:?} for the first digit"),
            format!("{c}{}", &code[1..]),
        );
    }

    add("15 digits", head.to_string());
    add(
        "15 digits, grouped",
        format!(
            "{} {} {} {}",
            &code[..4],
            &code[4..8],
            &code[8..12],
            &head[12..]
        ),
    );
    add("17 digits", format!("{code}{last}"));
    add("17 digits, grouped", format!("{}{last}", grouped("-")));
    add("32 digits", code.repeat(2));
    add("one digit", last.to_string());

    for (what, text) in [
        (
            "a group of 5 first",
            format!(
                "{}-{}-{}-{}",
                &code[..5],
                &code[5..8],
                &code[8..12],
                &code[12..]
            ),
        ),
        (
            "groups of 3, 4, 4, 5",
            format!(
                "{} {} {} {}",
                &code[..3],
                &code[3..7],
                &code[7..11],
                &code[11..]
            ),
        ),
        ("two groups of 8", format!("{} {}", &code[..8], &code[8..])),
        ("a double hyphen", grouped("-").replacen('-', "--", 1)),
        ("a double space", grouped(" ").replacen(' ', "  ", 1)),
        (
            "spaces and hyphens mixed",
            format!(
                "{}-{} {}-{}",
                &code[..4],
                &code[4..8],
                &code[8..12],
                &code[12..]
            ),
        ),
        ("spaced hyphens", grouped(" - ")),
        ("a leading hyphen", format!("-{code}")),
        ("a leading hyphen, grouped", format!("-{}", grouped("-"))),
        ("a trailing hyphen", format!("{}-", grouped("-"))),
        (
            "a hyphen between every digit",
            code.chars().map(String::from).collect::<Vec<_>>().join("-"),
        ),
        (
            "a space between every digit",
            code.chars().map(String::from).collect::<Vec<_>>().join(" "),
        ),
        ("a leading +", format!("+{code}")),
        ("a leading +, grouped", format!("+{}", grouped(" "))),
        ("a trailing +", format!("{code}+")),
        (
            "a sign in the middle",
            format!("{}+{}", &code[..8], &code[8..]),
        ),
        ("in brackets", format!("({code})")),
        ("a leading #", format!("#{code}")),
        ("in quotes", format!("\"{code}\"")),
    ] {
        add(what, text);
    }
    for c in OTHER_SEPARATORS {
        add(&format!("{c:?} between groups"), grouped(&c.to_string()));
    }
    for c in INVISIBLE {
        add(&format!("{c:?} between groups"), grouped(&c.to_string()));
        add(&format!("{c:?} before the code"), format!("{c}{code}"));
        add(&format!("{c:?} after the code"), format!("{code}{c}"));
        add(
            &format!("{c:?} inside the code"),
            format!("{}{c}{}", &code[..7], &code[7..]),
        );
    }

    for empty in ["", " ", "\n", "\r\n", "\t", " \t \r\n"] {
        add("an empty line", empty.to_string());
    }
    add("a megabyte of sevens", "7".repeat(1 << 20));
    add("a megabyte of the code", code.repeat((1 << 20) / 16));
    bad
}

/// Text that is not a code in one of its documented forms (16 ASCII digits, bare or as four
/// groups of 4 split by single spaces or by single hyphens, with ASCII whitespace around) is
/// refused as `redeem.invalid_format` before anything happens, though each is built from the
/// code of an active card: that code in the digits of every other script, each numeric
/// character of Unicode in place of a digit, letters that look like digits, 15, 17 and 32
/// digits, separators in odd places, doubled, mixed or of another kind, invisible characters
/// (no-break, zero-width, bidi marks, a byte order mark) between, before, after or inside the
/// groups, a sign, brackets, an empty line, a megabyte. Nothing is written and nothing counted:
/// no attempt logged, no window slot taken, no audit record, no card event, no transfer; the
/// card stays active and its code, typed in a documented form, still redeems.
async fn malformed_codes_write_and_count_nothing<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 1).await;
    let serial = card(&batch, 0);
    sell(&env, serial).await;
    let alice = account(&env, "US", "USD").await;
    let code = code_of(&env, &batch, serial);
    assert_eq!(code.len(), 16, "the printer file holds the bare digits");
    // The documented forms all read as the code, so each form below fails for its own fault.
    for form in [
        code.clone(),
        format!(
            "{} {} {} {}",
            &code[..4],
            &code[4..8],
            &code[8..12],
            &code[12..]
        ),
        format!(
            "{}-{}-{}-{}",
            &code[..4],
            &code[4..8],
            &code[8..12],
            &code[12..]
        ),
        format!(" \t{code}\r\n"),
    ] {
        let parsed = tender::domain::Code::parse(&form).unwrap();
        assert_eq!(parsed.expose_secret(), code, "{form:?}");
    }
    let counted = [
        "SELECT count(*) FROM redeem_attempt",
        "SELECT count(*) FROM redeem_window",
        "SELECT count(*) FROM audit_record",
        "SELECT count(*) FROM card_event",
        "SELECT count(*) FROM transfer",
        "SELECT count(*) FROM card WHERE state = 1",
    ];
    let mut before = Vec::new();
    for query in counted {
        before.push(env.count(query).await);
    }

    let bad = malformed_forms_of(&code);
    for (what, text) in &bad {
        let shown: String = text.chars().take(40).collect();
        assert_eq!(
            refusal(redeem(&env, &alice, text, None).await),
            "redeem.invalid_format",
            "{what}: {shown:?}"
        );
    }

    let mut after = Vec::new();
    for query in counted {
        after.push(env.count(query).await);
    }
    assert_eq!(after, before, "{counted:?}");
    assert_eq!(after[..2], [0, 0], "no attempt logged, no slot taken");
    assert_eq!(after[5], 1, "the card is still active");
    assert_eq!(balance(&env, &alice).await, "0.00 USD");
    let typed = format!(
        " {}-{}-{}-{}\n",
        &code[..4],
        &code[4..8],
        &code[8..12],
        &code[12..]
    );
    let redeemed = redeem(&env, &alice, &typed, None).await.unwrap();
    assert_eq!(redeemed.balance_after.to_string(), "25.00 USD");
}
both_backends!(malformed, malformed_codes_write_and_count_nothing);

/// A code tried before its card was sold marks the card exposed, with an audit record: the
/// code may have been read off the shelf, so a live sale of it is refused.
async fn a_code_tried_before_the_sale_blocks_the_live_sale<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 1).await;
    let serial = card(&batch, 0);
    let alice = account(&env, "US", "USD").await;
    let code = code_of(&env, &batch, serial);
    assert_eq!(
        refusal(redeem(&env, &alice, &code, None).await),
        "redeem.not_activated"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_record WHERE action = 'card.exposed'")
            .await,
        1
    );
    // Tried again: still one exposure, one audit record.
    assert_eq!(
        refusal(redeem(&env, &alice, &code, None).await),
        "redeem.not_activated"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_record WHERE action = 'card.exposed'")
            .await,
        1
    );
    let form = ActivateForm {
        pos: pos("sale-1"),
        serial: serial.to_string(),
        to_serial: None,
        value: None,
        purchaser_state: None,
    };
    let refused = env
        .app
        .services()
        .cards()
        .activate(&form, &actor())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "card.exposed");
    assert_books_hold(&env).await;
}
both_backends!(exposure, a_code_tried_before_the_sale_blocks_the_live_sale);

/// A retry under a key that already succeeded is answered even while the account's limit
/// holds: it evaluates no new code, so it needs no slot.
async fn a_retry_is_answered_while_the_limit_holds<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 1).await;
    let serial = card(&batch, 0);
    sell(&env, serial).await;
    let alice = account(&env, "US", "USD").await;
    let code = code_of(&env, &batch, serial);
    let first = redeem(&env, &alice, &code, Some("k-1")).await.unwrap();
    for n in 0..5 {
        let guess = format!("7000 0000 0000 000{n}");
        assert_eq!(
            refusal(redeem(&env, &alice, &guess, None).await),
            "redeem.not_found"
        );
    }
    assert_eq!(
        refusal(redeem(&env, &alice, "7000 0000 0000 0009", None).await),
        "redeem.rate_limited"
    );
    let again = redeem(&env, &alice, &code, Some("k-1")).await.unwrap();
    assert!(again.replayed);
    assert_eq!(
        Redeemed {
            replayed: false,
            ..again
        },
        first
    );
    assert_eq!(balance(&env, &alice).await, "25.00 USD");
}
both_backends!(
    retry_when_limited,
    a_retry_is_answered_while_the_limit_holds
);

/// Generic mode: every refusal about the card reads as one `redeem.not_redeemable`, answered no
/// sooner than the floor, while the attempt log keeps the real reason and a never-sold card is
/// still marked exposed. Refusals that tell nothing of the card keep their own codes: a
/// malformed code, a full window. A success is unchanged.
async fn generic_mode_answers_every_card_refusal_alike<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 3).await;
    let (sold, unsold, blocked) = (card(&batch, 0), card(&batch, 1), card(&batch, 2));
    sell(&env, sold).await;
    sell(&env, blocked).await;
    env.app
        .services()
        .cards()
        .block(&blocked.to_string(), "lost_in_transit", &actor())
        .await
        .unwrap();
    let generic = env
        .reopen(&Settings {
            redeem_generic: true,
            ..env.db.settings()
        })
        .await;
    let redemption = generic.services().redemption();
    let alice = account(&env, "US", "USD").await;
    let tries = [
        ("7000 0000 0000 0001".to_string(), "redeem.not_found"),
        (code_of(&env, &batch, unsold), "redeem.not_activated"),
        (code_of(&env, &batch, blocked), "redeem.blocked"),
    ];
    for (code, _) in &tries {
        let began = std::time::Instant::now();
        let error = redemption
            .redeem(&alice, code, None, &actor())
            .await
            .unwrap_err();
        assert_eq!(error.code(), "redeem.not_redeemable");
        assert!(began.elapsed() >= GENERIC_REFUSAL_FLOOR);
    }
    let logged = redemption
        .attempts(
            Some(&alice),
            None,
            tender::domain::PageRows::new(10).unwrap(),
        )
        .await
        .unwrap();
    let mut reasons: Vec<_> = logged.iter().map(|a| a.outcome.as_str()).collect();
    reasons.sort_unstable();
    let mut expected: Vec<_> = tries.iter().map(|(_, reason)| *reason).collect();
    expected.sort_unstable();
    assert_eq!(reasons, expected, "the log keeps the real reasons");
    let view = env
        .app
        .services()
        .cards()
        .show(&unsold.to_string())
        .await
        .unwrap();
    assert!(view.exposed_at.is_some(), "the unsold card is exposed");

    let malformed = redemption.redeem(&alice, "1234", None, &actor()).await;
    assert_eq!(refusal(malformed), "redeem.invalid_format");
    let code = code_of(&env, &batch, sold);
    let redeemed = redemption
        .redeem(&alice, &code, None, &actor())
        .await
        .unwrap();
    assert_eq!(redeemed.balance_after.to_string(), "25.00 USD");
    // Two more failures fill the hour's 5: the next attempt is told to wait, not "not
    // redeemable", since waiting is what helps.
    for n in 2..4 {
        let guess = format!("7000 0000 0000 000{n}");
        let error = redemption.redeem(&alice, &guess, None, &actor()).await;
        assert_eq!(refusal(error), "redeem.not_redeemable");
    }
    let limited = redemption.redeem(&alice, &code, None, &actor()).await;
    assert_eq!(refusal(limited), "redeem.rate_limited");
    assert_books_hold(&env).await;
}
both_backends!(generic_mode, generic_mode_answers_every_card_refusal_alike);

/// A caller serving many customers is throttled by its own windows, never everyone: once its
/// hour is used up its attempts are refused with the time to retry, a log event and the
/// `tender_redeem_caller_throttled_total` metric raise the alarm, and another caller redeems
/// into the same account meanwhile.
async fn a_busy_caller_is_throttled_with_an_alarm<S: Store>(env: TestApp<S>) {
    let batch = shelf(&env, 1).await;
    let serial = card(&batch, 0);
    sell(&env, serial).await;
    let one = WindowLimits { hour: 2, day: 2 };
    let app = with_limits(
        &env,
        RedeemLimits {
            account: WindowLimits { hour: 5, day: 20 },
            caller: one,
            address: one,
        },
    )
    .await;
    let redemption = app.services().redemption();
    let store_service = tender::domain::Actor::cli("redeem-service", None).unwrap();
    for n in 0..2 {
        // Each customer's own account: only the caller's window fills.
        let customer = account(&env, "US", "USD").await;
        let guess = format!("7000 0000 0000 000{n}");
        let error = redemption
            .redeem(&customer, &guess, None, &store_service)
            .await;
        assert_eq!(refusal(error), "redeem.not_found");
    }
    let alice = account(&env, "US", "USD").await;
    let code = code_of(&env, &batch, serial);
    let error = redemption
        .redeem(&alice, &code, None, &store_service)
        .await
        .unwrap_err();
    assert!(matches!(error, RedeemError::RateLimited { .. }), "{error}");
    let metrics = app.services().metrics();
    assert_eq!(metrics.callers_throttled(), 1);
    assert_eq!(metrics.redemptions("redeem.not_found"), 2);
    assert_eq!(metrics.redemptions("redeem.rate_limited"), 1);
    assert!(
        metrics
            .render()
            .contains("\ntender_redeem_caller_throttled_total 1\n")
    );
    let redeemed = redemption
        .redeem(&alice, &code, None, &actor())
        .await
        .unwrap();
    assert_eq!(redeemed.amount.to_string(), "25.00 USD");
    assert_eq!(metrics.redemptions("ok"), 1);
    let malformed = redemption.redeem(&alice, "1234", None, &actor()).await;
    assert_eq!(refusal(malformed), "redeem.invalid_format");
    assert_eq!(metrics.redemptions("redeem.invalid_format"), 1);
}
both_backends!(busy_caller, a_busy_caller_is_throttled_with_an_alarm);
