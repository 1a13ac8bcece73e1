//! The customer's page below the browser, on both backends: sign-in links and sessions through
//! the service, the redemption limits per end-user address, the history's details, the link
//! route of the API, the pages' raw HTTP and the `tender account link` command.
//!
//! - **Links.** A minted link is the public URL, `/account/sign-in` and `token=K.ID.MAC`. It
//!   opens one session, once (`session.link_used` after) and only within
//!   `SIGN_IN_LINK_LIFETIME` (`session.link_expired` after); a token changed anywhere, cut, made
//!   longer, empty or signed under a lookup key tender does not hold is `session.link_invalid`
//!   and leaves the link unused. Minting for an account that does not exist is
//!   `account.not_found`, for an id that is none `account.bad_id`. The database holds the
//!   link's random id and the SHA-256 of the cookie: neither the token nor the cookie.
//! - **Sessions.** A session names its account and a 64-hex-digit form token; it ends after
//!   `SESSION_LIFETIME` (`session.expired`) or at sign-out (`session.ended`); a cookie that is
//!   not 64 hex digits, or one tender never gave, is `session.none`; a form with another token
//!   is `session.csrf`. A notice left for the page is shown once.
//! - **Audit.** Minting, opening and signing out each append one record
//!   (`sign_in.link_minted` by the minting actor, `sign_in.session_opened` and
//!   `sign_in.session_ended` by `customer:N`); the trail verifies, and no record holds a token
//!   or a cookie.
//! - **Addresses.** The page's redemptions count per end-user address: an IPv4 address alone,
//!   an IPv6 address by its /64. Its wrong codes from many accounts exhaust the address's
//!   window; another address is not held; the attempt log names the address.
//! - **History.** A redemption's line names its card; a spend's and a refund's, the service and
//!   the order; other lines neither.
//! - **API.** `POST /v1/accounts/{id}/sign-in-links` takes a redeem key: 201 with
//!   `{account_id, url, expires_at}`, `Cache-Control: no-store`; a support key 403, none 401, an
//!   unknown account 404, a query string 400.
//! - **Pages.** Every page carries the Content-Security-Policy and its companions; without a
//!   session `/account` is 401, a bad link 400; the stylesheet is served; a cross-site or
//!   oversized form redeems nothing; behind a proxy, the named header's last address counts
//!   and a form without the header is refused.
//! - **CLI.** `tender account link N` prints the link on its first line (`--format json`: an
//!   object with the url); an unknown account fails with `account.not_found`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use tender::app::App;
use tender::config::{ClientAddressHeader, RedeemLimits, Settings, WindowLimits};
use tender::domain::{AccountId, Actor, ClientAddress, PageRows, TransferKind};
use tender::error::Classify;
use tender::keys::{KeyId, KeyPurpose, KeyRing, SecretKey};
use tender::service::ledger::{AdjustForm, SpendForm};
use tender::service::redemption::{Caller, RedeemError, Redeemed};
use tender::service::sessions::{
    Opened, SESSION_LIFETIME, SIGN_IN_LINK_LIFETIME, SessionError, csrf_token, sign,
};
use tender::store::{SqliteStore, Store};
use tender::web::CONTENT_SECURITY_POLICY_VALUE;

use crate::helpers::http::{Reply, call, get, key, parse_reply, start};
use crate::helpers::{
    TestApp, TestDb, actor, both_backends, card, cards_on_sale, code_of, epoch, open_account,
    query, spend_and_refund, tender_captured,
};

/// The public URL when the settings name none.
const PUBLIC_URL: &str = "http://127.0.0.1:8080";

/// How long a `tender` process may take.
const PROCESS_GRACE: Duration = Duration::from_secs(60);

fn refusal<T: std::fmt::Debug>(result: Result<T, SessionError>) -> &'static str {
    result.expect_err("the session service refuses").code()
}

fn lifetime(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap()
}

/// A minted link to `account`, by the library tests' actor.
async fn mint<S: Store>(env: &TestApp<S>, account: &str) -> String {
    env.app
        .services()
        .sessions()
        .mint(account, &actor())
        .await
        .unwrap()
        .url
}

/// The token a link carries.
fn token_of(url: &str) -> &str {
    url.split_once("?token=").expect("a link carries a token").1
}

