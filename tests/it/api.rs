//! The HTTP API through the real router on a real socket.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use tender::store::{DbPool, PgStore, Store};

use tender::codegen::CodeGenerator;
use tender::error::Classify;
use tender::service::api_keys::ApiKeyForm;
use tender::service::cards::{ActivateForm, PosForm, StoreForm};

use crate::helpers::{TestApp, TestDb, actor, both_backends, open_account, usd_form};

/// A response as the client sees it.
struct Reply {
    status: u16,
    request_id: Option<String>,
    /// Every header, names in lower case.
    headers: Vec<(String, String)>,
    /// The body as text, and as JSON where it is JSON.
    text: String,
    body: serde_json::Value,
}

/// One HTTP/1.1 GET on a new connection.
async fn get(addr: SocketAddr, path: &str) -> Reply {
    get_with(addr, path, None).await
}

/// One HTTP/1.1 GET on a new connection, with `Authorization: Bearer KEY` when given a key.
async fn get_with(addr: SocketAddr, path: &str, key: Option<&str>) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let auth = key.map_or(String::new(), |key| {
        format!("Authorization: Bearer {key}\r\n")
    });
    let request = format!("GET {path} HTTP/1.1\r\nHost: tender\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    parse_reply(&response)
}

/// A whole HTTP/1.1 response, as read off the socket.
fn parse_reply(response: &str) -> Reply {
    let (head, text) = response.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_string()))
        .collect();
    let request_id = headers
        .iter()
        .find(|(name, _)| name == "x-request-id")
        .map(|(_, value)| value.clone());
    Reply {
        status: status.parse().unwrap(),
        request_id,
        headers,
        text: text.to_string(),
        body: serde_json::from_str(text).unwrap_or(serde_json::Value::Null),
    }
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `env`'s API on a free loopback port, and the way to stop it.
async fn start<S: Store>(
    env: &TestApp<S>,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(tender::api::serve(listener, env.app.clone(), async {
        let _ = stopped.await;
    }));
    (addr, stop, server)
}

async fn the_probes_answer_over_a_socket_and_the_server_stops_on_request<S: Store>(
    env: TestApp<S>,
) {
    let (addr, stop, server) = start(&env).await;

    let health = get(addr, "/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body, serde_json::json!({ "status": "ok" }));
    let ready = get(addr, "/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body, serde_json::json!({ "status": "ready" }));

    // Every response is named, each with its own id; an error's body carries the same id.
    let missing = get(addr, "/v1/nothing").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["error"]["code"], "api.not_found");
    let id = missing.request_id.expect("an X-Request-Id header");
    assert_eq!(missing.body["error"]["request_id"], id.as_str());
    let ids = [health.request_id.unwrap(), ready.request_id.unwrap(), id];
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}
both_backends!(
    api_probes,
    the_probes_answer_over_a_socket_and_the_server_stops_on_request
);

async fn a_schema_behind_the_binary_is_not_ready_but_still_healthy<S: Store>(env: TestApp<S>) {
    let table = match env.store().db_pool() {
        DbPool::Sqlite(_) => "_tender_migrations",
        DbPool::Postgres(_) => "_sqlx_migrations",
    };
    env.exec(&format!(
        "DELETE FROM {table} WHERE version = (SELECT max(version) FROM {table})"
    ))
    .await;
    let (addr, stop, server) = start(&env).await;

    let ready = get(addr, "/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.body["error"]["code"], "store.schema_behind");
    assert_eq!(
        ready.body["error"]["message"],
        "the database schema is older than this tender; run `tender init` to migrate it"
    );
    assert_eq!(
        ready.body["error"]["request_id"],
        ready.request_id.unwrap().as_str()
    );
    // The process itself is fine: an orchestrator should not restart it.
    assert_eq!(get(addr, "/healthz").await.status, 200);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(
    api_readyz_schema_behind,
    a_schema_behind_the_binary_is_not_ready_but_still_healthy
);

/// PostgreSQL only: there a table lock holds a request in its handler for as long as the test
/// likes (SQLite's readers never wait for a writer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_when_shutdown_begins_still_gets_its_answer() {
    let env = TestApp::<PgStore>::new(TestDb::postgres().await).await;
    let DbPool::Postgres(pool) = env.store().db_pool() else {
        unreachable!("a PgStore's pool")
    };
    // As if `tender init` were migrating elsewhere: readiness waits for the history table.
    let mut migrating = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *migrating)
        .await
        .unwrap();
    let (addr, stop, server) = start(&env).await;
    let slow = tokio::spawn(get(addr, "/readyz"));
    let waiting = "SELECT count(*) FROM pg_stat_activity \
                   WHERE datname = current_database() AND wait_event_type = 'Lock'";
    while env.count(waiting).await == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connection is accepted"
    );
    assert!(!server.is_finished(), "the server waits for the request");
    migrating.commit().await.unwrap();
    assert_eq!(slow.await.unwrap().status, 200);
    tokio::time::timeout(tender::api::REQUEST_GRACE, server)
        .await
        .expect("the server stops once the request is answered")
        .unwrap()
        .unwrap();
}

