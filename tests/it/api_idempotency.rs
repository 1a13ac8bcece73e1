//! Idempotency over HTTP: every value-moving route takes an `Idempotency-Key`, and a retry under
//! it from the same client gets the first answer, with its status, marked
//! `Idempotent-Replayed: true`; another body under the same key is 422; a key whose request is
//! still running is 409 until the request timeout, after which the next request takes it
//! over; keys are scoped per client; `tender idempotency purge` removes old records. Shown on
//! redemption, the first such route, through the real router on a real socket.

use std::net::SocketAddr;

use chrono::TimeDelta;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use tender::api::REQUEST_TIMEOUT;
use tender::app::App;
use tender::clock::{Clock, SystemClock};
use tender::codegen::CodeGenerator;
use tender::config::{RedeemLimits, WindowLimits};
use tender::service::cards::{ActivateForm, PosForm, StoreForm};
use tender::service::idempotency::{Claimed, IdemRequest};
use tender::store::Store;

use crate::helpers::http::{Reply, acme, key, post, start};
use crate::helpers::{TestApp, actor, both_backends, open_account, usd_form};

/// `n` sold 25.00 USD cards of Acme's, and their codes as printed.
async fn sold_cards<S: Store>(env: &TestApp<S>, n: u64) -> Vec<String> {
    let services = env.app.services();
    let batch = services
        .batches()
        .request(&usd_form(n), &actor())
        .await
        .unwrap();
    let batch = env
        .generate(batch.id, &mut CodeGenerator::from_os_rng(), 16)
        .await;
    let store = StoreForm {
        retailer: "Acme".into(),
        store: "S1".into(),
        jurisdiction: "US-TX".into(),
    };
    services.cards().add_store(&store, &actor()).await.unwrap();
    let mut reader = csv::Reader::from_path(env.export_file(batch.id)).unwrap();
    let mut codes = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.unwrap();
        let sale = ActivateForm {
            pos: PosForm {
                retailer: "Acme".into(),
                store: "S1".into(),
                terminal: "till-1".into(),
                pos_txn: format!("sale-{i}"),
                pos_time: None,
            },
            serial: record[0].to_string(),
            to_serial: None,
            value: None,
            purchaser_state: None,
        };
        services.cards().activate(&sale, &actor()).await.unwrap();
        codes.push(record[1].to_string());
    }
    codes
}

/// The public key id inside an API key `tdr_live_<key id>_<secret>`.
fn key_id(api_key: &str) -> &str {
    api_key
        .strip_prefix("tdr_live_")
        .unwrap()
        .split('_')
        .next()
        .unwrap()
}

fn redeem_body(code: &str) -> String {
    serde_json::json!({ "code": code }).to_string()
}

fn replayed(reply: &Reply) -> bool {
    reply.header("idempotent-replayed") == Some("true")
}

