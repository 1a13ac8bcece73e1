//! What the API tells operators: `/metrics` counts requests by route template and status,
//! error responses by stable code and latencies per route, and shows the database pool's use
//! and the job runner's backlog as they are at the scrape; every request is logged once with
//! its id, and never with a code, a key, a query string or a raw path.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use tender::jobs::Catalog;
use tender::store::{DbPool, Store};

use crate::helpers::http::{acme, call, get, get_with, key, post, start};
use crate::helpers::{Reaped, TestApp, both_backends, open_account};

/// Every sample of a scrape, `name{labels}` to value, after checking that each line is a
/// comment or one sample with a number.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "twice: {line}"
        );
    }
    samples
}

/// The histogram `name` of `labels` (rendered pairs): its buckets in `le` order, as
/// `(le, cumulative count)`, and its `_count`.
fn histogram(samples: &BTreeMap<String, f64>, name: &str, labels: &str) -> (Vec<(f64, f64)>, f64) {
    let prefix = format!("{name}_bucket{{{labels},le=\"");
    let mut buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|(series, n)| {
            let le = series.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            Some((le, *n))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let count = samples[&format!("{name}_count{{{labels}}}")];
    (buckets, count)
}

async fn scrape(addr: SocketAddr, admin: &str) -> (String, BTreeMap<String, f64>) {
    let reply = get_with(addr, "/metrics", Some(admin)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let samples = samples(&reply.text);
    (reply.text, samples)
}

/// After a 200, a 404 nobody routes, a 404 of the redemption route and a 401, `/metrics`
/// counts each under its route's template (never the account's id), each error under its
/// stable code, and each route's latencies in a histogram whose buckets only grow, up to a
/// `+Inf` bucket equal to its count, which equals the route's requests. The pool's gauges show
/// a connection the test holds; the job gauges show a requested batch waiting in the outbox,
/// then, relayed, pending in the job runner's queue, then failed.
async fn metrics_count_requests_by_route_and_show_the_pool_and_the_job_backlog<S: Store>(
    env: TestApp<S>,
) {
    acme(&env).await;
    let admin = key(&env, "ops", "admin").await;
    let web = key(&env, "web", "redeem").await;
    let account = open_account(&env, "US", "USD").await;
    env.request(1).await;
    let (addr, stop, server) = start(&env).await;

    assert_eq!(get(addr, "/healthz").await.status, 200);
    assert_eq!(get(addr, "/v1/nothing/42").await.status, 404);
    let path = format!("/v1/accounts/{account}/redemptions");
    let guess = serde_json::json!({ "code": "7000 0000 0000 0001" }).to_string();
    let wrong = post(addr, &path, Some(&web), Some("g-1"), &guess).await;
    assert_eq!(wrong.status, 404);
    assert_eq!(get(addr, "/metrics").await.status, 401);
    // A method no one defined is labelled `other`, so a client cannot add series.
    assert_eq!(
        call(addr, "BREW", "/healthz", None, None, None)
            .await
            .status,
        405
    );

    // A connection held here is in use at the scrape.
    let held = match env.store().db_pool() {
        DbPool::Sqlite(pool) => (Some(pool.acquire().await.unwrap()), None),
        DbPool::Postgres(pool) => (None, Some(pool.acquire().await.unwrap())),
    };
    let (text, samples) = scrape(addr, &admin).await;
    let requests = |method: &str, route: &str, status: u16| {
        let series = format!(
            "tender_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}}"
        );
        samples.get(&series).copied()
    };
    assert_eq!(requests("GET", "/healthz", 200), Some(1.0), "{text}");
    assert_eq!(requests("GET", "unmatched", 404), Some(1.0), "{text}");
    let redemptions = "/v1/accounts/{id}/redemptions";
    assert_eq!(requests("POST", redemptions, 404), Some(1.0), "{text}");
    assert_eq!(requests("GET", "/metrics", 401), Some(1.0), "{text}");
    assert_eq!(requests("other", "/healthz", 405), Some(1.0), "{text}");
    assert!(!text.contains(&format!("/v1/accounts/{account}")), "{text}");
    assert!(!text.contains("/v1/nothing"), "{text}");
    assert!(!text.contains("7000"), "no code: {text}");
    for (code, n) in [
        ("api.not_found", 1.0),
        ("redeem.not_found", 1.0),
        ("api.unauthenticated", 1.0),
        ("api.method_not_allowed", 1.0),
    ] {
        let series = format!("tender_http_errors_total{{code=\"{code}\"}}");
        assert_eq!(samples.get(&series), Some(&n), "{code}: {text}");
    }
    assert!(text.contains("# TYPE tender_http_request_duration_seconds histogram\n"));
    for (method, route) in [
        ("GET", "/healthz"),
        ("GET", "unmatched"),
        ("POST", redemptions),
        ("GET", "/metrics"),
        ("other", "/healthz"),
    ] {
        let labels = format!("method=\"{method}\",route=\"{route}\"");
        let (buckets, count) = histogram(&samples, "tender_http_request_duration_seconds", &labels);
        assert_eq!(buckets.len(), 14, "1 ms to 10 s and +Inf: {text}");
        assert_eq!(buckets[0].0, 0.001);
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "buckets only grow: {buckets:?}"
        );
        assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, count));
        let answered: f64 = samples
            .iter()
            .filter(|(series, _)| {
                series.starts_with(&format!("tender_http_requests_total{{{labels},"))
            })
            .map(|(_, n)| n)
            .sum();
        assert_eq!(count, answered, "{labels}");
        let sum = samples[&format!("tender_http_request_duration_seconds_sum{{{labels}}}")];
        assert!(sum >= 0.0 && sum < 15.0 * count, "{sum}");
    }

    let max = match env.store().db_pool() {
        DbPool::Sqlite(pool) => pool.options().get_max_connections(),
        DbPool::Postgres(pool) => pool.options().get_max_connections(),
    };
    assert_eq!(samples["tender_db_connections_max"], f64::from(max));
    let in_use = samples["tender_db_connections{state=\"in_use\"}"];
    let idle = samples["tender_db_connections{state=\"idle\"}"];
    assert!(in_use >= 1.0, "the held connection: {text}");
    assert!(in_use + idle <= f64::from(max), "{text}");
    drop(held);

    // The batch's job is in the outbox; nothing is in the job runner's queue yet.
    assert_eq!(samples["tender_jobs_outbox{job=\"generate-batch\"}"], 1.0);
    assert!(!text.contains("tender_jobs{"), "{text}");
    assert_eq!(samples["tender_jobs_read_ok"], 1.0);

    // Relayed (no worker runs), it waits in the queue.
    let relay = Catalog::load(None)
        .unwrap()
        .runtime(&env.app, std::sync::Arc::new(|_| {}))
        .relay();
    assert_eq!(relay.relay_once().await.unwrap(), 1);
    let queue = "queue=\"tender.generate-batch.v1\"";
    let (text, samples) = scrape(addr, &admin).await;
    assert!(!text.contains("tender_jobs_outbox{"), "{text}");
    for (status, n) in [("pending", 1.0), ("running", 0.0), ("failed", 0.0)] {
        let series = format!("tender_jobs{{{queue},status=\"{status}\"}}");
        assert_eq!(samples.get(&series), Some(&n), "{series}: {text}");
    }
    // The earlier scrape's 200 is counted now that it was answered.
    assert_eq!(
        samples["tender_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"}"],
        1.0
    );

    // A task that failed shows as a failure of its queue.
    let jobs = match env.store().db_pool() {
        DbPool::Sqlite(_) => "Jobs",
        DbPool::Postgres(_) => "apalis.jobs",
    };
    env.exec(&format!("UPDATE {jobs} SET status = 'Failed'"))
        .await;
    let (text, samples) = scrape(addr, &admin).await;
    for (status, n) in [("pending", 0.0), ("failed", 1.0)] {
        let series = format!("tender_jobs{{{queue},status=\"{status}\"}}");
        assert_eq!(samples.get(&series), Some(&n), "{series}: {text}");
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
both_backends!(
    api_metrics_content,
    metrics_count_requests_by_route_and_show_the_pool_and_the_job_backlog
);

/// The next line of `lines` that holds every one of `parts`, within a few seconds.
fn line_with(lines: &Receiver<String>, seen: &mut Vec<String>, parts: &[&str]) -> String {
    let wanted = |line: &String| parts.iter().all(|part| line.contains(part));
    if let Some(line) = seen.iter().find(|line| wanted(line)) {
        return line.clone();
    }
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no log line with {parts:?} in:\n{}", seen.join("\n")));
        seen.push(line.clone());
        if wanted(&line) {
            return line;
        }
    }
}