/// The retailer every key and card here belongs to.
async fn acme<S: Store>(env: &TestApp<S>) {
    env.app
        .services()
        .retailers()
        .add("Acme", "2.5", &actor())
        .await
        .unwrap();
}

/// A new API key of `role`, as `tender api-key create` makes it.
async fn key<S: Store>(env: &TestApp<S>, name: &str, role: &str) -> String {
    let form = ApiKeyForm {
        name: name.into(),
        role: role.into(),
        retailer: (role == "pos").then(|| "Acme".to_string()),
        store: None,
    };
    let created = env
        .app
        .services()
        .api_keys()
        .create(&form, &actor())
        .await
        .unwrap();
    created.key.expose().to_string()
}

/// `/metrics` takes an admin key. No key, a malformed, unknown or revoked one get the same 401
/// with `WWW-Authenticate: Bearer`; another role's key is 403. The admin gets this process's
/// counters in the Prometheus text format, the redemption outcomes among them.
async fn metrics_take_an_admin_key<S: Store>(env: TestApp<S>) {
    acme(&env).await;
    let admin = key(&env, "ops", "admin").await;
    let till = key(&env, "till-1", "pos").await;
    let old = key(&env, "old", "admin").await;
    env.app
        .services()
        .api_keys()
        .revoke("old", &actor())
        .await
        .unwrap();
    let account = open_account(&env, "US", "USD").await;
    let refused = env
        .app
        .services()
        .redemption()
        .redeem(&account, "7000 0000 0000 0001", None, &actor())
        .await;
    assert_eq!(refused.unwrap_err().code(), "redeem.not_found");
    let (addr, stop, server) = start(&env).await;

    let unknown = format!("{}x", &admin[..admin.len() - 1]);
    for presented in [
        None,
        Some("not-a-key"),
        Some(unknown.as_str()),
        Some(old.as_str()),
    ] {
        let reply = get_with(addr, "/metrics", presented).await;
        assert_eq!(reply.status, 401, "{presented:?}");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        assert_eq!(reply.body["error"]["code"], "api.unauthenticated");
    }
    let pos = get_with(addr, "/metrics", Some(&till)).await;
    assert_eq!(pos.status, 403);
    assert_eq!(pos.body["error"]["code"], "api.forbidden");

    let metrics = get_with(addr, "/metrics", Some(&admin)).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        metrics.headers
    );
    assert!(
        metrics
            .text
            .contains("tender_redemptions_total{outcome=\"redeem.not_found\"} 1\n"),
        "{}",
        metrics.text
    );
    assert!(!metrics.text.contains(&admin), "no key is echoed");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(api_metrics, metrics_take_an_admin_key);

