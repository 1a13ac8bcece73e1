//! The HTTP API through the real router on a real socket.

use std::time::Duration;

use tokio::net::TcpStream;

use tender::error::Classify;
use tender::store::{DbPool, PgStore, Store};

use crate::helpers::http::{acme, call, get, get_with, key, post, send_raw, sold_card, start};
use crate::helpers::{TestApp, TestDb, actor, both_backends, open_account};

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

    // The admin key with its last character changed (to one it does not end in).
    let last = if admin.ends_with('x') { 'y' } else { 'x' };
    let unknown = format!("{}{last}", &admin[..admin.len() - 1]);
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

/// A redeem key redeems a code posted in the body: 201 with the value and the balance after; the
/// same Idempotency-Key again answers the first 201, marked `Idempotent-Replayed: true`. A
/// request without the header is 400, a point-of-sale key 403, a body with another field 400
/// (without echoing the body), a wrong code 404 `redeem.not_found`, and once the account's hour
/// is used up a 429 with `Retry-After`. The code is never in a response.
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
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.text, first.text);

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

/// The OpenAPI document served at `/openapi.json` (without a key) is OpenAPI 3.1 and describes
/// exactly the routes the router serves, each method of each path, and the bearer scheme.
async fn the_openapi_document_describes_every_route<S: Store>(env: TestApp<S>) {
    let (_, served) = tender::api::routes(env.app.clone());
    let (addr, stop, server) = start(&env).await;

    let reply = get(addr, "/openapi.json").await;
    assert_eq!(reply.status, 200);
    let doc = reply.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let mut routed: Vec<(String, String)> = served
        .iter()
        .map(|route| (route.method.to_string(), route.path.to_string()))
        .collect();
    routed.sort();
    assert_eq!(routed, documented);
    // The routes open to anyone are the ones the document marks as needing no key, and the
    // value-moving ones exactly those that require an Idempotency-Key.
    for route in &served {
        let operation = &doc["paths"][route.path][route.method.as_str().to_lowercase()];
        let open = operation["security"] == serde_json::json!([{}]);
        assert_eq!(
            open,
            route.access == tender::api::Access::Open,
            "{} {}",
            route.method,
            route.path
        );
        let idempotency_keys: Vec<_> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["name"] == "Idempotency-Key")
            .collect();
        if route.moving {
            assert_eq!(idempotency_keys.len(), 1, "{} {}", route.method, route.path);
            assert_eq!(idempotency_keys[0]["in"], "header");
            assert_eq!(idempotency_keys[0]["required"], true);
        } else {
            assert!(
                idempotency_keys.is_empty(),
                "{} {}",
                route.method,
                route.path
            );
        }
    }
    assert_eq!(
        served.iter().filter(|route| route.moving).count(),
        9,
        "redemptions, spends, refunds, adjustments, approvals, activations, voids, trade-ins, \
         trade-in approvals"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(api_openapi, the_openapi_document_describes_every_route);

/// The rules every JSON route shares, shown on redemption: a body not sent as JSON is 415, one
/// over 16 KiB is 413, a duplicate key or a JSON number where a string belongs is 400 naming the
/// field and never quoting the value, and a method a path does not take is 405 with `Allow`.
/// Each is a JSON error with the request's id, and none redeems anything.
async fn hostile_bodies_are_refused_before_any_work<S: Store>(env: TestApp<S>) {
    let redeem = key(&env, "web", "redeem").await;
    let account = open_account(&env, "US", "USD").await;
    let path = format!("/v1/accounts/{account}/redemptions");
    let (addr, stop, server) = start(&env).await;

    let raw = |content_type: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: tender\r\nAuthorization: Bearer {redeem}\r\n\
             Idempotency-Key: h-1\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let form = send_raw(
        addr,
        raw("application/x-www-form-urlencoded", "code=1").as_bytes(),
    )
    .await;
    assert_eq!(form.status, 415);
    assert_eq!(form.body["error"]["code"], "api.unsupported_media_type");

    let big = format!(r#"{{"code": "{}"}}"#, "1".repeat(20_000));
    let large = send_raw(addr, raw("application/json", &big).as_bytes()).await;
    assert_eq!(large.status, 413);
    assert_eq!(large.body["error"]["code"], "api.body_too_large");

    let twice = r#"{"code": "7000 0000 0000 0001", "code": "7000 0000 0000 0002"}"#;
    let duplicate = send_raw(addr, raw("application/json", twice).as_bytes()).await;
    assert_eq!(duplicate.status, 400);
    assert_eq!(duplicate.body["error"]["message"], "`code` is given twice");
    assert!(!duplicate.text.contains("7000"), "{}", duplicate.text);

    let number = send_raw(
        addr,
        raw("application/json", r#"{"code": 7000000000000001}"#).as_bytes(),
    )
    .await;
    assert_eq!(number.status, 400);
    assert_eq!(number.body["error"]["code"], "api.bad_body");
    assert!(!number.text.contains("7000"), "{}", number.text);

    let missing = send_raw(
        addr,
        raw("application/json; charset=utf-8", "{}").as_bytes(),
    )
    .await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body["error"]["message"], "`code` is required");

    let wrong_method = call(addr, "DELETE", &path, Some(&redeem), None, None).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.body["error"]["code"], "api.method_not_allowed");
    assert_eq!(wrong_method.header("allow"), Some("POST"));
    assert!(wrong_method.request_id.is_some());

    assert_eq!(env.count("SELECT count(*) FROM redemption").await, 0);
    assert_eq!(env.count("SELECT count(*) FROM redeem_attempt").await, 0);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(
    api_hostile_bodies,
    hostile_bodies_are_refused_before_any_work
);

/// A code in a query string is refused before anything reads it: every route but the paged
/// reads refuses a query string, and the refusal does not repeat it.
async fn a_query_string_is_refused_where_a_route_takes_none<S: Store>(env: TestApp<S>) {
    let redeem = key(&env, "web", "redeem").await;
    let account = open_account(&env, "US", "USD").await;
    let (addr, stop, server) = start(&env).await;

    let path = format!("/v1/accounts/{account}/redemptions?code=7000000000000001");
    let body = r#"{"code": "7000 0000 0000 0002"}"#;
    let reply = call(addr, "POST", &path, Some(&redeem), Some("q-1"), Some(body)).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["error"]["code"], "api.query_refused");
    assert!(!reply.text.contains("7000"), "{}", reply.text);
    let probe = get(addr, "/healthz?code=7000000000000001").await;
    assert_eq!(probe.status, 400);
    assert_eq!(env.count("SELECT count(*) FROM redeem_attempt").await, 0);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(
    api_query_refused,
    a_query_string_is_refused_where_a_route_takes_none
);

/// The README's route table: (method, path, roles) for every row, `anyone` for open routes.
fn readme_routes() -> Vec<(String, String, Vec<String>)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    readme
        .lines()
        .filter(|line| line.starts_with("| `GET` ") || line.starts_with("| `POST` "))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let mut roles: Vec<String> = cells[3]
                .split(',')
                .map(|role| role.trim().to_string())
                .collect();
            roles.sort();
            (
                cells[1].trim_matches('`').to_string(),
                cells[2].trim_matches('`').to_string(),
                roles,
            )
        })
        .collect()
}