/// A session opened with a fresh link to `account`.
async fn signed_in<S: Store>(env: &TestApp<S>, account: &str) -> Opened {
    let url = mint(env, account).await;
    env.app
        .services()
        .sessions()
        .sign_in(token_of(&url))
        .await
        .unwrap()
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A hex digit other than `c`.
fn other_digit(c: char) -> char {
    if c == '0' { '1' } else { '0' }
}

/// `text` with its character at `at` (ASCII) replaced by another hex digit.
fn altered_at(text: &str, at: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    bytes[at] = other_digit(bytes[at] as char) as u8;
    String::from_utf8(bytes).unwrap()
}

async fn balance<S: Store>(env: &TestApp<S>, account: &str) -> String {
    let account = env.app.services().ledger().account(account).await.unwrap();
    account.balance.to_string()
}

// ---------------------------------------------------------------------------------------------
// Links

/// A link is the public URL's sign-in path with a `K.ID.MAC` token; it opens one session, once,
/// and not after its lifetime; an altered token is refused and does not use the link up.
async fn a_link_opens_one_session_once_within_its_lifetime<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    let sessions = env.app.services().sessions();
    let minted = sessions.mint(&account, &actor()).await.unwrap();
    assert_eq!(minted.account_id.to_string(), account);
    assert_eq!(minted.expires_at, epoch() + lifetime(SIGN_IN_LINK_LIFETIME));
    let prefix = format!("{PUBLIC_URL}/account/sign-in?token=");
    assert!(minted.url.starts_with(&prefix), "{}", minted.url);
    let token = token_of(&minted.url);
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    assert!(parts[0].parse::<u16>().is_ok(), "{token}");
    assert!(is_hex(parts[1], 32), "{token}");
    assert!(is_hex(parts[2], 64), "{token}");

    let opened = sessions.sign_in(token).await.unwrap();
    assert_eq!(opened.account_id.to_string(), account);
    assert!(is_hex(&opened.cookie, 64));
    assert_eq!(opened.expires_at, epoch() + lifetime(SESSION_LIFETIME));
    assert_eq!(refusal(sessions.sign_in(token).await), "session.link_used");

    // Many clicks at once on one link: one session.
    let url = mint(&env, &account).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let app = env.app.clone();
        let token = token_of(&url).to_string();
        tasks.push(tokio::spawn(async move {
            app.services().sessions().sign_in(&token).await
        }));
    }
    let mut opened = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => opened += 1,
            Err(error) => assert_eq!(error.code(), "session.link_used"),
        }
    }
    assert_eq!(opened, 1);

    // Good until its lifetime is over, to the millisecond.
    let on_time = mint(&env, &account).await;
    let late = mint(&env, &account).await;
    env.clock
        .advance(lifetime(SIGN_IN_LINK_LIFETIME) - TimeDelta::milliseconds(1));
    sessions.sign_in(token_of(&on_time)).await.unwrap();
    env.clock.advance(TimeDelta::milliseconds(1));
    assert_eq!(
        refusal(sessions.sign_in(token_of(&late)).await),
        "session.link_expired"
    );

    // An altered token: any digit of its MAC or its id, its key, a part more or less, cut
    // short, empty, or far too long.
    let fresh = mint(&env, &account).await;
    let token = token_of(&fresh);
    let (key, rest) = token.split_once('.').unwrap();
    let mut altered = Vec::new();
    for at in key.len() + 1..token.len() {
        if token.as_bytes()[at] != b'.' {
            altered.push(altered_at(token, at));
        }
    }
    assert_eq!(altered.len(), 32 + 64);
    altered.extend([
        format!("2.{rest}"),
        format!("0.{rest}"),
        format!("65537.{rest}"),
        format!("{token}.00"),
        token.rsplit_once('.').unwrap().0.to_string(),
        token[..token.len() - 2].to_string(),
        format!("{token}00"),
        format!("{token} "),
        token.replace('.', ":"),
        String::new(),
        ".".repeat(2),
        format!("{token}{}", "0".repeat(1000 - token.len())),
        "1".repeat(1000),
    ]);
    for bad in &altered {
        assert_eq!(
            refusal(sessions.sign_in(bad).await),
            "session.link_invalid",
            "{bad}"
        );
    }
    // None of them used the link up.
    assert_eq!(
        env.count("SELECT count(*) FROM sign_in_link WHERE used_ms IS NULL")
            .await,
        2,
        "the late link and the fresh one"
    );
    sessions.sign_in(token).await.unwrap();
}
both_backends!(links, a_link_opens_one_session_once_within_its_lifetime);

/// A token made under a lookup key tender does not hold is not valid, whether it is another
/// installation's real link or this one's link id signed under a stranger's key; minting needs
/// an account that exists.
async fn only_this_installations_key_makes_a_link<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    let sessions = env.app.services().sessions();

    let elsewhere = TestApp::<SqliteStore>::new(TestDb::sqlite()).await;
    let theirs = open_account(&elsewhere, "US", "USD").await;
    let foreign = mint(&elsewhere, &theirs).await;
    assert_eq!(
        refusal(sessions.sign_in(token_of(&foreign)).await),
        "session.link_invalid"
    );

    let ours = mint(&env, &account).await;
    let token = token_of(&ours);
    let mut parts = token.split('.');
    let key_id = KeyId::new(parts.next().unwrap().parse().unwrap()).unwrap();
    let link_id = parts.next().unwrap();
    let stranger = KeyRing::single(KeyPurpose::Lookup, key_id, SecretKey::generate());
    let forged = sign(&stranger, key_id, link_id).unwrap();
    assert_ne!(forged, token);
    assert_eq!(
        refusal(sessions.sign_in(&forged).await),
        "session.link_invalid"
    );
    sessions.sign_in(token).await.unwrap();

    for (id, code) in [
        ("999999", "account.not_found"),
        ("abc", "account.bad_id"),
        ("0", "account.bad_id"),
    ] {
        assert_eq!(refusal(sessions.mint(id, &actor()).await), code, "{id}");
    }
    assert_eq!(
        env.count("SELECT count(*) FROM sign_in_link").await,
        1,
        "a refused minting records no link"
    );
}
both_backends!(foreign_links, only_this_installations_key_makes_a_link);