/// One HTTP/1.1 POST of `body` on a new connection, with a key and an idempotency key when
/// given.
async fn post(
    addr: SocketAddr,
    path: &str,
    key: Option<&str>,
    idempotency_key: Option<&str>,
    body: &str,
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: tender\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(key) = key {
        head.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    if let Some(idempotency_key) = idempotency_key {
        head.push_str(&format!("Idempotency-Key: {idempotency_key}\r\n"));
    }
    stream
        .write_all(format!("{head}\r\n{body}").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    parse_reply(&response)
}

/// One sold 25.00 USD card of Acme's, and its code as printed.
async fn sold_card<S: Store>(env: &TestApp<S>) -> String {
    let services = env.app.services();
    let batch = services
        .batches()
        .request(&usd_form(1), &actor())
        .await
        .unwrap();
    let batch = env
        .generate(batch.id, &mut CodeGenerator::from_os_rng(), 1)
        .await;
    let store = StoreForm {
        retailer: "Acme".into(),
        store: "S1".into(),
        jurisdiction: "US-TX".into(),
    };
    services.cards().add_store(&store, &actor()).await.unwrap();
    let sale = ActivateForm {
        pos: PosForm {
            retailer: "Acme".into(),
            store: "S1".into(),
            terminal: "till-1".into(),
            pos_txn: "sale-1".into(),
            pos_time: None,
        },
        serial: batch.first_serial.to_string(),
        to_serial: None,
        value: None,
    };
    services.cards().activate(&sale, &actor()).await.unwrap();
    let mut reader = csv::Reader::from_path(env.export_file(batch.id)).unwrap();
    reader.records().next().unwrap().unwrap()[1].to_string()
}

/// A redeem key redeems a code posted in the body: 201 with the value and the balance after; the
/// same Idempotency-Key again answers 200 with the first redemption. A request without the
/// header is 400, a point-of-sale key 403, a body with another field 400 (without echoing the
/// body), a wrong code 404 `redeem.not_found`, and once the account's hour is used up a 429
/// with `Retry-After`. The code is never in a response.
async fn redemption_over_http<S: Store>(env: TestApp<S>) {
    acme(&env).await;
    let code = sold_card(&env).await;
    let redeem = key(&env, "web", "redeem").await;
    let till = key(&env, "till-1", "pos").await;
    let account = open_account(&env, "US", "USD").await;
    let path = format!("/v1/accounts/{account}/redemptions");
    let body = serde_json::json!({ "code": code }).to_string();
    let (addr, stop, server) = start(&env).await;

    let unkeyed = post(addr, &path, Some(&redeem), None, &body).await;
    assert_eq!(unkeyed.status, 400);
    assert_eq!(
        unkeyed.body["error"]["code"],
        "api.idempotency_key_required"
    );
    let pos = post(addr, &path, Some(&till), Some("r-1"), &body).await;
    assert_eq!(pos.status, 403);
    let extra = serde_json::json!({ "code": code, "account": 2 }).to_string();
    let odd = post(addr, &path, Some(&redeem), Some("r-1"), &extra).await;
    assert_eq!(odd.status, 400);
    assert_eq!(odd.body["error"]["code"], "api.bad_body");

    let first = post(addr, &path, Some(&redeem), Some("r-1"), &body).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(
        first.body["amount"],
        serde_json::json!({ "amount": "25.00", "currency": "USD" })
    );
    assert_eq!(first.body["balance_after"]["amount"], "25.00");
    let again = post(addr, &path, Some(&redeem), Some("r-1"), &body).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["transfer_id"], first.body["transfer_id"]);
    assert_eq!(again.body["replayed"], true);

    for n in 0..5 {
        let guess = serde_json::json!({ "code": format!("7000 0000 0000 000{n}") }).to_string();
        let wrong = post(addr, &path, Some(&redeem), Some(&format!("g-{n}")), &guess).await;
        assert_eq!(wrong.status, 404);
        assert_eq!(wrong.body["error"]["code"], "redeem.not_found");
    }
    let guess = serde_json::json!({ "code": "7000 0000 0000 0009" }).to_string();
    let limited = post(addr, &path, Some(&redeem), Some("g-9"), &guess).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.body["error"]["code"], "redeem.rate_limited");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3_600).contains(&retry), "{retry}");
    for reply in [&unkeyed, &pos, &odd, &first, &again, &limited] {
        assert!(!reply.text.contains(&code), "the code is never echoed");
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(api_redemption, redemption_over_http);
