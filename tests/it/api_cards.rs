//! Cards and batches over HTTP, on both backends, through the real router on a real socket.
//!
//! - `POST /v1/activations` and `POST /v1/voids` take point-of-sale keys and act for the key's
//!   retailer: 201 for a new sale or void, 200 with the same body (`replayed: true`) for a retry
//!   under the same POS transaction, whatever its `Idempotency-Key`. A range answers card by
//!   card.
//! - A point-of-sale key of another retailer gets 404 `card.not_found` for a card it did not
//!   issue, read, sold or voided: exactly the answer for a card that does not exist. The same for
//!   batches.
//! - A store-bound key acts only for its store: 403 `api.forbidden_store`.
//! - Each route takes the roles the README's table lists, 403 `api.forbidden` for the others.
//! - Bad serials and values are refused with their stable codes and write nothing.

use std::net::SocketAddr;

use serde_json::{Value, json};
use tender::codegen::CodeGenerator;
use tender::domain::{Batch, Serial};
use tender::service::batches::BatchForm;
use tender::service::cards::StoreForm;
use tender::store::Store;

use crate::helpers::http::{Reply, acme, call, get_with, key, pos_key, post, start};
use crate::helpers::{TestApp, actor, both_backends, usd_form};

/// A serial no batch holds (its check digit is right).
fn absent() -> Serial {
    Serial::from_sequence(99_999_999_000).unwrap()
}

/// The `n`th card of `batch`.
fn nth(batch: &Batch, n: u64) -> Serial {
    Serial::from_sequence(batch.first_serial.sequence() + n).unwrap()
}

/// Adds `store` (in Texas) to `retailer`.
async fn add_store<S: Store>(env: &TestApp<S>, retailer: &str, store: &str) {
    let form = StoreForm {
        retailer: retailer.into(),
        store: store.into(),
        jurisdiction: "US-TX".into(),
    };
    env.app
        .services()
        .cards()
        .add_store(&form, &actor())
        .await
        .unwrap();
}

/// A generated batch of `count` 25.00 USD cards for `retailer`.
async fn batch_of<S: Store>(env: &TestApp<S>, retailer: &str, count: u64) -> Batch {
    let form = BatchForm {
        retailer: retailer.into(),
        ..usd_form(count)
    };
    let batch = env
        .app
        .services()
        .batches()
        .request(&form, &actor())
        .await
        .unwrap();
    env.generate(batch.id, &mut CodeGenerator::from_os_rng(), 100)
        .await
}

/// Acme with stores S1 and S2 and a generated batch of 5 cards.
async fn acme_with_cards<S: Store>(env: &TestApp<S>) -> Batch {
    acme(env).await;
    add_store(env, "Acme", "S1").await;
    add_store(env, "Acme", "S2").await;
    batch_of(env, "Acme", 5).await
}

/// A POS request's body at `store`, till T1, under `txn`.
fn at(store: &str, txn: &str, serial: Serial) -> Value {
    json!({ "serial": serial.to_string(), "store": store, "terminal": "T1", "pos_txn": txn })
}

/// A fresh `Idempotency-Key` for a value-moving request: a retry here is a new HTTP request
/// under the same POS transaction, which the POS natural key (not the header) answers.
fn fresh() -> String {
    ulid::Ulid::generate().to_string()
}

async fn activate(addr: SocketAddr, key: &str, body: &Value) -> Reply {
    let body = body.to_string();
    post(addr, "/v1/activations", Some(key), Some(&fresh()), &body).await
}

async fn void(addr: SocketAddr, key: &str, body: &Value) -> Reply {
    post(
        addr,
        "/v1/voids",
        Some(key),
        Some(&fresh()),
        &body.to_string(),
    )
    .await
}

/// The body without its `replayed` flag.
fn settled(body: &Value) -> Value {
    let mut body = body.clone();
    body.as_object_mut().unwrap().remove("replayed");
    body
}