/// What the database holds of every code: no stored answer, no record, carries one.
async fn assert_no_code_stored<S: Store>(env: &TestApp<S>, codes: &[String]) {
    let bodies: Vec<Option<String>> = match env.store().db_pool() {
        tender::store::DbPool::Sqlite(pool) => {
            sqlx::query_scalar("SELECT body FROM idempotency_record")
                .fetch_all(&pool)
                .await
                .unwrap()
        }
        tender::store::DbPool::Postgres(pool) => {
            sqlx::query_scalar("SELECT body FROM idempotency_record")
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    assert!(!bodies.is_empty());
    for body in bodies.iter().flatten() {
        for code in codes {
            let digits: String = code.chars().filter(char::is_ascii_digit).collect();
            assert!(
                !body.contains(code.as_str()),
                "a stored answer holds a code"
            );
            assert!(
                !body.contains(&digits),
                "a stored answer holds a code's digits"
            );
        }
    }
}

/// The same key and body from the same client get the first answer again: the same status
/// (201), the same bytes, marked as a replay, with nothing new written. A refusal the service
/// decided (a wrong code, 404) is kept too, and replayed with the new request's id, without
/// counting another attempt. A refusal of the request's form (400) or of its caller (401) is not
/// kept: the corrected request under the same key runs. No stored answer holds a code.
async fn a_retry_gets_the_first_answer<S: Store>(env: TestApp<S>) {
    acme(&env).await;
    let codes = sold_cards(&env, 1).await;
    let redeem = key(&env, "web", "redeem").await;
    let account = open_account(&env, "US", "USD").await;
    let path = format!("/v1/accounts/{account}/redemptions");
    let body = redeem_body(&codes[0]);
    let (addr, stop, server) = start(&env).await;

    let first = post(addr, &path, Some(&redeem), Some("r-1"), &body).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert!(!replayed(&first));
    let again = post(addr, &path, Some(&redeem), Some("r-1"), &body).await;
    assert_eq!(again.status, 201);
    assert!(replayed(&again));
    assert_eq!(again.text, first.text);
    assert_ne!(again.request_id, first.request_id);
    assert_eq!(env.count("SELECT count(*) FROM redemption").await, 1);
    assert_eq!(
        env.count("SELECT count(*) FROM idempotency_record WHERE state = 'done'")
            .await,
        1
    );

    let guess = redeem_body("7000 0000 0000 0001");
    let wrong = post(addr, &path, Some(&redeem), Some("w-1"), &guess).await;
    assert_eq!(wrong.status, 404);
    assert_eq!(wrong.body["error"]["code"], "redeem.not_found");
    let wrong_again = post(addr, &path, Some(&redeem), Some("w-1"), &guess).await;
    assert_eq!(wrong_again.status, 404);
    assert!(replayed(&wrong_again));
    assert_eq!(wrong_again.body["error"]["code"], "redeem.not_found");
    assert_eq!(
        wrong_again.body["error"]["request_id"].as_str(),
        wrong_again.request_id.as_deref()
    );
    assert_eq!(env.count("SELECT count(*) FROM redeem_attempt").await, 1);

    // A malformed body is not kept: the same key with a good body then runs.
    let odd = serde_json::json!({ "code": "7000 0000 0000 0002", "x": 1 }).to_string();
    let malformed = post(addr, &path, Some(&redeem), Some("b-1"), &odd).await;
    assert_eq!(malformed.status, 400);
    let fixed = post(addr, &path, Some(&redeem), Some("b-1"), &guess).await;
    assert_eq!(fixed.status, 404);
    assert!(!replayed(&fixed));

    // A key that does not authenticate is refused before anything is stored.
    let records = env.count("SELECT count(*) FROM idempotency_record").await;
    let bogus = format!("tdr_live_{}_{}", "a".repeat(16), "b".repeat(32));
    let unauthenticated = post(addr, &path, Some(&bogus), Some("u-1"), &body).await;
    assert_eq!(unauthenticated.status, 401);
    let unkeyed = post(addr, &path, None, Some("u-1"), &body).await;
    assert_eq!(unkeyed.status, 401);
    assert_eq!(
        env.count("SELECT count(*) FROM idempotency_record").await,
        records
    );

    for reply in [&first, &again, &wrong, &wrong_again, &malformed, &fixed] {
        assert!(!reply.text.contains(&codes[0]));
    }
    assert_no_code_stored(&env, &codes).await;
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(api_idempotency_replay, a_retry_gets_the_first_answer);

/// The header is required and must be a key: without it 400
/// `api.idempotency_key_required`; over 128 characters, or with a space, a tab or a character
/// beyond ASCII, 400 `api.idempotency_key_invalid`. Nothing is claimed or redeemed.
async fn the_key_is_required_and_checked<S: Store>(env: TestApp<S>) {
    acme(&env).await;
    let codes = sold_cards(&env, 1).await;
    let redeem = key(&env, "web", "redeem").await;
    let account = open_account(&env, "US", "USD").await;
    let path = format!("/v1/accounts/{account}/redemptions");
    let body = redeem_body(&codes[0]);
    let (addr, stop, server) = start(&env).await;

    let missing = post(addr, &path, Some(&redeem), None, &body).await;
    assert_eq!(missing.status, 400);
    assert_eq!(
        missing.body["error"]["code"],
        "api.idempotency_key_required"
    );
    for bad in [
        "k".repeat(129),
        "a b".to_string(),
        "a\tb".to_string(),
        "clé".to_string(),
    ] {
        let reply = post(addr, &path, Some(&redeem), Some(&bad), &body).await;
        assert_eq!(reply.status, 400, "{bad:?}");
        assert_eq!(reply.body["error"]["code"], "api.idempotency_key_invalid");
    }
    let longest = post(addr, &path, Some(&redeem), Some(&"k".repeat(128)), &body).await;
    assert_eq!(longest.status, 201, "{}", longest.text);
    assert_eq!(env.count("SELECT count(*) FROM redemption").await, 1);
    assert_eq!(
        env.count("SELECT count(*) FROM idempotency_record").await,
        1
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(api_idempotency_header, the_key_is_required_and_checked);

/// The same key with another body (another code, or the same body to another account) is 422
/// `idempotency.key_reused`, and nothing is written: no redemption, no attempt, no record.
async fn another_body_under_a_used_key_is_refused<S: Store>(env: TestApp<S>) {
    acme(&env).await;
    let codes = sold_cards(&env, 2).await;
    let redeem = key(&env, "web", "redeem").await;
    let account = open_account(&env, "US", "USD").await;
    let other = open_account(&env, "US", "USD").await;
    let path = format!("/v1/accounts/{account}/redemptions");
    let (addr, stop, server) = start(&env).await;

    let first = post(
        addr,
        &path,
        Some(&redeem),
        Some("r-1"),
        &redeem_body(&codes[0]),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let redemptions = env.count("SELECT count(*) FROM redemption").await;
    let attempts = env.count("SELECT count(*) FROM redeem_attempt").await;
    let records = env.count("SELECT count(*) FROM idempotency_record").await;

    let reused = post(
        addr,
        &path,
        Some(&redeem),
        Some("r-1"),
        &redeem_body(&codes[1]),
    )
    .await;
    assert_eq!(reused.status, 422);
    assert_eq!(reused.body["error"]["code"], "idempotency.key_reused");
    assert!(!replayed(&reused));
    assert!(!reused.text.contains(&codes[1]));
    let elsewhere = format!("/v1/accounts/{other}/redemptions");
    let moved = post(
        addr,
        &elsewhere,
        Some(&redeem),
        Some("r-1"),
        &redeem_body(&codes[0]),
    )
    .await;
    assert_eq!(moved.status, 422);
    assert_eq!(moved.body["error"]["code"], "idempotency.key_reused");

    assert_eq!(
        env.count("SELECT count(*) FROM redemption").await,
        redemptions
    );
    assert_eq!(
        env.count("SELECT count(*) FROM redeem_attempt").await,
        attempts
    );
    assert_eq!(
        env.count("SELECT count(*) FROM idempotency_record").await,
        records
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(
    api_idempotency_key_reused,
    another_body_under_a_used_key_is_refused
);

/// A key whose request is still in flight is 409 `idempotency.in_flight` (another body under it
/// still 422) until the request timeout has passed since it started; then the next request with
/// that key takes the claim over and runs, and the abandoned request can no longer store an
/// answer over it.
async fn a_key_in_flight_is_409_until_the_timeout_then_taken_over<S: Store>(env: TestApp<S>) {
    acme(&env).await;
    let codes = sold_cards(&env, 1).await;
    let redeem = key(&env, "web", "redeem").await;
    let account = open_account(&env, "US", "USD").await;
    let path = format!("/v1/accounts/{account}/redemptions");
    let body = redeem_body(&codes[0]);
    let idempotency = env.app.services().idempotency();
    // A request that claimed the key and was then abandoned (its server died, say).
    let abandoned = IdemRequest {
        client_key_id: key_id(&redeem),
        idem_key: "r-1",
        method: "POST",
        path: &path,
        body: body.as_bytes(),
    };
    let Claimed::Run(ticket) = idempotency
        .claim(&abandoned, REQUEST_TIMEOUT)
        .await
        .unwrap()
    else {
        panic!("a fresh key is claimed");
    };
    let (addr, stop, server) = start(&env).await;

    let busy = post(addr, &path, Some(&redeem), Some("r-1"), &body).await;
    assert_eq!(busy.status, 409);
    assert_eq!(busy.body["error"]["code"], "idempotency.in_flight");
    let reused = post(
        addr,
        &path,
        Some(&redeem),
        Some("r-1"),
        &redeem_body("7000 0000 0000 0001"),
    )
    .await;
    assert_eq!(reused.status, 422);

    let timeout = TimeDelta::from_std(REQUEST_TIMEOUT).unwrap();
    env.clock.advance(timeout - TimeDelta::milliseconds(1));
    let still = post(addr, &path, Some(&redeem), Some("r-1"), &body).await;
    assert_eq!(still.status, 409);
    assert_eq!(env.count("SELECT count(*) FROM redemption").await, 0);

    env.clock.advance(TimeDelta::milliseconds(1));
    let taken = post(addr, &path, Some(&redeem), Some("r-1"), &body).await;
    assert_eq!(taken.status, 201, "{}", taken.text);
    assert!(!replayed(&taken));
    assert_eq!(env.count("SELECT count(*) FROM redemption").await, 1);

    // The abandoned request's claim is gone: it cannot overwrite the answer, nor release it.
    let late = tender::store::idempotency::StoredAnswer {
        status: 500,
        body: "{}".into(),
    };
    assert!(!idempotency.complete(&ticket, &late).await.unwrap());
    assert!(!idempotency.release(&ticket).await.unwrap());
    let again = post(addr, &path, Some(&redeem), Some("r-1"), &body).await;
    assert_eq!(again.status, 201);
    assert!(replayed(&again));
    assert_eq!(again.text, taken.text);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(
    api_idempotency_in_flight,
    a_key_in_flight_is_409_until_the_timeout_then_taken_over
);

/// Keys are scoped per client: two redeem keys sending the same idempotency key make two
/// different redemptions, and each one's retry replays its own.
async fn keys_are_scoped_per_client<S: Store>(env: TestApp<S>) {
    acme(&env).await;
    let codes = sold_cards(&env, 2).await;
    let web = key(&env, "web", "redeem").await;
    let app = key(&env, "app", "redeem").await;
    let account = open_account(&env, "US", "USD").await;
    let path = format!("/v1/accounts/{account}/redemptions");
    let (addr, stop, server) = start(&env).await;

    let a = post(
        addr,
        &path,
        Some(&web),
        Some("same"),
        &redeem_body(&codes[0]),
    )
    .await;
    let b = post(
        addr,
        &path,
        Some(&app),
        Some("same"),
        &redeem_body(&codes[1]),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(b.status, 201, "{}", b.text);
    assert_ne!(a.body["transfer_id"], b.body["transfer_id"]);
    assert_eq!(b.body["balance_after"]["amount"], "50.00");
    let a_again = post(
        addr,
        &path,
        Some(&web),
        Some("same"),
        &redeem_body(&codes[0]),
    )
    .await;
    let b_again = post(
        addr,
        &path,
        Some(&app),
        Some("same"),
        &redeem_body(&codes[1]),
    )
    .await;
    assert_eq!((a_again.text, b_again.text), (a.text, b.text));
    assert_eq!(env.count("SELECT count(*) FROM redemption").await, 2);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(api_idempotency_per_client, keys_are_scoped_per_client);

/// `app` (limits raised so 50 attempts on one account are not a guessing run) on a free port.
async fn start_app<S: Store>(
    app: App<S>,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(tender::api::serve(listener, app, async {
        let _ = stopped.await;
    }));
    (addr, stop, server)
}

async fn with_raised_limits<S: Store>(env: &TestApp<S>) -> App<S> {
    let mut settings = env.db.settings();
    let wide = WindowLimits {
        hour: 1_000,
        day: 1_000,
    };
    settings.redeem_limits = RedeemLimits {
        account: wide,
        caller: wide,
        address: wide,
    };
    env.reopen(&settings).await
}

const RACERS: usize = 50;

/// 50 concurrent redemptions of one code over HTTP, each under its own key and into its own
/// account: exactly one credit (201); every other is 409 `redeem.already_redeemed`, and each
/// answer is kept under its key. (Into one account, the service would answer the others as
/// retries of the first, 200: the code's own idempotency.)
async fn fifty_keys_racing_for_one_code_credit_it_once<S: Store>(env: TestApp<S>) {
    acme(&env).await;
    let codes = sold_cards(&env, 1).await;
    let redeem = key(&env, "web", "redeem").await;
    let mut paths = Vec::new();
    for _ in 0..RACERS {
        let account = open_account(&env, "US", "USD").await;
        paths.push(format!("/v1/accounts/{account}/redemptions"));
    }
    let body = redeem_body(&codes[0]);
    let (addr, stop, server) = start_app(with_raised_limits(&env).await).await;

    let racers: Vec<_> = paths
        .into_iter()
        .enumerate()
        .map(|(n, path)| {
            let (redeem, body) = (redeem.clone(), body.clone());
            tokio::spawn(async move {
                post(
                    addr,
                    &path,
                    Some(&redeem),
                    Some(&format!("race-{n}")),
                    &body,
                )
                .await
            })
        })
        .collect();
    let mut credited = 0;
    for racer in racers {
        let reply = racer.await.unwrap();
        match reply.status {
            201 => credited += 1,
            409 => assert_eq!(reply.body["error"]["code"], "redeem.already_redeemed"),
            other => panic!("unexpected {other}: {}", reply.text),
        }
    }
    assert_eq!(credited, 1);
    assert_eq!(env.count("SELECT count(*) FROM redemption").await, 1);
    assert_eq!(
        env.count("SELECT count(*) FROM idempotency_record WHERE state = 'done'")
            .await,
        i64::try_from(RACERS).unwrap()
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(
    api_idempotency_fifty_keys,
    fifty_keys_racing_for_one_code_credit_it_once
);

/// 50 concurrent redemptions of one code under the same key: one credit; every other answer
/// is 409 `idempotency.in_flight` or a replay of that credit, byte for byte.
async fn fifty_retries_racing_under_one_key_credit_once<S: Store>(env: TestApp<S>) {
    acme(&env).await;
    let codes = sold_cards(&env, 1).await;
    let redeem = key(&env, "web", "redeem").await;
    let account = open_account(&env, "US", "USD").await;
    let path = format!("/v1/accounts/{account}/redemptions");
    let body = redeem_body(&codes[0]);
    let (addr, stop, server) = start_app(with_raised_limits(&env).await).await;

    let racers: Vec<_> = (0..RACERS)
        .map(|_| {
            let (path, redeem, body) = (path.clone(), redeem.clone(), body.clone());
            tokio::spawn(async move { post(addr, &path, Some(&redeem), Some("one"), &body).await })
        })
        .collect();
    let mut replies = Vec::new();
    for racer in racers {
        replies.push(racer.await.unwrap());
    }
    let firsts: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == 201 && !replayed(r))
        .collect();
    assert_eq!(firsts.len(), 1);
    for reply in &replies {
        match reply.status {
            201 if replayed(reply) => assert_eq!(reply.text, firsts[0].text),
            201 => {}
            409 => assert_eq!(reply.body["error"]["code"], "idempotency.in_flight"),
            other => panic!("unexpected {other}: {}", reply.text),
        }
    }
    assert_eq!(env.count("SELECT count(*) FROM redemption").await, 1);
    assert_eq!(
        env.count("SELECT count(*) FROM idempotency_record").await,
        1
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(
    api_idempotency_one_key,
    fifty_retries_racing_under_one_key_credit_once
);

/// `tender idempotency purge --older-than 30d` removes the records older than that and says
/// how many; it refuses an age under 30 days (`--older-than 7d`) with its stable code and exit
/// status 1, removing nothing.
async fn purge_removes_old_records_and_refuses_young_ages<S: Store>(env: TestApp<S>) {
    acme(&env).await;
    let codes = sold_cards(&env, 2).await;
    let redeem = key(&env, "web", "redeem").await;
    let account = open_account(&env, "US", "USD").await;
    let path = format!("/v1/accounts/{account}/redemptions");
    let (addr, stop, server) = start(&env).await;
    // One record made at the test clock's start, months ago; one made now.
    let old = post(
        addr,
        &path,
        Some(&redeem),
        Some("old"),
        &redeem_body(&codes[0]),
    )
    .await;
    assert_eq!(old.status, 201, "{}", old.text);
    env.clock.set(SystemClock.now());
    let new = post(
        addr,
        &path,
        Some(&redeem),
        Some("new"),
        &redeem_body(&codes[1]),
    )
    .await;
    assert_eq!(new.status, 201, "{}", new.text);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();

    let tender = |age: &str| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tender"));
        command
            .env_remove("TENDER_LOOKUP_KEYS")
            .env_remove("TENDER_AUDIT_KEYS")
            .env_remove("TENDER_ACTOR")
            .env("TENDER_DATA_DIR", env.db.path())
            .env("TENDER_DATABASE_URL", &env.db.url)
            .args(["idempotency", "purge", "--older-than", age]);
        command
    };
    let refused = tender("7d").output().await.unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("[idempotency.bad_age]"), "{stderr}");
    assert_eq!(
        env.count("SELECT count(*) FROM idempotency_record").await,
        2
    );

    let purged = tender("30d").output().await.unwrap();
    assert!(
        purged.status.success(),
        "{}",
        String::from_utf8_lossy(&purged.stderr)
    );
    let stdout = String::from_utf8_lossy(&purged.stdout);
    assert!(stdout.contains("removed 1 idempotency records"), "{stdout}");
    let left: i64 = env
        .count("SELECT count(*) FROM idempotency_record WHERE idem_key = 'new'")
        .await;
    assert_eq!(left, 1);
    assert_eq!(
        env.count("SELECT count(*) FROM idempotency_record").await,
        1
    );
    // The redemptions themselves, with their natural keys, stay.
    assert_eq!(env.count("SELECT count(*) FROM redemption").await, 2);
}
both_backends!(
    api_idempotency_purge,
    purge_removes_old_records_and_refuses_young_ages
);