/// The database keeps a link by its random id and a session by the SHA-256 of its cookie:
/// neither the token nor the cookie is stored anywhere.
async fn the_database_keeps_no_token_and_no_cookie<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    let url = mint(&env, &account).await;
    let token = token_of(&url).to_string();
    let link_id = token.split('.').nth(1).unwrap().to_string();
    let opened = env.app.services().sessions().sign_in(&token).await.unwrap();

    let links: Vec<(String, i64, String, Option<i64>)> = query(
        &env,
        "SELECT link_id, account_id, minted_by, used_ms FROM sign_in_link".into(),
    )
    .await;
    assert_eq!(links.len(), 1);
    let (stored_id, stored_account, minted_by, used_ms) = &links[0];
    assert!(is_hex(stored_id, 32));
    assert_eq!(stored_id, &link_id);
    assert_eq!(stored_account.to_string(), account);
    assert_eq!(minted_by, "cli:test");
    assert_eq!(*used_ms, Some(epoch().timestamp_millis()));

    let sessions: Vec<(Vec<u8>, i64, String)> = query(
        &env,
        "SELECT session_hash, account_id, link_id FROM web_session".into(),
    )
    .await;
    assert_eq!(sessions.len(), 1);
    let (hash, session_account, session_link) = &sessions[0];
    let secret = hex::decode(&opened.cookie).unwrap();
    assert_eq!(hash.len(), 32);
    assert_ne!(hash, &secret);
    assert_ne!(hash.as_slice(), opened.cookie.as_bytes());
    assert_eq!(hash.as_slice(), Sha256::digest(&secret).as_slice());
    assert_eq!(session_account.to_string(), account);
    assert_eq!(session_link, &link_id);

    let notices = env
        .count("SELECT count(*) FROM web_session WHERE notice IS NOT NULL")
        .await;
    assert_eq!(notices, 0);
}
both_backends!(stored_secrets, the_database_keeps_no_token_and_no_cookie);

// ---------------------------------------------------------------------------------------------
// Sessions

/// A session names its account and its form token until its lifetime is over or it is signed
/// out of; a cookie tender did not give names none; a form needs the session's token; a notice
/// is read once.
async fn a_session_lasts_until_its_lifetime_or_sign_out<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    let sessions = env.app.services().sessions();
    let leaving = signed_in(&env, &account).await;
    let staying = signed_in(&env, &account).await;
    assert_ne!(leaving.cookie, staying.cookie);

    let current = sessions.current(&staying.cookie).await.unwrap();
    assert_eq!(current.account.id.to_string(), account);
    assert_eq!(current.account.balance.to_string(), "0.00 USD");
    assert!(is_hex(&current.csrf, 64), "{}", current.csrf);
    assert_eq!(current.csrf, csrf_token(&staying.cookie));
    assert_ne!(current.csrf, staying.cookie);
    assert_ne!(
        current.csrf,
        sessions.current(&leaving.cookie).await.unwrap().csrf,
        "each session its own form token"
    );
    assert_eq!(current.notice, None);
    assert_eq!(current.expires_at, epoch() + lifetime(SESSION_LIFETIME));

    // Cookies that name no session.
    let unknown = "ab".repeat(32);
    let non_hex = "zz".repeat(32);
    let short = &staying.cookie[..62];
    let long = format!("{}00", staying.cookie);
    for cookie in ["", short, &long, &non_hex, &unknown] {
        assert_eq!(
            refusal(sessions.current(cookie).await),
            "session.none",
            "{cookie:?}"
        );
    }

    // A form with another session's token, none, or a made-up one.
    let others = sessions.current(&leaving.cookie).await.unwrap().csrf;
    for csrf in [others.as_str(), "", &"0".repeat(64), &current.csrf[..63]] {
        assert_eq!(
            refusal(sessions.for_form(&staying.cookie, csrf).await),
            "session.csrf",
            "{csrf:?}"
        );
    }
    let form = sessions
        .for_form(&staying.cookie, &current.csrf)
        .await
        .unwrap();
    assert_eq!(form.account.id.to_string(), account);

    // A notice is shown once.
    sessions
        .leave_notice(&staying.cookie, r#"{"outcome":"test"}"#)
        .await
        .unwrap();
    let shown = sessions.current(&staying.cookie).await.unwrap();
    assert_eq!(shown.notice.as_deref(), Some(r#"{"outcome":"test"}"#));
    assert_eq!(
        sessions.current(&staying.cookie).await.unwrap().notice,
        None
    );

    // Signed out: ended, and signing out again changes nothing.
    sessions.sign_out(&leaving.cookie).await.unwrap();
    assert_eq!(
        refusal(sessions.current(&leaving.cookie).await),
        "session.ended"
    );
    assert_eq!(
        refusal(sessions.for_form(&leaving.cookie, &others).await),
        "session.ended"
    );
    sessions.sign_out(&leaving.cookie).await.unwrap();
    sessions.sign_out(&unknown).await.unwrap();
    sessions.current(&staying.cookie).await.unwrap();

    // Good until its lifetime is over, to the millisecond.
    env.clock
        .advance(lifetime(SESSION_LIFETIME) - TimeDelta::milliseconds(1));
    sessions.current(&staying.cookie).await.unwrap();
    env.clock.advance(TimeDelta::milliseconds(1));
    assert_eq!(
        refusal(sessions.current(&staying.cookie).await),
        "session.expired"
    );
    assert_eq!(
        refusal(sessions.for_form(&staying.cookie, &current.csrf).await),
        "session.expired"
    );
    assert_eq!(
        refusal(sessions.current(&leaving.cookie).await),
        "session.ended"
    );
}
both_backends!(session_life, a_session_lasts_until_its_lifetime_or_sign_out);

// ---------------------------------------------------------------------------------------------
// Audit

/// Minting, opening and signing out each append one record, by the minting actor and then by
/// the customer; the trail verifies; no record holds the token, its MAC or the cookie.
async fn signing_in_and_out_is_audited_without_its_secrets<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    let before = env.count("SELECT count(*) FROM audit_record").await;
    let url = mint(&env, &account).await;
    let token = token_of(&url).to_string();
    let link_id = token.split('.').nth(1).unwrap().to_string();
    let mac = token.rsplit('.').next().unwrap().to_string();
    let sessions = env.app.services().sessions();
    let opened = sessions.sign_in(&token).await.unwrap();
    sessions.sign_out(&opened.cookie).await.unwrap();
    sessions.sign_out(&opened.cookie).await.unwrap();
    // Refusals are not audited.
    assert!(sessions.sign_in(&token).await.is_err());
    assert!(sessions.current(&opened.cookie).await.is_err());
    assert_eq!(
        env.count("SELECT count(*) FROM audit_record").await,
        before + 3
    );

    let mut records: Vec<(String, String, String, String)> = query(
        &env,
        "SELECT action, actor, subject, details FROM audit_record \
         WHERE action LIKE 'sign_in.%'"
            .into(),
    )
    .await;
    records.sort();
    let customer = format!("customer:{account}");
    let subject = format!("account:{account}");
    let actions: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|(action, actor, subject, _)| (action.as_str(), actor.as_str(), subject.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("sign_in.link_minted", "cli:test", subject.as_str()),
            ("sign_in.session_ended", customer.as_str(), subject.as_str()),
            (
                "sign_in.session_opened",
                customer.as_str(),
                subject.as_str()
            ),
        ]
    );
    let details: Vec<Value> = records
        .iter()
        .map(|(_, _, _, details)| serde_json::from_str(details).unwrap())
        .collect();
    assert_eq!(details[0]["link"], link_id.as_str());
    let expires: DateTime<Utc> = details[0]["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires, epoch() + lifetime(SIGN_IN_LINK_LIFETIME));
    assert_eq!(details[1], serde_json::json!({}));
    assert_eq!(details[2]["link"], link_id.as_str());

    let hash = hex::encode(Sha256::digest(hex::decode(&opened.cookie).unwrap()));
    let all: Vec<(String, String, String)> = query(
        &env,
        "SELECT actor, subject, details FROM audit_record".into(),
    )
    .await;
    for (actor, subject, details) in &all {
        for secret in [&token, &mac, &opened.cookie, &hash] {
            for text in [actor, subject, details] {
                assert!(!text.contains(secret.as_str()), "{text} holds a secret");
            }
        }
    }
    let report = env.verify().await;
    assert!(report.is_intact(), "{:?}", report.problem);
}
both_backends!(audit, signing_in_and_out_is_audited_without_its_secrets);

// ---------------------------------------------------------------------------------------------
// Redemption limits by address

/// The app again over the same database, with room for 3 attempts an hour per address.
async fn with_address_limit<S: Store>(env: &TestApp<S>) -> App<S> {
    env.reopen(&Settings {
        redeem_limits: RedeemLimits {
            address: WindowLimits { hour: 3, day: 3 },
            ..RedeemLimits::default()
        },
        ..env.db.settings()
    })
    .await
}

/// One attempt on the customer's page: a new account's customer, from `ip`.
async fn attempt_from<S: Store>(
    env: &TestApp<S>,
    app: &App<S>,
    code: &str,
    ip: &str,
) -> Result<Redeemed, RedeemError> {
    let account = open_account(env, "US", "USD").await;
    let id = AccountId::parse(&account).unwrap();
    let ip: IpAddr = ip.parse().unwrap();
    app.services()
        .redemption()
        .redeem_as(
            &account,
            code,
            None,
            &Actor::customer(id),
            Caller::Address(ClientAddress::of(ip)),
        )
        .await
}

fn outcome(result: Result<Redeemed, RedeemError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(error) => error.code(),
    }
}

