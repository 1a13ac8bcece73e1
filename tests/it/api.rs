//! The HTTP API through the real router on a real socket.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use tender::store::{DbPool, PgStore, Store};

use crate::helpers::{TestApp, TestDb, both_backends};

/// A response as the client sees it.
struct Reply {
    status: u16,
    request_id: Option<String>,
    body: serde_json::Value,
}

/// One HTTP/1.1 request on a new connection.
async fn get(addr: SocketAddr, path: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: tender\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap();
    let request_id = lines
        .filter_map(|line| line.split_once(": "))
        .find(|(name, _)| name.eq_ignore_ascii_case("x-request-id"))
        .map(|(_, value)| value.to_string());
    Reply {
        status: status.parse().unwrap(),
        request_id,
        body: serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
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
