//! The trade-in routes through the real router on a real socket: rows as JSON, a CSV upload
//! streamed to storage and imported by its job, the report and the rejects file, a valuation,
//! and finance's approval.

use serde_json::{Value, json};

use tender::store::Store;

use crate::helpers::http::{Reply, call, get_with, key, post, send_raw, start};
use crate::helpers::{TestApp, actor, both_backends, open_account};

fn code(reply: &Reply) -> &str {
    reply.body["error"]["code"].as_str().unwrap_or_default()
}

fn valuation(trade_in: &str, account: &str, device: &str, value: &str) -> Value {
    json!({
        "trade_in_id": trade_in,
        "account_id": account,
        "warehouse_id": "WH-1",
        "device_model": "iPhone 13",
        "device_id": device,
        "grade": "good",
        "value": value,
        "currency": "USD",
        "assessed_at": "2026-03-01T14:30:00Z",
    })
}

/// A chunked body (a streamed answer) as its bytes.
fn dechunked(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    out
}

/// A CSV upload of `body` with `content_type`.
async fn upload(addr: std::net::SocketAddr, key: &str, content_type: &str, body: &str) -> Reply {
    let request = format!(
        "POST /v1/trade-in-files HTTP/1.1\r\nHost: tender\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    send_raw(addr, request.as_bytes()).await
}

/// A warehouse key sends valuations as rows: each gets its result (a good one `accepted` with
/// its id, a mistyped IMEI `rejected` with `tradein.bad_imei`); a retry under the same
/// Idempotency-Key is the first answer, replayed. More than 100 rows is 422
/// `tradein.too_many_rows`, and a body over the route's 300 KiB is 413. A finance key may not
/// send rows (403); a warehouse key may read the valuation but not approve it.
async fn rows_are_taken_in_one_by_one<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    let warehouse = key(&env, "wh", "warehouse").await;
    let books = key(&env, "books", "finance").await;
    let (addr, stop, server) = start(&env).await;

    let body = json!({ "valuations": [
        valuation("TI-1", &account, "490154203237518", "215.00"),
        valuation("TI-2", &account, "490154203237519", "100.00"),
    ]})
    .to_string();
    let first = post(
        addr,
        "/v1/trade-ins",
        Some(&warehouse),
        Some("rows-1"),
        &body,
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let results = first.body["results"].as_array().unwrap();
    assert_eq!(results[0]["outcome"], "accepted");
    assert_eq!(results[0]["trade_in_ref"], "TI-1");
    let id = results[0]["valuation_id"].as_i64().unwrap();
    assert_eq!(results[1]["outcome"], "rejected");
    assert_eq!(results[1]["code"], "tradein.bad_imei");
    assert!(results[1].get("valuation_id").is_none());
    let again = post(
        addr,
        "/v1/trade-ins",
        Some(&warehouse),
        Some("rows-1"),
        &body,
    )
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    let many: Vec<Value> = (0..101)
        .map(|i| valuation(&format!("TI-M{i}"), &account, "DEVICE01", "1.00"))
        .collect();
    let too_many = post(
        addr,
        "/v1/trade-ins",
        Some(&warehouse),
        Some("rows-2"),
        &json!({ "valuations": many }).to_string(),
    )
    .await;
    assert_eq!(too_many.status, 422, "{}", too_many.text);
    assert_eq!(code(&too_many), "tradein.too_many_rows");
    let huge = json!({ "valuations": [
        { "device_model": "x".repeat(tender::api::tradein::TRADE_INS_BODY_MAX_BYTES) }
    ]})
    .to_string();
    let over = post(
        addr,
        "/v1/trade-ins",
        Some(&warehouse),
        Some("rows-3"),
        &huge,
    )
    .await;
    assert_eq!(over.status, 413, "{}", over.text);
    assert_eq!(code(&over), "api.body_too_large");
    let finance_sends = post(addr, "/v1/trade-ins", Some(&books), Some("rows-4"), &body).await;
    assert_eq!(finance_sends.status, 403);

    let shown = get_with(addr, &format!("/v1/trade-ins/{id}"), Some(&warehouse)).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    assert_eq!(shown.body["state"], "queued");
    assert_eq!(shown.body["device_last4"], "7518");
    assert_eq!(shown.body["value"]["amount"], "215.00");
    let path = format!("/v1/trade-ins/{id}/approve");
    let by_warehouse = call(addr, "POST", &path, Some(&warehouse), Some("a-1"), None).await;
    assert_eq!(by_warehouse.status, 403);
    let not_held = call(addr, "POST", &path, Some(&books), Some("a-2"), None).await;
    assert_eq!(not_held.status, 409, "{}", not_held.text);
    assert_eq!(code(&not_held), "tradein.not_held");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// A CSV upload is streamed to storage and answered 202; the import job reads it, and its
/// report and rejects file are then at `/v1/trade-in-files/{id}` (a page of row results) and
/// `…/rejects` (the header with `line` and `reason`, each refused row as sent, the
/// formula-looking model quoted). The same bytes again answer 200 with the first upload.
/// Another media type is 415. A held credit is approved by a finance key (the warehouse key
/// sent it), once: again is a replay.
async fn files_are_uploaded_reported_and_approved<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    let warehouse = key(&env, "wh", "warehouse").await;
    let books = key(&env, "books", "finance").await;
    let trade_ins = env.app.services().trade_ins();
    trade_ins
        .set_band("MacBook Pro", "1000.00", "USD", &actor())
        .await
        .unwrap();
    let (addr, stop, server) = start(&env).await;

    let csv = format!(
        "trade_in_id,account_id,warehouse_id,device_model,device_id,grade,value,currency,assessed_at\n\
         TI-1,{account},WH-1,iPhone 13,490154203237518,good,215.00,USD,2026-03-01T14:30:00Z\n\
         TI-2,{account},WH-1,=cmd|' /C calc'!A0,C02ZW1ABMD6T,good,$40.00,USD,2026-03-01T14:30:00Z\n\
         TI-3,{account},WH-1,MacBook Pro,C02ZW1ABMD7T,like_new,1450.00,USD,2026-03-01T15:00:00Z\n"
    );
    let wrong_type = upload(addr, &warehouse, "application/json", &csv).await;
    assert_eq!(wrong_type.status, 415);
    let stored = upload(addr, &warehouse, "text/csv", &csv).await;
    assert_eq!(stored.status, 202, "{}", stored.text);
    assert_eq!(stored.body["state"], "received");
    let file_id = stored.body["file_id"].as_i64().unwrap();

    // What the import-trade-ins job runs.
    trade_ins.import_received(file_id, &actor()).await.unwrap();
    let report = get_with(
        addr,
        &format!("/v1/trade-in-files/{file_id}?limit=2"),
        Some(&books),
    )
    .await;
    assert_eq!(report.status, 200, "{}", report.text);
    assert_eq!(report.body["file"]["state"], "imported");
    assert_eq!(report.body["file"]["rows"]["accepted"], 2);
    assert_eq!(report.body["file"]["rows"]["rejected"], 1);
    assert_eq!(report.body["rows"][1]["code"], "money.malformed");
    assert_eq!(report.body["next"], 3);
    let rest = get_with(
        addr,
        &format!("/v1/trade-in-files/{file_id}?after=3"),
        Some(&books),
    )
    .await;
    assert_eq!(rest.body["rows"][0]["row"], 4);
    assert_eq!(rest.body["next"], Value::Null);
    let rejects = get_with(
        addr,
        &format!("/v1/trade-in-files/{file_id}/rejects"),
        Some(&warehouse),
    )
    .await;
    assert_eq!(rejects.status, 200);
    assert!(
        rejects
            .header("content-type")
            .unwrap()
            .starts_with("text/csv")
    );
    assert_eq!(rejects.header("transfer-encoding"), Some("chunked"));
    let text = dechunked(&rejects.text);
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "line,reason,trade_in_id,account_id,warehouse_id,device_model,device_id,grade,value,currency,assessed_at"
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with("3,"), "{row}");
    assert!(row.contains(",'=cmd|' /C calc'!A0,"), "{row}");
    assert!(lines.next().is_none());

    let repeated = upload(addr, &warehouse, "text/csv", &csv).await;
    assert_eq!(repeated.status, 200, "{}", repeated.text);
    assert_eq!(repeated.body["file_id"], file_id);
    assert_eq!(repeated.body["repeated"], true);

    let run = trade_ins.post_queued(&actor()).await.unwrap();
    assert_eq!((run.posted, run.held), (1, 1));
    let held = trade_ins
        .list(
            Some(tender::domain::TradeInState::Held),
            None,
            tender::domain::PageRows::MAX,
        )
        .await
        .unwrap();
    let path = format!("/v1/trade-ins/{}/approve", held[0].id);
    let approved = call(addr, "POST", &path, Some(&books), Some("ok-1"), None).await;
    assert_eq!(approved.status, 200, "{}", approved.text);
    assert_eq!(approved.body["outcome"], "posted");
    assert_eq!(approved.body["amount"]["amount"], "1450.00");
    let twice = call(addr, "POST", &path, Some(&books), Some("ok-2"), None).await;
    assert_eq!(twice.status, 200, "{}", twice.text);
    assert_eq!(twice.body["replayed"], true);
    let balance = get_with(
        addr,
        &format!("/v1/accounts/{account}/balance"),
        Some(&books),
    )
    .await;
    assert_eq!(balance.body["balance"]["amount"], "1665.00");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

both_backends!(api_tradein_rows, rows_are_taken_in_one_by_one);
both_backends!(api_tradein_files, files_are_uploaded_reported_and_approved);