/// Three wrong codes from three accounts behind one IPv4 address fill its window: a fourth
/// account there is refused, even with a valid code, while another address is not held. IPv6
/// addresses count by their /64, and an IPv4 address mapped into IPv6 as itself. The attempt
/// log names the address, never the customer.
async fn guesses_are_limited_per_end_user_address<S: Store>(env: TestApp<S>) {
    let batch = cards_on_sale(&env, 2, 2).await;
    let app = with_address_limit(&env).await;
    let wrong = |n: u32| format!("7000 0000 0000 {n:04}");

    for n in 0..3 {
        let result = attempt_from(&env, &app, &wrong(n), "203.0.113.7").await;
        assert_eq!(outcome(result), "redeem.not_found");
    }
    let result = attempt_from(&env, &app, &wrong(3), "203.0.113.7").await;
    let Err(RedeemError::RateLimited { retry_at, .. }) = result else {
        panic!("{result:?}");
    };
    // The hour and the day are both full: back at the day's end.
    assert_eq!(retry_at, epoch() + TimeDelta::hours(15));
    let valid = code_of(&env, &batch, 0);
    let result = attempt_from(&env, &app, &valid, "203.0.113.7").await;
    assert_eq!(outcome(result), "redeem.rate_limited");
    let result = attempt_from(&env, &app, &valid, "::ffff:203.0.113.7").await;
    assert_eq!(outcome(result), "redeem.rate_limited");
    assert_eq!(
        env.count("SELECT count(*) FROM card WHERE state = 1").await,
        2,
        "no card was evaluated"
    );
    let result = attempt_from(&env, &app, &wrong(4), "203.0.113.8").await;
    assert_eq!(outcome(result), "redeem.not_found");
    let result = attempt_from(&env, &app, &valid, "203.0.113.8").await;
    assert_eq!(outcome(result), "ok");

    // Two addresses of one /64 share its window; the next /64 has its own.
    for (n, ip) in [
        (10, "2001:db8:1:2::1"),
        (11, "2001:db8:1:2::2"),
        (12, "2001:db8:1:2:ffff:ffff:ffff:ffff"),
    ] {
        let result = attempt_from(&env, &app, &wrong(n), ip).await;
        assert_eq!(outcome(result), "redeem.not_found", "{ip}");
    }
    let result = attempt_from(&env, &app, &wrong(13), "2001:db8:1:2::1").await;
    assert_eq!(outcome(result), "redeem.rate_limited");
    let result = attempt_from(&env, &app, &wrong(14), "2001:db8:1:2:aaaa::9").await;
    assert_eq!(outcome(result), "redeem.rate_limited");
    let result = attempt_from(&env, &app, &wrong(15), "2001:db8:1:3::1").await;
    assert_eq!(outcome(result), "redeem.not_found");

    let logged: Vec<(String, String)> = query(
        &env,
        "SELECT caller, outcome FROM redeem_attempt ORDER BY attempt_id".into(),
    )
    .await;
    let expected = [
        ("address:203.0.113.7", "redeem.not_found"),
        ("address:203.0.113.7", "redeem.not_found"),
        ("address:203.0.113.7", "redeem.not_found"),
        ("address:203.0.113.7", "redeem.rate_limited"),
        ("address:203.0.113.7", "redeem.rate_limited"),
        ("address:203.0.113.7", "redeem.rate_limited"),
        ("address:203.0.113.8", "redeem.not_found"),
        ("address:2001:db8:1:2::/64", "redeem.not_found"),
        ("address:2001:db8:1:2::/64", "redeem.not_found"),
        ("address:2001:db8:1:2::/64", "redeem.not_found"),
        ("address:2001:db8:1:2::/64", "redeem.rate_limited"),
        ("address:2001:db8:1:2::/64", "redeem.rate_limited"),
        ("address:2001:db8:1:3::/64", "redeem.not_found"),
    ];
    let logged: Vec<(&str, &str)> = logged
        .iter()
        .map(|(caller, outcome)| (caller.as_str(), outcome.as_str()))
        .collect();
    assert_eq!(logged, expected);
    // The success is the customer's, in the trail.
    assert_eq!(
        env.count(
            "SELECT count(*) FROM audit_record \
             WHERE action = 'card.redeemed' AND actor LIKE 'customer:%'"
        )
        .await,
        1
    );
    crate::helpers::assert_whole(&env).await;
}
both_backends!(address_limits, guesses_are_limited_per_end_user_address);