/// The authorization matrix: the README's table lists exactly the routes the router serves, with
/// exactly the roles each allows; then every role's key meets every keyed route, and is refused
/// 403 `api.forbidden` exactly where the table does not list its role, before its body is read
/// (the body here is empty, so an allowed role meets the route's own 400 or 404 instead). No
/// key, or a revoked one, is 401 on every keyed route.
async fn every_role_meets_every_route_as_the_readme_says<S: Store>(env: TestApp<S>) {
    use tender::api::Access;
    use tender::domain::ApiRole;

    acme(&env).await;
    let mut keys = Vec::new();
    for role in ApiRole::ALL {
        keys.push((
            role,
            key(&env, &format!("k-{}", role.as_str()), role.as_str()).await,
        ));
    }
    let revoked = key(&env, "gone", "admin").await;
    env.app
        .services()
        .api_keys()
        .revoke("gone", &actor())
        .await
        .unwrap();
    let (_, served) = tender::api::routes(env.app.clone());

    let mut table = readme_routes();
    table.sort();
    let mut routed: Vec<(String, String, Vec<String>)> = served
        .iter()
        .map(|route| {
            let mut roles: Vec<String> = match route.access {
                Access::Open => vec!["anyone".to_string()],
                Access::Roles(roles) => roles.iter().map(|r| r.as_str().to_string()).collect(),
            };
            roles.sort();
            (route.method.to_string(), route.path.to_string(), roles)
        })
        .collect();
    routed.sort();
    assert_eq!(table, routed, "the README's route table is the router's");

    let (addr, stop, server) = start(&env).await;
    for route in &served {
        let Access::Roles(allowed) = route.access else {
            continue;
        };
        // Placeholders name nothing that exists: an allowed key meets a 400 or a 404.
        let path = route
            .path
            .replace("{id}", "999999")
            .replace("{serial}", "000000000013");
        let method = route.method.as_str();
        let body = (method == "POST").then_some("{}");
        for (role, key) in &keys {
            let reply = call(addr, method, &path, Some(key), Some("matrix"), body).await;
            if allowed.contains(role) {
                assert!(
                    ![401, 403].contains(&reply.status),
                    "{} {} let a {} key in: {}",
                    method,
                    route.path,
                    role.as_str(),
                    reply.text
                );
            } else {
                assert_eq!(
                    reply.status,
                    403,
                    "{method} {} as {}",
                    route.path,
                    role.as_str()
                );
                assert_eq!(reply.body["error"]["code"], "api.forbidden");
            }
        }
        for presented in [None, Some(revoked.as_str())] {
            let reply = call(addr, method, &path, presented, Some("matrix"), body).await;
            assert_eq!(reply.status, 401, "{method} {}", route.path);
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        }
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(
    api_authorization_matrix,
    every_role_meets_every_route_as_the_readme_says
);
