//! The account routes through the real router on a real socket: opening and reading accounts,
//! history pages, spends, refunds, adjustments with four-eyes approval, the attempt log, and
//! who may call each.

use serde_json::{Value, json};

use tender::store::Store;

use crate::helpers::http::{Reply, acme, call, get_with, key, post, start};
use crate::helpers::{TestApp, both_backends};

/// A value-moving POST with its own idempotency key.
async fn moving(
    addr: std::net::SocketAddr,
    path: &str,
    key: &str,
    idem: &str,
    body: Value,
) -> Reply {
    post(addr, path, Some(key), Some(idem), &body.to_string()).await
}

fn money(amount: &str) -> Value {
    json!({ "amount": amount, "currency": "USD" })
}

fn code(reply: &Reply) -> &str {
    reply.body["error"]["code"].as_str().unwrap_or_default()
}

/// A redeem or support key opens an account (201, the account as JSON, amounts as decimal
/// strings); redeem, support and finance keys read it, its balance and its history; an unknown
/// field is 400; a path id that is not a positive integer is 400 `api.bad_id`, an id of nothing
/// 404. History comes newest first a page at a time: each page's `next` is the next page's
/// `after`, and the last page's is null; a bad `limit` or `after` is 400 `api.bad_query`.
async fn accounts_are_opened_read_and_paged<S: Store>(env: TestApp<S>) {
    let web = key(&env, "web", "redeem").await;
    let desk = key(&env, "desk", "support").await;
    let books = key(&env, "books", "finance").await;
    let (addr, stop, server) = start(&env).await;

    let opened = post(
        addr,
        "/v1/accounts",
        Some(&web),
        None,
        r#"{"region": "US", "currency": "USD", "external_id": "C-1042"}"#,
    )
    .await;
    assert_eq!(opened.status, 201, "{}", opened.text);
    let id = opened.body["id"].as_i64().unwrap();
    assert_eq!(opened.body["region"], "US");
    assert_eq!(opened.body["currency"], "USD");
    assert_eq!(opened.body["balance"], money("0.00"));
    assert_eq!(opened.body["external_id"], "C-1042");
    assert_eq!(opened.body["frozen_reason"], Value::Null);
    assert_eq!(opened.body["erased_at"], Value::Null);
    let by_desk = post(
        addr,
        "/v1/accounts",
        Some(&desk),
        None,
        r#"{"region": "GB", "currency": "GBP"}"#,
    )
    .await;
    assert_eq!(by_desk.status, 201, "{}", by_desk.text);
    assert_eq!(by_desk.body["external_id"], Value::Null);
    let taken = post(
        addr,
        "/v1/accounts",
        Some(&web),
        None,
        r#"{"region": "US", "currency": "USD", "external_id": "C-1042"}"#,
    )
    .await;
    assert_eq!(taken.status, 409);
    assert_eq!(code(&taken), "account.external_id_taken");
    let odd = post(
        addr,
        "/v1/accounts",
        Some(&web),
        None,
        r#"{"region": "US", "currency": "USD", "balance": "100.00"}"#,
    )
    .await;
    assert_eq!(odd.status, 400);
    assert_eq!(code(&odd), "api.bad_body");
    let region = post(
        addr,
        "/v1/accounts",
        Some(&web),
        None,
        r#"{"region": "XX1", "currency": "USD"}"#,
    )
    .await;
    assert_eq!(region.status, 422, "{}", region.text);

    for reader in [&web, &desk, &books] {
        let shown = get_with(addr, &format!("/v1/accounts/{id}"), Some(reader)).await;
        assert_eq!(shown.status, 200);
        assert_eq!(shown.body, opened.body);
        let balance = get_with(addr, &format!("/v1/accounts/{id}/balance"), Some(reader)).await;
        assert_eq!(balance.status, 200);
        assert_eq!(
            balance.body,
            json!({ "account_id": id, "balance": money("0.00"), "frozen": false })
        );
    }
    for bad in ["abc", "0", "-1", "1.5", "99999999999999999999"] {
        let reply = get_with(addr, &format!("/v1/accounts/{bad}"), Some(&books)).await;
        assert_eq!(reply.status, 400, "{bad}");
        assert_eq!(code(&reply), "api.bad_id", "{bad}");
        assert!(reply.request_id.is_some());
    }
    let nothing = get_with(addr, "/v1/accounts/9000/history", Some(&books)).await;
    assert_eq!(nothing.status, 404);
    assert_eq!(code(&nothing), "account.not_found");

    // Five lines: credits of 1.00 to 5.00, each posted at once (under the threshold).
    let adjustments = format!("/v1/accounts/{id}/adjustments");
    let mut transfers = Vec::new();
    for n in 1..=5 {
        let body = json!({ "amount": format!("{n}.00"), "currency": "USD", "reason": "goodwill" });
        let reply = moving(addr, &adjustments, &desk, &format!("a-{n}"), body).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        transfers.push(reply.body["transfer_id"].as_i64().unwrap());
    }
    let history = format!("/v1/accounts/{id}/history");
    let first = get_with(addr, &format!("{history}?limit=2"), Some(&books)).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let lines = first.body["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["transfer_id"], transfers[4]);
    assert_eq!(lines[0]["kind"], "adjustment");
    assert_eq!(lines[0]["amount"], money("5.00"));
    assert_eq!(lines[0]["balance_after"], money("15.00"));
    assert_eq!(lines[0]["reference"], Value::Null);
    for field in ["card", "service", "order"] {
        assert_eq!(lines[0][field], Value::Null, "{field}");
    }
    assert_eq!(first.body["next"], transfers[3]);
    let mut seen: Vec<i64> = Vec::new();
    let mut after = None;
    loop {
        let path = match after {
            Some(cursor) => format!("{history}?limit=2&after={cursor}"),
            None => format!("{history}?limit=2"),
        };
        let page = get_with(addr, &path, Some(&web)).await;
        assert_eq!(page.status, 200, "{}", page.text);
        seen.extend(
            page.body["lines"]
                .as_array()
                .unwrap()
                .iter()
                .map(|line| line["transfer_id"].as_i64().unwrap()),
        );
        match page.body["next"].as_i64() {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    let newest_first: Vec<i64> = transfers.iter().rev().copied().collect();
    assert_eq!(seen, newest_first, "every line once, newest first");
    let whole = get_with(addr, &history, Some(&desk)).await;
    assert_eq!(whole.body["lines"].as_array().unwrap().len(), 5);
    assert_eq!(
        whole.body["next"],
        Value::Null,
        "a page that holds the rest ends it"
    );
    for query in [
        "limit=0",
        "limit=101",
        "limit=ten",
        "after=0",
        "after=x",
        "limit=1&limit=2",
        "page=2",
    ] {
        let reply = get_with(addr, &format!("{history}?{query}"), Some(&books)).await;
        assert_eq!(reply.status, 400, "{query}");
        assert_eq!(code(&reply), "api.bad_query", "{query}");
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(
    api_accounts_open_read_page,
    accounts_are_opened_read_and_paged
);

/// Spends take a redeem key: 201 with the posting; the same order and fields again (under a new
/// Idempotency-Key) 200 with the first posting; the same order with another amount 409
/// `ledger.order_conflict`; more than the balance 409 `ledger.insufficient_funds` with nothing
/// written; another currency the service's `ledger.wrong_currency`; an amount as a JSON number
/// 400. Refunds (redeem or support) give part of an order back, once per refund id, never more
/// than the order.
async fn spends_and_refunds<S: Store>(env: TestApp<S>) {
    let web = key(&env, "web", "redeem").await;
    let desk = key(&env, "desk", "support").await;
    let (addr, stop, server) = start(&env).await;
    let opened = post(
        addr,
        "/v1/accounts",
        Some(&web),
        None,
        r#"{"region": "US", "currency": "USD"}"#,
    )
    .await;
    let id = opened.body["id"].as_i64().unwrap();
    let credit = json!({ "amount": "50.00", "currency": "USD", "reason": "goodwill" });
    let credited = moving(
        addr,
        &format!("/v1/accounts/{id}/adjustments"),
        &desk,
        "c-1",
        credit,
    )
    .await;
    assert_eq!(credited.status, 201, "{}", credited.text);

    let spends = format!("/v1/accounts/{id}/spends");
    let order =
        json!({ "order": "A-77", "service": "app-store", "amount": "20.00", "currency": "USD" });
    let unkeyed = post(addr, &spends, Some(&web), None, &order.to_string()).await;
    assert_eq!(unkeyed.status, 400);
    assert_eq!(code(&unkeyed), "api.idempotency_key_required");
    let spent = moving(addr, &spends, &web, "s-1", order.clone()).await;
    assert_eq!(spent.status, 201, "{}", spent.text);
    assert_eq!(spent.body["balance_after"], money("30.00"));
    assert_eq!(spent.body["replayed"], false);
    let again = moving(addr, &spends, &web, "s-2", order.clone()).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["transfer_id"], spent.body["transfer_id"]);
    assert_eq!(again.body["balance_after"], money("30.00"));
    assert_eq!(again.body["replayed"], true);
    let other =
        json!({ "order": "A-77", "service": "app-store", "amount": "21.00", "currency": "USD" });
    let conflict = moving(addr, &spends, &web, "s-3", other).await;
    assert_eq!(conflict.status, 409);
    assert_eq!(code(&conflict), "ledger.order_conflict");

    let transfers = env.count("SELECT count(*) FROM transfer").await;
    let too_much =
        json!({ "order": "A-78", "service": "app-store", "amount": "30.01", "currency": "USD" });
    let short = moving(addr, &spends, &web, "s-4", too_much).await;
    assert_eq!(short.status, 409);
    assert_eq!(code(&short), "ledger.insufficient_funds");
    let euros =
        json!({ "order": "A-79", "service": "app-store", "amount": "1.00", "currency": "EUR" });
    let wrong = moving(addr, &spends, &web, "s-5", euros).await;
    assert_eq!(wrong.status, 409);
    assert_eq!(code(&wrong), "ledger.wrong_currency");
    let number = post(
        addr,
        &spends,
        Some(&web),
        Some("s-6"),
        r#"{"order": "A-80", "service": "app-store", "amount": 1.00, "currency": "USD"}"#,
    )
    .await;
    assert_eq!(number.status, 400);
    assert_eq!(code(&number), "api.bad_body");
    assert_eq!(
        number.body["error"]["message"],
        "`amount` must be a string; amounts, codes and ids are JSON strings"
    );
    let extra = json!({ "order": "A-81", "service": "app-store", "amount": "1.00", "currency": "USD", "tip": "1.00" });
    let unknown = moving(addr, &spends, &web, "s-7", extra).await;
    assert_eq!(unknown.status, 400);
    assert_eq!(code(&unknown), "api.bad_body");
    let support_spends = moving(addr, &spends, &desk, "s-8", order.clone()).await;
    assert_eq!(support_spends.status, 403);
    assert_eq!(
        env.count("SELECT count(*) FROM transfer").await,
        transfers,
        "nothing written"
    );
    let balance = get_with(addr, &format!("/v1/accounts/{id}/balance"), Some(&web)).await;
    assert_eq!(balance.body["balance"], money("30.00"));

    let refunds = format!("/v1/accounts/{id}/refunds");
    let part = json!({ "order": "A-77", "refund": "R-1", "amount": "5.00", "currency": "USD",
        "effective_at": "2026-03-01T10:00:00Z" });
    let refunded = moving(addr, &refunds, &desk, "r-1", part.clone()).await;
    assert_eq!(refunded.status, 201, "{}", refunded.text);
    assert_eq!(refunded.body["balance_after"], money("35.00"));
    let repeat = moving(addr, &refunds, &web, "r-2", part).await;
    assert_eq!(repeat.status, 200);
    assert_eq!(repeat.body["transfer_id"], refunded.body["transfer_id"]);
    let rest = json!({ "order": "A-77", "refund": "R-2", "amount": "15.01", "currency": "USD" });
    let over = moving(addr, &refunds, &web, "r-3", rest).await;
    assert_eq!(over.status, 409);
    assert_eq!(code(&over), "ledger.refund_exceeds_order");
    let stranger = json!({ "order": "B-1", "refund": "R-3", "amount": "1.00", "currency": "USD" });
    let unknown_order = moving(addr, &refunds, &web, "r-4", stranger).await;
    assert_eq!(unknown_order.status, 404);
    assert_eq!(code(&unknown_order), "ledger.unknown_order");

    let history = get_with(addr, &format!("/v1/accounts/{id}/history"), Some(&web)).await;
    let lines = history.body["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["kind"], "refund");
    assert_eq!(lines[0]["reference"], "R-1");
    assert_eq!(lines[0]["effective_at"], "2026-03-01T10:00:00Z");
    assert_eq!(lines[1]["kind"], "spend");
    assert_eq!(lines[1]["amount"], money("-20.00"));
    assert_eq!(lines[1]["reference"], "A-77");
    // Both name the order and the service it was placed at; neither is a card's.
    for line in &lines[..2] {
        assert_eq!(line["order"], "A-77");
        assert_eq!(line["service"], "app-store");
        assert_eq!(line["card"], Value::Null);
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(api_accounts_spends_refunds, spends_and_refunds);

/// Support adjustments: at or under the approval threshold (100) one posts at once (201);
/// above it, it waits (202 with the adjustment's id) for another support key to approve (200,
/// posted); the requesting key's own approval is 409 `adjustment.self_approval`, a second
/// approval 409 `adjustment.not_pending`. A debit takes a negative amount.
async fn adjustments_wait_for_a_second_key<S: Store>(env: TestApp<S>) {
    let alice = key(&env, "alice", "support").await;
    let bob = key(&env, "bob", "support").await;
    let web = key(&env, "web", "redeem").await;
    let (addr, stop, server) = start(&env).await;
    let opened = post(
        addr,
        "/v1/accounts",
        Some(&alice),
        None,
        r#"{"region": "US", "currency": "USD"}"#,
    )
    .await;
    let id = opened.body["id"].as_i64().unwrap();
    let adjustments = format!("/v1/accounts/{id}/adjustments");

    let small = json!({ "amount": "100.00", "currency": "USD", "reason": "goodwill" });
    let posted = moving(addr, &adjustments, &alice, "a-1", small).await;
    assert_eq!(posted.status, 201, "{}", posted.text);
    assert_eq!(posted.body["state"], "posted");
    assert_eq!(posted.body["balance_after"], money("100.00"));
    assert!(posted.body["adjustment_id"].as_i64().is_some());

    let large = json!({ "amount": "250.00", "currency": "USD", "reason": "correction" });
    let pending = moving(addr, &adjustments, &alice, "a-2", large).await;
    assert_eq!(pending.status, 202, "{}", pending.text);
    assert_eq!(pending.body["state"], "pending");
    let adjustment = pending.body["adjustment_id"].as_i64().unwrap();
    let balance = get_with(addr, &format!("/v1/accounts/{id}/balance"), Some(&alice)).await;
    assert_eq!(
        balance.body["balance"],
        money("100.00"),
        "nothing posted yet"
    );

    let approve = format!("/v1/adjustments/{adjustment}/approve");
    let own = call(addr, "POST", &approve, Some(&alice), Some("p-1"), None).await;
    assert_eq!(own.status, 409, "{}", own.text);
    assert_eq!(code(&own), "adjustment.self_approval");
    let by_redeem = call(addr, "POST", &approve, Some(&web), Some("p-2"), None).await;
    assert_eq!(by_redeem.status, 403);
    let approved = call(addr, "POST", &approve, Some(&bob), Some("p-3"), None).await;
    assert_eq!(approved.status, 200, "{}", approved.text);
    assert_eq!(approved.body["adjustment_id"], adjustment);
    assert_eq!(approved.body["state"], "posted");
    assert_eq!(approved.body["balance_after"], money("350.00"));
    let twice = call(addr, "POST", &approve, Some(&bob), Some("p-4"), None).await;
    assert_eq!(twice.status, 409);
    assert_eq!(code(&twice), "adjustment.not_pending");
    let nothing = call(
        addr,
        "POST",
        "/v1/adjustments/9000/approve",
        Some(&bob),
        Some("p-5"),
        None,
    )
    .await;
    assert_eq!(nothing.status, 404);
    assert_eq!(code(&nothing), "adjustment.not_found");
    let bad = call(
        addr,
        "POST",
        "/v1/adjustments/x/approve",
        Some(&bob),
        Some("p-6"),
        None,
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(code(&bad), "api.bad_id");

    let debit = json!({ "amount": "-50.00", "currency": "USD", "reason": "correction" });
    let debited = moving(addr, &adjustments, &bob, "a-3", debit).await;
    assert_eq!(debited.status, 201, "{}", debited.text);
    assert_eq!(debited.body["balance_after"], money("300.00"));
    let pounds = json!({ "amount": "5.00", "currency": "GBP", "reason": "goodwill" });
    let wrong = moving(addr, &adjustments, &bob, "a-4", pounds).await;
    assert_eq!(wrong.status, 409);
    assert_eq!(code(&wrong), "ledger.wrong_currency");
    let number = post(
        addr,
        &adjustments,
        Some(&bob),
        Some("a-5"),
        r#"{"amount": -5, "currency": "USD", "reason": "goodwill"}"#,
    )
    .await;
    assert_eq!(number.status, 400);
    assert_eq!(code(&number), "api.bad_body");
    let by_web = moving(
        addr,
        &adjustments,
        &web,
        "a-6",
        json!({ "amount": "1.00", "currency": "USD", "reason": "goodwill" }),
    )
    .await;
    assert_eq!(by_web.status, 403);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(api_accounts_adjustments, adjustments_wait_for_a_second_key);

/// The attempt log (support keys): an account's refused redemptions, newest first, at most
/// `limit`, with the refusal's code and never the code tried.
async fn the_attempt_log_shows_refusals_without_codes<S: Store>(env: TestApp<S>) {
    acme(&env).await;
    let web = key(&env, "web", "redeem").await;
    let desk = key(&env, "desk", "support").await;
    let (addr, stop, server) = start(&env).await;
    let opened = post(
        addr,
        "/v1/accounts",
        Some(&web),
        None,
        r#"{"region": "US", "currency": "USD"}"#,
    )
    .await;
    let id = opened.body["id"].as_i64().unwrap();
    let guesses = [
        "7000 0000 0000 0001",
        "7000 0000 0000 0002",
        "7000 0000 0000 0003",
    ];
    for (n, guess) in guesses.iter().enumerate() {
        let body = json!({ "code": guess });
        let reply = moving(
            addr,
            &format!("/v1/accounts/{id}/redemptions"),
            &web,
            &format!("g-{n}"),
            body,
        )
        .await;
        assert_eq!(reply.status, 404, "{}", reply.text);
    }

    let attempts = format!("/v1/accounts/{id}/attempts");
    let log = get_with(addr, &attempts, Some(&desk)).await;
    assert_eq!(log.status, 200, "{}", log.text);
    let rows = log.body["attempts"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["account_id"], id);
    assert_eq!(rows[0]["caller"], "api:web");
    assert_eq!(rows[0]["outcome"], "redeem.not_found");
    assert_eq!(rows[0]["serial"], Value::Null);
    assert!(rows[0]["attempt_id"].as_i64() > rows[1]["attempt_id"].as_i64());
    for guess in guesses {
        assert!(!log.text.contains(guess), "no code is shown");
        assert!(
            !log.text.contains(&guess.replace(' ', "")),
            "no code is shown"
        );
    }
    let one = get_with(addr, &format!("{attempts}?limit=1"), Some(&desk)).await;
    assert_eq!(one.body["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(one.body["attempts"][0], rows[0]);
    let bad = get_with(addr, &format!("{attempts}?limit=1000"), Some(&desk)).await;
    assert_eq!(bad.status, 400);
    assert_eq!(code(&bad), "api.bad_query");
    let nothing = get_with(addr, "/v1/accounts/9000/attempts", Some(&desk)).await;
    assert_eq!(nothing.status, 404);
    assert_eq!(code(&nothing), "account.not_found");
    for other in ["redeem", "finance"] {
        let other = key(&env, &format!("x-{other}"), other).await;
        assert_eq!(get_with(addr, &attempts, Some(&other)).await.status, 403);
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(
    api_accounts_attempts,
    the_attempt_log_shows_refusals_without_codes
);

/// Who may call each account route, as the README's table says: every role against every
/// route. A role not allowed is 403 `api.forbidden` and nothing is written; no key is 401.
async fn each_account_route_allows_exactly_its_roles<S: Store>(env: TestApp<S>) {
    acme(&env).await;
    let roles = ["pos", "redeem", "support", "warehouse", "finance", "admin"];
    let mut keys = Vec::new();
    for role in roles {
        keys.push((role, key(&env, &format!("k-{role}"), role).await));
    }
    let (addr, stop, server) = start(&env).await;
    let support = &keys[2].1;
    let opened = post(
        addr,
        "/v1/accounts",
        Some(support),
        None,
        r#"{"region": "US", "currency": "USD"}"#,
    )
    .await;
    let id = opened.body["id"].as_i64().unwrap();
    let accounts_before = env.count("SELECT count(*) FROM account").await;

    // Well-formed bodies, so that only the role decides.
    let routes: [(&str, String, Option<&str>, &[&str]); 10] = [
        (
            "POST",
            "/v1/accounts".into(),
            Some(r#"{"region": "US", "currency": "USD"}"#),
            &["redeem", "support"],
        ),
        (
            "GET",
            format!("/v1/accounts/{id}"),
            None,
            &["redeem", "support", "finance"],
        ),
        (
            "GET",
            format!("/v1/accounts/{id}/balance"),
            None,
            &["redeem", "support", "finance"],
        ),
        (
            "GET",
            format!("/v1/accounts/{id}/history"),
            None,
            &["redeem", "support", "finance"],
        ),
        (
            "GET",
            format!("/v1/accounts/{id}/attempts"),
            None,
            &["support"],
        ),
        (
            "POST",
            format!("/v1/accounts/{id}/spends"),
            Some(
                r#"{"order": "O-1", "service": "app-store", "amount": "1.00", "currency": "USD"}"#,
            ),
            &["redeem"],
        ),
        (
            "POST",
            format!("/v1/accounts/{id}/refunds"),
            Some(r#"{"order": "O-1", "refund": "R-1", "amount": "1.00", "currency": "USD"}"#),
            &["redeem", "support"],
        ),
        (
            "POST",
            format!("/v1/accounts/{id}/adjustments"),
            Some(r#"{"amount": "1.00", "currency": "USD", "reason": "goodwill"}"#),
            &["support"],
        ),
        (
            "POST",
            "/v1/adjustments/9000/approve".into(),
            None,
            &["support"],
        ),
        (
            "POST",
            format!("/v1/accounts/{id}/redemptions"),
            Some(r#"{"code": "7000 0000 0000 0001"}"#),
            &["redeem"],
        ),
    ];
    for (method, path, body, allowed) in &routes {
        let unkeyed = call(addr, method, path, None, Some("i-0"), *body).await;
        assert_eq!(unkeyed.status, 401, "{method} {path}");
        for (role, key) in &keys {
            if allowed.contains(role) {
                continue;
            }
            let reply = call(addr, method, path, Some(key), Some("i-1"), *body).await;
            assert_eq!(reply.status, 403, "{role} {method} {path}: {}", reply.text);
            assert_eq!(code(&reply), "api.forbidden");
        }
    }
    // The role is judged before anything else the request holds: a body that is not even JSON,
    // or a path id that is none, is still 403 to a key that may not call the route.
    let pos = &keys[0].1;
    for path in [
        format!("/v1/accounts/{id}/spends"),
        "/v1/accounts/x/adjustments".to_string(),
    ] {
        let reply = call(addr, "POST", &path, Some(pos), None, Some("{not json")).await;
        assert_eq!(reply.status, 403, "{path}: {}", reply.text);
    }
    assert_eq!(
        env.count("SELECT count(*) FROM account").await,
        accounts_before
    );
    assert_eq!(env.count("SELECT count(*) FROM transfer").await, 0);
    assert_eq!(env.count("SELECT count(*) FROM redeem_attempt").await, 0);

    // And the allowed roles get through (the reads here; the writes in the tests above).
    for (method, path, body, allowed) in &routes {
        if *method != "GET" {
            continue;
        }
        for (role, key) in keys.iter().filter(|(role, _)| allowed.contains(role)) {
            let reply = call(addr, method, path, Some(key), None, *body).await;
            assert_eq!(reply.status, 200, "{role} {method} {path}: {}", reply.text);
        }
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(
    api_accounts_roles,
    each_account_route_allows_exactly_its_roles
);

/// The OpenAPI document describes each account route's answers as they are sent: every reply
/// below holds exactly what its documented schema says (each required field, no other, a null
/// only where the schema allows one, enums from their values, integers as integers), for each
/// status it is sent with.
async fn the_document_matches_the_replies<S: Store>(env: TestApp<S>) {
    acme(&env).await;
    let web = key(&env, "web", "redeem").await;
    let alice = key(&env, "alice", "support").await;
    let bob = key(&env, "bob", "support").await;
    let (addr, stop, server) = start(&env).await;
    let doc = crate::helpers::http::get(addr, "/openapi.json").await.body;
    let check = |template: &str, method: &str, reply: &Reply| {
        let documented = &doc["paths"][template][method]["responses"][reply.status.to_string()];
        let schema = &documented["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {template} {} is documented",
            reply.status
        );
        conforms(
            &doc,
            schema,
            &reply.body,
            &format!("{method} {template} {}", reply.status),
        );
    };

    let opened = post(
        addr,
        "/v1/accounts",
        Some(&web),
        None,
        r#"{"region": "US", "currency": "USD", "external_id": "C-1"}"#,
    )
    .await;
    check("/v1/accounts", "post", &opened);
    let id = opened.body["id"].as_i64().unwrap();
    let account = format!("/v1/accounts/{id}");
    check(
        "/v1/accounts/{id}",
        "get",
        &get_with(addr, &account, Some(&web)).await,
    );
    check(
        "/v1/accounts/{id}/balance",
        "get",
        &get_with(addr, &format!("{account}/balance"), Some(&web)).await,
    );
    let adjustments = format!("{account}/adjustments");
    let credit = json!({ "amount": "60.00", "currency": "USD", "reason": "goodwill" });
    let posted = moving(addr, &adjustments, &alice, "d-1", credit).await;
    check("/v1/accounts/{id}/adjustments", "post", &posted);
    let large = json!({ "amount": "500.00", "currency": "USD", "reason": "goodwill" });
    let pending = moving(addr, &adjustments, &alice, "d-2", large).await;
    assert_eq!(pending.status, 202);
    check("/v1/accounts/{id}/adjustments", "post", &pending);
    let approve = format!("/v1/adjustments/{}/approve", pending.body["adjustment_id"]);
    let approved = call(addr, "POST", &approve, Some(&bob), Some("d-3"), None).await;
    check("/v1/adjustments/{id}/approve", "post", &approved);
    let order =
        json!({ "order": "A-1", "service": "app-store", "amount": "10.00", "currency": "USD" });
    let spent = moving(
        addr,
        &format!("{account}/spends"),
        &web,
        "d-4",
        order.clone(),
    )
    .await;
    assert_eq!(spent.status, 201);
    check("/v1/accounts/{id}/spends", "post", &spent);
    let again = moving(addr, &format!("{account}/spends"), &web, "d-5", order).await;
    assert_eq!(again.status, 200);
    check("/v1/accounts/{id}/spends", "post", &again);
    let refund = json!({ "order": "A-1", "refund": "R-1", "amount": "1.00", "currency": "USD" });
    let refunded = moving(addr, &format!("{account}/refunds"), &web, "d-6", refund).await;
    check("/v1/accounts/{id}/refunds", "post", &refunded);
    let page = get_with(addr, &format!("{account}/history?limit=2"), Some(&web)).await;
    assert!(page.body["next"].is_i64());
    check("/v1/accounts/{id}/history", "get", &page);
    let last = get_with(addr, &format!("{account}/history"), Some(&web)).await;
    assert!(last.body["next"].is_null());
    check("/v1/accounts/{id}/history", "get", &last);
    let guess = json!({ "code": "7000 0000 0000 0001" });
    moving(addr, &format!("{account}/redemptions"), &web, "d-7", guess).await;
    let log = get_with(addr, &format!("{account}/attempts"), Some(&alice)).await;
    assert_eq!(log.body["attempts"].as_array().unwrap().len(), 1);
    check("/v1/accounts/{id}/attempts", "get", &log);
    // Refusals too: the one error body.
    let refused = get_with(addr, "/v1/accounts/x", Some(&web)).await;
    check("/v1/accounts/{id}", "get", &refused);
    let conflict = call(addr, "POST", &approve, Some(&bob), Some("d-8"), None).await;
    assert_eq!(conflict.status, 409);
    check("/v1/adjustments/{id}/approve", "post", &conflict);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(api_accounts_document, the_document_matches_the_replies);

/// Whether `value` is what `schema` (within `doc`) describes, for the parts of JSON Schema the
/// document uses: `$ref`, `type` (a list where nullable), `properties`, `required`, `items`,
/// `enum`, `minimum`. Every object's fields must be documented: an answer holds nothing more.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return conforms(doc, &doc["components"]["schemas"][name], value, at);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    assert!(
        types.is_empty() || types.contains(&kind),
        "{at}: a {kind} where the document says {types:?}: {value}"
    );
    if let Some(values) = schema["enum"].as_array() {
        assert!(
            values.contains(value),
            "{at}: {value} is not one of {values:?}"
        );
    }
    if let (Some(minimum), Some(n)) = (schema["minimum"].as_i64(), value.as_i64()) {
        assert!(n >= minimum, "{at}: {n} is under {minimum}");
    }
    match value {
        Value::Object(fields) => {
            let properties = schema["properties"].as_object().unwrap_or_else(|| {
                panic!("{at}: an object where the document describes none: {value}")
            });
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap();
                assert!(
                    fields.contains_key(name),
                    "{at}: `{name}` is missing: {value}"
                );
            }
            for (name, field) in fields {
                let property = properties
                    .get(name)
                    .unwrap_or_else(|| panic!("{at}: `{name}` is not documented"));
                conforms(doc, property, field, &format!("{at}.{name}"));
            }
        }
        Value::Array(items) => {
            for (n, item) in items.iter().enumerate() {
                conforms(doc, &schema["items"], item, &format!("{at}[{n}]"));
            }
        }
        _ => {}
    }
}