/// `tender serve` logs each request once at info, inside a span that carries the request's id
/// (so does every line logged while it is served): the id its `X-Request-Id` names, the method,
/// the route's template, the status, the error's code and the duration. A code posted in a
/// body, a key in a header, a query string and an account's id in the path appear nowhere in
/// the log.
async fn every_request_is_logged_once_with_its_id_and_nothing_secret<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    let mut server = Reaped(
        Command::new(env!("CARGO_BIN_EXE_tender"))
            .args(["serve", "--listen", "127.0.0.1:0", "--no-jobs"])
            .env_remove("TENDER_LOOKUP_KEYS")
            .env_remove("TENDER_AUDIT_KEYS")
            .env("TENDER_DATA_DIR", env.db.path())
            .env("TENDER_DATABASE_URL", &env.db.url)
            .env("TENDER_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (sender, lines) = std::sync::mpsc::channel();
    let stderr = BufReader::new(server.stderr.take().unwrap());
    std::thread::spawn(move || {
        stderr.lines().map_while(Result::ok).for_each(|line| {
            let _ = sender.send(line);
        })
    });
    let mut seen = Vec::new();
    let listening = line_with(&lines, &mut seen, &["listening on http://"]);
    let addr: SocketAddr = listening
        .split_once("listening on http://")
        .unwrap()
        .1
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();

    let code = "7123 4567 8901 2345";
    let secret = "tdr_live_aaaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let health = get(addr, "/healthz").await;
    let path = format!("/v1/accounts/{account}/redemptions");
    let body = serde_json::json!({ "code": code }).to_string();
    let refused = post(addr, &path, Some(secret), Some("k-1"), &body).await;
    assert_eq!(refused.status, 401);
    let queried = get(addr, "/v1/nowhere/7?code=7123456789012345").await;
    assert_eq!(queried.status, 404);

    let id = health.request_id.unwrap();
    let line = line_with(&lines, &mut seen, &[&id, "request answered"]);
    assert!(line.contains(" INFO "), "{line}");
    for part in ["method=GET", "route=/healthz", "status=200", "duration_ms="] {
        assert!(line.contains(part), "{part} in {line}");
    }
    let id = refused.request_id.unwrap();
    let line = line_with(&lines, &mut seen, &[&id, "request answered"]);
    for part in [
        "method=POST",
        "route=/v1/accounts/{id}/redemptions",
        "status=401",
        "code=\"api.unauthenticated\"",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
    let id = queried.request_id.unwrap();
    let line = line_with(&lines, &mut seen, &[&id, "request answered"]);
    assert!(line.contains("route=unmatched"), "{line}");
    assert!(line.contains("status=404"), "{line}");
    assert_eq!(
        seen.iter().filter(|line| line.contains(&id)).count(),
        1,
        "one line per request"
    );

    rustix::process::kill_process(
        rustix::process::Pid::from_child(&server),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert!(server.wait().unwrap().success());
    seen.extend(lines.iter());
    let log = seen.join("\n");
    for secret_part in [
        code,
        "7123456789012345",
        secret,
        "bbbbbbbb",
        "?code",
        &format!("/v1/accounts/{account}"),
        "/v1/nowhere/7",
    ] {
        assert!(
            !log.contains(secret_part),
            "{secret_part} in the log:\n{log}"
        );
    }
}
both_backends!(
    api_metrics_logs,
    every_request_is_logged_once_with_its_id_and_nothing_secret
);