// ---------------------------------------------------------------------------------------------
// History

/// The history names what the customer knows each line by: the card of a redemption, the
/// service and order of a spend and of the refund of that order; nothing for an adjustment.
async fn history_lines_name_their_card_service_and_order<S: Store>(env: TestApp<S>) {
    let batch = cards_on_sale(&env, 1, 1).await;
    let account = open_account(&env, "US", "USD").await;
    let services = env.app.services();
    services
        .redemption()
        .redeem(&account, &code_of(&env, &batch, 0), None, &actor())
        .await
        .unwrap();
    spend_and_refund(&env.app, &account, "10.00", "4.00").await;
    let ledger = services.ledger();
    let goodwill = AdjustForm {
        account: account.clone(),
        amount: "1.00".into(),
        currency: "USD".into(),
        reason: "goodwill".into(),
    };
    ledger.adjust(&goodwill, &actor()).await.unwrap();
    // Another account's order of the same id, elsewhere: the refund still names its own.
    let other = open_account(&env, "US", "USD").await;
    let credit = AdjustForm {
        account: other.clone(),
        ..goodwill.clone()
    };
    ledger.adjust(&credit, &actor()).await.unwrap();
    let elsewhere = SpendForm {
        account: other.clone(),
        amount: "1.00".into(),
        currency: "USD".into(),
        order: "A-1001".into(),
        service: "music-store".into(),
        effective_at: None,
    };
    ledger.spend(&elsewhere, &actor()).await.unwrap();

    let lines = ledger
        .history(&account, None, PageRows::new(10).unwrap())
        .await
        .unwrap();
    let shown: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                l.kind,
                l.amount.to_string(),
                l.card,
                l.service.as_deref(),
                l.order.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (
                TransferKind::Adjustment,
                "1.00 USD".to_string(),
                None,
                None,
                None
            ),
            (
                TransferKind::Refund,
                "4.00 USD".to_string(),
                None,
                Some("app-store"),
                Some("A-1001")
            ),
            (
                TransferKind::Spend,
                "-10.00 USD".to_string(),
                None,
                Some("app-store"),
                Some("A-1001")
            ),
            (
                TransferKind::Redemption,
                "25.00 USD".to_string(),
                Some(card(&batch, 0)),
                None,
                None
            ),
        ]
    );
    assert!(lines.iter().all(|l| l.trade_in.is_none()));
    assert_eq!(lines[0].balance_after.to_string(), "20.00 USD");
    crate::helpers::assert_whole(&env).await;
}
both_backends!(history, history_lines_name_their_card_service_and_order);

// ---------------------------------------------------------------------------------------------
// The API

fn error_code(reply: &Reply) -> &str {
    reply.body["error"]["code"].as_str().unwrap_or_default()
}