/// A till sells one card (201), its retry gets the same answer (200, `replayed`), a box sells
/// card by card (a card already sold says so, the rest are sold), the card shows as sold, and
/// a void reverses it (201, then 200 on a retry).
async fn activations_and_voids_over_http<S: Store>(env: TestApp<S>) {
    let batch = acme_with_cards(&env).await;
    let till = key(&env, "till", "pos").await;
    let (addr, stop, server) = start(&env).await;

    let sale = at("S1", "sale-1", nth(&batch, 0));
    let first = activate(addr, &till, &sale).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.body["replayed"], false);
    let card = &first.body["cards"][0];
    assert_eq!(card["serial"], nth(&batch, 0).to_string());
    assert_eq!(card["outcome"], "activated");
    assert_eq!(
        card["value"],
        json!({ "amount": "25.00", "currency": "USD" })
    );
    assert!(first.body["pos_request_id"].as_i64().unwrap() > 0);
    assert!(first.body["transfer_id"].as_i64().unwrap() > 0);

    let again = activate(addr, &till, &sale).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["replayed"], true);
    assert_eq!(settled(&again.body), settled(&first.body));

    let mut with_value = at("S1", "sale-2", nth(&batch, 4));
    with_value["value"] = json!({ "amount": "25.00", "currency": "USD" });
    let priced = activate(addr, &till, &with_value).await;
    assert_eq!(priced.status, 201, "{}", priced.text);

    let mut range = at("S1", "box-1", nth(&batch, 0));
    range["to_serial"] = json!(nth(&batch, 2).to_string());
    let boxed = activate(addr, &till, &range).await;
    assert_eq!(boxed.status, 201, "{}", boxed.text);
    let outcomes: Vec<&str> = boxed.body["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["card.already_active", "activated", "activated"],
        "{}",
        boxed.text
    );
    assert!(boxed.body["cards"][0]["message"].is_string());
    assert!(boxed.body["cards"][1]["message"].is_null());

    let path = format!("/v1/cards/{}", nth(&batch, 0));
    let shown = get_with(addr, &path, Some(&till)).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    assert_eq!(shown.body["state"], "active");
    assert_eq!(shown.body["retailer"], "Acme");
    assert_eq!(shown.body["sale"]["store"], "S1");
    assert_eq!(shown.body["sale"]["pos_txn"], "sale-1");
    assert_eq!(shown.body["history"][0]["action"], "activated");
    assert_eq!(shown.body["history"][0]["actor"], "api:till");

    let undo = at("S1", "void-1", nth(&batch, 0));
    let voided = void(addr, &till, &undo).await;
    assert_eq!(voided.status, 201, "{}", voided.text);
    assert_eq!(voided.body["cards"][0]["outcome"], "voided");
    let retried = void(addr, &till, &undo).await;
    assert_eq!(retried.status, 200, "{}", retried.text);
    assert_eq!(settled(&retried.body), settled(&voided.body));
    let shown = get_with(addr, &path, Some(&till)).await;
    assert_eq!(shown.body["state"], "voided");
    assert_eq!(shown.body["sale"]["void_pos_txn"], "void-1");

    // The document names exactly the fields each answer carries.
    let doc = crate::helpers::http::get(addr, "/openapi.json").await.body;
    let fields = |schema: &str| -> Vec<String> {
        let mut names: Vec<String> = doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{schema} is documented: {doc}"))
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    };
    let keys = |body: &Value| -> Vec<String> {
        let mut names: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
        names.sort();
        names
    };
    // Each operation has its own id, as OpenAPI requires and clients generate names from.
    let mut ids: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|operation| operation["operationId"].as_str().unwrap())
        .collect();
    let operations = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), operations, "{ids:?}");
    assert_eq!(fields("PosReply"), keys(&voided.body));
    assert_eq!(fields("CardOutcome"), keys(&boxed.body["cards"][0]));
    assert_eq!(fields("CardReply"), keys(&shown.body));
    assert_eq!(fields("CardSaleReply"), keys(&shown.body["sale"]));
    assert_eq!(fields("CardEvent"), keys(&shown.body["history"][0]));

    // One request per sale, box and void: retries wrote nothing.
    assert_eq!(env.count("SELECT count(*) FROM pos_request").await, 4);
    assert_eq!(env.count("SELECT count(*) FROM card_activation").await, 4);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(api_cards_activation, activations_and_voids_over_http);