/// A redeem key mints a link: 201, `{account_id, url, expires_at}`, not to be stored, audited
/// under the key; its url signs in. A support key is 403, no key 401, an unknown account 404,
/// a query string 400 before anything is minted.
async fn the_api_mints_links_for_redeem_keys_only<S: Store>(env: TestApp<S>) {
    let web = key(&env, "web", "redeem").await;
    let desk = key(&env, "desk", "support").await;
    let account = open_account(&env, "US", "USD").await;
    let (addr, stop, server) = start(&env).await;
    let path = format!("/v1/accounts/{account}/sign-in-links");

    let minted = call(addr, "POST", &path, Some(&web), None, None).await;
    assert_eq!(minted.status, 201, "{}", minted.text);
    assert_eq!(minted.header("cache-control"), Some("no-store"));
    assert!(
        minted
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
    );
    let fields: Vec<&String> = minted.body.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["account_id", "expires_at", "url"]);
    assert_eq!(minted.body["account_id"].to_string(), account);
    let expires: DateTime<Utc> = minted.body["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires, epoch() + lifetime(SIGN_IN_LINK_LIFETIME));
    let url = minted.body["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{PUBLIC_URL}/account/sign-in?token=")),
        "{url}"
    );
    let opened = env
        .app
        .services()
        .sessions()
        .sign_in(token_of(url))
        .await
        .unwrap();
    assert_eq!(opened.account_id.to_string(), account);
    assert_eq!(
        env.count(
            "SELECT count(*) FROM audit_record \
             WHERE action = 'sign_in.link_minted' AND actor = 'api:web'"
        )
        .await,
        1
    );

    let by_support = call(addr, "POST", &path, Some(&desk), None, None).await;
    assert_eq!(by_support.status, 403, "{}", by_support.text);
    let anonymous = call(addr, "POST", &path, None, None, None).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.text);
    let unknown = call(
        addr,
        "POST",
        "/v1/accounts/999999/sign-in-links",
        Some(&web),
        None,
        None,
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    assert_eq!(error_code(&unknown), "account.not_found");
    let queried = call(
        addr,
        "POST",
        &format!("{path}?account=1"),
        Some(&web),
        None,
        None,
    )
    .await;
    assert_eq!(queried.status, 400, "{}", queried.text);
    assert_eq!(error_code(&queried), "api.query_refused");
    assert!(!queried.text.contains("account=1"));
    assert_eq!(
        env.count("SELECT count(*) FROM sign_in_link").await,
        1,
        "only the redeem key's link was minted"
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(api, the_api_mints_links_for_redeem_keys_only);

// ---------------------------------------------------------------------------------------------
// The pages over raw HTTP

/// `app` served on a free loopback port, as `tender serve` serves it; stops when the sender is
/// dropped.
async fn serve<S: Store>(app: &App<S>) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(tender::api::serve(listener, app.clone(), async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// A form post as a browser sends it, with `extra` header lines (each ending in CRLF).
async fn post_form(addr: SocketAddr, path: &str, cookie: &str, extra: &str, body: &str) -> Reply {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: tender_session={cookie}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n{extra}\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    // The server may answer before it has read a body it refuses, and close: keep what came
    // before any reset.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    parse_reply(&String::from_utf8_lossy(&response))
}

/// The redeem form's body, the code as a browser encodes it.
fn redeem_body(csrf: &str, attempt: &str, code: &str) -> String {
    format!(
        "csrf={csrf}&attempt={attempt}&code={}",
        code.replace(' ', "+")
    )
}

/// Every page and asset carries the policy and its companions; without a session the account
/// page is 401, a bad link 400; the stylesheet is served as CSS. A form from another site
/// redeems nothing, even with the session's token; the page's own form counts its attempt
/// under the connection's address.
async fn pages_are_guarded_and_refuse_what_is_not_theirs<S: Store>(env: TestApp<S>) {
    let batch = cards_on_sale(&env, 2, 2).await;
    let account = open_account(&env, "US", "USD").await;
    let (addr, stop, server) = start(&env).await;

    let signed_out = get(addr, "/account").await;
    assert_eq!(signed_out.status, 401, "{}", signed_out.text);
    assert!(
        signed_out
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
    );
    assert!(signed_out.text.contains("<h1>You&#39;re signed out</h1>"));
    let bad_link = get(addr, "/account/sign-in?token=x").await;
    assert_eq!(bad_link.status, 400);
    let css = get(addr, "/account/assets/tender.css").await;
    assert_eq!(css.status, 200);
    assert!(
        css.header("content-type")
            .is_some_and(|t| t.starts_with("text/css")),
        "{:?}",
        css.header("content-type")
    );
    for reply in [&signed_out, &bad_link] {
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    }
    for reply in [&signed_out, &bad_link, &css] {
        let policy = reply.header("content-security-policy").unwrap();
        assert_eq!(policy, CONTENT_SECURITY_POLICY_VALUE);
        assert!(policy.starts_with("default-src 'none'"));
        assert!(policy.contains("frame-ancestors 'none'"));
        assert_eq!(reply.header("x-frame-options"), Some("DENY"));
        assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    }

    let opened = signed_in(&env, &account).await;
    let csrf = csrf_token(&opened.cookie);
    let code = code_of(&env, &batch, 0);

    // From another site, with the right token: refused before anything is counted.
    let cross = post_form(
        addr,
        "/account/redeem",
        &opened.cookie,
        "Sec-Fetch-Site: cross-site\r\n",
        &redeem_body(&csrf, "a1", &code),
    )
    .await;
    assert_eq!(cross.status, 403, "{}", cross.text);
    assert_eq!(
        cross.header("content-security-policy"),
        Some(CONTENT_SECURITY_POLICY_VALUE)
    );

    assert_eq!(balance(&env, &account).await, "0.00 USD");
    assert_eq!(
        env.count("SELECT count(*) FROM redeem_attempt").await,
        0,
        "nothing was counted"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM redeem_window").await,
        0,
        "no slot was taken"
    );

    // The page's own form: a wrong code is refused and counted under the peer's address, and
    // the outcome waits for the page.
    let own = post_form(
        addr,
        "/account/redeem",
        &opened.cookie,
        "Sec-Fetch-Site: same-origin\r\n",
        &redeem_body(&csrf, "a3", "7000 0000 0000 0001"),
    )
    .await;
    assert_eq!(own.status, 303, "{}", own.text);
    assert_eq!(own.header("location"), Some("/account"));
    let callers: Vec<(String,)> = query(&env, "SELECT caller FROM redeem_attempt".into()).await;
    assert_eq!(callers, [("address:127.0.0.1".to_string(),)]);
    let current = env
        .app
        .services()
        .sessions()
        .current(&opened.cookie)
        .await
        .unwrap();
    let notice = current.notice.unwrap();
    assert!(notice.contains("redeem.not_found"), "{notice}");
    assert!(!notice.contains("7000"), "{notice}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(pages, pages_are_guarded_and_refuse_what_is_not_theirs);

/// A form body larger than [`tender::web::FORM_BODY_MAX_BYTES`] (the page's own is under 300
/// bytes) is refused as too large, 413, before its code is read: nothing is redeemed or
/// counted.
async fn an_oversized_form_is_too_large_and_redeems_nothing<S: Store>(env: TestApp<S>) {
    let batch = cards_on_sale(&env, 1, 1).await;
    let account = open_account(&env, "US", "USD").await;
    let (addr, stop, server) = start(&env).await;
    let opened = signed_in(&env, &account).await;
    let csrf = csrf_token(&opened.cookie);
    let padded = format!(
        "{}&pad={}",
        redeem_body(&csrf, "c1", &code_of(&env, &batch, 0)),
        "x".repeat(tender::web::FORM_BODY_MAX_BYTES)
    );
    let oversized = post_form(
        addr,
        "/account/redeem",
        &opened.cookie,
        "Sec-Fetch-Site: same-origin\r\n",
        &padded,
    )
    .await;
    assert_eq!(balance(&env, &account).await, "0.00 USD");
    assert_eq!(env.count("SELECT count(*) FROM redeem_attempt").await, 0);
    assert_eq!(env.count("SELECT count(*) FROM redeem_window").await, 0);
    assert_eq!(oversized.status, 413, "{}", oversized.text);
    assert_eq!(
        oversized.header("content-security-policy"),
        Some(CONTENT_SECURITY_POLICY_VALUE)
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(
    oversized_form,
    an_oversized_form_is_too_large_and_redeems_nothing
);

/// Behind a proxy that names the customer's address in `X-Forwarded-For`, the header's last
/// address counts (anything before it the client could have written); a form without the
/// header is refused with nothing redeemed.
async fn behind_a_proxy_the_headers_last_address_counts<S: Store>(env: TestApp<S>) {
    let batch = cards_on_sale(&env, 1, 1).await;
    let account = open_account(&env, "US", "USD").await;
    let app = env
        .reopen(&Settings {
            client_address_header: Some(ClientAddressHeader::parse("X-Forwarded-For").unwrap()),
            ..env.db.settings()
        })
        .await;
    let (addr, _stop) = serve(&app).await;
    let opened = signed_in(&env, &account).await;
    let csrf = csrf_token(&opened.cookie);
    let code = code_of(&env, &batch, 0);

    let bare = post_form(
        addr,
        "/account/redeem",
        &opened.cookie,
        "",
        &redeem_body(&csrf, "b1", &code),
    )
    .await;
    assert_eq!(bare.status, 400, "{}", bare.text);
    let unreadable = post_form(
        addr,
        "/account/redeem",
        &opened.cookie,
        "X-Forwarded-For: 203.0.113.9, unknown\r\n",
        &redeem_body(&csrf, "b2", &code),
    )
    .await;
    assert_eq!(unreadable.status, 400, "{}", unreadable.text);
    assert_eq!(balance(&env, &account).await, "0.00 USD");
    assert_eq!(env.count("SELECT count(*) FROM redeem_attempt").await, 0);

    let forwarded = "X-Forwarded-For: 198.51.100.1, 203.0.113.9\r\n";
    let wrong = post_form(
        addr,
        "/account/redeem",
        &opened.cookie,
        forwarded,
        &redeem_body(&csrf, "b3", "7000 0000 0000 0002"),
    )
    .await;
    assert_eq!(wrong.status, 303, "{}", wrong.text);
    let right = post_form(
        addr,
        "/account/redeem",
        &opened.cookie,
        forwarded,
        &redeem_body(&csrf, "b4", &code),
    )
    .await;
    assert_eq!(right.status, 303, "{}", right.text);
    assert_eq!(balance(&env, &account).await, "25.00 USD");
    let callers: Vec<(String, String)> =
        query(&env, "SELECT caller, outcome FROM redeem_attempt".into()).await;
    assert_eq!(
        callers,
        [(
            "address:203.0.113.9".to_string(),
            "redeem.not_found".to_string()
        )]
    );
    let windows = env
        .count("SELECT count(*) FROM redeem_window WHERE subject LIKE '%203.0.113.9%'")
        .await;
    assert!(windows > 0, "the address's windows count");
    assert_eq!(
        env.count("SELECT count(*) FROM redeem_window WHERE subject LIKE '%198.51.100.1%'")
            .await,
        0
    );
}
both_backends!(proxy, behind_a_proxy_the_headers_last_address_counts);

// ---------------------------------------------------------------------------------------------
// The CLI

/// Runs `tender` to its end, on the default public URL: (exit code, stdout, stderr).
async fn run_tender<S: Store>(env: &TestApp<S>, args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = tender_captured(env, args);
    command.env_remove("TENDER_PUBLIC_URL");
    let child = command.spawn().unwrap();
    let out = tokio::time::timeout(PROCESS_GRACE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("tender {args:?} did not finish"))
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tender account link N` prints the link first, then when it expires; `--format json` the
/// same as an object; either link signs in once. An unknown account fails, naming the code.
async fn the_cli_prints_a_link_that_signs_in<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    let sessions = env.app.services().sessions();

    let (code, stdout, stderr) = run_tender(&env, &["account", "link", &account]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let mut lines = stdout.lines();
    let url = lines.next().unwrap();
    assert!(
        url.starts_with(&format!("{PUBLIC_URL}/account/sign-in?token=")),
        "{stdout}"
    );
    let rest = lines.next().unwrap();
    assert!(
        rest.contains("single use") && rest.contains(&account),
        "{rest}"
    );
    let opened = sessions.sign_in(token_of(url)).await.unwrap();
    assert_eq!(opened.account_id.to_string(), account);

    let (code, stdout, stderr) =
        run_tender(&env, &["--format", "json", "account", "link", &account]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let shown: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(shown["account_id"].to_string(), account);
    let url = shown["url"].as_str().unwrap();
    assert!(url.starts_with(PUBLIC_URL), "{url}");
    assert!(shown["expires_at"].is_string());
    sessions.sign_in(token_of(url)).await.unwrap();
    let minted_by: Vec<(String,)> = query(
        &env,
        "SELECT actor FROM audit_record WHERE action = 'sign_in.link_minted'".into(),
    )
    .await;
    assert_eq!(minted_by.len(), 2);
    assert!(minted_by.iter().all(|(actor,)| actor.starts_with("cli:")));

    let (code, stdout, stderr) = run_tender(&env, &["account", "link", "999999"]).await;
    assert_ne!(code, Some(0));
    assert!(stderr.contains("account.not_found"), "{stderr}");
    assert!(!stdout.contains("token="), "{stdout}");
}
both_backends!(cli, the_cli_prints_a_link_that_signs_in);

/// Behind TLS (an https public URL, the TLS ending at a proxy), the session cookie is Secure;
/// over plain http it cannot be, or the browser would drop it.
async fn the_cookie_is_secure_behind_https<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    for (public, secure) in [
        ("https://gifts.example.com", true),
        ("http://127.0.0.1:8080", false),
    ] {
        let app = env
            .reopen(&Settings {
                public_url: tender::config::PublicUrl::parse(public).unwrap(),
                ..env.db.settings()
            })
            .await;
        let (addr, _stop) = serve(&app).await;
        let link = app
            .services()
            .sessions()
            .mint(&account, &actor())
            .await
            .unwrap()
            .url;
        assert!(
            link.starts_with(&format!("{public}/account/sign-in?token=")),
            "{link}"
        );
        let path = &link[public.len()..];
        let opened = get(addr, path).await;
        assert_eq!(opened.status, 200, "{}", opened.text);
        let cookie = opened.header("set-cookie").unwrap();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert_eq!(cookie.ends_with("; Secure"), secure, "{cookie}");
    }
}
both_backends!(secure_cookie, the_cookie_is_secure_behind_https);

/// The nightly purge deletes links and sessions a day after they stopped working: a link never
/// used a day after it expired; a used one only with its session, a day after that ended; a
/// link minted since stays.
async fn old_sign_ins_are_purged_a_day_after_they_stop<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    let sessions = env.app.services().sessions();
    signed_in(&env, &account).await;
    mint(&env, &account).await;
    let now = epoch();
    let day = lifetime(tender::service::sessions::SIGN_IN_KEEP);
    let just = TimeDelta::milliseconds(1);
    let link_stopped = now + lifetime(SIGN_IN_LINK_LIFETIME);
    let session_stopped = now + lifetime(SESSION_LIFETIME);
    assert_eq!(sessions.purge(link_stopped + day).await.unwrap(), 0);
    assert_eq!(sessions.purge(link_stopped + day + just).await.unwrap(), 1);
    assert_eq!(sessions.purge(session_stopped + day).await.unwrap(), 0);
    env.clock.advance(lifetime(SESSION_LIFETIME) + day);
    let fresh = mint(&env, &account).await;
    let purged = sessions.purge(session_stopped + day + just).await.unwrap();
    assert_eq!(purged, 2, "the session and its link");
    assert_eq!(env.count("SELECT count(*) FROM web_session").await, 0);
    assert_eq!(env.count("SELECT count(*) FROM sign_in_link").await, 1);
    sessions.sign_in(token_of(&fresh)).await.unwrap();
}
both_backends!(purge, old_sign_ins_are_purged_a_day_after_they_stop);