/// Support blocks a card with a reason and unblocks it; doing either twice is a 409 with its
/// code; a blocked card cannot be sold. Point-of-sale and finance keys may not block.
async fn block_and_unblock_over_http<S: Store>(env: TestApp<S>) {
    let batch = acme_with_cards(&env).await;
    let support = key(&env, "desk", "support").await;
    let finance = key(&env, "books", "finance").await;
    let till = key(&env, "till", "pos").await;
    let (addr, stop, server) = start(&env).await;
    let block = format!("/v1/cards/{}/block", nth(&batch, 1));
    let unblock = format!("/v1/cards/{}/unblock", nth(&batch, 1));
    let reason = json!({ "reason": "lost_in_transit" }).to_string();

    for (key, name) in [(&till, "pos"), (&finance, "finance")] {
        let refused = post(addr, &block, Some(key), None, &reason).await;
        assert_eq!(refused.status, 403, "{name}");
        assert_eq!(refused.body["error"]["code"], "api.forbidden");
    }
    let bad = json!({ "reason": "Lost In Transit" }).to_string();
    let refused = post(addr, &block, Some(&support), None, &bad).await;
    assert_eq!(refused.status, 422);
    assert_eq!(refused.body["error"]["code"], "ledger.bad_name");
    assert_eq!(env.count("SELECT count(*) FROM card_event").await, 0);

    let blocked = post(addr, &block, Some(&support), None, &reason).await;
    assert_eq!(blocked.status, 200, "{}", blocked.text);
    assert_eq!(blocked.body["blocked"], "lost_in_transit");
    assert_eq!(blocked.body["state"], "issued");
    let doc = crate::helpers::http::get(addr, "/openapi.json").await.body;
    let mut documented: Vec<&String> = doc["components"]["schemas"]["CardFlags"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    documented.sort();
    let mut sent: Vec<&String> = blocked.body.as_object().unwrap().keys().collect();
    sent.sort();
    assert_eq!(documented, sent);
    let twice = post(addr, &block, Some(&support), None, &reason).await;
    assert_eq!(twice.status, 409);
    assert_eq!(twice.body["error"]["code"], "card.already_blocked");

    let sale = activate(addr, &till, &at("S1", "sale-1", nth(&batch, 1))).await;
    assert_eq!(sale.status, 409);
    assert_eq!(sale.body["error"]["code"], "card.blocked");

    let found = json!({ "reason": "found" }).to_string();
    let lifted = post(addr, &unblock, Some(&support), None, &found).await;
    assert_eq!(lifted.status, 200, "{}", lifted.text);
    assert!(lifted.body["blocked"].is_null());
    let twice = post(addr, &unblock, Some(&support), None, &found).await;
    assert_eq!(twice.status, 409);
    assert_eq!(twice.body["error"]["code"], "card.not_blocked");

    let path = format!("/v1/cards/{}", nth(&batch, 1));
    let shown = get_with(addr, &path, Some(&support)).await;
    let actions: Vec<&str> = shown.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["blocked", "unblocked"]);
    assert_eq!(shown.body["history"][0]["actor"], "api:desk");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(api_cards_block, block_and_unblock_over_http);

/// A point-of-sale key of retailer Bolt reading, selling or voiding Acme's card gets exactly
/// what it gets for a card that does not exist: 404 `card.not_found`, the same sentence; and
/// nothing is written. Acme's batch is likewise a 404 to it, while Acme's own key reads both.
async fn another_retailers_cards_do_not_exist_for_a_key<S: Store>(env: TestApp<S>) {
    let batch = acme_with_cards(&env).await;
    env.app
        .services()
        .retailers()
        .add("Bolt", "2.5", &actor())
        .await
        .unwrap();
    add_store(&env, "Bolt", "B1").await;
    let acme_till = key(&env, "acme-till", "pos").await;
    let bolt_till = pos_key(&env, "bolt-till", "Bolt", None).await;
    let (addr, stop, server) = start(&env).await;

    // Acme's card sold, so a void would otherwise find it active.
    let sold = nth(&batch, 0);
    let sale = activate(addr, &acme_till, &at("S1", "sale-1", sold)).await;
    assert_eq!(sale.status, 201, "{}", sale.text);
    let requests = env.count("SELECT count(*) FROM pos_request").await;

    let same = |reply: &Reply, serial: Serial, missing: &Reply| {
        assert_eq!(reply.status, 404, "{}", reply.text);
        assert_eq!(reply.body["error"]["code"], "card.not_found");
        let theirs = reply.body["error"]["message"].as_str().unwrap();
        let nothing = missing.body["error"]["message"].as_str().unwrap();
        assert_eq!(
            theirs.replace(&serial.to_string(), "S"),
            nothing.replace(&absent().to_string(), "S")
        );
        assert_eq!(missing.status, 404);
        assert_eq!(missing.body["error"]["code"], "card.not_found");
    };

    let read = get_with(addr, &format!("/v1/cards/{sold}"), Some(&bolt_till)).await;
    let missing = get_with(addr, &format!("/v1/cards/{}", absent()), Some(&bolt_till)).await;
    same(&read, sold, &missing);

    let sell = activate(addr, &bolt_till, &at("B1", "b-1", nth(&batch, 1))).await;
    let missing = activate(addr, &bolt_till, &at("B1", "b-2", absent())).await;
    same(&sell, nth(&batch, 1), &missing);

    let undo = void(addr, &bolt_till, &at("B1", "b-3", sold)).await;
    let missing = void(addr, &bolt_till, &at("B1", "b-4", absent())).await;
    same(&undo, sold, &missing);

    assert_eq!(
        env.count("SELECT count(*) FROM pos_request").await,
        requests
    );
    let own = get_with(addr, &format!("/v1/cards/{sold}"), Some(&acme_till)).await;
    assert_eq!(own.status, 200);
    assert_eq!(own.body["state"], "active");

    let path = format!("/v1/batches/{}", batch.id);
    let theirs = get_with(addr, &path, Some(&bolt_till)).await;
    assert_eq!(theirs.status, 404, "{}", theirs.text);
    assert_eq!(theirs.body["error"]["code"], "batch.not_found");
    let ours = get_with(addr, &path, Some(&acme_till)).await;
    assert_eq!(ours.status, 200, "{}", ours.text);
    assert_eq!(ours.body["id"], batch.id.0);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(
    api_cards_tenants,
    another_retailers_cards_do_not_exist_for_a_key
);

/// A key bound to store S1 sells and voids at S1, and is refused 403 `api.forbidden_store` at
/// the retailer's other store, writing nothing.
async fn a_store_bound_key_acts_only_for_its_store<S: Store>(env: TestApp<S>) {
    let batch = acme_with_cards(&env).await;
    let bound = pos_key(&env, "s1-till", "Acme", Some("S1")).await;
    let (addr, stop, server) = start(&env).await;

    let elsewhere = activate(addr, &bound, &at("S2", "sale-1", nth(&batch, 0))).await;
    assert_eq!(elsewhere.status, 403, "{}", elsewhere.text);
    assert_eq!(elsewhere.body["error"]["code"], "api.forbidden_store");
    assert_eq!(env.count("SELECT count(*) FROM pos_request").await, 0);

    let home = activate(addr, &bound, &at("S1", "sale-1", nth(&batch, 0))).await;
    assert_eq!(home.status, 201, "{}", home.text);
    let elsewhere = void(addr, &bound, &at("S2", "void-1", nth(&batch, 0))).await;
    assert_eq!(elsewhere.status, 403);
    assert_eq!(elsewhere.body["error"]["code"], "api.forbidden_store");
    let home = void(addr, &bound, &at("S1", "void-1", nth(&batch, 0))).await;
    assert_eq!(home.status, 201, "{}", home.text);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(
    api_cards_store_bound,
    a_store_bound_key_acts_only_for_its_store
);

/// An admin key requests a batch: 202 with the batch as requested and its path in `Location`;
/// admin, support, finance and the retailer's own till read it. Every other role is 403.
async fn batches_over_http<S: Store>(env: TestApp<S>) {
    acme(&env).await;
    let keys: Vec<(&str, String)> = vec![
        ("admin", key(&env, "ops", "admin").await),
        ("support", key(&env, "desk", "support").await),
        ("finance", key(&env, "books", "finance").await),
        ("pos", key(&env, "till", "pos").await),
        ("redeem", key(&env, "web", "redeem").await),
        ("warehouse", key(&env, "stock", "warehouse").await),
    ];
    let key_of = |role: &str| keys.iter().find(|(r, _)| *r == role).unwrap().1.clone();
    let (addr, stop, server) = start(&env).await;
    let body = json!({
        "retailer": "Acme", "count": 3, "currency": "USD", "value": "25.00", "region": "US",
        "expires_in_days": 365
    })
    .to_string();

    for (role, key) in &keys {
        if *role == "admin" {
            continue;
        }
        let refused = post(addr, "/v1/batches", Some(key), None, &body).await;
        assert_eq!(refused.status, 403, "{role}");
        assert_eq!(refused.body["error"]["code"], "api.forbidden");
    }
    assert_eq!(env.count("SELECT count(*) FROM batch").await, 0);

    let made = post(addr, "/v1/batches", Some(&key_of("admin")), None, &body).await;
    assert_eq!(made.status, 202, "{}", made.text);
    assert_eq!(made.body["state"], "requested");
    assert_eq!(made.body["count"], 3);
    assert_eq!(
        made.body["value"],
        json!({ "kind": "fixed", "value": { "amount": "25.00", "currency": "USD" } })
    );
    let id = made.body["id"].as_i64().unwrap();
    let path = format!("/v1/batches/{id}");
    assert_eq!(made.header("location"), Some(path.as_str()));
    let doc = crate::helpers::http::get(addr, "/openapi.json").await.body;
    let mut documented: Vec<&String> = doc["components"]["schemas"]["BatchReply"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    documented.sort();
    let mut sent: Vec<&String> = made.body.as_object().unwrap().keys().collect();
    sent.sort();
    assert_eq!(documented, sent);

    let variable = json!({
        "retailer": "Acme", "count": 2, "currency": "USD", "min": "10.00", "max": "500.00",
        "region": "US"
    })
    .to_string();
    let made = post(addr, "/v1/batches", Some(&key_of("admin")), None, &variable).await;
    assert_eq!(made.status, 202, "{}", made.text);
    assert_eq!(made.body["value"]["kind"], "variable");
    assert!(made.body["expires_at"].is_null());

    for (role, key) in &keys {
        let read = get_with(addr, &path, Some(key)).await;
        let allowed = ["admin", "support", "finance", "pos"].contains(role);
        assert_eq!(read.status, if allowed { 200 } else { 403 }, "{role}");
        if allowed {
            assert_eq!(read.body["id"], id);
        }
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(api_cards_batches, batches_over_http);

/// Only point-of-sale keys sell and void; the card view takes every role but redeem and
/// warehouse.
async fn card_routes_take_their_roles<S: Store>(env: TestApp<S>) {
    let batch = acme_with_cards(&env).await;
    let (addr, stop, server) = start(&env).await;
    let path = format!("/v1/cards/{}", nth(&batch, 0));
    for role in ["redeem", "support", "warehouse", "finance", "admin"] {
        let key = key(&env, &format!("k-{role}"), role).await;
        let sale = activate(addr, &key, &at("S1", "sale-1", nth(&batch, 0))).await;
        assert_eq!(sale.status, 403, "{role}");
        assert_eq!(sale.body["error"]["code"], "api.forbidden");
        let undo = void(addr, &key, &at("S1", "void-1", nth(&batch, 0))).await;
        assert_eq!(undo.status, 403, "{role}");
        let read = get_with(addr, &path, Some(&key)).await;
        let allowed = ["support", "finance", "admin"].contains(&role);
        assert_eq!(read.status, if allowed { 200 } else { 403 }, "{role}");
    }
    let anonymous = call(addr, "GET", &path, None, None, None).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(env.count("SELECT count(*) FROM pos_request").await, 0);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(api_cards_roles, card_routes_take_their_roles);

/// Malformed serials, values and batch requests are refused with their stable codes (400 for a
/// body of the wrong shape, 422 for a value refused), and nothing is written.
async fn bad_serials_and_values_write_nothing<S: Store>(env: TestApp<S>) {
    let batch = acme_with_cards(&env).await;
    let till = key(&env, "till", "pos").await;
    let admin = key(&env, "ops", "admin").await;
    let (addr, stop, server) = start(&env).await;
    let first = nth(&batch, 0);
    let mut typo = first.to_string();
    let last = typo.pop().unwrap().to_digit(10).unwrap();
    typo.push(char::from_digit((last + 1) % 10, 10).unwrap());

    let with = |field: &str, value: Value| {
        let mut body = at("S1", "sale-1", first);
        body[field] = value;
        body
    };
    let value = |amount: &str, currency: &str| json!({ "amount": amount, "currency": currency });
    let cases: Vec<(Value, u16, &str)> = vec![
        (with("serial", json!(typo)), 422, "serial.check_digit"),
        (with("serial", json!("12-34")), 422, "serial.wrong_length"),
        (with("serial", json!(13)), 400, "api.bad_body"),
        (
            with("to_serial", json!(absent().to_string())),
            422,
            "pos.range_too_large",
        ),
        (with("value", json!("25.00")), 400, "api.bad_body"),
        (
            with("value", json!({ "amount": 25, "currency": "USD" })),
            400,
            "api.bad_body",
        ),
        (with("value", value("25,00", "USD")), 422, "money.malformed"),
        (
            with("value", value("25.00", "EUR")),
            422,
            "activation.wrong_currency",
        ),
        (
            with("value", value("25.00", "XYZ")),
            422,
            "money.unknown_currency",
        ),
        (
            with("value", value("30.00", "USD")),
            422,
            "activation.value_fixed",
        ),
        (with("store", json!("S 1")), 422, "pos.bad_id"),
        (with("store", json!("S9")), 404, "pos.unknown_store"),
        (with("pos_time", json!("yesterday")), 400, "api.bad_body"),
        (with("retailer", json!("Acme")), 400, "api.bad_body"),
    ];
    for (body, status, code) in &cases {
        let reply = activate(addr, &till, body).await;
        assert_eq!(reply.status, *status, "{body}: {}", reply.text);
        assert_eq!(reply.body["error"]["code"], *code, "{body}");
    }
    let read = get_with(addr, &format!("/v1/cards/{typo}"), Some(&till)).await;
    assert_eq!(read.status, 422);
    assert_eq!(read.body["error"]["code"], "serial.check_digit");
    for bad in ["abc", "0", "-1", "99999999999999999999"] {
        let read = get_with(addr, &format!("/v1/batches/{bad}"), Some(&admin)).await;
        assert_eq!(read.status, 400, "{bad}");
        assert_eq!(read.body["error"]["code"], "api.bad_id", "{bad}");
    }
    let read = get_with(addr, "/v1/batches/999", Some(&admin)).await;
    assert_eq!(read.status, 404);
    assert_eq!(read.body["error"]["code"], "batch.not_found");

    let batches: Vec<(Value, u16, &str)> = vec![
        (
            json!({ "retailer": "Acme", "count": 0, "currency": "USD", "value": "25.00", "region": "US" }),
            422,
            "batch.bad_count",
        ),
        (
            json!({ "retailer": "Acme", "count": 2, "currency": "USD", "value": "25.00", "min": "1.00", "region": "US" }),
            422,
            "batch.value_choice",
        ),
        (
            json!({ "retailer": "Acme", "count": 2, "currency": "USD", "value": 25, "region": "US" }),
            400,
            "api.bad_body",
        ),
        (
            json!({ "retailer": "Nobody", "count": 2, "currency": "USD", "value": "25.00", "region": "US" }),
            404,
            "store.unknown_retailer",
        ),
        (
            json!({ "retailer": "Acme", "count": -1, "currency": "USD", "value": "25.00", "region": "US" }),
            400,
            "api.bad_body",
        ),
        (
            json!({ "retailer": "Acme", "count": 2.5, "currency": "USD", "value": "25.00", "region": "US" }),
            400,
            "api.bad_body",
        ),
        (
            json!({ "retailer": "Acme", "count": 1e30, "currency": "USD", "value": "25.00", "region": "US" }),
            400,
            "api.bad_body",
        ),
    ];
    for (body, status, code) in &batches {
        let reply = post(addr, "/v1/batches", Some(&admin), None, &body.to_string()).await;
        assert_eq!(reply.status, *status, "{body}: {}", reply.text);
        assert_eq!(reply.body["error"]["code"], *code, "{body}");
    }
    let fraction = r#"{"retailer": "Acme", "count": 2.5, "currency": "USD", "value": "25.00", "region": "US"}"#;
    let reply = post(addr, "/v1/batches", Some(&admin), None, fraction).await;
    assert_eq!(
        reply.body["error"]["message"],
        "`count` must be a whole number; amounts, codes and ids are JSON strings"
    );
    // JSON has one number type: a whole number written with a fraction or an exponent is the
    // same number, as JSON Schema's `integer` (and so the OpenAPI document) reads it.
    let written_as_floats = r#"{"retailer": "Acme", "count": 2.0, "currency": "USD", "value": "25.00", "region": "US", "expires_in_days": 3e1}"#;
    let reply = post(addr, "/v1/batches", Some(&admin), None, written_as_floats).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert_eq!(reply.body["count"], 2);
    assert_eq!(reply.body["expires_at"], "2026-03-31T09:00:00Z");

    assert_eq!(env.count("SELECT count(*) FROM pos_request").await, 0);
    assert_eq!(env.count("SELECT count(*) FROM card_activation").await, 0);
    assert_eq!(env.count("SELECT count(*) FROM batch").await, 2);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(api_cards_bad_input, bad_serials_and_values_write_nothing);
